"""Property-based fuzzing (hypothesis) of the request parsers and the WebSocket frame handler:
first the pure parsing functions, then a real ``python -m livechat`` process. Any input yields a
contract-shaped 4xx envelope or ``ERROR`` event — never a 500, a stack trace or a dropped
connection."""

from __future__ import annotations

import asyncio
import http.client
import json
import string
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
import attrs
import pytest
from bson import ObjectId
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from livechat.domain.auth import LoginRequest, SignupRequest
from livechat.domain.conversations import AssignAgent, CreateConversation
from livechat.errors import InvalidInput
from livechat.realtime import protocol
from livechat.naming import camel
from livechat.serialization import parse
from tests import contract
from tests.conftest import PASSWORD
from tests.processes import Server
from tests.processes import http as call_http
from tests.security.helpers import (
    assert_no_internals,
    envelope_error,
    live_server,
    live_user,
)

FUZZ = settings(max_examples=150, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

REQUEST_CLASSES = [SignupRequest, LoginRequest, CreateConversation, AssignAgent, protocol.Join, protocol.Send,
                   protocol.ConversationRef]
EVENTS = [protocol.JOIN_CONVERSATION, protocol.SEND_MESSAGE, protocol.LEAVE_CONVERSATION, protocol.CLOSE_CONVERSATION]
WS_ERRORS = {contract.INVALID_FORMAT, contract.UNKNOWN_EVENT, contract.INVALID, contract.FORBIDDEN_FOR_ROLE,
             contract.NOT_ALLOWED, contract.ALREADY_CLOSED, contract.NOT_JOINED, contract.NOT_YET_ASSIGNED,
             contract.TOO_MANY_MESSAGES}
WS_EVENTS = {"ERROR", "JOINED_CONVERSATION", "LEFT_CONVERSATION", "MESSAGE_SENT", "NEW_MESSAGE", "CONVERSATION_CLOSED"}

# --- strategies -------------------------------------------------------------------------------

scalars = (st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
           | st.floats(allow_nan=False) | st.text(max_size=30))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=12)
hex_ids = st.text(alphabet="0123456789abcdefABCDEF", min_size=23, max_size=25)
plausible = (hex_ids | st.sampled_from(["candidate", "agent", "supervisor", "admin", "open", PASSWORD,
                                        "a@example.com", " A@Example.COM ", "x" * 129, "\ud800", "", " "])
             | st.integers(min_value=-2, max_value=2**54) | st.sampled_from([{"$ne": None}, {"$gt": ""}, [], ["x"]]))
field_values = plausible | json_values
ALL_FIELDS = sorted({camel(f.name) for cls in REQUEST_CLASSES for f in attrs.fields(cls)}
                    | {"_id", "passwordHash", "role", "status", "seq", "senderId"})
# A dict shaped like some request: known keys with odd values, plus the occasional stranger.
request_dicts = st.dictionaries(st.sampled_from(ALL_FIELDS) | st.text(max_size=8), field_values, max_size=7)


def frames(conv_ids: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    data = st.fixed_dictionaries({}, optional={"conversationId": conv_ids | field_values, "content": field_values,
                                               "clientMessageId": field_values, "lastSeq": field_values}) | json_values
    framed = st.builds(lambda event, payload, extra: json.dumps({"event": event, "data": payload, **extra}),
                       st.sampled_from(EVENTS) | st.text(max_size=20) | json_values, data,
                       st.dictionaries(st.text(max_size=5), json_values, max_size=2))
    return framed | st.text(max_size=200) | json_values.map(json.dumps)


# --- the pure parsers ---------------------------------------------------------------------------


@pytest.mark.parametrize("cls", REQUEST_CLASSES, ids=lambda c: c.__name__)
@FUZZ
@given(data=request_dicts | json_values)
def test_parse_returns_the_request_or_invalid_input(cls, data):
    try:
        req = parse(data, cls)
    except InvalidInput as exc:
        assert exc.status == 400 and exc.message == contract.INVALID
        return
    assert isinstance(req, cls) and isinstance(data, dict)
    for field in attrs.fields(cls):
        value = getattr(req, field.name)
        if value is None:
            continue
        assert not isinstance(value, dict | list | bool | float), (field.name, value)
        if isinstance(value, str):
            value.encode("utf-8")  # no lone surrogates got through
        if isinstance(value, ObjectId):
            assert data[camel(field.name)].lower() == str(value)


@FUZZ
@given(text=frames(hex_ids))
def test_decode_frame_returns_an_event_or_a_format_error(text):
    try:
        event, data = protocol.decode_frame(text)
    except protocol.FormatError:
        return
    assert isinstance(event, str) and isinstance(data, dict)
    assert json.loads(text)["event"] == event


@FUZZ
@given(event=st.text(max_size=30), data=st.dictionaries(st.text(max_size=10), json_values, max_size=5))
def test_decode_frame_round_trips_well_formed_frames(event, data):
    assert protocol.decode_frame(json.dumps({"event": event, "data": data})) == (event, data)


# --- the real server ----------------------------------------------------------------------------


@attrs.frozen
class Target:
    server: Server
    tokens: dict[str, str]
    conv_id: str

    @property
    def port(self) -> int:
        return self.server.port


@pytest.fixture(scope="module")
def target(tmp_path_factory, mongo_uri) -> Target:
    # A short send_timeout only bounds how long a closed socket's handler lingers at shutdown
    # (test_websocket.py::test_a_closed_socket_is_released_promptly is about that linger).
    with live_server(tmp_path_factory.mktemp("fuzz"), mongo_uri, LIVECHAT_WS_SEND_TIMEOUT="1",
                     LIVECHAT_AUTH_LOGIN_FAILURES_PER_CLIENT="1000000") as server:
        sup = live_user(server, "supervisor")
        users = {"supervisor": sup, "agent": live_user(server, "agent", supervisorId=sup["_id"]),
                 "candidate": live_user(server, "candidate"), "admin": live_user(server, "admin")}
        status, conv = call_http("POST", server.base + "/conversations", {"supervisorId": sup["_id"]},
                                 token=users["candidate"]["token"])
        assert status == 201, conv
        status, _ = call_http("POST", f"{server.base}/conversations/{conv['data']['_id']}/assign",
                              {"agentId": users["agent"]["_id"]}, token=sup["token"])
        assert status == 200
        yield Target(server, {role: user["token"] for role, user in users.items()}, conv["data"]["_id"])
    log = server.log.read_text(errors="replace")  # stopped: the whole log, shutdown included
    for secret in [PASSWORD, *(user["token"] for user in users.values())]:
        assert secret not in log, "a password or token reached the server's log"


ROUTES = ["/auth/signup", "/auth/login", "/auth/me", "/conversations", "/conversations/{id}",
          "/conversations/{id}/messages", "/conversations/{id}/assign", "/conversations/{id}/close",
          "/supervisors", "/agents", "/admin/analytics", "/health/live", "/ws", "/{id}", "/static/{id}"]
API_PREFIXES = ("/auth/", "/conversations", "/supervisors", "/agents", "/admin/", "/health/", "/ws")
path_ids = hex_ids | st.just("REAL") | st.text(max_size=30)
bodies = (st.none() | request_dicts.map(lambda d: json.dumps(d).encode())
          | json_values.map(lambda v: json.dumps(v).encode()) | st.binary(max_size=100))
queries = st.dictionaries(st.sampled_from(["status", "limit", "cursor", "afterSeq"]) | st.text(max_size=5),
                          st.text(max_size=20) | st.sampled_from(['{"$ne":null}', "0", "500", "501", "open"]),
                          max_size=3)
header_text = st.text(alphabet=[c for c in string.printable if c not in "\r\n\x0b\x0c"], max_size=40)


@FUZZ
@given(method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH"]), route=st.sampled_from(ROUTES),
       path_id=path_ids, query=queries, body=bodies,
       content_type=st.sampled_from([None, "application/json", "text/plain", "application/json; charset=latin-1"])
       | header_text,
       who=st.sampled_from([None, "candidate", "agent", "supervisor", "admin", "junk"]))
def test_any_http_request_gets_an_envelope(target, method, route, path_id, query, body, content_type, who):
    ident = target.conv_id if path_id == "REAL" else quote(path_id, safe="")
    path = route.replace("{id}", ident) + ("?" + urlencode(query) if query else "")
    headers = {"Content-Type": content_type} if content_type is not None else {}
    if who is not None:
        headers["Authorization"] = "Bearer " + target.tokens.get(who, "junk.junk.junk")
    conn = http.client.HTTPConnection("127.0.0.1", target.port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()  # a dropped connection raises here
        raw = resp.read()
    finally:
        conn.close()
    assert resp.status < 500, (resp.status, method, path, raw[:300])
    assert_no_internals(raw.decode("utf-8", "replace"))
    if resp.status < 400 and not path.startswith(API_PREFIXES):
        return  # the built-in console's pages and assets (GET / and /static/…)
    assert resp.getheader("Content-Type", "").startswith("application/json"), (resp.status, path, raw[:200])
    if resp.status >= 400:
        envelope_error(resp.status, raw)
    else:
        assert json.loads(raw)["success"] is True


async def ws_exchange(port: int, token: str, frame: str) -> list[dict[str, Any]]:
    """Send one fuzzed frame, then a marker; return the events before the marker's answer."""
    marker = str(ObjectId())
    async with aiohttp.ClientSession() as session, \
            session.ws_connect(f"http://127.0.0.1:{port}/ws?token={token}") as ws:
        await ws.send_str(frame)
        await ws.send_json({"event": protocol.LEAVE_CONVERSATION, "data": {"conversationId": marker}})
        events = []
        while True:
            msg = await ws.receive(timeout=3)
            assert msg.type is aiohttp.WSMsgType.TEXT, (msg.type, ws.close_code, frame[:200])
            event = json.loads(msg.data)
            if event == {"event": protocol.LEFT_CONVERSATION, "data": {"conversationId": marker}}:
                return events
            events.append(event)


@FUZZ
# Staff sockets answer every frame with one ERROR (test_authorization.py); chat roles do the rest.
@given(data=st.data(), who=st.sampled_from(["candidate", "agent"]))
def test_any_websocket_frame_gets_a_contract_answer_and_the_socket_stays_open(target, data, who):
    frame = data.draw(frames(st.just(target.conv_id) | hex_ids))
    events = asyncio.run(ws_exchange(target.port, target.tokens[who], frame))
    for event in events:
        assert event["event"] in WS_EVENTS, (frame[:200], event)
        if event["event"] == "ERROR":
            assert event["data"]["message"] in WS_ERRORS, (frame[:200], event)
        assert_no_internals(json.dumps(event))
