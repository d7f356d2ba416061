"""Refunds of deductions whose request failed, retried until they land."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aldero_fastapi.errors import (
    AlderoError,
    AlderoTransportError,
    ConflictError,
    RateLimitedError,
    ServerError,
)
from aldero_fastapi.models import CreditAdjustmentResult

__all__ = ["PendingRefund", "RefundQueue"]

logger = logging.getLogger("aldero_fastapi.refunds")

# Errors after which the same refund may still land later; any other error means the
# refund itself is wrong and retrying it cannot help.
RETRYABLE_ERRORS = (AlderoTransportError, ServerError, RateLimitedError, ConflictError)

# Returns None when the deduction turned out never to have been applied.
RefundCall = Callable[["PendingRefund"], Awaitable[CreditAdjustmentResult | None]]


@dataclass(frozen=True)
class PendingRefund:
    """
    A refund owed for one deduction: ``amount`` credits back to ``user_id``.

    ``reference_id`` is the refund's own idempotency reference, derived from the
    deduction's, so that every attempt of the same refund lands at most once.
    ``transaction_id`` is None when it is not known whether the deduction was applied.
    ``newest_row_before`` is set when an earlier attempt of the same request may have
    used the deduction's reference id: it is the id of the user's newest ledger row
    before the deduction was sent, or "" for an empty ledger. A charge under that
    reference that is not newer than this row was the earlier attempt's, and is not
    refunded.
    """

    user_id: str
    reference_id: str
    deduction_reference_id: str
    transaction_id: str | None
    amount: int
    deduction_description: str
    newest_row_before: str | None = None


class RefundQueue:
    """
    Issue refunds, retrying in the background the ones that fail.

    A refund that still fails after ``max_attempts`` attempts is logged at ERROR with
    the user id, the reference ids and the amount, and counted in ``failed``, so that
    it can be reconciled by hand.
    """

    def __init__(
        self,
        refund_call: RefundCall,
        *,
        max_attempts: int,
        backoff_seconds: float,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._refund_call = refund_call
        self._max_attempts = max_attempts
        self._backoff_seconds = backoff_seconds
        self._sleep = sleep
        self._random = random.Random()
        self._tasks: set[asyncio.Task[None]] = set()
        # Deduction reference ids whose refund is still being retried.
        self._pending_deductions: set[str] = set()
        self.succeeded = 0
        self.failed = 0

    async def refund(self, refund: PendingRefund) -> bool:
        """
        Attempt the refund once now; on a retryable failure, keep retrying it in the background.

        Returns whether the refund landed in this first attempt.
        """
        try:
            await self._attempt(refund)
        except RETRYABLE_ERRORS as error:
            logger.warning(
                "Refund %s of %d credits for user %s failed (%s); retrying in the background",
                refund.reference_id,
                refund.amount,
                refund.user_id,
                type(error).__name__,
            )
            self._schedule_retries(refund)
            return False
        except AlderoError as error:
            self._give_up(refund, error, attempts=1)
            return False
        return True

    def is_pending(self, deduction_reference_id: str) -> bool:
        """Return whether the refund of that deduction is still being retried in the background."""
        return deduction_reference_id in self._pending_deductions

    @property
    def pending(self) -> int:
        """The number of refunds still being retried in the background."""
        return len(self._tasks)

    async def drain(self, timeout: float | None = None) -> None:
        """Wait for the background retries, up to ``timeout`` seconds, then cancel the rest."""
        if not self._tasks:
            return

        _done, still_running = await asyncio.wait(set(self._tasks), timeout=timeout)
        for task in still_running:
            task.cancel()

    async def _attempt(self, refund: PendingRefund) -> None:
        result = await self._refund_call(refund)
        if result is None:
            logger.info(
                "Deduction %s of user %s needs no refund: it was never applied, or an "
                "earlier attempt of its request paid it",
                refund.deduction_reference_id,
                refund.user_id,
            )
            return

        self.succeeded += 1
        logger.info(
            "Refunded %d credits to user %s for deduction %s (refund %s, balance %d)",
            refund.amount,
            refund.user_id,
            refund.deduction_reference_id,
            refund.reference_id,
            result.balance,
        )

    def _schedule_retries(self, refund: PendingRefund) -> None:
        self._pending_deductions.add(refund.deduction_reference_id)
        task = asyncio.get_running_loop().create_task(self._retry(refund))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(
            lambda _task: self._pending_deductions.discard(refund.deduction_reference_id)
        )

    async def _retry(self, refund: PendingRefund) -> None:
        try:
            await self._retry_attempts(refund)
        except asyncio.CancelledError:
            # Pending refunds live in memory only, so the ids must reach the log.
            logger.error(
                "Refund cancelled before it landed, for example at shutdown: user %s, %d "
                "credits, deduction %s (transaction %s), refund reference %s. Reconcile it "
                "by hand.",
                refund.user_id,
                refund.amount,
                refund.deduction_reference_id,
                refund.transaction_id,
                refund.reference_id,
            )
            raise

    async def _retry_attempts(self, refund: PendingRefund) -> None:
        # The first attempt already happened inside the request.
        for attempt in range(2, self._max_attempts + 1):
            delay = self._random.uniform(0, self._backoff_seconds * 2 ** (attempt - 1))
            await self._sleep(delay)

            try:
                await self._attempt(refund)
                return
            except RETRYABLE_ERRORS as error:
                if attempt == self._max_attempts:
                    self._give_up(refund, error, attempts=attempt)
                    return
                logger.warning(
                    "Refund %s for user %s failed again (attempt %d/%d, %s)",
                    refund.reference_id,
                    refund.user_id,
                    attempt,
                    self._max_attempts,
                    type(error).__name__,
                )
            except AlderoError as error:
                self._give_up(refund, error, attempts=attempt)
                return

    def _give_up(self, refund: PendingRefund, error: AlderoError, *, attempts: int) -> None:
        self.failed += 1
        logger.error(
            "Refund failed for good after %d attempts: user %s, %d credits, deduction %s "
            "(transaction %s), refund reference %s, last error %s %s. Reconcile it by hand.",
            attempts,
            refund.user_id,
            refund.amount,
            refund.deduction_reference_id,
            refund.transaction_id,
            refund.reference_id,
            error.status_code,
            error.code,
        )
