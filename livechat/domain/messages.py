"""The message path (DESIGN.md §4): validate → policy → persist → ack → publish.

Sends are queued to one writer task that persists them in batches, across conversations:
per batch one read of the conversations (is it still open, is the sender still a party) and
one ordered ``insert_many``. Only then is anyone told — the sender gets ``MESSAGE_SENT``, the
room ``NEW_MESSAGE`` — in seq order, so every receiver and the history see the same order.
The first message of a quiet period waits for no timer; while a batch is being written, the
next one gathers, so batches grow exactly when load does.

``seq`` is allocated here from a per-conversation counter (loaded from the database on first
use) and guarded by the unique index on ``(conversationId, seq)``: if another process wrote the
same seq, the counter is reloaded and the rest renumbered, so seqs stay contiguous and each
sender's order is kept.

Each batch also keeps the conversations' read-receipt facts (the newest message and seq, and the
newest seq per side: README "Signals") and analytics facts (README "Analytics"): how many messages
each has and when an agent first wrote in it. That write goes to the database alongside the
batch's insert (in parallel, so no round trip is added in series) and lands before anyone is
told; conversations whose first agent message is already recorded (the batch's read of the
conversations says so) get only their counter.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar

import attrs
from attrs import define, field, frozen
from bson import ObjectId

from livechat.domain import policy
from livechat.domain.events import MessageStored, SendRejected
from livechat.domain.models import Conversation, ConversationStatus, Message, Role, User, side_of, utcnow
from livechat.domain.policy import Action
from livechat.domain.ports import ConversationRepo, DuplicateOf, EventPublisher, Latest, Member, MessageRepo
from livechat.errors import ALREADY_CLOSED, INTERNAL, UNAVAILABLE, DomainError

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_CONTENT_CHARS = 10_000
MAX_SEQ = 2**53  # the largest integer a JavaScript client holds exactly
# Conversations whose next seq is remembered; the least recently written are forgotten (and
# reloaded from the database if they are written again), so the map stays bounded.
SEQ_COUNTERS = 10_000


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
    max_queued: int = 50_000
    clock: Callable[[], datetime] = utcnow  # the messages' createdAt (tests control it)
    # Observers (the metrics): the size of each batch, and how many messages each insert stored.
    on_batch: Callable[[int], None] = lambda size: None
    on_stored: Callable[[int], None] = lambda count: None
    _queue: asyncio.Queue[Draft | _Step | object] = field(init=False, factory=asyncio.Queue)
    _next_seq: OrderedDict[ObjectId, int] = field(init=False, factory=OrderedDict)
    _accepting: bool = field(init=False, default=True)

    def submit(self, draft: Draft) -> None:
        """Queue a send; its outcome reaches ``draft.origin`` (ack/error) and the room."""
        if not self._accepting or self._queue.qsize() >= self.max_queued:
            self._reply_error(draft, UNAVAILABLE)
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
        """Run the writer for the app's lifetime; on exit, what was queued is still written."""
        task = asyncio.create_task(self._run(), name="message-writer")
        try:
            yield
        finally:
            self._queue.put_nowait(_STOP)
            try:
                await asyncio.wait_for(task, drain_timeout)
            except TimeoutError:
                log.error("message writer did not drain within %.0fs", drain_timeout)

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
        convs = await self.conversations.get_many(conv_ids)
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
        renumbered: set[ObjectId] = set()
        resent = await self._store(accepted, answered, self._record_facts(*_facts(accepted, convs)), renumbered)
        if resent:  # counted as new but stored nothing (a resend): take them back out
            await self._record_facts({conv_id: -n for conv_id, n in resent.items()}, {})
        if renumbered:  # the facts went out with the seqs planned before: read the newest again (rare)
            await self._record_facts({}, {}, refresh=list(renumbered))

    async def _record_facts(self, counts: dict[ObjectId, int], first_agent_message: dict[ObjectId, datetime],
                            latest: dict[ObjectId, Latest] | None = None, *, refresh: list[ObjectId] = ()) -> None:
        """Analytics and read-receipt facts never fail a batch: the messages are what must be stored."""
        try:
            if refresh:
                await self.conversations.refresh_latest(refresh)
            else:
                await self.conversations.record_messages(counts, first_agent_message, latest)
        except DomainError as exc:
            log.warning("analytics facts of a batch not recorded (%s)", exc.message)
        except Exception:
            log.exception("analytics facts of a batch not recorded")

    async def _store(self, pending: list[_Pending], answered: set[int], facts: Awaitable[None] | None = None,
                     renumbered: set[ObjectId] | None = None) -> dict[ObjectId, int]:
        """Insert, deliver what was stored, resolve duplicates; how many resends (stored nothing)
        each conversation had. ``facts`` is written together with the first insert; the
        conversations whose messages got other seqs than planned are added to ``renumbered``."""
        resent: dict[ObjectId, int] = {}
        while pending:
            insert = self.messages.insert_ordered([p.message for p in pending])
            if facts is not None:
                (stored, duplicate), _ = await asyncio.gather(insert, facts)
                facts = None
            else:
                stored, duplicate = await insert
            self.on_stored(stored)
            for item in pending[:stored]:
                self._deliver(item.draft, item.message, fresh=True)
                answered.add(id(item.draft))
            if duplicate is None:
                return resent
            failed, rest = pending[stored], pending[stored + 1:]
            conv_id = failed.draft.conversation_id
            if duplicate is DuplicateOf.CLIENT_MESSAGE:
                original = await self.messages.by_client_id(conv_id, failed.draft.sender.id,
                                                            failed.draft.client_message_id)
                if original is not None:
                    self._deliver(failed.draft, original, fresh=False)
                    answered.add(id(failed.draft))
                resent[conv_id] = resent.get(conv_id, 0) + 1
                self._next_seq[conv_id] = failed.message.seq  # its seq was not used
                pending = rest
            else:  # another writer took this seq: start again from the stored top
                top = (await self.messages.top_seqs([conv_id])).get(conv_id, 0)
                self._next_seq[conv_id] = top + 1
                pending = [failed, *rest]
            if renumbered is not None:
                renumbered.add(conv_id)
            for item in pending:  # renumber the conversation's remaining messages, order kept
                if item.draft.conversation_id == conv_id:
                    item.message = attrs.evolve(item.message, seq=self._take_seq(conv_id))
        return resent

    def _new_message(self, draft: Draft) -> Message:
        return Message(id=ObjectId(), conversation_id=draft.conversation_id, seq=self._take_seq(draft.conversation_id),
                       sender_id=draft.sender.id, sender_role=draft.sender.role, content=draft.content,
                       created_at=self.clock(), client_message_id=draft.client_message_id)

    def _take_seq(self, conv_id: ObjectId) -> int:
        seq = self._next_seq[conv_id]
        self._next_seq[conv_id] = seq + 1
        return seq

    def observe(self, message: Message) -> None:
        """Another process stored ``message``: skip its seq rather than collide with it."""
        known = self._next_seq.get(message.conversation_id)
        if known is not None and known <= message.seq:
            self._next_seq[message.conversation_id] = message.seq + 1

    def _deliver(self, draft: Draft, message: Message, *, fresh: bool) -> None:
        self.events.publish(MessageStored(message, origin=draft.origin, fresh=fresh))

    def _reply_error(self, draft: Draft, reason: str) -> None:
        self.events.publish(SendRejected(draft.origin, reason, draft.client_message_id))


def _facts(accepted: list[_Pending], convs: dict[ObjectId, Conversation]) -> tuple[
        dict[ObjectId, int], dict[ObjectId, datetime], dict[ObjectId, Latest]]:
    """Messages per conversation in this batch, the earliest agent message of each conversation
    that has none recorded yet, and each conversation's newest message and newest seq per side."""
    counts: dict[ObjectId, int] = {}
    first_agent: dict[ObjectId, datetime] = {}
    latest: dict[ObjectId, Latest] = {}
    for item in accepted:  # in seq order within each conversation
        conv_id, message = item.draft.conversation_id, item.message
        counts[conv_id] = counts.get(conv_id, 0) + 1
        if message.sender_role is Role.AGENT and convs[conv_id].first_agent_message_at is None:
            first_agent[conv_id] = min(first_agent.get(conv_id, message.created_at), message.created_at)
        before = latest.get(conv_id, Latest(message))
        side = ({"candidate_seq": message.seq} if side_of(message.sender_role) is Role.CANDIDATE
                else {"staff_seq": message.seq})
        latest[conv_id] = attrs.evolve(before, message=message, **side)
    return counts, first_agent, latest
