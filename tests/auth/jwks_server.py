"""A JWKS endpoint served by uvicorn on 127.0.0.1, for tests that need a real fetch."""

from __future__ import annotations

import json
import socket
import threading
from typing import Any

import uvicorn


class JWKSServer:
    """
    Serves ``keys`` as a JWKS document at ``url`` from a background thread.

    Tests change ``keys`` and ``status_code`` between requests and read ``hits`` and
    ``request_headers``. The listening socket is bound before the thread starts, so
    the first request needs no wait for startup.
    """

    def __init__(self) -> None:
        self.keys: list[dict[str, Any]] = []
        self.status_code = 200
        self.hits = 0
        self.request_headers: list[dict[str, str]] = []

        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen()
        port = self._socket.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/.well-known/jwks.json"

        config = uvicorn.Config(
            self._app,
            interface="asgi3",
            lifespan="off",
            access_log=False,
            log_config=None,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop serving; later requests fail with a refused connection."""
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._socket.close()

    async def _app(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return

        self.hits += 1
        self.request_headers.append(
            {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}
        )
        body = json.dumps({"keys": self.keys}).encode("utf-8")
        await send(
            {
                "type": "http.response.start",
                "status": self.status_code,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})
