"""Authorization attacks: staff self-signup in production, supervisors minting accounts,
object-level access across teams over HTTP and WebSocket, and smuggled server-owned fields."""

from __future__ import annotations

import pytest
from bson import ObjectId

from livechat.config import Profile
from livechat.serialization import iso
from tests.conftest import PASSWORD, Api, expect, make_settings
from tests.contract import BAD_LOGIN, FORBIDDEN, FORBIDDEN_FOR_ROLE, NOT_ALLOWED, NOT_JOINED
from tests.security.helpers import (
    Team,
    assign,
    connect,
    conversation_as,
    make_admin,
    make_team,
    open_conversation,
    recent,
    services,
    smuggled,
)


@pytest.fixture
async def prod_api(app_client, mongo_uri) -> Api:
    return Api(await app_client(make_settings(mongo_uri, profile=Profile.PRODUCTION)))


async def user_count(api: Api) -> int:
    return await services(api.client).store.users.count()


def signup_payload(role: str, **extra) -> dict:
    return {"name": "Mallory", "email": f"{role}-{ObjectId()}@example.com", "password": PASSWORD, "role": role,
            **extra}


# --- accounts ---------------------------------------------------------------------------------


async def test_production_refuses_staff_self_signup(prod_api: Api):
    admin = await make_admin(prod_api)
    supervisor = await prod_api.signup("supervisor", token=admin["token"])
    candidate = await prod_api.user("candidate")
    before = await user_count(prod_api)
    attempts = [signup_payload(role, supervisorId=supervisor["_id"]) for role in ("admin", "supervisor", "agent")]
    for payload in attempts:
        for headers in ({}, prod_api.auth(candidate)):  # anonymous, or with a candidate's token
            await expect(await prod_api.client.post("/auth/signup", json=payload, headers=headers), 403, FORBIDDEN)
    assert await user_count(prod_api) == before
    for payload in attempts:  # nothing was created under those emails
        resp = await prod_api.client.post("/auth/login", json={"email": payload["email"], "password": PASSWORD})
        await expect(resp, 401, BAD_LOGIN)


async def test_a_supervisor_token_creates_only_agents_for_itself(prod_api: Api):
    admin = await make_admin(prod_api)
    mine = await prod_api.user("supervisor", token=admin["token"])
    other = await prod_api.signup("supervisor", token=admin["token"])
    candidate = await prod_api.signup("candidate")
    before = await user_count(prod_api)
    refused = [signup_payload("agent", supervisorId=other["_id"]),
               signup_payload("agent", supervisorId=candidate["_id"]),
               signup_payload("supervisor"), signup_payload("admin"),
               signup_payload("supervisor", supervisorId=mine["_id"])]
    for payload in refused:
        await expect(await prod_api.client.post("/auth/signup", json=payload, headers=prod_api.auth(mine)), 403)
    assert await user_count(prod_api) == before
    explicit = await prod_api.signup("agent", token=mine["token"], supervisor_id=mine["_id"])
    implicit = await prod_api.signup("agent", token=mine["token"])
    assert await user_count(prod_api) == before + 2
    for agent in (explicit, implicit):
        stored = await services(prod_api.client).store.users.get(ObjectId(agent["_id"]))
        assert (stored.role.value, str(stored.supervisor_id)) == ("agent", mine["_id"])
    # An agent's token is no supervisor's: it creates nobody's agents.
    agent_token = await prod_api.login(explicit["email"])
    resp = await prod_api.client.post("/auth/signup", json=signup_payload("agent", supervisorId=mine["_id"]),
                                      headers=prod_api.auth(agent_token))
    await expect(resp, 403, FORBIDDEN)
    assert await user_count(prod_api) == before + 2


# --- object-level access ------------------------------------------------------------------------


@pytest.fixture
async def teams(api: Api) -> tuple[Team, Team]:
    return await make_team(api), await make_team(api)


def outsiders(mine: Team, theirs: Team) -> dict[str, dict]:
    """Everyone with no business in ``mine``'s conversation."""
    return {**{f"other {role}": user for role, user in theirs.members().items()}, "idle agent": mine.idle_agent}


async def test_nobody_reaches_another_partys_conversation_over_http(api: Api, teams):
    mine, theirs = teams
    conv = mine.conv_id
    before = await conversation_as(api, mine.candidate, conv)
    for label, user in outsiders(mine, theirs).items():
        headers = api.auth(user)
        probes = [
            api.client.get(f"/conversations/{conv}", headers=headers),
            api.client.get(f"/conversations/{conv}/messages?afterSeq=0&limit=5", headers=headers),
            api.client.post(f"/conversations/{conv}/assign", json={"agentId": theirs.agent["_id"]}, headers=headers),
            api.client.post(f"/conversations/{conv}/assign", json={"agentId": mine.idle_agent["_id"]},
                            headers=headers),
            api.client.post(f"/conversations/{conv}/close", headers=headers),
        ]
        for probe in probes:
            resp = await probe
            assert resp.status == 403, (label, resp.method, resp.url.path, await resp.text())
            await expect(resp, 403)
        listed = await expect(await api.client.get("/conversations", headers=headers), 200)
        assert conv not in {c["_id"] for c in listed}, label
    # The conversation's own parties may not overstep their roles either.
    for user in (mine.candidate, mine.agent):
        resp = await api.client.post(f"/conversations/{conv}/assign", json={"agentId": mine.idle_agent["_id"]},
                                     headers=api.auth(user))
        await expect(resp, 403, FORBIDDEN)
        await expect(await api.client.post(f"/conversations/{conv}/close", headers=api.auth(user)), 403, FORBIDDEN)
    for user in (mine.candidate, mine.agent, mine.supervisor):  # the parties still see it, unchanged
        seen = await conversation_as(api, user, conv)
        for staff_only in ("assignments", "notes"):
            assert (staff_only in seen) is (user is not mine.candidate), (staff_only, user["role"])
        assert {k: v for k, v in seen.items() if k not in ("assignments", "notes")} == before


async def test_nobody_reaches_another_partys_conversation_over_websocket(api: Api, teams):
    mine, theirs = teams
    conv = mine.conv_id
    admin = await api.user("admin")
    owner = await connect(api.client, mine.candidate["token"])
    await owner.join(conv)
    chat_roles = {"other candidate": theirs.candidate, "other agent": theirs.agent, "idle agent": mine.idle_agent}
    staff = {"other supervisor": theirs.supervisor, "own supervisor": mine.supervisor, "admin": admin}
    for label, user in {**chat_roles, **staff}.items():
        peer = await connect(api.client, user["token"])
        in_chat = label in chat_roles
        await peer.refused(NOT_ALLOWED if in_chat else FORBIDDEN_FOR_ROLE, "JOIN_CONVERSATION",
                           {"conversationId": conv})
        await peer.refused(NOT_JOINED if in_chat else FORBIDDEN_FOR_ROLE, "SEND_MESSAGE",
                           {"conversationId": conv, "content": f"hello from {label}"})
        close_error = NOT_ALLOWED if user["role"] == "agent" else FORBIDDEN_FOR_ROLE
        await peer.refused(close_error, "CLOSE_CONVERSATION", {"conversationId": conv})
        # A message in the room does not reach the outsider.
        sent = await owner.ask("SEND_MESSAGE", {"conversationId": conv, "content": f"private to {label}",
                                                "clientMessageId": label})
        assert sent["event"] == "MESSAGE_SENT", sent
        await peer.quiet()
        await peer.close()
    history = await conversation_as(api, mine.candidate, conv)
    assert {m["senderId"] for m in history["messages"]} == {mine.candidate["_id"]}
    assert (history["status"], history["agentId"]) == ("open", mine.agent["_id"])


# --- smuggled server-owned fields ------------------------------------------------------------------


async def test_smuggled_fields_in_signup_and_login_change_nothing(api: Api):
    payload = smuggled(name="Eve", email="eve@example.com", password=PASSWORD, role="candidate")
    created = await expect(await api.client.post("/auth/signup", json=payload), 201)
    assert created == {"_id": created["_id"], "name": "Eve", "email": "eve@example.com", "role": "candidate"}
    assert created["_id"] != payload["_id"]
    stored = await services(api.client).store.users.get(ObjectId(created["_id"]))
    assert stored.password_hash != payload["passwordHash"] and stored.supervisor_id is None
    assert recent(iso(stored.created_at))
    login = await expect(await api.client.post("/auth/login", json=smuggled(email="eve@example.com",
                                                                             password=PASSWORD)), 200)
    assert login["user"] == created
    assert await expect(await api.client.get("/auth/me", headers=api.auth(login["token"])), 200) == created


async def test_smuggled_fields_in_conversation_requests_change_nothing(api: Api):
    sup = await api.user("supervisor")
    agent = await api.user("agent", supervisor_id=sup["_id"])
    cand = await api.user("candidate")
    victim = await api.user("candidate")
    forged = smuggled(candidateId=victim["_id"], agentId=agent["_id"])
    created = await open_conversation(api, cand, sup["_id"], **{k: v for k, v in forged.items() if k != "supervisorId"})
    conv = created["_id"]
    assert conv != forged["_id"]
    expected = {"_id": conv, "status": "open", "candidateId": cand["_id"], "supervisorId": sup["_id"],
                "agentId": None, "createdAt": created["createdAt"], "messages": [],
                "candidateName": cand["name"], "agentName": None, "lastMessage": None, "unread": 0}
    assert await conversation_as(api, cand, conv) == expected and recent(created["createdAt"])
    await expect(await api.client.get(f"/conversations/{conv}", headers=api.auth(victim)), 403)

    await assign(api, sup, conv, agent["_id"], **{k: v for k, v in forged.items() if k != "agentId"})
    expected["agentId"], expected["agentName"] = agent["_id"], agent["name"]
    seen = await conversation_as(api, sup, conv)
    assert [(a["agentId"], a["by"]) for a in seen.pop("assignments")] == [(agent["_id"], sup["_id"])]
    assert seen.pop("notes") == []
    assert seen == expected

    resp = await api.client.post(f"/conversations/{conv}/close", json=smuggled(status="open"),
                                 headers=api.auth(sup))
    assert await expect(resp, 200) == {"conversationId": conv, "status": "closed"}
    closed = await conversation_as(api, sup, conv)
    assert recent(closed.pop("closedAt"))
    closed.pop("assignments")
    closed.pop("notes")
    assert closed == {**expected, "status": "closed"}


async def test_smuggled_fields_in_websocket_frames_change_nothing(api: Api):
    team = await make_team(api)
    conv = team.conv_id
    candidate, agent = await connect(api.client, team.candidate["token"]), await connect(api.client,
                                                                                         team.agent["token"])
    joined = await candidate.ask("JOIN_CONVERSATION", smuggled(conversationId=conv, lastSeq=0))
    assert joined == {"event": "JOINED_CONVERSATION", "data": {"conversationId": conv, "status": "open", "lastSeq": 0}}
    assert (await agent.join(conv))["status"] == "assigned"  # the one legitimate transition
    forged = smuggled(conversationId=conv, content="hi", clientMessageId="m-1")
    ack = await candidate.ask("SEND_MESSAGE", forged)
    assert ack["event"] == "MESSAGE_SENT" and ack["data"]["seq"] == 1, ack
    assert ack["data"]["messageId"] != forged["messageId"] and recent(ack["data"]["createdAt"])
    heard = await agent.recv()
    assert heard == {"event": "NEW_MESSAGE", "data": {
        "messageId": ack["data"]["messageId"], "conversationId": conv, "seq": 1, "senderId": team.candidate["_id"],
        "senderRole": "candidate", "content": "hi", "createdAt": ack["data"]["createdAt"]}}
    history = await conversation_as(api, team.supervisor, conv)
    assert history["messages"] == [heard["data"]]
    assert (history["status"], history["agentId"], history["candidateId"]) == (
        "assigned", team.agent["_id"], team.candidate["_id"])
