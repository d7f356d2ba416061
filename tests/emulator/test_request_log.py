"""The request log of the tenant API under /_emulator/requests."""

from __future__ import annotations

import httpx
import pytest

PRODUCTS = "/billing/products"


async def list_requests(admin: httpx.AsyncClient, **filters: str) -> list[dict[str, object]]:
    requests: list[dict[str, object]] = (await admin.get("/requests", params=filters)).json()[
        "requests"
    ]
    return requests


async def test_request_is_logged(admin: httpx.AsyncClient, billing: httpx.AsyncClient) -> None:
    await billing.get(f"{PRODUCTS}?unused=1", headers={"X-Request-Id": "trace-1"})

    logged = await list_requests(admin)

    assert len(logged) == 1
    assert logged[0]["method"] == "GET"
    assert logged[0]["path"] == "/v1/tenants/myapp/billing/products"
    assert logged[0]["status"] == 200
    assert logged[0]["requestId"] == "trace-1"
    assert logged[0]["userAgent"] == "tests/1"
    assert logged[0]["faultId"] is None
    assert str(logged[0]["createdAt"]).endswith("Z")


async def test_admin_requests_are_not_logged(admin: httpx.AsyncClient) -> None:
    await admin.get("/users/alice")
    await admin.get("/faults")

    assert await list_requests(admin) == []


async def test_error_statuses_are_logged(
    admin: httpx.AsyncClient, billing: httpx.AsyncClient
) -> None:
    await billing.get(PRODUCTS, headers={"Authorization": ""})
    await billing.get("/billing/unknown")
    await billing.post("/billing/users/bob/credits", json={"type": "usage", "amount": -9})

    statuses = [entry["status"] for entry in await list_requests(admin)]

    assert statuses == [401, 404, 402]


async def test_fault_responses_are_logged(
    admin: httpx.AsyncClient, billing: httpx.AsyncClient
) -> None:
    fault = (await admin.post("/faults", json={"path": PRODUCTS, "status": 503})).json()
    await billing.get(PRODUCTS)

    logged = await list_requests(admin)

    assert logged[0]["status"] == 503
    assert logged[0]["faultId"] == fault["id"]


async def test_dropped_request_has_no_status(
    admin: httpx.AsyncClient, billing: httpx.AsyncClient
) -> None:
    await admin.post("/faults", json={"path": PRODUCTS, "action": "drop"})
    with pytest.raises(httpx.TransportError):
        await billing.get(PRODUCTS)

    logged = await list_requests(admin)

    assert len(logged) == 1
    assert logged[0]["status"] is None


async def test_filter_by_method_and_path(
    admin: httpx.AsyncClient, billing: httpx.AsyncClient
) -> None:
    await billing.get("/billing/users/alice/credits")
    await billing.post("/billing/users/alice/credits", json={"type": "grant", "amount": 1})
    await billing.post("/billing/users/bob/credits", json={"type": "grant", "amount": 1})
    await billing.get(PRODUCTS)

    posts = await list_requests(admin, method="post")
    alice = await list_requests(admin, path="/billing/users/alice/*")
    full = await list_requests(admin, path="/v1/tenants/myapp/billing/products")

    assert len(posts) == 2
    assert len(alice) == 2
    assert len(full) == 1


async def test_log_is_in_arrival_order(
    admin: httpx.AsyncClient, billing: httpx.AsyncClient
) -> None:
    for request_id in ["r1", "r2", "r3"]:
        await billing.get(PRODUCTS, headers={"X-Request-Id": request_id})

    logged = await list_requests(admin)

    assert [entry["requestId"] for entry in logged] == ["r1", "r2", "r3"]


async def test_clear_log(admin: httpx.AsyncClient, billing: httpx.AsyncClient) -> None:
    await billing.get(PRODUCTS)
    await billing.get(PRODUCTS)

    cleared = await admin.delete("/requests")

    assert cleared.json() == {"deleted": 2}
    assert await list_requests(admin) == []
