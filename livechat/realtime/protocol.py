"""The WebSocket protocol (CONTRACT.md A.6, B.1–B.4): event names, inbound payloads, error texts."""

from __future__ import annotations

import json
from typing import Any

import attrs
from attrs import field, frozen
from bson import ObjectId

from livechat.domain.messages import MAX_CONTENT_CHARS

# client → server
JOIN_CONVERSATION = "JOIN_CONVERSATION"
SEND_MESSAGE = "SEND_MESSAGE"
LEAVE_CONVERSATION = "LEAVE_CONVERSATION"
CLOSE_CONVERSATION = "CLOSE_CONVERSATION"
# server → client
JOINED_CONVERSATION = "JOINED_CONVERSATION"
LEFT_CONVERSATION = "LEFT_CONVERSATION"
NEW_MESSAGE = "NEW_MESSAGE"
ERROR = "ERROR"

UNAUTHORIZED = "Unauthorized or invalid token"
INVALID_FORMAT = "Invalid message format"
UNKNOWN_EVENT = "Unknown event"
NOT_JOINED = "You must join the conversation first"
TOO_MANY_MESSAGES = "Too many messages"
TOO_MANY_CONNECTIONS = "Too many connections"

CLOSE_UNAUTHORIZED = 4401
CLOSE_POLICY = 1008  # sustained flooding, or too many sockets for one user
CLOSE_INTERNAL = 1011
CLOSE_UNSUPPORTED = 1003  # a binary frame: this protocol is JSON text only


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


def _non_negative(instance: object, attribute: attrs.Attribute, value: int | None) -> None:
    if value is not None and not 0 <= value <= 2**53:
        raise ValueError(attribute.name)


def _content(instance: object, attribute: attrs.Attribute, value: str) -> None:
    if not 1 <= len(value.strip()) <= MAX_CONTENT_CHARS:
        raise ValueError("content: 1-10000 characters after trimming")


def _client_message_id(instance: object, attribute: attrs.Attribute, value: str | None) -> None:
    if value is not None and not 1 <= len(value) <= 64:
        raise ValueError("clientMessageId: 1-64 characters")


@frozen
class ConversationRef:
    conversation_id: ObjectId


@frozen
class Join:
    conversation_id: ObjectId
    last_seq: int | None = field(default=None, validator=_non_negative)


@frozen
class Send:
    conversation_id: ObjectId
    content: str = field(validator=_content)  # stored verbatim; only its trimmed length is checked
    client_message_id: str | None = field(default=None, validator=_client_message_id)
