"""The pushed inbox (README "The support desk"): who subscribed on this process, and what
each of them is told when a conversation it may see changes, an agent's presence changes, or a
waiting candidate's place in the queue moves.

Visibility is the policy of ``GET /conversations`` (``policy.visible``). Subscribers are indexed by
their own user id (and admins apart), so an event costs a few dictionary lookups whatever the
number of subscribers. Updates are built and sent by one worker task, in the order they happened.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import attrs
from bson import ObjectId

from livechat.domain import policy
from livechat.domain.events import PresenceChanged
from livechat.domain.models import Conversation, ConversationStatus, Message, ReadMark, Role, unread, with_message
from livechat.domain.ports import ConversationRepo, ReadRepo, UserRepo
from livechat.errors import DomainError
from livechat.realtime import protocol
from livechat.realtime.hub import Connection

log = logging.getLogger(__name__)

CACHE_SIZE = 10_000
QUEUE_LIMIT = 500  # positions beyond this are not announced


class LRU(collections.OrderedDict):
    """A dict that forgets its least recently written keys beyond ``size``."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def put(self, key: Any, value: Any) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.size:
            self.popitem(last=False)


class Inbox:
    def __init__(self, conversations: ConversationRepo, users: UserRepo, reads: ReadRepo,
                 is_auto: Callable[[ObjectId], bool] = lambda supervisor_id: False) -> None:
        self._conversations = conversations
        self._users = users
        self._reads = reads
        # (conversation, user) → read watermark, so a message's update costs no read per viewer; kept
        # current by ``read_advanced`` (this process's marks and, through the feed, everyone else's).
        self._marks: LRU = LRU(CACHE_SIZE)
        self._is_auto = is_auto
        self._admins: set[Connection] = set()
        self._by_user: dict[ObjectId, set[Connection]] = {}
        self._shown: dict[Connection, set[ObjectId]] = {}  # agents: what each was shown (for REMOVED)
        self._convs: LRU = LRU(CACHE_SIZE)
        self._names: LRU = LRU(CACHE_SIZE)
        # waiting candidates' sockets per supervisor → conversation → sockets, and the position told
        self._waiting: dict[ObjectId, dict[ObjectId, set[Connection]]] = {}
        self._told: dict[tuple[Connection, ObjectId], int] = {}
        self._queue: asyncio.Queue = asyncio.Queue()
        self._worker: asyncio.Task | None = None
        self._recount: set[ObjectId] = set()
        self._pending: dict[Connection, list[str]] = {}

    # --- subscriptions ----------------------------------------------------------------------------

    def subscribe(self, conn: Connection) -> None:
        """Start hearing updates; they wait (in order) until ``ready`` has sent the first page."""
        self._pending.setdefault(conn, [])
        if conn.user.role is Role.ADMIN:
            self._admins.add(conn)
        else:
            self._by_user.setdefault(conn.user.id, set()).add(conn)
        if conn.user.role is Role.AGENT:
            self._shown.setdefault(conn, set())

    def ready(self, conn: Connection, first_page: list[Conversation]) -> None:
        if conn in self._shown:
            self._shown[conn] |= {c.id for c in first_page}
        for conv in first_page:
            self._convs.put(conv.id, conv)
            self.follow_queue(conn, conv)
        for frame in self._pending.pop(conn, []):
            conn.send(frame)

    def _send(self, conn: Connection, frame: str) -> None:
        pending = self._pending.get(conn)
        if pending is not None:
            pending.append(frame)
        else:
            conn.send(frame)

    def unsubscribe(self, conn: Connection) -> None:
        self._admins.discard(conn)
        subs = self._by_user.get(conn.user.id)
        if subs is not None:
            subs.discard(conn)
            if not subs:
                del self._by_user[conn.user.id]
        self._shown.pop(conn, None)
        self._pending.pop(conn, None)
        for rooms in self._waiting.values():
            for conns in rooms.values():
                conns.discard(conn)
        for key in [k for k in self._told if k[0] is conn]:
            del self._told[key]

    def follow_queue(self, conn: Connection, conv: Conversation) -> None:
        """A candidate's socket that waits for an agent hears its place in an auto team's queue."""
        if conn.user.role is not Role.CANDIDATE or conv.candidate_id != conn.user.id:
            return
        if conv.status is ConversationStatus.OPEN and conv.agent_id is None and self._is_auto(conv.supervisor_id):
            self._waiting.setdefault(conv.supervisor_id, {}).setdefault(conv.id, set()).add(conn)
            self._recount_soon(conv.supervisor_id)

    def _audience(self, conv: Conversation) -> set[Connection]:
        found = set(self._admins)
        for user_id in (conv.supervisor_id, conv.agent_id, conv.candidate_id):
            found |= self._by_user.get(user_id, set())
        return found

    # --- what happened ------------------------------------------------------------------------------

    def conversation_changed(self, conv: Conversation) -> None:
        cached = self._convs.get(conv.id)
        if cached is not None and cached.last_seq > conv.last_seq:  # a message came after this copy was read
            conv = attrs.evolve(conv, last_seq=cached.last_seq, last_message=cached.last_message,
                                last_candidate_seq=cached.last_candidate_seq, last_staff_seq=cached.last_staff_seq)
        self._convs.put(conv.id, conv)
        self._enqueue(("changed", conv))
        if conv.supervisor_id in self._waiting or self._is_auto(conv.supervisor_id):
            self._recount_soon(conv.supervisor_id)

    def message_stored(self, message: Message) -> None:
        if self._admins or self._by_user:
            self._enqueue(("message", message))

    def read_advanced(self, mark: ReadMark) -> None:
        """Remember the new watermark; the reader's own inbox sockets (its other tabs) get the item
        with the new ``unread``."""
        key = (mark.conversation_id, mark.user_id)
        if self._marks.get(key, -1) < mark.seq:
            self._marks.put(key, mark.seq)
        if mark.user_id in self._by_user or self._admins:
            self._enqueue(("read", mark))

    def presence_changed(self, event: PresenceChanged) -> None:
        frame = protocol.presence(event.agent_id, event.status, event.since)
        audience = set(self._admins) | self._by_user.get(event.supervisor_id, set())
        for conn in audience:
            if policy.sees_agent(conn.user, event.supervisor_id):
                self._send(conn, frame)

    def _enqueue(self, item: tuple) -> None:
        if self._worker is None or self._worker.done():
            self._worker = asyncio.get_running_loop().create_task(self._work(), name="inbox")
        self._queue.put_nowait(item)

    async def _work(self) -> None:
        while True:
            kind, payload = await self._queue.get()
            try:
                if kind == "changed":
                    await self._push(payload, None)
                elif kind == "message":
                    conv = await self._cached(payload.conversation_id)
                    if conv is None:
                        continue
                    conv = with_message(conv, payload)
                    self._convs.put(conv.id, conv)
                    await self._push(conv, payload)
                elif kind == "read":
                    conv = await self._cached(payload.conversation_id)
                    if conv is not None:
                        await self._push(conv, None, only=payload.user_id)
                elif kind == "recount":
                    await self._announce_positions(payload)
            except DomainError as exc:
                log.warning("inbox update skipped (%s)", exc.message)
            except Exception:
                log.exception("inbox update failed")

    async def _cached(self, conv_id: ObjectId) -> Conversation | None:
        conv = self._convs.get(conv_id)
        if conv is None:
            conv = await self._conversations.get(conv_id)
            if conv is not None:
                self._convs.put(conv.id, conv)
        return conv

    async def _watermarks(self, conv: Conversation, user_ids: set[ObjectId]) -> dict[ObjectId, int]:
        missing = [u for u in user_ids if (conv.id, u) not in self._marks]
        if missing:
            found = await self._reads.of_conversation(conv.id, missing)
            for user_id in missing:
                self._marks.put((conv.id, user_id), max(found.get(user_id, 0), self._marks.get((conv.id, user_id), 0)))
        return {u: self._marks.get((conv.id, u), 0) for u in user_ids}

    async def _push(self, conv: Conversation, message: Message | None, only: ObjectId | None = None) -> None:
        """Each viewer gets the item with its own ``unread``; ``only``: just that user's sockets."""
        audience = self._audience(conv)
        if only is not None:
            audience = {c for c in audience if c.user.id == only}
        removed = [c for c, shown in self._shown.items() if conv.id in shown and not policy.visible(c.user, conv)
                   and (only is None or c.user.id == only)]
        if not audience and not removed:
            return
        for conn in removed:
            self._shown[conn].discard(conv.id)
            self._send(conn, protocol.conversation_removed(conv.id))
        viewers = [c for c in audience if policy.visible(c.user, conv)]
        if not viewers:
            return
        names = await self._names_of(conv)
        marks = await self._watermarks(conv, {c.user.id for c in viewers})
        frames: dict[ObjectId, str] = {}
        for conn in viewers:
            if conn.user.id not in frames:
                frames[conn.user.id] = protocol.conversation_updated(conv, names, unread(conv, conn.user,
                                                                                         marks[conn.user.id]))
            if conn in self._shown:
                self._shown[conn].add(conv.id)
            self._send(conn, frames[conn.user.id])
            self.follow_queue(conn, conv)

    async def _names_of(self, conv: Conversation) -> dict[ObjectId, str]:
        wanted = [i for i in (conv.candidate_id, conv.agent_id) if i is not None]
        missing = [i for i in wanted if i not in self._names]
        if missing:
            for user_id, name in (await self._users.names(missing)).items():
                self._names.put(user_id, name)
        return {i: self._names[i] for i in wanted if i in self._names}

    # --- queue positions ----------------------------------------------------------------------------

    def _recount_soon(self, supervisor_id: ObjectId) -> None:
        if supervisor_id in self._waiting and supervisor_id not in self._recount:
            self._recount.add(supervisor_id)
            self._enqueue(("recount", supervisor_id))

    async def _announce_positions(self, supervisor_id: ObjectId) -> None:
        self._recount.discard(supervisor_id)
        rooms = self._waiting.get(supervisor_id)
        if not rooms:
            self._waiting.pop(supervisor_id, None)
            return
        queue = [c.id for c in await self._conversations.waiting(supervisor_id, QUEUE_LIMIT)]
        position = {conv_id: i + 1 for i, conv_id in enumerate(queue)}
        for conv_id, conns in list(rooms.items()):
            where = position.get(conv_id)
            for conn in list(conns):
                if where is None:
                    self._told.pop((conn, conv_id), None)
                elif self._told.get((conn, conv_id)) != where:
                    self._told[(conn, conv_id)] = where
                    self._send(conn, protocol.queue_position(conv_id, where))
            if where is None or not conns:
                del rooms[conv_id]
        if not rooms:
            del self._waiting[supervisor_id]

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
