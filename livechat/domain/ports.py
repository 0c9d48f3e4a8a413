"""What the services need from the outside world, as Protocols; storage and the hub implement them."""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

from bson import ObjectId

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
    """One socket, as the services see it: somewhere to send an event."""

    def send(self, event: str, data: dict[str, Any]) -> None: ...


class EventPublisher(Protocol):
    """Fan-out to the sockets in a conversation's room (realtime/hub.py)."""

    def publish(self, room: ObjectId, event: str, data: dict[str, Any], *, exclude: Any = None) -> None: ...

    def evict(self, room: ObjectId, user_id: ObjectId) -> None:
        """Take a user's sockets out of a room (it lost access)."""

    def close_room(self, room: ObjectId, event: str, data: dict[str, Any]) -> None:
        """Tell everyone in the room, then empty it."""
