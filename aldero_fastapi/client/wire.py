"""The Aldero HTTP API contract, version 1: URLs, headers, query fields and error statuses.

Every detail of the wire that is not a JSON field of a model in ``aldero_fastapi.models``
lives here, so that the client can follow the hosted API by changing this module alone.
"""

from __future__ import annotations

import email.utils
import functools
import importlib.metadata
import math
import time
from typing import Any
from urllib.parse import quote

import httpx

from aldero_fastapi.errors import (
    AlderoAPIError,
    ConflictError,
    ForbiddenError,
    IdempotencyMismatchError,
    InsufficientCreditsError,
    InvalidRequestError,
    NotFoundError,
    RateLimitedError,
    ServerError,
    UnauthorizedError,
)
from aldero_fastapi.models import Product, WireModel

__all__ = [
    "AUTHORIZATION_HEADER",
    "IDEMPOTENCY_KEY_HEADER",
    "IDEMPOTENCY_MISMATCH_CODE",
    "PRODUCTS_PATH",
    "REQUEST_ID_HEADER",
    "REQUEST_IN_PROGRESS_CODE",
    "RETRYABLE_SERVER_STATUSES",
    "SEND_NOTIFICATION_PATH",
    "USER_AGENT_HEADER",
    "ProductCatalogue",
    "credits_path",
    "entitlements_path",
    "error_from_response",
    "hosted_base_url",
    "ledger_query",
    "parse_retry_after",
    "sync_path",
    "user_agent",
    "was_replayed",
]

AUTHORIZATION_HEADER = "Authorization"
USER_AGENT_HEADER = "User-Agent"
REQUEST_ID_HEADER = "X-Request-Id"
IDEMPOTENCY_KEY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
RETRY_AFTER_HEADER = "Retry-After"
CONTENT_TYPE_HEADER = "Content-Type"
JSON_CONTENT_TYPE = "application/json"

PRODUCTS_PATH = "/billing/products"
SEND_NOTIFICATION_PATH = "/notifications/send"

REQUEST_IN_PROGRESS_CODE = "request_in_progress"
IDEMPOTENCY_MISMATCH_CODE = "idempotency_mismatch"

# 500 is left out because the service returns it for a bug that a retry would hit again.
RETRYABLE_SERVER_STATUSES = frozenset({502, 503, 504})

# Codes used when an error body carries none, for example an HTML page from a proxy.
DEFAULT_ERROR_CODES = {
    400: "bad_request",
    401: "unauthorized",
    402: "insufficient_credits",
    403: "forbidden",
    404: "not_found",
    409: "conflict",
    422: "invalid_request",
    429: "rate_limited",
    500: "internal_error",
    502: "bad_gateway",
    503: "service_unavailable",
    504: "gateway_timeout",
}


class ProductCatalogue(WireModel):
    """
    The body of ``GET /billing/products``.
    """

    products: tuple[Product, ...] = ()


def hosted_base_url(domain: str, tenant_slug: str) -> str:
    """Return the base URL of a tenant on the hosted service."""
    return f"https://{domain.strip('/')}/v1/tenants/{quote(tenant_slug, safe='')}"


@functools.cache
def user_agent() -> str:
    """Return the User-Agent of this package, ``aldero-fastapi/<version>``."""
    try:
        version = importlib.metadata.version("aldero-fastapi")
    except importlib.metadata.PackageNotFoundError:
        # Running from a source tree that was never installed.
        version = "0"
    return f"aldero-fastapi/{version}"


def _user_path(user_id: str, suffix: str) -> str:
    if not user_id:
        raise ValueError("user_id must not be empty; pass the id of the user in your app")
    if user_id in (".", ".."):
        # URL normalization, in httpx and in proxies, removes these segments even when
        # they are percent-encoded, so the request would reach another route.
        raise ValueError(f"user_id {user_id!r} cannot be sent in a URL path; use another id")
    return f"/billing/users/{quote(user_id, safe='')}/{suffix}"


def entitlements_path(user_id: str) -> str:
    """Return the path of a user's entitlements. Raise ValueError for an empty id."""
    return _user_path(user_id, "entitlements")


def credits_path(user_id: str) -> str:
    """Return the path of a user's credit ledger. Raise ValueError for an empty id."""
    return _user_path(user_id, "credits")


def sync_path(user_id: str) -> str:
    """Return the path that syncs a user's store purchases. Raise ValueError for an empty id."""
    return _user_path(user_id, "sync")


def ledger_query(limit: int | None, cursor: str | None) -> dict[str, str]:
    """Return the query parameters of a ledger page request, without unset ones."""
    query: dict[str, str] = {}
    if limit is not None:
        query["limit"] = str(limit)
    if cursor is not None:
        query["cursor"] = cursor
    return query


def was_replayed(headers: httpx.Headers) -> bool:
    """Return whether the service replayed a stored result instead of applying the request."""
    value: str = headers.get(REPLAYED_HEADER, "")
    return value.strip().lower() == "true"


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """
    Return the wait in seconds that a ``Retry-After`` header requests, or None.

    The header contains either seconds or an HTTP date. A date in the past gives 0, and a
    value that is neither gives None. ``now`` is a Unix time, the current time by default.
    """
    if value is None or not value.strip():
        return None

    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if not math.isfinite(seconds):
            return None
        return max(0.0, seconds)

    try:
        moment = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        # RFC 9110 dates are always GMT, but parsedate_to_datetime returns a naive
        # datetime for "-0000", which timestamp() would read as local time.
        return None
    current = time.time() if now is None else now
    return max(0.0, moment.timestamp() - current)


def _int_or_zero(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return 0


def error_from_response(
    response: httpx.Response,
    data: Any,
    *,
    service: str,
    method: str,
    path: str,
    request_id: str,
    user_id: str | None,
) -> AlderoAPIError:
    """
    Build the exception for an error response.

    ``data`` is the parsed JSON body, or None when the body is not JSON. The service
    sends ``{"error": {"code", "message", ...}}``. Fields other than ``code`` and
    ``message`` go to ``details``. A body of any other shape still gives the exception
    class of the status, with a default code.
    """
    status = response.status_code
    error_body = data.get("error") if isinstance(data, dict) else None

    code: str | None = None
    service_message: str | None = None
    details: dict[str, Any] = {}
    if isinstance(error_body, dict):
        raw_code = error_body.get("code")
        raw_message = error_body.get("message")
        code = raw_code if isinstance(raw_code, str) and raw_code else None
        service_message = raw_message if isinstance(raw_message, str) and raw_message else None
        details = {
            key: value for key, value in error_body.items() if key not in ("code", "message")
        }

    if code is None:
        code = DEFAULT_ERROR_CODES.get(status, "server_error" if status >= 500 else "http_error")
    if service_message is None:
        reason = response.reason_phrase or "no reason phrase"
        service_message = f"{reason} (the response body contains no Aldero error object)"
    message = (
        f"Aldero {service} API returned {status} {code} for {method} {path}: {service_message}"
    )

    retry_after = parse_retry_after(response.headers.get(RETRY_AFTER_HEADER))
    common: dict[str, Any] = {
        "status_code": status,
        "code": code,
        "request_id": request_id,
        "details": details,
    }

    if status == 401:
        return UnauthorizedError(message, **common)
    if status == 402:
        # NOTE: balance and required are 0 when the body leaves them out.
        return InsufficientCreditsError(
            message,
            balance=_int_or_zero(details.get("balance")),
            required=_int_or_zero(details.get("required")),
            user_id=user_id,
            **common,
        )
    if status == 403:
        return ForbiddenError(message, **common)
    if status == 404:
        return NotFoundError(message, **common)
    if status == 409:
        return ConflictError(message, retry_after=retry_after, **common)
    if status == 422 and code == IDEMPOTENCY_MISMATCH_CODE:
        return IdempotencyMismatchError(message, **common)
    if status == 422:
        return InvalidRequestError(message, **common)
    if status == 429:
        return RateLimitedError(message, retry_after=retry_after, **common)
    if status >= 500:
        return ServerError(message, retry_after=retry_after, **common)
    return AlderoAPIError(message, **common)
