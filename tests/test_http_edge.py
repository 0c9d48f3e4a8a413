"""The HTTP edge: envelope for every failure, body limits, CORS, health, redacted access log."""

from __future__ import annotations

import asyncio
import io
import logging
import time

import pytest
from livechat.app import create_app
from livechat.storage.embedded import EmbeddedServer
from tests.conftest import Api, expect, make_settings
from tests.contract import INVALID, TOO_LARGE, UNAVAILABLE


async def test_unknown_route_and_wrong_method(client):
    await expect(await client.get("/no/such/route"), 404, "Route not found")
    await expect(await client.post("/health/live"), 405, "Method not allowed")
    await expect(await client.get("/auth/login"), 405, "Method not allowed")


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        (b"{not json", "application/json"),
        (b"", "application/json"),
        (b"[1, 2]", "application/json"),
        (b'"a string"', "application/json"),
        (b"null", "application/json"),
        (b"\xff\xfe{}", "application/json"),
        (b'{"email": "a@b.co", "password": "x"}', "text/plain"),
        (b"email=a@b.co&password=x", "application/x-www-form-urlencoded"),
        (b"[" * 20_000 + b"]" * 20_000, "application/json"),
    ],
)
async def test_malformed_bodies_are_400(client, data, content_type):
    resp = await client.post("/auth/login", data=data, headers={"Content-Type": content_type})
    await expect(resp, 400, INVALID)


async def test_oversize_body_is_413_and_writes_nothing(client, api: Api):
    payload = b'{"name": "' + b"x" * (2 * 1024 * 1024) + b'", "email": "big@example.com", ' \
              b'"password": "correct horse", "role": "candidate"}'
    resp = await client.post("/auth/signup", data=io.BytesIO(payload), headers={"Content-Type": "application/json"})
    await expect(resp, 413, TOO_LARGE)
    await api.signup(email="big@example.com")  # nothing was stored under that email


async def test_unexpected_errors_are_a_bare_500(aiohttp_server, aiohttp_client, settings, caplog):
    app = create_app(settings)

    async def boom(request):
        raise RuntimeError("secret internals")

    app.router.add_get("/boom", boom)
    client = await aiohttp_client(await aiohttp_server(app))
    resp = await client.get("/boom")
    await expect(resp, 500, "Internal server error")
    assert "secret internals" not in await resp.text() and "RuntimeError" not in await resp.text()
    rid = resp.headers["X-Request-Id"]
    assert any(rid in r.getMessage() and r.exc_info for r in caplog.records)  # logged once, with the id


async def test_cors_preflight_and_headers(client):
    resp = await client.options("/auth/login", headers={
        "Origin": "http://example.com", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type, authorization"})
    assert resp.status == 204
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    assert "POST" in resp.headers["Access-Control-Allow-Methods"]
    assert "authorization" in resp.headers["Access-Control-Allow-Headers"]
    resp = await client.get("/no/route", headers={"Origin": "http://example.com"})
    assert resp.status == 404 and resp.headers["Access-Control-Allow-Origin"] == "*"


async def test_cors_allow_list(app_client, mongo_uri):
    client = await app_client(make_settings(mongo_uri, http={"cors_origin": ("https://console.example",)}))
    ok = await client.get("/health/live", headers={"Origin": "https://console.example"})
    assert ok.headers["Access-Control-Allow-Origin"] == "https://console.example"
    assert "Origin" in ok.headers.getall("Vary")
    other = await client.get("/health/live", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in other.headers
    pre = await client.options("/auth/login", headers={"Origin": "https://evil.example",
                                                       "Access-Control-Request-Method": "POST"})
    assert "Access-Control-Allow-Origin" not in pre.headers


async def test_health(client):
    assert await expect(await client.get("/health/live"), 200) == {"status": "ok"}
    assert await expect(await client.get("/health/ready"), 200) == {"status": "ok", "database": "ok"}


async def test_database_outage_gives_503_quickly_and_recovery(app_client):
    """A database of its own, stopped under the running app: ready and DB routes say 503 fast."""
    server = EmbeddedServer("secantusd-py", ":memory:")
    server.start()
    try:
        server.wait_ready(30)
        client = await app_client(make_settings(server.uri, database={"timeout_ms": 1000}))
        api = Api(client)
        await api.signup(email="before@example.com")
        await asyncio.to_thread(server.stop)
        started = time.monotonic()
        await expect(await client.get("/health/ready"), 503, UNAVAILABLE)
        resp = await client.post("/auth/login", json={"email": "before@example.com", "password": "whatever1"})
        await expect(resp, 503, UNAVAILABLE)
        assert time.monotonic() - started < 6
        await expect(await client.get("/health/live"), 200)
    finally:
        server.stop()


async def test_access_log_never_shows_tokens_or_forged_lines(client, api: Api, caplog):
    caplog.set_level(logging.INFO, logger="aiohttp.access")
    user = await api.user()
    await client.get("/auth/me?token=" + user["token"], headers=api.auth(user))
    await client.get("/x%0d%0aFAKE%20200%20OK?token=abc.def.ghi")
    lines = [r.getMessage() for r in caplog.records if r.name == "aiohttp.access"]
    assert any('"GET /auth/me"' in line for line in lines)
    assert any("/X%0D%0AFAKE" in line.upper() for line in lines)
    text = " ".join(lines)
    assert user["token"] not in text and "abc.def.ghi" not in text and "\r" not in text and "\n" not in text


async def test_every_response_has_a_request_id(client):
    r1, r2 = await client.get("/health/live"), await client.get("/nope")
    assert r1.headers["X-Request-Id"] != r2.headers["X-Request-Id"]

