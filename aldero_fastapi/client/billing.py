"""Calls of the Aldero billing API: entitlements, credits, store syncs and products."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aldero_fastapi.client import wire
from aldero_fastapi.client.transport import (
    ApiCall,
    ApiResponse,
    ApiTransport,
    encode_json,
    invalid_response,
)
from aldero_fastapi.models import (
    CreditAdjustment,
    CreditAdjustmentResult,
    CreditAdjustmentType,
    CreditLedgerPage,
    CreditTransaction,
    Entitlements,
    Product,
    SyncResult,
)

__all__ = ["BillingAPI"]


class BillingAPI:
    """
    The billing calls of an ``AlderoClient``, which need a ``bil_`` key.

    Every method raises ConfigurationError before sending anything when the client's key
    is not a billing key, and ValueError for an empty ``user_id``.
    """

    def __init__(self, transport: ApiTransport) -> None:
        self._transport = transport

    def __repr__(self) -> str:
        return f"BillingAPI(base_url={self._transport.base_url!r})"

    async def get_entitlements(self, user_id: str) -> Entitlements:
        """Fetch a user's features and credits. An unknown user has no features and 0 credits."""
        call = ApiCall(
            service="billing",
            method="GET",
            path=wire.entitlements_path(user_id),
            idempotent=True,
            user_id=user_id,
        )
        response = await self._transport.send(call)
        return response.parse(Entitlements)

    async def adjust_credits(
        self,
        user_id: str,
        adjustment: CreditAdjustment | None = None,
        *,
        type: CreditAdjustmentType | None = None,
        amount: int | None = None,
        description: str | None = None,
        reference_id: str | None = None,
        reverses_transaction_id: str | None = None,
    ) -> CreditAdjustmentResult:
        """
        Add credits to or take credits from a user's balance, and return the new balance.

        Pass either a ``CreditAdjustment`` or its fields as keyword arguments. With a
        ``reference_id`` the request is idempotent: it is retried on transient failures,
        and a repeat returns the first result with ``replayed=True``. Without one the
        request is sent once and never retried, because a retry could apply it twice.

        Raises:
            pydantic.ValidationError: the amount is 0 or has the wrong sign for its type;
                nothing was sent.
            InsufficientCreditsError: the balance does not cover a deduction.
            IdempotencyMismatchError: the reference id was used before with another body.
        """
        if adjustment is None:
            adjustment = CreditAdjustment.model_validate(
                {
                    "type": type,
                    "amount": amount,
                    "description": description,
                    "reference_id": reference_id,
                    "reverses_transaction_id": reverses_transaction_id,
                }
            )
        elif any(
            field is not None
            for field in (type, amount, description, reference_id, reverses_transaction_id)
        ):
            raise TypeError(
                "adjust_credits() takes either an adjustment or its fields as keyword "
                "arguments, not both"
            )

        call = ApiCall(
            service="billing",
            method="POST",
            path=wire.credits_path(user_id),
            idempotent=adjustment.reference_id is not None,
            body=encode_json(adjustment.to_wire()),
            user_id=user_id,
        )
        response = await self._transport.send(call)

        result = response.parse(CreditAdjustmentResult)
        if response.replayed:
            result = result.model_copy(update={"replayed": True})
        return result

    async def list_credit_transactions(
        self, user_id: str, *, limit: int | None = None, cursor: str | None = None
    ) -> CreditLedgerPage:
        """
        Fetch one page of a user's credit ledger, newest first.

        Pass the page's ``next_cursor`` as ``cursor`` to fetch the next page.
        """
        response = await self._fetch_ledger_page(user_id, limit, cursor)
        return response.parse(CreditLedgerPage)

    async def iter_credit_transactions(
        self, user_id: str, *, page_size: int = 100
    ) -> AsyncIterator[CreditTransaction]:
        """
        Yield every transaction of a user's credit ledger, newest first, page by page.

        Raises AlderoAPIError ``invalid_response`` if the service returns a cursor it
        returned before, which would otherwise loop forever.
        """
        if page_size < 1:
            raise ValueError(f"page_size must be 1 or more, got {page_size}")

        cursor: str | None = None
        seen_cursors: set[str] = set()
        while True:
            response = await self._fetch_ledger_page(user_id, page_size, cursor)
            page = response.parse(CreditLedgerPage)
            for transaction in page.transactions:
                yield transaction

            if page.next_cursor is None:
                return
            if page.next_cursor in seen_cursors:
                raise invalid_response(
                    response.call,
                    response.status_code,
                    response.request_id,
                    f"the cursor {page.next_cursor!r} was returned before",
                )
            seen_cursors.add(page.next_cursor)
            cursor = page.next_cursor

    async def _fetch_ledger_page(
        self, user_id: str, limit: int | None, cursor: str | None
    ) -> ApiResponse:
        if limit is not None and limit < 1:
            raise ValueError(f"limit must be 1 or more, got {limit}")

        call = ApiCall(
            service="billing",
            method="GET",
            path=wire.credits_path(user_id),
            idempotent=True,
            query=wire.ledger_query(limit, cursor),
            user_id=user_id,
        )
        return await self._transport.send(call)

    async def sync_user(self, user_id: str) -> SyncResult:
        """
        Turn a user's store purchases into entitlements, and return what was granted.

        The request has no idempotency key, so it is sent once and never retried.
        """
        call = ApiCall(
            service="billing",
            method="POST",
            path=wire.sync_path(user_id),
            idempotent=False,
            user_id=user_id,
        )
        response = await self._transport.send(call)
        return response.parse(SyncResult)

    async def list_products(self) -> list[Product]:
        """Fetch the product catalogue: credit packs and subscriptions."""
        call = ApiCall(
            service="billing",
            method="GET",
            path=wire.PRODUCTS_PATH,
            idempotent=True,
        )
        response = await self._transport.send(call)
        return list(response.parse(wire.ProductCatalogue).products)
