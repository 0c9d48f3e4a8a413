"""The analytics scenario: ``GET /admin/analytics/summary`` latency at 10,000 and 100,000
conversations, for each ``groupBy``.

A fresh livechat with its embedded SecantusDB; 20 supervisors × 5 agents through the API; then
conversations written straight into its database with ``insert_many`` (shaped as livechat writes
them, facts included: 70% closed, 90% assigned, 80% with an agent reply), created over the last 30
days. Each figure: ``requests`` sequential requests over the whole 30 days, p50/p99 of the
round trip as the client sees it. The plan of the summary's ``$match`` is read from the database
(``IXSCAN`` on ``createdAt`` expected).
"""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from bson import ObjectId

from bench import database
from bench.api import Api
from bench.loadgen import percentiles
from bench.procstats import Watch, measure
from bench.servers import BenchError

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
    # SecantusDB aggregates 100,000 conversations in seconds, over the 3 s default database timeout:
    # raised here so that the figure is measured instead of a 503.
    server = bench.livechat("analytics", LIVECHAT_DATABASE_TIMEOUT_MS="60000")
    await bench.start(server)
    try:
        port = server.embedded_database_port("analytics")
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
        results: dict[str, dict] = {}
        watch = Watch({"server": server.pid, "database": server.database_pid()})
        async with database.client(database.livechat_uri(port), driver) as mongo:
            collection = mongo["livechat"]["conversations"]
            seeded = 0
            for size in SIZES:
                started = time.perf_counter()
                while seeded < size:
                    batch = min(INSERT_BATCH, size - seeded)
                    await collection.insert_many(conversations(batch, teams, now, rng), ordered=False)
                    seeded += batch
                seed_s = round(time.perf_counter() - started, 1)
                start, end = now - timedelta(days=DAYS), now + timedelta(minutes=1)
                plan = (await collection.find({"createdAt": {"$gte": start, "$lt": end}}).explain())
                stage = plan["queryPlanner"]["winningPlan"]
                stages = []
                while stage:
                    stages.append(f"{stage['stage']}({stage.get('indexName', '')})" if stage.get("indexName")
                                  else stage["stage"])
                    stage = stage.get("inputStage")
                row: dict[str, object] = {"seed_s": seed_s, "plan": " ← ".join(stages)}
                query = f"from={start.date().isoformat()}&to={now.date().isoformat()}"
                for who, token in (("admin", admin), ("supervisor", some_supervisor)):
                    for group in GROUPS if who == "admin" else ("agent",):
                        path = f"/admin/analytics/summary?{query}&groupBy={group}"
                        times = []
                        async with measure(watch) as used:
                            for _ in range(max(3, round(requests * REQUESTS[size]))):
                                t0 = time.perf_counter()
                                async with bench.session.get(server.base + path,
                                                             headers={"Authorization": f"Bearer {token}"}) as resp:
                                    body = await resp.json()
                                    if resp.status != 200:
                                        raise BenchError(f"{path} → {resp.status} {body}")
                                times.append(time.perf_counter() - t0)
                        lat = percentiles(times)
                        key = group if who == "admin" else "agent (one supervisor's team)"
                        cores = used.usage.as_dict()["cores"] if used.usage else {}
                        row[key] = {"p50_ms": lat["p50"], "p99_ms": lat["p99"], "rows": len(body["data"]["rows"]),
                                    "server_cores": cores.get("server"), "database_cores": cores.get("database"),
                                    "other_cores": cores.get("other")}
                results[f"{size}"] = row
                progress(f"  analytics at {size:,} conversations: " + ", ".join(
                    f"{k} p50 {v['p50_ms']} p99 {v['p99_ms']} ms" for k, v in row.items() if isinstance(v, dict)))
        worst = max(v["p99_ms"] for v in results[str(SIZES[-1])].values() if isinstance(v, dict))
        return {"requests_per_figure": requests, "sizes": results, "worst_p99_ms_at_100k": worst}
    finally:
        bench.stop(server)
