"""The analytics read model (README "Analytics"): each conversation's facts, held in memory by the
process, so that a summary is a pass over memory instead of an aggregation that the database pays
~50–100 µs per conversation for (seconds at 100,000).

It converges on what the database holds, whatever order the observations arrive in:

* state (status, agent, close time) from the observation with the highest ``version`` — every
  state change adds one;
* the first-assignment and first-agent-message times through ``min``: the earliest wins, a fact
  once set is never unset;
* the message count only from observations that the storage makes while no message-facts write of
  this process is in flight (``counted=True``), plus the counts that this process's own writes add
  when they land (``add_messages``) — so nothing is counted twice;
* another process writes the facts of its messages behind them, outside the change stream: a
  conversation with a message from another process is ``dirty`` until the storage reads back
  facts that reach that message's seq (``settle``).

Times are whole milliseconds since the epoch, as the database stores dates, so a figure computed
here is the one the aggregation would compute.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from attrs import define
from bson import ObjectId

from livechat.domain.models import Distribution, GroupBy, SummaryRow

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_DAY_MS = 86_400_000


def ms(moment: datetime) -> int:
    """Milliseconds since the epoch, rounded down as BSON stores a date."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // _MS


@define(slots=True)
class ConversationFacts:
    created: int  # ms since the epoch, like every time here
    supervisor_id: ObjectId
    agent_id: ObjectId | None
    closed: bool
    version: int
    first_assigned: int | None
    first_agent_message: int | None
    closed_at: int | None
    message_count: int


def _earliest(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    return a if b is None or a <= b else b


def _since(moment: int | None, created: int) -> float | None:
    return None if moment is None else (moment - created) / 1000


class FactsProjection:
    """Conversations created from ``horizon`` on (ms), by id."""

    def __init__(self, horizon: int) -> None:
        self.horizon = horizon
        self.rows: dict[ObjectId, ConversationFacts] = {}
        # Conversations whose facts other processes have yet to write → the seq they must reach.
        self.dirty: dict[ObjectId, int] = {}
        self._ids: dict[ObjectId, ObjectId] = {}  # supervisors and agents: one object each
        self._days: dict[int, str] = {}

    def see(self, conv_id: ObjectId, seen: ConversationFacts, *, counted: bool) -> None:
        """Merge one observation of a conversation (``counted``: its ``message_count`` is exact)."""
        if seen.created < self.horizon:
            return
        row = self.rows.get(conv_id)
        if row is None:
            seen.supervisor_id = self._one(seen.supervisor_id)
            seen.agent_id = self._one(seen.agent_id)
            if not counted:
                seen.message_count = 0
            self.rows[conv_id] = seen
            return
        if seen.version > row.version:
            row.version, row.closed, row.closed_at = seen.version, seen.closed, seen.closed_at
            row.agent_id = self._one(seen.agent_id)
        row.first_assigned = _earliest(row.first_assigned, seen.first_assigned)
        row.first_agent_message = _earliest(row.first_agent_message, seen.first_agent_message)
        if counted:
            row.message_count = seen.message_count

    def add_messages(self, conv_id: ObjectId, count: int, first_agent_message: int | None) -> None:
        """What a message-facts write of this process added, once it has landed."""
        row = self.rows.get(conv_id)
        if row is not None:
            row.message_count += count
            row.first_agent_message = _earliest(row.first_agent_message, first_agent_message)

    def foreign_message(self, conv_id: ObjectId, seq: int) -> None:
        """Another process stored message ``seq`` of this conversation; it writes its facts later."""
        if self.dirty.get(conv_id, -1) < seq:
            self.dirty[conv_id] = seq

    def unsettle_active(self) -> None:
        """Read every active conversation back once: other processes may not have written all
        their facts yet when they were read."""
        for conv_id, row in self.rows.items():
            if not row.closed:
                self.dirty.setdefault(conv_id, 0)

    def settle(self, conv_id: ObjectId, last_seq: int) -> None:
        """Facts as stored up to ``last_seq`` were seen (``see`` with ``counted``)."""
        if self.dirty.get(conv_id, last_seq + 1) <= last_seq:
            del self.dirty[conv_id]

    def summarize(self, rows: list[ConversationFacts], start: datetime, end: datetime, group_by: GroupBy,
                  supervisor_id: ObjectId | None) -> list[SummaryRow]:
        """A row per group with conversations created in ``[start, end)`` — what the database's
        summary aggregation returns, in no particular order — over ``rows``, a copy of
        ``self.rows.values()`` taken on the event loop: this may run in another thread."""
        low, high = ms(start), ms(end)
        groups: dict[object, list] = {}
        for row in rows:
            if not low <= row.created < high or (supervisor_id is not None and row.supervisor_id != supervisor_id):
                continue
            if group_by is GroupBy.SUPERVISOR:
                key: object = row.supervisor_id
            elif group_by is GroupBy.AGENT:
                key = row.agent_id
            else:
                key = self._day(row.created)
            group = groups.get(key)
            if group is None:
                group = groups[key] = [0, 0, 0, [], [], []]
            group[0] += 1
            group[1] += row.closed
            group[2] += row.message_count
            group[3].append(_since(row.first_agent_message, row.created))
            group[4].append(_since(row.closed_at, row.created))
            group[5].append(_since(row.first_assigned, row.created))
        return [SummaryRow(key=key, created=created, closed=closed, messages=messages,
                           first_response=Distribution.of(first), resolution=Distribution.of(resolution),
                           wait=Distribution.of(wait))
                for key, (created, closed, messages, first, resolution, wait) in groups.items()]

    def _one(self, user_id: ObjectId | None) -> ObjectId | None:
        if user_id is None:
            return None
        return self._ids.setdefault(user_id, user_id)

    def _day(self, created: int) -> str:
        day = created // _DAY_MS
        key = self._days.get(day)
        if key is None:
            key = self._days[day] = (_EPOCH + timedelta(days=day)).date().isoformat()
        return key
