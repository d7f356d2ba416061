"""The emulator as a FastAPI application."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from .admin_routes import build_admin_router
from .billing_routes import build_billing_router
from .config import EmulatorConfig
from .connection_drop import install_dropped_connection_log_filter
from .errors import install_error_handlers
from .middleware import TenantApiMiddleware
from .notification_routes import build_notification_router
from .path_segments import EncodedSlashMiddleware
from .state import EmulatorState


def create_app(config: EmulatorConfig | None = None) -> FastAPI:
    """Build an emulator app with its own database, opened and seeded right here.

    The state is created here and not in a lifespan, because mounted sub-applications and
    ``httpx.ASGITransport`` run no lifespan. When the app runs under a server with a
    lifespan, shutdown closes the state. Otherwise call
    ``await app.state.emulator.aclose()``.
    """
    config = config or EmulatorConfig()
    state = EmulatorState(config)
    install_dropped_connection_log_filter()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await state.aclose()

    app = FastAPI(
        title="Aldero emulator",
        version="1",
        docs_url=None,
        redoc_url=None,
        openapi_url="/_emulator/openapi.json",
        redirect_slashes=False,
        lifespan=lifespan,
    )
    app.state.emulator = state
    install_error_handlers(app)

    tenant_base = f"/v1/tenants/{config.tenant}"
    app.include_router(build_billing_router(state), prefix=tenant_base)
    app.include_router(build_notification_router(state), prefix=tenant_base)
    app.include_router(build_admin_router(state))
    app.add_middleware(TenantApiMiddleware, state=state)
    app.add_middleware(EncodedSlashMiddleware)
    return app
