"""Test doubles of the client tests: scripted replies, recorded sleeps, fake keys and bodies."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from random import Random
from typing import Any

import httpx

from aldero_fastapi.client import AlderoClient

# Fake keys: long enough that a leak of any part of them is easy to search for.
BILLING_KEY = "bil_test_5c0ffee4b1e9d27a86"
NOTIFICATION_KEY = "ntf_test_9e1a7d3c5b0f42d6e8"

# Never connected to, because ScriptedTransport returns every response from memory.
BASE_URL = "http://127.0.0.1:9/v1/tenants/myapp"

Reply = httpx.Response | type[httpx.TransportError] | Callable[[httpx.Request], httpx.Response]


class ScriptedTransport(httpx.MockTransport):
    """
    A mock transport that returns the scripted replies in order and records each request.

    A reply is an ``httpx.Response`` (copied for each use, so one object can be listed
    several times), an httpx TransportError class to raise, or a function of the request.
    A request beyond the script fails the test.
    """

    def __init__(self, replies: Sequence[Reply]) -> None:
        super().__init__(self._reply)
        self.replies = list(replies)
        self.requests: list[httpx.Request] = []

    def _reply(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if len(self.requests) > len(self.replies):
            raise AssertionError(
                f"request {len(self.requests)} ({request.method} {request.url.path}) "
                f"was not expected: the script has {len(self.replies)} replies"
            )

        reply = self.replies[len(self.requests) - 1]
        if isinstance(reply, type):
            raise reply("scripted failure", request=request)
        if isinstance(reply, httpx.Response):
            return httpx.Response(
                reply.status_code, headers=reply.headers, content=reply.content, request=request
            )
        return reply(request)


class SleepRecorder:
    """
    A ``sleep`` for the client that records each delay and returns at once.
    """

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


class MaxRandom(Random):
    """
    A random source whose ``uniform`` returns the upper bound, so backoff delays are exact.
    """

    def __init__(self) -> None:
        super().__init__(0)
        self.bounds: list[tuple[float, float]] = []

    def uniform(self, a: float, b: float) -> float:
        self.bounds.append((a, b))
        return b


@dataclass
class Harness:
    """
    A client wired to a scripted transport and a sleep recorder.
    """

    client: AlderoClient
    transport: ScriptedTransport
    sleep: SleepRecorder

    @property
    def requests(self) -> list[httpx.Request]:
        return self.transport.requests


HarnessFactory = Callable[..., Harness]


def json_reply(status: int, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    """Return a JSON response, for scripts."""
    return httpx.Response(status, json=body, headers=headers)


def error_reply(
    status: int, code: str, message: str, headers: dict[str, str] | None = None, **extra: Any
) -> httpx.Response:
    """Return an Aldero error response, ``{"error": {"code", "message", **extra}}``."""
    return httpx.Response(
        status, json={"error": {"code": code, "message": message, **extra}}, headers=headers
    )


ENTITLEMENTS_BODY: dict[str, Any] = {
    "userId": "alice",
    "features": ["pro_features"],
    "credits": 10,
    "subscriptions": [
        {"productId": "pro_monthly", "status": "active", "currentPeriodEnd": "2030-01-01T00:00:00Z"}
    ],
    "updatedAt": "2025-01-01T12:00:00Z",
}

ADJUSTMENT_BODY: dict[str, Any] = {
    "balance": 7,
    "transaction": {
        "id": "txn_1",
        "type": "usage",
        "amount": -3,
        "description": "3 images",
        "referenceId": "job-42",
        "reversesTransactionId": None,
        "balanceAfter": 7,
        "createdAt": "2025-01-01T12:00:00Z",
    },
}

RECEIPT_BODY: dict[str, Any] = {
    "id": "ntf_msg_1",
    "status": "queued",
    "channel": "push",
    "to": "alice",
    "templateName": "order-confirmation",
}
