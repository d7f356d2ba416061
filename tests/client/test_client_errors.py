"""Mapping of error statuses and transport failures to the exceptions of aldero_fastapi.errors."""

from __future__ import annotations

import email.utils
import time

import httpx
import pytest

from aldero_fastapi.client.wire import parse_retry_after
from aldero_fastapi.errors import (
    AlderoAPIError,
    AlderoConnectionError,
    AlderoTimeoutError,
    ConflictError,
    ForbiddenError,
    IdempotencyMismatchError,
    InsufficientCreditsError,
    InvalidRequestError,
    NotFoundError,
    RateLimitedError,
    ServerError,
    UnauthorizedError,
)

from .helpers import NOTIFICATION_KEY, HarnessFactory, error_reply


@pytest.mark.parametrize(
    ("status", "code", "error_class"),
    [
        (400, "bad_request", AlderoAPIError),
        (401, "unauthorized", UnauthorizedError),
        (402, "insufficient_credits", InsufficientCreditsError),
        (403, "forbidden", ForbiddenError),
        (404, "not_found", NotFoundError),
        (405, "method_not_allowed", AlderoAPIError),
        (409, "conflict", ConflictError),
        (422, "validation_error", InvalidRequestError),
        (422, "idempotency_mismatch", IdempotencyMismatchError),
        (429, "rate_limited", RateLimitedError),
        (500, "internal_error", ServerError),
        (502, "bad_gateway", ServerError),
        (503, "service_unavailable", ServerError),
        (504, "gateway_timeout", ServerError),
    ],
)
async def test_status_maps_to_class(
    make_harness: HarnessFactory, status: int, code: str, error_class: type[AlderoAPIError]
) -> None:
    # adjust_credits without a reference id is never retried, so one reply is enough.
    harness = make_harness([error_reply(status, code, "the service message")])

    with pytest.raises(AlderoAPIError) as caught:
        await harness.client.billing.adjust_credits("alice", type="usage", amount=-1)

    error = caught.value
    assert type(error) is error_class
    assert error.status_code == status
    assert error.code == code
    assert error.request_id == harness.requests[0].headers["X-Request-Id"]
    assert error.message == (
        f"Aldero billing API returned {status} {code} for POST "
        "/billing/users/alice/credits: the service message"
    )
    assert str(error) == error.message


async def test_insufficient_credits_fields(make_harness: HarnessFactory) -> None:
    harness = make_harness(
        [error_reply(402, "insufficient_credits", "not enough", balance=3, required=5)]
    )

    with pytest.raises(InsufficientCreditsError) as caught:
        await harness.client.billing.adjust_credits("bob", type="usage", amount=-5)

    error = caught.value
    assert error.balance == 3
    assert error.required == 5
    assert error.user_id == "bob"
    assert error.details == {"balance": 3, "required": 5}


async def test_insufficient_credits_without_fields(make_harness: HarnessFactory) -> None:
    harness = make_harness([httpx.Response(402, text="Payment Required")])

    with pytest.raises(InsufficientCreditsError) as caught:
        await harness.client.billing.adjust_credits("bob", type="usage", amount=-5)

    assert caught.value.balance == 0
    assert caught.value.required == 0
    assert caught.value.code == "insufficient_credits"


async def test_invalid_request_keeps_details(make_harness: HarnessFactory) -> None:
    harness = make_harness(
        [
            error_reply(
                422,
                "missing_variables",
                "Template 'order-confirmation' needs orderNumber, total",
                missing=["orderNumber", "total"],
            )
        ],
        api_key=NOTIFICATION_KEY,
        max_retries=0,
    )

    with pytest.raises(InvalidRequestError) as caught:
        await harness.client.notifications.send(
            template_name="order-confirmation", channel="push", to="alice"
        )

    error = caught.value
    assert type(error) is InvalidRequestError
    assert error.code == "missing_variables"
    assert error.details == {"missing": ["orderNumber", "total"]}
    assert "Aldero notifications API returned 422 missing_variables" in error.message
    assert "POST /notifications/send" in error.message


async def test_idempotency_mismatch_class(make_harness: HarnessFactory) -> None:
    harness = make_harness([error_reply(422, "idempotency_mismatch", "other body")])

    with pytest.raises(IdempotencyMismatchError) as caught:
        await harness.client.billing.adjust_credits(
            "alice", type="usage", amount=-1, reference_id="job-1"
        )

    assert isinstance(caught.value, InvalidRequestError)
    assert caught.value.code == "idempotency_mismatch"


async def test_rate_limited_retry_after_seconds(make_harness: HarnessFactory) -> None:
    harness = make_harness([error_reply(429, "rate_limited", "slow down", {"Retry-After": "7"})])

    with pytest.raises(RateLimitedError) as caught:
        await harness.client.billing.adjust_credits("alice", type="usage", amount=-1)

    assert caught.value.retry_after == 7.0


async def test_rate_limited_retry_after_date(make_harness: HarnessFactory) -> None:
    retry_at = email.utils.formatdate(time.time() + 120, usegmt=True)
    harness = make_harness(
        [error_reply(429, "rate_limited", "slow down", {"Retry-After": retry_at})]
    )

    with pytest.raises(RateLimitedError) as caught:
        await harness.client.billing.adjust_credits("alice", type="usage", amount=-1)

    retry_after = caught.value.retry_after
    assert retry_after is not None
    # formatdate drops the fraction of a second, and the test itself takes some time.
    assert 115 <= retry_after <= 120


async def test_conflict_retry_after(make_harness: HarnessFactory) -> None:
    harness = make_harness(
        [error_reply(409, "request_in_progress", "still running", {"Retry-After": "1"})]
    )

    with pytest.raises(ConflictError) as caught:
        await harness.client.billing.adjust_credits("alice", type="usage", amount=-1)

    assert caught.value.retry_after == 1.0
    assert caught.value.code == "request_in_progress"


async def test_server_error_retry_after(make_harness: HarnessFactory) -> None:
    harness = make_harness(
        [error_reply(503, "service_unavailable", "maintenance", {"Retry-After": "30"})]
    )

    with pytest.raises(ServerError) as caught:
        await harness.client.billing.sync_user("alice")

    assert caught.value.retry_after == 30.0


async def test_non_json_error_body(make_harness: HarnessFactory) -> None:
    harness = make_harness([httpx.Response(503, text="<html>Bad things</html>")])

    with pytest.raises(ServerError) as caught:
        await harness.client.billing.adjust_credits("alice", type="usage", amount=-1)

    error = caught.value
    assert error.status_code == 503
    assert error.code == "service_unavailable"
    assert error.retry_after is None
    assert error.message == (
        "Aldero billing API returned 503 service_unavailable for POST "
        "/billing/users/alice/credits: Service Unavailable (the response body contains "
        "no Aldero error object)"
    )


@pytest.mark.parametrize(
    "body",
    [
        {"error": "a plain string"},
        {"detail": "FastAPI style"},
        ["a", "list"],
        {"error": {"code": 17, "message": None}},
    ],
)
async def test_unexpected_error_body(make_harness: HarnessFactory, body: object) -> None:
    harness = make_harness([httpx.Response(404, json=body)])

    with pytest.raises(NotFoundError) as caught:
        await harness.client.billing.sync_user("alice")

    error = caught.value
    assert error.code == "not_found"
    assert "returned 404 not_found for POST /billing/users/alice/sync" in error.message


async def test_unknown_status_code(make_harness: HarnessFactory) -> None:
    harness = make_harness([httpx.Response(418, text="teapot")])

    with pytest.raises(AlderoAPIError) as caught:
        await harness.client.billing.sync_user("alice")

    assert type(caught.value) is AlderoAPIError
    assert caught.value.code == "http_error"
    assert caught.value.status_code == 418


@pytest.mark.parametrize(
    "failure",
    [httpx.ConnectTimeout, httpx.ReadTimeout, httpx.WriteTimeout, httpx.PoolTimeout],
)
async def test_timeout_maps_to_timeout_error(
    make_harness: HarnessFactory, failure: type[httpx.TransportError]
) -> None:
    harness = make_harness([failure], max_retries=0)

    with pytest.raises(AlderoTimeoutError) as caught:
        await harness.client.billing.get_entitlements("alice")

    error = caught.value
    assert error.status_code is None
    assert error.request_id == harness.requests[0].headers["X-Request-Id"]
    assert "did not respond to GET /billing/users/alice/entitlements" in error.message
    assert failure.__name__ in error.message
    assert isinstance(error.__cause__, failure)


@pytest.mark.parametrize(
    "failure",
    [httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError, httpx.UnsupportedProtocol],
)
async def test_transport_failure_maps_to_connection_error(
    make_harness: HarnessFactory, failure: type[httpx.TransportError]
) -> None:
    harness = make_harness([failure], max_retries=0)

    with pytest.raises(AlderoConnectionError) as caught:
        await harness.client.billing.get_entitlements("alice")

    error = caught.value
    assert error.status_code is None
    assert "failed without a response" in error.message
    assert failure.__name__ in error.message
    assert isinstance(error.__cause__, failure)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("5", 5.0),
        (" 5 ", 5.0),
        ("1.5", 1.5),
        ("0", 0.0),
        ("-3", 0.0),
        ("inf", None),
        ("nan", None),
        ("soon", None),
        ("", None),
        (None, None),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),
    ],
)
def test_parse_retry_after(header: str | None, expected: float | None) -> None:
    assert parse_retry_after(header) == expected


def test_parse_retry_after_future_date() -> None:
    now = 1_700_000_000.0
    header = email.utils.formatdate(now + 90, usegmt=True)

    assert parse_retry_after(header, now=now) == 90.0
