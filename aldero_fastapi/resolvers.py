"""FastAPI dependencies that resolve the end user of a request."""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param

from aldero_fastapi.auth import (
    AuthenticatedUser,
    AuthUnavailableError,
    InvalidTokenError,
    TokenVerifier,
    contains_control_characters,
    find_user_id_problem,
)
from aldero_fastapi.http_errors import AlderoHTTPException
from aldero_fastapi.request_user import record_user

__all__ = [
    "MAX_TRUSTED_USER_ID_LENGTH",
    "bearer_token_user",
    "coerce_user",
    "trusted_header_user",
    "user_override",
]

# Rejections are logged under the same name as token verification.
logger = logging.getLogger("aldero_fastapi.auth")

MAX_TRUSTED_USER_ID_LENGTH = 128

# HTTPBearer documents the scheme in OpenAPI. With auto_error=False it returns None
# both for a missing Authorization header and for another scheme such as Basic
# (checked with FastAPI 0.165), so both get the same 401 below.
bearer_scheme = HTTPBearer(auto_error=False)

# RFC 7230 token characters, the only ones allowed in a header name.
_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


async def bearer_token_user(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> AuthenticatedUser:
    """
    Resolve the user from the ``Authorization: Bearer`` token of the request.

    The verifier is read from ``request.app.state.aldero.token_verifier``.

    Raises:
        AlderoHTTPException: 401 when the token is missing or invalid, 400 for more than
            one Authorization header, 503 when authentication is not configured or the
            JWKS could not be fetched yet.
    """
    verifier = _find_token_verifier(request)

    # Authorization is a singleton header (RFC 9110). With two, a proxy in front of the
    # app may have authenticated the other one, so the request is rejected outright.
    header_count = len(request.headers.getlist("authorization"))
    if header_count > 1:
        logger.info(
            "rejected request %s: %d Authorization headers", _describe_route(request), header_count
        )
        raise AlderoHTTPException(
            400,
            "Invalid Authorization header",
            headers={"WWW-Authenticate": 'Bearer error="invalid_request"'},
            reason=f"the request has {header_count} Authorization headers; send exactly one",
        )

    if credentials is None:
        logger.info("rejected request %s: no bearer token", _describe_route(request))
        raise _not_authenticated()

    try:
        user = await verifier.verify(credentials.credentials)
    except InvalidTokenError as error:
        logger.info("rejected bearer token on %s: %s", _describe_route(request), error.reason)
        description = _quote_header_text(error.reason)
        raise AlderoHTTPException(
            401,
            "Invalid token",
            headers={
                "WWW-Authenticate": (
                    f'Bearer error="invalid_token", error_description="{description}"'
                )
            },
            reason=error.reason,
        ) from None
    except AuthUnavailableError as error:
        # The JWKS module has already logged the failed fetch.
        raise AlderoHTTPException(
            503,
            "Authentication service unavailable",
            headers={"Retry-After": str(error.retry_after_seconds)},
        ) from None

    # Kept for the rest of the request, for example for the notification keys of routes
    # that take this dependency instead of CurrentUser.
    record_user(request, user)
    return user


def bearer_credentials(request: Request) -> HTTPAuthorizationCredentials | None:
    """Return the request's bearer credentials, or None for a missing header or another scheme."""
    # The same parsing as HTTPBearer(auto_error=False), without a dependency level.
    scheme, token = get_authorization_scheme_param(request.headers.get("authorization"))
    if scheme.lower() != "bearer" or not token:
        return None
    return HTTPAuthorizationCredentials(scheme=scheme, credentials=token)


def coercing_resolver(
    resolver: Callable[..., Any],
) -> Callable[..., Awaitable[AuthenticatedUser]]:
    """
    Wrap an app's user resolver so that it yields an ``AuthenticatedUser`` or a 401.

    ``resolver`` is any FastAPI dependency that returns an ``AuthenticatedUser``, a user
    id string, or None when there is no user.
    """

    async def resolve_with_app_resolver(
        resolved: Any = Depends(resolver),  # noqa: B008 - the dependency is only known here
    ) -> AuthenticatedUser:
        return coerce_user(resolved)

    return resolve_with_app_resolver


def trusted_header_user(
    header_name: str = "X-User-Id",
) -> Callable[[Request], Awaitable[AuthenticatedUser]]:
    """
    Return a dependency that takes the user id from a header set by a gateway.

    Use it only behind a gateway that authenticates every request and removes this
    header from what clients send, because anyone who reaches the app directly can set
    it. The request gets 401 when the header is missing, empty, repeated, longer than
    MAX_TRUSTED_USER_ID_LENGTH characters or contains control characters.

    Raises:
        ValueError: ``header_name`` is not a valid HTTP header name.
    """
    if not _HEADER_NAME.fullmatch(header_name):
        raise ValueError(f"trusted_header_user: {header_name!r} is not a valid HTTP header name")

    async def resolve_trusted_header_user(request: Request) -> AuthenticatedUser:
        values = request.headers.getlist(header_name)

        if not values or not values[0].strip():
            logger.info("rejected request %s: no %s header", _describe_route(request), header_name)
            raise AlderoHTTPException(401, "Not authenticated")

        problem = _find_trusted_header_problem(values, header_name)
        if problem is not None:
            logger.info("rejected request %s: %s", _describe_route(request), problem)
            raise AlderoHTTPException(401, "Invalid user id header", reason=problem)

        user = AuthenticatedUser(id=values[0], claims={})
        record_user(request, user)
        return user

    return resolve_trusted_header_user


def coerce_user(value: AuthenticatedUser | str | None) -> AuthenticatedUser:
    """
    Normalise what a user resolver returned into an AuthenticatedUser.

    A string becomes a user without claims. None or an empty string means the request
    is not authenticated.

    Raises:
        AlderoHTTPException: 401 for None or an empty string.
        TypeError: the resolver returned another type, a bug in the app.
    """
    if isinstance(value, AuthenticatedUser):
        return value

    if value is None:
        raise _not_authenticated()

    if isinstance(value, str):
        if not value:
            raise _not_authenticated()
        problem = find_user_id_problem(value)
        if problem is not None:
            logger.info("rejected the user id from the user resolver: it %s", problem)
            raise AlderoHTTPException(
                401,
                "Invalid user id",
                headers={"WWW-Authenticate": "Bearer"},
                reason=f"the user id {problem}",
            )
        return AuthenticatedUser(id=value, claims={})

    raise TypeError(
        f"the user resolver returned {type(value).__name__}; it must return an "
        "AuthenticatedUser, a user id string or None"
    )


def user_override(
    user_id: str, claims: Mapping[str, Any] | None = None
) -> Callable[[], Awaitable[AuthenticatedUser]]:
    """
    Return a dependency that resolves every request to the same user, for tests.

    Raises:
        ValueError: ``user_id`` is empty or contains control characters.
    """
    user = AuthenticatedUser(id=user_id, claims=dict(claims or {}))

    async def resolve_override_user() -> AuthenticatedUser:
        return user

    return resolve_override_user


def _find_token_verifier(request: Request) -> TokenVerifier:
    aldero = getattr(request.app.state, "aldero", None)
    if aldero is not None and not getattr(aldero, "started", True):
        raise AlderoHTTPException(503, "Aldero integration is not started")
    verifier = getattr(aldero, "token_verifier", None)
    if isinstance(verifier, TokenVerifier):
        return verifier

    raise AlderoHTTPException(
        503,
        "Authentication is not configured",
        message=(
            "Set ALDERO_AUTH_JWT_SECRET or ALDERO_AUTH_JWKS_URL to verify bearer tokens, "
            "or pass user_resolver to Aldero() to resolve the user another way."
        ),
    )


def _describe_route(request: Request) -> str:
    """Return the method and route template of the request, such as ``GET /items/{item_id}``."""
    # The template and not the path, because a path can carry a token, as in magic links.
    route = request.scope.get("route")
    template = getattr(route, "path", None)
    if not isinstance(template, str):
        template = "(unknown route)"
    return f"{request.method} {template}"


def _find_trusted_header_problem(values: list[str], header_name: str) -> str | None:
    if len(values) > 1:
        return f"the {header_name} header is repeated"

    value = values[0]
    if len(value) > MAX_TRUSTED_USER_ID_LENGTH:
        return f"the {header_name} header is longer than {MAX_TRUSTED_USER_ID_LENGTH} characters"
    if contains_control_characters(value):
        return f"the {header_name} header contains control characters"
    return None


def _not_authenticated() -> AlderoHTTPException:
    return AlderoHTTPException(401, "Not authenticated", headers={"WWW-Authenticate": "Bearer"})


def _quote_header_text(text: str) -> str:
    """Replace what may not appear in a quoted WWW-Authenticate parameter (RFC 6750, section 3)."""
    return "".join(
        character if " " <= character <= "~" and character not in '"\\' else "?"
        for character in text
    )
