"""API key checks of the tenant API."""

from __future__ import annotations

import hmac
from typing import Literal

from .config import EmulatorConfig
from .errors import ApiError

Service = Literal["billing", "notifications"]

_KEY_NAMES = {"billing": "billing key (bil_...)", "notifications": "notification key (ntf_...)"}


def bearer_token(authorization: str | None) -> str | None:
    """Return the token of an ``Authorization: Bearer <token>`` header, else None."""
    if authorization is None:
        return None

    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


def service_of_path(relative_path: str) -> Service | None:
    """Return the service that owns a path below the tenant base, None for unknown paths."""
    if relative_path == "/billing" or relative_path.startswith("/billing/"):
        return "billing"
    if relative_path == "/notifications" or relative_path.startswith("/notifications/"):
        return "notifications"
    return None


def authorize(
    config: EmulatorConfig, authorization: str | None, tenant: str, relative_path: str
) -> ApiError | None:
    """Return the 401 or 403 error for a request, or None when its key may call the path."""
    token = bearer_token(authorization)
    if token is None:
        return ApiError(
            401,
            "unauthorized",
            "The request has no API key. Send it as 'Authorization: Bearer <key>'.",
            headers={"WWW-Authenticate": "Bearer"},
        )

    key_service = _service_of_key(config, token)
    if key_service is None:
        return ApiError(
            401,
            "unauthorized",
            "The API key is not valid. Use the billing or notification key of this tenant.",
            headers={"WWW-Authenticate": "Bearer"},
        )

    if tenant != config.tenant:
        return ApiError(
            403,
            "forbidden",
            f"The API key does not grant access to tenant {tenant!r}. "
            "Use the tenant that the key was issued for.",
        )

    path_service = service_of_path(relative_path)
    if path_service is not None and path_service != key_service:
        return ApiError(
            403,
            "forbidden",
            f"A {_KEY_NAMES[key_service]} cannot call {path_service} routes. "
            f"Use the {_KEY_NAMES[path_service]}.",
        )

    return None


def _service_of_key(config: EmulatorConfig, token: str) -> Service | None:
    presented = token.encode()
    if hmac.compare_digest(presented, config.billing_key.encode()):
        return "billing"
    if hmac.compare_digest(presented, config.notification_key.encode()):
        return "notifications"
    return None
