"""``create_app(settings)``: the aiohttp application — routes, middlewares, and the services' lifetime."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from datetime import datetime

from aiohttp import web

from livechat.config import Settings
from livechat.domain.models import utcnow
from livechat.keys import metrics_key, services_key, settings_key
from livechat.metrics import Metrics
from livechat.realtime import ws
from livechat.realtime.hub import Hub
from livechat.services import open_services
from livechat.web import routes_analytics, routes_auth, routes_conversations, routes_health, routes_ops
from livechat.web.console import setup_console
from livechat.web.middlewares import cors_middleware, error_middleware, metrics_middleware

log = logging.getLogger(__name__)


def create_app(settings: Settings, *, clock: Callable[[], datetime] = utcnow) -> web.Application:
    """``clock``: when things happen (conversation and message times); tests pass a scripted one."""
    metrics = Metrics()
    measure = metrics_middleware(metrics)
    app = web.Application(
        middlewares=[measure, cors_middleware(settings.cors_origins), error_middleware],
        client_max_size=settings.server.max_body_bytes,
    )
    app.on_response_prepare.append(measure.on_response_prepare)
    app[settings_key] = settings
    app[metrics_key] = metrics
    hub = Hub(settings.ws.max_sockets_per_user, metrics)

    async def services_ctx(app: web.Application) -> AsyncIterator[None]:
        async with open_services(settings, hub, clock=clock) as services:
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
    for table in (routes_health.routes, routes_ops.routes, routes_auth.routes, routes_conversations.routes, routes_analytics.routes,
                  ws.routes):
        app.add_routes(table)
    setup_console(app, settings)
    return app
