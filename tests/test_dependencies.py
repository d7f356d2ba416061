"""The user, entitlement and notification dependencies, against the emulator."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import socket
import time
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request

from aldero_fastapi import Aldero, CurrentUser
from aldero_fastapi.emulator import EmulatorServer
from aldero_fastapi.settings import AlderoSettings
from aldero_fastapi.testing import (
    emulator_settings,
    lifespan_client,
    make_token,
    override_user,
)
from tests.plugin_apps import add_fault, auth, build_app, served_requests, set_user

ALICE = auth(make_token("alice"))
BOB = auth(make_token("bob"))
ALICE_FETCHES = {"method": "GET", "path": "/billing/users/alice/entitlements"}
WEBHOOK_SECRET = "whsec_test_secret"


class FakeClock:
    """A monotonic clock that tests move by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_missing_token_401(aldero_settings: AlderoSettings) -> None:
    app, _ = build_app(aldero_settings)

    async with lifespan_client(app) as client:
        response = await client.get("/bare")

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json() == {"error": "Not authenticated"}


async def test_feature_present_200(aldero_settings: AlderoSettings) -> None:
    app, _ = build_app(aldero_settings)

    async with lifespan_client(app) as client:
        response = await client.get("/premium", headers=ALICE)

    assert response.status_code == 200
    assert response.json() == {"userId": "alice"}


async def test_feature_missing_403(aldero_settings: AlderoSettings) -> None:
    app, _ = build_app(aldero_settings)

    async with lifespan_client(app) as client:
        response = await client.get("/premium", headers=BOB)

    assert response.status_code == 403
    assert response.json() == {
        "error": "Feature 'pro_features' required",
        "feature": "pro_features",
    }


async def test_entitlements_fetched_once(
    aldero_emulator: EmulatorServer, aldero_settings: AlderoSettings
) -> None:
    app, _ = build_app(aldero_settings)

    async with lifespan_client(app) as client:
        for _ in range(5):
            response = await client.get("/me", headers=ALICE)
            assert response.json() == {"credits": 10, "features": ["pro_features"]}

    assert len(await served_requests(aldero_emulator, **ALICE_FETCHES)) == 1


async def test_stampede_single_fetch(
    aldero_emulator: EmulatorServer, aldero_settings: AlderoSettings
) -> None:
    app, _ = build_app(aldero_settings)
    # Hold the fetch long enough for every request to queue behind it.
    await add_fault(
        aldero_emulator,
        method="GET",
        path="/billing/users/*/entitlements",
        action="none",
        latencyMs=300,
        count=1,
    )

    async with lifespan_client(app) as client:
        responses = await asyncio.gather(
            *(client.get("/premium", headers=ALICE) for _ in range(1000))
        )

    assert {response.status_code for response in responses} == {200}
    assert len(await served_requests(aldero_emulator, **ALICE_FETCHES)) == 1


async def test_ttl_expiry_refetches(
    aldero_emulator: EmulatorServer, aldero_settings: AlderoSettings
) -> None:
    clock = FakeClock()
    app, _ = build_app(aldero_settings, clock=clock)

    async with lifespan_client(app) as client:
        await client.get("/me", headers=ALICE)
        clock.now += aldero_settings.entitlements_ttl_seconds + 1
        await client.get("/me", headers=ALICE)

    assert len(await served_requests(aldero_emulator, **ALICE_FETCHES)) == 2


async def test_outage_answers_503(aldero_emulator: EmulatorServer) -> None:
    app, _ = build_app(emulator_settings(aldero_emulator, max_retries=1))
    await add_fault(
        aldero_emulator,
        method="GET",
        path="/billing/users/*/entitlements",
        action="status",
        status=503,
        retryAfter=7,
    )

    async with lifespan_client(app) as client:
        response = await client.get("/me", headers=ALICE)

    assert response.status_code == 503
    assert response.json() == {"error": "Billing service unavailable"}
    assert response.headers["retry-after"] == "7"
    assert len(await served_requests(aldero_emulator, **ALICE_FETCHES)) == 2


async def test_outage_log_rate_limited(
    aldero_emulator: EmulatorServer, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    app, _ = build_app(emulator_settings(aldero_emulator, max_retries=0), clock=clock)
    await add_fault(
        aldero_emulator,
        method="GET",
        path="/billing/users/*/entitlements",
        action="status",
        status=503,
    )

    with caplog.at_level(logging.WARNING, logger="aldero_fastapi.dependencies"):
        async with lifespan_client(app) as client:
            first_burst = [await client.get("/me", headers=ALICE) for _ in range(5)]
            clock.now += 10
            after_interval = await client.get("/me", headers=ALICE)

    lines = [record.getMessage() for record in caplog.records if "unavailable" in record.message]
    assert [response.status_code for response in first_burst] == [503] * 5
    assert after_interval.status_code == 503
    assert len(lines) == 2
    assert lines[0].endswith("responding with 503")
    assert lines[1].endswith("responding with 503 (4 more like it in the last 10 s)")
    assert "user alice" in lines[1]


async def test_stopped_billing_503_in_bounded_time() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    settings = AlderoSettings.model_validate(
        {
            "base_url": f"http://127.0.0.1:{closed_port}/v1/tenants/myapp",
            "billing_api_key": "bil_emulator_key",
            "auth_jwt_secret": "aldero-fastapi-test-secret-not-for-production",
            "timeout_seconds": 1.0,
            "connect_timeout_seconds": 0.5,
            "max_retries": 2,
            "retry_backoff_seconds": 0.0,
        }
    )
    app, _ = build_app(settings)

    async with lifespan_client(app) as client:
        started = time.monotonic()
        response = await client.get("/me", headers=ALICE)
        elapsed = time.monotonic() - started

    assert response.status_code == 503
    assert "retry-after" in response.headers
    # Three attempts of at most one second each, with no backoff configured.
    assert elapsed < 3 * settings.timeout_seconds + 1


async def test_stale_served_when_window_set(aldero_emulator: EmulatorServer) -> None:
    clock = FakeClock()
    settings = emulator_settings(
        aldero_emulator, max_retries=0, entitlements_stale_if_error_seconds=120
    )
    app, _ = build_app(settings, clock=clock)

    async with lifespan_client(app) as client:
        fresh = await client.get("/me", headers=ALICE)
        await add_fault(
            aldero_emulator,
            method="GET",
            path="/billing/users/*/entitlements",
            action="status",
            status=503,
        )
        clock.now += settings.entitlements_ttl_seconds + 60
        stale = await client.get("/me", headers=ALICE)
        clock.now += 120
        expired = await client.get("/me", headers=ALICE)

    assert fresh.status_code == 200
    assert stale.status_code == 200
    assert stale.json() == fresh.json()
    assert expired.status_code == 503


async def test_notification_sent_after_success(
    aldero_emulator: EmulatorServer, aldero_settings: AlderoSettings
) -> None:
    app, aldero = build_app(aldero_settings)

    async with lifespan_client(app) as client:
        response = await client.post("/notify/ok", headers=ALICE)
        await aldero.background_sends.drain(timeout=10)

    assert response.status_code == 200
    sent = await _notifications(aldero_emulator, "alice")
    assert len(sent) == 1
    assert sent[0]["templateName"] == "fax-sent"
    assert sent[0]["variables"] == {"destination": "+15550100", "pages": 2}
    assert aldero.background_sends.sent == 1


async def test_notification_dropped_on_failure(
    aldero_emulator: EmulatorServer, aldero_settings: AlderoSettings
) -> None:
    app, aldero = build_app(aldero_settings)

    async with lifespan_client(app) as client:
        response = await client.post("/notify/fail", headers=ALICE)
        await aldero.background_sends.drain(timeout=10)

    assert response.status_code == 418
    assert await _notifications(aldero_emulator, "alice") == []
    assert aldero.background_sends.sent == 0


async def test_failed_background_send_logged(
    aldero_emulator: EmulatorServer,
    aldero_settings: AlderoSettings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    app, aldero = build_app(aldero_settings)
    await add_fault(
        aldero_emulator, method="POST", path="/notifications/send", action="status", status=500
    )

    async with lifespan_client(app) as client:
        response = await client.post("/notify/ok", headers=ALICE)
        await aldero.background_sends.drain(timeout=10)

    assert response.status_code == 200
    assert aldero.background_sends.failed == 1
    errors = [record.getMessage() for record in caplog.records if record.levelname == "ERROR"]
    assert any("'fax-sent'" in message and "alice" in message for message in errors)


async def test_webhook_invalidates_user(
    aldero_emulator: EmulatorServer,
) -> None:
    settings = emulator_settings(aldero_emulator, webhook_secret=WEBHOOK_SECRET)
    app, aldero = build_app(settings)
    app.include_router(aldero.webhook_router())

    async with lifespan_client(app) as client:
        await client.get("/me", headers=ALICE)
        await set_user(aldero_emulator, "alice", credits=42)
        cached = await client.get("/me", headers=ALICE)
        delivered = await _post_webhook(client, "evt_1", "credits.updated", "alice")
        fresh = await client.get("/me", headers=ALICE)
        duplicate = await _post_webhook(client, "evt_1", "credits.updated", "alice")
        after_duplicate = await client.get("/me", headers=ALICE)

    assert cached.json()["credits"] == 10
    assert delivered.status_code == 204
    assert fresh.json()["credits"] == 42
    assert duplicate.status_code == 204
    assert after_duplicate.json()["credits"] == 42
    assert len(await served_requests(aldero_emulator, **ALICE_FETCHES)) == 2


async def test_webhook_bad_signature_400(aldero_emulator: EmulatorServer) -> None:
    settings = emulator_settings(aldero_emulator, webhook_secret=WEBHOOK_SECRET)
    app, aldero = build_app(settings)
    app.include_router(aldero.webhook_router())

    async with lifespan_client(app) as client:
        await client.get("/me", headers=ALICE)
        rejected = await _post_webhook(
            client, "evt_2", "entitlements.updated", "alice", secret="whsec_wrong"
        )
        await client.get("/me", headers=ALICE)

    assert rejected.status_code == 400
    assert rejected.json()["error"] == "Invalid webhook"
    assert WEBHOOK_SECRET not in rejected.text
    assert len(await served_requests(aldero_emulator, **ALICE_FETCHES)) == 1


async def test_request_id_propagated(
    aldero_emulator: EmulatorServer, aldero_settings: AlderoSettings
) -> None:
    app, _ = build_app(aldero_settings)

    async with lifespan_client(app) as client:
        await client.get("/me", headers={**ALICE, "X-Request-Id": "req-from-edge-42"})

    fetches = await served_requests(aldero_emulator, **ALICE_FETCHES)
    assert [entry["requestId"] for entry in fetches] == ["req-from-edge-42"]


async def test_override_user_skips_token(aldero_settings: AlderoSettings) -> None:
    app, _ = build_app(aldero_settings)
    override_user(app, "carol")

    async with lifespan_client(app) as client:
        response = await client.get("/bare")

    assert response.json() == {"userId": "carol"}


async def test_custom_resolver_string(aldero_settings: AlderoSettings) -> None:
    async def api_key_user(request: Request) -> str | None:
        return {"key-of-bob": "bob"}.get(request.headers.get("x-api-key", ""))

    app, _ = build_app(aldero_settings, user_resolver=api_key_user)

    async with lifespan_client(app) as client:
        known = await client.get("/bare", headers={"X-API-Key": "key-of-bob"})
        unknown = await client.get("/bare", headers={"X-API-Key": "nope"})

    assert known.json() == {"userId": "bob"}
    assert unknown.status_code == 401


async def test_not_started_503(aldero_settings: AlderoSettings) -> None:
    aldero = Aldero(settings=aldero_settings)
    app = FastAPI()
    aldero.install(app)

    @app.get("/me")
    async def me(user: CurrentUser) -> dict[str, Any]:
        return {"userId": user.id}

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
        response = await client.get("/me", headers=ALICE)

    assert response.status_code == 503
    assert response.json() == {"error": "Aldero integration is not started"}


async def _notifications(server: EmulatorServer, to: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{server.admin_url}/notifications", params={"to": to})
    notifications: list[dict[str, Any]] = response.json()["notifications"]
    return notifications


async def _post_webhook(
    client: httpx.AsyncClient,
    event_id: str,
    event_type: str,
    user_id: str,
    *,
    secret: str = WEBHOOK_SECRET,
) -> httpx.Response:
    body = json.dumps(
        {
            "id": event_id,
            "type": event_type,
            "createdAt": "2026-12-04T12:00:00Z",
            "data": {"userId": user_id},
        }
    ).encode()
    timestamp = int(time.time())
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    headers = {
        "Aldero-Signature": f"t={timestamp},v1={digest.hexdigest()}",
        "Content-Type": "application/json",
    }
    return await client.post("/webhooks/aldero", content=body, headers=headers)


async def test_openapi_declares_bearer(aldero_settings: AlderoSettings) -> None:
    app, _ = build_app(aldero_settings)

    schema = app.openapi()

    scheme = schema["components"]["securitySchemes"]["AlderoBearer"]
    assert scheme == {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    assert schema["paths"]["/premium"]["get"]["security"] == [{"AlderoBearer": []}]
    assert schema["paths"]["/charge/{amount}"]["post"]["security"] == [{"AlderoBearer": []}]
    assert "security" not in schema["paths"]["/public"]["get"]


async def test_idempotency_key_notifies_once(
    aldero_emulator: EmulatorServer, aldero_settings: AlderoSettings
) -> None:
    app, aldero = build_app(aldero_settings)
    headers = {**ALICE, "Idempotency-Key": "notify-once"}

    async with lifespan_client(app) as client:
        for _ in range(3):
            response = await client.post("/notify/ok", headers=headers)
            assert response.status_code == 200
        await aldero.background_sends.drain(timeout=10)

    assert len(await _notifications(aldero_emulator, "alice")) == 1


@pytest.mark.parametrize("user_id", [".", "..", "u" * 129], ids=["dot", "dot-dot", "too-long"])
async def test_unusable_user_id_401(aldero_settings: AlderoSettings, user_id: str) -> None:
    app, _ = build_app(aldero_settings)

    async with lifespan_client(app) as client:
        response = await client.get("/me", headers=auth(make_token(user_id)))

    assert response.status_code == 401
    assert response.json()["error"] == "Invalid token"


async def test_resolver_unusable_id_401(aldero_settings: AlderoSettings) -> None:
    async def dot_dot_user() -> str:
        return ".."

    app, _ = build_app(aldero_settings, user_resolver=dot_dot_user)

    async with lifespan_client(app) as client:
        response = await client.get("/bare")

    assert response.status_code == 401
    assert response.json() == {
        "error": "Invalid user id",
        "reason": "the user id is a relative path segment",
    }


async def test_non_ascii_request_id_ignored(
    aldero_emulator: EmulatorServer, aldero_settings: AlderoSettings
) -> None:
    app, _ = build_app(aldero_settings)

    async with lifespan_client(app) as client:
        response = await client.get("/me", headers={**ALICE, "X-Request-Id": "caf\xe9".encode()})

    assert response.status_code == 200
    fetches = await served_requests(aldero_emulator, **ALICE_FETCHES)
    assert fetches[0]["requestId"].startswith("req_")


async def test_same_key_two_users_both_notified(
    aldero_emulator: EmulatorServer, aldero_settings: AlderoSettings
) -> None:
    app, aldero = build_app(aldero_settings)

    async with lifespan_client(app) as client:
        await client.post("/notify/ok", headers={**ALICE, "Idempotency-Key": "shared"})
        await client.post("/notify/ok", headers={**BOB, "Idempotency-Key": "shared"})
        await aldero.background_sends.drain(timeout=10)

    assert len(await _notifications(aldero_emulator, "alice")) == 1
    assert len(await _notifications(aldero_emulator, "bob")) == 1
    assert aldero.background_sends.failed == 0


async def test_same_key_same_recipient_both_sent(
    aldero_emulator: EmulatorServer, aldero_settings: AlderoSettings
) -> None:
    app, aldero = build_app(aldero_settings)
    shared_key = {"Idempotency-Key": "shared"}

    async with lifespan_client(app) as client:
        alice = await client.post("/notify-ops", headers={**ALICE, **shared_key})
        bob = await client.post("/notify-ops", headers={**BOB, **shared_key})
        override_user(app, "carol")
        carol = await client.post("/notify-ops", headers=shared_key)
        carol_again = await client.post("/notify-ops", headers=shared_key)
        await aldero.background_sends.drain(timeout=10)

    assert [alice.status_code, bob.status_code, carol.status_code] == [200, 200, 200]
    assert carol_again.status_code == 200
    sent = await _notifications(aldero_emulator, "ops@example.com")
    assert sorted(entry["variables"]["name"] for entry in sent) == ["alice", "bob", "carol"]
    assert aldero.background_sends.failed == 0


async def test_gateway_users_same_key_both_sent(
    aldero_emulator: EmulatorServer, aldero_settings: AlderoSettings
) -> None:
    app, aldero = build_app(aldero_settings)
    statuses: list[int] = []

    async with lifespan_client(app) as client:
        for user_id in ("alice", "bob"):
            response = await client.post(
                "/notify-ops-gateway", headers={"X-User-Id": user_id, "Idempotency-Key": "shared"}
            )
            statuses.append(response.status_code)
        await aldero.background_sends.drain(timeout=10)

    assert statuses == [200, 200]
    sent = await _notifications(aldero_emulator, "ops@example.com")
    assert sorted(entry["variables"]["name"] for entry in sent) == ["alice", "bob"]
    assert aldero.background_sends.failed == 0


async def test_user_ids_with_spaces_keep_apart(aldero_emulator: EmulatorServer) -> None:
    app, _ = build_app(emulator_settings(aldero_emulator))
    await set_user(aldero_emulator, "bob POST /charge/1 a", credits=5)

    async with lifespan_client(app) as client:
        override_user(app, "bob")
        first = await client.post("/charge/1", headers={"Idempotency-Key": "a POST /charge/1 b"})
        override_user(app, "bob POST /charge/1 a")
        second = await client.post("/charge/1", headers={"Idempotency-Key": "b"})

    assert first.status_code == 200
    assert second.status_code == 200
    assert first.json()["referenceId"] != second.json()["referenceId"]


async def test_webhook_oversized_body_413(aldero_emulator: EmulatorServer) -> None:
    settings = emulator_settings(aldero_emulator, webhook_secret=WEBHOOK_SECRET)
    app, aldero = build_app(settings)
    app.include_router(aldero.webhook_router())

    async with lifespan_client(app) as client:
        response = await client.post("/webhooks/aldero", content=b"x" * (65 * 1024))

    assert response.status_code == 413
    assert response.json() == {"error": "Webhook body too large", "limit": 65536}
