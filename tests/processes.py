"""Real ``python -m livechat`` processes and clients that talk to them: ``Server`` (one process with its
embedded database, for tests/test_process.py, test_durability.py and the security suite) and several
livechat processes on one real SecantusDB with their HTTP and WebSocket clients (tests/test_multiprocess.py)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import aiohttp

from livechat.storage.embedded import EmbeddedServer, free_port
from tests.conftest import PASSWORD, TEST_SECRET
from tests.ws_helpers import Peer

ROOT = Path(__file__).resolve().parent.parent


def run_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("LIVECHAT_") and k not in {"PORT", "MONGODB_URI", "JWT_SECRET", "CORS_ORIGIN"}}
    env.update({"LIVECHAT_DATA_DIR": str(tmp_path / "data"), "LIVECHAT_AUTH_BCRYPT_ROUNDS": "4", **extra})
    return env


def http(method: str, url: str, payload: dict | None = None, token: str | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(url, method=method, data=json.dumps(payload).encode() if payload is not None else None,
                                 headers={"Content-Type": "application/json",
                                          **({"Authorization": f"Bearer {token}"} if token else {})})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


class Server:
    def __init__(self, tmp_path: Path, **env: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = tmp_path / f"server-{self.port}.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "livechat", "serve", "--port", str(self.port)],
                cwd=ROOT, env=run_env(tmp_path, **env), stdout=out, stderr=subprocess.STDOUT,
            )

    def wait_ready(self, timeout: float = 30) -> float:
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                if http("GET", self.base + "/health/ready")[0] == 200:
                    return time.monotonic() - started
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError("not ready in time:\n" + self.log.read_text())

    def database_pid(self) -> int:
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid), "-f", "secantusd"], capture_output=True, text=True)
        pids = [int(p) for p in out.stdout.split()]
        assert len(pids) == 1, (out, self.log.read_text())
        return pids[0]

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(20)


def gone(pid: int, within: float = 10) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        try:  # reap it if it is our zombie grandchild re-parented to us (rare: we are not init)
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        time.sleep(0.05)
    return False


def livechat_env(tmp_path: Path, mongo_uri: str, database: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("LIVECHAT_") and k not in {"PORT", "MONGODB_URI", "JWT_SECRET", "CORS_ORIGIN"}}
    env.update({"MONGODB_URI": mongo_uri, "JWT_SECRET": TEST_SECRET, "LIVECHAT_DATABASE_NAME": database,
                "LIVECHAT_DATA_DIR": str(tmp_path / "data"), "LIVECHAT_AUTH_BCRYPT_ROUNDS": "4",
                "LIVECHAT_DATABASE_TIMEOUT_MS": "2000", **extra})
    return env


class Livechat:
    """``python -m livechat serve`` as a child process."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = log_dir / f"livechat-{self.port}.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "livechat", "serve", "--port", str(self.port)],
                                         cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)

    async def ready(self, session: aiohttp.ClientSession, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                async with session.get(self.base + "/health/ready") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
        raise AssertionError("livechat not ready in time:\n" + self.log.read_text())

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        self.proc.wait(20)


class RestartableDatabase:
    """A SecantusDB with its data on disk, which a test may stop and start again on the same port."""

    def __init__(self, path: Path, *extra_args: str) -> None:
        self.server = EmbeddedServer(os.environ.get("LIVECHAT_TEST_DB_COMMAND", "secantusd-py"), str(path / "db"),
                                     log_path=path / "secantus.log")
        self.extra_args = extra_args
        self.proc: subprocess.Popen | None = None

    @property
    def uri(self) -> str:
        return self.server.uri

    def start(self) -> None:
        if not self.extra_args:
            self.server.start()
        else:  # the same command line plus the test's options (e.g. a tiny oplog)
            self.server.process = subprocess.Popen(
                [self.server.command, "--host", "127.0.0.1", "--port", str(self.server.port),
                 "--storage-path", self.server.storage_path, "--log-level", "WARNING", *self.extra_args],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.server.wait_ready(30)

    def stop(self) -> None:
        self.server.stop()


class Client:
    """The public API of one process, for one test."""

    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session = session
        self.base = base

    async def call(self, method: str, path: str, token: str | None = None, payload: Any = None,
                   status: int = 200) -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with self.session.request(method, self.base + path, json=payload, headers=headers) as resp:
            data = await resp.json()
            assert resp.status == status, (resp.status, data)
            return data.get("data")

    async def user(self, role: str, **extra: Any) -> dict[str, Any]:
        email = f"{role}-{uuid.uuid4().hex[:10]}@example.com"
        user = await self.call("POST", "/auth/signup", payload={
            "name": f"{role.title()} {uuid.uuid4().hex[:4]}", "email": email, "password": PASSWORD,
            "role": role, **extra}, status=201)
        user["token"] = (await self.call("POST", "/auth/login", payload={"email": email, "password": PASSWORD}))["token"]
        return user

    async def socket(self, user: dict[str, Any]) -> Peer:
        """A socket for ``user``; its frames escape non-ASCII as ``aiohttp``'s ``send_json`` does."""
        ws = await self.session.ws_connect(self.base.replace("http", "ws", 1) + "/ws?token=" + user["token"])
        return Peer(ws, user, ascii=True)

    async def history(self, user: dict[str, Any], conv_id: str) -> list[dict[str, Any]]:
        messages, after = [], 0
        while True:
            page = await self.call("GET", f"/conversations/{conv_id}/messages?afterSeq={after}&limit=500",
                                   user["token"])
            messages += page["messages"]
            if page["nextAfterSeq"] is None:
                return messages
            after = page["nextAfterSeq"]
