"""Concurrent requests for one cold user, and how many upstream fetches they cause.

Usage: ``python -m benchmarks.stampede [--requests 1000]``

The app runs under one uvicorn worker and the emulator in a separate process. The
gated route should cause one entitlements fetch however many requests arrive at once.
The naive route, which fetches on every request, is shown for comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import Counter

import httpx

from aldero_fastapi.testing import make_token
from benchmarks.servers import JWT_SECRET, app_process, emulator_process


async def stampede(app_url: str, admin_url: str, route: str, user_id: str, count: int) -> None:
    """Send ``count`` concurrent requests to ``route`` for a cold user and print the fetches."""
    token = make_token(user_id, secret=JWT_SECRET)
    limits = httpx.Limits(max_connections=count, max_keepalive_connections=count)
    fetch_path = f"/v1/tenants/myapp/billing/users/{user_id}/entitlements"

    # Generous, because the naive route queues 1,000 fetches behind the app's pool.
    async with httpx.AsyncClient(limits=limits, timeout=300) as client:
        await client.delete(f"{admin_url}/requests")

        started = time.perf_counter()
        responses = await asyncio.gather(
            *(
                client.get(f"{app_url}/{route}", headers={"Authorization": f"Bearer {token}"})
                for _ in range(count)
            )
        )
        elapsed = time.perf_counter() - started

        served = (await client.get(f"{admin_url}/requests")).json()["requests"]

    fetches = sum(1 for entry in served if entry["path"] == fetch_path)
    statuses = Counter(response.status_code for response in responses)
    print(
        f"| {route} | {count} | {dict(statuses)} | {fetches} | {elapsed:.2f} |",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000, help="concurrent requests per route")
    arguments = parser.parse_args()

    with emulator_process() as base_url, app_process(base_url) as app_url:
        admin_url = base_url.split("/v1/")[0] + "/_emulator"
        print("| route | concurrent requests | statuses | upstream fetches | seconds |")
        print("|---|---|---|---|---|")
        # A different user per route, so that each starts with a cold cache.
        asyncio.run(stampede(app_url, admin_url, "gated", "alice", arguments.requests))
        asyncio.run(stampede(app_url, admin_url, "naive", "carol", arguments.requests))


if __name__ == "__main__":
    main()
