"""Fixtures for the emulator tests: in-process clients and a shared real server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from fastapi import FastAPI

from aldero_fastapi.emulator import (
    DEFAULT_BILLING_KEY,
    DEFAULT_NOTIFICATION_KEY,
    EmulatorConfig,
    EmulatorServer,
    EmulatorState,
    create_app,
)

ROOT = "http://emulator.test"
BASE = f"{ROOT}/v1/tenants/myapp"
BILLING_HEADERS = {"Authorization": f"Bearer {DEFAULT_BILLING_KEY}", "User-Agent": "tests/1"}
NOTIFICATION_HEADERS = {
    "Authorization": f"Bearer {DEFAULT_NOTIFICATION_KEY}",
    "User-Agent": "tests/1",
}


@pytest.fixture
async def app() -> AsyncIterator[FastAPI]:
    application = create_app(EmulatorConfig(fault_seed=7))
    yield application
    await application.state.emulator.aclose()


@pytest.fixture
def state(app: FastAPI) -> EmulatorState:
    emulator: EmulatorState = app.state.emulator
    return emulator


@pytest.fixture
async def billing(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the billing routes, with the billing key."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url=BASE, headers=BILLING_HEADERS
    ) as client:
        yield client


@pytest.fixture
async def notifications(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the notification routes, with the notification key."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url=BASE, headers=NOTIFICATION_HEADERS
    ) as client:
        yield client


@pytest.fixture
async def admin(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the admin routes under /_emulator."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=f"{ROOT}/_emulator") as client:
        yield client


@pytest.fixture(scope="session")
def shared_server() -> Iterator[EmulatorServer]:
    with EmulatorServer(EmulatorConfig(fault_seed=7)) as server:
        yield server


@pytest.fixture
def live_server(shared_server: EmulatorServer) -> EmulatorServer:
    """The shared real server, reset to its seed before the test."""
    httpx.post(f"{shared_server.admin_url}/reset").raise_for_status()
    return shared_server


@pytest.fixture
async def live_billing(live_server: EmulatorServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=live_server.base_url, headers=BILLING_HEADERS) as client:
        yield client


@pytest.fixture
async def live_admin(live_server: EmulatorServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=live_server.admin_url) as client:
        yield client
