"""Middlewares: the metrics (outermost: they see the final status), CORS, and the error envelope
for everything, router errors included."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable

from aiohttp import web

from livechat.errors import INTERNAL, INVALID_SCHEMA, DomainError, TooManyRequests
from livechat.keys import request_id_key, started_key
from livechat.metrics import UNMATCHED, Metrics
from livechat.web.http import fail

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Framework errors, worded as the contract says (docs/openapi.json, info).
HTTP_MESSAGES = {
    400: INVALID_SCHEMA,
    404: "Route not found",
    405: "Method not allowed",
    413: "Request body too large",
}


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure becomes ``{"success": false, "error": ...}``; nothing else reaches a client."""
    request_id = uuid.uuid4().hex[:16]
    request[request_id_key] = request_id
    try:
        response = await handler(request)
    except TooManyRequests as exc:
        response = fail(exc.message, exc.status, headers={"Retry-After": str(exc.retry_after)})
    except DomainError as exc:
        response = fail(exc.message, exc.status)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = fail(HTTP_MESSAGES.get(exc.status, exc.reason), exc.status)
        if exc.status == 405 and "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
    except Exception:
        log.exception("unhandled error in %s %s (request %s)", request.method, request.rel_url.raw_path,
                      request_id)
        response = fail(INTERNAL, 500)
    if not response.prepared:
        response.headers["X-Request-Id"] = request_id
    return response


def metrics_middleware(metrics: Metrics):
    """Requests by method, route template and status, and their latency up to the response's
    headers. Counted when the headers go out (``on_response_prepare``): a WebSocket at its upgrade
    (101, no latency sample), a request whose client left before any answer not at all."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        request[started_key] = time.perf_counter()
        return await handler(request)

    async def on_response_prepare(request: web.Request, response: web.StreamResponse) -> None:
        started = request.get(started_key)
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else UNMATCHED
        seconds = None if started is None or response.status == 101 else time.perf_counter() - started
        metrics.request(request.method, route, response.status, seconds)

    middleware.on_response_prepare = on_response_prepare  # the app registers it (app.py)
    return middleware


def cors_middleware(origins: tuple[str, ...]):
    """CORS from ``CORS_ORIGIN``: ``*`` or an allow-list; preflights answered here."""
    allow_any = "*" in origins
    allowed = frozenset(origins)

    def allow_origin(origin: str | None) -> str | None:
        if not origin:
            return None
        if allow_any:
            return "*"
        return origin if origin in allowed else None

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = allow_origin(request.headers.get("Origin"))
        if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
            response: web.StreamResponse = web.Response(status=204)
            if origin:
                response.headers.update({
                    "Access-Control-Allow-Methods": "GET, POST, PUT, PATCH, DELETE, OPTIONS",
                    "Access-Control-Allow-Headers": request.headers.get(
                        "Access-Control-Request-Headers", "Authorization, Content-Type"),
                    "Access-Control-Max-Age": "600",
                })
        else:
            response = await handler(request)
        if origin and not response.prepared:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Expose-Headers"] = "X-Request-Id, Retry-After"
            if origin != "*":
                response.headers.add("Vary", "Origin")
        return response

    return middleware
