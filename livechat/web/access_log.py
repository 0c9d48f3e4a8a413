"""An access log that cannot leak tokens or forge lines.

aiohttp's default format logs ``%r`` — the request line with its query string, where the
WebSocket carries ``?token=``. This logger writes the still-percent-encoded path without the
query, so neither a token nor an encoded CR/LF ever reaches a log line.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from livechat.keys import request_id_key


class AccessLogger(AbstractAccessLogger):
    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info(
            '%s "%s %s" %s %.1fms rid=%s',
            request.remote, request.method, request.rel_url.raw_path, response.status, time * 1000,
            request.get(request_id_key, "-"), extra={"request_id": request.get(request_id_key)},
        )
