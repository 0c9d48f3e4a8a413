"""Domain objects (attrs). No I/O here: storage maps them to documents, the edge to JSON."""

from __future__ import annotations

import enum
from collections.abc import Callable
from datetime import UTC, datetime

from attrs import evolve, field, frozen
from bson import ObjectId


def utcnow() -> datetime:
    """Now, timezone-aware, truncated to milliseconds: what BSON can store, so round trips are exact."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


class Role(enum.Enum):
    ADMIN = "admin"
    SUPERVISOR = "supervisor"
    AGENT = "agent"
    CANDIDATE = "candidate"


class ConversationStatus(enum.Enum):
    OPEN = "open"
    ASSIGNED = "assigned"
    CLOSED = "closed"


ACTIVE_STATUSES = (ConversationStatus.OPEN, ConversationStatus.ASSIGNED)


class Presence(enum.Enum):
    AVAILABLE = "available"
    AWAY = "away"
    OFFLINE = "offline"


class RoutingMode(enum.Enum):
    MANUAL = "manual"  # the supervisor assigns (the seed's behaviour)
    AUTO = "auto"  # waiting conversations go to available agents, within their capacity


@frozen
class User:
    id: ObjectId
    name: str
    email: str
    role: Role
    password_hash: str = field(repr=False)
    supervisor_id: ObjectId | None = None
    created_at: datetime = field(factory=utcnow)
    # Written into every token at issue; raising it (logout-all, a password or role change)
    # rejects every earlier token. Absent on older documents: 0.
    token_version: int = 0

    @classmethod
    def new(cls, *, name: str, email: str, role: Role, password_hash: str,
            supervisor_id: ObjectId | None = None) -> User:
        return cls(id=ObjectId(), name=name, email=email, role=role, password_hash=password_hash,
                   supervisor_id=supervisor_id if role is Role.AGENT else None)


@frozen
class TokensRevoked:
    """Every token of ``user_id`` older than ``token_version`` is void (what the change feed
    tells other processes about a user: its id and version, never its password hash)."""

    user_id: ObjectId
    token_version: int


@frozen
class Assignment:
    """One entry of a conversation's assignment history: who got it, when, and from whom
    (``by`` is None for automatic routing, and for a requeue ``agent_id`` is None)."""

    agent_id: ObjectId | None
    at: datetime
    by: ObjectId | None = None


@frozen
class LastMessage:
    """The newest message of a conversation, as list items show it (README "Signals"): kept on the
    conversation by the message writer, so a list never reads messages."""

    seq: int
    sender_role: Role
    content: str  # the first LAST_MESSAGE_CHARS characters
    created_at: datetime

    @classmethod
    def of(cls, message: Message) -> LastMessage:
        return cls(message.seq, message.sender_role, message.content[:LAST_MESSAGE_CHARS], message.created_at)


LAST_MESSAGE_CHARS = 200


@frozen
class Conversation:
    id: ObjectId
    candidate_id: ObjectId
    supervisor_id: ObjectId
    agent_id: ObjectId | None = None
    status: ConversationStatus = ConversationStatus.OPEN
    created_at: datetime = field(factory=utcnow)
    closed_at: datetime | None = None
    assignments: tuple[Assignment, ...] = ()
    # A capacity slot (0 … maxConcurrent-1) held by an automatic assignment; unique per agent among
    # active conversations (an index), so routing can never exceed an agent's capacity.
    routing_slot: int | None = None
    # Every write adds one: a late copy from the change feed (an insert's document arriving after
    # the assignment that followed it) never undoes a newer state.
    version: int = 0
    # Facts for analytics (README "Analytics"), kept on the conversation so that a summary reads
    # conversations only, never messages: the first time an agent got it (kept on reassignment,
    # transfer and requeue), the first message an agent sent in it, and how many messages it has
    # (these two from the message writer's ``MessageFacts``, written behind; ``message_count`` is as
    # stored, the others also show what is not written yet).
    first_assigned_at: datetime | None = None
    first_agent_message_at: datetime | None = None
    message_count: int = 0
    # Read receipts (README "Signals"), from the message writer with the facts above: the top
    # seq, the newest message, and the seq of the newest message from each side (the candidate; staff).
    # Everything after a side's own last message is from the other side, which makes ``unread`` exact
    # without counting messages (see ``unread``).
    last_seq: int = 0
    last_message: LastMessage | None = None
    last_candidate_seq: int = 0
    last_staff_seq: int = 0

    @classmethod
    def new(cls, *, candidate_id: ObjectId, supervisor_id: ObjectId, created_at: datetime | None = None) -> Conversation:
        return cls(id=ObjectId(), candidate_id=candidate_id, supervisor_id=supervisor_id,
                   created_at=created_at or utcnow())


@frozen
class Message:
    id: ObjectId
    conversation_id: ObjectId
    seq: int
    sender_id: ObjectId
    sender_role: Role
    content: str
    created_at: datetime = field(factory=utcnow)
    client_message_id: str | None = None


def side_of(role: Role) -> Role:
    """Which side of a conversation a role speaks for: the candidate, or staff (as ``Role.AGENT``)."""
    return Role.CANDIDATE if role is Role.CANDIDATE else Role.AGENT


def with_message(conv: Conversation, message: Message) -> Conversation:
    """``conv`` once ``message`` is stored (the inbox's cached copies follow messages without
    reading the conversation again)."""
    return MessageFacts.of(message).apply_to(conv)


@frozen
class MessageFacts:
    """What stored messages add to one conversation's facts: how many they are, the earliest agent
    message among them, the newest one and the newest seq from each side (0: none). Facts of later
    messages merge in with ``plus``, in any order: the higher seq and the earlier time win."""

    count: int
    newest: Message
    first_agent_at: datetime | None = None
    candidate_seq: int = 0
    staff_seq: int = 0

    @classmethod
    def of(cls, message: Message) -> MessageFacts:
        candidate = side_of(message.sender_role) is Role.CANDIDATE
        return cls(1, message, message.created_at if message.sender_role is Role.AGENT else None,
                   message.seq if candidate else 0, 0 if candidate else message.seq)

    def plus(self, other: MessageFacts) -> MessageFacts:
        firsts = [t for t in (self.first_agent_at, other.first_agent_at) if t is not None]
        return MessageFacts(self.count + other.count, max(self.newest, other.newest, key=lambda m: m.seq),
                            min(firsts, default=None), max(self.candidate_seq, other.candidate_seq),
                            max(self.staff_seq, other.staff_seq))

    def apply_to(self, conv: Conversation) -> Conversation:
        """``conv`` with these facts, except the count (analytics reads that from the database)."""
        changes: dict = {}
        if self.newest.seq > conv.last_seq:
            changes.update(last_seq=self.newest.seq, last_message=LastMessage.of(self.newest))
        if self.candidate_seq > conv.last_candidate_seq:
            changes["last_candidate_seq"] = self.candidate_seq
        if self.staff_seq > conv.last_staff_seq:
            changes["last_staff_seq"] = self.staff_seq
        if self.first_agent_at is not None and (conv.first_agent_message_at is None
                                                or self.first_agent_at < conv.first_agent_message_at):
            changes["first_agent_message_at"] = self.first_agent_at
        return evolve(conv, **changes) if changes else conv


def unread(conv: Conversation, viewer: User, watermark: int) -> int:
    """Messages from the other side that ``viewer`` has not read: those after both its read watermark
    and its own side's last message (answering counts as having read what came before). Every message
    after a side's last message is from the other side, so this counts exactly those, without reading
    a message. Staff (agents, supervisors, admins) are one side: an agent's reply clears the badge of
    the supervisor watching too, and a newly assigned agent sees what the candidate wrote since staff
    last answered."""
    own = conv.last_candidate_seq if side_of(viewer.role) is Role.CANDIDATE else conv.last_staff_seq
    return max(0, conv.last_seq - max(watermark, own))


@frozen
class ReadMark:
    """A participant's read watermark in one conversation: it has read every message up to ``seq``."""

    conversation_id: ObjectId
    user_id: ObjectId
    role: Role
    seq: int
    at: datetime = field(factory=utcnow)


@frozen
class TypingSignal:
    """Someone in a conversation is typing (README "Signals"): never stored for long, never a
    message. Only crosses to other processes, through a short-lived collection the change feed
    follows."""

    conversation_id: ObjectId
    user_id: ObjectId
    role: Role
    at: datetime = field(factory=utcnow)


@frozen
class ProcessBeat:
    """A livechat process's presence heartbeat: it counts as alive until ``expires``."""

    process: str
    expires: datetime


@frozen
class Note:
    """A private staff note (README "Signals"): its own collection and ids, never a message seq, so no
    path that serves messages can ever return one."""

    id: ObjectId
    conversation_id: ObjectId
    sender_id: ObjectId
    sender_role: Role
    content: str
    created_at: datetime = field(factory=utcnow)
    client_message_id: str | None = None


@frozen
class SupervisorStats:
    supervisor_id: ObjectId
    supervisor_name: str
    agents: int
    conversations_handled: int


class GroupBy(enum.Enum):
    SUPERVISOR = "supervisor"
    AGENT = "agent"
    DAY = "day"  # UTC calendar days


@frozen
class Distribution:
    """A metric over one group's conversations, in seconds; ``None`` when no conversation has a sample."""

    median: float | None = None
    p90: float | None = None

    @classmethod
    def of(cls, samples: list[float | None]) -> Distribution:
        """Nearest rank: the value at 1-based rank ceil(p·n) of the sorted samples (``None`` is no
        sample). The ranks come from integers — ceil(9n/10) — because a float p picks the wrong
        rank for some n (0.9 × 70 = 63.00000000000001)."""
        present = sorted(s for s in samples if s is not None)
        n = len(present)
        if not n:
            return cls()
        return cls(round(present[-(-n // 2) - 1], 3), round(present[-(-9 * n // 10) - 1], 3))


@frozen
class SummaryRow:
    """One group of ``GET /admin/analytics/summary``: ``key`` is a supervisor or agent id (``None``:
    conversations no agent ever had) or a ``YYYY-MM-DD`` day."""

    key: ObjectId | str | None
    created: int = 0
    closed: int = 0
    messages: int = 0
    first_response: Distribution = Distribution()
    resolution: Distribution = Distribution()
    wait: Distribution = Distribution()
    name: str | None = None

    @property
    def open(self) -> int:
        return self.created - self.closed

    @property
    def messages_per_conversation(self) -> float | None:
        return round(self.messages / self.created, 2) if self.created else None


@frozen
class Routing:
    supervisor_id: ObjectId
    mode: RoutingMode = RoutingMode.MANUAL
    max_concurrent: int = 5


@frozen
class AgentPresence:
    """Where an agent is connected (process → since when) and what it chose."""

    agent_id: ObjectId
    supervisor_id: ObjectId | None
    status: Presence = Presence.AVAILABLE  # the agent's choice while online
    since: datetime = field(factory=utcnow)
    processes: dict[str, datetime] = field(factory=dict)
    version: int = 0  # every write adds one: a late copy from the change feed never undoes a newer one
    # The process that wrote this version: its own change may reach it through the feed before the
    # write's answer does, and it is still its own (it routes for it; the others need not).
    writer: str | None = None

    def effective(self, alive: Callable[[str, datetime], bool]) -> Presence:
        """Its status while any process holding one of its sockets is alive, else offline."""
        return self.status if any(alive(p, since) for p, since in self.processes.items()) else Presence.OFFLINE
