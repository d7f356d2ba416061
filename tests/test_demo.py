"""The README walkthrough against the demo served by uvicorn on a loopback port."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from aldero_fastapi.testing import AppServer

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture
def demo_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Run the demo with no Aldero settings and its state in a temporary folder."""
    for name in list(os.environ):
        if name.startswith("ALDERO_") or name in ("BILLING_API_KEY", "NOTIFICATION_API_KEY"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("DEMO_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.chdir(tmp_path)
    yield tmp_path / "state"


def _token(client: httpx.Client, user_id: str) -> dict[str, str]:
    response = client.post("/demo/token", json={"userId": user_id})
    assert response.status_code == 200
    assert response.json()["tokenType"] == "bearer"
    return {"Authorization": f"Bearer {response.json()['accessToken']}"}


def _fax(client: httpx.Client, headers: dict[str, str], pages: int) -> httpx.Response:
    return client.post(
        "/api/send-fax", json={"pageCount": pages, "destination": "+15550100"}, headers=headers
    )


def _notifications(client: httpx.Client, to: str, count: int) -> list[dict[str, Any]]:
    # The sends run after their responses; wait until all of them arrived.
    for _ in range(50):
        response = client.get("/aldero/_emulator/notifications", params={"to": to, "wait": 1})
        notifications: list[dict[str, Any]] = response.json()["notifications"]
        if len(notifications) >= count:
            return notifications
    return notifications


def test_walkthrough(demo_env: Path) -> None:
    from demo_app.main import app

    with AppServer(app) as server, httpx.Client(base_url=server.url, timeout=10) as client:
        alice = _token(client, "alice")
        bob = _token(client, "bob")
        carol = _token(client, "carol")

        me = client.get("/api/me", headers=alice)
        assert me.json() == {"userId": "alice", "features": ["pro_features"], "credits": 10}

        assert client.post("/api/premium-action", headers=alice).status_code == 200
        denied = client.post("/api/premium-action", headers=bob)
        assert denied.status_code == 403
        assert denied.json()["error"] == "Pro subscription required"

        balances = [_fax(client, alice, 3).json()["balance"] for _ in range(3)]
        assert balances == [7, 4, 1]
        short = _fax(client, alice, 3)
        assert short.status_code == 402
        assert short.json() == {"error": "Insufficient credits", "balance": 1, "required": 3}
        assert _fax(client, alice, 0).status_code == 422
        assert client.get("/api/me", headers=alice).json()["credits"] == 1

        assert client.get("/api/me", headers=carol).json()["features"] == []
        assert client.post("/api/sync", headers=carol).json() == {"synced": 1, "errors": 0}
        assert client.get("/api/me", headers=carol).json()["features"] == ["pro_features"]
        assert client.post("/api/premium-action", headers=carol).status_code == 200

        order = client.post(
            "/api/orders", json={"orderNumber": "12345", "total": "$29.99"}, headers=alice
        )
        assert order.status_code == 202
        sent = _notifications(client, "alice", 4)
        templates = sorted(notification["templateName"] for notification in sent)
        assert templates == ["fax-sent", "fax-sent", "fax-sent", "order-confirmation"]
        faxes = [n for n in sent if n["templateName"] == "fax-sent"]
        assert faxes[0]["variables"] == {"destination": "+15550100", "pages": 3}
        orders = [n for n in sent if n["templateName"] == "order-confirmation"]
        assert orders[0]["variables"] == {"orderNumber": "12345", "total": "$29.99"}

        welcome = client.post(
            "/api/welcome", json={"email": "john@example.com", "name": "John"}, headers=bob
        )
        assert welcome.status_code == 202
        assert _notifications(client, "john@example.com", 1)[0]["variables"] == {"name": "John"}

        products = client.get("/api/products", headers=bob).json()
        assert [p["id"] for p in products["creditPacks"]] == ["credits_10", "credits_50"]
        assert [p["id"] for p in products["subscriptions"]] == ["pro_monthly", "pro_yearly"]

        page = client.get("/")
        assert page.status_code == 200
        assert "Credit packs" in page.text
        assert "Pro yearly" in page.text


def test_api_needs_token(demo_env: Path) -> None:
    from demo_app.main import app

    with AppServer(app) as server, httpx.Client(base_url=server.url, timeout=10) as client:
        for method, path in [("GET", "/api/me"), ("POST", "/api/send-fax"), ("POST", "/api/sync")]:
            response = client.request(method, path)
            assert response.status_code == 401, path
            assert response.headers["www-authenticate"] == "Bearer", path


def test_state_survives_restart(demo_env: Path) -> None:
    from demo_app.main import app

    with AppServer(app) as server, httpx.Client(base_url=server.url, timeout=10) as client:
        alice = _token(client, "alice")
        assert _fax(client, alice, 4).json()["balance"] == 6

    with AppServer(app) as server, httpx.Client(base_url=server.url, timeout=10) as client:
        # The token secret is kept under the state folder, so the old token still works.
        assert client.get("/api/me", headers=alice).json()["credits"] == 6
        assert client.post("/aldero/_emulator/reset").status_code == 200
        # The reset's webhooks reach the demo's cache without a restart.
        assert _eventually_credits(client, alice, 10) == 10


def test_admin_change_reaches_cache(demo_env: Path) -> None:
    from demo_app.main import app

    with AppServer(app) as server, httpx.Client(base_url=server.url, timeout=10) as client:
        alice = _token(client, "alice")
        assert client.get("/api/me", headers=alice).json()["credits"] == 10

        update = client.put("/aldero/_emulator/users/alice", json={"credits": 42})

        assert update.status_code == 200
        assert _eventually_credits(client, alice, 42) == 42


def _eventually_credits(client: httpx.Client, headers: dict[str, str], expected: int) -> Any:
    # Webhooks are delivered in the background, a few milliseconds after the change.
    credits = None
    for _ in range(100):
        credits = client.get("/api/me", headers=headers).json()["credits"]
        if credits == expected:
            return credits
        time.sleep(0.02)
    return credits


def test_token_route_off_for_real_tenant(demo_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from demo_app.main import app

    monkeypatch.setenv("ALDERO_BASE_URL", "http://127.0.0.1:9/v1/tenants/myapp")
    monkeypatch.setenv("ALDERO_BILLING_API_KEY", "bil_real_tenant_key")
    monkeypatch.setenv("ALDERO_AUTH_JWT_SECRET", "real-tenant-secret")

    with AppServer(app) as server, httpx.Client(base_url=server.url, timeout=10) as client:
        token = client.post("/demo/token", json={"userId": "alice"})
        emulator = client.get("/aldero/_emulator/notifications")

    assert token.status_code == 404
    assert emulator.status_code == 404


def test_unrenderable_json_422(demo_env: Path) -> None:
    from demo_app.main import app

    bodies = [
        b'{"pageCount": NaN, "destination": "+15550100"}',
        b'{"pageCount": 1e400, "destination": "+15550100"}',
        b'{"pageCount": 1, "destination": "\\ud800"}',
    ]
    with AppServer(app) as server, httpx.Client(base_url=server.url, timeout=10) as client:
        alice = {**_token(client, "alice"), "Content-Type": "application/json"}
        statuses = [
            client.post("/api/send-fax", content=body, headers=alice).status_code for body in bodies
        ]
        token = client.post(
            "/demo/token", content=b'{"userId": NaN}', headers={"Content-Type": "application/json"}
        )

    assert statuses == [422, 422, 422]
    assert token.status_code == 422


def test_repeated_key_sends_one_fax(demo_env: Path) -> None:
    from demo_app.main import app

    with AppServer(app) as server, httpx.Client(base_url=server.url, timeout=10) as client:
        headers = {**_token(client, "alice"), "Idempotency-Key": "fax-once"}
        responses = [_fax(client, headers, 2) for _ in range(5)]
        first = _notifications(client, "alice", 1)
        # Sends start right after each response; give any duplicate time to land.
        time.sleep(0.5)
        sent = _notifications(client, "alice", 1)
        ledger = client.get(
            "/aldero/v1/tenants/myapp/billing/users/alice/credits",
            headers={"Authorization": "Bearer bil_emulator_key"},
        ).json()
        me = client.get("/api/me", headers=headers).json()

    assert {response.status_code for response in responses} == {200}
    assert len({response.text for response in responses}) == 1
    fax_id = responses[0].json()["faxId"]
    assert [row["referenceId"] for row in ledger["transactions"]].count(fax_id) == 1
    assert ledger["balance"] == 8
    assert me["credits"] == 8
    assert len(first) == 1
    assert len(sent) == 1


def test_embedded_emulator_timeout_enforced(
    demo_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from demo_app.main import app

    monkeypatch.setenv("ALDERO_TIMEOUT_SECONDS", "0.5")
    monkeypatch.setenv("ALDERO_MAX_RETRIES", "0")

    with AppServer(app) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        alice = _token(client, "alice")
        client.post(
            "/aldero/_emulator/faults",
            json={
                "method": "GET",
                "path": "/billing/users/*/entitlements",
                "action": "none",
                "latencyMs": 5000,
            },
        )
        started = time.monotonic()
        response = client.get("/api/me", headers=alice)
        elapsed = time.monotonic() - started

    assert response.status_code == 503
    assert response.json() == {"error": "Billing service unavailable"}
    assert elapsed < 3
