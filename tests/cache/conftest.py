"""Fixtures of the cache tests: a manual clock and a counting upstream fetch."""

from __future__ import annotations

import asyncio

import pytest

from aldero_fastapi.models import Entitlements


class FakeClock:
    """A clock that moves only when a test calls ``advance``; counts its calls."""

    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now
        self.calls = 0

    def __call__(self) -> float:
        self.calls += 1
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeFetch:
    """
    The upstream ``get_entitlements``: records each call and returns the current balance.

    The balance is read when the call starts, so that a call held at ``gate`` returns
    the balance from before any later change, as a slow request would. ``error`` is
    raised instead of returning, after the gate.
    """

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.balances: dict[str, int] = {}
        self.gate: asyncio.Event | None = None
        self.error: BaseException | None = None
        self.started = asyncio.Event()

    async def __call__(self, user_id: str) -> Entitlements:
        self.calls.append(user_id)
        credits = self.balances.get(user_id, 10)
        self.started.set()

        if self.gate is not None:
            await self.gate.wait()

        if self.error is not None:
            raise self.error

        return Entitlements(user_id=user_id, features=("pro_features",), credits=credits)

    def hold(self) -> asyncio.Event:
        """Make the next calls wait until the returned event is set."""
        self.gate = asyncio.Event()
        self.started = asyncio.Event()
        return self.gate


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def backend_clock() -> FakeClock:
    """A second clock, for the Redis backend's pause after a failure."""
    return FakeClock()


@pytest.fixture
def fetch() -> FakeFetch:
    return FakeFetch()
