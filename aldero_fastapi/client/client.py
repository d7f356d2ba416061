"""The async client of the Aldero billing and notification APIs."""

from __future__ import annotations

import asyncio
from random import Random
from types import TracebackType
from typing import Literal

import httpx
from pydantic import SecretStr

from aldero_fastapi.client import wire
from aldero_fastapi.client.billing import BillingAPI
from aldero_fastapi.client.keys import KEY_SETTINGS, Service, check_key_format
from aldero_fastapi.client.notifications import NotificationsAPI
from aldero_fastapi.client.retry import RetryPolicy, Sleep
from aldero_fastapi.client.transport import ApiTransport
from aldero_fastapi.errors import ConfigurationError
from aldero_fastapi.settings import AlderoSettings

__all__ = ["AlderoClient"]


class AlderoClient:
    """
    Async client of one tenant of the Aldero API, with one service's key.

    A ``bil_`` key serves ``client.billing`` and an ``ntf_`` key serves
    ``client.notifications``. Calling the other service raises ConfigurationError before
    any request is sent. Use the client as an async context manager, or call
    ``aclose()``.

    Args:
        domain: Host of the hosted service, such as ``aldero.io``; used with
            ``tenant_slug`` when ``base_url`` is not given.
        tenant_slug: Tenant of the app, such as ``myapp``.
        api_key: The service's key. It is sent in the Authorization header only, and
            never appears in a repr, log line or exception message.
        base_url: Full API base URL, such as ``http://127.0.0.1:8001/v1/tenants/myapp``
            for an emulator. It takes precedence over ``domain`` and ``tenant_slug``.
        timeout: Timeout of each attempt in seconds, or an ``httpx.Timeout``.
        max_retries: Retries of an idempotent call after its first attempt.
        backoff_seconds: Upper bound of the random wait before the first retry; it
            doubles for each further retry.
        max_backoff_seconds: Cap of that upper bound.
        max_retry_after_seconds: Longest ``Retry-After`` wait the client honours; a
            longer one raises the error instead.
        max_connections: Maximum number of requests in flight, and the size of the
            connection pool the client creates. Requests beyond it wait up to the
            pool timeout, then raise ``AlderoTimeoutError``.
        transport: httpx transport of the pool the client creates, for example an
            ``httpx.MockTransport`` in tests. Unused with ``http_client``.
        http_client: A shared pool. The client sends through it and never closes it.
        sleep: Coroutine function that waits between retries; tests pass a recorder.
        random: Random source of the backoff jitter.
    """

    def __init__(
        self,
        *,
        domain: str | None = None,
        tenant_slug: str | None = None,
        api_key: str | SecretStr,
        base_url: str | None = None,
        timeout: float | httpx.Timeout = 10.0,
        max_retries: int = 2,
        backoff_seconds: float = 0.25,
        max_backoff_seconds: float = 5.0,
        max_retry_after_seconds: float = 30.0,
        max_connections: int = 100,
        transport: httpx.AsyncBaseTransport | None = None,
        http_client: httpx.AsyncClient | None = None,
        sleep: Sleep = asyncio.sleep,
        random: Random | None = None,
    ) -> None:
        key = api_key.get_secret_value() if isinstance(api_key, SecretStr) else api_key
        key = key.strip()
        check_key_format(key)

        if transport is not None and http_client is not None:
            raise ConfigurationError(
                "Pass either transport or http_client, not both: a shared http_client "
                "already has its transport"
            )
        if max_connections < 1:
            raise ConfigurationError(f"max_connections must be 1 or more, got {max_connections}")

        try:
            retry_policy = RetryPolicy(
                max_retries=max_retries,
                backoff_seconds=backoff_seconds,
                max_backoff_seconds=max_backoff_seconds,
                max_retry_after_seconds=max_retry_after_seconds,
                sleep=sleep,
                random=random if random is not None else Random(),
            )
        except ValueError as error:
            raise ConfigurationError(str(error)) from None

        self._transport = ApiTransport(
            base_url=_resolve_base_url(base_url, domain, tenant_slug),
            api_key=key,
            timeout=timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout),
            retry_policy=retry_policy,
            http_client=http_client,
            transport=transport,
            max_connections=max_connections,
        )
        self.billing = BillingAPI(self._transport)
        self.notifications = NotificationsAPI(self._transport)

    @classmethod
    def from_settings(
        cls,
        settings: AlderoSettings,
        *,
        service: Literal["billing", "notifications"],
        http_client: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> AlderoClient:
        """
        Create a client for one service from ``AlderoSettings``.

        Raises:
            ConfigurationError: the service's key or the base URL is not set.
        """
        key = settings.billing_api_key if service == "billing" else settings.notification_api_key
        if key is None:
            raise ConfigurationError(
                f"{KEY_SETTINGS[service]} is not set, so the Aldero {service} client cannot "
                "be created; set it in the environment or in .env"
            )

        base_url = settings.resolved_base_url
        if base_url is None:
            raise ConfigurationError(
                "The Aldero API base URL is not configured; set ALDERO_BASE_URL, or "
                "ALDERO_DOMAIN and ALDERO_TENANT_SLUG"
            )

        return cls(
            api_key=key,
            base_url=base_url,
            timeout=httpx.Timeout(
                settings.timeout_seconds, connect=settings.connect_timeout_seconds
            ),
            max_retries=settings.max_retries,
            backoff_seconds=settings.retry_backoff_seconds,
            max_backoff_seconds=settings.retry_max_backoff_seconds,
            max_connections=settings.max_connections,
            http_client=http_client,
            transport=transport,
        )

    @property
    def base_url(self) -> str:
        """The API base URL of the tenant, without a trailing slash."""
        return self._transport.base_url

    @property
    def service(self) -> Service | None:
        """The service the key belongs to, or None for a key without a known prefix."""
        return self._transport.key_service

    @property
    def is_closed(self) -> bool:
        """Whether the connection pool is closed."""
        return self._transport.is_closed

    def __repr__(self) -> str:
        return f"AlderoClient(base_url={self.base_url!r}, service={self.service!r})"

    async def aclose(self) -> None:
        """Close the connection pool, unless it was passed in as ``http_client``."""
        await self._transport.aclose()

    async def __aenter__(self) -> AlderoClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()


def _resolve_base_url(base_url: str | None, domain: str | None, tenant_slug: str | None) -> str:
    if base_url is not None and base_url.strip():
        resolved = base_url.strip().rstrip("/")
    elif domain and tenant_slug:
        resolved = wire.hosted_base_url(domain, tenant_slug)
    else:
        raise ConfigurationError(
            "The Aldero API base URL is missing; pass base_url, or both domain (for "
            "example 'aldero.io') and tenant_slug (for example 'myapp')"
        )

    try:
        url = httpx.URL(resolved)
    except httpx.InvalidURL:
        url = None
    if url is None or url.scheme not in ("http", "https") or not url.host:
        raise ConfigurationError(
            f"base_url {resolved!r} is invalid; it must be an http or https URL such as "
            "'https://aldero.io/v1/tenants/myapp'"
        )
    return resolved
