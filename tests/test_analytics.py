"""GET /admin/analytics/summary (README "Analytics"): exact figures from a scripted
scenario, written through the real services over HTTP and WebSocket with a clock the test sets.

The scenario (T = Monday 2026-03-02, UTC; + is seconds after the conversation's creation):

    S1 ── A1, A2, A3 (A3 has no conversation)      S2 ── B1      S3 (no agent, no conversation)
    c1  T 09:00  A1 +30   candidate +40, A1 +90, A1 +120      closed by A1 +600
    c2  T 10:00  A1 +10, reassigned to A2 +100, A2 +200        closed by A2 +1200   (wait stays 10)
    c3  T 11:00  A2 +60   candidate +70                        closed by A2 +300    (no agent message)
    c6  T 13:00  B1 +20   B1 +30                               closed by B1 +100    (team S2)
    c4  T+1 09:00 A1 +45  A1 +50                               still assigned
    c5  T+1 12:00 nobody  candidate +5                         still open, never assigned

Medians and p90s are nearest-rank: the value at rank ceil(p·n) of the sorted samples.
"""

from __future__ import annotations

import asyncio
import csv
import io
from datetime import UTC, datetime, timedelta
from typing import Any

import pymongo
import pytest
from aiohttp.test_utils import TestClient
from bson import ObjectId

from livechat.domain.models import GroupBy
from livechat.keys import services_key
from tests.conftest import Api, expect
from tests.ws_helpers import connect

FORBIDDEN = "Forbidden, insufficient permissions"
INVALID = "Invalid request schema"
UNAUTHORIZED = "Unauthorized, token missing or invalid"
DAY1 = datetime(2026, 3, 2, tzinfo=UTC)
DAY2 = DAY1 + timedelta(days=1)
METRICS = ("created", "closed", "open", "firstResponseMedianS", "firstResponseP90S", "resolutionMedianS",
           "resolutionP90S", "waitMedianS", "waitP90S", "messagesPerConversation")
RANGE = "from=2026-03-02&to=2026-03-03"  # a date-only `to` includes that day


class Clock:
    """The services' clock: the test says what time it is."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def metrics(created, closed, fr=(None, None), res=(None, None), wait=(None, None), per_conv=None) -> dict[str, Any]:
    return dict(zip(METRICS, (created, closed, created - closed, *fr, *res, *wait, per_conv), strict=True))


NOTHING = metrics(0, 0)


class Desk:
    """The cast and the scripted clock; each step sets the time, then acts through the public API."""

    def __init__(self, client: TestClient, clock: Clock) -> None:
        self.client, self.clock, self.api = client, clock, Api(client)
        self.people: dict[str, dict[str, Any]] = {}

    async def cast(self) -> None:
        self.people["admin"] = await self.api.user("admin", name="Ada Admin")
        for sup, name in (("S1", "Sam One"), ("S2", "Sue Two"), ("S3", "Sid Three")):
            self.people[sup] = await self.api.user("supervisor", name=name)
        for agent, sup, name in (("A1", "S1", "Alice"), ("A2", "S1", "Bob"), ("A3", "S1", "Carol"),
                                 ("B1", "S2", "Dan")):
            self.people[agent] = await self.api.user("agent", name=name, supervisor_id=self.people[sup]["_id"])

    def id(self, who: str) -> str:
        return self.people[who]["_id"]

    async def call(self, method: str, path: str, who: str, json: Any = None, status: int = 200) -> Any:
        resp = await self.client.request(method, path, json=json, headers=self.api.auth(self.people[who]))
        return await expect(resp, status)

    async def open(self, name: str, supervisor: str, at: datetime) -> str:
        self.people[name] = await self.api.user("candidate")
        self.clock.now = at
        conv = await self.call("POST", "/conversations", name, {"supervisorId": self.id(supervisor)}, 201)
        return conv["_id"]

    async def assign(self, conv: str, supervisor: str, agent: str, at: datetime) -> None:
        self.clock.now = at
        await self.call("POST", f"/conversations/{conv}/assign", supervisor, {"agentId": self.id(agent)})

    async def say(self, conv: str, who: str, at: datetime) -> None:
        """Join (an agent's first join: open → assigned), send, wait until it is stored."""
        self.clock.now = at
        peer = await connect(self.client, self.people[who])
        await peer.join(conv)
        await peer.sent(conv, f"{who} at {at:%H:%M:%S}", f"{who}-{at.timestamp()}")
        await peer.close()

    async def close_in_chat(self, conv: str, agent: str, at: datetime) -> None:
        self.clock.now = at
        peer = await connect(self.client, self.people[agent])
        await peer.join(conv)
        assert (await peer.ask("CLOSE_CONVERSATION", {"conversationId": conv}))["event"] == "CONVERSATION_CLOSED"
        await peer.close()

    async def summary(self, who: str, query: str, status: int = 200, error: str | None = None) -> Any:
        resp = await self.client.get(f"/admin/analytics/summary?{query}", headers=self.api.auth(self.people[who]))
        return await expect(resp, status, error)


def at(day: datetime, hour: int, seconds: float = 0) -> datetime:
    return day + timedelta(hours=hour, seconds=seconds)


async def script(desk: Desk) -> dict[str, str]:
    await desk.cast()
    c1 = await desk.open("C1", "S1", at(DAY1, 9))
    await desk.assign(c1, "S1", "A1", at(DAY1, 9, 30))
    await desk.say(c1, "C1", at(DAY1, 9, 40))
    await desk.say(c1, "A1", at(DAY1, 9, 90))
    await desk.say(c1, "A1", at(DAY1, 9, 120))
    await desk.close_in_chat(c1, "A1", at(DAY1, 9, 600))

    c2 = await desk.open("C2", "S1", at(DAY1, 10))
    await desk.assign(c2, "S1", "A1", at(DAY1, 10, 10))
    await desk.assign(c2, "S1", "A2", at(DAY1, 10, 100))
    await desk.say(c2, "A2", at(DAY1, 10, 200))
    await desk.close_in_chat(c2, "A2", at(DAY1, 10, 1200))

    c3 = await desk.open("C3", "S1", at(DAY1, 11))
    await desk.assign(c3, "S1", "A2", at(DAY1, 11, 60))
    await desk.say(c3, "C3", at(DAY1, 11, 70))
    await desk.close_in_chat(c3, "A2", at(DAY1, 11, 300))

    c6 = await desk.open("C6", "S2", at(DAY1, 13))
    await desk.assign(c6, "S2", "B1", at(DAY1, 13, 20))
    await desk.say(c6, "B1", at(DAY1, 13, 30))
    await desk.close_in_chat(c6, "B1", at(DAY1, 13, 100))

    c4 = await desk.open("C4", "S1", at(DAY2, 9))
    await desk.assign(c4, "S1", "A1", at(DAY2, 9, 45))
    await desk.say(c4, "A1", at(DAY2, 9, 50))

    c5 = await desk.open("C5", "S1", at(DAY2, 12))
    await desk.say(c5, "C5", at(DAY2, 12, 5))
    desk.clock.now = at(DAY2, 18)  # "now", for the default range
    return {"c1": c1, "c2": c2, "c3": c3, "c4": c4, "c5": c5, "c6": c6}


@pytest.fixture
async def desk(app_client, settings) -> Desk:
    clock = Clock(DAY1)
    desk = Desk(await app_client(settings, clock=clock), clock)
    desk.convs = await script(desk)
    return desk


def keyed(rows: list[dict[str, Any]], key: str) -> dict[Any, dict[str, Any]]:
    return {row[key]: {m: row[m] for m in METRICS} for row in rows}


# Worked out by hand from the scenario above (nearest rank: median = rank ceil(n/2), p90 = ceil(0.9·n)).
S1 = metrics(5, 3, fr=(90, 200), res=(600, 1200), wait=(30, 60), per_conv=1.4)  # 7 messages / 5
S2 = metrics(1, 1, fr=(30, 30), res=(100, 100), wait=(20, 20), per_conv=1.0)
A1 = metrics(2, 1, fr=(50, 90), res=(600, 600), wait=(30, 45), per_conv=2.0)
A2 = metrics(2, 2, fr=(200, 200), res=(300, 1200), wait=(10, 60), per_conv=1.0)
B1 = S2
NEVER_ASSIGNED = metrics(1, 0, per_conv=1.0)
MONDAY = metrics(4, 4, fr=(90, 200), res=(300, 1200), wait=(20, 60), per_conv=1.5)
TUESDAY = metrics(2, 0, fr=(50, 50), wait=(45, 45), per_conv=1.0)


async def test_admin_sees_every_supervisor_with_exact_medians_and_p90s(desk: Desk):
    data = await desk.summary("admin", f"{RANGE}&groupBy=supervisor")
    assert (data["from"], data["to"], data["groupBy"], data["timezone"]) == (
        "2026-03-02T00:00:00.000Z", "2026-03-04T00:00:00.000Z", "supervisor", "UTC")
    rows = data["rows"]
    assert [r["supervisorName"] for r in rows] == ["Sam One", "Sid Three", "Sue Two"]  # by name, S3 included
    assert keyed(rows, "supervisorId") == {desk.id("S1"): S1, desk.id("S2"): S2, desk.id("S3"): NOTHING}


async def test_by_agent_keeps_the_first_assignment_and_lists_the_never_assigned(desk: Desk):
    rows = (await desk.summary("admin", f"{RANGE}&groupBy=agent"))["rows"]
    assert [r["agentName"] for r in rows] == ["Alice", "Bob", "Carol", "Dan", None]
    assert keyed(rows, "agentId") == {desk.id("A1"): A1, desk.id("A2"): A2, desk.id("A3"): NOTHING,
                                      desk.id("B1"): B1, None: NEVER_ASSIGNED}


async def test_by_day_lists_every_utc_day_of_the_range(desk: Desk):
    rows = (await desk.summary("admin", "from=2026-03-01&to=2026-03-03&groupBy=day"))["rows"]
    assert [r["day"] for r in rows] == ["2026-03-01", "2026-03-02", "2026-03-03"]
    assert keyed(rows, "day") == {"2026-03-01": NOTHING, "2026-03-02": MONDAY, "2026-03-03": TUESDAY}
    # A date-time range selects by createdAt, from inclusive, to exclusive: c1 (09:00) only.
    rows = (await desk.summary("admin", "from=2026-03-02T08:00:00Z&to=2026-03-02T10:00:00.000Z&groupBy=day"))["rows"]
    assert keyed(rows, "day") == {"2026-03-02": metrics(1, 1, fr=(90, 90), res=(600, 600), wait=(30, 30),
                                                        per_conv=3.0)}
    # An offset is honoured: 11:00+02:00 is 09:00Z.
    rows = (await desk.summary("admin", "from=2026-03-02T11:00:00%2B02:00&to=2026-03-02T10:00:00Z&groupBy=day"))
    assert rows["rows"][0]["created"] == 1


async def test_default_range_is_the_last_30_days(desk: Desk):
    data = await desk.summary("admin", "groupBy=supervisor")
    assert (data["from"], data["to"]) == ("2026-02-01T18:00:00.000Z", "2026-03-03T18:00:00.000Z")
    assert keyed(data["rows"], "supervisorId")[desk.id("S1")] == S1


async def test_a_supervisor_sees_its_own_team_only(desk: Desk):
    rows = (await desk.summary("S1", f"{RANGE}&groupBy=supervisor"))["rows"]
    assert keyed(rows, "supervisorId") == {desk.id("S1"): S1}
    rows = (await desk.summary("S1", f"{RANGE}&groupBy=agent"))["rows"]
    assert keyed(rows, "agentId") == {desk.id("A1"): A1, desk.id("A2"): A2, desk.id("A3"): NOTHING,
                                      None: NEVER_ASSIGNED}
    rows = (await desk.summary("S2", f"{RANGE}&groupBy=day"))["rows"]
    assert keyed(rows, "day") == {"2026-03-02": S2, "2026-03-03": NOTHING}
    rows = (await desk.summary("S3", f"{RANGE}&groupBy=agent"))["rows"]
    assert rows == []  # no agents, no conversations


async def test_csv_has_a_header_and_a_line_per_group(desk: Desk):
    resp = await desk.client.get(f"/admin/analytics/summary?{RANGE}&groupBy=supervisor&format=csv",
                                 headers=desk.api.auth(desk.people["admin"]))
    assert resp.status == 200 and resp.content_type == "text/csv" and resp.charset == "utf-8"
    assert resp.headers["Content-Disposition"] == 'attachment; filename="livechat-supervisor-20260302-20260304.csv"'
    text = await resp.text()
    lines = list(csv.reader(io.StringIO(text)))
    assert lines[0] == ["supervisorId", "supervisorName", *METRICS]
    assert lines[1] == [desk.id("S1"), "Sam One", "5", "3", "2", "90.0", "200.0", "600.0", "1200.0", "30.0", "60.0",
                        "1.4"]
    assert lines[2] == [desk.id("S3"), "Sid Three", "0", "0", "0", "", "", "", "", "", "", ""]
    assert len(lines) == 4 and text.endswith("\r\n")
    day = list(csv.reader(io.StringIO(await (await desk.client.get(
        f"/admin/analytics/summary?{RANGE}&groupBy=day&format=csv",
        headers=desk.api.auth(desk.people["S2"]))).text())))
    assert day == [["day", *METRICS], ["2026-03-02", "1", "1", "0", "30.0", "30.0", "100.0", "100.0", "20.0", "20.0",
                                       "1.0"],
                   ["2026-03-03", "0", "0", "0", "", "", "", "", "", "", ""]]


async def test_csv_cells_never_start_a_formula(app_client, settings):
    client = await app_client(settings)
    api = Api(client)
    admin = await api.user("admin")
    await api.user("supervisor", name="=HYPERLINK(\"http://evil\")")
    resp = await client.get("/admin/analytics/summary?groupBy=supervisor&format=csv", headers=api.auth(admin))
    lines = list(csv.reader(io.StringIO(await resp.text())))
    assert lines[1][1] == "'=HYPERLINK(\"http://evil\")"


BAD_QUERIES = [
    "from=2026-03-04&to=2026-03-02",  # from after to
    "from=2026-03-04T00:00:00Z&to=2026-03-03T23:59:59Z",
    "from=yesterday", "to=2026-02-30", "from=2026-03-02T10:00:00",  # no offset
    "from=2026-3-2", "to=", "from=%7B%22%24gt%22%3A%22%22%7D",
    "from=9999-12-31&to=9999-12-31",  # the end of that day cannot be represented
    "groupBy=team", "groupBy=", "groupBy=DAY", "format=xml", "format=",
    "from=2025-01-01&to=2026-01-03",  # 367 days
    "from=2025-01-01&to=2025-01-01&from=2025-01-02",  # repeated
    "from[$gt]=2026-01-01", "groupBy[$ne]=day", "%24where=1",
]


@pytest.mark.parametrize("query", BAD_QUERIES)
async def test_bad_input_is_400(client: TestClient, api: Api, query: str):
    admin = await api.user("admin")
    resp = await client.get(f"/admin/analytics/summary?{query}", headers=api.auth(admin))
    assert await expect(resp, 400, INVALID) == INVALID


async def test_a_full_year_is_allowed(client: TestClient, api: Api):
    admin = await api.user("admin")
    resp = await client.get("/admin/analytics/summary?from=2024-01-01&to=2024-12-31&groupBy=day",
                            headers=api.auth(admin))
    assert len((await expect(resp, 200))["rows"]) == 366  # a leap year, every day listed


async def test_who_may_ask(client: TestClient, api: Api):
    supervisor = await api.user("supervisor")
    agent = await api.user("agent", supervisor_id=supervisor["_id"])
    candidate = await api.user("candidate")
    path = "/admin/analytics/summary?groupBy=bogus"  # roles are checked before the query
    await expect(await client.get(path), 401, UNAUTHORIZED)
    for user in (agent, candidate):
        await expect(await client.get(path, headers=api.auth(user)), 403, FORBIDDEN)
    await expect(await client.get(path, headers=api.auth(supervisor)), 400, INVALID)
    # The A.4 route is unchanged: admins only.
    await expect(await client.get("/admin/analytics", headers=api.auth(supervisor)), 403, FORBIDDEN)


async def test_the_summary_reads_an_index_range(client: TestClient, api: Api):
    repo = client.server.app[services_key].store.conversations
    start, end = DAY1, DAY2
    assert "IXSCAN" in await repo.summary_plan(start, end, None)
    assert "IXSCAN" in await repo.summary_plan(start, end, (await _oid(api)))


async def _oid(api: Api):
    return ObjectId((await api.user("supervisor"))["_id"])


async def test_backfill_of_earlier_conversations_is_idempotent(desk: Desk, app_client, settings, mongo_uri):
    before = {g: (await desk.summary("admin", f"{RANGE}&groupBy={g}"))["rows"] for g in ("supervisor", "agent", "day")}
    raw = pymongo.AsyncMongoClient(mongo_uri, tz_aware=True)
    try:
        conversations = raw[settings.database.name]["conversations"]
        # Conversations as an earlier livechat wrote them: no facts but the close time and the history.
        legacy = {"$unset": {"messageCount": "", "firstAgentMessageAt": "", "firstAssignedAt": ""}}
        assert (await conversations.update_many({}, legacy)).modified_count == 6
        repo = desk.client.server.app[services_key].store.conversations
        assert await repo.backfill_facts() == 6
        assert await repo.backfill_facts() == 0  # once is enough: nothing is touched again
        for group, rows in before.items():
            assert (await desk.summary("admin", f"{RANGE}&groupBy={group}"))["rows"] == rows, group
        # At start-up: a second process on the same database backfills before it serves.
        await conversations.update_many({}, legacy)
        second = await app_client(settings)
        resp = await second.get(f"/admin/analytics/summary?{RANGE}&groupBy=agent",
                                headers=desk.api.auth(desk.people["admin"]))
        assert (await expect(resp, 200))["rows"] == before["agent"]
        docs = await conversations.find({}, {"messageCount": 1}).to_list(None)
        assert sorted(d["messageCount"] for d in docs) == [1, 1, 1, 1, 1, 3]
    finally:
        await raw.close()


async def test_facts_on_the_conversation_document(desk: Desk, settings, mongo_uri):
    """What the writer and the state changes record, as stored (the writer's facts once written)."""
    await desk.client.server.app[services_key].store.conversations.flush_facts()
    raw = pymongo.AsyncMongoClient(mongo_uri, tz_aware=True)
    try:
        docs = {str(d["_id"]): d for d in await raw[settings.database.name]["conversations"].find({}).to_list(None)}
    finally:
        await raw.close()
    c2 = docs[desk.convs["c2"]]
    assert c2["firstAssignedAt"] == at(DAY1, 10, 10)  # reassignment kept the first
    assert c2["firstAgentMessageAt"] == at(DAY1, 10, 200) and c2["messageCount"] == 1
    assert c2["closedAt"] == at(DAY1, 10, 1200)
    c3 = docs[desk.convs["c3"]]
    assert "firstAgentMessageAt" not in c3  # closed without an agent message: no sample
    c5 = docs[desk.convs["c5"]]
    assert "firstAssignedAt" not in c5 and c5["messageCount"] == 1
    assert docs[desk.convs["c1"]]["firstAgentMessageAt"] == at(DAY1, 9, 90)  # the first, not the last


def _by_key(rows) -> list:
    return sorted(rows, key=lambda row: str(row.key))


async def test_the_read_model_agrees_with_the_aggregation(desk: Desk):
    """The summary is computed from the facts in memory; the database's aggregation of the same
    period gives the same rows, for every grouping, for everyone and for one team."""
    repo = desk.client.server.app[services_key].store.conversations
    team = ObjectId(desk.id("S1"))
    for group_by in GroupBy:
        for supervisor in (None, team):
            held = await repo.summary(DAY1, DAY2 + timedelta(days=1), group_by, supervisor)
            stored = await repo.aggregate_summary(DAY1, DAY2 + timedelta(days=1), group_by, supervisor)
            assert _by_key(held) == _by_key(stored) and held, (group_by, supervisor)


async def test_a_summary_sees_what_another_process_wrote(desk: Desk, app_client, settings):
    """A second process on the same database opens a conversation with two messages and closes
    c4: the first process's summary shows both — the close and the new conversation from the
    change feed, the message count read back from the database once the other process wrote it."""
    second = Desk(await app_client(settings, clock=desk.clock), desk.clock)
    second.people = desk.people
    c7 = await second.open("C7", "S1", at(DAY2, 14))
    await second.say(c7, "C7", at(DAY2, 14, 10))
    await second.say(c7, "C7", at(DAY2, 14, 20))
    await second.close_in_chat(desk.convs["c4"], "A1", at(DAY2, 9, 1000))
    await second.client.server.app[services_key].store.conversations.flush_facts()
    desk.clock.now = at(DAY2, 18)
    # Tuesday: c4 (now closed after 1,000 s), c5, c7 (never assigned); 1 + 1 + 2 messages.
    expected = metrics(3, 1, fr=(50, 50), res=(1000, 1000), wait=(45, 45), per_conv=1.33)
    for _ in range(100):
        rows = (await desk.summary("admin", "from=2026-03-03&to=2026-03-03&groupBy=day"))["rows"]
        if keyed(rows, "day")["2026-03-03"] == expected:
            break
        await asyncio.sleep(0.1)
    assert keyed(rows, "day") == {"2026-03-03": expected}


async def test_a_period_before_the_read_models_horizon_is_aggregated_by_the_database(desk: Desk):
    """The read model holds the last 400 days; an older period is still answered, exactly."""
    old = datetime(2024, 6, 3, tzinfo=UTC)
    conv = await desk.open("C8", "S2", at(old, 9))
    await desk.assign(conv, "S2", "B1", at(old, 9, 15))
    await desk.say(conv, "B1", at(old, 9, 25))
    desk.clock.now = at(DAY2, 18)
    rows = (await desk.summary("admin", "from=2024-06-03&to=2024-06-03&groupBy=day"))["rows"]
    assert keyed(rows, "day") == {"2024-06-03": metrics(1, 0, fr=(25, 25), wait=(15, 15), per_conv=1.0)}
