"""Notification sending for request handlers: now, or after a successful response."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from aldero_fastapi.errors import AlderoError, ConfigurationError
from aldero_fastapi.models import Notification, NotificationChannel, NotificationReceipt

__all__ = ["BackgroundSends", "NotificationSender"]

logger = logging.getLogger("aldero_fastapi.notify")


class NotificationClient(Protocol):
    """The notification call the sender makes (``NotificationsAPI``)."""

    async def send(
        self, notification: Notification | None = None, *, idempotency_key: str | None = None
    ) -> NotificationReceipt: ...


@dataclass(frozen=True)
class QueuedNotification:
    """A notification waiting for its handler to succeed, with its idempotency key."""

    notification: Notification
    idempotency_key: str | None


class BackgroundSends:
    """
    The notification sends that run after their response, owned by the app's lifespan.

    Failures are logged with the template and recipient and counted, never raised.
    """

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()
        self.sent = 0
        self.failed = 0

    def start(self, client: NotificationClient, queued: QueuedNotification) -> None:
        """Start sending a queued notification in a task that outlives the request."""
        task = asyncio.get_running_loop().create_task(self._send(client, queued))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self, timeout: float | None = None) -> None:
        """Wait for the sends still running, up to ``timeout`` seconds, then cancel the rest."""
        if not self._tasks:
            return

        _done, still_running = await asyncio.wait(set(self._tasks), timeout=timeout)
        for task in still_running:
            task.cancel()

    async def _send(self, client: NotificationClient, queued: QueuedNotification) -> None:
        notification = queued.notification
        try:
            receipt = await client.send(notification, idempotency_key=queued.idempotency_key)
        except AlderoError as error:
            self.failed += 1
            logger.error(
                "Notification %r over %s to %s failed after the response: %s",
                notification.template_name,
                notification.channel,
                notification.to,
                error.message,
            )
            return

        self.sent += 1
        logger.info(
            "Sent notification %s (%r over %s to %s) after the response",
            receipt.id,
            notification.template_name,
            notification.channel,
            notification.to,
        )


class NotificationSender:
    """
    The notification sender injected into a handler by ``Notifier``.

    ``send`` sends now and raises on failure. ``send_after_response`` queues the send
    until the handler has succeeded; a handler that raises sends nothing.

    With an ``Idempotency-Key`` header on the incoming request, the n-th notification of
    the request gets an idempotency key derived from it, the requesting user and the
    recipient, so a client that retries the request does not notify twice. An explicit
    ``idempotency_key`` wins.
    """

    def __init__(
        self,
        client: NotificationClient | None,
        background: BackgroundSends,
        *,
        idempotency_digest: str | None = None,
        requesting_user_id: Callable[[], str | None] | None = None,
    ) -> None:
        self._client = client
        self._background = background
        self._idempotency_digest = idempotency_digest
        self._requesting_user_id = requesting_user_id
        self._count = 0
        self.queued: list[QueuedNotification] = []

    async def send(
        self,
        *,
        template_name: str,
        channel: NotificationChannel,
        to: str,
        variables: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> NotificationReceipt:
        """
        Send the template now and return the service's receipt.

        Raises:
            ConfigurationError: no notification key is configured.
            AlderoError: the service rejected the notification or failed after retries.
        """
        client = self._require_client()
        notification = _notification(template_name, channel, to, variables)
        key = idempotency_key or self._next_key(to)
        return await client.send(notification, idempotency_key=key)

    def send_after_response(
        self,
        *,
        template_name: str,
        channel: NotificationChannel,
        to: str,
        variables: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> None:
        """Queue the template to be sent once the handler has returned successfully."""
        self._require_client()
        notification = _notification(template_name, channel, to, variables)
        key = idempotency_key or self._next_key(to)
        self.queued.append(QueuedNotification(notification, key))

    def flush(self) -> None:
        """Start the queued sends in the background; called once the handler succeeded."""
        if self._client is None:
            return

        for queued in self.queued:
            self._background.start(self._client, queued)
        self.queued.clear()

    def discard(self) -> None:
        """Drop the queued sends because the handler failed."""
        if self.queued:
            logger.info(
                "Dropped %d queued notifications because the request failed", len(self.queued)
            )
        self.queued.clear()

    def _next_key(self, recipient: str) -> str | None:
        self._count += 1
        if self._idempotency_digest is None:
            return None
        # The requesting user and the recipient are part of the key, so that two
        # clients who pick the same Idempotency-Key do not suppress each other's
        # notifications. The user is read at send time, once the route resolved it.
        user_id = self._requesting_user_id() if self._requesting_user_id else None
        origin = f"{user_id or ''}\n{recipient}"
        recipient_digest = hashlib.sha256(origin.encode()).hexdigest()[:16]
        return f"idem_{self._idempotency_digest}-{recipient_digest}-notification-{self._count}"

    def _require_client(self) -> NotificationClient:
        if self._client is None:
            raise ConfigurationError(
                "Notifications are not configured; set ALDERO_NOTIFICATION_API_KEY to a "
                "key starting with ntf_"
            )
        return self._client


def _notification(
    template_name: str,
    channel: NotificationChannel,
    to: str,
    variables: Mapping[str, Any] | None,
) -> Notification:
    return Notification(
        template_name=template_name, channel=channel, to=to, variables=dict(variables or {})
    )
