"""Operations (README "Operations"): GET /metrics counts exactly the traffic sent, labels routes
by template, and answers only loopback clients or the holder of ``metrics.token``."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from livechat.app import create_app
from tests.conftest import expect, make_settings
from tests.ws_helpers import Scene


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


async def scrape(client: Any) -> tuple[dict[tuple[str, frozenset], float], str]:
    resp = await client.get("/metrics")
    assert resp.status == 200, await resp.text()
    assert resp.content_type == "text/plain"
    text = await resp.text()
    return samples(text), text


def value(found: dict, name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


def moved(before: dict, after: dict, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


async def test_metrics_count_exactly_the_scripted_chat(client):
    scene = await Scene.create(client)
    candidate, agent = await scene.joined(scene.candidate), await scene.joined(scene.agent)
    before, _ = await scrape(client)
    for i in range(5):
        await candidate.say(scene.conv_id, f"question {i}", f"c{i}")
    await candidate.acks_and_news(5)
    await agent.new_messages(5)
    for i in range(3):
        await agent.say(scene.conv_id, f"answer {i}", f"a{i}")
    await agent.acks_and_news(3)
    await candidate.new_messages(3)
    for _ in range(2):
        await expect(await client.get(f"/conversations/{scene.conv_id}", headers=scene.api.auth(scene.candidate)), 200)
    await expect(await client.get("/conversations/" + "0" * 24, headers=scene.api.auth(scene.candidate)), 404)
    await expect(await client.get("/no/such/route"), 404, "Route not found")
    after, text = await scrape(client)

    assert moved(before, after, "livechat_messages_stored_total") == 8
    assert moved(before, after, "livechat_messages_delivered_total") == 8  # each to the one other socket
    assert moved(before, after, "livechat_writer_batch_size_sum") == 8
    assert 1 <= moved(before, after, "livechat_writer_batch_size_count") <= 8
    assert value(after, "livechat_websocket_connections") == 2
    route = "/conversations/{id}"
    assert moved(before, after, "livechat_http_requests_total", method="GET", route=route, status="200") == 2
    assert moved(before, after, "livechat_http_requests_total", method="GET", route=route, status="404") == 1
    assert moved(before, after, "livechat_http_request_duration_seconds_count", method="GET", route=route) == 3
    assert moved(before, after, "livechat_http_requests_total", method="GET", route="unmatched", status="404") == 1
    # Labels are templates: no id, no raw path ever becomes a series.
    assert scene.conv_id not in text and "0" * 24 not in text and "/no/such/route" not in text
    assert moved(before, after, "livechat_db_operation_duration_seconds_count", operation="UserRepo.get") >= 2
    assert value(after, "livechat_websocket_drops_total", reason="slow_consumer") == 0
    assert value(after, "livechat_websocket_drops_total", reason="rate_limit") == 0
    assert ("livechat_fanout_lag_seconds", frozenset()) in after

    # A WebSocket is counted at its upgrade (101), never in the latency histogram.
    assert value(after, "livechat_http_requests_total", method="GET", route="/ws", status="101") == 2
    assert value(after, "livechat_http_request_duration_seconds_count", method="GET", route="/ws") == 0
    await candidate.close()
    await agent.close()
    for _ in range(250):
        found, _ = await scrape(client)
        if value(found, "livechat_websocket_connections") == 0:
            break
        await asyncio.sleep(0.02)
    assert value(found, "livechat_websocket_connections") == 0


async def test_rate_limited_sends_are_counted(app_client, mongo_uri):
    client = await app_client(make_settings(mongo_uri, ws={"rate_burst": 3, "rate_per_second": 0.1}))
    scene = await Scene.create(client)
    peer = await scene.joined(scene.candidate)
    for i in range(5):
        await peer.say(scene.conv_id, f"m{i}", f"m{i}")
    frames = [await peer.recv() for _ in range(5)]
    assert sorted(f["event"] for f in frames) == ["ERROR"] * 2 + ["MESSAGE_SENT"] * 3
    after, _ = await scrape(client)
    assert value(after, "livechat_websocket_drops_total", reason="rate_limit") == 2
    assert value(after, "livechat_messages_stored_total") == 3


def outside_address() -> str:
    """This machine's address on its network interface (not loopback)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("192.0.2.1", 9))  # UDP connect sends nothing; it only picks the route
        address = probe.getsockname()[0]
    assert not address.startswith("127."), address
    return address


@pytest.mark.parametrize("token", ["", "metrics-scrape-token-0123456789"])
async def test_metrics_from_elsewhere_need_the_token(aiohttp_server, mongo_uri, token):
    server = await aiohttp_server(create_app(make_settings(mongo_uri, metrics={"token": token})), host="0.0.0.0")
    url = f"http://{outside_address()}:{server.port}/metrics"
    async with aiohttp.ClientSession() as session:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Bearer "}):
            async with session.get(url, headers=headers) as resp:
                assert resp.status == 403
                assert await resp.json() == {"success": False, "error": "Forbidden, insufficient permissions"}
        async with session.get(url, headers={"Authorization": f"Bearer {token}"}) as resp:
            assert resp.status == (200 if token else 403)
            if token:
                assert "livechat_http_requests_total" in await resp.text()
        async with session.get(f"http://127.0.0.1:{server.port}/metrics") as resp:
            assert resp.status == 200  # loopback needs no token


async def test_metrics_config_section(tmp_path):
    from livechat.config import ConfigError, load_settings

    path = tmp_path / "config.toml"
    path.write_text('[metrics]\ntoken = "abc"\n')
    assert load_settings(path, environ={}).metrics.token == "abc"
    assert load_settings(path, environ={"LIVECHAT_METRICS_TOKEN": "xyz"}).metrics.token == "xyz"
    path.write_text('[metrics]\ntokn = "abc"\n')
    with pytest.raises(ConfigError, match="metrics.tokn"):
        load_settings(path, environ={})


async def test_json_logs_are_one_object_per_line_with_the_request_id(tmp_path, mongo_uri):
    """A real ``python -m livechat`` with ``LIVECHAT_LOG_FORMAT=json``: every line of its output is
    a JSON object; the access line of a request carries its X-Request-Id; no password or token."""
    import json
    import signal
    import uuid

    from tests.conftest import PASSWORD
    from tests.processes import Client, Livechat, livechat_env

    proc = Livechat(livechat_env(tmp_path, mongo_uri, f"logs_{uuid.uuid4().hex[:8]}", LIVECHAT_LOG_FORMAT="json"),
                    tmp_path)
    try:
        async with aiohttp.ClientSession() as session:
            await proc.ready(session)
            api = Client(session, proc.base)
            user = await api.user("candidate")
            async with session.get(proc.base + "/auth/me", headers={"Authorization": f"Bearer {user['token']}"}) as resp:
                request_id = resp.headers["X-Request-Id"]
            peer = await api.socket(user)
            try:
                await peer.emit("SUBSCRIBE_INBOX", {})
                await peer.ws.receive(timeout=5)
            finally:
                await peer.close()
    finally:
        proc.kill(signal.SIGTERM)
    text = proc.log.read_text()
    assert PASSWORD not in text and user["token"] not in text
    entries = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert entries and all({"time", "level", "logger", "message"} <= set(e) for e in entries)
    mine = [e for e in entries if e.get("requestId") == request_id]
    assert len(mine) == 1 and '"GET /auth/me" 200' in mine[0]["message"]


def test_log_format_setting(tmp_path):
    from livechat.config import ConfigError, LogFormat, load_settings

    path = tmp_path / "config.toml"
    path.write_text('[log]\nformat = "json"\n')
    assert load_settings(path, environ={}).log.format is LogFormat.JSON
    assert load_settings(path, environ={"LIVECHAT_LOG_FORMAT": "text"}).log.format is LogFormat.TEXT
    with pytest.raises(ConfigError, match="LIVECHAT_LOG_FORMAT: invalid value"):
        load_settings(path, environ={"LIVECHAT_LOG_FORMAT": "xml"})
