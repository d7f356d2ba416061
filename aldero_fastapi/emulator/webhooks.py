"""Signed webhook events about users whose entitlements or credits changed.

Each event is a JSON POST with the header
``Aldero-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">``.
Delivery runs in a background task with up to three attempts, so it never delays the
request that caused the change.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from dataclasses import dataclass

import httpx

from .ids import new_id
from .timestamps import now_timestamp

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "Aldero-Signature"
MAX_ATTEMPTS = 3
RETRY_DELAYS_SECONDS = (0.2, 0.5)
TIMEOUT_SECONDS = 5.0


@dataclass
class WebhookDelivery:
    """A delivery of one event. ``status`` is ``pending``, ``delivered`` or ``failed``."""

    event_id: str
    type: str
    user_id: str
    status: str = "pending"
    attempts: int = 0


def sign_payload(secret: str, timestamp: int, body: bytes) -> str:
    """Return the hex HMAC-SHA256 of ``"<timestamp>.<body>"`` keyed with ``secret``."""
    message = f"{timestamp}.".encode() + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signature_header(secret: str, timestamp: int, body: bytes) -> str:
    return f"t={timestamp},v1={sign_payload(secret, timestamp, body)}"


class WebhookSender:
    """Sends events to ``url``. Without a URL it sends nothing.

    Without a secret the events go out unsigned. The HTTP client is created on first use
    and belongs to the event loop that created it, so a call from another loop replaces it.
    """

    def __init__(
        self,
        url: str | None,
        secret: str | None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._url = url
        self._secret = secret
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self._client_loop: asyncio.AbstractEventLoop | None = None
        self._deliveries: list[WebhookDelivery] = []
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def enabled(self) -> bool:
        return self._url is not None

    def deliveries(self) -> list[WebhookDelivery]:
        return list(self._deliveries)

    def send_user_events(self, user_id: str, *, entitlements: bool, credits: bool) -> None:
        """Send one event per kind of change: entitlements, credits or both."""
        if entitlements:
            self.send_event("entitlements.updated", user_id)
        if credits:
            self.send_event("credits.updated", user_id)

    def send_event(self, event_type: str, user_id: str) -> WebhookDelivery | None:
        """Start delivering one event in the background. Call it from a running event loop."""
        if self._url is None:
            return None

        delivery = WebhookDelivery(event_id=new_id("evt_"), type=event_type, user_id=user_id)
        self._deliveries.append(delivery)

        event = {
            "id": delivery.event_id,
            "type": event_type,
            "createdAt": now_timestamp(),
            "data": {"userId": user_id},
        }
        body = json.dumps(event, separators=(",", ":")).encode()

        task = asyncio.get_running_loop().create_task(self._deliver(self._url, delivery, body))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return delivery

    async def _deliver(self, url: str, delivery: WebhookDelivery, body: bytes) -> None:
        for attempt in range(1, MAX_ATTEMPTS + 1):
            delivery.attempts = attempt
            error = await self._post(url, body)

            if error is None:
                delivery.status = "delivered"
                return

            logger.warning(
                "Webhook delivery of event %s (%s) failed on attempt %d of %d: %s",
                delivery.event_id,
                delivery.type,
                attempt,
                MAX_ATTEMPTS,
                error,
            )
            if attempt < MAX_ATTEMPTS:
                await asyncio.sleep(RETRY_DELAYS_SECONDS[attempt - 1])

        delivery.status = "failed"

    async def _post(self, url: str, body: bytes) -> str | None:
        """POST one attempt and return None on a 2xx response, else the error."""
        headers = {"Content-Type": "application/json"}
        if self._secret is not None:
            headers[SIGNATURE_HEADER] = signature_header(self._secret, int(time.time()), body)

        try:
            response = await self._http_client().post(url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}"

        if not response.is_success:
            return f"HTTP {response.status_code}"
        return None

    def _http_client(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        if self._client is None or self._client_loop is not loop:
            self._client = httpx.AsyncClient(transport=self._transport, timeout=TIMEOUT_SECONDS)
            self._client_loop = loop
        return self._client

    def clear(self) -> None:
        """Cancel deliveries in flight and forget all recorded deliveries."""
        for task in list(self._tasks):
            task.cancel()
        self._deliveries = []

    async def aclose(self) -> None:
        """Cancel deliveries in flight and close the HTTP client."""
        loop = asyncio.get_running_loop()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(
            *(task for task in tasks if task.get_loop() is loop), return_exceptions=True
        )

        client, self._client = self._client, None
        if client is not None and self._client_loop is loop:
            await client.aclose()
        self._client_loop = None
