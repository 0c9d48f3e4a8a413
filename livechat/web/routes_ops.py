"""For operators and client authors (README "Operations"): GET /metrics (Prometheus text format),
and the API as documents, GET /openapi.json and GET /asyncapi.yaml (the files in docs/, read once).

Metrics: loopback clients may scrape without a token; any other client must send
``Authorization: Bearer <metrics.token>`` — and with no token configured, none may (403).
"""

from __future__ import annotations

import hmac
import ipaddress
from functools import cache
from pathlib import Path

from aiohttp import web

from livechat.errors import Forbidden
from livechat.keys import metrics_key, settings_key
from livechat.metrics import CONTENT_TYPE_LATEST
from livechat.web.http import bearer_token

routes = web.RouteTableDef()

DOCS_DIR = Path(__file__).resolve().parent.parent.parent / "docs"
OPENAPI = DOCS_DIR / "openapi.json"
ASYNCAPI = DOCS_DIR / "asyncapi.yaml"


@cache
def document(path: Path) -> bytes:
    return path.read_bytes()


@routes.get("/openapi.json")
async def openapi_handler(request: web.Request) -> web.Response:
    return web.Response(body=document(OPENAPI), content_type="application/json", charset="utf-8")


@routes.get("/asyncapi.yaml")
async def asyncapi_handler(request: web.Request) -> web.Response:
    return web.Response(body=document(ASYNCAPI), content_type="application/yaml", charset="utf-8")


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
