"""Command line entry point: ``python -m aldero_fastapi.emulator``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import socket
import sys
from types import FrameType

import uvicorn

from .app import create_app
from .config import (
    BILLING_KEY_PREFIX,
    DEFAULT_BILLING_KEY,
    DEFAULT_NOTIFICATION_KEY,
    DEFAULT_TENANT,
    NOTIFICATION_KEY_PREFIX,
    EmulatorConfig,
    validate_key,
    validate_tenant,
    validate_webhook_url,
)
from .state import EmulatorState

_LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
_LISTEN_BACKLOG = 2048


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m aldero_fastapi.emulator",
        description="Run the Aldero API emulator as an HTTP server.",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="interface to listen on (default: %(default)s)"
    )
    parser.add_argument(
        "--port",
        type=int,
        default=8787,
        help="TCP port to listen on, 0 for a free port (default: %(default)s)",
    )

    parser.add_argument(
        "--tenant",
        default=DEFAULT_TENANT,
        help="tenant slug of the API base path /v1/tenants/TENANT (default: %(default)s)",
    )
    parser.add_argument(
        "--db",
        metavar="PATH",
        help="SQLite database file that keeps the state across restarts (default: in memory)",
    )
    parser.add_argument(
        "--seed",
        metavar="FILE",
        help="JSON seed file loaded into an empty database and on reset "
        "(default: the packaged seed.json)",
    )

    parser.add_argument(
        "--billing-key",
        metavar="KEY",
        default=DEFAULT_BILLING_KEY,
        help=f"API key of the billing routes, starting with {BILLING_KEY_PREFIX} "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--notification-key",
        metavar="KEY",
        default=DEFAULT_NOTIFICATION_KEY,
        help=f"API key of the notification routes, starting with {NOTIFICATION_KEY_PREFIX} "
        "(default: %(default)s)",
    )

    parser.add_argument(
        "--webhook-url",
        metavar="URL",
        help="URL that receives entitlements.updated and credits.updated events "
        "(default: no webhooks)",
    )
    parser.add_argument(
        "--webhook-secret",
        metavar="SECRET",
        help="secret of the HMAC-SHA256 Aldero-Signature header of webhook events "
        "(default: events are unsigned)",
    )

    parser.add_argument(
        "--log-level",
        choices=_LOG_LEVELS,
        default="info",
        help="minimum level of log messages on stderr (default: %(default)s)",
    )

    return parser


def mask_key(key: str, default: str) -> str:
    """Return the key in full when it is the public default key, else masked.

    A masked key shows its prefix and last 4 characters, such as ``bil_…a1b2``. A key too
    short to hide anything behind 4 characters shows only its prefix.
    """
    if key == default:
        return key

    prefix = key[:4]
    if len(key) < len(prefix) + 8:
        return f"{prefix}…"
    return f"{prefix}…{key[-4:]}"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)

    config = _config_from_args(parser, args)

    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )

    try:
        app = create_app(config)
    except (ValueError, RuntimeError, OSError) as exc:
        print(f"error: the emulator failed to start: {exc}", file=sys.stderr)
        return 1

    state: EmulatorState = app.state.emulator
    try:
        sock = _listen(args.host, args.port)
    except OSError as exc:
        state.store.close()
        print(f"error: failed to listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1

    server = uvicorn.Server(
        uvicorn.Config(app, log_config=None, log_level=args.log_level, access_log=False, ws="none")
    )

    # A signal may arrive right after the banner, before uvicorn installs its own handlers
    # for the time it serves. Setting should_exit stops the server at whatever stage it is,
    # where a KeyboardInterrupt could break off the event loop setup.
    def request_stop(signum: int, frame: FrameType | None) -> None:
        server.should_exit = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        _print_banner(config, args.host, sock.getsockname()[1])
        asyncio.run(_serve(server, state, sock))
    finally:
        sock.close()
        state.store.close()

    print("Aldero emulator stopped", flush=True)
    return 0


def _config_from_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> EmulatorConfig:
    """Build the config, or exit with a usage error that names the invalid option."""
    if not 0 <= args.port <= 65535:
        parser.error(f"--port {args.port} is invalid: use 0 to 65535.")

    try:
        validate_tenant("--tenant", args.tenant)
        validate_key("--billing-key", args.billing_key, BILLING_KEY_PREFIX)
        validate_key("--notification-key", args.notification_key, NOTIFICATION_KEY_PREFIX)
        if args.webhook_url is not None:
            validate_webhook_url("--webhook-url", args.webhook_url)
    except ValueError as exc:
        parser.error(str(exc))

    return EmulatorConfig(
        tenant=args.tenant,
        billing_key=args.billing_key,
        notification_key=args.notification_key,
        db_path=args.db,
        seed_path=args.seed,
        webhook_url=args.webhook_url,
        webhook_secret=args.webhook_secret,
    )


def _listen(host: str, port: int) -> socket.socket:
    """Bind and listen before the banner, so that its URL accepts connections at once."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(_LISTEN_BACKLOG)
    except OSError:
        sock.close()
        raise
    return sock


def _print_banner(config: EmulatorConfig, host: str, port: int) -> None:
    url_host = f"[{host}]" if ":" in host else host
    root_url = f"http://{url_host}:{port}"
    lines = [
        f"Aldero emulator listening on {root_url}/v1/tenants/{config.tenant}",
        f"Admin API: {root_url}/_emulator",
        f"Database: {config.db_path or 'in memory'}",
        f"Billing key: {mask_key(config.billing_key, DEFAULT_BILLING_KEY)}",
        f"Notification key: {mask_key(config.notification_key, DEFAULT_NOTIFICATION_KEY)}",
        f"Webhooks: {config.webhook_url or 'off'}",
    ]
    print("\n".join(lines), flush=True)


async def _serve(server: uvicorn.Server, state: EmulatorState, sock: socket.socket) -> None:
    try:
        await server.serve(sockets=[sock])
    finally:
        await state.aclose()


if __name__ == "__main__":
    sys.exit(main())
