"""Routes of the billing API below ``/v1/tenants/{tenantSlug}/billing``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from .credits import adjustment_fingerprint, apply_adjustment, read_ledger_page, validate_adjustment
from .entitlements import read_entitlements
from .faults import fault_delay
from .idempotency import IdempotencyKey, run_idempotent
from .models import (
    CreditAdjustmentRequest,
    Price,
    ProductList,
    ProductView,
    encode_body,
    json_response,
)
from .params import UserId
from .state import EmulatorState
from .store import StoreTransaction
from .sync import sync_user


def build_billing_router(state: EmulatorState) -> APIRouter:
    router = APIRouter(prefix="/billing")
    store = state.store

    @router.get("/users/{userId}/entitlements")
    async def get_entitlements(user_id: UserId, request: Request) -> Response:
        await fault_delay(request).wait()

        with store.transaction(write=False) as tx:
            body = read_entitlements(tx, user_id)
        return json_response(body)

    @router.post("/users/{userId}/credits")
    async def adjust_credits(
        user_id: UserId, adjustment: CreditAdjustmentRequest, request: Request
    ) -> Response:
        validate_adjustment(adjustment)

        key = None
        if adjustment.reference_id is not None:
            key = IdempotencyKey(
                scope=f"credits:{user_id}",
                key=adjustment.reference_id,
                fingerprint=adjustment_fingerprint(adjustment),
                label="referenceId",
            )

        def apply(tx: StoreTransaction) -> tuple[int, bytes]:
            return 200, encode_body(apply_adjustment(tx, user_id, adjustment))

        return await run_idempotent(store, key, apply, before_apply=fault_delay(request).wait)

    @router.get("/users/{userId}/credits")
    async def list_ledger(
        user_id: UserId,
        request: Request,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
        cursor: Annotated[str | None, Query(max_length=200)] = None,
    ) -> Response:
        await fault_delay(request).wait()

        with store.transaction(write=False) as tx:
            page = read_ledger_page(tx, user_id, limit=limit, cursor=cursor)
        return json_response(page)

    @router.post("/users/{userId}/sync")
    async def sync(user_id: UserId, request: Request) -> Response:
        await fault_delay(request).wait()

        with store.transaction() as tx:
            outcome = sync_user(tx, user_id)

        state.webhooks.send_user_events(
            user_id,
            entitlements=outcome.changes.entitlements,
            credits=outcome.changes.credits,
        )
        return json_response(outcome.response)

    @router.get("/products")
    async def list_products(request: Request) -> Response:
        await fault_delay(request).wait()

        with store.transaction(write=False) as tx:
            products = tx.list_products()

        body = ProductList(
            products=[
                ProductView(
                    id=product.product_id,
                    name=product.name,
                    description=product.description,
                    interval=product.interval,
                    price=Price(amount=product.price_amount, currency=product.price_currency),
                    credits=product.credits,
                    features=list(product.features),
                )
                for product in products
            ]
        )
        return json_response(body)

    return router
