"""Small apps built on the plugin, and helpers that read the emulator's state."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any
from urllib.parse import quote

import httpx
from fastapi import Depends, FastAPI, HTTPException

from aldero_fastapi import (
    Aldero,
    AlderoSettings,
    AuthenticatedUser,
    Credits,
    CreditSession,
    CurrentUser,
    InsufficientCreditsError,
    Notifier,
    UserEntitlements,
    deduct_credits,
    require_feature,
    trusted_header_user,
)
from aldero_fastapi.emulator import EmulatorServer

# Module level, because string annotations resolve against the module's globals.
pages_charge = deduct_credits(lambda request: int(request.headers["x-pages"]), "Pages")
gateway_user = trusted_header_user("X-User-Id")


class HandlerFailure(Exception):
    """An error of the app's own code, raised after credits were deducted."""


def build_app(settings: AlderoSettings, **aldero_options: Any) -> tuple[FastAPI, Aldero]:
    """Return an app with one route per behaviour of the credit and feature dependencies."""
    aldero = Aldero(settings=settings, **aldero_options)
    app = FastAPI(lifespan=aldero.lifespan)
    aldero.install(app)
    app.state.deducted = asyncio.Event()
    app.state.release = asyncio.Event()

    @app.get("/public")
    async def public() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/bare")
    async def bare(user: CurrentUser) -> dict[str, str]:
        return {"userId": user.id}

    @app.get("/me")
    async def me(entitlements: UserEntitlements) -> dict[str, Any]:
        return {"credits": entitlements.credits, "features": list(entitlements.features)}

    @app.get("/premium", dependencies=[Depends(require_feature("pro_features"))])
    async def premium(user: CurrentUser) -> dict[str, str]:
        return {"userId": user.id}

    @app.post("/charge/{amount}")
    async def charge(amount: int, credits: Credits) -> dict[str, Any]:
        result = await credits.deduct(amount, f"Charge of {amount}")
        return {"balance": result.balance, "referenceId": result.transaction.reference_id}

    @app.post("/charge-twice-then-fail")
    async def charge_twice_then_fail(credits: Credits) -> None:
        await credits.deduct(2, "First part")
        await credits.deduct(3, "Second part")
        raise HTTPException(status_code=409, detail="Destination busy")

    app.state.fail_next = True

    @app.post("/flaky-charge")
    async def flaky_charge(credits: Credits) -> dict[str, Any]:
        result = await credits.deduct(2, "Flaky charge")
        if app.state.fail_next:
            app.state.fail_next = False
            raise HTTPException(status_code=503, detail="Try again")
        return {"balance": result.balance, "referenceId": result.transaction.reference_id}

    @app.post("/charge-then-crash")
    async def charge_then_crash(credits: Credits) -> None:
        await credits.deduct(1, "Before a crash")
        raise HandlerFailure("the fax line dropped")

    @app.post("/charge-then-wait")
    async def charge_then_wait(credits: Credits) -> dict[str, int]:
        result = await credits.deduct(4, "Before a long wait")
        app.state.deducted.set()
        await app.state.release.wait()
        return {"balance": result.balance}

    @app.post("/charge-wait-then-fail")
    async def charge_wait_then_fail(credits: Credits) -> None:
        await credits.deduct(4, "Before a failure")
        app.state.deducted.set()
        await app.state.release.wait()
        raise HTTPException(status_code=502, detail="Fax gateway failed")

    @app.post("/pay-wait")
    async def pay_wait(credits: Credits, fail: bool = False) -> dict[str, int]:
        result = await credits.deduct(4, "Paid wait")
        app.state.deducted.set()
        await app.state.release.wait()
        if fail:
            raise HTTPException(status_code=502, detail="Fax gateway failed")
        return {"balance": result.balance}

    @app.post("/charge-three-at-once")
    async def charge_three_at_once(credits: Credits) -> dict[str, int]:
        await asyncio.gather(*(credits.deduct(1, "Page") for _ in range(3)))
        return {"deducted": credits.total_deducted}

    @app.post("/charge-beside-failure")
    async def charge_beside_failure(credits: Credits) -> None:
        async def fail_soon() -> None:
            await asyncio.sleep(0.05)
            raise HTTPException(status_code=502, detail="Sibling failed")

        await asyncio.gather(credits.deduct(2, "Beside a failure"), fail_soon())

    @app.post("/charge-then-cancel")
    async def charge_then_cancel(credits: Credits) -> None:
        await credits.deduct(1, "Before a cancellation")
        raise asyncio.CancelledError()

    @app.post("/declared", dependencies=[Depends(deduct_credits(5, "Declared charge"))])
    async def declared(user: CurrentUser) -> dict[str, str]:
        app.state.declared_ran = True
        return {"userId": user.id}

    @app.post("/declared-by-header")
    async def declared_by_header(
        credits: Annotated[CreditSession, Depends(pages_charge)],
    ) -> dict[str, int]:
        return {"deducted": credits.total_deducted}

    @app.post("/service-error")
    async def service_error(user: CurrentUser) -> None:
        raise InsufficientCreditsError("Not enough credits.", balance=1, required=7)

    @app.post("/notify/{outcome}")
    async def notify(outcome: str, user: CurrentUser, notifier: Notifier) -> dict[str, str]:
        notifier.send_after_response(
            template_name="fax-sent",
            channel="push",
            to=user.id,
            variables={"destination": "+15550100", "pages": 2},
        )
        if outcome == "fail":
            raise HTTPException(status_code=418, detail="Handler failed")
        return {"outcome": outcome}

    @app.post("/notify-ops-gateway")
    async def notify_ops_gateway(
        user: Annotated[AuthenticatedUser, Depends(gateway_user)], notifier: Notifier
    ) -> dict[str, str]:
        notifier.send_after_response(
            template_name="welcome-email",
            channel="email",
            to="ops@example.com",
            variables={"name": user.id},
        )
        return {"outcome": "ok"}

    @app.post("/notify-ops")
    async def notify_ops(user: CurrentUser, notifier: Notifier) -> dict[str, str]:
        notifier.send_after_response(
            template_name="welcome-email",
            channel="email",
            to="ops@example.com",
            variables={"name": user.id},
        )
        return {"outcome": "ok"}

    return app, aldero


def auth(token: str, **headers: str) -> dict[str, str]:
    """Return request headers with a bearer token."""
    return {"Authorization": f"Bearer {token}", **headers}


async def emulator_user(server: EmulatorServer, user_id: str) -> dict[str, Any]:
    """Return the emulator's admin view of a user: features, credits and ledger sum."""
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{server.admin_url}/users/{user_id}")
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    return body


async def ledger(server: EmulatorServer, user_id: str) -> list[dict[str, Any]]:
    """Return the user's whole ledger from the emulator, newest first."""
    headers = {"Authorization": "Bearer bil_emulator_key"}
    rows: list[dict[str, Any]] = []
    cursor: str | None = None
    async with httpx.AsyncClient(base_url=server.base_url, headers=headers) as client:
        while True:
            params: dict[str, Any] = {"limit": 200}
            if cursor:
                params["cursor"] = cursor
            response = await client.get(f"/billing/users/{user_id}/credits", params=params)
            response.raise_for_status()
            page = response.json()
            rows.extend(page["transactions"])
            cursor = page["nextCursor"]
            if cursor is None:
                return rows


async def set_user(server: EmulatorServer, user_id: str, **state: Any) -> None:
    """Set a user's features or credits through the emulator's admin route."""
    async with httpx.AsyncClient() as client:
        response = await client.put(
            f"{server.admin_url}/users/{quote(user_id, safe='')}", json=state
        )
    response.raise_for_status()


async def add_fault(server: EmulatorServer, **rule: Any) -> None:
    """Add a fault rule to the emulator."""
    async with httpx.AsyncClient() as client:
        response = await client.post(f"{server.admin_url}/faults", json=rule)
    response.raise_for_status()


async def served_requests(server: EmulatorServer, **filters: str) -> list[dict[str, Any]]:
    """Return the tenant API requests the emulator served, oldest first."""
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{server.admin_url}/requests", params=filters)
    response.raise_for_status()
    requests: list[dict[str, Any]] = response.json()["requests"]
    return requests
