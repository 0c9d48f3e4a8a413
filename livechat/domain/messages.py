"""The message path (DESIGN.md §4): validate → policy → persist → ack → publish.

Sends are queued to one writer task that persists them in batches, across conversations:
per batch a check of the conversations (is it still open, is the sender still a party: read
from the database only when another process may have changed them) and one ordered
``insert_many``. Only then is anyone told — the sender gets ``MESSAGE_SENT``, the
room ``NEW_MESSAGE`` — in seq order, so every receiver and the history see the same order.
The first message of a quiet period waits for no timer; while a batch is being written, the
next one gathers, so batches grow exactly when load does.

``seq`` is allocated here from a per-conversation counter (loaded from the database on first
use) and guarded by the unique index on ``(conversationId, seq)``: if another process wrote the
same seq, the counter is reloaded and the rest renumbered, so seqs stay contiguous and each
sender's order is kept.

Stored messages also move their conversations' facts: read receipts (the newest message and seq,
and the newest seq per side: README "Signals") and analytics (README "Analytics": how many messages,
when an agent first wrote). Those are recorded in memory before anyone is told, so everything this
process reads shows them at once, and written every ``facts_interval`` seconds, one update per
conversation however many messages it had meanwhile: an update of a conversation costs SecantusDB
4–8 times an insert (it rewrites every index entry), and one per batch saturated it (README
"Performance").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar

import attrs
from attrs import define, field, frozen
from bson import ObjectId

from livechat.domain import policy
from livechat.domain.events import MessageStored, SendRejected
from livechat.domain.models import ConversationStatus, Message, User, utcnow
from livechat.domain.policy import Action
from livechat.domain.ports import ConversationRepo, DuplicateOf, EventPublisher, Member, MessageRepo
from livechat.errors import ALREADY_CLOSED, BUSY, INTERNAL, UNAVAILABLE, DomainError

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_CONTENT_CHARS = 10_000
MAX_SEQ = 2**53  # the largest integer a JavaScript client holds exactly
# Conversations whose next seq is remembered; the least recently written are forgotten (and
# reloaded from the database if they are written again), so the map stays bounded.
SEQ_COUNTERS = 10_000
BUSY_LOG_EVERY = 10.0  # seconds between two warnings that sends are refused as busy
FACTS_PAUSE = 0.05  # seconds between two commands of a periodic write of the conversations' facts


@frozen
class Draft:
    """A validated send, waiting to be stored."""

    sender: User
    origin: Member  # the sending socket: gets the ack or the error, not the broadcast
    conversation_id: ObjectId
    content: str
    client_message_id: str | None


@define
class _Pending:
    draft: Draft
    message: Message | None = None


@define
class _Step:
    """Work the writer runs between two batches (see ``MessageService.exclusive``)."""

    fn: Callable[[], Awaitable[Any]]
    done: asyncio.Future

    async def __call__(self) -> None:
        try:
            self.done.set_result(await self.fn())
        except Exception as exc:
            self.done.set_exception(exc)


_STOP = object()


async def _nothing() -> None:
    return None


@define
class MessageService:
    conversations: ConversationRepo
    messages: MessageRepo
    events: EventPublisher
    max_batch: int = 512
    # Sends waiting for the writer; beyond it a send is refused at once with ``Server busy, retry``,
    # so what is accepted is stored within seconds instead of queueing without bound.
    max_queued: int = 2_000
    clock: Callable[[], datetime] = utcnow  # the messages' createdAt (tests control it)
    facts_interval: float = 2.0  # seconds between writes of the conversations' facts
    # Observers (the metrics): the size of each batch, and how many messages each insert stored.
    on_batch: Callable[[int], None] = lambda size: None
    on_stored: Callable[[int], None] = lambda count: None
    on_busy: Callable[[], None] = lambda: None  # a send refused because the queue was full
    shared: Callable[[], bool] = lambda: True  # whether other processes write conversations too
    _queue: asyncio.Queue[Draft | _Step | object] = field(init=False, factory=asyncio.Queue)
    _next_seq: OrderedDict[ObjectId, int] = field(init=False, factory=OrderedDict)
    _accepting: bool = field(init=False, default=True)
    _busy_logged_at: float = field(init=False, default=-math.inf)

    def submit(self, draft: Draft) -> None:
        """Queue a send; its outcome reaches ``draft.origin`` (ack/error) and the room."""
        if not self._accepting:
            self._reply_error(draft, UNAVAILABLE)
            return
        if self._queue.qsize() >= self.max_queued:
            self.on_busy()
            now = time.monotonic()
            if now - self._busy_logged_at >= BUSY_LOG_EVERY:
                self._busy_logged_at = now
                log.warning("message writer overloaded: %d sends queued, refusing new ones (Server busy, retry)",
                            self._queue.qsize())
            self._reply_error(draft, BUSY)
            return
        self._queue.put_nowait(draft)

    async def exclusive(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Run ``fn`` in the writer between two batches: every send queued before it is stored and
        delivered first, and every send after it is checked after it. Closing a conversation goes
        through here, so no message is stored or broadcast after its ``CONVERSATION_CLOSED``."""
        step = _Step(fn, asyncio.get_running_loop().create_future())
        self._queue.put_nowait(step)
        return await step.done

    async def stop_accepting(self) -> None:
        """Shutdown: refuse new sends (``Service unavailable``), finish the queued ones."""
        self._accepting = False
        await self.exclusive(_nothing)

    @contextlib.asynccontextmanager
    async def running(self, drain_timeout: float = 10.0) -> AsyncIterator[None]:
        """Run the writer and the facts' writes for the app's lifetime; on exit, what was queued is
        still stored and the facts of everything stored are written."""
        task = asyncio.create_task(self._run(), name="message-writer")
        flusher = asyncio.create_task(self._write_facts_periodically(), name="conversation-facts")
        try:
            yield
        finally:
            self._queue.put_nowait(_STOP)
            try:
                await asyncio.wait_for(task, drain_timeout)
            except TimeoutError:
                log.error("message writer did not drain within %.0fs", drain_timeout)
            flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flusher
            await self._write_facts()

    async def _write_facts_periodically(self) -> None:
        while True:
            await asyncio.sleep(self.facts_interval)
            # Paced: a burst of conversation updates (~4 ms each on SecantusDB) delays every send
            # behind it; spread out, they take turns with the inserts.
            await self._write_facts(pause=FACTS_PAUSE)

    async def _write_facts(self, pause: float = 0.0) -> None:
        """Facts never fail a send (the messages are what must be stored): kept for the next try."""
        try:
            await self.conversations.flush_facts(pause)
        except DomainError as exc:
            log.warning("conversation facts not written yet (%s)", exc.message)
        except Exception:
            log.exception("conversation facts not written yet")

    async def _run(self) -> None:
        while True:
            batch: list[Draft] = []
            control = None
            item = await self._queue.get()
            while True:
                if not isinstance(item, Draft):
                    control = item
                    break
                batch.append(item)
                if len(batch) >= self.max_batch or self._queue.empty():
                    break
                item = self._queue.get_nowait()
            if batch:
                self.on_batch(len(batch))
                await self._write_batch(batch)
            if control is _STOP:
                return
            if control is not None:
                await control()

    async def _write_batch(self, batch: list[Draft]) -> None:
        answered: set[int] = set()  # id() of drafts whose sender has its answer already
        try:
            await self._write(batch, answered)
        except DomainError as exc:  # database outage: nothing unstored was told, the senders hear why
            self._fail(batch, answered, exc.message)
        except Exception:
            log.exception("message batch of %d failed", len(batch))
            self._fail(batch, answered, INTERNAL)

    def _fail(self, batch: list[Draft], answered: set[int], message: str) -> None:
        """We do not know what a failed write stored: reload those counters, tell the senders."""
        for draft in batch:
            self._next_seq.pop(draft.conversation_id, None)
            if id(draft) not in answered:
                self._reply_error(draft, message)

    async def _write(self, batch: list[Draft], answered: set[int]) -> None:
        conv_ids = list({d.conversation_id for d in batch})
        # Alone, this process makes every change to conversations, so what it remembers of them is
        # current and a batch costs one database command (the insert); with others, read them.
        convs = await self.conversations.get_many(conv_ids, cached=not self.shared())
        accepted: list[_Pending] = []
        for draft in batch:
            conv = convs.get(draft.conversation_id)
            if conv is None or not policy.can(draft.sender, Action.SEND, conv):
                self._reply_error(draft, policy.NOT_ALLOWED)
                answered.add(id(draft))
            elif conv.status is ConversationStatus.CLOSED:
                self._reply_error(draft, ALREADY_CLOSED)
                answered.add(id(draft))
            else:
                accepted.append(_Pending(draft))
        if not accepted:
            return
        unknown = [c for c in conv_ids if c not in self._next_seq]
        if unknown:
            tops = await self.messages.top_seqs(unknown)
            for conv_id in unknown:
                self._next_seq[conv_id] = tops.get(conv_id, 0) + 1
        for conv_id in conv_ids:  # this batch's counters are the newest: never the ones forgotten
            self._next_seq.move_to_end(conv_id)
        while len(self._next_seq) > SEQ_COUNTERS:
            self._next_seq.popitem(last=False)
        for item in accepted:
            item.message = self._new_message(item.draft)
        await self._store(accepted, answered)

    async def _store(self, pending: list[_Pending], answered: set[int]) -> None:
        """Insert, record the conversations' facts of what was stored (before anyone hears of it, so
        a list read after ``NEW_MESSAGE`` shows it), deliver it, resolve duplicates."""
        while pending:
            stored, duplicate = await self.messages.insert_ordered([p.message for p in pending])
            self.on_stored(stored)
            self.conversations.record_messages([item.message for item in pending[:stored]])
            for item in pending[:stored]:
                self._deliver(item.draft, item.message, fresh=True)
                answered.add(id(item.draft))
            if duplicate is None:
                return
            failed, rest = pending[stored], pending[stored + 1:]
            conv_id = failed.draft.conversation_id
            if duplicate is DuplicateOf.CLIENT_MESSAGE:
                original = await self.messages.by_client_id(conv_id, failed.draft.sender.id,
                                                            failed.draft.client_message_id)
                if original is not None:
                    self._deliver(failed.draft, original, fresh=False)
                    answered.add(id(failed.draft))
                self._next_seq[conv_id] = failed.message.seq  # its seq was not used
                pending = rest
            else:  # another writer took this seq: start again from the stored top
                top = (await self.messages.top_seqs([conv_id])).get(conv_id, 0)
                self._next_seq[conv_id] = top + 1
                pending = [failed, *rest]
            for item in pending:  # renumber the conversation's remaining messages, order kept
                if item.draft.conversation_id == conv_id:
                    item.message = attrs.evolve(item.message, seq=self._take_seq(conv_id))

    def _new_message(self, draft: Draft) -> Message:
        return Message(id=ObjectId(), conversation_id=draft.conversation_id, seq=self._take_seq(draft.conversation_id),
                       sender_id=draft.sender.id, sender_role=draft.sender.role, content=draft.content,
                       created_at=self.clock(), client_message_id=draft.client_message_id)

    def _take_seq(self, conv_id: ObjectId) -> int:
        seq = self._next_seq[conv_id]
        self._next_seq[conv_id] = seq + 1
        return seq

    def observe(self, message: Message) -> None:
        """Another process stored ``message``: skip its seq rather than collide with it (and
        expect that process to write its facts)."""
        self.conversations.observe_message(message)
        known = self._next_seq.get(message.conversation_id)
        if known is not None and known <= message.seq:
            self._next_seq[message.conversation_id] = message.seq + 1

    def _deliver(self, draft: Draft, message: Message, *, fresh: bool) -> None:
        self.events.publish(MessageStored(message, origin=draft.origin, fresh=fresh))

    def _reply_error(self, draft: Draft, reason: str) -> None:
        self.events.publish(SendRejected(draft.origin, reason, draft.client_message_id))

