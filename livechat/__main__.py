"""``python -m livechat [serve|create-admin|check-config|database]``."""

from __future__ import annotations

import argparse
import asyncio
import gc
import getpass
import logging
import os
import signal
import sys
import threading

import attrs
from aiohttp import web

from livechat import __version__
from livechat.config import ConfigError, Settings, load_settings, with_jwt_secret
from livechat.domain.auth import MAX_PASSWORD_CHARS, SignupRequest
from livechat.domain.models import Role
from livechat.errors import Conflict, DomainError
from livechat.logs import TEXT_FORMAT, use_format
from livechat.storage.embedded import EmbeddedDatabaseError, EmbeddedServer

log = logging.getLogger("livechat")


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m livechat",
        description="livechat: real-time customer-support chat backend. Without a command: serve.",
    )
    parser.add_argument("--version", action="version", version=f"livechat {__version__}")
    parser.add_argument("--config", metavar="PATH", help="configuration file (default: config.toml; env LIVECHAT_CONFIG)")
    parser.add_argument("--log-level", type=str.upper, default=os.environ.get("LIVECHAT_LOG_LEVEL", "INFO"),
                        choices=LOG_LEVELS, help="log level (default INFO)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve = sub.add_parser("serve", help="run the HTTP/WebSocket server (the default)")
    serve.add_argument("--host", help="interface to bind (overrides server.host)")
    serve.add_argument("--port", type=int, help="port to listen on (overrides PORT / server.port)")
    admin = sub.add_parser(
        "create-admin",
        help="create an admin account (idempotent); the password is prompted for or read from LIVECHAT_ADMIN_PASSWORD",
    )
    admin.add_argument("--email", required=True)
    admin.add_argument("--name", default="Administrator")
    sub.add_parser("check-config", help="validate the configuration and print it (secrets hidden)")
    database = sub.add_parser(
        "database",
        help="run the embedded database alone, in the foreground, for several livechat processes to share",
    )
    database.add_argument("--port", type=int, default=27017, help="port to listen on (default 27017; 0: any free one)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.log_level not in LOG_LEVELS:  # argparse checks --log-level, not LIVECHAT_LOG_LEVEL
        parser.error(f"LIVECHAT_LOG_LEVEL: invalid choice: {args.log_level!r} (choose from {', '.join(LOG_LEVELS)})")
    logging.basicConfig(level=args.log_level, format=TEXT_FORMAT)
    # The driver's DEBUG log records whole documents (password hashes, message text): never that.
    logging.getLogger("pymongo").setLevel(max(logging.INFO, logging.getLogger().level))
    try:
        settings = load_settings(args.config)
        use_format(settings.log.format)
        if args.command == "check-config":
            print(settings)
            return 0
        if args.command == "database":
            return run_database(settings, args.port)
        if args.command == "create-admin":
            return asyncio.run(create_admin(with_jwt_secret(settings), args.email, args.name))
        return serve(with_jwt_secret(settings), host=getattr(args, "host", None), port=getattr(args, "port", None))
    except (ConfigError, EmbeddedDatabaseError) as exc:
        print(f"livechat: {exc}", file=sys.stderr)
        return 2
    except DomainError as exc:  # e.g. the database did not answer at start-up
        print(f"livechat: {exc.message} (database {exc.__cause__ and type(exc.__cause__).__name__})", file=sys.stderr)
        return 1


# The cyclic garbage collector, tuned for a server that holds many long-lived objects (sockets,
# rooms, caches) and makes little cyclic garbage: with Python's defaults, under load, the older
# generations were walked every few seconds — pauses of 30–40 ms (generation 1) and 130–400 ms
# (generation 2), collecting nothing — and those pauses were the chat's p99 (measured with 2,000
# sockets; README "Performance").
GC_THRESHOLDS = (50_000, 20, 100)


async def _tune_gc(_app: web.Application) -> None:
    """What exists once the app has started is kept for the process's life: leave it out of every
    collection (``gc.freeze``), and collect the young generation less often."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def serve(settings: Settings, *, host: str | None, port: int | None) -> int:
    from livechat.app import create_app
    from livechat.web.access_log import AccessLogger

    if port is not None:
        settings = attrs.evolve(settings, server=attrs.evolve(settings.server, port=port))
    host = host or settings.bind_host
    log.info("livechat %s starting (%s profile) on http://%s:%s", __version__, settings.profile.value, host,
             settings.server.port)
    app = create_app(settings)
    app.on_startup.append(_tune_gc)  # after the services are up (cleanup contexts start first)
    web.run_app(
        app,
        host=host,
        port=settings.server.port,
        access_log_class=AccessLogger,
        shutdown_timeout=settings.server.shutdown_timeout,
        keepalive_timeout=settings.server.keepalive_timeout,
        print=lambda *a: log.info("ready: listening on http://%s:%s", host, settings.server.port),
    )
    return 0


def run_database(settings: Settings, port: int) -> int:
    """SecantusDB on loopback with its data where the embedded default keeps it; Ctrl-C stops it."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    server = EmbeddedServer(settings.database.embedded_command, str(settings.data_dir / "secantus"),
                            log_path=settings.data_dir / "secantus.log", port=port or None)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    server.start()
    try:
        server.wait_ready(settings.database.embedded_start_timeout)
        print(f"MONGODB_URI={server.uri}", flush=True)
        log.info("embedded database on port %s, data in %s; Ctrl-C stops it", server.port, settings.data_dir / "secantus")
        while not stop.wait(0.5):
            server.check_alive()
    finally:
        server.stop()
    return 0


async def create_admin(settings: Settings, email: str, name: str) -> int:
    from livechat.services import open_services

    password = os.environ.get("LIVECHAT_ADMIN_PASSWORD")
    if password is None:
        if not sys.stdin.isatty():
            print("livechat: set LIVECHAT_ADMIN_PASSWORD or run in a terminal to be prompted", file=sys.stderr)
            return 2
        password = getpass.getpass("Admin password: ")
    try:
        req = SignupRequest(name=name, email=email, password=password, role=Role.ADMIN)
    except ValueError as exc:
        print(f"livechat: {str(exc).split(':')[0]} is invalid (password: 8-{MAX_PASSWORD_CHARS} characters)",
              file=sys.stderr)
        return 2
    async with open_services(settings) as services:
        existing = await services.store.users.by_email(req.email)
        if existing is not None:
            if existing.role is Role.ADMIN:
                print(f"admin {req.email} already exists (unchanged)")
                return 0
            print(f"livechat: {req.email} exists with role {existing.role.value}; not changed", file=sys.stderr)
            return 1
        try:
            user = await services.auth.signup(None, req, trusted=True)
        except Conflict:  # created concurrently by another run: still idempotent
            print(f"admin {req.email} already exists (unchanged)")
            return 0
    print(f"admin {user.email} created with id {user.id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
