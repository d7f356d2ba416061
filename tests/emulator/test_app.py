"""create_app as a whole: state access, mounting and request logging."""

from __future__ import annotations

import logging

import httpx
import pytest
from fastapi import FastAPI

from aldero_fastapi.emulator import (
    DEFAULT_BILLING_KEY,
    EmulatorConfig,
    EmulatorState,
    create_app,
)

from .conftest import BILLING_HEADERS


def test_state_is_reachable(app: FastAPI) -> None:
    assert isinstance(app.state.emulator, EmulatorState)


async def test_each_app_has_own_store() -> None:
    first = create_app()
    second = create_app()
    first_state: EmulatorState = first.state.emulator
    second_state: EmulatorState = second.state.emulator

    with first_state.store.transaction() as tx:
        tx.set_features("bob", ["only_first"])
    with second_state.store.transaction(write=False) as tx:
        bob = tx.get_user("bob")

    assert bob is not None
    assert bob.features == ()
    await first_state.aclose()
    await second_state.aclose()


async def test_mounted_app_serves_tenant_api() -> None:
    parent = FastAPI()
    emulator = create_app()
    parent.mount("/emulator", emulator)
    transport = httpx.ASGITransport(app=parent)

    async with httpx.AsyncClient(transport=transport, base_url="http://parent.test") as client:
        products = await client.get(
            "/emulator/v1/tenants/myapp/billing/products", headers=BILLING_HEADERS
        )
        logged = await client.get("/emulator/_emulator/requests")

    assert products.status_code == 200
    assert logged.json()["requests"][0]["path"] == "/v1/tenants/myapp/billing/products"
    await emulator.state.emulator.aclose()


async def test_other_tenant_config() -> None:
    app = create_app(EmulatorConfig(tenant="acme"))
    transport = httpx.ASGITransport(app=app)

    async with httpx.AsyncClient(transport=transport, base_url="http://e.test") as client:
        acme = await client.get("/v1/tenants/acme/billing/products", headers=BILLING_HEADERS)
        myapp = await client.get("/v1/tenants/myapp/billing/products", headers=BILLING_HEADERS)

    assert acme.status_code == 200
    assert myapp.status_code == 403
    await app.state.emulator.aclose()


async def test_request_log_line_has_ids(
    billing: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="aldero_fastapi.emulator")

    await billing.get("/billing/users/alice/entitlements", headers={"X-Request-Id": "trace-9"})

    lines = [
        record.getMessage()
        for record in caplog.records
        if record.name == "aldero_fastapi.emulator.middleware"
    ]
    assert lines == [
        "GET /v1/tenants/myapp/billing/users/alice/entitlements 200 "
        "request_id=trace-9 user_id=alice"
    ]


async def test_logs_never_contain_key(
    billing: httpx.AsyncClient, admin: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await admin.post("/faults", json={"path": "/billing/products", "status": 503, "count": 1})

    await billing.get("/billing/products")
    await billing.get("/billing/users/bob/entitlements", headers={"Authorization": "Bearer bil_x"})
    await billing.post("/billing/users/bob/credits", json={"type": "grant", "amount": 1})

    assert DEFAULT_BILLING_KEY not in caplog.text
    assert "bil_x" not in caplog.text


async def test_fault_is_logged(
    billing: httpx.AsyncClient, admin: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="aldero_fastapi.emulator")
    fault = (await admin.post("/faults", json={"path": "/billing/products", "status": 503})).json()

    await billing.get("/billing/products")

    assert f"Fault {fault['id']} applies to GET" in caplog.text


async def test_control_characters_are_escaped_in_log(
    billing: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="aldero_fastapi.emulator")

    await billing.get("/billing/users/a%0Afake/entitlements")

    assert "a\\nfake" in caplog.text
    assert "a\nfake" not in caplog.text


async def test_long_idempotency_key_is_422(notifications: httpx.AsyncClient) -> None:
    body = {
        "templateName": "welcome-email",
        "channel": "email",
        "to": "a@b.io",
        "variables": {"name": "A"},
    }

    response = await notifications.post(
        "/notifications/send", json=body, headers={"Idempotency-Key": "k" * 201}
    )

    assert response.status_code == 422
    assert response.json()["error"]["fields"][0]["field"] == "Idempotency-Key"
