"""The six scenarios. Each returns one dict (one JSON line); ``Bench`` owns the servers they share.

Servers started here (all on 127.0.0.1, each with a fresh temporary data directory):

* the **load server** (chat, capacity, limits (a)): bcrypt cost 4 so that setting up a thousand
  accounts takes seconds, and the per-socket flood limit lifted (``LIVECHAT_WS_RATE_BURST`` and
  ``LIVECHAT_WS_RATE_PER_SECOND`` = 1,000,000) because these scenarios measure capacity, not abuse
  handling — a benchmark socket sends far more than the 20 messages/s a person could;
* the **minimal server** (limits (b)): ``python -m bench.minimal_server``;
* a fresh livechat for **connections** (heartbeat every few seconds, so its cost shows), so that
  its memory baseline is not the chat scenarios' leftovers; default socket limits (20 per user:
  the sockets belong to many users);
* a fresh livechat for **logins** at the production bcrypt cost (12), default settings otherwise;
* one fresh livechat per **start-up** measurement.
"""

from __future__ import annotations

import asyncio
import math
import os
import statistics
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Self

import aiohttp

from bench import database, procstats
from bench.api import PASSWORD, Api, Room, bounded, minimal_rooms
from bench.loadgen import Fleet, percentiles
from bench.metrics_cost import metrics_us_per_message
from bench.procstats import CORES, Watch, generator_gc_paused, measure
from bench.servers import ServerProcess, livechat_server, minimal_server

LOAD_ENV = {"LIVECHAT_WS_RATE_BURST": "1000000", "LIVECHAT_WS_RATE_PER_SECOND": "1000000"}
GOOD_P99_MS = 50.0  # a capacity step is good while p99 stays under this
SOCKETS_PER_USER = 20  # livechat's default ws.max_sockets_per_user


@dataclass(frozen=True)
class Plan:
    chat_conversations: int = 100
    chat_rate: float = 200.0
    chat_duration: float = 30.0
    capacity_ns: tuple[int, ...] = (10, 100, 1000)
    start_rate: float = 100.0
    max_rate: float = 50_000.0
    min_rate: float = 10.0
    step_duration: float = 5.0
    refine_steps: int = 2
    quarter_duration: float = 10.0
    drain_timeout: float = 10.0
    settle: float = 0.5
    db_batches: tuple[int, ...] = (1, 16, 128, 512)
    db_seconds: float = 3.0
    minimal_ns: tuple[int, ...] = (10, 100, 1000)
    sockets: int = 5000
    heartbeat: float = 5.0
    idle_seconds: float = 20.0
    logins: int = 200
    login_users: int = 40
    login_rounds: int = 12
    enumeration_pairs: int = 12  # wrong-password logins of a known and of an unknown email, each
    startups: int = 3
    desk_agents: int = 1000
    desk_teams: int = 20
    desk_toggle_period: float = 30.0
    desk_settle: float = 15.0
    analytics_requests: int = 20
    typing_conversations: int = 1000  # both sockets of each type steadily (~1 forwarded/s per conversation)
    typing_chat_rate: float = 50.0  # msgs/s of the chat beside the typing: below the knee at N=1,000


FULL = Plan()
QUICK = Plan(chat_conversations=20, chat_rate=100.0, chat_duration=5.0, capacity_ns=(10, 100), step_duration=1.5,
             refine_steps=1, quarter_duration=2.0, drain_timeout=5.0, settle=0.3, db_batches=(1, 16, 128),
             db_seconds=1.0, minimal_ns=(100,), sockets=1000, idle_seconds=10.0, logins=30, login_users=6,
             startups=1, desk_agents=200, desk_teams=5, desk_settle=3.0, analytics_requests=8,
             typing_conversations=100)


def progress(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def verdict(step: dict) -> str | None:
    """Why a capacity step is not good (``None``: good)."""
    reasons = []
    if step["achieved_rate"] < 0.95 * step["rate"]:
        reasons.append(f"generator sent only {step['achieved_rate']:.0f}/s")
    if step["delivered"] < step["sent"]:
        reasons.append(f"delivered {step['delivered']}/{step['sent']}")
    bad = {k: step[k] for k in ("duplicated", "out_of_order", "seq_gaps", "misrouted", "seq_mismatch",
                                "disconnects") if step[k]}
    if bad:
        reasons.append(", ".join(f"{k} {v}" for k, v in bad.items()))
    p99 = step["latency_ms"]["p99"]
    if p99 is None or p99 > GOOD_P99_MS:
        reasons.append(f"p99 {p99} ms > {GOOD_P99_MS:.0f}")
    return "; ".join(reasons) or None


def window_summary(window: dict) -> dict:
    """A chat window's figures, for scenarios that compare windows (desk, typing)."""
    res = window["resources"]
    return {"sent": window["sent"], "delivered": window["delivered"], "lost": window["lost"],
            "duplicated": window["duplicated"], "out_of_order": window["out_of_order"],
            "latency_ms": window["latency_ms"], "cpu_s": res.get("cpu_s"), "bound": bound_of(res)}


def bound_of(resources: dict | None) -> str:
    """What ran out during a window: a process's single event loop (≥ 0.85 core), the whole
    machine's CPU (≥ 90% of all cores, counting other people's work), or neither (waiting)."""
    cores = (resources or {}).get("cores") or {}
    procs = {k: v for k, v in cores.items() if k != "other" and v is not None}
    if not procs.keys() - {"generator"}:
        return "unknown (--base: the server's process is not watched)"
    other = cores.get("other") or 0.0
    total = sum(procs.values()) + other
    detail = " ".join(f"{k} {v:.2f}" for k, v in procs.items()) + f" other {other:.2f}"
    saturated = [k for k, v in sorted(procs.items(), key=lambda kv: -kv[1]) if v >= 0.85]
    heads = [f"{' + '.join(saturated)} CPU (a full core each)"] if saturated else []
    if total >= 0.9 * CORES:
        heads.append(f"machine CPU ({total:.2f}/{CORES} cores busy)")
    if not heads:
        busiest = max(procs, key=procs.get)
        heads.append(f"no CPU saturated (busiest: {busiest} {procs[busiest]:.2f} core)")
    return f"{' and '.join(heads)}; cores: {detail}"


def compact(step: dict) -> dict:
    """A capacity step as it appears in the JSON line."""
    keys = ("rate", "achieved_rate", "sent", "delivered", "lost", "refused", "duplicated", "out_of_order",
            "seq_gaps", "disconnects", "latency_ms", "ack_latency_ms", "db_insert_batch_avg", "verdict")
    out = {k: step[k] for k in keys if k in step}
    out["cores"] = step["resources"].get("cores")
    return out


class Bench:
    def __init__(self, plan: Plan, workdir: Path, base: str | None, overrides: dict[str, Any],
                 server_env: dict[str, str] | None = None) -> None:
        self.plan = replace(plan, **{k: v for k, v in overrides.items() if v is not None})
        self.workdir = workdir
        self.base = base
        self.server_env = server_env or {}  # --server-env: applied to every livechat we start
        self.results: dict[str, dict] = {}
        self.session: aiohttp.ClientSession | None = None
        self.servers: list[ServerProcess] = []
        self._load: dict[str, Any] | None = None  # the load server: base, watch, rooms, probe

    async def __aenter__(self) -> Self:
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                             timeout=aiohttp.ClientTimeout(total=120))
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop_load_server()
        for server in self.servers:
            server.stop()
        await self.session.close()

    # --- servers --------------------------------------------------------------------------------

    async def start(self, server: ServerProcess) -> float:
        self.servers.append(server)
        server.start()
        return await server.wait_ready()

    def stop(self, server: ServerProcess) -> None:
        server.stop()
        if server in self.servers:
            self.servers.remove(server)

    def livechat(self, name: str, **env: str) -> ServerProcess:
        return livechat_server(self.workdir, name, **{**self.server_env, **env})

    def pool_size(self) -> int:
        return max(self.plan.chat_conversations, self.plan.typing_conversations, *self.plan.capacity_ns)

    async def load_target(self) -> dict[str, Any]:
        """The livechat that chat/capacity/limits share, with ``pool_size`` conversations set up."""
        if self._load is not None:
            return self._load
        target: dict[str, Any] = {"server": None, "mongo": None, "probe": None}
        if self.base:
            target["base"] = self.base
            target["watch"] = Watch({"generator": os.getpid()})
        else:
            server = self.livechat("livechat", **LOAD_ENV)
            progress("starting the load server (livechat + embedded SecantusDB)")
            await self.start(server)
            target.update(base=server.base, server=server,
                          watch=Watch({"server": server.pid, "database": server.database_pid(),
                                       "generator": os.getpid()}))
            port = server.database_port()
            if port:
                uri = database.livechat_uri(port)
                target["driver"] = self.server_env.get("LIVECHAT_DATABASE_DRIVER") or database.configured_driver()
                target["mongo_cm"] = database.client(uri, target["driver"])
                target["mongo"] = await target["mongo_cm"].__aenter__()
                target["counters"] = database.Counters(target["mongo"])
                target["probe"] = target["counters"].inserts
                target["uri"] = uri
        count = self.pool_size()
        progress(f"creating {count} conversations through the API (bcrypt cost 4 for setup speed)")
        started = time.perf_counter()
        target["rooms"] = await Api(self.session, target["base"]).rooms(count)
        target["setup_s"] = round(time.perf_counter() - started, 1)
        progress(f"  set up in {target['setup_s']} s")
        self._load = target
        return target

    async def stop_load_server(self) -> None:
        if self._load is None:
            return
        if self._load.get("mongo_cm"):
            await self._load["mongo_cm"].__aexit__(None, None, None)
        if self._load["server"] is not None:
            self.stop(self._load["server"])
        self._load = None

    # --- knee search (livechat and the minimal server alike) -----------------------------------

    async def knee(self, fleet: Fleet, label: str) -> dict:
        """Double the rate until a step is not good, then bisect ``refine_steps`` times; then hold
        a quarter of the knee for ``quarter_duration``. A step that is not good is run once more
        and counts as good if the repeat is: on a shared machine one scheduling hiccup of another
        process can put a 5-second window's p99 over the limit (both attempts are in the JSON)."""
        p = self.plan
        steps: list[dict] = []

        async def attempt(rate: float, duration: float, n: int) -> bool:
            step = await fleet.run(rate, duration, p.drain_timeout)
            step["verdict"] = verdict(step)
            step["attempt"] = n
            steps.append(step)
            lat = step["latency_ms"]
            progress(f"  {label} N={len(fleet.rooms)} {rate:.0f}/s{' (again)' if n > 1 else ''}: sent {step['sent']} "
                     f"delivered {step['delivered']} p50 {lat['p50']} p99 {lat['p99']} ms "
                     f"→ {step['verdict'] or 'good'}")
            await asyncio.sleep(p.settle)
            return step["verdict"] is None

        async def good(rate: float, duration: float = p.step_duration) -> bool:
            return await attempt(rate, duration, 1) or await attempt(rate, duration, 2)

        best = worst = None
        rate = p.start_rate
        while rate <= p.max_rate:
            if not await good(rate):
                worst = rate
                break
            best, rate = rate, rate * 2
        if best is None:  # even the first step failed: step down
            rate = p.start_rate / 2
            while rate >= p.min_rate:
                if await good(rate):
                    best = rate
                    break
                worst, rate = rate, rate / 2
        if best is not None and worst is not None:
            for _ in range(p.refine_steps):
                mid = round(math.sqrt(best * worst))
                if mid in (best, worst):
                    break
                if await good(mid):
                    best = mid
                else:
                    worst = mid
        quarter = None
        if best is not None:
            q = await fleet.run(best / 4, p.quarter_duration, p.drain_timeout)
            progress(f"  {label} N={len(fleet.rooms)} quarter knee {best / 4:.0f}/s: p50 {q['latency_ms']['p50']} "
                     f"p99 {q['latency_ms']['p99']} ms")
            quarter = {k: q[k] for k in ("rate", "sent", "delivered", "lost", "duplicated", "out_of_order",
                                         "latency_ms", "ack_latency_ms")}
            quarter["cores"] = q["resources"].get("cores")
        failing = next((s for s in reversed(steps) if s["rate"] == worst), None)
        at_knee = next((s for s in reversed(steps) if s["rate"] == best and s["verdict"] is None), None)
        return {
            "conversations": len(fleet.rooms),
            "knee_rate": best,
            "first_bad_rate": worst,
            "first_bad_reason": failing["verdict"] if failing else None,
            "bound": bound_of(failing["resources"]) if failing
            else f"not found: the next step would pass the {p.max_rate:,.0f}/s cap",
            "db_insert_batch_avg_at_knee": (at_knee or failing or {}).get("db_insert_batch_avg"),
            "quarter_knee": quarter,
            "steps": [compact(s) for s in steps],
        }

    async def fleet(self, rooms: list[Room], watch: Watch, probe: Any = None) -> Fleet:
        fleet = Fleet(self.session, rooms, watch, probe)
        seconds = await fleet.open()
        progress(f"  {2 * len(rooms)} sockets connected and joined in {seconds:.1f} s")
        return fleet

    # --- 1. chat ---------------------------------------------------------------------------------

    async def chat(self) -> dict:
        p = self.plan
        t = await self.load_target()
        progress(f"chat: N={p.chat_conversations} at {p.chat_rate:.0f} msgs/s for {p.chat_duration:.0f} s")
        fleet = await self.fleet(t["rooms"][:p.chat_conversations], t["watch"], t["probe"])
        try:
            window = await fleet.run(p.chat_rate, p.chat_duration, p.drain_timeout)
            integrity = await fleet.totals(p.drain_timeout)
        finally:
            await fleet.close()
        res = window["resources"]
        server_cpu = res.get("cpu_s", {}).get("server")
        return {
            **{k: v for k, v in window.items() if k != "resources"},
            "server_cpu_s": server_cpu,
            "server_us_per_message": round(server_cpu / window["delivered"] * 1e6, 1)
            if server_cpu and window["delivered"] else None,
            "metrics_us_per_message": round(metrics_us_per_message(), 3),
            "database_cpu_s": res.get("cpu_s", {}).get("database"),
            "generator_cpu_s": res.get("cpu_s", {}).get("generator"),
            "server_peak_rss_mib": res.get("peak_rss_mib", {}).get("server"),
            "database_peak_rss_mib": res.get("peak_rss_mib", {}).get("database"),
            "resources": res,
            "bound": bound_of(res),
            "integrity": integrity,
        }

    # --- 2. capacity -----------------------------------------------------------------------------

    async def capacity(self) -> dict:
        t = await self.load_target()
        results = []
        for n in self.plan.capacity_ns:
            writes = await t["counters"].writes() if t.get("counters") else None
            progress(f"capacity: livechat, N={n}" + (f" (database write commands so far: {writes:,})" if writes else ""))
            fleet = await self.fleet(t["rooms"][:n], t["watch"], t["probe"])
            try:
                result = await self.knee(fleet, "livechat")
                result["db_writes_before"] = writes
                result["integrity"] = await fleet.totals(self.plan.drain_timeout)
            finally:
                await fleet.close()
            results.append(result)
        return {"target": "livechat", "step_s": self.plan.step_duration, "p99_limit_ms": GOOD_P99_MS,
                "results": results}

    # --- 3. limits -------------------------------------------------------------------------------

    async def limits(self) -> dict:
        out: dict[str, Any] = {}
        out["database"] = await self._database_limit()
        out["minimal"] = await self._minimal_limit()
        return out

    async def _database_limit(self) -> dict:
        if self.base:
            return {"skipped": "--base: the database of an external server is not ours to load"}
        t = await self.load_target()
        if not t.get("uri"):
            return {"skipped": "embedded database not found"}
        batches = list(self.plan.db_batches)
        cap = self.results.get("capacity", {}).get("results") or []
        observed = cap[-1].get("db_insert_batch_avg_at_knee") if cap else None
        reference = max(1, round(observed)) if observed else 64
        if reference not in batches:
            batches = sorted({*batches, reference})
        watch = Watch({"database": t["watch"].pids.get("database"), "generator": os.getpid()})
        # As livechat connects (its URI, its driver) — the reference — and, when livechat's URI leaves
        # retryable writes on, without them: SecantusDB's per-write cost grows with the retryable-write
        # records it keeps (see the benchmark notes), so the difference is worth seeing.
        variants = [("as livechat connects", t["uri"])]
        if "retrywrites" not in t["uri"].lower():
            variants.append(("retryWrites=false", database.with_option(t["uri"], "retryWrites=false")))
        rows = []
        writes = await t["counters"].writes()
        for name, uri in variants:
            progress(f"limits (a): SecantusDB batched inserts via {t['driver']}, {name}, batches {batches}")
            for row in await database.insert_capacity(uri, t["driver"], batches, self.plan.db_seconds, watch):
                row["variant"] = name
                row["bound"] = bound_of(row["resources"])
                rows.append(row)
                progress(f"  batch {row['batch']}: {row['docs_per_s']:.0f} docs/s ({row['bound']})")
        ref = rows[batches.index(reference)]
        return {"driver": t["driver"], "uri_options": t["uri"].partition("?")[2], "reference_batch": reference,
                "reference_batch_from": ("livechat's average insert batch at the largest N's knee (or, without "
                                         "a knee, at its lowest failing step)") if observed else "default",
                "db_writes_before": writes,
                "docs_per_s": ref["docs_per_s"], "bound": ref["bound"], "batches": rows}

    async def _minimal_limit(self) -> dict:
        server = minimal_server(self.workdir)
        progress("limits (b): the minimal aiohttp broadcast server")
        await self.start(server)
        try:
            watch = Watch({"minimal": server.pid, "generator": os.getpid()})
            results = []
            for n in self.plan.minimal_ns:
                fleet = await self.fleet(minimal_rooms(server.base, n), watch)
                try:
                    result = await self.knee(fleet, "minimal")
                    result["integrity"] = await fleet.totals(self.plan.drain_timeout)
                finally:
                    await fleet.close()
                results.append(result)
        finally:
            self.stop(server)
        return {"results": results}

    # --- 4. connections --------------------------------------------------------------------------

    async def connections(self) -> dict:
        if self.base:
            return {"skipped": "--base: needs the server process (its RSS)"}
        await self.stop_load_server()  # one livechat at a time: its memory and CPU only
        p = self.plan
        server = self.livechat("connections", LIVECHAT_WS_HEARTBEAT=f"{p.heartbeat:g}")
        progress(f"connections: {p.sockets} idle authenticated sockets, heartbeat {p.heartbeat:g} s")
        await self.start(server)
        sockets: list[aiohttp.ClientWebSocketResponse] = []
        readers: list[asyncio.Task] = []
        try:
            api = Api(self.session, server.base)
            users = -(-p.sockets // SOCKETS_PER_USER)
            tokens = [tok for _, tok in await bounded(16, (api.user(f"idle{i}", "candidate") for i in range(users)))]
            watch = Watch({"server": server.pid, "database": server.database_pid(), "generator": os.getpid()})
            await asyncio.sleep(1.0)
            async with measure(watch) as baseline:
                await asyncio.sleep(p.heartbeat)
            rss_before = procstats.rss_bytes(server.pid)

            async def drain(ws: aiohttp.ClientWebSocketResponse) -> None:
                async for _ in ws:  # answers the server's pings (autoping) and notices a close
                    pass

            async def connect(token: str) -> None:
                ws = await self.session.ws_connect(api.ws_url(token), autoping=True, heartbeat=None)
                sockets.append(ws)
                readers.append(asyncio.create_task(drain(ws)))

            started = time.perf_counter()
            await bounded(100, (connect(tokens[i % users]) for i in range(p.sockets)))
            open_s = time.perf_counter() - started
            progress(f"  {len(sockets)} sockets open in {open_s:.1f} s; idle for {p.idle_seconds:g} s")
            await asyncio.sleep(1.0)
            with generator_gc_paused():
                async with measure(watch) as idle:
                    await asyncio.sleep(p.idle_seconds)
            rss_after = procstats.rss_bytes(server.pid)
            alive = sum(1 for ws in sockets if not ws.closed)
            # Graceful shutdown with every socket still open: each should get 1001 (going away).
            progress(f"  stopping the server with {alive} sockets open")
            started = time.perf_counter()
            await asyncio.to_thread(self.stop, server)
            shutdown_s = time.perf_counter() - started
            await asyncio.wait(readers, timeout=10)
            going_away = sum(1 for ws in sockets if ws.close_code == 1001)
        finally:
            await bounded(200, (ws.close() for ws in sockets))
            for task in readers:
                task.cancel()
            await asyncio.gather(*readers, return_exceptions=True)
            self.stop(server)
        base_rate = baseline.usage.cpu["server"] / baseline.usage.wall
        idle_cpu = idle.usage.cpu["server"]
        heartbeats = alive * idle.usage.wall / p.heartbeat
        per_socket = (rss_after - rss_before) / max(1, len(sockets))
        return {
            "sockets": p.sockets, "opened": len(sockets), "alive_at_end": alive, "users": users,
            "open_s": round(open_s, 1), "heartbeat_s": p.heartbeat, "idle_s": p.idle_seconds,
            "server_rss_before_mib": round(rss_before / 2**20, 1), "server_rss_after_mib": round(rss_after / 2**20, 1),
            "rss_per_socket_kib": round(per_socket / 1024, 1),
            "server_idle_cores_without_sockets": round(base_rate, 4),
            "server_idle_cores_with_sockets": round(idle_cpu / idle.usage.wall, 4),
            "server_cpu_us_per_heartbeat": round((idle_cpu - base_rate * idle.usage.wall) / heartbeats * 1e6, 1)
            if heartbeats else None,
            "shutdown_s": round(shutdown_s, 2), "closed_1001": going_away,
            "resources": idle.as_dict(),
        }

    # --- 5. logins -------------------------------------------------------------------------------

    async def logins(self) -> dict:
        if self.base:
            return {"skipped": "--base: needs a server at the production bcrypt cost that we start"}
        await self.stop_load_server()
        p = self.plan
        hash_s = bcrypt_time(p.login_rounds)
        progress(f"logins: one bcrypt hash at cost {p.login_rounds} takes {hash_s * 1000:.0f} ms here; "
                 f"theoretical {CORES / hash_s:.1f} logins/s on {CORES} cores")
        server = self.livechat("logins", LIVECHAT_AUTH_BCRYPT_ROUNDS=str(p.login_rounds))
        await self.start(server)
        try:
            api = Api(self.session, server.base)
            progress(f"  signing up {p.login_users} users at cost {p.login_rounds}")
            emails = [email for _, email in await bounded(4, (api.signup(f"login{i}", "candidate")
                                                              for i in range(p.login_users)))]
            watch = Watch({"server": server.pid, "database": server.database_pid(), "generator": os.getpid()})
            health: list[float] = []
            stop = asyncio.Event()

            async def poll() -> None:
                async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as probe:
                    while not stop.is_set():
                        started = time.perf_counter()
                        async with probe.get(server.base + "/health/live") as resp:
                            await resp.read()
                            if resp.status == 200:
                                health.append(time.perf_counter() - started)
                        await asyncio.sleep(0.01)

            async def login(i: int) -> bool:
                async with self.session.post(server.base + "/auth/login",
                                             json={"email": emails[i % len(emails)], "password": PASSWORD}) as resp:
                    await resp.read()
                    return resp.status == 200

            poller = asyncio.create_task(poll())
            await asyncio.sleep(0.2)
            progress(f"  {p.logins} concurrent logins")
            with generator_gc_paused():
                async with measure(watch) as storm:
                    started = time.perf_counter()
                    ok = await asyncio.gather(*(login(i) for i in range(p.logins)))
                    wall = time.perf_counter() - started
            stop.set()
            await poller
            enumeration = await self._enumeration_timing(server.base, emails)
        finally:
            self.stop(server)
        theoretical = CORES / hash_s
        rate = sum(ok) / wall
        return {
            "logins": p.logins, "users": p.login_users, "ok": sum(ok), "bcrypt_cost": p.login_rounds,
            "server_hash_threads": hash_threads(self.server_env), "wall_s": round(wall, 2),
            "logins_per_s": round(rate, 2),
            "hash_ms": round(hash_s * 1000, 1), "cores": CORES, "theoretical_logins_per_s": round(theoretical, 2),
            "ratio": round(rate / theoretical, 3),
            "health_live_ms": percentiles(health), "health_samples": len(health),
            "resources": storm.as_dict(), "bound": bound_of(storm.as_dict()),
            "enumeration": enumeration,
        }

    async def _enumeration_timing(self, base: str, emails: list[str]) -> dict:
        """How long a wrong-password login takes for an unknown email, relative to a known one: the
        server checks a dummy hash for an unknown email, so the two should take about as long (an
        account could otherwise be found out by timing; tests/security/test_tokens.py checks that the
        answers are the same bytes). Known emails rotate so that no account reaches its failure limit."""
        pairs = self.plan.enumeration_pairs
        progress(f"  {pairs} wrong-password logins of known and of unknown emails, interleaved")
        statuses: set[int] = set()

        async def wrong_login_ms(email: str) -> float:
            started = time.perf_counter()
            async with self.session.post(base + "/auth/login",
                                         json={"email": email, "password": "wrong-" + PASSWORD}) as resp:
                await resp.read()
                statuses.add(resp.status)
            return (time.perf_counter() - started) * 1000

        await wrong_login_ms("warm-up@example.com")  # the server makes its dummy hash lazily
        known, unknown = [], []
        for i in range(pairs):  # interleaved, so drift affects both alike
            known.append(await wrong_login_ms(emails[i % len(emails)]))
            unknown.append(await wrong_login_ms(f"nobody-{i}@example.com"))
        known_ms, unknown_ms = statistics.median(known), statistics.median(unknown)
        return {"pairs": pairs, "statuses": sorted(statuses), "known_median_ms": round(known_ms, 1),
                "unknown_median_ms": round(unknown_ms, 1), "ratio": round(unknown_ms / known_ms, 3)}

    # --- 6. start-up -----------------------------------------------------------------------------

    async def startup(self) -> dict:
        if self.base:
            return {"skipped": "--base: start-up needs to spawn the server"}
        runs = []
        for i in range(self.plan.startups):
            server = self.livechat(f"startup{i}")
            seconds = await self.start(server)
            rss = procstats.rss_bytes(server.pid)
            db_pid = server.database_pid()
            db_rss = procstats.rss_bytes(db_pid) if db_pid else None
            self.stop(server)
            runs.append({"seconds": round(seconds, 3), "server_rss_mib": round(rss / 2**20, 1) if rss else None,
                         "database_rss_mib": round(db_rss / 2**20, 1) if db_rss else None})
            progress(f"start-up {i + 1}: ready in {seconds:.2f} s")
        times = [r["seconds"] for r in runs]
        return {"runs": runs, "median_s": round(statistics.median(times), 3), "max_s": max(times),
                "fresh_data_dir": True}


def hash_threads(server_env: dict[str, str]) -> int | None:
    """``auth.hash_threads`` of the servers we start (config.toml, or --server-env)."""
    if "LIVECHAT_AUTH_HASH_THREADS" in server_env:
        return int(server_env["LIVECHAT_AUTH_HASH_THREADS"])
    try:
        from livechat.config import load_settings

        return load_settings(environ={}).auth.hash_threads
    except Exception:  # noqa: BLE001 — informational only
        return None


def bcrypt_time(rounds: int, samples: int = 5) -> float:
    """Seconds of one bcrypt check at ``rounds`` in this process (the server's own work per login):
    the fastest of ``samples``, i.e. the uncontended cost — the stricter theoretical maximum."""
    import bcrypt

    hashed = bcrypt.hashpw(b"bench-password-prehashed", bcrypt.gensalt(rounds))
    times = []
    for _ in range(samples):
        started = time.perf_counter()
        bcrypt.checkpw(b"bench-password-prehashed", hashed)
        times.append(time.perf_counter() - started)
    return min(times)
