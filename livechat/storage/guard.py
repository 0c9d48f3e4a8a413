"""The embedded database's guard: ``python -m livechat.storage.guard GRACE COMMAND...``.

livechat starts SecantusDB through this small process rather than directly, for two reasons:

* SecantusDB's SIGTERM handler deadlocks when a second stop signal arrives while it runs (it takes
  a ``threading.Event``'s lock inside the handler; seen with py-spy after a ``kill -9`` of livechat,
  about one stop in five). The guard turns any number of stop signals into exactly one SIGTERM.
* A database that still has not exited ``GRACE`` seconds after that SIGTERM is killed, so nothing
  outlives livechat holding the data directory.

The guard is tied to livechat (``PR_SET_PDEATHSIG``, set by whoever starts it) and ties the database
to itself the same way, so a ``kill -9`` of livechat or of the guard still stops the database.
"""

from __future__ import annotations

import ctypes
import signal
import subprocess
import sys

_PR_SET_PDEATHSIG = 1
STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """Ask the kernel to send ``sig`` when our parent exits (call it between fork and exec)."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, int(sig))


def _database_setup() -> None:  # in the database process, between fork and exec
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS | {signal.SIGCHLD})
    die_with_parent()


def run(grace: float, command: list[str]) -> int:
    # Blocked before the database exists: a stop signal waits for sigwait instead of killing the
    # guard, and SIGCHLD (ignored by default) is kept pending so the database's exit wakes us.
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS | {signal.SIGCHLD})
    database = subprocess.Popen(command, stdin=subprocess.DEVNULL, preexec_fn=_database_setup)
    while database.poll() is None:
        if signal.sigwait(STOP_SIGNALS | {signal.SIGCHLD}) in STOP_SIGNALS:
            database.terminate()
            try:
                return database.wait(grace)
            except subprocess.TimeoutExpired:
                database.kill()
                return database.wait()
    return database.returncode


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print("usage: python -m livechat.storage.guard GRACE_SECONDS COMMAND [ARG...]", file=sys.stderr)
        return 2
    code = run(float(argv[0]), argv[1:])
    return code if code >= 0 else 128 - code  # killed by signal N: the shell's 128 + N


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
