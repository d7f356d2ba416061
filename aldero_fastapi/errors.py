"""Exceptions raised by the Aldero client and the FastAPI plugin.

Every exception derives from ``AlderoError``::

    AlderoError
    ├── ConfigurationError            invalid or missing settings, wrong key for a service
    ├── AlderoTransportError          no HTTP response was received
    │   ├── AlderoConnectionError     connection refused, reset or dropped
    │   └── AlderoTimeoutError        connect, read, write or pool timeout
    └── AlderoAPIError                the API answered with an error status
        ├── UnauthorizedError         401: unknown or missing API key
        ├── InsufficientCreditsError  402: the balance does not cover a deduction
        ├── ForbiddenError            403: key of another service or tenant
        ├── NotFoundError             404: unknown template or route
        ├── ConflictError             409: the same reference id is still being processed
        ├── InvalidRequestError       422: invalid body or missing template variables
        │   └── IdempotencyMismatchError  422: a reference id reused with another body
        ├── RateLimitedError          429: too many requests, see ``retry_after``
        └── ServerError               5xx: a fault on the service side

Three more subclasses live next to the code that raises them:
``auth.InvalidTokenError`` (a rejected bearer token), ``jwks.AuthUnavailableError``
(no signing keys could be fetched yet) and ``webhooks.InvalidWebhookError`` (a webhook
that failed verification). Messages never contain an API key, a token or a webhook
secret.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AlderoAPIError",
    "AlderoConnectionError",
    "AlderoError",
    "AlderoTimeoutError",
    "AlderoTransportError",
    "ConfigurationError",
    "ConflictError",
    "ForbiddenError",
    "IdempotencyMismatchError",
    "InsufficientCreditsError",
    "InvalidRequestError",
    "NotFoundError",
    "RateLimitedError",
    "ServerError",
    "UnauthorizedError",
]


class AlderoError(Exception):
    """
    Base of every error raised by this package.

    ``status_code`` is the HTTP status of the service's response, or None when no
    response was received. ``code`` is the service's snake_case error code.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        code: str = "aldero_error",
        request_id: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.code = code
        self.request_id = request_id
        self.details: dict[str, Any] = details or {}

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status_code={self.status_code!r}, "
            f"code={self.code!r}, message={self.message!r})"
        )


class ConfigurationError(AlderoError, ValueError):
    """
    Invalid or missing settings, detected before any request is sent.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message, code="configuration_error")


class AlderoTransportError(AlderoError):
    """
    No HTTP response was received from the service.
    """


class AlderoConnectionError(AlderoTransportError):
    """
    The connection was refused, reset or dropped before a full response arrived.
    """


class AlderoTimeoutError(AlderoTransportError):
    """
    The service did not respond within the configured timeout.
    """


class AlderoAPIError(AlderoError):
    """
    The service responded with an error status.
    """


class UnauthorizedError(AlderoAPIError):
    """
    401: the API key is missing or unknown to the service.
    """


class InsufficientCreditsError(AlderoAPIError):
    """
    402: a deduction of ``required`` credits does not fit the user's ``balance``.
    """

    def __init__(
        self,
        message: str,
        *,
        balance: int,
        required: int,
        user_id: str | None = None,
        status_code: int | None = 402,
        code: str = "insufficient_credits",
        request_id: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(
            message,
            status_code=status_code,
            code=code,
            request_id=request_id,
            details=details,
        )
        self.balance = balance
        self.required = required
        self.user_id = user_id


class ForbiddenError(AlderoAPIError):
    """
    403: the key belongs to another service or another tenant.
    """


class NotFoundError(AlderoAPIError):
    """
    404: the template or route does not exist.
    """


class ConflictError(AlderoAPIError):
    """
    409: a request with the same reference id is still being processed.
    """

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class InvalidRequestError(AlderoAPIError):
    """
    422: the service rejected the body; ``details`` names the invalid fields.
    """


class IdempotencyMismatchError(InvalidRequestError):
    """
    422: a reference id or idempotency key was reused with a different body.
    """


class RateLimitedError(AlderoAPIError):
    """
    429: too many requests; ``retry_after`` is the wait in seconds the service asked for.
    """

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class ServerError(AlderoAPIError):
    """
    5xx: the service failed; ``retry_after`` is set when the service sent one.
    """

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after
