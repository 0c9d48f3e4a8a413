"""Conversation rules: create, assign, view, close, list, history — shared by REST and WebSocket.

Every method checks in the contract's order (docs/openapi.json, info): role (403) → the request was
already parsed by the edge (400) → existence (404) → relationship (403) → state (400/409).
State changes are single conditional updates in storage, so a race can only ever lose cleanly.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import datetime

from attrs import frozen
from bson import ObjectId

from livechat.domain import policy
from livechat.domain.events import ConversationClosed, ConversationChanged, MemberEvicted
from livechat.domain.models import Conversation, ConversationStatus, Message, Role, User, utcnow
from livechat.domain.policy import Action
from livechat.domain.ports import ConversationRepo, EventPublisher, MessageRepo, UserRepo, WriteSerializer
from livechat.errors import ALREADY_CLOSED, Forbidden, InvalidInput, InvalidState, NotFound

NOT_OPEN = "Conversation is not open"
NOT_SAME_TEAM = "Agent doesn't belong to this supervisor"
NOT_YET_ASSIGNED = "Conversation not yet assigned"
REPLAY_PAGE = 500


@frozen
class CreateConversation:
    supervisor_id: ObjectId


@frozen
class AssignAgent:
    agent_id: ObjectId


@frozen
class Page:
    messages: list[Message]
    next_after_seq: int | None


class ConversationService:
    def __init__(self, conversations: ConversationRepo, users: UserRepo, messages: MessageRepo,
                 events: EventPublisher, writes: WriteSerializer, clock: Callable[[], datetime] = utcnow) -> None:
        self._conversations = conversations
        self._users = users
        self._messages = messages
        self._events = events
        self._writes = writes
        self._clock = clock  # when things happen: creation, assignment and close times are analytics facts

    async def load_authorized(self, user: User, action: Action, conv_id: ObjectId) -> Conversation:
        """The conversation, if ``user`` may do ``action`` on it (404/403 otherwise)."""
        policy.ensure_role(user, action)
        conv = await self._conversations.get(conv_id)
        if conv is None:
            raise policy.unknown_conversation_error(action) or NotFound("Conversation not found")
        policy.ensure_access(user, action, conv)
        return conv

    async def create(self, user: User, req: CreateConversation) -> Conversation:
        policy.ensure_role(user, Action.CREATE_CONVERSATION)
        supervisor = await self._users.get(req.supervisor_id)
        if supervisor is None:
            raise NotFound("Supervisor not found")
        if supervisor.role is not Role.SUPERVISOR:
            raise InvalidInput("Invalid supervisor role")
        conv = await self._conversations.insert(Conversation.new(candidate_id=user.id, supervisor_id=supervisor.id,
                                                                 created_at=self._clock()))
        self._events.publish(ConversationChanged(conv))
        return conv

    async def assign(self, user: User, conv_id: ObjectId, req: AssignAgent) -> Conversation:
        conv, agent = await self._open_and_agent(user, Action.ASSIGN, conv_id, req)
        if agent.supervisor_id != user.id:
            raise Forbidden("Agent doesn't belong to you")
        return await self._hand_over(user, conv, agent.id)

    async def transfer(self, user: User, conv_id: ObjectId, req: AssignAgent) -> Conversation:
        """Hand an active conversation to another agent of the same supervisor: its assigned agent,
        the owning supervisor or an admin may. The status stays; the previous agent leaves the room."""
        conv, agent = await self._open_and_agent(user, Action.TRANSFER, conv_id, req)
        if agent.supervisor_id != conv.supervisor_id:
            raise Forbidden(NOT_SAME_TEAM)
        if agent.id == conv.agent_id:
            return conv
        # An agent may hand over only what is still its own when the write lands.
        condition = {"current_agent": conv.agent_id} if user.role is Role.AGENT else {}
        return await self._hand_over(user, conv, agent.id, **condition)

    async def transfer_targets(self, user: User, conv_id: ObjectId, *, after: ObjectId | None,
                               limit: int) -> list[User]:
        """The agents ``user`` may hand the conversation to: the other agents of its team, for
        whoever may transfer it (an agent cannot list its team otherwise)."""
        conv = await self.load_authorized(user, Action.TRANSFER, conv_id)
        agents = await self._users.list_by_role(Role.AGENT, supervisor_id=conv.supervisor_id, after=after,
                                                limit=limit + 1)
        others = [a for a in agents if a.id != conv.agent_id]
        return others[:limit]

    async def _open_and_agent(self, user: User, action: Action, conv_id: ObjectId,
                              req: AssignAgent) -> tuple[Conversation, User]:
        """The conversation ``user`` may ``action`` (not closed) and the agent ``req`` names."""
        conv = await self.load_authorized(user, action, conv_id)
        if conv.status is ConversationStatus.CLOSED:
            raise InvalidState(ALREADY_CLOSED)
        agent = await self._users.get(req.agent_id)
        if agent is None:
            raise NotFound("Agent not found")
        if agent.role is not Role.AGENT:
            raise InvalidInput("Invalid agent role")
        return conv, agent

    async def _hand_over(self, user: User, conv: Conversation, agent_id: ObjectId, **condition: object) -> Conversation:
        updated = await self._conversations.set_agent(conv.id, conv.supervisor_id, agent_id, by=user.id,
                                                      at=self._clock(), **condition)
        if updated is None:  # closed (or handed over) between our read and our write
            fresh = await self._conversations.get(conv.id)
            if fresh is not None and fresh.status is not ConversationStatus.CLOSED:
                raise Forbidden(policy.RULES[Action.TRANSFER].access_error)
            raise InvalidState(ALREADY_CLOSED)
        if conv.agent_id is not None and conv.agent_id != agent_id:
            self._events.publish(MemberEvicted(conv.id, conv.agent_id))  # the previous agent loses access at once
        self._events.publish(ConversationChanged(updated))
        return updated

    async def names(self, convs: list[Conversation]) -> dict[ObjectId, str]:
        """The names of the candidates and agents of ``convs``, in one read."""
        ids = {c.candidate_id for c in convs} | {c.agent_id for c in convs if c.agent_id is not None}
        return await self._users.names(list(ids)) if ids else {}

    async def get(self, user: User, conv_id: ObjectId) -> tuple[Conversation, list[Message]]:
        conv = await self.load_authorized(user, Action.VIEW, conv_id)
        return conv, await self._messages.page(conv.id)

    async def history(self, user: User, conv_id: ObjectId, *, after_seq: int, limit: int) -> Page:
        conv = await self.load_authorized(user, Action.VIEW, conv_id)
        messages = await self._messages.page(conv.id, after_seq=after_seq, limit=limit)
        return Page(messages, messages[-1].seq if len(messages) == limit else None)

    async def close_over_http(self, user: User, conv_id: ObjectId) -> Conversation:
        """Admin or owning supervisor; only ``open`` conversations (assigned ones close in chat)."""
        return await self._close(user, Action.CLOSE_OVER_HTTP, conv_id, ConversationStatus.OPEN, NOT_OPEN)

    async def close_in_chat(self, user: User, conv_id: ObjectId) -> Conversation:
        """The assigned agent closes an ``assigned`` conversation (WebSocket CLOSE_CONVERSATION)."""
        return await self._close(user, Action.CLOSE_IN_CHAT, conv_id, ConversationStatus.ASSIGNED,
                                 NOT_YET_ASSIGNED, agent_id=user.id)

    async def _close(self, user: User, action: Action, conv_id: ObjectId, expected: ConversationStatus,
                     wrong_state: str, *, agent_id: ObjectId | None = None) -> Conversation:
        conv = await self.load_authorized(user, action, conv_id)
        _ensure_status(conv, expected, wrong_state)

        async def close_between_batches() -> Conversation | None:
            closed = await self._conversations.close(conv.id, expected, at=self._clock(), agent_id=agent_id)
            if closed is not None:
                self._events.publish(ConversationClosed(closed))
            return closed

        closed = await self._writes.exclusive(close_between_batches)
        if closed is None:  # lost a race (closed or reassigned meanwhile): say what won
            conv = await self.load_authorized(user, action, conv_id)
            _ensure_status(conv, expected, wrong_state)
            raise InvalidState(ALREADY_CLOSED)
        return closed

    async def join(self, user: User, conv_id: ObjectId) -> Conversation:
        """May ``user`` be in the room? The assigned agent's first join moves open → assigned."""
        conv = await self.load_authorized(user, Action.JOIN, conv_id)
        if conv.status is ConversationStatus.CLOSED:
            raise InvalidState(ALREADY_CLOSED)
        if user.role is Role.AGENT and conv.status is ConversationStatus.OPEN:
            assigned = await self._conversations.mark_assigned(conv.id, user.id)
            if assigned is not None:
                self._events.publish(ConversationChanged(assigned))
            conv = assigned or await self.load_authorized(user, Action.JOIN, conv_id)
            if conv.status is ConversationStatus.CLOSED:
                raise InvalidState(ALREADY_CLOSED)
        return conv

    async def top_seq(self, conv: Conversation) -> int:
        """The highest stored seq (0: no message yet) — what a resuming client is told."""
        return (await self._messages.top_seqs([conv.id])).get(conv.id, 0)

    async def replay(self, conv: Conversation, *, after_seq: int, up_to: int) -> AsyncIterator[Message]:
        """The messages a resuming client missed, ``after_seq < seq <= up_to``, oldest first, a page
        at a time (the consumer sets the pace)."""
        while after_seq < up_to:
            page = await self._messages.page(conv.id, after_seq=after_seq, limit=REPLAY_PAGE)
            for message in page:
                if message.seq > up_to:
                    return
                yield message
            if len(page) < REPLAY_PAGE:
                return
            after_seq = page[-1].seq

    async def list(self, user: User, *, status: ConversationStatus | None, before: ObjectId | None,
                   limit: int) -> list[Conversation]:
        policy.ensure_role(user, Action.LIST_CONVERSATIONS)
        return await self._conversations.list(scope=policy.listing_scope(user), status=status,
                                              before=before, limit=limit)


def _ensure_status(conv: Conversation, expected: ConversationStatus, wrong_state: str) -> None:
    if conv.status is ConversationStatus.CLOSED:
        raise InvalidState(ALREADY_CLOSED)
    if conv.status is not expected:
        raise InvalidState(wrong_state)
