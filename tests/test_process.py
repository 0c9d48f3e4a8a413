"""``python -m livechat`` as a real process: embedded database lifecycle, CLI, start-up failures."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys

import pytest

from livechat.storage.embedded import STOP_GRACE, EmbeddedServer
from tests.processes import ROOT, Server, gone, http, run_env

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_embedded_database_starts_keeps_data_and_stops_with_livechat(tmp_path, sig):
    server = Server(tmp_path)
    try:
        server.wait_ready()
        db_pid = server.database_pid()
        status, _ = http("POST", server.base + "/auth/signup",
                         {"name": "Kept", "email": "kept@example.com", "password": "password123", "role": "admin"})
        assert status == 201
    finally:
        code = server.stop(sig)
    assert code == 0, server.log.read_text()
    assert gone(db_pid), "the embedded database outlived livechat"
    assert (tmp_path / "data" / "secantus").is_dir()
    assert "jwt-secret" in server.log.read_text()  # the development-secret warning names the file
    # Same data directory, new process: the account and the secret are still there.
    again = Server(tmp_path)
    try:
        again.wait_ready()
        status, data = http("POST", again.base + "/auth/login", {"email": "kept@example.com", "password": "password123"})
        assert status == 200 and data["data"]["token"]
    finally:
        again.stop()


def test_a_killed_livechat_leaves_no_orphan_database(tmp_path):
    server = Server(tmp_path)
    server.wait_ready()
    db_pid = server.database_pid()
    server.stop(signal.SIGKILL)
    assert gone(db_pid), "the embedded database outlived a kill -9 of livechat"


def test_a_burst_of_stop_signals_stops_the_embedded_database_within_the_grace_period(tmp_path):
    # SecantusDB's handler can deadlock when a signal lands while it runs, and it has hung on the
    # way out: its guard forwards exactly one SIGTERM and kills it after STOP_GRACE.
    server = EmbeddedServer("secantusd-py", str(tmp_path / "db"))
    server.start()
    server.wait_ready(30)
    database = server.database_pid()
    assert database is not None and database != server.process.pid
    for _ in range(5):
        server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(STOP_GRACE + 10) in (0, 128 + signal.SIGKILL)  # stopped, or killed
    assert gone(database) and not server.answers()


def test_start_up_fails_clearly_without_the_database_command(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "livechat"], cwd=ROOT, capture_output=True, text=True, timeout=30,
                          env=run_env(tmp_path, LIVECHAT_DATABASE_EMBEDDED_COMMAND="no-such-secantusd"))
    assert proc.returncode == 2
    assert "no-such-secantusd" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"LIVECHAT_ENV": "production"}, "MONGODB_URI"),
        ({"LIVECHAT_ENV": "production", "MONGODB_URI": "mongodb://127.0.0.1:1"}, "JWT_SECRET"),
        ({"PORT": "http"}, "PORT"),
        ({"LIVECHAT_SERVER_PROT": "1"}, "LIVECHAT_SERVER_PROT"),
    ],
)
def test_bad_configuration_stops_start_up_with_one_line(tmp_path, env, message):
    proc = subprocess.run([sys.executable, "-m", "livechat"], cwd=ROOT, capture_output=True, text=True, timeout=30,
                          env=run_env(tmp_path, **env))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr


def test_the_log_level_from_the_environment_is_case_blind_and_checked(tmp_path):
    def check_config(level: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "livechat", "check-config"], cwd=ROOT, capture_output=True,
                              text=True, timeout=30, env=run_env(tmp_path, LIVECHAT_LOG_LEVEL=level))

    assert check_config("warning").returncode == 0
    bad = check_config("loud")
    assert bad.returncode == 2 and "LIVECHAT_LOG_LEVEL: invalid choice: 'LOUD'" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_help_lists_commands_and_options():
    out = subprocess.run([sys.executable, "-m", "livechat", "--help"], cwd=ROOT, capture_output=True, text=True,
                         timeout=30).stdout
    for word in ("serve", "create-admin", "check-config", "--config"):
        assert word in out


def test_create_admin_is_idempotent_and_never_prints_the_password(tmp_path):
    password = "Adm1n-pa55word-do-not-log"
    env = run_env(tmp_path, LIVECHAT_ADMIN_PASSWORD=password)
    cmd = [sys.executable, "-m", "livechat", "create-admin", "--email", "Root@Example.com", "--name", "Root"]
    first = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    second = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert first.returncode == 0 and "created" in first.stdout, first.stderr
    assert second.returncode == 0 and "already exists" in second.stdout, second.stderr
    for proc in (first, second):
        assert password not in proc.stdout + proc.stderr
    server = Server(tmp_path, LIVECHAT_ADMIN_PASSWORD=password)
    try:
        server.wait_ready()
        status, data = http("POST", server.base + "/auth/login", {"email": "root@example.com", "password": password})
        assert status == 200
        status, me = http("GET", server.base + "/auth/me", token=data["data"]["token"])
        assert me["data"]["role"] == "admin"
    finally:
        server.stop()
    assert password not in server.log.read_text()


@pytest.mark.parametrize("target", ["preflight", "test"])
def test_make_test_names_a_missing_browser_before_any_test_runs(target):
    """A fresh machine without Chromium: one line saying what to run, before pytest starts (never
    three failing browser tests after two minutes). LIVECHAT_NO_INSTALL keeps root from installing."""
    make = shutil.which("make")
    assert make, "make is part of the README's two commands"
    env = {**os.environ, "LIVECHAT_CHROMIUM": "/nonexistent/chromium", "LIVECHAT_NO_INSTALL": "1"}
    proc = subprocess.run([make, "-s", target, "PYTEST_ARGS=--co -q"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if line.startswith("make test:")]
    assert lines == ["make test: no Chromium at /nonexistent/chromium for the browser tests; run: sudo apt-get "
                     "install chromium (or set LIVECHAT_CHROMIUM=/path/to/chromium)"], proc.stderr
    assert "collected" not in proc.stdout and "test session starts" not in proc.stdout  # pytest never ran
