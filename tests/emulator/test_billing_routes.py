"""Billing routes: entitlements, credit adjustments, ledger pages and products."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

CREDITS = "/billing/users/bob/credits"


async def test_entitlements_of_alice(billing: httpx.AsyncClient) -> None:
    response = await billing.get("/billing/users/alice/entitlements")
    body = response.json()

    assert response.status_code == 200
    assert body["userId"] == "alice"
    assert body["features"] == ["pro_features"]
    assert body["credits"] == 10
    assert body["subscriptions"] == [
        {
            "productId": "pro_monthly",
            "status": "active",
            "currentPeriodEnd": "2099-12-31T00:00:00.000Z",
        }
    ]
    assert body["updatedAt"].endswith("Z")


async def test_unknown_user_has_nothing(billing: httpx.AsyncClient) -> None:
    response = await billing.get("/billing/users/nobody/entitlements")
    body = response.json()

    assert response.status_code == 200
    assert body["features"] == []
    assert body["credits"] == 0
    assert body["subscriptions"] == []


async def test_unicode_user_id_is_accepted(billing: httpx.AsyncClient) -> None:
    grant = await billing.post(
        "/billing/users/zoë-日本/credits", json={"type": "grant", "amount": 4}
    )
    read = await billing.get("/billing/users/zoë-日本/entitlements")

    assert grant.status_code == 200
    assert read.json()["userId"] == "zoë-日本"
    assert read.json()["credits"] == 4


@pytest.mark.parametrize("user_id", ["a%0Ab", "tab%09id", "nul%00", "c1%C2%85"])
async def test_control_character_user_id_is_422(billing: httpx.AsyncClient, user_id: str) -> None:
    response = await billing.get(f"/billing/users/{user_id}/entitlements")

    assert response.status_code == 422
    assert response.json()["error"]["fields"][0]["field"] == "userId"


async def test_long_user_id_is_422(billing: httpx.AsyncClient) -> None:
    response = await billing.get(f"/billing/users/{'u' * 129}/entitlements")

    assert response.status_code == 422


async def test_max_length_user_id_is_accepted(billing: httpx.AsyncClient) -> None:
    response = await billing.get(f"/billing/users/{'u' * 128}/entitlements")

    assert response.status_code == 200


async def test_usage_deducts_credits(billing: httpx.AsyncClient) -> None:
    response = await billing.post(
        CREDITS, json={"type": "usage", "amount": -2, "description": "Fax of 2 pages"}
    )
    body = response.json()

    assert response.status_code == 200
    assert body["balance"] == 1
    assert body["transaction"]["id"].startswith("txn_")
    assert body["transaction"]["type"] == "usage"
    assert body["transaction"]["amount"] == -2
    assert body["transaction"]["description"] == "Fax of 2 pages"
    assert body["transaction"]["referenceId"] is None
    assert body["transaction"]["reversesTransactionId"] is None
    assert body["transaction"]["balanceAfter"] == 1
    assert body["transaction"]["createdAt"].endswith("Z")


async def test_usage_of_whole_balance_leaves_0(billing: httpx.AsyncClient) -> None:
    response = await billing.post(CREDITS, json={"type": "usage", "amount": -3})

    assert response.status_code == 200
    assert response.json()["balance"] == 0


async def test_overdraft_is_402(billing: httpx.AsyncClient) -> None:
    response = await billing.post(CREDITS, json={"type": "usage", "amount": -5})
    error = response.json()["error"]

    assert response.status_code == 402
    assert error["code"] == "insufficient_credits"
    assert error["balance"] == 3
    assert error["required"] == 5


async def test_overdraft_leaves_balance(billing: httpx.AsyncClient) -> None:
    await billing.post(CREDITS, json={"type": "usage", "amount": -5})

    response = await billing.get("/billing/users/bob/entitlements")

    assert response.json()["credits"] == 3


async def test_negative_adjustment_overdraft_is_402(billing: httpx.AsyncClient) -> None:
    response = await billing.post(CREDITS, json={"type": "adjustment", "amount": -4})

    assert response.status_code == 402
    assert response.json()["error"]["required"] == 4


async def test_usage_of_unknown_user_is_402(billing: httpx.AsyncClient) -> None:
    response = await billing.post(
        "/billing/users/newcomer/credits", json={"type": "usage", "amount": -1}
    )

    assert response.status_code == 402
    assert response.json()["error"]["balance"] == 0


@pytest.mark.parametrize(
    ("credit_type", "amount"),
    [("purchase", 5), ("grant", 1), ("refund", 2), ("adjustment", 7), ("adjustment", -1)],
)
async def test_valid_types_are_applied(
    billing: httpx.AsyncClient, credit_type: str, amount: int
) -> None:
    response = await billing.post(CREDITS, json={"type": credit_type, "amount": amount})

    assert response.status_code == 200
    assert response.json()["balance"] == 3 + amount


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"type": "usage", "amount": 5}, "amount"),
        ({"type": "usage", "amount": 0}, "amount"),
        ({"type": "grant", "amount": -5}, "amount"),
        ({"type": "purchase", "amount": 0}, "amount"),
        ({"type": "refund", "amount": -1}, "amount"),
        ({"type": "adjustment", "amount": 0}, "amount"),
        ({"type": "grant", "amount": 1.5}, "amount"),
        ({"type": "grant", "amount": 2.0}, "amount"),
        ({"type": "grant", "amount": "5"}, "amount"),
        ({"type": "grant", "amount": True}, "amount"),
        ({"type": "grant", "amount": None}, "amount"),
        ({"type": "grant", "amount": 10**30}, "amount"),
        ({"type": "grant"}, "amount"),
        ({"type": "bonus", "amount": 5}, "type"),
        ({"amount": 5}, "type"),
        ({"type": "grant", "amount": 5, "description": "x" * 501}, "description"),
        ({"type": "grant", "amount": 5, "description": 5}, "description"),
        ({"type": "grant", "amount": 5, "referenceId": ""}, "referenceId"),
        ({"type": "grant", "amount": 5, "referenceId": "r" * 201}, "referenceId"),
        ({"type": "grant", "amount": 5, "reference_id": "r1"}, "reference_id"),
        ({"type": "grant", "amount": 5, "reversesTransactionId": "txn_1"}, "reversesTransactionId"),
    ],
)
async def test_invalid_adjustment_is_422(
    billing: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    response = await billing.post(CREDITS, json=body)
    error = response.json()["error"]

    assert response.status_code == 422
    assert error["code"] == "validation_error"
    assert error["fields"][0]["field"] == field
    assert field in error["message"]


async def test_invalid_amount_message_names_value(billing: httpx.AsyncClient) -> None:
    response = await billing.post(CREDITS, json={"type": "grant", "amount": 1.5})

    assert "1.5" in response.json()["error"]["message"]


async def test_description_of_500_chars_is_accepted(billing: httpx.AsyncClient) -> None:
    body = {"type": "grant", "amount": 1, "description": "d" * 500}

    response = await billing.post(CREDITS, json=body)

    assert response.status_code == 200


async def test_malformed_json_is_422(billing: httpx.AsyncClient) -> None:
    response = await billing.post(
        CREDITS, content=b'{"type": "grant",', headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "validation_error"


async def test_json_array_body_is_422(billing: httpx.AsyncClient) -> None:
    response = await billing.post(CREDITS, json=[1, 2])

    assert response.status_code == 422


async def test_empty_body_is_422(billing: httpx.AsyncClient) -> None:
    response = await billing.post(CREDITS)

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "validation_error"


async def test_text_content_type_is_422(billing: httpx.AsyncClient) -> None:
    response = await billing.post(
        CREDITS,
        content=b'{"type": "grant", "amount": 5}',
        headers={"Content-Type": "text/plain"},
    )

    assert response.status_code == 422


async def test_integer_with_5000_digits_is_422(billing: httpx.AsyncClient) -> None:
    content = b'{"type": "grant", "amount": ' + b"9" * 5000 + b"}"

    response = await billing.post(
        CREDITS, content=content, headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "validation_error"


async def test_infinite_amount_is_422(billing: httpx.AsyncClient) -> None:
    response = await billing.post(
        CREDITS,
        content=b'{"type": "grant", "amount": 1e400}',
        headers={"Content-Type": "application/json"},
    )

    assert response.status_code == 422


async def test_ledger_lists_newest_first(billing: httpx.AsyncClient) -> None:
    await billing.post(CREDITS, json={"type": "usage", "amount": -1})
    await billing.post(CREDITS, json={"type": "grant", "amount": 4})

    response = await billing.get(CREDITS)
    body = response.json()

    assert response.status_code == 200
    assert body["balance"] == 6
    assert [row["amount"] for row in body["transactions"]] == [4, -1, 3]
    assert [row["type"] for row in body["transactions"]] == ["grant", "usage", "grant"]
    assert body["nextCursor"] is None


async def test_ledger_pages_with_cursor(billing: httpx.AsyncClient) -> None:
    for amount in range(1, 6):
        await billing.post(CREDITS, json={"type": "grant", "amount": amount})
    amounts: list[int] = []
    cursor = None
    pages = 0

    while True:
        params: dict[str, str | int] = {"limit": 2}
        if cursor is not None:
            params["cursor"] = cursor
        body = (await billing.get(CREDITS, params=params)).json()
        amounts.extend(row["amount"] for row in body["transactions"])
        pages += 1
        cursor = body["nextCursor"]
        if cursor is None:
            break

    assert amounts == [5, 4, 3, 2, 1, 3]
    assert pages == 3


async def test_ledger_default_limit_is_50(billing: httpx.AsyncClient) -> None:
    for _ in range(55):
        await billing.post(CREDITS, json={"type": "grant", "amount": 1})

    body = (await billing.get(CREDITS)).json()

    assert len(body["transactions"]) == 50
    assert body["nextCursor"] is not None


async def test_ledger_of_unknown_user_is_empty(billing: httpx.AsyncClient) -> None:
    body = (await billing.get("/billing/users/nobody/credits")).json()

    assert body == {"balance": 0, "transactions": [], "nextCursor": None}


@pytest.mark.parametrize("limit", ["0", "201", "-1", "abc", "1.5"])
async def test_invalid_ledger_limit_is_422(billing: httpx.AsyncClient, limit: str) -> None:
    response = await billing.get(CREDITS, params={"limit": limit})

    assert response.status_code == 422
    assert response.json()["error"]["fields"][0]["field"] == "limit"


@pytest.mark.parametrize("limit", ["1", "200"])
async def test_ledger_limit_bounds_are_accepted(billing: httpx.AsyncClient, limit: str) -> None:
    response = await billing.get(CREDITS, params={"limit": limit})

    assert response.status_code == 200


@pytest.mark.parametrize("cursor", ["garbage", "bGVkZ2VyOng", "!!!", "ledger:5"])
async def test_invalid_cursor_is_422(billing: httpx.AsyncClient, cursor: str) -> None:
    response = await billing.get(CREDITS, params={"cursor": cursor})

    assert response.status_code == 422
    assert response.json()["error"]["fields"][0]["field"] == "cursor"


async def test_products_list_the_catalogue(billing: httpx.AsyncClient) -> None:
    response = await billing.get("/billing/products")
    products = {product["id"]: product for product in response.json()["products"]}

    assert response.status_code == 200
    assert list(products) == ["credits_10", "credits_50", "pro_monthly", "pro_yearly"]
    assert products["credits_10"] == {
        "id": "credits_10",
        "name": "10 credits",
        "description": "A one-time pack that adds 10 credits to the balance.",
        "interval": "one_time",
        "price": {"amount": 499, "currency": "USD"},
        "credits": 10,
        "features": [],
    }
    assert products["credits_50"]["price"] == {"amount": 1999, "currency": "USD"}
    assert products["credits_50"]["credits"] == 50
    assert products["pro_monthly"]["interval"] == "month"
    assert products["pro_monthly"]["price"]["amount"] == 999
    assert products["pro_monthly"]["credits"] is None
    assert products["pro_monthly"]["features"] == ["pro_features"]
    assert products["pro_yearly"]["interval"] == "year"
    assert products["pro_yearly"]["price"]["amount"] == 9999
    assert products["pro_yearly"]["features"] == ["pro_features"]
