"""``create_app(settings)``: the one module that sees every layer and wires them together."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from aiohttp import web
from attrs import frozen

from livechat.config import ConfigError, Settings
from livechat.domain.auth import AuthService, PasswordHasher, TokenCodec
from livechat.domain.conversations import ConversationService
from livechat.domain.messages import MessageService
from livechat.domain.teams import TeamService
from livechat.domain.throttle import LoginThrottle
from livechat.keys import services_key, settings_key
from livechat.realtime import ws
from livechat.realtime.hub import Hub
from livechat.storage.embedded import embedded_database
from livechat.storage.mongo import MongoStore, open_store, redact_uri
from livechat.web import routes_auth, routes_conversations, routes_health
from livechat.web.console import setup_console
from livechat.web.middlewares import cors_middleware, error_middleware

log = logging.getLogger(__name__)


@frozen
class Services:
    store: MongoStore
    hub: Hub
    auth: AuthService
    conversations: ConversationService
    teams: TeamService
    messages: MessageService


@contextlib.asynccontextmanager
async def database_uri(settings: Settings) -> AsyncIterator[str]:
    """The configured MongoDB, or (development, no URI) an embedded SecantusDB for our lifetime."""
    if settings.database.uri:
        log.info("database: %s", redact_uri(settings.database.uri))
        yield settings.database.uri
        return
    if settings.is_production:
        raise ConfigError("database.uri: MONGODB_URI is required in production")
    async with embedded_database(settings.database.embedded_command, settings.data_dir,
                                 settings.database.embedded_start_timeout) as uri:
        yield uri


def login_throttle(settings: Settings) -> LoginThrottle:
    auth = settings.auth
    return LoginThrottle(auth.login_failures_per_account, auth.login_failures_per_client,
                         auth.login_window.total_seconds())


@contextlib.asynccontextmanager
async def open_services(settings: Settings, hub: Hub | None = None) -> AsyncIterator[Services]:
    """Database (embedded if need be), repositories, hashing threads, the message writer:
    everything with a lifetime, started in order and stopped in reverse."""
    if not settings.auth.jwt_secret:
        raise ConfigError("auth.jwt_secret: no JWT secret (call config.with_jwt_secret first)")
    hub = hub or Hub(settings.ws.max_sockets_per_user)
    hasher = PasswordHasher(settings.auth.bcrypt_rounds, settings.auth.hash_threads)
    try:
        async with database_uri(settings) as uri, open_store(settings.database, uri) as store:
            tokens = TokenCodec(settings.auth.jwt_secret, settings.auth.jwt_expires_in, settings.auth.jwt_leeway)
            messages = MessageService(store.conversations, store.messages, hub)
            async with messages.running():
                yield Services(
                    store=store,
                    hub=hub,
                    auth=AuthService(store.users, hasher, tokens, login_throttle(settings),
                                     open_signup=not settings.is_production),
                    conversations=ConversationService(store.conversations, store.users, store.messages, hub,
                                                      writes=messages),
                    teams=TeamService(store.users, store.conversations),
                    messages=messages,
                )
    finally:
        hasher.close()


def create_app(settings: Settings) -> web.Application:
    app = web.Application(
        middlewares=[cors_middleware(settings.cors_origins), error_middleware],
        client_max_size=settings.server.max_body_bytes,
    )
    app[settings_key] = settings
    hub = Hub(settings.ws.max_sockets_per_user)

    async def services_ctx(app: web.Application) -> AsyncIterator[None]:
        async with open_services(settings, hub) as services:
            app[services_key] = services
            yield

    async def close_websockets(app: web.Application) -> None:
        # on_shutdown runs before cleanup, while the database and the message writer are still
        # there: sends in flight are stored and acknowledged, then every socket gets 1001 after
        # the events already queued for it.
        if services_key in app:  # absent when start-up failed
            await app[services_key].messages.stop_accepting()
        await hub.close_all(timeout=settings.server.shutdown_timeout)

    app.cleanup_ctx.append(services_ctx)
    app.on_shutdown.append(close_websockets)
    for table in (routes_health.routes, routes_auth.routes, routes_conversations.routes, ws.routes):
        app.add_routes(table)
    setup_console(app, settings)
    return app
