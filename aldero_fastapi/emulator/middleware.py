"""ASGI middleware of the tenant API: request ids, API keys, fault rules and the request log.

For every request below ``/v1/tenants/{tenantSlug}`` it runs, in this order: assign the
request id, log the request, check the API key (a 401 or 403 ends the request), apply
the first matching fault rule, and call the routes.
"""

from __future__ import annotations

import logging
import re
import secrets

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .auth import authorize
from .connection_drop import ConnectionDroppedError, drop_connection
from .faults import FAULT_DELAY_SCOPE_KEY, FaultDelay, FaultRule, fault_status_response
from .request_log import RequestEntry
from .state import EmulatorState

logger = logging.getLogger(__name__)

REQUEST_ID_HEADER = "X-Request-Id"

# DOTALL, because a decoded path may contain a newline and must still be checked.
_TENANT_PATH = re.compile(r"/v1/tenants/(?P<tenant>[^/]+)(?P<rest>/.*)?", re.DOTALL)
_USER_PATH = re.compile(r"/billing/users/(?P<user>[^/]+)(/.*)?", re.DOTALL)
_VALID_REQUEST_ID = re.compile(r"[\x21-\x7e]{1,200}")


class TenantApiMiddleware:
    def __init__(self, app: ASGIApp, state: EmulatorState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        path = route_path(scope)
        match = _TENANT_PATH.fullmatch(path)
        if match is None:
            await self.app(scope, receive, send)
            return

        headers = Headers(scope=scope)
        request_id = _request_id(headers.get(REQUEST_ID_HEADER))
        relative_path = match.group("rest") or ""
        entry = self.state.requests.open(
            method=scope["method"],
            path=path,
            relative_path=relative_path,
            request_id=request_id,
            user_agent=headers.get("user-agent"),
        )

        statuses: list[int] = []

        async def send_with_request_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])
                MutableHeaders(scope=message).append(REQUEST_ID_HEADER, request_id)
            await send(message)

        dropped = False
        try:
            await self._serve(
                scope, receive, send_with_request_id, headers, match.group("tenant"), entry
            )
        except ConnectionDroppedError:
            dropped = True
            raise
        finally:
            entry.status = None if dropped or not statuses else statuses[-1]
            _log_request(entry, dropped)

    async def _serve(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        headers: Headers,
        tenant: str,
        entry: RequestEntry,
    ) -> None:
        denial = authorize(
            self.state.config, headers.get("authorization"), tenant, entry.relative_path
        )
        if denial is not None:
            await denial.to_response()(scope, receive, send)
            return

        rule = self.state.faults.take(scope["method"], entry.relative_path)
        if rule is None:
            await self.app(scope, receive, send)
            return

        entry.fault_id = rule.id
        logger.info(
            "Fault %s applies to %s %s (request %s): action=%s status=%d latency_ms=%d",
            rule.id,
            entry.method,
            _printable(entry.path),
            entry.request_id,
            rule.action,
            rule.status,
            rule.latency_ms,
        )
        await self._apply_fault(rule, scope, receive, send)

    async def _apply_fault(
        self, rule: FaultRule, scope: Scope, receive: Receive, send: Send
    ) -> None:
        delay = FaultDelay(rule.latency_ms / 1000)

        if rule.action in ("status", "drop"):
            await delay.wait()
            if rule.action == "status":
                await fault_status_response(rule)(scope, receive, send)
            else:
                await drop_connection(send)
            return

        # Handlers that claim an idempotency key sleep after the claim, so the request
        # counts as in progress meanwhile. The send wrapper sleeps for every other route.
        scope[FAULT_DELAY_SCOPE_KEY] = delay

        async def send_after_delay(message: Message) -> None:
            await delay.wait()
            await send(message)

        async def discard(message: Message) -> None:
            await delay.wait()

        if rule.action == "none":
            await self.app(scope, receive, send_after_delay)
            return

        await self.app(scope, receive, discard)
        if rule.action == "commit_then_status":
            await fault_status_response(rule)(scope, receive, send)
        else:
            await drop_connection(send)


def route_path(scope: Scope) -> str:
    """Return the request path below the app's mount point, without the query string."""
    path: str = scope["path"]
    root_path: str = scope.get("root_path", "")
    if not root_path or not path.startswith(root_path):
        return path
    if path == root_path:
        return ""
    if path[len(root_path)] == "/":
        return path[len(root_path) :]
    return path


def _request_id(received: str | None) -> str:
    if received is not None and _VALID_REQUEST_ID.fullmatch(received):
        return received
    return f"req_{secrets.token_hex(12)}"


def _log_request(entry: RequestEntry, dropped: bool) -> None:
    user = _USER_PATH.fullmatch(entry.relative_path)
    status = "dropped" if dropped else str(entry.status)
    logger.info(
        "%s %s %s request_id=%s user_id=%s",
        entry.method,
        _printable(entry.path),
        status,
        entry.request_id,
        _printable(user.group("user")) if user else "-",
    )


def _printable(text: str) -> str:
    """Escape control characters so that a request cannot forge log lines."""
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)
