"""Authentication attacks: forged, edited, expired and orphaned tokens over HTTP and WebSocket;
production refusing weak JWT secrets; logins that cannot enumerate accounts."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable

import pytest
from bson import ObjectId

from tests.conftest import PASSWORD, Api, expect, make_settings
from tests.contract import UNAUTHORIZED, UNAUTHORIZED_CLOSE, USER_NOT_FOUND, WS_UNAUTHORIZED
from tests.processes import ROOT, run_env
from tests.security.helpers import (
    claims_for,
    connect,
    make_team,
    services,
    sign,
    tamper,
    unsigned,
)

# Each forgery gets the victim's id and a genuine token of it; it returns the token to try.
Forgery = Callable[[str, str], str]
FORGERIES: dict[str, Forgery] = {
    "alg none": lambda uid, tok: unsigned(claims_for(uid)),
    "alg None": lambda uid, tok: unsigned(claims_for(uid), alg="None"),
    "alg NONE": lambda uid, tok: unsigned(claims_for(uid), alg="NONE"),
    "alg none, genuine signature kept": lambda uid, tok: unsigned(claims_for(uid)) + tok.rsplit(".", 1)[1],
    "HS384 with the real secret": lambda uid, tok: sign(claims_for(uid), alg="HS384"),
    "HS512 with the real secret": lambda uid, tok: sign(claims_for(uid), alg="HS512"),
    "wrong key": lambda uid, tok: sign(claims_for(uid), key="an-attacker-chosen-key-of-32-bytes!!"),
    "edited role": lambda uid, tok: tamper(tok, role="admin"),
    "edited sub and userId": lambda uid, tok: tamper(tok, sub=str(ObjectId()), userId=str(ObjectId())),
    "edited exp": lambda uid, tok: tamper(tok, exp=int(time.time()) + 10 * 365 * 86400),
    "signature stripped": lambda uid, tok: tok.rsplit(".", 1)[0] + ".",
    "expired beyond the leeway": lambda uid, tok: sign(claims_for(uid, lifetime=-60)),
    "issued in the future": lambda uid, tok: sign(claims_for(uid, iat=int(time.time()) + 3600)),
    "no exp": lambda uid, tok: sign({k: v for k, v in claims_for(uid).items() if k != "exp"}),
    "no iat": lambda uid, tok: sign({k: v for k, v in claims_for(uid).items() if k != "iat"}),
    "no sub": lambda uid, tok: sign({k: v for k, v in claims_for(uid).items() if k != "sub"}),
    "sub not an id": lambda uid, tok: sign(claims_for("not-an-object-id")),
    "sub is a number": lambda uid, tok: sign({**claims_for(uid), "sub": 12345}),
    "sub is an operator": lambda uid, tok: sign({**claims_for(uid), "sub": {"$ne": None}}),
    "sub is 25 hex": lambda uid, tok: sign(claims_for(uid + "a")),
    "not valid before next hour": lambda uid, tok: sign(claims_for(uid, nbf=int(time.time()) + 3600)),
    "not a JWT": lambda uid, tok: "not.a.jwt",
    "two tokens": lambda uid, tok: f"{tok} {tok}",
}


@pytest.fixture
async def victim(api: Api) -> dict:
    return await api.user("candidate")


@pytest.mark.parametrize("name", FORGERIES)
async def test_forged_tokens_are_401_over_http(api: Api, victim, name):
    token = FORGERIES[name](victim["_id"], victim["token"])
    for path in ("/auth/me", "/conversations", "/supervisors", "/admin/analytics"):
        await expect(await api.client.get(path, headers=api.auth(token)), 401, UNAUTHORIZED)
    resp = await api.client.post("/conversations", json={"supervisorId": str(ObjectId())}, headers=api.auth(token))
    await expect(resp, 401, UNAUTHORIZED)
    await expect(await api.client.get("/auth/me", headers=api.auth(victim)), 200)  # the genuine one still works


@pytest.mark.parametrize("name", FORGERIES)
async def test_forged_tokens_are_4401_over_websocket(api: Api, victim, name):
    token = FORGERIES[name](victim["_id"], victim["token"])
    for peer in (await connect(api.client, token), await connect(api.client, headers=api.auth(token))):
        events = await peer.closed_with(UNAUTHORIZED_CLOSE)
        assert events == [{"event": "ERROR", "data": {"message": WS_UNAUTHORIZED}}]


async def test_missing_tokens_are_refused(api: Api):
    await expect(await api.client.get("/conversations"), 401, UNAUTHORIZED)
    for headers in ({"Authorization": "Bearer"}, {"Authorization": "Bearer    "}, {"Authorization": "Token x"}):
        await expect(await api.client.get("/conversations", headers=headers), 401, UNAUTHORIZED)
    for peer in (await connect(api.client), await connect(api.client, "")):
        assert await peer.closed_with(UNAUTHORIZED_CLOSE) == [{"event": "ERROR", "data": {"message": WS_UNAUTHORIZED}}]


async def test_tokens_of_deleted_users_stop_working_at_once(api: Api):
    team = await make_team(api)
    for member in team.members().values():
        await services(api.client).store.users.delete(ObjectId(member["_id"]))
        await expect(await api.client.get("/conversations", headers=api.auth(member)), 401, UNAUTHORIZED)
        resp = await api.client.get(f"/conversations/{team.conv_id}", headers=api.auth(member))
        await expect(resp, 401, UNAUTHORIZED)
        await expect(await api.client.get("/auth/me", headers=api.auth(member)), 404, USER_NOT_FOUND)
        assert await (await connect(api.client, member["token"])).closed_with(UNAUTHORIZED_CLOSE) == [
            {"event": "ERROR", "data": {"message": WS_UNAUTHORIZED}}]


async def test_a_stale_role_claim_is_not_trusted(api: Api):
    """A genuine token carries the role at issue time; the stored role is what counts."""
    candidate = await api.user("candidate")
    admin_claim = sign(claims_for(candidate["_id"], role="admin"))  # signed with the real secret
    await expect(await api.client.get("/admin/analytics", headers=api.auth(admin_claim)), 403)
    me = await expect(await api.client.get("/auth/me", headers=api.auth(admin_claim)), 200)
    assert me["role"] == "candidate"


# --- production refuses weak secrets --------------------------------------------------------


@pytest.mark.parametrize(
    "secret",
    [None, "", "short-secret", "x" * 31, "changeme-changeme-changeme-changeme!",
     "your-secret-key-goes-here-1234567890", "secretsecretsecretsecretsecretsecret", "ab" * 32],
    ids=["missing", "empty", "short", "31-bytes", "changeme", "tutorial", "repeated-word", "low-variety"],
)
def test_production_refuses_a_weak_jwt_secret(tmp_path, mongo_uri, secret):
    env = {"LIVECHAT_ENV": "production", "MONGODB_URI": mongo_uri}
    if secret is not None:
        env["JWT_SECRET"] = secret
    proc = subprocess.run([sys.executable, "-m", "livechat"], cwd=ROOT, env=run_env(tmp_path, **env),
                          capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "JWT_SECRET" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    if secret:
        assert secret not in proc.stderr  # the refusal does not echo the secret it refused


# --- account enumeration ------------------------------------------------------------------------


async def test_unknown_email_and_wrong_password_are_indistinguishable(app_client, mongo_uri):
    """Same status and bytes. Whether they also take the same time (the dummy bcrypt check of an
    unknown email) is a measurement: ``python -m bench`` reports it in its logins scenario."""
    client = await app_client(make_settings(mongo_uri, auth={
        "login_failures_per_account": 1000, "login_failures_per_client": 1000}))
    api = Api(client)
    known = await api.signup()

    async def answer(email: str) -> tuple[int, bytes]:
        resp = await client.post("/auth/login", json={"email": email, "password": "wrong-" + PASSWORD})
        return resp.status, await resp.read()

    answers = set()
    for i in range(12):  # interleaved, as an enumerating client would probe
        answers.add(await answer(known["email"]))
        answers.add(await answer(f"nobody-{i}@example.com"))
    assert answers == {(401, b'{"success":false,"error":"Invalid email or password"}')}
