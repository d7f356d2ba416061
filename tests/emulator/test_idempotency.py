"""Idempotent credit adjustments (referenceId) and notification sends (Idempotency-Key)."""

from __future__ import annotations

import asyncio

import httpx

from aldero_fastapi.emulator import EmulatorState

CREDITS = "/billing/users/bob/credits"
USAGE = {"type": "usage", "amount": -1, "description": "Fax", "referenceId": "fax-1"}
MESSAGE = {
    "templateName": "order-confirmation",
    "channel": "push",
    "to": "bob",
    "variables": {"orderNumber": "A-1", "total": "9.99"},
}


async def test_replay_returns_original_body(billing: httpx.AsyncClient) -> None:
    first = await billing.post(CREDITS, json=USAGE)
    second = await billing.post(CREDITS, json=USAGE)

    assert second.status_code == 200
    assert second.content == first.content
    assert second.headers["Idempotent-Replayed"] == "true"


async def test_first_response_is_not_replayed(billing: httpx.AsyncClient) -> None:
    first = await billing.post(CREDITS, json=USAGE)

    assert "Idempotent-Replayed" not in first.headers


async def test_replay_adds_no_ledger_row(billing: httpx.AsyncClient) -> None:
    await billing.post(CREDITS, json=USAGE)
    await billing.post(CREDITS, json=USAGE)

    ledger = (await billing.get(CREDITS)).json()

    assert ledger["balance"] == 2
    assert len(ledger["transactions"]) == 2


async def test_same_key_other_user_is_new(billing: httpx.AsyncClient) -> None:
    await billing.post(CREDITS, json=USAGE)

    response = await billing.post("/billing/users/alice/credits", json=USAGE)

    assert response.status_code == 200
    assert "Idempotent-Replayed" not in response.headers
    assert response.json()["balance"] == 9


async def test_different_body_is_422(billing: httpx.AsyncClient) -> None:
    await billing.post(CREDITS, json=USAGE)

    response = await billing.post(CREDITS, json={**USAGE, "amount": -2})

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "idempotency_mismatch"


async def test_different_description_is_422(billing: httpx.AsyncClient) -> None:
    await billing.post(CREDITS, json=USAGE)

    response = await billing.post(CREDITS, json={**USAGE, "description": "Other"})

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "idempotency_mismatch"


async def test_402_is_not_stored(billing: httpx.AsyncClient) -> None:
    big_usage = {"type": "usage", "amount": -5, "referenceId": "big-1"}
    rejected = await billing.post(CREDITS, json=big_usage)
    await billing.post(CREDITS, json={"type": "grant", "amount": 10})

    retried = await billing.post(CREDITS, json=big_usage)

    assert rejected.status_code == 402
    assert retried.status_code == 200
    assert "Idempotent-Replayed" not in retried.headers
    assert retried.json()["balance"] == 8


async def test_in_flight_key_is_409(billing: httpx.AsyncClient, admin: httpx.AsyncClient) -> None:
    await admin.post(
        "/faults",
        json={
            "method": "POST",
            "path": "/billing/users/*/credits",
            "action": "none",
            "latencyMs": 400,
            "count": 1,
        },
    )

    slow_first = asyncio.create_task(billing.post(CREDITS, json=USAGE))
    await asyncio.sleep(0.1)
    concurrent = await billing.post(CREDITS, json=USAGE)
    first = await slow_first

    assert concurrent.status_code == 409
    assert concurrent.json()["error"]["code"] == "request_in_progress"
    assert concurrent.headers["Retry-After"] == "1"
    assert first.status_code == 200


async def test_retry_after_in_flight_replays(
    billing: httpx.AsyncClient, admin: httpx.AsyncClient
) -> None:
    await admin.post(
        "/faults",
        json={"path": "/billing/users/*/credits", "action": "none", "latencyMs": 200, "count": 1},
    )
    slow_first = asyncio.create_task(billing.post(CREDITS, json=USAGE))
    await asyncio.sleep(0.05)
    await billing.post(CREDITS, json=USAGE)
    first = await slow_first

    retry = await billing.post(CREDITS, json=USAGE)

    assert retry.headers["Idempotent-Replayed"] == "true"
    assert retry.content == first.content


async def test_abandoned_claim_is_taken_over(
    billing: httpx.AsyncClient, state: EmulatorState
) -> None:
    with state.store.transaction() as tx:
        tx.claim_idempotency_key("credits:bob", "fax-1", "stale", claimed_at=0.0)

    response = await billing.post(CREDITS, json=USAGE)

    assert response.status_code == 200


async def test_notification_replay(notifications: httpx.AsyncClient) -> None:
    headers = {"Idempotency-Key": "order-A-1"}

    first = await notifications.post("/notifications/send", json=MESSAGE, headers=headers)
    second = await notifications.post("/notifications/send", json=MESSAGE, headers=headers)

    assert first.status_code == 202
    assert second.status_code == 202
    assert second.content == first.content
    assert second.headers["Idempotent-Replayed"] == "true"


async def test_notification_replay_stores_one(
    notifications: httpx.AsyncClient, admin: httpx.AsyncClient
) -> None:
    headers = {"Idempotency-Key": "order-A-1"}
    await notifications.post("/notifications/send", json=MESSAGE, headers=headers)
    await notifications.post("/notifications/send", json=MESSAGE, headers=headers)

    sent = (await admin.get("/notifications")).json()["notifications"]

    assert len(sent) == 1


async def test_notification_mismatch_is_422(notifications: httpx.AsyncClient) -> None:
    headers = {"Idempotency-Key": "order-A-1"}
    await notifications.post("/notifications/send", json=MESSAGE, headers=headers)
    changed = {**MESSAGE, "variables": {"orderNumber": "A-2", "total": "1"}}

    response = await notifications.post("/notifications/send", json=changed, headers=headers)

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "idempotency_mismatch"


async def test_notification_in_flight_is_409(
    notifications: httpx.AsyncClient, admin: httpx.AsyncClient
) -> None:
    await admin.post(
        "/faults",
        json={"path": "/notifications/send", "action": "none", "latencyMs": 400, "count": 1},
    )
    headers = {"Idempotency-Key": "order-A-1"}

    slow_first = asyncio.create_task(
        notifications.post("/notifications/send", json=MESSAGE, headers=headers)
    )
    await asyncio.sleep(0.1)
    concurrent = await notifications.post("/notifications/send", json=MESSAGE, headers=headers)
    first = await slow_first

    assert concurrent.status_code == 409
    assert concurrent.headers["Retry-After"] == "1"
    assert first.status_code == 202


async def test_sends_without_key_are_separate(notifications: httpx.AsyncClient) -> None:
    first = await notifications.post("/notifications/send", json=MESSAGE)
    second = await notifications.post("/notifications/send", json=MESSAGE)

    assert first.json()["id"] != second.json()["id"]
