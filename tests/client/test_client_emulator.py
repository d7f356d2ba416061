"""The client against the emulator over real HTTP on a loopback port."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from aldero_fastapi.client import AlderoClient
from aldero_fastapi.emulator import (
    DEFAULT_BILLING_KEY,
    DEFAULT_NOTIFICATION_KEY,
    EmulatorConfig,
    EmulatorServer,
)
from aldero_fastapi.errors import (
    ForbiddenError,
    IdempotencyMismatchError,
    InsufficientCreditsError,
    InvalidRequestError,
    NotFoundError,
    ServerError,
    UnauthorizedError,
)


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer(EmulatorConfig()) as server:
        yield server


@pytest.fixture(autouse=True)
def reset_emulator(emulator: EmulatorServer) -> None:
    response = httpx.post(f"{emulator.admin_url}/reset", timeout=10)
    response.raise_for_status()


@pytest.fixture
async def billing(emulator: EmulatorServer) -> AsyncIterator[AlderoClient]:
    async with AlderoClient(
        base_url=emulator.base_url, api_key=DEFAULT_BILLING_KEY, backoff_seconds=0.01
    ) as client:
        yield client


@pytest.fixture
async def notifications(emulator: EmulatorServer) -> AsyncIterator[AlderoClient]:
    async with AlderoClient(
        base_url=emulator.base_url, api_key=DEFAULT_NOTIFICATION_KEY, backoff_seconds=0.01
    ) as client:
        yield client


@pytest.fixture
async def admin(emulator: EmulatorServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=emulator.admin_url, timeout=10) as client:
        yield client


async def add_fault(admin: httpx.AsyncClient, **rule: Any) -> None:
    response = await admin.post("/faults", json=rule)
    response.raise_for_status()


async def logged_requests(admin: httpx.AsyncClient, method: str, path: str) -> list[dict[str, Any]]:
    response = await admin.get("/requests", params={"method": method, "path": path})
    response.raise_for_status()
    requests: list[dict[str, Any]] = response.json()["requests"]
    return requests


async def sent_notifications(admin: httpx.AsyncClient, to: str) -> list[dict[str, Any]]:
    response = await admin.get("/notifications", params={"to": to})
    response.raise_for_status()
    notifications: list[dict[str, Any]] = response.json()["notifications"]
    return notifications


async def test_get_entitlements_seed_user(billing: AlderoClient) -> None:
    entitlements = await billing.billing.get_entitlements("alice")

    assert entitlements.user_id == "alice"
    assert entitlements.features == ("pro_features",)
    assert entitlements.credits == 10
    assert [item.product_id for item in entitlements.subscriptions] == ["pro_monthly"]


async def test_get_entitlements_unknown_user(billing: AlderoClient) -> None:
    entitlements = await billing.billing.get_entitlements("nobody-1")

    assert entitlements.user_id == "nobody-1"
    assert entitlements.features == ()
    assert entitlements.credits == 0


@pytest.mark.parametrize(
    "user_id",
    ["user 1?x#y%", "tenant/user"],
    ids=["reserved-characters", "slash"],
)
async def test_user_id_round_trip(billing: AlderoClient, user_id: str) -> None:
    result = await billing.billing.adjust_credits(user_id, type="grant", amount=4)
    entitlements = await billing.billing.get_entitlements(user_id)

    assert result.balance == 4
    assert entitlements.user_id == user_id
    assert entitlements.credits == 4


async def test_usage_reduces_balance_and_ledger(billing: AlderoClient) -> None:
    result = await billing.billing.adjust_credits(
        "alice", type="usage", amount=-3, description="3 images", reference_id="job-1"
    )
    page = await billing.billing.list_credit_transactions("alice", limit=1)
    entitlements = await billing.billing.get_entitlements("alice")

    assert result.balance == 7
    assert result.replayed is False
    assert result.transaction.amount == -3
    assert result.transaction.balance_after == 7
    assert entitlements.credits == 7
    assert page.balance == 7
    assert len(page.transactions) == 1
    assert page.transactions[0].id == result.transaction.id
    assert page.transactions[0].reference_id == "job-1"
    assert page.transactions[0].description == "3 images"


async def test_repeat_with_reference_id_replayed(billing: AlderoClient) -> None:
    first = await billing.billing.adjust_credits(
        "alice", type="usage", amount=-2, reference_id="job-2"
    )
    second = await billing.billing.adjust_credits(
        "alice", type="usage", amount=-2, reference_id="job-2"
    )

    assert first.replayed is False
    assert second.replayed is True
    assert second.transaction.id == first.transaction.id
    assert second.balance == 8


async def test_iter_credit_transactions_pages(billing: AlderoClient) -> None:
    for number in range(5):
        await billing.billing.adjust_credits(
            "bob", type="grant", amount=1, reference_id=f"grant-{number}"
        )

    rows = [row async for row in billing.billing.iter_credit_transactions("bob", page_size=2)]
    single_page = await billing.billing.list_credit_transactions("bob", limit=100)

    assert [row.id for row in rows] == [row.id for row in single_page.transactions]
    assert [row.reference_id for row in rows[:5]] == [
        "grant-4",
        "grant-3",
        "grant-2",
        "grant-1",
        "grant-0",
    ]
    assert rows[0].balance_after == 8
    assert single_page.next_cursor is None


async def test_sync_grants_carol_pro_features(billing: AlderoClient) -> None:
    result = await billing.billing.sync_user("carol")
    entitlements = await billing.billing.get_entitlements("carol")

    assert [item.entitlement for item in result.synced] == ["pro_features"]
    assert [item.product_id for item in result.synced] == ["pro_monthly"]
    assert result.errors == ()
    assert entitlements.has_feature("pro_features")


async def test_sync_dave_returns_error(billing: AlderoClient) -> None:
    result = await billing.billing.sync_user("dave")

    assert len(result.errors) == 1
    assert result.errors[0].code
    assert result.errors[0].message


async def test_list_products(billing: AlderoClient) -> None:
    products = await billing.billing.list_products()

    by_id = {product.id: product for product in products}
    assert set(by_id) == {"credits_10", "credits_50", "pro_monthly", "pro_yearly"}
    assert by_id["credits_10"].credits == 10
    assert by_id["credits_10"].price.amount == 499
    assert by_id["pro_monthly"].is_subscription is True
    assert by_id["pro_monthly"].features == ("pro_features",)


async def test_send_notification(admin: httpx.AsyncClient, notifications: AlderoClient) -> None:
    receipt = await notifications.notifications.send(
        template_name="order-confirmation",
        channel="push",
        to="alice",
        variables={"orderNumber": "A-1001", "total": "$12.50"},
    )

    assert receipt.status == "queued"
    assert receipt.channel == "push"
    assert receipt.to == "alice"
    assert receipt.template_name == "order-confirmation"
    assert receipt.id
    items = await sent_notifications(admin, "alice")
    assert len(items) == 1
    assert items[0]["id"] == receipt.id
    assert items[0]["templateName"] == "order-confirmation"
    assert items[0]["variables"] == {"orderNumber": "A-1001", "total": "$12.50"}


async def test_send_same_idempotency_key_replayed(
    admin: httpx.AsyncClient, notifications: AlderoClient
) -> None:
    arguments: dict[str, Any] = {
        "template_name": "welcome-email",
        "channel": "email",
        "to": "erin@example.com",
        "variables": {"name": "Erin"},
        "idempotency_key": "welcome-erin",
    }

    first = await notifications.notifications.send(**arguments)
    second = await notifications.notifications.send(**arguments)

    assert second.id == first.id
    assert second.replayed is True
    assert len(await sent_notifications(admin, "erin@example.com")) == 1


async def test_unknown_key_unauthorized(emulator: EmulatorServer) -> None:
    async with AlderoClient(base_url=emulator.base_url, api_key="bil_not_a_real_key") as client:
        with pytest.raises(UnauthorizedError) as caught:
            await client.billing.get_entitlements("alice")

    assert caught.value.status_code == 401
    assert caught.value.request_id


async def test_wrong_tenant_forbidden(emulator: EmulatorServer) -> None:
    base_url = emulator.base_url.replace("/tenants/myapp", "/tenants/other-app")
    async with AlderoClient(base_url=base_url, api_key=DEFAULT_BILLING_KEY) as client:
        with pytest.raises(ForbiddenError) as caught:
            await client.billing.get_entitlements("alice")

    assert caught.value.status_code == 403
    assert caught.value.code == "forbidden"


async def test_unknown_template_not_found(notifications: AlderoClient) -> None:
    with pytest.raises(NotFoundError) as caught:
        await notifications.notifications.send(
            template_name="no-such-template", channel="push", to="a"
        )

    assert caught.value.status_code == 404
    assert "no-such-template" in caught.value.message


async def test_missing_variables_invalid_request(notifications: AlderoClient) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        await notifications.notifications.send(
            template_name="order-confirmation",
            channel="push",
            to="alice",
            variables={"orderNumber": "A-1"},
        )

    assert caught.value.status_code == 422
    assert caught.value.details["missing"] == ["total"]


async def test_insufficient_credits(billing: AlderoClient) -> None:
    with pytest.raises(InsufficientCreditsError) as caught:
        await billing.billing.adjust_credits("bob", type="usage", amount=-5, reference_id="big")

    error = caught.value
    assert error.status_code == 402
    assert error.balance == 3
    assert error.required == 5
    assert error.user_id == "bob"
    entitlements = await billing.billing.get_entitlements("bob")
    assert entitlements.credits == 3


async def test_dropped_commit_retried_once_applied(
    admin: httpx.AsyncClient, billing: AlderoClient
) -> None:
    await add_fault(
        admin,
        method="POST",
        path="/billing/users/*/credits",
        action="commit_then_drop",
        count=1,
    )

    result = await billing.billing.adjust_credits(
        "alice", type="usage", amount=-4, reference_id="job-drop"
    )

    assert result.balance == 6
    assert result.replayed is True
    posts = await logged_requests(admin, "POST", "/billing/users/alice/credits")
    assert len(posts) == 2
    assert posts[0]["requestId"] == posts[1]["requestId"]
    rows = [row async for row in billing.billing.iter_credit_transactions("alice")]
    assert [row.reference_id for row in rows].count("job-drop") == 1
    entitlements = await billing.billing.get_entitlements("alice")
    assert entitlements.credits == 6


async def test_unavailable_twice_then_success(
    admin: httpx.AsyncClient, billing: AlderoClient
) -> None:
    await add_fault(
        admin,
        method="POST",
        path="/billing/users/*/credits",
        action="status",
        status=503,
        count=2,
    )

    result = await billing.billing.adjust_credits(
        "bob", type="usage", amount=-1, reference_id="job-503"
    )

    assert result.balance == 2
    posts = await logged_requests(admin, "POST", "/billing/users/bob/credits")
    assert [entry["status"] for entry in posts] == [503, 503, 200]
    assert len({entry["requestId"] for entry in posts}) == 1


async def test_unavailable_without_reference_id_not_retried(
    admin: httpx.AsyncClient, billing: AlderoClient
) -> None:
    await add_fault(admin, method="POST", path="/billing/users/*/credits", status=503, count=1)

    with pytest.raises(ServerError):
        await billing.billing.adjust_credits("bob", type="usage", amount=-1)

    posts = await logged_requests(admin, "POST", "/billing/users/bob/credits")
    assert len(posts) == 1


async def test_idempotency_mismatch_not_retried(
    admin: httpx.AsyncClient, billing: AlderoClient
) -> None:
    await billing.billing.adjust_credits("alice", type="usage", amount=-1, reference_id="job-m")

    with pytest.raises(IdempotencyMismatchError) as caught:
        await billing.billing.adjust_credits("alice", type="usage", amount=-2, reference_id="job-m")

    assert caught.value.status_code == 422
    posts = await logged_requests(admin, "POST", "/billing/users/alice/credits")
    assert [entry["status"] for entry in posts] == [200, 422]


async def test_real_http_logs_without_key(
    emulator: EmulatorServer, admin: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await add_fault(admin, method="GET", path="/billing/products", status=503, count=1)

    async with AlderoClient(
        base_url=emulator.base_url, api_key=DEFAULT_BILLING_KEY, backoff_seconds=0.01
    ) as client:
        products = await client.billing.list_products()

    assert len(products) == 4
    warnings = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1
    secret_found = DEFAULT_BILLING_KEY.removeprefix("bil_") in caplog.text
    assert not secret_found, "the billing key appears in the logs"
