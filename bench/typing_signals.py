"""The ``typing`` scenario: does typing slow the chat down?

The load server's conversations (``typing_conversations`` of them, 1,000 in a full run), two
joined sockets each. Chat runs at ``typing_chat_rate`` (50 msgs/s: below the knee at N=1,000, so
that p99 measures the typing and not a saturated writer) three times: alone, then while every socket
sends ``TYPING`` every 2.05 s — what the console sends while its user types (at most one per
2 s), so ~1 event per conversation per second, each one forwarded (the server keeps one per
socket per 2 s), then alone again. The figure is chat p99
with typing against the mean of the two runs without it. One process: typing costs no database
work there (README "Signals").
"""

from __future__ import annotations

import asyncio
import time

from bench.scenarios import Bench, progress, window_summary

SENDS_PER_SOCKET = 1 / 2.05  # TYPING frames per second from each socket: just above the server's throttle


async def typing_signals(bench: Bench) -> dict:
    p = bench.plan
    t = await bench.load_target()
    n = min(p.typing_conversations, len(t["rooms"]))
    fleet = await bench.fleet(t["rooms"][:n], t["watch"], t["probe"])
    try:
        progress(f"typing: chat N={n} at {p.typing_chat_rate:.0f} msgs/s alone")
        before = await fleet.run(p.typing_chat_rate, p.chat_duration, p.drain_timeout)
        progress(f"  p99 {before['latency_ms']['p99']} ms; again while every socket types")
        sent, received, started = fleet.typing_sent, fleet.typing_received, time.perf_counter()
        with fleet.typing(2 * n * SENDS_PER_SOCKET):
            during = await fleet.run(p.typing_chat_rate, p.chat_duration, p.drain_timeout)
        seconds = time.perf_counter() - started
        sent, received = fleet.typing_sent - sent, fleet.typing_received - received
        progress(f"  p99 {during['latency_ms']['p99']} ms; {sent:,} TYPING sent, {received:,} forwarded; alone again")
        await asyncio.sleep(p.settle)
        after = await fleet.run(p.typing_chat_rate, p.chat_duration, p.drain_timeout)
        integrity = await fleet.totals(p.drain_timeout)
    finally:
        await fleet.close()
    return {
        "conversations": n, "rate": p.typing_chat_rate, "typing_sent": sent, "typing_forwarded": received,
        "typing_forwarded_per_conversation_s": round(received / n / seconds, 2),
        "windows": {name: window_summary(w) for name, w in (("alone", before), ("typing", during),
                                                              ("alone_again", after))},
        "integrity": integrity,
    }
