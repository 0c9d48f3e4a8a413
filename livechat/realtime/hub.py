"""This process's sockets: rooms, per-room message order, and per-socket outboxes.

A broadcast takes a frame already encoded once (``realtime/protocol.py``) and only enqueues it on
each member's outbox; one writer task per socket drains it in order. A client that stops reading
is disconnected (1013) — the room never slows down for it: its backlog stayed above
``outbox_size`` for longer than the send timeout, or reached ``HARD_LIMIT_FACTOR`` times it (the
memory bound). A reader that keeps up survives a burst larger than its outbox.

Messages reach a room from this process's writer and, with several processes, from the change
feed; each room delivers every ``seq`` once and in order, holding a message that arrives ahead of
a missing one until the gap is filled (``realtime/fanout.py`` fills it from the database).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable

from aiohttp import web
from bson import ObjectId

from livechat.domain.models import User
from livechat.metrics import Metrics
from livechat.realtime import protocol

log = logging.getLogger(__name__)

CLOSE_TIMEOUT = 2.0
HARD_LIMIT_FACTOR = 8
REPLAY_PAUSE = 0.005


class _Close:
    def __init__(self, code: int, reason: str) -> None:
        self.code, self.reason = code, reason


class Connection:
    """One authenticated WebSocket: who it is, the rooms it is in, and its outbox."""

    def __init__(self, ws: web.WebSocketResponse, user: User, *, outbox_size: int, send_timeout: float,
                 request_id: str, transport: asyncio.Transport | None = None,
                 metrics: Metrics | None = None) -> None:
        self.ws = ws
        self._metrics = metrics
        self.user = user
        self.request_id = request_id
        self.rooms: set[ObjectId] = set()
        self.closed_rooms: set[ObjectId] = set()  # closed while we were in them: SEND says "already closed"
        self.watching: set[ObjectId] = set()  # rooms this (staff) socket only watches: read-only
        self.dropped = False
        self._outbox: asyncio.Queue[str | _Close] = asyncio.Queue()  # bounded by _is_slow()
        self._soft_limit = outbox_size
        self._hard_limit = outbox_size * HARD_LIMIT_FACTOR
        self._backlog_since: float | None = None
        self._send_timeout = send_timeout
        self._transport = transport
        # A resuming JOIN holds live messages of that room here until the replay is out.
        self._held: dict[ObjectId, list[tuple[int, str]]] = {}
        self._sent_seq: dict[ObjectId, int] = {}  # highest message seq sent, per room
        self._writer = asyncio.create_task(self._write_loop(), name=f"ws-writer-{request_id}")

    # --- what goes out ---------------------------------------------------------------------------

    def send(self, frame: str, room: ObjectId | None = None, seq: int | None = None) -> None:
        """Queue a frame; a message (``room`` and ``seq``) goes out once, in order, after any replay."""
        if self.dropped or not self._in_order(frame, room, seq):
            return
        if self._is_slow():
            log.warning("dropping slow websocket client (user %s, request %s)", self.user.id, self.request_id)
            if self._metrics is not None:
                self._metrics.slow_consumer_drops.inc()
            self.close(protocol.CLOSE_TRY_LATER, "slow consumer", now=True)
            return
        self._outbox.put_nowait(frame)

    async def replay(self, frame: str, room: ObjectId, seq: int) -> None:
        """Queue a missed message once the backlog is below the outbox size: the reader sets the
        pace of a replay, however long the gap."""
        while not self.dropped and self._outbox.qsize() >= self._soft_limit:
            await asyncio.sleep(REPLAY_PAUSE)
        if not self.dropped and self._in_order(frame, room, seq, replay=True):
            self._outbox.put_nowait(frame)

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

    def _in_order(self, frame: str, room: ObjectId | None, seq: int | None, replay: bool = False) -> bool:
        """Per room, each seq goes out once and in order; live messages wait while a replay runs."""
        if room is None or seq is None:
            return True
        if not replay and room in self._held:
            self._held[room].append((seq, frame))
            return False
        if seq <= self._sent_seq.get(room, 0):
            return False
        self._sent_seq[room] = seq
        return True

    # --- resume (B.3) ------------------------------------------------------------------------------

    def hold(self, room: ObjectId, after_seq: int) -> None:
        """Start a resume: the client has seen ``after_seq``; live messages wait for the replay."""
        self._held[room] = []
        self._sent_seq[room] = after_seq

    def rewind(self, room: ObjectId, seq: int) -> None:
        """The client claimed more than exists: live messages continue after the real top."""
        self._sent_seq[room] = min(self._sent_seq.get(room, 0), seq)

    def release(self, room: ObjectId) -> None:
        """End a replay: send the live messages that arrived meanwhile and were not replayed."""
        for seq, frame in self._held.pop(room, []):
            self.send(frame, room, seq)

    # --- closing -----------------------------------------------------------------------------------

    def close(self, code: int, reason: str, *, now: bool = False) -> None:
        """Close the socket: after what is already queued (graceful), or ``now`` without waiting
        for the peer (a slow or misbehaving client)."""
        if now:
            self.dropped = True
            self._writer.cancel()
            asyncio.get_running_loop().create_task(self._send_close_frame(code, reason))
        elif not self.dropped:
            self.dropped = True
            self._outbox.put_nowait(_Close(code, reason))

    async def wait_closed(self, timeout: float) -> None:
        """Wait (at most ``timeout``) for the writer to finish; our own cancellation still stops us."""
        await asyncio.wait({self._writer}, timeout=timeout)

    async def finish(self) -> None:
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
                    await self._send_close_frame(item.code, item.reason)
                    return
                async with asyncio.timeout(self._send_timeout):
                    await self.ws.send_str(item)
        except (TimeoutError, ConnectionError) as exc:
            log.info("websocket write failed (%s); closing (request %s)", type(exc).__name__, self.request_id)
            self.dropped = True
            await self._send_close_frame(protocol.CLOSE_GOING_AWAY, "write failed")

    async def _send_close_frame(self, code: int, reason: str) -> None:
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await self.ws.close(code=code, message=reason.encode(), drain=False)
        except (TimeoutError, ConnectionError):
            if self._transport is not None:
                self._transport.abort()


class Room:
    """The sockets of one conversation on this process, and how far its message stream got."""

    def __init__(self) -> None:
        self.members: set[Connection] = set()
        self.top: int | None = None  # highest seq delivered here; None until primed from the database
        self.ahead: dict[int, tuple[str, Connection | None]] = {}  # arrived before a missing seq
        self.opened_at = time.time()

    def missing(self) -> tuple[int, int] | None:
        """``(after, before)``: the seqs strictly between are awaited, or None when nothing is."""
        if not self.ahead or self.top is None:
            return None
        return self.top, min(self.ahead)


class Hub:
    def __init__(self, max_sockets_per_user: int, metrics: Metrics | None = None) -> None:
        self.metrics = metrics or Metrics()
        self._delivered = self.metrics.messages_delivered
        self.metrics.open_sockets.set_function(lambda: self.count)
        self._max_per_user = max_sockets_per_user
        self._rooms: dict[ObjectId, Room] = {}
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
    def count(self) -> int:
        return sum(len(sockets) for sockets in self._by_user.values())

    @property
    def connections(self) -> Iterable[Connection]:
        return [c for sockets in self._by_user.values() for c in sockets]

    def revoke(self, user_id: ObjectId, token_version: int) -> int:
        """Close (4401) the user's sockets opened with a token older than ``token_version``; how many."""
        closing = [c for c in self._by_user.get(user_id, ()) if c.user.token_version < token_version]
        for conn in closing:
            conn.send(protocol.error(protocol.UNAUTHORIZED))
            conn.close(protocol.CLOSE_UNAUTHORIZED, "token revoked")
        return len(closing)

    def members(self, room: ObjectId) -> set[Connection]:
        found = self._rooms.get(room)
        return found.members if found is not None else set()

    def rooms(self) -> dict[ObjectId, Room]:
        return dict(self._rooms)

    def room(self, room: ObjectId) -> Room | None:
        return self._rooms.get(room)

    # --- rooms ---------------------------------------------------------------------------------

    def join(self, room: ObjectId, conn: Connection) -> bool:
        """Add ``conn`` to the room; ``True`` when the room is new here (and needs priming)."""
        found = self._rooms.get(room)
        created = found is None
        if created:
            found = self._rooms[room] = Room()
        found.members.add(conn)
        conn.rooms.add(room)
        conn.closed_rooms.discard(room)
        return created

    def prime(self, room: ObjectId, top: int) -> bool:
        """A new room's stream starts after ``top`` (the stored top when it opened); ``True``
        while messages that came meanwhile still wait for an earlier one."""
        found = self._rooms.get(room)
        if found is None:
            return False
        if found.top is None:
            found.top = top
            return self._drain(found, room)
        return bool(found.ahead)

    def leave(self, room: ObjectId, conn: Connection) -> None:
        conn.rooms.discard(room)
        conn.watching.discard(room)
        found = self._rooms.get(room)
        if found is not None:
            found.members.discard(conn)
            if not found.members:
                del self._rooms[room]

    def deliver(self, room: ObjectId, seq: int, frame: str, *, exclude: Connection | None = None) -> bool:
        """Message ``seq`` to every member but ``exclude``, in seq order; ``True`` while a message
        waits for an earlier seq that has not arrived (the caller fetches it)."""
        found = self._rooms.get(room)
        if found is None:
            return False
        if found.top is None:  # not primed yet: wait until we know where the room's stream starts
            found.ahead[seq] = (frame, exclude)
            return False
        if seq <= found.top:
            return False  # delivered already (a gap filled from the database, or a resync)
        if seq > found.top + 1:
            found.ahead[seq] = (frame, exclude)
            return True
        self._broadcast(found, room, seq, frame, exclude)
        return self._drain(found, room)

    def skip_to(self, room: ObjectId, seq: int) -> None:
        """The database holds nothing before ``seq`` that is still awaited: go on from there."""
        found = self._rooms.get(room)
        if found is not None and found.top is not None and found.top < seq - 1:
            found.top = seq - 1
            self._drain(found, room)

    def _drain(self, found: Room, room: ObjectId) -> bool:
        for seq in [s for s in found.ahead if s <= found.top]:  # older than where the room starts
            del found.ahead[seq]
        while found.top + 1 in found.ahead:
            frame, exclude = found.ahead.pop(found.top + 1)
            self._broadcast(found, room, found.top + 1, frame, exclude)
        return bool(found.ahead)

    def _broadcast(self, found: Room, room: ObjectId, seq: int, frame: str, exclude: Connection | None) -> None:
        found.top = seq
        sent = 0
        for conn in list(found.members):
            if conn is not exclude:
                conn.send(frame, room, seq)
                sent += 1
        if sent:
            self._delivered.inc(sent)

    def evict(self, room: ObjectId, user_id: ObjectId) -> None:
        for conn in list(self.members(room)):
            if conn.user.id == user_id:
                self.leave(room, conn)

    def close_room(self, room: ObjectId, frame: str) -> None:
        """Tell everyone in the room, then empty it."""
        for conn in list(self.members(room)):
            conn.send(frame)
            self.leave(room, conn)
            conn.closed_rooms.add(room)

    # --- shutdown ------------------------------------------------------------------------------

    async def close_all(self, code: int = protocol.CLOSE_GOING_AWAY, timeout: float = 5.0) -> None:
        """Every socket gets ``code`` after the events already queued for it (graceful shutdown)."""
        conns = list(self.connections)
        for conn in conns:
            conn.close(code, "server shutdown")
        await asyncio.gather(*(conn.wait_closed(timeout) for conn in conns))
