"""The WebSocket wire format (docs: README "WebSocket"): every event name, error text and close
code, the builders of every outbound frame, and the parsing of inbound ones. Nothing else in
livechat spells an event name or builds a frame."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import attrs
from attrs import field, frozen
from bson import ObjectId

from livechat.domain.messages import MAX_CONTENT_CHARS, MAX_SEQ
from livechat.domain.models import Conversation, Message, Note, Presence, ReadMark, TypingSignal
from livechat.serialization import conversation_item, iso, message_view, note_view

# client → server
JOIN_CONVERSATION = "JOIN_CONVERSATION"
SEND_MESSAGE = "SEND_MESSAGE"
LEAVE_CONVERSATION = "LEAVE_CONVERSATION"
CLOSE_CONVERSATION = "CLOSE_CONVERSATION"
SUBSCRIBE_INBOX = "SUBSCRIBE_INBOX"
SET_PRESENCE = "SET_PRESENCE"
WATCH_CONVERSATION = "WATCH_CONVERSATION"
UNWATCH_CONVERSATION = "UNWATCH_CONVERSATION"
TYPING = "TYPING"  # also server → client, the same name (docs/asyncapi.yaml)
MARK_READ = "MARK_READ"
SEND_NOTE = "SEND_NOTE"
# server → client
JOINED_CONVERSATION = "JOINED_CONVERSATION"
LEFT_CONVERSATION = "LEFT_CONVERSATION"
NEW_MESSAGE = "NEW_MESSAGE"
MESSAGE_SENT = "MESSAGE_SENT"
CONVERSATION_CLOSED = "CONVERSATION_CLOSED"
INBOX_SUBSCRIBED = "INBOX_SUBSCRIBED"
CONVERSATION_UPDATED = "CONVERSATION_UPDATED"
CONVERSATION_REMOVED = "CONVERSATION_REMOVED"
PRESENCE = "PRESENCE"
QUEUE_POSITION = "QUEUE_POSITION"
WATCHING_CONVERSATION = "WATCHING_CONVERSATION"
UNWATCHED_CONVERSATION = "UNWATCHED_CONVERSATION"
READ = "READ"
NOTE_SENT = "NOTE_SENT"
NEW_NOTE = "NEW_NOTE"
ERROR = "ERROR"

UNAUTHORIZED = "Unauthorized or invalid token"
INVALID_FORMAT = "Invalid message format"
UNKNOWN_EVENT = "Unknown event"
NOT_JOINED = "You must join the conversation first"
TOO_MANY_MESSAGES = "Too many messages"
TOO_MANY_CONNECTIONS = "Too many connections"

CLOSE_UNAUTHORIZED = 4401
CLOSE_GOING_AWAY = 1001  # server shutdown, or a write to the peer failed
CLOSE_UNSUPPORTED = 1003  # a binary frame: this protocol is JSON text only
CLOSE_POLICY = 1008  # sustained flooding, or too many sockets for one user
CLOSE_INTERNAL = 1011
CLOSE_TRY_LATER = 1013  # a slow consumer, or the server could not check the token (database down)

MAX_CLIENT_MESSAGE_ID = 64
TYPING_INTERVAL = 2.0  # seconds: at most one TYPING forwarded per socket in this long (C.5)


# --- outbound frames: built here and nowhere else ---------------------------------------------


def encode(event: str, data: dict[str, Any]) -> str:
    return json.dumps({"event": event, "data": data}, ensure_ascii=False, separators=(",", ":"))


def error(reason: str, client_message_id: str | None = None) -> str:
    data: dict[str, Any] = {"message": reason}
    if client_message_id is not None:
        data["clientMessageId"] = client_message_id
    return encode(ERROR, data)


def new_message(message: Message) -> str:
    return encode(NEW_MESSAGE, message_view(message))


def message_sent(message: Message) -> str:
    return encode(MESSAGE_SENT, {
        "conversationId": str(message.conversation_id), "clientMessageId": message.client_message_id,
        "messageId": str(message.id), "seq": message.seq, "createdAt": iso(message.created_at),
    })


def joined(conv: Conversation, last_seq: int | None = None) -> str:
    data: dict[str, Any] = {"conversationId": str(conv.id), "status": conv.status.value}
    if last_seq is not None:
        data["lastSeq"] = last_seq
    return encode(JOINED_CONVERSATION, data)


def left(conversation_id: ObjectId) -> str:
    return encode(LEFT_CONVERSATION, {"conversationId": str(conversation_id)})


def conversation_closed(conversation_id: ObjectId) -> str:
    return encode(CONVERSATION_CLOSED, {"conversationId": str(conversation_id)})


def inbox_subscribed(items: list[dict[str, Any]]) -> str:
    return encode(INBOX_SUBSCRIBED, {"conversations": items})


def conversation_updated(conv: Conversation, names: dict[ObjectId, str], unread: int = 0) -> str:
    return encode(CONVERSATION_UPDATED, {"conversation": conversation_item(conv, names, unread)})


def conversation_removed(conversation_id: ObjectId) -> str:
    return encode(CONVERSATION_REMOVED, {"conversationId": str(conversation_id)})


def presence(agent_id: ObjectId, status: Presence, since: datetime | None) -> str:
    return encode(PRESENCE, {"userId": str(agent_id), "status": status.value, "since": iso(since)})


def queue_position(conversation_id: ObjectId, position: int) -> str:
    return encode(QUEUE_POSITION, {"conversationId": str(conversation_id), "position": position})


def watching(conv: Conversation, last_seq: int) -> str:
    return encode(WATCHING_CONVERSATION, {"conversationId": str(conv.id), "status": conv.status.value,
                                          "lastSeq": last_seq})


def unwatched(conversation_id: ObjectId) -> str:
    return encode(UNWATCHED_CONVERSATION, {"conversationId": str(conversation_id)})


def typing(signal: TypingSignal) -> str:
    return encode(TYPING, {"conversationId": str(signal.conversation_id), "userId": str(signal.user_id),
                           "role": signal.role.value})


def read(mark: ReadMark) -> str:
    return encode(READ, {"conversationId": str(mark.conversation_id), "userId": str(mark.user_id),
                         "role": mark.role.value, "seq": mark.seq})


def note_sent(note: Note) -> str:
    """Like ``MESSAGE_SENT``: which send it answers, and the stored note's id and time."""
    return encode(NOTE_SENT, {"conversationId": str(note.conversation_id), "clientMessageId": note.client_message_id,
                              "noteId": str(note.id), "createdAt": iso(note.created_at)})


def new_note(note: Note) -> str:
    """Staff sockets only: ``realtime/fanout.py`` sends it through ``Fanout._to_staff`` and nowhere else."""
    return encode(NEW_NOTE, note_view(note))


# --- inbound frames -----------------------------------------------------------------------------


class FormatError(Exception):
    """Not a ``{"event": str, "data": object}`` JSON text frame."""


def decode_frame(text: str) -> tuple[str, dict[str, Any]]:
    try:
        frame = json.loads(text)
    except (ValueError, RecursionError):
        raise FormatError() from None
    if not isinstance(frame, dict):
        raise FormatError()
    event, data = frame.get("event"), frame.get("data")
    if not isinstance(event, str) or not isinstance(data, dict):
        raise FormatError()
    return event, data


def is_client_message_id(value: Any) -> bool:
    return isinstance(value, str) and 1 <= len(value) <= MAX_CLIENT_MESSAGE_ID


def _seq_in_range(instance: object, attribute: attrs.Attribute, value: int | None) -> None:
    if value is not None and not 0 <= value <= MAX_SEQ:
        raise ValueError(f"{attribute.name}: 0-{MAX_SEQ}")


def _content(instance: object, attribute: attrs.Attribute, value: str) -> None:
    if not 1 <= len(value.strip()) <= MAX_CONTENT_CHARS:
        raise ValueError(f"content: 1-{MAX_CONTENT_CHARS} characters after trimming")


def _client_message_id(instance: object, attribute: attrs.Attribute, value: str | None) -> None:
    if value is not None and not is_client_message_id(value):
        raise ValueError(f"clientMessageId: 1-{MAX_CLIENT_MESSAGE_ID} characters")


@frozen
class ConversationRef:
    conversation_id: ObjectId


@frozen
class Join:
    conversation_id: ObjectId
    last_seq: int | None = field(default=None, validator=_seq_in_range)


@frozen
class Watch:
    conversation_id: ObjectId
    last_seq: int | None = field(default=None, validator=_seq_in_range)


@frozen
class SetPresence:
    status: str


@frozen
class Send:
    conversation_id: ObjectId
    content: str = field(validator=_content)  # stored verbatim; only its trimmed length is checked
    client_message_id: str | None = field(default=None, validator=_client_message_id)


@frozen
class MarkRead:
    conversation_id: ObjectId
    seq: int = field(validator=_seq_in_range)  # above the stored top: checked by the service


@frozen
class SendNote:
    conversation_id: ObjectId
    content: str = field(validator=_content)  # stored verbatim, like a message
    client_message_id: str | None = field(default=None, validator=_client_message_id)
