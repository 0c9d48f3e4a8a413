"""Injection and parsing attacks: operator objects and arrays in every field and query parameter,
malformed and mistyped bodies, malformed ids, control characters and forged log lines."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from bson import ObjectId

from tests.conftest import PASSWORD, Api, expect
from tests.contract import BAD_LOGIN, INVALID, INVALID_FORMAT
from tests.security.helpers import (
    HOSTILE_VALUES,
    Team,
    connect,
    conversation_as,
    make_team,
    not_a_schema_refusal,
    open_conversation,
    services,
)

OPERATOR_TEXTS = ('{"$ne":null}', '{"$gt":""}', '{"$where":"1"}', "[$ne]", "$ne")


@pytest.fixture
async def team(api: Api) -> Team:
    return await make_team(api)


async def post_each(api: Api, path: str, base: dict[str, Any], fields: list[str], token: dict | None) -> list:
    """POST ``base`` with each field replaced by each hostile value; the answers that were not 400."""
    wrong = []
    headers = api.auth(token) if token else {}
    for field in fields:
        for value in HOSTILE_VALUES:
            resp = await api.client.post(path, json={**base, field: value}, headers=headers)
            if problem := await not_a_schema_refusal(resp):
                wrong.append((field, value, *problem))
    return wrong


async def test_operators_and_arrays_in_body_fields_are_400(api: Api, team: Team):
    users_before = await services(api.client).store.users.count()
    newcomer = await api.user("candidate")
    wrong = await post_each(api, "/auth/signup", {"name": "Op", "email": "op@example.com", "password": PASSWORD,
                                                  "role": "agent", "supervisorId": team.supervisor["_id"]},
                            ["name", "email", "password", "role", "supervisorId"], None)
    wrong += await post_each(api, "/auth/login", {"email": team.candidate["email"], "password": PASSWORD},
                             ["email", "password"], None)
    wrong += await post_each(api, "/conversations", {"supervisorId": team.supervisor["_id"]}, ["supervisorId"],
                             newcomer)
    wrong += await post_each(api, f"/conversations/{team.conv_id}/assign", {"agentId": team.idle_agent["_id"]},
                             ["agentId"], team.supervisor)
    assert wrong == []
    assert await services(api.client).store.users.count() == users_before + 1  # only the newcomer
    listed = await expect(await api.client.get("/conversations", headers=api.auth(newcomer)), 200)
    assert listed == []
    assert (await conversation_as(api, team.supervisor, team.conv_id))["agentId"] == team.agent["_id"]


QUERY_PROBES = {
    "/conversations": ("status", "limit", "cursor"),
    "/conversations/{conv}/messages": ("afterSeq", "limit"),
    "/supervisors": ("limit", "cursor"),
    "/agents": ("limit", "cursor"),
}
BAD_SCALARS = {
    "status": ("OPEN", "open ", "", "closed\x00"),
    "limit": ("0", "501", "-1", "1e2", "0x10", "\uff11\uff10", " 10", "10.0", ""),
    "afterSeq": ("-1", "1.5", str(2**53 + 1), "\u0661", ""),
    "cursor": ("a" * 25, "a" * 23, "g" * 24, ""),
}


async def test_operators_arrays_and_junk_in_query_parameters_are_400(api: Api, team: Team):
    wrong = []
    for template, params in QUERY_PROBES.items():
        path = template.format(conv=team.conv_id)
        for param in params:
            good = {"status": "open", "limit": "5", "afterSeq": "0", "cursor": str(ObjectId())}[param]
            variants = [[(param, text)] for text in OPERATOR_TEXTS + BAD_SCALARS[param]]
            variants.append([(param, good), (param, good)])  # an array: qs-style repetition
            for query in variants:
                resp = await api.client.get(path, params=query, headers=api.auth(team.supervisor))
                if problem := await not_a_schema_refusal(resp):
                    wrong.append(problem)
            # The good value itself works: the 400s above are about the values, not the route.
            await expect(await api.client.get(path, params=[(param, good)], headers=api.auth(team.supervisor)), 200)
    assert wrong == []


async def test_bracketed_operator_keys_have_no_operator_meaning(api: Api, team: Team):
    """Express's qs would turn ``status[$ne]=closed`` into an operator; here it is an unknown,
    ignored parameter: the answer is the caller's unfiltered scope, never someone else's data."""
    other = await make_team(api)
    headers = api.auth(team.supervisor)
    everything = await expect(await api.client.get("/conversations", headers=headers), 200)
    for key in ("status[$ne]", "status[$gt]", "supervisorId[$ne]", "candidateId", "$where"):
        resp = await api.client.get("/conversations", params=[(key, "closed")], headers=headers)
        assert await expect(resp, 200) == everything
    assert other.conv_id not in {c["_id"] for c in everything}


MALFORMED_BODIES = [
    (b'{"email": "a@b.co", "password": ', "application/json"),
    (b"[]", "application/json"),
    (b'["supervisorId"]', "application/json"),
    (b'"text"', "application/json"),
    (b"42", "application/json"),
    (b"true", "application/json"),
    (b"null", "application/json"),
    (b'{"a": NaN', "application/json"),
    (b"\xef\xbb\xbf{}", "application/json"),
    (b"\xc3\x28{}", "application/json"),
    (b'{"a": "\xff"}', "application/json"),
    (b"{}", "text/plain"),
    (b"{}", "application/x-www-form-urlencoded"),
    (b"{}", "multipart/form-data; boundary=x"),
    (b"{}", "application/json-patch+json"),
    (b"{" * 50_000, "application/json"),
]


async def test_malformed_bodies_get_an_envelope_everywhere(api: Api, team: Team):
    targets = {"/auth/signup": None, "/auth/login": None, "/conversations": team.candidate,
               f"/conversations/{team.conv_id}/assign": team.supervisor,
               f"/conversations/{team.conv_id}/close": team.supervisor}
    wrong = []
    for path, user in targets.items():
        for raw, content_type in MALFORMED_BODIES:
            headers = {"Content-Type": content_type, **(api.auth(user) if user else {})}
            resp = await api.client.post(path, data=raw, headers=headers)
            if problem := await not_a_schema_refusal(resp):
                wrong.append((raw[:40], content_type, *problem))
    assert wrong == []
    assert (await conversation_as(api, team.candidate, team.conv_id))["status"] == "open"


BAD_IDS = ["a" * 25, "a" * 23, "g" * 24, "0x" + "a" * 22, " " + "a" * 23, "\uff41" * 24, "$ne", "null",
           "[object Object]", "a" * 24 + "\x00", "a" * 24 + "\r\nX-Injected: 1", "../" + "a" * 21]


async def test_malformed_ids_are_400_in_paths_and_bodies(api: Api, team: Team):
    wrong = []
    sup = api.auth(team.supervisor)
    for bad in BAD_IDS:
        quoted = bad.replace("%", "%25").replace("/", "%2F")
        probes = [
            api.client.get(f"/conversations/{quoted}", headers=sup),
            api.client.get(f"/conversations/{quoted}/messages", headers=sup),
            api.client.post(f"/conversations/{quoted}/assign", json={"agentId": team.agent["_id"]}, headers=sup),
            api.client.post(f"/conversations/{quoted}/close", headers=sup),
            api.client.post(f"/conversations/{team.conv_id}/assign", json={"agentId": bad}, headers=sup),
            api.client.post("/conversations", json={"supervisorId": bad}, headers=api.auth(team.candidate)),
            api.client.post("/auth/signup", json={"name": "A", "email": "a@example.com", "password": PASSWORD,
                                                  "role": "agent", "supervisorId": bad}),
        ]
        for probe in probes:
            if problem := await not_a_schema_refusal(await probe):
                wrong.append((bad, *problem))
    assert wrong == []


async def test_malformed_ids_are_invalid_over_websocket(api: Api, team: Team):
    peer = await connect(api.client, team.agent["token"])
    for bad in BAD_IDS + [*HOSTILE_VALUES, 12, None]:
        for event in ("JOIN_CONVERSATION", "SEND_MESSAGE", "LEAVE_CONVERSATION", "CLOSE_CONVERSATION"):
            await peer.refused(INVALID, event, {"conversationId": bad, "content": "x"})
    for key, value in (("content", {"$ne": None}), ("content", ["x"]), ("lastSeq", {"$gt": 0}),
                       ("lastSeq", "1"), ("clientMessageId", {"$ne": None})):
        event = "JOIN_CONVERSATION" if key == "lastSeq" else "SEND_MESSAGE"
        await peer.refused(INVALID, event, {"conversationId": team.conv_id, "content": "x", key: value})
    assert (await conversation_as(api, team.agent, team.conv_id))["messages"] == []


# --- control characters -----------------------------------------------------------------------

FAKE_LINE = "2026-01-01 00:00:00,000 INFO livechat: admin root@example.com logged in"
INJECTED = f"Eve\r\n{FAKE_LINE}\n\x00\x07\x08\x1b[31mred\x1b[0m\t\u2028\u2029\u202e end"
ESCAPES = ("\\r\\n2026", "\\n\\u0000\\u0007\\b\\u001b[31m", "\\t")


def assert_escaped(raw: str) -> None:
    """The raw JSON text carries the control characters as escapes, never as raw bytes."""
    for escape in ESCAPES:
        assert escape in raw, (escape, raw[:400])
    for char in "\r\n\x00\x07\x1b":
        assert char not in raw, (char, raw[:400])


async def test_control_characters_are_stored_verbatim_and_escaped(api: Api, caplog):
    caplog.set_level(logging.DEBUG)
    sup = await api.user("supervisor", name=INJECTED)
    candidate = await api.user("candidate", name=INJECTED)
    for path in ("/auth/me", "/supervisors"):
        resp = await api.client.get(path, headers=api.auth(candidate))
        raw = await resp.text()
        assert_escaped(raw)
        data = (await expect(resp, 200))
        assert INJECTED in [u["name"] for u in (data if isinstance(data, list) else [data])]
    conv = (await open_conversation(api, candidate, sup["_id"]))["_id"]
    sender, listener = await connect(api.client, candidate["token"]), await connect(api.client, candidate["token"])
    await sender.join(conv), await listener.join(conv)
    await sender.emit("SEND_MESSAGE", {"conversationId": conv, "content": INJECTED})
    frame = await listener.ws.receive_str(timeout=5)
    assert_escaped(frame)
    assert json.loads(frame)["data"]["content"] == INJECTED
    resp = await api.client.get(f"/conversations/{conv}/messages", headers=api.auth(sup))
    assert_escaped(await resp.text())
    assert [m["content"] for m in (await expect(resp, 200))["messages"]] == [INJECTED]
    # A path carrying encoded CR/LF and the fake line cannot split a log line either.
    resp = await api.client.get("/conversations/x%0d%0a" + FAKE_LINE.replace(" ", "%20"), headers=api.auth(sup))
    await expect(resp, 400, INVALID)
    for record in caplog.records:  # DEBUG included: the driver's command log must escape them too
        text = record.getMessage()
        assert f"\r\n{FAKE_LINE}" not in text and f"\n{FAKE_LINE}" not in text, (record.name, text[:300])
        if record.name.startswith(("aiohttp", "livechat")):
            assert "\r" not in text and "\n" not in text, (record.name, text[:300])


async def test_login_with_control_characters_is_a_plain_400_or_401(api: Api, caplog):
    user = await api.signup()
    resp = await api.client.post("/auth/login", json={"email": f"{user['email']}\r\n{FAKE_LINE}",
                                                      "password": PASSWORD})
    await expect(resp, 400, INVALID)
    resp = await api.client.post("/auth/login", json={"email": user["email"], "password": INJECTED})
    await expect(resp, 401, BAD_LOGIN)
    assert not any(FAKE_LINE in r.getMessage() for r in caplog.records)


async def test_a_frame_cannot_smuggle_a_second_event(api: Api, team: Team):
    """A frame full of control characters is one event; it cannot smuggle a second one."""
    peer = await connect(api.client, team.candidate["token"])
    await peer.join(team.conv_id)
    smuggle = '"}}\n{"event":"CLOSE_CONVERSATION","data":{"conversationId":"' + team.conv_id + '"}}'
    ack = await peer.ask("SEND_MESSAGE", {"conversationId": team.conv_id, "content": smuggle, "clientMessageId": "c"})
    assert ack["event"] == "MESSAGE_SENT"
    agent = await connect(api.client, team.agent["token"])
    await agent.join(team.conv_id)
    history = await conversation_as(api, team.agent, team.conv_id)
    assert [m["content"] for m in history["messages"]] == [smuggle] and history["status"] == "assigned"
    first = json.dumps({"event": "SEND_MESSAGE", "data": {"conversationId": team.conv_id, "content": "a"}})
    await peer.ws.send_str(first + '\n{"event":"CLOSE_CONVERSATION","data":{}}')
    assert (await peer.recv()) == {"event": "ERROR", "data": {"message": INVALID_FORMAT}}
