"""Retry rules: which calls and failures are retried, how often, and how long the client waits."""

from __future__ import annotations

import logging

import httpx
import pytest

from aldero_fastapi.errors import (
    AlderoAPIError,
    AlderoConnectionError,
    AlderoTimeoutError,
    ConflictError,
    RateLimitedError,
    ServerError,
)
from aldero_fastapi.request_context import current_request_id

from .helpers import (
    ADJUSTMENT_BODY,
    ENTITLEMENTS_BODY,
    NOTIFICATION_KEY,
    RECEIPT_BODY,
    HarnessFactory,
    MaxRandom,
    error_reply,
    json_reply,
)

UNAVAILABLE = error_reply(503, "service_unavailable", "try again")


@pytest.mark.parametrize("max_retries", [0, 1, 2, 4])
async def test_get_retried_exactly_max_retries(
    make_harness: HarnessFactory, max_retries: int
) -> None:
    harness = make_harness([UNAVAILABLE] * (max_retries + 1), max_retries=max_retries)

    with pytest.raises(ServerError) as caught:
        await harness.client.billing.get_entitlements("alice")

    assert len(harness.requests) == max_retries + 1
    assert len(harness.sleep.delays) == max_retries
    assert caught.value.status_code == 503


async def test_last_error_raised(make_harness: HarnessFactory) -> None:
    harness = make_harness(
        [
            httpx.ConnectError,
            error_reply(502, "bad_gateway", "proxy"),
            error_reply(504, "gateway_timeout", "last one"),
        ]
    )

    with pytest.raises(ServerError) as caught:
        await harness.client.billing.get_entitlements("alice")

    assert caught.value.status_code == 504
    assert "last one" in caught.value.message
    assert len(harness.requests) == 3


async def test_get_succeeds_on_third_attempt(make_harness: HarnessFactory) -> None:
    harness = make_harness([UNAVAILABLE, UNAVAILABLE, json_reply(200, ENTITLEMENTS_BODY)])

    entitlements = await harness.client.billing.get_entitlements("alice")

    assert entitlements.credits == 10
    assert len(harness.requests) == 3
    assert len(harness.sleep.delays) == 2


@pytest.mark.parametrize(
    "failure",
    [
        httpx.ConnectError,
        httpx.ConnectTimeout,
        httpx.ReadTimeout,
        httpx.ReadError,
        httpx.RemoteProtocolError,
        error_reply(429, "rate_limited", "slow down"),
        error_reply(502, "bad_gateway", "proxy"),
        error_reply(503, "service_unavailable", "busy"),
        error_reply(504, "gateway_timeout", "slow"),
    ],
    ids=lambda failure: getattr(failure, "__name__", None) or str(failure.status_code),
)
async def test_transient_failure_retried(make_harness: HarnessFactory, failure: object) -> None:
    harness = make_harness([failure, json_reply(200, ENTITLEMENTS_BODY)])

    entitlements = await harness.client.billing.get_entitlements("alice")

    assert entitlements.user_id == "alice"
    assert len(harness.requests) == 2


@pytest.mark.parametrize("status", [400, 401, 402, 403, 404, 422, 500])
async def test_permanent_status_not_retried(make_harness: HarnessFactory, status: int) -> None:
    harness = make_harness([error_reply(status, "some_error", "no")])

    with pytest.raises(AlderoAPIError) as caught:
        await harness.client.billing.get_entitlements("alice")

    assert caught.value.status_code == status
    assert len(harness.requests) == 1
    assert harness.sleep.delays == []


async def test_local_protocol_error_not_retried(make_harness: HarnessFactory) -> None:
    harness = make_harness([httpx.UnsupportedProtocol])

    with pytest.raises(AlderoConnectionError):
        await harness.client.billing.get_entitlements("alice")

    assert len(harness.requests) == 1


async def test_post_without_reference_id_sent_once(make_harness: HarnessFactory) -> None:
    for failure in (UNAVAILABLE, httpx.RemoteProtocolError, httpx.ReadTimeout):
        harness = make_harness([failure])

        with pytest.raises((ServerError, AlderoConnectionError, AlderoTimeoutError)):
            await harness.client.billing.adjust_credits("alice", type="usage", amount=-1)

        assert len(harness.requests) == 1
        assert harness.sleep.delays == []


async def test_post_with_reference_id_retried_identically(make_harness: HarnessFactory) -> None:
    harness = make_harness(
        [httpx.RemoteProtocolError, UNAVAILABLE, json_reply(200, ADJUSTMENT_BODY)]
    )

    result = await harness.client.billing.adjust_credits(
        "alice", type="usage", amount=-3, description="3 images", reference_id="job-42"
    )

    assert result.balance == 7
    assert len(harness.requests) == 3
    bodies = {request.content for request in harness.requests}
    request_ids = {request.headers["X-Request-Id"] for request in harness.requests}
    assert len(bodies) == 1
    assert b'"referenceId":"job-42"' in bodies.pop()
    assert len(request_ids) == 1


async def test_post_with_reference_id_max_attempts(make_harness: HarnessFactory) -> None:
    harness = make_harness([UNAVAILABLE] * 4, max_retries=3)

    with pytest.raises(ServerError):
        await harness.client.billing.adjust_credits(
            "alice", type="usage", amount=-1, reference_id="job-1"
        )

    assert len(harness.requests) == 4


async def test_request_id_reused_from_context(make_harness: HarnessFactory) -> None:
    harness = make_harness([UNAVAILABLE, json_reply(200, ENTITLEMENTS_BODY)])
    token = current_request_id.set("req_from_app")
    try:
        await harness.client.billing.get_entitlements("alice")
    finally:
        current_request_id.reset(token)

    assert [request.headers["X-Request-Id"] for request in harness.requests] == [
        "req_from_app",
        "req_from_app",
    ]


async def test_sync_user_not_retried(make_harness: HarnessFactory) -> None:
    harness = make_harness([UNAVAILABLE])

    with pytest.raises(ServerError):
        await harness.client.billing.sync_user("carol")

    assert len(harness.requests) == 1


async def test_send_retried_with_same_idempotency_key(make_harness: HarnessFactory) -> None:
    harness = make_harness(
        [httpx.ReadTimeout, UNAVAILABLE, json_reply(202, RECEIPT_BODY)], api_key=NOTIFICATION_KEY
    )

    receipt = await harness.client.notifications.send(
        template_name="order-confirmation",
        channel="push",
        to="alice",
        variables={"orderNumber": "A-1", "total": "12.50"},
    )

    assert receipt.status == "queued"
    assert len(harness.requests) == 3
    keys = {request.headers["Idempotency-Key"] for request in harness.requests}
    bodies = {request.content for request in harness.requests}
    request_ids = {request.headers["X-Request-Id"] for request in harness.requests}
    assert len(keys) == 1
    assert len(bodies) == 1
    assert len(request_ids) == 1


async def test_send_given_key_reused_on_retry(make_harness: HarnessFactory) -> None:
    harness = make_harness([UNAVAILABLE, json_reply(202, RECEIPT_BODY)], api_key=NOTIFICATION_KEY)

    await harness.client.notifications.send(
        template_name="welcome-email", channel="email", to="a@b.c", idempotency_key="welcome-a"
    )

    keys = [request.headers["Idempotency-Key"] for request in harness.requests]
    assert keys == ["welcome-a", "welcome-a"]


async def test_request_in_progress_retried(make_harness: HarnessFactory) -> None:
    in_progress = error_reply(409, "request_in_progress", "busy", {"Retry-After": "1"})
    harness = make_harness([in_progress, json_reply(200, ADJUSTMENT_BODY)])

    result = await harness.client.billing.adjust_credits(
        "alice", type="usage", amount=-3, reference_id="job-42"
    )

    assert result.balance == 7
    assert len(harness.requests) == 2
    assert harness.sleep.delays == [1.0]


async def test_other_conflict_not_retried(make_harness: HarnessFactory) -> None:
    harness = make_harness([error_reply(409, "already_reversed", "twice")])

    with pytest.raises(ConflictError):
        await harness.client.billing.adjust_credits(
            "alice", type="refund", amount=3, reference_id="r-1"
        )

    assert len(harness.requests) == 1


async def test_idempotency_mismatch_not_retried(make_harness: HarnessFactory) -> None:
    harness = make_harness([error_reply(422, "idempotency_mismatch", "other body")])

    with pytest.raises(AlderoAPIError):
        await harness.client.billing.adjust_credits(
            "alice", type="usage", amount=-2, reference_id="job-42"
        )

    assert len(harness.requests) == 1


async def test_retry_after_seconds_honoured(make_harness: HarnessFactory) -> None:
    limited = error_reply(429, "rate_limited", "slow down", {"Retry-After": "2"})
    harness = make_harness([limited, limited, json_reply(200, ENTITLEMENTS_BODY)])

    await harness.client.billing.get_entitlements("alice")

    assert harness.sleep.delays == [2.0, 2.0]


async def test_retry_after_on_503_honoured(make_harness: HarnessFactory) -> None:
    unavailable = error_reply(503, "service_unavailable", "busy", {"Retry-After": "0.5"})
    harness = make_harness([unavailable, json_reply(200, ENTITLEMENTS_BODY)])

    await harness.client.billing.get_entitlements("alice")

    assert harness.sleep.delays == [0.5]


async def test_retry_after_above_cap_raises(make_harness: HarnessFactory) -> None:
    limited = error_reply(429, "rate_limited", "come back later", {"Retry-After": "31"})
    harness = make_harness([limited])

    with pytest.raises(RateLimitedError) as caught:
        await harness.client.billing.get_entitlements("alice")

    assert caught.value.retry_after == 31.0
    assert len(harness.requests) == 1
    assert harness.sleep.delays == []


async def test_retry_after_cap_configurable(make_harness: HarnessFactory) -> None:
    limited = error_reply(429, "rate_limited", "come back later", {"Retry-After": "45"})
    harness = make_harness(
        [limited, json_reply(200, ENTITLEMENTS_BODY)], max_retry_after_seconds=60
    )

    await harness.client.billing.get_entitlements("alice")

    assert harness.sleep.delays == [45.0]


async def test_backoff_exponential_and_capped(make_harness: HarnessFactory) -> None:
    random = MaxRandom()
    harness = make_harness(
        [UNAVAILABLE] * 6,
        max_retries=5,
        backoff_seconds=0.5,
        max_backoff_seconds=3.0,
        random=random,
    )

    with pytest.raises(ServerError):
        await harness.client.billing.get_entitlements("alice")

    assert harness.sleep.delays == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert random.bounds == [(0.0, 0.5), (0.0, 1.0), (0.0, 2.0), (0.0, 3.0), (0.0, 3.0)]


async def test_backoff_full_jitter(make_harness: HarnessFactory) -> None:
    harness = make_harness([UNAVAILABLE] * 3, backoff_seconds=0.25, max_backoff_seconds=5.0)

    with pytest.raises(ServerError):
        await harness.client.billing.get_entitlements("alice")

    first, second = harness.sleep.delays
    assert 0.0 <= first <= 0.25
    assert 0.0 <= second <= 0.5


async def test_retry_logged_as_warning(
    make_harness: HarnessFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="aldero_fastapi.client")
    harness = make_harness(
        [UNAVAILABLE, httpx.RemoteProtocolError, json_reply(200, ENTITLEMENTS_BODY)],
        random=MaxRandom(),
    )

    await harness.client.billing.get_entitlements("alice")

    request_id = harness.requests[0].headers["X-Request-Id"]
    warnings = [record for record in caplog.records if record.levelno == logging.WARNING]
    debug_lines = [record for record in caplog.records if record.levelno == logging.DEBUG]
    assert len(warnings) == 2
    assert len(debug_lines) == 3
    assert all(record.name == "aldero_fastapi.client" for record in caplog.records)

    first, second = (record.getMessage() for record in warnings)
    assert "GET /billing/users/alice/entitlements" in first
    assert "503 service_unavailable" in first
    assert "attempt 2/3" in first
    assert "0.250 s" in first
    assert request_id in first
    assert "RemoteProtocolError" in second
    assert "attempt 3/3" in second
    assert "0.500 s" in second


async def test_retry_after_above_cap_logged(
    make_harness: HarnessFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="aldero_fastapi.client")
    limited = error_reply(429, "rate_limited", "later", {"Retry-After": "120"})
    harness = make_harness([limited])

    with pytest.raises(RateLimitedError):
        await harness.client.billing.get_entitlements("alice")

    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 1
    assert "Not retrying" in messages[0]
    assert "120.0 s" in messages[0]


async def test_repeated_retry_warnings_held_back(
    make_harness: HarnessFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="aldero_fastapi.client")
    ok = json_reply(200, ENTITLEMENTS_BODY)
    harness = make_harness([UNAVAILABLE, ok, UNAVAILABLE, ok, UNAVAILABLE, ok])

    for _ in range(3):
        await harness.client.billing.get_entitlements("alice")

    messages = [record.getMessage() for record in caplog.records]
    assert len(harness.requests) == 6
    assert len(messages) == 1
    assert messages[0].endswith(f"(request id {harness.requests[0].headers['X-Request-Id']})")
