"""Sending notifications and listing them through the admin API."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest

SEND = "/notifications/send"
ORDER: dict[str, Any] = {
    "templateName": "order-confirmation",
    "channel": "push",
    "to": "alice",
    "variables": {"orderNumber": "A-1", "total": "9.99"},
}
WELCOME: dict[str, Any] = {
    "templateName": "welcome-email",
    "channel": "email",
    "to": "alice@example.com",
    "variables": {"name": "Alice"},
}


async def test_send_is_queued(notifications: httpx.AsyncClient) -> None:
    response = await notifications.post(SEND, json=ORDER)
    body = response.json()

    assert response.status_code == 202
    assert body["id"].startswith("ntf_msg_")
    assert body["status"] == "queued"
    assert body["channel"] == "push"
    assert body["to"] == "alice"
    assert body["templateName"] == "order-confirmation"


async def test_email_send_is_queued(notifications: httpx.AsyncClient) -> None:
    response = await notifications.post(SEND, json=WELCOME)

    assert response.status_code == 202


async def test_extra_variables_are_accepted(notifications: httpx.AsyncClient) -> None:
    body = {**ORDER, "variables": {**ORDER["variables"], "coupon": "SPRING"}}

    response = await notifications.post(SEND, json=body)

    assert response.status_code == 202


async def test_unknown_template_is_404(notifications: httpx.AsyncClient) -> None:
    response = await notifications.post(SEND, json={**ORDER, "templateName": "nope"})

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert "nope" in response.json()["error"]["message"]


async def test_missing_variables_are_listed(notifications: httpx.AsyncClient) -> None:
    body = {"templateName": "fax-sent", "channel": "push", "to": "bob", "variables": {}}

    response = await notifications.post(SEND, json=body)
    error = response.json()["error"]

    assert response.status_code == 422
    assert error["code"] == "missing_variables"
    assert error["missing"] == ["destination", "pages"]


async def test_one_missing_variable_is_listed(notifications: httpx.AsyncClient) -> None:
    body = {**ORDER, "variables": {"orderNumber": "A-1"}}

    response = await notifications.post(SEND, json=body)

    assert response.json()["error"]["missing"] == ["total"]


async def test_wrong_channel_is_422(notifications: httpx.AsyncClient) -> None:
    response = await notifications.post(SEND, json={**ORDER, "channel": "sms"})

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "channel_mismatch"


@pytest.mark.parametrize("to", ["alice", "alice@", "@example.com", "a b@example.com", "a@b"])
async def test_email_without_address_is_422(notifications: httpx.AsyncClient, to: str) -> None:
    response = await notifications.post(SEND, json={**WELCOME, "to": to})

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_recipient"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"channel": "fax"}, "channel"),
        ({"to": ""}, "to"),
        ({"to": 5}, "to"),
        ({"templateName": ""}, "templateName"),
        ({"variables": ["a"]}, "variables"),
        ({"extra": 1}, "extra"),
    ],
)
async def test_invalid_send_body_is_422(
    notifications: httpx.AsyncClient, change: dict[str, Any], field: str
) -> None:
    response = await notifications.post(SEND, json={**ORDER, **change})

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "validation_error"
    assert response.json()["error"]["fields"][0]["field"] == field


async def test_missing_field_is_named(notifications: httpx.AsyncClient) -> None:
    body = {key: value for key, value in ORDER.items() if key != "to"}

    response = await notifications.post(SEND, json=body)

    assert response.json()["error"]["fields"] == [{"field": "to", "message": "Field required."}]


async def test_rejected_send_is_not_stored(
    notifications: httpx.AsyncClient, admin: httpx.AsyncClient
) -> None:
    await notifications.post(SEND, json={**ORDER, "channel": "email"})

    sent = (await admin.get("/notifications")).json()["notifications"]

    assert sent == []


async def test_admin_lists_sent_notification(
    notifications: httpx.AsyncClient, admin: httpx.AsyncClient
) -> None:
    queued = (await notifications.post(SEND, json=ORDER)).json()

    sent = (await admin.get("/notifications")).json()["notifications"]

    assert len(sent) == 1
    assert sent[0]["id"] == queued["id"]
    assert sent[0]["templateName"] == "order-confirmation"
    assert sent[0]["channel"] == "push"
    assert sent[0]["to"] == "alice"
    assert sent[0]["variables"] == {"orderNumber": "A-1", "total": "9.99"}
    assert sent[0]["createdAt"].endswith("Z")


async def test_admin_filters_notifications(
    notifications: httpx.AsyncClient, admin: httpx.AsyncClient
) -> None:
    await notifications.post(SEND, json=ORDER)
    await notifications.post(SEND, json=WELCOME)
    await notifications.post(SEND, json={**ORDER, "to": "bob"})

    by_recipient = (await admin.get("/notifications", params={"to": "alice"})).json()
    by_template = (
        await admin.get("/notifications", params={"templateName": "order-confirmation"})
    ).json()

    assert [item["to"] for item in by_recipient["notifications"]] == ["alice"]
    assert [item["to"] for item in by_template["notifications"]] == ["alice", "bob"]


async def test_wait_returns_when_sent(
    notifications: httpx.AsyncClient, admin: httpx.AsyncClient
) -> None:
    async def send_later() -> None:
        await asyncio.sleep(0.2)
        await notifications.post(SEND, json=ORDER)

    sender = asyncio.create_task(send_later())
    started = time.monotonic()
    response = await admin.get("/notifications", params={"to": "alice", "wait": 5})
    elapsed = time.monotonic() - started
    await sender

    assert len(response.json()["notifications"]) == 1
    assert 0.15 < elapsed < 2.0


async def test_wait_times_out_empty(admin: httpx.AsyncClient) -> None:
    started = time.monotonic()
    response = await admin.get("/notifications", params={"to": "nobody", "wait": 0.3})
    elapsed = time.monotonic() - started

    assert response.json()["notifications"] == []
    assert elapsed >= 0.3


@pytest.mark.parametrize("wait", ["-1", "31", "soon"])
async def test_invalid_wait_is_422(admin: httpx.AsyncClient, wait: str) -> None:
    response = await admin.get("/notifications", params={"wait": wait})

    assert response.status_code == 422
