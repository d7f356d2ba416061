"""The id of the incoming request, carried to every upstream call made while serving it."""

from __future__ import annotations

import uuid
from contextvars import ContextVar

__all__ = ["current_request_id", "new_request_id", "request_id_for_call"]

# The plugin sets it for each incoming request. The client reads it, so that the
# X-Request-Id of an upstream call matches the request that caused it.
current_request_id: ContextVar[str | None] = ContextVar("aldero_request_id", default=None)


def new_request_id() -> str:
    """Return a fresh request id."""
    return f"req_{uuid.uuid4().hex}"


def request_id_for_call() -> str:
    """Return the incoming request's id when there is one, else a fresh id."""
    return current_request_id.get() or new_request_id()
