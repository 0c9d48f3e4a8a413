"""Analytics a support lead uses (README "Analytics"): per supervisor, agent or
UTC day, for conversations created in a period — volume, and how long customers waited for an
agent, for the first answer and for the resolution.

The figures come from facts recorded on each conversation when they happen (first assignment,
first agent message, close, message count), so a summary is one aggregation over the
conversations of the period and never reads messages. This service decides the period, who sees
what, and which groups are listed: every day of the period, every supervisor (or the caller's
own team), every agent of the scope — with nothing to measure, a group's times are ``None``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import attrs
from attrs import frozen
from bson import ObjectId

from livechat.domain import policy
from livechat.domain.models import GroupBy, Role, SummaryRow, User, utcnow
from livechat.domain.policy import Action
from livechat.domain.ports import ConversationRepo, UserRepo
from livechat.errors import InvalidInput

DEFAULT_RANGE = timedelta(days=30)
MAX_RANGE = timedelta(days=366)
DIRECTORY_PAGE = 1000


@frozen
class Summary:
    start: datetime  # inclusive
    end: datetime  # exclusive
    group_by: GroupBy
    rows: list[SummaryRow]


class AnalyticsService:
    def __init__(self, conversations: ConversationRepo, users: UserRepo,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self._conversations = conversations
        self._users = users
        self._clock = clock

    async def summary(self, user: User, *, start: datetime | None, end: datetime | None,
                      group_by: GroupBy) -> Summary:
        """``[start, end)`` by creation time; by default the 30 days up to now. A period that
        ends before it starts, or is longer than 366 days, is ``InvalidInput``."""
        policy.ensure_role(user, Action.READ_ANALYTICS_SUMMARY)
        end = end or self._clock()
        start = start or end - DEFAULT_RANGE
        if start > end or end - start > MAX_RANGE:
            raise InvalidInput()
        team = policy.analytics_team(user)
        measured = await self._conversations.summary(start, end, group_by, team)
        if group_by is GroupBy.DAY:
            rows = _every_day(measured, start, end)
        else:
            rows = await self._every_member(measured, group_by, user, team)
        return Summary(start, end, group_by, rows)

    async def _every_member(self, measured: list[SummaryRow], group_by: GroupBy, user: User,
                            team: ObjectId | None) -> list[SummaryRow]:
        """A row per supervisor (per agent) of the scope, measured or not, sorted by name; then
        groups that are no longer in the directory (a deleted account), and for agents the
        conversations no agent ever had (key ``None``) last."""
        if group_by is GroupBy.SUPERVISOR:
            members = [user] if team is not None else await self._directory(Role.SUPERVISOR, None)
        else:
            members = await self._directory(Role.AGENT, team)
        by_key = {row.key: row for row in measured}
        rows = [_named(by_key.pop(m.id, SummaryRow(m.id)), m.name)
                for m in sorted(members, key=lambda m: (m.name.casefold(), str(m.id)))]
        unassigned = by_key.pop(None, None)
        if by_key:  # measured, but not in today's directory: name them if they still exist
            names = await self._users.names(list(by_key))
            rows += [_named(row, names.get(key)) for key, row in sorted(by_key.items(), key=lambda kv: str(kv[0]))]
        if unassigned is not None:
            rows.append(unassigned)
        return rows

    async def _directory(self, role: Role, supervisor_id: ObjectId | None) -> list[User]:
        users: list[User] = []
        after = None
        while True:
            page = await self._users.list_by_role(role, supervisor_id=supervisor_id, after=after, limit=DIRECTORY_PAGE)
            users += page
            if len(page) < DIRECTORY_PAGE:
                return users
            after = page[-1].id


def _named(row: SummaryRow, name: str | None) -> SummaryRow:
    return attrs.evolve(row, name=name)


def _every_day(measured: list[SummaryRow], start: datetime, end: datetime) -> list[SummaryRow]:
    """Every UTC day that the period touches, oldest first (a day without conversations too)."""
    by_day = {row.key: row for row in measured}
    if start >= end:
        return []
    day, last = start.astimezone(UTC).date(), (end - timedelta(milliseconds=1)).astimezone(UTC).date()
    rows = []
    while day <= last:
        key = day.isoformat()
        rows.append(by_day.get(key, SummaryRow(key)))
        day += timedelta(days=1)
    return rows
