"""A database outage under live chat: sends get ERROR, nothing unstored is broadcast, and the
same sockets work again when the database is back (README "Health")."""

from __future__ import annotations

import asyncio

from livechat.storage.embedded import EmbeddedServer
from tests.conftest import Api, expect, make_settings
from tests.contract import BUSY, UNAVAILABLE
from tests.ws_helpers import connect


async def test_sends_fail_cleanly_during_an_outage_and_recover(app_client, tmp_path):
    server = EmbeddedServer("secantusd-py", str(tmp_path / "db"))
    server.start()
    try:
        server.wait_ready(30)
        client = await app_client(make_settings(server.uri, database={"timeout_ms": 1000}))
        api = Api(client)
        sup = await api.user("supervisor")
        cand = await api.user("candidate")
        conv = await expect(await client.post("/conversations", json={"supervisorId": sup["_id"]},
                                              headers=api.auth(cand)), 201)
        sender = await connect(client, cand)
        listener = await connect(client, cand)
        for peer in (sender, listener):
            await peer.emit("JOIN_CONVERSATION", {"conversationId": conv["_id"]})
            assert (await peer.recv(10))["event"] == "JOINED_CONVERSATION"

        async def send(client_id: str) -> dict:
            await sender.emit("SEND_MESSAGE", {
                "conversationId": conv["_id"], "content": f"msg {client_id}", "clientMessageId": client_id})
            return await sender.recv(10)

        assert (await send("before"))["event"] == "MESSAGE_SENT"
        assert (await listener.recv(10))["data"]["content"] == "msg before"

        await asyncio.to_thread(server.stop)
        failed = await send("during")
        assert failed == {"event": "ERROR", "data": {"message": UNAVAILABLE, "clientMessageId": "during"}}

        server.start()  # same port, same files
        await asyncio.to_thread(server.wait_ready, 30)
        retried = await send("during")  # the client resends with the same id once it hears of the outage
        assert retried["event"] == "MESSAGE_SENT" and retried["data"]["seq"] == 2
        # The listener heard nothing about the failed attempt, then exactly the stored message.
        live = await listener.recv(10)
        assert (live["data"]["content"], live["data"]["seq"]) == ("msg during", 2)
        history = await expect(await client.get(f"/conversations/{conv['_id']}", headers=api.auth(cand)), 200)
        assert [m["content"] for m in history["messages"]] == ["msg before", "msg during"]
    finally:
        server.stop()


async def test_sends_beyond_the_writers_queue_are_refused_at_once_and_stored_after_a_resend(app_client, tmp_path):
    """The writer is stuck on a stopped database with the first send; the queue holds one more;
    the third is refused at once with ``Server busy, retry`` (not after a database timeout), and
    stored when resent with the same clientMessageId once the database is back."""
    server = EmbeddedServer("secantusd-py", str(tmp_path / "db"))
    server.start()
    try:
        server.wait_ready(30)
        client = await app_client(make_settings(server.uri, database={"timeout_ms": 1500},
                                                ws={"max_queued_sends": 1}))
        api = Api(client)
        sup, cand = await api.user("supervisor"), await api.user("candidate")
        conv = await expect(await client.post("/conversations", json={"supervisorId": sup["_id"]},
                                              headers=api.auth(cand)), 201)
        peer = await connect(client, cand)
        await peer.emit("JOIN_CONVERSATION", {"conversationId": conv["_id"]})
        assert (await peer.recv(10))["event"] == "JOINED_CONVERSATION"

        def send(client_id: str):
            return peer.emit("SEND_MESSAGE", {
                "conversationId": conv["_id"], "content": f"msg {client_id}", "clientMessageId": client_id})

        await asyncio.to_thread(server.stop)
        await send("stuck")
        # The answer to an unknown event is sent after the writer took "stuck" (asyncio runs the
        # tasks woken first first), so from here the queue is empty and the writer is waiting.
        await peer.emit("NO_SUCH_EVENT", {})
        assert await peer.recv(10) == {"event": "ERROR", "data": {"message": "Unknown event"}}
        for client_id in ("queued", "refused"):
            await send(client_id)
        first = await peer.recv(10)
        assert first == {"event": "ERROR", "data": {"message": BUSY, "clientMessageId": "refused"}}
        # The other two wait on the database and fail with it.
        failed = [await peer.recv(10), await peer.recv(10)]
        assert {(f["data"]["message"], f["data"]["clientMessageId"]) for f in failed} == {
            (UNAVAILABLE, "stuck"), (UNAVAILABLE, "queued")}
        metrics = await (await client.get("/metrics")).text()
        assert 'livechat_websocket_drops_total{reason="busy"} 1.0' in metrics

        server.start()
        await asyncio.to_thread(server.wait_ready, 30)
        await send("refused")
        stored = await peer.recv(10)
        assert stored["event"] == "MESSAGE_SENT" and stored["data"]["clientMessageId"] == "refused"
        history = await expect(await client.get(f"/conversations/{conv['_id']}", headers=api.auth(cand)), 200)
        assert [m["content"] for m in history["messages"]] == ["msg refused"]
    finally:
        server.stop()
