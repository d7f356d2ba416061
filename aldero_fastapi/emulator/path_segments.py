"""Path segments that contain an encoded slash (``%2F``), such as the user id ``team/42``.

ASGI servers decode the path before routing, which would split such a segment in two.
The middleware re-encodes ``%`` and ``/`` inside each raw segment, so the router matches
one segment, and :func:`decode_segment` restores the original value of a parameter.
"""

from __future__ import annotations

from urllib.parse import unquote

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

# ASGI scope flag, set when the path was rewritten, so parameters need decoding.
ESCAPED_SEGMENTS_SCOPE_KEY = "aldero_emulator.escaped_segments"


class EncodedSlashMiddleware:
    """Keeps ``%2F`` escaped within its path segment for the routes behind it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            escaped = _escaped_path(scope)
            if escaped is not None:
                scope = {**scope, "path": escaped, ESCAPED_SEGMENTS_SCOPE_KEY: True}
        await self.app(scope, receive, send)


def _escaped_path(scope: Scope) -> str | None:
    """Return the path with ``%`` and ``/`` escaped inside segments, or None without ``%2F``."""
    raw_path = scope.get("raw_path")
    if not isinstance(raw_path, bytes) or b"%2f" not in raw_path.lower():
        return None

    segments = raw_path.decode("latin-1").split("/")
    return "/".join(
        unquote(segment).replace("%", "%25").replace("/", "%2F") for segment in segments
    )


def decode_segment(request: Request, value: str) -> str:
    """Return the original text of a path parameter of ``request``."""
    if request.scope.get(ESCAPED_SEGMENTS_SCOPE_KEY):
        return unquote(value)
    return value
