"""Resource limits: oversize bodies and frames, floods, socket hoarding, idle and slow-header
connections, malformed HTTP, and a server that stays responsive while bcrypt is busy."""

from __future__ import annotations

import asyncio
import http.client
import io
import threading
import time
from collections.abc import Callable

import aiohttp
import pytest

from tests.conftest import PASSWORD, Api, expect, make_settings
from tests.contract import INVALID, POLICY, TOO_BIG, TOO_LARGE, TOO_MANY_CONNECTIONS, TOO_MANY_MESSAGES, UNKNOWN_EVENT
from tests.security.helpers import (
    connect,
    conversation_as,
    envelope_error,
    live_server,
    live_user,
    make_team,
    services,
)

TWO_MIB = 2 * 1024 * 1024


async def chunks(total: int, size: int = 64 * 1024):
    """A body without Content-Length (chunked transfer): the limit must hold while streaming."""
    yield b'{"name": "'
    for _ in range(total // size):
        yield b"x" * size
    yield b'"}'


async def test_oversize_bodies_are_413_and_store_nothing(api: Api):
    team = await make_team(api)
    before = await services(api.client).store.users.count()
    targets = {"/auth/signup": None, "/auth/login": None, "/conversations": team.candidate,
               f"/conversations/{team.conv_id}/assign": team.supervisor,
               f"/conversations/{team.conv_id}/close": team.supervisor}
    body = b'{"name": "' + b"x" * TWO_MIB + b'", "email": "big@example.com", "password": "correct horse", ' \
           b'"role": "candidate", "supervisorId": "' + team.supervisor["_id"].encode() + b'"}'
    for path, user in targets.items():
        headers = {"Content-Type": "application/json", **(api.auth(user) if user else {})}
        for data in (io.BytesIO(body), chunks(TWO_MIB)):
            resp = await api.client.post(path, data=data, headers=headers)
            assert envelope_error(resp.status, await resp.read()) == TOO_LARGE and resp.status == 413, path
    assert await services(api.client).store.users.count() == before
    assert (await conversation_as(api, team.supervisor, team.conv_id))["status"] == "open"


async def test_frames_over_the_limit_close_with_1009(api: Api):
    """The default limit is 64 KiB: just under it is an ordinary (schema) error, over it a close."""
    team = await make_team(api)
    peer = await connect(api.client, team.candidate["token"])
    await peer.join(team.conv_id)
    under = {"conversationId": team.conv_id, "content": "x" * (60 * 1024)}  # > 10,000 characters
    assert await peer.ask("SEND_MESSAGE", under) == {"event": "ERROR", "data": {"message": INVALID}}
    await peer.ws.send_str('{"event":"SEND_MESSAGE","data":{"content":"' + "x" * (64 * 1024) + '"}}')
    await peer.closed_with(TOO_BIG)
    await (await connect(api.client, team.candidate["token"])).quiet()  # the user may come back
    assert (await conversation_as(api, team.candidate, team.conv_id))["messages"] == []


async def test_a_message_flood_is_refused_then_closed_with_1008(app_client, mongo_uri):
    api = Api(await app_client(make_settings(mongo_uri, ws={
        "rate_burst": 5, "rate_per_second": 0.1, "abuse_strikes": 4})))
    team = await make_team(api)
    peer = await connect(api.client, team.candidate["token"])
    await peer.join(team.conv_id)
    for i in range(5):  # the burst is accepted
        ack = await peer.ask("SEND_MESSAGE", {"conversationId": team.conv_id, "content": f"m{i}",
                                              "clientMessageId": f"ok-{i}"})
        assert ack["event"] == "MESSAGE_SENT", ack
    for i in range(3):  # the excess is refused, the socket stays open…
        reply = await peer.ask("SEND_MESSAGE", {"conversationId": team.conv_id, "content": "spam",
                                                "clientMessageId": f"spam-{i}"})
        assert reply == {"event": "ERROR", "data": {"message": TOO_MANY_MESSAGES, "clientMessageId": f"spam-{i}"}}
    await peer.emit("SEND_MESSAGE", {"conversationId": team.conv_id, "content": "spam"})
    events = await peer.closed_with(POLICY)  # …until the abuse is sustained
    assert events == [{"event": "ERROR", "data": {"message": TOO_MANY_MESSAGES}}]
    history = await conversation_as(api, team.candidate, team.conv_id)
    assert [m["content"] for m in history["messages"]] == [f"m{i}" for i in range(5)]
    await (await connect(api.client, team.candidate["token"])).quiet()  # the limit is per socket


async def test_too_many_sockets_per_user_are_refused(app_client, mongo_uri):
    api = Api(await app_client(make_settings(mongo_uri, ws={"max_sockets_per_user": 2})))
    hoarder, other = await api.user("candidate"), await api.user("candidate")
    first, second = await connect(api.client, hoarder["token"]), await connect(api.client, hoarder["token"])
    refused = await connect(api.client, hoarder["token"])
    assert await refused.closed_with(POLICY) == [{"event": "ERROR", "data": {"message": TOO_MANY_CONNECTIONS}}]
    for peer in (first, second, await connect(api.client, other["token"])):  # nobody else is affected
        await peer.quiet()
    await first.close()
    deadline = time.monotonic() + 3
    while True:  # the slot is released once the server has seen the close
        reply = await (await connect(api.client, hoarder["token"])).ask("NO_SUCH_EVENT", {})
        if reply == {"event": "ERROR", "data": {"message": UNKNOWN_EVENT}}:
            break
        assert reply == {"event": "ERROR", "data": {"message": TOO_MANY_CONNECTIONS}}, reply
        assert time.monotonic() < deadline, "a closed socket never released its slot"
        await asyncio.sleep(0.1)


async def test_login_throttling_cannot_be_sidestepped(app_client, mongo_uri):
    """Forwarded-for headers are not the client's address, and an email's spelling is not another account."""
    api = Api(await app_client(make_settings(mongo_uri, auth={"login_failures_per_account": 3,
                                                              "login_failures_per_client": 6})))
    await api.signup(email="victim@example.com")
    spellings = ["victim@example.com", "VICTIM@example.com", " Victim@Example.COM "]
    for i, email in enumerate(spellings):
        resp = await api.client.post("/auth/login", json={"email": email, "password": "wrong-password"},
                                     headers={"X-Forwarded-For": f"203.0.113.{i}", "X-Real-IP": f"198.51.100.{i}"})
        await expect(resp, 401)
    resp = await api.client.post("/auth/login", json={"email": "victim@EXAMPLE.com", "password": PASSWORD})
    await expect(resp, 429, "Too many login attempts, try again later")
    for i in range(3):  # other accounts, "other" addresses: the one real peer address runs out
        resp = await api.client.post("/auth/login", json={"email": f"spray{i}@example.com", "password": "password1"},
                                     headers={"X-Forwarded-For": f"192.0.2.{i}", "Forwarded": f"for=192.0.2.{i}"})
        await expect(resp, 401)
    resp = await api.client.post("/auth/login", json={"email": "fresh@example.com", "password": "password1"},
                                 headers={"X-Forwarded-For": "192.0.2.200"})
    await expect(resp, 429)


# --- slow and idle connections ----------------------------------------------------------------


async def closed_after(host: str, port: int, script: list[bytes], pause: float = 0.0) -> bytes:
    """Open a raw TCP connection, write ``script`` (pausing between pieces), and return what the server
    sent before it closed the connection; a server that never closes it fails the test after 10 s."""
    reader, writer = await asyncio.open_connection(host, port)

    async def drip() -> None:
        for piece in script:
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(pause)

    dripping = asyncio.create_task(drip())
    try:
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        dripping.cancel()
        await asyncio.gather(dripping, return_exceptions=True)
        writer.close()


async def test_idle_and_slow_header_connections_are_closed(app_client, mongo_uri):
    client = await app_client(make_settings(mongo_uri, server={"keepalive_timeout": 1.0}))
    host, port = client.server.host, client.server.port
    head = b"GET /health/live HTTP/1.1\r\nHost: x\r\n"
    probes = {
        "silent": [],
        "partial request line": [b"GET /health/li"],
        "partial headers": [head],
        "slowloris": [head] + [b"X-Drip: %d\r\n" % i for i in range(40)],
        "idle keep-alive": [head + b"\r\n"],
    }
    socket = await connect(client, (await Api(client).user())["token"])  # open across the timeout
    results = await asyncio.gather(*(closed_after(host, port, script, pause=0.25) for script in probes.values()))
    for name, received in zip(probes, results, strict=True):
        if name == "idle keep-alive":
            assert received.startswith(b"HTTP/1.1 200"), received[:100]
        else:
            assert b"200 OK" not in received, (name, received[:100])
    await socket.quiet()  # a WebSocket is governed by its heartbeat, not the keep-alive timeout


@pytest.mark.parametrize(
    "raw",
    [
        b"\x00\x01garbage\r\n\r\n",
        b"GET /health/live HTTP/9.9\r\nHost: x\r\n\r\n",
        b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 20_000 + b"\r\n\r\n",
        b"POST /auth/login HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST /auth/login HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
        b"POST /auth/login HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
        b"GET /health/live HTTP/1.1\r\nHost: x\r\nBad Header: x\r\n\r\n",
    ],
    ids=["garbage", "bad-version", "long-header", "cl-and-te", "two-content-lengths", "negative-length",
         "space-in-name"],
)
async def test_malformed_http_is_refused_without_internals(client, raw):
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    writer.write(raw)
    await writer.drain()
    received = await asyncio.wait_for(reader.read(), 5)  # answered, then closed: no hang
    writer.close()
    status = int(received.split(b" ", 2)[1])
    assert 400 <= status < 500, received[:200]
    assert b"Traceback" not in received and b"Error" not in received.split(b"\r\n\r\n", 1)[-1], received[:400]


# --- bcrypt never stalls the event loop ----------------------------------------------------------


def test_health_answers_while_50_logins_hash(tmp_path, mongo_uri):
    """/health/live keeps answering 200 while 50 logins hash at bcrypt cost 10 (hashing runs off the
    event loop). How fast it answers meanwhile is a measurement, not a test: ``python -m bench``
    reports the p99 of /health/live during its login storm, at the production cost."""
    with live_server(tmp_path, mongo_uri, LIVECHAT_AUTH_BCRYPT_ROUNDS="10",
                     LIVECHAT_AUTH_LOGIN_FAILURES_PER_CLIENT="1000",
                     LIVECHAT_AUTH_LOGIN_FAILURES_PER_ACCOUNT="1000") as server:
        live_user(server, "candidate", email="load@example.com")
        answered = probe_while(server, lambda: asyncio.run(login_load(server.base, "load@example.com")))
    assert answered >= 20, answered  # enough answers that the load was really probed


def probe_while(server, load: Callable[[], None]) -> int:
    """Poll GET /health/live from a thread of its own (one keep-alive connection) while ``load`` runs;
    how many 200 answers came (any other answer or a dropped connection fails the test)."""
    answered = 0
    done = threading.Event()

    failures: list[Exception] = []

    def probe() -> None:
        nonlocal answered
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        try:
            while not done.is_set():
                conn.request("GET", "/health/live")
                resp = conn.getresponse()
                resp.read()
                assert resp.status == 200, resp.status
                answered += 1
                time.sleep(0.005)  # a prober, not a second load
        except (OSError, AssertionError, http.client.HTTPException) as exc:  # reported by the test, not lost
            failures.append(exc)
        finally:
            conn.close()

    prober = threading.Thread(target=probe)
    prober.start()
    try:
        load()
    finally:
        done.set()
        prober.join(60)
    assert not failures, failures
    return answered


async def login_load(base: str, email: str) -> None:
    """50 concurrent logins, half right and half wrong: each runs a full-cost bcrypt check."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def login(i: int) -> int:
            password = PASSWORD if i % 2 else f"wrong-{i}-{PASSWORD}"
            async with session.post(base + "/auth/login", json={"email": email, "password": password}) as r:
                await r.read()
                return r.status

        statuses = await asyncio.gather(*(login(i) for i in range(50)))
    assert sorted(set(statuses)) == [200, 401], statuses  # no 429 in the way
