"""Start the emulator and the benchmark app as separate processes on loopback."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

import httpx

JWT_SECRET = "benchmark-secret-not-for-production"
STARTUP_TIMEOUT_SECONDS = 20.0


def free_port() -> int:
    """Return a port that was free on 127.0.0.1 a moment ago."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def emulator_process() -> Iterator[str]:
    """Run ``python -m aldero_fastapi.emulator`` on a free port and yield its base URL."""
    # Output goes to a file, because an unread pipe fills up and blocks the emulator.
    with tempfile.TemporaryFile(mode="w+") as output:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "aldero_fastapi.emulator",
                "--port",
                "0",
                "--log-level",
                "warning",
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            yield _read_base_url(output)
        finally:
            _stop(process)


@contextmanager
def app_process(base_url: str, **settings: str) -> Iterator[str]:
    """Run the benchmark app under one uvicorn worker and yield its root URL."""
    port = free_port()
    environment = {
        **os.environ,
        "ALDERO_BASE_URL": base_url,
        "ALDERO_BILLING_API_KEY": "bil_emulator_key",
        "ALDERO_AUTH_JWT_SECRET": JWT_SECRET,
        "ALDERO_ENTITLEMENTS_TTL_SECONDS": "3600",
        **{f"ALDERO_{name.upper()}": value for name, value in settings.items()},
    }
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "benchmarks.app:app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--log-level",
        "warning",
        "--no-access-log",
    ]
    process = subprocess.Popen(command, env=environment)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(url, process)
        yield url
    finally:
        _stop(process)


def _stop(process: subprocess.Popen[Any]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def _read_base_url(output: IO[str]) -> str:
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        output.seek(0)
        match = re.search(r"(http://127\.0\.0\.1:\d+/v1/tenants/\w+)", output.read())
        if match:
            return match.group(1)
        time.sleep(0.05)
    raise RuntimeError("the emulator did not print its base URL in time")


def _wait_until_up(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the benchmark app exited with code {process.returncode}")
        try:
            httpx.get(f"{url}/bare", timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError("the benchmark app did not start in time")
