"""The database side: the embedded SecantusDB's insert counter, and its own batched-insert capacity.

Both use the driver livechat is configured with (``[database] driver``: Motor or PyMongo's
``AsyncMongoClient``). The capacity test writes message-shaped documents (the fields and the two
unique indexes of livechat's ``messages`` collection) into a scratch database on the same
server, with one writer doing one ordered ``insert_many`` at a time — as livechat's message
writer does — and drops the scratch database afterwards.
"""

from __future__ import annotations

import contextlib
import inspect
import secrets
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from bson import ObjectId

from bench.loadgen import CONTENT_CHARS, FILLER
from bench.procstats import Watch, measure
from livechat.config import Driver
from livechat.storage.embedded import loopback_uri
from livechat.storage.mongo import client_class


def configured_driver() -> str:
    try:
        from livechat.config import load_settings

        return load_settings(environ={}).database.driver.value  # the servers get no LIVECHAT_ variables
    except Exception:  # noqa: BLE001 — an odd developer environment must not stop the benchmark
        return "motor"


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


@contextlib.asynccontextmanager
async def client(uri: str, driver: str) -> AsyncIterator[Any]:
    mongo = client_class(Driver(driver))(uri, tz_aware=True, serverSelectionTimeoutMS=5000, appname="livechat-bench")
    try:
        yield mongo
    finally:
        await _maybe_await(mongo.close())


def livechat_uri(port: int) -> str:
    """The URI livechat itself uses for its embedded database on ``port`` (same options)."""
    return loopback_uri("127.0.0.1", port)


def with_option(uri: str, option: str) -> str:
    return uri + ("&" if "?" in uri else "/?") + option


class Counters:
    """``serverStatus.opcounters``. SecantusDB counts insert *commands* under ``insert`` (mongod
    counts documents), so messages stored ÷ its increase is the server's average batch size."""

    def __init__(self, mongo: Any) -> None:
        self.mongo = mongo

    async def _opcounters(self) -> dict:
        return (await self.mongo.admin.command("serverStatus")).get("opcounters", {})

    async def inserts(self) -> int | None:
        return (await self._opcounters()).get("insert")

    async def writes(self) -> int | None:
        """Write commands so far (insert + update + delete)."""
        ops = await self._opcounters()
        return sum(ops.get(k, 0) for k in ("insert", "update", "delete"))


def _documents(count: int, conversations: list[ObjectId], seqs: dict[ObjectId, int], sender: ObjectId,
               start: int) -> list[dict]:
    docs = []
    for i in range(start, start + count):
        conv = conversations[i % len(conversations)]
        seqs[conv] = seq = seqs.get(conv, 0) + 1
        docs.append({
            "_id": ObjectId(), "conversationId": conv, "seq": seq, "senderId": sender, "senderRole": "candidate",
            "content": (f"{i}|" + FILLER)[:CONTENT_CHARS], "createdAt": datetime.now(UTC),
            "clientMessageId": f"db.{i}",
        })
    return docs


async def insert_capacity(uri: str, driver: str, batch_sizes: list[int], seconds: float,
                          watch: Watch | None, conversations: int = 1000) -> list[dict]:
    """Docs/s of back-to-back ordered ``insert_many`` calls, per batch size, spread over
    ``conversations`` conversations like the server's cross-conversation batches."""
    results = []
    async with client(uri, driver) as mongo:
        name = f"bench_scratch_{secrets.token_hex(4)}"
        coll = mongo[name]["messages"]
        await coll.create_index([("conversationId", 1), ("seq", 1)], unique=True, name="seq_unique")
        await coll.create_index([("conversationId", 1), ("senderId", 1), ("clientMessageId", 1)], unique=True,
                                name="client_message_unique",
                                partialFilterExpression={"clientMessageId": {"$type": "string"}})
        convs = [ObjectId() for _ in range(conversations)]
        seqs: dict[ObjectId, int] = {}
        sender = ObjectId()
        written = 0
        try:
            for batch in batch_sizes:
                latencies = []
                async with measure(watch) as resources:
                    started = time.perf_counter()
                    docs_here = 0
                    while time.perf_counter() - started < seconds:
                        docs = _documents(batch, convs, seqs, sender, written)
                        t = time.perf_counter()
                        await coll.insert_many(docs, ordered=True)
                        latencies.append(time.perf_counter() - t)
                        written += batch
                        docs_here += batch
                    elapsed = time.perf_counter() - started
                latencies.sort()
                results.append({
                    "batch": batch,
                    "docs_per_s": round(docs_here / elapsed, 1),
                    "batch_ms_p50": round(latencies[len(latencies) // 2] * 1000, 2),
                    "resources": resources.as_dict(),
                })
        finally:
            await mongo.drop_database(name)
    return results
