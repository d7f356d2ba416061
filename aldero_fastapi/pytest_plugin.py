"""Pytest fixtures of ``aldero_fastapi.testing``: the emulator and settings that use it."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from aldero_fastapi.emulator import EmulatorConfig, EmulatorServer
from aldero_fastapi.settings import AlderoSettings
from aldero_fastapi.testing import emulator_settings

__all__ = ["aldero_emulator", "aldero_settings"]


@pytest.fixture(scope="session")
def _aldero_emulator_server() -> Iterator[EmulatorServer]:
    with EmulatorServer(EmulatorConfig()) as server:
        yield server


@pytest.fixture
def aldero_emulator(_aldero_emulator_server: EmulatorServer) -> EmulatorServer:
    """Reset the shared emulator server to its seed data and return it."""
    response = httpx.post(f"{_aldero_emulator_server.admin_url}/reset", timeout=10)
    response.raise_for_status()
    return _aldero_emulator_server


@pytest.fixture
def aldero_settings(aldero_emulator: EmulatorServer) -> AlderoSettings:
    """Settings that point at ``aldero_emulator`` and accept tokens from ``make_token``."""
    return emulator_settings(aldero_emulator)
