"""Domain events → frames for this process's sockets (the ``EventPublisher`` the services see).

Events from this process's services arrive through ``publish``, at once: a sender's own process
adds no latency. Events written by other processes arrive through ``apply_remote`` from the change
feed (``realtime/feed.py``). Both land in the same rooms, which deliver each message seq once and
in order (``Hub.deliver``). A message that arrives ahead of a missing seq waits; if the missing one
has not come through the feed within ``GAP_WAIT`` it is read from the database — so a socket never
misses a message, whichever process stored it and whatever the feed did meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import timedelta

from bson import ObjectId

from livechat.domain import policy
from livechat.domain.events import (ConversationChanged, ConversationClosed, DomainEvent, MemberEvicted, MessageStored,
                                    NoteStored, PresenceChanged, ReadAdvanced, SendRejected)
from livechat.domain.models import (Conversation, ConversationStatus, Message, Note, ReadMark, Role, TypingSignal,
                                    User, utcnow)
from livechat.domain.policy import Action
from livechat.domain.ports import ConversationRepo, MessageRepo
from livechat.errors import DomainError
from livechat.realtime import protocol
from livechat.realtime.hub import Connection, Hub
from livechat.realtime.inbox import LRU, Inbox

log = logging.getLogger(__name__)

GAP_WAIT = 0.25  # seconds a message waits for an earlier one from the feed before we read it
RETRY_MAX = 5.0
FILL_PAGE = 500
TYPING_FRESH = timedelta(seconds=5)  # a typing signal from another process older than this is dropped
VERSIONS_KEPT = 10_000  # conversations whose newest version is remembered (older copies are dropped)


def is_staff(user: User) -> bool:
    return user.role is not Role.CANDIDATE


class Fanout:
    def __init__(self, hub: Hub, messages: MessageRepo, conversations: ConversationRepo, inbox: Inbox, *,
                 relay_typing: Callable[[TypingSignal], None] = lambda signal: None) -> None:
        self._hub = hub
        self._relay = relay_typing  # to the other processes (realtime/typing_relay.py)
        self._messages = messages
        self._conversations = conversations
        self.inbox = inbox
        self._settling: dict[ObjectId, asyncio.Task] = {}
        self._versions = LRU(VERSIONS_KEPT)  # conversation id → the newest version seen

    # --- from this process's services -----------------------------------------------------------

    def publish(self, event: DomainEvent) -> None:
        match event:
            case MessageStored(message=message, origin=origin, fresh=fresh):
                if origin is not None and message.client_message_id is not None:
                    origin.send(protocol.message_sent(message))
                if fresh:  # a resend is acknowledged again but never delivered again
                    self._deliver(message, exclude=origin)
                    self.inbox.message_stored(message)
            case SendRejected(origin=origin, reason=reason, client_message_id=client_message_id):
                origin.send(protocol.error(reason, client_message_id))
            case MemberEvicted(conversation_id=room, user_id=user_id):
                self._hub.evict(room, user_id)
            case ConversationClosed(conversation=conv) if self._newest(conv):
                self._close(conv.id)
                self.inbox.conversation_changed(conv)
            case ConversationChanged(conversation=conv) if self._newest(conv):
                self._recheck(conv)
                self.inbox.conversation_changed(conv)
            case PresenceChanged():
                self.inbox.presence_changed(event)
            case ReadAdvanced(mark=mark, origin=origin):
                self._read(mark, exclude=origin)
            case NoteStored(note=note, origin=origin, fresh=fresh):
                if origin is not None:
                    origin.send(protocol.note_sent(note))
                if fresh:
                    self._to_staff(note.conversation_id, protocol.new_note(note), exclude=origin)

    # --- from other processes (the change feed) -----------------------------------------------

    def apply_remote(self, change: Message | Conversation | ReadMark | Note | TypingSignal) -> None:
        if isinstance(change, TypingSignal):
            if utcnow() - change.at <= TYPING_FRESH:  # the feed may be behind: old typing is noise
                self._typing_to(change)
            return
        if isinstance(change, ReadMark):
            self._read(change)
            return
        if isinstance(change, Note):
            self._to_staff(change.conversation_id, protocol.new_note(change))
            return
        if isinstance(change, Message):
            self._deliver(change)
            self.inbox.message_stored(change)
            return
        if not self._newest(change):
            return
        if change.status is ConversationStatus.CLOSED:
            self._close(change.id)
        else:
            self._recheck(change)
        self.inbox.conversation_changed(change)

    def _newest(self, conv: Conversation) -> bool:
        """Whether ``conv`` is at least as new as any copy seen before (and remember it)."""
        known = self._versions.get(conv.id)
        if known is not None and conv.version < known:
            return False
        self._versions.put(conv.id, conv.version)
        return True

    def catch_up(self) -> None:
        """The feed lost its place (its history is gone): read every room's missed messages and
        its conversation again, so no socket misses what happened meanwhile."""
        for room in self._hub.rooms():
            self._settle_soon(room, 0, catch_up=True)

    # --- rooms -------------------------------------------------------------------------------------

    def join(self, room: ObjectId, conn: Connection) -> None:
        """Add a socket to a room; a room new on this process learns where its stream starts."""
        if self._hub.join(room, conn):
            self._settle_soon(room, 0)

    def prime(self, room: ObjectId, top: int) -> None:
        if self._hub.prime(room, top):
            self._settle_soon(room, GAP_WAIT)

    def _deliver(self, message: Message, exclude: Connection | None = None) -> None:
        room = message.conversation_id
        if self._hub.room(room) is None:
            return  # nobody here is in it
        if self._hub.deliver(room, message.seq, protocol.new_message(message), exclude=exclude):
            self._settle_soon(room, GAP_WAIT)

    def _close(self, room: ObjectId) -> None:
        found = self._hub.room(room)
        if found is None:
            return
        if found.ahead or found.top is None:  # deliver every message stored before the close first
            self._settle_soon(room, 0, then_close=True)
        else:
            self._hub.close_room(room, protocol.conversation_closed(room))

    def _recheck(self, conv: Conversation) -> None:
        """Whoever may no longer be in the room (a reassigned agent) leaves it."""
        if conv.status is ConversationStatus.CLOSED:
            self._close(conv.id)
            return
        for conn in list(self._hub.members(conv.id)):
            if not policy.can(conn.user, Action.WATCH if conv.id in conn.watching else Action.JOIN, conv):
                self._hub.leave(conv.id, conn)

    # --- signals (README "Signals"): not part of the seq stream, sent as they come ----------------

    def typing(self, room: ObjectId, origin: Connection) -> None:
        """This process's other sockets of the room at once; the other processes' through the relay."""
        signal = TypingSignal(room, origin.user.id, origin.user.role)
        self._typing_to(signal, exclude=origin)
        self._relay(signal)

    def _typing_to(self, signal: TypingSignal, exclude: Connection | None = None) -> None:
        frame = protocol.typing(signal)
        for conn in list(self._hub.members(signal.conversation_id)):
            if conn is not exclude:
                conn.send(frame)

    def _read(self, mark: ReadMark, exclude: Connection | None = None) -> None:
        """The room's other sockets; a watcher's read goes to staff only (a watcher is invisible to
        the candidate). The reader's inbox learns its new watermark."""
        self.inbox.read_advanced(mark)
        frame = protocol.read(mark)
        if mark.role in (Role.ADMIN, Role.SUPERVISOR):
            self._to_staff(mark.conversation_id, frame, exclude=exclude)
            return
        for conn in list(self._hub.members(mark.conversation_id)):
            if conn is not exclude:
                conn.send(frame)

    def _to_staff(self, room: ObjectId, frame: str, exclude: Connection | None = None) -> None:
        """The room's staff sockets — the only way a note leaves this process's fanout: a candidate's
        socket is skipped here, whatever else is in the room."""
        for conn in list(self._hub.members(room)):
            if conn is not exclude and is_staff(conn.user):
                conn.send(frame)

    # --- filling gaps from the database ----------------------------------------------------------

    def _settle_soon(self, room: ObjectId, delay: float, *, then_close: bool = False, catch_up: bool = False) -> None:
        running = self._settling.get(room)
        if running is not None and not then_close and not catch_up:
            return
        task = asyncio.get_running_loop().create_task(
            self._settle(room, delay, previous=running, then_close=then_close, catch_up=catch_up),
            name=f"settle-{room}")
        self._settling[room] = task
        task.add_done_callback(lambda t: self._settling.pop(room, None) if self._settling.get(room) is t else None)

    async def _settle(self, room: ObjectId, delay: float, *, previous: asyncio.Task | None,
                      then_close: bool, catch_up: bool) -> None:
        if previous is not None:
            with contextlib.suppress(Exception):
                await previous
        await asyncio.sleep(delay)
        pause = GAP_WAIT
        while self._hub.room(room) is not None:
            try:
                await self._fill(room, catch_up=catch_up)
                break
            except DomainError as exc:  # the database is away: try again, nothing is dropped
                log.warning("cannot read missed messages of room %s (%s); retrying in %.1fs", room, exc.message, pause)
                await asyncio.sleep(pause)
                pause = min(pause * 2, RETRY_MAX)
        if then_close and self._hub.room(room) is not None:
            self._hub.close_room(room, protocol.conversation_closed(room))

    async def _fill(self, room: ObjectId, *, catch_up: bool) -> None:
        found = self._hub.room(room)
        if found is not None and found.top is None:
            tops = await self._messages.top_seqs([room])
            self._hub.prime(room, tops.get(room, 0))
        while (found := self._hub.room(room)) is not None:
            gap = found.missing()
            if gap is None and not catch_up:
                return
            after, limit = (found.top, FILL_PAGE) if gap is None else (gap[0], min(FILL_PAGE, gap[1] - gap[0] - 1))
            page = await self._messages.page(room, after_seq=after, limit=limit)
            for message in page:
                self._hub.deliver(room, message.seq, protocol.new_message(message))
            if len(page) < limit:
                if gap is None:
                    break
                self._hub.skip_to(room, gap[1])  # the database has nothing more before it
        if catch_up and (conv := await self._conversations.get(room)) is not None:
            self._recheck(conv)

    async def stop(self) -> None:
        tasks = list(self._settling.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
