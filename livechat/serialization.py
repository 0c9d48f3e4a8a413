"""The API edge's converter: strict parsing of request bodies and frames, and the JSON shapes.

Parsing never coerces (no ``1 → "1"``, no ``None → "None"``): a value of the wrong type, an
operator object such as ``{"$ne": null}`` where a string belongs, a malformed id or a string that
is not valid Unicode is ``InvalidInput`` — the contract's 400 / ``Invalid request schema``.
Keys the contract does not define are ignored (a smuggled ``role`` or ``_id`` changes nothing).
"""

from __future__ import annotations

import csv
import enum
import io
import re
from datetime import datetime
from typing import Any, TypeVar

import attrs
import cattrs
from bson import ObjectId
from cattrs.gen import make_dict_structure_fn, override

from livechat.domain.models import (LAST_MESSAGE_CHARS, Conversation, GroupBy, Message, Note, Role, Routing, SummaryRow,
                                    SupervisorStats, User)
from livechat.errors import InvalidInput
from livechat.naming import camel

T = TypeVar("T")

_HEX_ID = re.compile(r"^[0-9a-fA-F]{24}$")
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def parse_object_id(value: Any) -> ObjectId:
    """A 24-hex-digit string, nothing else (``ObjectId(None)`` would mint a new id)."""
    if isinstance(value, str) and _HEX_ID.match(value):
        return ObjectId(value.lower())
    raise InvalidInput()


def _strict_str(value: Any, _: type) -> str:
    if not isinstance(value, str) or _SURROGATE.search(value):
        raise InvalidInput()
    return value


def _strict_int(value: Any, _: type) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput()
    return value


def _strict_enum(value: Any, cls: type[enum.Enum]) -> enum.Enum:
    if not isinstance(value, str):
        raise InvalidInput()
    try:
        return cls(value)
    except ValueError:
        raise InvalidInput() from None


def _make_api_converter() -> cattrs.Converter:
    conv = cattrs.Converter(forbid_extra_keys=False)
    # Simple types first: the attrs factory below captures whatever hooks exist when it runs.
    conv.register_structure_hook(str, _strict_str)
    conv.register_structure_hook(int, _strict_int)
    conv.register_structure_hook(ObjectId, lambda v, _: parse_object_id(v))
    conv.register_structure_hook_func(lambda t: isinstance(t, type) and issubclass(t, enum.Enum), _strict_enum)
    conv.register_structure_hook_factory(
        attrs.has,
        lambda cls: make_dict_structure_fn(
            cls, conv, **{f.name: override(rename=camel(f.name)) for f in attrs.fields(cls)}
        ),
    )
    return conv


api = _make_api_converter()


def parse(data: Any, cls: type[T]) -> T:
    """Structure a JSON object into an attrs request class, or raise ``InvalidInput``."""
    if not isinstance(data, dict):
        raise InvalidInput()
    try:
        return api.structure(data, cls)
    except InvalidInput:
        raise
    except Exception:  # cattrs' validation groups, attrs validators' ValueError/TypeError
        raise InvalidInput() from None


# --- responses: the contract's shapes (docs/openapi.json, components.schemas), written out so they read as the spec


def iso(dt: datetime | None) -> str | None:
    """``2026-03-11T10:30:00.000Z``: the seed's Date.toISOString()."""
    if dt is None:
        return None
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def oid(value: ObjectId | None) -> str | None:
    return str(value) if value is not None else None


def user_view(user: User) -> dict[str, Any]:
    data = {"_id": str(user.id), "name": user.name, "email": user.email, "role": user.role.value}
    if user.role is Role.AGENT:
        data["supervisorId"] = oid(user.supervisor_id)
    return data


def conversation_view(conv: Conversation) -> dict[str, Any]:
    data = {
        "_id": str(conv.id),
        "status": conv.status.value,
        "candidateId": str(conv.candidate_id),
        "supervisorId": str(conv.supervisor_id),
        "agentId": oid(conv.agent_id),
        "createdAt": iso(conv.created_at),
    }
    if conv.closed_at is not None:
        data["closedAt"] = iso(conv.closed_at)
    return data


def conversation_item(conv: Conversation, names: dict[ObjectId, str], unread: int = 0) -> dict[str, Any]:
    """A list item (GET /conversations, the pushed inbox): the conversation with its people's names,
    its newest message (from the conversation document: notes are never there) and the viewer's
    ``unread`` (README "Signals", ``models.unread``)."""
    data = conversation_view(conv)
    data["candidateName"] = names.get(conv.candidate_id)
    data["agentName"] = names.get(conv.agent_id) if conv.agent_id is not None else None
    last = conv.last_message
    data["lastMessage"] = None if last is None else {
        "seq": last.seq, "senderRole": last.sender_role.value, "content": last.content[:LAST_MESSAGE_CHARS],
        "createdAt": iso(last.created_at)}
    data["unread"] = unread
    return data


def note_view(note: Note) -> dict[str, Any]:
    """Staff only (README "Signals"): ``NEW_NOTE`` and ``notes`` of ``GET /conversations/:id``."""
    return {"noteId": str(note.id), "conversationId": str(note.conversation_id), "senderId": str(note.sender_id),
            "senderRole": note.sender_role.value, "content": note.content, "createdAt": iso(note.created_at)}


def assignments_view(conv: Conversation) -> list[dict[str, Any]]:
    """Staff only: who had the conversation when, and who handed it over (``"routing"``: automatic)."""
    return [{"agentId": oid(a.agent_id), "at": iso(a.at), "by": oid(a.by) if a.by is not None else "routing"}
            for a in conv.assignments]


def message_view(msg: Message) -> dict[str, Any]:
    return {
        "messageId": str(msg.id),
        "conversationId": str(msg.conversation_id),
        "seq": msg.seq,
        "senderId": str(msg.sender_id),
        "senderRole": msg.sender_role.value,
        "content": msg.content,
        "createdAt": iso(msg.created_at),
    }


def stats_view(stats: SupervisorStats) -> dict[str, Any]:
    return {
        "supervisorId": str(stats.supervisor_id),
        "supervisorName": stats.supervisor_name,
        "agents": stats.agents,
        "conversationsHandled": stats.conversations_handled,
    }


_GROUP_FIELDS = {
    GroupBy.SUPERVISOR: ("supervisorId", "supervisorName"),
    GroupBy.AGENT: ("agentId", "agentName"),
    GroupBy.DAY: ("day", None),
}


def summary_row_view(row: SummaryRow, group_by: GroupBy) -> dict[str, Any]:
    """One group (README "Analytics"): its key (and name), then the metrics; times in seconds."""
    key_field, name_field = _GROUP_FIELDS[group_by]
    data: dict[str, Any] = {key_field: row.key if isinstance(row.key, str) else oid(row.key)}
    if name_field is not None:
        data[name_field] = row.name
    data.update({
        "created": row.created,
        "closed": row.closed,
        "open": row.open,
        "firstResponseMedianS": row.first_response.median,
        "firstResponseP90S": row.first_response.p90,
        "resolutionMedianS": row.resolution.median,
        "resolutionP90S": row.resolution.p90,
        "waitMedianS": row.wait.median,
        "waitP90S": row.wait.p90,
        "messagesPerConversation": row.messages_per_conversation,
    })
    return data


def summary_view(summary: Any) -> dict[str, Any]:
    return {"from": iso(summary.start), "to": iso(summary.end), "groupBy": summary.group_by.value,
            "timezone": "UTC", "rows": [summary_row_view(r, summary.group_by) for r in summary.rows]}


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _csv_cell(value: Any) -> str:
    """Empty for no value; a text that a spreadsheet would run as a formula (a user's name such
    as ``=HYPERLINK(…)``) is quoted with a leading apostrophe (OWASP "CSV injection")."""
    if value is None:
        return ""
    if isinstance(value, str):
        return "'" + value if value.startswith(_FORMULA_START) else value
    return str(value)


def summary_csv(summary: Any) -> str:
    """The rows of ``summary_view`` as CSV: a header row of the same field names, then a line per group."""
    header = list(summary_row_view(SummaryRow(None), summary.group_by))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    for row in summary.rows:
        view = summary_row_view(row, summary.group_by)
        writer.writerow([_csv_cell(view[field]) for field in header])
    return out.getvalue()


def routing_view(routing: Routing) -> dict[str, Any]:
    return {"supervisorId": str(routing.supervisor_id), "mode": routing.mode.value,
            "maxConcurrent": routing.max_concurrent}
