"""The ``controlplane`` scenario: do assign and JOIN cost the same with 100 and 100,000 conversations?

A fresh livechat with its embedded SecantusDB and one team (a supervisor, ``AGENTS`` agents). The
database is grown in steps with conversations written straight into it (``insert_many``, shaped as
livechat writes them: mostly closed, spread over the team's agents, as the analytics scenario seeds
them). At each size, ``ROUNDS`` new candidates open a conversation through the API; then, one at a
time, the supervisor assigns each (timed: ``POST /conversations/:id/assign``) and the agent joins it
(timed: ``JOIN_CONVERSATION`` → ``JOINED_CONVERSATION``); then they are closed. The figure is the
p50/p99 of each at each size and the ratio of the largest to the smallest.
"""

from __future__ import annotations

import json
import random
import time
from datetime import UTC, datetime

from bson import ObjectId

from bench import database
from bench.analytics import INSERT_BATCH, conversations
from bench.api import Api, bounded
from bench.loadgen import percentiles
from bench.servers import BenchError

SIZES = (100, 10_000, 100_000)
AGENTS = 10
ROUNDS = 60


async def controlplane(bench) -> dict:
    from bench.scenarios import progress

    if bench.base:
        return {"skipped": "needs direct access to the database (not with --base)"}
    server = bench.livechat("controlplane")
    await bench.start(server)
    try:
        port = server.embedded_database_port("controlplane")
        api = Api(bench.session, server.base)
        sup_id, sup_token = await api.user("sup", "supervisor")
        agents = await bounded(8, (api.user(f"agent{i}", "agent", sup_id) for i in range(AGENTS)))
        rng, now = random.Random(17), datetime.now(UTC)
        driver = bench.server_env.get("LIVECHAT_DATABASE_DRIVER") or database.configured_driver()
        results: dict[str, dict] = {}
        async with database.client(database.livechat_uri(port), driver) as mongo:
            collection = mongo["livechat"]["conversations"]
            team = {ObjectId(sup_id): [ObjectId(a) for a, _ in agents]}
            seeded = 0
            for size in SIZES:
                progress(f"controlplane: {size:,} conversations in the database")
                while seeded < size:
                    batch = min(INSERT_BATCH, size - seeded)
                    await collection.insert_many(conversations(batch, team, now, rng), ordered=False)
                    seeded += batch
                # The agents connect now: a socket nobody reads (during the seeding) answers no ping.
                sockets = [await bench.session.ws_connect(api.ws_url(token)) for _, token in agents]
                try:
                    results[str(size)] = row = await _round(api, (sup_id, sup_token), agents, sockets, size)
                finally:
                    for ws in sockets:
                        await ws.close()
                progress(f"  assign p50/p99 {row['assign_ms']['p50']}/{row['assign_ms']['p99']} ms, "
                         f"join {row['join_ms']['p50']}/{row['join_ms']['p99']} ms")
    finally:
        bench.stop(server)
    small, large = results[str(SIZES[0])], results[str(SIZES[-1])]
    return {"sizes": results, "rounds": ROUNDS,
            "growth": {k: round(large[k]["p50"] / small[k]["p50"], 2) for k in ("assign_ms", "join_ms")}}


async def _round(api: Api, supervisor: tuple[str, str], agents: list[tuple[str, str]], sockets: list,
                 size: int) -> dict:
    sup_id, sup_token = supervisor
    candidates = await bounded(8, (api.user(f"cand{size}-{i}", "candidate") for i in range(ROUNDS)))
    convs = await bounded(8, (api.call("POST", "/conversations", {"supervisorId": sup_id}, token)
                              for _, token in candidates))
    assign, join = [], []
    for i, conv in enumerate(convs):
        agent_id, agent_token = agents[i % len(agents)]
        t0 = time.perf_counter()
        await api.call("POST", f"/conversations/{conv['_id']}/assign", {"agentId": agent_id}, sup_token)
        assign.append(time.perf_counter() - t0)
        ws = sockets[i % len(sockets)]
        t0 = time.perf_counter()
        await ws.send_str(json.dumps({"event": "JOIN_CONVERSATION", "data": {"conversationId": conv["_id"]}}))
        while True:
            frame = json.loads((await ws.receive(timeout=30)).data)
            if frame["event"] == "JOINED_CONVERSATION":
                break
            if frame["event"] == "ERROR":
                raise BenchError(f"JOIN refused: {frame['data']}")
        join.append(time.perf_counter() - t0)
        await ws.send_str(json.dumps({"event": "CLOSE_CONVERSATION", "data": {"conversationId": conv["_id"]}}))
    return {"assign_ms": percentiles(assign), "join_ms": percentiles(join)}


