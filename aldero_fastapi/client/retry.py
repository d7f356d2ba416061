"""Retry policy: which failed attempts to repeat, and how long to wait before each retry."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from random import Random

import httpx

from aldero_fastapi.client.wire import REQUEST_IN_PROGRESS_CODE, RETRYABLE_SERVER_STATUSES
from aldero_fastapi.errors import (
    AlderoError,
    AlderoTransportError,
    ConflictError,
    RateLimitedError,
    ServerError,
)

__all__ = ["RetryPolicy", "failure_reason", "is_retryable", "retry_after_of"]

Sleep = Callable[[float], Awaitable[None]]

# httpx exceptions after which a new attempt can succeed. The others, such as
# UnsupportedProtocol or LocalProtocolError, come from the request itself.
RETRYABLE_TRANSPORT_ERRORS = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)


def is_retryable(error: AlderoError) -> bool:
    """
    Return whether another attempt of an idempotent request can succeed after ``error``.

    Retried: timeouts, connection errors, dropped connections, 429, 502, 503, 504 and
    409 ``request_in_progress``. Never retried: 400, 401, 402, 403, 404, 422 and 500.
    """
    if isinstance(error, AlderoTransportError):
        return isinstance(error.__cause__, RETRYABLE_TRANSPORT_ERRORS)
    if isinstance(error, RateLimitedError):
        return True
    if isinstance(error, ServerError):
        return error.status_code in RETRYABLE_SERVER_STATUSES
    if isinstance(error, ConflictError):
        return error.code == REQUEST_IN_PROGRESS_CODE
    return False


def retry_after_of(error: AlderoError) -> float | None:
    """Return the wait in seconds that the service requested with ``error``, or None."""
    if isinstance(error, (RateLimitedError, ServerError, ConflictError)):
        return error.retry_after
    return None


def failure_reason(error: AlderoError) -> str:
    """Return a short reason for logs: the status and code, or the httpx exception class."""
    if error.status_code is not None:
        return f"{error.status_code} {error.code}"
    cause = error.__cause__
    return type(cause).__name__ if cause is not None else type(error).__name__


@dataclass
class RetryPolicy:
    """
    Number of retries and the wait before each one.

    The wait before retry ``n`` (counted from 1) is drawn uniformly from
    ``[0, min(max_backoff_seconds, backoff_seconds * 2 ** (n - 1))]`` ("full jitter"),
    unless the service sent ``Retry-After``. Then the wait is exactly that value, and a
    value above ``max_retry_after_seconds`` ends the retries, because a caller serving a
    web request is better off with the error than with a wait that long.
    """

    max_retries: int = 2
    backoff_seconds: float = 0.25
    max_backoff_seconds: float = 5.0
    max_retry_after_seconds: float = 30.0
    sleep: Sleep = asyncio.sleep
    random: Random = field(default_factory=Random)

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be 0 or more, got {self.max_retries}")
        if self.backoff_seconds < 0:
            raise ValueError(f"backoff_seconds must be 0 or more, got {self.backoff_seconds}")
        if self.max_backoff_seconds < 0:
            raise ValueError(
                f"max_backoff_seconds must be 0 or more, got {self.max_backoff_seconds}"
            )
        if self.max_retry_after_seconds < 0:
            raise ValueError(
                f"max_retry_after_seconds must be 0 or more, got {self.max_retry_after_seconds}"
            )

    @property
    def max_attempts(self) -> int:
        """Maximum number of attempts of an idempotent request, the first included."""
        return self.max_retries + 1

    def backoff_delay(self, retry_number: int) -> float:
        """Return a random wait in seconds before retry ``retry_number``, counted from 1."""
        # The exponent is capped so that a large max_retries cannot overflow the float.
        growth = 2.0 ** min(retry_number - 1, 60)
        ceiling = min(self.max_backoff_seconds, self.backoff_seconds * growth)
        return self.random.uniform(0.0, ceiling)
