"""Every typed key for state on the app and on requests (no module globals anywhere)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from livechat.app import Services
    from livechat.config import Settings

settings_key = web.AppKey("settings", "Settings")
services_key = web.AppKey("services", "Services")
request_id_key = web.RequestKey("request_id", str)
