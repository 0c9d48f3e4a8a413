"""docs/openapi.json: the conversation endpoints over real HTTP and WebSocket, against
the real database — exact errors and shapes, the state machine, races, analytics, listings, history.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import attrs
import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient

from tests.conftest import expect
from tests.contract import (
    ACTIVE_EXISTS,
    AGENT_NOT_FOUND,
    ALREADY_CLOSED,
    CONV_NOT_FOUND,
    FORBIDDEN,
    HEX_ID,
    INVALID,
    INVALID_AGENT_ROLE,
    INVALID_SUPERVISOR_ROLE,
    ISO_MS_Z,
    NOT_ALLOWED,
    NOT_JOINED,
    NOT_OPEN,
    NOT_YOUR_AGENT,
    NOT_YOUR_CONVERSATION,
    SUPERVISOR_NOT_FOUND,
    UNAUTHORIZED,
)
from tests.conversations_helpers import Chat, World, attempt, ref, snapshot
from tests.ws_helpers import Peer, connected

UNKNOWN_ID = "0123456789abcdef01234567"  # well formed, never issued
CONVERSATION_FIELDS = {"_id", "status", "candidateId", "supervisorId", "agentId", "createdAt"}

# Malformed ids (docs/openapi.json, info): always 400 "Invalid request schema", never 404 or 500.
BAD_PATH_IDS = ["123", "a" * 25, "a" * 23, "g" * 24, "0123456789abcdef0123456z", '{"$ne":null}', "null",
                '["' + "a" * 24 + '"]', "-1"]
BAD_BODY_IDS = ["123", "a" * 25, "g" * 24, "", {"$ne": None}, 123, 1.5, ["a" * 24], None, True]


# --- WebSocket steps (a socket is a tests.ws_helpers.Peer) --------------------------------------------------


async def agent_joins(client: TestClient, agent: dict[str, Any], conv: dict | str) -> str:
    """The assigned agent joins over WebSocket (its first join moves open → assigned); the status it hears."""
    async with connected(client, agent) as peer:
        return (await peer.join(ref(conv)))["status"]


async def close_in_chat(peer: Peer, conv: dict | str) -> None:
    """The assigned agent closes the conversation over WebSocket (CLOSE_CONVERSATION)."""
    await peer.emit("CLOSE_CONVERSATION", {"conversationId": ref(conv)})
    assert (await peer.next_of("CONVERSATION_CLOSED"))["conversationId"] == ref(conv)


async def send_all(peer: Peer, conv: dict | str, texts: list[str]) -> list[dict[str, Any]]:
    """Send each text with a clientMessageId; the MESSAGE_SENT acks, in the order sent."""
    ids = [uuid.uuid4().hex for _ in texts]
    for client_id, text in zip(ids, texts, strict=True):
        await peer.say(ref(conv), text, client_id)
    acks: dict[str, dict[str, Any]] = {}
    while len(acks) < len(ids):
        ack = await peer.next_of("MESSAGE_SENT")
        acks[ack["clientMessageId"]] = ack
    return [acks[client_id] for client_id in ids]


def ids_of(items: list[dict[str, Any]]) -> list[str]:
    return [item["_id"] for item in items]


def parse_iso(text: str) -> datetime:
    assert ISO_MS_Z.match(text), text
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def err(route: str, who: str | None, body: dict | None, status: int, error: str, why: str) -> Any:
    return pytest.param(route, who, body, status, error, id=f"{route} | {why}")


# --- every error of docs/openapi.json, with the check order of its info --------------------------------

ERRORS = [
    # POST /conversations (candidate) {supervisorId}
    err("POST /conversations", None, {"supervisorId": "S"}, 401, UNAUTHORIZED, "no token"),
    err("POST /conversations", "A", {"supervisorId": "S"}, 403, FORBIDDEN, "agent"),
    err("POST /conversations", "S", {"supervisorId": "S"}, 403, FORBIDDEN, "supervisor"),
    err("POST /conversations", "ADMIN", {"supervisorId": "S"}, 403, FORBIDDEN, "admin"),
    err("POST /conversations", None, {"supervisorId": "123"}, 401, UNAUTHORIZED, "auth before schema"),
    err("POST /conversations", "A", {"supervisorId": "123"}, 403, FORBIDDEN, "role before schema"),
    err("POST /conversations", "C2", {}, 400, INVALID, "missing supervisorId"),
    err("POST /conversations", "C2", {"supervisorId": UNKNOWN_ID}, 404, SUPERVISOR_NOT_FOUND, "unknown supervisor"),
    err("POST /conversations", "C2", {"supervisorId": "X"}, 404, SUPERVISOR_NOT_FOUND, "a conversation id"),
    err("POST /conversations", "C2", {"supervisorId": "C"}, 400, INVALID_SUPERVISOR_ROLE, "a candidate"),
    err("POST /conversations", "C2", {"supervisorId": "A"}, 400, INVALID_SUPERVISOR_ROLE, "an agent"),
    err("POST /conversations", "C2", {"supervisorId": "ADMIN"}, 400, INVALID_SUPERVISOR_ROLE, "an admin"),
    err("POST /conversations", "C", {"supervisorId": "S2"}, 409, ACTIVE_EXISTS, "candidate with an open one"),
    err("POST /conversations", "C", {"supervisorId": UNKNOWN_ID}, 404, SUPERVISOR_NOT_FOUND,
        "existence before the active-conversation rule"),
    # POST /conversations/:id/assign (supervisor) {agentId}
    err("POST /conversations/X/assign", None, {"agentId": "A"}, 401, UNAUTHORIZED, "no token"),
    err("POST /conversations/X/assign", "C", {"agentId": "A"}, 403, FORBIDDEN, "candidate"),
    err("POST /conversations/X/assign", "A", {"agentId": "A"}, 403, FORBIDDEN, "agent"),
    err("POST /conversations/X/assign", "ADMIN", {"agentId": "A"}, 403, FORBIDDEN, "admin"),
    err("POST /conversations/123/assign", None, {"agentId": "A"}, 401, UNAUTHORIZED, "auth before schema"),
    err("POST /conversations/123/assign", "C", {"agentId": "A"}, 403, FORBIDDEN, "role before schema"),
    err("POST /conversations/X/assign", "S", {}, 400, INVALID, "missing agentId"),
    err("POST /conversations/X/assign", "S2", {"agentId": "123"}, 400, INVALID, "schema before ownership"),
    err(f"POST /conversations/{UNKNOWN_ID}/assign", "S", {"agentId": "123"}, 400, INVALID, "schema before existence"),
    err(f"POST /conversations/{UNKNOWN_ID}/assign", "S", {"agentId": "A"}, 404, CONV_NOT_FOUND, "unknown"),
    err(f"POST /conversations/{UNKNOWN_ID}/assign", "S", {"agentId": "A2"}, 404, CONV_NOT_FOUND,
        "conversation existence before agent checks"),
    err("POST /conversations/X/assign", "S2", {"agentId": "A2"}, 403, NOT_YOUR_CONVERSATION,
        "conversation of another supervisor"),
    err("POST /conversations/X/assign", "S2", {"agentId": "A"}, 403, NOT_YOUR_CONVERSATION,
        "conversation ownership before agent ownership"),
    err("POST /conversations/X/assign", "S", {"agentId": UNKNOWN_ID}, 404, AGENT_NOT_FOUND, "unknown agent"),
    err("POST /conversations/X/assign", "S", {"agentId": "X"}, 404, AGENT_NOT_FOUND, "a conversation id"),
    err("POST /conversations/X/assign", "S", {"agentId": "C"}, 400, INVALID_AGENT_ROLE, "a candidate"),
    err("POST /conversations/X/assign", "S", {"agentId": "S"}, 400, INVALID_AGENT_ROLE, "itself"),
    err("POST /conversations/X/assign", "S", {"agentId": "S2"}, 400, INVALID_AGENT_ROLE, "a supervisor"),
    err("POST /conversations/X/assign", "S", {"agentId": "ADMIN"}, 400, INVALID_AGENT_ROLE, "an admin"),
    err("POST /conversations/X/assign", "S", {"agentId": "A2"}, 403, NOT_YOUR_AGENT, "agent of another supervisor"),
    # GET /conversations/:id (any role, scoped)
    err("GET /conversations/X", None, None, 401, UNAUTHORIZED, "no token"),
    err("GET /conversations/123", None, None, 401, UNAUTHORIZED, "auth before schema"),
    err("GET /conversations/X", "C2", None, 403, FORBIDDEN, "foreign candidate"),
    err("GET /conversations/X", "A2", None, 403, FORBIDDEN, "foreign agent"),
    err("GET /conversations/X", "S2", None, 403, FORBIDDEN, "foreign supervisor"),
    err(f"GET /conversations/{UNKNOWN_ID}", "ADMIN", None, 404, CONV_NOT_FOUND, "unknown, admin"),
    err(f"GET /conversations/{UNKNOWN_ID}", "C2", None, 404, CONV_NOT_FOUND, "unknown, existence before ownership"),
    # POST /conversations/:id/close (admin, owning supervisor)
    err("POST /conversations/X/close", None, {}, 401, UNAUTHORIZED, "no token"),
    err("POST /conversations/X/close", "C", {}, 403, FORBIDDEN, "owning candidate"),
    err("POST /conversations/X/close", "A", {}, 403, FORBIDDEN, "assigned agent"),
    err(f"POST /conversations/{UNKNOWN_ID}/close", "C", {}, 403, FORBIDDEN, "role before existence"),
    err("POST /conversations/123/close", "A", {}, 403, FORBIDDEN, "role before schema"),
    err("POST /conversations/123/close", "S2", {}, 400, INVALID, "schema before ownership"),
    err(f"POST /conversations/{UNKNOWN_ID}/close", "S", {}, 404, CONV_NOT_FOUND, "unknown, supervisor"),
    err(f"POST /conversations/{UNKNOWN_ID}/close", "ADMIN", {}, 404, CONV_NOT_FOUND, "unknown, admin"),
    err("POST /conversations/X/close", "S2", {}, 403, FORBIDDEN, "supervisor not the owner"),
    # GET /admin/analytics (admin)
    err("GET /admin/analytics", None, None, 401, UNAUTHORIZED, "no token"),
    err("GET /admin/analytics", "C", None, 403, FORBIDDEN, "candidate"),
    err("GET /admin/analytics", "A", None, 403, FORBIDDEN, "agent"),
    err("GET /admin/analytics", "S", None, 403, FORBIDDEN, "supervisor"),
]


@pytest.mark.parametrize("route, who, body, status, error", ERRORS)
async def test_contract_errors(chat: Chat, world: World, route, who, body, status, error):
    before = await snapshot(chat, world)
    await attempt(chat, world, who, route, body, status=status, error=error)
    assert await snapshot(chat, world) == before  # a refused request changes nothing


@pytest.fixture
async def crew(chat: Chat) -> dict[str, Any]:
    """Lighter than World, for requests that must fail on their form alone: one user per role and the
    candidate's conversation, addressed to the supervisor and assigned to the agent."""
    (supervisor, (agent,)), candidate, admin = await asyncio.gather(chat.team(), chat.user(), chat.user("admin"))
    conv = await chat.open(candidate, supervisor)
    await chat.assign(supervisor, conv, agent)
    return {"candidate": candidate, "agent": agent, "supervisor": supervisor, "admin": admin, "conv": conv["_id"]}


ID_ROUTES = ["GET /conversations/{}", "GET /conversations/{}/messages", "POST /conversations/{}/assign",
             "POST /conversations/{}/close"]


@pytest.mark.parametrize("bad", BAD_PATH_IDS)
@pytest.mark.parametrize("route", ID_ROUTES)
async def test_malformed_path_ids_are_400(chat: Chat, crew, route, bad):
    # The supervisor has the role for all four routes, so only the id is wrong.
    method, path = route.split(" ")
    body = {"agentId": crew["agent"]["_id"]} if path.endswith("/assign") else None
    await chat.call(method, path.format(quote(bad, safe="")), crew["supervisor"], json=body,
                    status=400, error=INVALID)


@pytest.mark.parametrize("role", ["candidate", "agent", "supervisor", "admin"])
@pytest.mark.parametrize("path", ["/conversations/{}", "/conversations/{}/messages"])
async def test_unknown_conversation_is_404_for_every_role(chat: Chat, crew, path, role):
    await chat.call("GET", path.format(UNKNOWN_ID), crew[role], status=404, error=CONV_NOT_FOUND)


@pytest.mark.parametrize("bad", BAD_BODY_IDS, ids=repr)
@pytest.mark.parametrize("role, path, field", [("candidate", "/conversations", "supervisorId"),
                                               ("supervisor", "/conversations/{}/assign", "agentId")])
async def test_malformed_body_ids_are_400(chat: Chat, crew, role, path, field, bad):
    # The candidate already has a conversation (409) and the assign would succeed: the id decides.
    await chat.call("POST", path.format(crew["conv"]), crew[role], json={field: bad}, status=400, error=INVALID)
    assert (await chat.view(crew["admin"], crew["conv"]))["agentId"] == crew["agent"]["_id"]


@pytest.mark.parametrize("raw", ["{", "[]", '"x"', "null", "1", '{"agentId": "A"', b"\xff{}"], ids=repr)
@pytest.mark.parametrize("role, path", [("candidate", "/conversations"), ("supervisor", "/conversations/{}/assign"),
                                        ("supervisor", "/conversations/{}/close")])
async def test_bodies_that_are_not_json_objects_are_400(chat: Chat, crew, role, path, raw):
    await chat.call("POST", path.format(crew["conv"]), crew[role], raw=raw, status=400, error=INVALID)
    assert (await chat.view(crew["admin"], crew["conv"]))["status"] == "open"


# --- shapes ----------------------------------------------------------------------------------------------


async def test_create_returns_the_open_conversation(chat: Chat, world: World):
    before = datetime.now(UTC)
    conv = await chat.open(world.C2, world.S2)
    assert CONVERSATION_FIELDS <= set(conv)
    assert HEX_ID.match(conv["_id"]) and conv["_id"] != world.X["_id"]
    assert conv["status"] == "open" and conv["agentId"] is None
    assert (conv["supervisorId"], conv["candidateId"]) == (world.S2["_id"], world.C2["_id"])
    assert before - timedelta(seconds=1) <= parse_iso(conv["createdAt"]) <= datetime.now(UTC) + timedelta(seconds=1)
    view = await chat.view(world.C2, conv)
    assert {key: view[key] for key in conv} == conv and view["messages"] == []


async def test_smuggled_fields_change_nothing(chat: Chat, world: World):
    conv = await chat.call(
        "POST", "/conversations", world.C2, status=201,
        json={"supervisorId": world.S2["_id"], "status": "closed", "agentId": world.A2["_id"],
              "candidateId": world.C["_id"], "_id": UNKNOWN_ID})
    assert (conv["status"], conv["agentId"], conv["candidateId"]) == ("open", None, world.C2["_id"])
    assert conv["_id"] != UNKNOWN_ID
    await chat.call("POST", f"/conversations/{conv['_id']}/assign", world.S2, status=200,
                    json={"agentId": world.A2["_id"], "status": "closed", "supervisorId": world.S["_id"]})
    view = await chat.view(world.ADMIN, conv)
    assert (view["status"], view["agentId"], view["supervisorId"]) == ("open", world.A2["_id"], world.S2["_id"])


async def test_assign_returns_exactly_the_three_ids_and_keeps_the_status(chat: Chat, world: World):
    conv = await chat.open(world.C2, world.S)
    data = await chat.assign(world.S, conv, world.A)
    assert data == {"conversationId": conv["_id"], "agentId": world.A["_id"], "supervisorId": world.S["_id"]}
    view = await chat.view(world.A, conv)
    assert (view["status"], view["agentId"]) == ("open", world.A["_id"])


async def test_view_shows_the_conversation_with_its_messages(chat: Chat, client: TestClient, world: World):
    async with connected(client, world.C) as peer:
        await peer.join(ref(world.X))
        await send_all(peer, world.X, ["hello", "anyone?"])
    for who in (world.C, world.A, world.S, world.ADMIN):
        view = await chat.view(who, world.X)
        staff = {"assignments": view["assignments"], "notes": []} if who is not world.C else {}
        # unread (C.6): the candidate wrote both, so it has nothing to read; no staff member read them.
        assert view == {**world.X, "agentId": world.A["_id"], "messages": view["messages"],
                        "candidateName": world.C["name"], "agentName": world.A["name"],
                        "lastMessage": {**view["lastMessage"], "seq": 2, "senderRole": "candidate", "content": "anyone?"},
                        "unread": 0 if who is world.C else 2, **staff}
        assert [m["content"] for m in view["messages"]] == ["hello", "anyone?"]  # oldest first
        for message in view["messages"]:
            assert (message["senderId"], message["senderRole"]) == (world.C["_id"], "candidate")
            parse_iso(message["createdAt"])


async def test_close_returns_the_id_and_closed(chat: Chat, world: World):
    assert await chat.close(world.S, world.X) == {"conversationId": world.X["_id"], "status": "closed"}
    view = await chat.view(world.C, world.X)
    assert view["status"] == "closed" and parse_iso(view["closedAt"]) >= parse_iso(view["createdAt"])


# --- the state machine (A.5) over HTTP and WebSocket --------------------------------------------------------


async def assert_closed_for_good(chat: Chat, world: World, conv: dict | str) -> None:
    """Closed is terminal: no close, no assign; the candidate may start a new conversation."""
    assert (await chat.view(world.ADMIN, conv))["status"] == "closed"
    for closer in (world.S, world.ADMIN):
        await chat.close(closer, conv, status=400, error=ALREADY_CLOSED)
    await chat.assign(world.S, conv, world.A, status=400, error=ALREADY_CLOSED)
    fresh = await chat.open(world.C, world.S2)
    assert fresh["_id"] != ref(conv) and fresh["status"] == "open"
    assert (await chat.view(world.ADMIN, conv))["status"] == "closed"


async def test_assign_keeps_open_and_the_agents_join_makes_it_assigned(chat: Chat, client: TestClient,
                                                                       world: World):
    view = await chat.view(world.ADMIN, world.X)
    assert (view["status"], view["agentId"]) == ("open", world.A["_id"])  # assigned over HTTP, not joined
    assert await agent_joins(client, world.A, world.X) == "assigned"
    assert (await chat.view(world.C, world.X))["status"] == "assigned"
    assert await agent_joins(client, world.A, world.X) == "assigned"  # a second join changes nothing
    for closer in (world.S, world.ADMIN):  # assigned ones are closed by their agent, in chat
        await chat.close(closer, world.X, status=400, error=NOT_OPEN)
    await chat.open(world.C, world.S2, status=409, error=ACTIVE_EXISTS)
    assert (await chat.view(world.S, world.X))["status"] == "assigned"


@pytest.mark.parametrize("closer", ["S", "ADMIN"])
async def test_an_open_conversation_closed_over_http_is_terminal(chat: Chat, client: TestClient, world: World,
                                                                closer):
    async with connected(client, world.C) as peer:
        assert (await peer.join(ref(world.X)))["status"] == "open"  # a candidate may join before any agent
        data = await chat.close(world.party(closer), world.X)
        assert data == {"conversationId": world.X["_id"], "status": "closed"}
        assert (await peer.next_of("CONVERSATION_CLOSED"))["conversationId"] == world.X["_id"]
    await assert_closed_for_good(chat, world, world.X)


async def test_a_conversation_closed_by_its_agent_is_terminal_over_http(chat: Chat, client: TestClient,
                                                                        world: World):
    async with connected(client, world.A) as peer:
        assert (await peer.join(ref(world.X)))["status"] == "assigned"
        await close_in_chat(peer, world.X)
    await assert_closed_for_good(chat, world, world.X)


async def test_reassignment_moves_access_at_once(chat: Chat, client: TestClient, world: World):
    newcomer = await chat.user("agent", supervisor_id=world.S["_id"])
    async with connected(client, world.A) as peer:
        assert (await peer.join(ref(world.X)))["status"] == "assigned"
        data = await chat.assign(world.S, world.X, newcomer)
        assert data == {"conversationId": world.X["_id"], "agentId": newcomer["_id"], "supervisorId": world.S["_id"]}
        # The previous agent lost access at once: over HTTP, and its socket left the room.
        await chat.view(world.A, world.X, status=403, error=FORBIDDEN)
        await chat.call("GET", f"/conversations/{world.X['_id']}/messages", world.A, status=403, error=FORBIDDEN)
        assert world.X["_id"] not in ids_of(await chat.listing(world.A))
        await peer.say(world.X["_id"], "still here?")
        assert (await peer.next_of("ERROR"))["message"] == NOT_JOINED
        await peer.emit("JOIN_CONVERSATION", {"conversationId": world.X["_id"]})
        assert (await peer.next_of("ERROR"))["message"] == NOT_ALLOWED
    view = await chat.view(newcomer, world.X)
    assert (view["status"], view["agentId"]) == ("assigned", newcomer["_id"])  # status unchanged
    assert ids_of(await chat.listing(newcomer)) == [world.X["_id"]]
    assert await agent_joins(client, newcomer, world.X) == "assigned"


# --- races, for real against the database ------------------------------------------------------------------


async def test_concurrent_creates_by_one_candidate_make_exactly_one(chat: Chat, world: World):
    responses = await asyncio.gather(*(
        chat.request("POST", "/conversations", world.C2, json={"supervisorId": world.S2["_id"]})
        for _ in range(10)))
    assert sorted(r.status for r in responses) == [201] + [409] * 9
    for response in responses:
        if response.status == 409:
            await expect(response, 409, ACTIVE_EXISTS)
    assert len(await chat.listing(world.C2)) == 1


async def test_assign_racing_close_never_wins_after_the_close(chat: Chat, world: World):
    """Assign leaves an open conversation open, so the close always succeeds; the assign either landed
    before it (200, and the stored agent is A) or after it (400, and no agent was ever stored). Either
    way the conversation ends closed, for good. The close starts 0-4.5 ms after the assign, so that
    over the rounds it lands before, during and after the assign's read-check-write."""

    async def closing_after(delay: float, conv: dict) -> ClientResponse:
        await asyncio.sleep(delay)
        return await chat.closing(world.ADMIN, conv)

    for round_ in range(10):
        conv = await chat.open(world.C2, world.S)
        assign, close = await asyncio.gather(chat.assigning(world.S, conv, world.A),
                                             closing_after(round_ / 2000, conv))
        assert await expect(close, 200) == {"conversationId": conv["_id"], "status": "closed"}
        stored = await chat.view(world.ADMIN, conv)
        assert stored["status"] == "closed"
        if assign.status == 200:
            assert stored["agentId"] == world.A["_id"]
        else:
            await expect(assign, 400, ALREADY_CLOSED)
            assert stored["agentId"] is None
        await chat.assign(world.S, conv, world.A, status=400, error=ALREADY_CLOSED)


async def test_two_closes_race_and_exactly_one_wins(chat: Chat, world: World):
    for _ in range(5):
        conv = await chat.open(world.C2, world.S)
        responses = await asyncio.gather(chat.closing(world.S, conv), chat.closing(world.ADMIN, conv))
        assert sorted(r.status for r in responses) == [200, 400]
        loser = next(r for r in responses if r.status == 400)
        await expect(loser, 400, ALREADY_CLOSED)


async def test_agent_join_racing_close_has_one_consistent_winner(chat: Chat, client: TestClient, world: World):
    """open → assigned (the agent's join) and open → closed (HTTP) exclude each other."""

    async def joining(peer: Peer, conv: dict) -> dict[str, Any]:
        return await peer.ask("JOIN_CONVERSATION", {"conversationId": conv["_id"]})

    async with connected(client, world.A) as peer:
        for _ in range(10):
            conv = await chat.open(world.C2, world.S)
            await chat.assign(world.S, conv, world.A)
            close, frame = await asyncio.gather(chat.closing(world.S, conv), joining(peer, conv))
            final = (await chat.view(world.ADMIN, conv))["status"]
            if close.status == 200:  # the close came first: the join is refused, the conversation stays closed
                await expect(close, 200)
                assert (frame["event"], frame["data"]["message"], final) == ("ERROR", ALREADY_CLOSED, "closed")
                continue
            await expect(close, 400, NOT_OPEN)
            assert frame["event"] == "JOINED_CONVERSATION" and frame["data"]["status"] == "assigned"
            assert final == "assigned"
            await close_in_chat(peer, conv)  # make room for the next round


# --- analytics (A.4) -----------------------------------------------------------------------------------------


async def analytics(chat: Chat, admin: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The analytics entries by supervisor id, after checking there is one entry per supervisor."""
    entries = await chat.call("GET", "/admin/analytics", admin)
    for entry in entries:
        assert set(entry) == {"supervisorId", "supervisorName", "agents", "conversationsHandled"}, entry
    by_supervisor = {entry["supervisorId"]: entry for entry in entries}
    assert len(by_supervisor) == len(entries)
    return by_supervisor


def stats(supervisor: dict[str, Any], agents: int, handled: int) -> tuple[str, dict[str, Any]]:
    return supervisor["_id"], {"supervisorId": supervisor["_id"], "supervisorName": supervisor["name"],
                               "agents": agents, "conversationsHandled": handled}


async def test_analytics_counts_closed_conversations_per_supervisor(chat: Chat, client: TestClient):
    admin = await chat.user("admin")
    assert await analytics(chat, admin) == {}
    (s1, (a1, a2)), (s2, (b1,)), (s3, _) = await asyncio.gather(chat.team(2), chat.team(1), chat.team(0))
    k1, k2, k3, k4, k5 = await asyncio.gather(*(chat.user("candidate") for _ in range(5)))
    assert await analytics(chat, admin) == dict([stats(s1, 2, 0), stats(s2, 1, 0), stats(s3, 0, 0)])

    by_http = await chat.open(k1, s1)  # assigned to a1 over HTTP (still open), then closed over HTTP
    await chat.assign(s1, by_http, a1)
    in_chat = await chat.open(k2, s1)  # a2 joins and closes it in chat
    await chat.assign(s1, in_chat, a2)
    active = await chat.open(k3, s2)  # b1 joins: assigned, never closed
    await chat.assign(s2, active, b1)
    assert await agent_joins(client, b1, active) == "assigned"
    unassigned = await chat.open(k4, s2)  # closed without an agent: handled by nobody
    await chat.open(k5, s3)  # open, untouched
    assert await analytics(chat, admin) == dict([stats(s1, 2, 0), stats(s2, 1, 0), stats(s3, 0, 0)])

    await chat.close(s1, by_http)
    await chat.close(admin, unassigned)
    async with connected(client, a2) as peer:
        assert (await peer.join(ref(in_chat)))["status"] == "assigned"
        await close_in_chat(peer, in_chat)
    assert await analytics(chat, admin) == dict([stats(s1, 2, 2), stats(s2, 1, 0), stats(s3, 0, 0)])


# --- listings (B.7) ---------------------------------------------------------------------------------------------


async def pages(chat: Chat, who: dict[str, Any], path: str, limit: int, **params: Any) -> list[list[dict]]:
    """Follow a listing's pages: ?limit=N, then ?cursor=<_id of the previous page's last item>, until a
    page shorter than ``limit``."""
    result, cursor = [], None
    while True:
        page = await chat.listing(who, path, limit=str(limit), **params, **({"cursor": cursor} if cursor else {}))
        result.append(page)
        if len(page) < limit:
            return result
        cursor = page[-1]["_id"]


@attrs.frozen
class Listed:
    world: World
    C3: dict[str, Any]
    ids: dict[str, str]  # "X", "Y", "Z" → conversation id

    def party(self, name: str) -> dict[str, Any]:
        return self.C3 if name == "C3" else self.world.party(name)

    def expected(self, names: str) -> list[str]:
        return [self.ids[name] for name in names]


@pytest.fixture
async def listed(chat: Chat, client: TestClient, world: World) -> Listed:
    """Besides X (C → S, agent A, open): Y (C2 → S2, agent A2 joined: assigned) and Z (C3 → S, closed)."""
    y = await chat.open(world.C2, world.S2)
    await chat.assign(world.S2, y, world.A2)
    assert await agent_joins(client, world.A2, y) == "assigned"
    c3 = await chat.user("candidate")
    z = await chat.open(c3, world.S)
    await chat.close(world.S, z)
    return Listed(world, c3, {"X": world.X["_id"], "Y": y["_id"], "Z": z["_id"]})


@pytest.mark.parametrize("who, expected", [
    ("ADMIN", "ZYX"), ("S", "ZX"), ("S2", "Y"), ("A", "X"), ("A2", "Y"), ("C", "X"), ("C2", "Y"), ("C3", "Z"),
])
async def test_conversation_listing_is_scoped_and_newest_first(chat: Chat, listed: Listed, who, expected):
    items = await chat.listing(listed.party(who))
    assert ids_of(items) == listed.expected(expected)
    for item in items:
        assert CONVERSATION_FIELDS <= set(item) and "messages" not in item
    created = [parse_iso(item["createdAt"]) for item in items]
    assert created == sorted(created, reverse=True)


@pytest.mark.parametrize("who, status, expected", [
    ("ADMIN", "open", "X"), ("ADMIN", "assigned", "Y"), ("ADMIN", "closed", "Z"),
    ("S", "open", "X"), ("S", "closed", "Z"), ("S", "assigned", ""), ("A2", "assigned", "Y"), ("A", "closed", ""),
])
async def test_conversation_listing_filters_by_status(chat: Chat, listed: Listed, who, status, expected):
    items = await chat.listing(listed.party(who), status=status)
    assert ids_of(items) == listed.expected(expected)
    assert all(item["status"] == status for item in items)


@pytest.mark.parametrize("query", [
    {"status": "pending"}, {"status": "OPEN"}, {"status": ""}, [("status", "open"), ("status", "closed")],
    {"cursor": "123"}, {"cursor": "g" * 24}, {"limit": "0"}, {"limit": "501"}, {"limit": "-1"}, {"limit": "abc"},
    {"limit": "1.5"}, {"limit": ""}, {"limit": "1e2"},
], ids=repr)
async def test_conversation_listing_rejects_bad_queries(chat: Chat, crew, query):
    await chat.call("GET", "/conversations", crew["admin"], params=query, status=400, error=INVALID)


@pytest.mark.parametrize("path", ["/supervisors", "/agents"])
@pytest.mark.parametrize("limit", ["0", "501", "x"])
async def test_directory_limits_outside_1_to_500_are_400(chat: Chat, crew, path, limit):
    await chat.call("GET", path, crew["admin"], params={"limit": limit}, status=400, error=INVALID)


async def test_conversation_pages_follow_the_cursor(chat: Chat, world: World):
    """GET /conversations answers a plain array, newest first. The next page is requested with
    ?limit=N&cursor=<_id of the last item of the previous page>; a page shorter than N is the last."""
    extra = await asyncio.gather(*(chat.user("candidate") for _ in range(4)))
    for candidate in extra:
        await chat.open(candidate, world.S)
    everything = await chat.listing(world.ADMIN)
    assert len(everything) == 5
    walked = await pages(chat, world.ADMIN, "/conversations", 2)
    assert [len(page) for page in walked] == [2, 2, 1]
    assert [item for page in walked for item in page] == everything
    assert [len(page) for page in await pages(chat, world.ADMIN, "/conversations", 500)] == [5]
    assert await chat.listing(world.ADMIN, limit="1") == everything[:1]
    # The cursor composes with the scope and the status filter.
    walked = await pages(chat, world.S, "/conversations", 3, status="open")
    assert [item for page in walked for item in page] == await chat.listing(world.S, status="open")


@pytest.mark.parametrize("who", ["C", "A", "S", "ADMIN"])
async def test_supervisors_are_listed_for_any_authenticated_user(chat: Chat, world: World, who):
    items = await chat.listing(world.party(who), "/supervisors")
    assert sorted(items, key=lambda item: item["_id"]) == sorted(
        ({"_id": s["_id"], "name": s["name"]} for s in (world.S, world.S2)), key=lambda item: item["_id"])
    walked = await pages(chat, world.party(who), "/supervisors", 1)
    assert [item for page in walked for item in page] == items


async def test_agents_are_listed_for_their_supervisor_and_the_admin(chat: Chat, world: World):
    mine = await chat.listing(world.S, "/agents")
    assert ids_of(mine) == [world.A["_id"]]
    assert {key: mine[0][key] for key in ("_id", "name", "email")} == {
        key: world.A[key] for key in ("_id", "name", "email")}
    everyone = await chat.listing(world.ADMIN, "/agents")
    assert sorted(ids_of(everyone)) == sorted([world.A["_id"], world.A2["_id"]])
    assert {item["_id"]: item["supervisorId"] for item in everyone} == {
        world.A["_id"]: world.S["_id"], world.A2["_id"]: world.S2["_id"]}
    for item in everyone:
        assert not {"password", "passwordHash"} & set(item)
    for who in (world.C, world.A):
        await chat.call("GET", "/agents", who, status=403, error=FORBIDDEN)


# --- history (B.3) ------------------------------------------------------------------------------------------------

TEXTS = ["one", "two", "three", "four", "five"]


@pytest.fixture
async def chatted(chat: Chat, client: TestClient, world: World) -> list[dict[str, Any]]:
    """Five messages in X: three by the candidate (while X is open), two by the agent (after it joined)."""
    async with connected(client, world.C) as peer:
        assert (await peer.join(ref(world.X)))["status"] == "open"
        acks = await send_all(peer, world.X, TEXTS[:3])
    async with connected(client, world.A) as peer:
        assert (await peer.join(ref(world.X)))["status"] == "assigned"
        acks += await send_all(peer, world.X, TEXTS[3:])
    assert [ack["seq"] for ack in acks] == [1, 2, 3, 4, 5]
    return acks


async def test_history_returns_every_message_in_seq_order(chat: Chat, world: World, chatted):
    page = await chat.history(world.C, world.X)
    assert page["nextAfterSeq"] is None
    messages = page["messages"]
    assert [m["content"] for m in messages] == TEXTS
    assert [m["seq"] for m in messages] == [1, 2, 3, 4, 5]
    assert [m["messageId"] for m in messages] == [ack["messageId"] for ack in chatted]
    assert [(m["senderId"], m["senderRole"]) for m in messages] == (
        [(world.C["_id"], "candidate")] * 3 + [(world.A["_id"], "agent")] * 2)
    assert [m["createdAt"] for m in messages] == [ack["createdAt"] for ack in chatted]
    assert all(parse_iso(m["createdAt"]) for m in messages)
    assert (await chat.view(world.S, world.X))["messages"] == messages  # GET /conversations/:id agrees


@pytest.mark.parametrize("query, seqs, next_after_seq", [
    ({"limit": "2"}, [1, 2], 2),
    ({"afterSeq": "2", "limit": "2"}, [3, 4], 4),
    ({"afterSeq": "4", "limit": "2"}, [5], None),
    ({"afterSeq": "0", "limit": "500"}, [1, 2, 3, 4, 5], None),
    ({"afterSeq": "3"}, [4, 5], None),
    ({"afterSeq": "5"}, [], None),
    ({"afterSeq": "99"}, [], None),
], ids=repr)
async def test_history_pages(chat: Chat, world: World, chatted, query, seqs, next_after_seq):
    page = await chat.history(world.ADMIN, world.X, **query)
    assert [m["seq"] for m in page["messages"]] == seqs
    assert page["nextAfterSeq"] == next_after_seq


@pytest.mark.parametrize("limit", [1, 2, 3, 5, 500])
async def test_following_next_after_seq_reads_everything_once(chat: Chat, world: World, chatted, limit):
    seen, after = [], 0
    while after is not None:
        page = await chat.history(world.A, world.X, afterSeq=str(after), limit=str(limit))
        assert len(page["messages"]) <= limit
        seen += [m["seq"] for m in page["messages"]]
        after = page["nextAfterSeq"]
    assert seen == [1, 2, 3, 4, 5]


async def test_history_survives_the_close(chat: Chat, client: TestClient, world: World, chatted):
    async with connected(client, world.A) as peer:
        await close_in_chat(peer, world.X)
    page = await chat.history(world.C, world.X)
    assert [m["content"] for m in page["messages"]] == TEXTS
    assert [m["content"] for m in (await chat.view(world.ADMIN, world.X))["messages"]] == TEXTS


@pytest.mark.parametrize("query", [
    {"afterSeq": "-1"}, {"afterSeq": "abc"}, {"afterSeq": "1.5"}, {"afterSeq": ""}, {"afterSeq": "1e3"},
    {"afterSeq": "\u0663"}, {"limit": "0"}, {"limit": "501"}, {"limit": "-2"}, {"limit": "ten"},
    [("afterSeq", "1"), ("afterSeq", "2")],
], ids=repr)
async def test_history_rejects_bad_queries(chat: Chat, crew, query):
    await chat.call("GET", f"/conversations/{crew['conv']}/messages", crew["candidate"], params=query,
                    status=400, error=INVALID)


@pytest.mark.parametrize("who", ["C", "A", "S", "ADMIN"])
async def test_history_is_readable_by_everyone_who_may_view_it(chat: Chat, world: World, chatted, who):
    # The refusals (foreign users 403, anonymous 401) are rows of test_rbac_matrix.py.
    page = await chat.history(world.party(who), world.X)
    assert [m["content"] for m in page["messages"]] == TEXTS and page["nextAfterSeq"] is None
