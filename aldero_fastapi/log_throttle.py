"""Rate limiting of log lines that would otherwise repeat once per request in an outage."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Hashable

from cachetools import LRUCache

__all__ = ["LogThrottle"]


class LogThrottle:
    """
    Let the first line of each key through, then at most one per ``interval_seconds``,
    and count the lines held back in between.

    At most ``max_keys`` keys are remembered; the least recently used is forgotten first.
    """

    def __init__(
        self,
        interval_seconds: float = 10.0,
        *,
        max_keys: int = 256,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval_seconds = interval_seconds
        self._clock = clock
        # Per key: when a line was last let through, and how many were held back since.
        self._entries: LRUCache[Hashable, tuple[float, int]] = LRUCache(maxsize=max_keys)

    def allow(self, key: Hashable) -> int | None:
        """
        Return None to hold a line of ``key`` back, or the number of lines held back
        since the last one let through.
        """
        now = self._clock()
        entry = self._entries.get(key)
        if entry is not None and now - entry[0] < self.interval_seconds:
            self._entries[key] = (entry[0], entry[1] + 1)
            return None

        self._entries[key] = (now, 0)
        return entry[1] if entry is not None else 0

    def log(
        self, logger: logging.Logger, level: int, key: Hashable, message: str, *args: object
    ) -> None:
        """
        Log ``message`` % ``args`` unless a line of ``key`` passed less than
        ``interval_seconds`` ago, ending it with the count of the lines held back.
        """
        held_back = self.allow(key)
        if held_back is not None:
            logger.log(level, message + "%s", *args, self.note(held_back))

    def note(self, held_back: int) -> str:
        """Return the suffix that reports ``held_back`` lines, or "" when there are none."""
        if held_back == 0:
            return ""
        return f" ({held_back} more like it in the last {self.interval_seconds:.0f} s)"
