"""``python -m bench [--quick] [--scenarios chat,capacity,...] [--base URL] [--out FILE]``."""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import shutil
import sys
import tempfile
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

from bench.analytics import analytics
from bench.controlplane import controlplane
from bench.desk import desk
from bench.multiprocess import multiprocess
from bench.procstats import CORES, machine_busy_seconds
from bench.report import evaluate, render
from bench.scenarios import FULL, QUICK, Bench, progress
from bench.servers import BenchError, raise_open_files_limit, require_loopback
from bench.typing_signals import typing_signals

ORDER = ("startup", "chat", "capacity", "typing", "multiprocess", "desk", "analytics", "controlplane", "limits",
         "connections", "logins")
OWN_MODULE = {"multiprocess": multiprocess, "desk": desk, "typing": typing_signals,  # not Bench methods
              "analytics": analytics, "controlplane": controlplane}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark livechat on this machine (loopback only): start it with its embedded database, "
                    "drive it, print one JSON line per scenario and a table with PASS/FAIL per target.")
    parser.add_argument("--base", metavar="URL",
                        help="target an already running livechat on a loopback address instead of starting one "
                             "(start-up, connections, logins and the database limit are then skipped; the server "
                             "must allow staff signups and should lift its per-socket rate limit)")
    parser.add_argument("--scenarios", default=",".join(ORDER),
                        help=f"comma-separated subset of {','.join(ORDER)} (default: all)")
    parser.add_argument("--quick", action="store_true",
                        help="a short development run (~2 minutes): smaller N, shorter steps")
    parser.add_argument("--duration", type=float, help="seconds of the chat scenario (default 30, quick 5)")
    parser.add_argument("--conversations", type=int, help="conversations of the chat scenario (default 100)")
    parser.add_argument("--rate", type=float, help="total messages/s of the chat scenario (default 200)")
    parser.add_argument("--capacity-n", metavar="N,N,...",
                        help="conversation counts of the capacity scenario (default 10,100,1000; quick 10,100)")
    parser.add_argument("--out", metavar="FILE", help="also write the JSON lines to FILE")
    parser.add_argument("--server-env", metavar="KEY=VALUE", action="append", default=[],
                        help="an extra environment variable for every livechat the benchmark starts, e.g. "
                             "LIVECHAT_DATABASE_DRIVER=pymongo (repeatable)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (server logs, data)")
    return parser


async def run(args: argparse.Namespace, scenarios: list[str], workdir: Path, out) -> dict[str, dict]:
    plan = QUICK if args.quick else FULL
    overrides = {"chat_duration": args.duration, "chat_conversations": args.conversations, "chat_rate": args.rate,
            "capacity_ns": tuple(int(n) for n in args.capacity_n.split(",")) if args.capacity_n else None}
    server_env = dict(item.split("=", 1) for item in args.server_env)
    async with Bench(plan, workdir, args.base, overrides, server_env) as bench:
        for name in scenarios:
            started = time.perf_counter()
            try:
                result = await (OWN_MODULE[name](bench) if name in OWN_MODULE else getattr(bench, name)())
            except (TimeoutError, BenchError, OSError) as exc:
                progress(f"{name} failed: {exc}")
                result = {"error": f"{type(exc).__name__}: {exc}"}
            except Exception as exc:  # noqa: BLE001 — a bug in one scenario must not hide the others' figures
                traceback.print_exc()
                result = {"error": f"{type(exc).__name__}: {exc}"}
            bench.results[name] = result
            line = json.dumps({"scenario": name, "seconds": round(time.perf_counter() - started, 1), **result},
                              separators=(",", ":"))
            print(line, flush=True)
            if out:
                out.write(line + "\n")
                out.flush()
        return bench.results


def background_load(seconds: float = 2.0) -> float:
    """Cores busy on this machine before we start anything: other people's work, which every
    figure below shares the CPU with."""
    before, started = machine_busy_seconds(), time.perf_counter()
    time.sleep(seconds)
    return (machine_busy_seconds() - before) / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = set(scenarios) - set(ORDER)
    if unknown:
        print(f"bench: unknown scenario(s) {', '.join(sorted(unknown))}; choose from {', '.join(ORDER)}",
              file=sys.stderr)
        return 2
    scenarios = [s for s in ORDER if s in scenarios]
    if any("=" not in item for item in args.server_env):
        print("bench: --server-env takes KEY=VALUE", file=sys.stderr)
        return 2
    try:
        if args.base:
            args.base = require_loopback(args.base)
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    nofile = raise_open_files_limit()
    workdir = Path(tempfile.mkdtemp(prefix="livechat-bench-"))
    started = time.perf_counter()
    date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    background = background_load()
    progress(f"livechat benchmark: {'quick' if args.quick else 'full'} run, {CORES} cores, open files {nofile}, "
             f"background load {background:.2f} cores, work dir {workdir}")
    out = open(args.out, "w", encoding="utf-8") if args.out else None  # noqa: SIM115
    ok = False
    try:
        results = asyncio.run(run(args, scenarios, workdir, out))
        targets = evaluate(results)
        summary = {"scenario": "targets", "date": date, "cores": CORES, "background_load_cores": round(background, 2),
                   "python": platform.python_version(),
                   "quick": args.quick, "seconds": round(time.perf_counter() - started, 1),
                   "targets": [t.__dict__ for t in targets]}
        line = json.dumps(summary, separators=(",", ":"))
        print(line)
        if out:
            out.write(line + "\n")
        elapsed = time.perf_counter() - started
        header = (f"livechat benchmark — {date} — {CORES} cores, Python {platform.python_version()} — "
                  f"{'quick' if args.quick else 'full'} run in {elapsed // 60:.0f}m{elapsed % 60:02.0f}s — "
                  f"background load before the run {background:.2f} cores"
                  + (f" — target {args.base}" if args.base else ""))
        print("\n" + render(results, targets, header))
        ok = not any(r.get("error") for r in results.values())
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
    finally:
        if out:
            out.close()
        if args.keep or not ok:
            print(f"bench: logs and data kept in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
