"""The support desk, live (README "The support desk"): pushed inbox, presence, routing with
capacity, requeue, transfer and watch — on the real app, over real HTTP and WebSocket."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.conftest import Api, expect, make_settings
from tests.contract import (
    AGENT_NOT_FOUND,
    ALREADY_CLOSED,
    FORBIDDEN,
    FORBIDDEN_FOR_ROLE,
    INVALID,
    INVALID_AGENT_ROLE,
    INVALID_FORMAT,
    NOT_ALLOWED,
    NOT_JOINED,
    SUPERVISOR_NOT_FOUND,
)
from tests.ws_helpers import Peer, Scene, eventually



async def subscribed(scene: Scene, user: dict[str, Any]) -> tuple[Peer, list[dict[str, Any]]]:
    peer = await scene.connect(user)
    await peer.emit("SUBSCRIBE_INBOX", {})
    return peer, (await peer.until("INBOX_SUBSCRIBED"))["conversations"]


async def routing(scene: Scene, user: dict[str, Any], body: dict[str, Any] | None = None, status: int = 200,
                  supervisor_id: str | None = None) -> Any:
    path = f"/supervisors/{supervisor_id or scene.supervisor['_id']}/routing"
    headers = scene.api.auth(user)
    resp = await (scene.client.put(path, json=body, headers=headers) if body is not None
                  else scene.client.get(path, headers=headers))
    return await expect(resp, status)


async def open_conversation(scene: Scene, candidate: dict[str, Any]) -> dict[str, Any]:
    resp = await scene.client.post("/conversations", json={"supervisorId": scene.supervisor["_id"]},
                                   headers=scene.api.auth(candidate))
    return await expect(resp, 201)


async def conversation(scene: Scene, conv_id: str, user: dict[str, Any] | None = None) -> dict[str, Any]:
    resp = await scene.client.get(f"/conversations/{conv_id}", headers=scene.api.auth(user or scene.supervisor))
    return await expect(resp, 200)


# --- names and the pushed inbox -------------------------------------------------------------------


async def test_lists_and_views_carry_names(client):
    scene = await Scene.create(client)
    resp = await client.get("/conversations", headers=scene.api.auth(scene.supervisor))
    [item] = await expect(resp, 200)
    assert (item["candidateName"], item["agentName"]) == (scene.candidate["name"], scene.agent["name"])
    view = await conversation(scene, scene.conv_id, scene.candidate)
    assert (view["candidateName"], view["agentName"]) == (scene.candidate["name"], scene.agent["name"])
    assert "assignments" not in view  # staff only


async def test_the_inbox_is_pushed_to_whoever_may_see_the_conversation(client):
    scene = await Scene.create(client, assigned=False)
    sup, first = await subscribed(scene, scene.supervisor)
    agent, none_yet = await subscribed(scene, scene.agent)
    stranger_api = Api(client)
    other_sup = await stranger_api.user("supervisor")
    stranger, _ = await subscribed(scene, other_sup)
    assert [c["_id"] for c in first] == [scene.conv_id] and none_yet == []
    assert first[0]["candidateName"] == scene.candidate["name"]

    await scene.assign(scene.agent)
    for peer in (sup, agent):
        update = await peer.until("CONVERSATION_UPDATED")
        assert update["conversation"]["agentName"] == scene.agent["name"]
    cand = await scene.joined(scene.candidate)
    await cand.say(scene.conv_id, "hello inbox")
    pushed = await sup.until("CONVERSATION_UPDATED", lambda d: d["conversation"]["lastMessage"] is not None)
    assert pushed["conversation"]["lastMessage"]["content"] == "hello inbox"

    other = await scene.another_agent()
    await scene.assign(other)  # reassigned away: the first agent no longer sees it
    assert await agent.until("CONVERSATION_REMOVED") == {"conversationId": scene.conv_id}
    await stranger.quiet()  # another team's supervisor heard nothing at all


async def test_new_conversations_appear_in_the_supervisors_inbox(client):
    scene = await Scene.create(client)
    sup, _ = await subscribed(scene, scene.supervisor)
    newcomer = await scene.api.user("candidate")
    created = await open_conversation(scene, newcomer)
    update = await sup.until("CONVERSATION_UPDATED", lambda d: d["conversation"]["_id"] == created["_id"])
    assert update["conversation"]["status"] == "open" and update["conversation"]["candidateName"] == newcomer["name"]


# --- presence ---------------------------------------------------------------------------------------


async def test_presence_follows_the_agents_sockets_and_choice(client):
    scene = await Scene.create(client)
    sup, _ = await subscribed(scene, scene.supervisor)

    async def listed() -> dict[str, Any]:
        resp = await client.get("/agents", headers=scene.api.auth(scene.supervisor))
        return {a["_id"]: a for a in await expect(resp, 200)}[scene.agent["_id"]]

    assert (await listed())["presence"] == "offline" and (await listed())["activeConversations"] == 1
    agent = await scene.connect(scene.agent)
    seen = await sup.until("PRESENCE")
    assert (seen["userId"], seen["status"]) == (scene.agent["_id"], "available") and seen["since"]
    await agent.emit("SET_PRESENCE", {"status": "away"})
    assert (await sup.until("PRESENCE"))["status"] == "away"
    assert (await listed())["presence"] == "away"
    second = await scene.connect(scene.agent)
    await agent.close()
    await second.quiet()
    assert (await listed())["presence"] == "away"  # still one socket
    await second.close()
    assert (await sup.until("PRESENCE"))["status"] == "offline"
    back = await scene.connect(scene.agent)  # a first socket starts available again
    assert (await sup.until("PRESENCE"))["status"] == "available"
    await back.fails(INVALID, "SET_PRESENCE", {"status": "offline"})
    await back.fails(INVALID, "SET_PRESENCE", {"status": {"$ne": None}})
    cand = await scene.connect(scene.candidate)
    await cand.fails(FORBIDDEN_FOR_ROLE, "SET_PRESENCE", {"status": "away"})



async def test_an_agent_whose_last_socket_goes_is_offline_at_once_every_time(client):
    """A closed or dropped socket: aiohttp cancels the handler as the TCP connection goes, often
    while it is clearing the agent's presence; the write still happens (not after 1.5 × heartbeat)."""
    scene = await Scene.create(client)
    sup, _ = await subscribed(scene, scene.supervisor)
    for attempt in range(10):
        agent = await scene.connect(scene.agent)
        assert (await sup.until("PRESENCE"))["status"] == "available"
        if attempt % 2:
            agent.ws._response.connection.transport.abort()  # no close frame at all
        else:
            await agent.close()
        assert (await sup.until("PRESENCE", timeout=5.0))["status"] == "offline"

# --- routing ----------------------------------------------------------------------------------------


async def test_routing_settings_belong_to_the_supervisor_and_admins(client):
    scene = await Scene.create(client)
    assert await routing(scene, scene.supervisor) == {"supervisorId": scene.supervisor["_id"], "mode": "manual",
                                                      "maxConcurrent": 5}
    changed = await routing(scene, scene.supervisor, {"mode": "auto", "maxConcurrent": 2})
    assert changed["mode"] == "auto" and changed["maxConcurrent"] == 2
    other = await scene.api.user("supervisor")
    assert await routing(scene, other, status=403) == FORBIDDEN
    assert await routing(scene, other, {"mode": "manual"}, status=403) == FORBIDDEN
    for who in (scene.agent, scene.candidate):
        assert await routing(scene, who, status=403) == FORBIDDEN
    for bad in ({"mode": "auto", "maxConcurrent": 0}, {"mode": "auto", "maxConcurrent": 51},
                {"mode": "fast"}, {"mode": {"$ne": None}}, {"mode": "auto", "maxConcurrent": "3"}, {}):
        assert await routing(scene, scene.supervisor, bad, status=400) == INVALID
    assert await routing(scene, scene.supervisor, status=400, supervisor_id="nope") == INVALID
    assert await routing(scene, scene.supervisor, status=404, supervisor_id=scene.agent["_id"]) == SUPERVISOR_NOT_FOUND


async def test_auto_routing_fills_capacity_oldest_first_and_frees_on_close(client):
    scene = await Scene.create(client, assigned=False)
    await routing(scene, scene.supervisor, {"mode": "auto", "maxConcurrent": 1})
    waiting_peer = None
    agents = [scene.agent, await scene.another_agent()]
    sockets = [await scene.connect(a) for a in agents]
    await eventually(lambda: True)
    # The scene's conversation was waiting: the first available agent gets it.
    await eventually_assigned(scene, scene.conv_id)
    candidates = [await scene.api.user("candidate") for _ in range(3)]
    convs = [await open_conversation(scene, c) for c in candidates]
    await eventually_assigned(scene, convs[0]["_id"])
    third = convs[2]["_id"]
    waiting_peer = await scene.connect(candidates[2])
    await waiting_peer.join(third)
    assert await waiting_peer.until("QUEUE_POSITION") == {"conversationId": third, "position": 2}
    views = [await conversation(scene, c["_id"]) for c in convs]
    assert [v["agentId"] is not None for v in views] == [True, False, False]  # capacity 1 each, 2 agents
    assert {v["agentId"] for v in [await conversation(scene, scene.conv_id), views[0]]} == {a["_id"] for a in agents}
    # Closing one frees its agent, who gets the oldest waiting conversation; the third moves up.
    await expect(await client.post(f"/conversations/{scene.conv_id}/close", headers=scene.api.auth(scene.supervisor)),
                 200)
    await eventually_assigned(scene, convs[1]["_id"])
    assert await waiting_peer.until("QUEUE_POSITION") == {"conversationId": third, "position": 1}
    entry = (await conversation(scene, convs[1]["_id"]))["assignments"][-1]
    assert entry["by"] == "routing"
    for s in sockets:
        await s.close()


async def eventually_assigned(scene: Scene, conv_id: str, timeout: float = 10.0) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        while True:
            view = await conversation(scene, conv_id)
            if view["agentId"] is not None:
                return view
            await asyncio.sleep(0.05)


async def test_an_agent_that_never_joins_loses_the_conversation_to_the_queue(app_client, mongo_uri):
    client = await app_client(make_settings(mongo_uri, routing={"requeue_after": __import__("datetime").timedelta(
        seconds=0.5)}))
    scene = await Scene.create(client, assigned=False)
    await routing(scene, scene.supervisor, {"mode": "auto", "maxConcurrent": 3})
    flaky = await scene.connect(scene.agent)
    view = await eventually_assigned(scene, scene.conv_id)
    assert view["agentId"] == scene.agent["_id"] and view["status"] == "open"
    await flaky.close()  # offline before joining
    async with asyncio.timeout(15):
        while (await conversation(scene, scene.conv_id))["agentId"] is not None:
            await asyncio.sleep(0.1)
    history = (await conversation(scene, scene.conv_id))["assignments"]
    assert [(h["agentId"], h["by"]) for h in history] == [(scene.agent["_id"], "routing"), (None, "routing")]
    other = await scene.another_agent()
    await scene.connect(other)  # an available agent: it goes to them
    assert (await eventually_assigned(scene, scene.conv_id))["agentId"] == other["_id"]


# --- transfer ----------------------------------------------------------------------------------------


async def transfer(scene: Scene, user: dict[str, Any], agent_id: str, status: int = 200,
                   conv_id: str | None = None) -> Any:
    resp = await scene.client.post(f"/conversations/{conv_id or scene.conv_id}/transfer", json={"agentId": agent_id},
                                   headers=scene.api.auth(user))
    return await expect(resp, status)


async def test_the_agent_transfers_the_chat_live(client):
    scene = await Scene.create(client)
    cand = await scene.joined(scene.candidate)
    old = await scene.joined(scene.agent)
    new_agent = await scene.another_agent()
    done = await transfer(scene, scene.agent, new_agent["_id"])
    assert done["agentId"] == new_agent["_id"] and done["status"] == "assigned"
    assert [(a["agentId"], a["by"]) for a in done["assignments"]] == [
        (scene.agent["_id"], scene.supervisor["_id"]), (new_agent["_id"], scene.agent["_id"])]
    await old.fails(NOT_JOINED, "SEND_MESSAGE",
                    {"conversationId": scene.conv_id, "content": "mine?"})
    new = await scene.joined(new_agent)
    await new.say(scene.conv_id, "I take it from here")
    assert (await cand.until("NEW_MESSAGE"))["content"] == "I take it from here"
    # The old agent cannot take it back; other teams' agents cannot receive it; candidates cannot transfer.
    assert await transfer(scene, scene.agent, scene.agent["_id"], 403) == FORBIDDEN
    stranger = await Api(client).user("agent", supervisor_id=(await Api(client).user("supervisor"))["_id"])
    assert await transfer(scene, scene.supervisor, stranger["_id"], 403) == "Agent doesn't belong to this supervisor"
    assert await transfer(scene, scene.candidate, new_agent["_id"], 403) == FORBIDDEN
    assert await transfer(scene, scene.supervisor, scene.candidate["_id"], 400) == INVALID_AGENT_ROLE
    assert await transfer(scene, scene.supervisor, "0" * 24, 404) == AGENT_NOT_FOUND
    assert await transfer(scene, scene.supervisor, "nope", 400) == INVALID
    resp = await client.post(f"/conversations/{scene.conv_id}/transfer", json={"agentId": {"$ne": None}},
                             headers=scene.api.auth(scene.supervisor))
    await expect(resp, 400, INVALID)
    await new.emit("CLOSE_CONVERSATION", {"conversationId": scene.conv_id})
    await new.until("CONVERSATION_CLOSED")
    assert await transfer(scene, scene.supervisor, scene.agent["_id"], 400) == ALREADY_CLOSED


async def targets(scene: Scene, user: dict[str, Any], status: int = 200, query: str = "") -> Any:
    resp = await scene.client.get(f"/conversations/{scene.conv_id}/transfer-targets{query}",
                                  headers=scene.api.auth(user))
    return await expect(resp, status)


async def test_whoever_may_transfer_lists_the_teammates_it_may_transfer_to(client):
    """An agent cannot list its team (GET /agents is for supervisors and admins), but it may see whom it
    can hand its conversation to: the other agents of the team, with their presence."""
    scene = await Scene.create(client)
    away, idle = await scene.another_agent(), await scene.another_agent()
    outsider = await Api(client).user("agent", supervisor_id=(await Api(client).user("supervisor"))["_id"])
    online = await scene.connect(away)
    await online.emit("SET_PRESENCE", {"status": "away"})
    await online.idle()
    expected = [{"_id": away["_id"], "name": away["name"], "presence": "away", "activeConversations": 0},
                {"_id": idle["_id"], "name": idle["name"], "presence": "offline", "activeConversations": 0}]
    assert await targets(scene, scene.agent) == expected  # neither itself nor another team's agent
    assert await targets(scene, scene.supervisor) == expected
    first = await targets(scene, scene.agent, query="?limit=1")
    assert first == expected[:1]
    assert await targets(scene, scene.agent, query=f"?limit=1&cursor={first[0]['_id']}") == expected[1:]
    await transfer(scene, scene.agent, idle["_id"])
    assert await targets(scene, scene.agent, 403) == FORBIDDEN  # no longer its conversation
    listed = await targets(scene, scene.supervisor)
    assert [a["_id"] for a in listed] == [scene.agent["_id"], away["_id"]] and outsider["_id"] not in str(listed)
    assert await targets(scene, scene.candidate, 403) == FORBIDDEN
    assert await targets(scene, scene.supervisor, 400, "?limit=0") == INVALID
    resp = await client.get("/conversations/nope/transfer-targets", headers=scene.api.auth(scene.supervisor))
    await expect(resp, 400, INVALID)


# --- watch ----------------------------------------------------------------------------------------------


async def test_a_supervisor_watches_read_only_and_unseen(client):
    scene = await Scene.create(client)
    cand = await scene.joined(scene.candidate)
    agent = await scene.joined(scene.agent)
    await cand.say(scene.conv_id, "first")
    await agent.until("NEW_MESSAGE")
    watcher = await scene.connect(scene.supervisor)
    await watcher.emit("WATCH_CONVERSATION", {"conversationId": scene.conv_id, "lastSeq": 0})
    assert await watcher.until("WATCHING_CONVERSATION") == {"conversationId": scene.conv_id, "status": "assigned",
                                                            "lastSeq": 1}
    assert (await watcher.until("NEW_MESSAGE"))["content"] == "first"  # the replay
    await agent.say(scene.conv_id, "second")
    assert (await watcher.until("NEW_MESSAGE"))["content"] == "second"
    await cand.expect_event("NEW_MESSAGE")
    await cand.quiet()  # nothing about the watcher
    await watcher.fails(FORBIDDEN_FOR_ROLE, "SEND_MESSAGE", {"conversationId": scene.conv_id, "content": "hi"})
    assert await scene.status() == "assigned"
    await watcher.emit("UNWATCH_CONVERSATION", {"conversationId": scene.conv_id})
    assert await watcher.until("UNWATCHED_CONVERSATION") == {"conversationId": scene.conv_id}
    await cand.say(scene.conv_id, "third")
    await agent.expect_event("NEW_MESSAGE")
    await watcher.quiet()
    # Others may not watch.
    other = await Api(client).user("supervisor")
    stranger = await scene.connect(other)
    await stranger.fails(NOT_ALLOWED, "WATCH_CONVERSATION", {"conversationId": scene.conv_id})
    await stranger.fails(NOT_ALLOWED, "WATCH_CONVERSATION", {"conversationId": "0" * 24})
    await stranger.fails(INVALID, "WATCH_CONVERSATION", {"conversationId": "x"})
    await agent.fails(FORBIDDEN_FOR_ROLE, "WATCH_CONVERSATION", {"conversationId": scene.conv_id})
    await cand.fails(FORBIDDEN_FOR_ROLE, "UNWATCH_CONVERSATION", {"conversationId": scene.conv_id})


async def test_a_watcher_hears_the_close(client):
    scene = await Scene.create(client)
    agent = await scene.joined(scene.agent)
    watcher = await scene.connect(scene.supervisor)
    await watcher.emit("WATCH_CONVERSATION", {"conversationId": scene.conv_id})
    assert (await watcher.until("WATCHING_CONVERSATION"))["lastSeq"] == 0
    await agent.emit("CLOSE_CONVERSATION", {"conversationId": scene.conv_id})
    assert await watcher.until("CONVERSATION_CLOSED") == {"conversationId": scene.conv_id}


@pytest.mark.parametrize("event", ["SUBSCRIBE_INBOX", "SET_PRESENCE", "WATCH_CONVERSATION", "UNWATCH_CONVERSATION"])
async def test_new_events_refuse_malformed_data(client, event):
    scene = await Scene.create(client)
    peer = await scene.connect(scene.agent if event == "SET_PRESENCE" else scene.supervisor)
    for bad in ('{"event": "%s", "data": []}' % event, '{"event": "%s"}' % event):
        await peer.fails_raw(INVALID_FORMAT, bad)
    if event != "SUBSCRIBE_INBOX":
        await peer.fails(INVALID, event, {"conversationId": {"$ne": None}, "status": 5})
