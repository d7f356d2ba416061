"""User ids with an encoded slash or a percent sign, in-process and over a real server."""

from __future__ import annotations

from urllib.parse import quote

import httpx
import pytest

from aldero_fastapi.emulator import EmulatorServer


def user_path(user_id: str, suffix: str) -> str:
    return f"/billing/users/{quote(user_id, safe='')}/{suffix}"


@pytest.mark.parametrize("user_id", ["team/42", "a/b/c", "100%", "a%41", "50%/off", "é/ü"])
async def test_user_id_round_trip(billing: httpx.AsyncClient, user_id: str) -> None:
    grant = await billing.post(user_path(user_id, "credits"), json={"type": "grant", "amount": 2})
    read = await billing.get(user_path(user_id, "entitlements"))

    assert grant.status_code == 200
    assert read.status_code == 200
    assert read.json()["userId"] == user_id
    assert read.json()["credits"] == 2


async def test_slash_ids_are_distinct(billing: httpx.AsyncClient) -> None:
    await billing.post(user_path("team/42", "credits"), json={"type": "grant", "amount": 2})

    other = await billing.get(user_path("team%2F42", "entitlements"))

    assert other.json()["userId"] == "team%2F42"
    assert other.json()["credits"] == 0


async def test_unencoded_slash_is_404(billing: httpx.AsyncClient) -> None:
    response = await billing.get("/billing/users/team/42/entitlements")

    assert response.status_code == 404


async def test_admin_accepts_slash_id(admin: httpx.AsyncClient) -> None:
    await admin.put(f"/users/{quote('team/42', safe='')}", json={"credits": 5})

    body = (await admin.get(f"/users/{quote('team/42', safe='')}")).json()

    assert body["userId"] == "team/42"
    assert body["ledgerSum"] == 5


async def test_slash_id_path_is_logged_encoded(
    billing: httpx.AsyncClient, admin: httpx.AsyncClient
) -> None:
    await billing.get(user_path("team/42", "entitlements"))

    logged = (await admin.get("/requests")).json()["requests"]

    assert logged[0]["path"] == "/v1/tenants/myapp/billing/users/team%2F42/entitlements"


async def test_slash_id_over_real_server(
    live_billing: httpx.AsyncClient, live_server: EmulatorServer
) -> None:
    await live_billing.post(user_path("team/42", "credits"), json={"type": "grant", "amount": 3})

    read = await live_billing.get(user_path("team/42", "entitlements"))

    assert read.json()["userId"] == "team/42"
    assert read.json()["credits"] == 3
