"""GET /health/live (the process answers) and GET /health/ready (and its database does)."""

from __future__ import annotations

import asyncio

from aiohttp import web

from livechat.errors import Unavailable
from livechat.keys import services_key
from livechat.web.http import ok

routes = web.RouteTableDef()

READY_TIMEOUT = 2.0


@routes.get("/health/live")
async def live_handler(request: web.Request) -> web.Response:
    return ok({"status": "ok"})


@routes.get("/health/ready")
async def ready_handler(request: web.Request) -> web.Response:
    try:
        async with asyncio.timeout(READY_TIMEOUT):
            await request.app[services_key].ping()
    except TimeoutError:
        raise Unavailable() from None
    return ok({"status": "ok", "database": "ok"})
