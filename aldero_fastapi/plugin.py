"""The ``Aldero`` object: one per app, created at import, started by the app's lifespan."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import httpx
from fastapi import APIRouter, FastAPI

from aldero_fastapi.cache import EntitlementsCache
from aldero_fastapi.client import AlderoClient
from aldero_fastapi.credits import TrackedLedger, refund_call
from aldero_fastapi.errors import ConfigurationError
from aldero_fastapi.log_throttle import LogThrottle
from aldero_fastapi.notify import BackgroundSends
from aldero_fastapi.refunds import RefundQueue
from aldero_fastapi.settings import AlderoSettings, load_settings
from aldero_fastapi.webhooks import EventDeduplicator

if TYPE_CHECKING:
    from aldero_fastapi.auth import TokenVerifier
    from aldero_fastapi.cache import SharedCacheBackend
    from aldero_fastapi.client.billing import BillingAPI
    from aldero_fastapi.client.notifications import NotificationsAPI
    from aldero_fastapi.models import CreditAdjustmentResult, CreditAdjustmentType, SyncResult

__all__ = ["Aldero"]

logger = logging.getLogger("aldero_fastapi.plugin")

# How long shutdown waits for refunds and notifications still running in the background.
SHUTDOWN_DRAIN_SECONDS = 10.0


class Aldero:
    """
    The Aldero integration of one FastAPI app.

    Construct it at import time, pass ``aldero.lifespan`` to ``FastAPI`` and call
    ``aldero.install(app)``. Settings are read when the lifespan starts, so importing the
    app never fails on configuration::

        aldero = Aldero()
        app = FastAPI(lifespan=aldero.lifespan)
        aldero.install(app)

    ``user_resolver`` replaces the default bearer JWT check: any FastAPI dependency that
    returns an ``AuthenticatedUser``, a user id string, or None for no user (401).
    ``transport`` routes every call to the Aldero API through an httpx transport, for
    example ``httpx.ASGITransport`` around the emulator.
    """

    def __init__(
        self,
        settings: AlderoSettings | None = None,
        user_resolver: Callable[..., Any] | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._configured_settings = settings
        self.user_resolver = user_resolver
        self._transport = transport
        self._clock = clock
        self._started = False
        # Rate limit of the log lines that each request repeats while Aldero is down.
        self.outage_log = LogThrottle(clock=clock)

        # Set when the lifespan starts.
        self.settings: AlderoSettings
        self.http_client: httpx.AsyncClient
        self.billing: BillingAPI
        self.notifications: NotificationsAPI | None
        self.entitlements: EntitlementsCache
        self.token_verifier: TokenVerifier | None
        self.ledger: TrackedLedger
        self.refunds: RefundQueue
        self.background_sends: BackgroundSends
        # Idempotency scopes of the requests with credit sessions running right now.
        self.idempotent_requests: set[str]
        self.webhook_events: EventDeduplicator
        self._clients: list[AlderoClient] = []

    def configure(
        self,
        *,
        settings: AlderoSettings | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        """
        Replace the settings or the transport before the lifespan starts.

        Useful when the settings are only known at startup, for example an app that
        falls back to the emulator when no tenant is configured.
        """
        if self._started:
            raise RuntimeError("Aldero is already started; configure it before the lifespan runs")
        if settings is not None:
            self._configured_settings = settings
        if transport is not None:
            self._transport = transport

    @property
    def started(self) -> bool:
        """Whether the lifespan has started and not yet stopped."""
        return self._started

    def install(self, app: FastAPI) -> None:
        """Add the exception handlers, the request id middleware and the user resolver."""
        from aldero_fastapi.dependencies import current_user
        from aldero_fastapi.handlers import install_exception_handlers, install_request_id
        from aldero_fastapi.openapi import install_openapi_security
        from aldero_fastapi.overrides import install_user_aware_overrides

        app.state.aldero = self
        install_exception_handlers(app)
        install_request_id(app)
        install_openapi_security(app, current_user)
        install_user_aware_overrides(app, current_user)
        self._install_user_resolver(app)

    @asynccontextmanager
    async def lifespan(self, app: FastAPI) -> AsyncIterator[None]:
        """Run the clients and caches for the life of ``app``: ``FastAPI(lifespan=...)``."""
        app.state.aldero = self
        self._install_user_resolver(app)
        await self.start()
        try:
            yield
        finally:
            await self.aclose()

    async def start(self) -> None:
        """
        Read the settings and create the HTTP pool, the clients and the caches.

        Raises:
            ConfigurationError: a setting is missing or malformed; the message names it.
        """
        if self._started:
            return

        settings = self._configured_settings or load_settings()
        settings.require_tenant()
        self.settings = settings

        self.http_client = _http_client(settings, self._transport)
        billing_client = AlderoClient.from_settings(
            settings, service="billing", http_client=self.http_client
        )
        self._clients = [billing_client]
        self.billing = billing_client.billing

        self.notifications = None
        if settings.notification_api_key is not None:
            notification_client = AlderoClient.from_settings(
                settings, service="notifications", http_client=self.http_client
            )
            self._clients.append(notification_client)
            self.notifications = notification_client.notifications

        self.entitlements = EntitlementsCache(
            self.billing.get_entitlements,
            ttl_seconds=settings.entitlements_ttl_seconds,
            max_size=settings.entitlements_cache_size,
            stale_if_error_seconds=settings.entitlements_stale_if_error_seconds,
            clock=self._clock,
            backend=_shared_backend(settings),
        )
        await self.entitlements.start()
        self.ledger = TrackedLedger(self.billing, self.entitlements)
        self.refunds = RefundQueue(
            refund_call(self.ledger),
            max_attempts=settings.refund_max_attempts,
            backoff_seconds=settings.refund_backoff_seconds,
        )
        self.background_sends = BackgroundSends()
        self.idempotent_requests = set()
        self.webhook_events = EventDeduplicator()
        self.token_verifier = self._token_verifier(settings)

        self._started = True
        logger.info(
            "Aldero started for %s (notifications %s, entitlements TTL %.0f s, cache size %d)",
            settings.loggable_base_url,
            "on" if self.notifications is not None else "off",
            settings.entitlements_ttl_seconds,
            settings.entitlements_cache_size,
        )

    async def aclose(self) -> None:
        """Finish the background refunds and sends, then close the caches and the HTTP pool."""
        if not self._started:
            return
        self._started = False

        await self.refunds.drain(SHUTDOWN_DRAIN_SECONDS)
        await self.background_sends.drain(SHUTDOWN_DRAIN_SECONDS)
        if self.refunds.pending or self.refunds.failed:
            logger.error(
                "Aldero stopped with %d refunds unfinished and %d failed; reconcile them by hand",
                self.refunds.pending,
                self.refunds.failed,
            )
        await self.entitlements.aclose()
        for client in self._clients:
            await client.aclose()
        await self.http_client.aclose()
        logger.info("Aldero stopped")

    async def adjust_credits(
        self,
        user_id: str,
        *,
        type: CreditAdjustmentType,
        amount: int,
        description: str | None = None,
        reference_id: str | None = None,
    ) -> CreditAdjustmentResult:
        """Adjust a user's credits and update the cached balance from the response."""
        return await self.ledger.adjust_credits(
            user_id,
            type=type,
            amount=amount,
            description=description,
            reference_id=reference_id,
        )

    async def sync_user(self, user_id: str) -> SyncResult:
        """Sync the user's store purchases, then drop their cached entitlements."""
        result = await self.billing.sync_user(user_id)
        await self.entitlements.invalidate(user_id)
        logger.info(
            "Synced user %s: %d entitlements, %d errors",
            user_id,
            len(result.synced),
            len(result.errors),
        )
        return result

    def webhook_router(self, path: str = "/webhooks/aldero") -> APIRouter:
        """Return a router with the webhook endpoint at ``path``; include it in the app."""
        from aldero_fastapi.webhook_route import build_webhook_router

        return build_webhook_router(path)

    def _install_user_resolver(self, app: FastAPI) -> None:
        from aldero_fastapi.dependencies import current_user
        from aldero_fastapi.overrides import install_user_aware_overrides
        from aldero_fastapi.resolvers import coercing_resolver

        # Also at startup, for apps that replaced app.dependency_overrides after install().
        overrides = install_user_aware_overrides(app, current_user)
        if self.user_resolver is None:
            return

        # Kept beside the entries rather than as one, so that a test that clears
        # app.dependency_overrides does not switch the app back to bearer tokens. An
        # entry for current_user, such as override_user's, still wins.
        if overrides.user_resolver is None:
            overrides.user_resolver = coercing_resolver(self.user_resolver)

    def _token_verifier(self, settings: AlderoSettings) -> TokenVerifier | None:
        from aldero_fastapi.auth import TokenVerifier

        verifier = TokenVerifier.from_settings(settings, self.http_client)
        if verifier is None and self.user_resolver is None:
            logger.warning(
                "No user authentication is configured: routes that need CurrentUser respond "
                "503 until ALDERO_AUTH_JWT_SECRET or ALDERO_AUTH_JWKS_URL is set or a "
                "user_resolver is passed to Aldero()"
            )
        return verifier


def _http_client(
    settings: AlderoSettings, transport: httpx.AsyncBaseTransport | None
) -> httpx.AsyncClient:
    timeout = httpx.Timeout(settings.timeout_seconds, connect=settings.connect_timeout_seconds)
    limits = httpx.Limits(
        max_connections=settings.max_connections,
        max_keepalive_connections=settings.max_connections,
    )
    return httpx.AsyncClient(transport=transport, timeout=timeout, limits=limits)


def _shared_backend(settings: AlderoSettings) -> SharedCacheBackend | None:
    if settings.cache_url is None:
        return None

    url = settings.cache_url.get_secret_value()
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigurationError(
            "ALDERO_CACHE_URL must be a Redis URL starting with redis://, rediss:// or unix://"
        )
    try:
        from aldero_fastapi.cache_redis import RedisCacheBackend
    except ImportError as error:
        raise ConfigurationError(
            "ALDERO_CACHE_URL is set but the redis package is missing; install "
            "aldero-fastapi[redis]"
        ) from error
    return RedisCacheBackend.from_url(url)
