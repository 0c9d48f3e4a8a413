"""WebSocket attacks: cross-site origins, binary and invalid UTF-8 frames, and a bug in one
socket's handling that must stay confined to that socket."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re

import aiohttp
import pytest
from aiohttp import WSMsgType, WSServerHandshakeError

from livechat.config import Profile
from tests.conftest import Api, expect, make_settings
from tests.contract import FORBIDDEN, INVALID, INVALID_FORMAT, UNKNOWN_EVENT, UNSUPPORTED
from tests.security.helpers import (
    access_lines,
    connect,
    live_server,
    live_user,
    make_team,
    services,
)

CONSOLE = "https://console.example"


async def upgrade(api: Api, origin: str | None, token: str):
    """A raw upgrade request, so that a refusal's body can be read."""
    headers = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
               "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode()}
    if origin is not None:
        headers["Origin"] = origin
    return await api.client.get(f"/ws?token={token}", headers=headers)


async def assert_origin_refused(api: Api, origin: str, token: str) -> None:
    resp = await upgrade(api, origin, token)
    assert resp.status == 403, (origin, resp.status)
    await expect(resp, 403, FORBIDDEN)
    with pytest.raises(WSServerHandshakeError) as refused:
        await connect(api.client, token, origin=origin)
    assert refused.value.status == 403


async def assert_origin_accepted(api: Api, origin: str | None, token: str) -> None:
    peer = await connect(api.client, token, **({"origin": origin} if origin else {}))
    await peer.quiet()
    await peer.close()


def own_origin(api: Api) -> str:
    return f"http://{api.client.server.host}:{api.client.server.port}"


async def test_production_accepts_listed_origins_only(app_client, mongo_uri):
    api = Api(await app_client(make_settings(mongo_uri, profile=Profile.PRODUCTION,
                                             http={"allowed_origins": (CONSOLE,)})))
    token = (await api.user("candidate"))["token"]
    for origin in (CONSOLE, own_origin(api), None):  # listed, same-origin, not a browser
        await assert_origin_accepted(api, origin, token)
    for origin in ("https://evil.example", "null", "http://console.example", "https://console.example.evil.example",
                   "https://evil.example/https://console.example", "https://console.example:8443",
                   "http://localhost:3000", "http://127.0.0.1", ""):
        await assert_origin_refused(api, origin, token)
    await assert_origin_refused(api, "https://evil.example", "no-token-at-all")  # refused before authentication


async def test_development_accepts_loopback_origins_and_refuses_foreign_ones(api: Api):
    token = (await api.user("candidate"))["token"]
    for origin in ("http://localhost:5173", "http://127.0.0.1:8080", "http://[::1]:3000", "https://localhost",
                   own_origin(api), None):
        await assert_origin_accepted(api, origin, token)
    for origin in ("https://evil.example", "http://localhost.evil.example", "http://127.0.0.1.nip.io",
                   "http://evil.example#@localhost", "null"):
        await assert_origin_refused(api, origin, token)


async def test_a_configured_allow_list_replaces_loopback_in_development(app_client, mongo_uri):
    api = Api(await app_client(make_settings(mongo_uri, http={"allowed_origins": (CONSOLE,)})))
    token = (await api.user("candidate"))["token"]
    await assert_origin_accepted(api, CONSOLE, token)
    await assert_origin_refused(api, "http://localhost:5173", token)


async def test_the_allowed_origins_default_to_the_cors_origins(app_client, mongo_uri):
    """A deployment that sets CORS_ORIGIN to its app's origin gets that app's WebSocket too."""
    api = Api(await app_client(make_settings(mongo_uri, profile=Profile.PRODUCTION, http={"cors_origin": (CONSOLE,)})))
    token = (await api.user("candidate"))["token"]
    for origin in (CONSOLE, own_origin(api), None):
        await assert_origin_accepted(api, origin, token)
    for origin in ("https://evil.example", "http://localhost:3000", "null"):
        await assert_origin_refused(api, origin, token)
    # An explicit WebSocket list wins over the CORS one.
    api = Api(await app_client(make_settings(mongo_uri, profile=Profile.PRODUCTION, http={
        "cors_origin": (CONSOLE,), "allowed_origins": ("https://desk.example",)})))
    token = (await api.user("candidate"))["token"]
    await assert_origin_accepted(api, "https://desk.example", token)
    await assert_origin_refused(api, CONSOLE, token)


async def test_cors_any_origin_in_development_allows_any_websocket_origin(app_client, mongo_uri):
    api = Api(await app_client(make_settings(mongo_uri, http={"cors_origin": ("*",)})))
    token = (await api.user("candidate"))["token"]
    await assert_origin_accepted(api, "https://anything.example", token)


async def test_binary_frames_close_with_1003(api: Api):
    user = await api.user("candidate")
    peer = await connect(api.client, user["token"])
    await peer.ws.send_bytes(b'{"event":"JOIN_CONVERSATION","data":{}}')
    assert await peer.closed_with(UNSUPPORTED) == [{"event": "ERROR", "data": {"message": INVALID_FORMAT}}]


@pytest.mark.parametrize("raw", [b"\xff\xfe", b'{"event":"\xc3\x28","data":{}}', b"\xc0\xaf", b"\xed\xa0\x80",
                                 b'{"event":"SEND_MESSAGE","data":{"content":"\xf8\x88\x80\x80\x80"}}'],
                         ids=["bom-bytes", "bad-continuation", "overlong", "encoded-surrogate", "five-byte"])
async def test_invalid_utf8_text_frames_close_with_1007(api: Api, raw):
    user = await api.user("candidate")
    peer = await connect(api.client, user["token"])
    await peer.ws.send_frame(raw, WSMsgType.TEXT)  # a TEXT opcode around bytes that are not UTF-8
    assert await peer.closed_with(1007) == []


async def test_escaped_lone_surrogates_are_a_schema_error_not_a_crash(api: Api):
    team = await make_team(api)
    peer = await connect(api.client, team.candidate["token"])
    await peer.join(team.conv_id)
    frame = json.dumps({"event": "SEND_MESSAGE", "data": {"conversationId": team.conv_id, "content": "@ x"}})
    await peer.ws.send_str(frame.replace("@", "\\ud800"))  # JSON's escape for a lone surrogate
    assert (await peer.recv()) == {"event": "ERROR", "data": {"message": INVALID}}
    await peer.refused(INVALID, "JOIN_CONVERSATION", {"conversationId": "\udfff" * 24})
    await peer.quiet()


async def test_a_bug_in_one_socket_closes_only_that_socket(api: Api, caplog, monkeypatch):
    victim_team, other_team = await make_team(api), await make_team(api)
    victim = victim_team.candidate
    conversations = services(api.client).conversations
    real_join = conversations.join

    async def broken_join(user, conv_id):
        if str(user.id) == victim["_id"]:
            raise RuntimeError("simulated bug: secret internals")
        return await real_join(user, conv_id)

    monkeypatch.setattr(conversations, "join", broken_join)
    spare = await connect(api.client, victim["token"])  # the same user's other socket
    bystander = await connect(api.client, other_team.candidate["token"])
    await bystander.join(other_team.conv_id)
    peer = await connect(api.client, victim["token"])
    await peer.emit("JOIN_CONVERSATION", {"conversationId": victim_team.conv_id})
    events = await peer.closed_with(1011)
    assert "secret internals" not in str(events) and "RuntimeError" not in str(events)
    # Everyone else carries on: the bystander chats, the victim's other socket answers.
    ack = await bystander.ask("SEND_MESSAGE", {"conversationId": other_team.conv_id, "content": "still here",
                                               "clientMessageId": "after-crash"})
    assert ack["event"] == "MESSAGE_SENT", ack
    await spare.quiet()
    # Logged once, with the socket's request id, which the access log line of that socket repeats.
    crashes = [r for r in caplog.records if r.exc_info and "websocket handling failed" in r.getMessage()]
    assert len(crashes) == 1, [r.getMessage() for r in caplog.records if r.exc_info]
    request_id = crashes[0].getMessage().rsplit("request ", 1)[1].rstrip(")")
    assert len(request_id) == 16 and int(request_id, 16) >= 0
    for _ in range(50):
        access = [r.getMessage() for r in caplog.records if r.name == "aiohttp.access" and request_id in r.getMessage()]
        if access:
            break
        await asyncio.sleep(0.05)
    assert len(access) == 1 and '"GET /ws"' in access[0], access
    assert victim["token"] not in crashes[0].getMessage()


async def open_chat_and_close(port: int, token: str, sockets: int) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(sockets):
            async with session.ws_connect(f"http://127.0.0.1:{port}/ws?token={token}") as ws:
                await ws.send_json({"event": "NO_SUCH_EVENT", "data": {}})
                assert (await ws.receive_json(timeout=5))["data"]["message"] == UNKNOWN_EVENT
            assert ws.close_code == 1000


def test_a_closed_socket_is_released_promptly(tmp_path, mongo_uri):
    """When a client closes its socket, the server's handler ends at once (its access-log line is
    written then). Against the real program: the test server cancels handlers on disconnect,
    which would hide a handler that lingers."""
    with live_server(tmp_path, mongo_uri, LIVECHAT_SERVER_SHUTDOWN_TIMEOUT="1") as server:
        token = live_user(server, "candidate")["token"]
        asyncio.run(open_chat_and_close(server.port, token, sockets=3))
        lines = access_lines(server, "/ws", count=3, within=3.0)
        assert len(lines) == 3, f"closed sockets still held by the server after 3 s: {lines}"
        durations = [float(re.search(r" ([0-9.]+)ms ", line).group(1)) for line in lines]
        assert max(durations) < 2000, lines


async def test_upgrades_with_bad_tokens_are_capped_per_client_address(app_client, mongo_uri):
    """After peer.unauthenticated_per_client upgrades with a bad token from one address within the
    window, that address's upgrades get HTTP 429 with Retry-After — before any socket or token
    check — until the oldest failure ages out."""
    from datetime import timedelta

    api = Api(await app_client(make_settings(mongo_uri, ws={"unauthenticated_per_client": 3,
                                                            "unauthenticated_window": timedelta(seconds=1.5)})))
    token = (await api.user("candidate"))["token"]
    await assert_origin_accepted(api, None, token)  # good tokens never count
    for bad in ("nope", "", "still-nope"):
        await (await connect(api.client, bad)).closed_with(4401)
    resp = await upgrade(api, None, token)  # even a good token, from this address, for now
    assert resp.status == 429 and int(resp.headers["Retry-After"]) >= 1
    await expect(resp, 429, "Too many connection attempts, try again later")
    await asyncio.sleep(1.6)
    await assert_origin_accepted(api, None, token)
