"""A stateful in-process emulator of the Aldero billing and notification API.

It is the reference implementation that the client, the demo and the integration tests
run against, either in-process through ``httpx.ASGITransport`` or as a real uvicorn
server on a loopback port (:class:`EmulatorServer`).
"""

from .app import create_app
from .config import (
    DEFAULT_BILLING_KEY,
    DEFAULT_NOTIFICATION_KEY,
    DEFAULT_TENANT,
    EmulatorConfig,
)
from .connection_drop import ConnectionDroppedError
from .server import EmulatorServer
from .state import EmulatorState

__all__ = [
    "DEFAULT_BILLING_KEY",
    "DEFAULT_NOTIFICATION_KEY",
    "DEFAULT_TENANT",
    "ConnectionDroppedError",
    "EmulatorConfig",
    "EmulatorServer",
    "EmulatorState",
    "create_app",
]
