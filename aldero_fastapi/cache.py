"""In-process cache of users' entitlements, with one upstream fetch per user at a time.

Gated requests read a user's entitlements on every call, so a warm hit costs one LRU
lookup and one clock call. A miss starts one fetch per user, which every concurrent
request for that user awaits (single flight). An optional ``SharedCacheBackend`` lets
several processes share fetched entries and invalidations.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from cachetools import LRUCache

from aldero_fastapi.errors import AlderoTransportError, RateLimitedError, ServerError
from aldero_fastapi.models import Entitlements

__all__ = [
    "STALE_IF_ERROR_EXCEPTIONS",
    "CacheStats",
    "EntitlementsCache",
    "SharedCacheBackend",
    "SharedEntry",
]

logger = logging.getLogger("aldero_fastapi.cache")

# Errors that mean the billing service is unavailable, so that returning an expired entry
# is more useful than raising. 401, 403, 404 and 422 are left out because they signal a
# bug or a misconfiguration, which serving old data would hide.
STALE_IF_ERROR_EXCEPTIONS: tuple[type[Exception], ...] = (
    AlderoTransportError,
    ServerError,
    RateLimitedError,
)


class SharedEntry(NamedTuple):
    """
    Entitlements read from a shared backend, with the seconds left until they expire there.
    """

    entitlements: Entitlements
    ttl_seconds: float


class SharedCacheBackend(Protocol):
    """
    A cache shared by several processes, read on a local miss before the upstream fetch.

    No method may raise because the shared store is unavailable: an implementation logs
    the failure and behaves as an empty cache, so that requests fall back to the upstream
    fetch.
    """

    async def start(
        self, on_invalidate: Callable[[str], None], on_reconnect: Callable[[], None]
    ) -> None:
        """
        Subscribe to the invalidations published by other processes.

        ``on_invalidate(user_id)`` is called when another process invalidated a user or
        changed their credits. ``on_reconnect()`` is called when a lost subscription is
        restored, because invalidations published in between were missed.
        """
        ...

    async def get(self, user_id: str) -> SharedEntry | None:
        """Read a user's entry, or return None when there is none or the store failed."""
        ...

    async def set(self, user_id: str, entitlements: Entitlements, ttl_seconds: float) -> None:
        """Store a user's entitlements for ``ttl_seconds``."""
        ...

    async def update_credits(self, user_id: str, balance: int) -> None:
        """Write a new balance into a stored entry, keep its expiry and notify other processes."""
        ...

    async def invalidate(self, user_id: str) -> None:
        """Delete a user's entry and notify other processes."""
        ...

    async def aclose(self) -> None:
        """Stop the subscription and close the connections."""
        ...


@dataclass(slots=True)
class CacheStats:
    """
    Event counters of an ``EntitlementsCache`` since it was created.

    ``misses`` counts calls that found no fresh local entry, including calls that joined a
    fetch already in flight. ``fetches`` counts upstream calls, and ``errors`` the failed
    ones, including those served with a stale entry. ``shared_hits`` counts entries read
    from the shared backend, and ``remote_invalidations`` the invalidations received from
    other processes.
    """

    hits: int = 0
    misses: int = 0
    fetches: int = 0
    shared_hits: int = 0
    stale_served: int = 0
    errors: int = 0
    remote_invalidations: int = 0


class _Entry(NamedTuple):
    entitlements: Entitlements
    expires_at: float


class EntitlementsCache:
    """
    A bounded TTL cache of entitlements in front of ``fetch``, with single flight per user.

    Entries stay in an LRU of ``max_size`` users past their expiry, so that an entry can
    still be returned for up to ``stale_if_error_seconds`` after it expired while the
    billing service is unavailable (0 disables this). ``clock`` returns seconds, and only
    differences between its values are used.

    A ``backend`` shares entries and invalidations with other processes. It is subscribed
    to invalidations by ``start()`` or by the first fetch, and closed by ``aclose()``.
    Single flight stays per process, so with N processes a cold user can cause up to N
    upstream fetches, one per process, when they miss at the same moment.
    """

    def __init__(
        self,
        fetch: Callable[[str], Awaitable[Entitlements]],
        *,
        ttl_seconds: float,
        max_size: int,
        stale_if_error_seconds: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        backend: SharedCacheBackend | None = None,
    ) -> None:
        if ttl_seconds < 0:
            raise ValueError(f"ttl_seconds must be 0 or more, got {ttl_seconds}")
        if max_size < 1:
            raise ValueError(f"max_size must be at least 1, got {max_size}")
        if stale_if_error_seconds < 0:
            raise ValueError(
                f"stale_if_error_seconds must be 0 (off) or more, got {stale_if_error_seconds}"
            )

        self._fetch = fetch
        self._ttl_seconds = ttl_seconds
        self._stale_if_error_seconds = stale_if_error_seconds
        self._clock = clock
        self._backend = backend
        self._entries: LRUCache[str, _Entry] = LRUCache(maxsize=max_size)

        # The fetch whose result may be stored, per user. invalidate() and update_credits()
        # remove a user's fetch from here because its result may be older than their
        # change. That result is still returned to its waiters but never stored.
        self._in_flight: dict[str, asyncio.Task[Entitlements]] = {}

        # asyncio keeps only weak references to tasks, so these sets keep fetches without
        # waiters and unawaited write-throughs alive until they finish.
        self._fetch_tasks: set[asyncio.Task[Entitlements]] = set()
        self._background_tasks: set[asyncio.Task[None]] = set()

        # Adjustments in flight per user: their count, and whether two ever overlapped.
        # Responses of overlapping adjustments can arrive out of order, so their
        # balances are not written; the entry is dropped instead.
        self._adjustments: dict[str, tuple[int, bool]] = {}

        self._stale_warned_at: LRUCache[str, float] = LRUCache(maxsize=max_size)
        self._stats = CacheStats()
        self._backend_started = False
        self._closed = False

    @property
    def stats(self) -> CacheStats:
        """The counters of this cache, updated in place."""
        return self._stats

    def __len__(self) -> int:
        """Return the number of local entries, expired ones included."""
        return len(self._entries)

    async def start(self) -> None:
        """
        Subscribe the shared backend to invalidations from other processes, if there is one.

        The first fetch calls this when it was not called before, so calling it at startup
        only moves the wait for the subscription out of the first request.
        """
        if self._backend is None or self._backend_started:
            return

        self._backend_started = True
        await self._backend.start(self._drop_remote_invalidation, self._expire_all)

    async def get(self, user_id: str) -> Entitlements:
        """
        Return a user's entitlements from the cache, fetching them on a miss or expiry.

        Concurrent calls for one user share a single fetch, and its error when it fails.
        A failed fetch is not cached. When the billing service is unavailable and the
        user's entry expired no more than ``stale_if_error_seconds`` ago, that entry is
        returned with ``stale=True`` in place of the error.
        """
        # Hot path: no lock, no await and no copy on a fresh entry.
        try:
            entry = self._entries[user_id]
        except KeyError:
            return await self._get_missing(user_id)

        if self._clock() < entry.expires_at:
            self._stats.hits += 1
            return entry.entitlements

        return await self._get_missing(user_id)

    def update_credits(self, user_id: str, balance: int) -> None:
        """
        Set the credits of a cached entry to ``balance`` after an adjustment returned it.

        The entry keeps its expiry. Without an entry nothing is stored, and the next
        ``get`` fetches. A fetch in flight may return the balance from before the
        adjustment, so its result is not stored. With a shared backend, the balance is
        written through in a background task, so call this from the event loop.
        """
        self._in_flight.pop(user_id, None)

        entry = self._entries.get(user_id)
        if entry is not None:
            updated = entry.entitlements.model_copy(update={"credits": balance})
            self._entries[user_id] = _Entry(updated, entry.expires_at)

        if self._backend is not None:
            self._spawn_credit_update(self._backend, user_id, balance)

    def begin_adjustment(self, user_id: str) -> None:
        """Record that a credit adjustment of the user is about to be sent."""
        count, overlapped = self._adjustments.get(user_id, (0, False))
        self._adjustments[user_id] = (count + 1, overlapped or count > 0)

    def end_adjustment(self, user_id: str, balance: int | None) -> None:
        """
        Record that a credit adjustment of the user finished, with the balance it returned.

        ``balance`` is None when the adjustment failed or replayed an earlier one, whose
        balance is history. The balance is written into the entry only when no other
        adjustment of the user overlapped this one. Otherwise the entry is dropped, here
        and in the shared backend, so the next ``get`` fetches the current balance.
        """
        count, overlapped = self._adjustments.pop(user_id, (1, False))
        if count > 1:
            self._adjustments[user_id] = (count - 1, overlapped)

        if balance is not None and not overlapped:
            self.update_credits(user_id, balance)
            return

        self._drop_local(user_id)
        if self._backend is not None:
            task = asyncio.create_task(self._backend.invalidate(user_id))
            self._background_tasks.add(task)
            task.add_done_callback(functools.partial(self._finish_credit_update, user_id))

    async def invalidate(self, user_id: str) -> None:
        """
        Drop a user's entry, here and in the shared backend, so that the next ``get`` fetches.

        A fetch in flight is not stored, because it may have read the data from before
        the change. Other processes drop their entry when the backend notifies them.
        """
        self._drop_local(user_id)

        if self._backend is not None:
            await self._backend.invalidate(user_id)

    async def aclose(self) -> None:
        """
        Cancel the fetches in flight, finish the write-throughs and close the backend.

        The cache must not be used afterwards.
        """
        self._closed = True

        fetches = list(self._fetch_tasks)
        for task in fetches:
            task.cancel()
        await asyncio.gather(*fetches, return_exceptions=True)

        # Write-throughs are bounded by the backend's timeouts. Finishing them keeps the
        # shared balance in step with the last adjustments.
        await asyncio.gather(*list(self._background_tasks), return_exceptions=True)

        if self._backend is not None:
            await self._backend.aclose()

    async def _get_missing(self, user_id: str) -> Entitlements:
        if self._closed:
            raise RuntimeError(
                "EntitlementsCache is closed; create a new cache to read entitlements"
            )

        self._stats.misses += 1

        task = self._in_flight.get(user_id)
        if task is None:
            task = asyncio.create_task(self._load(user_id), name=f"aldero-entitlements-{user_id}")
            self._in_flight[user_id] = task
            self._fetch_tasks.add(task)
            task.add_done_callback(self._finish_fetch_task)

        # The shield keeps the fetch running for the other waiters when this one is
        # cancelled. Without waiters the fetch still finishes and populates the cache.
        return await asyncio.shield(task)

    async def _load(self, user_id: str) -> Entitlements:
        task = asyncio.current_task()

        try:
            return await self._load_unguarded(user_id, task)
        finally:
            if self._in_flight.get(user_id) is task:
                del self._in_flight[user_id]

    async def _load_unguarded(self, user_id: str, task: asyncio.Task[Any] | None) -> Entitlements:
        if self._backend is not None:
            await self.start()

            shared = await self._backend.get(user_id)
            if shared is not None:
                self._stats.shared_hits += 1
                if self._in_flight.get(user_id) is task:
                    self._store(user_id, shared.entitlements, shared.ttl_seconds)
                return shared.entitlements

        self._stats.fetches += 1
        try:
            entitlements = await self._fetch(user_id)
        except Exception as error:
            self._stats.errors += 1
            stale = self._stale_entitlements(user_id, error)
            if stale is None:
                raise
            return stale

        # invalidate() or update_credits() ran during the fetch, so this result may be
        # older than their change. It is returned to its waiters but not stored.
        if self._in_flight.get(user_id) is not task:
            return entitlements

        self._store(user_id, entitlements, self._ttl_seconds)

        if self._backend is not None:
            await self._backend.set(user_id, entitlements, self._ttl_seconds)

        return entitlements

    def _store(self, user_id: str, entitlements: Entitlements, ttl_seconds: float) -> None:
        self._entries[user_id] = _Entry(entitlements, self._clock() + ttl_seconds)

    def _stale_entitlements(self, user_id: str, error: Exception) -> Entitlements | None:
        if self._stale_if_error_seconds <= 0 or not isinstance(error, STALE_IF_ERROR_EXCEPTIONS):
            return None

        entry = self._entries.get(user_id)
        if entry is None:
            return None

        # Another fetch for this user may have stored a fresh entry while this one failed.
        now = self._clock()
        if now < entry.expires_at:
            return entry.entitlements

        expired_for = now - entry.expires_at
        if expired_for > self._stale_if_error_seconds:
            return None

        self._stats.stale_served += 1
        self._warn_stale(user_id, error, now, expired_for)
        return entry.entitlements.model_copy(update={"stale": True})

    def _warn_stale(self, user_id: str, error: Exception, now: float, expired_for: float) -> None:
        # One warning per user per TTL shows an outage without flooding the log, and
        # stats.stale_served counts every stale result.
        warned_at = self._stale_warned_at.get(user_id)
        if warned_at is not None and now - warned_at < self._ttl_seconds:
            return

        self._stale_warned_at[user_id] = now
        logger.warning(
            "Serving stale entitlements for user %s, expired %.1f s ago, because the "
            "billing service is unavailable (%s)",
            user_id,
            expired_for,
            type(error).__name__,
        )

    def _drop_local(self, user_id: str) -> None:
        self._entries.pop(user_id, None)
        self._in_flight.pop(user_id, None)

    def _drop_remote_invalidation(self, user_id: str) -> None:
        self._stats.remote_invalidations += 1
        self._drop_local(user_id)

    def _expire_all(self) -> None:
        # Invalidations may have been missed, so every entry must be read again. Expiring
        # entries instead of dropping them keeps them available for stale-if-error.
        now = self._clock()
        for user_id, entry in list(self._entries.items()):
            if entry.expires_at > now:
                self._entries[user_id] = _Entry(entry.entitlements, now)

        self._in_flight.clear()

    def _spawn_credit_update(self, backend: SharedCacheBackend, user_id: str, balance: int) -> None:
        task = asyncio.create_task(backend.update_credits(user_id, balance))
        self._background_tasks.add(task)
        task.add_done_callback(functools.partial(self._finish_credit_update, user_id))

    def _finish_fetch_task(self, task: asyncio.Task[Entitlements]) -> None:
        self._fetch_tasks.discard(task)

        # When every waiter was cancelled, no waiter reads the exception. Reading it here keeps
        # asyncio from logging "exception was never retrieved" for an error already counted.
        if not task.cancelled():
            task.exception()

    def _finish_credit_update(self, user_id: str, task: asyncio.Task[None]) -> None:
        self._background_tasks.discard(task)

        if task.cancelled():
            return

        # Backends log their own store failures, so this catches bugs in a backend.
        error = task.exception()
        if error is not None:
            logger.warning(
                "Writing the credits of user %s to the shared cache failed (%s)",
                user_id,
                type(error).__name__,
                exc_info=error,
            )
