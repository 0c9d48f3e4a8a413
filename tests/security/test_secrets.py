"""Secrets stay secret: WebSocket tokens never reach a log line, check-config never prints the
JWT secret or the database password, and no response carries a password hash.
(Every test is also audited by the autouse ``audit`` fixture in tests/conftest.py.)"""

from __future__ import annotations

import asyncio
import secrets
import subprocess
import sys

import pytest

from livechat.storage.mongo import redact_uri
from tests.conftest import Api, expect
from tests.contract import UNAUTHORIZED_CLOSE
from tests.processes import ROOT, run_env
from tests.security.helpers import (
    claims_for,
    connect,
    make_team,
    sign,
)


async def test_access_log_never_shows_websocket_tokens(api: Api, caplog):
    team = await make_team(api)
    forged = sign(claims_for(team.candidate["_id"]), key="not-the-server-secret-but-long-enough")
    good = await connect(api.client, team.candidate["token"])
    await good.quiet()
    await good.close()
    await (await connect(api.client, forged)).closed_with(UNAUTHORIZED_CLOSE)
    await (await connect(api.client, "garbage.token.value")).closed_with(UNAUTHORIZED_CLOSE)
    for _ in range(50):  # the access log line is written when the socket's handler returns
        ws_lines = [r.getMessage() for r in caplog.records if r.name == "aiohttp.access" and "/ws" in r.getMessage()]
        if len(ws_lines) == 3:
            break
        await asyncio.sleep(0.05)
    assert len(ws_lines) == 3 and all('"GET /ws" 101' in line for line in ws_lines), ws_lines
    for record in caplog.records:
        text = record.getMessage()
        for secret in (team.candidate["token"], forged, "garbage.token.value", "token="):
            assert secret not in text, (record.name, text)


async def test_no_response_carries_a_password_hash(api: Api):
    team = await make_team(api)
    admin = await api.user("admin")
    for user, paths in ((team.candidate, ["/auth/me", "/supervisors", f"/conversations/{team.conv_id}"]),
                        (team.supervisor, ["/auth/me", "/agents", "/conversations"]),
                        (admin, ["/agents", "/admin/analytics", "/supervisors"])):
        for path in paths:
            resp = await api.client.get(path, headers=api.auth(user))
            await expect(resp, 200)
            text = await resp.text()
            assert "passwordHash" not in text and "password" not in text and "$2b$" not in text, (path, text[:300])
    resp = await api.client.post("/auth/login", json={"email": team.agent["email"], "password": team.agent["password"]})
    login = await expect(resp, 200)
    assert set(login["user"]) == {"_id", "name", "email", "role", "supervisorId"}


@pytest.mark.parametrize("profile", ["development", "production"])
def test_check_config_never_prints_secrets(tmp_path, profile):
    jwt_secret = secrets.token_urlsafe(48)
    db_password = "Db-" + secrets.token_hex(12)
    env = run_env(tmp_path, LIVECHAT_ENV=profile, JWT_SECRET=jwt_secret,
                  MONGODB_URI=f"mongodb://livechat:{db_password}@db.internal:27017/livechat?authSource=admin")
    proc = subprocess.run([sys.executable, "-m", "livechat", "--log-level", "DEBUG", "check-config"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 0, proc.stderr
    assert profile.upper() in proc.stdout and "jwt_expires_in" in proc.stdout, proc.stdout  # it did print the settings
    output = proc.stdout + proc.stderr
    assert jwt_secret not in output and db_password not in output, output


@pytest.mark.parametrize(
    "uri",
    ["mongodb://app:{pw}@db.internal:27017/livechat",
     "mongodb://app:{pw}@db1:27017,db2:27017,db3:27017/?replicaSet=rs0&authSource=admin",
     "mongodb+srv://app:{pw}@cluster0.example.mongodb.net/?retryWrites=true",
     "mongodb://app%40corp:{pw}@db.internal/"],
)
def test_the_logged_database_uri_hides_the_password(uri):
    password = "p%3Aa%40ss-" + secrets.token_hex(8)  # percent-encoded ':' and '@', as drivers require
    redacted = redact_uri(uri.format(pw=password))
    assert password not in redacted and secrets.compare_digest(redacted, uri.format(pw="***")), redacted


def test_the_development_secret_is_private_and_never_printed(tmp_path, mongo_uri):
    """Without JWT_SECRET, development generates one into the data directory: owner-only, unprinted."""
    env = run_env(tmp_path, MONGODB_URI=mongo_uri, LIVECHAT_DATABASE_NAME=f"sec_{secrets.token_hex(6)}",
                  LIVECHAT_ADMIN_PASSWORD="Adm1n-" + secrets.token_hex(8))
    proc = subprocess.run([sys.executable, "-m", "livechat", "create-admin", "--email", "root@example.com"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    secret_file = tmp_path / "data" / "jwt-secret"
    generated = secret_file.read_text().strip()
    assert len(generated) >= 32 and secret_file.stat().st_mode & 0o777 == 0o600
    assert "jwt-secret" in proc.stderr  # the warning names the file…
    for secret in (generated, env["LIVECHAT_ADMIN_PASSWORD"]):  # …never its content, nor the password
        assert secret not in proc.stdout + proc.stderr
