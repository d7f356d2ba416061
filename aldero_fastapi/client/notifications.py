"""Calls of the Aldero notification API."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from aldero_fastapi.client import wire
from aldero_fastapi.client.transport import ApiCall, ApiTransport, encode_json
from aldero_fastapi.models import Notification, NotificationChannel, NotificationReceipt

__all__ = ["NotificationsAPI"]


class NotificationsAPI:
    """
    The notification calls of an ``AlderoClient``, which need an ``ntf_`` key.

    Every method raises ConfigurationError before sending anything when the client's key
    is not a notification key.
    """

    def __init__(self, transport: ApiTransport) -> None:
        self._transport = transport

    def __repr__(self) -> str:
        return f"NotificationsAPI(base_url={self._transport.base_url!r})"

    async def send(
        self,
        notification: Notification | None = None,
        *,
        template_name: str | None = None,
        channel: NotificationChannel | None = None,
        to: str | None = None,
        variables: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> NotificationReceipt:
        """
        Queue a template message, and return the service's receipt.

        Pass either a ``Notification`` or its fields as keyword arguments. Every call
        carries an ``Idempotency-Key``, a new UUID unless ``idempotency_key`` is given,
        and every retry of the call reuses it, so a retry never sends the message twice.
        Pass the same ``idempotency_key`` to make a repeated call a replay too.

        Raises:
            pydantic.ValidationError: a field is missing or invalid; nothing was sent.
            NotFoundError: the template does not exist.
            InvalidRequestError: template variables are missing; ``details["missing"]``
                names them.
        """
        if notification is None:
            notification = Notification.model_validate(
                {
                    "template_name": template_name,
                    "channel": channel,
                    "to": to,
                    "variables": dict(variables) if variables is not None else {},
                }
            )
        elif any(field is not None for field in (template_name, channel, to, variables)):
            raise TypeError(
                "send() takes either a notification or its fields as keyword arguments, not both"
            )

        if idempotency_key is None:
            idempotency_key = str(uuid.uuid4())
        elif not idempotency_key.strip():
            raise ValueError("idempotency_key must not be empty; omit it to use a new UUID")
        elif not (idempotency_key.isascii() and idempotency_key.isprintable()):
            raise ValueError(
                f"idempotency_key {idempotency_key!r} contains control or non-ASCII "
                "characters, which an HTTP header cannot carry"
            )

        call = ApiCall(
            service="notifications",
            method="POST",
            path=wire.SEND_NOTIFICATION_PATH,
            idempotent=True,
            body=encode_json(notification.model_dump(mode="json", by_alias=True)),
            idempotency_key=idempotency_key,
        )
        response = await self._transport.send(call)

        receipt = response.parse(NotificationReceipt)
        if response.replayed:
            receipt = receipt.model_copy(update={"replayed": True})
        return receipt
