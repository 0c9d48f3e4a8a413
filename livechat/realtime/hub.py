"""Rooms and per-socket outboxes: fan-out that never waits for the slowest peer.

A broadcast serialises its event once and only enqueues the text on each member's outbox; one
writer task per socket drains it in order. A client that stops reading is disconnected (1013) —
the room never slows down for it: its backlog stayed above ``outbox_size`` for longer than the
send timeout, or reached ``HARD_LIMIT_FACTOR`` times it (the memory bound). A reader that keeps up
survives a burst larger than its outbox, since one batch of messages is published at once.

This hub is process-local. Several processes would put an adapter behind the same
``publish``/``evict``/``close_room`` calls (MongoDB change streams or Redis pub/sub, DESIGN.md §7).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Iterable
from typing import Any

from aiohttp import WSCloseCode, web
from bson import ObjectId

from livechat.domain.models import User

log = logging.getLogger(__name__)

SLOW_CONSUMER = 1013  # "try again later": the client did not read its events fast enough
CLOSE_TIMEOUT = 2.0
HARD_LIMIT_FACTOR = 8
REPLAY_PAUSE = 0.005


def encode(event: str, data: dict[str, Any]) -> str:
    return json.dumps({"event": event, "data": data}, ensure_ascii=False, separators=(",", ":"))


class _Close:
    def __init__(self, code: int, reason: str) -> None:
        self.code, self.reason = code, reason


class Connection:
    """One authenticated WebSocket: who it is, the rooms it is in, and its outbox."""

    def __init__(self, ws: web.WebSocketResponse, user: User, *, outbox_size: int, send_timeout: float,
                 request_id: str, transport: asyncio.Transport | None = None) -> None:
        self.ws = ws
        self.user = user
        self.request_id = request_id
        self.rooms: set[ObjectId] = set()
        self.closed_rooms: set[ObjectId] = set()  # closed while we were in them: SEND says "already closed"
        self.dropped = False
        self._outbox: asyncio.Queue[str | _Close] = asyncio.Queue()  # bounded by _is_slow()
        self._soft_limit = outbox_size
        self._hard_limit = outbox_size * HARD_LIMIT_FACTOR
        self._backlog_since: float | None = None
        self._send_timeout = send_timeout
        self._transport = transport
        # A resuming JOIN holds live events of that room here until the replay is out.
        self._held: dict[ObjectId, list[tuple[int, str]]] = {}
        self._sent_seq: dict[ObjectId, int] = {}  # highest message seq sent, per room
        self._writer = asyncio.create_task(self._write_loop(), name=f"ws-writer-{request_id}")

    def send(self, event: str, data: dict[str, Any]) -> None:
        self.send_text(encode(event, data))

    def send_text(self, text: str, room: ObjectId | None = None, seq: int | None = None) -> None:
        if self.dropped or not self._in_order(text, room, seq):
            return
        if self._is_slow():
            log.warning("dropping slow websocket client (user %s, request %s)", self.user.id, self.request_id)
            self.abort(SLOW_CONSUMER, "slow consumer")
            return
        self._outbox.put_nowait(text)

    def _is_slow(self) -> bool:
        size = self._outbox.qsize()
        if size < self._soft_limit:
            self._backlog_since = None
            return False
        if size >= self._hard_limit:
            return True
        now = time.monotonic()
        if self._backlog_since is None:
            self._backlog_since = now
        return now - self._backlog_since > self._send_timeout

    async def put(self, text: str, room: ObjectId, seq: int) -> None:
        """Enqueue a replayed message once the backlog is below the outbox size: the reader sets
        the pace of a replay, however long the gap."""
        while not self.dropped and self._outbox.qsize() >= self._soft_limit:
            await asyncio.sleep(REPLAY_PAUSE)
        if not self.dropped and self._in_order(text, room, seq, replay=True):
            self._outbox.put_nowait(text)

    def _in_order(self, text: str, room: ObjectId | None, seq: int | None, replay: bool = False) -> bool:
        """Per room, each seq goes out once and in order; live events wait while a replay runs."""
        if room is None or seq is None:
            return True
        if not replay and room in self._held:
            self._held[room].append((seq, text))
            return False
        if seq <= self._sent_seq.get(room, 0):
            return False
        self._sent_seq[room] = seq
        return True

    def hold(self, room: ObjectId, after_seq: int) -> None:
        """Start a resume: the client has seen ``after_seq``; live events wait for the replay."""
        self._held[room] = []
        self._sent_seq[room] = after_seq

    def rewind(self, room: ObjectId, seq: int) -> None:
        """The client claimed more than exists: live messages continue after the real top."""
        self._sent_seq[room] = min(self._sent_seq.get(room, 0), seq)

    def release(self, room: ObjectId) -> None:
        """End a replay: send the live events that arrived meanwhile and were not replayed."""
        for seq, text in self._held.pop(room, []):
            self.send_text(text, room, seq)

    def close_soon(self, code: int, reason: str) -> None:
        """Close after what is already queued has been written (graceful)."""
        if not self.dropped:
            self.dropped = True
            self._outbox.put_nowait(_Close(code, reason))

    def abort(self, code: int, reason: str) -> None:
        """Stop writing now and close without waiting for the peer (slow or misbehaving client)."""
        self.dropped = True
        self._writer.cancel()
        asyncio.get_running_loop().create_task(self._close(code, reason))

    async def wait_closed(self, timeout: float) -> None:
        """Wait (at most ``timeout``) for the writer to finish; our own cancellation still stops us."""
        await asyncio.wait({self._writer}, timeout=timeout)

    async def aclose(self) -> None:
        """The receive loop ended: stop the writer."""
        self.dropped = True
        self._writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._writer

    async def _write_loop(self) -> None:
        try:
            while True:
                item = await self._outbox.get()
                if self._outbox.qsize() < self._soft_limit:
                    self._backlog_since = None
                if isinstance(item, _Close):
                    await self._close(item.code, item.reason)
                    return
                async with asyncio.timeout(self._send_timeout):
                    await self.ws.send_str(item)
        except (TimeoutError, ConnectionError) as exc:
            log.info("websocket write failed (%s); closing (request %s)", type(exc).__name__, self.request_id)
            self.dropped = True
            await self._close(WSCloseCode.GOING_AWAY, "write failed")

    async def _close(self, code: int, reason: str) -> None:
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await self.ws.close(code=code, message=reason.encode(), drain=False)
        except (TimeoutError, ConnectionError):
            if self._transport is not None:
                self._transport.abort()


class Hub:
    def __init__(self, max_sockets_per_user: int) -> None:
        self._max_per_user = max_sockets_per_user
        self._rooms: dict[ObjectId, set[Connection]] = {}
        self._by_user: dict[ObjectId, set[Connection]] = {}

    # --- connections ---------------------------------------------------------------------------

    def register(self, conn: Connection) -> bool:
        """Track a new socket; ``False`` when its user already holds the maximum."""
        sockets = self._by_user.setdefault(conn.user.id, set())
        if len(sockets) >= self._max_per_user:
            return False
        sockets.add(conn)
        return True

    def unregister(self, conn: Connection) -> None:
        for room in list(conn.rooms):
            self.leave(room, conn)
        sockets = self._by_user.get(conn.user.id)
        if sockets is not None:
            sockets.discard(conn)
            if not sockets:
                del self._by_user[conn.user.id]

    @property
    def connections(self) -> Iterable[Connection]:
        return [c for sockets in self._by_user.values() for c in sockets]

    def members(self, room: ObjectId) -> set[Connection]:
        return self._rooms.get(room, set())

    # --- rooms ---------------------------------------------------------------------------------

    def join(self, room: ObjectId, conn: Connection) -> None:
        self._rooms.setdefault(room, set()).add(conn)
        conn.rooms.add(room)
        conn.closed_rooms.discard(room)

    def leave(self, room: ObjectId, conn: Connection) -> None:
        conn.rooms.discard(room)
        members = self._rooms.get(room)
        if members is not None:
            members.discard(conn)
            if not members:
                del self._rooms[room]

    def publish(self, room: ObjectId, event: str, data: dict[str, Any], *, exclude: Any = None) -> None:
        members = self._rooms.get(room)
        if not members:
            return
        text = encode(event, data)  # once per room, not once per socket
        seq = data.get("seq")
        for conn in list(members):
            if conn is not exclude:
                conn.send_text(text, room, seq)

    def evict(self, room: ObjectId, user_id: ObjectId) -> None:
        for conn in list(self._rooms.get(room, ())):
            if conn.user.id == user_id:
                self.leave(room, conn)

    def close_room(self, room: ObjectId, event: str, data: dict[str, Any]) -> None:
        self.publish(room, event, data)
        for conn in list(self._rooms.get(room, ())):
            self.leave(room, conn)
            conn.closed_rooms.add(room)

    # --- shutdown ------------------------------------------------------------------------------

    async def close_all(self, code: int = WSCloseCode.GOING_AWAY, timeout: float = 5.0) -> None:
        """Every socket gets ``code`` after the events already queued for it (graceful shutdown)."""
        conns = list(self.connections)
        for conn in conns:
            conn.close_soon(code, "server shutdown")
        await asyncio.gather(*(conn.wait_closed(timeout) for conn in conns))
