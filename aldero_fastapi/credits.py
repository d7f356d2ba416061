"""Credit deductions scoped to one request, refunded when the request fails."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from aldero_fastapi.errors import ConflictError
from aldero_fastapi.models import CreditAdjustmentResult, CreditLedgerPage
from aldero_fastapi.refunds import PendingRefund, RefundQueue

if TYPE_CHECKING:
    from aldero_fastapi.models import CreditAdjustmentType

__all__ = ["CreditSession", "Deduction"]

logger = logging.getLogger("aldero_fastapi.credits")

MAX_REFERENCE_LENGTH = 200

# A replayed deduction that was refunded earlier is retried under a new reference id,
# so that a client retrying a failed request pays once instead of getting it free.
# The bound stops a loop if the ledger never shows the refund as expected.
MAX_REFERENCE_GENERATIONS = 5


class CreditLedger(Protocol):
    """The two billing calls a credit session makes."""

    async def adjust_credits(
        self,
        user_id: str,
        *,
        type: CreditAdjustmentType,
        amount: int,
        description: str | None = None,
        reference_id: str | None = None,
        reverses_transaction_id: str | None = None,
    ) -> CreditAdjustmentResult: ...

    async def list_credit_transactions(
        self, user_id: str, *, limit: int | None = None, cursor: str | None = None
    ) -> CreditLedgerPage: ...


@dataclass(frozen=True)
class Deduction:
    """
    One deduction made in a request: the ledger row it wrote and the credits it took.
    """

    reference_id: str
    transaction_id: str
    amount: int
    description: str
    balance: int


class CreditSession:
    """
    Deduct a user's credits during one request; refund them all if the request fails.

    Reference ids make each deduction idempotent. With an ``Idempotency-Key`` header on
    the incoming request, the n-th deduction of the request gets a reference id derived
    from the key, so a client that retries the same request is charged once and gets the
    same balance back. Without the header each deduction gets a fresh reference id.
    """

    def __init__(
        self,
        ledger: CreditLedger,
        refunds: RefundQueue,
        *,
        user_id: str,
        idempotency_scope: str | None = None,
        on_balance: Callable[[str, int], None] | None = None,
    ) -> None:
        self._ledger = ledger
        self._refunds = refunds
        self._on_balance = on_balance
        self._idempotency_scope = idempotency_scope
        self.user_id = user_id
        self.deductions: list[Deduction] = []
        self._refunded = False

    @property
    def total_deducted(self) -> int:
        """The credits taken by this request so far."""
        return sum(deduction.amount for deduction in self.deductions)

    async def deduct(
        self, amount: int, description: str, reference_id: str | None = None
    ) -> CreditAdjustmentResult:
        """
        Take ``amount`` credits from the user as a ``usage`` adjustment.

        Raises:
            ValueError: ``amount`` is not a positive integer.
            InsufficientCreditsError: the balance is smaller than ``amount``; the
                installed exception handler turns it into a 402 response.
            AlderoError: the billing service failed after its retries.
        """
        if isinstance(amount, bool) or not isinstance(amount, int) or amount < 1:
            raise ValueError(f"amount must be a positive integer number of credits, got {amount!r}")
        if self._refunded:
            raise RuntimeError(
                f"the credit session of user {self.user_id} was already refunded; "
                "deduct inside the request handler, not after it failed"
            )

        position = len(self.deductions) + 1
        result = await self._deduct_once(amount, description, reference_id, position)

        self.deductions.append(
            Deduction(
                reference_id=result.transaction.reference_id or "",
                transaction_id=result.transaction.id,
                amount=amount,
                description=description,
                balance=result.balance,
            )
        )
        if self._on_balance is not None:
            self._on_balance(self.user_id, result.balance)
        return result

    async def refund_all(self, reason: str) -> None:
        """
        Refund every deduction of this request, once, whatever the caller's task state.

        The refunds run in a task of their own and are shielded, so a cancelled request
        still gets its credits back.
        """
        if self._refunded or not self.deductions:
            self._refunded = True
            return
        self._refunded = True

        logger.info(
            "Refunding %d deductions (%d credits) of user %s because %s",
            len(self.deductions),
            self.total_deducted,
            self.user_id,
            reason,
        )
        refunds = [self._pending_refund(deduction) for deduction in self.deductions]
        task = asyncio.get_running_loop().create_task(self._issue(refunds))
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            # The refund task goes on; the queue retries what it could not finish.
            logger.warning(
                "Request of user %s was cancelled while its refunds were being issued; "
                "they continue in the background",
                self.user_id,
            )
            raise

    async def _issue(self, refunds: list[PendingRefund]) -> None:
        for refund in refunds:
            await self._refunds.refund(refund)

    async def _deduct_once(
        self, amount: int, description: str, reference_id: str | None, position: int
    ) -> CreditAdjustmentResult:
        if reference_id is not None:
            return await self._adjust(amount, description, reference_id)

        if self._idempotency_scope is None:
            return await self._adjust(amount, description, f"ded_{uuid.uuid4().hex}")

        for generation in range(1, MAX_REFERENCE_GENERATIONS + 1):
            derived = self._derived_reference(position, generation)
            result = await self._adjust(amount, description, derived)
            if not result.replayed:
                return result
            if not await self._was_reversed(result.transaction.id):
                return result
            logger.info(
                "Deduction %s of user %s was refunded after an earlier failure; "
                "charging the retried request under a new reference id",
                derived,
                self.user_id,
            )
        raise ConflictError(
            f"Deduction {position} of this request was refunded "
            f"{MAX_REFERENCE_GENERATIONS} times; retry with a new Idempotency-Key",
            status_code=409,
            code="too_many_retries",
        )

    async def _adjust(
        self, amount: int, description: str, reference_id: str
    ) -> CreditAdjustmentResult:
        return await self._ledger.adjust_credits(
            self.user_id,
            type="usage",
            amount=-amount,
            description=description,
            reference_id=reference_id,
        )

    def _derived_reference(self, position: int, generation: int) -> str:
        assert self._idempotency_scope is not None
        digest = hashlib.sha256(self._idempotency_scope.encode()).hexdigest()[:32]
        suffix = f"-{position}" if generation == 1 else f"-{position}-g{generation}"
        return f"idem_{digest}{suffix}"

    async def _was_reversed(self, transaction_id: str) -> bool:
        # The ledger is newest first and a refund is always newer than the row it
        # reverses, so the scan can stop at the deduction itself.
        cursor: str | None = None
        while True:
            page = await self._ledger.list_credit_transactions(
                self.user_id, limit=100, cursor=cursor
            )
            for row in page.transactions:
                if row.reverses_transaction_id == transaction_id:
                    return True
                if row.id == transaction_id:
                    return False
            if page.next_cursor is None:
                return False
            cursor = page.next_cursor

    def _pending_refund(self, deduction: Deduction) -> PendingRefund:
        reference = f"refund_{deduction.reference_id}"
        if len(reference) > MAX_REFERENCE_LENGTH:
            reference = "refund_" + hashlib.sha256(deduction.reference_id.encode()).hexdigest()
        return PendingRefund(
            user_id=self.user_id,
            reference_id=reference,
            deduction_reference_id=deduction.reference_id,
            transaction_id=deduction.transaction_id,
            amount=deduction.amount,
            description=f"Refund: {deduction.description}",
        )


def refund_call(
    ledger: CreditLedger,
) -> Callable[[PendingRefund], Awaitable[CreditAdjustmentResult]]:
    """Return the call that issues one refund as an idempotent ``refund`` adjustment."""

    async def issue_refund(refund: PendingRefund) -> CreditAdjustmentResult:
        return await ledger.adjust_credits(
            refund.user_id,
            type="refund",
            amount=refund.amount,
            description=refund.description,
            reference_id=refund.reference_id,
            reverses_transaction_id=refund.transaction_id,
        )

    return issue_refund
