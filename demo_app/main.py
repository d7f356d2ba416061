"""The demo app: ``uvicorn demo_app.main:app``.

With no Aldero settings in the environment it runs on the embedded emulator, mounted
at ``/aldero``. With the settings of a real tenant it uses them, and the emulator is off.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from aldero_fastapi import Aldero, load_settings
from demo_app.embedded import EmulatorMount, start_embedded_emulator
from demo_app.routes import router

logger = logging.getLogger("demo_app")

WEBHOOK_PATH = "/webhooks/aldero"

aldero = Aldero()
emulator_mount = EmulatorMount()


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings = load_settings()
    app.state.emulator_mode = settings.uses_emulator

    if settings.uses_emulator:
        state_dir = Path(os.environ.get("DEMO_STATE_DIR", ".aldero"))
        embedded = start_embedded_emulator(settings, state_dir, app, WEBHOOK_PATH)
        emulator_mount.target = embedded.app
        aldero.configure(settings=embedded.settings, transport=embedded.transport())
    else:
        emulator_mount.target = None
        aldero.configure(settings=settings)
        logger.info("Using the Aldero tenant at %s", settings.loggable_base_url)

    async with aldero.lifespan(app):
        yield


app = FastAPI(title="aldero_fastapi demo", lifespan=lifespan)
aldero.install(app)
app.include_router(router)
app.include_router(aldero.webhook_router(WEBHOOK_PATH))
app.mount("/aldero", emulator_mount)
