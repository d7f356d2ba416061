"""Random identifiers with a type prefix, such as ``txn_3f9a...``."""

from __future__ import annotations

import secrets


def new_id(prefix: str) -> str:
    """Return ``prefix`` followed by 24 random hex digits."""
    return f"{prefix}{secrets.token_hex(12)}"
