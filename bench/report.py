"""Targets (PASS/FAIL, every ratio from figures of the same run) and the readable table."""

from __future__ import annotations

from dataclasses import dataclass

INTEGRITY_KEYS = ("lost", "unacked", "duplicated", "out_of_order", "seq_gaps", "misrouted", "seq_mismatch")


@dataclass
class Target:
    name: str
    status: str  # PASS, FAIL or n/a
    measured: str


def _fmt(value: float | None, unit: str = "", digits: int = 1) -> str:
    if value is None:
        return "–"
    return f"{value:,.{digits}f}{unit}"


def _lat(lat: dict | None) -> str:
    if not lat or lat.get("p50") is None:
        return "–"
    return f"{lat['p50']}/{lat['p95']}/{lat['p99']}/{lat['max']} ms"


def _knees(results: dict, key: str) -> dict[int, dict]:
    section = results.get(key) or {}
    if key == "minimal":
        section = (results.get("limits") or {}).get("minimal") or {}
    return {r["conversations"]: r for r in section.get("results") or []}


def evaluate(results: dict) -> list[Target]:
    """Every target, in the order the table shows them; one function each."""
    return [target for check in TARGETS for target in check(results)]


def _integrity_target(results: dict) -> list[Target]:
    """At every point the livechat server was driven."""
    name = "0 lost / duplicated / out-of-order messages at every point"
    fleets = []
    if results.get("chat", {}).get("integrity"):
        fleets.append(results["chat"]["integrity"])
    fleets += [r["integrity"] for r in _knees(results, "capacity").values() if r.get("integrity")]
    if not fleets:
        return [Target(name, "n/a", "not run")]
    sums = {k: sum(f.get(k, 0) for f in fleets) for k in (*INTEGRITY_KEYS, "sent", "late", "refused")}
    ok = all(sums[k] == 0 for k in INTEGRITY_KEYS)
    return [Target(name, "PASS" if ok else "FAIL",
                   f"lost {sums['lost']} (unacked {sums['unacked']}), duplicated {sums['duplicated']}, out-of-order "
                   f"{sums['out_of_order']}, seq gaps {sums['seq_gaps']} over {sums['sent']:,} sends "
                   f"({len(fleets)} runs; refused {sums['refused']}, late {sums['late']})")]


def _capacity_target(results: dict) -> list[Target]:
    """Durable capacity at 1,000 conversations against the physical limits."""
    cap, minimal = _knees(results, "capacity"), _knees(results, "minimal")
    # The database's best batched insert rate (whatever batch size), not its rate at livechat's
    # own batch size, which moves with the design.
    batches = ((results.get("limits") or {}).get("database") or {}).get("batches") or []
    db = max((row["docs_per_s"] for row in batches), default=None)
    name = "durable capacity at N=1,000 ≥ 50% of min(best batched database inserts, minimal broadcast)"
    if not (cap and minimal and db):
        return [Target(name, "n/a", "needs capacity and limits")]
    n = 1000 if 1000 in cap else max(cap)
    m = minimal.get(n) or minimal[max(minimal)]
    limit = min(db, m["knee_rate"] or 0)
    knee = cap[n]["knee_rate"] or 0
    note = "" if n == 1000 else f" [quick run: N={n}]"
    return [Target(name, "PASS" if limit and knee >= 0.5 * limit else "FAIL",
                   f"{knee:,.0f} msgs/s vs 50% × min({db:,.0f} docs/s, {m['knee_rate'] or 0:,.0f} msgs/s "
                   f"at N={m['conversations']}) = {0.5 * limit:,.0f} → {knee / limit:.0%} of the limit{note}"
                   if limit else "limit unknown")]


def _quarter_knee_target(results: dict) -> list[Target]:
    name = "p99 ≤ 10 ms at a quarter of the knee rate"
    quarters = {n: r["quarter_knee"] for n, r in _knees(results, "capacity").items() if r.get("quarter_knee")}
    if not quarters:
        return [Target(name, "n/a", "needs capacity")]
    ok = all((q["latency_ms"]["p99"] or 1e9) <= 10 for q in quarters.values())
    return [Target(name, "PASS" if ok else "FAIL", ", ".join(
        f"N={n}: {q['latency_ms']['p99']} ms at {q['rate']:,.0f}/s" for n, q in quarters.items()))]


def _idle_socket_target(results: dict) -> list[Target]:
    conn = results.get("connections") or {}
    name = "≤ 40 KiB RSS per idle authenticated socket at 5,000 sockets"
    if conn.get("rss_per_socket_kib") is None:
        return [Target(name, "n/a", conn.get("skipped", "not run"))]
    note = "" if conn["sockets"] >= 5000 else f" [quick run: {conn['sockets']} sockets]"
    return [Target(name, "PASS" if conn["rss_per_socket_kib"] <= 40 else "FAIL",
                   f"{conn['rss_per_socket_kib']} KiB/socket ({conn['opened']} open, "
                   f"{conn['alive_at_end']} alive after {conn['idle_s']:g} s){note}")]


def _login_targets(results: dict) -> list[Target]:
    logins = results.get("logins") or {}
    live, throughput = ("/health/live p99 ≤ 50 ms during the login storm",
                        "login throughput ≥ 80% of cores ÷ one bcrypt hash time")
    if logins.get("logins_per_s") is None:
        return [Target(name, "n/a", logins.get("skipped", "not run")) for name in (live, throughput)]
    p99 = logins["health_live_ms"]["p99"]
    return [Target(live, "PASS" if p99 is not None and p99 <= 50 else "FAIL",
                   f"p99 {p99} ms, max {logins['health_live_ms']['max']} ms ({logins['health_samples']} polls)"),
            Target(throughput, "PASS" if logins["ratio"] >= 0.8 else "FAIL",
                   f"{logins['logins_per_s']} logins/s vs {logins['cores']} ÷ {logins['hash_ms']} ms = "
                   f"{logins['theoretical_logins_per_s']}/s → {logins['ratio']:.0%} "
                   f"({logins['ok']}/{logins['logins']} ok)")]


def _startup_target(results: dict) -> list[Target]:
    start = results.get("startup") or {}
    if start.get("median_s") is None:
        return [Target("start-up ≤ 3 s", "n/a", start.get("skipped", "not run"))]
    return [Target("start-up (spawn → /health/ready 200, embedded database included) ≤ 3 s",
                   "PASS" if start["median_s"] <= 3 else "FAIL",
                   f"median {start['median_s']} s, max {start['max_s']} s over {len(start['runs'])} runs")]


ENUMERATION_TARGET = "login time of an unknown email within 0.5–2× a known one's (wrong password)"


def _enumeration_target(results: dict) -> Target:
    enumeration = (results.get("logins") or {}).get("enumeration")
    if not enumeration:
        return Target(ENUMERATION_TARGET, "n/a", (results.get("logins") or {}).get("skipped", "not run"))
    ok = enumeration["statuses"] == [401] and 0.5 <= enumeration["ratio"] <= 2.0
    return Target(ENUMERATION_TARGET, "PASS" if ok else "FAIL",
                  f"{enumeration['ratio']:.2f}: median {enumeration['unknown_median_ms']} vs "
                  f"{enumeration['known_median_ms']} ms over {enumeration['pairs']} pairs, "
                  f"statuses {enumeration['statuses']}")


def _multiprocess_rows(results: dict) -> list[tuple[str, str, str, str]]:
    rows = []
    for r in (results.get("multiprocess") or {}).get("results", []):
        cpu = " ".join(f"{k} {v:.1f}s" for k, v in (r.get("cpu_s") or {}).items() if v is not None)
        rows += [(f"{r['processes']} process(es)" if not rows else f"{r['processes']} process(es)",
                  f"N={r['conversations']}, {r['rate']:g} msgs/s: latency p50/p95/p99/max",
                  f"{_lat(r['latency_ms'])}; lost {r['lost']} dup {r['duplicated']} ooo {r['out_of_order']}", cpu),
                 ("", "capacity knee", f"{_fmt(r['knee_rate'], ' msgs/s', 0)}", r["knee_bound"])]
    return rows


def _multiprocess_target(results: dict) -> Target | None:
    runs = {r["processes"]: r for r in (results.get("multiprocess") or {}).get("results", [])}
    crossed = [r for k, r in runs.items() if k > 1]
    if not crossed:
        return None
    worst = max(r["latency_ms"]["p99"] or float("inf") for r in crossed)
    clean = all(r["integrity"][k] == 0 for r in crossed for k in ("lost", "duplicated", "out_of_order"))
    return Target("cross-process delivery p99 ≤ 25 ms at 200 msgs/s over 100 conversations, 0 lost/dup/ooo",
                  "PASS" if worst <= 25 and clean else "FAIL",
                  f"p99 {worst:.1f} ms ({', '.join(f'{k} processes' for k in sorted(runs) if k > 1)}); "
                  f"{'clean' if clean else 'integrity errors'}")


DESK_WINDOWS = (("alone", "chat alone"), ("desk", "with the desk online"), ("alone_again", "chat alone again"))
TYPING_WINDOWS = (("alone", "chat alone"), ("typing", "while everyone types"), ("alone_again", "chat alone again"))


def _window_rows(d: dict, windows: tuple[tuple[str, str], ...]) -> list[tuple[str, str, str, str]]:
    rows = []
    for key, label in windows:
        w = d["windows"][key]
        cpu = " ".join(f"{k} {v:.1f}s" for k, v in (w.get("cpu_s") or {}).items() if v is not None)
        rows.append(("", f"{label}: latency p50/p95/p99/max", f"{_lat(w['latency_ms'])}; lost {w['lost']}", cpu))
    return rows


def _desk_rows(results: dict) -> list[tuple[str, str, str, str]]:
    d = results.get("desk")
    if not d or "windows" not in d:
        return []
    return [("desk", f"N={d['conversations']}, {d['rate']:g} msgs/s; {d['agents_online']:,} agents online in "
                     f"{d['teams']} teams, {d['toggles']:,} presence changes",
             ", ".join(f"{k} {v:,}" for k, v in sorted(d["desk_frames"].items())), "")] + _window_rows(d, DESK_WINDOWS)


def _typing_rows(results: dict) -> list[tuple[str, str, str, str]]:
    d = results.get("typing")
    if not d or "windows" not in d:
        return []
    return [("typing", f"N={d['conversations']:,}, {d['rate']:g} msgs/s; every socket sends TYPING every 2.05 s",
             f"{d['typing_sent']:,} TYPING sent, {d['typing_forwarded']:,} forwarded "
             f"({d['typing_forwarded_per_conversation_s']:g}/s per conversation)", ""),
            *_window_rows(d, TYPING_WINDOWS)]


def _busy_window_target(d: dict, busy: str, what: str) -> Target:
    """Chat p99 in the ``busy`` window against the mean of the windows before and after it: ≤ +10%."""
    p99 = {key: d["windows"][key]["latency_ms"]["p99"] for key in ("alone", busy, "alone_again")}
    if None in p99.values():
        return Target(f"{what} moves chat p99 by ≤ 10%", "FAIL", f"no p99: {p99}")
    alone = (p99["alone"] + p99["alone_again"]) / 2
    change = (p99[busy] - alone) / alone * 100
    clean = all(d["integrity"][k] == 0 for k in ("lost", "duplicated", "out_of_order"))
    return Target(f"{what} moves chat p99 by ≤ 10%", "PASS" if change <= 10 and clean else "FAIL",
                  f"p99 {p99[busy]:.1f} ms vs {alone:.1f} ms without (mean of {p99['alone']:.1f} "
                  f"and {p99['alone_again']:.1f}): {change:+.0f}%; {'clean' if clean else 'integrity errors'}")


def _desk_target(results: dict) -> Target | None:
    d = results.get("desk")
    if not d or "windows" not in d:
        return None
    return _busy_window_target(d, "desk", f"the desk online ({d['agents_online']:,} agents)")


def _typing_target(results: dict) -> Target | None:
    d = results.get("typing")
    if not d or "windows" not in d:
        return None
    return _busy_window_target(d, "typing", f"typing at ~1/s per conversation (N={d['conversations']:,})")


def _controlplane_rows(results: dict) -> list[tuple[str, str, str, str]]:
    d = results.get("controlplane")
    if not d or "sizes" not in d:
        return []
    rows = []
    for size, row in d["sizes"].items():
        rows.append(("controlplane" if not rows else "", f"{int(size):,} conversations: assign / JOIN p50/p99",
                     f"{row['assign_ms']['p50']}/{row['assign_ms']['p99']} ms / "
                     f"{row['join_ms']['p50']}/{row['join_ms']['p99']} ms", ""))
    return rows


def _controlplane_target(results: dict) -> Target | None:
    d = results.get("controlplane")
    if not d or "growth" not in d:
        return None
    growth = d["growth"]
    sizes = list(d["sizes"])
    return Target(f"assign and JOIN cost the same at {int(sizes[0]):,} and {int(sizes[-1]):,} conversations "
                  "(p50 ≤ 1.5×)", "PASS" if max(growth.values()) <= 1.5 else "FAIL",
                  f"assign ×{growth['assign_ms']}, JOIN ×{growth['join_ms']}")


def _analytics_rows(results: dict) -> list[tuple[str, str, str, str]]:
    d = results.get("analytics")
    if not d or "sizes" not in d:
        return []
    rows = []
    for size, row in d["sizes"].items():
        figures = {k: v for k, v in row.items() if isinstance(v, dict)}
        rows.append(("analytics" if not rows else "", f"{int(size):,} conversations: summary p50/p99",
                     ", ".join(f"{k} {v['p50_ms']}/{v['p99_ms']} ms" for k, v in figures.items()),
                     f"first summary after start {row['first_summary_s']} s; RSS {row['server_rss_mb']} MiB"))
    return rows


def _analytics_target(results: dict) -> Target | None:
    d = results.get("analytics")
    if not d or "pass" not in d:
        return None
    return Target(f"analytics summary {d['target']}", "PASS" if d["pass"] else "FAIL",
                  f"worst p99 {d['worst_p99_ms_at_100k']} ms, growth ×{d['p99_growth_10k_to_100k']}")


def _metrics_target(results: dict) -> Target | None:
    chat = results.get("chat") or {}
    metrics, server = chat.get("metrics_us_per_message"), chat.get("server_us_per_message")
    if metrics is None or not server:
        return None
    share = metrics / server
    return Target("metrics ≤ 1% of the server's CPU per message", "PASS" if share <= 0.01 else "FAIL",
                  f"{metrics:.2f} µs of {server:.0f} µs per stored-and-delivered message ({share:.2%})")


def _optional(check):
    return lambda results: [t for t in (check(results),) if t is not None]


TARGETS = (_optional(_multiprocess_target), _optional(_desk_target), _optional(_typing_target), _integrity_target,
           _capacity_target, _quarter_knee_target, _idle_socket_target, _login_targets, _optional(_enumeration_target),
           _startup_target, _optional(_metrics_target), _optional(_controlplane_target),
           _optional(_analytics_target))


def _rows(results: dict) -> list[tuple[str, str, str, str]]:
    rows: list[tuple[str, str, str, str]] = _multiprocess_rows(results) + _desk_rows(results) + _typing_rows(results)
    rows += _controlplane_rows(results) + _analytics_rows(results)
    chat = results.get("chat")
    if chat and "sent" in chat:
        rows += [
            ("chat", f"N={chat['conversations']}, {chat['rate']:g} msgs/s, {chat['duration_s']:g} s",
             (f"sent {chat['sent']:,} delivered {chat['delivered']:,} lost {chat['lost']} dup {chat['duplicated']} "
              f"ooo {chat['out_of_order']}"), ""),
            ("", "latency p50/p95/p99/max", _lat(chat["latency_ms"]), ""),
            ("", "ack latency p50/p95/p99/max", _lat(chat["ack_latency_ms"]), ""),
            ("", "server CPU / peak RSS",
             f"{_fmt(chat['server_cpu_s'], ' s', 2)} / {_fmt(chat['server_peak_rss_mib'], ' MiB')}", chat["bound"]),
            ("", "database CPU / peak RSS",
             f"{_fmt(chat['database_cpu_s'], ' s', 2)} / {_fmt(chat['database_peak_rss_mib'], ' MiB')}", ""),
            ("", "generator CPU", _fmt(chat["generator_cpu_s"], " s", 2), ""),
        ]
        if chat.get("server_us_per_message") is not None:
            rows.append(("", "server CPU / metrics per message",
                         f"{chat['server_us_per_message']:.0f} µs / {chat['metrics_us_per_message']:.2f} µs", ""))
    for key, label in (("capacity", "capacity"), ("minimal", "limit: minimal")):
        for n, r in _knees(results, key).items():
            q = r.get("quarter_knee") or {}
            batch = r.get("db_insert_batch_avg_at_knee")
            writes = r.get("db_writes_before")
            knee = (f"{r['knee_rate']:,.0f} msgs/s; ¼ knee p99 {q['latency_ms']['p99']} ms" if r["knee_rate"]
                    else f"none (even {r['first_bad_rate']:,.0f}/s failed)")
            rows.append((label, f"N={n:,} knee (p99 ≤ 50 ms, all delivered)",
                         knee + (f"; db batch {batch}" if batch else "")
                         + (f"; db writes before {writes:,}" if writes else ""),
                         f"at {_fmt(r['first_bad_rate'], '/s', 0)}: {r['first_bad_reason']} — {r['bound']}"))
    db = (results.get("limits") or {}).get("database") or {}
    for row in db.get("batches") or []:
        variant = row.get("variant", "as livechat connects")
        ref = " (reference)" if row["batch"] == db.get("reference_batch") and variant == "as livechat connects" else ""
        rows.append(("limit: database", f"insert_many batch {row['batch']}, {variant}{ref}",
                     f"{row['docs_per_s']:,.0f} docs/s (batch p50 {row['batch_ms_p50']} ms)", row["bound"]))
    conn = results.get("connections") or {}
    if "rss_per_socket_kib" in conn:
        rows += [
            ("connections", f"{conn['opened']:,} idle sockets ({conn['users']} users)",
             (f"{conn['rss_per_socket_kib']} KiB/socket (RSS {conn['server_rss_before_mib']} → "
              f"{conn['server_rss_after_mib']} MiB)"), f"opened in {conn['open_s']} s"),
            ("", f"heartbeats every {conn['heartbeat_s']:g} s, {conn['idle_s']:g} s idle",
             f"{conn['server_idle_cores_with_sockets']:.3f} core; {conn['server_cpu_us_per_heartbeat']} µs/heartbeat",
             f"alive at end {conn['alive_at_end']:,}"),
            ("", "SIGTERM → exit with the sockets open", f"{conn['shutdown_s']} s",
             f"{conn['closed_1001']:,} sockets got 1001"),
        ]
    logins = results.get("logins") or {}
    if "logins_per_s" in logins:
        rows += [
            ("logins", f"{logins['logins']} concurrent at cost {logins['bcrypt_cost']}",
             (f"{logins['logins_per_s']}/s of {logins['theoretical_logins_per_s']}/s theoretical "
              f"({logins['ratio']:.0%})"), logins["bound"]),
            ("", "/health/live during the storm", _lat(logins["health_live_ms"]),
             f"{logins['health_samples']} polls"),
        ]
        enumeration = logins.get("enumeration")
        if enumeration:
            rows.append(("", "wrong-password login, unknown ÷ known email",
                         f"{enumeration['ratio']:.2f} ({enumeration['unknown_median_ms']} vs "
                         f"{enumeration['known_median_ms']} ms median)", f"{enumeration['pairs']} pairs"))
    start = results.get("startup") or {}
    if "median_s" in start:
        rss = start["runs"][0]
        rows.append(("start-up", "spawn → /health/ready 200",
                     f"median {start['median_s']} s, max {start['max_s']} s",
                     f"idle RSS: server {rss['server_rss_mib']} MiB, database {rss['database_rss_mib']} MiB"))
    for name, result in results.items():
        if result.get("error"):
            rows.append((name, "ERROR", result["error"], ""))
        elif result.get("skipped"):
            rows.append((name, "skipped", result["skipped"], ""))
    return rows


def render(results: dict, targets: list[Target], header: str) -> str:
    rows = _rows(results)
    widths = [max([len(r[i]) for r in rows] + [len(h)]) for i, h in enumerate(("scenario", "figure", "value"))]
    lines = [header, ""]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths) + "  {}"
    lines.append(fmt.format("scenario", "figure", "value", "bound"))
    lines.append(fmt.format(*("-" * w for w in widths), "-----"))
    lines += [fmt.format(*row) for row in rows]
    lines += ["", "targets"]
    width = max(len(t.name) for t in targets)
    lines += [f"  {t.status:<4}  {t.name:<{width}}  {t.measured}" for t in targets]
    return "\n".join(lines)
