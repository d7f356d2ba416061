"""Admin routes under ``/_emulator`` that tests use to set up and inspect the emulator.

They need no API key, and the request log does not record them.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Path, Query
from starlette.responses import Response

from .admin_models import (
    DeletedCount,
    FaultRuleList,
    FaultRuleRequest,
    FaultRuleView,
    NotificationList,
    NotificationView,
    PurchaseRequest,
    RequestList,
    RequestView,
    UserUpdate,
    UserView,
    WebhookDeliveryList,
    WebhookDeliveryView,
)
from .entitlements import read_entitlements
from .errors import ApiError
from .faults import FaultRule
from .ids import new_id
from .models import json_response
from .params import UserId
from .state import EmulatorState
from .sync import Changes, record_purchase

MAX_WAIT_SECONDS = 30.0
_POLL_INTERVAL_SECONDS = 0.05
ADMIN_DESCRIPTION = "Balance set through the emulator admin API"


def build_admin_router(state: EmulatorState) -> APIRouter:
    router = APIRouter(prefix="/_emulator")
    store = state.store

    @router.post("/reset")
    async def reset() -> dict[str, str]:
        state.reset()
        return {"status": "reset"}

    @router.get("/users/{userId}")
    async def get_user(user_id: UserId) -> Response:
        with store.transaction(write=False) as tx:
            user = tx.get_user(user_id)
            ledger_sum = tx.sum_ledger(user_id)

        return json_response(
            UserView(
                user_id=user_id,
                features=[] if user is None else list(user.features),
                credits=0 if user is None else user.balance,
                ledger_sum=ledger_sum,
            )
        )

    @router.put("/users/{userId}")
    async def update_user(user_id: UserId, update: UserUpdate) -> Response:
        changes = Changes()

        with store.transaction() as tx:
            user = tx.ensure_user(user_id)

            if update.features is not None and set(update.features) != set(user.features):
                tx.set_features(user_id, update.features)
                changes |= Changes(entitlements=True)

            if update.credits is not None and update.credits != user.balance:
                tx.append_ledger_row(
                    transaction_id=new_id("txn_"),
                    user_id=user_id,
                    type="adjustment",
                    amount=update.credits - user.balance,
                    description=ADMIN_DESCRIPTION,
                    reference_id=None,
                    reverses_transaction_id=None,
                )
                changes |= Changes(credits=True)

            body = read_entitlements(tx, user_id)

        state.webhooks.send_user_events(
            user_id, entitlements=changes.entitlements, credits=changes.credits
        )
        return json_response(body)

    @router.post("/users/{userId}/purchases")
    async def purchase(user_id: UserId, purchase: PurchaseRequest) -> Response:
        with store.transaction() as tx:
            product = tx.get_product(purchase.product_id)
            if product is None:
                raise ApiError(
                    404,
                    "not_found",
                    f"Product {purchase.product_id!r} is not in the catalogue. "
                    "Use a product id from GET /billing/products.",
                )
            changes = record_purchase(tx, user_id, product)
            body = read_entitlements(tx, user_id)

        state.webhooks.send_user_events(
            user_id, entitlements=changes.entitlements, credits=changes.credits
        )
        return json_response(body)

    @router.get("/notifications")
    async def list_notifications(
        to: str | None = None,
        template_name: Annotated[str | None, Query(alias="templateName")] = None,
        wait: Annotated[float, Query(ge=0, le=MAX_WAIT_SECONDS)] = 0,
    ) -> Response:
        """List sent notifications, oldest first.

        With ``wait`` (seconds), the response waits until at least one notification
        matches or the time is up.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait

        while True:
            with store.transaction(write=False) as tx:
                found = tx.find_notifications(recipient=to, template_name=template_name)

            remaining = deadline - loop.time()
            if found or remaining <= 0:
                break
            await asyncio.sleep(min(_POLL_INTERVAL_SECONDS, remaining))

        body = NotificationList(
            notifications=[
                NotificationView(
                    id=item.notification_id,
                    template_name=item.template_name,
                    channel=item.channel,
                    to=item.recipient,
                    variables=item.variables,
                    created_at=item.created_at,
                )
                for item in found
            ]
        )
        return json_response(body)

    @router.get("/requests")
    async def list_requests(method: str | None = None, path: str | None = None) -> Response:
        entries = state.requests.find(method=method, path=path)
        body = RequestList(
            requests=[
                RequestView(
                    method=entry.method,
                    path=entry.path,
                    status=entry.status,
                    request_id=entry.request_id,
                    created_at=entry.created_at,
                    user_agent=entry.user_agent,
                    fault_id=entry.fault_id,
                )
                for entry in entries
            ]
        )
        return json_response(body)

    @router.delete("/requests")
    async def clear_requests() -> Response:
        deleted = len(state.requests.find())
        state.requests.clear()
        return json_response(DeletedCount(deleted=deleted))

    @router.post("/faults", status_code=201)
    async def add_fault(rule: FaultRuleRequest) -> Response:
        added = state.faults.add(
            method=rule.method,
            path=rule.path,
            action=rule.action,
            status=rule.status,
            latency_ms=rule.latency_ms,
            retry_after=rule.retry_after,
            count=rule.count,
            probability=rule.probability,
        )
        return json_response(_fault_view(added), status_code=201)

    @router.get("/faults")
    async def list_faults() -> Response:
        views = [_fault_view(rule) for rule in state.faults.list_rules()]
        return json_response(FaultRuleList(faults=views))

    @router.delete("/faults")
    async def clear_faults() -> Response:
        deleted = len(state.faults.list_rules())
        state.faults.clear()
        return json_response(DeletedCount(deleted=deleted))

    @router.delete("/faults/{faultId}")
    async def delete_fault(fault_id: Annotated[str, Path(alias="faultId")]) -> Response:
        if not state.faults.remove(fault_id):
            raise ApiError(
                404,
                "not_found",
                f"Fault rule {fault_id!r} does not exist. "
                "List the rules with GET /_emulator/faults.",
            )
        return json_response(DeletedCount(deleted=1))

    @router.get("/webhooks")
    async def list_webhooks() -> Response:
        body = WebhookDeliveryList(
            deliveries=[
                WebhookDeliveryView(
                    event_id=delivery.event_id,
                    type=delivery.type,
                    user_id=delivery.user_id,
                    status=delivery.status,
                    attempts=delivery.attempts,
                )
                for delivery in state.webhooks.deliveries()
            ]
        )
        return json_response(body)

    return router


def _fault_view(rule: FaultRule) -> FaultRuleView:
    return FaultRuleView(
        id=rule.id,
        method=rule.method,
        path=rule.path,
        action=rule.action,
        status=rule.status,
        latency_ms=rule.latency_ms,
        retry_after=rule.retry_after,
        count=rule.count,
        probability=rule.probability,
        remaining=rule.remaining,
        applied=rule.applied,
    )
