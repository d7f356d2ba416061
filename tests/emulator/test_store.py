"""The SQLite store: transactions, invariants and the schema version."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from aldero_fastapi.emulator.store import EmulatorStore


def grant(store: EmulatorStore, user_id: str, amount: int) -> None:
    with store.transaction() as tx:
        tx.append_ledger_row(
            transaction_id=f"txn_{user_id}_{amount}",
            user_id=user_id,
            type="grant",
            amount=amount,
            description=None,
            reference_id=None,
            reverses_transaction_id=None,
        )


def test_raising_block_rolls_back() -> None:
    store = EmulatorStore()

    with pytest.raises(RuntimeError), store.transaction() as tx:
        tx.ensure_user("bob")
        raise RuntimeError("abort")

    with store.transaction(write=False) as tx:
        assert tx.get_user("bob") is None


def test_ledger_row_moves_balance() -> None:
    store = EmulatorStore()

    grant(store, "bob", 5)

    with store.transaction(write=False) as tx:
        user = tx.get_user("bob")
        assert user is not None
        assert user.balance == 5
        assert tx.sum_ledger("bob") == 5


def test_overdraft_row_is_rejected() -> None:
    store = EmulatorStore()
    grant(store, "bob", 2)

    with pytest.raises(ValueError, match="below 0"), store.transaction() as tx:
        tx.append_ledger_row(
            transaction_id="txn_overdraft",
            user_id="bob",
            type="usage",
            amount=-3,
            description=None,
            reference_id=None,
            reverses_transaction_id=None,
        )

    with store.transaction(write=False) as tx:
        assert tx.sum_ledger("bob") == 2


def test_negative_balance_violates_check() -> None:
    store = EmulatorStore()
    grant(store, "bob", 1)

    with pytest.raises(sqlite3.IntegrityError), store.transaction() as tx:
        tx._run("UPDATE users SET balance = -1 WHERE user_id = 'bob'")


def test_features_are_sorted_and_unique() -> None:
    store = EmulatorStore()

    with store.transaction() as tx:
        tx.set_features("bob", ["b", "a", "b"])
        user = tx.get_user("bob")

    assert user is not None
    assert user.features == ("a", "b")


def test_file_store_uses_wal(tmp_path: Path) -> None:
    store = EmulatorStore(str(tmp_path / "state.db"))

    with store.transaction(write=False) as tx:
        mode = tx._one("PRAGMA journal_mode")

    assert mode is not None
    assert mode[0] == "wal"


def test_file_store_keeps_rows(tmp_path: Path) -> None:
    path = str(tmp_path / "state.db")
    first = EmulatorStore(path)
    grant(first, "bob", 4)
    first.close()

    second = EmulatorStore(path)
    with second.transaction(write=False) as tx:
        user = tx.get_user("bob")

    assert user is not None
    assert user.balance == 4


def test_two_stores_share_a_file(tmp_path: Path) -> None:
    path = str(tmp_path / "state.db")
    writer = EmulatorStore(path)
    reader = EmulatorStore(path)

    grant(writer, "bob", 6)

    with reader.transaction(write=False) as tx:
        assert tx.sum_ledger("bob") == 6


def test_other_schema_version_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA user_version = 99")
    connection.close()

    with pytest.raises(RuntimeError, match="schema version 99"):
        EmulatorStore(str(path))


def test_close_is_idempotent() -> None:
    store = EmulatorStore()

    store.close()
    store.close()

    assert store.closed
