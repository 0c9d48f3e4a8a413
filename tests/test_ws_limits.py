"""Liveness and limits of the WebSocket (docs/asyncapi.yaml close codes, README "WebSocket"): slow consumers, oversize and binary frames,
dead peers, floods, too many sockets and a graceful shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import json

from aiohttp import WSMsgType

from tests.conftest import make_settings
from tests.contract import (
    GOING_AWAY,
    INVALID,
    INVALID_FORMAT,
    POLICY,
    SLOW_CONSUMER,
    TOO_BIG,
    TOO_MANY_CONNECTIONS,
    TOO_MANY_MESSAGES,
    UNSUPPORTED,
)
from tests.ws_helpers import (
    Peer,
    Scene,
    eventually,
    room_size,
    seqs,
    sockets_of,
)



async def scene_with(app_client, mongo_uri: str, **ws) -> Scene:
    return await Scene.create(await app_client(make_settings(mongo_uri, ws=ws)))


def sized_frame(conv_id: str, size: int) -> str:
    """A SEND_MESSAGE text frame of exactly ``size`` bytes (its content is far too long to store)."""
    head = json.dumps({"event": "SEND_MESSAGE", "data": {"conversationId": conv_id, "content": ""}})
    frame = head[:-3] + "x" * (size - len(head)) + head[-3:]
    assert len(frame.encode()) == size and json.loads(frame)
    return frame


async def send_paced(sender: Peer, conv_id: str, total: int, window: int, content: str) -> None:
    """``total`` acknowledged messages, never more than ``window`` unacknowledged: a busy chat."""
    acked = 0
    for i in range(total):
        await sender.say(conv_id, f"{i} {content}", f"p{i}")
        if i + 1 - acked >= window:
            await sender.expect_event("MESSAGE_SENT", timeout=15)
            acked += 1
    while acked < total:
        await sender.expect_event("MESSAGE_SENT", timeout=15)
        acked += 1


async def test_a_client_that_stops_reading_is_dropped_while_the_room_goes_on(app_client, mongo_uri):
    scene = await scene_with(app_client, mongo_uri, outbox_size=32, rate_burst=5000, rate_per_second=5000)
    sender = await scene.joined(scene.agent)
    fast = await scene.joined(scene.candidate)
    stalled = await scene.joined(scene.candidate)  # never reads from here on
    assert sockets_of(scene.client, scene.candidate) == 2
    total, filler = 2000, "z" * 4096  # 8 MB: more than the kernel buffers of a loopback connection hold

    received, _ = await asyncio.gather(fast.new_messages(total, timeout=60),
                                       send_paced(sender, scene.conv_id, total, 8, filler))
    assert seqs(received) == list(range(1, total + 1))
    assert all(m["content"] == f"{i} {filler}" for i, m in enumerate(received))
    await eventually(lambda: sockets_of(scene.client, scene.candidate) == 1, what="the stalled socket is dropped")
    assert room_size(scene.client, scene.conv_id) == 2  # the sender and the fast reader

    frames = await stalled.until_closed(timeout=30)
    assert stalled.ws.close_code == SLOW_CONSUMER, stalled.ws.close_code
    assert len(frames) < total  # it was cut off, not served everything late
    await fast.idle()


async def test_a_reader_that_keeps_up_survives_a_full_burst_with_a_small_outbox(app_client, mongo_uri):
    """The guaranteed burst of 200 from one sender: a listener that reads all the time is not a slow
    consumer, however small the outbox, and must get every message."""
    scene = await scene_with(app_client, mongo_uri, outbox_size=32)
    sender, reader = await scene.joined(scene.agent), await scene.joined(scene.candidate)
    received, _ = await asyncio.gather(reader.new_messages(200, timeout=30),
                                       send_paced(sender, scene.conv_id, 200, 200, "burst"))
    assert seqs(received) == list(range(1, 201))
    await reader.idle()


async def test_a_frame_over_the_limit_closes_with_1009(scene):
    peer = await scene.joined(scene.candidate)
    await peer.ws.send_str(sized_frame(scene.conv_id, 64 * 1024 + 1))
    await peer.closed_with(TOO_BIG)
    await eventually(lambda: sockets_of(scene.client, scene.candidate) == 0, what="socket unregistered")
    assert room_size(scene.client, scene.conv_id) == 0


async def test_a_frame_of_exactly_the_limit_is_still_read(scene):
    """64 KiB is the largest accepted frame: it is parsed (and refused for its content)."""
    peer = await scene.joined(scene.candidate)
    await peer.fails_raw(INVALID, sized_frame(scene.conv_id, 64 * 1024))
    await peer.idle()


async def test_a_binary_frame_closes_with_1003(scene):
    peer = await scene.joined(scene.candidate)
    await peer.ws.send_bytes(json.dumps({"event": "LEAVE_CONVERSATION", "data": {}}).encode())
    frames = await peer.closed_with(UNSUPPORTED)
    assert all(f["event"] == "ERROR" and f["data"]["message"] == INVALID_FORMAT for f in frames), frames
    await eventually(lambda: sockets_of(scene.client, scene.candidate) == 0, what="socket unregistered")


async def hung_up(peer: Peer) -> None:
    """Returns once the server has ended the connection: a close, an EOF, or a write (the late
    answer to a ping) that finds the line closed."""
    with contextlib.suppress(ConnectionError):
        while (await peer.ws.receive()).type not in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.ERROR):
            pass


async def test_a_peer_that_does_not_answer_pings_is_dropped(app_client, mongo_uri):
    heartbeat = 1.0  # the smallest the configuration allows
    # send_timeout only bounds how long the server lingers over a dropped socket's handler
    scene = await scene_with(app_client, mongo_uri, heartbeat=heartbeat, send_timeout=1.0)
    alive = await scene.joined(scene.agent)
    dead = await scene.joined(scene.candidate)
    # From now on `dead` never reads, so it never answers a ping (autoping needs receive()).
    dead_without_autopong = Peer(await scene.client.ws_connect("/ws?token=" + scene.candidate["token"],
                                                               autoping=False), scene.candidate)
    await dead_without_autopong.join(scene.conv_id)
    assert sockets_of(scene.client, scene.candidate) == 2 and room_size(scene.client, scene.conv_id) == 3

    reader = asyncio.create_task(alive.ws.receive())  # a reading client answers pings by itself
    await eventually(lambda: sockets_of(scene.client, scene.candidate) == 0, timeout=4 * heartbeat,
                     what="silent peers dropped")
    assert room_size(scene.client, scene.conv_id) == 1
    assert sockets_of(scene.client, scene.agent) == 1
    assert not reader.done()  # nothing came, the socket is open
    reader.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await reader
    await alive.idle()
    for peer in (dead, dead_without_autopong):  # their connections were closed, not just forgotten
        await asyncio.wait_for(hung_up(peer), 5)


async def test_a_flood_gets_too_many_messages_and_sustained_abuse_closes_1008(app_client, mongo_uri):
    scene = await scene_with(app_client, mongo_uri, rate_burst=5, rate_per_second=1, abuse_strikes=10)
    flooder = await scene.joined(scene.candidate)
    listener = await scene.joined(scene.agent)
    for i in range(8):
        await flooder.say(scene.conv_id, f"m{i}", f"m{i}")
    replies = [await flooder.recv() for _ in range(8)]
    accepted = [r["data"]["clientMessageId"] for r in replies if r["event"] == "MESSAGE_SENT"]
    refused = [r["data"] for r in replies if r["event"] == "ERROR"]
    assert accepted[:5] == [f"m{i}" for i in range(5)]  # the burst always passes
    assert refused and all(r["message"] == TOO_MANY_MESSAGES for r in refused)
    assert {r["clientMessageId"] for r in refused} == {f"m{i}" for i in range(8)} - set(accepted)
    assert [m["content"] for m in await listener.new_messages(len(accepted))] == accepted
    await listener.idle()
    assert len(await scene.history()) == len(accepted)  # refused messages were not stored
    await flooder.idle()  # still open: a few refusals are not abuse

    with contextlib.suppress(ConnectionError):  # the server may hang up while we still write
        for i in range(30):
            await flooder.say(scene.conv_id, f"flood {i}")
    frames = await flooder.closed_with(POLICY)
    assert frames and frames[-1] == {"event": "ERROR", "data": {"message": TOO_MANY_MESSAGES}}
    await eventually(lambda: sockets_of(scene.client, scene.candidate) == 0, what="flooder unregistered")


async def test_joins_are_rate_limited_like_sends(app_client, mongo_uri):
    """JOIN_CONVERSATION reads the database: a burst passes, the excess gets ERROR, sustained
    abuse closes 1008 — in a bucket of its own, so joining never eats the send budget."""
    scene = await scene_with(app_client, mongo_uri, rate_burst=3, rate_per_second=0.5, abuse_strikes=6)
    peer = await scene.connect(scene.candidate)
    for _ in range(5):
        await peer.emit("JOIN_CONVERSATION", {"conversationId": scene.conv_id})
    replies = [await peer.recv() for _ in range(5)]
    assert [r["event"] for r in replies] == ["JOINED_CONVERSATION"] * 3 + ["ERROR"] * 2
    assert replies[-1]["data"] == {"message": TOO_MANY_MESSAGES}
    ack = await peer.sent(scene.conv_id, "still allowed", "s1")  # sends have their own bucket
    assert ack["seq"] == 1
    with contextlib.suppress(ConnectionError):
        for _ in range(10):
            await peer.emit("JOIN_CONVERSATION", {"conversationId": scene.conv_id})
    frames = await peer.closed_with(POLICY)
    assert frames[-1] == {"event": "ERROR", "data": {"message": TOO_MANY_MESSAGES}}


async def test_a_user_may_hold_only_so_many_sockets(app_client, mongo_uri):
    scene = await scene_with(app_client, mongo_uri, max_sockets_per_user=2)
    first, second = await scene.joined(scene.candidate), await scene.connect(scene.candidate)
    third = await scene.connect(scene.candidate)
    assert await third.closed_with(POLICY) == [{"event": "ERROR", "data": {"message": TOO_MANY_CONNECTIONS}}]
    assert sockets_of(scene.client, scene.candidate) == 2
    await second.idle()  # the first two are unaffected
    agents = [await scene.joined(scene.agent), await scene.connect(scene.agent)]  # another user has its own quota
    await agents[1].idle()

    await second.close()
    await eventually(lambda: sockets_of(scene.client, scene.candidate) == 1, what="a slot frees up")
    fourth = await scene.joined(scene.candidate)
    await agents[0].say(scene.conv_id, "both of you")
    for peer in (first, fourth):
        assert [m["content"] for m in await peer.new_messages(1)] == ["both of you"]


async def test_shutdown_finishes_in_flight_writes_then_closes_1001(app_client, settings):
    client = await app_client(settings)
    later = await app_client(settings)  # the same database, to read the history after the shutdown
    scene = await Scene.create(client)
    sender, listener = await scene.joined(scene.candidate), await scene.joined(scene.agent)
    idle = await scene.connect(scene.candidate)
    count = 50
    for i in range(count):
        await sender.say(scene.conv_id, f"m{i}", f"m{i}")
    first_ack = await sender.expect_event("MESSAGE_SENT")  # the writer is busy with the rest now
    shutting_down = asyncio.create_task(client.server.close())
    sender_frames, listener_frames, idle_frames = await asyncio.gather(
        *(peer.until_closed(timeout=15) for peer in (sender, listener, idle)))
    await shutting_down
    for peer in (sender, listener, idle):
        assert peer.ws.close_code == GOING_AWAY, peer.ws.close_code
    assert idle_frames == []
    assert all(f["event"] in ("MESSAGE_SENT", "NEW_MESSAGE") for f in sender_frames + listener_frames)

    # Every message the server stored was acked to its sender and heard by the listener before 1001.
    scene.client = later
    stored = await scene.history()
    assert stored and first_ack["messageId"] == stored[0]["messageId"]
    acked = [first_ack["clientMessageId"]] + [f["data"]["clientMessageId"] for f in sender_frames]
    assert acked == [m["content"] for m in stored] == [f"m{i}" for i in range(len(stored))]
    assert [f["data"]["seq"] for f in listener_frames] == seqs(stored)
