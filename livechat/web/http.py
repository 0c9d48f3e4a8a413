"""Helpers every route uses: the contract's envelope, strict JSON bodies, the bearer token."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from aiohttp import web

from livechat.errors import InvalidInput
from livechat.serialization import parse

T = TypeVar("T")


def _dumps(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def ok(data: Any, status: int = 200) -> web.Response:
    return web.json_response({"success": True, "data": data}, status=status, dumps=_dumps)


def fail(message: str, status: int, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"success": False, "error": message}, status=status, dumps=_dumps,
                             headers=headers)


async def json_body(request: web.Request, *, optional: bool = False) -> dict[str, Any]:
    """The body as a JSON object, or ``InvalidInput``. ``optional``: no body reads as ``{}``."""
    raw = await request.read()  # 413 past client_max_size, raised by aiohttp
    if not raw.strip():
        if optional:
            return {}
        raise InvalidInput()
    if request.content_type != "application/json":
        raise InvalidInput()
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise InvalidInput() from None
    if not isinstance(data, dict):
        raise InvalidInput()
    return data


async def parse_body(request: web.Request, cls: type[T]) -> T:
    return parse(await json_body(request), cls)


def bearer_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()
