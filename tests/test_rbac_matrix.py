"""Who may call which REST route (CONTRACT.md A.1, A.2, A.4, B.3, B.7), as one table.

Every case runs against a fresh World (see test_conversations.py):

    S (supervisor) ── A (agent)        C (candidate) ── X: addressed to S, assigned to A over HTTP,
    S2 (supervisor) ── A2 (agent)      C2 (candidate, no conversation)     still `open` (A never joined)
    ADMIN

Columns are the caller's role. Where the caller's relation to X matters, a cell reads "own / foreign":
"own" is C (opened X), A (currently assigned to X) or S (X is addressed to S); "foreign" is C2, A2 or S2,
the same role with no relation to X. A single value is the answer for own and foreign alike (the case
runs as the "own" user). For POST /conversations, "own" C already has an active conversation (X) and
"foreign" C2 has none.

Errors carry the contract's exact text: 401 "Unauthorized, token missing or invalid",
403 "Forbidden, insufficient permissions", 403* "cannot assign agent",
409 "Candidate already has an active conversation". A refused request changes nothing.
"""

from __future__ import annotations

import pytest

from tests.test_conversations import (ACTIVE_EXISTS, FORBIDDEN, NOT_YOUR_CONVERSATION, UNAUTHORIZED, Chat, World,
                                      attempt, snapshot)
from tests.test_conversations import chat, world  # noqa: F401  (the fixtures this module uses)

MATRIX = """
| route                          | anonymous | candidate | agent     | supervisor | admin |
|--------------------------------|-----------|-----------|-----------|------------|-------|
| POST /conversations            | 401       | 409 / 201 | 403       | 403        | 403   |
| POST /conversations/X/assign   | 401       | 403 / 403 | 403 / 403 | 200 / 403* | 403   |
| GET /conversations/X           | 401       | 200 / 403 | 200 / 403 | 200 / 403  | 200   |
| GET /conversations/X/messages  | 401       | 200 / 403 | 200 / 403 | 200 / 403  | 200   |
| POST /conversations/X/close    | 401       | 403 / 403 | 403 / 403 | 200 / 403  | 200   |
| GET /conversations             | 401       | 200       | 200       | 200        | 200   |
| GET /admin/analytics           | 401       | 403       | 403       | 403        | 200   |
| GET /admin/analytics/summary   | 401       | 403       | 403       | 200        | 200   |
| GET /supervisors               | 401       | 200       | 200       | 200        | 200   |
| GET /agents                    | 401       | 403       | 403       | 200        | 200   |
"""

BODIES = {
    "POST /conversations": {"supervisorId": "S"},
    "POST /conversations/X/assign": {"agentId": "A"},
    "POST /conversations/X/close": {},
}

OUTCOMES = {
    "200": (200, None),
    "201": (201, None),
    "401": (401, UNAUTHORIZED),
    "403": (403, FORBIDDEN),
    "403*": (403, NOT_YOUR_CONVERSATION),
    "409": (409, ACTIVE_EXISTS),
}

CALLERS = {  # (role column, relation) → World party; None: no token at all
    ("anonymous", "any"): None,
    ("candidate", "own"): "C", ("candidate", "foreign"): "C2",
    ("agent", "own"): "A", ("agent", "foreign"): "A2",
    ("supervisor", "own"): "S", ("supervisor", "foreign"): "S2",
    ("admin", "any"): "ADMIN",
}


def cases(table: str) -> list:
    """One pytest case per cell, or two for an "own / foreign" cell."""
    lines = [line.strip().strip("|") for line in table.strip().splitlines()]
    header = [cell.strip() for cell in lines[0].split("|")]
    result = []
    for line in lines[2:]:
        route, *cells = (cell.strip() for cell in line.split("|"))
        for role, cell in zip(header[1:], cells, strict=True):
            codes = [code.strip() for code in cell.split("/")]
            relations = ["own", "foreign"] if len(codes) == 2 else ["any"]
            for relation, code in zip(relations, codes, strict=True):
                who = CALLERS.get((role, relation), CALLERS.get((role, "own")))
                label = role if relation == "any" else f"{relation} {role}"
                result.append(pytest.param(route, who, OUTCOMES[code], id=f"{route} | {label} -> {code}"))
    return result


CASES = cases(MATRIX)


def test_the_matrix_covers_every_route_and_role():
    routes = {param.values[0] for param in CASES}
    assert len(routes) == 10 and len(CASES) == 63
    callers = {param.values[1] for param in CASES}
    assert callers == {None, "C", "C2", "A", "A2", "S", "S2", "ADMIN"}


@pytest.mark.parametrize("route, who, outcome", CASES)
async def test_rbac(chat: Chat, world: World, route, who, outcome):
    status, error = outcome
    before = await snapshot(chat, world)
    await attempt(chat, world, who, route, BODIES.get(route), status=status, error=error)
    if status >= 400:
        assert await snapshot(chat, world) == before
