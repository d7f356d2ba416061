"""require_feature resolving the user itself: once per request, and through overrides."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Annotated

import pytest
from fastapi import Depends, FastAPI, Header, Request

from aldero_fastapi import AlderoSettings, AuthenticatedUser, require_feature
from aldero_fastapi.dependencies import current_user
from aldero_fastapi.emulator import EmulatorServer
from aldero_fastapi.plugin import Aldero
from aldero_fastapi.testing import lifespan_client, make_token, override_user
from tests.plugin_apps import auth, build_app, served_requests

ALICE = auth(make_token("alice"))
PRO_FEATURES = require_feature("pro_features")


def add_requirement_only_route(app: FastAPI) -> None:
    """Add ``/pro-only``, gated by require_feature, whose handler takes no user."""

    @app.get("/pro-only", dependencies=[Depends(PRO_FEATURES)])
    async def pro_only() -> dict[str, str]:
        return {"status": "ok"}


def count_verifications(aldero: Aldero, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record the token of every verification the started ``aldero`` performs."""
    verifier = aldero.token_verifier
    assert verifier is not None
    verify = verifier.verify
    tokens: list[str] = []

    async def counting_verify(token: str) -> AuthenticatedUser:
        tokens.append(token)
        return await verify(token)

    monkeypatch.setattr(verifier, "verify", counting_verify)
    return tokens


# Module level, because string annotations resolve against the module's globals.
tenants_read: list[str] = []


async def tenant_of(x_tenant: Annotated[str, Header()]) -> str:
    tenants_read.append(x_tenant)
    return x_tenant


async def tenant_user(tenant: Annotated[str, Depends(tenant_of)]) -> str:
    return {"acme": "alice", "globex": "bob"}[tenant]


def fixed_user(user_id: str) -> Callable[[], Awaitable[AuthenticatedUser]]:
    async def resolve_fixed_user() -> AuthenticatedUser:
        return AuthenticatedUser(id=user_id, claims={})

    return resolve_fixed_user


async def test_gated_request_verifies_once(
    aldero_settings: AlderoSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    app, aldero = build_app(aldero_settings)

    async with lifespan_client(app) as client:
        tokens = count_verifications(aldero, monkeypatch)
        gated = [await client.get("/premium", headers=ALICE) for _ in range(3)]
        bare = await client.get("/bare", headers=ALICE)

    assert [response.status_code for response in gated] == [200, 200, 200]
    assert bare.status_code == 200
    assert len(tokens) == 4


async def test_requirement_alone_needs_token(aldero_settings: AlderoSettings) -> None:
    app, _ = build_app(aldero_settings)
    add_requirement_only_route(app)

    async with lifespan_client(app) as client:
        missing = await client.get("/pro-only")
        present = await client.get("/pro-only", headers=ALICE)

    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    assert missing.json() == {"error": "Not authenticated"}
    assert present.status_code == 200
    assert present.json() == {"status": "ok"}


async def test_requirement_alone_in_openapi(aldero_settings: AlderoSettings) -> None:
    app, _ = build_app(aldero_settings)
    add_requirement_only_route(app)

    schema = app.openapi()

    assert schema["paths"]["/pro-only"]["get"]["security"] == [{"AlderoBearer": []}]


async def test_override_user_reaches_requirement(
    aldero_emulator: EmulatorServer, aldero_settings: AlderoSettings
) -> None:
    app, _ = build_app(aldero_settings)
    add_requirement_only_route(app)
    override_user(app, "alice")

    async with lifespan_client(app) as client:
        premium = await client.get("/premium")
        pro_only = await client.get("/pro-only")
        override_user(app, "bob")
        denied = await client.get("/premium")

    assert premium.status_code == 200
    assert premium.json() == {"userId": "alice"}
    assert pro_only.status_code == 200
    assert denied.status_code == 403
    assert denied.json()["feature"] == "pro_features"
    for user_id in ("alice", "bob"):
        path = f"/billing/users/{user_id}/entitlements"
        assert len(await served_requests(aldero_emulator, method="GET", path=path)) == 1


async def test_override_set_after_start(aldero_settings: AlderoSettings) -> None:
    app, _ = build_app(aldero_settings)

    async with lifespan_client(app) as client:
        app.dependency_overrides[current_user] = fixed_user("alice")
        overridden = await client.get("/premium")
        del app.dependency_overrides[current_user]
        restored = await client.get("/premium")

    assert overridden.status_code == 200
    assert overridden.json() == {"userId": "alice"}
    assert restored.status_code == 401


async def test_resolver_reaches_requirement(aldero_settings: AlderoSettings) -> None:
    async def api_key_user(request: Request) -> str | None:
        keys = {"key-of-alice": "alice", "key-of-bob": "bob"}
        return keys.get(request.headers.get("x-api-key", ""))

    app, _ = build_app(aldero_settings, user_resolver=api_key_user)

    async with lifespan_client(app) as client:
        alice = await client.get("/premium", headers={"X-API-Key": "key-of-alice"})
        bob = await client.get("/premium", headers={"X-API-Key": "key-of-bob"})
        unknown = await client.get("/premium", headers={"X-API-Key": "nope"})
        token_only = await client.get("/premium", headers=ALICE)

    assert alice.status_code == 200
    assert alice.json() == {"userId": "alice"}
    assert bob.status_code == 403
    assert unknown.status_code == 401
    assert token_only.status_code == 401


async def test_resolver_subdependency_once(aldero_settings: AlderoSettings) -> None:
    tenants_read.clear()
    app, _ = build_app(aldero_settings, user_resolver=tenant_user)

    async with lifespan_client(app) as client:
        allowed = await client.get("/premium", headers={"X-Tenant": "acme"})
        denied = await client.get("/premium", headers={"X-Tenant": "globex"})
        missing = await client.get("/premium")

    assert allowed.status_code == 200
    assert allowed.json() == {"userId": "alice"}
    assert denied.status_code == 403
    assert missing.status_code == 422
    assert tenants_read == ["acme", "globex"]


async def test_explicit_requirement_override_wins(aldero_settings: AlderoSettings) -> None:
    async def allow_everyone() -> None:
        return None

    app, _ = build_app(aldero_settings)
    override_user(app, "bob")
    app.dependency_overrides[require_feature("pro_features")] = allow_everyone

    async with lifespan_client(app) as client:
        response = await client.get("/premium")

    assert response.status_code == 200
    assert response.json() == {"userId": "bob"}


async def test_replaced_overrides_misconfigured(
    aldero_settings: AlderoSettings, caplog: pytest.LogCaptureFixture
) -> None:
    app, _ = build_app(aldero_settings)

    async with lifespan_client(app) as client:
        app.dependency_overrides = {current_user: fixed_user("alice")}
        with caplog.at_level(logging.ERROR, logger="aldero_fastapi.handlers"):
            response = await client.get("/premium")

    assert response.status_code == 503
    assert response.json() == {"error": "Aldero integration is misconfigured"}
    assert "call aldero.install(app) after replacing" in caplog.text


async def test_install_again_after_replacing(aldero_settings: AlderoSettings) -> None:
    app, aldero = build_app(aldero_settings)

    async with lifespan_client(app) as client:
        app.dependency_overrides = {current_user: fixed_user("alice")}
        aldero.install(app)
        response = await client.get("/premium")

    assert response.status_code == 200
    assert response.json() == {"userId": "alice"}


async def test_install_twice_one_security(aldero_settings: AlderoSettings) -> None:
    app, aldero = build_app(aldero_settings)
    aldero.install(app)

    schema = app.openapi()

    assert schema["paths"]["/premium"]["get"]["security"] == [{"AlderoBearer": []}]
    assert len(app.user_middleware) == 1


async def test_resolver_survives_cleared_overrides(aldero_settings: AlderoSettings) -> None:
    async def api_key_user(request: Request) -> str | None:
        return {"key-of-alice": "alice"}.get(request.headers.get("x-api-key", ""))

    app, _ = build_app(aldero_settings, user_resolver=api_key_user)
    alice_key = {"X-API-Key": "key-of-alice"}

    async with lifespan_client(app) as client:
        override_user(app, "bob")
        overridden = await client.get("/premium", headers=alice_key)
        app.dependency_overrides.clear()
        premium = await client.get("/premium", headers=alice_key)
        bare = await client.get("/bare", headers=alice_key)
        token_only = await client.get("/premium", headers=ALICE)

    assert overridden.status_code == 403
    assert premium.status_code == 200
    assert premium.json() == {"userId": "alice"}
    assert bare.json() == {"userId": "alice"}
    assert token_only.status_code == 401


class SlottedResolver:
    """A callable override whose class has ``__slots__``, so it takes no weak reference."""

    __slots__ = ("user_id",)

    def __init__(self, user_id: str) -> None:
        self.user_id = user_id

    async def __call__(self) -> str:
        return self.user_id


async def test_override_returning_id_or_none(aldero_settings: AlderoSettings) -> None:
    async def no_user() -> None:
        return None

    app, _ = build_app(aldero_settings)

    async with lifespan_client(app) as client:
        app.dependency_overrides[current_user] = SlottedResolver("alice")
        by_id = await client.get("/premium")
        app.dependency_overrides[current_user] = no_user
        anonymous = await client.get("/premium")

    assert by_id.status_code == 200
    assert by_id.json() == {"userId": "alice"}
    assert anonymous.status_code == 401
    assert anonymous.json() == {"error": "Not authenticated"}


async def test_resolver_with_replaced_overrides_503(aldero_settings: AlderoSettings) -> None:
    async def api_key_user(request: Request) -> str | None:
        return {"key-of-alice": "alice"}.get(request.headers.get("x-api-key", ""))

    app, _ = build_app(aldero_settings, user_resolver=api_key_user)

    async with lifespan_client(app) as client:
        app.dependency_overrides = {}
        token_only = await client.get("/bare", headers=ALICE)
        aldero_install_again = app.state.aldero.install
        aldero_install_again(app)
        by_key = await client.get("/bare", headers={"X-API-Key": "key-of-alice"})

    assert token_only.status_code == 503
    assert token_only.json() == {"error": "Aldero integration is misconfigured"}
    assert by_key.json() == {"userId": "alice"}
