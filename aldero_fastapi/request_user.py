"""The user resolved for a request, kept in its ASGI scope for the rest of the request."""

from __future__ import annotations

from typing import Any

from starlette.requests import HTTPConnection

__all__ = ["USER_SCOPE_KEY", "record_user", "recorded_user", "recorded_user_id"]

# The ASGI scope key under which the user resolved for a request is kept.
USER_SCOPE_KEY = "aldero_fastapi.user"


def record_user(connection: HTTPConnection, user: Any) -> None:
    """Keep ``user`` as the user of the request."""
    connection.scope[USER_SCOPE_KEY] = user


def recorded_user(connection: HTTPConnection) -> Any:
    """Return the user resolved so far for the request, or None."""
    return connection.scope.get(USER_SCOPE_KEY)


def recorded_user_id(connection: HTTPConnection) -> str | None:
    """Return the id of the user resolved so far for the request, or None."""
    user_id = getattr(recorded_user(connection), "id", None)
    return user_id if isinstance(user_id, str) else None
