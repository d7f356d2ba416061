"""The command line entry point, run as a subprocess."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from aldero_fastapi.emulator.__main__ import mask_key

BANNER_LINES = 6


def start_cli(*arguments: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "aldero_fastapi.emulator", "--port", "0", *arguments],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def read_banner(process: subprocess.Popen[str], timeout: float = 15.0) -> list[str]:
    """Read the start banner, failing when it does not appear within ``timeout`` seconds.

    It reads the raw pipe, because the text wrapper would buffer lines out of select's view.
    """
    assert process.stdout is not None
    descriptor = process.stdout.fileno()
    selector = selectors.DefaultSelector()
    selector.register(descriptor, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    output = b""

    while output.count(b"\n") < BANNER_LINES:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not selector.select(remaining):
            raise AssertionError(f"no banner within {timeout} s, got {output!r}")
        chunk = os.read(descriptor, 4096)
        if not chunk:
            raise AssertionError(f"the CLI exited early, got {output!r}")
        output += chunk

    return output.decode().splitlines()[:BANNER_LINES]


@pytest.fixture
def cli() -> Iterator[list[subprocess.Popen[str]]]:
    """Collects started CLI processes and kills any that a test left running."""
    processes: list[subprocess.Popen[str]] = []
    yield processes
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=10)


def test_cli_prints_bound_url_and_serves(cli: list[subprocess.Popen[str]]) -> None:
    process = start_cli()
    cli.append(process)

    banner = read_banner(process)
    base_url = banner[0].removeprefix("Aldero emulator listening on ")
    response = httpx.get(
        f"{base_url}/billing/users/alice/entitlements",
        headers={"Authorization": "Bearer bil_emulator_key"},
    )

    assert banner[0].startswith("Aldero emulator listening on http://127.0.0.1:")
    assert base_url.endswith("/v1/tenants/myapp")
    assert banner[1] == f"Admin API: {base_url.removesuffix('/v1/tenants/myapp')}/_emulator"
    assert banner[2] == "Database: in memory"
    assert banner[3] == "Billing key: bil_emulator_key"
    assert banner[4] == "Notification key: ntf_emulator_key"
    assert response.status_code == 200
    assert response.json()["credits"] == 10


def test_cli_stops_cleanly_on_sigint(cli: list[subprocess.Popen[str]]) -> None:
    process = start_cli()
    cli.append(process)
    read_banner(process)

    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=15)

    assert process.returncode == 0
    assert "Aldero emulator stopped" in stdout
    assert "Traceback" not in stderr


def test_cli_stops_cleanly_on_sigterm(cli: list[subprocess.Popen[str]]) -> None:
    process = start_cli()
    cli.append(process)
    read_banner(process)

    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=15)

    assert process.returncode == 0
    assert "Traceback" not in stderr


def test_cli_masks_custom_keys(cli: list[subprocess.Popen[str]], tmp_path: Path) -> None:
    database = tmp_path / "cli.db"
    process = start_cli(
        "--billing-key",
        "bil_live_secret_9876",
        "--notification-key",
        "ntf_live_secret_5432",
        "--tenant",
        "acme",
        "--db",
        str(database),
    )
    cli.append(process)

    banner = read_banner(process)
    base_url = banner[0].removeprefix("Aldero emulator listening on ")
    response = httpx.get(
        f"{base_url}/billing/products",
        headers={"Authorization": "Bearer bil_live_secret_9876"},
    )
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=15)

    assert base_url.endswith("/v1/tenants/acme")
    assert banner[2] == f"Database: {database}"
    assert banner[3] == "Billing key: bil_…9876"
    assert banner[4] == "Notification key: ntf_…5432"
    assert "live_secret" not in stdout + stderr
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("arguments", "option"),
    [
        (["--billing-key", "ntf_wrong"], "--billing-key"),
        (["--notification-key", "bil_wrong"], "--notification-key"),
        (["--tenant", "a/b"], "--tenant"),
        (["--port", "70000"], "--port"),
    ],
)
def test_cli_rejects_invalid_option(arguments: list[str], option: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "aldero_fastapi.emulator", *arguments],
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert result.returncode == 2
    assert option in result.stderr


@pytest.mark.parametrize(
    ("key", "default", "shown"),
    [
        ("bil_emulator_key", "bil_emulator_key", "bil_emulator_key"),
        ("bil_live_secret_9876", "bil_emulator_key", "bil_…9876"),
        ("bil_short", "bil_emulator_key", "bil_…"),
        ("ntf_abcdefgh", "ntf_emulator_key", "ntf_…efgh"),
    ],
)
def test_mask_key(key: str, default: str, shown: str) -> None:
    assert mask_key(key, default) == shown
