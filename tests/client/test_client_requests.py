"""Requests the client sends and responses it parses, against a scripted transport."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone

import httpx
import pytest
from pydantic import ValidationError

from aldero_fastapi.client.wire import user_agent
from aldero_fastapi.errors import AlderoAPIError
from aldero_fastapi.models import CreditAdjustment, Notification
from aldero_fastapi.request_context import current_request_id

from .helpers import (
    ADJUSTMENT_BODY,
    BASE_URL,
    BILLING_KEY,
    ENTITLEMENTS_BODY,
    NOTIFICATION_KEY,
    RECEIPT_BODY,
    HarnessFactory,
    json_reply,
)

LEDGER_ROW = ADJUSTMENT_BODY["transaction"]


async def test_get_entitlements_request_and_result(make_harness: HarnessFactory) -> None:
    harness = make_harness([json_reply(200, ENTITLEMENTS_BODY)])

    entitlements = await harness.client.billing.get_entitlements("alice")

    assert len(harness.requests) == 1
    request = harness.requests[0]
    assert request.method == "GET"
    assert str(request.url) == f"{BASE_URL}/billing/users/alice/entitlements"
    assert request.content == b""
    assert entitlements.user_id == "alice"
    assert entitlements.features == ("pro_features",)
    assert entitlements.has_feature("pro_features")
    assert entitlements.credits == 10
    assert entitlements.subscriptions[0].product_id == "pro_monthly"
    assert entitlements.subscriptions[0].current_period_end == datetime(
        2030, 1, 1, tzinfo=timezone.utc
    )


async def test_headers_sent(make_harness: HarnessFactory) -> None:
    harness = make_harness([json_reply(200, ENTITLEMENTS_BODY)])

    await harness.client.billing.get_entitlements("alice")

    headers = harness.requests[0].headers
    assert headers["Authorization"] == f"Bearer {BILLING_KEY}"
    assert headers["User-Agent"] == user_agent()
    assert headers["User-Agent"].startswith("aldero-fastapi/")
    assert headers["Accept"] == "application/json"
    assert headers["X-Request-Id"].startswith("req_")
    assert "Idempotency-Key" not in headers


async def test_user_agent_has_installed_version() -> None:
    import importlib.metadata

    assert user_agent() == f"aldero-fastapi/{importlib.metadata.version('aldero-fastapi')}"


async def test_request_id_from_request_context(make_harness: HarnessFactory) -> None:
    harness = make_harness([json_reply(200, ENTITLEMENTS_BODY)])
    token = current_request_id.set("req_incoming_123")
    try:
        await harness.client.billing.get_entitlements("alice")
    finally:
        current_request_id.reset(token)

    assert harness.requests[0].headers["X-Request-Id"] == "req_incoming_123"


async def test_request_id_new_per_call(make_harness: HarnessFactory) -> None:
    harness = make_harness([json_reply(200, ENTITLEMENTS_BODY)] * 2)

    await harness.client.billing.get_entitlements("alice")
    await harness.client.billing.get_entitlements("alice")

    first = harness.requests[0].headers["X-Request-Id"]
    second = harness.requests[1].headers["X-Request-Id"]
    assert first != second


@pytest.mark.parametrize(
    ("user_id", "encoded"),
    [
        ("a/b", "a%2Fb"),
        ("user 1", "user%201"),
        ("x?y#z", "x%3Fy%23z"),
        ("100%", "100%25"),
        ("ünïcode", "%C3%BCn%C3%AFcode"),
        ("...", "..."),
        ("auth0|abc", "auth0%7Cabc"),
    ],
)
async def test_user_id_percent_encoded(
    make_harness: HarnessFactory, user_id: str, encoded: str
) -> None:
    harness = make_harness([json_reply(200, {**ENTITLEMENTS_BODY, "userId": user_id})])

    await harness.client.billing.get_entitlements(user_id)

    raw_path = harness.requests[0].url.raw_path.decode("ascii")
    assert raw_path == f"/v1/tenants/myapp/billing/users/{encoded}/entitlements"


async def test_empty_user_id_rejected_without_request(make_harness: HarnessFactory) -> None:
    harness = make_harness([])
    billing = harness.client.billing

    with pytest.raises(ValueError, match="user_id must not be empty"):
        await billing.get_entitlements("")
    with pytest.raises(ValueError, match="user_id must not be empty"):
        await billing.adjust_credits("", type="usage", amount=-1)
    with pytest.raises(ValueError, match="user_id must not be empty"):
        await billing.list_credit_transactions("")
    with pytest.raises(ValueError, match="user_id must not be empty"):
        await billing.sync_user("")
    with pytest.raises(ValueError, match="user_id must not be empty"):
        async for _ in billing.iter_credit_transactions(""):
            pass

    assert harness.requests == []


@pytest.mark.parametrize("user_id", [".", ".."])
async def test_dot_segment_user_id_rejected(make_harness: HarnessFactory, user_id: str) -> None:
    harness = make_harness([])

    with pytest.raises(ValueError, match="cannot be sent in a URL path"):
        await harness.client.billing.get_entitlements(user_id)
    with pytest.raises(ValueError, match="cannot be sent in a URL path"):
        await harness.client.billing.adjust_credits(user_id, type="grant", amount=1)

    assert harness.requests == []


async def test_adjust_credits_body_from_kwargs(make_harness: HarnessFactory) -> None:
    harness = make_harness([json_reply(200, ADJUSTMENT_BODY)])

    result = await harness.client.billing.adjust_credits(
        "alice", type="usage", amount=-3, description="3 images", reference_id="job-42"
    )

    request = harness.requests[0]
    assert request.method == "POST"
    assert str(request.url) == f"{BASE_URL}/billing/users/alice/credits"
    assert request.headers["Content-Type"] == "application/json"
    assert json.loads(request.content) == {
        "type": "usage",
        "amount": -3,
        "description": "3 images",
        "referenceId": "job-42",
    }
    assert result.balance == 7
    assert result.transaction.id == "txn_1"
    assert result.transaction.reference_id == "job-42"
    assert result.transaction.balance_after == 7
    assert result.replayed is False


async def test_adjust_credits_body_from_model(make_harness: HarnessFactory) -> None:
    harness = make_harness([json_reply(200, ADJUSTMENT_BODY)])
    adjustment = CreditAdjustment(
        type="refund", amount=2, reference_id="refund-1", reverses_transaction_id="txn_0"
    )

    await harness.client.billing.adjust_credits("alice", adjustment)

    assert json.loads(harness.requests[0].content) == {
        "type": "refund",
        "amount": 2,
        "referenceId": "refund-1",
        "reversesTransactionId": "txn_0",
    }


async def test_adjust_credits_replayed_header(make_harness: HarnessFactory) -> None:
    harness = make_harness(
        [json_reply(200, ADJUSTMENT_BODY, headers={"Idempotent-Replayed": "true"})]
    )

    result = await harness.client.billing.adjust_credits(
        "alice", type="usage", amount=-3, reference_id="job-42"
    )

    assert result.replayed is True
    assert result.balance == 7


@pytest.mark.parametrize(
    ("kind", "amount"),
    [
        ("usage", 3),
        ("usage", 0),
        ("purchase", -5),
        ("grant", -1),
        ("refund", -2),
        ("adjustment", 0),
    ],
)
async def test_adjust_credits_invalid_sign_not_sent(
    make_harness: HarnessFactory, kind: str, amount: int
) -> None:
    harness = make_harness([])

    with pytest.raises(ValidationError):
        await harness.client.billing.adjust_credits("alice", type=kind, amount=amount)  # type: ignore[arg-type]

    assert harness.requests == []


async def test_adjust_credits_missing_fields_not_sent(make_harness: HarnessFactory) -> None:
    harness = make_harness([])

    with pytest.raises(ValidationError):
        await harness.client.billing.adjust_credits("alice")
    with pytest.raises(ValidationError):
        await harness.client.billing.adjust_credits("alice", type="usage")
    with pytest.raises(ValidationError):
        await harness.client.billing.adjust_credits(
            "alice", type="usage", amount=-1, reference_id=""
        )

    assert harness.requests == []


async def test_adjust_credits_model_and_kwargs_rejected(make_harness: HarnessFactory) -> None:
    harness = make_harness([])
    adjustment = CreditAdjustment(type="grant", amount=5)

    with pytest.raises(TypeError, match="not both"):
        await harness.client.billing.adjust_credits("alice", adjustment, amount=6)

    assert harness.requests == []


async def test_list_credit_transactions_query(make_harness: HarnessFactory) -> None:
    page = {"balance": 7, "transactions": [LEDGER_ROW], "nextCursor": "c2"}
    harness = make_harness([json_reply(200, page)])

    result = await harness.client.billing.list_credit_transactions("alice", limit=1, cursor="c1")

    request = harness.requests[0]
    assert request.method == "GET"
    assert request.url.path == "/v1/tenants/myapp/billing/users/alice/credits"
    assert dict(request.url.params) == {"limit": "1", "cursor": "c1"}
    assert result.balance == 7
    assert len(result.transactions) == 1
    assert result.transactions[0].id == "txn_1"
    assert result.next_cursor == "c2"


async def test_list_credit_transactions_no_query(make_harness: HarnessFactory) -> None:
    harness = make_harness([json_reply(200, {"balance": 0, "transactions": []})])

    result = await harness.client.billing.list_credit_transactions("alice")

    assert harness.requests[0].url.query == b""
    assert result.transactions == ()
    assert result.next_cursor is None


async def test_list_credit_transactions_invalid_limit(make_harness: HarnessFactory) -> None:
    harness = make_harness([])

    with pytest.raises(ValueError, match="limit must be 1 or more"):
        await harness.client.billing.list_credit_transactions("alice", limit=0)

    assert harness.requests == []


async def test_iter_credit_transactions_all_pages(make_harness: HarnessFactory) -> None:
    rows = [{**LEDGER_ROW, "id": f"txn_{number}"} for number in (3, 2, 1)]
    harness = make_harness(
        [
            json_reply(200, {"balance": 7, "transactions": rows[:2], "nextCursor": "page2"}),
            json_reply(200, {"balance": 7, "transactions": rows[2:], "nextCursor": None}),
        ]
    )

    ids = [
        row.id
        async for row in harness.client.billing.iter_credit_transactions("alice", page_size=2)
    ]

    assert ids == ["txn_3", "txn_2", "txn_1"]
    assert len(harness.requests) == 2
    assert dict(harness.requests[0].url.params) == {"limit": "2"}
    assert dict(harness.requests[1].url.params) == {"limit": "2", "cursor": "page2"}


async def test_iter_credit_transactions_repeated_cursor(make_harness: HarnessFactory) -> None:
    page = {"balance": 7, "transactions": [LEDGER_ROW], "nextCursor": "same"}
    harness = make_harness([json_reply(200, page)] * 2)

    with pytest.raises(AlderoAPIError) as caught:
        async for _ in harness.client.billing.iter_credit_transactions("alice"):
            pass

    assert caught.value.code == "invalid_response"
    assert "'same' was returned before" in caught.value.message
    assert len(harness.requests) == 2


async def test_sync_user_request_and_result(make_harness: HarnessFactory) -> None:
    body = {
        "synced": [
            {
                "entitlement": "pro_features",
                "productId": "pro_monthly",
                "expiresAt": "2030-01-01T00:00:00Z",
            }
        ],
        "errors": [{"code": "store_error", "message": "receipt expired", "productId": "x"}],
    }
    harness = make_harness([json_reply(200, body)])

    result = await harness.client.billing.sync_user("carol")

    request = harness.requests[0]
    assert request.method == "POST"
    assert str(request.url) == f"{BASE_URL}/billing/users/carol/sync"
    assert request.content == b""
    assert result.synced[0].entitlement == "pro_features"
    assert result.synced[0].product_id == "pro_monthly"
    assert result.errors[0].code == "store_error"
    assert result.errors[0].product_id == "x"


async def test_list_products_request_and_result(make_harness: HarnessFactory) -> None:
    body = {
        "products": [
            {
                "id": "credits_100",
                "name": "100 credits",
                "interval": "one_time",
                "price": {"amount": 499, "currency": "USD"},
                "credits": 100,
            },
            {
                "id": "pro_monthly",
                "name": "Pro",
                "interval": "month",
                "price": {"amount": 999, "currency": "USD"},
                "features": ["pro_features"],
            },
        ]
    }
    harness = make_harness([json_reply(200, body)])

    products = await harness.client.billing.list_products()

    assert str(harness.requests[0].url) == f"{BASE_URL}/billing/products"
    assert [product.id for product in products] == ["credits_100", "pro_monthly"]
    assert products[0].credits == 100
    assert products[0].is_subscription is False
    assert products[1].is_subscription is True
    assert products[1].price.amount == 999


async def test_send_request_and_receipt(make_harness: HarnessFactory) -> None:
    harness = make_harness([json_reply(202, RECEIPT_BODY)], api_key=NOTIFICATION_KEY)

    receipt = await harness.client.notifications.send(
        template_name="order-confirmation",
        channel="push",
        to="alice",
        variables={"orderNumber": "A-1", "total": 12.5},
    )

    request = harness.requests[0]
    assert request.method == "POST"
    assert str(request.url) == f"{BASE_URL}/notifications/send"
    assert request.headers["Authorization"] == f"Bearer {NOTIFICATION_KEY}"
    assert json.loads(request.content) == {
        "templateName": "order-confirmation",
        "channel": "push",
        "to": "alice",
        "variables": {"orderNumber": "A-1", "total": 12.5},
    }
    assert uuid.UUID(request.headers["Idempotency-Key"]).version == 4
    assert receipt.id == "ntf_msg_1"
    assert receipt.status == "queued"
    assert receipt.template_name == "order-confirmation"
    assert receipt.replayed is False


async def test_send_new_idempotency_key_per_call(make_harness: HarnessFactory) -> None:
    harness = make_harness([json_reply(202, RECEIPT_BODY)] * 2, api_key=NOTIFICATION_KEY)
    notification = Notification(template_name="welcome-email", channel="email", to="a@b.c")

    await harness.client.notifications.send(notification)
    await harness.client.notifications.send(notification)

    first = harness.requests[0].headers["Idempotency-Key"]
    second = harness.requests[1].headers["Idempotency-Key"]
    assert first != second


async def test_send_given_idempotency_key(make_harness: HarnessFactory) -> None:
    harness = make_harness(
        [json_reply(202, RECEIPT_BODY, headers={"Idempotent-Replayed": "true"})],
        api_key=NOTIFICATION_KEY,
    )

    receipt = await harness.client.notifications.send(
        Notification(template_name="welcome-email", channel="email", to="a@b.c"),
        idempotency_key="order-A-1-confirmation",
    )

    assert harness.requests[0].headers["Idempotency-Key"] == "order-A-1-confirmation"
    assert receipt.replayed is True


async def test_send_invalid_fields_not_sent(make_harness: HarnessFactory) -> None:
    harness = make_harness([], api_key=NOTIFICATION_KEY)
    notifications = harness.client.notifications

    with pytest.raises(ValidationError):
        await notifications.send(channel="push", to="alice")
    with pytest.raises(ValidationError):
        await notifications.send(template_name="x", channel="fax", to="alice")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="idempotency_key must not be empty"):
        await notifications.send(template_name="x", channel="push", to="a", idempotency_key=" ")
    with pytest.raises(ValueError, match="control or non-ASCII"):
        await notifications.send(
            template_name="x", channel="push", to="a", idempotency_key="a\r\nX-Evil: 1"
        )
    with pytest.raises(TypeError, match="not both"):
        await notifications.send(Notification(template_name="x", channel="push", to="a"), to="b")

    assert harness.requests == []


async def test_success_with_non_json_body(make_harness: HarnessFactory) -> None:
    harness = make_harness([httpx.Response(200, content=b"<html>maintenance</html>")])

    with pytest.raises(AlderoAPIError) as caught:
        await harness.client.billing.get_entitlements("alice")

    error = caught.value
    assert type(error) is AlderoAPIError
    assert error.code == "invalid_response"
    assert error.status_code == 200
    assert "GET /billing/users/alice/entitlements" in error.message
    assert "not JSON" in error.message
    assert error.request_id == harness.requests[0].headers["X-Request-Id"]


async def test_success_with_wrong_shape(make_harness: HarnessFactory) -> None:
    harness = make_harness([json_reply(200, {"balance": "many"})])

    with pytest.raises(AlderoAPIError) as caught:
        await harness.client.billing.adjust_credits("alice", type="grant", amount=1)

    error = caught.value
    assert error.code == "invalid_response"
    assert "CreditAdjustmentResult" in error.message
    assert "POST /billing/users/alice/credits" in error.message


async def test_success_with_empty_body(make_harness: HarnessFactory) -> None:
    harness = make_harness([httpx.Response(200)])

    with pytest.raises(AlderoAPIError) as caught:
        await harness.client.billing.list_products()

    assert caught.value.code == "invalid_response"


async def test_unknown_response_fields_ignored(make_harness: HarnessFactory) -> None:
    harness = make_harness([json_reply(200, {**ENTITLEMENTS_BODY, "newField": {"x": 1}})])

    entitlements = await harness.client.billing.get_entitlements("alice")

    assert entitlements.credits == 10
