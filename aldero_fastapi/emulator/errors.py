"""Aldero error responses and the handlers that turn every failure into one.

Every error body has the form ``{"error": {"code": ..., "message": ..., **extra}}``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response

from .connection_drop import ConnectionDroppedError

logger = logging.getLogger(__name__)

_MAX_VALUE_LENGTH = 80

_GENERIC_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    500: "internal_error",
    502: "bad_gateway",
    503: "service_unavailable",
    504: "gateway_timeout",
}


class ApiError(Exception):
    """An expected failure that the API returns as an Aldero error body."""

    def __init__(
        self,
        status_code: int,
        code: str,
        message: str,
        *,
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code
        self.message = message
        self.headers = dict(headers or {})
        self.extra = extra

    def to_response(self) -> JSONResponse:
        return error_response(
            self.status_code, self.code, self.message, headers=self.headers, **self.extra
        )


def error_response(
    status_code: int,
    code: str,
    message: str,
    *,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body = {"error": {"code": code, "message": message, **extra}}
    return JSONResponse(body, status_code=status_code, headers=dict(headers or {}))


def generic_error_code(status_code: int) -> str:
    """Return the error code for a status that has no more specific code."""
    return _GENERIC_CODES.get(status_code, "error")


def invalid_field(field: str, value: object, reason: str) -> ApiError:
    """Build a 422 ``validation_error`` for one field that broke a rule of the API."""
    message = f"{field} is invalid: {reason} Got {describe_value(value)}."
    return ApiError(422, "validation_error", message, fields=[{"field": field, "message": reason}])


def describe_value(value: object) -> str:
    """Return a short ``repr`` of a request value for use in an error message."""
    text = repr(value)
    if len(text) > _MAX_VALUE_LENGTH:
        text = text[: _MAX_VALUE_LENGTH - 3] + "..."
    return text


def validation_error_response(errors: Sequence[Any]) -> JSONResponse:
    """Convert pydantic or FastAPI validation errors into one 422 ``validation_error``."""
    fields = [_describe_error(error) for error in errors]
    if not fields:
        fields = [{"field": "body", "message": "The request is invalid."}]

    message = fields[0]["sentence"]
    if len(fields) > 1:
        message += f" {len(fields) - 1} more field(s) are invalid, see 'fields'."

    listed = [{"field": item["field"], "message": item["message"]} for item in fields]
    return error_response(422, "validation_error", message, fields=listed)


def _describe_error(error: Mapping[str, Any]) -> dict[str, str]:
    location = [str(part) for part in error.get("loc", ())]
    source = location[0] if location else "body"
    field = ".".join(location[1:]) or source
    error_type = error.get("type", "")
    detail = str(error.get("msg", "Invalid value"))

    if error_type == "json_invalid":
        reason = str(error.get("ctx", {}).get("error", detail))
        sentence = (
            f"The request body is not valid JSON ({reason} at position {field}). "
            "Send a JSON object."
        )
        return {"field": "body", "message": f"Invalid JSON: {reason}.", "sentence": sentence}

    if error_type == "missing":
        sentence = f"{field} is missing. Add it to the request {_source_name(source)}."
        return {"field": field, "message": "Field required.", "sentence": sentence}

    if error_type == "extra_forbidden":
        sentence = f"{field} is not a known field. Remove it or check its spelling."
        return {"field": field, "message": "Unknown field.", "sentence": sentence}

    value = describe_value(error.get("input"))
    sentence = f"{field} is invalid: {detail}, got {value}. Correct it and send the request again."
    return {"field": field, "message": f"{detail}.", "sentence": sentence}


def _source_name(source: str) -> str:
    return {"query": "query string", "path": "path", "header": "headers"}.get(source, "body")


async def _handle_api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return exc.to_response()


async def _handle_validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    return validation_error_response(exc.errors())


async def _handle_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    headers = dict(exc.headers or {})

    if exc.status_code == 404:
        message = f"No route matches {request.method} {request.url.path}. Check the path."
        return error_response(404, "not_found", message, headers=headers)

    if exc.status_code == 405:
        message = (
            f"{request.method} is not allowed on {request.url.path}. "
            f"Use one of: {headers.get('allow', 'none')}."
        )
        return error_response(405, "method_not_allowed", message, headers=headers)

    if exc.status_code == 400:
        # FastAPI raises 400 when a JSON body parses but cannot be decoded, for example
        # an integer with more digits than Python converts. It is an invalid body, so 422.
        message = "The request body could not be decoded. Send a JSON object with valid values."
        fields = [{"field": "body", "message": str(exc.detail)}]
        return error_response(422, "validation_error", message, fields=fields)

    code = generic_error_code(exc.status_code)
    return error_response(exc.status_code, code, str(exc.detail), headers=headers)


async def _handle_unexpected_error(request: Request, exc: Exception) -> Response:
    # Starlette re-raises the exception after this handler, so the server logs the
    # traceback. This line keeps a trace when the caller swallows the re-raised error.
    if not isinstance(exc, ConnectionDroppedError):
        logger.error(
            "Unhandled error on %s %s: %s: %s",
            request.method,
            request.url.path,
            type(exc).__name__,
            exc,
        )
    message = "The emulator failed to process the request. See its log for the error."
    return error_response(500, "internal_error", message)


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that render every error as an Aldero error body."""
    app.add_exception_handler(ApiError, _handle_api_error)
    app.add_exception_handler(RequestValidationError, _handle_validation_error)
    app.add_exception_handler(StarletteHTTPException, _handle_http_exception)
    app.add_exception_handler(Exception, _handle_unexpected_error)
