"""Fixtures shared by the plugin and demo tests."""

from __future__ import annotations

pytest_plugins = ["aldero_fastapi.testing"]
