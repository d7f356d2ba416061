"""Credit adjustment rules and the paged ledger read."""

from __future__ import annotations

import base64
import binascii

from .errors import ApiError, invalid_field
from .idempotency import fingerprint
from .ids import new_id
from .models import (
    CreditAdjustmentRequest,
    CreditAdjustmentResponse,
    LedgerPage,
    TransactionView,
)
from .records import LedgerRecord
from .store import StoreTransaction

_POSITIVE_TYPES = ("purchase", "grant", "refund")
_CURSOR_PREFIX = "ledger:"


def validate_adjustment(request: CreditAdjustmentRequest) -> None:
    """Raise a 422 ApiError when the sign of the amount does not fit the type."""
    amount = request.amount

    if request.type == "usage" and amount >= 0:
        raise invalid_field("amount", amount, "A usage amount must be negative, such as -5.")

    if request.type in _POSITIVE_TYPES and amount <= 0:
        raise invalid_field(
            "amount", amount, f"A {request.type} amount must be positive, such as 5."
        )

    if request.type == "adjustment" and amount == 0:
        raise invalid_field("amount", amount, "An adjustment amount must not be 0.")

    if request.reverses_transaction_id is not None and request.type != "refund":
        raise invalid_field(
            "reversesTransactionId",
            request.reverses_transaction_id,
            f"Only a refund can reverse a transaction, but the type is {request.type!r}.",
        )


def adjustment_fingerprint(request: CreditAdjustmentRequest) -> str:
    return fingerprint(
        [request.type, request.amount, request.description, request.reverses_transaction_id]
    )


def apply_adjustment(
    tx: StoreTransaction, user_id: str, request: CreditAdjustmentRequest
) -> CreditAdjustmentResponse:
    """Append the ledger row for a validated adjustment and return the response body.

    Raises ApiError 402 ``insufficient_credits`` when a negative amount exceeds the
    balance, and 422 when the reversal rules reject ``reversesTransactionId``.
    """
    user = tx.get_user(user_id)
    balance = 0 if user is None else user.balance

    if request.reverses_transaction_id is not None:
        _check_reversal(tx, user_id, request.reverses_transaction_id, request.amount)

    if request.amount < 0 and -request.amount > balance:
        raise ApiError(
            402,
            "insufficient_credits",
            f"User {user_id!r} has {balance} credits, but the request needs "
            f"{-request.amount}. Add credits or lower the amount.",
            balance=balance,
            required=-request.amount,
        )

    row = tx.append_ledger_row(
        transaction_id=new_id("txn_"),
        user_id=user_id,
        type=request.type,
        amount=request.amount,
        description=request.description,
        reference_id=request.reference_id,
        reverses_transaction_id=request.reverses_transaction_id,
    )
    return CreditAdjustmentResponse(balance=row.balance_after, transaction=transaction_view(row))


def _check_reversal(
    tx: StoreTransaction, user_id: str, reversed_id: str, refund_amount: int
) -> None:
    original = tx.get_ledger_row(reversed_id)

    if original is None or original.user_id != user_id:
        raise ApiError(
            422,
            "invalid_reversal",
            f"Transaction {reversed_id!r} is not a transaction of user {user_id!r}. "
            "Reverse a transaction id from this user's ledger.",
        )

    if original.amount >= 0:
        raise ApiError(
            422,
            "invalid_reversal",
            f"Transaction {reversed_id!r} added {original.amount} credits, so a refund "
            "cannot reverse it. Only transactions with a negative amount can be reversed.",
        )

    reversible = -original.amount - tx.sum_reversals(reversed_id)
    if refund_amount > reversible:
        raise ApiError(
            422,
            "reversal_exceeds_original",
            f"Transaction {reversed_id!r} has {reversible} credits left to reverse, "
            f"but the refund is {refund_amount}. Refund at most {reversible}.",
            reversible=reversible,
        )


def transaction_view(row: LedgerRecord) -> TransactionView:
    return TransactionView(
        id=row.transaction_id,
        type=row.type,
        amount=row.amount,
        description=row.description,
        reference_id=row.reference_id,
        reverses_transaction_id=row.reverses_transaction_id,
        balance_after=row.balance_after,
        created_at=row.created_at,
    )


def read_ledger_page(
    tx: StoreTransaction, user_id: str, *, limit: int, cursor: str | None
) -> LedgerPage:
    """Return one page of the user's ledger, newest first.

    The cursor encodes the position of the last row of the previous page, so rows added
    meanwhile do not shift later pages.
    """
    before_seq = None if cursor is None else decode_cursor(cursor)
    rows = tx.list_ledger_rows(user_id, before_seq=before_seq, limit=limit + 1)

    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = encode_cursor(rows[-1].seq)

    user = tx.get_user(user_id)
    return LedgerPage(
        balance=0 if user is None else user.balance,
        transactions=[transaction_view(row) for row in rows],
        next_cursor=next_cursor,
    )


def encode_cursor(seq: int) -> str:
    raw = f"{_CURSOR_PREFIX}{seq}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """Return the ledger position in ``cursor``, or raise a 422 ApiError naming it."""
    padded = cursor + "=" * (-len(cursor) % 4)
    try:
        text = base64.urlsafe_b64decode(padded.encode("ascii")).decode("ascii")
    except (UnicodeError, binascii.Error, ValueError):
        text = ""

    number = text.removeprefix(_CURSOR_PREFIX)
    if not text.startswith(_CURSOR_PREFIX) or not number.isdigit() or len(number) > 18:
        raise invalid_field(
            "cursor",
            cursor,
            "It is not a cursor returned by this API. Use a nextCursor value, or omit it.",
        )
    return int(number)
