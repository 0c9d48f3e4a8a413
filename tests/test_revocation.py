"""Token revocation (README "Operations"): POST /auth/logout-all, POST /auth/password and an admin's
PATCH /admin/users/:id void every earlier token of that user — 401 over HTTP at once, and open
sockets get ERROR ``Unauthorized or invalid token`` and close 4401 within a second."""

from __future__ import annotations

import asyncio
import json

import pytest
from aiohttp import WSMsgType

from livechat.realtime.protocol import CLOSE_UNAUTHORIZED, UNAUTHORIZED as WS_UNAUTHORIZED
from tests.conftest import PASSWORD, Api, expect
from tests.ws_helpers import Peer, connect

UNAUTHORIZED = "Unauthorized, token missing or invalid"
INVALID = "Invalid request schema"
NEW_PASSWORD = "another horse battery"


async def me(api: Api, token: str, status: int = 200) -> object:
    return await expect(await api.client.get("/auth/me", headers=api.auth(token)), status,
                        UNAUTHORIZED if status == 401 else None)


async def closed_within_a_second(peer: Peer) -> None:
    """ERROR then a close frame with 4401, within a second of the revocation (the caller reads
    right after it). The close frame's code is checked, not ``ws.close_code``: the server drops the
    connection once its close frame is out, and aiohttp's client then reports its own failed close
    reply as 1006."""
    frames = []
    async with asyncio.timeout(1.0):
        while True:
            msg = await peer.ws.receive()
            if msg.type is not WSMsgType.TEXT:
                break
            frames.append(json.loads(msg.data))
    assert (msg.type, msg.data) == (WSMsgType.CLOSE, CLOSE_UNAUTHORIZED), (msg, frames)
    assert frames[-1] == {"event": "ERROR", "data": {"message": WS_UNAUTHORIZED}}


async def test_logout_all_voids_every_earlier_token_and_socket(api: Api, client):
    user = await api.user("candidate")
    second = await api.login(user["email"])
    peer = await connect(client, user)
    await peer.ask("SUBSCRIBE_INBOX", {})  # an authenticated, working socket
    other = await api.user("candidate")
    bystander = await connect(client, other)

    assert await expect(await client.post("/auth/logout-all", headers=api.auth(second)), 200) == {"loggedOut": True}
    await closed_within_a_second(peer)
    await me(api, user["token"], 401)
    await me(api, second, 401)
    # A new login works; the user's own revocation touched nobody else.
    fresh = await api.login(user["email"])
    assert (await me(api, fresh))["_id"] == user["_id"]
    await me(api, other["token"])
    await bystander.ask("SUBSCRIBE_INBOX", {})
    # A revoked token cannot open a socket either.
    late = await connect(client, token=user["token"])
    await late.closed_with(CLOSE_UNAUTHORIZED)


async def test_logout_all_needs_a_valid_token(api: Api, client):
    await expect(await client.post("/auth/logout-all"), 401, UNAUTHORIZED)
    user = await api.user("agent", supervisor_id=(await api.signup("supervisor"))["_id"])
    await expect(await client.post("/auth/logout-all", headers=api.auth(user)), 200)
    await expect(await client.post("/auth/logout-all", headers=api.auth(user)), 401, UNAUTHORIZED)


async def test_password_change_voids_old_tokens_and_returns_a_new_one(api: Api, client):
    user = await api.user("supervisor")
    peer = await connect(client, user)
    await peer.ask("SUBSCRIBE_INBOX", {})
    resp = await client.post("/auth/password", headers=api.auth(user),
                             json={"currentPassword": PASSWORD, "newPassword": NEW_PASSWORD})
    token = (await expect(resp, 200))["token"]
    await closed_within_a_second(peer)
    await me(api, user["token"], 401)
    assert (await me(api, token))["_id"] == user["_id"]
    bad = await client.post("/auth/login", json={"email": user["email"], "password": PASSWORD})
    await expect(bad, 401, "Invalid email or password")
    await api.login(user["email"], NEW_PASSWORD)


@pytest.mark.parametrize("payload, status, error", [
    ({"currentPassword": "wrong password", "newPassword": NEW_PASSWORD}, 400, "Invalid current password"),
    ({"currentPassword": PASSWORD, "newPassword": "short7!"}, 400, INVALID),
    ({"currentPassword": PASSWORD, "newPassword": "p" * 129}, 400, INVALID),
    ({"currentPassword": PASSWORD}, 400, INVALID),
    ({"newPassword": NEW_PASSWORD}, 400, INVALID),
    ({"currentPassword": PASSWORD, "newPassword": 12345678}, 400, INVALID),
    ({"currentPassword": {"$ne": None}, "newPassword": NEW_PASSWORD}, 400, INVALID),
])
async def test_password_change_rules(api: Api, client, payload, status, error):
    user = await api.user("candidate")
    await expect(await client.post("/auth/password", headers=api.auth(user), json=payload), status, error)
    await me(api, user["token"])  # nothing changed: the token still works
    await api.login(user["email"])


async def test_password_change_without_token_or_body(api: Api, client):
    body = {"currentPassword": PASSWORD, "newPassword": NEW_PASSWORD}
    await expect(await client.post("/auth/password", json=body), 401, UNAUTHORIZED)
    user = await api.user("candidate")
    await expect(await client.post("/auth/password", headers=api.auth(user), data="nope"), 400, INVALID)


async def test_role_change_by_an_admin_voids_tokens(api: Api, client):
    admin = await api.user("admin")
    supervisor = await api.user("supervisor")
    user = await api.user("candidate")
    peer = await connect(client, user)
    await peer.ask("SUBSCRIBE_INBOX", {})
    resp = await client.patch(f"/admin/users/{user['_id']}", headers=api.auth(admin),
                              json={"role": "agent", "supervisorId": supervisor["_id"]})
    changed = await expect(resp, 200)
    assert changed == {"_id": user["_id"], "name": user["name"], "email": user["email"], "role": "agent",
                       "supervisorId": supervisor["_id"]}
    await closed_within_a_second(peer)
    await me(api, user["token"], 401)
    token = await api.login(user["email"])
    assert (await me(api, token))["role"] == "agent"
    # And back: a non-agent has no supervisor.
    resp = await client.patch(f"/admin/users/{user['_id']}", headers=api.auth(admin), json={"role": "candidate"})
    assert "supervisorId" not in await expect(resp, 200)
    await me(api, token, 401)


async def test_role_change_rules(api: Api, client):
    admin = await api.user("admin")
    supervisor = await api.user("supervisor")
    user = await api.user("candidate")
    url = f"/admin/users/{user['_id']}"
    await expect(await client.patch(url, json={"role": "admin"}), 401, UNAUTHORIZED)
    for role in ("supervisor", "candidate"):
        await expect(await client.patch(url, headers=api.auth(supervisor if role == "supervisor" else user),
                                        json={"role": "admin"}), 403, "Forbidden, insufficient permissions")
    for payload in ({}, {"role": "boss"}, {"role": None}, {"role": "agent"},
                    {"role": "agent", "supervisorId": "123"}):
        await expect(await client.patch(url, headers=api.auth(admin), json=payload), 400, INVALID)
    await expect(await client.patch("/admin/users/123", headers=api.auth(admin), json={"role": "admin"}), 400, INVALID)
    await expect(await client.patch("/admin/users/" + "0" * 24, headers=api.auth(admin), json={"role": "admin"}),
                 404, "User not found")
    await expect(await client.patch(url, headers=api.auth(admin), json={"role": "agent", "supervisorId": user["_id"]}),
                 400, "Invalid supervisor role")
    await expect(await client.patch(url, headers=api.auth(admin), json={"role": "agent", "supervisorId": "0" * 24}),
                 404, "Supervisor not found")
    await me(api, user["token"])  # none of the refusals revoked anything


async def test_several_sockets_of_the_user_all_close(api: Api, client):
    user = await api.user("candidate")
    peers = [await connect(client, user) for _ in range(3)]
    for peer in peers:
        await peer.ask("SUBSCRIBE_INBOX", {})
    await expect(await client.post("/auth/logout-all", headers=api.auth(user)), 200)
    await asyncio.gather(*(closed_within_a_second(p) for p in peers))


async def test_the_change_stream_never_carries_a_password_hash(api: Api, client, settings):
    """What other processes read about a user is its id and token version: the stream's pipeline
    projects the hash away (a bcrypt hash starts with $2b$), and updates of other user fields are
    not followed at all."""
    import pymongo
    from bson import json_util

    from livechat.domain.models import TokensRevoked
    from livechat.keys import services_key
    from livechat.storage.mongo import _CHANGES_PIPELINE

    user = await api.user("candidate")
    db = pymongo.AsyncMongoClient(settings.database.uri, tz_aware=True)[settings.database.name]
    try:
        stream = await db.watch(_CHANGES_PIPELINE, full_document="updateLookup", max_await_time_ms=200)
        async with stream:
            await expect(await client.post("/auth/password", headers=api.auth(user),
                                           json={"currentPassword": PASSWORD, "newPassword": NEW_PASSWORD}), 200)
            events = []
            for _ in range(50):
                event = await stream.try_next()
                if event is not None:
                    events.append(event)
                if any(e["ns"]["coll"] == "users" for e in events):
                    break
    finally:
        await db.client.close()
    users = [e for e in events if e["ns"]["coll"] == "users"]
    assert len(users) == 1
    text = json_util.dumps(users[0])
    assert "passwordHash" not in text and "$2b$" not in text
    assert users[0]["fullDocument"]["tokenVersion"] == 1
    # And the store turns it into id + version only.
    store = client.app[services_key].store
    async with store.changes(None) as changes:
        await anext(changes)
        await expect(await client.post("/auth/logout-all", headers=api.auth(await api.login(user["email"],
                                                                                             NEW_PASSWORD))), 200)
        async with asyncio.timeout(5):
            async for change in changes:
                if isinstance(change.document, TokensRevoked):
                    assert change.document == TokensRevoked(parse_id(user["_id"]), 2)
                    break


def parse_id(text: str):
    from bson import ObjectId

    return ObjectId(text)
