"""FastAPI dependencies: the user, their entitlements, credits and notifications.

Each dependency is a stable module-level callable, so ``app.dependency_overrides``
can replace it in tests.

This module does not use ``from __future__ import annotations``: FastAPI 0.115
cannot resolve string annotations on the ``__call__`` of a callable instance such as
``require_feature("x")``, and reads them as query parameters.
"""

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request

from aldero_fastapi.auth import AuthenticatedUser
from aldero_fastapi.credits import CreditSession, idempotency_digest
from aldero_fastapi.errors import (
    AlderoTransportError,
    ConfigurationError,
    ConflictError,
    RateLimitedError,
    ServerError,
)
from aldero_fastapi.handlers import retry_after_seconds
from aldero_fastapi.http_errors import AlderoHTTPException
from aldero_fastapi.models import Entitlements
from aldero_fastapi.notify import NotificationSender
from aldero_fastapi.overrides import UserDependent
from aldero_fastapi.plugin import Aldero
from aldero_fastapi.request_user import recorded_user, recorded_user_id
from aldero_fastapi.resolvers import bearer_credentials, bearer_token_user

__all__ = [
    "CreditCharge",
    "Credits",
    "CurrentUser",
    "FeatureRequirement",
    "Notifier",
    "UserEntitlements",
    "credit_session",
    "current_user",
    "deduct_credits",
    "get_aldero",
    "load_entitlements",
    "notification_sender",
    "require_feature",
    "started_aldero",
    "user_entitlements",
]

logger = logging.getLogger("aldero_fastapi.dependencies")

MAX_IDEMPOTENCY_KEY_LENGTH = 255


async def get_aldero(request: Request) -> Aldero:
    """
    Return the app's started ``Aldero`` instance.

    Raises:
        AlderoHTTPException: 503 when the lifespan has not started it.
    """
    return started_aldero(request)


def started_aldero(request: Request) -> Aldero:
    """Return the app's started ``Aldero`` instance, or raise a 503 when it is not running."""
    # A plain function rather than a dependency: every dependency level costs FastAPI a
    # resolution step on each request, and this runs on every gated request.
    aldero: Aldero | None = getattr(request.app.state, "aldero", None)
    if aldero is None or not aldero.started:
        logger.error(
            "Aldero is not started for this app; pass lifespan=aldero.lifespan to FastAPI()"
        )
        raise AlderoHTTPException(503, "Aldero integration is not started")
    return aldero


async def current_user(request: Request) -> AuthenticatedUser:
    """
    Return the user of the request's bearer token, or raise a 401.

    ``Aldero(user_resolver=...)`` replaces this dependency with the app's own resolver.
    """
    # require_feature calls this function itself before FastAPI resolves the handler's
    # CurrentUser, so the user is kept in the scope and the token is verified once.
    user: AuthenticatedUser | None = recorded_user(request)
    if user is not None:
        return user

    # With a user resolver, the app's dependency overrides resolve the user, so getting
    # here means they were replaced and bearer tokens would be accepted in its place.
    if getattr(getattr(request.app.state, "aldero", None), "user_resolver", None) is not None:
        raise ConfigurationError(
            "Aldero(user_resolver=...) is set but app.dependency_overrides was replaced, "
            "so the resolver is not used; call aldero.install(app) after replacing it"
        )

    # The header is parsed here rather than through an HTTPBearer sub-dependency, which
    # would cost FastAPI one more resolution step on every request. ``install`` adds
    # the bearer scheme to the OpenAPI schema instead. bearer_token_user records the user.
    return await bearer_token_user(request, bearer_credentials(request))


CurrentUser = Annotated[AuthenticatedUser, Depends(current_user)]


async def load_entitlements(request: Request, user: AuthenticatedUser) -> Entitlements:
    """
    Return the user's entitlements from the cache, fetching them on a miss.

    Raises:
        AlderoHTTPException: 503 with ``Retry-After`` when billing cannot be reached and
            no stale entitlements may be served.
    """
    aldero = started_aldero(request)
    try:
        return await aldero.entitlements.get(user.id)
    except (AlderoTransportError, ServerError, RateLimitedError, ConflictError) as error:
        retry_after = retry_after_seconds(error)
        aldero.outage_log.log(
            logger,
            logging.WARNING,
            ("entitlements", type(error).__name__),
            "Entitlements of user %s are unavailable (%s); responding with 503",
            user.id,
            type(error).__name__,
        )
        raise AlderoHTTPException(
            503,
            "Billing service unavailable",
            headers={"Retry-After": str(retry_after)},
        ) from error


async def user_entitlements(request: Request, user: CurrentUser) -> Entitlements:
    """Return the current user's entitlements, cached; 503 when billing is unavailable."""
    return await load_entitlements(request, user)


UserEntitlements = Annotated[Entitlements, Depends(user_entitlements)]


class FeatureRequirement(UserDependent):
    """
    A dependency that raises a 403 unless the current user has ``feature``.

    Two requirements of the same feature and message compare equal, so an override
    registered for ``require_feature("x")`` applies to every route that requires it.
    """

    def __init__(self, feature: str, message: str | None = None) -> None:
        self.feature = feature
        self.message = message or f"Feature {feature!r} required"
        # FastAPI hashes the dependency for its per-request cache on every request.
        self._hash = hash((FeatureRequirement, self.feature, self.message))
        self._through_user_dependency = _UserFeatureRequirement(self)

    @property
    def through_user_dependency(self) -> Callable[..., Awaitable[Entitlements]]:
        """This requirement declaring ``CurrentUser``, for apps that override ``current_user``."""
        return self._through_user_dependency

    async def __call__(self, request: Request) -> Entitlements:
        # Calls current_user itself instead of declaring CurrentUser, because FastAPI
        # would re-solve that sub-dependency for a handler that takes CurrentUser too,
        # one more resolution step on every gated request. While current_user is
        # overridden, the app's UserAwareOverrides makes FastAPI resolve
        # through_user_dependency in place of this method.
        if current_user in request.app.dependency_overrides:
            raise ConfigurationError(
                "app.dependency_overrides overrides current_user but does not pass the "
                "override on to require_feature; call aldero.install(app) after "
                "replacing app.dependency_overrides"
            )

        user = await current_user(request)
        return await self.check(request, user)

    async def check(self, request: Request, user: AuthenticatedUser) -> Entitlements:
        """
        Return the entitlements of ``user`` if they include the feature.

        Raises:
            AlderoHTTPException: 403 without the feature; 503 when billing is unavailable.
        """
        entitlements = await load_entitlements(request, user)
        if entitlements.has_feature(self.feature):
            return entitlements

        logger.info(
            "User %s lacks feature %r; responding with 403", entitlements.user_id, self.feature
        )
        raise AlderoHTTPException(403, self.message, feature=self.feature)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FeatureRequirement):
            return NotImplemented
        return (self.feature, self.message) == (other.feature, other.message)

    def __hash__(self) -> int:
        return self._hash

    def __repr__(self) -> str:
        return f"require_feature({self.feature!r})"


class _UserFeatureRequirement:
    """A feature requirement that takes the user from the app's override of ``current_user``."""

    def __init__(self, requirement: FeatureRequirement) -> None:
        self.requirement = requirement

    async def __call__(self, request: Request, user: CurrentUser) -> Entitlements:
        return await self.requirement.check(request, user)

    def __repr__(self) -> str:
        return f"{self.requirement!r} through CurrentUser"


def require_feature(feature: str, *, message: str | None = None) -> FeatureRequirement:
    """
    Return a dependency that responds 403 ``{"error": message, "feature": feature}``
    unless the current user is entitled to ``feature``.
    """
    return FeatureRequirement(feature, message)


async def credit_session(request: Request, user: CurrentUser) -> AsyncIterator[CreditSession]:
    """
    Yield the request's credit session and refund its deductions if the handler raises.

    The handler's exception, including ``HTTPException`` and cancellation, is re-raised
    after the refunds, so the client still receives the handler's own response.

    Raises:
        AlderoHTTPException: 409 with ``Retry-After`` while another request of the same
            user with the same ``Idempotency-Key`` is running in this process.
    """
    aldero = started_aldero(request)
    scope = _idempotency_scope(request)
    if scope is not None:
        # The user is part of the scope, so two users who pick the same key never
        # share reference ids. JSON keeps the parts apart whatever they contain.
        scope = json.dumps([user.id, scope])
    session = CreditSession(
        aldero.ledger,
        aldero.refunds,
        user_id=user.id,
        idempotency_scope=scope,
    )

    # Two attempts with one key share reference ids, so one attempt's refund would
    # reverse the charge the other reports as paid. The second attempt gets 409 and
    # retries once the first has finished.
    # NOTE: this guard is per process; two workers that receive the same key at once
    # are not kept apart.
    if scope is not None:
        if scope in aldero.idempotent_requests:
            logger.info(
                "Request of user %s repeats a key still in progress; responding 409", user.id
            )
            raise AlderoHTTPException(
                409,
                "A request with this Idempotency-Key is still in progress",
                headers={"Retry-After": "1"},
            )
        aldero.idempotent_requests.add(scope)

    try:
        yield session
    except BaseException as error:
        await session.refund_all(f"the request failed with {type(error).__name__}")
        raise
    finally:
        # NOTE: a deduction still in flight here, for example beside a task of
        # asyncio.gather that raised, is refunded when it lands, after the key is
        # released. A retry with the same key in that window can replay that charge
        # as paid and then see it refunded.
        if scope is not None:
            aldero.idempotent_requests.discard(scope)


Credits = Annotated[CreditSession, Depends(credit_session)]


class CreditCharge:
    """
    A dependency that deducts credits before the handler runs.

    ``amount`` is a number of credits or a function of the request that returns one,
    for example a page count read from a header or a path parameter.
    """

    def __init__(
        self,
        amount: int | Callable[[Request], int | Awaitable[int]],
        description: str,
    ) -> None:
        self.amount = amount
        self.description = description

    async def __call__(self, request: Request, credits: Credits) -> CreditSession:
        amount = self.amount
        if callable(amount):
            computed = amount(request)
            amount = await computed if isinstance(computed, Awaitable) else computed

        await credits.deduct(amount, self.description)
        return credits


def deduct_credits(
    amount: int | Callable[[Request], int | Awaitable[int]], description: str
) -> CreditCharge:
    """
    Return a dependency that deducts ``amount`` credits before the handler runs.

    A short balance gets a 402 response, and the handler does not run. A handler that
    raises afterwards gets the credits refunded like any deduction of ``Credits``.
    """
    return CreditCharge(amount, description)


async def notification_sender(request: Request) -> AsyncIterator[NotificationSender]:
    """
    Yield the request's notification sender and start its queued sends if the handler succeeded.
    """
    aldero = started_aldero(request)
    scope = _idempotency_scope(request)
    sender = NotificationSender(
        aldero.notifications,
        aldero.background_sends,
        idempotency_digest=idempotency_digest(scope) if scope is not None else None,
        requesting_user_id=lambda: recorded_user_id(request),
    )
    try:
        yield sender
    except BaseException:
        sender.discard()
        raise
    sender.flush()


Notifier = Annotated[NotificationSender, Depends(notification_sender)]


def _idempotency_scope(request: Request) -> str | None:
    key = request.headers.get("idempotency-key")
    if key is None:
        return None
    if not key.strip() or len(key) > MAX_IDEMPOTENCY_KEY_LENGTH:
        raise AlderoHTTPException(
            422,
            "Invalid Idempotency-Key header",
            reason=f"the key must be 1 to {MAX_IDEMPOTENCY_KEY_LENGTH} characters, "
            "for example a UUID generated once per logical request",
        )
    # The route is part of the scope, so one key reused on two routes charges both.
    return json.dumps([request.method, request.url.path, key])
