"""Two demo processes sharing one Redis: an invalidation in one reaches the other."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.redis_support import RedisServer

REPOSITORY = Path(__file__).resolve().parents[1]


@contextmanager
def demo_process(environment: dict[str, str]) -> Iterator[str]:
    """Run the demo under uvicorn in its own process and yield its root URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "uvicorn", "demo_app.main:app", "--port", str(port)]
    process = subprocess.Popen(command, cwd=REPOSITORY, env=environment)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(url, process)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def _wait_until_up(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the demo exited with code {process.returncode}"
        try:
            httpx.get(f"{url}/api/products", timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError("the demo did not start within 20 s")


def _credits(url: str, headers: dict[str, str]) -> int:
    credits: int = httpx.get(f"{url}/api/me", headers=headers).json()["credits"]
    return credits


def test_invalidation_reaches_other_process(redis_server: RedisServer, tmp_path: Path) -> None:
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("ALDERO_")
        and name not in ("BILLING_API_KEY", "NOTIFICATION_API_KEY")
    }
    environment.update(
        {"DEMO_STATE_DIR": str(tmp_path / "state"), "ALDERO_CACHE_URL": redis_server.url}
    )

    # Started one after the other, so that the second reuses the secrets the first wrote.
    with demo_process(environment) as first, demo_process(environment) as second:
        token = httpx.post(f"{first}/demo/token", json={"userId": "alice"}).json()["accessToken"]
        alice = {"Authorization": f"Bearer {token}"}
        assert _credits(first, alice) == 10
        assert _credits(second, alice) == 10

        # A change through the billing API sends no webhook, so both keep the cached value.
        adjusted = httpx.post(
            f"{first}/aldero/v1/tenants/myapp/billing/users/alice/credits",
            json={"type": "grant", "amount": 5},
            headers={"Authorization": "Bearer bil_emulator_key"},
        )
        assert adjusted.json()["balance"] == 15
        assert _credits(second, alice) == 10

        # The admin change sends a webhook to the first process only.
        httpx.put(f"{first}/aldero/_emulator/users/alice", json={"credits": 42})
        deadline = time.monotonic() + 10
        while _credits(second, alice) != 42 and time.monotonic() < deadline:
            time.sleep(0.05)

        assert _credits(second, alice) == 42
        assert _credits(first, alice) == 42
