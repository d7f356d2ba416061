"""Fixtures for the authentication tests: clock, keys, JWKS server and a test app."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from types import SimpleNamespace
from typing import Annotated, Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse

from aldero_fastapi.auth import AuthenticatedUser, TokenVerifier
from aldero_fastapi.dependencies import CurrentUser
from aldero_fastapi.http_errors import AlderoHTTPException
from aldero_fastapi.resolvers import bearer_token_user
from aldero_fastapi.settings import AlderoSettings

from .jwks_server import JWKSServer
from .tokens import AUDIENCE, ISSUER, NOW, SECRET, new_rsa_key, public_jwk

KID = "key-1"


class FakeClock:
    """A clock that moves only when a test calls advance()."""

    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make_settings(**values: Any) -> AlderoSettings:
    """Build settings from ``values`` only, ignoring the environment's .env file."""
    return AlderoSettings(_env_file=None, **values)  # type: ignore[call-arg]


def hs256_settings(**values: Any) -> AlderoSettings:
    return make_settings(
        auth_jwt_secret=SECRET, auth_issuer=ISSUER, auth_audience=AUDIENCE, **values
    )


def jwks_settings(url: str, **values: Any) -> AlderoSettings:
    return make_settings(auth_jwks_url=url, auth_issuer=ISSUER, auth_audience=AUDIENCE, **values)


async def _render_aldero_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, AlderoHTTPException)
    return JSONResponse(error.body, status_code=error.status_code, headers=error.headers)


def build_app(verifier: TokenVerifier | None) -> FastAPI:
    """Build an app whose GET /me needs CurrentUser, whose GET /resolver needs bearer_token_user."""
    app = FastAPI()
    app.state.aldero = SimpleNamespace(token_verifier=verifier)
    app.add_exception_handler(AlderoHTTPException, _render_aldero_error)

    @app.get("/me")
    async def me(user: CurrentUser) -> dict[str, str]:
        return {"id": user.id}

    @app.get("/resolver")
    async def resolver(
        user: Annotated[AuthenticatedUser, Depends(bearer_token_user)],
    ) -> dict[str, str]:
        return {"id": user.id}

    return app


def app_client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="session")
def rsa_key() -> rsa.RSAPrivateKey:
    return new_rsa_key()


@pytest.fixture(scope="session")
def other_rsa_key() -> rsa.RSAPrivateKey:
    return new_rsa_key()


@pytest.fixture
def jwks_server(rsa_key: rsa.RSAPrivateKey) -> Iterator[JWKSServer]:
    """A running JWKS server that publishes ``rsa_key`` as KID with alg RS256."""
    server = JWKSServer()
    server.keys = [public_jwk(rsa_key, KID, alg="RS256", use="sig")]
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def http_client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5.0) as client:
        yield client
