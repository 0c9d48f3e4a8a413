"""The load generator: two sockets per conversation, a fixed total message rate, and a tally.

Each conversation has a candidate socket and an agent socket; the sender alternates between them.
Every ``SEND_MESSAGE`` carries a ``clientMessageId`` which is also the head of its ``content``
(``<id>|<filler>``, 120 characters), so the receiver's ``NEW_MESSAGE`` (which has no
``clientMessageId``) is matched to its send time and sender. For each window (a rate held for
a duration, then a drain until everything is answered or a timeout) the tally counts:

* ``delivered`` — reached the other party; ``lost`` — neither delivered nor refused with an ERROR
  by the end of the drain; ``refused`` — answered with an ERROR (e.g. rate limit, unavailable);
* ``duplicated`` — a second NEW_MESSAGE for one send, a second ack, or two sends acked with one seq;
* ``out_of_order`` — a socket got a NEW_MESSAGE whose seq is not above the last one it got, or an
  ack whose seq is not above its previous ack (each sender's own order);
* ``seq_gaps`` — seqs missing between the acked seqs of a conversation (B.1: contiguous);
* latency: send → NEW_MESSAGE at the peer (end to end) and send → MESSAGE_SENT (ack), one clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import math
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Sequence

import aiohttp

from bench.api import Room, bounded
from bench.procstats import Watch, generator_gc_paused, measure
from bench.servers import BenchError

CONTENT_CHARS = 120  # a typical chat line
FILLER = "Hello, I have a question about my order; could you check the delivery date please? " * 3
MAX_BURST = 64  # sends between two yields to the readers when the sender has fallen behind
_fleet_ids = itertools.count(1)


def percentiles(values: Sequence[float]) -> dict[str, float | None]:
    """p50/p95/p99/max in milliseconds (nearest rank) of seconds ``values``."""
    if not values:
        return {"p50": None, "p95": None, "p99": None, "max": None}
    ordered = sorted(values)

    def rank(q: float) -> float:
        return round(ordered[max(0, math.ceil(q * len(ordered)) - 1)] * 1000, 2)

    return {"p50": rank(0.50), "p95": rank(0.95), "p99": rank(0.99), "max": round(ordered[-1] * 1000, 2)}


def frame(event: str, data: dict) -> str:
    return json.dumps({"event": event, "data": data}, separators=(",", ":"))


class Window:
    """The tally of one window: a rate held for a duration."""

    def __init__(self, wid: int, conversations: int, rate: float, duration: float) -> None:
        self.wid, self.conversations, self.rate, self.duration = wid, conversations, rate, duration
        self.sent = self.send_failures = 0
        self.delivered = self.acked = 0
        self.duplicated = self.out_of_order = self.misrouted = self.seq_mismatch = 0
        self.disconnects = 0
        self.errors: Counter[str] = Counter()
        self.latencies: list[float] = []
        self.ack_latencies: list[float] = []
        self.records: list[Record] = []
        self.open = 0  # records not yet settled (delivered and acked, or refused)
        self.sending = True
        self.summarized = False
        self.settled = asyncio.Event()

    def settle_one(self) -> None:
        self.open -= 1
        if not self.sending and self.open == 0:
            self.settled.set()


class Record:
    """One send."""

    __slots__ = ("ack_seq", "acks", "deliveries", "error", "room", "sender", "sent_at", "seq", "window")

    def __init__(self, window: Window, room: int, sender: int, sent_at: float) -> None:
        self.window, self.room, self.sender, self.sent_at = window, room, sender, sent_at
        self.ack_seq: int | None = None
        self.seq: int | None = None
        self.deliveries = self.acks = 0
        self.error: str | None = None

    @property
    def settled(self) -> bool:
        return (self.deliveries > 0 and self.acks > 0) or self.error is not None


class Peer:
    """One socket of one conversation: side 0 = candidate, 1 = agent."""

    __slots__ = ("close_code", "joined", "last_ack_seq", "last_seq", "reader", "room", "side", "url", "ws")

    def __init__(self, room: int, side: int, url: str) -> None:
        self.room, self.side, self.url = room, side, url
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.reader: asyncio.Task | None = None
        self.joined: asyncio.Future | None = None
        self.last_seq = self.last_ack_seq = 0
        self.close_code: int | None = None


class Fleet:
    """The sockets of ``rooms`` (two each, joined), reading all the time, driven window by window."""

    def __init__(self, session: aiohttp.ClientSession, rooms: Sequence[Room], watch: Watch | None = None,
                 batch_probe: Callable[[], Awaitable[int | None]] | None = None) -> None:
        self.session = session
        # clientMessageIds must never repeat in a conversation: a repeat is an idempotent resend (B.2)
        # that the server answers with the original ack and does not deliver again.
        self.prefix = f"f{next(_fleet_ids)}w"
        self.rooms = list(rooms)
        self.peers = [(Peer(i, 0, r.urls[0]), Peer(i, 1, r.urls[1])) for i, r in enumerate(self.rooms)]
        self.watch = watch
        self.batch_probe = batch_probe  # insert commands so far on the database (average batch size)
        self.records: dict[str, Record] = {}
        self.window: Window | None = None
        self.unexpected = 0  # frames matching no send (none expected)
        self.late = 0  # answers for a window that was already summarised (after its drain timeout)
        self.closing = False
        self.windows: list[Window] = []
        self.typing_sent = self.typing_received = 0  # TYPING frames, over all windows (``typing``)
        self._sends = 0  # over all windows: the next conversation and sender
        self._acked_top: dict[int, int] = {}  # per conversation: the highest acked seq of earlier windows

    # --- sockets -------------------------------------------------------------------------------

    async def open(self, concurrency: int = 50) -> float:
        """Connect and join every socket; seconds it took."""
        started = time.perf_counter()
        await bounded(concurrency, (self._connect(p) for pair in self.peers for p in pair))
        return time.perf_counter() - started

    async def _connect(self, peer: Peer) -> None:
        peer.ws = await self.session.ws_connect(peer.url, autoping=True, heartbeat=None)
        peer.joined = asyncio.get_running_loop().create_future()
        peer.reader = asyncio.create_task(self._read(peer))
        await peer.ws.send_str(frame("JOIN_CONVERSATION", {"conversationId": self.rooms[peer.room].conversation_id}))
        try:
            async with asyncio.timeout(30):
                await peer.joined
        except TimeoutError:
            raise BenchError(f"no JOINED_CONVERSATION within 30s (conversation {peer.room})") from None

    async def close(self) -> None:
        self.closing = True
        peers = [p for pair in self.peers for p in pair if p.ws is not None]
        await bounded(200, (p.ws.close() for p in peers))
        for p in peers:
            if p.reader:
                p.reader.cancel()
        await asyncio.gather(*(p.reader for p in peers if p.reader), return_exceptions=True)

    async def _read(self, peer: Peer) -> None:
        ws = peer.ws
        async for msg in ws:
            if msg.type is aiohttp.WSMsgType.TEXT:
                self._on_frame(peer, msg.data, time.perf_counter())
        peer.close_code = ws.close_code
        if peer.joined and not peer.joined.done():
            peer.joined.set_exception(BenchError(f"socket closed before joining (code {ws.close_code})"))
        if not self.closing and self.window is not None:
            self.window.disconnects += 1

    def _on_frame(self, peer: Peer, text: str, now: float) -> None:
        message = json.loads(text)
        event, data = message.get("event"), message.get("data") or {}
        if event == "NEW_MESSAGE":
            self._on_new_message(peer, data, now)
        elif event == "MESSAGE_SENT":
            self._on_ack(peer, data, now)
        elif event == "ERROR":
            rec = self.records.get(data.get("clientMessageId"))
            if peer.joined is not None and not peer.joined.done():
                peer.joined.set_exception(BenchError(f"join refused: {data.get('message')}"))
                return
            window = rec.window if rec else self.window
            if window is not None:
                window.errors[str(data.get("message"))] += 1
            if rec is not None and rec.error is None:
                was = rec.settled
                rec.error = str(data.get("message"))
                if not was:
                    rec.window.settle_one()
        elif event == "TYPING":
            self.typing_received += 1
        elif event == "JOINED_CONVERSATION":
            if peer.joined is not None and not peer.joined.done():
                peer.joined.set_result(data)
        else:
            self.unexpected += 1

    def _on_new_message(self, peer: Peer, data: dict, now: float) -> None:
        cmid = str(data.get("content", "")).partition("|")[0]
        rec = self.records.get(cmid)
        if rec is None:
            self.unexpected += 1
            return
        window, seq = rec.window, data.get("seq")
        self.late += window.summarized
        rec.deliveries += 1
        if rec.deliveries > 1:
            window.duplicated += 1
            return
        if peer.room != rec.room or peer.side == rec.sender:
            window.misrouted += 1
        if not isinstance(seq, int) or seq <= peer.last_seq:
            window.out_of_order += 1
        else:
            peer.last_seq = seq
        rec.seq = seq
        if rec.ack_seq is not None and rec.ack_seq != seq:
            window.seq_mismatch += 1
        window.delivered += 1
        window.latencies.append(now - rec.sent_at)
        if rec.settled:
            window.settle_one()

    def _on_ack(self, peer: Peer, data: dict, now: float) -> None:
        rec = self.records.get(data.get("clientMessageId"))
        if rec is None:
            self.unexpected += 1
            return
        window, seq = rec.window, data.get("seq")
        self.late += window.summarized
        rec.acks += 1
        if rec.acks > 1:
            window.duplicated += 1
            return
        if not isinstance(seq, int) or seq <= peer.last_ack_seq:
            window.out_of_order += 1
        else:
            peer.last_ack_seq = seq
        rec.ack_seq = seq
        if rec.seq is not None and rec.seq != seq:
            window.seq_mismatch += 1
        window.acked += 1
        window.ack_latencies.append(now - rec.sent_at)
        if rec.settled:
            window.settle_one()

    # --- load --------------------------------------------------------------------------------

    async def run(self, rate: float, duration: float, drain_timeout: float = 10.0) -> dict:
        """Send ``rate`` messages/s in total for ``duration`` s, drain, and return the window's figures."""
        window = Window(len(self.windows) + 1, len(self.rooms), rate, duration)
        self.windows.append(window)
        self.window = window
        inserts_before = await self._inserts()
        with generator_gc_paused():
            async with measure(self.watch) as resources:
                await self._send(window, rate, duration)
                window.sending = False
                if window.open == 0:
                    window.settled.set()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(drain_timeout):
                        await window.settled.wait()
        inserts = await self._inserts()
        result = self._summary(window, resources.as_dict())
        if inserts is not None and inserts_before is not None and inserts > inserts_before:
            result["db_insert_batch_avg"] = round(window.acked / (inserts - inserts_before), 1)
        return result

    @contextlib.contextmanager
    def typing(self, per_second: float):
        """Every socket sends ``TYPING`` in turn, ``per_second`` frames in all, while the block runs
        (a person typing sends more than the server forwards: it keeps one per socket per 2 s)."""
        task = asyncio.get_running_loop().create_task(self._type(per_second))
        try:
            yield
        finally:
            task.cancel()

    async def _type(self, per_second: float) -> None:
        sockets = [p for pair in self.peers for p in pair]
        frames = [frame("TYPING", {"conversationId": self.rooms[p.room].conversation_id}) for p in sockets]
        start, k = time.perf_counter(), 0
        while True:
            due = min(int((time.perf_counter() - start) * per_second) + 1, k + MAX_BURST)
            for i in range(k, due):
                peer = sockets[i % len(sockets)]
                if peer.ws is not None and not peer.ws.closed:
                    await peer.ws.send_str(frames[i % len(sockets)])
                    self.typing_sent += 1
            k = max(k, due)
            await asyncio.sleep(max(0.0, start + k / per_second - time.perf_counter()))

    async def _inserts(self) -> int | None:
        if self.batch_probe is None:
            return None
        try:
            return await self.batch_probe()
        except Exception:  # noqa: BLE001 — a probe is a nicety; the window's figures do not depend on it
            return None

    async def _send(self, window: Window, rate: float, duration: float) -> None:
        n = len(self.rooms)
        total = max(1, round(rate * duration))
        start = time.perf_counter()
        deadline = start + duration
        k = 0
        while k < total:
            now = time.perf_counter()
            if now >= deadline + 0.5 / rate:
                break  # fell behind: what was not sent in time shows as a shortfall
            due = min(total, int((now - start) * rate) + 1, k + MAX_BURST)
            while k < due:
                await self._send_one(window, self._sends % n, (self._sends // n) % 2)
                self._sends += 1
                k += 1
            delay = start + k / rate - time.perf_counter()
            await asyncio.sleep(max(0.0, delay))

    async def _send_one(self, window: Window, room: int, side: int) -> None:
        peer = self.peers[room][side]
        if peer.ws is None or peer.ws.closed:
            window.send_failures += 1
            return
        cmid = f"{self.prefix}{window.wid}.{window.sent}"
        content = (cmid + "|" + FILLER)[:CONTENT_CHARS]
        text = frame("SEND_MESSAGE", {"conversationId": self.rooms[room].conversation_id, "content": content,
                                      "clientMessageId": cmid})
        rec = Record(window, room, side, time.perf_counter())
        self.records[cmid] = rec
        window.records.append(rec)
        window.sent += 1
        window.open += 1
        try:
            await peer.ws.send_str(text)
        except (ConnectionError, RuntimeError):
            window.send_failures += 1
            rec.error = "send failed"
            window.settle_one()

    def _summary(self, w: Window, resources: dict) -> dict:
        lost = sum(1 for r in w.records if r.deliveries == 0 and r.error is None)
        unacked = sum(1 for r in w.records if r.acks == 0 and r.error is None)
        refused = sum(1 for r in w.records if r.error is not None)
        seq_gaps, dup_seqs = self._check_seqs(w)
        w.summarized = True  # answers arriving from now on are counted as late by the fleet
        return {
            "conversations": w.conversations,
            "rate": round(w.rate, 1),
            "duration_s": w.duration,
            "sent": w.sent,
            "achieved_rate": round(w.sent / w.duration, 1),
            "acked": w.acked,
            "delivered": w.delivered,
            "lost": lost,
            "unacked": unacked,
            "refused": refused,
            "duplicated": w.duplicated + dup_seqs,
            "out_of_order": w.out_of_order,
            "seq_gaps": seq_gaps,
            "misrouted": w.misrouted,
            "seq_mismatch": w.seq_mismatch,
            "disconnects": w.disconnects,
            "send_failures": w.send_failures,
            "errors": dict(w.errors),
            "latency_ms": percentiles(w.latencies),
            "ack_latency_ms": percentiles(w.ack_latencies),
            "resources": resources,
        }

    async def totals(self, drain_timeout: float = 10.0) -> dict:
        """Over every window of this fleet, after waiting up to ``drain_timeout`` for late answers:
        what was never delivered or never acknowledged (and not refused) is lost for good."""
        deadline = time.perf_counter() + drain_timeout
        while any(w.open > 0 for w in self.windows) and time.perf_counter() < deadline:
            await asyncio.sleep(0.05)
        records = list(self.records.values())
        by_room: dict[int, list[int]] = defaultdict(list)
        for rec in records:
            seq = rec.ack_seq if rec.ack_seq is not None else rec.seq
            if seq is not None:
                by_room[rec.room].append(seq)
        gaps = dups = 0
        for seqs in by_room.values():
            unique = sorted(set(seqs))
            dups += len(seqs) - len(unique)
            gaps += unique[-1] - unique[0] + 1 - len(unique)
        return {
            "sent": len(records),
            "lost": sum(1 for r in records if r.deliveries == 0 and r.error is None),
            "unacked": sum(1 for r in records if r.acks == 0 and r.error is None),
            "refused": sum(1 for r in records if r.error is not None),
            "duplicated": sum(w.duplicated for w in self.windows) + dups,
            "out_of_order": sum(w.out_of_order for w in self.windows),
            "seq_gaps": gaps,
            "misrouted": sum(w.misrouted for w in self.windows),
            "seq_mismatch": sum(w.seq_mismatch for w in self.windows),
            "disconnects": sum(w.disconnects for w in self.windows),
            "late": self.late,
            "unexpected": self.unexpected,
        }

    def _check_seqs(self, w: Window) -> tuple[int, int]:
        """Acked seqs per conversation must continue the previous window's and be contiguous."""
        by_room: dict[int, list[int]] = defaultdict(list)
        for rec in w.records:
            if rec.ack_seq is not None:
                by_room[rec.room].append(rec.ack_seq)
        gaps = dups = 0
        for room, seqs in by_room.items():
            unique = sorted(set(seqs))
            dups += len(seqs) - len(unique)
            low = self._acked_top.get(room, unique[0] - 1) + 1
            gaps += (unique[-1] - low + 1) - len(unique)
            self._acked_top[room] = unique[-1]
        return gaps, dups
