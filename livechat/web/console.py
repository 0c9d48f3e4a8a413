"""The browser test console: GET / and GET /console (one Jinja page), /static (its CSS and JS).

The page is plain HTML + an ES module, no build step, nothing from a CDN. It talks to the same
REST and WebSocket API as any other client. Safe by construction: the page forbids inline script
through its Content-Security-Policy, and the script renders user text with ``textContent`` only.
"""

from __future__ import annotations

from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web

from livechat.config import Settings
from livechat.domain.models import Role
from livechat.keys import settings_key, static_files_key

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES_DIR = ROOT / "templates"
STATIC_DIR = ROOT / "static"
POLL_MS = 3000

# 'self' also covers ws:/wss: to the page's own host (CSP Level 3), which is all the page opens.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'; object-src 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cache-Control": "no-store",
}

STATIC_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",  # revalidate (ETag); the page's URLs carry a version anyway
}

routes = web.RouteTableDef()


def signup_roles(settings: Settings) -> list[str]:
    """Roles the public signup form offers: any in development, candidates only in production (B.6)."""
    if settings.is_production:
        return [Role.CANDIDATE.value]
    return [Role.CANDIDATE.value, Role.AGENT.value, Role.SUPERVISOR.value, Role.ADMIN.value]


def asset_url(name: str) -> str:
    """``/static/NAME?v=…``: the version changes with the file, so browsers never run a stale script."""
    stat = (STATIC_DIR / name).stat()
    return f"/static/{name}?v={stat.st_mtime_ns:x}{stat.st_size:x}"


@routes.get("/", name="console-home")
@routes.get("/console", name="console")
async def console_handler(request: web.Request) -> web.Response:
    settings = request.app[settings_key]
    response = aiohttp_jinja2.render_template("console.html", request, {
        "signup_roles": signup_roles(settings),
        "profile": settings.profile.value,
        "poll_ms": POLL_MS,
        "asset": asset_url,
    })
    response.headers.update(PAGE_HEADERS)
    return response


@routes.get("/console/analytics", name="dashboard")
async def dashboard_handler(request: web.Request) -> web.Response:
    """The analytics dashboard (README "Analytics"): its own page and script, the console's headers
    and CSP; it reads the token the console keeps in the tab's sessionStorage, or asks to log in."""
    response = aiohttp_jinja2.render_template("dashboard.html", request, {"asset": asset_url})
    response.headers.update(PAGE_HEADERS)
    return response


@routes.get("/static/{name}", name="static")
async def static_handler(request: web.Request) -> web.StreamResponse:
    """The console's own files, by exact name (a flat allow-list: no directory walking). A missing
    one is the API's 404 envelope, like any unknown route."""
    path = request.app[static_files_key].get(request.match_info["name"])
    if path is None:
        raise web.HTTPNotFound()
    return web.FileResponse(path, headers=STATIC_HEADERS)


def setup_console(app: web.Application, settings: Settings) -> None:
    aiohttp_jinja2.setup(app, loader=jinja2.FileSystemLoader(str(TEMPLATES_DIR)), autoescape=True)
    app[static_files_key] = {p.name: p for p in STATIC_DIR.iterdir()
                             if p.is_file() and not p.name.startswith(".")}
    app.add_routes(routes)
