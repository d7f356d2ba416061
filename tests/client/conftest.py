"""Fixtures of the client tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from random import Random
from typing import Any

import pytest

from aldero_fastapi.client import AlderoClient

from .helpers import (
    BASE_URL,
    BILLING_KEY,
    Harness,
    HarnessFactory,
    Reply,
    ScriptedTransport,
    SleepRecorder,
)


@pytest.fixture
async def make_harness() -> AsyncIterator[HarnessFactory]:
    """Return a factory of harnesses; every client it creates is closed after the test."""
    clients: list[AlderoClient] = []

    def factory(replies: Sequence[Reply], *, api_key: str = BILLING_KEY, **options: Any) -> Harness:
        transport = ScriptedTransport(replies)
        sleep = SleepRecorder()
        options.setdefault("random", Random(7))
        client = AlderoClient(
            base_url=BASE_URL, api_key=api_key, transport=transport, sleep=sleep, **options
        )
        clients.append(client)
        return Harness(client, transport, sleep)

    yield factory

    for client in clients:
        await client.aclose()
