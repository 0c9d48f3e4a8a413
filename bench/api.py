"""Users and conversations created through livechat's public REST API (nothing behind its back)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp

from bench.servers import BenchError

PASSWORD = "bench-password-1"
AGENT_CONVERSATIONS = 10  # conversations per agent: 10 agent sockets per agent user (limit: 20)
T = TypeVar("T")


@dataclass(frozen=True)
class Room:
    """A conversation and the WebSocket URLs of its two parties (candidate, agent)."""

    conversation_id: str
    urls: tuple[str, str]


def ws_base(base: str) -> str:
    return "ws" + base.removeprefix("http") + "/ws"


class Api:
    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session = session
        self.base = base
        self.tag = secrets.token_hex(4)  # unique emails, so a --base server can be reused
        self.supervisor: tuple[str, str] | None = None  # (id, token) of the supervisor rooms() made

    async def call(self, method: str, path: str, body: dict | None = None, token: str | None = None) -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with self.session.request(method, self.base + path, json=body, headers=headers) as resp:
            payload = await resp.json(content_type=None)
        if not isinstance(payload, dict) or not payload.get("success"):
            raise BenchError(f"{method} {path} → {resp.status} {payload!r}")
        return payload["data"]

    async def signup(self, name: str, role: str, supervisor_id: str | None = None) -> tuple[str, str]:
        """A new account; returns (its id, its email)."""
        email = f"bench-{self.tag}-{name}@example.com"
        body = {"name": name, "email": email, "password": PASSWORD, "role": role}
        if supervisor_id:
            body["supervisorId"] = supervisor_id
        data = await self.call("POST", "/auth/signup", body)
        return data["_id"], email

    async def login(self, email: str) -> str:
        return (await self.call("POST", "/auth/login", {"email": email, "password": PASSWORD}))["token"]

    async def user(self, name: str, role: str, supervisor_id: str | None = None) -> tuple[str, str]:
        """Sign up and log in: (id, token)."""
        user_id, email = await self.signup(name, role, supervisor_id)
        return user_id, await self.login(email)

    def ws_url(self, token: str) -> str:
        return f"{ws_base(self.base)}?token={token}"

    async def rooms(self, count: int, concurrency: int = 16) -> list[Room]:
        """``count`` conversations, each with its own candidate, assigned to agents of one supervisor
        (``AGENT_CONVERSATIONS`` per agent)."""
        sup_id, sup_token = self.supervisor = await self.user("sup", "supervisor")
        agents = await bounded(concurrency, (self.user(f"agent{i}", "agent", sup_id)
                                             for i in range(-(-count // AGENT_CONVERSATIONS))))

        async def room(i: int) -> Room:
            _, cand_token = await self.user(f"cand{i}", "candidate")
            conv = await self.call("POST", "/conversations", {"supervisorId": sup_id}, cand_token)
            agent_id, agent_token = agents[i // AGENT_CONVERSATIONS]
            await self.call("POST", f"/conversations/{conv['_id']}/assign", {"agentId": agent_id}, sup_token)
            return Room(conv["_id"], (self.ws_url(cand_token), self.ws_url(agent_token)))

        return await bounded(concurrency, (room(i) for i in range(count)))


async def bounded(limit: int, coros: Iterable[Awaitable[T]]) -> list[T]:
    """Run the awaitables with at most ``limit`` at a time; results in order."""
    gate = asyncio.Semaphore(limit)

    async def one(coro: Awaitable[T]) -> T:
        async with gate:
            return await coro

    return list(await asyncio.gather(*(one(c) for c in coros)))


def minimal_rooms(base: str, count: int) -> list[Room]:
    """The minimal server needs no accounts: any id names a room."""
    url = ws_base(base)
    return [Room(f"{i:024x}", (url, url)) for i in range(count)]

