"""The API key never appears in a repr, a log line or an exception."""

from __future__ import annotations

import logging
import traceback

import httpx
import pytest

from aldero_fastapi.client import AlderoClient
from aldero_fastapi.errors import AlderoError, ConfigurationError, UnauthorizedError

from .helpers import (
    BASE_URL,
    BILLING_KEY,
    ENTITLEMENTS_BODY,
    NOTIFICATION_KEY,
    HarnessFactory,
    error_reply,
    json_reply,
)

# The part after the prefix, so that a leak of the key without its prefix is caught too.
BILLING_SECRET = BILLING_KEY.removeprefix("bil_")
NOTIFICATION_SECRET = NOTIFICATION_KEY.removeprefix("ntf_")


def assert_no_key(text: str) -> None:
    # The checks run outside the assert, so that a failure report shows no key.
    billing_key_found = BILLING_SECRET in text
    notification_key_found = NOTIFICATION_SECRET in text
    assert not billing_key_found, "the billing key appears in the text"
    assert not notification_key_found, "the notification key appears in the text"


def describe_error(error: BaseException) -> str:
    """Return every text a caller could print for ``error``, its cause and its traceback."""
    parts = [str(error), repr(error), "".join(traceback.format_exception(error))]
    if isinstance(error, AlderoError):
        parts.append(repr(error.details))
    if error.__cause__ is not None:
        parts.extend([str(error.__cause__), repr(error.__cause__)])
    return "\n".join(parts)


def test_client_repr_without_key() -> None:
    client = AlderoClient(base_url=BASE_URL, api_key=BILLING_KEY)

    texts = [
        repr(client),
        str(client),
        repr(client.billing),
        repr(client.notifications),
        repr(vars(client)),
    ]

    for text in texts:
        assert_no_key(text)
    assert repr(client) == f"AlderoClient(base_url='{BASE_URL}', service='billing')"


async def test_errors_without_key(make_harness: HarnessFactory) -> None:
    harness = make_harness(
        [
            error_reply(401, "unauthorized", "unknown key"),
            error_reply(503, "service_unavailable", "down"),
            error_reply(503, "service_unavailable", "down"),
            error_reply(503, "service_unavailable", "down"),
            httpx.ConnectError,
            httpx.ReadTimeout,
        ],
        max_retries=2,
    )
    billing = harness.client.billing
    errors: list[BaseException] = []

    for call in (
        billing.get_entitlements("alice"),
        billing.get_entitlements("alice"),
        billing.sync_user("alice"),
        billing.adjust_credits("alice", type="usage", amount=-1),
    ):
        with pytest.raises(AlderoError) as caught:
            await call
        errors.append(caught.value)

    assert len(errors) == 4
    for error in errors:
        assert_no_key(describe_error(error))


async def test_wrong_service_error_without_key(make_harness: HarnessFactory) -> None:
    harness = make_harness([], api_key=NOTIFICATION_KEY)

    with pytest.raises(ConfigurationError) as caught:
        await harness.client.billing.get_entitlements("alice")

    assert_no_key(describe_error(caught.value))


def test_invalid_key_error_without_key() -> None:
    key = "bil_" + BILLING_SECRET + " with a space"

    with pytest.raises(ConfigurationError) as caught:
        AlderoClient(base_url=BASE_URL, api_key=key)

    assert_no_key(describe_error(caught.value))


async def test_key_echoed_by_service_redacted(make_harness: HarnessFactory) -> None:
    harness = make_harness(
        [
            error_reply(
                401,
                "unauthorized",
                f"Unknown API key {BILLING_KEY}",
                key=BILLING_KEY,
                tried=[f"Bearer {BILLING_KEY}"],
            )
        ]
    )

    with pytest.raises(UnauthorizedError) as caught:
        await harness.client.billing.get_entitlements("alice")

    error = caught.value
    assert_no_key(describe_error(error))
    assert "Unknown API key [redacted]" in error.message
    assert error.details == {"key": "[redacted]", "tried": ["Bearer [redacted]"]}


async def test_logs_without_key(
    make_harness: HarnessFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    harness = make_harness(
        [
            error_reply(503, "service_unavailable", "down"),
            httpx.RemoteProtocolError,
            json_reply(200, ENTITLEMENTS_BODY),
            error_reply(401, "unauthorized", f"bad key {BILLING_KEY}"),
        ]
    )

    await harness.client.billing.get_entitlements("alice")
    with pytest.raises(UnauthorizedError):
        await harness.client.billing.get_entitlements("alice")

    assert len(caplog.records) >= 6
    assert_no_key(caplog.text)
    for record in caplog.records:
        assert_no_key(record.getMessage())
        assert_no_key(repr(record.args))
