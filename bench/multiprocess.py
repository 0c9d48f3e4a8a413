"""The ``multiprocess`` scenario: 1, 2 and 3 livechat processes on one database, side by side.

One SecantusDB runs alone (as ``python -m livechat database`` would); for each process count a
fresh database name and fresh livechat processes on it. Each conversation's candidate socket is on
process ``i % k`` and its agent socket on process ``(i + 1) % k``, so with k > 1 every message
crosses processes (the sender's process stores it, the receiver's learns of it from the change
stream). The figures per k: chat at the scenario's rate (latency, integrity, CPU per process), and
the capacity knee (same search as the capacity scenario).
"""

from __future__ import annotations

import os
import uuid

from bench.api import Api, Room, ws_base
from bench.procstats import Watch
from bench.scenarios import LOAD_ENV, Bench, bound_of, progress
from bench.servers import ServerProcess
from livechat.storage.embedded import EmbeddedServer

PROCESS_COUNTS = (1, 2, 3)


async def multiprocess(bench: Bench) -> dict:
    p = bench.plan
    n, rate = p.chat_conversations, p.chat_rate
    database = EmbeddedServer(os.environ.get("LIVECHAT_DATABASE_EMBEDDED_COMMAND", "secantusd-py"),
                              str(bench.workdir / "multiprocess-db"), log_path=bench.workdir / "multiprocess-db.log")
    database.start()
    results = []
    try:
        database.wait_ready(30)
        for k in PROCESS_COUNTS:
            name = f"bench_multi_{k}_{uuid.uuid4().hex[:6]}"
            servers: list[ServerProcess] = [
                bench.livechat(f"livechat-{k}-{i}", **LOAD_ENV, MONGODB_URI=database.uri, LIVECHAT_DATABASE_NAME=name,
                               JWT_SECRET="bench-multiprocess-" + "x" * 32)
                for i in range(k)]
            progress(f"multiprocess: {k} process(es) on one database, N={n}")
            for server in servers:
                await bench.start(server)
            try:
                rooms = await Api(bench.session, servers[0].base).rooms(n)
                bases = [ws_base(s.base) for s in servers]
                crossed = [Room(r.conversation_id, (_move(r.urls[0], bases[i % k]), _move(r.urls[1], bases[(i + 1) % k])))
                           for i, r in enumerate(rooms)]
                watch = Watch({**{f"server{i + 1}": s.pid for i, s in enumerate(servers)},
                               "database": database.database_pid(),
                               "generator": os.getpid()})
                fleet = await bench.fleet(crossed, watch)
                try:
                    window = await fleet.run(rate, p.chat_duration, p.drain_timeout)
                    knee = await bench.knee(fleet, f"{k} process(es)")
                    integrity = await fleet.totals(p.drain_timeout)
                finally:
                    await fleet.close()
            finally:
                for server in servers:
                    bench.stop(server)
            res = window["resources"]
            results.append({
                "processes": k, "conversations": n, "rate": rate,
                "sent": window["sent"], "delivered": window["delivered"], "lost": window["lost"],
                "duplicated": window["duplicated"], "out_of_order": window["out_of_order"],
                "latency_ms": window["latency_ms"], "ack_latency_ms": window["ack_latency_ms"],
                "cpu_s": res.get("cpu_s"), "bound": bound_of(res),
                "knee_rate": knee["knee_rate"], "knee_bound": knee["bound"],
                "quarter_knee": knee["quarter_knee"], "integrity": integrity,
            })
    finally:
        database.stop()
    return {"results": results}


def _move(url: str, base: str) -> str:
    """The same socket URL (token and all) on another process."""
    return base + url[url.index("?"):]

