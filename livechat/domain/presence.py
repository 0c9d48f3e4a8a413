"""Agent presence (README "The support desk"): offline with no socket anywhere, else the status it chose.

Each process counts its own sockets per agent and holds a claim on the agent's presence document
(``processes.<process id>`` = since when) while it has one. Claims do not expire one by one: each
process renews one heartbeat document every ``renew_every`` seconds, and a claim counts while its
process's heartbeat does — so renewing costs one write per process however many agents it serves,
and a process that dies without a word (``kill -9``) leaves its agents online for at most ``ttl``
(plus one renewal, when another process notices and removes its claims). Every process keeps a view of every agent's document — loaded at start,
then kept current by the change feed — and derives the effective presence from it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta

from bson import ObjectId

from livechat.domain import policy
from livechat.domain.events import PresenceChanged
from livechat.domain.models import AgentPresence, Presence, ProcessBeat, Role, User, utcnow
from livechat.domain.policy import Action
from livechat.domain.ports import EventPublisher, PresenceRepo
from livechat.errors import DomainError, InvalidInput

log = logging.getLogger(__name__)

SHUTDOWN_WAIT = 5.0  # seconds a stopping process gives its last claim releases (else they expire)


class PresenceService:
    def __init__(self, repo: PresenceRepo, events: EventPublisher, *, process: str, ttl: float,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self._repo = repo
        self._events = events
        self._process = process
        self._ttl = timedelta(seconds=ttl)
        self.renew_every = ttl / 3
        self._clock = clock
        self._view: dict[ObjectId, AgentPresence] = {}
        self._effective: dict[ObjectId, tuple[Presence, datetime]] = {}
        self._sockets: collections.Counter[ObjectId] = collections.Counter()
        self._claimed: set[ObjectId] = set()  # agents whose document holds our claim
        self._heartbeats: dict[str, datetime] = {}  # process → when it counts as dead, as last read
        self._settling: set[asyncio.Future[None]] = set()
        self._lock = asyncio.Lock()  # our writes to presence documents never interleave

    # --- what the others ask ---------------------------------------------------------------------

    def of(self, agent_id: ObjectId) -> tuple[Presence, datetime | None]:
        return self._effective.get(agent_id, (Presence.OFFLINE, None))

    def available(self, supervisor_id: ObjectId) -> list[ObjectId]:
        return [agent for agent, doc in self._view.items()
                if doc.supervisor_id == supervisor_id and self.of(agent)[0] is Presence.AVAILABLE]

    def others_alive(self) -> bool:
        """Whether another livechat process's heartbeat is fresh (as last read, or heard since)."""
        now = self._clock()
        return any(expires > now for process, expires in self._heartbeats.items() if process != self._process)

    def visible_to(self, user: User) -> list[tuple[ObjectId, Presence, datetime | None]]:
        """Every agent ``user`` may see the presence of (its own team; admins all) that is online."""
        return [(agent, *self.of(agent)) for agent, doc in self._view.items()
                if policy.sees_agent(user, doc.supervisor_id) and self.of(agent)[0] is not Presence.OFFLINE]

    # --- this process's sockets ------------------------------------------------------------------

    async def connected(self, user: User) -> None:
        if user.role is Role.AGENT:
            self._sockets[user.id] += 1
            await self._settle(user)

    async def disconnected(self, user: User) -> None:
        if user.role is Role.AGENT:
            self._sockets[user.id] -= 1
            if self._sockets[user.id] <= 0:
                del self._sockets[user.id]
            await self._settle(user)

    async def _settle(self, user: User) -> None:
        """Bring our claim on ``user``'s document in line with our socket count. It runs to the
        end even if the socket's handler is cancelled meanwhile (a client that drops the
        connection): an abandoned write would leave the agent online until its claim expires."""
        task = asyncio.ensure_future(self._reconcile(user))
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)
        await asyncio.shield(task)

    async def _reconcile(self, user: User) -> None:
        async with self._lock:
            wanted = user.id in self._sockets
            if wanted == (user.id in self._claimed):
                return
            now = self._clock()
            try:
                if wanted:
                    doc = await self._repo.connect(user.id, user.supervisor_id, self._process, now, self._alive)
                    self._claimed.add(user.id)
                else:
                    self._claimed.discard(user.id)  # whatever happens next, the claim is not renewed
                    await self._repo.disconnect(user.id, self._process)
                    doc = self._view.get(user.id)
                    if doc is None:
                        return
                    doc = AgentPresence(doc.agent_id, doc.supervisor_id, doc.status, doc.since,
                                        {p: e for p, e in doc.processes.items() if p != self._process},
                                        doc.version + 1, writer=self._process)
            except DomainError:  # the database is away: the socket still works, a claim simply expires
                log.warning("presence of agent %s not recorded (database unavailable)", user.id)
                return
            self.apply(doc)

    async def set_status(self, user: User, status_text: object) -> None:
        policy.ensure_role(user, Action.SET_PRESENCE)
        if status_text not in (Presence.AVAILABLE.value, Presence.AWAY.value):
            raise InvalidInput()
        self.apply(await self._repo.set_status(user.id, Presence(status_text), self._clock(), self._process))

    # --- the view --------------------------------------------------------------------------------

    def apply(self, doc: AgentPresence) -> None:
        """A presence document as it now is (from our write, or through the feed)."""
        known = self._view.get(doc.agent_id)
        if known is not None and known.version > doc.version:
            return
        self._view[doc.agent_id] = doc
        self._recompute(doc.agent_id, local=doc.writer == self._process)

    def heard_beat(self, beat: ProcessBeat) -> None:
        """Another process renewed its heartbeat (the change feed tells us between our own reads)."""
        if beat.process != self._process:
            self._heartbeats[beat.process] = beat.expires

    def _alive(self, process: str, claimed_at: datetime) -> bool:
        """Whether a claim counts: ours always; another process's while its heartbeat is fresh —
        or, for a process whose heartbeat we have not read yet (it just started), for one ``ttl``."""
        if process == self._process:
            return True
        expires = self._heartbeats.get(process)
        return (expires if expires is not None else claimed_at + self._ttl) > self._clock()

    def _recompute(self, agent_id: ObjectId, local: bool) -> None:
        doc = self._view[agent_id]
        now = self._clock()
        status = doc.effective(self._alive)
        before = self._effective.get(agent_id)
        if before is not None and before[0] is status:
            return
        if before is None and status is Presence.OFFLINE:
            self._effective[agent_id] = (status, now)
            return
        since = doc.since if status is not Presence.OFFLINE else now
        self._effective[agent_id] = (status, since)
        self._events.publish(PresenceChanged(agent_id, doc.supervisor_id, status, since, local=local))

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Beat once, load every agent's document, then beat and clear dead processes' claims until
        we stop."""
        await self._beat()
        for doc in await self._repo.all():
            self.apply(doc)
        task = asyncio.create_task(self._renew_loop(), name="presence-renewal")
        try:
            yield
        finally:
            if self._settling:  # sockets that closed during shutdown release their claims first
                await asyncio.wait(self._settling, timeout=SHUTDOWN_WAIT)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _beat(self) -> None:
        now = self._clock()
        self._heartbeats = await self._repo.beat(self._process, now + self._ttl)
        for process, expires in self._heartbeats.items():
            if expires <= now and process != self._process:
                log.info("process %s stopped renewing its heartbeat: its agents' claims go", process)
                await self._repo.forget_process(process, by=self._process)

    async def _renew_loop(self) -> None:
        while True:
            await asyncio.sleep(self.renew_every)
            try:
                await self._beat()
            except DomainError:
                log.warning("presence renewal failed (database unavailable); retrying")
            for agent_id in list(self._view):
                self._recompute(agent_id, local=False)
