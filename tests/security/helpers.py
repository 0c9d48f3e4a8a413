"""Shared tools of the security suite: forged tokens, a world of two teams, WebSocket probes and
a real ``python -m livechat`` process. Every test module under tests/security/ builds on these."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import attrs
from aiohttp.test_utils import TestClient
from bson import ObjectId

from livechat.domain.auth import SignupRequest
from livechat.domain.models import Role
from livechat.keys import services_key
from tests.contract import INVALID
from tests.conftest import INTERNALS, PASSWORD, TEST_SECRET, Api, expect
from tests.processes import Server, http
from tests.ws_helpers import Peer

# What an attacker puts where a string or an id belongs: MongoDB operators and arrays.
HOSTILE_VALUES: tuple[Any, ...] = ({"$ne": None}, {"$gt": ""}, {"$where": "1"}, ["x"], [])

# Fields a client must never be able to set (docs/openapi.json schemas: the server owns them).
SERVER_FIELDS = ("_id", "passwordHash", "role", "status", "agentId", "candidateId", "supervisorId",
                 "createdAt", "closedAt", "seq", "messageId", "senderId", "senderRole")


def services(client: TestClient) -> Any:
    return client.server.app[services_key]


def smuggled(**real: Any) -> dict[str, Any]:
    """Every server-owned field with a plausible forged value, overridden by the real fields."""
    fake_id = str(ObjectId())
    forged = {"_id": fake_id, "passwordHash": "$2b$04$" + "x" * 53, "role": "admin", "status": "closed",
              "agentId": fake_id, "candidateId": fake_id, "supervisorId": fake_id,
              "createdAt": "2000-01-01T00:00:00.000Z", "closedAt": "2000-01-01T00:00:00.000Z", "seq": 999,
              "messageId": fake_id, "senderId": fake_id, "senderRole": "admin"}
    assert set(forged) == set(SERVER_FIELDS)
    return {**forged, **real}


# --- tokens -----------------------------------------------------------------------------------


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def b64url_json(data: dict[str, Any]) -> str:
    return b64url(json.dumps(data, separators=(",", ":")).encode())


def claims_for(user_id: str, *, role: str = "candidate", lifetime: int = 3600, **extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"sub": user_id, "userId": user_id, "role": role, "iat": now, "exp": now + lifetime, **extra}


HMACS = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}


def sign(claims: dict[str, Any], key: str = TEST_SECRET, alg: str = "HS256") -> str:
    """An HMAC JWT made by hand, as a forger would: any claims, any HMAC algorithm, no checks."""
    body = f"{b64url_json({'alg': alg, 'typ': 'JWT'})}.{b64url_json(claims)}"
    return f"{body}.{b64url(hmac.new(key.encode(), body.encode(), HMACS[alg]).digest())}"


def unsigned(claims: dict[str, Any], alg: str = "none") -> str:
    """``alg: none`` in any spelling, with an empty signature."""
    return f"{b64url_json({'alg': alg, 'typ': 'JWT'})}.{b64url_json(claims)}."


def tamper(token: str, **changes: Any) -> str:
    """Edit a genuine token's payload and keep its header and signature."""
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return ".".join((header, b64url_json({**claims, **changes}), signature))


# --- people and conversations -----------------------------------------------------------------


@attrs.define
class Team:
    """A supervisor with one assigned agent, an idle agent and a candidate whose conversation
    is addressed to the supervisor and assigned to the first agent."""

    supervisor: dict[str, Any]
    agent: dict[str, Any]
    idle_agent: dict[str, Any]
    candidate: dict[str, Any]
    conversation: dict[str, Any]

    @property
    def conv_id(self) -> str:
        return self.conversation["_id"]

    def members(self) -> dict[str, dict[str, Any]]:
        return {"supervisor": self.supervisor, "agent": self.agent, "idle_agent": self.idle_agent,
                "candidate": self.candidate}


async def open_conversation(api: Api, candidate: dict[str, Any], supervisor_id: str, **extra: Any) -> dict:
    resp = await api.client.post("/conversations", json={"supervisorId": supervisor_id, **extra},
                                 headers=api.auth(candidate))
    return await expect(resp, 201)


async def assign(api: Api, supervisor: dict[str, Any], conv_id: str, agent_id: str, **extra: Any) -> dict:
    resp = await api.client.post(f"/conversations/{conv_id}/assign", json={"agentId": agent_id, **extra},
                                 headers=api.auth(supervisor))
    return await expect(resp, 200)


async def make_team(api: Api) -> Team:
    supervisor = await api.user("supervisor")
    agent = await api.user("agent", supervisor_id=supervisor["_id"])
    idle_agent = await api.user("agent", supervisor_id=supervisor["_id"])
    candidate = await api.user("candidate")
    conversation = await open_conversation(api, candidate, supervisor["_id"])
    await assign(api, supervisor, conversation["_id"], agent["_id"])
    return Team(supervisor, agent, idle_agent, candidate, conversation)


async def conversation_as(api: Api, user: dict[str, Any], conv_id: str) -> dict[str, Any]:
    return await expect(await api.client.get(f"/conversations/{conv_id}", headers=api.auth(user)), 200)


async def make_admin(api: Api, email: str = "root@example.com") -> dict[str, Any]:
    """The operator's CLI path (create-admin): works in every profile."""
    auth = services(api.client).auth
    user = await auth.signup(None, SignupRequest(name="Root", email=email, password=PASSWORD, role=Role.ADMIN),
                             trusted=True)
    return {"_id": str(user.id), "email": email, "token": await api.login(email)}


# --- WebSocket --------------------------------------------------------------------------------


async def connect(client: TestClient, token: str | None = None, **kwargs: Any) -> Peer:
    """A socket with ``token`` in the query string (none: no token); its frames escape non-ASCII as
    ``aiohttp``'s ``send_json`` does, so that a lone surrogate can be sent."""
    path = "/ws" if token is None else f"/ws?token={token}"
    return Peer(await client.ws_connect(path, **kwargs), ascii=True)


# --- responses --------------------------------------------------------------------------------


def recent(stamp: str, within: float = 120.0) -> bool:
    """An ISO-8601 ``...Z`` timestamp of the last couple of minutes (never a client's 2000-01-01)."""
    moment = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    return abs((datetime.now(UTC) - moment).total_seconds()) < within


def assert_no_internals(text: str) -> None:
    assert not INTERNALS.search(text), text[:300]


async def not_a_schema_refusal(resp: Any) -> tuple[Any, ...] | None:
    """``None`` when ``resp`` is the contract's 400 ``Invalid request schema`` envelope; otherwise
    what it was instead, for a test to collect and report all at once."""
    raw = await resp.read()
    if resp.status == 400 and envelope_error(resp.status, raw) == INVALID:
        return None
    return resp.method, resp.url.raw_path_qs, resp.status, raw[:200]


def envelope_error(status: int, raw: bytes) -> str:
    """A contract error envelope; returns its message."""
    assert 400 <= status < 500, (status, raw[:300])
    data = json.loads(raw)
    assert set(data) == {"success", "error"} and data["success"] is False, data
    assert isinstance(data["error"], str) and data["error"], data
    assert_no_internals(raw.decode("utf-8", "replace"))
    return data["error"]


# --- a real `python -m livechat` ----------------------------------------------------------------


@contextlib.contextmanager
def live_server(tmp_path: Any, mongo_uri: str, **env: str) -> Iterator[Server]:
    """The real program on a free port, on the session's database (a fresh database name)."""
    server = Server(tmp_path, MONGODB_URI=mongo_uri, JWT_SECRET=TEST_SECRET,
                    LIVECHAT_DATABASE_NAME=f"sec_{uuid.uuid4().hex[:12]}", **env)
    try:
        server.wait_ready()
        yield server
    finally:
        code = server.stop()
        log = server.log.read_text(errors="replace")
        assert code == 0, log[-2000:]
        assert "Traceback" not in log, log[-4000:]


def live_user(server: Server, role: str, **extra: str) -> dict[str, Any]:
    """Sign up and log in on a live server (development profile); the user plus ``token``."""
    payload = {"name": role.title(), "email": f"{role}-{uuid.uuid4().hex[:10]}@example.com", "password": PASSWORD,
               "role": role, **extra}
    status, created = http("POST", server.base + "/auth/signup", payload)
    assert status == 201, created
    status, login = http("POST", server.base + "/auth/login", {"email": payload["email"], "password": PASSWORD})
    assert status == 200, login
    return {**created["data"], "token": login["data"]["token"]}


def access_lines(server: Server, path: str, count: int, within: float = 5.0) -> list[str]:
    """Wait for ``count`` access-log lines of ``path`` in a live server's log."""
    deadline = time.monotonic() + within
    while True:
        lines = [line for line in server.log.read_text(errors="replace").splitlines() if f'"GET {path}"' in line]
        if len(lines) >= count or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)
