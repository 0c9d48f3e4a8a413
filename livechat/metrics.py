"""Prometheus metrics (README "Operations"), one registry per application.

Every series the message path touches is created here once, unlabelled or with its labels
already bound, so a message costs one ``inc`` (a lock and an add, no allocation) per counter.
HTTP series are labelled by route *template* (``/conversations/{id}``), never by the raw path,
so their number is bounded by the routes. The domain never imports this module: the services
get plain callables (``MessageService.on_batch``), storage gets ``observe_db``.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
DB_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
UNMATCHED = "unmatched"  # the route label of a request no route matched (404/405)


class Metrics:
    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry(auto_describe=True)
        self.http_requests = Counter(
            "livechat_http_requests", "HTTP requests answered, by method, route template and status",
            ["method", "route", "status"], registry=registry)
        self.http_latency = Histogram(
            "livechat_http_request_duration_seconds", "Time to answer an HTTP request (WebSocket upgrades excluded)",
            ["method", "route"], registry=registry)
        self.open_sockets = Gauge(
            "livechat_websocket_connections", "Authenticated WebSockets open on this process", registry=registry)
        self.messages_stored = Counter(
            "livechat_messages_stored", "Chat messages durably written by this process", registry=registry)
        self.messages_delivered = Counter(
            "livechat_messages_delivered", "NEW_MESSAGE events queued to sockets of this process (live, not replays)",
            registry=registry)
        self.writer_batch = Histogram(
            "livechat_writer_batch_size", "Sends per batch of the message writer", buckets=BATCH_BUCKETS,
            registry=registry)
        self.db_latency = Histogram(
            "livechat_db_operation_duration_seconds", "Time of one repository operation on the database",
            ["operation"], buckets=DB_BUCKETS, registry=registry)
        drops = Counter(
            "livechat_websocket_drops", "Socket events refused or sockets dropped: slow consumers disconnected, "
            "sends over the rate limit, sends refused while the message writer's queue is full", ["reason"],
            registry=registry)
        self.slow_consumer_drops = drops.labels("slow_consumer")
        self.rate_limited = drops.labels("rate_limit")
        self.writer_busy = drops.labels("busy")
        self.fanout_lag = Gauge(
            "livechat_fanout_lag_seconds", "How far the change feed (cross-process fan-out) is behind the database",
            registry=registry)
        self._db: dict[str, Callable[[float], None]] = {}

    def observe_db(self, operation: str, seconds: float) -> None:
        observe = self._db.get(operation)
        if observe is None:
            observe = self._db[operation] = self.db_latency.labels(operation).observe
        observe(seconds)

    def request(self, method: str, route: str, status: int, seconds: float | None) -> None:
        self.http_requests.labels(method, route, str(status)).inc()
        if seconds is not None:
            self.http_latency.labels(method, route).observe(seconds)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
