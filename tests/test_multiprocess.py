"""Several livechat processes on one database (README "Running several processes"): every event
reaches its sockets whichever process they are on — messages once each and in seq order — and a
killed process or a restarted database loses nothing. Real processes, real SecantusDB."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pymongo
import pytest

from tests.conftest import PASSWORD
from tests.processes import Client, Livechat, RestartableDatabase, livechat_env
from tests.contract import NOT_JOINED, UNAVAILABLE
from tests.ws_helpers import Peer

pytestmark = pytest.mark.slow


@contextlib.asynccontextmanager
async def cluster(tmp_path: Path, mongo_uri: str, n: int, database: str | None = None,
                  **env: str) -> AsyncIterator[tuple[list[Livechat], list[Client]]]:
    database = database or f"multi_{uuid.uuid4().hex[:10]}"
    procs = [Livechat(livechat_env(tmp_path, mongo_uri, database, **env), tmp_path) for _ in range(n)]
    async with aiohttp.ClientSession() as session:
        try:
            await asyncio.gather(*(p.ready(session) for p in procs))
            yield procs, [Client(session, p.base) for p in procs]
        finally:
            for p in procs:
                p.kill(signal.SIGTERM)


async def team(api: Client) -> tuple[dict, dict, dict, dict]:
    """Supervisor, two of its agents, a candidate."""
    supervisor = await api.user("supervisor")
    first = await api.user("agent", supervisorId=supervisor["_id"])
    second = await api.user("agent", supervisorId=supervisor["_id"])
    return supervisor, first, second, await api.user("candidate")


async def open_assigned(api: Client, supervisor: dict, agent: dict, candidate: dict) -> str:
    conv = await api.call("POST", "/conversations", candidate["token"], {"supervisorId": supervisor["_id"]}, status=201)
    await api.call("POST", f"/conversations/{conv['_id']}/assign", supervisor["token"], {"agentId": agent["_id"]})
    return conv["_id"]


async def send_many(sock: Peer, conv_id: str, prefix: str, count: int, pause: float = 0.0) -> None:
    for i in range(count):
        await sock.emit("SEND_MESSAGE", {"conversationId": conv_id, "content": f"{prefix}-{i}",
                                         "clientMessageId": f"{prefix}-{i}"})
        if pause:
            await asyncio.sleep(pause)


async def read_until(sock: Peer, done: Callable[[], bool], timeout: float = 30) -> None:
    async with asyncio.timeout(timeout):
        while not done():
            await sock.recv(timeout)


async def join(sock: Peer, conv_id: str, **extra: Any) -> dict[str, Any]:
    """JOIN_CONVERSATION; the data of the JOINED_CONVERSATION that answers it, whatever arrives before
    (``Peer.join`` wants the answer next)."""
    await sock.emit("JOIN_CONVERSATION", {"conversationId": conv_id, **extra})
    return await sock.until("JOINED_CONVERSATION", timeout=15)


def delivered(sock: Peer) -> list[int]:
    return [m["seq"] for m in sock.seen("NEW_MESSAGE")]


def acked(sock: Peer) -> dict[str, int]:
    return {a["clientMessageId"]: a["seq"] for a in sock.seen("MESSAGE_SENT")}


async def test_three_processes_chat_reassign_and_close(tmp_path, mongo_uri):
    async with cluster(tmp_path, mongo_uri, 3) as (_, (p1, p2, p3)):
        supervisor, agent, other_agent, candidate = await team(p3)
        conv = await open_assigned(p3, supervisor, agent, candidate)
        cand = await p1.socket(candidate)
        ag = await p2.socket(agent)
        assert (await join(cand, conv))["status"] == "open"
        assert (await join(ag, conv))["status"] == "assigned"

        # Both sides talk at once, from two processes: each hears all of the other's, in seq order.
        n = 40
        await asyncio.gather(send_many(cand, conv, "c", n, 0.002), send_many(ag, conv, "a", n, 0.002))
        await asyncio.gather(read_until(cand, lambda: len(acked(cand)) == n and len(delivered(cand)) == n),
                             read_until(ag, lambda: len(acked(ag)) == n and len(delivered(ag)) == n))
        for me, other in ((cand, ag), (ag, cand)):
            assert delivered(me) == sorted(delivered(me))  # in order, each once
            assert set(delivered(me)) == set(acked(other).values())  # every one of the other's
        assert sorted(delivered(cand) + delivered(ag)) == list(range(1, 2 * n + 1))  # contiguous
        history = await p3.history(supervisor, conv)
        assert [m["seq"] for m in history] == list(range(1, 2 * n + 1))
        by_seq = {m["seq"]: m["content"] for m in history}
        assert [by_seq[s] for s in delivered(cand)] == [m["content"] for m in cand.seen("NEW_MESSAGE")]

        # Reassignment over HTTP on process 3 takes the old agent's socket on process 2 out at once.
        await p3.call("POST", f"/conversations/{conv}/assign", supervisor["token"], {"agentId": other_agent["_id"]})
        for _ in range(100):
            await ag.emit("SEND_MESSAGE", {"conversationId": conv, "content": "still here?"})
            reply = await ag.until("ERROR", timeout=15)
            if reply["message"] == NOT_JOINED:
                break
            await asyncio.sleep(0.05)
        assert reply == {"message": NOT_JOINED}
        new = await p1.socket(other_agent)
        assert (await join(new, conv, lastSeq=2 * n))["lastSeq"] == 2 * n
        await cand.emit("SEND_MESSAGE", {"conversationId": conv, "content": "hello new agent"})
        assert (await new.until("NEW_MESSAGE", timeout=15))["content"] == "hello new agent"

        # The new agent closes in chat on process 1: the candidate hears it after every message.
        await new.emit("CLOSE_CONVERSATION", {"conversationId": conv})
        assert await new.until("CONVERSATION_CLOSED", timeout=15) == {"conversationId": conv}
        assert await cand.until("CONVERSATION_CLOSED", timeout=15) == {"conversationId": conv}
        assert cand.frames[-1]["event"] == "CONVERSATION_CLOSED"
        await ag.drain(0.3)
        assert "CONVERSATION_CLOSED" not in [f["event"] for f in ag.frames]  # the old agent had left

        # An open conversation closed over HTTP on process 3 reaches the candidate on process 1.
        waiting = await p2.user("candidate")
        second = await p3.call("POST", "/conversations", waiting["token"], {"supervisorId": supervisor["_id"]},
                               status=201)
        waiting_sock = await p1.socket(waiting)
        await join(waiting_sock, second["_id"])
        await p3.call("POST", f"/conversations/{second['_id']}/close", supervisor["token"])
        assert await waiting_sock.until("CONVERSATION_CLOSED", timeout=15) == {"conversationId": second["_id"]}


async def test_two_senders_on_two_processes_and_a_listener_on_a_third(tmp_path, mongo_uri):
    async with cluster(tmp_path, mongo_uri, 3) as (_, (p1, p2, p3)):
        supervisor, agent, _, candidate = await team(p1)
        conv = await open_assigned(p1, supervisor, agent, candidate)
        cand, ag, listener = await p1.socket(candidate), await p2.socket(agent), await p3.socket(candidate)
        for sock in (cand, ag, listener):
            await join(sock, conv)
        n = 150  # sent as fast as the sockets take them: the two writers collide on seqs
        await asyncio.gather(send_many(cand, conv, "c", n), send_many(ag, conv, "a", n))
        await asyncio.gather(read_until(cand, lambda: len(acked(cand)) == n and len(delivered(cand)) == n),
                             read_until(ag, lambda: len(acked(ag)) == n and len(delivered(ag)) == n),
                             read_until(listener, lambda: len(delivered(listener)) == 2 * n))
        # The listener hears both senders, every seq once, in order; each sender's order is kept.
        assert delivered(listener) == list(range(1, 2 * n + 1))
        for sender, prefix in ((cand, "c"), (ag, "a")):
            seqs = [acked(sender)[f"{prefix}-{i}"] for i in range(n)]
            assert seqs == sorted(seqs)
        history = await p2.history(candidate, conv)
        assert [m["content"] for m in history] == [m["content"] for m in listener.seen("NEW_MESSAGE")]
        assert [m["seq"] for m in history] == list(range(1, 2 * n + 1))


async def test_a_killed_process_loses_no_acknowledged_message_and_its_client_resumes_elsewhere(tmp_path, mongo_uri):
    async with cluster(tmp_path, mongo_uri, 2) as ((proc1, _), (p1, p2)):
        supervisor, agent, _, candidate = await team(p2)
        conv = await open_assigned(p2, supervisor, agent, candidate)
        cand, ag = await p1.socket(candidate), await p2.socket(agent)
        await join(cand, conv)
        await join(ag, conv)
        await send_many(ag, conv, "a", 5)
        await read_until(cand, lambda: len(delivered(cand)) == 5)

        sending = asyncio.create_task(send_many(cand, conv, "c", 200, 0.003))
        await read_until(cand, lambda: len(acked(cand)) >= 40)
        proc1.kill(signal.SIGKILL)  # mid-stream
        with contextlib.suppress(Exception):
            await sending
        with contextlib.suppress(Exception):
            await cand.drain(0.2)
        acknowledged = acked(cand)
        assert len(acknowledged) >= 40

        stored = await p2.history(candidate, conv)
        contents = [m["content"] for m in stored]
        assert set(acknowledged) <= set(contents)  # every acknowledged message is stored
        assert len(contents) == len(set(contents))
        assert [m["seq"] for m in stored] == list(range(1, len(stored) + 1))

        # The candidate moves to process 2, resumes from the highest seq it saw, resends the rest.
        seen = max([*acknowledged.values(), *delivered(cand)])
        moved = await p2.socket(candidate)
        joined = await join(moved, conv, lastSeq=seen)
        assert joined["lastSeq"] == len(stored)
        await ag.emit("SEND_MESSAGE", {"conversationId": conv, "content": "after the crash"})
        await send_many(moved, conv, "c", 200)  # a resend of the same ids stores nothing twice
        await read_until(moved, lambda: len(acked(moved)) == 200 and "after the crash" in
                         [m["content"] for m in moved.seen("NEW_MESSAGE")])
        replayed = delivered(moved)
        assert replayed == sorted(replayed) and len(replayed) == len(set(replayed))
        assert set(range(seen + 1, len(stored) + 1)) <= set(replayed)  # the gap, replayed
        assert {k: v for k, v in acked(moved).items() if k in acknowledged} == acknowledged  # same acks
        final = await p2.history(candidate, conv)
        assert [m["seq"] for m in final] == list(range(1, len(final) + 1))
        assert sorted(m["content"] for m in final if m["content"].startswith("c-")) == sorted(
            f"c-{i}" for i in range(200))
        # The agent on process 2 heard every message exactly once, in order.
        await read_until(ag, lambda: len(delivered(ag)) == len(final) - 6)
        assert delivered(ag) == [m["seq"] for m in final if m["senderRole"] == "candidate"]


async def test_a_database_restart_mid_stream_leaves_no_gap(tmp_path):
    database = RestartableDatabase(tmp_path)
    database.start()
    try:
        async with cluster(tmp_path, database.uri, 2) as (_, (p1, p2)):
            supervisor, agent, _, candidate = await team(p1)
            conv = await open_assigned(p1, supervisor, agent, candidate)
            cand, ag = await p1.socket(candidate), await p2.socket(agent)
            await join(cand, conv)
            await join(ag, conv)
            await send_many(cand, conv, "before", 20)
            await read_until(ag, lambda: len(delivered(ag)) == 20)

            database.stop()
            await cand.emit("SEND_MESSAGE", {"conversationId": conv, "content": "lost?", "clientMessageId": "x"})
            assert (await cand.until("ERROR", timeout=20))["message"] == UNAVAILABLE
            await asyncio.sleep(1)
            database.start()

            # The sockets stayed open; the same resend goes through once the database is back.
            for _ in range(100):
                await cand.emit("SEND_MESSAGE", {"conversationId": conv, "content": "lost?", "clientMessageId": "x"})
                frame = await cand.recv(20)
                while frame["event"] not in ("MESSAGE_SENT", "ERROR"):
                    frame = await cand.recv(20)
                if frame["event"] == "MESSAGE_SENT":
                    break
                await asyncio.sleep(0.2)
            assert frame["event"] == "MESSAGE_SENT", frame
            await send_many(cand, conv, "after", 20)
            await read_until(ag, lambda: len(delivered(ag)) == 41, timeout=60)
            assert delivered(ag) == list(range(1, 42))  # nothing missed, nothing twice
            assert [m["content"] for m in ag.seen("NEW_MESSAGE")][20] == "lost?"
    finally:
        database.stop()


async def send_acknowledged(sock: Peer, conv_id: str, content: str, timeout: float = 30) -> int:
    """Send until acknowledged (the database may be coming back): the stored seq."""
    async with asyncio.timeout(timeout):
        while True:
            await sock.emit("SEND_MESSAGE", {"conversationId": conv_id, "content": content,
                                             "clientMessageId": content})
            frame = await sock.recv(timeout)
            while frame["event"] not in ("MESSAGE_SENT", "ERROR"):
                frame = await sock.recv(timeout)
            if frame["event"] == "MESSAGE_SENT":
                return frame["data"]["seq"]
            await asyncio.sleep(0.2)


async def test_a_stream_that_cannot_resume_rereads_every_room(tmp_path):
    """Process 2 is frozen while the database restarts and its oplog is pruned past process 2's
    position: its stream cannot resume, so it starts afresh and re-reads its rooms by seq."""
    database = RestartableDatabase(tmp_path, "--oplog-max-entries", "20")
    database.start()
    try:
        async with cluster(tmp_path, database.uri, 2) as ((_, proc2), (p1, p2)):
            supervisor, agent, _, candidate = await team(p1)
            conv = await open_assigned(p1, supervisor, agent, candidate)
            cand, ag = await p1.socket(candidate), await p2.socket(agent)
            await join(cand, conv)
            await join(ag, conv)
            for i in range(5):
                await send_acknowledged(cand, conv, f"early-{i}")
            await read_until(ag, lambda: len(delivered(ag)) == 5)

            proc2.proc.send_signal(signal.SIGSTOP)
            try:
                database.stop()
                database.start()
                for i in range(60):
                    await send_acknowledged(cand, conv, f"missed-{i}")
                with pymongo.MongoClient(database.uri) as admin:  # forget past process 2's position
                    assert admin.admin.command("secantusAdmin.pruneOplog")["pruned"] > 0
            finally:
                proc2.proc.send_signal(signal.SIGCONT)

            await read_until(ag, lambda: len(delivered(ag)) == 65, timeout=60)
            assert delivered(ag) == list(range(1, 66))
            assert [m["content"] for m in ag.seen("NEW_MESSAGE")][5:] == [f"missed-{i}" for i in range(60)]
            await send_acknowledged(cand, conv, "live again")
            assert (await ag.until("NEW_MESSAGE", timeout=30))["content"] == "live again"
            assert "cannot resume" in proc2.log.read_text()
    finally:
        database.stop()


# --- the support desk across processes ---------------------------------------------------------------


async def agents_presence(api: Client, supervisor: dict) -> dict[str, dict]:
    return {a["_id"]: a for a in await api.call("GET", "/agents", supervisor["token"])}


async def test_auto_routing_with_capacity_under_concurrent_creates_on_two_processes(tmp_path, mongo_uri):
    async with cluster(tmp_path, mongo_uri, 2) as (_, (p1, p2)):
        supervisor = await p1.user("supervisor")
        agents = [await p1.user("agent", supervisorId=supervisor["_id"]) for _ in range(3)]
        online = [await (p1, p2, p1)[i].socket(a) for i, a in enumerate(agents)]
        await p2.call("PUT", f"/supervisors/{supervisor['_id']}/routing", supervisor["token"],
                      {"mode": "auto", "maxConcurrent": 5})
        for api in (p1, p2):  # both processes see all three available
            async with asyncio.timeout(20):
                while {a["presence"] for a in (await agents_presence(api, supervisor)).values()} != {"available"}:
                    await asyncio.sleep(0.1)
        candidates = [await (p1, p2)[i % 2].user("candidate") for i in range(30)]
        await asyncio.gather(*((p1, p2)[i % 2].call("POST", "/conversations", c["token"],
                                                     {"supervisorId": supervisor["_id"]}, status=201)
                               for i, c in enumerate(candidates)))

        async def listing() -> list[dict]:
            return await p1.call("GET", "/conversations?limit=100", supervisor["token"])

        async with asyncio.timeout(30):
            while sum(c["agentId"] is not None for c in await listing()) < 15:
                await asyncio.sleep(0.1)
        await asyncio.sleep(1)  # any over-assignment would show now
        convs = await listing()
        assigned = [c for c in convs if c["agentId"] is not None]
        waiting = sorted((c for c in convs if c["agentId"] is None), key=lambda c: (c["createdAt"], c["_id"]))
        assert len(assigned) == 15 and len(waiting) == 15
        load = await agents_presence(p2, supervisor)
        assert sorted(a["activeConversations"] for a in load.values()) == [5, 5, 5]
        assert {c["agentId"] for c in assigned} == {a["_id"] for a in agents}

        # Closing one (its agent on process 1 closes in chat) hands the oldest waiting one to that agent.
        done = assigned[0]
        owner = next(s for s in online if s.user["_id"] == done["agentId"])
        await join(owner, done["_id"])
        await owner.emit("CLOSE_CONVERSATION", {"conversationId": done["_id"]})
        await owner.until("CONVERSATION_CLOSED", timeout=20)
        oldest = waiting[0]["_id"]
        async with asyncio.timeout(20):
            while (view := await p2.call("GET", f"/conversations/{oldest}", supervisor["token"]))["agentId"] is None:
                await asyncio.sleep(0.1)
        assert view["agentId"] == done["agentId"]
        assert sum(c["agentId"] is None for c in await listing()) == 14


async def test_presence_and_inbox_across_processes_and_a_killed_process(tmp_path, mongo_uri):
    async with cluster(tmp_path, mongo_uri, 2, LIVECHAT_WS_HEARTBEAT="2") as ((proc1, _), (p1, p2)):
        supervisor = await p2.user("supervisor")
        agent = await p2.user("agent", supervisorId=supervisor["_id"])
        desk = await p2.socket(supervisor)
        await desk.emit("SUBSCRIBE_INBOX", {})
        await desk.until("INBOX_SUBSCRIBED", timeout=20)

        # A conversation created on process 1 appears in the inbox on process 2.
        candidate = await p1.user("candidate")
        conv = await p1.call("POST", "/conversations", candidate["token"], {"supervisorId": supervisor["_id"]},
                             status=201)
        pushed = await desk.until("CONVERSATION_UPDATED", lambda d: d["conversation"]["_id"] == conv["_id"],
                                  timeout=20)
        assert pushed["conversation"]["candidateName"] == candidate["name"]

        # The agent is online on both processes: it stays online until both sockets are gone.
        on1 = await p1.socket(agent)
        assert (await desk.until("PRESENCE", timeout=20))["status"] == "available"
        on2 = await p2.socket(agent)
        reading = asyncio.create_task(on2.drain(3600))  # a live client answers the server's pings
        proc1.kill(signal.SIGKILL)  # its claim expires; the socket on process 2 keeps the agent online
        with contextlib.suppress(TimeoutError):  # longer than 1.5 × heartbeat, answering pings meanwhile
            await desk.until("NO_SUCH_EVENT", timeout=4)
        assert "offline" not in [d["status"] for d in desk.seen("PRESENCE")]
        assert (await agents_presence(p2, supervisor))[agent["_id"]]["presence"] == "available"
        reading.cancel()
        await on2.ws.close()
        assert (await desk.until("PRESENCE", timeout=20))["status"] == "offline"
        assert (await agents_presence(p2, supervisor))[agent["_id"]]["presence"] == "offline"
        del on1


async def test_an_agent_only_on_a_killed_process_goes_offline(tmp_path, mongo_uri):
    async with cluster(tmp_path, mongo_uri, 2, LIVECHAT_WS_HEARTBEAT="2") as ((proc1, _), (p1, p2)):
        supervisor = await p2.user("supervisor")
        agent = await p2.user("agent", supervisorId=supervisor["_id"])
        desk = await p2.socket(supervisor)
        await desk.emit("SUBSCRIBE_INBOX", {})
        await desk.until("INBOX_SUBSCRIBED", timeout=20)
        await p1.socket(agent)
        assert (await desk.until("PRESENCE", timeout=20))["status"] == "available"
        proc1.kill(signal.SIGKILL)
        offline = await desk.until("PRESENCE", timeout=15)  # within the claim's 3 s, plus a renewal
        assert (offline["userId"], offline["status"]) == (agent["_id"], "offline")


async def test_new_agents_connecting_on_two_processes_at_once_get_working_sockets(tmp_path, mongo_uri):
    """Both processes create an agent's presence document at the same moment; the one whose
    upsert loses the race tries again (the benchmark's 1011 closes)."""
    async with cluster(tmp_path, mongo_uri, 2) as (_, (p1, p2)):
        supervisor = await p1.user("supervisor")
        agents = await asyncio.gather(*(p1.user("agent", supervisorId=supervisor["_id"]) for _ in range(20)))
        sockets = await asyncio.gather(*(api.socket(agent) for agent in agents for api in (p1, p2)))
        for sock in sockets:  # each answers: none was closed with 1011
            await sock.emit("NO_SUCH_EVENT", {})
            assert (await sock.until("ERROR", timeout=15)) == {"message": "Unknown event"}
        presence = await agents_presence(p2, supervisor)
        assert {presence[agent["_id"]]["presence"] for agent in agents} == {"available"}
        for sock in sockets:
            await sock.ws.close()


async def crossed_chat(p1: Client, p2: Client) -> tuple[dict, dict, dict, str, Peer, Peer]:
    """A team's conversation with the candidate joined on ``p1`` and its agent joined on ``p2``:
    supervisor, agent, candidate, conversation id, candidate socket, agent socket."""
    supervisor, agent, _, candidate = await team(p1)
    conv = await open_assigned(p1, supervisor, agent, candidate)
    cand, ag = await p1.socket(candidate), await p2.socket(agent)
    await join(cand, conv)
    await join(ag, conv)
    return supervisor, agent, candidate, conv, cand, ag


async def test_read_receipts_and_notes_across_processes(tmp_path, mongo_uri):
    """READ and NEW_NOTE come through the change feed (the reads and notes collections); a note
    reaches the staff on another process and never the candidate, whichever process it is on."""
    async with cluster(tmp_path, mongo_uri, 2) as (_, (p1, p2)):
        supervisor, agent, candidate, conv, cand, ag = await crossed_chat(p1, p2)
        watcher = await p1.socket(supervisor)
        await watcher.emit("WATCH_CONVERSATION", {"conversationId": conv})
        await watcher.until("WATCHING_CONVERSATION", timeout=15)
        await cand.emit("SEND_MESSAGE", {"conversationId": conv, "content": "hello", "clientMessageId": "c-1"})
        seq = (await ag.until("NEW_MESSAGE", timeout=15))["seq"]
        await ag.emit("MARK_READ", {"conversationId": conv, "seq": seq})
        read = await cand.until("READ", timeout=20)
        assert read == {"conversationId": conv, "userId": agent["_id"], "role": "agent", "seq": seq}
        await ag.emit("SEND_NOTE", {"conversationId": conv, "content": "staff only", "clientMessageId": "n-1"})
        await ag.until("NOTE_SENT", timeout=15)
        assert (await watcher.until("NEW_NOTE", timeout=20))["content"] == "staff only"
        items = await p1.call("GET", "/conversations", agent["token"])
        assert [i["unread"] for i in items if i["_id"] == conv] == [0]
        await cand.drain(0.5)
        assert "NEW_NOTE" not in [f["event"] for f in cand.frames] and "staff only" not in str(cand.frames)


async def test_typing_crosses_processes_and_stays_throttled(tmp_path, mongo_uri):
    """TYPING goes through the short-lived typing collection to a room on another process, once per
    socket per 2 s however fast the sender types; nothing of it is stored as a message."""
    async with cluster(tmp_path, mongo_uri, 2) as (_, (p1, p2)):
        _, agent, candidate, conv, cand, ag = await crossed_chat(p1, p2)
        started = asyncio.get_running_loop().time()
        for _ in range(50):
            await cand.emit("TYPING", {"conversationId": conv})
        typing = {"conversationId": conv, "userId": candidate["_id"], "role": "candidate"}
        assert await ag.until("TYPING", timeout=15) == typing
        await ag.drain(1.0)
        assert len(ag.seen("TYPING")) == 1 + int((asyncio.get_running_loop().time() - started) // 2), ag.seen("TYPING")
        await ag.emit("TYPING", {"conversationId": conv})
        assert (await cand.until("TYPING", timeout=15))["role"] == "agent"
        assert await p1.history(candidate, conv) == []


async def closed_unauthorized(sock: Peer, timeout: float = 1.0) -> None:
    """ERROR ``Unauthorized or invalid token``, then a close frame with 4401, within ``timeout``."""
    async with asyncio.timeout(timeout):
        while True:
            msg = await sock.ws.receive()
            if msg.type is not aiohttp.WSMsgType.TEXT:
                break
            sock.frames.append(msg.json())
    assert (msg.type, msg.data) == (aiohttp.WSMsgType.CLOSE, 4401), msg
    assert sock.frames[-1] == {"event": "ERROR", "data": {"message": "Unauthorized or invalid token"}}


async def test_revocation_closes_sockets_on_every_process(tmp_path, mongo_uri):
    """logout-all, a password change and a role change on one process close that user's sockets
    on the other within a second (the users change stream), and its old tokens get 401 there."""
    async with cluster(tmp_path, mongo_uri, 2) as (_, (p1, p2)):
        admin = await p1.user("admin")
        supervisor = await p1.user("supervisor")
        for revoke in ("logout-all", "password", "role"):
            user = await p1.user("candidate")
            here, there = await p1.socket(user), await p2.socket(user)
            for sock in (here, there):
                await sock.emit("SUBSCRIBE_INBOX", {})
                await sock.until("INBOX_SUBSCRIBED", timeout=15)
            if revoke == "logout-all":
                await p1.call("POST", "/auth/logout-all", user["token"])
            elif revoke == "password":
                await p1.call("POST", "/auth/password", user["token"],
                              {"currentPassword": PASSWORD, "newPassword": "a brand new password"})
            else:
                await p1.call("PATCH", f"/admin/users/{user['_id']}", admin["token"],
                              {"role": "agent", "supervisorId": supervisor["_id"]})
            await asyncio.gather(closed_unauthorized(here), closed_unauthorized(there))
            await p2.call("GET", "/auth/me", user["token"], status=401)
