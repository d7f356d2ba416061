"""Deductions and refunds under faults injected into the emulator."""

from __future__ import annotations

import asyncio
import logging

import httpx
import pytest
from fastapi import FastAPI

from aldero_fastapi.emulator import EmulatorServer
from aldero_fastapi.testing import emulator_settings, lifespan_client, make_token
from tests.plugin_apps import (
    add_fault,
    auth,
    build_app,
    emulator_user,
    ledger,
    served_requests,
)

ALICE = auth(make_token("alice"))
CREDITS_PATH = "/billing/users/alice/credits"


async def _fail_after_deduction(
    app: FastAPI, client: httpx.AsyncClient, server: EmulatorServer, **fault: object
) -> httpx.Response:
    """Deduct 4 credits, add ``fault`` before the handler fails, return the response."""
    request = asyncio.create_task(client.post("/charge-wait-then-fail", headers=ALICE))
    await asyncio.wait_for(app.state.deducted.wait(), timeout=10)
    await add_fault(server, method="POST", path="/billing/users/*/credits", **fault)
    app.state.release.set()
    return await request


async def test_refund_after_two_503s_lands_once(aldero_emulator: EmulatorServer) -> None:
    app, aldero = build_app(emulator_settings(aldero_emulator, max_retries=2))

    async with lifespan_client(app) as client:
        response = await _fail_after_deduction(
            app, client, aldero_emulator, action="status", status=503, count=2
        )

    assert response.status_code == 502
    refunds = [row for row in await ledger(aldero_emulator, "alice") if row["type"] == "refund"]
    assert [row["amount"] for row in refunds] == [4]
    posts = await served_requests(aldero_emulator, method="POST", path=CREDITS_PATH)
    assert [entry["status"] for entry in posts] == [200, 503, 503, 200]
    assert (await emulator_user(aldero_emulator, "alice"))["credits"] == 10
    assert aldero.refunds.succeeded == 1
    assert aldero.refunds.failed == 0


async def test_refund_retried_in_background(aldero_emulator: EmulatorServer) -> None:
    settings = emulator_settings(aldero_emulator, max_retries=1, refund_max_attempts=3)
    app, aldero = build_app(settings)

    async with lifespan_client(app) as client:
        response = await _fail_after_deduction(
            app, client, aldero_emulator, action="status", status=503, count=3
        )
        # Both calls of the request's own attempt fail; the queue's attempt meets
        # the last 503 and its retry lands.
        await aldero.refunds.drain(timeout=10)

    assert response.status_code == 502
    refunds = [row for row in await ledger(aldero_emulator, "alice") if row["type"] == "refund"]
    assert len(refunds) == 1
    assert (await emulator_user(aldero_emulator, "alice"))["credits"] == 10
    assert aldero.refunds.succeeded == 1


async def test_refund_failing_for_good_is_logged(
    aldero_emulator: EmulatorServer, caplog: pytest.LogCaptureFixture
) -> None:
    settings = emulator_settings(aldero_emulator, max_retries=0, refund_max_attempts=2)
    app, aldero = build_app(settings)
    caplog.set_level(logging.INFO, logger="aldero_fastapi")

    async with lifespan_client(app) as client:
        response = await _fail_after_deduction(
            app, client, aldero_emulator, action="status", status=503
        )
        await aldero.refunds.drain(timeout=10)

    assert response.status_code == 502
    assert aldero.refunds.failed == 1
    errors = [
        record
        for record in caplog.records
        if record.levelno == logging.ERROR and record.name == "aldero_fastapi.refunds"
    ]
    assert len(errors) == 1
    message = errors[0].getMessage()
    assert "user alice" in message
    assert "4 credits" in message
    deduction = (await ledger(aldero_emulator, "alice"))[0]
    assert deduction["referenceId"] in message
    assert (await emulator_user(aldero_emulator, "alice"))["credits"] == 6


async def test_dropped_deduction_is_retried_once(aldero_emulator: EmulatorServer) -> None:
    app, _ = build_app(emulator_settings(aldero_emulator))
    await add_fault(
        aldero_emulator,
        method="POST",
        path="/billing/users/*/credits",
        action="commit_then_drop",
        count=1,
    )

    async with lifespan_client(app) as client:
        response = await client.post("/charge/3", headers=ALICE)

    assert response.status_code == 200
    assert response.json()["balance"] == 7
    rows = await ledger(aldero_emulator, "alice")
    matching = [row for row in rows if row["referenceId"] == response.json()["referenceId"]]
    assert len(matching) == 1
    assert (await emulator_user(aldero_emulator, "alice"))["credits"] == 7


async def test_billing_outage_answers_503(aldero_emulator: EmulatorServer) -> None:
    app, _ = build_app(emulator_settings(aldero_emulator, max_retries=1))
    await add_fault(
        aldero_emulator, method="POST", path="/billing/users/*/credits", action="status", status=503
    )

    async with lifespan_client(app) as client:
        response = await client.post("/charge/3", headers=ALICE)

    assert response.status_code == 503
    assert response.json() == {"error": "Aldero service unavailable"}
    assert response.headers["retry-after"] == "5"
    assert (await emulator_user(aldero_emulator, "alice"))["credits"] == 10


@pytest.mark.parametrize(
    "fault",
    [
        {"action": "commit_then_status", "status": 500, "count": 1},
        {"action": "commit_then_drop", "count": 3},
        {"action": "status", "status": 503, "count": 3},
    ],
    ids=["committed-then-500", "committed-then-dropped-thrice", "never-applied"],
)
async def test_uncertain_deduction_refunded(
    aldero_emulator: EmulatorServer, fault: dict[str, object]
) -> None:
    app, aldero = build_app(emulator_settings(aldero_emulator, max_retries=2))
    await add_fault(aldero_emulator, method="POST", path="/billing/users/*/credits", **fault)

    async with lifespan_client(app) as client:
        response = await client.post("/charge/3", headers=ALICE)

    assert response.status_code == 503
    state = await emulator_user(aldero_emulator, "alice")
    assert state["credits"] == 10
    assert state["ledgerSum"] == 10
    rows = await ledger(aldero_emulator, "alice")
    assert sum(row["amount"] for row in rows if row["type"] == "usage") == -3
    assert sum(row["amount"] for row in rows if row["type"] == "refund") == 3
    assert aldero.refunds.succeeded == 1


async def test_retry_during_background_refund_charged(aldero_emulator: EmulatorServer) -> None:
    settings = emulator_settings(
        aldero_emulator, max_retries=0, refund_max_attempts=5, refund_backoff_seconds=0.5
    )
    app, aldero = build_app(settings)
    headers = {**ALICE, "Idempotency-Key": "fax-77"}

    async with lifespan_client(app) as client:
        first = asyncio.create_task(client.post("/pay-wait?fail=true", headers=headers))
        await asyncio.wait_for(app.state.deducted.wait(), timeout=10)
        # The request's own refund attempt meets this 503 and goes to the background.
        await add_fault(
            aldero_emulator,
            method="POST",
            path="/billing/users/*/credits",
            action="status",
            status=503,
            count=1,
        )
        app.state.release.set()
        failed = await first
        too_early = await client.post("/pay-wait", headers=headers)
        await aldero.refunds.drain(timeout=10)
        retried = await client.post("/pay-wait", headers=headers)

    assert failed.status_code == 502
    assert too_early.status_code == 409
    assert too_early.headers["retry-after"] == "5"
    assert retried.status_code == 200
    state = await emulator_user(aldero_emulator, "alice")
    assert state["credits"] == 6
    assert state["ledgerSum"] == 6


async def test_retry_beside_pending_refund_charged(aldero_emulator: EmulatorServer) -> None:
    settings = emulator_settings(
        aldero_emulator, max_retries=0, refund_max_attempts=5, refund_backoff_seconds=1.0
    )
    app, aldero = build_app(settings)
    headers = {**ALICE, "Idempotency-Key": "fax-78"}
    # The first attempt's deduction meets the first 503 and the resend that starts its
    # refund meets the second, so the refund waits in the background.
    await add_fault(
        aldero_emulator,
        method="POST",
        path="/billing/users/*/credits",
        action="status",
        status=503,
        count=2,
    )

    async with lifespan_client(app) as client:
        failed = await client.post("/charge/3", headers=headers)
        refund_was_pending = aldero.refunds.pending
        too_early = await client.post("/charge/3", headers=headers)
        await aldero.refunds.drain(timeout=10)
        retried = await client.post("/charge/3", headers=headers)

    assert failed.status_code == 503
    assert refund_was_pending == 1
    assert too_early.status_code == 409
    assert too_early.json()["error"].startswith("A refund of an earlier attempt")
    assert retried.status_code == 200
    assert retried.json()["balance"] == 7
    state = await emulator_user(aldero_emulator, "alice")
    assert state["credits"] == 7
    assert state["ledgerSum"] == 7
    rows = await ledger(aldero_emulator, "alice")
    usage = [row for row in rows if row["type"] == "usage"]
    refunds = [row for row in rows if row["type"] == "refund"]
    # The background refund charged and refunded the first reference id, and the retry
    # paid under the next one.
    assert len(usage) == 2
    assert len({row["referenceId"] for row in usage}) == 2
    assert [row["amount"] for row in refunds] == [3]
    assert aldero.refunds.succeeded == 1


async def test_failed_retry_keeps_paid_charge(aldero_emulator: EmulatorServer) -> None:
    app, aldero = build_app(emulator_settings(aldero_emulator, max_retries=2))
    headers = {**ALICE, "Idempotency-Key": "fax-79"}

    async with lifespan_client(app) as client:
        paid = await client.post("/charge/3", headers=headers)
        # Every attempt of the retry's deduction fails, so its outcome is unknown.
        await add_fault(
            aldero_emulator,
            method="POST",
            path="/billing/users/*/credits",
            action="status",
            status=503,
            count=3,
        )
        retried = await client.post("/charge/3", headers=headers)
        await aldero.refunds.drain(timeout=10)

    assert paid.status_code == 200
    assert paid.json()["balance"] == 7
    assert retried.status_code == 503
    state = await emulator_user(aldero_emulator, "alice")
    assert state["credits"] == 7
    assert state["ledgerSum"] == 7
    rows = await ledger(aldero_emulator, "alice")
    assert [row["type"] for row in rows if row["type"] in ("usage", "refund")] == ["usage"]
    assert aldero.refunds.succeeded == 0


async def test_failing_retry_of_paid_request(aldero_emulator: EmulatorServer) -> None:
    app, aldero = build_app(emulator_settings(aldero_emulator))
    app.state.release.set()
    headers = {**ALICE, "Idempotency-Key": "fax-80"}

    async with lifespan_client(app) as client:
        paid = await client.post("/pay-wait", headers=headers)
        failed_retry = await client.post("/pay-wait?fail=true", headers=headers)

    assert paid.json() == {"balance": 6}
    assert failed_retry.status_code == 502
    state = await emulator_user(aldero_emulator, "alice")
    assert state["credits"] == 6
    assert state["ledgerSum"] == 6
    rows = await ledger(aldero_emulator, "alice")
    assert not [row for row in rows if row["type"] == "refund"]
    assert aldero.refunds.succeeded == 0


async def test_keyed_uncertain_first_attempt_refunded(
    aldero_emulator: EmulatorServer,
) -> None:
    app, aldero = build_app(emulator_settings(aldero_emulator, max_retries=2))
    # The first attempt commits the deduction, and every attempt gets a 500 response.
    await add_fault(
        aldero_emulator,
        method="POST",
        path="/billing/users/*/credits",
        action="commit_then_status",
        status=500,
        count=3,
    )

    async with lifespan_client(app) as client:
        response = await client.post("/charge/3", headers={**ALICE, "Idempotency-Key": "fax-81"})
        await aldero.refunds.drain(timeout=10)

    assert response.status_code == 503
    state = await emulator_user(aldero_emulator, "alice")
    assert state["credits"] == 10
    assert state["ledgerSum"] == 10
    rows = await ledger(aldero_emulator, "alice")
    assert sorted(row["amount"] for row in rows if row["type"] in ("usage", "refund")) == [-3, 3]
    assert aldero.refunds.succeeded == 1


async def test_client_retry_replay_is_own_charge(aldero_emulator: EmulatorServer) -> None:
    app, aldero = build_app(emulator_settings(aldero_emulator, max_retries=2))
    # The deduction commits, its response is lost, and the client's retry gets a replay.
    await add_fault(
        aldero_emulator,
        method="POST",
        path="/billing/users/*/credits",
        action="commit_then_drop",
        count=1,
    )

    async with lifespan_client(app) as client:
        response = await client.post(
            "/charge-twice-then-fail", headers={**ALICE, "Idempotency-Key": "fax-82"}
        )
        await aldero.refunds.drain(timeout=10)

    assert response.status_code == 409
    state = await emulator_user(aldero_emulator, "alice")
    assert state["credits"] == 10
    assert state["ledgerSum"] == 10
    rows = await ledger(aldero_emulator, "alice")
    assert sorted(row["amount"] for row in rows if row["type"] == "refund") == [2, 3]
    assert aldero.refunds.succeeded == 2


class LedgerReadFailures(httpx.AsyncBaseTransport):
    """Real HTTP, except that ledger reads number ``first`` to ``last`` fail to connect."""

    def __init__(self, first: int, last: int) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self._first = first
        self._last = last
        self.ledger_reads = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "GET" and request.url.path.endswith("/credits"):
            self.ledger_reads += 1
            if self._first <= self.ledger_reads <= self._last:
                raise httpx.ConnectError("injected ledger read failure", request=request)
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


async def test_own_replay_refunded_when_ledger_fails(aldero_emulator: EmulatorServer) -> None:
    # The first ledger read comes before the deduction. The next three, one attempt and
    # two retries, check the replay that the client's own retry receives.
    transport = LedgerReadFailures(first=2, last=4)
    app, aldero = build_app(
        emulator_settings(aldero_emulator, max_retries=2, retry_backoff_seconds=0.0),
        transport=transport,
    )
    await add_fault(
        aldero_emulator,
        method="POST",
        path="/billing/users/*/credits",
        action="commit_then_drop",
        count=1,
    )

    async with lifespan_client(app) as client:
        response = await client.post("/charge/3", headers={**ALICE, "Idempotency-Key": "fax-83"})
        await aldero.refunds.drain(timeout=10)

    assert response.status_code == 503
    assert transport.ledger_reads == 5
    state = await emulator_user(aldero_emulator, "alice")
    assert state["credits"] == 10
    assert state["ledgerSum"] == 10
    rows = await ledger(aldero_emulator, "alice")
    assert [row["amount"] for row in rows if row["type"] == "refund"] == [3]


async def test_cancelled_refund_logged_with_ids(
    aldero_emulator: EmulatorServer, caplog: pytest.LogCaptureFixture
) -> None:
    settings = emulator_settings(
        aldero_emulator, max_retries=0, refund_max_attempts=5, refund_backoff_seconds=30.0
    )
    app, aldero = build_app(settings)

    with caplog.at_level(logging.ERROR, logger="aldero_fastapi.refunds"):
        async with lifespan_client(app) as client:
            response = await _fail_after_deduction(
                app, client, aldero_emulator, action="status", status=503, count=1
            )
            await aldero.refunds.drain(timeout=0.1)

    assert response.status_code == 502
    lines = [record.getMessage() for record in caplog.records if record.levelno == logging.ERROR]
    assert len(lines) == 1
    assert lines[0].startswith("Refund cancelled before it landed")
    assert "user alice, 4 credits, deduction ded_" in lines[0]
    assert "Reconcile it by hand" in lines[0]
