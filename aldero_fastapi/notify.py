"""Notification sending for request handlers: now, or after a successful response."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aldero_fastapi.errors import AlderoError, ConfigurationError
from aldero_fastapi.models import Notification, NotificationChannel, NotificationReceipt

__all__ = ["BackgroundSends", "NotificationSender"]

logger = logging.getLogger("aldero_fastapi.notify")

SendCall = Callable[[Notification], Awaitable[NotificationReceipt]]


class BackgroundSends:
    """
    The notification sends that run after their response, owned by the app's lifespan.

    Failures are logged with the template and recipient and counted, never raised.
    """

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()
        self.sent = 0
        self.failed = 0

    def start(self, send: SendCall, notification: Notification) -> None:
        """Start sending ``notification`` in a task that outlives the request."""
        task = asyncio.get_running_loop().create_task(self._send(send, notification))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self, timeout: float | None = None) -> None:
        """Wait for the sends still running, up to ``timeout`` seconds, then cancel the rest."""
        if not self._tasks:
            return

        _done, still_running = await asyncio.wait(set(self._tasks), timeout=timeout)
        for task in still_running:
            task.cancel()

    async def _send(self, send: SendCall, notification: Notification) -> None:
        try:
            receipt = await send(notification)
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


@dataclass
class NotificationSender:
    """
    The notification sender injected into a handler by ``Notifier``.

    ``send`` sends now and raises on failure. ``send_after_response`` queues the send
    until the handler has succeeded; a handler that raises sends nothing.
    """

    send_call: SendCall | None
    background: BackgroundSends
    queued: list[Notification] = field(default_factory=list)

    async def send(
        self,
        *,
        template_name: str,
        channel: NotificationChannel,
        to: str,
        variables: Mapping[str, Any] | None = None,
    ) -> NotificationReceipt:
        """
        Send the template now and return the service's receipt.

        Raises:
            ConfigurationError: no notification key is configured.
            AlderoError: the service rejected the notification or failed after retries.
        """
        notification = _notification(template_name, channel, to, variables)
        return await self._require_send_call()(notification)

    def send_after_response(
        self,
        *,
        template_name: str,
        channel: NotificationChannel,
        to: str,
        variables: Mapping[str, Any] | None = None,
    ) -> None:
        """Queue the template to be sent once the handler has returned successfully."""
        self._require_send_call()
        self.queued.append(_notification(template_name, channel, to, variables))

    def flush(self) -> None:
        """Start the queued sends in the background; called once the handler succeeded."""
        if self.send_call is None:
            return

        for notification in self.queued:
            self.background.start(self.send_call, notification)
        self.queued.clear()

    def discard(self) -> None:
        """Drop the queued sends because the handler failed."""
        if self.queued:
            logger.info(
                "Dropped %d queued notifications because the request failed", len(self.queued)
            )
        self.queued.clear()

    def _require_send_call(self) -> SendCall:
        if self.send_call is None:
            raise ConfigurationError(
                "Notifications are not configured; set ALDERO_NOTIFICATION_API_KEY to a "
                "key starting with ntf_"
            )
        return self.send_call


def _notification(
    template_name: str,
    channel: NotificationChannel,
    to: str,
    variables: Mapping[str, Any] | None,
) -> Notification:
    return Notification(
        template_name=template_name, channel=channel, to=to, variables=dict(variables or {})
    )
