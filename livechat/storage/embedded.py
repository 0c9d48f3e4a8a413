"""The embedded development database: SecantusDB run as a separate process.

SecantusDB (GPL-2.0) speaks the MongoDB wire protocol over WiredTiger. It is only ever started as
a child process (``secantusd-py``), never imported, which keeps its licence apart from ours and
gives it its own CPU core. It runs under a small guard process (``guard.py``) tied to us: if
livechat dies in any way (``PR_SET_PDEATHSIG``) the guard stops the database with one SIGTERM and
kills it after a grace period, so a crash or ``kill -9`` leaves no orphan holding the data directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

from livechat.storage.guard import die_with_parent

log = logging.getLogger(__name__)

# How long the guard lets a stopped database checkpoint before killing it: a clean stop takes
# 0.1–2.2 s (measured); SecantusDB has been seen to hang for good instead, and a killed database is
# better than one that holds the data directory for ever.
STOP_GRACE = 8.0


class EmbeddedDatabaseError(RuntimeError):
    """The embedded server could not be started; the message says why and where its log is."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _die_with_parent() -> None:  # runs in the guard between fork and exec
    with contextlib.suppress(Exception):
        die_with_parent()


def resolve_command(command: str) -> str:
    """Find ``secantusd-py`` on PATH or beside the running interpreter (an unactivated venv)."""
    found = shutil.which(command) or shutil.which(command, path=str(Path(sys.executable).parent))
    if not found:
        raise EmbeddedDatabaseError(
            f"cannot start the embedded database: {command!r} not found "
            "(install it with: pip install 'SecantusDB>=0.7.0b3', or set MONGODB_URI)"
        )
    return found


def loopback_uri(host: str, port: int) -> str:
    """The URI livechat uses for an embedded SecantusDB.

    retryWrites=false: SecantusDB keeps a record of every retryable write (up to 10,000 for 30 min)
    and scans them all on each write, so a write grew from ~1 ms to ~20 ms as they piled up
    (measured by `make bench`). livechat does not need the driver's retry: a failed send is
    answered with ERROR and resent by the client with the same clientMessageId.
    """
    return f"mongodb://{host}:{port}/?directConnection=true&retryWrites=false"


class EmbeddedServer:
    """One ``secantusd-py`` process on a free loopback port."""

    def __init__(self, command: str, storage_path: str, log_path: Path | None = None,
                 host: str = "127.0.0.1", port: int | None = None) -> None:
        self.command = resolve_command(command)
        self.storage_path = storage_path
        self.log_path = log_path
        self.host = host
        self.port = port or free_port()
        self.process: subprocess.Popen | None = None

    @property
    def uri(self) -> str:
        return loopback_uri(self.host, self.port)

    def start(self) -> None:
        if self.storage_path != ":memory:":
            Path(self.storage_path).mkdir(parents=True, exist_ok=True)
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "livechat.storage.guard", str(STOP_GRACE),
                 self.command, "--host", self.host, "--port", str(self.port),
                 "--storage-path", self.storage_path, "--log-level", "WARNING"],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,
                # Own process group: a terminal's Ctrl-C reaches livechat, which then stops the
                # database after the last write, instead of both dying at once.
                start_new_session=True,
            )
        finally:
            if out is not subprocess.DEVNULL:
                out.close()

    def database_pid(self) -> int | None:
        """The SecantusDB process itself (``process`` is its guard), e.g. to measure its CPU."""
        if self.process is None:
            return None
        try:
            children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
        except OSError:
            return None
        return int(children[0]) if children else None

    def answers(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=0.2):
                return True
        except OSError:
            return False

    def check_alive(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            raise EmbeddedDatabaseError(
                f"the embedded database exited with code {self.process.returncode} at start-up"
                + (f"; see {self.log_path}" if self.log_path else "")
            )

    def wait_ready(self, timeout: float) -> None:
        """Block until it answers (on an event loop, run it in a thread)."""
        deadline = time.monotonic() + timeout
        while not self.answers():
            self.check_alive()
            if time.monotonic() > deadline:
                self.stop()
                raise EmbeddedDatabaseError(f"the embedded database did not answer within {timeout:.0f}s")
            time.sleep(0.02)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (WiredTiger checkpoints and closes cleanly), SIGKILL if it does not exit."""
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("embedded database did not stop within %.0fs; killing it", timeout)
            proc.kill()
            proc.wait()


@contextlib.asynccontextmanager
async def embedded_database(command: str, data_dir: Path, start_timeout: float) -> AsyncIterator[str]:
    """Run SecantusDB with its data under ``data_dir/secantus``; yield its URI; stop it after."""
    data_dir.mkdir(parents=True, exist_ok=True)
    server = EmbeddedServer(command, str(data_dir / "secantus"), log_path=data_dir / "secantus.log")
    server.start()
    try:
        await asyncio.to_thread(server.wait_ready, start_timeout)  # off the loop: it polls
        log.info("embedded database (SecantusDB, pid %s) on 127.0.0.1:%s, data in %s",
                 server.process.pid if server.process else "?", server.port, data_dir / "secantus")
        yield server.uri
    finally:
        await asyncio.to_thread(server.stop)

