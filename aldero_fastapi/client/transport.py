"""Sending API calls: authentication headers, retries, and mapping failures to exceptions."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
import httpx
from pydantic import BaseModel, ValidationError

from aldero_fastapi.client import wire
from aldero_fastapi.client.keys import Service, require_service, service_of_key
from aldero_fastapi.client.retry import (
    RetryPolicy,
    failure_reason,
    is_retryable,
    retry_after_of,
)
from aldero_fastapi.errors import (
    AlderoAPIError,
    AlderoConnectionError,
    AlderoError,
    AlderoTimeoutError,
)
from aldero_fastapi.log_throttle import LogThrottle
from aldero_fastapi.request_context import request_id_for_call

__all__ = ["ApiCall", "ApiResponse", "ApiTransport", "encode_json"]

logger = logging.getLogger("aldero_fastapi.client")

ModelT = TypeVar("ModelT", bound=BaseModel)

REDACTED = "[redacted]"


def encode_json(body: Any) -> bytes:
    """Encode a request body once, so that every retry sends the same bytes."""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


@dataclass(frozen=True, slots=True)
class ApiCall:
    """
    One logical API call, sent once or, when ``idempotent`` is True, retried.

    ``path`` is relative to the base URL and already percent-encoded. ``user_id`` only
    goes into the exceptions.
    """

    service: Service
    method: str
    path: str
    idempotent: bool
    body: bytes | None = None
    query: dict[str, str] | None = None
    idempotency_key: str | None = None
    user_id: str | None = None


@dataclass(frozen=True, slots=True)
class ApiResponse:
    """
    A successful response with its JSON body parsed.
    """

    call: ApiCall
    status_code: int
    headers: httpx.Headers
    data: Any
    request_id: str

    @property
    def replayed(self) -> bool:
        """Whether the service returned a stored result of an earlier identical request."""
        return wire.was_replayed(self.headers)

    def parse(self, model: type[ModelT]) -> ModelT:
        """Validate the body as ``model``. Raise AlderoAPIError ``invalid_response`` if it fails."""
        try:
            return model.model_validate(self.data)
        except ValidationError as error:
            problems = "; ".join(
                f"{'.'.join(str(part) for part in detail['loc']) or 'body'}: {detail['msg']}"
                for detail in error.errors(include_input=False, include_url=False)[:3]
            )
            raise invalid_response(
                self.call,
                self.status_code,
                self.request_id,
                f"the body does not match {model.__name__} ({problems})",
            ) from error


def invalid_response(call: ApiCall, status: int, request_id: str, problem: str) -> AlderoAPIError:
    """Build the exception for a success status whose body this client cannot read."""
    return AlderoAPIError(
        f"Aldero {call.service} API returned {status} for {call.method} {call.path} with an "
        f"invalid body: {problem}. The hosted API may have changed; update aldero-fastapi",
        status_code=status,
        code="invalid_response",
        request_id=request_id,
    )


def _redact(value: Any, secret: str) -> Any:
    if isinstance(value, str):
        return value.replace(secret, REDACTED)
    if isinstance(value, dict):
        return {key: _redact(item, secret) for key, item in value.items()}
    if isinstance(value, list):
        return [_redact(item, secret) for item in value]
    return value


class ApiTransport:
    """
    Sends API calls over one ``httpx.AsyncClient`` with the key of one service.

    The headers are built once. Each call gets one ``X-Request-Id`` that every retry
    reuses. At most ``max_connections`` requests of this transport are in flight, and
    later ones wait for a slot up to the pool timeout. An ``http_client`` passed in is
    shared and never closed here. Otherwise this transport creates the client and
    closes it in ``aclose``.
    """

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        timeout: httpx.Timeout,
        retry_policy: RetryPolicy,
        http_client: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        max_connections: int = 100,
    ) -> None:
        self.base_url = base_url
        self.key_service = service_of_key(api_key)
        self.retry_policy = retry_policy
        self._api_key = api_key
        self._timeout = timeout
        self._headers = {
            wire.AUTHORIZATION_HEADER: f"Bearer {api_key}",
            wire.USER_AGENT_HEADER: wire.user_agent(),
            "Accept": wire.JSON_CONTENT_TYPE,
        }

        # NOTE: the slots belong to this transport, so two clients that share one
        # http_client may have up to twice max_connections requests in flight.
        self._request_slots = asyncio.Semaphore(max_connections)
        # In an outage every call retries, so the retry warnings are rate-limited.
        self._retry_log = LogThrottle()
        self._owns_http_client = http_client is None
        if http_client is None:
            # Every connection may stay open, because a server shares this client between
            # concurrent requests. Idle connections close after 4 s, before uvicorn's
            # default keep-alive timeout of 5 s, because a connection that the server
            # closes while it is being reused fails a POST that is never retried.
            limits = httpx.Limits(
                max_connections=max_connections,
                max_keepalive_connections=max_connections,
                keepalive_expiry=4.0,
            )
            http_client = httpx.AsyncClient(timeout=timeout, limits=limits, transport=transport)
        self._http_client = http_client

    def __repr__(self) -> str:
        return f"ApiTransport(base_url={self.base_url!r}, service={self.key_service!r})"

    @property
    def is_closed(self) -> bool:
        """Whether the HTTP client is closed, by this transport or by its owner."""
        return self._http_client.is_closed

    async def aclose(self) -> None:
        """Close the HTTP client unless it was passed in by the caller."""
        if self._owns_http_client:
            await self._http_client.aclose()

    async def send(self, call: ApiCall) -> ApiResponse:
        """
        Send ``call``, retrying it by the retry policy when it is idempotent.

        Raises:
            ConfigurationError: the key belongs to another service; nothing was sent.
            AlderoAPIError: the service responded with an error status, or with a body
                this client cannot read.
            AlderoTransportError: no response arrived.
        """
        require_service(self.key_service, call.service)

        request_id = request_id_for_call()
        url = self.base_url + call.path
        headers = self._headers_for(call, request_id)
        max_attempts = self.retry_policy.max_attempts if call.idempotent else 1

        attempt = 1
        while True:
            try:
                return await self._send_once(call, url, headers, request_id, attempt, max_attempts)
            except AlderoError as error:
                if attempt >= max_attempts or not is_retryable(error):
                    raise
                delay = self._delay_before_retry(call, error, attempt, request_id)
                if delay is None:
                    raise

            attempt += 1
            await self.retry_policy.sleep(delay)

    def _headers_for(self, call: ApiCall, request_id: str) -> dict[str, str]:
        headers = dict(self._headers)
        headers[wire.REQUEST_ID_HEADER] = request_id
        if call.body is not None:
            headers[wire.CONTENT_TYPE_HEADER] = wire.JSON_CONTENT_TYPE
        if call.idempotency_key is not None:
            headers[wire.IDEMPOTENCY_KEY_HEADER] = call.idempotency_key
        return headers

    def _delay_before_retry(
        self, call: ApiCall, error: AlderoError, attempt: int, request_id: str
    ) -> float | None:
        policy = self.retry_policy
        reason = failure_reason(error)
        retry_after = retry_after_of(error)

        if retry_after is not None and retry_after > policy.max_retry_after_seconds:
            logger.warning(
                "Not retrying Aldero %s %s after %s: the service asked to wait %.1f s, "
                "more than max_retry_after_seconds=%.1f (request id %s)",
                call.method,
                call.path,
                reason,
                retry_after,
                policy.max_retry_after_seconds,
                request_id,
            )
            return None

        delay = retry_after if retry_after is not None else policy.backoff_delay(attempt)
        self._retry_log.log(
            logger,
            logging.WARNING,
            (call.method, reason),
            "Retrying Aldero %s %s after %s: attempt %d/%d in %.3f s (request id %s)",
            call.method,
            call.path,
            reason,
            attempt + 1,
            policy.max_attempts,
            delay,
            request_id,
        )
        return delay

    async def _send_once(
        self,
        call: ApiCall,
        url: str,
        headers: dict[str, str],
        request_id: str,
        attempt: int,
        max_attempts: int,
    ) -> ApiResponse:
        started = time.perf_counter()
        try:
            async with self._request_slot():
                response = await self._http_client.request(
                    call.method,
                    url,
                    content=call.body,
                    params=call.query,
                    headers=headers,
                    timeout=self._timeout,
                )
        except httpx.TransportError as error:
            elapsed_ms = (time.perf_counter() - started) * 1000
            logger.debug(
                "Aldero %s %s failed after %.1f ms with %s (attempt %d/%d, request id %s)",
                call.method,
                call.path,
                elapsed_ms,
                type(error).__name__,
                attempt,
                max_attempts,
                request_id,
            )
            raise self._transport_error(call, error, request_id) from error

        elapsed_ms = (time.perf_counter() - started) * 1000
        logger.debug(
            "Aldero %s %s returned %d in %.1f ms (attempt %d/%d, request id %s)",
            call.method,
            call.path,
            response.status_code,
            elapsed_ms,
            attempt,
            max_attempts,
            request_id,
        )

        return self._read_response(call, response, request_id)

    @asynccontextmanager
    async def _request_slot(self) -> AsyncIterator[None]:
        # Requests beyond the pool size wait here rather than in the httpx pool. In the
        # stampede benchmark (1,000 concurrent requests, a pool of 100, 2 vCPUs) every
        # connection attempt timed out while 900 requests waited in the pool. Waiting
        # here instead, all 1,000 requests were served.
        try:
            with anyio.fail_after(self._timeout.pool):
                await self._request_slots.acquire()
        except TimeoutError:
            raise httpx.PoolTimeout(
                f"no request slot became free within the pool timeout of {self._timeout.pool} s"
            ) from None

        try:
            yield
        finally:
            self._request_slots.release()

    def _read_response(
        self, call: ApiCall, response: httpx.Response, request_id: str
    ) -> ApiResponse:
        try:
            data = json.loads(response.content)
        except ValueError:
            # ValueError covers both malformed JSON and bytes that are not UTF-8.
            data = None
            body_is_json = False
        else:
            body_is_json = True

        if response.is_success:
            if not body_is_json:
                raise invalid_response(
                    call, response.status_code, request_id, "the body is not JSON"
                )
            return ApiResponse(call, response.status_code, response.headers, data, request_id)

        raise wire.error_from_response(
            response,
            _redact(data, self._api_key),
            service=call.service,
            method=call.method,
            path=call.path,
            request_id=request_id,
            user_id=call.user_id,
        )

    def _transport_error(
        self, call: ApiCall, error: httpx.TransportError, request_id: str
    ) -> AlderoError:
        detail = _redact(str(error), self._api_key) or "no details"
        if isinstance(error, httpx.TimeoutException):
            return AlderoTimeoutError(
                f"Aldero {call.service} API did not respond to {call.method} {call.path} "
                f"within the timeout ({type(error).__name__}: {detail})",
                request_id=request_id,
            )
        return AlderoConnectionError(
            f"Aldero {call.service} API request {call.method} {call.path} failed without a "
            f"response ({type(error).__name__}: {detail})",
            request_id=request_id,
        )
