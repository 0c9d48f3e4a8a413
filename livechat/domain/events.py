"""What the domain tells the rest of the system, as typed events published through ``EventPublisher``.

The services only say what happened; the realtime layer decides who hears it and in which wire
format (``realtime/protocol.py``), on this process and — through the change feed — on every other.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from attrs import frozen
from bson import ObjectId

from livechat.domain.models import Conversation, Message, Note, Presence, ReadMark


@frozen
class MessageStored:
    """A message is durable. ``origin`` (the sending socket) gets the acknowledgement when it sent a
    ``clientMessageId``; everyone else in the room gets the message — unless it is a resend
    (``fresh`` false), which is acknowledged again and never delivered twice."""

    message: Message
    origin: Any = None  # a Member of this process; None when it was written elsewhere
    fresh: bool = True


@frozen
class SendRejected:
    """A send was not stored; only its sender hears why."""

    origin: Any
    reason: str
    client_message_id: str | None = None


@frozen
class ConversationClosed:
    """Everyone in the room hears it after every message stored before it; then the room is empty."""

    conversation: Conversation


@frozen
class MemberEvicted:
    """A user lost access to a conversation (reassigned away): its sockets leave the room at once."""

    conversation_id: ObjectId
    user_id: ObjectId


@frozen
class ConversationChanged:
    """A conversation document changed, here or on another process (created, assigned, status).
    Whoever is in its room and may no longer be there leaves it."""

    conversation: Conversation


@frozen
class PresenceChanged:
    """An agent's effective presence changed (``local``: because of something on this process)."""

    agent_id: ObjectId
    supervisor_id: ObjectId | None
    status: Presence
    since: datetime
    local: bool = True


@frozen
class ReadAdvanced:
    """A participant's read watermark moved forward (``origin``: its socket, which is not told)."""

    mark: ReadMark
    origin: Any = None


@frozen
class NoteStored:
    """A private note is durable: ``origin`` gets ``NOTE_SENT`` and the room's staff — never a
    candidate — get the note, unless it is a resend (``fresh`` false), which is acknowledged only."""

    note: Note
    origin: Any = None
    fresh: bool = True


DomainEvent = (MessageStored | SendRejected | ConversationClosed | MemberEvicted | ConversationChanged
               | PresenceChanged | ReadAdvanced | NoteStored)


class EventBus:
    """The ``EventPublisher`` the services get: every listener hears every event, in order."""

    def __init__(self, *listeners: Callable[[DomainEvent], None]) -> None:
        self._listeners = list(listeners)

    def subscribe(self, listener: Callable[[DomainEvent], None]) -> None:
        self._listeners.append(listener)

    def publish(self, event: DomainEvent) -> None:
        for listener in self._listeners:
            listener(event)
