"""Who may call which REST route or send which WebSocket event (docs/openapi.json, docs/asyncapi.yaml,
the policy table in livechat/domain/policy.py), as one table.

Every case runs against a fresh World (see tests/conversations_helpers.py):

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

Rows "WS EVENT" send that event over a socket of the caller: "ok" is the event's own answer (or, for an
event that has none, no answer at all), "role" an ERROR "Forbidden for this role", "denied" an ERROR
"Not allowed to access this conversation", "join" an ERROR "You must join the conversation first"
(the socket of a row is in no room), and 401 for anonymous a socket refused with an ERROR
"Unauthorized or invalid token" and close code 4401.
"""

from __future__ import annotations

import pytest

from typing import Any

from tests.conftest import PASSWORD
from tests.contract import (
    ACTIVE_EXISTS,
    FORBIDDEN,
    FORBIDDEN_FOR_ROLE,
    NOT_ALLOWED,
    NOT_JOINED,
    NOT_YOUR_CONVERSATION,
    UNAUTHORIZED,
    UNAUTHORIZED_CLOSE,
    UNKNOWN_EVENT,
    WS_UNAUTHORIZED,
)
from tests.conversations_helpers import Chat, World, attempt, snapshot
from tests.ws_helpers import Peer

MATRIX = """
| route                                 | anonymous | candidate     | agent         | supervisor    | admin |
|---------------------------------------|-----------|---------------|---------------|---------------|-------|
| POST /conversations                   | 401       | 409 / 201     | 403           | 403           | 403   |
| POST /conversations/X/assign          | 401       | 403 / 403     | 403 / 403     | 200 / 403*    | 403   |
| GET /conversations/X                  | 401       | 200 / 403     | 200 / 403     | 200 / 403     | 200   |
| GET /conversations/X/messages         | 401       | 200 / 403     | 200 / 403     | 200 / 403     | 200   |
| POST /conversations/X/close           | 401       | 403 / 403     | 403 / 403     | 200 / 403     | 200   |
| GET /conversations                    | 401       | 200           | 200           | 200           | 200   |
| GET /admin/analytics                  | 401       | 403           | 403           | 403           | 200   |
| GET /admin/analytics/summary          | 401       | 403           | 403           | 200           | 200   |
| GET /supervisors                      | 401       | 200           | 200           | 200           | 200   |
| GET /agents                           | 401       | 403           | 403           | 200           | 200   |
| POST /conversations/X/transfer        | 401       | 403 / 403     | 200 / 403     | 200 / 403     | 200   |
| GET /conversations/X/transfer-targets | 401       | 403 / 403     | 200 / 403     | 200 / 403     | 200   |
| GET /supervisors/S/routing            | 401       | 403           | 403           | 200 / 403     | 200   |
| PUT /supervisors/S/routing            | 401       | 403           | 403           | 200 / 403     | 200   |
| POST /auth/logout-all                 | 401       | 200           | 200           | 200           | 200   |
| POST /auth/password                   | 401       | 200           | 200           | 200           | 200   |
| PATCH /admin/users/A                  | 401       | 403           | 403           | 403           | 200   |
| WS SUBSCRIBE_INBOX                    | 401       | ok            | ok            | ok            | ok    |
| WS SET_PRESENCE                       | 401       | role          | ok            | role          | role  |
| WS WATCH_CONVERSATION                 | 401       | role          | role          | ok / denied   | ok    |
| WS UNWATCH_CONVERSATION               | 401       | role          | role          | ok            | ok    |
| WS TYPING                             | 401       | join          | join          | role          | role  |
| WS MARK_READ                          | 401       | join / denied | join / denied | join / denied | join  |
| WS SEND_NOTE                          | 401       | role          | join / denied | join / denied | join  |
"""

BODIES = {
    "POST /conversations": {"supervisorId": "S"},
    "POST /conversations/X/assign": {"agentId": "A"},
    "POST /conversations/X/close": {},
    "POST /conversations/X/transfer": {"agentId": "A"},  # to its own agent: allowed, and changes nothing
    "PUT /supervisors/S/routing": {"mode": "manual", "maxConcurrent": 5},  # the defaults again
    "POST /auth/logout-all": {},
    "POST /auth/password": {"currentPassword": PASSWORD, "newPassword": "another horse battery"},
    "PATCH /admin/users/A": {"role": "agent", "supervisorId": "S"},  # what A is: only its tokens end
    "WS SUBSCRIBE_INBOX": {},
    "WS SET_PRESENCE": {"status": "away"},
    "WS WATCH_CONVERSATION": {"conversationId": "X"},
    "WS UNWATCH_CONVERSATION": {"conversationId": "X"},
    "WS TYPING": {"conversationId": "X"},
    "WS MARK_READ": {"conversationId": "X", "seq": 0},
    "WS SEND_NOTE": {"conversationId": "X", "content": "a note"},
}

ANSWERS = {  # the event that answers an allowed WebSocket event; None: it has no answer
    "WS SUBSCRIBE_INBOX": "INBOX_SUBSCRIBED",
    "WS SET_PRESENCE": None,
    "WS WATCH_CONVERSATION": "WATCHING_CONVERSATION",
    "WS UNWATCH_CONVERSATION": "UNWATCHED_CONVERSATION",
    # The signals (C.5–C.7) act on a room: the row's fresh socket joined none, so a party that may
    # send the event is told to join first ("join") — after the role and the relation were checked.
    "WS TYPING": None,
    "WS MARK_READ": None,
    "WS SEND_NOTE": None,
}

OUTCOMES = {
    "200": (200, None),
    "201": (201, None),
    "401": (401, UNAUTHORIZED),  # over WebSocket: WS_UNAUTHORIZED
    "403": (403, FORBIDDEN),
    "403*": (403, NOT_YOUR_CONVERSATION),
    "409": (409, ACTIVE_EXISTS),
    "ok": (200, None),
    "role": (403, FORBIDDEN_FOR_ROLE),
    "denied": (403, NOT_ALLOWED),
    "join": (400, NOT_JOINED),
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
    assert len(routes) == 24 and len(CASES) == 147
    callers = {param.values[1] for param in CASES}
    assert callers == {None, "C", "C2", "A", "A2", "S", "S2", "ADMIN"}


@pytest.mark.parametrize("route, who, outcome", CASES)
async def test_rbac(chat: Chat, world: World, route, who, outcome):
    status, error = outcome
    before = await snapshot(chat, world)
    if route.startswith("WS "):
        await emit(chat, world, who, route, status=status, error=error)
    else:
        await attempt(chat, world, who, route, BODIES.get(route), status=status, error=error)
    if status >= 400:
        assert await snapshot(chat, world) == before


async def emit(chat: Chat, world: World, who: str | None, route: str, *, status: int, error: str | None) -> None:
    """``who`` sends the row's event on a socket of its own; then an unknown event, whose answer
    shows that nothing else (no error, no second answer) came first."""
    event = route.removeprefix("WS ")
    party = world.party(who)
    ws = await chat.client.ws_connect(f"/ws?token={party['token'] if party else ''}")
    peer = Peer(ws)
    try:
        if status == 401:
            assert await peer.expect_event("ERROR") == {"message": WS_UNAUTHORIZED}
            assert (await ws.receive()).type.name in {"CLOSE", "CLOSING", "CLOSED"} and ws.close_code == UNAUTHORIZED_CLOSE
            return
        await peer.emit(event, {key: world.id(value) for key, value in BODIES[route].items()})
        if status >= 400:
            assert await peer.expect_event("ERROR") == {"message": error}
        elif ANSWERS[route] is not None:
            answer: dict[str, Any] = await peer.expect_event(ANSWERS[route])
            assert answer.get("conversationId", world.X["_id"]) == world.X["_id"]
        await peer.fails(UNKNOWN_EVENT, "NO_SUCH_EVENT", {})
    finally:
        await ws.close()
