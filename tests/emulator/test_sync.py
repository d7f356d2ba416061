"""syncUser: store purchases become entitlements and credits, once."""

from __future__ import annotations

import httpx

from aldero_fastapi.emulator import EmulatorState
from aldero_fastapi.emulator.records import StorePurchaseRecord


async def test_sync_grants_carol_pro(billing: httpx.AsyncClient) -> None:
    response = await billing.post("/billing/users/carol/sync")

    assert response.status_code == 200
    assert response.json() == {
        "synced": [
            {
                "entitlement": "pro_features",
                "productId": "pro_monthly",
                "expiresAt": "2099-12-31T00:00:00.000Z",
            }
        ],
        "errors": [],
    }


async def test_sync_updates_carol_entitlements(billing: httpx.AsyncClient) -> None:
    await billing.post("/billing/users/carol/sync")

    body = (await billing.get("/billing/users/carol/entitlements")).json()

    assert body["features"] == ["pro_features"]
    assert body["subscriptions"] == [
        {
            "productId": "pro_monthly",
            "status": "active",
            "currentPeriodEnd": "2099-12-31T00:00:00.000Z",
        }
    ]
    assert body["credits"] == 0


async def test_carol_has_nothing_before_sync(billing: httpx.AsyncClient) -> None:
    body = (await billing.get("/billing/users/carol/entitlements")).json()

    assert body["features"] == []
    assert body["subscriptions"] == []


async def test_sync_reports_dave_unknown_product(billing: httpx.AsyncClient) -> None:
    response = await billing.post("/billing/users/dave/sync")
    body = response.json()

    assert response.status_code == 200
    assert body["synced"] == []
    assert len(body["errors"]) == 1
    assert body["errors"][0]["code"] == "unknown_product"
    assert body["errors"][0]["productId"] == "legacy_lifetime"
    assert "legacy_lifetime" in body["errors"][0]["message"]


async def test_sync_leaves_dave_unchanged(billing: httpx.AsyncClient) -> None:
    await billing.post("/billing/users/dave/sync")

    body = (await billing.get("/billing/users/dave/entitlements")).json()

    assert body["features"] == []
    assert body["credits"] == 5


async def test_second_sync_reports_same_list(billing: httpx.AsyncClient) -> None:
    first = await billing.post("/billing/users/carol/sync")
    second = await billing.post("/billing/users/carol/sync")

    assert second.json() == first.json()


async def test_sync_of_user_without_purchases(billing: httpx.AsyncClient) -> None:
    response = await billing.post("/billing/users/nobody/sync")

    assert response.json() == {"synced": [], "errors": []}


async def test_sync_grants_credit_pack_once(
    billing: httpx.AsyncClient, state: EmulatorState
) -> None:
    with state.store.transaction() as tx:
        tx.add_store_purchase(
            StorePurchaseRecord(
                purchase_id="rc_bob_credits_10",
                user_id="bob",
                product_id="credits_10",
                store="play_store",
                purchased_at="2024-01-01T00:00:00.000Z",
                expires_at=None,
                credits_granted=False,
            )
        )

    await billing.post("/billing/users/bob/sync")
    await billing.post("/billing/users/bob/sync")
    ledger = (await billing.get("/billing/users/bob/credits")).json()

    assert ledger["balance"] == 13
    assert [row["type"] for row in ledger["transactions"]] == ["purchase", "grant"]
    assert ledger["transactions"][0]["referenceId"] == "rc_bob_credits_10"
