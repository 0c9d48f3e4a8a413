"""The API as documents (README "Operations"): docs/openapi.json and docs/asyncapi.yaml are valid,
cover every route and event, are served, and the real answers and frames match them — checked on
every answer of a scripted tour of the API, and by Schemathesis fuzzing a running server."""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema
import pytest
from openapi_spec_validator import validate as validate_openapi

from livechat.app import create_app
from livechat.realtime import protocol
from livechat.web.access_log import AccessLogger
from tests.api_documents import ASYNCAPI_PATH, OPENAPI_PATH, ResponseChecker, asyncapi, check_frame, openapi
from tests.conftest import PASSWORD, Api
from tests.processes import Client, Livechat, livechat_env
from tests.ws_helpers import Scene, connect

ROOT = Path(__file__).resolve().parent.parent
EVENT_NAMES = {value for name, value in vars(protocol).items()
               if name.isupper() and isinstance(value, str) and re.fullmatch(r"[A-Z_]+", value)}


def app_routes(settings) -> set[tuple[str, str]]:
    app = create_app(settings)
    return {(route.method, route.resource.canonical) for route in app.router.routes()
            if route.method not in ("HEAD", "*") and route.resource is not None}


def test_openapi_document_is_valid_openapi_3_1():
    doc = openapi()
    assert doc["openapi"].startswith("3.1")
    validate_openapi(doc)


def test_openapi_document_covers_every_route(settings):
    documented = {(method.upper(), path) for path, item in openapi()["paths"].items() for method in item}
    assert app_routes(settings) == documented  # /ws: its upgrade; the socket itself is docs/asyncapi.yaml


def test_every_operation_documents_its_errors():
    for path, item in openapi()["paths"].items():
        for method, operation in item.items():
            statuses = set(operation["responses"])
            if operation.get("security"):
                assert "401" in statuses, (method, path)
            if "requestBody" in operation and operation["requestBody"]["content"].get("application/json"):
                assert {"400", "413"} <= statuses, (method, path)
            for status, response in operation["responses"].items():
                if int(status) >= 400:
                    assert response == {"$ref": response.get("$ref")}, (method, path, status)


def test_asyncapi_document_is_structurally_valid_asyncapi_3():
    doc = asyncapi()
    assert doc["asyncapi"] == "3.0.0"
    assert {"title", "version"} <= set(doc["info"])
    messages = doc["components"]["messages"]
    assert set(messages) == EVENT_NAMES, "docs/asyncapi.yaml and livechat/realtime/protocol.py disagree"
    for name, message in messages.items():
        jsonschema.Draft202012Validator.check_schema(message["payload"])
        assert message["payload"]["properties"]["event"] == {"const": name}
    channel = doc["channels"]["ws"]
    assert channel["address"] == "/ws"
    assert set(channel["messages"]) == set(messages)

    def resolve(ref: str) -> Any:
        node = doc
        for part in ref.removeprefix("#/").split("/"):
            node = node[part]
        return node

    text = json.dumps(doc)
    for ref in set(re.findall(r'"\$ref": "(#[^"]+)"', text)):
        resolve(ref)  # every reference points somewhere
    used = set()
    for name, operation in doc["operations"].items():
        assert operation["action"] in ("send", "receive"), name
        assert resolve(operation["channel"]["$ref"]) is channel
        used |= {m["$ref"].rsplit("/", 1)[1] for m in operation["messages"]}
    assert used == set(messages), "every event is some operation's message"
    receives = {m["$ref"].rsplit("/", 1)[1] for o in doc["operations"].values() if o["action"] == "receive"
                for m in o["messages"]}
    assert receives == {v for k, v in vars(protocol).items() if k in {
        "JOIN_CONVERSATION", "SEND_MESSAGE", "LEAVE_CONVERSATION", "CLOSE_CONVERSATION", "SUBSCRIBE_INBOX",
        "SET_PRESENCE", "WATCH_CONVERSATION", "UNWATCH_CONVERSATION", "TYPING", "MARK_READ", "SEND_NOTE"}}


async def test_documents_are_served(client):
    resp = await client.get("/openapi.json")
    assert resp.status == 200 and resp.content_type == "application/json"
    assert await resp.read() == OPENAPI_PATH.read_bytes()
    resp = await client.get("/asyncapi.yaml")
    assert resp.status == 200 and resp.content_type == "application/yaml"
    assert await resp.read() == ASYNCAPI_PATH.read_bytes()


@pytest.fixture
async def checked(aiohttp_server, aiohttp_client, audit, settings):
    """The app, with every answer checked against docs/openapi.json."""
    checker = ResponseChecker()
    app = create_app(settings)
    app.on_response_prepare.append(audit.on_response_prepare)
    app.on_response_prepare.append(checker.on_response_prepare)
    client = await aiohttp_client(await aiohttp_server(app, access_log_class=AccessLogger))
    return client, checker


async def test_real_answers_match_the_openapi_document(checked):
    client, checker = checked
    api = Api(client)
    get, post, put, patch = client.get, client.post, client.put, client.patch
    admin = await api.user("admin")
    scene = await Scene.create(client)
    sup, agent, cand, conv = scene.supervisor, scene.agent, scene.candidate, scene.conv_id
    other_agent = await scene.another_agent()
    h = api.auth
    nobody = "0" * 24

    for path in ("/health/live", "/health/ready", "/metrics", "/openapi.json", "/asyncapi.yaml", "/", "/console",
                 "/console/analytics", "/static/nope.js"):
        await get(path)
    static = next(p.name for p in (ROOT / "static").iterdir() if p.is_file() and not p.name.startswith("."))
    await get(f"/static/{static}")
    # auth
    await post("/auth/signup", json={"name": "X"})
    await post("/auth/signup", json={"name": "X", "email": sup["email"], "password": PASSWORD, "role": "candidate"})
    await post("/auth/signup", json={"name": "X", "email": "x@example.com", "password": PASSWORD, "role": "agent",
                                     "supervisorId": nobody})
    await post("/auth/signup", data=io.BytesIO(b"x" * (2 * 1024 * 1024)), headers={"Content-Type": "application/json"})
    await post("/auth/login", json={"email": "nope"})
    await post("/auth/login", json={"email": "nobody@example.com", "password": PASSWORD})
    await get("/auth/me", headers=h(cand))
    await get("/auth/me")
    # conversations
    await post("/conversations", json={"supervisorId": sup["_id"]}, headers=h(cand))  # 409: has one
    await post("/conversations", json={"supervisorId": nobody}, headers=h(await api.user("candidate")))
    await post("/conversations", json={"supervisorId": "x"}, headers=h(cand))
    await post("/conversations", json={"supervisorId": sup["_id"]}, headers=h(agent))
    for who in (cand, sup, agent, admin):
        await get("/conversations", headers=h(who))
    await get("/conversations?status=nope", headers=h(cand))
    peers = [await scene.joined(cand), await scene.joined(agent)]
    await peers[0].sent(conv, "hello", "c1")
    await peers[1].new_messages(1)
    for who in (cand, sup, admin):
        await get(f"/conversations/{conv}", headers=h(who))
    await get(f"/conversations/{nobody}", headers=h(admin))
    await get(f"/conversations/{conv}", headers=h(other_agent))
    await get("/conversations/bad", headers=h(admin))
    await get(f"/conversations/{conv}/messages?afterSeq=0&limit=10", headers=h(cand))
    await get(f"/conversations/{conv}/messages?limit=0", headers=h(cand))
    await post(f"/conversations/{conv}/assign", json={"agentId": other_agent["_id"]}, headers=h(sup))
    await post(f"/conversations/{conv}/assign", json={"agentId": nobody}, headers=h(sup))
    await post(f"/conversations/{conv}/assign", json={"agentId": agent["_id"]}, headers=h(cand))
    await post(f"/conversations/{conv}/transfer", json={"agentId": agent["_id"]}, headers=h(sup))
    await post(f"/conversations/{conv}/transfer", json={}, headers=h(sup))
    await get(f"/conversations/{conv}/transfer-targets", headers=h(sup))
    await get(f"/conversations/{conv}/transfer-targets", headers=h(cand))
    await post(f"/conversations/{conv}/close", headers=h(sup))  # assigned: 400
    second = await Scene.create(client, assigned=False)
    await post(f"/conversations/{second.conv_id}/close", headers=h(admin))
    await post(f"/conversations/{second.conv_id}/close", headers=h(cand))
    # teams, routing, analytics
    await get("/supervisors", headers=h(cand))
    await get("/supervisors?limit=x", headers=h(cand))
    await get("/agents", headers=h(sup))
    await get("/agents", headers=h(admin))
    await get("/agents", headers=h(cand))
    await get(f"/supervisors/{sup['_id']}/routing", headers=h(sup))
    await get(f"/supervisors/{nobody}/routing", headers=h(admin))
    await put(f"/supervisors/{sup['_id']}/routing", json={"mode": "auto", "maxConcurrent": 3}, headers=h(sup))
    await put(f"/supervisors/{sup['_id']}/routing", json={"mode": "x", "maxConcurrent": 3}, headers=h(sup))
    await put(f"/supervisors/{sup['_id']}/routing", json={"mode": "auto", "maxConcurrent": 3}, headers=h(agent))
    await get("/admin/analytics", headers=h(admin))
    await get("/admin/analytics", headers=h(sup))
    for query in ("", "?groupBy=agent", "?groupBy=day&format=csv", "?groupBy=nope"):
        await get("/admin/analytics/summary" + query, headers=h(admin))
    await get("/admin/analytics/summary", headers=h(cand))
    # revocation
    target = await api.user("candidate")
    await patch(f"/admin/users/{target['_id']}", json={"role": "supervisor"}, headers=h(admin))
    await patch(f"/admin/users/{nobody}", json={"role": "supervisor"}, headers=h(admin))
    await patch(f"/admin/users/{target['_id']}", json={"role": "agent"}, headers=h(admin))
    await patch(f"/admin/users/{target['_id']}", json={"role": "agent"}, headers=h(cand))
    user = await api.user("candidate")
    await post("/auth/password", json={"currentPassword": "wrong one", "newPassword": PASSWORD}, headers=h(user))
    await post("/auth/password", json={"currentPassword": PASSWORD, "newPassword": "short"}, headers=h(user))
    await post("/auth/password", json={"currentPassword": PASSWORD, "newPassword": PASSWORD + "!"}, headers=h(user))
    await post("/auth/logout-all", headers=h(user))  # the old token: 401
    await post("/auth/logout-all", headers=h(cand))
    for peer in peers:
        await peer.close()

    assert checker.mismatches == []
    successes = {(m, r) for m, r, status in checker.checked if status < 300}
    documented = {(method.upper(), path) for path, item in openapi()["paths"].items() for method in item}
    assert documented - successes == set(), "every operation answered a success once"


async def test_real_frames_match_the_asyncapi_document(client):
    """Every frame a scripted session receives is one of the document's messages, shaped as it says."""
    scene = await Scene.create(client, assigned=False)
    api, conv = scene.api, scene.conv_id
    admin = await api.user("admin")
    frames: list[dict[str, Any]] = []

    async def drain(*peers) -> None:
        for peer in peers:
            while True:
                try:
                    frames.append(await peer.recv(timeout=0.3))
                except TimeoutError:
                    break

    inbox, cand = await connect(client, scene.supervisor), await connect(client, scene.candidate)
    await inbox.emit("SUBSCRIBE_INBOX", {})
    await cand.emit("SUBSCRIBE_INBOX", {})
    await cand.emit("JOIN_CONVERSATION", {"conversationId": conv})
    await drain(inbox, cand)
    await scene.assign(scene.agent)
    agent, watcher = await connect(client, scene.agent), await connect(client, admin)
    await agent.emit("JOIN_CONVERSATION", {"conversationId": conv, "lastSeq": 0})
    await watcher.emit("WATCH_CONVERSATION", {"conversationId": conv})
    await drain(agent, watcher)
    await agent.emit("SET_PRESENCE", {"status": "away"})
    await cand.emit("SEND_MESSAGE", {"conversationId": conv, "content": "hi", "clientMessageId": "m1"})
    await cand.emit("NOPE", {})
    await cand.emit("SEND_MESSAGE", {"conversationId": conv, "content": " "})
    await watcher.emit("UNWATCH_CONVERSATION", {"conversationId": conv})
    await drain(inbox, cand, agent, watcher)
    await cand.emit("LEAVE_CONVERSATION", {"conversationId": conv})
    await agent.emit("CLOSE_CONVERSATION", {"conversationId": conv})
    await drain(inbox, cand, agent, watcher)
    bad = await connect(client, token="not-a-token")
    frames += await bad.closed_with(protocol.CLOSE_UNAUTHORIZED)
    for frame in frames:
        check_frame(frame)
    seen = {f["event"] for f in frames}
    assert {"INBOX_SUBSCRIBED", "PRESENCE", "JOINED_CONVERSATION", "WATCHING_CONVERSATION", "MESSAGE_SENT",
            "NEW_MESSAGE", "ERROR", "UNWATCHED_CONVERSATION", "LEFT_CONVERSATION", "CONVERSATION_CLOSED",
            "CONVERSATION_UPDATED"} <= seen, seen


@pytest.mark.slow
async def test_schemathesis_fuzzing_finds_no_server_error_and_no_drift(tmp_path, mongo_uri):
    """Bounded: a fixed seed and example budget, every operation, as an admin and unauthenticated."""
    proc = Livechat(livechat_env(tmp_path, mongo_uri, f"fuzz_{tmp_path.name[-8:]}"), tmp_path)
    try:
        async with aiohttp.ClientSession() as session:
            await proc.ready(session)
            admin = await Client(session, proc.base).user("admin")
        command = [str(Path(sys.executable).with_name("schemathesis")), "run", str(OPENAPI_PATH),
                   "--url", proc.base, "--seed", "15", "--max-examples", "12", "--workers", "1",
                   "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,"
                               "response_schema_conformance",
                   "--header", f"Authorization: Bearer {admin['token']}",
                   "--exclude-path", "/auth/logout-all", "--exclude-path", "/auth/password",
                   "--generation-database", "none", "--no-color", "--request-timeout", "10"]
        if shutil.which(command[0]) is None:
            command[0:1] = [sys.executable, "-m", "schemathesis.cli"]
        run = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=150)
        assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    finally:
        proc.kill()
