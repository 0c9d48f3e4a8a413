"""The processes under test: livechat (with its embedded SecantusDB) and the minimal broadcast server.

Every server is a child of the generator, bound to 127.0.0.1, with its own temporary data
directory and log file; it inherits the generator's raised open-files limit. ``--base`` targets are
checked to be loopback addresses: the benchmark never sends a byte off this machine.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp

from bench import procstats

ROOT = Path(__file__).resolve().parent.parent
# Variables a developer's shell may carry that would change the server under test.
_SCRUBBED = {"PORT", "MONGODB_URI", "JWT_SECRET", "JWT_EXPIRES_IN", "CORS_ORIGIN"}


class BenchError(RuntimeError):
    """A setup step failed; the message says which and why."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def require_loopback(url: str) -> str:
    """Refuse any target that is not this machine's loopback interface."""
    host = urlsplit(url).hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback or urlsplit(url).scheme not in ("http", "https"):
        raise BenchError(f"--base must be an http URL on a loopback address (127.0.0.1, ::1, localhost), got {url!r}")
    return url.rstrip("/")


def raise_open_files_limit() -> int:
    """Soft RLIMIT_NOFILE up to the hard limit (children started afterwards inherit it)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = max(soft, 1 << 20)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class ServerProcess:
    """One HTTP server child process on 127.0.0.1:<port>."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], workdir: Path, port: int,
                 ready_path: str) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self.ready_path = ready_path
        self.log_path = workdir / f"{name}-{port}.log"
        self.proc: subprocess.Popen | None = None
        self.spawned_at = 0.0

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self) -> None:
        with self.log_path.open("wb") as out:
            self.spawned_at = time.perf_counter()
            self.proc = subprocess.Popen(self.argv, cwd=ROOT, env=self.env, stdin=subprocess.DEVNULL,
                                         stdout=out, stderr=subprocess.STDOUT)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    async def wait_ready(self, timeout: float = 60.0) -> float:
        """Poll ``ready_path`` until it answers 200; seconds since the spawn."""
        deadline = self.spawned_at + timeout
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
            while True:
                if self.proc is None or self.proc.poll() is not None:
                    raise BenchError(f"{self.name} exited during start-up:\n{self.log_tail()}")
                try:
                    async with session.get(self.base + self.ready_path) as resp:
                        if resp.status == 200:
                            return time.perf_counter() - self.spawned_at
                except (TimeoutError, aiohttp.ClientError):
                    pass
                if time.perf_counter() > deadline:
                    raise BenchError(f"{self.name} not ready within {timeout:.0f}s:\n{self.log_tail()}")
                await asyncio.sleep(0.01)

    def database_pid(self) -> int | None:
        """The embedded SecantusDB: the process whose command line names secantusd among this
        process's children, or theirs (livechat runs it under a guard process)."""
        if self.pid is None:
            return None
        for child in procstats.children(self.pid):
            if any("secantusd" in part for part in procstats.cmdline(child)):
                return next((c for c in procstats.children(child)
                             if any("secantusd" in part for part in procstats.cmdline(c))), child)
        return None

    def database_port(self) -> int | None:
        pid = self.database_pid()
        args = procstats.cmdline(pid) if pid else []
        return int(args[args.index("--port") + 1]) if "--port" in args else None

    def embedded_database_port(self, scenario: str) -> int:
        """The port of its embedded database, for a scenario that writes into it directly."""
        port = self.database_port()
        if not port:
            raise BenchError(f"the {scenario} scenario needs livechat's embedded database")
        return port

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM (graceful: sockets closed, database stopped), SIGKILL if it hangs."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return proc.returncode


def livechat_env(data_dir: Path, **overrides: str) -> dict[str, str]:
    """The developer's environment without livechat settings, plus the benchmark's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVECHAT_") and k not in _SCRUBBED}
    env.update({"LIVECHAT_DATA_DIR": str(data_dir), "LIVECHAT_AUTH_BCRYPT_ROUNDS": "4"})
    env.update(overrides)
    return env


def livechat_server(workdir: Path, name: str = "livechat", **env: str) -> ServerProcess:
    """``python -m livechat --log-level WARNING serve --port P`` with a fresh data directory.

    The log level is passed as an option: access-log lines would otherwise cost the server CPU
    that the figures would then include. (``LIVECHAT_LOG_LEVEL`` is refused by the configuration
    loader as an unknown setting — see the benchmark notes.)
    """
    port = free_port()
    data_dir = workdir / f"{name}-{port}-data"
    argv = [sys.executable, "-m", "livechat", "--log-level", "WARNING", "serve", "--port", str(port)]
    return ServerProcess(name, argv, livechat_env(data_dir, **env), workdir, port, "/health/ready")


def minimal_server(workdir: Path) -> ServerProcess:
    port = free_port()
    argv = [sys.executable, "-m", "bench.minimal_server", "--port", str(port)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVECHAT_")}
    return ServerProcess("minimal", argv, env, workdir, port, "/health")
