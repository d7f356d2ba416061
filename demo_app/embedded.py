"""The embedded emulator that the demo runs on when no Aldero tenant is configured."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import httpx
from starlette.types import ASGIApp, Receive, Scope, Send

from aldero_fastapi.emulator import (
    DEFAULT_BILLING_KEY,
    DEFAULT_NOTIFICATION_KEY,
    DEFAULT_TENANT,
    EmulatorConfig,
    create_app,
)
from aldero_fastapi.settings import AlderoSettings

logger = logging.getLogger("demo_app.embedded")

# The emulator is reached in-process through this host name; nothing resolves it.
EMULATOR_ORIGIN = "http://aldero-emulator"
DATABASE_NAME = "emulator.sqlite3"
TOKEN_SECRET_NAME = "demo-jwt-secret"
WEBHOOK_SECRET_NAME = "demo-webhook-secret"
# The demo receives the emulator's webhooks in-process under this host name.
DEMO_ORIGIN = "http://demo-app"


@dataclass
class EmbeddedEmulator:
    """The emulator app, its state directory and the settings that point the demo at it."""

    app: ASGIApp
    settings: AlderoSettings
    database_path: Path

    def transport(self) -> httpx.AsyncBaseTransport:
        """Return a transport that sends the client's requests straight into the emulator app."""
        return TimedASGITransport(app=self.app)


class TimedASGITransport(httpx.ASGITransport):
    """
    An ASGI transport that enforces the request's read timeout.

    httpx.ASGITransport ignores timeouts, so without this a latency fault in the
    embedded emulator would hold a demo request for the whole latency of the fault.
    """

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeouts = request.extensions.get("timeout", {})
        read_timeout = timeouts.get("read")
        try:
            return await asyncio.wait_for(super().handle_async_request(request), read_timeout)
        except asyncio.TimeoutError:
            raise httpx.ReadTimeout(
                f"the embedded emulator did not respond within {read_timeout} s",
                request=request,
            ) from None


def start_embedded_emulator(
    settings: AlderoSettings, state_dir: Path, demo_app: ASGIApp, webhook_path: str
) -> EmbeddedEmulator:
    """
    Create the emulator on a SQLite file under ``state_dir`` and settings that use it.

    Secrets come from the environment when set, else they are generated once and kept
    in ``state_dir``, so that demo tokens survive a restart. The emulator sends its
    webhooks straight into ``demo_app`` at ``webhook_path``, so that changes made
    through the admin routes reach the demo's cache at once.
    """
    # Owner only, because the folder contains the token secret and the emulator's database.
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    database_path = state_dir / DATABASE_NAME

    update: dict[str, object] = {
        "base_url": f"{EMULATOR_ORIGIN}/v1/tenants/{DEFAULT_TENANT}",
        "billing_api_key": DEFAULT_BILLING_KEY,
        "notification_api_key": DEFAULT_NOTIFICATION_KEY,
    }
    if settings.auth_jwt_secret is None and settings.auth_jwks_url is None:
        update["auth_jwt_secret"] = _stored_secret(state_dir / TOKEN_SECRET_NAME)
    elif settings.auth_jwt_secret is not None:
        logger.warning(
            "POST /demo/token signs tokens for any user id with ALDERO_AUTH_JWT_SECRET; "
            "never expose the demo, and unset that variable to use a generated secret"
        )
    webhook_secret = (
        settings.webhook_secret.get_secret_value()
        if settings.webhook_secret is not None
        else _stored_secret(state_dir / WEBHOOK_SECRET_NAME)
    )
    update["webhook_secret"] = webhook_secret

    app = create_app(
        EmulatorConfig(
            db_path=str(database_path),
            webhook_url=f"{DEMO_ORIGIN}{webhook_path}",
            webhook_secret=webhook_secret,
            webhook_transport=httpx.ASGITransport(app=demo_app),
        )
    )
    emulator_settings = AlderoSettings.model_validate({**settings.model_dump(), **update})

    logger.warning(
        "Running on the embedded Aldero EMULATOR, not a real tenant: state in %s; "
        "demo users alice (pro_features, 10 credits), bob (3 credits), carol (0 credits, "
        "a pro_monthly purchase to sync), dave (5 credits); emulator admin at /aldero/_emulator",
        database_path,
    )
    return EmbeddedEmulator(app=app, settings=emulator_settings, database_path=database_path)


def _stored_secret(path: Path) -> str:
    if path.exists():
        return path.read_text().strip()

    secret = secrets.token_urlsafe(48)
    # Created readable by the owner only, before the secret is written.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(secret)
    return secret


class EmulatorMount:
    """
    ASGI app mounted at ``/aldero`` that forwards to the emulator once it is started.

    The mount exists from import time, but whether the emulator runs is only known when
    the lifespan reads the settings. Until then, and with a real tenant, it responds 404.
    """

    def __init__(self) -> None:
        self.target: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.target is not None:
            await self.target(scope, receive, send)
            return

        if scope["type"] != "http":
            return
        body = b'{"error":"The emulator is off because a real Aldero tenant is configured"}'
        await send(
            {
                "type": "http.response.start",
                "status": 404,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})
