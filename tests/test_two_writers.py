"""Two server processes writing into one conversation still give contiguous, unique seqs and keep
each sender's order (README "WebSocket"; the unique index plus renumbering in domain/messages.py)."""

from __future__ import annotations

import asyncio

from tests.conftest import expect
from tests.ws_helpers import Peer, Scene, connect

PER_SENDER = 150


async def send_all(peer: Peer, conv_id: str, prefix: str) -> list[int]:
    """Send PER_SENDER messages without waiting, then collect the acks' seqs in send order."""
    for i in range(PER_SENDER):
        await peer.emit("SEND_MESSAGE", {
            "conversationId": conv_id, "content": f"{prefix}-{i}", "clientMessageId": f"{prefix}-{i}"})
    acks: dict[str, int] = {}
    while len(acks) < PER_SENDER:
        frame = await peer.recv(20)
        assert frame["event"] in ("MESSAGE_SENT", "NEW_MESSAGE"), frame
        if frame["event"] == "MESSAGE_SENT":
            acks[frame["data"]["clientMessageId"]] = frame["data"]["seq"]
    return [acks[f"{prefix}-{i}"] for i in range(PER_SENDER)]


async def test_two_apps_on_one_database_allocate_seq_safely(app_client, settings):
    first, second = await app_client(settings), await app_client(settings)  # same database name
    scene = await Scene.create(first)
    api, conv, cand, agent = scene.api, scene.conversation, scene.candidate, scene.agent
    cand_peer = await connect(first, cand)
    agent_peer = await connect(second, agent)
    for peer in (cand_peer, agent_peer):
        await peer.emit("JOIN_CONVERSATION", {"conversationId": conv["_id"]})
        assert (await peer.recv(10))["event"] == "JOINED_CONVERSATION"

    cand_seqs, agent_seqs = await asyncio.gather(send_all(cand_peer, conv["_id"], "c"),
                                                 send_all(agent_peer, conv["_id"], "a"))
    assert cand_seqs == sorted(cand_seqs) and agent_seqs == sorted(agent_seqs)  # each sender's order kept
    assert sorted(cand_seqs + agent_seqs) == list(range(1, 2 * PER_SENDER + 1))  # contiguous, unique

    page = await expect(await first.get(f"/conversations/{conv['_id']}/messages?limit=500",
                                        headers=api.auth(cand)), 200)
    stored = {m["seq"]: m["content"] for m in page["messages"]}
    assert len(page["messages"]) == 2 * PER_SENDER
    assert [stored[s] for s in cand_seqs] == [f"c-{i}" for i in range(PER_SENDER)]
    assert [stored[s] for s in agent_seqs] == [f"a-{i}" for i in range(PER_SENDER)]
