"""Tests of the Redis backend against a real redis-server: two caches represent two workers."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

import pytest
import redis.asyncio as redis_asyncio

from aldero_fastapi.cache import EntitlementsCache
from aldero_fastapi.cache_redis import DEFAULT_PREFIX, RedisCacheBackend
from aldero_fastapi.errors import ConfigurationError
from aldero_fastapi.models import Entitlements

if TYPE_CHECKING:
    from tests.cache.conftest import FakeClock, FakeFetch
    from tests.redis_support import RedisServer

TTL = 60.0
CHANNEL = f"{DEFAULT_PREFIX}invalidations"

Workers = tuple[EntitlementsCache, EntitlementsCache]


def make_worker(
    url: str, fetch: FakeFetch, clock: FakeClock, *, backend_clock: FakeClock | None = None
) -> EntitlementsCache:
    backend = RedisCacheBackend.from_url(
        url,
        timeout_seconds=1.0,
        retry_after_seconds=5.0,
        resubscribe_delay_seconds=0.05,
        clock=backend_clock or clock,
    )
    return EntitlementsCache(fetch, ttl_seconds=TTL, max_size=100, clock=clock, backend=backend)


async def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll ``predicate`` until it holds; the work it waits for is I/O with redis-server."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"condition still false after {timeout} s")
        await asyncio.sleep(0.01)


def logged(caplog: pytest.LogCaptureFixture, text: str) -> list[logging.LogRecord]:
    return [record for record in caplog.records if text in record.getMessage()]


@pytest.fixture
async def workers(
    redis_server: RedisServer, fetch: FakeFetch, clock: FakeClock
) -> AsyncIterator[Workers]:
    first = make_worker(redis_server.url, fetch, clock)
    second = make_worker(redis_server.url, fetch, clock)
    await first.start()
    await second.start()
    yield first, second
    await first.aclose()
    await second.aclose()


@pytest.fixture
async def redis_client(redis_server: RedisServer) -> AsyncIterator[redis_asyncio.Redis]:
    client = redis_asyncio.Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


async def test_entry_shared_between_workers(
    workers: Workers, fetch: FakeFetch, redis_client: redis_asyncio.Redis
) -> None:
    first, second = workers

    fetched = await first.get("user_1")
    shared = await second.get("user_1")

    assert shared == fetched
    assert fetch.calls == ["user_1"]
    assert first.stats.fetches == 1
    assert second.stats.fetches == 0
    assert second.stats.shared_hits == 1

    raw = await redis_client.get(f"{DEFAULT_PREFIX}user_1")
    assert raw is not None
    stored = json.loads(raw)
    ttl_milliseconds = await redis_client.pttl(f"{DEFAULT_PREFIX}user_1")

    assert stored["userId"] == "user_1"
    assert stored["credits"] == 10
    assert "stale" not in stored
    assert 0 < ttl_milliseconds <= TTL * 1000


async def test_shared_entry_cached_locally(workers: Workers, fetch: FakeFetch) -> None:
    first, second = workers
    await first.get("user_1")
    await second.get("user_1")

    await second.get("user_1")

    assert second.stats.shared_hits == 1
    assert second.stats.hits == 1
    assert fetch.calls == ["user_1"]


async def test_invalidation_reaches_other_worker(
    workers: Workers, fetch: FakeFetch, redis_client: redis_asyncio.Redis
) -> None:
    first, second = workers
    await first.get("user_1")
    await second.get("user_1")

    await first.invalidate("user_1")
    await wait_until(lambda: second.stats.remote_invalidations == 1)

    assert await redis_client.exists(f"{DEFAULT_PREFIX}user_1") == 0

    fetch.balances["user_1"] = 2
    refreshed = await second.get("user_1")

    assert refreshed.credits == 2
    assert fetch.calls == ["user_1", "user_1"]


async def test_own_invalidation_is_skipped(workers: Workers) -> None:
    first, second = workers

    await first.invalidate("user_1")
    await second.invalidate("user_2")
    # Redis delivers messages in order, so the first worker has seen its own message by
    # the time the second worker's message arrives.
    await wait_until(lambda: first.stats.remote_invalidations == 1)
    await wait_until(lambda: second.stats.remote_invalidations == 1)

    assert first.stats.remote_invalidations == 1
    assert second.stats.remote_invalidations == 1


async def test_update_credits_writes_through(
    workers: Workers, fetch: FakeFetch, redis_client: redis_asyncio.Redis
) -> None:
    first, second = workers
    await first.get("user_1")
    await second.get("user_1")
    ttl_before = await redis_client.pttl(f"{DEFAULT_PREFIX}user_1")

    first.update_credits("user_1", 4)
    await wait_until(lambda: second.stats.remote_invalidations == 1)

    assert (await first.get("user_1")).credits == 4
    assert (await second.get("user_1")).credits == 4
    assert fetch.calls == ["user_1"]
    assert second.stats.shared_hits == 2

    raw = await redis_client.get(f"{DEFAULT_PREFIX}user_1")
    assert raw is not None
    stored = json.loads(raw)
    ttl_after = await redis_client.pttl(f"{DEFAULT_PREFIX}user_1")

    assert stored["credits"] == 4
    assert 0 < ttl_after <= ttl_before


async def test_update_credits_without_entry(
    workers: Workers, redis_client: redis_asyncio.Redis
) -> None:
    first, second = workers

    first.update_credits("user_1", 4)
    await wait_until(lambda: second.stats.remote_invalidations == 1)

    assert await redis_client.exists(f"{DEFAULT_PREFIX}user_1") == 0


async def test_first_fetch_subscribes(
    redis_server: RedisServer, fetch: FakeFetch, clock: FakeClock
) -> None:
    first = make_worker(redis_server.url, fetch, clock)
    second = make_worker(redis_server.url, fetch, clock)
    try:
        await second.get("user_1")
        await first.invalidate("user_1")
        await wait_until(lambda: second.stats.remote_invalidations == 1)
    finally:
        await first.aclose()
        await second.aclose()


async def test_unreadable_entry_is_ignored(
    workers: Workers,
    fetch: FakeFetch,
    redis_client: redis_asyncio.Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="aldero_fastapi.cache")
    first, _second = workers
    await redis_client.set(f"{DEFAULT_PREFIX}user_1", b"{not json", px=60_000)

    entitlements = await first.get("user_1")

    assert entitlements.credits == 10
    assert fetch.calls == ["user_1"]
    assert len(logged(caplog, "unreadable Redis cache entry for user user_1")) == 1


async def test_malformed_message_is_ignored(
    workers: Workers, redis_client: redis_asyncio.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="aldero_fastapi.cache")
    first, second = workers

    await redis_client.publish(CHANNEL, b"not json")
    await redis_client.publish(CHANNEL, json.dumps({"userId": 7, "origin": "other"}))
    # Each worker has handled the malformed messages once it has handled a later one.
    await first.invalidate("user_1")
    await second.invalidate("user_2")
    await wait_until(lambda: second.stats.remote_invalidations == 1)
    await wait_until(lambda: first.stats.remote_invalidations == 1)

    assert len(logged(caplog, "malformed message")) == 4


async def test_stopped_redis_falls_back(
    redis_server: RedisServer,
    workers: Workers,
    fetch: FakeFetch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="aldero_fastapi.cache")
    first, _second = workers
    await first.get("user_1")

    redis_server.stop()
    cold = await first.get("user_2")
    colder = await first.get("user_3")
    await first.invalidate("user_1")
    first.update_credits("user_2", 1)

    assert cold.credits == 10
    assert colder.credits == 10
    assert fetch.calls == ["user_1", "user_2", "user_3"]
    assert len(logged(caplog, "Redis cache is unavailable")) == 1
    assert len(logged(caplog, "Invalidation of user user_1 was not shared")) == 1
    assert all(redis_server.password not in record.getMessage() for record in caplog.records)
    assert all(redis_server.password not in (record.exc_text or "") for record in caplog.records)


async def test_redis_retried_after_pause(
    redis_server: RedisServer,
    fetch: FakeFetch,
    clock: FakeClock,
    backend_clock: FakeClock,
    redis_client: redis_asyncio.Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="aldero_fastapi.cache")
    worker = make_worker(redis_server.url, fetch, clock, backend_clock=backend_clock)
    try:
        await worker.start()
        redis_server.stop()
        await worker.get("user_1")
        redis_server.start()
        other = Entitlements(user_id="user_2", credits=99)
        await redis_client.set(
            f"{DEFAULT_PREFIX}user_2", other.model_dump_json(by_alias=True), px=60_000
        )

        # Within the pause Redis is not asked, so the entry there is not found.
        paused = await worker.get("user_2")
        assert paused.credits == 10
        assert fetch.calls == ["user_1", "user_2"]

        backend_clock.advance(5.0)
        await worker.invalidate("user_2")
        await redis_client.set(
            f"{DEFAULT_PREFIX}user_2", other.model_dump_json(by_alias=True), px=60_000
        )
        resumed = await worker.get("user_2")

        assert resumed.credits == 99
        assert fetch.calls == ["user_1", "user_2"]
        assert len(logged(caplog, "Redis cache is reachable again")) == 1
    finally:
        await worker.aclose()


async def test_resubscribe_expires_local_entries(
    redis_server: RedisServer,
    workers: Workers,
    fetch: FakeFetch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="aldero_fastapi.cache")
    _first, second = workers
    await second.get("user_1")

    redis_server.stop()
    await wait_until(lambda: len(logged(caplog, "Subscription to Redis")) >= 4)
    redis_server.start()
    await wait_until(lambda: len(logged(caplog, "Resubscribed")) == 2)
    fetch.balances["user_1"] = 5
    refreshed = await second.get("user_1")

    assert refreshed.credits == 5
    assert fetch.calls == ["user_1", "user_1"]

    # One warning per worker for the outage; the retries are logged at DEBUG.
    failures = logged(caplog, "Subscription to Redis")
    assert [record.levelno for record in failures].count(logging.WARNING) == 2


async def test_backend_repr_hides_url(redis_server: RedisServer) -> None:
    backend = RedisCacheBackend.from_url(redis_server.url)
    try:
        assert redis_server.password not in repr(backend)
        assert repr(backend) == "RedisCacheBackend(prefix='aldero:entitlements:')"
    finally:
        await backend.aclose()


def test_invalid_url_raises() -> None:
    with pytest.raises(ConfigurationError) as raised:
        RedisCacheBackend.from_url("http://:url-password@127.0.0.1:6379/0")

    assert "Invalid Redis cache URL" in str(raised.value)
    assert "url-password" not in str(raised.value)


def test_missing_redis_package_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    # None in sys.modules makes the import raise ImportError, as without the package.
    monkeypatch.setitem(sys.modules, "redis", None)
    monkeypatch.setitem(sys.modules, "redis.asyncio", None)

    with pytest.raises(ConfigurationError, match=r"pip install 'aldero-fastapi\[redis\]'"):
        RedisCacheBackend.from_url("redis://127.0.0.1:6379/0")


def test_module_imports_without_redis() -> None:
    script = (
        "import sys\n"
        "sys.modules['redis'] = None\n"
        "import aldero_fastapi.cache_redis\n"
        "print('imported')\n"
    )

    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )

    assert result.stderr == ""
    assert result.stdout == "imported\n"
