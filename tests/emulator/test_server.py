"""The emulator as a real uvicorn server on a loopback port."""

from __future__ import annotations

import asyncio
import socket
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from aldero_fastapi.emulator import EmulatorConfig, EmulatorServer
from aldero_fastapi.emulator.server import BackgroundServer

from .conftest import BILLING_HEADERS

CREDITS = "/billing/users/bob/credits"


async def test_urls_point_at_server(live_server: EmulatorServer) -> None:
    port = live_server.port

    assert live_server.root_url == f"http://127.0.0.1:{port}"
    assert live_server.base_url == f"http://127.0.0.1:{port}/v1/tenants/myapp"
    assert live_server.admin_url == f"http://127.0.0.1:{port}/_emulator"


async def test_server_serves_entitlements(live_billing: httpx.AsyncClient) -> None:
    response = await live_billing.get("/billing/users/alice/entitlements")

    assert response.status_code == 200
    assert response.json()["credits"] == 10


async def test_concurrent_deductions_never_overdraw(
    live_billing: httpx.AsyncClient, live_admin: httpx.AsyncClient
) -> None:
    await live_admin.put("/users/bob", json={"credits": 25})

    responses = await asyncio.gather(
        *(live_billing.post(CREDITS, json={"type": "usage", "amount": -1}) for _ in range(50))
    )
    statuses = Counter(response.status_code for response in responses)
    user = (await live_admin.get("/users/bob")).json()

    assert statuses == {200: 25, 402: 25}
    assert user["credits"] == 0
    assert user["ledgerSum"] == 0


async def test_concurrent_keyed_requests_apply_once(
    live_billing: httpx.AsyncClient, live_admin: httpx.AsyncClient
) -> None:
    body = {"type": "grant", "amount": 5, "referenceId": "same-grant"}

    responses = await asyncio.gather(*(live_billing.post(CREDITS, json=body) for _ in range(20)))
    statuses = Counter(response.status_code for response in responses)
    user = (await live_admin.get("/users/bob")).json()

    assert set(statuses) <= {200, 409}
    assert statuses[200] >= 1
    assert user["credits"] == 8


async def test_drop_is_transport_error(
    live_billing: httpx.AsyncClient, live_admin: httpx.AsyncClient
) -> None:
    await live_admin.post("/faults", json={"path": "/billing/products", "action": "drop"})

    with pytest.raises(httpx.TransportError):
        await live_billing.get("/billing/products")


async def test_drop_leaves_server_usable(
    live_billing: httpx.AsyncClient, live_admin: httpx.AsyncClient
) -> None:
    await live_admin.post(
        "/faults", json={"path": "/billing/products", "action": "drop", "count": 1}
    )
    with pytest.raises(httpx.RemoteProtocolError):
        await live_billing.get("/billing/products")

    response = await live_billing.get("/billing/products")

    assert response.status_code == 200


async def test_commit_then_drop_keeps_row(
    live_billing: httpx.AsyncClient, live_admin: httpx.AsyncClient
) -> None:
    await live_admin.post(
        "/faults", json={"path": "/billing/users/*/credits", "action": "commit_then_drop"}
    )

    with pytest.raises(httpx.TransportError):
        await live_billing.post(CREDITS, json={"type": "grant", "amount": 4})
    await live_admin.delete("/faults")
    ledger = (await live_billing.get(CREDITS)).json()

    assert ledger["balance"] == 7
    assert ledger["transactions"][0]["amount"] == 4


async def test_status_fault_with_retry_after(
    live_billing: httpx.AsyncClient, live_admin: httpx.AsyncClient
) -> None:
    await live_admin.post(
        "/faults", json={"path": "/billing/products", "status": 429, "retryAfter": 2}
    )

    response = await live_billing.get("/billing/products")

    assert response.status_code == 429
    assert response.headers["Retry-After"] == "2"


async def test_in_flight_key_is_409(
    live_billing: httpx.AsyncClient, live_admin: httpx.AsyncClient
) -> None:
    await live_admin.post(
        "/faults",
        json={"path": "/billing/users/*/credits", "action": "none", "latencyMs": 500, "count": 1},
    )
    body = {"type": "grant", "amount": 1, "referenceId": "slow-1"}

    slow_first = asyncio.create_task(live_billing.post(CREDITS, json=body))
    await asyncio.sleep(0.2)
    concurrent = await live_billing.post(CREDITS, json=body)
    first = await slow_first

    assert concurrent.status_code == 409
    assert concurrent.headers["Retry-After"] == "1"
    assert first.status_code == 200


async def test_request_log_counts_calls(
    live_billing: httpx.AsyncClient, live_admin: httpx.AsyncClient
) -> None:
    for _ in range(3):
        await live_billing.get("/billing/users/alice/entitlements")

    logged = (await live_admin.get("/requests", params={"method": "GET"})).json()["requests"]

    assert len(logged) == 3


async def test_file_database_survives_restart(tmp_path: Path) -> None:
    config = EmulatorConfig(db_path=str(tmp_path / "emulator.db"))
    server = EmulatorServer(config)

    async with server, httpx.AsyncClient(headers=BILLING_HEADERS) as client:
        await client.post(f"{server.base_url}{CREDITS}", json={"type": "grant", "amount": 7})
        await client.put(f"{server.admin_url}/users/bob", json={"features": ["fax"]})
        await client.post(f"{server.base_url}/billing/users/carol/sync")

    async with server, httpx.AsyncClient(headers=BILLING_HEADERS) as client:
        bob = (await client.get(f"{server.base_url}/billing/users/bob/entitlements")).json()
        carol = (await client.get(f"{server.base_url}/billing/users/carol/entitlements")).json()
        user = (await client.get(f"{server.admin_url}/users/bob")).json()

    assert bob["credits"] == 10
    assert bob["features"] == ["fax"]
    assert carol["features"] == ["pro_features"]
    assert user["ledgerSum"] == 10


async def test_memory_database_resets_on_restart() -> None:
    server = EmulatorServer()

    async with server, httpx.AsyncClient(headers=BILLING_HEADERS) as client:
        await client.post(f"{server.base_url}{CREDITS}", json={"type": "grant", "amount": 7})

    async with server, httpx.AsyncClient(headers=BILLING_HEADERS) as client:
        bob = (await client.get(f"{server.base_url}/billing/users/bob/entitlements")).json()

    assert bob["credits"] == 3


def test_restart_keeps_port() -> None:
    server = EmulatorServer()
    with server:
        first_port = server.port
    with server:
        second_port = server.port

    assert second_port == first_port


def test_restart_takes_new_port_when_taken() -> None:
    server = EmulatorServer()
    with server:
        first_port = server.port
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", first_port))
    blocker.listen()
    try:
        with server:
            second_port = server.port
            response = httpx.get(f"{server.admin_url}/users/alice")
    finally:
        blocker.close()

    assert second_port != first_port
    assert response.status_code == 200


def test_stopped_server_has_no_url() -> None:
    server = EmulatorServer()

    with pytest.raises(RuntimeError, match="not running"):
        _ = server.base_url


def test_double_start_is_rejected() -> None:
    with EmulatorServer() as server, pytest.raises(RuntimeError, match="already running"):
        server.start()


def test_stop_closes_connections() -> None:
    with EmulatorServer() as server:
        url = server.admin_url

    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/users/alice")


def test_taken_fixed_port_raises() -> None:
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    server = EmulatorServer(port=blocker.getsockname()[1])
    try:
        with pytest.raises(OSError):
            server.start()
    finally:
        blocker.close()


def test_fixed_port_is_used() -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()

    with EmulatorServer(port=port) as server:
        bound_port = server.port
        response = httpx.get(f"{server.admin_url}/users/alice")

    assert bound_port == port
    assert response.status_code == 200


def test_failing_startup_raises() -> None:
    @asynccontextmanager
    async def failing_lifespan(app: Starlette) -> AsyncIterator[None]:
        raise RuntimeError("startup failed on purpose")
        yield

    server = BackgroundServer(Starlette(lifespan=failing_lifespan))

    with pytest.raises(RuntimeError, match="failed to start"):
        server.start()

    assert not server.running
