"""How many requests the client keeps in flight, and how long a request waits for a slot."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from aldero_fastapi.client import AlderoClient
from aldero_fastapi.errors import AlderoTimeoutError

from .helpers import BASE_URL, BILLING_KEY, ENTITLEMENTS_BODY


class HeldTransport(httpx.AsyncBaseTransport):
    """A transport that keeps every request waiting until ``release`` is set, and counts them."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.in_flight = 0
        self.max_in_flight = 0
        self.received = 0
        self._arrived = asyncio.Condition()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.received += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        async with self._arrived:
            self._arrived.notify_all()

        try:
            await self.release.wait()
        finally:
            self.in_flight -= 1
        return httpx.Response(200, json=ENTITLEMENTS_BODY)

    async def wait_for_in_flight(self, count: int) -> None:
        """Wait until ``count`` requests are waiting here, or fail after 5 s."""
        async with self._arrived:
            await asyncio.wait_for(self._arrived.wait_for(lambda: self.in_flight >= count), 5)


async def test_in_flight_bounded_by_max_connections() -> None:
    transport = HeldTransport()
    client = AlderoClient(
        base_url=BASE_URL, api_key=BILLING_KEY, transport=transport, max_connections=2
    )

    async with client:
        calls = [asyncio.create_task(client.billing.get_entitlements("alice")) for _ in range(6)]
        await transport.wait_for_in_flight(2)
        await asyncio.sleep(0.05)
        held_before_release = transport.received
        transport.release.set()
        results = await asyncio.gather(*calls)

    assert held_before_release == 2
    assert transport.max_in_flight == 2
    assert transport.received == 6
    assert [entitlements.credits for entitlements in results] == [10] * 6


async def test_slot_wait_ends_at_pool_timeout() -> None:
    transport = HeldTransport()
    client = AlderoClient(
        base_url=BASE_URL,
        api_key=BILLING_KEY,
        transport=transport,
        max_connections=1,
        max_retries=0,
        timeout=httpx.Timeout(5.0, pool=0.05),
    )

    async with client:
        first = asyncio.create_task(client.billing.get_entitlements("alice"))
        await transport.wait_for_in_flight(1)

        with pytest.raises(AlderoTimeoutError) as raised:
            await asyncio.wait_for(client.billing.get_entitlements("alice"), 5)

        transport.release.set()
        entitlements = await first

    assert "PoolTimeout" in str(raised.value)
    assert "0.05 s" in str(raised.value)
    assert transport.received == 1
    assert entitlements.user_id == "alice"
