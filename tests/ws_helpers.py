"""Shared tools of the WebSocket suite (docs/asyncapi.yaml): a client socket that speaks the
protocol (``Peer``) and the usual cast around one conversation (``Scene``): supervisor S, agent A of
S, candidate C whose conversation is addressed to S and (by default) assigned to A."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import attrs
import jwt
from aiohttp import ClientWebSocketResponse, WSMsgType
from aiohttp.test_utils import TestClient
from bson import ObjectId

from livechat.keys import services_key
from tests.conftest import TEST_SECRET, Api, expect
from tests.contract import HEX_ID, ISO_MS_Z, UNKNOWN_EVENT

NEW_MESSAGE_FIELDS = {"conversationId", "senderId", "senderRole", "content", "createdAt", "messageId", "seq"}
MESSAGE_SENT_FIELDS = {"conversationId", "clientMessageId", "messageId", "seq", "createdAt"}
CLOSED_STATES = (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED)


def forged_token(user_id: str, *, role: str = "candidate", lifetime: int = 3600, key: str = TEST_SECRET) -> str:
    """A JWT shaped like the server's own; a negative ``lifetime`` gives an expired one."""
    now = int(time.time())
    issued = now + min(lifetime, 0) - 60
    claims = {"sub": user_id, "userId": user_id, "role": role, "iat": issued, "exp": now + lifetime}
    return jwt.encode(claims, key, algorithm="HS256")


class Peer:
    """One client socket and the user holding it. Every frame read is kept, in order, in ``frames``.
    With ``ascii``, frames are sent as ``json.dumps`` writes them by default: non-ASCII characters as
    ``\\uXXXX`` escapes (a lone surrogate can be sent only so)."""

    def __init__(self, ws: ClientWebSocketResponse, user: dict[str, Any] | None = None, *,
                 ascii: bool = False) -> None:
        self.ws = ws
        self.user = user
        self.ascii = ascii
        self.frames: list[dict[str, Any]] = []

    # --- sending -----------------------------------------------------------------------------

    async def emit(self, event: str, data: Any) -> None:
        """A JSON text frame, in UTF-8 as a browser sends it (no ``\\uXXXX`` escapes unless ``ascii``)."""
        await self.ws.send_str(json.dumps({"event": event, "data": data}, ensure_ascii=self.ascii))

    async def ask(self, event: str, data: Any) -> dict[str, Any]:
        await self.emit(event, data)
        return await self.recv()

    async def say(self, conv_id: str, content: str, client_id: str | None = None) -> None:
        data = {"conversationId": conv_id, "content": content}
        if client_id is not None:
            data["clientMessageId"] = client_id
        await self.emit("SEND_MESSAGE", data)

    # --- receiving ---------------------------------------------------------------------------

    async def recv(self, timeout: float = 5.0) -> dict[str, Any]:
        """The next frame: always a JSON text frame ``{"event": str, "data": object}``."""
        msg = await self.ws.receive(timeout=timeout)
        assert msg.type is WSMsgType.TEXT, (msg.type, msg.data, self.ws.close_code)
        frame = json.loads(msg.data)
        self.frames.append(frame)
        assert set(frame) == {"event", "data"}, frame
        assert isinstance(frame["event"], str) and isinstance(frame["data"], dict), frame
        return frame

    async def expect_event(self, event: str, timeout: float = 5.0) -> dict[str, Any]:
        frame = await self.recv(timeout)
        assert frame["event"] == event, (event, frame)
        return frame["data"]

    async def next_of(self, event: str, timeout: float = 5.0) -> dict[str, Any]:
        """The data of the next ``event`` frame; other frames (broadcasts the test does not follow)
        are passed over, but an ERROR the test did not ask for fails it."""
        while True:
            frame = await self.recv(timeout)
            if frame["event"] == event:
                return frame["data"]
            assert frame["event"] != "ERROR", (event, frame)

    async def until(self, event: str, match: Any = lambda data: True, timeout: float = 10.0) -> dict[str, Any]:
        """Read frames until ``event`` with data matching ``match`` arrives, within ``timeout`` in all;
        its data. Every other frame, an ERROR too, is passed over (and kept in ``frames``)."""
        async with asyncio.timeout(timeout):
            while True:
                frame = await self.recv(timeout)
                if frame["event"] == event and match(frame["data"]):
                    return frame["data"]

    def seen(self, event: str) -> list[dict[str, Any]]:
        """The data of every ``event`` frame read so far, in arrival order."""
        return [f["data"] for f in self.frames if f["event"] == event]

    async def drain(self, quiet: float = 0.5) -> None:
        """Read whatever comes (into ``frames``) until nothing has for ``quiet`` seconds."""
        while True:
            try:
                await self.recv(quiet)
            except TimeoutError:
                return

    async def new_messages(self, count: int, timeout: float = 15.0) -> list[dict[str, Any]]:
        """The next ``count`` frames, each a ``NEW_MESSAGE`` (their data)."""
        async with asyncio.timeout(timeout):
            return [await self.expect_event("NEW_MESSAGE", timeout) for _ in range(count)]

    async def acks_and_news(self, acks: int, news: int | None = None,
                            timeout: float = 30.0) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Read until ``acks`` MESSAGE_SENT (and, if given, ``news`` NEW_MESSAGE) frames have come;
        both lists of payloads in arrival order. Any other frame fails the test."""
        got: dict[str, list[dict[str, Any]]] = {"MESSAGE_SENT": [], "NEW_MESSAGE": []}
        async with asyncio.timeout(timeout):
            while len(got["MESSAGE_SENT"]) < acks or (news is not None and len(got["NEW_MESSAGE"]) < news):
                frame = await self.recv(timeout)
                assert frame["event"] in got, frame
                got[frame["event"]].append(frame["data"])
        return got["MESSAGE_SENT"], got["NEW_MESSAGE"]

    async def until_closed(self, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Read until the server closes the socket; the frames seen before."""
        frames = []
        async with asyncio.timeout(timeout):
            while True:
                msg = await self.ws.receive()
                if msg.type in CLOSED_STATES:
                    return frames
                assert msg.type is WSMsgType.TEXT, (msg.type, msg.data)  # never a BINARY frame
                frames.append(json.loads(msg.data))
                self.frames.append(frames[-1])

    async def closed_with(self, code: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        frames = await self.until_closed(timeout)
        assert self.ws.close_code == code, (self.ws.close_code, frames[-5:])
        return frames

    # --- protocol steps ----------------------------------------------------------------------

    async def fails(self, message: str, event: str, data: Any, **echo: Any) -> None:
        """``event`` is answered by exactly ``ERROR {message, **echo}``."""
        reply = await self.ask(event, data)
        assert reply == {"event": "ERROR", "data": {"message": message, **echo}}, (event, data, reply)

    async def refused(self, message: str, event: str, data: Any) -> None:
        """``event`` is answered by an ERROR with ``message`` (its other fields are not looked at)."""
        reply = await self.ask(event, data)
        assert reply["event"] == "ERROR" and reply["data"]["message"] == message, (event, data, reply)

    async def fails_raw(self, message: str, text: str) -> None:
        await self.ws.send_str(text)
        reply = await self.recv()
        assert reply == {"event": "ERROR", "data": {"message": message}}, (text, reply)

    async def join(self, conv_id: str, **extra: Any) -> dict[str, Any]:
        reply = await self.ask("JOIN_CONVERSATION", {"conversationId": conv_id, **extra})
        assert reply["event"] == "JOINED_CONVERSATION", reply
        assert reply["data"]["conversationId"] == conv_id, reply
        return reply["data"]

    async def leave(self, conv_id: str) -> None:
        reply = await self.ask("LEAVE_CONVERSATION", {"conversationId": conv_id})
        assert reply == {"event": "LEFT_CONVERSATION", "data": {"conversationId": conv_id}}, reply

    async def sent(self, conv_id: str, content: str, client_id: str) -> dict[str, Any]:
        """Send with a ``clientMessageId``; the ``MESSAGE_SENT`` that answers it."""
        await self.say(conv_id, content, client_id)
        ack = await self.expect_event("MESSAGE_SENT")
        check_ack(ack, conv_id, client_id)
        return ack

    async def idle(self) -> None:
        """Nothing is waiting for this socket and it is still served: a LEAVE of an unrelated id
        (idempotent, harmless) is answered by the very next frame."""
        await self.leave(str(ObjectId()))

    async def quiet(self) -> None:
        """Nothing is waiting for this socket and it is still open and served, for any role: an
        unknown event is answered by the very next frame."""
        await self.fails(UNKNOWN_EVENT, "NO_SUCH_EVENT", {})

    async def close(self) -> None:
        await self.ws.close()


def check_new_message(data: dict[str, Any], conv_id: str, sender: dict[str, Any], content: str) -> None:
    """A ``NEW_MESSAGE`` payload: the seed's fields plus ``messageId`` and ``seq`` (B.1)."""
    assert set(data) == NEW_MESSAGE_FIELDS, data
    assert data["conversationId"] == conv_id
    assert data["senderId"] == sender["_id"] and data["senderRole"] == sender["role"]
    assert data["content"] == content
    assert ISO_MS_Z.match(data["createdAt"]) and HEX_ID.match(data["messageId"]), data
    assert isinstance(data["seq"], int) and data["seq"] >= 1, data


def check_ack(ack: dict[str, Any], conv_id: str, client_id: str) -> None:
    assert set(ack) == MESSAGE_SENT_FIELDS, ack
    assert ack["conversationId"] == conv_id and ack["clientMessageId"] == client_id, ack
    assert ISO_MS_Z.match(ack["createdAt"]) and HEX_ID.match(ack["messageId"]), ack
    assert isinstance(ack["seq"], int) and ack["seq"] >= 1, ack


def by_client_id(acks: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Acks keyed by their ``clientMessageId``; each id acknowledged once."""
    keyed = {ack["clientMessageId"]: ack for ack in acks}
    assert len(keyed) == len(acks), "an id was acknowledged twice"
    return keyed


def seqs(messages: list[dict[str, Any]]) -> list[int]:
    return [m["seq"] for m in messages]


def stream_key(messages: list[dict[str, Any]]) -> list[tuple]:
    """What must be identical for every receiver and the history: order, ids, senders, contents."""
    return [(m["seq"], m["messageId"], m["senderId"], m["content"]) for m in messages]


async def connect(client: TestClient, user: dict[str, Any] | None = None, *, token: str | None = None,
                  **kwargs: Any) -> Peer:
    """A socket for ``user`` (token in the query string), or with an explicit ``token``."""
    token = token if token is not None else (user or {}).get("token")
    path = "/ws" if token is None else f"/ws?token={token}"
    return Peer(await client.ws_connect(path, **kwargs), user)


@contextlib.asynccontextmanager
async def connected(client: TestClient, user: dict[str, Any]) -> AsyncIterator[Peer]:
    """A socket for ``user`` for the ``async with`` block, closed at its end."""
    peer = await connect(client, user)
    try:
        yield peer
    finally:
        await peer.close()


def hub(client: TestClient) -> Any:
    return client.server.app[services_key].hub


def sockets_of(client: TestClient, user: dict[str, Any]) -> int:
    return sum(1 for conn in hub(client).connections if str(conn.user.id) == user["_id"])


def room_size(client: TestClient, conv_id: str) -> int:
    return len(hub(client).members(ObjectId(conv_id)))


async def eventually(check: Any, timeout: float = 5.0, what: str = "condition") -> None:
    """Poll a synchronous ``check()`` until it is true (a liveness bound, not a timing test)."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what}: not within {timeout}s"
        await asyncio.sleep(0.02)


@attrs.define
class Scene:
    """Supervisor, agent, candidate and the candidate's conversation. ``client`` is the test client
    of an in-process app, or an ``aiohttp.ClientSession`` with the ``base_url`` of a real server."""

    client: Any
    api: Api
    supervisor: dict[str, Any]
    agent: dict[str, Any]
    candidate: dict[str, Any]
    conversation: dict[str, Any]

    @classmethod
    async def create(cls, client: TestClient, *, assigned: bool = True) -> Scene:
        api = Api(client)
        supervisor = await api.user("supervisor")
        agent = await api.user("agent", supervisor_id=supervisor["_id"])
        candidate = await api.user("candidate")
        conversation = await expect(await client.post("/conversations", json={"supervisorId": supervisor["_id"]},
                                                      headers=api.auth(candidate)), 201)
        scene = cls(client, api, supervisor, agent, candidate, conversation)
        if assigned:
            await scene.assign(agent)
        return scene

    @property
    def conv_id(self) -> str:
        return self.conversation["_id"]

    async def another_agent(self) -> dict[str, Any]:
        """A second agent of the same supervisor (not assigned to this conversation)."""
        return await self.api.user("agent", supervisor_id=self.supervisor["_id"])

    async def assign(self, agent: dict[str, Any]) -> None:
        resp = await self.client.post(f"/conversations/{self.conv_id}/assign", json={"agentId": agent["_id"]},
                                      headers=self.api.auth(self.supervisor))
        await expect(resp, 200)

    async def connect(self, user: dict[str, Any], **kwargs: Any) -> Peer:
        return await connect(self.client, user, **kwargs)

    async def joined(self, user: dict[str, Any], **extra: Any) -> Peer:
        peer = await self.connect(user)
        await peer.join(self.conv_id, **extra)
        return peer

    async def status(self) -> str:
        resp = await self.client.get(f"/conversations/{self.conv_id}", headers=self.api.auth(self.supervisor))
        return (await expect(resp, 200))["status"]

    async def history(self, limit: int = 500) -> list[dict[str, Any]]:
        """Every stored message, through ``GET /conversations/:id/messages`` pages (B.3)."""
        messages: list[dict[str, Any]] = []
        after: int | None = 0
        while after is not None:
            resp = await self.client.get(f"/conversations/{self.conv_id}/messages?afterSeq={after}&limit={limit}",
                                         headers=self.api.auth(self.candidate))
            page = await expect(resp, 200)
            assert len(page["messages"]) <= limit
            messages += page["messages"]
            after = page["nextAfterSeq"]
        return messages

