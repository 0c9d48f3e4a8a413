"""Read receipts and private notes (README "Signals"). Typing needs no
service: it is never stored, so the socket's session forwards it (realtime/ws.py).

Read watermarks are one document per participant and conversation, moved only forward; ``unread``
comes from them and the conversation's own facts (``models.unread``), never from the messages.
Notes live in their own collection with their own ids, so nothing that serves messages — live,
replay, history, list items — can return one; only staff paths ask for them.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from bson import ObjectId

from livechat.domain import policy
from livechat.domain.events import NoteStored, ReadAdvanced
from livechat.domain.models import Conversation, ConversationStatus, Note, ReadMark, Role, User, utcnow
from livechat.domain.policy import Action
from livechat.domain.ports import ConversationRepo, EventPublisher, Member, MessageRepo, NoteRepo, ReadRepo
from livechat.errors import ALREADY_CLOSED, Forbidden, InvalidInput, InvalidState

class SignalService:
    def __init__(self, conversations: ConversationRepo, messages: MessageRepo, reads: ReadRepo, notes: NoteRepo,
                 events: EventPublisher, clock: Callable[[], datetime] = utcnow) -> None:
        self._conversations = conversations
        self._messages = messages
        self._reads = reads
        self._notes = notes
        self._events = events
        self._clock = clock

    async def mark_read(self, user: User, conv: Conversation, seq: int, origin: Member | None = None) -> ReadMark:
        """Move ``user``'s watermark in ``conv`` (from ``ConversationService.load_authorized``) to ``seq`` (a lower one changes
        nothing); a seq above the stored top is bad input. The room hears ``READ`` only when the
        watermark moved."""
        policy.ensure_access(user, Action.MARK_READ, conv)
        # The stored top, not the conversation's ``lastSeq``: that one is written beside the batch's
        # insert, and a receiver may see a message a moment before its facts land.
        top = (await self._messages.top_seqs([conv.id])).get(conv.id, 0)
        if seq > top:
            raise InvalidInput()
        mark = ReadMark(conv.id, user.id, user.role, seq, self._clock())
        if await self._reads.advance(mark):
            self._events.publish(ReadAdvanced(mark, origin))
        return mark

    async def watermarks(self, user: User, convs: list[Conversation]) -> dict[ObjectId, int]:
        """``user``'s watermark in each of ``convs`` (absent: nothing read), in one read."""
        return await self._reads.of_user(user.id, [c.id for c in convs])

    async def send_note(self, user: User, conv: Conversation, content: str, client_message_id: str | None,
                        origin: Member | None = None) -> Note:
        """Store a private note; its sender gets ``NOTE_SENT``, the room's staff ``NEW_NOTE``. A
        resend of a ``clientMessageId`` is acknowledged with the note stored first, and not shown again."""
        policy.ensure_access(user, Action.SEND_NOTE, conv)
        if conv.status is ConversationStatus.CLOSED:
            raise InvalidState(ALREADY_CLOSED)
        note = Note(id=ObjectId(), conversation_id=conv.id, sender_id=user.id, sender_role=user.role,
                    content=content, created_at=self._clock(), client_message_id=client_message_id)
        stored = await self._notes.insert(note)
        if stored is None:  # a resend: the unique (conversation, sender, clientMessageId) index said so
            original = await self._notes.by_client_id(conv.id, user.id, client_message_id or "")
            if original is None:
                raise InvalidInput()
            self._events.publish(NoteStored(original, origin, fresh=False))
            return original
        self._events.publish(NoteStored(stored, origin))
        return stored

    async def notes(self, user: User, conv: Conversation) -> list[Note]:
        """Staff only: the one gate every HTTP answer with notes goes through."""
        if user.role is Role.CANDIDATE:
            raise Forbidden()
        return await self._notes.of_conversation(conv.id)
