"""Who works for whom: supervisor and agent directories, and the admin's analytics."""

from __future__ import annotations

from bson import ObjectId

from livechat.domain import policy
from livechat.domain.models import Role, SupervisorStats, User
from livechat.domain.policy import Action
from livechat.domain.ports import ConversationRepo, UserRepo


class TeamService:
    def __init__(self, users: UserRepo, conversations: ConversationRepo) -> None:
        self._users = users
        self._conversations = conversations

    async def supervisors(self, user: User, *, after: ObjectId | None, limit: int) -> list[User]:
        policy.ensure_role(user, Action.LIST_SUPERVISORS)
        return await self._users.list_by_role(Role.SUPERVISOR, after=after, limit=limit)

    async def agents(self, user: User, *, after: ObjectId | None, limit: int) -> list[User]:
        """A supervisor sees its own agents; an admin sees all of them."""
        policy.ensure_role(user, Action.LIST_AGENTS)
        team = user.id if user.role is Role.SUPERVISOR else None
        return await self._users.list_by_role(Role.AGENT, supervisor_id=team, after=after, limit=limit)

    async def analytics(self, user: User) -> list[SupervisorStats]:
        policy.ensure_role(user, Action.READ_ANALYTICS)
        return await self._conversations.supervisor_stats()

    async def active_counts(self, agent_ids: list[ObjectId]) -> dict[ObjectId, int]:
        """Open-with-agent plus assigned conversations per agent."""
        counts: dict[ObjectId, int] = {}
        for conv in await self._conversations.active_of(agent_ids) if agent_ids else []:
            counts[conv.agent_id] = counts.get(conv.agent_id, 0) + 1
        return counts
