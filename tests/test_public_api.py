"""The package's public names."""

from __future__ import annotations

import ast
from pathlib import Path

import aldero_fastapi


def test_all_is_sorted() -> None:
    assert aldero_fastapi.__all__ == sorted(aldero_fastapi.__all__)


def test_all_matches_imports() -> None:
    source = Path(aldero_fastapi.__file__).read_text()
    imported = {
        alias.asname or alias.name
        for node in ast.parse(source).body
        if isinstance(node, ast.ImportFrom)
        and node.module
        and node.module.startswith("aldero_fastapi")
        for alias in node.names
    }

    assert set(aldero_fastapi.__all__) - {"__version__"} == imported


def test_every_name_resolves() -> None:
    missing = [name for name in aldero_fastapi.__all__ if not hasattr(aldero_fastapi, name)]

    assert missing == []


def test_typed_marker_shipped() -> None:
    assert (Path(aldero_fastapi.__file__).parent / "py.typed").exists()
