"""Entitlements shared between processes through Redis; needs the ``redis`` extra.

Each entry is stored as the JSON of ``Entitlements`` under ``<prefix><user_id>`` with a
TTL (``SET ... PX``). An invalidation or credit update in one process is published on a
channel, and every other process drops its local copy when it receives it.

``redis`` is imported when a backend is created, so that the package works without it.
A Redis error (``RedisError`` or ``OSError``) does not fail a request. The backend logs a
warning, stops calling Redis for ``retry_after_seconds`` and behaves as an empty cache, so
that entitlements come from the upstream service meanwhile.

Single flight stays per process: with N processes, a cold user can cause up to N upstream
fetches when they miss at the same moment, because no Redis lock is taken.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from aldero_fastapi.cache import SharedEntry
from aldero_fastapi.errors import ConfigurationError
from aldero_fastapi.models import Entitlements

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.client import PubSub

__all__ = ["DEFAULT_PREFIX", "RedisCacheBackend"]

logger = logging.getLogger("aldero_fastapi.cache")

DEFAULT_PREFIX = "aldero:entitlements:"

# After this many conflicting writes to one entry, the credit update deletes the entry, so
# that the next read goes upstream.
_MAX_CREDIT_UPDATE_ATTEMPTS = 5


class RedisCacheBackend:
    """
    A ``SharedCacheBackend`` on Redis, for several uvicorn workers or hosts.

    Build it with ``from_url``. The backend owns ``client`` and closes it in ``aclose()``.
    ``retry_after_seconds`` is how long Redis is skipped after a failure, and
    ``resubscribe_delay_seconds`` the wait before subscribing again after the
    subscription was lost.
    """

    def __init__(
        self,
        client: Redis,
        *,
        prefix: str = DEFAULT_PREFIX,
        retry_after_seconds: float = 5.0,
        resubscribe_delay_seconds: float = 1.0,
        subscribe_timeout_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        from redis.exceptions import RedisError

        self._client = client
        self._prefix = prefix
        self._channel = f"{prefix}invalidations"
        self._retry_after_seconds = retry_after_seconds
        self._resubscribe_delay_seconds = resubscribe_delay_seconds
        self._subscribe_timeout_seconds = subscribe_timeout_seconds
        self._clock = clock

        # Lets the subscriber skip the messages this process published itself.
        self._origin = uuid.uuid4().hex

        # redis-py wraps most socket errors, but a few OSErrors escape from connect().
        self._errors: tuple[type[Exception], ...] = (RedisError, OSError)
        self._unavailable_until = 0.0
        self._failing = False
        self._listener: asyncio.Task[None] | None = None

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        timeout_seconds: float = 1.0,
        retry_after_seconds: float = 5.0,
        resubscribe_delay_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> RedisCacheBackend:
        """
        Create a backend from a ``redis://``, ``rediss://`` or ``unix://`` URL.

        ``timeout_seconds`` bounds each connect and each command, so that a slow Redis
        delays a cache miss by at most that long before the upstream fetch. The URL may
        contain a password, and it is never logged or shown in a repr.

        Raises:
            ConfigurationError: the ``redis`` package is not installed, or the URL is
                invalid.
        """
        try:
            import redis.asyncio as redis_asyncio
        except ImportError:
            raise ConfigurationError(
                "The Redis cache backend needs the redis package; install it with "
                "pip install 'aldero-fastapi[redis]'"
            ) from None

        # redis-py 8 performs no retries for a client built from a URL; the fallback to
        # the upstream fetch replaces them.
        try:
            client = redis_asyncio.Redis.from_url(
                url,
                socket_timeout=timeout_seconds,
                socket_connect_timeout=timeout_seconds,
            )
        except ValueError as error:
            # redis-py's message names the invalid part but never repeats the URL.
            raise ConfigurationError(
                f"Invalid Redis cache URL: {error} Use redis://[:password@]host:port/db"
            ) from None
        return cls(
            client,
            prefix=prefix,
            retry_after_seconds=retry_after_seconds,
            resubscribe_delay_seconds=resubscribe_delay_seconds,
            subscribe_timeout_seconds=timeout_seconds,
            clock=clock,
        )

    def __repr__(self) -> str:
        return f"RedisCacheBackend(prefix={self._prefix!r})"

    async def start(
        self, on_invalidate: Callable[[str], None], on_reconnect: Callable[[], None]
    ) -> None:
        """
        Subscribe to the invalidation channel in a background task.

        Returns once the first subscription succeeded or failed. After a failure the task
        keeps trying every ``resubscribe_delay_seconds``.
        """
        if self._listener is not None:
            return

        first_attempt_done = asyncio.Event()
        self._listener = asyncio.create_task(
            self._listen(on_invalidate, on_reconnect, first_attempt_done),
            name="aldero-entitlements-invalidations",
        )
        await first_attempt_done.wait()

    async def get(self, user_id: str) -> SharedEntry | None:
        """Read a user's entry and its remaining TTL, or return None on a miss or failure."""
        if not self._is_available():
            return None

        key = self._key(user_id)
        try:
            async with self._client.pipeline(transaction=True) as pipeline:
                pipeline.get(key)
                pipeline.pttl(key)
                raw, ttl_milliseconds = await pipeline.execute()
        except self._errors as error:
            self._record_failure(error)
            return None
        self._record_success()

        # PTTL is -2 for a missing key and -1 for a key without expiry. This backend always
        # sets an expiry, so a key without one was written by something else.
        if raw is None or ttl_milliseconds <= 0:
            return None

        try:
            entitlements = Entitlements.model_validate_json(raw)
        except ValidationError:
            logger.warning("Ignored an unreadable Redis cache entry for user %s", user_id)
            return None

        return SharedEntry(entitlements, ttl_milliseconds / 1000)

    async def set(self, user_id: str, entitlements: Entitlements, ttl_seconds: float) -> None:
        """
        Store a user's entitlements for ``ttl_seconds``; a TTL under 1 ms stores nothing.

        NOTE: the write is not conditional on invalidations. A fetch that read the upstream
        before another process invalidated the user, and finishes after that process
        deleted the entry but before its message arrives here, stores the older entry
        until the TTL expires.
        """
        ttl_milliseconds = int(ttl_seconds * 1000)
        if ttl_milliseconds < 1 or not self._is_available():
            return

        try:
            await self._client.set(
                self._key(user_id), entitlements.model_dump_json(by_alias=True), px=ttl_milliseconds
            )
        except self._errors as error:
            self._record_failure(error)
            return
        self._record_success()

    async def update_credits(self, user_id: str, balance: int) -> None:
        """
        Write a new balance into a user's entry, keeping its TTL, and notify other processes.

        A missing entry stays missing. The other processes drop their local copy and read
        the updated entry from Redis. While Redis is unavailable the update is skipped, and
        other processes keep their cached balance until it expires.
        """
        if not self._is_available():
            return

        try:
            await self._write_credits(user_id, balance)
            await self._client.publish(self._channel, self._message(user_id))
        except self._errors as error:
            self._record_failure(error)
            return
        self._record_success()

    async def invalidate(self, user_id: str) -> None:
        """Delete a user's entry and notify other processes, logging a failure with the user id."""
        if not self._is_available():
            logger.warning(
                "Invalidation of user %s was not shared because Redis is unavailable; other "
                "processes serve their cached entitlements until they expire",
                user_id,
            )
            return

        try:
            async with self._client.pipeline(transaction=True) as pipeline:
                pipeline.delete(self._key(user_id))
                pipeline.publish(self._channel, self._message(user_id))
                await pipeline.execute()
        except self._errors as error:
            self._record_failure(error)
            logger.warning(
                "Invalidation of user %s was not shared because Redis failed (%s); other "
                "processes serve their cached entitlements until they expire",
                user_id,
                type(error).__name__,
            )
            return
        self._record_success()

    async def aclose(self) -> None:
        """Stop the subscriber task and close the Redis connections."""
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.gather(self._listener, return_exceptions=True)
            self._listener = None

        await self._client.aclose()

    def _key(self, user_id: str) -> str:
        return f"{self._prefix}{user_id}"

    def _message(self, user_id: str) -> str:
        return json.dumps({"userId": user_id, "origin": self._origin})

    async def _write_credits(self, user_id: str, balance: int) -> None:
        from redis.exceptions import WatchError

        key = self._key(user_id)
        async with self._client.pipeline(transaction=True) as pipeline:
            for _attempt in range(_MAX_CREDIT_UPDATE_ATTEMPTS):
                try:
                    # WATCH makes EXEC fail when another process changed the entry since GET.
                    await pipeline.watch(key)
                    raw = await pipeline.get(key)
                    if raw is None:
                        return

                    try:
                        stored = Entitlements.model_validate_json(raw)
                    except ValidationError:
                        break

                    updated = stored.model_copy(update={"credits": balance})
                    # redis-py 8 leaves Pipeline.multi() unannotated.
                    pipeline.multi()  # type: ignore[no-untyped-call]
                    pipeline.set(key, updated.model_dump_json(by_alias=True), xx=True, keepttl=True)
                    await pipeline.execute()
                    return
                except WatchError:
                    continue

        # The entry could not be updated: deleting it makes every process read the
        # balance upstream instead of serving the old one.
        logger.warning(
            "Deleted the Redis cache entry of user %s because its credits could not be updated",
            user_id,
        )
        await self._client.delete(key)

    async def _listen(
        self,
        on_invalidate: Callable[[str], None],
        on_reconnect: Callable[[], None],
        first_attempt_done: asyncio.Event,
    ) -> None:
        failed_attempts = 0
        while True:
            pubsub = self._client.pubsub()
            try:
                await self._subscribe(pubsub)
                if failed_attempts > 0:
                    logger.info(
                        "Resubscribed to Redis cache invalidations after %d failed attempts",
                        failed_attempts,
                    )
                    on_reconnect()
                    failed_attempts = 0
                first_attempt_done.set()

                await self._receive(pubsub, on_invalidate)
            except self._errors as error:
                failed_attempts += 1
                self._log_subscription_failure(error, failed_attempts)
                first_attempt_done.set()
            finally:
                await self._close_pubsub(pubsub)

            await asyncio.sleep(self._resubscribe_delay_seconds)

    def _log_subscription_failure(self, error: Exception, failed_attempts: int) -> None:
        # One warning per outage. The retries are logged at DEBUG and counted in the
        # message logged when the subscription is back.
        level = logging.WARNING if failed_attempts == 1 else logging.DEBUG
        logger.log(
            level,
            "Subscription to Redis cache invalidations failed (%s: %s); retrying every "
            "%g s, and local entries expire when it is back because invalidations were missed",
            type(error).__name__,
            error,
            self._resubscribe_delay_seconds,
        )

    async def _subscribe(self, pubsub: PubSub) -> None:
        from redis.exceptions import TimeoutError as RedisTimeoutError

        await pubsub.subscribe(self._channel)

        # redis-py sends SUBSCRIBE without reading the reply. Waiting for the confirmation
        # makes start() return only once invalidations can arrive.
        confirmation = await pubsub.get_message(timeout=self._subscribe_timeout_seconds)
        if confirmation is None or confirmation["type"] != "subscribe":
            raise RedisTimeoutError("no confirmation of the SUBSCRIBE command")

    async def _receive(self, pubsub: PubSub, on_invalidate: Callable[[str], None]) -> None:
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=None)
            if message is None or message["type"] != "message":
                continue

            user_id = self._parse_message(message["data"])
            if user_id is not None:
                on_invalidate(user_id)

    def _parse_message(self, data: Any) -> str | None:
        try:
            message = json.loads(data)
            user_id = message["userId"]
            origin = message["origin"]
        except (ValueError, TypeError, KeyError):
            logger.warning("Ignored a malformed message on the Redis channel %s", self._channel)
            return None

        if not isinstance(user_id, str):
            logger.warning("Ignored a malformed message on the Redis channel %s", self._channel)
            return None

        if origin == self._origin:
            return None

        return user_id

    async def _close_pubsub(self, pubsub: PubSub) -> None:
        try:
            await pubsub.aclose()
        except self._errors as error:
            logger.debug("Closing the Redis subscription failed (%s)", type(error).__name__)

    def _is_available(self) -> bool:
        return self._clock() >= self._unavailable_until

    def _record_failure(self, error: Exception) -> None:
        self._unavailable_until = self._clock() + self._retry_after_seconds

        # One warning per outage, because later failures only extend the pause.
        if self._failing:
            return
        self._failing = True
        logger.warning(
            "Redis cache is unavailable (%s: %s); reading entitlements from the upstream "
            "service and retrying Redis in %g s",
            type(error).__name__,
            error,
            self._retry_after_seconds,
        )

    def _record_success(self) -> None:
        if not self._failing:
            return
        self._failing = False
        logger.info("Redis cache is reachable again")
