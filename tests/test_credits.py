"""Credit deductions through the plugin, against the emulator as a real server."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from aldero_fastapi.emulator import EmulatorServer
from aldero_fastapi.settings import AlderoSettings
from aldero_fastapi.testing import AppServer, lifespan_client, make_token
from tests.plugin_apps import (
    add_fault,
    auth,
    build_app,
    emulator_user,
    ledger,
    served_requests,
    set_user,
)

ALICE = auth(make_token("alice"))
BOB = auth(make_token("bob"))


async def test_deduct_reduces_balance(
    aldero_emulator: EmulatorServer, aldero_settings: AlderoSettings
) -> None:
    app, _ = build_app(aldero_settings)

    async with lifespan_client(app) as client:
        response = await client.post("/charge/3", headers=ALICE)

    assert response.status_code == 200
    assert response.json()["balance"] == 7
    rows = await ledger(aldero_emulator, "alice")
    assert rows[0]["type"] == "usage"
    assert rows[0]["amount"] == -3
    assert rows[0]["referenceId"] == response.json()["referenceId"]
    state = await emulator_user(aldero_emulator, "alice")
    assert state["credits"] == 7
    assert state["ledgerSum"] == 7


async def test_short_balance_answers_402(
    aldero_emulator: EmulatorServer, aldero_settings: AlderoSettings
) -> None:
    app, _ = build_app(aldero_settings)

    async with lifespan_client(app) as client:
        response = await client.post("/charge/5", headers=BOB)

    assert response.status_code == 402
    assert response.json() == {"error": "Insufficient credits", "balance": 3, "required": 5}
    assert (await emulator_user(aldero_emulator, "bob"))["credits"] == 3


async def test_failed_handler_refunds_both(
    aldero_emulator: EmulatorServer, aldero_settings: AlderoSettings
) -> None:
    app, aldero = build_app(aldero_settings)

    async with lifespan_client(app) as client:
        response = await client.post("/charge-twice-then-fail", headers=ALICE)

    assert response.status_code == 409
    assert response.json() == {"detail": "Destination busy"}
    rows = await ledger(aldero_emulator, "alice")
    usages = [row for row in rows if row["type"] == "usage"]
    refunds = [row for row in rows if row["type"] == "refund"]
    assert sorted(row["amount"] for row in usages) == [-3, -2]
    assert sorted(row["amount"] for row in refunds) == [2, 3]
    assert {row["reversesTransactionId"] for row in refunds} == {row["id"] for row in usages}
    state = await emulator_user(aldero_emulator, "alice")
    assert state["credits"] == 10
    assert state["ledgerSum"] == 10
    assert aldero.refunds.succeeded == 2


async def test_crashing_handler_refunds(
    aldero_emulator: EmulatorServer, aldero_settings: AlderoSettings
) -> None:
    app, _ = build_app(aldero_settings)

    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            response = await client.post("/charge-then-crash", headers=ALICE)

    assert response.status_code == 500
    assert (await emulator_user(aldero_emulator, "alice"))["credits"] == 10
    assert [row["type"] for row in await ledger(aldero_emulator, "alice")][:2] == [
        "refund",
        "usage",
    ]


async def test_cancelled_request_refunds(
    aldero_emulator: EmulatorServer, aldero_settings: AlderoSettings
) -> None:
    app, _ = build_app(aldero_settings)

    async with lifespan_client(app) as client:
        request = asyncio.create_task(client.post("/charge-then-wait", headers=ALICE))
        await asyncio.wait_for(app.state.deducted.wait(), timeout=10)
        assert (await emulator_user(aldero_emulator, "alice"))["credits"] == 6

        request.cancel()
        with pytest.raises(asyncio.CancelledError):
            await request
        credits = await _wait_for_credits(aldero_emulator, "alice", 10)

    assert credits == 10
    refunds = [row for row in await ledger(aldero_emulator, "alice") if row["type"] == "refund"]
    assert [row["amount"] for row in refunds] == [4]


async def test_self_cancelled_handler_refunds(
    aldero_emulator: EmulatorServer, aldero_settings: AlderoSettings
) -> None:
    app, _ = build_app(aldero_settings)

    async with AppServer(app) as server, httpx.AsyncClient(base_url=server.url) as client:
        response = await client.post("/charge-then-cancel", headers=ALICE)

    assert response.status_code == 500
    assert (await emulator_user(aldero_emulator, "alice"))["credits"] == 10
    refunds = [row for row in await ledger(aldero_emulator, "alice") if row["type"] == "refund"]
    assert [row["amount"] for row in refunds] == [1]


async def test_completed_handler_keeps_charge_after_disconnect(
    aldero_emulator: EmulatorServer, aldero_settings: AlderoSettings
) -> None:
    app, _ = build_app(aldero_settings)

    async with AppServer(app) as server:
        async with httpx.AsyncClient(base_url=server.url) as client:
            request = asyncio.create_task(client.post("/charge-then-wait", headers=ALICE))
            await asyncio.wait_for(app.state.deducted.wait(), timeout=10)
            request.cancel()
        # The client is gone; the handler now completes on the server.
        app.state.release.set()
        await asyncio.sleep(0.2)

    assert (await emulator_user(aldero_emulator, "alice"))["credits"] == 6
    types = [row["type"] for row in await ledger(aldero_emulator, "alice")]
    assert "refund" not in types


async def test_idempotency_key_charges_once(
    aldero_emulator: EmulatorServer, aldero_settings: AlderoSettings
) -> None:
    app, _ = build_app(aldero_settings)
    headers = {**ALICE, "Idempotency-Key": "order-7f3a"}

    async with lifespan_client(app) as client:
        first = await client.post("/charge/3", headers=headers)
        second = await client.post("/charge/3", headers=headers)

    assert first.status_code == 200
    assert second.status_code == 200
    assert first.json() == second.json()
    rows = await ledger(aldero_emulator, "alice")
    matching = [row for row in rows if row["referenceId"] == first.json()["referenceId"]]
    assert len(matching) == 1
    assert (await emulator_user(aldero_emulator, "alice"))["credits"] == 7


async def test_idempotency_key_per_route(
    aldero_emulator: EmulatorServer, aldero_settings: AlderoSettings
) -> None:
    app, _ = build_app(aldero_settings)
    headers = {**ALICE, "Idempotency-Key": "shared-key"}

    async with lifespan_client(app) as client:
        first = await client.post("/charge/1", headers=headers)
        second = await client.post("/charge/2", headers=headers)

    assert first.json()["referenceId"] != second.json()["referenceId"]
    assert (await emulator_user(aldero_emulator, "alice"))["credits"] == 7


async def test_retry_after_refund_charges_again(
    aldero_emulator: EmulatorServer, aldero_settings: AlderoSettings
) -> None:
    app, _ = build_app(aldero_settings)
    headers = {**ALICE, "Idempotency-Key": "retry-after-failure"}

    async with lifespan_client(app) as client:
        failed = await client.post("/flaky-charge", headers=headers)
        refunded = (await emulator_user(aldero_emulator, "alice"))["credits"]
        retried = await client.post("/flaky-charge", headers=headers)
        replayed = await client.post("/flaky-charge", headers=headers)

    assert failed.status_code == 503
    assert refunded == 10
    assert retried.status_code == 200
    assert retried.json()["balance"] == 8
    assert replayed.json() == retried.json()
    state = await emulator_user(aldero_emulator, "alice")
    assert state["credits"] == 8
    assert state["ledgerSum"] == 8


async def test_declared_charge_402_skips_handler(
    aldero_emulator: EmulatorServer, aldero_settings: AlderoSettings
) -> None:
    app, _ = build_app(aldero_settings)

    async with lifespan_client(app) as client:
        response = await client.post("/declared", headers=BOB)

    assert response.status_code == 402
    assert response.json() == {"error": "Insufficient credits", "balance": 3, "required": 5}
    assert not hasattr(app.state, "declared_ran")


async def test_declared_charge_deducts(
    aldero_emulator: EmulatorServer, aldero_settings: AlderoSettings
) -> None:
    app, _ = build_app(aldero_settings)

    async with lifespan_client(app) as client:
        response = await client.post("/declared", headers=ALICE)

    assert response.status_code == 200
    assert app.state.declared_ran is True
    assert (await emulator_user(aldero_emulator, "alice"))["credits"] == 5


async def test_declared_amount_from_request(
    aldero_emulator: EmulatorServer, aldero_settings: AlderoSettings
) -> None:
    app, _ = build_app(aldero_settings)

    async with lifespan_client(app) as client:
        response = await client.post("/declared-by-header", headers={**ALICE, "X-Pages": "4"})

    assert response.status_code == 200
    assert response.json() == {"deducted": 4}
    assert (await emulator_user(aldero_emulator, "alice"))["credits"] == 6


async def test_service_error_becomes_402(aldero_settings: AlderoSettings) -> None:
    app, _ = build_app(aldero_settings)

    async with lifespan_client(app) as client:
        response = await client.post("/service-error", headers=ALICE)

    assert response.status_code == 402
    assert response.json() == {"error": "Insufficient credits", "balance": 1, "required": 7}


async def test_concurrent_deductions_stop_at_zero(
    aldero_emulator: EmulatorServer, aldero_settings: AlderoSettings
) -> None:
    await set_user(aldero_emulator, "alice", credits=25)
    app, _ = build_app(aldero_settings)

    async with lifespan_client(app) as client:
        responses = await asyncio.gather(
            *(client.post("/charge/1", headers=ALICE) for _ in range(50))
        )

    statuses = [response.status_code for response in responses]
    assert statuses.count(200) == 25
    assert statuses.count(402) == 25
    assert all(status < 500 for status in statuses)
    state = await emulator_user(aldero_emulator, "alice")
    assert state["credits"] == 0
    assert state["ledgerSum"] == 0


async def test_deduction_updates_cached_balance(
    aldero_emulator: EmulatorServer, aldero_settings: AlderoSettings
) -> None:
    app, _ = build_app(aldero_settings)

    async with lifespan_client(app) as client:
        before = await client.get("/me", headers=ALICE)
        await client.post("/charge/2", headers=ALICE)
        after = await client.get("/me", headers=ALICE)

    assert before.json()["credits"] == 10
    assert after.json()["credits"] == 8
    fetches = await served_requests(
        aldero_emulator, method="GET", path="/billing/users/alice/entitlements"
    )
    assert len(fetches) == 1


async def test_invalid_idempotency_key_422(aldero_settings: AlderoSettings) -> None:
    app, _ = build_app(aldero_settings)
    headers = {**ALICE, "Idempotency-Key": "k" * 300}

    async with lifespan_client(app) as client:
        response = await client.post("/charge/1", headers=headers)

    assert response.status_code == 422
    assert response.json()["error"] == "Invalid Idempotency-Key header"


async def _wait_for_credits(server: EmulatorServer, user_id: str, expected: int) -> Any:
    credits = None
    for _ in range(100):
        credits = (await emulator_user(server, user_id))["credits"]
        if credits == expected:
            return credits
        await asyncio.sleep(0.05)
    return credits


async def test_replayed_deduction_keeps_cache_current(
    aldero_emulator: EmulatorServer, aldero_settings: AlderoSettings
) -> None:
    app, _ = build_app(aldero_settings)
    keyed = {**ALICE, "Idempotency-Key": "charge-once"}

    async with lifespan_client(app) as client:
        await client.get("/me", headers=ALICE)
        first = await client.post("/charge/3", headers=keyed)
        await client.post("/charge/2", headers=ALICE)
        replay = await client.post("/charge/3", headers=keyed)
        me = await client.get("/me", headers=ALICE)

    assert first.json()["balance"] == 7
    assert replay.json()["balance"] == 7
    assert me.json()["credits"] == 5


async def test_overlapping_deductions_keep_cache_current(
    aldero_emulator: EmulatorServer, aldero_settings: AlderoSettings
) -> None:
    app, _ = build_app(aldero_settings)

    async with lifespan_client(app) as client:
        await client.get("/me", headers=ALICE)
        await asyncio.gather(*(client.post("/charge/1", headers=ALICE) for _ in range(6)))
        me = await client.get("/me", headers=ALICE)

    assert me.json()["credits"] == 4
    assert (await emulator_user(aldero_emulator, "alice"))["credits"] == 4


async def test_reused_key_other_body_422(
    aldero_emulator: EmulatorServer, aldero_settings: AlderoSettings
) -> None:
    app, _ = build_app(aldero_settings)
    headers = {**ALICE, "Idempotency-Key": "pages-key"}

    async with lifespan_client(app) as client:
        first = await client.post("/declared-by-header", headers={**headers, "X-Pages": "2"})
        second = await client.post("/declared-by-header", headers={**headers, "X-Pages": "3"})

    assert first.status_code == 200
    assert second.status_code == 422
    assert second.json()["error"] == "Idempotency-Key reused with a different request"
    assert (await emulator_user(aldero_emulator, "alice"))["credits"] == 8


async def test_concurrent_same_key_409(
    aldero_emulator: EmulatorServer, aldero_settings: AlderoSettings
) -> None:
    app, _ = build_app(aldero_settings)
    headers = {**ALICE, "Idempotency-Key": "in-progress"}

    async with lifespan_client(app) as client:
        first = asyncio.create_task(client.post("/pay-wait", headers=headers))
        await asyncio.wait_for(app.state.deducted.wait(), timeout=10)
        second = await client.post("/pay-wait", headers=headers)
        app.state.release.set()
        first_response = await first

    assert second.status_code == 409
    assert second.headers["retry-after"] == "1"
    assert first_response.status_code == 200
    assert (await emulator_user(aldero_emulator, "alice"))["credits"] == 6


async def test_same_key_other_user_charged(
    aldero_emulator: EmulatorServer, aldero_settings: AlderoSettings
) -> None:
    app, _ = build_app(aldero_settings)

    async with lifespan_client(app) as client:
        alice = await client.post("/charge/1", headers={**ALICE, "Idempotency-Key": "k-1"})
        bob = await client.post("/charge/1", headers={**BOB, "Idempotency-Key": "k-1"})

    assert alice.json()["balance"] == 9
    assert bob.json()["balance"] == 2
    assert alice.json()["referenceId"] != bob.json()["referenceId"]


async def test_parallel_deductions_distinct_references(
    aldero_emulator: EmulatorServer, aldero_settings: AlderoSettings
) -> None:
    app, _ = build_app(aldero_settings)
    headers = {**ALICE, "Idempotency-Key": "three-pages"}

    async with lifespan_client(app) as client:
        first = await client.post("/charge-three-at-once", headers=headers)
        repeat = await client.post("/charge-three-at-once", headers=headers)

    assert first.json() == {"deducted": 3}
    assert repeat.json() == {"deducted": 3}
    state = await emulator_user(aldero_emulator, "alice")
    assert state["credits"] == 7
    assert state["ledgerSum"] == 7


async def test_deduction_landing_after_failure_refunded(
    aldero_emulator: EmulatorServer, aldero_settings: AlderoSettings
) -> None:
    app, aldero = build_app(aldero_settings)
    await add_fault(
        aldero_emulator,
        method="POST",
        path="/billing/users/*/credits",
        action="none",
        latencyMs=300,
        count=1,
    )

    async with lifespan_client(app) as client:
        response = await client.post("/charge-beside-failure", headers=ALICE)
        # The deduction lands about 300 ms after the response; its refund follows.
        for _ in range(100):
            if aldero.refunds.succeeded:
                break
            await asyncio.sleep(0.05)

    assert response.status_code == 502
    assert (await emulator_user(aldero_emulator, "alice"))["credits"] == 10
    refunds = [row for row in await ledger(aldero_emulator, "alice") if row["type"] == "refund"]
    assert [row["amount"] for row in refunds] == [2]
    assert aldero.refunds.succeeded == 1
