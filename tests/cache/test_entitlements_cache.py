"""Tests of the in-process entitlements cache: TTL, single flight, updates and stale serving."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest

from aldero_fastapi.cache import EntitlementsCache
from aldero_fastapi.errors import (
    AlderoConnectionError,
    AlderoTimeoutError,
    ForbiddenError,
    InvalidRequestError,
    NotFoundError,
    RateLimitedError,
    ServerError,
    UnauthorizedError,
)

if TYPE_CHECKING:
    from tests.cache.conftest import FakeClock, FakeFetch

TTL = 60.0


def make_cache(
    fetch: FakeFetch,
    clock: FakeClock,
    *,
    max_size: int = 100,
    stale_if_error_seconds: float = 0.0,
) -> EntitlementsCache:
    return EntitlementsCache(
        fetch,
        ttl_seconds=TTL,
        max_size=max_size,
        stale_if_error_seconds=stale_if_error_seconds,
        clock=clock,
    )


async def run_until(predicate: Callable[[], bool], max_iterations: int = 100) -> None:
    """Let other tasks run, without waiting for time to pass, until ``predicate`` holds."""
    for _ in range(max_iterations):
        if predicate():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"condition still false after {max_iterations} event loop iterations")


async def test_warm_hit_does_not_fetch(fetch: FakeFetch, clock: FakeClock) -> None:
    cache = make_cache(fetch, clock)

    first = await cache.get("user_1")
    second = await cache.get("user_1")

    assert second is first
    assert fetch.calls == ["user_1"]
    assert cache.stats.hits == 1
    assert cache.stats.misses == 1
    assert cache.stats.fetches == 1


async def test_warm_hit_reads_clock_once(fetch: FakeFetch, clock: FakeClock) -> None:
    cache = make_cache(fetch, clock)
    await cache.get("user_1")
    clock.calls = 0

    await cache.get("user_1")

    assert clock.calls == 1


async def test_concurrent_cold_gets_share_one_fetch(fetch: FakeFetch, clock: FakeClock) -> None:
    cache = make_cache(fetch, clock)
    gate = fetch.hold()

    waiters = [asyncio.create_task(cache.get("user_1")) for _ in range(1_000)]
    await fetch.started.wait()
    gate.set()
    results = await asyncio.gather(*waiters)

    assert fetch.calls == ["user_1"]
    assert len(results) == 1_000
    assert all(result is results[0] for result in results)
    assert results[0].credits == 10
    assert cache.stats.misses == 1_000
    assert cache.stats.fetches == 1


async def test_failed_fetch_fails_all_waiters(fetch: FakeFetch, clock: FakeClock) -> None:
    cache = make_cache(fetch, clock)
    error = ServerError("Internal error.", status_code=500)
    fetch.error = error
    gate = fetch.hold()

    waiters = [asyncio.create_task(cache.get("user_1")) for _ in range(10)]
    await fetch.started.wait()
    gate.set()
    results = await asyncio.gather(*waiters, return_exceptions=True)

    assert all(result is error for result in results)
    assert fetch.calls == ["user_1"]
    assert cache.stats.errors == 1
    assert len(cache) == 0

    fetch.error = None
    recovered = await cache.get("user_1")

    assert recovered.credits == 10
    assert fetch.calls == ["user_1", "user_1"]


async def test_expired_entry_is_fetched_again(fetch: FakeFetch, clock: FakeClock) -> None:
    cache = make_cache(fetch, clock)
    await cache.get("user_1")

    clock.advance(TTL - 0.001)
    await cache.get("user_1")
    assert fetch.calls == ["user_1"]

    clock.advance(0.001)
    fetch.balances["user_1"] = 4
    refreshed = await cache.get("user_1")

    assert refreshed.credits == 4
    assert fetch.calls == ["user_1", "user_1"]


async def test_update_credits_without_fetch(fetch: FakeFetch, clock: FakeClock) -> None:
    cache = make_cache(fetch, clock)
    original = await cache.get("user_1")

    cache.update_credits("user_1", 7)
    updated = await cache.get("user_1")

    assert updated.credits == 7
    assert updated.features == original.features
    assert fetch.calls == ["user_1"]


async def test_update_credits_keeps_expiry(fetch: FakeFetch, clock: FakeClock) -> None:
    cache = make_cache(fetch, clock)
    await cache.get("user_1")
    clock.advance(TTL - 1)

    cache.update_credits("user_1", 7)
    clock.advance(1)
    fetch.balances["user_1"] = 7
    await cache.get("user_1")

    assert fetch.calls == ["user_1", "user_1"]


async def test_update_credits_without_entry(fetch: FakeFetch, clock: FakeClock) -> None:
    cache = make_cache(fetch, clock)

    cache.update_credits("user_1", 7)

    assert len(cache) == 0
    assert fetch.calls == []


async def test_older_fetch_does_not_overwrite_credits(fetch: FakeFetch, clock: FakeClock) -> None:
    cache = make_cache(fetch, clock)
    await cache.get("user_1")
    clock.advance(TTL)

    # The refresh reads balance 10 upstream; a deduction then returns balance 7.
    gate = fetch.hold()
    refresh = asyncio.create_task(cache.get("user_1"))
    await fetch.started.wait()
    fetch.balances["user_1"] = 7
    cache.update_credits("user_1", 7)
    gate.set()
    old = await refresh

    assert old.credits == 10

    latest = await cache.get("user_1")

    assert latest.credits == 7
    assert fetch.calls == ["user_1", "user_1", "user_1"]


async def test_invalidate_fetches_again(fetch: FakeFetch, clock: FakeClock) -> None:
    cache = make_cache(fetch, clock)
    await cache.get("user_1")

    await cache.invalidate("user_1")
    fetch.balances["user_1"] = 3
    refreshed = await cache.get("user_1")

    assert refreshed.credits == 3
    assert fetch.calls == ["user_1", "user_1"]


async def test_invalidate_during_fetch_is_not_cached(fetch: FakeFetch, clock: FakeClock) -> None:
    cache = make_cache(fetch, clock)
    gate = fetch.hold()
    before = asyncio.create_task(cache.get("user_1"))
    await fetch.started.wait()

    await cache.invalidate("user_1")
    fetch.balances["user_1"] = 3
    after = asyncio.create_task(cache.get("user_1"))
    await run_until(lambda: len(fetch.calls) == 2)
    gate.set()

    assert (await before).credits == 10
    assert (await after).credits == 3

    cached = await cache.get("user_1")

    assert cached.credits == 3
    assert fetch.calls == ["user_1", "user_1"]


async def test_invalidate_unknown_user(fetch: FakeFetch, clock: FakeClock) -> None:
    cache = make_cache(fetch, clock)

    await cache.invalidate("user_1")

    assert len(cache) == 0


@pytest.mark.parametrize(
    "error",
    [
        AlderoConnectionError("Connection refused."),
        AlderoTimeoutError("Read timed out."),
        ServerError("Service unavailable.", status_code=503),
        RateLimitedError("Too many requests.", status_code=429, retry_after=1.0),
    ],
    ids=["connection", "timeout", "server-error", "rate-limited"],
)
async def test_stale_served_within_window(
    fetch: FakeFetch, clock: FakeClock, caplog: pytest.LogCaptureFixture, error: Exception
) -> None:
    caplog.set_level(logging.WARNING, logger="aldero_fastapi.cache")
    cache = make_cache(fetch, clock, stale_if_error_seconds=30)
    original = await cache.get("user_1")
    clock.advance(TTL + 30)
    fetch.error = error

    stale = await cache.get("user_1")

    assert stale.stale is True
    assert stale.credits == original.credits
    assert stale.features == original.features
    assert original.stale is False
    assert cache.stats.stale_served == 1
    assert cache.stats.errors == 1
    assert len(caplog.records) == 1
    assert caplog.records[0].levelno == logging.WARNING
    assert "user_1" in caplog.records[0].getMessage()
    assert type(error).__name__ in caplog.records[0].getMessage()


async def test_stale_warning_once_per_ttl(
    fetch: FakeFetch, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="aldero_fastapi.cache")
    cache = make_cache(fetch, clock, stale_if_error_seconds=3 * TTL)
    await cache.get("user_1")
    clock.advance(TTL)
    fetch.error = ServerError("Bad gateway.", status_code=502)

    for _ in range(5):
        await cache.get("user_1")
    assert len(caplog.records) == 1

    clock.advance(TTL)
    await cache.get("user_1")

    assert len(caplog.records) == 2
    assert cache.stats.stale_served == 6


async def test_stale_past_window_raises(fetch: FakeFetch, clock: FakeClock) -> None:
    cache = make_cache(fetch, clock, stale_if_error_seconds=30)
    await cache.get("user_1")
    clock.advance(TTL + 30.001)
    error = ServerError("Service unavailable.", status_code=503)
    fetch.error = error

    with pytest.raises(ServerError) as raised:
        await cache.get("user_1")

    assert raised.value is error
    assert cache.stats.stale_served == 0


async def test_stale_off_by_default(fetch: FakeFetch, clock: FakeClock) -> None:
    cache = make_cache(fetch, clock)
    await cache.get("user_1")
    clock.advance(TTL)
    fetch.error = AlderoConnectionError("Connection refused.")

    with pytest.raises(AlderoConnectionError):
        await cache.get("user_1")


@pytest.mark.parametrize(
    "error",
    [
        UnauthorizedError("Unknown API key.", status_code=401),
        ForbiddenError("Key of another service.", status_code=403),
        NotFoundError("Route not found.", status_code=404),
        InvalidRequestError("Invalid body.", status_code=422),
        ValueError("a bug in the fetch function"),
    ],
    ids=["401", "403", "404", "422", "bug"],
)
async def test_client_errors_never_stale(
    fetch: FakeFetch, clock: FakeClock, error: Exception
) -> None:
    cache = make_cache(fetch, clock, stale_if_error_seconds=3_600)
    await cache.get("user_1")
    clock.advance(TTL)
    fetch.error = error

    with pytest.raises(type(error)) as raised:
        await cache.get("user_1")

    assert raised.value is error
    assert cache.stats.stale_served == 0


async def test_invalidated_entry_never_stale(fetch: FakeFetch, clock: FakeClock) -> None:
    cache = make_cache(fetch, clock, stale_if_error_seconds=3_600)
    await cache.get("user_1")
    await cache.invalidate("user_1")
    fetch.error = ServerError("Service unavailable.", status_code=503)

    with pytest.raises(ServerError):
        await cache.get("user_1")


async def test_size_bound_with_many_users(fetch: FakeFetch, clock: FakeClock) -> None:
    cache = make_cache(fetch, clock, max_size=10_000)

    for batch_start in range(0, 100_000, 1_000):
        users = [f"user_{number}" for number in range(batch_start, batch_start + 1_000)]
        await asyncio.gather(*(cache.get(user) for user in users))
        assert len(cache) <= 10_000

    assert len(cache) == 10_000
    assert len(fetch.calls) == 100_000

    # The most recent users are cached and the first ones were evicted.
    await cache.get("user_99999")
    assert len(fetch.calls) == 100_000
    await cache.get("user_0")
    assert len(fetch.calls) == 100_001


async def test_cancelled_waiter_leaves_others(fetch: FakeFetch, clock: FakeClock) -> None:
    cache = make_cache(fetch, clock)
    gate = fetch.hold()
    waiters = [asyncio.create_task(cache.get("user_1")) for _ in range(3)]
    await fetch.started.wait()

    waiters[0].cancel()
    await asyncio.gather(waiters[0], return_exceptions=True)
    gate.set()
    results = await asyncio.gather(*waiters[1:])

    assert waiters[0].cancelled()
    assert results[0] is results[1]
    assert results[0].credits == 10
    assert fetch.calls == ["user_1"]


async def test_fetch_outlives_last_waiter(fetch: FakeFetch, clock: FakeClock) -> None:
    cache = make_cache(fetch, clock)
    gate = fetch.hold()
    waiter = asyncio.create_task(cache.get("user_1"))
    await fetch.started.wait()

    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    gate.set()
    await run_until(lambda: len(cache) == 1)
    cached = await cache.get("user_1")

    assert cached.credits == 10
    assert fetch.calls == ["user_1"]
    assert cache.stats.hits == 1


async def test_failed_fetch_without_waiters(
    fetch: FakeFetch, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="asyncio")
    cache = make_cache(fetch, clock)
    fetch.error = ServerError("Internal error.", status_code=500)
    gate = fetch.hold()
    waiter = asyncio.create_task(cache.get("user_1"))
    await fetch.started.wait()

    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    gate.set()
    await run_until(lambda: len(asyncio.all_tasks()) == 1)
    # The finished fetch's done callbacks run in the next event loop iteration.
    await asyncio.sleep(0)
    assert cache.stats.errors == 1
    # asyncio logs an unretrieved task exception when the task is garbage collected. The
    # error and the cancelled waiter refer to the fetch task through their tracebacks.
    fetch.error = None
    del waiter
    gc.collect()
    await cache.get("user_1")

    assert fetch.calls == ["user_1", "user_1"]
    assert [record for record in caplog.records if record.name == "asyncio"] == []


async def test_aclose_cancels_fetches(fetch: FakeFetch, clock: FakeClock) -> None:
    cache = make_cache(fetch, clock)
    fetch.hold()
    waiter = asyncio.create_task(cache.get("user_1"))
    await fetch.started.wait()

    await cache.aclose()

    with pytest.raises(asyncio.CancelledError):
        await waiter
    with pytest.raises(RuntimeError, match="closed"):
        await cache.get("user_2")


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("ttl_seconds", -1.0, "ttl_seconds must be 0 or more"),
        ("max_size", 0, "max_size must be at least 1"),
        ("stale_if_error_seconds", -1.0, "stale_if_error_seconds must be 0"),
    ],
)
def test_invalid_options_raise(fetch: FakeFetch, option: str, value: float, message: str) -> None:
    options: dict[str, float] = {"ttl_seconds": TTL, "max_size": 10}
    options[option] = value

    with pytest.raises(ValueError, match=message):
        EntitlementsCache(fetch, **options)  # type: ignore[arg-type]
