"""Fixtures shared by the plugin and demo tests."""

from __future__ import annotations

pytest_plugins = ["aldero_fastapi.testing"]

from tests.redis_support import redis_server  # noqa: E402, F401  (a fixture for every test)
