"""Idempotent execution of a request: claim the key, apply once, replay the stored response.

A key is claimed in one transaction and completed in the transaction that applies the
request, so the stored response and the change it describes commit together. Only
successful responses are stored. A failed request releases its claim, so a retry (for
example after a top-up) runs again.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from starlette.responses import Response

from .errors import ApiError
from .store import EmulatorStore, StoreTransaction

REPLAYED_HEADER = "Idempotent-Replayed"

# A claim older than this is treated as abandoned, for example by a process that crashed
# while a request was in flight. It is longer than the maximum injected latency of 60 s.
CLAIM_LEASE_SECONDS = 300.0

Operation = Callable[[StoreTransaction], tuple[int, bytes]]


@dataclass(frozen=True)
class IdempotencyKey:
    """A client key within its scope, with the fingerprint of the request body.

    ``label`` names the key in error messages, such as ``referenceId``.
    """

    scope: str
    key: str
    fingerprint: str
    label: str


def fingerprint(payload: object) -> str:
    """Return a stable hash of the JSON-serialisable parts of a request that must match."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def claim_key(store: EmulatorStore, key: IdempotencyKey) -> Response | None:
    """Claim ``key`` for a new request, or return the stored response to replay.

    Raises ApiError 422 ``idempotency_mismatch`` when the key was used with another body,
    and 409 ``request_in_progress`` while the first request with the key still runs.
    """
    now = time.time()
    with store.transaction() as tx:
        record = tx.get_idempotency_record(key.scope, key.key)
        abandoned = (
            record is not None
            and record.state == "in_progress"
            and now - record.claimed_at > CLAIM_LEASE_SECONDS
        )
        if record is None or abandoned:
            tx.claim_idempotency_key(key.scope, key.key, key.fingerprint, now)
            return None

    if record.fingerprint != key.fingerprint:
        raise ApiError(
            422,
            "idempotency_mismatch",
            f"{key.label} {key.key!r} was already used with a different request body. "
            "Resend the original body, or use a new key for a new request.",
        )

    if record.state != "completed" or record.status_code is None or record.body is None:
        raise ApiError(
            409,
            "request_in_progress",
            f"A request with {key.label} {key.key!r} is still being processed. "
            "Retry it after a moment.",
            headers={"Retry-After": "1"},
        )

    return Response(
        record.body,
        status_code=record.status_code,
        media_type="application/json",
        headers={REPLAYED_HEADER: "true"},
    )


def release_key(store: EmulatorStore, key: IdempotencyKey) -> None:
    with store.transaction() as tx:
        tx.delete_idempotency_key(key.scope, key.key)


async def run_idempotent(
    store: EmulatorStore,
    key: IdempotencyKey | None,
    operation: Operation,
    *,
    before_apply: Callable[[], Awaitable[None]],
) -> Response:
    """Run ``operation`` unless the key already has a stored response, and return the response.

    ``operation`` runs inside a write transaction and returns the status and JSON body.
    ``before_apply`` runs after the claim, so a request held there (by injected latency)
    counts as in progress. Without a key the operation simply runs.
    """
    if key is not None:
        replay = claim_key(store, key)
        if replay is not None:
            return replay

    completed = False
    try:
        await before_apply()

        with store.transaction() as tx:
            status_code, body = operation(tx)
            if key is not None:
                tx.complete_idempotency_key(key.scope, key.key, status_code, body)
        completed = True
    finally:
        if key is not None and not completed:
            release_key(store, key)

    return Response(body, status_code=status_code, media_type="application/json")
