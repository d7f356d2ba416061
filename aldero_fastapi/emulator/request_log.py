"""The in-memory log of requests served on the tenant API, read by tests to count calls."""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from fnmatch import fnmatchcase

from .timestamps import now_timestamp

# Keeps memory bounded when the CLI runs for long. Tests stay far below this many requests.
MAX_LOGGED_REQUESTS = 100_000


@dataclass
class RequestEntry:
    """One request. ``status`` is None while it runs and when its connection was dropped.

    ``path`` is the path below the emulator app root without the query string, such as
    ``/v1/tenants/myapp/billing/products``. ``relative_path`` is the part after the
    tenant base, such as ``/billing/products``. When a segment contains an encoded slash,
    ``%`` and ``/`` in every segment stay encoded, as in ``/billing/users/team%2F42/credits``.
    """

    method: str
    path: str
    relative_path: str
    request_id: str
    user_agent: str | None
    created_at: str
    status: int | None = None
    fault_id: str | None = None


class RequestLog:
    def __init__(self) -> None:
        self._entries: deque[RequestEntry] = deque(maxlen=MAX_LOGGED_REQUESTS)
        self._lock = threading.Lock()

    def open(
        self,
        *,
        method: str,
        path: str,
        relative_path: str,
        request_id: str,
        user_agent: str | None,
    ) -> RequestEntry:
        """Log a request as it arrives and return the entry to fill in when it ends."""
        entry = RequestEntry(
            method=method,
            path=path,
            relative_path=relative_path,
            request_id=request_id,
            user_agent=user_agent,
            created_at=now_timestamp(),
        )
        with self._lock:
            self._entries.append(entry)
        return entry

    def find(self, *, method: str | None = None, path: str | None = None) -> list[RequestEntry]:
        """Return the entries in arrival order that match both filters.

        ``path`` is an fnmatch glob. A glob that starts with ``/v1/tenants/`` is matched
        against the full path, any other glob against the path relative to the tenant base.
        """
        with self._lock:
            entries = list(self._entries)

        if method is not None:
            entries = [entry for entry in entries if entry.method == method.upper()]

        if path is not None:
            use_full_path = path.startswith("/v1/tenants/")
            entries = [
                entry
                for entry in entries
                if fnmatchcase(entry.path if use_full_path else entry.relative_path, path)
            ]

        return entries

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
