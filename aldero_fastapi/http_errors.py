"""The HTTP error the plugin raises towards the end user of an app."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import HTTPException

__all__ = ["AlderoHTTPException"]


class AlderoHTTPException(HTTPException):
    """
    An HTTP error with a JSON body ``{"error": message, **extra}``.

    With ``Aldero.install(app)`` the body is sent as is; without it, FastAPI's default
    handler still sends the status code and headers, with ``{"detail": message}``.
    """

    def __init__(
        self,
        status_code: int,
        error: str,
        *,
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(status_code=status_code, detail=error, headers=dict(headers or {}))
        self.body: dict[str, Any] = {"error": error, **extra}
