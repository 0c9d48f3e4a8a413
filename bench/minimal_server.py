"""The physical limit of a room broadcast on aiohttp: no auth, no database, no outboxes.

Speaks the subset of livechat's WebSocket protocol the load generator uses, so the same
generator drives both: ``JOIN_CONVERSATION`` → ``JOINED_CONVERSATION``; ``SEND_MESSAGE`` →
``MESSAGE_SENT`` to the sender (seq from an in-memory counter per room) and ``NEW_MESSAGE`` to the
other sockets of the room, serialised once per room as livechat does. Whatever livechat does more
(authentication, policy, durable batched writes, per-socket outboxes) is the price of its features.

    python -m bench.minimal_server --port 8765     (binds 127.0.0.1 only)
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from datetime import UTC, datetime

from aiohttp import WSMsgType, web

rooms_key = web.AppKey("rooms", dict)
seqs_key = web.AppKey("seqs", dict)


def encode(event: str, data: dict) -> str:
    return json.dumps({"event": event, "data": data}, ensure_ascii=False, separators=(",", ":"))


async def health(request: web.Request) -> web.Response:
    return web.json_response({"success": True, "data": {"status": "ok"}})


async def ws_handler(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    rooms: dict[str, set[web.WebSocketResponse]] = request.app[rooms_key]
    seqs: dict[str, int] = request.app[seqs_key]
    joined: set[str] = set()
    try:
        async for msg in ws:
            if msg.type is not WSMsgType.TEXT:
                continue
            frame = json.loads(msg.data)
            event, data = frame.get("event"), frame.get("data") or {}
            room = data.get("conversationId")
            if event == "JOIN_CONVERSATION":
                rooms[room].add(ws)
                joined.add(room)
                await ws.send_str(encode("JOINED_CONVERSATION", {"conversationId": room, "status": "assigned"}))
            elif event == "SEND_MESSAGE" and room in joined:
                seqs[room] = seq = seqs.get(room, 0) + 1
                now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
                await ws.send_str(encode("MESSAGE_SENT", {
                    "conversationId": room, "clientMessageId": data.get("clientMessageId"),
                    "messageId": f"{seq:024x}", "seq": seq, "createdAt": now}))
                text = encode("NEW_MESSAGE", {"messageId": f"{seq:024x}", "conversationId": room, "seq": seq,
                                              "senderId": "-", "senderRole": "-", "content": data.get("content"),
                                              "createdAt": now})
                for peer in list(rooms[room]):
                    if peer is not ws and not peer.closed:
                        await peer.send_str(text)
            else:
                await ws.send_str(encode("ERROR", {"message": "Unknown event"}))
    finally:
        for room in joined:
            rooms[room].discard(ws)
    return ws


def make_app() -> web.Application:
    app = web.Application()
    app[rooms_key] = defaultdict(set)
    app[seqs_key] = {}
    app.router.add_get("/health", health)
    app.router.add_get("/ws", ws_handler)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.minimal_server", description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    web.run_app(make_app(), host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
