"""Automatic assignment (README "The support desk"): a supervisor in ``auto`` mode has its waiting
conversations (open, no agent) handed out oldest first to its available agents, each up to
``maxConcurrent`` active conversations, the least loaded first and, on a tie, the one assigned
least recently.

Correct under races by construction, whatever the number of processes routing at once: a
conversation is claimed by one conditional update (it must still be open without an agent), and
the claim takes one of the agent's capacity slots 0 … maxConcurrent-1, which a unique index keeps
distinct among the agent's active conversations — so no conversation gets two agents and no agent
gets more than its capacity. A pass that loses a race just re-reads and goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta

from attrs import field, frozen
from bson import ObjectId

from livechat.domain import policy
from livechat.domain.events import ConversationChanged, ConversationClosed, DomainEvent, PresenceChanged
from livechat.domain.models import ConversationStatus, Presence, Role, Routing, RoutingMode, User, utcnow
from livechat.domain.policy import Action
from livechat.domain.ports import ConversationRepo, EventPublisher, RoutingRepo, UserRepo
from livechat.domain.presence import PresenceService
from livechat.errors import DomainError, NotFound

log = logging.getLogger(__name__)

MAX_CONCURRENT = 50
PASS_LIMIT = 500  # waiting conversations looked at per pass; a pass that fills them all runs again


def _capacity(instance: object, attribute: object, value: int) -> None:
    if not 1 <= value <= MAX_CONCURRENT:
        raise ValueError(f"maxConcurrent: 1-{MAX_CONCURRENT}")


@frozen
class RoutingUpdate:
    mode: RoutingMode
    max_concurrent: int = field(default=5, validator=_capacity)


class RoutingService:
    def __init__(self, routing: RoutingRepo, conversations: ConversationRepo, users: UserRepo,
                 presence: PresenceService, events: EventPublisher, *, requeue_after: float,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self._routing = routing
        self._conversations = conversations
        self._users = users
        self._presence = presence
        self._events = events
        self._requeue_after = timedelta(seconds=requeue_after)
        self._clock = clock
        self._modes: dict[ObjectId, Routing] = {}  # every supervisor in auto mode, kept by the feed
        self._locks: dict[ObjectId, asyncio.Lock] = {}
        self._again: set[ObjectId] = set()
        self._offline_since: dict[ObjectId, datetime] = {}
        self._tasks: set[asyncio.Task] = set()

    # --- settings (GET|PUT /supervisors/:id/routing) -------------------------------------------

    async def settings(self, user: User, supervisor_id: ObjectId) -> Routing:
        policy.ensure_role(user, Action.READ_ROUTING)
        policy.ensure_manages(user, await self._supervisor(supervisor_id))
        return await self._routing.get(supervisor_id)

    async def change(self, user: User, supervisor_id: ObjectId, update: RoutingUpdate) -> Routing:
        policy.ensure_role(user, Action.CHANGE_ROUTING)
        policy.ensure_manages(user, await self._supervisor(supervisor_id))
        routing = await self._routing.put(Routing(supervisor_id, update.mode, update.max_concurrent))
        self.apply(routing)
        self.route_soon(supervisor_id)
        return routing

    async def _supervisor(self, supervisor_id: ObjectId) -> ObjectId:
        supervisor = await self._users.get(supervisor_id)
        if supervisor is None or supervisor.role is not Role.SUPERVISOR:
            raise NotFound("Supervisor not found")
        return supervisor.id

    def apply(self, routing: Routing) -> None:
        """A supervisor's settings as they now are (ours, or another process's through the feed)."""
        if routing.mode is RoutingMode.AUTO:
            self._modes[routing.supervisor_id] = routing
        else:
            self._modes.pop(routing.supervisor_id, None)

    def is_auto(self, supervisor_id: ObjectId) -> bool:
        return supervisor_id in self._modes

    # --- when to route ----------------------------------------------------------------------------

    def on_event(self, event: DomainEvent) -> None:
        """Route when work arrives or capacity frees up — for changes made on this process (each
        process routes for its own changes; the others hear of them and need not)."""
        match event:
            case ConversationChanged(conversation=conv) | ConversationClosed(conversation=conv):
                self.route_soon(conv.supervisor_id)
            case PresenceChanged(agent_id=agent, supervisor_id=supervisor, status=status, local=local):
                if status is Presence.OFFLINE:
                    self._offline_since[agent] = self._clock()
                else:
                    self._offline_since.pop(agent, None)
                if supervisor is not None and (local or status is Presence.OFFLINE):
                    self.route_soon(supervisor)

    def route_soon(self, supervisor_id: ObjectId) -> None:
        if supervisor_id not in self._modes:
            return
        lock = self._locks.setdefault(supervisor_id, asyncio.Lock())
        if lock.locked():  # a pass is running: it runs once more when done
            self._again.add(supervisor_id)
            return
        task = asyncio.get_running_loop().create_task(self._route(supervisor_id), name=f"route-{supervisor_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _route(self, supervisor_id: ObjectId) -> None:
        lock = self._locks[supervisor_id]
        async with lock:
            while True:
                self._again.discard(supervisor_id)
                try:
                    await self.route(supervisor_id)
                except DomainError as exc:
                    log.warning("routing for supervisor %s failed (%s)", supervisor_id, exc.message)
                if supervisor_id not in self._again:
                    return

    # --- one pass ---------------------------------------------------------------------------------

    async def route(self, supervisor_id: ObjectId) -> int:
        """Assign what can be assigned now; how many were."""
        routing = self._modes.get(supervisor_id)
        if routing is None:
            return 0
        agents = self._presence.available(supervisor_id)
        if not agents:
            return 0
        active = await self._conversations.active_of(agents)
        slots: dict[ObjectId, set[int]] = {agent: set() for agent in agents}
        load = dict.fromkeys(agents, 0)
        last: dict[ObjectId, datetime] = {}
        for conv in active:
            load[conv.agent_id] += 1
            if conv.routing_slot is not None:
                slots[conv.agent_id].add(conv.routing_slot)
        for conv in active:
            for entry in conv.assignments:
                if entry.agent_id in last and entry.at <= last[entry.agent_id]:
                    continue
                if entry.agent_id is not None and entry.agent_id in load:
                    last[entry.agent_id] = entry.at
        free = sum(max(0, routing.max_concurrent - n) for n in load.values())
        if free == 0:
            return 0
        assigned = 0
        epoch = datetime.min.replace(tzinfo=self._clock().tzinfo)
        for conv in await self._conversations.waiting(supervisor_id, min(free, PASS_LIMIT)):
            while True:
                candidates = [a for a in agents if load[a] < routing.max_concurrent]
                if not candidates:
                    return assigned
                agent = min(candidates, key=lambda a: (load[a], last.get(a, epoch), str(a)))
                slot = min(set(range(routing.max_concurrent)) - slots[agent])
                claimed = await self._conversations.claim(conv.id, agent, slot, self._clock())
                if claimed is False:  # another process took that slot meanwhile: count it and retry
                    slots[agent].add(slot)
                    load[agent] += 1
                    continue
                if claimed is not None:
                    slots[agent].add(slot)
                    load[agent] += 1
                    last[agent] = self._clock()
                    assigned += 1
                    self._events.publish(ConversationChanged(claimed))
                break  # claimed, or no longer waiting
        return assigned

    # --- requeue ----------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def running(self, sweep_every: float) -> AsyncIterator[None]:
        for routing in await self._routing.all():
            self.apply(routing)
        task = asyncio.create_task(self._sweep_loop(sweep_every), name="routing-requeue")
        try:
            yield
        finally:
            task.cancel()
            for t in list(self._tasks):
                t.cancel()
            await asyncio.gather(task, *self._tasks, return_exceptions=True)

    async def _sweep_loop(self, every: float) -> None:
        while True:
            await asyncio.sleep(every)
            try:
                await self.requeue_stale()
            except DomainError as exc:
                log.warning("requeue sweep failed (%s)", exc.message)

    async def requeue_stale(self) -> int:
        """Put back in the queue every ``open`` conversation of an auto team whose agent has been
        offline for ``requeue_after`` without joining it."""
        if not self._modes:
            return 0
        now, count = self._clock(), 0
        for conv in await self._conversations.waiting_for_agent(list(self._modes)):
            status, _ = self._presence.of(conv.agent_id)
            if status is not Presence.OFFLINE:
                continue
            assigned_at = conv.assignments[-1].at if conv.assignments else conv.created_at
            gone_since = max(self._offline_since.get(conv.agent_id, assigned_at), assigned_at)
            if now - gone_since < self._requeue_after:
                continue
            requeued = await self._conversations.requeue(conv.id, conv.agent_id, now)
            if requeued is not None:
                count += 1
                log.info("conversation %s back in the queue: agent %s offline", conv.id, conv.agent_id)
                self._events.publish(ConversationChanged(requeued))
        return count

    def queue_supervisors(self) -> list[ObjectId]:
        return list(self._modes)


def is_waiting(status: ConversationStatus, agent_id: ObjectId | None) -> bool:
    return status is ConversationStatus.OPEN and agent_id is None
