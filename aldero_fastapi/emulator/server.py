"""Running the emulator, or any ASGI app, under uvicorn in a background thread."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from types import TracebackType

import uvicorn
from fastapi import FastAPI
from starlette.types import ASGIApp

from .app import create_app
from .config import EmulatorConfig
from .state import EmulatorState

logger = logging.getLogger(__name__)

DEFAULT_STARTUP_TIMEOUT_SECONDS = 10.0
_STOP_TIMEOUT_SECONDS = 10.0
_GRACEFUL_SHUTDOWN_SECONDS = 3


class BackgroundServer:
    """An ASGI app served by uvicorn in a daemon thread with its own event loop.

    Port 0 picks a free port, trying ``preferred_port`` first when given. A restart after
    ``stop()`` prefers the previous port, so URLs stay valid, and takes a new free port
    if that one is taken meanwhile. ``on_shutdown`` runs in the server's event loop after
    uvicorn stops.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        startup_timeout: float = DEFAULT_STARTUP_TIMEOUT_SECONDS,
        on_shutdown: Callable[[], Awaitable[None]] | None = None,
        preferred_port: int | None = None,
    ) -> None:
        self.app = app
        self.host = host
        self._requested_port = port
        self._preferred_port = preferred_port
        self._startup_timeout = startup_timeout
        self._on_shutdown = on_shutdown
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None
        self._error: BaseException | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("The server is not running. Call start() first.")
        return self._port

    @property
    def root_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> None:
        """Start serving and return once the server accepts connections.

        Raises RuntimeError when the server fails or does not start within the timeout.
        """
        if self._thread is not None:
            raise RuntimeError("The server is already running. Call stop() first.")

        sock = self._bind()
        self._port = sock.getsockname()[1]
        self._error = None

        config = uvicorn.Config(
            self.app,
            log_config=None,
            access_log=False,
            ws="none",
            lifespan="auto",
            timeout_graceful_shutdown=_GRACEFUL_SHUTDOWN_SECONDS,
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(
            target=self._run, args=(server, sock), name=f"uvicorn-{self._port}", daemon=True
        )
        self._server = server
        self._thread = thread
        thread.start()

        deadline = time.monotonic() + self._startup_timeout
        while not server.started:
            if not thread.is_alive():
                self._thread = None
                self._port = None
                raise RuntimeError(f"The server failed to start: {self._error!r}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"The server did not start within {self._startup_timeout} seconds."
                )
            time.sleep(0.01)

        self._preferred_port = self._port

    def _bind(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        ports = [self._requested_port]
        if self._requested_port == 0 and self._preferred_port is not None:
            ports.insert(0, self._preferred_port)

        for index, port in enumerate(ports):
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((self.host, port))
            except OSError:
                sock.close()
                if index == len(ports) - 1:
                    raise
                logger.info("Port %d is taken, so the server takes a new free port", port)
                continue
            return sock

        raise AssertionError("unreachable: the last bind either returns or raises")

    def _run(self, server: uvicorn.Server, sock: socket.socket) -> None:
        try:
            asyncio.run(self._serve(server, sock))
        except BaseException as exc:
            # uvicorn raises SystemExit when startup fails. start() reports it.
            self._error = exc
            logger.error("The server on port %s stopped with an error", self._port, exc_info=exc)

    async def _serve(self, server: uvicorn.Server, sock: socket.socket) -> None:
        try:
            await server.serve(sockets=[sock])
        finally:
            sock.close()
            if self._on_shutdown is not None:
                await self._on_shutdown()

    def stop(self) -> None:
        """Stop the server and wait for its thread. Does nothing when it is not running."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return

        server.should_exit = True
        thread.join(_STOP_TIMEOUT_SECONDS)
        if thread.is_alive():
            logger.warning("The server on port %s did not stop in time, forcing it", self._port)
            server.force_exit = True
            thread.join(_STOP_TIMEOUT_SECONDS)

        self._server = None
        self._thread = None
        self._port = None


class EmulatorServer:
    """The emulator under uvicorn in a background thread, for tests and demos.

    Each ``start()`` builds a new app from the config, so a restart on the same
    ``db_path`` reopens the file and keeps its state. Usable as ``with`` and ``async with``.
    The async form starts and stops in a worker thread, so the caller's loop keeps running.
    """

    def __init__(
        self,
        config: EmulatorConfig | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        startup_timeout: float = DEFAULT_STARTUP_TIMEOUT_SECONDS,
    ) -> None:
        self.config = config or EmulatorConfig()
        self.host = host
        self._port = port
        self._startup_timeout = startup_timeout
        self._background: BackgroundServer | None = None
        self._app: FastAPI | None = None
        self._last_port: int | None = None

    def start(self) -> EmulatorServer:
        if self._background is not None and self._background.running:
            raise RuntimeError("The emulator server is already running. Call stop() first.")

        app = create_app(self.config)
        state: EmulatorState = app.state.emulator
        background = BackgroundServer(
            app,
            host=self.host,
            port=self._port,
            startup_timeout=self._startup_timeout,
            on_shutdown=state.aclose,
            preferred_port=self._last_port,
        )
        try:
            background.start()
        except BaseException:
            state.store.close()
            raise

        self._background = background
        self._app = app
        self._last_port = background.port
        return self

    def stop(self) -> None:
        if self._background is not None:
            self._background.stop()

    @property
    def app(self) -> FastAPI:
        if self._app is None:
            raise RuntimeError("The emulator server has not started. Call start() first.")
        return self._app

    @property
    def state(self) -> EmulatorState:
        state: EmulatorState = self.app.state.emulator
        return state

    @property
    def port(self) -> int:
        return self._running().port

    @property
    def root_url(self) -> str:
        return self._running().root_url

    @property
    def base_url(self) -> str:
        return f"{self.root_url}/v1/tenants/{self.config.tenant}"

    @property
    def admin_url(self) -> str:
        return f"{self.root_url}/_emulator"

    def _running(self) -> BackgroundServer:
        if self._background is None or not self._background.running:
            raise RuntimeError("The emulator server is not running. Call start() first.")
        return self._background

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> EmulatorServer:
        return await asyncio.to_thread(self.start)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.stop)
