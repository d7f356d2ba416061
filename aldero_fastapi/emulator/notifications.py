"""Checks and recording of template notifications."""

from __future__ import annotations

import re

from .errors import ApiError
from .idempotency import fingerprint
from .ids import new_id
from .models import NotificationSendRequest, NotificationSendResponse
from .records import NotificationRecord, TemplateRecord
from .store import StoreTransaction
from .timestamps import now_timestamp

# A pragmatic check (one @, no spaces, a dot in the domain), not full RFC 5322.
_EMAIL_PATTERN = re.compile(r"[^@\s]+@[^@\s.]+(\.[^@\s.]+)+")


def check_send_request(template: TemplateRecord | None, request: NotificationSendRequest) -> None:
    """Raise ApiError unless ``request`` can be sent with ``template``.

    The errors are 404 for an unknown template, 422 ``channel_mismatch``, 422
    ``invalid_recipient`` for an email channel without an email address, and 422
    ``missing_variables`` listing the template variables that were not given.
    """
    if template is None:
        raise ApiError(
            404,
            "not_found",
            f"Template {request.template_name!r} does not exist. Check the template name.",
        )

    if request.channel != template.channel:
        raise ApiError(
            422,
            "channel_mismatch",
            f"Template {template.name!r} is sent over {template.channel!r}, not "
            f"{request.channel!r}. Set channel to {template.channel!r}.",
            expected=template.channel,
        )

    if request.channel == "email" and not _EMAIL_PATTERN.fullmatch(request.to):
        raise ApiError(
            422,
            "invalid_recipient",
            f"{request.to!r} is not an email address. Set 'to' to an address such as "
            "user@example.com.",
        )

    missing = [name for name in template.variables if name not in request.variables]
    if missing:
        raise ApiError(
            422,
            "missing_variables",
            f"Template {template.name!r} needs the variables {', '.join(missing)}. "
            "Add them to 'variables'.",
            missing=missing,
        )


def notification_fingerprint(request: NotificationSendRequest) -> str:
    return fingerprint([request.template_name, request.channel, request.to, request.variables])


def record_notification(
    tx: StoreTransaction, request: NotificationSendRequest
) -> NotificationSendResponse:
    """Store the notification as sent and return the 202 response body."""
    notification = NotificationRecord(
        notification_id=new_id("ntf_msg_"),
        template_name=request.template_name,
        channel=request.channel,
        recipient=request.to,
        variables=dict(request.variables),
        created_at=now_timestamp(),
    )
    tx.add_notification(notification)

    return NotificationSendResponse(
        id=notification.notification_id,
        status="queued",
        channel=notification.channel,
        to=notification.recipient,
        template_name=notification.template_name,
    )
