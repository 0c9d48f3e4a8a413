"""What the services need from the outside world, as Protocols; storage and the hub implement them."""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any, Protocol, TypeVar

from attrs import frozen

from bson import ObjectId

from livechat.domain.events import DomainEvent
from livechat.domain.models import Conversation, ConversationStatus, Message, Role, SupervisorStats, User

T = TypeVar("T")


class UserRepo(Protocol):
    async def insert(self, user: User) -> User: ...
    async def get(self, user_id: ObjectId) -> User | None: ...
    async def by_email(self, email: str) -> User | None: ...
    async def list_by_role(self, role: Role, *, supervisor_id: ObjectId | None = None,
                           after: ObjectId | None = None, limit: int = 100) -> list[User]: ...


class ConversationRepo(Protocol):
    async def insert(self, conv: Conversation) -> Conversation: ...
    async def get(self, conv_id: ObjectId) -> Conversation | None: ...
    async def get_many(self, conv_ids: list[ObjectId]) -> dict[ObjectId, Conversation]: ...
    async def set_agent(self, conv_id: ObjectId, supervisor_id: ObjectId,
                        agent_id: ObjectId) -> Conversation | None: ...
    async def mark_assigned(self, conv_id: ObjectId, agent_id: ObjectId) -> Conversation | None: ...
    async def close(self, conv_id: ObjectId, expected: ConversationStatus, *,
                    agent_id: ObjectId | None = None) -> Conversation | None: ...
    async def list(self, *, scope: dict[str, ObjectId], status: ConversationStatus | None,
                   before: ObjectId | None, limit: int) -> list[Conversation]: ...
    async def supervisor_stats(self) -> list[SupervisorStats]: ...


class DuplicateOf(enum.Enum):
    SEQ = "seq"
    CLIENT_MESSAGE = "clientMessageId"


class MessageRepo(Protocol):
    async def insert_ordered(self, messages: list[Message]) -> tuple[int, DuplicateOf | None]: ...
    async def top_seqs(self, conv_ids: list[ObjectId]) -> dict[ObjectId, int]: ...
    async def by_client_id(self, conv_id: ObjectId, sender_id: ObjectId,
                           client_message_id: str) -> Message | None: ...
    async def page(self, conv_id: ObjectId, *, after_seq: int = 0, limit: int | None = None) -> list[Message]: ...


class WriteSerializer(Protocol):
    """Orders state changes with the message writer (domain/messages.py)."""

    async def exclusive(self, fn: Callable[[], Awaitable[T]]) -> T: ...


class Member(Protocol):
    """One socket, as the services see it: opaque, it only travels inside events (``origin``)."""


class EventPublisher(Protocol):
    """Where the services announce what happened (domain/events.py); realtime/fanout.py listens."""

    def publish(self, event: DomainEvent) -> None: ...


@frozen
class Change:
    """One step of the database's change stream: where it got to, and what another process wrote
    (``None`` when the step brought nothing for us: a quiet period, or our own write)."""

    position: Any  # the resume token
    wall_time: datetime | None = None
    document: Message | Conversation | None = None


class HistoryLost(Exception):
    """The change stream cannot continue from its position (the database forgot that far back)."""


class ChangeSource(Protocol):
    """The database's change stream of messages and conversations, in write order."""

    def changes(self, resume_after: Any | None) -> AbstractAsyncContextManager[AsyncIterator[Change]]: ...
