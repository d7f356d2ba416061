"""Fault rules through the admin API, applied to in-process requests."""

from __future__ import annotations

import random
import time
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from aldero_fastapi.emulator import ConnectionDroppedError, EmulatorState
from aldero_fastapi.emulator.faults import FaultRegistry

from .conftest import BASE, BILLING_HEADERS

PRODUCTS = "/billing/products"
CREDITS = "/billing/users/bob/credits"
GRANT = {"type": "grant", "amount": 5, "referenceId": "grant-1"}


async def add_fault(admin: httpx.AsyncClient, **rule: Any) -> dict[str, Any]:
    response = await admin.post("/faults", json=rule)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def balance(admin: httpx.AsyncClient, user: str = "bob") -> int:
    credits: int = (await admin.get(f"/users/{user}")).json()["credits"]
    return credits


async def test_created_rule_is_returned(admin: httpx.AsyncClient) -> None:
    rule = await add_fault(admin, method="post", path="/billing/*", status=502, count=2)

    assert rule["id"].startswith("fault_")
    assert rule["method"] == "POST"
    assert rule["path"] == "/billing/*"
    assert rule["action"] == "status"
    assert rule["status"] == 502
    assert rule["latencyMs"] == 0
    assert rule["retryAfter"] is None
    assert rule["count"] == 2
    assert rule["remaining"] == 2
    assert rule["probability"] == 1.0


async def test_status_rule_returns_error(
    admin: httpx.AsyncClient, billing: httpx.AsyncClient
) -> None:
    await add_fault(admin, path=PRODUCTS, action="status", status=429, retryAfter=7)

    response = await billing.get(PRODUCTS)

    assert response.status_code == 429
    assert response.json()["error"]["code"] == "rate_limited"
    assert response.headers["Retry-After"] == "7"


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (500, "internal_error"),
        (502, "bad_gateway"),
        (503, "service_unavailable"),
        (504, "gateway_timeout"),
        (418, "fault_injected"),
    ],
)
async def test_status_codes_have_error_codes(
    admin: httpx.AsyncClient, billing: httpx.AsyncClient, status: int, code: str
) -> None:
    await add_fault(admin, path=PRODUCTS, status=status)

    response = await billing.get(PRODUCTS)

    assert response.status_code == status
    assert response.json()["error"]["code"] == code


async def test_status_without_retry_after_header(
    admin: httpx.AsyncClient, billing: httpx.AsyncClient
) -> None:
    await add_fault(admin, path=PRODUCTS, status=503)

    response = await billing.get(PRODUCTS)

    assert "Retry-After" not in response.headers


async def test_status_rule_does_not_apply(
    admin: httpx.AsyncClient, billing: httpx.AsyncClient
) -> None:
    await add_fault(admin, path="/billing/users/*/credits", status=503)

    response = await billing.post(CREDITS, json=GRANT)

    assert response.status_code == 503
    assert await balance(admin) == 3


async def test_status_rule_stores_no_idempotency(
    admin: httpx.AsyncClient, billing: httpx.AsyncClient
) -> None:
    await add_fault(admin, path="/billing/users/*/credits", status=503, count=1)
    await billing.post(CREDITS, json=GRANT)

    retry = await billing.post(CREDITS, json=GRANT)

    assert retry.status_code == 200
    assert "Idempotent-Replayed" not in retry.headers
    assert await balance(admin) == 8


async def test_count_limits_rule(admin: httpx.AsyncClient, billing: httpx.AsyncClient) -> None:
    await add_fault(admin, path=PRODUCTS, status=503, count=2)

    statuses = [(await billing.get(PRODUCTS)).status_code for _ in range(4)]
    rules = (await admin.get("/faults")).json()["faults"]

    assert statuses == [503, 503, 200, 200]
    assert rules[0]["remaining"] == 0
    assert rules[0]["applied"] == 2


async def test_first_matching_rule_wins(
    admin: httpx.AsyncClient, billing: httpx.AsyncClient
) -> None:
    await add_fault(admin, path="/billing/*", status=502, count=1)
    await add_fault(admin, path=PRODUCTS, status=504)

    first = await billing.get(PRODUCTS)
    second = await billing.get(PRODUCTS)

    assert first.status_code == 502
    assert second.status_code == 504


async def test_method_must_match(admin: httpx.AsyncClient, billing: httpx.AsyncClient) -> None:
    await add_fault(admin, method="POST", path="/billing/users/*/credits", status=503)

    read = await billing.get(CREDITS)
    write = await billing.post(CREDITS, json=GRANT)

    assert read.status_code == 200
    assert write.status_code == 503


async def test_glob_matches_any_user(admin: httpx.AsyncClient, billing: httpx.AsyncClient) -> None:
    await add_fault(admin, path="/billing/users/*/credits", status=503)

    response = await billing.get("/billing/users/alice/credits")

    assert response.status_code == 503


async def test_probability_zero_never_applies(
    admin: httpx.AsyncClient, billing: httpx.AsyncClient
) -> None:
    await add_fault(admin, path=PRODUCTS, status=503, probability=0.0)

    statuses = {(await billing.get(PRODUCTS)).status_code for _ in range(10)}

    assert statuses == {200}


def test_probability_follows_seeded_random() -> None:
    registry = FaultRegistry(random.Random(1))
    registry.add(
        method="*",
        path="/x",
        action="status",
        status=503,
        latency_ms=0,
        retry_after=None,
        count=None,
        probability=0.5,
    )
    expected_random = random.Random(1)

    applied = [registry.take("GET", "/x") is not None for _ in range(200)]
    expected = [expected_random.random() < 0.5 for _ in range(200)]

    assert applied == expected
    assert 60 < sum(applied) < 140


async def test_auth_is_checked_before_faults(
    admin: httpx.AsyncClient, billing: httpx.AsyncClient
) -> None:
    await add_fault(admin, path=PRODUCTS, status=503, count=1)

    unauthorized = await billing.get(PRODUCTS, headers={"Authorization": ""})
    rules = (await admin.get("/faults")).json()["faults"]

    assert unauthorized.status_code == 401
    assert rules[0]["remaining"] == 1


async def test_faults_apply_before_validation(
    admin: httpx.AsyncClient, billing: httpx.AsyncClient
) -> None:
    await add_fault(admin, path="/billing/users/*/credits", status=503)

    response = await billing.post(CREDITS, json={"type": "bogus"})

    assert response.status_code == 503


async def test_latency_delays_response(
    admin: httpx.AsyncClient, billing: httpx.AsyncClient
) -> None:
    await add_fault(admin, path=PRODUCTS, action="none", latencyMs=300)

    started = time.monotonic()
    response = await billing.get(PRODUCTS)
    elapsed = time.monotonic() - started

    assert response.status_code == 200
    assert elapsed >= 0.3


async def test_latency_applies_to_status(
    admin: httpx.AsyncClient, billing: httpx.AsyncClient
) -> None:
    await add_fault(admin, path=PRODUCTS, status=503, latencyMs=200)

    started = time.monotonic()
    response = await billing.get(PRODUCTS)
    elapsed = time.monotonic() - started

    assert response.status_code == 503
    assert elapsed >= 0.2


async def test_latency_applies_to_validation_errors(
    admin: httpx.AsyncClient, billing: httpx.AsyncClient
) -> None:
    await add_fault(admin, path="/billing/users/*/credits", action="none", latencyMs=200)

    started = time.monotonic()
    response = await billing.post(CREDITS, json={"type": "bogus"})
    elapsed = time.monotonic() - started

    assert response.status_code == 422
    assert elapsed >= 0.2


async def test_commit_then_status_applies(
    admin: httpx.AsyncClient, billing: httpx.AsyncClient
) -> None:
    await add_fault(
        admin, path="/billing/users/*/credits", action="commit_then_status", status=500, count=1
    )

    failed = await billing.post(CREDITS, json=GRANT)
    retry = await billing.post(CREDITS, json=GRANT)

    assert failed.status_code == 500
    assert await balance(admin) == 8
    assert retry.status_code == 200
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert retry.json()["balance"] == 8


async def test_drop_raises_in_asgi_client(
    admin: httpx.AsyncClient, billing: httpx.AsyncClient
) -> None:
    await add_fault(admin, path=PRODUCTS, action="drop")

    with pytest.raises(ConnectionDroppedError):
        await billing.get(PRODUCTS)


async def test_drop_error_is_transport_error() -> None:
    assert issubclass(ConnectionDroppedError, httpx.TransportError)


async def test_drop_does_not_apply(admin: httpx.AsyncClient, billing: httpx.AsyncClient) -> None:
    await add_fault(admin, path="/billing/users/*/credits", action="drop")

    with pytest.raises(httpx.RemoteProtocolError):
        await billing.post(CREDITS, json=GRANT)

    assert await balance(admin) == 3


async def test_commit_then_drop_applies(
    admin: httpx.AsyncClient, billing: httpx.AsyncClient
) -> None:
    await add_fault(admin, path="/billing/users/*/credits", action="commit_then_drop", count=1)

    with pytest.raises(httpx.TransportError):
        await billing.post(CREDITS, json=GRANT)
    retry = await billing.post(CREDITS, json=GRANT)

    assert retry.headers["Idempotent-Replayed"] == "true"
    assert await balance(admin) == 8


async def test_delete_one_rule(admin: httpx.AsyncClient, billing: httpx.AsyncClient) -> None:
    rule = await add_fault(admin, path=PRODUCTS, status=503)

    deleted = await admin.delete(f"/faults/{rule['id']}")
    response = await billing.get(PRODUCTS)

    assert deleted.status_code == 200
    assert response.status_code == 200


async def test_delete_unknown_rule_is_404(admin: httpx.AsyncClient) -> None:
    response = await admin.delete("/faults/fault_nope")

    assert response.status_code == 404


async def test_clear_rules(admin: httpx.AsyncClient, state: EmulatorState) -> None:
    await add_fault(admin, path=PRODUCTS, status=503)
    await add_fault(admin, path=CREDITS, status=503)

    response = await admin.delete("/faults")

    assert response.json() == {"deleted": 2}
    assert state.faults.list_rules() == []


@pytest.mark.parametrize(
    "rule",
    [
        {"action": "explode"},
        {"status": 200},
        {"status": 600},
        {"latencyMs": -1},
        {"latencyMs": 60_001},
        {"count": 0},
        {"probability": 1.5},
        {"method": "TRACE"},
        {"path": "billing/*"},
        {"retryAfter": -1},
    ],
)
async def test_invalid_rule_is_422(admin: httpx.AsyncClient, rule: dict[str, Any]) -> None:
    response = await admin.post("/faults", json=rule)

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "validation_error"


async def test_reset_restarts_probability_draws(
    admin: httpx.AsyncClient, billing: httpx.AsyncClient
) -> None:
    async def draw_statuses() -> list[int]:
        await add_fault(admin, path=PRODUCTS, status=503, probability=0.5)
        return [(await billing.get(PRODUCTS)).status_code for _ in range(12)]

    first = await draw_statuses()
    await admin.post("/reset")
    second = await draw_statuses()

    assert second == first
    assert set(first) == {200, 503}


async def test_drop_without_raising_returns_503(app: FastAPI, admin: httpx.AsyncClient) -> None:
    await add_fault(admin, path=PRODUCTS, action="drop")
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)

    async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
        response = await client.get(PRODUCTS, headers=BILLING_HEADERS)

    assert response.status_code == 503
    assert response.content == b""
