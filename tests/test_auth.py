"""/auth/* (docs/openapi.json) and the profiles (README "Profiles"), against the running app and the real database."""

from __future__ import annotations

import asyncio
import time
import warnings

import jwt
import pytest

from livechat.config import Profile
from tests.conftest import PASSWORD, TEST_SECRET, Api, expect, make_settings
from tests.contract import (
    BAD_LOGIN,
    EMAIL_EXISTS,
    FORBIDDEN,
    INVALID,
    INVALID_SUPERVISOR_ROLE,
    SUPERVISOR_NOT_FOUND,
    UNAUTHORIZED,
    USER_NOT_FOUND,
)


async def test_signup_returns_the_user_without_secrets(api: Api):
    data = await api.signup("candidate", name="  Ann  ", email="  Ann@Example.COM ")
    assert set(data) == {"_id", "name", "email", "role", "password"}  # password: added by the helper
    assert data["name"] == "Ann" and data["email"] == "ann@example.com" and data["role"] == "candidate"
    assert len(data["_id"]) == 24 and int(data["_id"], 16) >= 0


async def test_agent_signup_carries_its_supervisor(api: Api):
    sup = await api.signup("supervisor")
    agent = await api.signup("agent", supervisor_id=sup["_id"])
    assert agent["supervisorId"] == sup["_id"]


@pytest.mark.parametrize(
    "change",
    [
        {"name": ""}, {"name": "   "}, {"name": 5}, {"name": None}, {"name": {"$ne": None}},
        {"email": "not-an-email"}, {"email": ""}, {"email": ["a@b.co"]}, {"email": {"$gt": ""}},
        {"password": "short7!"}, {"password": 12345678}, {"password": "p" * 129},
        {"role": "boss"}, {"role": "Admin"}, {"role": None}, {"role": 1},
        {"name": "bad \ud800 surrogate"},
    ],
)
async def test_signup_rejects_invalid_fields(api: Api, change):
    payload = {"name": "Ann", "email": "ann@example.com", "password": PASSWORD, "role": "candidate", **change}
    await expect(await api.client.post("/auth/signup", json=payload), 400, INVALID)


@pytest.mark.parametrize("missing", ["name", "email", "password", "role"])
async def test_signup_rejects_missing_fields(api: Api, missing):
    payload = {"name": "Ann", "email": "ann@example.com", "password": PASSWORD, "role": "candidate"}
    del payload[missing]
    await expect(await api.client.post("/auth/signup", json=payload), 400, INVALID)


async def test_agent_supervisor_rules(api: Api):
    candidate = await api.signup("candidate")
    base = {"name": "Al", "email": "al@example.com", "password": PASSWORD, "role": "agent"}
    post = api.client.post
    await expect(await post("/auth/signup", json=base), 400, INVALID)
    await expect(await post("/auth/signup", json={**base, "supervisorId": "123"}), 400, INVALID)
    await expect(await post("/auth/signup", json={**base, "supervisorId": "g" * 24}), 400, INVALID)
    await expect(await post("/auth/signup", json={**base, "supervisorId": "a" * 25}), 400, INVALID)
    await expect(await post("/auth/signup", json={**base, "supervisorId": "a" * 24}), 404, SUPERVISOR_NOT_FOUND)
    await expect(await post("/auth/signup", json={**base, "supervisorId": candidate["_id"]}), 400,
                 INVALID_SUPERVISOR_ROLE)


async def test_smuggled_fields_change_nothing(api: Api):
    payload = {"name": "Eve", "email": "eve@example.com", "password": PASSWORD, "role": "candidate",
               "_id": "a" * 24, "passwordHash": "x", "createdAt": "2000-01-01T00:00:00.000Z",
               "supervisorId": "b" * 24}
    data = await expect(await api.client.post("/auth/signup", json=payload), 201)
    assert data["_id"] != "a" * 24 and "supervisorId" not in data
    await api.login("eve@example.com")  # the smuggled hash did not replace the real one


async def test_email_is_unique_case_insensitively(api: Api):
    await api.signup(email="dup@example.com")
    await api.signup(email=" DUP@Example.com", status=409)
    resp = await api.client.post("/auth/signup", json={"name": "X", "email": "Dup@example.com",
                                                       "password": PASSWORD, "role": "agent" if False else "candidate"})
    await expect(resp, 409, EMAIL_EXISTS)


async def test_concurrent_identical_signups_create_one_user(api: Api):
    payload = {"name": "Racer", "email": "race@example.com", "password": PASSWORD, "role": "candidate"}
    responses = await asyncio.gather(*(api.client.post("/auth/signup", json=payload) for _ in range(20)))
    statuses = sorted(r.status for r in responses)
    assert statuses == [201] + [409] * 19
    for r in responses:
        if r.status == 409:
            await expect(r, 409, EMAIL_EXISTS)


async def test_login_and_me(api: Api):
    user = await api.signup("supervisor", email="Sup@Example.com")
    resp = await api.client.post("/auth/login", json={"email": " SUP@example.COM", "password": PASSWORD})
    data = await expect(resp, 200)
    claims = jwt.decode(data["token"], TEST_SECRET, algorithms=["HS256"])
    assert claims["userId"] == claims["sub"] == user["_id"] and claims["role"] == "supervisor"
    assert claims["exp"] - claims["iat"] == 24 * 3600
    assert data["user"]["_id"] == user["_id"]
    me = await expect(await api.client.get("/auth/me", headers=api.auth(data["token"])), 200)
    assert me == {"_id": user["_id"], "name": user["name"], "email": "sup@example.com", "role": "supervisor"}


async def test_unknown_email_and_wrong_password_are_indistinguishable(api: Api):
    await api.signup(email="known@example.com")
    wrong = await api.client.post("/auth/login", json={"email": "known@example.com", "password": "wrong-password"})
    unknown = await api.client.post("/auth/login", json={"email": "nobody@example.com", "password": "wrong-password"})
    assert wrong.status == unknown.status == 401
    assert await wrong.read() == await unknown.read() == b'{"success":false,"error":"Invalid email or password"}'


@pytest.mark.parametrize(
    "payload",
    [{}, {"email": "a@b.co"}, {"password": "x"}, {"email": 1, "password": "x"},
     {"email": "a@b.co", "password": ["x"]}, {"email": {"$ne": None}, "password": "x"},
     {"email": "a@b.co", "password": {"$ne": None}}, {"email": "not-an-email", "password": "x"}],
)
async def test_login_rejects_malformed_requests(api: Api, payload):
    await expect(await api.client.post("/auth/login", json=payload), 400, INVALID)


@pytest.mark.parametrize("password", ["p" * 10_000, "\ud800\udfff lone surrogates", "\x00\x01 control", "ü" * 300])
async def test_any_login_password_is_just_a_wrong_password(api: Api, password):
    user = await api.signup()
    resp = await api.client.post("/auth/login", json={"email": user["email"], "password": password})
    await expect(resp, 401, BAD_LOGIN)


async def test_long_unicode_passwords_are_never_truncated(api: Api):
    # 100 x "é" is 200 UTF-8 bytes: far past bcrypt's 72; the two differ only in the last character.
    first, second = "é" * 99 + "a", "é" * 99 + "b"
    user = await api.signup(password=first)
    await api.login(user["email"], first)
    resp = await api.client.post("/auth/login", json={"email": user["email"], "password": second})
    await expect(resp, 401, BAD_LOGIN)
    emoji = "🔒" * 128  # 128 characters, 512 bytes: accepted
    other = await api.signup(password=emoji)
    await api.login(other["email"], emoji)


async def test_me_requires_a_valid_token(api: Api):
    user = await api.user()
    get = api.client.get
    await expect(await get("/auth/me"), 401, UNAUTHORIZED)
    await expect(await get("/auth/me", headers={"Authorization": "Bearer"}), 401, UNAUTHORIZED)
    await expect(await get("/auth/me", headers={"Authorization": "Basic abc"}), 401, UNAUTHORIZED)
    await expect(await get("/auth/me", headers={"Authorization": "Bearer not.a.jwt"}), 401, UNAUTHORIZED)
    await expect(await get("/auth/me", headers=api.auth(user["token"] + "x")), 401, UNAUTHORIZED)


def _forge(claims: dict, key: str = TEST_SECRET, alg: str = "HS256") -> str:
    with warnings.catch_warnings():  # HS384/512 with our 52-byte secret: PyJWT warns, the forger does not care
        warnings.simplefilter("ignore")
        return jwt.encode(claims, key, algorithm=alg)


async def test_forged_and_expired_tokens_are_refused(api: Api):
    user = await api.user()
    now = int(time.time())
    good = {"sub": user["_id"], "userId": user["_id"], "role": "admin", "iat": now, "exp": now + 3600}
    forged = [
        _forge({**good, "exp": now - 60}),  # expired beyond the leeway
        _forge({k: v for k, v in good.items() if k != "exp"}),
        _forge({k: v for k, v in good.items() if k != "sub"}),
        _forge({k: v for k, v in good.items() if k != "iat"}),
        _forge(good, key="another-secret-that-is-long-enough-000"),
        _forge(good, alg="HS512"),
        _forge(good, alg="HS384"),
        _forge({**good, "sub": "not-an-object-id"}),
        _forge(good, key=None, alg="none"),
    ]
    for token in forged:
        await expect(await api.client.get("/auth/me", headers=api.auth(token)), 401, UNAUTHORIZED)
    # A valid token's role claim is not trusted: the stored role is what counts.
    me = await expect(await api.client.get("/auth/me", headers=api.auth(_forge(good))), 200)
    assert me["role"] == "candidate"


async def test_token_of_a_deleted_user(api: Api, client):
    from bson import ObjectId

    from livechat.keys import services_key

    user = await api.user()
    await client.server.app[services_key].store.users.delete(ObjectId(user["_id"]))
    await expect(await api.client.get("/auth/me", headers=api.auth(user)), 404, USER_NOT_FOUND)


# --- profiles (B.6) ---------------------------------------------------------------------------


@pytest.fixture
async def prod_api(app_client, mongo_uri) -> Api:
    return Api(await app_client(make_settings(mongo_uri, profile=Profile.PRODUCTION)))


async def test_development_lets_anyone_take_any_role(api: Api):
    for role in ("admin", "supervisor", "candidate"):
        await api.signup(role)


async def test_production_public_signup_is_for_candidates_only(prod_api: Api, client):
    await prod_api.signup("candidate")
    for role in ("admin", "supervisor", "agent"):
        resp = await prod_api.client.post("/auth/signup", json={
            "name": "X", "email": f"{role}@example.com", "password": PASSWORD, "role": role,
            "supervisorId": "a" * 24})
        await expect(resp, 403, FORBIDDEN)
        await expect(await prod_api.client.post("/auth/login", json={"email": f"{role}@example.com",
                                                                     "password": PASSWORD}), 401)


async def test_production_staff_accounts_come_from_admins_and_supervisors(prod_api: Api, client):
    from livechat.domain.auth import SignupRequest
    from livechat.domain.models import Role
    from livechat.keys import services_key

    auth = prod_api.client.server.app[services_key].auth
    await auth.signup(None, SignupRequest(name="Root", email="root@example.com", password=PASSWORD,
                                          role=Role.ADMIN), trusted=True)
    admin = await prod_api.login("root@example.com")
    sup = await prod_api.signup("supervisor", token=admin)
    other_sup = await prod_api.signup("supervisor", token=admin)
    sup_token = await prod_api.login(sup["email"])
    # A supervisor creates agents for itself, with or without naming itself…
    agent = await prod_api.signup("agent", token=sup_token, supervisor_id=sup["_id"])
    implicit = await prod_api.signup("agent", token=sup_token)
    assert agent["supervisorId"] == implicit["supervisorId"] == sup["_id"]
    # …but not for another supervisor, and no other role.
    await prod_api.signup("agent", token=sup_token, supervisor_id=other_sup["_id"], status=403)
    await prod_api.signup("supervisor", token=sup_token, status=403)
    await prod_api.signup("admin", token=sup_token, status=403)
    # An agent or candidate token gives nothing extra; a bad token is 401.
    agent_token = await prod_api.login(agent["email"])
    await prod_api.signup("agent", token=agent_token, supervisor_id=sup["_id"], status=403)
    await prod_api.signup("agent", token="garbage", supervisor_id=sup["_id"], status=401)
    await prod_api.signup("admin", token=admin)
