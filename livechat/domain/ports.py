"""What the services need from the outside world, as Protocols; storage and the hub implement them."""

from __future__ import annotations

from typing import Any, Protocol

from bson import ObjectId

from livechat.domain.models import Role, User


class UserRepo(Protocol):
    async def insert(self, user: User) -> User: ...
    async def get(self, user_id: ObjectId) -> User | None: ...
    async def by_email(self, email: str) -> User | None: ...
    async def list_by_role(self, role: Role, *, supervisor_id: ObjectId | None = None,
                           after: ObjectId | None = None, limit: int = 100) -> list[User]: ...


class EventPublisher(Protocol):
    """Fan-out to the sockets in a conversation's room (realtime/hub.py)."""

    def publish(self, room: ObjectId, event: str, data: dict[str, Any], *,
                exclude: Any = None) -> None: ...
