"""GET /metrics (Prometheus text format) for operators (README "Operations").

Loopback clients may scrape without a token; any other client must send
``Authorization: Bearer <metrics.token>`` — and with no token configured, none may (403).
"""

from __future__ import annotations

import hmac
import ipaddress

from aiohttp import web

from livechat.errors import Forbidden
from livechat.keys import metrics_key, settings_key
from livechat.metrics import CONTENT_TYPE_LATEST
from livechat.web.http import bearer_token

routes = web.RouteTableDef()


def is_loopback(address: str | None) -> bool:
    try:
        ip = ipaddress.ip_address((address or "").split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return (mapped or ip).is_loopback


def may_scrape(request: web.Request) -> bool:
    if is_loopback(request.remote):
        return True
    expected = request.app[settings_key].metrics.token
    token = bearer_token(request)
    return bool(expected) and token is not None and hmac.compare_digest(token.encode(), expected.encode())


@routes.get("/metrics")
async def metrics_handler(request: web.Request) -> web.Response:
    if not may_scrape(request):
        raise Forbidden()
    body = request.app[metrics_key].exposition()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
