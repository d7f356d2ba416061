"""Webhook events, delivered to a receiver server on a loopback port."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from aldero_fastapi.emulator import EmulatorConfig, EmulatorServer, create_app
from aldero_fastapi.emulator.server import BackgroundServer
from aldero_fastapi.emulator.webhooks import sign_payload

SECRET = "whsec_test"


@dataclass
class Receiver:
    """An ASGI app that stores each POST and responds with the next queued status."""

    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        headers = {key.decode().lower(): value.decode() for key, value in scope["headers"]}

        with self.lock:
            self.received.append((headers, body))
            status = self.statuses.pop(0) if self.statuses else 204

        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    def events(self) -> list[dict[str, Any]]:
        with self.lock:
            return [json.loads(body) for _, body in self.received]


@pytest.fixture(scope="module")
def receiver_server() -> Iterator[tuple[Receiver, str]]:
    receiver = Receiver()
    server = BackgroundServer(receiver)
    server.start()
    yield receiver, f"{server.root_url}/hooks"
    server.stop()


@pytest.fixture
def receiver(receiver_server: tuple[Receiver, str]) -> Receiver:
    receiver_server[0].received.clear()
    receiver_server[0].statuses.clear()
    return receiver_server[0]


@pytest.fixture
async def hooked_server(receiver_server: tuple[Receiver, str]) -> AsyncIterator[EmulatorServer]:
    config = EmulatorConfig(webhook_url=receiver_server[1], webhook_secret=SECRET)
    async with EmulatorServer(config) as server:
        yield server


async def wait_for(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


async def deliveries(server: EmulatorServer) -> list[dict[str, Any]]:
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{server.admin_url}/webhooks")
    found: list[dict[str, Any]] = response.json()["deliveries"]
    return found


def verify(headers: dict[str, str], body: bytes) -> bool:
    parts = dict(part.split("=", 1) for part in headers["aldero-signature"].split(","))
    expected = hmac.new(
        SECRET.encode(), f"{parts['t']}.".encode() + body, hashlib.sha256
    ).hexdigest()
    return hmac.compare_digest(parts["v1"], expected)


async def test_credits_change_sends_signed_event(
    hooked_server: EmulatorServer, receiver: Receiver
) -> None:
    async with httpx.AsyncClient() as client:
        await client.put(f"{hooked_server.admin_url}/users/bob", json={"credits": 9})
    await wait_for(lambda: len(receiver.received) == 1)

    headers, body = receiver.received[0]
    event = json.loads(body)

    assert headers["content-type"] == "application/json"
    assert verify(headers, body)
    assert event["id"].startswith("evt_")
    assert event["type"] == "credits.updated"
    assert event["data"] == {"userId": "bob"}
    assert event["createdAt"].endswith("Z")


async def test_signature_timestamp_is_recent(
    hooked_server: EmulatorServer, receiver: Receiver
) -> None:
    async with httpx.AsyncClient() as client:
        await client.put(f"{hooked_server.admin_url}/users/bob", json={"credits": 9})
    await wait_for(lambda: len(receiver.received) == 1)

    signature = receiver.received[0][0]["aldero-signature"]
    timestamp = int(signature.split(",")[0].removeprefix("t="))

    assert abs(time.time() - timestamp) < 60


async def test_both_changes_send_two_events(
    hooked_server: EmulatorServer, receiver: Receiver
) -> None:
    async with httpx.AsyncClient() as client:
        await client.put(
            f"{hooked_server.admin_url}/users/bob", json={"features": ["fax"], "credits": 1}
        )
    await wait_for(lambda: len(receiver.received) == 2)

    types = sorted(event["type"] for event in receiver.events())

    assert types == ["credits.updated", "entitlements.updated"]


async def test_sync_sends_entitlements_event(
    hooked_server: EmulatorServer, receiver: Receiver
) -> None:
    async with httpx.AsyncClient(headers={"Authorization": "Bearer bil_emulator_key"}) as client:
        await client.post(f"{hooked_server.base_url}/billing/users/carol/sync")
        await wait_for(lambda: len(receiver.received) == 1)
        await client.post(f"{hooked_server.base_url}/billing/users/carol/sync")
        await asyncio.sleep(0.2)

    assert [event["type"] for event in receiver.events()] == ["entitlements.updated"]
    assert receiver.events()[0]["data"] == {"userId": "carol"}


async def test_purchase_sends_credits_event(
    hooked_server: EmulatorServer, receiver: Receiver
) -> None:
    async with httpx.AsyncClient() as client:
        await client.post(
            f"{hooked_server.admin_url}/users/bob/purchases", json={"productId": "credits_10"}
        )
    await wait_for(lambda: len(receiver.received) == 1)

    assert receiver.events()[0]["type"] == "credits.updated"


async def test_credits_api_sends_no_event(
    hooked_server: EmulatorServer, receiver: Receiver
) -> None:
    async with httpx.AsyncClient(headers={"Authorization": "Bearer bil_emulator_key"}) as client:
        response = await client.post(
            f"{hooked_server.base_url}/billing/users/bob/credits",
            json={"type": "grant", "amount": 5},
        )
    await asyncio.sleep(0.2)

    assert response.status_code == 200
    assert receiver.received == []
    assert await deliveries(hooked_server) == []


async def test_delivery_is_recorded(hooked_server: EmulatorServer, receiver: Receiver) -> None:
    async with httpx.AsyncClient() as client:
        await client.put(f"{hooked_server.admin_url}/users/bob", json={"credits": 9})
    await wait_for(lambda: len(receiver.received) == 1)
    await asyncio.sleep(0.05)

    recorded = await deliveries(hooked_server)

    assert recorded == [
        {
            "eventId": receiver.events()[0]["id"],
            "type": "credits.updated",
            "userId": "bob",
            "status": "delivered",
            "attempts": 1,
        }
    ]


async def test_failed_delivery_is_retried(
    hooked_server: EmulatorServer, receiver: Receiver
) -> None:
    receiver.statuses.extend([500, 503])
    async with httpx.AsyncClient() as client:
        await client.put(f"{hooked_server.admin_url}/users/bob", json={"credits": 9})
    await wait_for(lambda: len(receiver.received) == 3)
    await asyncio.sleep(0.05)

    recorded = await deliveries(hooked_server)
    event_ids = {event["id"] for event in receiver.events()}

    assert recorded[0]["status"] == "delivered"
    assert recorded[0]["attempts"] == 3
    assert len(event_ids) == 1


async def test_delivery_fails_after_three_attempts(
    hooked_server: EmulatorServer, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.statuses.extend([500, 500, 500])
    async with httpx.AsyncClient() as client:
        await client.put(f"{hooked_server.admin_url}/users/bob", json={"credits": 9})
    await wait_for(lambda: len(receiver.received) == 3)
    await asyncio.sleep(0.1)

    recorded = await deliveries(hooked_server)

    assert recorded[0]["status"] == "failed"
    assert recorded[0]["attempts"] == 3
    assert recorded[0]["eventId"] in caplog.text


async def test_unreachable_receiver_fails() -> None:
    config = EmulatorConfig(webhook_url="http://127.0.0.1:9/hooks", webhook_secret=SECRET)
    async with EmulatorServer(config) as server, httpx.AsyncClient() as client:
        started = time.monotonic()
        response = await client.put(f"{server.admin_url}/users/bob", json={"credits": 9})
        elapsed = time.monotonic() - started
        await wait_for(lambda: server.state.webhooks.deliveries()[0].status == "failed")

    assert response.status_code == 200
    assert elapsed < 0.5


def test_sign_payload_matches_hmac() -> None:
    expected = hmac.new(b"secret", b"1700000000.{}", hashlib.sha256).hexdigest()

    assert sign_payload("secret", 1700000000, b"{}") == expected


async def test_reset_notifies_every_user() -> None:
    receiver = Receiver()
    config = EmulatorConfig(
        webhook_url="http://receiver/hooks",
        webhook_secret=SECRET,
        webhook_transport=httpx.ASGITransport(app=receiver),
    )
    app = create_app(config)

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://e"
    ) as client:
        await client.put("/_emulator/users/erin", json={"credits": 2})
        receiver.received.clear()
        response = await client.post("/_emulator/reset")
        await _wait_for_events(receiver, 10)

    assert response.status_code == 200
    events = {(event["data"]["userId"], event["type"]) for event in receiver.events()}
    users = {"alice", "bob", "carol", "dave", "erin"}
    assert events == {
        (user, kind) for user in users for kind in ("entitlements.updated", "credits.updated")
    }


async def _wait_for_events(receiver: Receiver, count: int) -> None:
    for _ in range(200):
        if len(receiver.received) >= count:
            return
        await asyncio.sleep(0.01)
