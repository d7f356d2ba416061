"""The webhook endpoint that keeps cached entitlements fresh when billing changes them."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from starlette.requests import ClientDisconnect

from aldero_fastapi.dependencies import get_aldero
from aldero_fastapi.http_errors import AlderoHTTPException
from aldero_fastapi.plugin import Aldero
from aldero_fastapi.webhooks import SIGNATURE_HEADER, InvalidWebhookError, verify_webhook

__all__ = ["build_webhook_router"]

logger = logging.getLogger("aldero_fastapi.webhooks")

# Aldero events are small JSON documents; anything larger is not one of them.
MAX_WEBHOOK_BYTES = 64 * 1024


def build_webhook_router(path: str) -> APIRouter:
    """Return a router with ``POST path`` that verifies and applies Aldero webhook events."""
    router = APIRouter()

    @router.post(path, status_code=204, include_in_schema=False)
    async def receive_webhook(
        request: Request, aldero: Annotated[Aldero, Depends(get_aldero)]
    ) -> Response:
        secret = aldero.settings.webhook_secret
        if secret is None:
            logger.error("Webhook received but ALDERO_WEBHOOK_SECRET is not set; rejecting it")
            raise AlderoHTTPException(503, "Webhooks are not configured")

        payload = await _read_body(request)
        try:
            event = verify_webhook(
                payload,
                request.headers.get(SIGNATURE_HEADER),
                secret.get_secret_value(),
                tolerance_seconds=aldero.settings.webhook_tolerance_seconds,
            )
        except InvalidWebhookError as error:
            logger.warning("Rejected a webhook: %s", error.reason)
            raise AlderoHTTPException(400, "Invalid webhook", reason=error.reason) from None

        if aldero.webhook_events.seen(event.id):
            logger.info("Ignored duplicate webhook event %s", event.id)
            return Response(status_code=204)

        if event.invalidates_entitlements and event.user_id is not None:
            await aldero.entitlements.invalidate(event.user_id)
            logger.info(
                "Webhook event %s (%s) invalidated the entitlements of user %s",
                event.id,
                event.type,
                event.user_id,
            )
        else:
            logger.info("Ignored webhook event %s of type %s", event.id, event.type)
        return Response(status_code=204)

    return router


async def _read_body(request: Request) -> bytes:
    # Read in chunks and stop early, because the route is reachable without credentials
    # until the signature is checked.
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_WEBHOOK_BYTES:
                logger.warning("Rejected a webhook body larger than %d bytes", MAX_WEBHOOK_BYTES)
                raise AlderoHTTPException(413, "Webhook body too large", limit=MAX_WEBHOOK_BYTES)
            chunks.append(chunk)
    except ClientDisconnect:
        logger.info("A webhook sender disconnected before sending the whole body")
        raise AlderoHTTPException(400, "Incomplete webhook body") from None
    return b"".join(chunks)
