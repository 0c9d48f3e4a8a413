"""GET /ws: authenticate, then one receive loop per socket that parses frames and calls services.

Replies and broadcasts never write to a socket directly: they go through the socket's outbox
(realtime/hub.py), so this loop never waits on a slow peer. Errors become ``ERROR`` events and
the socket stays open — except a bad token (4401), a flood (1008), a binary frame (1003), an
oversize frame (1009, by aiohttp) and a bug in our own handling (1011, logged with the request id).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from aiohttp import WSMsgType, web
from bson import ObjectId

from livechat.domain import policy
from livechat.domain.messages import Draft
from livechat.domain.models import Conversation, ConversationStatus, User, unread
from livechat.domain.policy import Action
from livechat.errors import ALREADY_CLOSED, DomainError, Forbidden, InvalidInput, TooManyRequests, Unauthenticated
from livechat.keys import request_id_key, services_key, settings_key
from livechat.realtime import protocol
from livechat.realtime.hub import Connection
from livechat.serialization import conversation_item, parse
from livechat.services import Services
from livechat.web.http import bearer_token

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1", "[::1]"}
INBOX_FIRST_PAGE = 100  # GET /conversations' default page
TOO_MANY_UPGRADES = "Too many connection attempts, try again later"


class TokenBucket:
    """``burst`` at once, then ``rate`` per second."""

    def __init__(self, burst: int, rate: float) -> None:
        self.capacity, self.rate = float(burst), rate
        self.tokens, self.stamp = float(burst), time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


def origin_allowed(request: web.Request) -> bool:
    """Browsers send Origin; other clients do not, and are allowed. Same-origin always is. The
    allowed origins are ``http.allowed_origins``, or when that is empty the configured CORS
    origins (an app allowed to call the API may open its socket; ``*`` allows any origin)."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    settings = request.app[settings_key]
    allowed = settings.http.allowed_origins or settings.http.cors_origin
    if origin in allowed or "*" in allowed:
        return True
    parts = urlsplit(origin)
    if parts.netloc and parts.netloc == request.host:
        return True
    return not settings.is_production and not allowed and parts.hostname in LOOPBACK_HOSTS


@routes.get("/ws")
async def ws_handler(request: web.Request) -> web.StreamResponse:
    if not origin_allowed(request):
        raise Forbidden()
    settings = request.app[settings_key].ws
    services = request.app[services_key]
    # aiohttp refuses a message of max_msg_size bytes already; the limit is "over max_frame_bytes".
    ws = web.WebSocketResponse(heartbeat=settings.heartbeat, max_msg_size=settings.max_frame_bytes + 1)
    client = request.remote or "unknown"
    failures = services.upgrade_failures
    if failures is not None:
        wait = failures.retry_after(client)
        if wait > 0:  # refused before upgrading: a flood of bad tokens costs no socket and no lookup
            raise TooManyRequests(TOO_MANY_UPGRADES, retry_after=max(1, math.ceil(wait)))
    try:
        user = await services.auth.authenticate(request.query.get("token") or bearer_token(request))
    except DomainError as exc:
        unauthenticated = isinstance(exc, Unauthenticated)
        if unauthenticated and failures is not None:
            failures.fail(client)
        await ws.prepare(request)
        await ws.send_str(protocol.error(protocol.UNAUTHORIZED if unauthenticated else exc.message))
        await ws.close(code=protocol.CLOSE_UNAUTHORIZED if unauthenticated else protocol.CLOSE_TRY_LATER,
                       message=b"unauthorized")
        return ws
    await ws.prepare(request)
    conn = Connection(ws, user, outbox_size=settings.outbox_size, send_timeout=settings.send_timeout,
                      request_id=request[request_id_key], transport=request.transport,
                      metrics=services.hub.metrics)
    if not services.hub.register(conn):
        conn.send(protocol.error(protocol.TOO_MANY_CONNECTIONS))
        conn.close(protocol.CLOSE_POLICY, "too many connections")
        await conn.wait_closed(settings.send_timeout)
        return ws
    session = Session(services, conn, TokenBucket(settings.rate_burst, settings.rate_per_second),
                      settings.abuse_strikes, joins=TokenBucket(settings.rate_burst, settings.rate_per_second))
    try:
        await services.presence.connected(user)
        async for msg in ws:
            if msg.type is WSMsgType.TEXT:
                await session.handle(msg.data)
            elif msg.type is WSMsgType.BINARY:
                conn.send(protocol.error(protocol.INVALID_FORMAT))
                conn.close(protocol.CLOSE_UNSUPPORTED, "text frames only")
            if conn.dropped:
                break
    except Exception:
        log.exception("websocket handling failed (user %s, request %s)", user.id, conn.request_id)
        conn.close(protocol.CLOSE_INTERNAL, "internal error", now=True)
    finally:
        services.hub.unregister(conn)
        services.fanout.inbox.unsubscribe(conn)
        try:  # a handler may be cancelled when its client goes away (aiohttp handler_cancellation)
            await services.presence.disconnected(user)
            if conn.dropped:  # we are closing it: let the queued events and the close frame out first
                await conn.wait_closed(settings.send_timeout)
        finally:
            await conn.finish()
    return ws


class Session:
    """One socket's conversation with the server: frames in, service calls, events out."""

    def __init__(self, services: Services, conn: Connection, bucket: TokenBucket, abuse_strikes: int, *,
                 joins: TokenBucket | None = None) -> None:
        self.services = services
        self.conn = conn
        self.user: User = conn.user
        self.bucket = bucket
        # JOIN_CONVERSATION reads the database each time: limited like sends, in a bucket of its own.
        self.joins = joins or TokenBucket(int(bucket.capacity), bucket.rate)
        self.abuse_strikes = abuse_strikes
        self.strikes = 0
        self.handlers = {
            protocol.JOIN_CONVERSATION: self.join,
            protocol.SEND_MESSAGE: self.send_message,
            protocol.LEAVE_CONVERSATION: self.leave,
            protocol.CLOSE_CONVERSATION: self.close_conversation,
            protocol.SUBSCRIBE_INBOX: self.subscribe_inbox,
            protocol.SET_PRESENCE: self.set_presence,
            protocol.WATCH_CONVERSATION: self.watch,
            protocol.UNWATCH_CONVERSATION: self.unwatch,
            protocol.TYPING: self.typing,
            protocol.MARK_READ: self.mark_read,
            protocol.SEND_NOTE: self.send_note,
        }
        self.typing_forwarded_at = float("-inf")  # monotonic time of the last TYPING forwarded

    def error(self, message: str, client_message_id: str | None = None) -> None:
        self.conn.send(protocol.error(message, client_message_id))

    async def handle(self, text: str) -> None:
        try:
            event, data = protocol.decode_frame(text)
        except protocol.FormatError:
            self.error(protocol.INVALID_FORMAT)
            return
        handler = self.handlers.get(event)
        if handler is None:
            self.error(protocol.UNKNOWN_EVENT)
            return
        try:
            await handler(data)
        except DomainError as exc:
            self.error(exc.message)

    def throttled(self, bucket: TokenBucket, client_id: str | None = None) -> bool:
        """Over the rate: ERROR ``Too many messages`` (and 1008 once abuse goes on); ``True`` then."""
        if bucket.take():
            self.strikes = 0
            return False
        self.services.hub.metrics.rate_limited.inc()
        self.strikes += 1
        self.error(protocol.TOO_MANY_MESSAGES, client_id)
        if self.strikes >= self.abuse_strikes:
            self.conn.close(protocol.CLOSE_POLICY, "message flood")
        return True

    async def join(self, data: dict[str, Any]) -> None:
        if self.throttled(self.joins):
            return
        policy.ensure_role(self.user, Action.JOIN)
        req = parse(data, protocol.Join)
        conversations, room = self.services.conversations, req.conversation_id
        conv = await conversations.join(self.user, room)
        self.services.fanout.inbox.follow_queue(self.conn, conv)
        if req.last_seq is None:
            self.services.fanout.join(room, self.conn)
            self.conn.send(protocol.joined(conv))
            return
        await self._enter_replaying(conv, req.last_seq, lambda top: protocol.joined(conv, top))

    async def _enter_replaying(self, conv: Conversation, after_seq: int, answer: Callable[[int], str]) -> None:
        """Resume (B.3): join the room with its live messages held while what came after
        ``after_seq`` is replayed from the database, right after ``answer(top)``."""
        conversations, room = self.services.conversations, conv.id
        self.conn.hold(room, after_seq=after_seq)
        self.services.fanout.join(room, self.conn)
        try:
            top = await conversations.top_seq(conv)
            self.services.fanout.prime(room, top)
            self.conn.rewind(room, top)
            self.conn.send(answer(top))
            async for message in conversations.replay(conv, after_seq=after_seq, up_to=top):
                await self.conn.replay(protocol.new_message(message), room, message.seq)
        except BaseException:
            self.services.hub.leave(room, self.conn)
            raise
        finally:
            self.conn.release(room)

    async def send_message(self, data: dict[str, Any]) -> None:
        client_id = data.get("clientMessageId")
        client_id = client_id if protocol.is_client_message_id(client_id) else None  # errors repeat a valid one
        if self.throttled(self.bucket, client_id):
            return
        try:
            policy.ensure_role(self.user, Action.SEND)
            req = parse(data, protocol.Send)
            if req.conversation_id not in self.conn.rooms:
                if req.conversation_id in self.conn.closed_rooms:
                    raise InvalidInput(ALREADY_CLOSED)
                raise InvalidInput(protocol.NOT_JOINED)
        except DomainError as exc:
            self.error(exc.message, client_id)
            return
        self.services.messages.submit(Draft(sender=self.user, origin=self.conn, conversation_id=req.conversation_id,
                                            content=req.content, client_message_id=req.client_message_id))

    async def leave(self, data: dict[str, Any]) -> None:
        policy.ensure_role(self.user, Action.LEAVE)
        req = parse(data, protocol.ConversationRef)
        self.services.hub.leave(req.conversation_id, self.conn)
        self.conn.send(protocol.left(req.conversation_id))

    async def close_conversation(self, data: dict[str, Any]) -> None:
        policy.ensure_role(self.user, Action.CLOSE_IN_CHAT)
        req = parse(data, protocol.ConversationRef)
        in_room = self.conn in self.services.hub.members(req.conversation_id)
        conv = await self.services.conversations.close_in_chat(self.user, req.conversation_id)
        if not in_room:  # the room heard it; the closer hears it even if it never joined
            self.conn.send(protocol.conversation_closed(conv.id))

    async def subscribe_inbox(self, data: dict[str, Any]) -> None:
        policy.ensure_role(self.user, Action.SUBSCRIBE_INBOX)
        inbox = self.services.fanout.inbox
        inbox.subscribe(self.conn)  # updates from now on wait until the first page is out
        try:
            page = await self.services.conversations.list(self.user, status=None, before=None,
                                                          limit=INBOX_FIRST_PAGE)
            names = await self.services.conversations.names(page)
            marks = await self.services.signals.watermarks(self.user, page)
        except BaseException:
            inbox.unsubscribe(self.conn)
            raise
        self.conn.send(protocol.inbox_subscribed([conversation_item(c, names, unread(c, self.user, marks.get(c.id, 0)))
                                                  for c in page]))
        for agent_id, status, since in self.services.presence.visible_to(self.user):
            self.conn.send(protocol.presence(agent_id, status, since))
        inbox.ready(self.conn, page)

    async def set_presence(self, data: dict[str, Any]) -> None:
        policy.ensure_role(self.user, Action.SET_PRESENCE)
        req = parse(data, protocol.SetPresence)
        await self.services.presence.set_status(self.user, req.status)

    async def watch(self, data: dict[str, Any]) -> None:
        """Read-only: the room's events, invisible to the candidate (C.5)."""
        policy.ensure_role(self.user, Action.WATCH)
        req = parse(data, protocol.Watch)
        conversations = self.services.conversations
        conv = await conversations.load_authorized(self.user, Action.WATCH, req.conversation_id)
        room = conv.id
        after = req.last_seq if req.last_seq is not None else await conversations.top_seq(conv)
        if conv.status is ConversationStatus.CLOSED:
            top = await conversations.top_seq(conv)
            self.conn.send(protocol.watching(conv, top))
            async for message in conversations.replay(conv, after_seq=after, up_to=top):
                await self.conn.replay(protocol.new_message(message), room, message.seq)
            return
        self.conn.watching.add(room)
        await self._enter_replaying(conv, after, lambda top: protocol.watching(conv, top))

    async def unwatch(self, data: dict[str, Any]) -> None:
        policy.ensure_role(self.user, Action.UNWATCH)
        req = parse(data, protocol.ConversationRef)
        if req.conversation_id in self.conn.watching:
            self.services.hub.leave(req.conversation_id, self.conn)
        self.conn.send(protocol.unwatched(req.conversation_id))

    def in_room(self, conversation_id: ObjectId) -> None:
        """Joined (or watching): the room's signals are for its members only."""
        if conversation_id not in self.conn.rooms:
            if conversation_id in self.conn.closed_rooms:
                raise InvalidInput(ALREADY_CLOSED)
            raise InvalidInput(protocol.NOT_JOINED)

    async def typing(self, data: dict[str, Any]) -> None:
        """Forward to the room's other sockets, at most once per ``TYPING_INTERVAL`` per socket; the
        rest are dropped without a word (a keystroke stream is no flood). No database is touched:
        being in the room was authorized when the socket joined."""
        policy.ensure_role(self.user, Action.TYPING)
        req = parse(data, protocol.ConversationRef)
        self.in_room(req.conversation_id)
        now = time.monotonic()
        if now - self.typing_forwarded_at < protocol.TYPING_INTERVAL:
            return
        self.typing_forwarded_at = now
        self.services.fanout.typing(req.conversation_id, self.conn)

    async def mark_read(self, data: dict[str, Any]) -> None:
        """No answer of its own: the room's others get ``READ`` (when the watermark moved)."""
        policy.ensure_role(self.user, Action.MARK_READ)
        req = parse(data, protocol.MarkRead)
        conv = await self.services.conversations.load_authorized(self.user, Action.MARK_READ, req.conversation_id)
        self.in_room(conv.id)
        await self.services.signals.mark_read(self.user, conv, req.seq, origin=self.conn)

    async def send_note(self, data: dict[str, Any]) -> None:
        client_id = data.get("clientMessageId")
        client_id = client_id if protocol.is_client_message_id(client_id) else None  # errors repeat a valid one
        try:
            policy.ensure_role(self.user, Action.SEND_NOTE)
            req = parse(data, protocol.SendNote)
            conv = await self.services.conversations.load_authorized(self.user, Action.SEND_NOTE, req.conversation_id)
            self.in_room(conv.id)
            await self.services.signals.send_note(self.user, conv, req.content, req.client_message_id,
                                                  origin=self.conn)
        except DomainError as exc:
            self.error(exc.message, client_id)
