"""Admin routes: users, simulated purchases and reset."""

from __future__ import annotations

import httpx
import pytest

from aldero_fastapi.emulator import EmulatorState


async def test_get_user_shows_ledger_sum(admin: httpx.AsyncClient) -> None:
    response = await admin.get("/users/alice")

    assert response.status_code == 200
    assert response.json() == {
        "userId": "alice",
        "features": ["pro_features"],
        "credits": 10,
        "ledgerSum": 10,
    }


async def test_get_unknown_user_is_empty(admin: httpx.AsyncClient) -> None:
    body = (await admin.get("/users/nobody")).json()

    assert body == {"userId": "nobody", "features": [], "credits": 0, "ledgerSum": 0}


async def test_put_sets_features(admin: httpx.AsyncClient, billing: httpx.AsyncClient) -> None:
    response = await admin.put("/users/bob", json={"features": ["fax", "beta"]})
    entitlements = (await billing.get("/billing/users/bob/entitlements")).json()

    assert response.status_code == 200
    assert response.json()["features"] == ["beta", "fax"]
    assert entitlements["features"] == ["beta", "fax"]
    assert entitlements["credits"] == 3


async def test_put_sets_credits_through_ledger(
    admin: httpx.AsyncClient, billing: httpx.AsyncClient
) -> None:
    response = await admin.put("/users/bob", json={"credits": 25})
    ledger = (await billing.get("/billing/users/bob/credits")).json()
    user = (await admin.get("/users/bob")).json()

    assert response.json()["credits"] == 25
    assert ledger["transactions"][0]["type"] == "adjustment"
    assert ledger["transactions"][0]["amount"] == 22
    assert user["ledgerSum"] == 25


async def test_put_lowers_credits(admin: httpx.AsyncClient) -> None:
    await admin.put("/users/alice", json={"credits": 0})

    user = (await admin.get("/users/alice")).json()

    assert user["credits"] == 0
    assert user["ledgerSum"] == 0


async def test_put_same_credits_adds_no_row(
    admin: httpx.AsyncClient, billing: httpx.AsyncClient
) -> None:
    await admin.put("/users/bob", json={"credits": 3})

    ledger = (await billing.get("/billing/users/bob/credits")).json()

    assert len(ledger["transactions"]) == 1


async def test_put_creates_user(admin: httpx.AsyncClient) -> None:
    response = await admin.put("/users/erin", json={"features": ["x"], "credits": 2})

    assert response.json()["userId"] == "erin"
    assert response.json()["features"] == ["x"]
    assert response.json()["credits"] == 2


@pytest.mark.parametrize(
    "body",
    [{"credits": -1}, {"credits": 1.5}, {"features": "pro"}, {"features": [""]}, {"x": 1}],
)
async def test_put_invalid_body_is_422(admin: httpx.AsyncClient, body: dict[str, object]) -> None:
    response = await admin.put("/users/bob", json=body)

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "validation_error"


async def test_purchase_of_credit_pack(
    admin: httpx.AsyncClient, billing: httpx.AsyncClient
) -> None:
    response = await admin.post("/users/bob/purchases", json={"productId": "credits_50"})
    ledger = (await billing.get("/billing/users/bob/credits")).json()

    assert response.status_code == 200
    assert response.json()["credits"] == 53
    assert ledger["transactions"][0]["type"] == "purchase"
    assert ledger["transactions"][0]["amount"] == 50


async def test_purchase_of_subscription(admin: httpx.AsyncClient) -> None:
    response = await admin.post("/users/bob/purchases", json={"productId": "pro_yearly"})
    body = response.json()

    assert body["features"] == ["pro_features"]
    assert body["credits"] == 3
    assert body["subscriptions"][0]["productId"] == "pro_yearly"
    assert body["subscriptions"][0]["status"] == "active"
    assert body["subscriptions"][0]["currentPeriodEnd"].endswith("Z")


async def test_purchase_is_not_granted_again_by_sync(
    admin: httpx.AsyncClient, billing: httpx.AsyncClient
) -> None:
    await admin.post("/users/bob/purchases", json={"productId": "credits_10"})

    await billing.post("/billing/users/bob/sync")
    user = (await admin.get("/users/bob")).json()

    assert user["credits"] == 13


async def test_purchase_of_unknown_product_is_404(admin: httpx.AsyncClient) -> None:
    response = await admin.post("/users/bob/purchases", json={"productId": "gold"})

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


async def test_reset_restores_seed(admin: httpx.AsyncClient, billing: httpx.AsyncClient) -> None:
    await admin.put("/users/alice", json={"features": [], "credits": 99})
    await billing.post("/billing/users/carol/sync")

    response = await admin.post("/reset")
    alice = (await admin.get("/users/alice")).json()
    carol = (await billing.get("/billing/users/carol/entitlements")).json()
    ledger = (await billing.get("/billing/users/alice/credits")).json()

    assert response.status_code == 200
    assert alice["features"] == ["pro_features"]
    assert alice["credits"] == 10
    assert carol["features"] == []
    assert len(ledger["transactions"]) == 1


async def test_reset_clears_runtime_state(
    admin: httpx.AsyncClient,
    billing: httpx.AsyncClient,
    notifications: httpx.AsyncClient,
    state: EmulatorState,
) -> None:
    await admin.post("/faults", json={"path": "/nothing", "action": "status"})
    await billing.post(
        "/billing/users/bob/credits", json={"type": "grant", "amount": 1, "referenceId": "g1"}
    )
    await notifications.post(
        "/notifications/send",
        json={
            "templateName": "welcome-email",
            "channel": "email",
            "to": "a@b.io",
            "variables": {"name": "A"},
        },
    )

    await admin.post("/reset")
    replay = await billing.post(
        "/billing/users/bob/credits", json={"type": "grant", "amount": 1, "referenceId": "g1"}
    )

    assert (await admin.get("/faults")).json()["faults"] == []
    assert (await admin.get("/notifications")).json()["notifications"] == []
    assert "Idempotent-Replayed" not in replay.headers
    assert len(state.requests.find()) == 1


async def test_admin_openapi_is_served(admin: httpx.AsyncClient) -> None:
    response = await admin.get("/openapi.json")

    assert response.status_code == 200
    assert "/v1/tenants/myapp/billing/users/{userId}/credits" in response.json()["paths"]
