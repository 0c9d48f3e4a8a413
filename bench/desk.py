"""The ``desk`` scenario: does the support desk's own traffic slow the chat down?

One fresh livechat. Chat runs at the scenario's rate over N conversations three times: alone, then
with the desk online, then alone again. "The desk" is ``desk_agents`` agents in ``desk_teams``
teams, each agent with a socket subscribed to its inbox, each team's supervisor and one admin
subscribed too, the chat team's supervisor subscribed (so every chat message also becomes a
``CONVERSATION_UPDATED`` for it), and every agent toggling away/available once per
``desk_toggle_period`` seconds (a ``PRESENCE`` write, a change-stream event and pushes to its
supervisor and the admin each time). The desk gets ``desk_settle`` seconds to settle after it
comes online. The figure is chat p99 with the desk against the mean of the
two runs without it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import json
import os
import time

import aiohttp

from bench.api import Api, bounded
from bench.procstats import Watch
from bench.scenarios import LOAD_ENV, Bench, progress, window_summary


async def desk(bench: Bench) -> dict:
    p = bench.plan
    server = bench.livechat("livechat-desk", **LOAD_ENV)
    progress("desk: starting a livechat of its own")
    await bench.start(server)
    try:
        api = Api(bench.session, server.base)
        rooms = await api.rooms(p.chat_conversations)
        watch = Watch({"server": server.pid, "database": server.database_pid(), "generator": os.getpid()})
        fleet = await bench.fleet(rooms, watch)
        online = Desk(bench.session, api)
        try:
            progress(f"desk: chat N={p.chat_conversations} at {p.chat_rate:.0f} msgs/s alone")
            before = await fleet.run(p.chat_rate, p.chat_duration, p.drain_timeout)
            progress(f"  p99 {before['latency_ms']['p99']} ms; setting up {p.desk_agents} agents in {p.desk_teams} teams")
            opened = time.perf_counter()
            await online.open(p.desk_agents, p.desk_teams)
            opened = time.perf_counter() - opened
            progress(f"  {online.sockets} desk sockets subscribed in {opened:.1f} s; {p.desk_settle:g} s to settle, "
                     f"then chat again while every agent toggles once per {p.desk_toggle_period:g} s")
            # A desk is online steadily: its arrival (1,000 sign-ins, presence documents and their
            # change-stream events at once) is not what the comparison is about.
            await asyncio.sleep(p.desk_settle)
            with online.toggling(p.desk_agents / p.desk_toggle_period):
                during = await fleet.run(p.chat_rate, p.chat_duration, p.drain_timeout)
            toggles, received = online.toggles, dict(online.received)
            await online.close()
            progress(f"  p99 {during['latency_ms']['p99']} ms; desk closed, chat alone again")
            await asyncio.sleep(p.settle)
            after = await fleet.run(p.chat_rate, p.chat_duration, p.drain_timeout)
            integrity = await fleet.totals(p.drain_timeout)
        finally:
            await online.close()
            await fleet.close()
    finally:
        bench.stop(server)
    return {
        "conversations": p.chat_conversations, "rate": p.chat_rate, "agents_online": p.desk_agents,
        "teams": p.desk_teams, "toggles": toggles, "desk_frames": received, "desk_setup_s": round(opened, 1),
        "settle_s": p.desk_settle,
        "windows": {name: window_summary(w) for name, w in (("alone", before), ("desk", during), ("alone_again", after))},
        "integrity": integrity,
    }


class Desk:
    """The agents, supervisors and admin of the support desk, each with an inbox socket."""

    def __init__(self, session: aiohttp.ClientSession, api: Api) -> None:
        self._session = session
        self._api = api
        self._agents: list[aiohttp.ClientWebSocketResponse] = []
        self._sockets: list[aiohttp.ClientWebSocketResponse] = []
        self._readers: list[asyncio.Task] = []
        self.received: collections.Counter[str] = collections.Counter()
        self.toggles = 0

    @property
    def sockets(self) -> int:
        return len(self._sockets)

    async def open(self, agents: int, teams: int) -> None:
        per_team = -(-agents // teams)
        supervisors = await bounded(16, (self._api.user(f"desk-sup{t}", "supervisor") for t in range(teams)))
        members = await bounded(16, (self._api.user(f"desk-agent{i}", "agent", supervisors[i // per_team][0])
                                     for i in range(agents)))
        _, admin = await self._api.user("desk-admin", "admin")
        watchers = [token for _, token in supervisors] + [admin, self._api.supervisor[1]]
        await bounded(50, (self._subscribe(token, agent=False) for token in watchers))
        await bounded(50, (self._subscribe(token, agent=True) for _, token in members))

    async def _subscribe(self, token: str, *, agent: bool) -> None:
        ws = await self._session.ws_connect(self._api.ws_url(token), autoping=True, heartbeat=None)
        await ws.send_str(json.dumps({"event": "SUBSCRIBE_INBOX", "data": {}}))
        subscribed = asyncio.get_running_loop().create_future()
        self._readers.append(asyncio.create_task(self._read(ws, subscribed)))
        async with asyncio.timeout(30):
            await subscribed
        self._sockets.append(ws)
        if agent:
            self._agents.append(ws)

    async def _read(self, ws: aiohttp.ClientWebSocketResponse, subscribed: asyncio.Future) -> None:
        async for msg in ws:
            if msg.type is aiohttp.WSMsgType.TEXT:
                event = json.loads(msg.data)["event"]
                self.received[event] += 1
                if event == "INBOX_SUBSCRIBED" and not subscribed.done():
                    subscribed.set_result(None)

    @contextlib.contextmanager
    def toggling(self, per_second: float):
        """Agents take turns going away and coming back, ``per_second`` changes in all."""
        task = asyncio.get_running_loop().create_task(self._toggle(per_second))
        try:
            yield
        finally:
            task.cancel()

    async def _toggle(self, per_second: float) -> None:
        started, agents = time.perf_counter(), len(self._agents)
        for i in itertools.count():
            delay = started + i / per_second - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            status = ("away", "available")[(i // agents) % 2]  # every agent away, then every one back
            await self._agents[i % agents].send_str(json.dumps({"event": "SET_PRESENCE", "data": {"status": status}}))
            self.toggles += 1

    async def close(self) -> None:
        sockets, self._sockets, self._agents = self._sockets, [], []
        await bounded(200, (ws.close() for ws in sockets))
        for reader in self._readers:
            reader.cancel()
        await asyncio.gather(*self._readers, return_exceptions=True)
        self._readers = []
