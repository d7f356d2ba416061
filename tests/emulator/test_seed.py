"""Seed data: contents of the packaged seed, custom seeds and seeding rules."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aldero_fastapi.emulator import EmulatorConfig, EmulatorState
from aldero_fastapi.emulator.seed import load_seed


def test_packaged_seed_users() -> None:
    seed = load_seed()
    users = {user.id: user for user in seed.users}

    assert list(users) == ["alice", "bob", "carol", "dave"]
    assert users["alice"].features == ["pro_features"]
    assert users["alice"].credits == 10
    assert users["alice"].subscriptions[0].product_id == "pro_monthly"
    assert users["bob"].credits == 3
    assert users["carol"].credits == 0
    assert users["carol"].store_purchases[0].product_id == "pro_monthly"
    assert users["dave"].credits == 5
    assert users["dave"].store_purchases[0].product_id == "legacy_lifetime"


def test_packaged_seed_templates() -> None:
    templates = {template.name: template for template in load_seed().templates}

    assert templates["order-confirmation"].channel == "push"
    assert templates["order-confirmation"].variables == ["orderNumber", "total"]
    assert templates["welcome-email"].channel == "email"
    assert templates["welcome-email"].variables == ["name"]
    assert templates["fax-sent"].channel == "push"
    assert templates["fax-sent"].variables == ["destination", "pages"]


def test_product_descriptions_are_sentences() -> None:
    for product in load_seed().products:
        assert product.description.endswith(".")


def test_seed_credits_are_grant_rows(state: EmulatorState) -> None:
    with state.store.transaction(write=False) as tx:
        rows = tx.list_ledger_rows("dave", before_seq=None, limit=10)
        carol_rows = tx.list_ledger_rows("carol", before_seq=None, limit=10)

    assert [(row.type, row.amount) for row in rows] == [("grant", 5)]
    assert carol_rows == []


def test_seeded_balances_equal_ledger_sums(state: EmulatorState) -> None:
    with state.store.transaction(write=False) as tx:
        for user_id in ["alice", "bob", "carol", "dave"]:
            user = tx.get_user(user_id)
            assert user is not None
            assert user.balance == tx.sum_ledger(user_id)


def test_custom_seed_file(tmp_path: Path) -> None:
    path = tmp_path / "seed.json"
    path.write_text(json.dumps({"users": [{"id": "zoe", "credits": 2}]}))

    state = EmulatorState(EmulatorConfig(seed_path=str(path)))
    with state.store.transaction(write=False) as tx:
        zoe = tx.get_user("zoe")
        alice = tx.get_user("alice")
        products = tx.list_products()

    assert zoe is not None
    assert zoe.balance == 2
    assert alice is None
    assert products == []


def test_invalid_seed_names_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"users": [{"id": "zoe", "credits": -1}]}))

    with pytest.raises(ValueError, match=r"bad\.json"):
        load_seed(str(path))


def test_missing_seed_names_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"missing\.json"):
        load_seed(str(tmp_path / "missing.json"))


def test_file_with_data_is_not_reseeded(tmp_path: Path) -> None:
    config = EmulatorConfig(db_path=str(tmp_path / "state.db"))
    first = EmulatorState(config)
    with first.store.transaction() as tx:
        tx.set_features("alice", [])
    first.store.close()

    second = EmulatorState(config)
    with second.store.transaction(write=False) as tx:
        alice = tx.get_user("alice")

    assert alice is not None
    assert alice.features == ()


def test_seeding_can_be_turned_off() -> None:
    state = EmulatorState(EmulatorConfig(load_seed_if_empty=False))

    with state.store.transaction(write=False) as tx:
        assert not tx.has_data()
