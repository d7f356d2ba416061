"""Exception handlers and request id propagation that ``Aldero.install`` adds to an app."""

from __future__ import annotations

import json
import logging

from fastapi import FastAPI, Request
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from aldero_fastapi.credits import REFUND_PENDING_CODE, TOO_MANY_RETRIES_CODE
from aldero_fastapi.errors import (
    AlderoAPIError,
    AlderoError,
    AlderoTransportError,
    ConfigurationError,
    ConflictError,
    ForbiddenError,
    IdempotencyMismatchError,
    InsufficientCreditsError,
    RateLimitedError,
    ServerError,
    UnauthorizedError,
)
from aldero_fastapi.http_errors import AlderoHTTPException
from aldero_fastapi.log_throttle import LogThrottle
from aldero_fastapi.request_context import current_request_id

__all__ = [
    "RequestIdMiddleware",
    "install_exception_handlers",
    "install_request_id",
    "outage_log_of",
    "retry_after_seconds",
]

logger = logging.getLogger("aldero_fastapi.handlers")

UNAVAILABLE_RETRY_AFTER_SECONDS = 5

MAX_REQUEST_ID_LENGTH = 128

# For apps without a started Aldero, because each Aldero instance has its own throttle.
_fallback_outage_log = LogThrottle()


def retry_after_seconds(error: AlderoError) -> int:
    """Return the whole seconds a client should wait: the service's Retry-After, else 5."""
    seconds = getattr(error, "retry_after", None)
    if isinstance(seconds, (int, float)) and seconds > 0:
        return max(1, round(seconds))
    return UNAVAILABLE_RETRY_AFTER_SECONDS


def outage_log_of(request: Request) -> LogThrottle:
    """Return the throttle of the lines that each request repeats while Aldero is down."""
    throttle = getattr(getattr(request.app.state, "aldero", None), "outage_log", None)
    return throttle if isinstance(throttle, LogThrottle) else _fallback_outage_log


def install_exception_handlers(app: FastAPI) -> None:
    """Turn the plugin's errors into JSON responses instead of 500s with a trace."""
    app.add_exception_handler(AlderoHTTPException, _http_exception)  # type: ignore[arg-type]
    app.add_exception_handler(InsufficientCreditsError, _insufficient_credits)  # type: ignore[arg-type]
    app.add_exception_handler(AlderoError, _aldero_error)  # type: ignore[arg-type]
    # Replace FastAPI's default handler, but not one the app installed itself.
    current = app.exception_handlers.get(RequestValidationError)
    if current in (None, request_validation_exception_handler):
        app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]


def install_request_id(app: FastAPI) -> None:
    """Carry the incoming ``X-Request-Id`` header to every upstream call of the request."""
    installed: list[object] = [middleware.cls for middleware in app.user_middleware]
    if RequestIdMiddleware not in installed:
        app.add_middleware(RequestIdMiddleware)


class RequestIdMiddleware:
    """
    Pure ASGI middleware that stores the request's ``X-Request-Id`` in a context variable.

    Only a printable ASCII id of at most 128 characters is propagated; anything else
    is ignored and the client generates its own id per call.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        request_id = _request_id(scope)
        if request_id is None:
            await self.app(scope, receive, send)
            return

        token = current_request_id.set(request_id)
        try:
            await self.app(scope, receive, send)
        finally:
            current_request_id.reset(token)


def _request_id(scope: Scope) -> str | None:
    headers: list[tuple[bytes, bytes]] = scope["headers"]
    for name, value in headers:
        if name == b"x-request-id":
            text = value.decode("latin-1")
            # Only printable ASCII, because the id is sent on in upstream request headers.
            if 0 < len(text) <= MAX_REQUEST_ID_LENGTH and text.isascii() and text.isprintable():
                return text
            return None
    return None


async def _http_exception(_request: Request, error: AlderoHTTPException) -> JSONResponse:
    return JSONResponse(error.body, status_code=error.status_code, headers=error.headers)


async def _insufficient_credits(request: Request, error: InsufficientCreditsError) -> JSONResponse:
    logger.info(
        "Insufficient credits for %s %s: user %s has %d, needs %d",
        request.method,
        request.url.path,
        error.user_id,
        error.balance,
        error.required,
    )
    return JSONResponse(
        {"error": "Insufficient credits", "balance": error.balance, "required": error.required},
        status_code=402,
    )


async def _validation_error(_request: Request, error: RequestValidationError) -> Response:
    # FastAPI's default handler echoes each invalid input, which fails to render for
    # NaN, infinities and lone surrogates (a 500) and can echo megabytes back. This
    # one keeps FastAPI's shape without the inputs, and escapes non-ASCII text because
    # a location can name a body key that contains a lone surrogate.
    details = [
        {
            "type": str(item.get("type", "")),
            "loc": list(item.get("loc", ())),
            "msg": str(item.get("msg", "")),
        }
        for item in error.errors()
    ]
    body = json.dumps({"detail": details}, ensure_ascii=True, default=str)
    return Response(body, status_code=422, media_type="application/json")


async def _aldero_error(request: Request, error: AlderoError) -> JSONResponse:
    if isinstance(error, ConflictError) and error.code == TOO_MANY_RETRIES_CODE:
        logger.warning("%s %s: %s", request.method, request.url.path, error.message)
        return JSONResponse({"error": error.message}, status_code=409)

    if isinstance(error, ConflictError) and error.code == REFUND_PENDING_CODE:
        return JSONResponse(
            {"error": error.message},
            status_code=409,
            headers={"Retry-After": str(retry_after_seconds(error))},
        )

    if isinstance(error, (AlderoTransportError, ServerError, RateLimitedError, ConflictError)):
        retry_after = retry_after_seconds(error)
        outage_log_of(request).log(
            logger,
            logging.WARNING,
            ("unavailable", request.url.path, type(error).__name__),
            "Aldero unavailable during %s %s (%s, request %s); responding with 503",
            request.method,
            request.url.path,
            type(error).__name__,
            error.request_id,
        )
        return JSONResponse(
            {"error": "Aldero service unavailable"},
            status_code=503,
            headers={"Retry-After": str(retry_after)},
        )

    if isinstance(error, IdempotencyMismatchError):
        logger.info(
            "Idempotency key reused with a different request during %s %s",
            request.method,
            request.url.path,
        )
        return JSONResponse(
            {
                "error": "Idempotency-Key reused with a different request",
                "reason": "send a new Idempotency-Key for a request with a different body",
            },
            status_code=422,
        )

    if isinstance(error, (UnauthorizedError, ForbiddenError, ConfigurationError)):
        outage_log_of(request).log(
            logger,
            logging.ERROR,
            ("configuration", request.url.path, error.message),
            "The Aldero configuration of this app failed during %s %s: %s",
            request.method,
            request.url.path,
            error.message,
        )
        return JSONResponse({"error": "Aldero integration is misconfigured"}, status_code=503)

    status = error.status_code if isinstance(error, AlderoAPIError) else None
    logger.error(
        "Aldero request failed during %s %s with %s %s: %s",
        request.method,
        request.url.path,
        status,
        error.code,
        error.message,
    )
    # The upstream message stays in the log: it can name internal ids and values.
    return JSONResponse({"error": "Aldero request failed", "code": error.code}, status_code=502)
