"""Credit deductions scoped to one request, refunded when the request fails."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from aldero_fastapi.errors import (
    ConfigurationError,
    ConflictError,
    InsufficientCreditsError,
    InvalidRequestError,
)
from aldero_fastapi.models import CreditAdjustmentResult, CreditLedgerPage, CreditTransaction
from aldero_fastapi.refunds import PendingRefund, RefundQueue

if TYPE_CHECKING:
    from aldero_fastapi.models import CreditAdjustmentType

__all__ = [
    "CreditSession",
    "Deduction",
    "TrackedLedger",
    "idempotency_digest",
    "is_newer_than",
    "ledger_rows",
    "newest_ledger_row",
    "refund_call",
]

logger = logging.getLogger("aldero_fastapi.credits")

MAX_REFERENCE_LENGTH = 200

# A replayed deduction that was refunded earlier is retried under a new reference id,
# so that a client retrying a failed request pays once instead of getting it free.
# The bound stops a loop if the ledger never shows the refund as expected.
MAX_REFERENCE_GENERATIONS = 5

# Codes of the ConflictError a keyed deduction raises. The installed handler responds 409.
TOO_MANY_RETRIES_CODE = "too_many_retries"
REFUND_PENDING_CODE = "refund_pending"
REFUND_PENDING_RETRY_AFTER_SECONDS = 5

# Errors after which the deduction was certainly not applied. After any other error,
# or a cancellation, it may have been: the service can commit and then fail, and the
# client's retries can end on a definite error after an earlier attempt was dropped.
NOT_APPLIED_ERRORS = (InsufficientCreditsError, InvalidRequestError, ConfigurationError)


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


class BalanceCache(Protocol):
    """The cache that learns each adjustment's balance (``EntitlementsCache``)."""

    def begin_adjustment(self, user_id: str) -> None: ...

    def end_adjustment(self, user_id: str, balance: int | None) -> None: ...


class TrackedLedger:
    """
    A credit ledger that reports every adjustment to the entitlements cache.

    The cache then serves the new balance without a fetch, unless the adjustment
    failed, replayed an earlier one or overlapped another one of the same user.
    """

    def __init__(self, ledger: CreditLedger, cache: BalanceCache) -> None:
        self._ledger = ledger
        self._cache = cache

    async def adjust_credits(
        self,
        user_id: str,
        *,
        type: CreditAdjustmentType,
        amount: int,
        description: str | None = None,
        reference_id: str | None = None,
        reverses_transaction_id: str | None = None,
    ) -> CreditAdjustmentResult:
        """Adjust the user's credits, then update or drop their cached balance."""
        self._cache.begin_adjustment(user_id)
        balance: int | None = None
        try:
            result = await self._ledger.adjust_credits(
                user_id,
                type=type,
                amount=amount,
                description=description,
                reference_id=reference_id,
                reverses_transaction_id=reverses_transaction_id,
            )
            if not result.replayed:
                balance = result.balance
            return result
        finally:
            self._cache.end_adjustment(user_id, balance)

    async def list_credit_transactions(
        self, user_id: str, *, limit: int | None = None, cursor: str | None = None
    ) -> CreditLedgerPage:
        """Return one page of the user's ledger, newest first."""
        return await self._ledger.list_credit_transactions(user_id, limit=limit, cursor=cursor)


@dataclass(frozen=True)
class Deduction:
    """
    One deduction made in a request: the ledger row it wrote and the credits it took.

    ``transaction_id`` is None when the service failed without saying whether it
    applied the deduction; a refund then first finds out. ``paid_earlier`` marks the
    replayed charge of an earlier attempt of the same request, which this request's
    failure does not refund. ``newest_row_before`` is as in ``PendingRefund``.
    """

    reference_id: str
    transaction_id: str | None
    amount: int
    description: str
    balance: int | None
    paid_earlier: bool = False
    newest_row_before: str | None = None


def idempotency_digest(scope: str) -> str:
    """Return a short, stable digest of a request's idempotency scope for reference ids."""
    return hashlib.sha256(scope.encode()).hexdigest()[:32]


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
    ) -> None:
        self._ledger = ledger
        self._refunds = refunds
        self._idempotency_scope = idempotency_scope
        self.user_id = user_id
        self.deductions: list[Deduction] = []
        self._positions = 0
        self._refunded = False

    @property
    def total_deducted(self) -> int:
        """The credits taken by this request so far, counting only confirmed deductions."""
        return sum(d.amount for d in self.deductions if d.transaction_id is not None)

    async def deduct(
        self, amount: int, description: str, reference_id: str | None = None
    ) -> CreditAdjustmentResult:
        """
        Take ``amount`` credits from the user as a ``usage`` adjustment.

        Raises:
            ValueError: ``amount`` is not a positive integer.
            InsufficientCreditsError: the balance is smaller than ``amount``; the
                installed exception handler turns it into a 402 response.
            AlderoError: the billing service failed after its retries. The deduction
                may have been applied all the same, so it is refunded with the others
                if the error ends the request.
        """
        if isinstance(amount, bool) or not isinstance(amount, int) or amount < 1:
            raise ValueError(f"amount must be a positive integer number of credits, got {amount!r}")
        if self._refunded:
            raise RuntimeError(
                f"the credit session of user {self.user_id} was already refunded; "
                "deduct inside the request handler, not after it failed"
            )

        # Taken before the first await, so concurrent deductions get distinct positions.
        self._positions += 1
        position = self._positions
        result, paid_earlier = await self._deduct_once(amount, description, reference_id, position)

        await self._record(
            Deduction(
                reference_id=result.transaction.reference_id or "",
                transaction_id=result.transaction.id,
                amount=amount,
                description=description,
                balance=result.balance,
                paid_earlier=paid_earlier,
            )
        )
        return result

    async def refund_all(self, reason: str) -> None:
        """
        Refund every deduction of this request, once, whatever the caller's task state.

        The refunds run in a task of their own and are shielded, so a cancelled request
        still gets its credits back.
        """
        # An earlier attempt of the request paid the replayed charges and may have done
        # its work, so this attempt's failure does not give them back.
        owed = [deduction for deduction in self.deductions if not deduction.paid_earlier]
        if self._refunded or not owed:
            self._refunded = True
            return
        self._refunded = True

        logger.info(
            "Refunding %d deductions of user %s because %s",
            len(owed),
            self.user_id,
            reason,
        )
        refunds = [self._pending_refund(deduction) for deduction in owed]
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

    async def _record(self, deduction: Deduction) -> None:
        self.deductions.append(deduction)
        if not self._refunded or deduction.paid_earlier:
            return

        # The request already failed and refunded while this deduction was in flight,
        # for example beside a task of asyncio.gather that raised.
        logger.warning(
            "Deduction %s of user %s finished after its request failed; refunding it",
            deduction.reference_id,
            self.user_id,
        )
        await self._refunds.refund(self._pending_refund(deduction))

    async def _deduct_once(
        self, amount: int, description: str, reference_id: str | None, position: int
    ) -> tuple[CreditAdjustmentResult, bool]:
        """Deduct, and return the result with whether an earlier attempt paid it."""
        if reference_id is not None:
            return await self._deduct_reusable(amount, description, reference_id)

        if self._idempotency_scope is None:
            fresh = f"ded_{uuid.uuid4().hex}"
            return await self._adjust(amount, description, fresh, newest_row_before=None), False

        for generation in range(1, MAX_REFERENCE_GENERATIONS + 1):
            derived = self._derived_reference(position, generation)

            # A refund still being retried in the background takes back whatever is
            # charged under its reference id, a charge this request would make there
            # included. Until it ends, whether that reference id ends up charged and
            # refunded, or never charged, is unknown, and the next reference id would
            # be a second charge in the second case. So the request waits.
            if self._refunds.is_pending(derived):
                logger.info(
                    "Deduction %s of user %s is being refunded in the background; "
                    "responding 409 until the refund ends",
                    derived,
                    self.user_id,
                )
                raise ConflictError(
                    "A refund of an earlier attempt of this request is still running; "
                    "retry later with the same Idempotency-Key",
                    status_code=409,
                    code=REFUND_PENDING_CODE,
                    retry_after=REFUND_PENDING_RETRY_AFTER_SECONDS,
                )

            result, paid_earlier = await self._deduct_reusable(amount, description, derived)
            if not paid_earlier or not await self._was_reversed(result.transaction.id):
                return result, paid_earlier
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
            code=TOO_MANY_RETRIES_CODE,
        )

    async def _deduct_reusable(
        self, amount: int, description: str, reference_id: str
    ) -> tuple[CreditAdjustmentResult, bool]:
        # An earlier attempt of the same request may have paid under this reference id,
        # and a retry inside the client can return this attempt's own charge as a
        # replay too. The newest ledger row before sending distinguishes the two.
        newest_row = await newest_ledger_row(self._ledger, self.user_id)
        result = await self._adjust(amount, description, reference_id, newest_row_before=newest_row)
        if not result.replayed:
            return result, False

        try:
            made_now = await is_newer_than(
                self._ledger, self.user_id, result.transaction.id, newest_row
            )
        except BaseException:
            # The charge may be this attempt's, so a failing request must settle it the
            # way it settles a deduction of unknown outcome.
            await asyncio.shield(
                self._record(
                    Deduction(
                        reference_id=reference_id,
                        transaction_id=None,
                        amount=amount,
                        description=description,
                        balance=None,
                        newest_row_before=newest_row,
                    )
                )
            )
            raise
        return result, not made_now

    async def _adjust(
        self, amount: int, description: str, reference_id: str, *, newest_row_before: str | None
    ) -> CreditAdjustmentResult:
        try:
            return await self._ledger.adjust_credits(
                self.user_id,
                type="usage",
                amount=-amount,
                description=description,
                reference_id=reference_id,
            )
        except NOT_APPLIED_ERRORS:
            raise
        except BaseException as error:
            # Remembered so that a failing request refunds it if it did land.
            logger.warning(
                "Deduction %s of %d credits for user %s failed with %s; it may have been "
                "applied, so it is refunded if the request fails",
                reference_id,
                amount,
                self.user_id,
                type(error).__name__,
            )
            uncertain = Deduction(
                reference_id=reference_id,
                transaction_id=None,
                amount=amount,
                description=description,
                balance=None,
                newest_row_before=newest_row_before,
            )
            # Shielded, because a cancelled deduction must still be recorded.
            await asyncio.shield(self._record(uncertain))
            raise

    def _derived_reference(self, position: int, generation: int) -> str:
        assert self._idempotency_scope is not None
        digest = idempotency_digest(self._idempotency_scope)
        suffix = f"-{position}" if generation == 1 else f"-{position}-g{generation}"
        return f"idem_{digest}{suffix}"

    async def _was_reversed(self, transaction_id: str) -> bool:
        # The ledger is newest first and a refund is always newer than the row it
        # reverses, so the scan can stop at the deduction itself.
        async for row in ledger_rows(self._ledger, self.user_id):
            if row.reverses_transaction_id == transaction_id:
                return True
            if row.id == transaction_id:
                return False
        return False

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
            deduction_description=deduction.description,
            newest_row_before=deduction.newest_row_before,
        )


async def newest_ledger_row(ledger: CreditLedger, user_id: str) -> str:
    """Return the id of the user's newest ledger row, or "" when the ledger is empty."""
    page = await ledger.list_credit_transactions(user_id, limit=1)
    return page.transactions[0].id if page.transactions else ""


async def ledger_rows(ledger: CreditLedger, user_id: str) -> AsyncIterator[CreditTransaction]:
    """Yield the user's ledger rows newest first, fetching pages of 100 as they are needed."""
    cursor: str | None = None
    while True:
        page = await ledger.list_credit_transactions(user_id, limit=100, cursor=cursor)
        for row in page.transactions:
            yield row
        if page.next_cursor is None:
            return
        cursor = page.next_cursor


async def is_newer_than(
    ledger: CreditLedger, user_id: str, transaction_id: str, row_id: str
) -> bool:
    """Return whether ledger row ``transaction_id`` is newer than row ``row_id`` ("" for none)."""
    if not row_id:
        return True

    # The ledger is newest first, so whichever of the two rows comes first is newer.
    async for row in ledger_rows(ledger, user_id):
        if row.id == row_id:
            return False
        if row.id == transaction_id:
            return True

    logger.warning(
        "Neither ledger row %s nor %s of user %s was found; treating the charge as an "
        "earlier attempt's",
        transaction_id,
        row_id,
        user_id,
    )
    return False


def refund_call(
    ledger: CreditLedger,
) -> Callable[[PendingRefund], Awaitable[CreditAdjustmentResult | None]]:
    """
    Return the call that issues one refund as an idempotent ``refund`` adjustment.

    A deduction whose outcome is unknown is first sent again with its own reference id
    and body: the service either replays the deduction it applied, or applies it now,
    or responds 402 because it never applied it and cannot. The first two are refunded
    like any deduction; the last needs no refund, and the call returns None.
    """

    async def issue_refund(refund: PendingRefund) -> CreditAdjustmentResult | None:
        transaction_id = refund.transaction_id
        if transaction_id is None:
            try:
                settled = await ledger.adjust_credits(
                    refund.user_id,
                    type="usage",
                    amount=-refund.amount,
                    description=refund.deduction_description,
                    reference_id=refund.deduction_reference_id,
                )
            except InsufficientCreditsError:
                return None
            transaction_id = settled.transaction.id

            # A replay older than the request's first look at the ledger is the charge
            # of an earlier attempt, which may have done its work.
            if settled.replayed and refund.newest_row_before is not None:
                made_by_request = await is_newer_than(
                    ledger, refund.user_id, transaction_id, refund.newest_row_before
                )
                if not made_by_request:
                    logger.info(
                        "Deduction %s of user %s was paid by an earlier attempt of its "
                        "request; not refunding it",
                        refund.deduction_reference_id,
                        refund.user_id,
                    )
                    return None

        return await ledger.adjust_credits(
            refund.user_id,
            type="refund",
            amount=refund.amount,
            description=f"Refund: {refund.deduction_description}",
            reference_id=refund.reference_id,
            reverses_transaction_id=transaction_id,
        )

    return issue_refund
