"""An acknowledged message survives ``kill -9`` (README "WebSocket"): the real ``python -m livechat``
with its embedded database in a temporary data directory is killed mid-conversation and started
again on the same directory."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from typing import Any

import aiohttp
import pytest

from tests.processes import Server, gone
from tests.ws_helpers import Peer, Scene, by_client_id, seqs

pytestmark = pytest.mark.slow

ACKED, IN_FLIGHT = 100, 40


@contextlib.asynccontextmanager
async def running(tmp_path) -> Any:
    """A started server and an HTTP/WebSocket session bound to it."""
    server = Server(tmp_path)
    try:
        await asyncio.to_thread(server.wait_ready)
        async with aiohttp.ClientSession(base_url=server.base) as session:
            yield server, session
    finally:
        await asyncio.to_thread(server.stop)


async def acks_for(peer: Peer, client_ids: list[str]) -> dict[str, dict]:
    """Read until every id in ``client_ids`` is acknowledged (other frames are the room's traffic)."""
    acks = by_client_id((await peer.acks_and_news(len(client_ids)))[0])
    assert set(acks) == set(client_ids)
    return acks


async def test_every_acknowledged_message_survives_a_kill_9(tmp_path):
    async with running(tmp_path) as (server, session):
        scene = await Scene.create(session)
        cand, agent = await scene.joined(scene.candidate), await scene.joined(scene.agent)
        acked_ids = [f"c-{i}" for i in range(ACKED)]
        for client_id in acked_ids:
            await cand.say(scene.conv_id, f"message {client_id}", client_id)
        await agent.say(scene.conv_id, "an agent's reply in between", "a-0")
        acks = {**await acks_for(cand, acked_ids), **await acks_for(agent, ["a-0"])}
        # Fire more, do not wait for them, and kill the server while they are on their way.
        in_flight = [f"c-{i}" for i in range(ACKED, ACKED + IN_FLIGHT)]
        for client_id in in_flight:
            await cand.say(scene.conv_id, f"message {client_id}", client_id)
        db_pid = server.database_pid()
        assert server.stop(signal.SIGKILL) == -signal.SIGKILL
    assert await asyncio.to_thread(gone, db_pid), "the embedded database outlived a kill -9"

    async with running(tmp_path) as (_, session):
        scene.client = session  # same data directory, same secret: the old tokens still work
        stored = await scene.history()
        assert seqs(stored) == list(range(1, len(stored) + 1))  # contiguous, no duplicates
        by_id = {m["messageId"]: m for m in stored}
        assert len(by_id) == len(stored)
        for client_id in acked_ids:
            message = by_id[acks[client_id]["messageId"]]
            assert (message["seq"], message["content"]) == (acks[client_id]["seq"], f"message {client_id}")
        assert by_id[acks["a-0"]["messageId"]]["content"] == "an agent's reply in between"
        contents = [m["content"] for m in stored]
        assert len(set(contents)) == len(contents)

        # The sender resends whatever it has no ack for: stored ones are acked again, not duplicated.
        resumed = await scene.connect(scene.candidate)
        joined = await resumed.join(scene.conv_id, lastSeq=len(stored))
        assert joined == {"conversationId": scene.conv_id, "status": "assigned", "lastSeq": len(stored)}
        for client_id in in_flight:
            await resumed.say(scene.conv_id, f"message {client_id}", client_id)
        resent = await acks_for(resumed, in_flight)
        for message in stored:
            client_id = message["content"].removeprefix("message ")
            if client_id in resent:
                assert resent[client_id]["messageId"] == message["messageId"]
        final = await scene.history()
        assert seqs(final) == list(range(1, ACKED + IN_FLIGHT + 2))
        assert sorted(m["content"] for m in final) == sorted(
            [f"message c-{i}" for i in range(ACKED + IN_FLIGHT)] + ["an agent's reply in between"])
