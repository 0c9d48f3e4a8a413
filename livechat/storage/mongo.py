"""MongoDB storage: the only module that imports a driver (Motor, or PyMongo's AsyncMongoClient).

Repositories take and return attrs domain objects; documents never leave this module. Invariants
live in indexes (unique email, one active conversation per candidate, unique seq per
conversation) and state changes are single conditional updates, so races cannot break them.
Driver failures become ``Unavailable`` (503) and duplicate keys become domain errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
import re
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

import attrs
import pymongo
import pymongo.errors
from bson import ObjectId
from bson.codec_options import CodecOptions
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override
from cattrs.preconf.bson import make_converter

from livechat.config import DatabaseSettings, Driver
from livechat.domain.models import (ACTIVE_STATUSES, AgentPresence, Assignment, Conversation, ConversationStatus,
                                    Distribution, GroupBy, LastMessage, Message, MessageFacts, Note, Presence,
                                    ProcessBeat, ReadMark, Role, Routing, SummaryRow, SupervisorStats, TokensRevoked,
                                    TypingSignal, User, utcnow)
from livechat.domain.facts import ConversationFacts, FactsProjection, ms
from livechat.domain.ports import Change, DuplicateOf, HistoryLost
from livechat.errors import Conflict, Unavailable
from livechat.naming import camel

log = logging.getLogger(__name__)

T = TypeVar("T")


# --- documents <-> attrs ------------------------------------------------------------------
# Documents keep the seed's camelCase field names (candidateId, passwordHash, createdAt), so a
# database written by the original Node.js service is read as it is.


_KEYS = {AgentPresence: "agent_id", Routing: "supervisor_id"}  # the field that is the document's _id


def _make_document_converter():
    conv = make_converter()
    for cls in (User, Assignment, LastMessage, Conversation, Message, AgentPresence, Routing, ReadMark, Note,
                TypingSignal):
        key = _KEYS.get(cls, "id")
        renames = {
            f.name: override(rename="_id" if f.name == key else camel(f.name))
            for f in attrs.fields(cls)
        }
        conv.register_unstructure_hook(cls, make_dict_unstructure_fn(cls, conv, **renames))
        conv.register_structure_hook(cls, make_dict_structure_fn(cls, conv, **renames))
    return conv


documents = _make_document_converter()


def to_document(obj: Any) -> dict[str, Any]:
    return documents.unstructure(obj)


def from_document(doc: dict[str, Any], cls: type[T]) -> T:
    return documents.structure(doc, cls)


# --- driver differences and failures ----------------------------------------------------------


async def _maybe_await(value: Any) -> Any:
    """Motor returns cursors and None where AsyncMongoClient returns coroutines."""
    return await value if inspect.isawaitable(value) else value


def _is_outage(exc: pymongo.errors.PyMongoError) -> bool:
    return isinstance(exc, pymongo.errors.ConnectionFailure) or exc.timeout


def translate_errors(method: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    """Turn a lost or slow database into ``Unavailable`` so the edge answers 503, not 500; time
    the operation for the repository's ``observe_db`` (the metrics), when it has one."""
    operation = method.__qualname__.removeprefix("Mongo")  # e.g. "UserRepo.get"

    @functools.wraps(method)
    async def wrapper(self: Any, *args: Any, **kwargs: Any) -> T:
        started = time.perf_counter()
        try:
            return await method(self, *args, **kwargs)
        except pymongo.errors.PyMongoError as exc:
            if _is_outage(exc):
                log.warning("database unavailable: %s", type(exc).__name__)
                raise Unavailable() from exc
            raise
        finally:
            if self.observe_db is not None:
                self.observe_db(operation, time.perf_counter() - started)

    return wrapper


async def _update_and_read(collection: Any, query: dict[str, Any], update: dict[str, Any], *,
                           upsert: bool = False) -> dict[str, Any] | None:
    """Update the document ``query`` matches; the document as read right after (at least as new
    as this write), or ``None`` when nothing matched. Not ``find_one_and_update``: SecantusDB runs
    that over the whole collection (~50 µs per document, measured: 0.5 s at 10,000 conversations,
    while ``update_one`` and ``find_one`` by ``_id`` take ~5 ms each), so two commands cost less
    than one. Atomicity is the update's: its filter is the condition."""
    result = await collection.update_one(query, update, upsert=upsert)
    if not result.matched_count and result.upserted_id is None:
        return None
    return await collection.find_one({"_id": result.upserted_id or query["_id"]})


class _Repo:
    observe_db: Callable[[str, float], None] | None = None  # set by MongoStore


# --- repositories -------------------------------------------------------------------------------


class MongoUserRepo(_Repo):
    def __init__(self, collection: Any) -> None:
        self._c = collection

    async def ensure_indexes(self) -> None:
        await self._c.create_index("email", unique=True, name="email_unique")
        await self._c.create_index([("role", 1), ("supervisorId", 1)], name="role_supervisor")

    @translate_errors
    async def insert(self, user: User) -> User:
        try:
            await self._c.insert_one(to_document(user))
        except pymongo.errors.DuplicateKeyError:
            raise Conflict("Email already exists") from None
        return user

    @translate_errors
    async def get(self, user_id: ObjectId) -> User | None:
        doc = await self._c.find_one({"_id": user_id})
        return from_document(doc, User) if doc else None

    @translate_errors
    async def by_email(self, email: str) -> User | None:
        doc = await self._c.find_one({"email": email})
        return from_document(doc, User) if doc else None

    @translate_errors
    async def delete(self, user_id: ObjectId) -> bool:
        return (await self._c.delete_one({"_id": user_id})).deleted_count == 1

    @translate_errors
    async def count(self) -> int:
        return await self._c.count_documents({})

    @translate_errors
    async def names(self, user_ids: list[ObjectId]) -> dict[ObjectId, str]:
        docs = await self._c.find({"_id": {"$in": user_ids}}, {"name": 1}).to_list(None)
        return {d["_id"]: d["name"] for d in docs}

    @translate_errors
    async def revoke_tokens(self, user_id: ObjectId, *, password_hash: str | None = None,
                            role: Role | None = None, supervisor_id: ObjectId | None = None) -> User | None:
        update: dict[str, Any] = {"$inc": {"tokenVersion": 1}}
        if password_hash is not None:
            update["$set"] = {"passwordHash": password_hash}
        if role is not None:
            update["$set"] = {"role": role.value, "supervisorId": supervisor_id}
        doc = await _update_and_read(self._c, {"_id": user_id}, update)
        return from_document(doc, User) if doc else None

    @translate_errors
    async def list_by_role(self, role: Role, *, supervisor_id: ObjectId | None = None,
                           after: ObjectId | None = None, limit: int = 100) -> list[User]:
        query: dict[str, Any] = {"role": role.value}
        if supervisor_id is not None:
            query["supervisorId"] = supervisor_id
        if after is not None:
            query["_id"] = {"$gt": after}
        docs = await self._c.find(query).sort("_id", 1).limit(limit).to_list(None)
        return [from_document(d, User) for d in docs]


ACTIVE = [status.value for status in ACTIVE_STATUSES]
ANY_AGENT = object()
ROUTING_CACHED = 10_000  # conversations whose status and parties ``get_many(cached=True)`` remembers
# Facts that are absent until they happen. They are written with ``$min`` (the earliest wins,
# whatever order concurrent writes land in), and the ``$min`` update operator ranks null below
# every date, so an unset fact must be a missing field, never a stored null.
_FACTS_ABSENT_UNTIL_SET = ("firstAssignedAt", "firstAgentMessageAt")
BACKFILL_BATCH = 1000
FLUSH_CHUNK = 4  # conversation updates per command when the facts are written
# The analytics read model (domain/facts.py) holds the conversations created in the last
# FACTS_HORIZON when it was loaded; a summary of an earlier period is an aggregation.
FACTS_HORIZON = timedelta(days=400)
FACTS_READ = 1000  # conversations per query when the read model reads their facts back
_FACTS_FIELDS = {"createdAt": 1, "supervisorId": 1, "agentId": 1, "status": 1, "version": 1,
                 "firstAssignedAt": 1, "firstAgentMessageAt": 1, "closedAt": 1, "messageCount": 1, "lastSeq": 1}


def _ms_or_none(moment: datetime | None) -> int | None:
    return None if moment is None else ms(moment)


def _facts_of(doc: dict[str, Any]) -> ConversationFacts:
    return ConversationFacts(
        created=ms(doc["createdAt"]), supervisor_id=doc["supervisorId"], agent_id=doc.get("agentId"),
        closed=doc.get("status") == ConversationStatus.CLOSED.value, version=doc.get("version", 0),
        first_assigned=_ms_or_none(doc.get("firstAssignedAt")),
        first_agent_message=_ms_or_none(doc.get("firstAgentMessageAt")),
        closed_at=_ms_or_none(doc.get("closedAt")), message_count=doc.get("messageCount", 0))


def _seconds_since_creation(field: str) -> dict[str, Any]:
    """``field - createdAt`` in seconds; null when the fact is missing (``$subtract`` of null)."""
    return {"$divide": [{"$subtract": [f"${field}", "$createdAt"]}, 1000]}


_GROUP_KEYS = {
    GroupBy.SUPERVISOR: "$supervisorId",
    GroupBy.AGENT: {"$ifNull": ["$agentId", None]},
    GroupBy.DAY: {"$dateToString": {"format": "%Y-%m-%d", "date": "$createdAt", "timezone": "UTC"}},
}


def _summary_match(start: datetime, end: datetime, supervisor_id: ObjectId | None) -> dict[str, Any]:
    match: dict[str, Any] = {"createdAt": {"$gte": start, "$lt": end}}
    if supervisor_id is not None:
        match["supervisorId"] = supervisor_id
    return match


class MongoConversationRepo(_Repo):
    def __init__(self, collection: Any, users: Any, messages: Any) -> None:
        self._c = collection
        self._users = users
        self._messages = messages  # read once, by the start-up backfill of the analytics facts
        # Facts of stored messages not yet in the documents (``record_messages``), and those being
        # written now: every conversation read here shows both.
        self._unwritten: dict[ObjectId, MessageFacts] = {}
        self._writing: dict[ObjectId, MessageFacts] = {}
        self._flushing = asyncio.Lock()
        self._unpaced_waiting = 0  # flushes that must not wait (summary, shutdown): a paced one hurries
        # Each conversation as this process last wrote or read it, for ``get_many(cached=True)``;
        # trusted from the first cached read after an uncached one (other processes wrote meanwhile).
        self._routing: OrderedDict[ObjectId, Conversation] = OrderedDict()
        self._routing_trusted = False
        # The analytics read model: every conversation this repository writes or reads is seen
        # by it (``_see``) from ``start_facts`` on; ``_facts_loaded`` is the load in progress or done.
        self._facts: FactsProjection | None = None
        self._facts_loaded: asyncio.Task | None = None
        self._shared: Callable[[], bool] = lambda: False

    def _see(self, doc: dict[str, Any], *, counted: bool = False) -> None:
        if self._facts is not None:
            self._facts.see(doc["_id"], _facts_of(doc), counted=counted)

    def observe(self, conv: Conversation) -> None:
        """A conversation as another process wrote it (the change feed)."""
        self._see(to_document(conv))

    def observe_message(self, message: Message) -> None:
        """A message another process stored (the change feed): that process writes its facts."""
        if self._facts is not None:
            self._facts.foreign_message(message.conversation_id, message.seq)

    def _conversation(self, doc: dict[str, Any]) -> Conversation:
        self._see(doc)
        conv = from_document(doc, Conversation)
        for pending in (self._writing, self._unwritten):
            facts = pending.get(conv.id)
            if facts is not None:
                conv = facts.apply_to(conv)
        return conv

    async def ensure_indexes(self) -> None:
        # One active conversation per candidate, enforced by the database (409 on POST /conversations, docs/openapi.json).
        await self._c.create_index("candidateId", unique=True, name="one_active_per_candidate",
                                   partialFilterExpression={"status": {"$in": ACTIVE}})
        await self._c.create_index([("candidateId", 1), ("_id", -1)], name="by_candidate")
        await self._c.create_index([("supervisorId", 1), ("_id", -1)], name="by_supervisor")
        await self._c.create_index([("agentId", 1), ("_id", -1)], name="by_agent")
        await self._c.create_index([("status", 1), ("agentId", 1)], name="by_status_agent")
        await self._c.create_index([("supervisorId", 1), ("status", 1), ("agentId", 1), ("createdAt", 1)],
                                   name="queue")
        # Capacity by construction: an agent's active automatic assignments hold distinct slots.
        await self._c.create_index([("agentId", 1), ("routingSlot", 1)], unique=True, name="routing_slot_unique",
                                   partialFilterExpression={"status": {"$in": ACTIVE},
                                                            "routingSlot": {"$type": "int"}})
        # The analytics summary selects by creation time, for everyone or for one supervisor's team.
        await self._c.create_index("createdAt", name="by_created")
        await self._c.create_index([("supervisorId", 1), ("createdAt", 1)], name="by_supervisor_created")

    @translate_errors
    async def insert(self, conv: Conversation) -> Conversation:
        doc = to_document(conv)
        for fact in _FACTS_ABSENT_UNTIL_SET:
            if doc.get(fact) is None:
                doc.pop(fact, None)
        try:
            await self._c.insert_one(doc)
        except pymongo.errors.DuplicateKeyError:
            raise Conflict("Candidate already has an active conversation") from None
        self._see(doc, counted=True)  # new: no message yet
        return conv

    @translate_errors
    async def get(self, conv_id: ObjectId) -> Conversation | None:
        doc = await self._c.find_one({"_id": conv_id})
        return self._conversation(doc) if doc else None

    @translate_errors
    async def get_many(self, conv_ids: list[ObjectId], *, cached: bool = False) -> dict[ObjectId, Conversation]:
        """``cached``: status, parties and agent as this process last wrote or read them, reading
        only the conversations it does not know — for a caller that knows no other process writes
        conversations (the message writer, while it is alone). Their message facts may be old."""
        if not cached:
            self._routing.clear()
            self._routing_trusted = False
            docs = await self._c.find({"_id": {"$in": conv_ids}}).to_list(None)
            return {d["_id"]: self._conversation(d) for d in docs}
        if not self._routing_trusted:
            self._routing.clear()
            self._routing_trusted = True
        found = {c: conv for c in conv_ids if (conv := self._routing.get(c)) is not None}
        missing = [c for c in conv_ids if c not in found]
        if missing:
            for doc in await self._c.find({"_id": {"$in": missing}}).to_list(None):
                found[doc["_id"]] = self._remember(from_document(doc, Conversation))
        for conv_id in found:
            self._routing.move_to_end(conv_id)
        return found

    def _remember(self, conv: Conversation) -> Conversation:
        """The newest of ``conv`` and what is remembered of it (a read that raced a write of ours
        must not put back the older version); the least recently used are forgotten."""
        known = self._routing.get(conv.id)
        if known is None or known.version <= conv.version:
            self._routing[conv.id] = known = conv
        while len(self._routing) > ROUTING_CACHED:
            self._routing.popitem(last=False)
        return known

    async def _update(self, query: dict[str, Any], update: dict[str, Any]) -> Conversation | None:
        update = {**update, "$inc": {**update.get("$inc", {}), "version": 1}}
        doc = await _update_and_read(self._c, query, update)
        if doc is None:
            return None
        if self._routing_trusted:  # also when not remembered yet: a read in flight may bring an older one
            self._remember(from_document(doc, Conversation))
        return self._conversation(doc)

    @translate_errors
    async def set_agent(self, conv_id: ObjectId, supervisor_id: ObjectId, agent_id: ObjectId, *,
                        by: ObjectId | None, at: datetime, current_agent: Any = ANY_AGENT) -> Conversation | None:
        """Assign (or reassign, or transfer) unless closed meanwhile — and, with ``current_agent``,
        only while that agent still has it; ``None`` if the condition no longer holds. A manual
        assignment gives up any routing slot."""
        query: dict[str, Any] = {"_id": conv_id, "supervisorId": supervisor_id, "status": {"$in": ACTIVE}}
        if current_agent is not ANY_AGENT:
            query["agentId"] = current_agent
        return await self._update(query, {
            "$set": {"agentId": agent_id},
            "$unset": {"routingSlot": ""},
            "$push": {"assignments": to_document(Assignment(agent_id, at, by))},
            "$min": {"firstAssignedAt": at},  # a reassignment or transfer keeps the first one
        })

    @translate_errors
    async def claim(self, conv_id: ObjectId, agent_id: ObjectId, slot: int, at: datetime) -> Conversation | None | bool:
        """Automatic assignment of a waiting conversation into one of the agent's capacity slots:
        the conversation, ``None`` when it is no longer waiting, ``False`` when the slot is taken."""
        try:
            return await self._update(
                {"_id": conv_id, "status": ConversationStatus.OPEN.value, "agentId": None},
                {"$set": {"agentId": agent_id, "routingSlot": slot},
                 "$push": {"assignments": to_document(Assignment(agent_id, at, None))},
                 "$min": {"firstAssignedAt": at}},
            )
        except pymongo.errors.DuplicateKeyError:
            return False

    @translate_errors
    async def requeue(self, conv_id: ObjectId, agent_id: ObjectId, at: datetime) -> Conversation | None:
        """An ``open`` conversation back to the queue, unless its agent joined meanwhile."""
        return await self._update(
            {"_id": conv_id, "agentId": agent_id, "status": ConversationStatus.OPEN.value},
            {"$set": {"agentId": None}, "$unset": {"routingSlot": ""},
             "$push": {"assignments": to_document(Assignment(None, at, None))}},
        )

    @translate_errors
    async def waiting(self, supervisor_id: ObjectId, limit: int) -> list[Conversation]:
        """The supervisor's queue (open, no agent), oldest first."""
        docs = await self._c.find({"supervisorId": supervisor_id, "status": ConversationStatus.OPEN.value,
                                   "agentId": None}).sort([("createdAt", 1), ("_id", 1)]).limit(limit).to_list(None)
        return [self._conversation(d) for d in docs]

    @translate_errors
    async def active_of(self, agent_ids: list[ObjectId]) -> list[Conversation]:
        """The open-with-agent and assigned conversations of these agents."""
        docs = await self._c.find({"agentId": {"$in": agent_ids}, "status": {"$in": ACTIVE}}).to_list(None)
        return [self._conversation(d) for d in docs]

    @translate_errors
    async def waiting_for_agent(self, supervisor_ids: list[ObjectId]) -> list[Conversation]:
        """``open`` conversations with an agent who has not joined yet (requeue candidates)."""
        docs = await self._c.find({"supervisorId": {"$in": supervisor_ids}, "status": ConversationStatus.OPEN.value,
                                   "agentId": {"$ne": None}}).to_list(None)
        return [self._conversation(d) for d in docs]

    @translate_errors
    async def mark_assigned(self, conv_id: ObjectId, agent_id: ObjectId) -> Conversation | None:
        """The assigned agent's first join: open → assigned."""
        return await self._update(
            {"_id": conv_id, "agentId": agent_id, "status": ConversationStatus.OPEN.value},
            {"$set": {"status": ConversationStatus.ASSIGNED.value}},
        )

    @translate_errors
    async def close(self, conv_id: ObjectId, expected: ConversationStatus, *, at: datetime,
                    agent_id: ObjectId | None = None) -> Conversation | None:
        """Close if still in ``expected`` status (and still the agent's); ``None`` otherwise."""
        query: dict[str, Any] = {"_id": conv_id, "status": expected.value}
        if agent_id is not None:
            query["agentId"] = agent_id
        return await self._update(
            query, {"$set": {"status": ConversationStatus.CLOSED.value, "closedAt": at}}
        )

    @translate_errors
    async def list(self, *, scope: dict[str, ObjectId], status: ConversationStatus | None,
                   before: ObjectId | None, limit: int) -> list[Conversation]:
        """Newest first; ``scope`` is a field → id filter such as ``{"supervisor_id": …}``."""
        query: dict[str, Any] = {camel(k): v for k, v in scope.items()}
        if status is not None:
            query["status"] = status.value
        if before is not None:
            query["_id"] = {"$lt": before}
        docs = await self._c.find(query).sort("_id", -1).limit(limit).to_list(None)
        return [self._conversation(d) for d in docs]

    @translate_errors
    async def supervisor_stats(self) -> list[SupervisorStats]:
        """Analytics in two aggregations, whatever the number of supervisors: agents per
        supervisor from ``users``, closed conversations per supervisor from ``conversations``."""
        handled_pipeline = [
            {"$match": {"status": ConversationStatus.CLOSED.value, "agentId": {"$ne": None}}},
            {"$group": {"_id": "$agentId", "n": {"$sum": 1}}},
            {"$lookup": {"from": self._users.name, "localField": "_id", "foreignField": "_id", "as": "agent"}},
            {"$unwind": "$agent"},
            {"$match": {"agent.role": Role.AGENT.value}},
            {"$group": {"_id": "$agent.supervisorId", "handled": {"$sum": "$n"}}},
        ]
        is_supervisor = {"$eq": ["$role", Role.SUPERVISOR.value]}
        teams_pipeline = [
            {"$match": {"role": {"$in": [Role.SUPERVISOR.value, Role.AGENT.value]}}},
            {"$group": {
                "_id": {"$cond": [is_supervisor, "$_id", "$supervisorId"]},
                "name": {"$max": {"$cond": [is_supervisor, "$name", None]}},
                "isSupervisor": {"$max": is_supervisor},
                "agents": {"$sum": {"$cond": [{"$eq": ["$role", Role.AGENT.value]}, 1, 0]}},
            }},
            {"$match": {"isSupervisor": True}},
            {"$sort": {"name": 1, "_id": 1}},
        ]
        handled_cursor, teams_cursor = await asyncio.gather(
            _maybe_await(self._c.aggregate(handled_pipeline)),
            _maybe_await(self._users.aggregate(teams_pipeline)),
        )
        handled = {row["_id"]: row["handled"] async for row in handled_cursor}
        return [
            SupervisorStats(supervisor_id=row["_id"], supervisor_name=row["name"], agents=row["agents"],
                            conversations_handled=handled.get(row["_id"], 0))
            async for row in teams_cursor
        ]

    # --- analytics facts (README "Analytics") --------------------------------------------------

    def record_messages(self, messages: list[Message]) -> None:
        for message in messages:
            facts = MessageFacts.of(message)
            before = self._unwritten.get(message.conversation_id)
            self._unwritten[message.conversation_id] = facts if before is None else before.plus(facts)

    async def flush_facts(self, pause: float = 0.0) -> None:
        """One update per conversation with recorded facts, ``FLUSH_CHUNK`` to a command and
        ``pause`` seconds between commands, so that the message inserts interleave. Each is an
        update pipeline, because the aggregation ``$min``/``$max`` (unlike the update operators)
        ignore a missing or null operand, and ``$cond`` keeps the newer message: two processes'
        facts merge in whatever order they land. Every update sets ``messageCount``, which keeps
        it out of the change stream. An unpaced flush (``pause`` 0) makes a paced one in progress
        stop pausing, so a summary never waits for the pacing."""
        if not pause:
            self._unpaced_waiting += 1
        try:
            await self._flush_facts(pause)
        finally:
            if not pause:
                self._unpaced_waiting -= 1

    async def _flush_facts(self, pause: float) -> None:
        async with self._flushing:
            if not self._unwritten:
                return
            self._writing, self._unwritten = self._unwritten, {}
            items = list(self._writing.items())
            written = 0
            try:
                for written in range(0, len(items), FLUSH_CHUNK):
                    if written and pause and not self._unpaced_waiting:
                        await asyncio.sleep(pause)
                    chunk = items[written:written + FLUSH_CHUNK]
                    await self._bulk_facts(chunk)
                    if self._facts is not None:
                        for conv_id, facts in chunk:
                            self._facts.add_messages(conv_id, facts.count, _ms_or_none(facts.first_agent_at))
                written = len(items)
            except BaseException:
                # Kept for the next flush: the chunk that failed (it may have landed in part, so a
                # count may come out high) and those after it.
                for conv_id, facts in items[written:]:
                    later = self._unwritten.get(conv_id)
                    self._unwritten[conv_id] = facts if later is None else facts.plus(later)
                raise
            finally:
                self._writing = {}

    @translate_errors
    async def _bulk_facts(self, items: list[tuple[ObjectId, MessageFacts]]) -> None:
        await self._c.bulk_write([pymongo.UpdateOne({"_id": conv_id}, [{"$set": _facts_fields(facts)}])
                                  for conv_id, facts in items], ordered=False)

    def start_facts(self, shared: Callable[[], bool] | None = None) -> None:
        """Load the analytics read model in the background (after ``backfill_facts``); ``shared``
        says whether other processes write conversations too."""
        if shared is not None:
            self._shared = shared
        if self._facts_loaded is None or (self._facts_loaded.done() and self._facts_loaded.exception()):
            self._facts_loaded = asyncio.create_task(self._load_facts(), name="analytics-facts")

    async def stop_facts(self) -> None:
        task, self._facts_loaded, self._facts = self._facts_loaded, None, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task

    def reload_facts(self) -> None:
        """Start the read model afresh (the change feed lost its history: it may have missed
        conversations that other processes wrote)."""
        task, self._facts_loaded, self._facts = self._facts_loaded, None, None
        if task is not None:
            task.cancel()
        self.start_facts()

    @translate_errors
    async def _load_facts(self) -> None:
        """Every conversation created within ``FACTS_HORIZON``, read while no message-facts write
        of this process is in flight, so that each count read is exact (``FactsProjection``)."""
        horizon = utcnow() - FACTS_HORIZON
        projection = FactsProjection(ms(horizon))
        self._facts = projection  # sees what is written meanwhile
        started = time.monotonic()
        try:
            async with self._flushing:
                cursor = self._c.find({"createdAt": {"$gte": horizon}}, _FACTS_FIELDS, batch_size=FACTS_READ)
                async for doc in cursor:
                    projection.see(doc["_id"], _facts_of(doc), counted=True)
        except BaseException:
            if self._facts is projection:  # half read: the next summary starts again
                self._facts = None
            raise
        if self._shared():
            projection.unsettle_active()
        log.info("analytics: %d conversations' facts in memory (read in %.1fs)",
                 len(projection.rows), time.monotonic() - started)

    async def _read_back_facts(self, projection: FactsProjection) -> None:
        """The facts of the conversations that other processes have yet to write, as stored now."""
        self._unpaced_waiting += 1  # a paced flush holding the lock hurries
        try:
            async with self._flushing:
                dirty = list(projection.dirty)
                for at in range(0, len(dirty), FACTS_READ):
                    docs = await self._c.find({"_id": {"$in": dirty[at:at + FACTS_READ]}},
                                              _FACTS_FIELDS).to_list(None)
                    for doc in docs:
                        projection.see(doc["_id"], _facts_of(doc), counted=True)
                        projection.settle(doc["_id"], doc.get("lastSeq", 0))
        finally:
            self._unpaced_waiting -= 1

    @translate_errors
    async def summary(self, start: datetime, end: datetime, group_by: GroupBy,
                      supervisor_id: ObjectId | None) -> list[SummaryRow]:
        """A row per group that has conversations created in ``[start, end)``, without names. From
        the read model when it holds the period (after reading back what other processes have
        written since), otherwise one aggregation over an index range. This process's recorded
        facts are written first."""
        await self.flush_facts()
        self.start_facts()
        await asyncio.shield(self._facts_loaded)
        projection = self._facts
        if projection is not None and ms(start) >= projection.horizon:
            if projection.dirty:
                await self._read_back_facts(projection)
            # A pass over every conversation in memory: ~0.1 s at 100,000, so not on the event loop.
            rows = list(projection.rows.values())
            return await asyncio.to_thread(projection.summarize, rows, start, end, group_by, supervisor_id)
        return await self.aggregate_summary(start, end, group_by, supervisor_id)

    async def aggregate_summary(self, start: datetime, end: datetime, group_by: GroupBy,
                                 supervisor_id: ObjectId | None) -> list[SummaryRow]:
        """The same rows from the database: one aggregation over the conversations created in
        ``[start, end)`` (an index range on ``createdAt``, or on ``supervisorId, createdAt`` for a
        team) — for a period before the read model's horizon, and for tests to compare."""
        pipeline = [
            {"$match": _summary_match(start, end, supervisor_id)},
            {"$project": {
                "_id": 0,
                "key": _GROUP_KEYS[group_by],
                "closed": {"$cond": [{"$eq": ["$status", ConversationStatus.CLOSED.value]}, 1, 0]},
                "messages": {"$ifNull": ["$messageCount", 0]},
                "firstResponse": _seconds_since_creation("firstAgentMessageAt"),
                "resolution": _seconds_since_creation("closedAt"),
                "wait": _seconds_since_creation("firstAssignedAt"),
            }},
            {"$group": {
                "_id": "$key",
                "created": {"$sum": 1},
                "closed": {"$sum": "$closed"},
                "messages": {"$sum": "$messages"},
                "firstResponse": {"$push": "$firstResponse"},
                "resolution": {"$push": "$resolution"},
                "wait": {"$push": "$wait"},
            }},
        ]
        # The samples come back and are ranked here: on SecantusDB, sorting them in the pipeline
        # ($sortArray) cost more than the rest of the aggregation, and sorting a few thousand
        # numbers in Python costs a millisecond. (A group's samples travel in one document, so one
        # group can hold about 300,000 conversations before the 16 MB document limit.)
        cursor = await _maybe_await(self._c.aggregate(pipeline))
        return [
            SummaryRow(key=row["_id"], created=row["created"], closed=row["closed"], messages=row["messages"],
                       first_response=Distribution.of(row["firstResponse"]),
                       resolution=Distribution.of(row["resolution"]), wait=Distribution.of(row["wait"]))
            async for row in cursor
        ]

    @translate_errors
    async def summary_plan(self, start: datetime, end: datetime, supervisor_id: ObjectId | None) -> list[str]:
        """The stages of the winning plan of the summary's ``$match``, outermost first (tests and
        the benchmark check that it reads an index range, ``IXSCAN``, not the collection)."""
        explained = await self._c.find(_summary_match(start, end, supervisor_id)).explain()
        stages, plan = [], explained["queryPlanner"]["winningPlan"]
        while plan:
            stages.append(plan["stage"])
            plan = plan.get("inputStage")
        return stages

    @translate_errors
    async def backfill_facts(self) -> int:
        """Give conversations written before the analytics facts existed (no ``messageCount``)
        their facts, from their messages and assignment history; how many were backfilled.
        Idempotent: a conversation with the facts is never touched again, and the dates go
        through ``$min``. Without an assignment history there is no first-assignment time."""
        total = 0
        while True:
            docs = await self._c.find({"messageCount": {"$exists": False}},
                                      {"assignments": 1}).limit(BACKFILL_BATCH).to_list(None)
            if not docs:
                return total
            cursor = await _maybe_await(self._messages.aggregate([
                {"$match": {"conversationId": {"$in": [d["_id"] for d in docs]}}},
                {"$group": {"_id": "$conversationId", "count": {"$sum": 1},
                            "firstAgent": {"$min": {"$cond": [{"$eq": ["$senderRole", Role.AGENT.value]},
                                                              "$createdAt", None]}}}},
            ]))
            found = {row["_id"]: row async for row in cursor}
            ops = []
            for doc in docs:
                facts = found.get(doc["_id"], {})
                earliest: dict[str, Any] = {}
                if facts.get("firstAgent") is not None:
                    earliest["firstAgentMessageAt"] = facts["firstAgent"]
                first = next((a.get("at") for a in doc.get("assignments") or [] if a.get("agentId") is not None),
                             None)
                if first is not None:
                    earliest["firstAssignedAt"] = first
                update: dict[str, Any] = {"$set": {"messageCount": facts.get("count", 0)}}
                if earliest:
                    update["$min"] = earliest
                ops.append(pymongo.UpdateOne({"_id": doc["_id"], "messageCount": {"$exists": False}}, update))
            await self._c.bulk_write(ops, ordered=False)
            total += len(ops)


def _facts_fields(facts: MessageFacts) -> dict[str, Any]:
    """The pipeline ``$set`` of a conversation's recorded facts: only a higher seq replaces what is
    stored, only an earlier time replaces the first agent message."""
    top = facts.newest.seq
    fields: dict[str, Any] = {
        "messageCount": {"$add": [{"$ifNull": ["$messageCount", 0]}, facts.count]},
        "lastSeq": {"$max": [{"$ifNull": ["$lastSeq", 0]}, top]},
        "lastMessage": {"$cond": [{"$gt": [top, {"$ifNull": ["$lastSeq", 0]}]},
                                  {"$literal": to_document(LastMessage.of(facts.newest))}, "$lastMessage"]},
    }
    if facts.first_agent_at is not None:
        fields["firstAgentMessageAt"] = {"$min": ["$firstAgentMessageAt", facts.first_agent_at]}
    if facts.candidate_seq:
        fields["lastCandidateSeq"] = {"$max": [{"$ifNull": ["$lastCandidateSeq", 0]}, facts.candidate_seq]}
    if facts.staff_seq:
        fields["lastStaffSeq"] = {"$max": [{"$ifNull": ["$lastStaffSeq", 0]}, facts.staff_seq]}
    return fields


class MongoMessageRepo(_Repo):
    def __init__(self, collection: Any, writer: str) -> None:
        self._c = collection
        self._writer = writer

    async def ensure_indexes(self) -> None:
        # Contiguous, unique order per conversation and idempotent resends (README "WebSocket").
        await self._c.create_index([("conversationId", 1), ("seq", 1)], unique=True, name="seq_unique")
        await self._c.create_index([("conversationId", 1), ("senderId", 1), ("clientMessageId", 1)],
                                   unique=True, name="client_message_unique",
                                   partialFilterExpression={"clientMessageId": {"$type": "string"}})

    @translate_errors
    async def insert_ordered(self, messages: list[Message]) -> tuple[int, DuplicateOf | None]:
        """Insert in one round trip, in order, stopping at the first duplicate key.

        Returns how many were stored (a prefix of ``messages``) and which uniqueness stopped it:
        ``DuplicateOf.SEQ`` (another writer took that seq) or ``DuplicateOf.CLIENT_MESSAGE`` (a resend).
        """
        if not messages:
            return 0, None
        try:
            await self._c.insert_many([self._document(m) for m in messages], ordered=True)
        except pymongo.errors.BulkWriteError as exc:
            stored = exc.details.get("nInserted", 0)
            errors = exc.details.get("writeErrors", [])
            if not errors or errors[0].get("code") != 11000:
                raise
            key = errors[0].get("keyPattern") or {}
            return stored, DuplicateOf.CLIENT_MESSAGE if "clientMessageId" in key else DuplicateOf.SEQ
        return len(messages), None

    def _document(self, message: Message) -> dict[str, Any]:
        doc = to_document(message)
        doc[WRITER] = self._writer  # so this process's change feed can skip its own writes
        return doc

    @translate_errors
    async def top_seqs(self, conv_ids: list[ObjectId]) -> dict[ObjectId, int]:
        """The highest stored seq of each conversation (absent: none stored yet): one indexed
        lookup per conversation, all in flight at once (a $group over $in reads every message)."""
        async def top(conv_id: ObjectId) -> tuple[ObjectId, int | None]:
            doc = await self._c.find_one({"conversationId": conv_id}, {"seq": 1, "_id": 0}, sort=[("seq", -1)])
            return conv_id, doc["seq"] if doc else None

        return {conv_id: seq for conv_id, seq in await asyncio.gather(*map(top, conv_ids)) if seq is not None}

    @translate_errors
    async def by_client_id(self, conv_id: ObjectId, sender_id: ObjectId, client_message_id: str) -> Message | None:
        doc = await self._c.find_one({"conversationId": conv_id, "senderId": sender_id,
                                      "clientMessageId": client_message_id})
        return from_document(doc, Message) if doc else None

    @translate_errors
    async def page(self, conv_id: ObjectId, *, after_seq: int = 0, limit: int | None = None) -> list[Message]:
        """Messages with ``seq > after_seq``, oldest first; all of them when ``limit`` is None."""
        cursor = self._c.find({"conversationId": conv_id, "seq": {"$gt": after_seq}}).sort("seq", 1)
        if limit is not None:
            cursor = cursor.limit(limit)
        return [from_document(d, Message) for d in await cursor.to_list(None)]


class MongoReadRepo(_Repo):
    """Read watermarks: one document per participant and conversation, only ever moved forward."""

    def __init__(self, collection: Any, writer: str) -> None:
        self._c = collection
        self._writer = writer

    async def ensure_indexes(self) -> None:
        await self._c.create_index([("conversationId", 1), ("userId", 1)], unique=True, name="one_mark_per_reader")
        await self._c.create_index([("userId", 1), ("conversationId", 1)], name="by_reader")

    @translate_errors
    async def advance(self, mark: ReadMark) -> bool:
        """Move the watermark up to ``mark.seq``; ``False`` when it was there already (or beyond).
        Monotonic in one write: the filter only matches a lower mark, and when none matches the
        upsert's insert runs into the unique index instead of creating a second document."""
        doc = to_document(mark)
        doc.pop("_id", None)
        doc[WRITER] = self._writer
        key = {"conversationId": mark.conversation_id, "userId": mark.user_id}
        try:
            result = await self._c.update_one({**key, "seq": {"$lt": mark.seq}},
                                              {"$set": {k: v for k, v in doc.items() if k not in key}}, upsert=True)
        except pymongo.errors.DuplicateKeyError:
            return False
        return bool(result.modified_count or result.upserted_id is not None)

    @translate_errors
    async def of_user(self, user_id: ObjectId, conv_ids: list[ObjectId]) -> dict[ObjectId, int]:
        if not conv_ids:
            return {}
        docs = await self._c.find({"userId": user_id, "conversationId": {"$in": conv_ids}},
                                  {"conversationId": 1, "seq": 1}).to_list(None)
        return {d["conversationId"]: d["seq"] for d in docs}

    @translate_errors
    async def of_conversation(self, conv_id: ObjectId, user_ids: list[ObjectId]) -> dict[ObjectId, int]:
        docs = await self._c.find({"conversationId": conv_id, "userId": {"$in": user_ids}},
                                  {"userId": 1, "seq": 1}).to_list(None)
        return {d["userId"]: d["seq"] for d in docs}


class MongoNoteRepo(_Repo):
    """Private staff notes: a collection of their own, which no message query ever reads."""

    def __init__(self, collection: Any, writer: str) -> None:
        self._c = collection
        self._writer = writer

    async def ensure_indexes(self) -> None:
        await self._c.create_index([("conversationId", 1), ("_id", 1)], name="by_conversation")
        await self._c.create_index([("conversationId", 1), ("senderId", 1), ("clientMessageId", 1)],
                                   unique=True, name="client_note_unique",
                                   partialFilterExpression={"clientMessageId": {"$type": "string"}})

    @translate_errors
    async def insert(self, note: Note) -> Note | None:
        """The note, or ``None`` when its ``clientMessageId`` was stored before (a resend)."""
        doc = to_document(note)
        doc[WRITER] = self._writer
        try:
            await self._c.insert_one(doc)
        except pymongo.errors.DuplicateKeyError:
            return None
        return note

    @translate_errors
    async def by_client_id(self, conv_id: ObjectId, sender_id: ObjectId, client_message_id: str) -> Note | None:
        doc = await self._c.find_one({"conversationId": conv_id, "senderId": sender_id,
                                      "clientMessageId": client_message_id})
        return from_document(doc, Note) if doc else None

    @translate_errors
    async def of_conversation(self, conv_id: ObjectId) -> list[Note]:
        """Oldest first (ObjectIds grow with time)."""
        docs = await self._c.find({"conversationId": conv_id}).sort("_id", 1).to_list(None)
        return [from_document(d, Note) for d in docs]


class MongoTypingRepo(_Repo):
    """Typing signals on their way to the other processes' change feeds. Nobody queries them; the
    TTL index removes them after ``TYPING_KEPT`` (SecantusDB and MongoDB sweep once a minute)."""

    def __init__(self, collection: Any, writer: str) -> None:
        self._c = collection
        self._writer = writer

    async def ensure_indexes(self) -> None:
        await self._c.create_index("at", expireAfterSeconds=TYPING_KEPT, name="expire")

    @translate_errors
    async def insert_many(self, signals: list[TypingSignal]) -> None:
        docs = [to_document(signal) for signal in signals]
        for doc in docs:
            doc[WRITER] = self._writer
        await self._c.insert_many(docs, ordered=False)


TYPING_KEPT = 60  # seconds


class MongoRoutingRepo(_Repo):
    def __init__(self, collection: Any) -> None:
        self._c = collection

    async def ensure_indexes(self) -> None:
        await self._c.create_index("mode", name="by_mode")

    @translate_errors
    async def get(self, supervisor_id: ObjectId) -> Routing:
        doc = await self._c.find_one({"_id": supervisor_id})
        return from_document(doc, Routing) if doc else Routing(supervisor_id)

    @translate_errors
    async def put(self, routing: Routing) -> Routing:
        doc = to_document(routing)
        await self._c.replace_one({"_id": doc["_id"]}, doc, upsert=True)
        return routing

    @translate_errors
    async def all(self) -> list[Routing]:
        return [from_document(d, Routing) for d in await self._c.find({}).to_list(None)]


UPSERT_ATTEMPTS = 3


class MongoPresenceRepo(_Repo):
    """One document per agent: its chosen status and the processes holding one of its sockets
    (process → since when); one heartbeat document per process (when it counts as dead), renewed
    by the process — one write per renewal however many agents it serves."""

    def __init__(self, collection: Any, heartbeats: Any) -> None:
        self._c = collection
        self._heartbeats = heartbeats

    async def ensure_indexes(self) -> None:
        await self._c.create_index("supervisorId", name="by_supervisor")

    @translate_errors
    async def connect(self, agent_id: ObjectId, supervisor_id: ObjectId | None, process: str, now: datetime,
                      alive: Callable[[str, datetime], bool]) -> AgentPresence:
        """This process holds a socket of the agent; an agent that was offline starts available.
        One write, so nobody sees the claim before the status that goes with it."""
        for _ in range(UPSERT_ATTEMPTS):
            before = await self._c.find_one({"_id": agent_id})
            online = before is not None and any(alive(p, since) for p, since in (before.get("processes") or {}).items()
                                                 if p != process)
            fields: dict[str, Any] = {f"processes.{process}": now, "supervisorId": supervisor_id, "writer": process}
            if not online:
                fields.update(status=Presence.AVAILABLE.value, since=now)
            try:
                doc = await _update_and_read(self._c, {"_id": agent_id}, {"$set": fields, "$inc": {"version": 1}},
                                             upsert=True)
            except pymongo.errors.DuplicateKeyError:
                doc = None
            # Another process created the document at the same moment: the upsert lost the race,
            # which MongoDB answers with a duplicate key and SecantusDB 0.7 with no document (it
            # updated the new one but returns nothing — the benchmark's 1011 closes). Again, now
            # that it exists.
            if doc is not None:
                return from_document(doc, AgentPresence)
        raise Unavailable()

    @translate_errors
    async def set_status(self, agent_id: ObjectId, status: Presence, now: datetime, process: str) -> AgentPresence:
        doc = await _update_and_read(
            self._c, {"_id": agent_id},
            {"$set": {"status": status.value, "since": now, "writer": process}, "$inc": {"version": 1}})
        return from_document(doc, AgentPresence)

    @translate_errors
    async def disconnect(self, agent_id: ObjectId, process: str) -> None:
        await self._c.update_one({"_id": agent_id}, {"$unset": {f"processes.{process}": ""}, "$set": {"writer": process},
                                                     "$inc": {"version": 1}})

    @translate_errors
    async def beat(self, process: str, expires: datetime) -> dict[str, datetime]:
        """Renew this process's heartbeat; every process's heartbeat (process → when it expires)."""
        await self._heartbeats.replace_one({"_id": process}, {"_id": process, "expires": expires, WRITER: process},
                                           upsert=True)
        return {d["_id"]: d["expires"] for d in await self._heartbeats.find({}).to_list(None)}

    @translate_errors
    async def forget_process(self, process: str, by: str) -> None:
        """A dead process's claims go (its agents' documents change once each), then its heartbeat."""
        await self._c.update_many({f"processes.{process}": {"$exists": True}},
                                  {"$unset": {f"processes.{process}": ""}, "$set": {"writer": by}, "$inc": {"version": 1}})
        await self._heartbeats.delete_one({"_id": process})

    @translate_errors
    async def all(self) -> list[AgentPresence]:
        return [from_document(d, AgentPresence) for d in await self._c.find({}).to_list(None)]


# --- the change stream (realtime/feed.py follows it) -----------------------------------------

WRITER = "writer"  # which process wrote a document (messages, notes, reads, typing, heartbeats, …)
STREAM_AWAIT_MS = 500  # a quiet stream answers this often, which keeps its position fresh
_FOLLOWED = {"messages": Message, "conversations": Conversation, "presence": AgentPresence, "routing": Routing,
             "reads": ReadMark, "notes": Note, "typing": TypingSignal}
# Heartbeats are followed so every process knows at once which others are alive (the typing relay
# writes only while there are any); a heartbeat document is ``{_id: process, expires, writer}``.
_HEARTBEATS = "presence_processes"
# The message writer's facts (``flush_facts``: every update sets ``messageCount``) change a
# conversation every ``facts_interval`` but concern no socket (each process follows the messages
# themselves): the stream leaves those updates out, so they cost the other processes nothing.
# Of ``users`` only token revocations (an update that raises ``tokenVersion``) are followed, and
# only the id and the version leave the database: the projection drops every other field, so no
# password hash ever travels in the stream.
_USERS = "users"
_CHANGES_PIPELINE = [
    {"$match": {"operationType": {"$in": ["insert", "update", "replace"]},
                "$or": [{"ns.coll": {"$in": [*_FOLLOWED, _HEARTBEATS]},
                         "updateDescription.updatedFields.messageCount": {"$exists": False}},
                        {"ns.coll": _USERS, "operationType": "update",
                         "updateDescription.updatedFields.tokenVersion": {"$exists": True}}]}},
    {"$project": {"fullDocument.passwordHash": 0, "updateDescription": 0}},
]
_CANNOT_RESUME = {260, 280, 286}  # InvalidResumeToken, ChangeStreamFatalError, ChangeStreamHistoryLost
_NEEDS_REPLICA_SET = {40573, 40324}


class ChangeStreamUnsupported(RuntimeError):
    """The server has no change streams (a standalone mongod): one line saying what to do."""


def _stream_error(exc: pymongo.errors.PyMongoError) -> Exception:
    if isinstance(exc, pymongo.errors.OperationFailure) and not _is_outage(exc):
        if exc.code in _NEEDS_REPLICA_SET or "replica set" in str(exc):
            return ChangeStreamUnsupported(
                "ws.fanout = changestream needs a MongoDB replica set (change streams); "
                "use a replica set or set LIVECHAT_WS_FANOUT=process for a single process")
        if exc.code in _CANNOT_RESUME or exc.has_error_label("NonResumableChangeStreamError") \
                or "resume" in str(exc).lower():
            return HistoryLost(str(exc.code))
    return Unavailable()


class MongoStore:
    """One database: its repositories, its change stream and the health probe."""

    def __init__(self, db: Any, writer: str | None = None,
                 observe_db: Callable[[str, float], None] | None = None) -> None:
        self._db = db
        self.writer = writer or str(ObjectId())  # this process, as its message documents name it
        self.users = MongoUserRepo(db["users"])
        self.conversations = MongoConversationRepo(db["conversations"], db["users"], db["messages"])
        self.messages = MongoMessageRepo(db["messages"], self.writer)
        self.routing = MongoRoutingRepo(db["routing"])
        self.presence = MongoPresenceRepo(db["presence"], db["presence_processes"])
        self.reads = MongoReadRepo(db["reads"], self.writer)
        self.notes = MongoNoteRepo(db["notes"], self.writer)
        self.typing = MongoTypingRepo(db["typing"], self.writer)
        for repo in self._repos():
            repo.observe_db = observe_db

    @contextlib.asynccontextmanager
    async def changes(self, resume_after: Any | None) -> AsyncIterator[AsyncIterator[Change]]:
        """Follow inserts and updates of messages and conversations, in write order, from
        ``resume_after`` (a previous ``Change.position``) or from now. Raises ``Unavailable`` when the
        database is away, ``HistoryLost`` when it cannot continue from there."""
        try:
            # Our own writes are left out by the database: each event a stream carries costs
            # SecantusDB about 0.35 ms more than one it filters (measured), so one process pays nothing.
            not_ours = {"$match": {f"fullDocument.{WRITER}": {"$ne": self.writer}}}
            stream = await _maybe_await(self._db.watch(
                [not_ours, *_CHANGES_PIPELINE], full_document="updateLookup", resume_after=resume_after,
                max_await_time_ms=STREAM_AWAIT_MS))
        except pymongo.errors.PyMongoError as exc:
            raise _stream_error(exc) from exc
        try:
            yield self._follow(stream)
        finally:
            with contextlib.suppress(pymongo.errors.PyMongoError):
                await _maybe_await(stream.close())

    async def _follow(self, stream: Any) -> AsyncIterator[Change]:
        while True:
            try:
                event = await stream.try_next()
            except pymongo.errors.PyMongoError as exc:
                raise _stream_error(exc) from exc
            if event is None:
                yield Change(stream.resume_token)
                continue
            doc, coll = event.get("fullDocument"), event["ns"]["coll"]
            if coll == _USERS and doc is not None:
                revoked = TokensRevoked(doc["_id"], int(doc.get("tokenVersion", 0)))
                yield Change(stream.resume_token, event.get("wallTime"), revoked)
                continue
            if coll == _HEARTBEATS and doc is not None:
                yield Change(stream.resume_token, event.get("wallTime"), ProcessBeat(doc["_id"], doc["expires"]))
                continue
            cls = _FOLLOWED.get(coll)
            if doc is None or cls is None:
                yield Change(stream.resume_token, event.get("wallTime"))
            else:
                yield Change(stream.resume_token, event.get("wallTime"), from_document(doc, cls))

    def _repos(self) -> tuple[_Repo, ...]:
        return (self.users, self.conversations, self.messages, self.routing, self.presence, self.reads, self.notes,
                self.typing)

    async def ensure_indexes(self) -> None:
        for repo in self._repos():
            await repo.ensure_indexes()

    async def ping(self) -> None:
        """Raise ``Unavailable`` unless the server answers."""
        try:
            await self._db.command("ping")
        except pymongo.errors.PyMongoError as exc:
            raise Unavailable() from exc


def client_class(driver: Driver) -> Callable[..., Any]:
    """The driver's client class (the benchmark opens its own clients with it too)."""
    if driver is Driver.PYMONGO:
        return pymongo.AsyncMongoClient
    from motor.motor_asyncio import AsyncIOMotorClient

    return AsyncIOMotorClient


@contextlib.asynccontextmanager
async def open_store(cfg: DatabaseSettings, uri: str | None = None, *, database: str | None = None,
                     observe_db: Callable[[str, float], None] | None = None) -> AsyncIterator[MongoStore]:
    """Connect, check the server answers (fail fast on a wrong URI), create indexes (a no-op
    when they exist), yield the store, close the client."""
    uri = uri or cfg.uri
    client = client_class(cfg.driver)(
        uri,
        tz_aware=True,
        uuidRepresentation="standard",
        serverSelectionTimeoutMS=cfg.timeout_ms,
        connectTimeoutMS=cfg.timeout_ms,
        timeoutMS=cfg.timeout_ms,
        appname="livechat",
    )
    try:
        db = client.get_database(database or cfg.name, codec_options=CodecOptions(tz_aware=True))
        store = MongoStore(db, observe_db=observe_db)
        await store.ping()
        await store.ensure_indexes()
        yield store
    finally:
        await _maybe_await(client.close())


def redact_uri(uri: str) -> str:
    """mongodb://user:pass@host → mongodb://user:***@host, for log lines."""
    return re.sub(r"(//[^:/@]+:)[^@]*@", r"\1***@", uri)
