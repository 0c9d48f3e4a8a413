"""Every typed key for state on the app and on requests (no module globals anywhere)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:  # annotations only: no import at run time
    from livechat.services import Services
    from livechat.config import Settings
    from livechat.metrics import Metrics

settings_key: web.AppKey[Settings] = web.AppKey("settings")
services_key: web.AppKey[Services] = web.AppKey("services")
metrics_key: web.AppKey[Metrics] = web.AppKey("metrics")
static_files_key: web.AppKey[dict[str, Path]] = web.AppKey("console_static_files")
request_id_key = web.RequestKey("request_id", str)
started_key = web.RequestKey("started", float)  # perf_counter() when the request reached the app
