"""Helpers and pytest fixtures for testing apps that use aldero_fastapi.

Enable the fixtures in a ``conftest.py`` with ``pytest_plugins = ["aldero_fastapi.testing"]``
(they need pytest; the other helpers do not):

- ``aldero_emulator``: the emulator as a real server on a free loopback port, reset
  for each test;
- ``aldero_settings``: settings that point at that server, with an HS256 secret for
  ``make_token``.

Outside pytest, ``override_user`` replaces the authenticated user of an app, and
``AppServer`` serves any ASGI app on a free loopback port.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import jwt
from fastapi import FastAPI

from aldero_fastapi.dependencies import current_user
from aldero_fastapi.emulator import (
    DEFAULT_BILLING_KEY,
    DEFAULT_NOTIFICATION_KEY,
    EmulatorServer,
)
from aldero_fastapi.emulator.server import BackgroundServer
from aldero_fastapi.overrides import install_user_aware_overrides
from aldero_fastapi.resolvers import user_override
from aldero_fastapi.settings import AlderoSettings

__all__ = [
    "TEST_JWT_SECRET",
    "AppServer",
    "aldero_emulator",
    "aldero_settings",
    "emulator_settings",
    "lifespan_client",
    "make_token",
    "override_user",
]

# Only for tests: tokens signed with it are accepted by ``aldero_settings``.
TEST_JWT_SECRET = "aldero-fastapi-test-secret-not-for-production"


def override_user(app: FastAPI, user_id: str, claims: dict[str, Any] | None = None) -> None:
    """Make every ``CurrentUser`` and ``require_feature`` of ``app`` resolve to ``user_id``."""
    install_user_aware_overrides(app, current_user)
    app.dependency_overrides[current_user] = user_override(user_id, claims)


def make_token(
    user_id: str,
    *,
    secret: str = TEST_JWT_SECRET,
    lifetime_seconds: int = 3600,
    **claims: Any,
) -> str:
    """Return an HS256 token for ``user_id`` that expires in ``lifetime_seconds``."""
    now = int(time.time())
    payload = {"sub": user_id, "iat": now, "exp": now + lifetime_seconds, **claims}
    return jwt.encode(payload, secret, algorithm="HS256")


def emulator_settings(server: EmulatorServer, **overrides: Any) -> AlderoSettings:
    """
    Return settings for a running emulator, ignoring the environment and ``.env``.

    Retries wait no time by default, so fault tests run fast.
    """
    values: dict[str, Any] = {
        "base_url": server.base_url,
        "billing_api_key": DEFAULT_BILLING_KEY,
        "notification_api_key": DEFAULT_NOTIFICATION_KEY,
        "auth_jwt_secret": TEST_JWT_SECRET,
        "retry_backoff_seconds": 0.0,
        "refund_backoff_seconds": 0.0,
        **overrides,
    }
    # model_validate skips the environment sources that the constructor reads.
    return AlderoSettings.model_validate(values)


@asynccontextmanager
async def lifespan_client(
    app: FastAPI, *, base_url: str = "http://testserver"
) -> AsyncIterator[httpx.AsyncClient]:
    """Run ``app``'s lifespan and yield a client that calls the app in-process."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=base_url) as client:
            yield client


class AppServer(BackgroundServer):
    """
    An ASGI app served by uvicorn on a free loopback port, in a background thread.

    Usable with ``with`` and ``async with``; ``url`` is the root URL once started.
    """

    @property
    def url(self) -> str:
        """The root URL of the running server, such as ``http://127.0.0.1:43123``."""
        return self.root_url

    def __enter__(self) -> AppServer:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> AppServer:
        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await asyncio.to_thread(self.stop)


# The fixtures need pytest; the helpers above work without it.
with contextlib.suppress(ImportError):
    from aldero_fastapi.pytest_plugin import (
        _aldero_emulator_server as _aldero_emulator_server,
    )
    from aldero_fastapi.pytest_plugin import (
        aldero_emulator as aldero_emulator,
    )
    from aldero_fastapi.pytest_plugin import (
        aldero_settings as aldero_settings,
    )
