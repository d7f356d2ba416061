"""Refund reversal rules and the balance invariant of the credit ledger."""

from __future__ import annotations

import sqlite3
from typing import Any

import httpx
import pytest

from aldero_fastapi.emulator import EmulatorState
from aldero_fastapi.emulator.credits import decode_cursor, encode_cursor

CREDITS = "/billing/users/bob/credits"


async def spend(billing: httpx.AsyncClient, amount: int, user: str = "bob") -> str:
    """Record a usage of ``amount`` credits and return its transaction id."""
    response = await billing.post(
        f"/billing/users/{user}/credits", json={"type": "usage", "amount": -amount}
    )
    assert response.status_code == 200
    transaction_id: str = response.json()["transaction"]["id"]
    return transaction_id


async def refund(billing: httpx.AsyncClient, reversed_id: str, amount: int) -> httpx.Response:
    body: dict[str, Any] = {
        "type": "refund",
        "amount": amount,
        "reversesTransactionId": reversed_id,
    }
    return await billing.post(CREDITS, json=body)


async def test_refund_reverses_usage(billing: httpx.AsyncClient) -> None:
    usage_id = await spend(billing, 2)

    response = await refund(billing, usage_id, 2)
    transaction = response.json()["transaction"]

    assert response.status_code == 200
    assert response.json()["balance"] == 3
    assert transaction["type"] == "refund"
    assert transaction["reversesTransactionId"] == usage_id


async def test_partial_refunds_up_to_original(billing: httpx.AsyncClient) -> None:
    usage_id = await spend(billing, 3)

    first = await refund(billing, usage_id, 1)
    second = await refund(billing, usage_id, 2)

    assert first.status_code == 200
    assert second.status_code == 200
    assert second.json()["balance"] == 3


async def test_refund_above_original_is_422(billing: httpx.AsyncClient) -> None:
    usage_id = await spend(billing, 2)

    response = await refund(billing, usage_id, 3)

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "reversal_exceeds_original"
    assert response.json()["error"]["reversible"] == 2


async def test_partial_refunds_above_original_are_422(billing: httpx.AsyncClient) -> None:
    usage_id = await spend(billing, 3)
    await refund(billing, usage_id, 2)

    response = await refund(billing, usage_id, 2)

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "reversal_exceeds_original"
    assert response.json()["error"]["reversible"] == 1


async def test_full_reversal_cannot_repeat(billing: httpx.AsyncClient) -> None:
    usage_id = await spend(billing, 2)
    await refund(billing, usage_id, 2)

    response = await refund(billing, usage_id, 1)

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "reversal_exceeds_original"


async def test_refund_of_unknown_row_is_422(billing: httpx.AsyncClient) -> None:
    response = await refund(billing, "txn_doesnotexist", 1)

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_reversal"


async def test_refund_of_other_users_row_is_422(billing: httpx.AsyncClient) -> None:
    alice_usage = await spend(billing, 1, user="alice")

    response = await refund(billing, alice_usage, 1)

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_reversal"


async def test_refund_of_positive_row_is_422(billing: httpx.AsyncClient) -> None:
    grant = await billing.post(CREDITS, json={"type": "grant", "amount": 5})

    response = await refund(billing, grant.json()["transaction"]["id"], 1)

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_reversal"


async def test_refund_of_negative_adjustment(billing: httpx.AsyncClient) -> None:
    adjustment = await billing.post(CREDITS, json={"type": "adjustment", "amount": -2})

    response = await refund(billing, adjustment.json()["transaction"]["id"], 2)

    assert response.status_code == 200


async def test_rejected_refund_adds_no_row(billing: httpx.AsyncClient) -> None:
    usage_id = await spend(billing, 1)
    await refund(billing, usage_id, 5)

    ledger = (await billing.get(CREDITS)).json()

    assert len(ledger["transactions"]) == 2
    assert ledger["balance"] == 2


async def test_balance_equals_ledger_sum(billing: httpx.AsyncClient, state: EmulatorState) -> None:
    usage_id = await spend(billing, 3)
    await refund(billing, usage_id, 1)
    await billing.post(CREDITS, json={"type": "purchase", "amount": 10})
    await billing.post(CREDITS, json={"type": "usage", "amount": -100})
    await billing.post(CREDITS, json={"type": "adjustment", "amount": -4})

    with state.store.transaction(write=False) as tx:
        user = tx.get_user("bob")
        ledger_sum = tx.sum_ledger("bob")

    assert user is not None
    assert user.balance == 7
    assert ledger_sum == 7


def test_ledger_rows_are_append_only(state: EmulatorState) -> None:
    with (
        pytest.raises(sqlite3.IntegrityError, match="append-only"),
        state.store.transaction() as tx,
    ):
        tx._run("UPDATE ledger SET amount = 100")


@pytest.mark.parametrize("seq", [0, 1, 987654321])
def test_cursor_round_trip(seq: int) -> None:
    assert decode_cursor(encode_cursor(seq)) == seq
