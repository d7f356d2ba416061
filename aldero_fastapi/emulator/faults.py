"""Fault rules: injected latency, error statuses and dropped connections on the tenant API.

Rule paths are fnmatch globs on the path relative to the tenant base, so
``/billing/users/*/credits`` matches ``/billing/users/alice/credits``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import threading
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Literal

from starlette.requests import Request
from starlette.responses import JSONResponse

from .errors import error_response
from .ids import new_id

FaultAction = Literal["status", "drop", "commit_then_status", "commit_then_drop", "none"]

# ASGI scope key under which the middleware hands a request's pending latency to handlers.
FAULT_DELAY_SCOPE_KEY = "aldero_emulator.fault_delay"

_FAULT_ERRORS = {
    429: ("rate_limited", "Too many requests. Wait before sending more."),
    500: ("internal_error", "The service failed to process the request. Retry later."),
    502: ("bad_gateway", "An upstream service returned an invalid response. Retry later."),
    503: ("service_unavailable", "The service is temporarily unavailable. Retry later."),
    504: ("gateway_timeout", "An upstream service timed out. Retry later."),
}


@dataclass
class FaultRule:
    """One fault rule. ``remaining`` is the number of uses left, None for unlimited."""

    id: str
    method: str
    path: str
    action: FaultAction
    status: int
    latency_ms: int
    retry_after: int | None
    count: int | None
    probability: float
    remaining: int | None
    applied: int = 0

    def matches(self, method: str, path: str) -> bool:
        method_matches = self.method == "*" or self.method == method.upper()
        return method_matches and fnmatchcase(path, self.path)


class FaultRegistry:
    """The fault rules of one emulator, checked in the order they were added."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._rules: list[FaultRule] = []
        self._lock = threading.Lock()

    def add(
        self,
        *,
        method: str,
        path: str,
        action: FaultAction,
        status: int,
        latency_ms: int,
        retry_after: int | None,
        count: int | None,
        probability: float,
    ) -> FaultRule:
        rule = FaultRule(
            id=new_id("fault_"),
            method=method.upper(),
            path=path,
            action=action,
            status=status,
            latency_ms=latency_ms,
            retry_after=retry_after,
            count=count,
            probability=probability,
            remaining=count,
        )
        with self._lock:
            self._rules.append(rule)
        return dataclasses.replace(rule)

    def list_rules(self) -> list[FaultRule]:
        with self._lock:
            return [dataclasses.replace(rule) for rule in self._rules]

    def remove(self, rule_id: str) -> bool:
        with self._lock:
            kept = [rule for rule in self._rules if rule.id != rule_id]
            removed = len(kept) != len(self._rules)
            self._rules = kept
        return removed

    def clear(self) -> None:
        with self._lock:
            self._rules = []

    def reseed(self, seed: int | None) -> None:
        """Restart the probability draws from ``seed``, or from OS entropy when None."""
        with self._lock:
            self._rng.seed(seed)

    def take(self, method: str, path: str) -> FaultRule | None:
        """Return the first rule that applies to this request and use it up once.

        A rule applies when method and path match, it has uses left, and the random draw
        falls under its probability. A rule whose draw fails is skipped for this request.
        """
        with self._lock:
            for rule in self._rules:
                if not rule.matches(method, path):
                    continue
                if rule.remaining is not None and rule.remaining <= 0:
                    continue
                if rule.probability < 1.0 and self._rng.random() >= rule.probability:
                    continue

                if rule.remaining is not None:
                    rule.remaining -= 1
                rule.applied += 1
                return dataclasses.replace(rule)
        return None


class FaultDelay:
    """The injected latency of one request. Only the first ``wait()`` sleeps."""

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        self._done = False

    async def wait(self) -> None:
        if self._done:
            return
        self._done = True
        if self._seconds > 0:
            await asyncio.sleep(self._seconds)


def fault_delay(request: Request) -> FaultDelay:
    """Return the pending injected latency of ``request``, or one of 0 s."""
    delay = request.scope.get(FAULT_DELAY_SCOPE_KEY)
    return delay if isinstance(delay, FaultDelay) else FaultDelay(0)


def fault_status_response(rule: FaultRule) -> JSONResponse:
    """Build the error response that a ``status`` rule returns in place of the real one."""
    code, message = _FAULT_ERRORS.get(
        rule.status, ("fault_injected", f"The request failed with status {rule.status}.")
    )
    headers = {}
    if rule.retry_after is not None:
        headers["Retry-After"] = str(rule.retry_after)
        message = f"{message} Retry after {rule.retry_after} seconds."
    return error_response(rule.status, code, message, headers=headers)
