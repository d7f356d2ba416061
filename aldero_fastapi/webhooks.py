"""Verification of signed Aldero webhooks, and suppression of redelivered events.

Each webhook carries the header ``Aldero-Signature: t=<unix seconds>,v1=<hex>``, where the
hex is the HMAC-SHA256 of ``f"{t}.{raw_body}"`` keyed with the webhook secret. While a
secret is being rotated, the header may carry one ``v1`` entry per secret, and one match
is enough. The timestamp bounds replays to the tolerance window on either side of now.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from cachetools import TTLCache
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from aldero_fastapi.errors import AlderoError, ConfigurationError

__all__ = [
    "CREDITS_UPDATED",
    "ENTITLEMENTS_UPDATED",
    "ENTITLEMENT_EVENT_TYPES",
    "SIGNATURE_HEADER",
    "EventDeduplicator",
    "InvalidWebhookError",
    "WebhookEvent",
    "sign_webhook",
    "verify_webhook",
]

SIGNATURE_HEADER = "Aldero-Signature"
ENTITLEMENTS_UPDATED = "entitlements.updated"
CREDITS_UPDATED = "credits.updated"

# Event types that change what the entitlements cache holds for ``data.userId``.
ENTITLEMENT_EVENT_TYPES = frozenset({ENTITLEMENTS_UPDATED, CREDITS_UPDATED})

_HEADER_FORMAT = "t=<unix seconds>,v1=<hex HMAC-SHA256>"
_SIGNATURE_HEX_LENGTH = 64

# A header with two rotated signatures is about 150 characters. The cap keeps a hostile
# header from costing more than a few comparisons.
_MAX_HEADER_LENGTH = 1024


class InvalidWebhookError(AlderoError):
    """
    A webhook with an invalid signature header, timestamp or body, described by ``reason``.

    Respond with 400 and change nothing.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason, code="invalid_webhook")
        self.reason = reason


class WebhookEvent(BaseModel):
    """
    A verified webhook event.

    ``user_id`` is ``data.userId``, which every event of ``ENTITLEMENT_EVENT_TYPES`` has.
    Event types this version does not know are kept, so that callers can ignore them.
    """

    model_config = ConfigDict(frozen=True)

    id: str
    type: str
    created_at: datetime
    user_id: str | None
    data: dict[str, Any]

    @property
    def invalidates_entitlements(self) -> bool:
        """Whether the event changes the cached entitlements of ``user_id``."""
        return self.type in ENTITLEMENT_EVENT_TYPES and self.user_id is not None


class _WebhookBody(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    # Event ids are bounded because EventDeduplicator keeps up to max_size of them.
    id: str = Field(min_length=1, max_length=255)
    type: str = Field(min_length=1, max_length=255)
    created_at: datetime
    data: dict[str, Any] = Field(default_factory=dict)


def sign_webhook(payload: bytes, secret: str, timestamp: int) -> str:
    """
    Return the ``Aldero-Signature`` header value for ``payload`` sent at ``timestamp``.

    ``timestamp`` is in Unix seconds. This is the signature the service sends, for tests.
    """
    _check_secret(secret)
    return f"t={timestamp},v1={_compute_signature(payload, secret, str(timestamp))}"


def verify_webhook(
    payload: bytes,
    signature_header: str | None,
    secret: str,
    *,
    tolerance_seconds: float = 300,
    now: float | None = None,
) -> WebhookEvent:
    """
    Verify a webhook's signature and timestamp, and return its parsed event.

    ``payload`` is the raw request body, unchanged. ``now`` is the current Unix time in
    seconds, by default ``time.time()``. Nothing is logged, so that the caller logs each
    rejection once, with its ``reason``.

    Raises:
        InvalidWebhookError: the header is missing or malformed, no ``v1`` signature
            matches, the timestamp is more than ``tolerance_seconds`` from ``now``, or the
            body is not JSON of the event shape.
        ConfigurationError: ``secret`` is empty.
    """
    _check_secret(secret)
    timestamp, signatures = _parse_signature_header(signature_header)

    expected = _compute_signature(payload, secret, timestamp)
    if not any(hmac.compare_digest(expected, signature) for signature in signatures):
        raise InvalidWebhookError(
            f"no {SIGNATURE_HEADER} v1 signature matches the body; check that the webhook "
            "secret is the one in the Aldero dashboard and that the raw body is verified, "
            "not re-encoded JSON"
        )

    # The timestamp is checked after the signature, so that only a sender with the secret
    # learns that the clock was the problem.
    current_time = time.time() if now is None else now
    age = current_time - int(timestamp)
    if age > tolerance_seconds:
        raise InvalidWebhookError(
            f"webhook timestamp {timestamp} is {age:.0f} s old, more than the tolerance of "
            f"{tolerance_seconds:g} s; it may be a replay, or the server clock is wrong"
        )
    if -age > tolerance_seconds:
        raise InvalidWebhookError(
            f"webhook timestamp {timestamp} is {-age:.0f} s in the future, more than the "
            f"tolerance of {tolerance_seconds:g} s; check the server clock"
        )

    return _parse_event(payload)


class EventDeduplicator:
    """
    The ids of recently received webhook events, to drop redeliveries.

    An id is remembered for ``ttl_seconds`` and at most ``max_size`` ids are kept, the
    oldest dropped first, so memory stays bounded. The default TTL of 600 s is twice the
    default signature tolerance, because a replay older than the tolerance fails
    verification anyway. NOTE: a redelivery that comes after its id was dropped, re-signed
    with a new timestamp, is processed again.
    """

    def __init__(
        self,
        max_size: int = 10_000,
        ttl_seconds: float = 600.0,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_size < 1:
            raise ValueError(f"max_size must be at least 1, got {max_size}")
        if ttl_seconds <= 0:
            raise ValueError(f"ttl_seconds must be positive, got {ttl_seconds}")

        self._ids: TTLCache[str, bool] = TTLCache(maxsize=max_size, ttl=ttl_seconds, timer=clock)

    def __len__(self) -> int:
        """Return the number of ids remembered, expired ones not yet evicted included."""
        return len(self._ids)

    def seen(self, event_id: str) -> bool:
        """Record ``event_id`` and return whether it was already recorded."""
        if event_id in self._ids:
            return True

        self._ids[event_id] = True
        return False

    def forget(self, event_id: str) -> None:
        """Remove ``event_id``, so that a redelivery is processed after a failed attempt."""
        self._ids.pop(event_id, None)


def _parse_signature_header(header: str | None) -> tuple[str, list[str]]:
    if header is None or not header.strip():
        raise InvalidWebhookError(f"missing {SIGNATURE_HEADER} header")

    if len(header) > _MAX_HEADER_LENGTH:
        raise InvalidWebhookError(
            f"malformed {SIGNATURE_HEADER} header: {len(header)} characters, more than "
            f"the maximum of {_MAX_HEADER_LENGTH}"
        )

    timestamp: str | None = None
    signatures: list[str] = []
    for item in header.split(","):
        key, separator, value = item.strip().partition("=")
        if not separator:
            raise _malformed_header(f"entry {item.strip()!r} is not of the form key=value")

        if key == "t":
            if timestamp is not None:
                raise _malformed_header("more than one t= entry")
            timestamp = value
        elif key == "v1":
            signatures.append(value)
        # Other schemes are skipped, so that the service can add one next to v1.

    if timestamp is None:
        raise _malformed_header("no t= entry")
    # isdigit() alone would accept non-ASCII digits such as "²", which int() rejects.
    # Twelve digits reach the year 33658; longer values overflow float arithmetic.
    if not (timestamp.isascii() and timestamp.isdigit()) or len(timestamp) > 12:
        raise _malformed_header(f"t={timestamp!r} is not a Unix time in whole seconds")

    if not signatures:
        raise _malformed_header("no v1= entry")
    for signature in signatures:
        if len(signature) != _SIGNATURE_HEX_LENGTH or not _is_hex(signature):
            raise _malformed_header(
                f"a v1 signature is not {_SIGNATURE_HEX_LENGTH} hexadecimal characters"
            )

    return timestamp, [signature.lower() for signature in signatures]


def _malformed_header(detail: str) -> InvalidWebhookError:
    return InvalidWebhookError(
        f"malformed {SIGNATURE_HEADER} header: {detail}; expected {_HEADER_FORMAT}"
    )


def _is_hex(text: str) -> bool:
    return all(character in "0123456789abcdefABCDEF" for character in text)


def _parse_event(payload: bytes) -> WebhookEvent:
    try:
        document = json.loads(payload)
    except ValueError:
        raise InvalidWebhookError("webhook body is not valid JSON") from None
    except RecursionError:
        raise InvalidWebhookError("webhook body is nested too deeply") from None

    if not isinstance(document, dict):
        raise InvalidWebhookError(
            f"unknown webhook shape: the body is a JSON {type(document).__name__}, not an object"
        )

    try:
        body = _WebhookBody.model_validate(document)
    except ValidationError as error:
        fields = ", ".join(
            ".".join(str(part) for part in detail["loc"]) + f" ({detail['msg']})"
            for detail in error.errors(include_input=False, include_url=False)
        )
        raise InvalidWebhookError(f"unknown webhook shape: invalid {fields}") from None

    user_id = body.data.get("userId")
    if user_id is not None and not (isinstance(user_id, str) and user_id):
        raise InvalidWebhookError("unknown webhook shape: data.userId is not a non-empty string")
    if user_id is None and body.type in ENTITLEMENT_EVENT_TYPES:
        raise InvalidWebhookError(
            f"unknown webhook shape: event {body.id} of type {body.type} has no data.userId"
        )

    return WebhookEvent(
        id=body.id,
        type=body.type,
        created_at=body.created_at,
        user_id=user_id,
        data=body.data,
    )


def _compute_signature(payload: bytes, secret: str, timestamp: str) -> str:
    message = timestamp.encode("ascii") + b"." + payload
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def _check_secret(secret: str) -> None:
    # With an empty key anyone can compute a valid signature.
    if not secret:
        raise ConfigurationError(
            "The webhook secret is empty; set ALDERO_WEBHOOK_SECRET to the signing secret "
            "from the Aldero dashboard"
        )
