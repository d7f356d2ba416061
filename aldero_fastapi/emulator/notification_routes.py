"""Routes of the notification API below ``/v1/tenants/{tenantSlug}/notifications``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request
from starlette.responses import Response

from .faults import fault_delay
from .idempotency import IdempotencyKey, run_idempotent
from .models import NotificationSendRequest, encode_body
from .notifications import check_send_request, notification_fingerprint, record_notification
from .state import EmulatorState
from .store import StoreTransaction


def build_notification_router(state: EmulatorState) -> APIRouter:
    router = APIRouter(prefix="/notifications")
    store = state.store

    @router.post("/send", status_code=202)
    async def send_notification(
        message: NotificationSendRequest,
        request: Request,
        idempotency_key: Annotated[
            str | None, Header(alias="Idempotency-Key", min_length=1, max_length=200)
        ] = None,
    ) -> Response:
        with store.transaction(write=False) as tx:
            template = tx.get_template(message.template_name)
        check_send_request(template, message)

        key = None
        if idempotency_key is not None:
            key = IdempotencyKey(
                scope="notifications",
                key=idempotency_key,
                fingerprint=notification_fingerprint(message),
                label="Idempotency-Key",
            )

        def apply(tx: StoreTransaction) -> tuple[int, bytes]:
            return 202, encode_body(record_notification(tx, message))

        return await run_idempotent(store, key, apply, before_apply=fault_delay(request).wait)

    return router
