"""Closing a connection without a complete response, to simulate a network failure.

Under uvicorn the response starts with a Content-Length and the app then raises, so
uvicorn closes the socket before any body byte is sent. An HTTP client sees the
connection end mid-response: httpx raises ``httpx.RemoteProtocolError``. Under
``httpx.ASGITransport`` the raised :class:`ConnectionDroppedError` reaches the client
as is, and it is an ``httpx.RemoteProtocolError`` too, so client code sees the same
exception type in both setups. An ``ASGITransport(raise_app_exceptions=False)`` instead
returns the started 503 response with an empty body.
"""

from __future__ import annotations

import logging

import httpx
from starlette.types import Send

# Announced but never sent, so the client waits for body bytes that do not come.
_ANNOUNCED_BODY_LENGTH = 64


class ConnectionDroppedError(httpx.RemoteProtocolError):
    """Raised by the emulator app to drop the connection of the current request."""


async def drop_connection(send: Send) -> None:
    """Start a response whose body never comes, then raise ConnectionDroppedError."""
    await send(
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(_ANNOUNCED_BODY_LENGTH).encode()),
            ],
        }
    )
    raise ConnectionDroppedError(
        "The emulator dropped the connection before the response was complete."
    )


class DroppedConnectionLogFilter(logging.Filter):
    """Drops uvicorn's "Exception in ASGI application" record for an intended drop.

    The middleware already logs each drop at INFO, so the traceback would only be noise.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info is None:
            return True
        return not isinstance(record.exc_info[1], ConnectionDroppedError)


def install_dropped_connection_log_filter() -> None:
    """Add the filter to uvicorn's error logger once per process."""
    uvicorn_logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(item, DroppedConnectionLogFilter) for item in uvicorn_logger.filters):
        uvicorn_logger.addFilter(DroppedConnectionLogFilter())
