"""Signals (README "Signals"): typing, read receipts with unread counts, and
private staff notes — on the real app, over real HTTP and WebSocket."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any

import attrs
import pymongo
from bson import ObjectId

from livechat.domain.models import utcnow
from livechat.keys import services_key
from tests.conftest import expect
from tests.contract import ALREADY_CLOSED, FORBIDDEN_FOR_ROLE, INVALID, NOT_ALLOWED, NOT_JOINED
from tests.ws_helpers import Peer, Scene

NOTE_FIELDS = {"noteId", "conversationId", "senderId", "senderRole", "content", "createdAt"}


async def watching(scene: Scene, user: dict[str, Any], **extra: Any) -> Peer:
    peer = await scene.connect(user)
    await peer.emit("WATCH_CONVERSATION", {"conversationId": scene.conv_id, **extra})
    await peer.until("WATCHING_CONVERSATION")
    return peer


async def note(peer: Peer, scene: Scene, content: str, client_id: str = "n-1") -> dict[str, Any]:
    await peer.emit("SEND_NOTE", {"conversationId": scene.conv_id, "content": content, "clientMessageId": client_id})
    ack = await peer.until("NOTE_SENT")
    assert ack["clientMessageId"] == client_id and ack["conversationId"] == scene.conv_id, ack
    return ack


async def view(scene: Scene, user: dict[str, Any]) -> dict[str, Any]:
    resp = await scene.client.get(f"/conversations/{scene.conv_id}", headers=scene.api.auth(user))
    return await expect(resp, 200)


async def listed(scene: Scene, user: dict[str, Any]) -> dict[str, Any]:
    resp = await scene.client.get("/conversations", headers=scene.api.auth(user))
    [item] = [c for c in await expect(resp, 200) if c["_id"] == scene.conv_id]
    return item


async def unread_of(scene: Scene, user: dict[str, Any]) -> int:
    return (await listed(scene, user))["unread"]


async def frames_until_idle(peer: Peer) -> list[dict[str, Any]]:
    """Every frame the socket had queued, up to the answer to an unknown event (which shows nothing
    else was on its way)."""
    await peer.emit("NO_SUCH_EVENT", {})
    frames = []
    while True:
        frame = await peer.recv()
        if frame == {"event": "ERROR", "data": {"message": "Unknown event"}}:
            return frames
        frames.append(frame)


# --- typing ---------------------------------------------------------------------------------------


async def test_typing_reaches_the_others_of_the_room_and_never_its_sender(scene: Scene):
    cand, agent = await scene.joined(scene.candidate), await scene.joined(scene.agent)
    supervisor = await watching(scene, scene.supervisor)
    await cand.emit("TYPING", {"conversationId": scene.conv_id})
    expected = {"conversationId": scene.conv_id, "userId": scene.candidate["_id"], "role": "candidate"}
    assert await agent.expect_event("TYPING") == expected
    assert await supervisor.expect_event("TYPING") == expected
    assert await frames_until_idle(cand) == []
    await agent.emit("TYPING", {"conversationId": scene.conv_id})
    assert (await cand.expect_event("TYPING"))["role"] == "agent"


async def test_a_typing_flood_forwards_one_per_two_seconds_and_never_errors_or_closes(scene: Scene):
    cand, agent = await scene.joined(scene.candidate), await scene.joined(scene.agent)
    started = time.monotonic()
    for _ in range(300):  # far beyond the message rate limit: typing is not counted there
        await cand.emit("TYPING", {"conversationId": scene.conv_id})
    assert await frames_until_idle(cand) == []  # no ERROR, socket open
    forwarded = [f for f in await frames_until_idle(agent) if f["event"] == "TYPING"]
    assert len(forwarded) == 1 + int((time.monotonic() - started) // 2), forwarded
    await asyncio.sleep(2.1)  # two seconds after the last one forwarded, the next one goes through
    await cand.emit("TYPING", {"conversationId": scene.conv_id})
    assert (await agent.expect_event("TYPING"))["userId"] == scene.candidate["_id"]
    await cand.sent(scene.conv_id, "still allowed to talk", "c-1")  # the flood cost no message budget


async def test_typing_is_written_for_other_processes_only_while_one_is_alive(scene: Scene, settings, mongo_uri):
    """Alone, a process writes nothing for typing. Once another process's heartbeat is fresh, each
    forwarded signal is also written for that process's change feed, and a signal another process
    wrote reaches this process's room — unless it is stale."""
    services = scene.client.server.app[services_key]
    cand, agent = await scene.joined(scene.candidate), await scene.joined(scene.agent)
    raw = pymongo.AsyncMongoClient(mongo_uri, tz_aware=True)
    try:
        db = raw[settings.database.name]
        await cand.emit("TYPING", {"conversationId": scene.conv_id})
        await agent.expect_event("TYPING")
        await db["presence_processes"].insert_one({"_id": "other", "expires": utcnow() + timedelta(seconds=60),
                                                   "writer": "other"})
        async with asyncio.timeout(10):  # the change feed brings the heartbeat
            while not services.presence.others_alive():
                await asyncio.sleep(0.05)
        assert await db["typing"].count_documents({}) == 0  # the candidate's signal was not written
        await agent.emit("TYPING", {"conversationId": scene.conv_id})
        assert (await cand.expect_event("TYPING"))["userId"] == scene.agent["_id"]
        async with asyncio.timeout(10):
            while not (written := await db["typing"].find({}, {"_id": 0}).to_list(None)):
                await asyncio.sleep(0.05)
        assert [{k: v for k, v in doc.items() if k != "at"} for doc in written] == [
            {"conversationId": ObjectId(scene.conv_id), "userId": ObjectId(scene.agent["_id"]), "role": "agent",
             "writer": services.store.writer}]
        someone, late = ObjectId(), ObjectId()
        for user_id, at in ((late, utcnow() - timedelta(seconds=30)), (someone, utcnow())):
            await db["typing"].insert_one({"conversationId": ObjectId(scene.conv_id), "userId": user_id,
                                           "role": "candidate", "at": at, "writer": "other"})
        assert await agent.expect_event("TYPING") == {"conversationId": scene.conv_id, "userId": str(someone),
                                                      "role": "candidate"}
    finally:
        await raw.close()


async def test_typing_needs_the_room_and_a_party_role(scene: Scene):
    cand = await scene.connect(scene.candidate)
    await cand.fails(NOT_JOINED, "TYPING", {"conversationId": scene.conv_id})
    await cand.fails(INVALID, "TYPING", {"conversationId": "nope"})
    supervisor = await watching(scene, scene.supervisor)
    await supervisor.fails(FORBIDDEN_FOR_ROLE, "TYPING", {"conversationId": scene.conv_id})


# --- read receipts --------------------------------------------------------------------------------


async def test_mark_read_tells_the_others_and_is_monotonic(scene: Scene):
    cand, agent = await scene.joined(scene.candidate), await scene.joined(scene.agent)
    for i in range(3):
        await cand.sent(scene.conv_id, f"question {i}", f"c-{i}")
    await agent.new_messages(3)
    await agent.emit("MARK_READ", {"conversationId": scene.conv_id, "seq": 2})
    assert await cand.expect_event("READ") == {"conversationId": scene.conv_id, "userId": scene.agent["_id"],
                                               "role": "agent", "seq": 2}
    assert await frames_until_idle(agent) == []  # no answer to the reader itself
    await agent.emit("MARK_READ", {"conversationId": scene.conv_id, "seq": 1})  # lower: changes nothing
    assert await frames_until_idle(cand) == []
    assert await unread_of(scene, scene.agent) == 1
    await agent.fails(INVALID, "MARK_READ", {"conversationId": scene.conv_id, "seq": 4})  # above the top
    await agent.fails(INVALID, "MARK_READ", {"conversationId": scene.conv_id, "seq": -1})
    await agent.fails(INVALID, "MARK_READ", {"conversationId": scene.conv_id, "seq": "3"})
    await agent.emit("MARK_READ", {"conversationId": scene.conv_id, "seq": 3})
    assert (await cand.expect_event("READ"))["seq"] == 3
    assert await unread_of(scene, scene.agent) == 0


async def test_a_watchers_read_reaches_staff_only(scene: Scene):
    cand, agent = await scene.joined(scene.candidate), await scene.joined(scene.agent)
    await cand.sent(scene.conv_id, "hello", "c-1")
    await agent.new_messages(1)
    supervisor = await watching(scene, scene.supervisor)
    await supervisor.emit("MARK_READ", {"conversationId": scene.conv_id, "seq": 1})
    assert (await agent.expect_event("READ"))["role"] == "supervisor"
    assert await frames_until_idle(cand) == []  # a watcher is invisible to the candidate


async def test_unread_after_messages_from_both_sides_a_reassignment_and_a_close(scene: Scene):
    cand, agent = await scene.joined(scene.candidate), await scene.joined(scene.agent)
    for i in range(3):
        await cand.sent(scene.conv_id, f"question {i}", f"c-{i}")
    await agent.new_messages(3)
    assert (await unread_of(scene, scene.agent), await unread_of(scene, scene.candidate)) == (3, 0)
    assert await unread_of(scene, scene.supervisor) == 3
    await agent.sent(scene.conv_id, "answer", "a-1")  # answering reads what came before
    await cand.new_messages(1)
    assert (await unread_of(scene, scene.agent), await unread_of(scene, scene.candidate)) == (0, 1)
    assert await unread_of(scene, scene.supervisor) == 0  # staff is one side
    await cand.sent(scene.conv_id, "thanks", "c-3")
    await agent.new_messages(1)
    item = await listed(scene, scene.agent)
    assert item["unread"] == 1 and item["lastMessage"]["seq"] == 5 and item["lastMessage"]["content"] == "thanks"
    assert item["lastMessage"]["senderRole"] == "candidate"
    # Reassigned: the new agent sees what the candidate wrote since staff last answered.
    other = await scene.another_agent()
    await scene.assign(other)
    assert await unread_of(scene, other) == 1
    agent2 = await scene.joined(other)
    await agent2.emit("MARK_READ", {"conversationId": scene.conv_id, "seq": 5})
    assert (await cand.until("READ"))["userId"] == other["_id"]
    assert await unread_of(scene, other) == 0
    await agent2.sent(scene.conv_id, "the new agent here", "b-1")
    await agent2.emit("CLOSE_CONVERSATION", {"conversationId": scene.conv_id})
    await cand.until("CONVERSATION_CLOSED")
    # Closed: the counts stay as they were, and the candidate can still read what it missed.
    assert await unread_of(scene, scene.candidate) == 1  # "the new agent here" (it answered the rest)
    assert (await view(scene, scene.candidate))["unread"] == 1


async def test_the_facts_are_shown_at_once_and_written_in_one_update_later(app_client, settings, mongo_uri):
    """The writer keeps a conversation's facts in memory and writes them every ``facts_interval``:
    its own reads show them at once, the document gets all of them, once, when written."""
    slow = attrs.evolve(settings, database=attrs.evolve(settings.database, facts_interval=60.0))
    scene = await Scene.create(await app_client(slow))
    cand, agent = await scene.joined(scene.candidate), await scene.joined(scene.agent)
    for i in range(3):
        await cand.sent(scene.conv_id, f"question {i}", f"c-{i}")
    await agent.new_messages(3)
    await agent.sent(scene.conv_id, "an answer", "a-1")
    raw = pymongo.AsyncMongoClient(mongo_uri, tz_aware=True)
    try:
        stored = raw[settings.database.name]["conversations"]
        before = await stored.find_one({"_id": ObjectId(scene.conv_id)})
        assert before.get("lastSeq", 0) == 0 and before.get("messageCount", 0) == 0  # not written yet
        item = await listed(scene, scene.candidate)
        assert item["lastMessage"]["content"] == "an answer" and item["unread"] == 1
        await scene.client.close()  # stopping writes what is kept
        after = await stored.find_one({"_id": ObjectId(scene.conv_id)})
    finally:
        await raw.close()
    assert (after["messageCount"], after["lastSeq"], after["lastCandidateSeq"], after["lastStaffSeq"]) == (4, 4, 3, 4)
    assert after["lastMessage"]["content"] == "an answer" and after["firstAgentMessageAt"] is not None


async def test_the_inbox_carries_each_viewers_own_unread(scene: Scene):
    sup = await scene.connect(scene.supervisor)
    await sup.emit("SUBSCRIBE_INBOX", {})
    [item] = [c for c in (await sup.until("INBOX_SUBSCRIBED"))["conversations"] if c["_id"] == scene.conv_id]
    assert item["unread"] == 0 and item["lastMessage"] is None
    cand_inbox = await scene.connect(scene.candidate)
    await cand_inbox.emit("SUBSCRIBE_INBOX", {})
    await cand_inbox.until("INBOX_SUBSCRIBED")
    cand = await scene.joined(scene.candidate)
    await cand.sent(scene.conv_id, "hi there", "c-1")
    pushed = await sup.until("CONVERSATION_UPDATED", lambda d: d["conversation"]["lastMessage"] is not None)
    assert pushed["conversation"]["unread"] == 1 and pushed["conversation"]["lastMessage"]["content"] == "hi there"
    mine = await cand_inbox.until("CONVERSATION_UPDATED", lambda d: d["conversation"]["lastMessage"] is not None)
    assert mine["conversation"]["unread"] == 0


async def test_watermarks_survive_a_restart(app_client, settings, scene: Scene):
    cand, agent = await scene.joined(scene.candidate), await scene.joined(scene.agent)
    for i in range(2):
        await cand.sent(scene.conv_id, f"question {i}", f"c-{i}")
    await agent.new_messages(2)
    await agent.emit("MARK_READ", {"conversationId": scene.conv_id, "seq": 1})
    await cand.expect_event("READ")
    await cand.close()
    await agent.close()
    await scene.client.close()  # the app stops (writing what it keeps in memory) ...
    scene.client = await app_client(settings)  # ... and a new one starts on the same database
    assert await unread_of(scene, scene.agent) == 1
    cand, agent = await scene.joined(scene.candidate), await scene.joined(scene.agent)
    await agent.emit("MARK_READ", {"conversationId": scene.conv_id, "seq": 1})  # not above the stored mark
    await agent.emit("MARK_READ", {"conversationId": scene.conv_id, "seq": 2})
    assert (await cand.expect_event("READ"))["seq"] == 2  # the first READ the candidate hears is the new one


# --- private notes --------------------------------------------------------------------------------


async def test_staff_see_notes_live_and_in_the_conversation(scene: Scene):
    cand, agent = await scene.joined(scene.candidate), await scene.joined(scene.agent)
    supervisor = await watching(scene, scene.supervisor)
    ack = await note(agent, scene, "VIP customer, be nice")
    live = await supervisor.expect_event("NEW_NOTE")
    assert set(live) == NOTE_FIELDS and live["noteId"] == ack["noteId"] and live["content"] == "VIP customer, be nice"
    assert (live["senderId"], live["senderRole"]) == (scene.agent["_id"], "agent")
    await note(supervisor, scene, "agreed", "s-1")
    assert (await agent.expect_event("NEW_NOTE"))["senderRole"] == "supervisor"
    again = await note(agent, scene, "VIP customer, be nice")  # a resend: same note, shown once
    assert again["noteId"] == ack["noteId"]
    assert await frames_until_idle(supervisor) == []
    for staff in (scene.agent, scene.supervisor):
        notes = (await view(scene, staff))["notes"]
        assert [n["content"] for n in notes] == ["VIP customer, be nice", "agreed"]
    assert await frames_until_idle(cand) == []  # live: the candidate heard nothing of it


async def test_a_candidate_cannot_send_a_note(scene: Scene):
    cand = await scene.joined(scene.candidate)
    await cand.fails(FORBIDDEN_FOR_ROLE, "SEND_NOTE", {"conversationId": scene.conv_id, "content": "x",
                                                       "clientMessageId": "n-1"}, clientMessageId="n-1")
    stranger = await scene.connect(await scene.another_agent())
    await stranger.fails(NOT_ALLOWED, "SEND_NOTE", {"conversationId": scene.conv_id, "content": "x"})
    agent = await scene.connect(scene.agent)
    await agent.fails(NOT_JOINED, "SEND_NOTE", {"conversationId": scene.conv_id, "content": "x"})
    await agent.join(scene.conv_id)
    await agent.fails(INVALID, "SEND_NOTE", {"conversationId": scene.conv_id, "content": "   "})
    assert (await view(scene, scene.agent))["notes"] == []


async def test_a_note_never_reaches_the_candidate_after_a_reconnect_with_last_seq(scene: Scene):
    cand, agent = await scene.joined(scene.candidate), await scene.joined(scene.agent)
    await cand.sent(scene.conv_id, "one", "c-1")
    await agent.new_messages(1)
    await cand.close()
    await agent.sent(scene.conv_id, "two", "a-1")
    await note(agent, scene, "secret between staff")
    await agent.sent(scene.conv_id, "three", "a-2")
    cand = await scene.connect(scene.candidate)
    joined = await cand.join(scene.conv_id, lastSeq=1)
    assert joined["lastSeq"] == 3  # notes take no seq: the stream stays gap-free
    replayed = await cand.new_messages(2)
    assert [(m["seq"], m["content"]) for m in replayed] == [(2, "two"), (3, "three")]
    assert await frames_until_idle(cand) == []


async def test_a_note_is_in_no_history_page(scene: Scene):
    agent = await scene.joined(scene.agent)
    await agent.sent(scene.conv_id, "visible", "a-1")
    await note(agent, scene, "secret between staff")
    await agent.sent(scene.conv_id, "visible too", "a-2")
    for limit in (1, 500):
        history = await scene.history(limit)
        assert [(m["seq"], m["content"]) for m in history] == [(1, "visible"), (2, "visible too")]


async def test_a_note_is_not_in_the_candidates_conversation(scene: Scene):
    agent = await scene.joined(scene.agent)
    await note(agent, scene, "secret between staff")
    answer = await view(scene, scene.candidate)
    assert "notes" not in answer and "secret" not in str(answer)
    assert [n["content"] for n in (await view(scene, scene.agent))["notes"]] == ["secret between staff"]


async def test_a_note_is_never_a_list_items_last_message(scene: Scene):
    cand_inbox = await scene.connect(scene.candidate)
    await cand_inbox.emit("SUBSCRIBE_INBOX", {})
    await cand_inbox.until("INBOX_SUBSCRIBED")
    agent = await scene.joined(scene.agent)
    await agent.sent(scene.conv_id, "visible", "a-1")
    await cand_inbox.until("CONVERSATION_UPDATED", lambda d: d["conversation"]["lastMessage"] is not None)
    await note(agent, scene, "secret between staff")
    for user in (scene.candidate, scene.agent):
        item = await listed(scene, user)
        assert item["lastMessage"]["content"] == "visible" and item["lastMessage"]["seq"] == 1
    assert "secret" not in str(await frames_until_idle(cand_inbox))


async def test_no_note_on_a_closed_conversation(scene: Scene):
    agent = await scene.joined(scene.agent)
    await agent.emit("CLOSE_CONVERSATION", {"conversationId": scene.conv_id})
    await agent.until("CONVERSATION_CLOSED")
    await agent.fails(ALREADY_CLOSED, "SEND_NOTE", {"conversationId": scene.conv_id, "content": "late"})
    await agent.quiet()


async def test_a_resend_leaves_last_message_and_unread_on_the_stored_top(scene: Scene):
    """A resend is counted with a planned seq before the insert finds it stored: the writer then
    reads the newest message again (just after the resend is acknowledged), so nothing is left
    pointing past the top."""
    cand = await scene.joined(scene.candidate)
    first = await cand.sent(scene.conv_id, "only once", "c-1")
    again = await cand.sent(scene.conv_id, "only once", "c-1")
    assert again["seq"] == first["seq"] == 1
    for _ in range(100):
        item = await listed(scene, scene.agent)
        if item["lastMessage"]["seq"] == 1:
            break
        await asyncio.sleep(0.02)
    assert (item["lastMessage"]["seq"], item["unread"]) == (1, 1)
    await cand.sent(scene.conv_id, "and then this", "c-2")
    item = await listed(scene, scene.agent)
    assert (item["lastMessage"]["seq"], item["lastMessage"]["content"], item["unread"]) == (2, "and then this", 2)
