"""The conversation endpoints as a client calls them (``Chat``) and the cast the conversation tests
work in (``World``), shared by tests/test_conversations.py and tests/test_rbac_matrix.py; their
``chat`` and ``world`` fixtures are in tests/conftest.py."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any
from urllib.parse import quote

import attrs
from aiohttp import ClientResponse

from tests.conftest import Api, expect


def ref(thing: dict[str, Any] | str) -> str:
    """The id of a user or conversation returned by the API, or an id given as is."""
    return thing["_id"] if isinstance(thing, dict) else thing


class Chat(Api):
    """``Api`` plus the conversation endpoints; ``who`` is a user (with its token) or None (anonymous)."""

    async def request(self, method: str, path: str, who: dict[str, Any] | None = None, *,
                      json: Any = None, raw: str | bytes | None = None, params: Any = None) -> ClientResponse:
        headers = self.auth(who) if who else {}
        if raw is not None:
            headers["Content-Type"] = "application/json"
        return await self.client.request(method, path, json=json, data=raw, params=params, headers=headers)

    async def call(self, method: str, path: str, who: dict[str, Any] | None = None, *, status: int = 200,
                   error: str | None = None, **request: Any) -> Any:
        """One request; asserts the status (and exact error) and returns the envelope's data."""
        return await expect(await self.request(method, path, who, **request), status, error)

    async def open(self, candidate: dict, supervisor: dict | str, **expected: Any) -> Any:
        expected.setdefault("status", 201)
        return await self.call("POST", "/conversations", candidate, json={"supervisorId": ref(supervisor)},
                               **expected)

    def assigning(self, supervisor: dict, conv: dict | str, agent: dict | str) -> Awaitable[ClientResponse]:
        """The raw response (for races); ``assign`` checks it."""
        return self.request("POST", f"/conversations/{ref(conv)}/assign", supervisor, json={"agentId": ref(agent)})

    def closing(self, who: dict, conv: dict | str) -> Awaitable[ClientResponse]:
        """The raw response (for races); ``close`` checks it."""
        return self.request("POST", f"/conversations/{ref(conv)}/close", who, json={})

    async def assign(self, supervisor: dict, conv: dict | str, agent: dict | str, *, status: int = 200,
                     error: str | None = None) -> Any:
        return await expect(await self.assigning(supervisor, conv, agent), status, error)

    async def close(self, who: dict, conv: dict | str, *, status: int = 200, error: str | None = None) -> Any:
        return await expect(await self.closing(who, conv), status, error)

    async def view(self, who: dict, conv: dict | str, **expected: Any) -> Any:
        return await self.call("GET", f"/conversations/{ref(conv)}", who, **expected)

    async def history(self, who: dict, conv: dict | str, **params: Any) -> Any:
        return await self.call("GET", f"/conversations/{ref(conv)}/messages", who, params=params)

    async def listing(self, who: dict, path: str = "/conversations", **params: Any) -> list[dict[str, Any]]:
        return await self.call("GET", path, who, params=params)

    async def team(self, agents: int = 1) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """A supervisor and ``agents`` agents of its own."""
        supervisor = await self.user("supervisor")
        members = await asyncio.gather(*(self.user("agent", supervisor_id=supervisor["_id"]) for _ in range(agents)))
        return supervisor, list(members)


@attrs.frozen
class World:
    """Supervisor S with agent A; candidate C with conversation X addressed to S and assigned to A over
    HTTP (so X is still ``open``: A has not joined). Unrelated to X: supervisor S2 with agent A2,
    candidate C2 (no conversation yet), and an ADMIN."""

    ADMIN: dict[str, Any]
    S: dict[str, Any]
    A: dict[str, Any]
    C: dict[str, Any]
    X: dict[str, Any]
    S2: dict[str, Any]
    A2: dict[str, Any]
    C2: dict[str, Any]

    @classmethod
    async def create(cls, chat: Chat) -> World:
        admin, (s, (a,)), (s2, (a2,)), c, c2 = await asyncio.gather(
            chat.user("admin"), chat.team(), chat.team(), chat.user("candidate"), chat.user("candidate"))
        x = await chat.open(c, s)
        await chat.assign(s, x, a)
        return cls(ADMIN=admin, S=s, A=a, C=c, X=x, S2=s2, A2=a2, C2=c2)

    def party(self, name: str | None) -> dict[str, Any] | None:
        return None if name is None else getattr(self, name)

    def id(self, value: Any) -> Any:
        """A party's id for its name ("S", "X"…); any other value (a literal id, a malformed one) as is."""
        return getattr(self, value)["_id"] if isinstance(value, str) and value in WORLD_NAMES else value


WORLD_NAMES = frozenset(f.name for f in attrs.fields(World))


async def attempt(chat: Chat, world: World, who: str | None, route: str, body: dict | None = None,
                  **expected: Any) -> Any:
    """``who`` (a World name, None for anonymous) calls ``route``, written "METHOD /path", where path
    segments and body values naming a World party ("X", "A"…) stand for that party's id."""
    method, path = route.split(" ", 1)
    path = "/".join(quote(str(world.id(segment)), safe="") for segment in path.split("/"))
    json = None if body is None else {key: world.id(value) for key, value in body.items()}
    return await chat.call(method, path, world.party(who), json=json, **expected)


async def snapshot(chat: Chat, world: World) -> list[dict[str, Any]]:
    """Every conversation as the admin sees it: a refused request must leave this unchanged."""
    return await chat.listing(world.ADMIN)
