"""Every WebSocket event and every error text of docs/asyncapi.yaml, played by several clients at once:
the candidate, the assigned agent, outsiders, and staff who may not chat (supervisor, admin)."""

from __future__ import annotations

import json

import attrs
import pytest
from bson import ObjectId

from livechat.domain.models import ConversationStatus
from livechat.keys import services_key

from tests.conftest import Api, expect
from tests.contract import (
    ALREADY_CLOSED,
    FORBIDDEN_FOR_ROLE,
    INVALID,
    INVALID_FORMAT,
    NOT_ALLOWED,
    NOT_JOINED,
    NOT_OPEN,
    NOT_YET_ASSIGNED,
    UNAUTHORIZED_CLOSE,
    UNKNOWN_EVENT,
    WS_UNAUTHORIZED,
)
from tests.ws_helpers import (
    Peer,
    Scene,
    check_ack,
    check_new_message,
    connect,
    eventually,
    forged_token,
    room_size,
    sockets_of,
)



# --- authentication --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["missing", "garbage", "bad signature", "expired", "unknown user", "empty"])
async def test_a_bad_token_gets_an_error_then_close_4401(client, api, kind):
    user = await api.user("candidate")
    token = {
        "missing": None,
        "garbage": "not-a-jwt",
        "bad signature": forged_token(user["_id"], key="another-secret-" + "k" * 32),
        "expired": forged_token(user["_id"], lifetime=-3600),
        "unknown user": forged_token(str(ObjectId())),
        "empty": "",
    }[kind]
    peer = await connect(client, token=token)
    frames = await peer.closed_with(UNAUTHORIZED_CLOSE)
    assert frames == [{"event": "ERROR", "data": {"message": WS_UNAUTHORIZED}}]
    assert sockets_of(client, user) == 0


async def test_a_forged_token_of_the_right_shape_and_secret_is_accepted(client, api):
    """Control for the cases above: only the token's defect made them fail."""
    user = await api.user("candidate")
    peer = await connect(client, token=forged_token(user["_id"]))
    await peer.idle()


async def test_the_token_may_come_in_an_authorization_header(scene):
    peer = Peer(await scene.client.ws_connect("/ws", headers=Api.auth(scene.candidate)), scene.candidate)
    assert await peer.join(scene.conv_id) == {"conversationId": scene.conv_id, "status": "open"}
    bad = Peer(await scene.client.ws_connect("/ws", headers={"Authorization": "Bearer nope"}))
    assert await bad.closed_with(UNAUTHORIZED_CLOSE) == [{"event": "ERROR", "data": {"message": WS_UNAUTHORIZED}}]


# --- frames and schemas ----------------------------------------------------------------------


@pytest.mark.parametrize("text", [
    "not json", "", "{", "[]", '[{"event": "JOIN_CONVERSATION", "data": {}}]', '"JOIN_CONVERSATION"', "42", "null",
    '{"data": {}}', '{"event": 1, "data": {}}', '{"event": null, "data": {}}', '{"event": ["SEND_MESSAGE"], "data": {}}',
    '{"event": "JOIN_CONVERSATION"}', '{"event": "JOIN_CONVERSATION", "data": []}',
    '{"event": "JOIN_CONVERSATION", "data": "x"}', '{"event": "JOIN_CONVERSATION", "data": null}',
    '{"event": "JOIN_CONVERSATION", "data": ' + '{"a": ' * 5_000 + "1" + "}" * 5_001,  # nested deeper than the parser goes
])
async def test_frames_that_are_not_event_objects_are_invalid_format(scene, text):
    peer = await scene.connect(scene.candidate)
    await peer.fails_raw(INVALID_FORMAT, text)
    await peer.join(scene.conv_id)  # the socket stays open and useful


async def test_unknown_events_are_named_as_such(scene):
    peer = await scene.connect(scene.agent)
    for event in ("HELLO", "join_conversation", "NEW_MESSAGE", "JOINED_CONVERSATION", "ERROR", ""):
        await peer.fails(UNKNOWN_EVENT, event, {"conversationId": scene.conv_id})
    await peer.idle()


@pytest.mark.parametrize("event", ["JOIN_CONVERSATION", "LEAVE_CONVERSATION", "CLOSE_CONVERSATION", "SEND_MESSAGE"])
async def test_a_missing_or_malformed_conversation_id_is_invalid_schema(scene, event):
    peer = await scene.connect(scene.agent)
    for data in ({}, {"conversationId": None}, {"conversationId": 42}, {"conversationId": "abc"},
                 {"conversationId": scene.conv_id + "0"}, {"conversationId": {"$ne": None}},
                 {"conversationId": [scene.conv_id]}, {"conversationId": "z" * 24}):
        await peer.fails(INVALID, event, {"content": "hello", **data})
    await peer.idle()


async def test_content_is_counted_in_characters(scene):
    cand, listener = await scene.joined(scene.candidate), await scene.joined(scene.agent)
    await cand.fails(INVALID, "SEND_MESSAGE", {"conversationId": scene.conv_id, "content": "\U0001F600" * 10_001})
    widest = "\U0001F600" * 10_000  # 10,000 characters, 40,000 bytes
    await cand.sent(scene.conv_id, widest, "emoji")
    [heard] = await listener.new_messages(1)
    check_new_message(heard, scene.conv_id, scene.candidate, widest)


async def test_a_lone_surrogate_is_refused_and_the_socket_stays_open(scene):
    cand, listener = await scene.joined(scene.candidate), await scene.joined(scene.agent)
    # json.dumps writes the lone surrogate as the escape \ud800: valid JSON, but not a Unicode string
    await cand.ws.send_str(json.dumps({"event": "SEND_MESSAGE",
                                       "data": {"conversationId": scene.conv_id, "content": "a\ud800b"}}))
    reply = await cand.recv()
    assert reply["event"] == "ERROR" and reply["data"]["message"] in (INVALID, INVALID_FORMAT), reply
    await listener.idle()
    assert await scene.history() == []
    await cand.sent(scene.conv_id, "plain", "after")


async def test_bad_content_is_invalid_schema_and_echoes_the_client_message_id(scene):
    cand, listener = await scene.joined(scene.candidate), await scene.joined(scene.agent)
    bad_contents = ["", " ", " \n\t ", 5, None, True, ["hi"], {"text": "hi"}, "x" * 10_001, "  " + "y" * 10_001]
    for content in bad_contents:
        await cand.fails(INVALID, "SEND_MESSAGE", {"conversationId": scene.conv_id, "content": content})
        await cand.fails(INVALID, "SEND_MESSAGE",
                         {"conversationId": scene.conv_id, "content": content, "clientMessageId": "m-1"},
                         clientMessageId="m-1")
    await cand.fails(INVALID, "SEND_MESSAGE", {"conversationId": scene.conv_id})
    # 10,000 characters after trimming is the largest accepted content; surrounding blanks do not count.
    longest = "   " + "z" * 10_000 + "\n"
    ack = await cand.sent(scene.conv_id, longest, "longest")
    assert ack["seq"] == 1
    [heard] = await listener.new_messages(1)
    assert heard["seq"] == 1 and heard["content"].strip() == "z" * 10_000
    await listener.idle()
    assert [m["seq"] for m in await scene.history()] == [1]  # none of the rejected ones was stored


@pytest.mark.parametrize("client_id", ["", "x" * 65, 7, 1.5, True, ["m"], {"id": "m"}])
async def test_an_invalid_client_message_id_is_invalid_schema_without_echo(scene, client_id):
    cand, listener = await scene.joined(scene.candidate), await scene.joined(scene.agent)
    await cand.fails(INVALID, "SEND_MESSAGE",
                     {"conversationId": scene.conv_id, "content": "hello", "clientMessageId": client_id})
    await listener.idle()  # nothing was broadcast
    assert await scene.history() == []
    ack = await cand.sent(scene.conv_id, "hello", "k" * 64)  # 64 characters is the longest id
    assert ack["seq"] == 1


async def test_join_with_a_malformed_last_seq_is_invalid_schema(scene):
    peer = await scene.connect(scene.candidate)
    for last_seq in (-1, "3", 1.5, True, [], {}, 2**60):
        await peer.fails(INVALID, "JOIN_CONVERSATION", {"conversationId": scene.conv_id, "lastSeq": last_seq})
    assert await peer.join(scene.conv_id, lastSeq=0) == {"conversationId": scene.conv_id, "status": "open",
                                                         "lastSeq": 0}


# --- JOIN_CONVERSATION ------------------------------------------------------------------------


async def test_staff_who_do_not_chat_are_forbidden_every_chat_event(scene):
    admin = await scene.api.user("admin")
    for user in (scene.supervisor, admin):
        peer = await scene.connect(user)
        ref = {"conversationId": scene.conv_id}
        await peer.fails(FORBIDDEN_FOR_ROLE, "JOIN_CONVERSATION", ref)
        await peer.fails(FORBIDDEN_FOR_ROLE, "JOIN_CONVERSATION", {"conversationId": "malformed"})  # role first
        await peer.fails(FORBIDDEN_FOR_ROLE, "SEND_MESSAGE", {**ref, "content": "hi"})
        await peer.fails(FORBIDDEN_FOR_ROLE, "SEND_MESSAGE", {**ref, "content": "hi", "clientMessageId": "s-1"},
                         clientMessageId="s-1")
        await peer.fails(FORBIDDEN_FOR_ROLE, "LEAVE_CONVERSATION", ref)
        await peer.fails(FORBIDDEN_FOR_ROLE, "CLOSE_CONVERSATION", ref)
    assert await scene.status() == "open"
    assert room_size(scene.client, scene.conv_id) == 0


async def test_outsiders_and_unknown_ids_are_not_allowed_to_join(scene):
    other_sup = await scene.api.user("supervisor")
    outsiders = [await scene.api.user("candidate"), await scene.another_agent(),
                 await scene.api.user("agent", supervisor_id=other_sup["_id"])]
    for user in outsiders:
        peer = await scene.connect(user)
        await peer.fails(NOT_ALLOWED, "JOIN_CONVERSATION", {"conversationId": scene.conv_id})
        await peer.fails(NOT_ALLOWED, "JOIN_CONVERSATION", {"conversationId": str(ObjectId())})
        await peer.fails(NOT_ALLOWED, "JOIN_CONVERSATION", {"conversationId": scene.conv_id, "lastSeq": 0})
        await peer.fails(NOT_JOINED, "SEND_MESSAGE", {"conversationId": scene.conv_id, "content": "let me in"})
    assert room_size(scene.client, scene.conv_id) == 0
    assert await scene.status() == "open"  # no outsider's join moved the state


async def test_the_candidate_chats_before_any_agent_and_the_agents_first_join_assigns(client):
    scene = await Scene.create(client, assigned=False)
    first, second = await scene.joined(scene.candidate), await scene.joined(scene.candidate)
    ack = await first.sent(scene.conv_id, "anyone there?", "c-1")
    check_new_message((await second.new_messages(1))[0], scene.conv_id, scene.candidate, "anyone there?")
    assert ack["seq"] == 1 and await scene.status() == "open"

    agent = await scene.connect(scene.agent)
    await agent.fails(NOT_ALLOWED, "JOIN_CONVERSATION", {"conversationId": scene.conv_id})  # not assigned yet
    await scene.assign(scene.agent)
    assert await scene.status() == "open"  # assigning does not change the status
    await scene.joined(scene.candidate)  # a candidate's join changes nothing
    assert await scene.status() == "open"
    assert await agent.join(scene.conv_id) == {"conversationId": scene.conv_id, "status": "assigned"}
    assert await scene.status() == "assigned"
    again = await scene.connect(scene.agent)
    assert await again.join(scene.conv_id) == {"conversationId": scene.conv_id, "status": "assigned"}

    await agent.say(scene.conv_id, "hello, I am here")
    for peer in (first, second, again):
        check_new_message((await peer.new_messages(1))[0], scene.conv_id, scene.agent, "hello, I am here")


async def test_joining_twice_is_harmless_and_delivers_once(scene):
    cand = await scene.joined(scene.candidate)
    await cand.join(scene.conv_id)
    agent = await scene.joined(scene.agent)
    await agent.say(scene.conv_id, "once")
    assert [m["content"] for m in await cand.new_messages(1)] == ["once"]
    await cand.idle()
    assert room_size(scene.client, scene.conv_id) == 2


# --- SEND_MESSAGE -----------------------------------------------------------------------------


async def test_send_requires_joining_first(scene):
    cand = await scene.connect(scene.candidate)
    await cand.fails(NOT_JOINED, "SEND_MESSAGE", {"conversationId": scene.conv_id, "content": "hi"})
    await cand.fails(NOT_JOINED, "SEND_MESSAGE", {"conversationId": scene.conv_id, "content": "hi",
                                                  "clientMessageId": "early"}, clientMessageId="early")
    joined_elsewhere = await scene.joined(scene.candidate)  # another socket of the same user is not this one
    await cand.fails(NOT_JOINED, "SEND_MESSAGE", {"conversationId": scene.conv_id, "content": "hi"})
    await joined_elsewhere.idle()
    assert await scene.history() == []


async def test_new_message_reaches_every_other_socket_in_the_room_and_never_the_sender(scene):
    cand_a, cand_b = await scene.joined(scene.candidate), await scene.joined(scene.candidate)
    agent_a, agent_b = await scene.joined(scene.agent), await scene.joined(scene.agent)
    not_joined = await scene.connect(scene.candidate)
    outsider = await scene.connect(await scene.api.user("candidate"))
    everyone = [cand_a, cand_b, agent_a, agent_b]

    for sender, client_id in ((cand_a, None), (agent_b, "a-1"), (cand_b, "c-2"), (agent_a, None)):
        content = f"from {sender.user['role']} {client_id}"
        await sender.say(scene.conv_id, content, client_id)
        if client_id is not None:  # the sender hears its ack, never its own message
            ack = await sender.expect_event("MESSAGE_SENT")
            check_ack(ack, scene.conv_id, client_id)
        heard = [(await peer.new_messages(1))[0] for peer in everyone if peer is not sender]
        for data in heard:
            check_new_message(data, scene.conv_id, sender.user, content)
        assert len({(m["messageId"], m["seq"], m["createdAt"]) for m in heard}) == 1
        if client_id is not None:
            assert (ack["messageId"], ack["seq"], ack["createdAt"]) == (
                heard[0]["messageId"], heard[0]["seq"], heard[0]["createdAt"])
        # Every receiver has it, so the sender's copy would be queued already: the next frame the
        # sender gets must be the answer to this LEAVE.
        await sender.idle()
    for peer in (not_joined, outsider):
        await peer.idle()
    assert [m["seq"] for m in await scene.history()] == [1, 2, 3, 4]


async def test_history_has_the_seed_fields_and_the_live_ids(scene):
    cand, agent = await scene.joined(scene.candidate), await scene.joined(scene.agent)
    await cand.say(scene.conv_id, "question")
    [live] = await agent.new_messages(1)
    resp = await scene.client.get(f"/conversations/{scene.conv_id}", headers=scene.api.auth(scene.agent))
    stored = (await expect(resp, 200))["messages"]
    assert stored == [live]


# --- LEAVE_CONVERSATION -----------------------------------------------------------------------


async def test_leave_is_idempotent_and_stops_delivery(scene):
    cand, agent = await scene.joined(scene.candidate), await scene.joined(scene.agent)
    await agent.leave(scene.conv_id)
    await agent.leave(scene.conv_id)
    never_joined = await scene.connect(scene.candidate)
    await never_joined.leave(scene.conv_id)
    await never_joined.leave(str(ObjectId()))  # even an id that does not exist

    await cand.sent(scene.conv_id, "are you still there?", "c-1")  # acked: the broadcast is out
    await agent.idle()  # left: it heard nothing
    await agent.fails(NOT_JOINED, "SEND_MESSAGE", {"conversationId": scene.conv_id, "content": "hi"})
    await agent.join(scene.conv_id)  # and may come back
    await cand.say(scene.conv_id, "welcome back")
    assert [m["content"] for m in await agent.new_messages(1)] == ["welcome back"]


# --- CLOSE_CONVERSATION -----------------------------------------------------------------------


async def test_close_errors_by_role_relation_and_state(scene):
    ref = {"conversationId": scene.conv_id}
    cand = await scene.joined(scene.candidate)
    await cand.fails(FORBIDDEN_FOR_ROLE, "CLOSE_CONVERSATION", ref)
    other_sup = await scene.api.user("supervisor")
    for stranger in (await scene.another_agent(), await scene.api.user("agent", supervisor_id=other_sup["_id"])):
        peer = await scene.connect(stranger)
        await peer.fails(NOT_ALLOWED, "CLOSE_CONVERSATION", ref)
        await peer.fails(NOT_ALLOWED, "CLOSE_CONVERSATION", {"conversationId": str(ObjectId())})
    agent = await scene.connect(scene.agent)
    await agent.fails(NOT_ALLOWED, "CLOSE_CONVERSATION", {"conversationId": str(ObjectId())})
    await agent.fails(NOT_YET_ASSIGNED, "CLOSE_CONVERSATION", ref)  # assigned to it, but still open
    assert await scene.status() == "open"
    await cand.idle()


async def test_closing_tells_the_whole_room_and_ends_the_conversation(scene):
    cand_a, cand_b = await scene.joined(scene.candidate), await scene.joined(scene.candidate)
    agent_in_room = await scene.joined(scene.agent)
    agent_elsewhere = await scene.connect(scene.agent)  # the closer need not be in the room
    await cand_a.say(scene.conv_id, "thanks, bye", "bye")
    await cand_a.expect_event("MESSAGE_SENT")
    for peer in (cand_b, agent_in_room):
        await peer.new_messages(1)

    await agent_elsewhere.emit("CLOSE_CONVERSATION", {"conversationId": scene.conv_id})
    closed = {"event": "CONVERSATION_CLOSED", "data": {"conversationId": scene.conv_id}}
    for peer in (agent_elsewhere, cand_a, cand_b, agent_in_room):
        assert await peer.recv() == closed
        await peer.idle()  # exactly once
    assert room_size(scene.client, scene.conv_id) == 0
    assert await scene.status() == "closed"

    for peer in (cand_a, agent_in_room):
        await peer.fails(ALREADY_CLOSED, "SEND_MESSAGE", {"conversationId": scene.conv_id, "content": "hello?"})
        await peer.fails(ALREADY_CLOSED, "SEND_MESSAGE", {"conversationId": scene.conv_id, "content": "hello?",
                                                          "clientMessageId": "late"}, clientMessageId="late")
        await peer.fails(ALREADY_CLOSED, "JOIN_CONVERSATION", {"conversationId": scene.conv_id})
        await peer.fails(ALREADY_CLOSED, "JOIN_CONVERSATION", {"conversationId": scene.conv_id, "lastSeq": 0})
    newcomer = await scene.connect(scene.candidate)
    await newcomer.fails(ALREADY_CLOSED, "JOIN_CONVERSATION", {"conversationId": scene.conv_id})
    await agent_elsewhere.fails(ALREADY_CLOSED, "CLOSE_CONVERSATION", {"conversationId": scene.conv_id})
    await cand_a.leave(scene.conv_id)  # leaving a closed conversation is still fine
    assert [m["content"] for m in await scene.history()] == ["thanks, bye"]  # history survives the close


async def test_closing_over_http_tells_the_room(scene):
    admin = await scene.api.user("admin")
    cand_a, cand_b = await scene.joined(scene.candidate), await scene.joined(scene.candidate)
    resp = await scene.client.post(f"/conversations/{scene.conv_id}/close", headers=scene.api.auth(scene.supervisor))
    assert await expect(resp, 200) == {"conversationId": scene.conv_id, "status": "closed"}
    for peer in (cand_a, cand_b):
        assert await peer.recv() == {"event": "CONVERSATION_CLOSED", "data": {"conversationId": scene.conv_id}}
        await peer.fails(ALREADY_CLOSED, "SEND_MESSAGE", {"conversationId": scene.conv_id, "content": "hm"})
    assert room_size(scene.client, scene.conv_id) == 0
    agent = await scene.connect(scene.agent)
    await agent.fails(ALREADY_CLOSED, "JOIN_CONVERSATION", {"conversationId": scene.conv_id})
    await agent.fails(ALREADY_CLOSED, "CLOSE_CONVERSATION", {"conversationId": scene.conv_id})
    resp = await scene.client.post(f"/conversations/{scene.conv_id}/close", headers=scene.api.auth(admin))
    await expect(resp, 400, ALREADY_CLOSED)


async def test_an_assigned_conversation_is_closed_in_chat_not_over_http(scene):
    cand, agent = await scene.joined(scene.candidate), await scene.joined(scene.agent)
    resp = await scene.client.post(f"/conversations/{scene.conv_id}/close", headers=scene.api.auth(scene.supervisor))
    await expect(resp, 400, NOT_OPEN)
    await cand.idle()  # nothing was announced
    await agent.emit("CLOSE_CONVERSATION", {"conversationId": scene.conv_id})
    for peer in (agent, cand):
        assert await peer.expect_event("CONVERSATION_CLOSED") == {"conversationId": scene.conv_id}


# --- reassignment -----------------------------------------------------------------------------


async def test_reassigning_takes_the_previous_agent_out_of_the_room_at_once(scene):
    cand = await scene.joined(scene.candidate)
    old = await scene.joined(scene.agent)
    old_second = await scene.joined(scene.agent)
    assert await scene.status() == "assigned"
    new_agent = await scene.another_agent()
    await scene.assign(new_agent)
    assert room_size(scene.client, scene.conv_id) == 1  # only the candidate is left
    assert await scene.status() == "assigned"  # reassignment keeps the status

    await cand.say(scene.conv_id, "hello?", "c-1")
    await cand.expect_event("MESSAGE_SENT")
    for peer in (old, old_second):
        await peer.idle()  # did not hear it
        await peer.fails(NOT_JOINED, "SEND_MESSAGE", {"conversationId": scene.conv_id, "content": "still me"})
        await peer.fails(NOT_ALLOWED, "JOIN_CONVERSATION", {"conversationId": scene.conv_id})
        await peer.fails(NOT_ALLOWED, "CLOSE_CONVERSATION", {"conversationId": scene.conv_id})

    new = await scene.connect(new_agent)
    assert await new.join(scene.conv_id, lastSeq=0) == {"conversationId": scene.conv_id, "status": "assigned",
                                                        "lastSeq": 1}
    assert [m["content"] for m in await new.new_messages(1)] == ["hello?"]
    await new.say(scene.conv_id, "I am taking over")
    assert [m["content"] for m in await cand.new_messages(1)] == ["I am taking over"]
    for peer in (old, old_second):
        await peer.idle()
    assert [m["senderId"] for m in await scene.history()] == [scene.candidate["_id"], new_agent["_id"]]


async def test_sockets_leave_their_rooms_when_they_disconnect(scene):
    cand = await scene.joined(scene.candidate)
    agent = await scene.joined(scene.agent)
    assert room_size(scene.client, scene.conv_id) == 2
    await agent.close()
    await eventually(lambda: room_size(scene.client, scene.conv_id) == 1, what="room shrinks")
    assert sockets_of(scene.client, scene.agent) == 0
    back = await scene.joined(scene.agent)  # and can reconnect and join again at any time
    await cand.say(scene.conv_id, "you are back")
    assert [m["content"] for m in await back.new_messages(1)] == ["you are back"]


async def test_a_late_copy_from_the_change_feed_never_undoes_a_newer_state(scene):
    """The feed can hand over a conversation's insert (no agent yet) after the agent was assigned
    and joined — under load it did; that stale copy must not take the agent out of the room."""
    fanout = scene.client.server.app[services_key].fanout
    conversations = scene.client.server.app[services_key].store.conversations
    agent = await scene.joined(scene.agent)
    cand = await scene.joined(scene.candidate)
    current = await conversations.get(ObjectId(scene.conv_id))
    assert current.agent_id == ObjectId(scene.agent["_id"]) and current.version > 0
    fanout.apply_remote(attrs.evolve(current, agent_id=None, status=ConversationStatus.OPEN, version=0))
    assert room_size(scene.client, scene.conv_id) == 2
    await agent.sent(scene.conv_id, "still here", "c1")
    assert [m["content"] for m in await cand.new_messages(1)] == ["still here"]
    fanout.apply_remote(attrs.evolve(current, agent_id=None, version=current.version + 1))  # a newer one does
    await eventually(lambda: room_size(scene.client, scene.conv_id) == 1, what="the agent leaves")
