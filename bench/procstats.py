"""What a process costs, read from /proc: CPU seconds, resident memory, children, whole-machine load.

Linux only. CPU seconds are ``utime + stime`` of the process (all its threads, e.g. bcrypt's);
RSS is ``VmRSS``; the machine's busy time comes from the first line of ``/proc/stat``, so a window
can say how much of the CPU went to processes that are not ours (other work on the machine).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field

CLK_TCK = os.sysconf("SC_CLK_TCK")
CORES = os.cpu_count() or 1


def _stat_fields(pid: int) -> list[str]:
    """Fields of /proc/<pid>/stat after the command name (which may contain spaces or parens)."""
    with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
        text = fh.read()
    return text[text.rindex(")") + 2:].split()


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of ``pid`` so far (``None`` once it is gone)."""
    try:
        fields = _stat_fields(pid)
    except (OSError, ValueError):
        return None
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (stat fields 14, 15)


def _status_kib(pid: int, key: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def rss_bytes(pid: int) -> int | None:
    """Resident set size now."""
    kib = _status_kib(pid, "VmRSS")
    return None if kib is None else kib * 1024


def cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return [part.decode(errors="replace") for part in fh.read().split(b"\0") if part]
    except OSError:
        return []


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (scans /proc; a database started in its own session is still one)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if int(_stat_fields(int(entry))[1]) == pid:
                found.append(int(entry))
        except (OSError, ValueError, IndexError):
            continue
    return sorted(found)


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent not idle since boot (every process on the machine)."""
    with open("/proc/stat", encoding="ascii") as fh:
        values = [int(v) for v in fh.readline().split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    guest = sum(values[8:10]) if len(values) > 9 else 0  # already counted in user/nice
    return (sum(values) - idle - guest) / CLK_TCK


@dataclass
class CpuSnapshot:
    wall: float
    machine: float
    processes: dict[str, float | None]


@dataclass
class Usage:
    """CPU used between two snapshots: seconds per named process, the rest of the machine, wall time."""

    wall: float
    cpu: dict[str, float | None]
    other: float  # busy CPU seconds of processes we do not watch (other work on this machine)

    def cores(self, name: str) -> float | None:
        value = self.cpu.get(name)
        return None if value is None or self.wall <= 0 else value / self.wall

    def as_dict(self) -> dict:
        return {
            "wall_s": round(self.wall, 3),
            "cpu_s": {k: None if v is None else round(v, 3) for k, v in self.cpu.items()},
            "cores": {k: None if v is None else round(v / self.wall, 3) for k, v in self.cpu.items()}
            | {"other": round(self.other / self.wall, 3) if self.wall > 0 else None},
        }


class Watch:
    """Named pids (server, database, generator, …): CPU deltas over a window and peak RSS during it."""

    def __init__(self, pids: Mapping[str, int | None], sample_every: float = 0.25) -> None:
        self.pids = {name: pid for name, pid in pids.items() if pid is not None}
        self.sample_every = sample_every

    def snapshot(self) -> CpuSnapshot:
        return CpuSnapshot(time.perf_counter(), machine_busy_seconds(),
                           {name: cpu_seconds(pid) for name, pid in self.pids.items()})

    @staticmethod
    def usage(start: CpuSnapshot, end: CpuSnapshot) -> Usage:
        cpu = {}
        for name, before in start.processes.items():
            after = end.processes.get(name)
            cpu[name] = None if before is None or after is None else after - before
        ours = sum(v for v in cpu.values() if v is not None)
        return Usage(end.wall - start.wall, cpu, max(0.0, end.machine - start.machine - ours))

    def rss(self) -> dict[str, int | None]:
        return {name: rss_bytes(pid) for name, pid in self.pids.items()}

    @contextlib.asynccontextmanager
    async def sampling(self) -> AsyncIterator[dict[str, int]]:
        """Sample RSS in the background; yields the dict of peaks (bytes), final on exit."""
        peaks: dict[str, int] = {}

        def sample() -> None:
            for name, value in self.rss().items():
                if value is not None and value > peaks.get(name, 0):
                    peaks[name] = value

        async def loop() -> None:
            while True:
                sample()
                await asyncio.sleep(self.sample_every)

        task = asyncio.create_task(loop())
        try:
            yield peaks
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            sample()


@dataclass
class Measured:
    """A window's CPU usage and peak RSS, filled in when the ``measure`` block ends."""

    usage: Usage | None = None
    peak_rss: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict:
        out = self.usage.as_dict() if self.usage else {}
        out["peak_rss_mib"] = {k: round(v / 2**20, 1) for k, v in self.peak_rss.items()}
        return out


@contextlib.asynccontextmanager
async def measure(watch: Watch | None) -> AsyncIterator[Measured]:
    """``async with measure(watch) as m:`` — CPU and peak RSS of the watched processes over the block."""
    result = Measured()
    if watch is None:
        yield result
        return
    start = watch.snapshot()
    async with watch.sampling() as peaks:
        try:
            yield result
        finally:
            result.usage = Watch.usage(start, watch.snapshot())
    result.peak_rss = dict(peaks)


@contextlib.contextmanager
def generator_gc_paused() -> Iterator[None]:
    """Keep the generator's own garbage collector out of a measurement: collect before, pause during.

    A full collection in a generator holding thousands of sockets and send records pauses it for
    ~100 ms or more; every message in flight would then show that pause as server latency.
    """
    gc.collect()
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
