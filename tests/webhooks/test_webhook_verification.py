"""Tests of webhook signature verification, event parsing and duplicate suppression."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from datetime import datetime, timezone
from typing import Any

import pytest

from aldero_fastapi.errors import AlderoError, ConfigurationError
from aldero_fastapi.webhooks import (
    EventDeduplicator,
    InvalidWebhookError,
    WebhookEvent,
    sign_webhook,
    verify_webhook,
)

SECRET = "whsec_test_2b7e1516"
OLD_SECRET = "whsec_test_old_28aed2a6"
NOW = 1_700_000_000


def event_body(**overrides: Any) -> bytes:
    event: dict[str, Any] = {
        "id": "evt_4f1c2a9b",
        "type": "entitlements.updated",
        "createdAt": "2023-11-14T22:13:20Z",
        "data": {"userId": "user_1"},
    }
    event.update(overrides)
    return json.dumps(event, separators=(",", ":")).encode()


def expected_signature(payload: bytes, secret: str, timestamp: int) -> str:
    message = f"{timestamp}.".encode() + payload
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def verify(payload: bytes, header: str | None, secret: str = SECRET) -> WebhookEvent:
    return verify_webhook(payload, header, secret, tolerance_seconds=300, now=NOW)


def test_sign_webhook_header_format() -> None:
    payload = event_body()

    header = sign_webhook(payload, SECRET, NOW)

    assert header == f"t={NOW},v1={expected_signature(payload, SECRET, NOW)}"


def test_valid_signature_returns_event() -> None:
    payload = event_body()

    event = verify(payload, sign_webhook(payload, SECRET, NOW))

    assert event.id == "evt_4f1c2a9b"
    assert event.type == "entitlements.updated"
    assert event.created_at == datetime(2023, 11, 14, 22, 13, 20, tzinfo=timezone.utc)
    assert event.user_id == "user_1"
    assert event.data == {"userId": "user_1"}
    assert event.invalidates_entitlements is True


def test_credits_event_invalidates() -> None:
    payload = event_body(type="credits.updated", data={"userId": "user_2", "balance": 5})

    event = verify(payload, sign_webhook(payload, SECRET, NOW))

    assert event.type == "credits.updated"
    assert event.user_id == "user_2"
    assert event.data == {"userId": "user_2", "balance": 5}
    assert event.invalidates_entitlements is True


def test_unknown_type_accepted() -> None:
    payload = event_body(type="product.updated", data={"productId": "pack_10"}, extra=1)

    event = verify(payload, sign_webhook(payload, SECRET, NOW))

    assert event.type == "product.updated"
    assert event.user_id is None
    assert event.data == {"productId": "pack_10"}
    assert event.invalidates_entitlements is False


def test_default_now_is_current_time() -> None:
    payload = event_body()
    header = sign_webhook(payload, SECRET, int(time.time()))

    event = verify_webhook(payload, header, SECRET)

    assert event.id == "evt_4f1c2a9b"


def test_tampered_body_rejected() -> None:
    payload = event_body()
    header = sign_webhook(payload, SECRET, NOW)
    tampered = payload.replace(b"user_1", b"user_9")

    with pytest.raises(InvalidWebhookError) as raised:
        verify(tampered, header)

    assert raised.value.reason.startswith("no Aldero-Signature v1 signature matches the body")


def test_wrong_secret_rejected() -> None:
    payload = event_body()
    header = sign_webhook(payload, "whsec_other", NOW)

    with pytest.raises(InvalidWebhookError) as raised:
        verify(payload, header)

    assert "no Aldero-Signature v1 signature matches" in raised.value.reason


def test_signed_timestamp_cannot_change() -> None:
    payload = event_body()
    signature = expected_signature(payload, SECRET, NOW - 1_000)

    with pytest.raises(InvalidWebhookError) as raised:
        verify(payload, f"t={NOW},v1={signature}")

    assert "no Aldero-Signature v1 signature matches" in raised.value.reason


@pytest.mark.parametrize(
    ("offset", "message"),
    [
        (-301, "is 301 s old, more than the tolerance of 300 s"),
        (301, "is 301 s in the future, more than the tolerance of 300 s"),
        (-86_400, "is 86400 s old"),
    ],
    ids=["expired", "future", "a-day-old"],
)
def test_timestamp_outside_tolerance(offset: int, message: str) -> None:
    payload = event_body()
    header = sign_webhook(payload, SECRET, NOW + offset)

    with pytest.raises(InvalidWebhookError) as raised:
        verify(payload, header)

    assert message in raised.value.reason


@pytest.mark.parametrize("offset", [-300, 300, 0])
def test_timestamp_at_tolerance_accepted(offset: int) -> None:
    payload = event_body()

    event = verify(payload, sign_webhook(payload, SECRET, NOW + offset))

    assert event.id == "evt_4f1c2a9b"


@pytest.mark.parametrize("header", [None, "", "   "], ids=["none", "empty", "blank"])
def test_missing_header_rejected(header: str | None) -> None:
    with pytest.raises(InvalidWebhookError) as raised:
        verify(event_body(), header)

    assert raised.value.reason == "missing Aldero-Signature header"


SIGNATURE = "ab" * 32

MALFORMED_HEADERS = [
    ("garbage", "entry 'garbage' is not of the form key=value"),
    (f"v1={SIGNATURE}", "no t= entry"),
    (f"t={NOW}", "no v1= entry"),
    (f"t={NOW},v0={SIGNATURE}", "no v1= entry"),
    (f"t={NOW},t={NOW},v1={SIGNATURE}", "more than one t= entry"),
    (f"t=abc,v1={SIGNATURE}", "t='abc' is not a Unix time in whole seconds"),
    (f"t=-5,v1={SIGNATURE}", "t='-5' is not a Unix time in whole seconds"),
    (f"t=1.5,v1={SIGNATURE}", "t='1.5' is not a Unix time in whole seconds"),
    (f"t=\u00b2,v1={SIGNATURE}", "is not a Unix time in whole seconds"),
    (f"t={NOW},v1=abc", "a v1 signature is not 64 hexadecimal characters"),
    (f"t={NOW},v1={'zz' * 32}", "a v1 signature is not 64 hexadecimal characters"),
    (f"t={NOW},v1={SIGNATURE}," + "v0=00," * 200, "more than the maximum of 1024"),
]


@pytest.mark.parametrize(
    ("header", "detail"),
    MALFORMED_HEADERS,
    ids=[
        "no-equals",
        "no-timestamp",
        "no-signature",
        "only-other-scheme",
        "two-timestamps",
        "letters",
        "negative",
        "fraction",
        "superscript-digit",
        "short-signature",
        "non-hex-signature",
        "too-long",
    ],
)
def test_malformed_header_rejected(header: str, detail: str) -> None:
    with pytest.raises(InvalidWebhookError) as raised:
        verify(event_body(), header)

    assert raised.value.reason.startswith("malformed Aldero-Signature header: ")
    assert detail in raised.value.reason


def test_two_v1_signatures_accepted() -> None:
    payload = event_body()
    old = expected_signature(payload, OLD_SECRET, NOW)
    new = expected_signature(payload, SECRET, NOW)
    header = f"t={NOW},v1={old},v1={new}"

    assert verify(payload, header, SECRET).id == "evt_4f1c2a9b"
    assert verify(payload, header, OLD_SECRET).id == "evt_4f1c2a9b"

    with pytest.raises(InvalidWebhookError):
        verify(payload, header, "whsec_third")


def test_header_variants_accepted() -> None:
    payload = event_body()
    signature = expected_signature(payload, SECRET, NOW)
    header = f" t={NOW} , v0=legacy , v1={signature.upper()} "

    assert verify(payload, header).id == "evt_4f1c2a9b"


def test_invalid_json_rejected() -> None:
    payload = b'{"id": "evt_1", '

    with pytest.raises(InvalidWebhookError) as raised:
        verify(payload, sign_webhook(payload, SECRET, NOW))

    assert raised.value.reason == "webhook body is not valid JSON"


@pytest.mark.parametrize(
    ("payload", "detail"),
    [
        (b"[1, 2]", "the body is a JSON list, not an object"),
        (event_body(id=None), "invalid id"),
        (event_body(id=""), "invalid id"),
        (event_body(createdAt="yesterday"), "invalid createdAt"),
        (event_body(data=["user_1"]), "invalid data"),
        (event_body(data={"userId": 7}), "data.userId is not a non-empty string"),
        (event_body(data={"userId": ""}), "data.userId is not a non-empty string"),
        (event_body(data={}), "event evt_4f1c2a9b of type entitlements.updated has no data.userId"),
        (
            event_body(type="credits.updated", data={}),
            "event evt_4f1c2a9b of type credits.updated has no data.userId",
        ),
    ],
    ids=[
        "list",
        "null-id",
        "empty-id",
        "bad-date",
        "data-list",
        "user-id-number",
        "user-id-empty",
        "entitlements-without-user",
        "credits-without-user",
    ],
)
def test_unknown_shape_rejected(payload: bytes, detail: str) -> None:
    with pytest.raises(InvalidWebhookError) as raised:
        verify(payload, sign_webhook(payload, SECRET, NOW))

    assert raised.value.reason.startswith("unknown webhook shape: ")
    assert detail in raised.value.reason


def test_invalid_webhook_error_fields() -> None:
    error = InvalidWebhookError("missing Aldero-Signature header")

    assert isinstance(error, AlderoError)
    assert error.reason == "missing Aldero-Signature header"
    assert error.code == "invalid_webhook"
    assert str(error) == "missing Aldero-Signature header"


def test_empty_secret_raises() -> None:
    payload = event_body()
    header = sign_webhook(payload, SECRET, NOW)

    with pytest.raises(ConfigurationError, match="ALDERO_WEBHOOK_SECRET"):
        verify(payload, header, "")
    with pytest.raises(ConfigurationError, match="ALDERO_WEBHOOK_SECRET"):
        sign_webhook(payload, "", NOW)


def test_rejection_reason_hides_secret() -> None:
    payload = event_body()
    header = sign_webhook(payload, "whsec_other", NOW)

    with pytest.raises(InvalidWebhookError) as raised:
        verify(payload, header)

    assert SECRET not in raised.value.reason
    assert expected_signature(payload, SECRET, NOW) not in raised.value.reason


class ManualClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_deduplicator_detects_duplicates() -> None:
    deduplicator = EventDeduplicator()

    assert deduplicator.seen("evt_1") is False
    assert deduplicator.seen("evt_1") is True
    assert deduplicator.seen("evt_2") is False
    assert deduplicator.seen("evt_1") is True
    assert len(deduplicator) == 2


def test_deduplicator_forgets_after_ttl() -> None:
    clock = ManualClock()
    deduplicator = EventDeduplicator(ttl_seconds=600, clock=clock)
    deduplicator.seen("evt_1")

    clock.now = 599.9
    assert deduplicator.seen("evt_1") is True

    clock.now = 600.0
    assert deduplicator.seen("evt_1") is False


def test_deduplicator_memory_is_bounded() -> None:
    deduplicator = EventDeduplicator(max_size=1_000)

    for number in range(100_000):
        assert deduplicator.seen(f"evt_{number}") is False

    assert len(deduplicator) == 1_000
    assert deduplicator.seen("evt_99999") is True
    assert deduplicator.seen("evt_0") is False


def test_deduplicator_forget() -> None:
    deduplicator = EventDeduplicator()
    deduplicator.seen("evt_1")

    deduplicator.forget("evt_1")
    deduplicator.forget("evt_unknown")

    assert deduplicator.seen("evt_1") is False


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_size": 0}, "max_size must be at least 1"),
        ({"ttl_seconds": 0}, "ttl_seconds must be positive"),
    ],
)
def test_deduplicator_invalid_options(options: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EventDeduplicator(**options)  # type: ignore[arg-type]


def test_huge_timestamp_rejected() -> None:
    timestamp = "9" * 400
    body = (
        b'{"id":"evt_1","type":"credits.updated",'
        b'"createdAt":"2026-12-04T00:00:00Z","data":{"userId":"a"}}'
    )
    digest = hmac.new(b"whsec_x", timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()

    with pytest.raises(InvalidWebhookError) as raised:
        verify_webhook(body, f"t={timestamp},v1={digest}", "whsec_x")

    assert "Unix time" in raised.value.reason


def test_deeply_nested_body_rejected() -> None:
    body = b"[" * 100_000 + b"]" * 100_000
    timestamp = int(time.time())
    header = sign_webhook(body, "whsec_x", timestamp)

    with pytest.raises(InvalidWebhookError) as raised:
        verify_webhook(body, header, "whsec_x")

    assert raised.value.reason == "webhook body is nested too deeply"
