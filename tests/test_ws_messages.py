"""Messages under load and across reconnects: one order for everyone (B.1), acknowledged idempotent
sends (B.2) and gap-free resume (B.3)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pymongo
import pytest

from livechat.domain.models import utcnow
from livechat.keys import services_key

from tests.contract import ALREADY_CLOSED
from tests.ws_helpers import (
    Peer,
    Scene,
    by_client_id,
    check_ack,
    check_new_message,
    seqs,
    stream_key,
)

PER_SENDER = 200  # the guaranteed burst of one socket (B.4)


async def burst(sender: Peer, conv_id: str, prefix: str, count: int, *, pause: float = 0.0) -> None:
    """Send ``count`` acknowledged messages without waiting for their acks; ``pause`` spreads them
    out so that other tasks (the other sender, a reconnecting listener) interleave."""
    for i in range(count):
        await sender.say(conv_id, f"{prefix}-{i}", f"{prefix}-{i}")
        if pause:
            await asyncio.sleep(pause)


async def drain_sender(sender: Peer, acks: int, heard: int) -> tuple[dict[str, dict], list[dict]]:
    """A sender's own acks (by clientMessageId) and the other side's messages, in arrival order."""
    got_acks, got_news = await sender.acks_and_news(acks, heard)
    return by_client_id(got_acks), got_news


def assert_contiguous(stream: list[dict[str, Any]], top: int) -> None:
    assert seqs(stream) == list(range(1, top + 1)), seqs(stream)
    assert len({m["messageId"] for m in stream}) == top


def contents_from(stream: list[dict[str, Any]], prefix: str) -> list[str]:
    return [m["content"] for m in stream if m["content"].startswith(prefix + "-")]


# --- B.1 ordering ---------------------------------------------------------------------------


async def test_two_concurrent_senders_give_every_receiver_and_the_history_one_order(scene):
    cand_sender, agent_sender = await scene.joined(scene.candidate), await scene.joined(scene.agent)
    listeners = [await scene.joined(scene.candidate), await scene.joined(scene.agent),
                 await scene.joined(scene.candidate)]
    total = 2 * PER_SENDER

    streams, senders, _ = await asyncio.gather(
        asyncio.gather(*(peer.new_messages(total, timeout=30) for peer in listeners)),
        asyncio.gather(drain_sender(cand_sender, PER_SENDER, PER_SENDER),
                       drain_sender(agent_sender, PER_SENDER, PER_SENDER)),
        asyncio.gather(burst(cand_sender, scene.conv_id, "c", PER_SENDER),
                       burst(agent_sender, scene.conv_id, "a", PER_SENDER)),
    )

    reference = streams[0]
    assert_contiguous(reference, total)
    for stream in streams[1:]:
        assert stream_key(stream) == stream_key(reference)
    by_seq = {m["seq"]: m for m in reference}
    for (acks, heard), own, other, sender in ((senders[0], "c", "a", scene.candidate),
                                              (senders[1], "a", "c", scene.agent)):
        # each sender's order is kept, its acks name exactly what the others heard
        assert contents_from(reference, own) == [f"{own}-{i}" for i in range(PER_SENDER)]
        for client_id, ack in acks.items():
            check_ack(ack, scene.conv_id, client_id)
            check_new_message(by_seq[ack["seq"]], scene.conv_id, sender, client_id)
            assert by_seq[ack["seq"]]["messageId"] == ack["messageId"]
        # and it heard the other side's messages, in the common order, never its own
        assert stream_key(heard) == stream_key([m for m in reference if m["content"].startswith(other + "-")])

    for limit in (500, 7):  # one page, then many pages: the same stream either way
        assert stream_key(await scene.history(limit)) == stream_key(reference)


async def test_a_full_burst_of_200_is_accepted_from_one_socket(scene):
    sender, listener = await scene.joined(scene.candidate), await scene.joined(scene.agent)
    await burst(sender, scene.conv_id, "b", PER_SENDER)
    acks, _ = await drain_sender(sender, PER_SENDER, 0)
    assert sorted(a["seq"] for a in acks.values()) == list(range(1, PER_SENDER + 1))
    assert_contiguous(await listener.new_messages(PER_SENDER), PER_SENDER)
    await sender.idle()


# --- B.2 idempotency --------------------------------------------------------------------------


async def test_resending_a_client_message_id_returns_the_original_ack_and_stores_nothing(scene):
    sender, listener = await scene.joined(scene.candidate), await scene.joined(scene.agent)
    original = await sender.sent(scene.conv_id, "only once", "dup-1")
    [heard] = await listener.new_messages(1)

    assert await sender.sent(scene.conv_id, "only once", "dup-1") == original
    assert await sender.sent(scene.conv_id, "different text, same id", "dup-1") == original
    await sender.idle()

    await sender.close()  # a new socket after a reconnect: still the same message
    again = await scene.joined(scene.candidate)
    assert await again.sent(scene.conv_id, "only once", "dup-1") == original
    await listener.idle()  # none of the resends was broadcast

    fresh = await again.sent(scene.conv_id, "next one", "dup-2")
    assert fresh["seq"] == original["seq"] + 1  # the resends used up no seq
    assert [m["content"] for m in await listener.new_messages(1)] == ["next one"]
    history = await scene.history()
    assert [(m["messageId"], m["seq"], m["content"]) for m in history] == [
        (original["messageId"], 1, "only once"), (fresh["messageId"], 2, "next one")]
    assert heard["messageId"] == original["messageId"]


async def acks_then_idle(peer: Peer, count: int) -> tuple[list[dict], list[dict]]:
    """The next ``count`` acks in order, the broadcasts that came with them, and then nothing more."""
    acks, news = await peer.acks_and_news(count)
    await peer.idle()
    return acks, news


async def test_back_to_back_duplicates_from_several_sockets_store_one_message(scene):
    """The duplicates reach the writer together (one batch); still one message, one broadcast."""
    first, second = await scene.joined(scene.candidate), await scene.joined(scene.candidate)
    listener = await scene.joined(scene.agent)
    for _ in range(3):
        await first.say(scene.conv_id, "hello", "same")
        await second.say(scene.conv_id, "hello", "same")
    await first.say(scene.conv_id, "after", "other")
    first_acks, first_news = await acks_then_idle(first, 4)
    second_acks, second_news = await acks_then_idle(second, 3)

    original = first_acks[0]
    assert original["seq"] == 1 and original["clientMessageId"] == "same"
    assert all(ack == original for ack in first_acks[1:3] + second_acks)
    assert first_acks[3]["seq"] == 2 and first_acks[3]["clientMessageId"] == "other"
    # whichever socket's copy was stored, the other candidate socket heard it once, as a broadcast
    assert sorted(m["content"] for m in first_news + second_news) == ["after", "hello"]
    assert [m["content"] for m in second_news][-1] == "after"
    assert [m["content"] for m in await listener.new_messages(2)] == ["hello", "after"]
    await listener.idle()
    assert [m["seq"] for m in await scene.history()] == [1, 2]


async def test_the_same_client_message_id_in_another_conversation_is_another_message(client, scene):
    other = await Scene.create(client)
    sender = await scene.joined(scene.candidate)
    other_sender = await other.joined(other.candidate)
    first = await sender.sent(scene.conv_id, "here", "shared-id")
    second = await other_sender.sent(other.conv_id, "there", "shared-id")
    assert first["messageId"] != second["messageId"]
    assert (first["seq"], second["seq"]) == (1, 1)
    assert [m["content"] for m in await other.history()] == ["there"]


# --- B.3 resume --------------------------------------------------------------------------------


async def test_join_with_last_seq_replays_the_gap_before_live_messages(scene):
    agent = await scene.joined(scene.agent)
    for i in range(1, 8):
        await agent.sent(scene.conv_id, f"m{i}", f"m{i}")

    resumed = await scene.connect(scene.candidate)
    await resumed.emit("JOIN_CONVERSATION", {"conversationId": scene.conv_id, "lastSeq": 3})
    await agent.say(scene.conv_id, "m8", "m8")  # live, racing the replay
    joined = await resumed.expect_event("JOINED_CONVERSATION")
    assert joined["lastSeq"] in (7, 8), joined  # the top when the JOIN was served: before or after m8
    assert joined == {"conversationId": scene.conv_id, "status": "assigned", "lastSeq": joined["lastSeq"]}
    replay = await resumed.new_messages(5)
    assert [(m["seq"], m["content"]) for m in replay] == [(4, "m4"), (5, "m5"), (6, "m6"), (7, "m7"), (8, "m8")]
    for message in replay:
        check_new_message(message, scene.conv_id, scene.agent, message["content"])
    await resumed.idle()
    assert stream_key(replay) == stream_key((await scene.history())[3:])


@pytest.mark.parametrize(("last_seq", "replayed"), [(0, [1, 2, 3]), (2, [3]), (3, [])])
async def test_resume_from_the_start_the_middle_and_the_top(scene, last_seq, replayed):
    cand = await scene.joined(scene.candidate)
    for i in range(3):
        await cand.sent(scene.conv_id, f"c{i}", f"c{i}")
    agent = await scene.connect(scene.agent)
    assert await agent.join(scene.conv_id, lastSeq=last_seq) == {
        "conversationId": scene.conv_id, "status": "assigned", "lastSeq": 3}
    assert seqs(await agent.new_messages(len(replayed))) == replayed
    await agent.idle()
    await cand.say(scene.conv_id, "live")
    assert [(m["seq"], m["content"]) for m in await agent.new_messages(1)] == [(4, "live")]


async def test_resume_on_an_empty_conversation(scene):
    cand = await scene.connect(scene.candidate)
    assert await cand.join(scene.conv_id, lastSeq=0) == {"conversationId": scene.conv_id, "status": "open",
                                                         "lastSeq": 0}
    await cand.idle()


async def test_a_listener_that_reconnects_during_a_burst_ends_with_a_gap_free_stream(scene):
    cand_sender, agent_sender = await scene.joined(scene.candidate), await scene.joined(scene.agent)
    total = 2 * PER_SENDER
    sending = asyncio.gather(burst(cand_sender, scene.conv_id, "c", PER_SENDER, pause=0.003),
                             burst(agent_sender, scene.conv_id, "a", PER_SENDER, pause=0.003))
    senders_done = asyncio.gather(drain_sender(cand_sender, PER_SENDER, PER_SENDER),
                                  drain_sender(agent_sender, PER_SENDER, PER_SENDER))

    seen: list[dict[str, Any]] = []
    listener = await scene.joined(scene.candidate, lastSeq=0)
    for n, cut in enumerate((40, 120, 250, 330)):  # drop the socket mid-stream, resume from the last seq seen
        while len(seen) < cut:
            seen.append(await listener.expect_event("NEW_MESSAGE", timeout=15))
        await listener.close()
        listener = await scene.connect((scene.agent, scene.candidate)[n % 2])
        joined = await listener.join(scene.conv_id, lastSeq=seen[-1]["seq"])
        assert joined["lastSeq"] >= seen[-1]["seq"]
    seen += await listener.new_messages(total - len(seen), timeout=30)
    await asyncio.gather(sending, senders_done)
    await listener.idle()

    assert_contiguous(seen, total)
    assert stream_key(seen) == stream_key(await scene.history())


async def test_a_last_seq_beyond_the_top_does_not_mute_the_socket(scene):
    """The answer's ``lastSeq`` is where the stream resumes; a client whose own bookkeeping is ahead
    (a stale cache, another conversation's number) still gets every later message (A.6)."""
    cand = await scene.joined(scene.candidate)
    await cand.sent(scene.conv_id, "one", "c-1")
    agent = await scene.connect(scene.agent)
    assert await agent.join(scene.conv_id, lastSeq=50) == {"conversationId": scene.conv_id, "status": "assigned",
                                                           "lastSeq": 1}
    await cand.sent(scene.conv_id, "two", "c-2")
    assert [(m["seq"], m["content"]) for m in await agent.new_messages(1, timeout=5)] == [(2, "two")]


# --- closing while messages are on their way ---------------------------------------------------


async def test_no_message_is_stored_or_acked_after_the_close(client):
    """Sends racing a CLOSE_CONVERSATION: each is either stored before the close (and heard by the room
    before CONVERSATION_CLOSED) or refused with `Conversation already closed` — never stored after it."""
    for _ in range(3):
        scene = await Scene.create(client)
        cand, agent = await scene.joined(scene.candidate), await scene.joined(scene.agent)
        sent = [f"m{i}" for i in range(150)]
        for i, client_id in enumerate(sent):
            await cand.say(scene.conv_id, client_id, client_id)
            if i == 60:
                await agent.emit("CLOSE_CONVERSATION", {"conversationId": scene.conv_id})
        agent_frames = await frames_until_closed(agent)
        cand_frames = await frames_until_closed(cand)
        answered = [f for f in cand_frames if f["event"] in ("MESSAGE_SENT", "ERROR")]
        while len(answered) < len(sent):  # the refusals of the sends after the close
            answered.append(await cand.recv())
        assert all(f["event"] == "ERROR" for f in answered[len(cand_frames) - 1:]), "acked after the close"
        acked = [f["data"]["clientMessageId"] for f in answered if f["event"] == "MESSAGE_SENT"]
        refused = [f["data"] for f in answered if f["event"] == "ERROR"]
        assert all(r["message"] == ALREADY_CLOSED for r in refused), refused
        assert sorted(acked + [r["clientMessageId"] for r in refused]) == sorted(sent)
        heard = [f["data"] for f in agent_frames if f["event"] == "NEW_MESSAGE"]
        assert [m["content"] for m in heard] == acked  # the room heard exactly what was stored
        assert stream_key(await scene.history()) == stream_key(heard)


async def test_alone_a_send_costs_the_database_its_insert_only(scene, mongo_uri, settings):
    """A process that knows no other livechat process is alive checks a send against the
    conversation as it last wrote or read it (one command per batch: the insert); once another
    process's heartbeat is fresh it reads the conversation with every batch again."""
    cand, agent = await scene.joined(scene.candidate), await scene.joined(scene.agent)
    raw = pymongo.AsyncMongoClient(mongo_uri, tz_aware=True)

    async def queries_for(prefix: str, count: int = 10) -> int:
        before = (await raw.admin.command("serverStatus"))["opcounters"]["query"]
        for i in range(count):  # one at a time: each is a batch of its own
            await cand.sent(scene.conv_id, f"{prefix} {i}", f"{prefix}-{i}")
        await agent.new_messages(count)
        return (await raw.admin.command("serverStatus"))["opcounters"]["query"] - before

    try:
        await cand.sent(scene.conv_id, "first", "first")  # the first send reads the conversation
        assert await queries_for("alone") <= 3  # none of the sends' own; a timer's read may fall in
        services = scene.client.server.app[services_key]
        await raw[settings.database.name]["presence_processes"].insert_one(
            {"_id": "other", "expires": utcnow() + timedelta(seconds=60), "writer": "other"})
        async with asyncio.timeout(10):
            while not services.presence.others_alive():
                await asyncio.sleep(0.05)
        assert await queries_for("shared") >= 10
    finally:
        await raw.close()


async def frames_until_closed(peer: Peer) -> list[dict[str, Any]]:
    """Frames up to and including CONVERSATION_CLOSED."""
    frames = [await peer.recv(10)]
    while frames[-1]["event"] != "CONVERSATION_CLOSED":
        frames.append(await peer.recv(10))
    return frames
