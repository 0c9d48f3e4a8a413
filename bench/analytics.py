"""The analytics scenario: ``GET /admin/analytics/summary`` latency at 10,000 and 100,000
conversations, for each ``groupBy``.

A fresh livechat with its embedded SecantusDB; 20 supervisors × 5 agents through the API; then
conversations written straight into its database with ``insert_many`` (shaped as livechat writes
them, facts included: 70% closed, 90% assigned, 80% with an agent reply), created over the last 30
days. The same server then starts again, so that its analytics read model holds them; the first
summary, which waits for that read, is timed on its own. Each figure: ``requests`` sequential
requests over the whole 30 days, p50/p99 of the round trip as the client sees it.
"""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from bson import ObjectId

from bench import database, procstats
from bench.api import Api
from bench.loadgen import percentiles
from bench.procstats import Watch, measure
from bench.servers import BenchError, ServerProcess

if TYPE_CHECKING:
    from bench.scenarios import Bench


def progress(text: str) -> None:
    from bench.scenarios import progress as say  # bench.scenarios imports nothing from here: no cycle at run time

    say(text)

SIZES = (10_000, 100_000)
# Requests per figure at each size: SecantusDB takes seconds per summary at 100,000, so fewer there.
REQUESTS = {10_000: 1.0, 100_000: 0.25}
GROUPS = ("supervisor", "agent", "day")
SUPERVISORS, AGENTS_PER_SUPERVISOR = 20, 5
INSERT_BATCH = 5_000
DAYS = 30


def conversations(count: int, teams: dict[ObjectId, list[ObjectId]], now: datetime, rng: random.Random) -> list[dict]:
    docs = []
    supervisors = list(teams)
    for _ in range(count):
        supervisor = rng.choice(supervisors)
        created = now - timedelta(seconds=rng.uniform(60, DAYS * 86_400))
        doc = {"_id": ObjectId(), "candidateId": ObjectId(), "supervisorId": supervisor, "agentId": None,
               "status": "open", "createdAt": created, "closedAt": None, "assignments": [], "routingSlot": None,
               "lastSeq": 0, "messageCount": rng.randint(1, 30)}
        if rng.random() < 0.9:
            agent = rng.choice(teams[supervisor])
            assigned = created + timedelta(seconds=rng.expovariate(1 / 90))
            doc.update(agentId=agent, status="assigned", firstAssignedAt=assigned,
                       assignments=[{"agentId": agent, "at": assigned, "by": supervisor}])
            if rng.random() < 0.8:
                doc["firstAgentMessageAt"] = assigned + timedelta(seconds=rng.expovariate(1 / 120))
            if rng.random() < 0.78:
                doc.update(status="closed", closedAt=assigned + timedelta(seconds=rng.expovariate(1 / 1800)))
        docs.append(doc)
    return docs


async def analytics(bench: Bench) -> dict:
    if bench.base:
        return {"skipped": "needs direct access to the database (not with --base)"}
    requests = bench.plan.analytics_requests
    # The first summary after a start waits for the read model to be loaded: with the 3 s default
    # database timeout it could be a 503 at 100,000 conversations instead of a figure.
    server = bench.livechat("analytics", LIVECHAT_DATABASE_TIMEOUT_MS="60000")
    await bench.start(server)
    try:
        api = Api(bench.session, server.base)
        _, admin = await api.user("admin", "admin")
        teams: dict[ObjectId, list[ObjectId]] = {}
        for s in range(SUPERVISORS):
            sup_id, _ = await api.user(f"sup{s}", "supervisor")
            teams[ObjectId(sup_id)] = [ObjectId((await api.user(f"agent{s}-{a}", "agent", sup_id))[0])
                                       for a in range(AGENTS_PER_SUPERVISOR)]
        some_supervisor = await api.login(f"bench-{api.tag}-sup0@example.com")
        driver = bench.server_env.get("LIVECHAT_DATABASE_DRIVER") or database.configured_driver()
        rng, now = random.Random(14), datetime.now(UTC)
        start = now - timedelta(days=DAYS)
        query = f"from={start.date().isoformat()}&to={now.date().isoformat()}"
        results: dict[str, dict] = {}
        seeded = 0
        for size in SIZES:
            port = server.embedded_database_port("analytics")
            started = time.perf_counter()
            async with database.client(database.livechat_uri(port), driver) as mongo:
                collection = mongo["livechat"]["conversations"]
                while seeded < size:
                    batch = min(INSERT_BATCH, size - seeded)
                    await collection.insert_many(conversations(batch, teams, now, rng), ordered=False)
                    seeded += batch
            row: dict[str, object] = {"seed_s": round(time.perf_counter() - started, 1)}
            # Written behind livechat's back, so the same server (same data directory) starts
            # again: it reads them into its read model at start-up; the first summary waits for it.
            bench.stop(server)
            row["ready_s"] = round(await bench.start(server), 2)
            t0 = time.perf_counter()
            await _summary(bench, server, f"{query}&groupBy=supervisor", admin)
            row["first_summary_s"] = round(time.perf_counter() - t0, 2)
            watch = Watch({"server": server.pid, "database": server.database_pid()})
            for who, token in (("admin", admin), ("supervisor", some_supervisor)):
                for group in GROUPS if who == "admin" else ("agent",):
                    times = []
                    async with measure(watch) as used:
                        for _ in range(max(3, round(requests * REQUESTS[size]))):
                            t0 = time.perf_counter()
                            body = await _summary(bench, server, f"{query}&groupBy={group}", token)
                            times.append(time.perf_counter() - t0)
                    lat = percentiles(times)
                    key = group if who == "admin" else "agent (one supervisor's team)"
                    cores = used.usage.as_dict()["cores"] if used.usage else {}
                    row[key] = {"p50_ms": lat["p50"], "p99_ms": lat["p99"], "rows": len(body["data"]["rows"]),
                                "server_cores": cores.get("server"), "database_cores": cores.get("database"),
                                "other_cores": cores.get("other")}
            rss = procstats.rss_bytes(server.pid)
            row["server_rss_mb"] = round(rss / 2**20, 1) if rss else None
            results[f"{size}"] = row
            progress(f"  analytics at {size:,} conversations: first summary {row['first_summary_s']} s, " + ", ".join(
                f"{k} p50 {v['p50_ms']} p99 {v['p99_ms']} ms" for k, v in row.items() if isinstance(v, dict)))
        figures = {size: [v["p99_ms"] for v in row.values() if isinstance(v, dict)] for size, row in results.items()}
        worst = max(figures[str(SIZES[-1])])
        growth = round(worst / max(figures[str(SIZES[0])]), 2)
        return {"requests_per_figure": requests, "sizes": results, "worst_p99_ms_at_100k": worst,
                "p99_growth_10k_to_100k": growth, "target": "p99 <= 500 ms at 100,000, growth <= 10x (linear)",
                "pass": worst <= 500 and growth <= SIZES[-1] / SIZES[0]}
    finally:
        bench.stop(server)


async def _summary(bench: Bench, server: ServerProcess, query: str, token: str) -> dict:
    async with bench.session.get(f"{server.base}/admin/analytics/summary?{query}",
                                 headers={"Authorization": f"Bearer {token}"}) as resp:
        body = await resp.json()
        if resp.status != 200:
            raise BenchError(f"summary {query} → {resp.status} {body}")
        return body
