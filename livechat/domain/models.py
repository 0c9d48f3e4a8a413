"""Domain objects (attrs). No I/O here: storage maps them to documents, the edge to JSON."""

from __future__ import annotations

import enum
from datetime import UTC, datetime

from attrs import field, frozen
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


@frozen
class User:
    id: ObjectId
    name: str
    email: str
    role: Role
    password_hash: str = field(repr=False)
    supervisor_id: ObjectId | None = None
    created_at: datetime = field(factory=utcnow)

    @classmethod
    def new(cls, *, name: str, email: str, role: Role, password_hash: str,
            supervisor_id: ObjectId | None = None) -> User:
        return cls(id=ObjectId(), name=name, email=email, role=role, password_hash=password_hash,
                   supervisor_id=supervisor_id if role is Role.AGENT else None)


@frozen
class Conversation:
    id: ObjectId
    candidate_id: ObjectId
    supervisor_id: ObjectId
    agent_id: ObjectId | None = None
    status: ConversationStatus = ConversationStatus.OPEN
    created_at: datetime = field(factory=utcnow)
    closed_at: datetime | None = None
    # Highest seq allocated to a message of this conversation (CONTRACT.md B.1).
    last_seq: int = 0

    @classmethod
    def new(cls, *, candidate_id: ObjectId, supervisor_id: ObjectId) -> Conversation:
        return cls(id=ObjectId(), candidate_id=candidate_id, supervisor_id=supervisor_id)


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


@frozen
class SupervisorStats:
    supervisor_id: ObjectId
    supervisor_name: str
    agents: int
    conversations_handled: int
