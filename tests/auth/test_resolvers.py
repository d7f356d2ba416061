"""bearer_token_user configuration errors, trusted_header_user, coerce_user, user_override."""

from __future__ import annotations

import logging
from typing import Annotated, Any

import httpx
import pytest
from fastapi import Depends, FastAPI

from aldero_fastapi.auth import AuthenticatedUser, TokenVerifier
from aldero_fastapi.http_errors import AlderoHTTPException
from aldero_fastapi.resolvers import (
    bearer_token_user,
    coerce_user,
    trusted_header_user,
    user_override,
)

from .conftest import FakeClock, app_client, bearer, build_app, hs256_settings
from .tokens import USER_ID, claims, sign_hs256

HEADER = "X-Authenticated-User"


# At module level because FastAPI resolves the string annotations of a route, made by
# "from __future__ import annotations", in the module's globals.
trusted_resolver = trusted_header_user(HEADER)


def trusted_app() -> FastAPI:
    app = build_app(None)

    @app.get("/who")
    async def who(
        user: Annotated[AuthenticatedUser, Depends(trusted_resolver)],
    ) -> dict[str, str]:
        return {"id": user.id}

    return app


async def test_no_aldero_state_503() -> None:
    app = build_app(None)
    del app.state.aldero

    async with app_client(app) as client:
        response = await client.get("/me", headers=bearer(sign_hs256(claims())))

    assert response.status_code == 503
    assert response.json()["error"] == "Authentication is not configured"
    assert "ALDERO_AUTH_JWT_SECRET" in response.json()["message"]
    assert "user_resolver" in response.json()["message"]


async def test_no_verifier_503() -> None:
    async with app_client(build_app(None)) as client:
        response = await client.get("/me")

    assert response.status_code == 503
    assert response.json()["error"] == "Authentication is not configured"


async def test_lowercase_scheme(http_client: httpx.AsyncClient, clock: FakeClock) -> None:
    verifier = TokenVerifier.from_settings(hs256_settings(), http_client, clock=clock)

    async with app_client(build_app(verifier)) as client:
        response = await client.get(
            "/me", headers={"Authorization": "bearer " + sign_hs256(claims())}
        )

    assert response.status_code == 200
    assert response.json() == {"id": USER_ID}


async def test_description_quoted(http_client: httpx.AsyncClient, clock: FakeClock) -> None:
    settings = hs256_settings(auth_user_id_claim='user"id')
    verifier = TokenVerifier.from_settings(settings, http_client, clock=clock)

    async with app_client(build_app(verifier)) as client:
        response = await client.get("/me", headers=bearer(sign_hs256(claims())))

    assert response.headers["WWW-Authenticate"] == (
        'Bearer error="invalid_token", error_description="missing user id claim \'user?id\'"'
    )
    assert response.json()["reason"] == "missing user id claim 'user\"id'"


async def test_two_authorization_headers_400(
    http_client: httpx.AsyncClient, clock: FakeClock
) -> None:
    verifier = TokenVerifier.from_settings(hs256_settings(), http_client, clock=clock)
    token = sign_hs256(claims())
    headers = [("Authorization", f"Bearer {token}"), ("Authorization", f"Bearer {token}")]

    async with app_client(build_app(verifier)) as client:
        response = await client.get("/me", headers=headers)

    assert response.status_code == 400
    assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_request"'
    assert response.json() == {
        "error": "Invalid Authorization header",
        "reason": "the request has 2 Authorization headers; send exactly one",
    }
    assert token not in response.text


async def test_trusted_header_valid() -> None:
    async with app_client(trusted_app()) as client:
        response = await client.get("/who", headers={HEADER: "user_42"})

    assert response.status_code == 200
    assert response.json() == {"id": "user_42"}


async def test_trusted_header_max_length() -> None:
    async with app_client(trusted_app()) as client:
        response = await client.get("/who", headers={HEADER: "u" * 128})

    assert response.status_code == 200


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        ({}, {"error": "Not authenticated"}),
        ({HEADER: ""}, {"error": "Not authenticated"}),
        ({"X-User-Id": "user_42"}, {"error": "Not authenticated"}),
        (
            {HEADER: "u" * 129},
            {
                "error": "Invalid user id header",
                "reason": f"the {HEADER} header is longer than 128 characters",
            },
        ),
        (
            {HEADER: "user\x7f42"},
            {
                "error": "Invalid user id header",
                "reason": f"the {HEADER} header contains control characters",
            },
        ),
        (
            [(HEADER, "user_42"), (HEADER, "admin")],
            {"error": "Invalid user id header", "reason": f"the {HEADER} header is repeated"},
        ),
    ],
    ids=["missing", "empty", "other_header", "too_long", "control_character", "repeated"],
)
async def test_trusted_header_rejects(headers: Any, body: dict[str, str]) -> None:
    async with app_client(trusted_app()) as client:
        response = await client.get("/who", headers=headers)

    assert response.status_code == 401
    assert response.json() == body


@pytest.mark.parametrize("name", ["", "X User", "X-User:", "X-Üser"])
def test_trusted_header_bad_name(name: str) -> None:
    with pytest.raises(ValueError):
        trusted_header_user(name)


def test_coerce_user_passthrough() -> None:
    user = AuthenticatedUser(id=USER_ID, claims={"plan": "pro"})

    assert coerce_user(user) is user


def test_coerce_user_string() -> None:
    assert coerce_user("user_42") == AuthenticatedUser(id="user_42", claims={})


@pytest.mark.parametrize("value", [None, ""], ids=["none", "empty"])
def test_coerce_user_unauthenticated(value: str | None) -> None:
    with pytest.raises(AlderoHTTPException) as raised:
        coerce_user(value)

    assert raised.value.status_code == 401
    assert raised.value.body == {"error": "Not authenticated"}
    assert raised.value.headers == {"WWW-Authenticate": "Bearer"}


@pytest.mark.parametrize("value", [42, {"id": "user_42"}, b"user_42"], ids=["int", "dict", "bytes"])
def test_coerce_user_wrong_type(value: Any) -> None:
    with pytest.raises(TypeError, match=f"returned {type(value).__name__};"):
        coerce_user(value)


async def test_user_override() -> None:
    app = build_app(None)
    app.dependency_overrides[bearer_token_user] = user_override("user_42", {"plan": "pro"})

    @app.get("/plan")
    async def plan(
        user: Annotated[AuthenticatedUser, Depends(bearer_token_user)],
    ) -> dict[str, Any]:
        return {"id": user.id, "claims": dict(user.claims)}

    async with app_client(app) as client:
        response = await client.get("/plan")

    assert response.status_code == 200
    assert response.json() == {"id": "user_42", "claims": {"plan": "pro"}}


def test_user_override_empty_id() -> None:
    with pytest.raises(ValueError):
        user_override("")


async def test_log_uses_route_template(
    http_client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    app = build_app(TokenVerifier.from_settings(hs256_settings(), http_client))
    # A token in the path, as in a magic link, must not reach the log.
    token = sign_hs256(claims())

    @app.get("/links/{code}")
    async def link(user: Annotated[AuthenticatedUser, Depends(bearer_token_user)]) -> str:
        return user.id

    async with app_client(app) as client:
        response = await client.get(f"/links/{token}")

    messages = [r.getMessage() for r in caplog.records if r.name == "aldero_fastapi.auth"]
    assert response.status_code == 401
    assert messages == ["rejected request GET /links/{code}: no bearer token"]
