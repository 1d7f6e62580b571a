"""Run scenarios against servers, print a table per scenario, write results JSON.

One run of one scenario on one server: start a fresh server (own ports, own temp dir),
then either ``measure.measure_flow`` (rate scenarios: receivers, senders, one clock, the
server's CPU from /proc/PID/stat over the window) or the scenario's own phased runner
(``scale``), then stop the workers and the server. Any failure is recorded for that
(scenario, server) and the suite goes on; every process is killed by PID in ``finally``
blocks and again by ``atexit`` hooks. ``--report`` / ``--from-json`` hand the results to
``report``, which writes BENCHMARKS.md and the chart.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import sys
import time
from pathlib import Path
from typing import Any

from . import cluster, cluster_sessions, selfcheck, servers
from .fleet import FLEET_GROUP
from .measure import measure_flow
from .procstat import system_busy
from .report import error_summary
from .scale import idle_count
from .scenarios import SCENARIOS, Options, Scenario
from .workers import WorkerError

DEFAULT_SERVERS = ["hybridbus", "nats-server", "mosquitto", "amqtt"]
RESULTS_DIR = Path(__file__).resolve().parents[1] / "results"
OTHER_CPU_WARN = 0.25  # cores used by unrelated processes that make a run suspect


def run_one(scn: Scenario, server_name: str, opts: Options) -> dict[str, Any]:
    """One scenario on one fresh server; the server is stopped whatever happens."""
    if scn.runner is not None:
        return scn.runner(scn, server_name, opts)
    assert scn.build is not None
    srv = servers.start(server_name, scn.mode, persistent=scn.persistent)
    try:
        return measure_flow(srv, scn.metric, scn.build(srv, opts), opts.warmup, opts.duration)
    finally:
        srv.stop()


def scenario_title(scn: Scenario, opts: Options) -> str:
    fmt = dict(vars(opts))
    # The idle scenario opens fewer connections than asked when the fd limit says so.
    fmt["idle_conns"] = idle_count(opts.idle_conns)[0]
    fmt["fanout_subs"] = min(opts.fanout_subs, servers.fd_limit() - 100)
    title = scn.title.format(**fmt)
    if scn.metric in (
        "throughput",
        "latency",
        "subscriptions",
        "replay",
        "commands",
        "fanout",
        "js_publish",
        "js_pull",
        "kv",
        "cluster",
    ):
        title += f", {opts.payload} B payload"
    return title


def wait_quiet(max_wait: float, threshold: float = 0.25) -> float:
    """Wait up to ``max_wait`` s until the machine's busy CPU over 0.5 s is below
    ``threshold`` cores; return the last busy figure."""
    deadline = time.monotonic() + max_wait
    while True:
        b0, c0 = system_busy(), time.monotonic()
        time.sleep(0.5)
        busy = (system_busy() - b0) / (time.monotonic() - c0)
        if busy < threshold or time.monotonic() >= deadline:
            return busy


# ---------------------------------------------------------------- output


def _fmt_rate(x: float | None) -> str:
    return "-" if x is None else f"{x:,.0f}"


def _fmt_pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.0f}%"


def _fmt_num(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def ratios(results: dict[str, dict[str, Any]], key: str = "rate") -> dict[str, float | None]:
    """hybridbus / peer on ``key`` (msgs/s, round trips/s, connections/s, bytes ...)."""
    hb = results.get("hybridbus", {})
    out: dict[str, float | None] = {}
    for name, r in results.items():
        if name == "hybridbus":
            continue
        a, b = hb.get(key), r.get(key)
        out[name] = a / b if a and b else None
    return out


_ratios = ratios  # the name the first version of the harness used


def _rtxt(name: str, ratio: float | None) -> str:
    return "-" if name == "hybridbus" else ("n/a" if ratio is None else f"{ratio:.2f}x")


# Per metric: header cells and a function from a result dict to row cells (ratio appended).
_MB = 1024.0
_COLUMNS: dict[str, tuple[list[tuple[str, int]], Any]] = {
    "throughput": (
        [("recv msgs/s", 12), ("sent msgs/s", 12), ("srv cpu", 8), ("pub cpu", 8), ("sub cpu", 8)],
        lambda r: [
            _fmt_rate(r["rate"]),
            _fmt_rate(r.get("sent_rate")),
            _fmt_pct(r.get("server_cpu")),
            _fmt_pct(r.get("pub_cpu")),
            _fmt_pct(r.get("sub_cpu")),
        ],
    ),
    "latency": (
        [("round trips/s", 13), ("p50 us", 8), ("p99 us", 8), ("p99.9 us", 9), ("srv cpu", 8)],
        lambda r: [
            _fmt_rate(r["rate"]),
            f"{r.get('p50_us') or 0:.1f}",
            f"{r.get('p99_us') or 0:.1f}",
            f"{r.get('p999_us') or 0:.1f}",
            _fmt_pct(r.get("server_cpu")),
        ],
    ),
    "connections": (
        [
            ("conns", 7),
            ("conns/s", 8),
            ("connect s", 9),
            ("RSS0 MB", 8),
            ("RSS1 MB", 8),
            ("B/conn", 7),
            ("srv cpu", 8),
            ("gen cpu", 8),
        ],
        lambda r: [
            f"{r['connections']:,}",
            _fmt_rate(r["rate"]),
            f"{r['connect_s']:.2f}",
            _fmt_num((r.get("rss_before_kb") or 0) / _MB, ".1f"),
            _fmt_num((r.get("rss_after_kb") or 0) / _MB, ".1f"),
            _fmt_num(r.get("rss_per_conn_bytes"), ",.0f"),
            _fmt_pct(r.get("server_cpu")),
            _fmt_pct(r.get("gen_cpu")),
        ],
    ),
    "subscriptions": (
        [
            ("base msgs/s", 12),
            ("w/subs msgs/s", 13),
            ("with/w-o", 8),
            ("sub s", 6),
            ("subs/s", 8),
            ("B/sub", 6),
            ("srv cpu", 8),
        ],
        lambda r: [
            _fmt_rate(r["baseline_rate"]),
            _fmt_rate(r["rate"]),
            _fmt_num(r.get("loaded_over_baseline"), ".2f"),
            f"{r['subscribe_s']:.2f}",
            _fmt_rate(r.get("subscribe_rate")),
            _fmt_num(r.get("rss_per_sub_bytes"), ",.0f"),
            _fmt_pct(r.get("server_cpu")),
        ],
    ),
    "replay": (
        [
            ("store msgs/s", 12),
            ("replay msgs/s", 13),
            ("replay s", 8),
            ("1st ms", 7),
            ("srv cpu", 8),
            ("sub cpu", 8),
        ],
        lambda r: [
            _fmt_rate(r.get("store_rate")),
            _fmt_rate(r["rate"]),
            f"{r['replay_s']:.2f}",
            _fmt_num((r["first_s"] * 1000) if r.get("first_s") is not None else None, ".0f"),
            _fmt_pct(r.get("server_cpu")),
            _fmt_pct(r.get("sub_cpu")),
        ],
    ),
}


def _ms(x: float | None) -> str:
    return _fmt_num(x, ",.1f")


def _secs(x: float | None, timed_out: bool = False, bound: str = "") -> str:
    if x is None:
        return f">{bound}" if timed_out and bound else ("TIMEOUT" if timed_out else "-")
    return f"{x:.2f}"


def _present(r: dict[str, Any]) -> str:
    p = r.get("restart_session_present")
    if p is None:
        return "-"
    if not p:
        return "LOST"
    if r.get("sample_size"):
        return f"{r['sample_present'] + 1}/{r['sample_size'] + 1}"
    return "yes"


_COLUMNS.update(
    {
        "sessions": (
            [
                ("sessions", 9),
                ("lost", 6),
                ("create s", 8),
                ("sess/s", 7),
                ("RSS0 MB", 8),
                ("RSS1 MB", 8),
                ("B/sess", 7),
                ("p99 ms", 7),
                ("stop s", 7),
                ("restart s", 9),
                ("present", 7),
                ("msgs", 5),
            ],
            lambda r: [
                f"{r['sessions']:,}",
                f"{r['requested'] - r['sessions']:,}",
                f"{r['create_s']:.2f}",
                _fmt_rate(r["rate"]),
                _fmt_num((r.get("rss_before_kb") or 0) / _MB, ".1f"),
                _fmt_num((r.get("rss_after_kb") or 0) / _MB, ".1f"),
                _fmt_num(r.get("rss_per_session_bytes"), ",.0f"),
                _ms(r.get("ping_p99_ms")),
                _fmt_num(r.get("stop_s"), ".2f"),
                _secs(r.get("restart_s"), "restart_attempts" in r),
                _present(r),
                _fmt_num(r.get("sample_msgs"), "d"),
            ],
        ),
        "broadcast": (
            [
                ("sessions", 9),
                ("PUBACK s", 9),
                ("settle s", 8),
                ("p50 ms", 7),
                ("p99 ms", 8),
                ("max ms", 8),
                ("unansw", 6),
                ("srv cpu", 8),
            ],
            lambda r: [
                f"{r['sessions']:,}",
                _secs(r.get("ack_s"), r.get("timed_out", False)),
                _fmt_num(r.get("settle_s"), ".2f") + ("" if r.get("quiet", True) else "+"),
                _ms(r.get("ping_p50_ms")),
                _ms(r.get("ping_p99_ms")),
                _ms(r.get("ping_max_ms")),
                _fmt_num(r.get("pings_unanswered"), "d"),
                _fmt_pct(r.get("server_cpu")),
            ],
        ),
        "commands": (
            [
                ("acked", 15),
                ("s", 7),
                ("msgs/s", 8),
                ("settle s", 8),
                ("p50 ms", 7),
                ("p99 ms", 8),
                ("max ms", 8),
                ("srv cpu", 8),
                ("pub cpu", 8),
            ],
            lambda r: [
                f"{r['acked']:,}/{r['commands']:,}",
                f"{r['commands_s']:.2f}",
                _fmt_rate(r["rate"]),
                _fmt_num(r.get("settle_s"), ".2f") + ("" if r.get("quiet", True) else "+"),
                _ms(r.get("ping_p50_ms")),
                _ms(r.get("ping_p99_ms")),
                _ms(r.get("ping_max_ms")),
                _fmt_pct(r.get("server_cpu")),
                _fmt_pct(r.get("pub_cpu")),
            ],
        ),
        "big": (
            [
                ("recv msgs/s", 11),
                ("acked/s", 8),
                ("MB/s", 7),
                ("recv/acked", 11),
                ("disconn", 7),
                ("RSS pk MB", 9),
                ("srv cpu", 8),
                ("pub cpu", 8),
                ("sub cpu", 8),
            ],
            lambda r: [
                _fmt_num(r["rate"], ",.1f"),
                _fmt_num(r.get("sent_rate"), ",.1f"),
                _fmt_num(r.get("mbytes_per_s"), ",.1f"),
                f"{r.get('received', 0)}/{r.get('pubacks', 0)}",
                f"{r.get('disconnects', 0)}",
                _fmt_num((r.get("server_rss_peak_kb") or 0) / _MB, ",.0f"),
                _fmt_pct(r.get("server_cpu")),
                _fmt_pct(r.get("pub_cpu")),
                _fmt_pct(r.get("sub_cpu")),
            ],
        ),
        "fanout": (
            [
                ("subs", 6),
                ("deliv/s", 10),
                ("pub msgs/s", 10),
                ("deliv %", 7),
                ("RSS pk MB", 9),
                ("p50 ms", 7),
                ("p99 ms", 8),
                ("lag p50", 7),
                ("lag p99", 7),
                ("stop s", 6),
                ("srv cpu", 8),
                ("sub cpu", 8),
            ],
            lambda r: [
                f"{r['subscribers']:,}",
                _fmt_rate(r["rate"]),
                _fmt_rate(r.get("sent_rate")),
                _fmt_pct(r.get("delivered_fraction")),
                _fmt_num((r.get("server_rss_peak_kb") or 0) / _MB, ",.0f"),
                _ms(r.get("ping_p50_ms")),
                _ms(r.get("ping_p99_ms")),
                _ms(r.get("lag_p50_ms")),
                _ms(r.get("lag_p99_ms")),
                _fmt_num(r.get("stop_s"), ".2f") + ("+" if r.get("stop_killed") else ""),
                _fmt_pct(r.get("server_cpu")),
                _fmt_pct(r.get("sub_cpu")),
            ],
        ),
    }
)

_COLUMNS.update(
    {
        "js_publish": (
            [
                ("acked msgs/s", 12),
                ("sent msgs/s", 12),
                ("errors", 6),
                ("srv cpu", 8),
                ("pub cpu", 8),
            ],
            lambda r: [
                _fmt_rate(r["rate"]),
                _fmt_rate(r.get("sent_rate")),
                _fmt_num(r.get("errors"), "d"),
                _fmt_pct(r.get("server_cpu")),
                _fmt_pct(r.get("pub_cpu")),
            ],
        ),
        "js_pull": (
            [
                ("acked msgs/s", 12),
                ("window s", 8),
                ("fill msgs/s", 11),
                ("ack pend", 8),
                ("srv cpu", 8),
                ("sub cpu", 8),
            ],
            lambda r: [
                _fmt_rate(r["rate"]),
                _fmt_num(r.get("window_s"), ".1f"),
                _fmt_rate(r.get("prefill_rate")),
                _fmt_num(r.get("num_ack_pending"), "d"),
                _fmt_pct(r.get("server_cpu")),
                _fmt_pct(r.get("sub_cpu")),
            ],
        ),
        "kv": (
            [
                ("round trips/s", 13),
                ("put p50", 8),
                ("put p99", 8),
                ("get p50", 8),
                ("get p99", 8),
                ("srv cpu", 8),
            ],
            lambda r: [
                _fmt_rate(r["rate"]),
                _fmt_num(r.get("put_p50_us"), ",.0f"),
                _fmt_num(r.get("put_p99_us"), ",.0f"),
                _fmt_num(r.get("get_p50_us"), ",.0f"),
                _fmt_num(r.get("get_p99_us"), ",.0f"),
                _fmt_pct(r.get("server_cpu")),
            ],
        ),
    }
)

# Ratio columns per metric: (header, result key); hybridbus's figure over the peer's.
# Lower is better for bytes and seconds (the "mem" and "s" columns).
RATIO_COLUMNS: dict[str, list[tuple[str, str]]] = {
    "connections": [("hybridbus/x", "rate"), ("mem hb/x", "rss_per_conn_bytes")],
    "sessions": [("hybridbus/x", "rate"), ("mem hb/x", "rss_per_session_bytes")],
    "broadcast": [("PUBACK s hb/x", "ack_s")],
    "kv": [("hybridbus/x", "rate"), ("get p99 hb/x", "get_p99_us")],
}
_COLUMNS.update(cluster.COLUMNS)
_COLUMNS.update(cluster_sessions.COLUMNS)
RATIO_COLUMNS.update(cluster.RATIO_COLUMNS)
RATIO_COLUMNS.update(cluster_sessions.RATIO_COLUMNS)


def print_table(scn: Scenario, title: str, results: dict[str, dict[str, Any]]) -> None:
    rcols = RATIO_COLUMNS.get(scn.metric, [("hybridbus/x", "rate")])
    rats = [ratios(results, key) for _, key in rcols]
    cols, row = _COLUMNS[scn.metric]
    print(f"\n== {scn.name}: {title}")
    head = f"  {'server':<12} " + " ".join(f"{h:>{w}}" for h, w in cols)
    head += "".join(f" {h:>{max(9, len(h))}}" for h, _ in rcols)
    print(head)
    for name, r in results.items():
        if "error" in r:
            print(f"  {name:<12} {'FAILED':>12}  {error_summary(r['error'])[:160]}")
            continue
        cells = row(r)
        line = f"  {name:<12} " + " ".join(
            f"{c:>{w}}" for c, (_, w) in zip(cells, cols, strict=True)
        )
        for (h, _), rat in zip(rcols, rats, strict=True):
            line += f" {_rtxt(name, rat.get(name)):>{max(9, len(h))}}"
        print(line)
        if r.get("note"):
            print(f"  {'':<12} note: {r['note']}")
    sys.stdout.flush()


# ---------------------------------------------------------------- CLI


def _split(values: list[str] | None) -> list[str]:
    out: list[str] = []
    for v in values or []:
        out += [x.strip() for x in v.split(",") if x.strip()]
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="bench/run_all.py",
        description="hybridbus side-by-side benchmark against nats-server, Mosquitto, amqtt.",
    )
    p.add_argument(
        "--scenarios",
        nargs="+",
        metavar="NAME",
        help=f"comma or space separated (default: all): {', '.join(SCENARIOS)}",
    )
    p.add_argument(
        "--servers",
        nargs="+",
        metavar="NAME",
        help=f"comma or space separated (default: {','.join(DEFAULT_SERVERS)})",
    )
    p.add_argument("--duration", type=float, default=5.0, help="measured seconds per run (5)")
    p.add_argument("--warmup", type=float, default=1.0, help="seconds before measuring (1)")
    p.add_argument("--payload", type=int, default=64, help="payload bytes (64)")
    p.add_argument("--fanout", type=int, default=50, help="subscribers in mqtt_fanout (50)")
    p.add_argument("--fanin", type=int, default=4, help="publishers in mqtt_fanin (4)")
    p.add_argument(
        "--lowat",
        type=int,
        default=16384,
        help="SO_RCVLOWAT bytes for QoS 0 / NATS subscribers; 0 = wake per segment (16384)",
    )
    p.add_argument(
        "--idle-conns",
        type=int,
        default=20000,
        help="connections in idle_connections (20000; capped by the fd limit)",
    )
    p.add_argument(
        "--idle-procs", type=int, default=4, help="generator processes for idle_connections (4)"
    )
    p.add_argument(
        "--subs", type=int, default=100000, help="subscriptions in many_subscriptions (100000)"
    )
    p.add_argument(
        "--retained", type=int, default=100000, help="messages in retained_replay (100000)"
    )
    p.add_argument(
        "--scale-timeout",
        type=float,
        default=120.0,
        metavar="S",
        help="bound on each phase of the scale scenarios (120)",
    )
    p.add_argument(
        "--fleet-sessions",
        type=int,
        default=100000,
        metavar="N",
        help="persistent sessions in fleet_sessions/broadcast/commands (100000)",
    )
    p.add_argument(
        "--fleet-timeout",
        type=float,
        default=300.0,
        metavar="S",
        help="bound on each phase of the fleet scenarios (300)",
    )
    p.add_argument(
        "--fanout-subs",
        type=int,
        default=10000,
        metavar="N",
        help="subscribers in fanout_10k and fanout_10k_slow (10000; capped by the fd limit)",
    )
    p.add_argument(
        "--big-payload",
        type=int,
        default=1_000_000,
        metavar="B",
        help="payload bytes in big_qos1 (1000000)",
    )
    p.add_argument(
        "--js-prefill",
        type=int,
        default=1000000,
        metavar="N",
        help="messages pre-filled into the stream of js_pull (1000000)",
    )
    p.add_argument(
        "--js-timeout",
        type=float,
        default=120.0,
        metavar="S",
        help="bound on js_pull's pre-fill (120)",
    )
    p.add_argument(
        "--cluster-runs",
        type=int,
        default=2,
        metavar="N",
        help="runs per server of each cluster scenario, each on a fresh hub (2)",
    )
    p.add_argument(
        "--cluster-rounds",
        type=int,
        default=3,
        metavar="N",
        help="kills per run in cluster_relink and cluster_failover (3)",
    )
    p.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="S",
        help="before each run wait up to S s for other load to drop below 0.25 core (0)",
    )
    p.add_argument("--json", default=str(RESULTS_DIR / "latest.json"), help="results file")
    p.add_argument(
        "--no-check",
        action="store_true",
        help="skip the generator capacity check (each generator against a stand-in server)",
    )
    p.add_argument(
        "--report",
        action="store_true",
        help="after the run, regenerate BENCHMARKS.md and docs/benchmarks.png from its results",
    )
    p.add_argument(
        "--from-json",
        nargs="+",
        metavar="PATH",
        help="regenerate BENCHMARKS.md and the chart from saved results without running; "
        "with several files a later file's scenarios replace an earlier file's",
    )
    p.add_argument("--markdown", help="report file (default: BENCHMARKS.md at the repo root)")
    p.add_argument("--chart", help="chart file (default: docs/benchmarks.png)")
    p.add_argument("--list", action="store_true", help="list scenarios and exit")
    return p.parse_args(argv)


def _on_sigterm(signum: int, frame: object) -> None:
    # Turn SIGTERM into SystemExit so finally blocks and atexit hooks stop every process.
    raise SystemExit(128 + signum)


def _write_report(args: argparse.Namespace, paths: list[str]) -> int:
    from . import report

    md, png = report.generate(paths, md_out=args.markdown, png_out=args.chart)
    print(f"report: {md}")
    print(f"chart:  {png}" if png else "chart:  not written (matplotlib is not installed)")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list:
        for s in SCENARIOS.values():
            print(f"{s.name:<20} [{s.mode}] {s.title.format(**vars(Options()))}")
        return 0
    if args.from_json:
        return _write_report(args, args.from_json)
    signal.signal(signal.SIGTERM, _on_sigterm)
    names = _split(args.scenarios) or list(SCENARIOS)
    bad = [n for n in names if n not in SCENARIOS]
    if bad:
        print(f"unknown scenario(s): {', '.join(bad)}; known: {', '.join(SCENARIOS)}")
        return 2
    server_names = _split(args.servers) or list(DEFAULT_SERVERS)
    bad = [n for n in server_names if n not in servers.CAPABILITIES]
    if bad:
        print(f"unknown server(s): {', '.join(bad)}; known: {', '.join(servers.CAPABILITIES)}")
        return 2
    opts = Options(
        payload=args.payload,
        duration=args.duration,
        warmup=args.warmup,
        fanout=args.fanout,
        fanin=args.fanin,
        lowat=args.lowat,
        idle_conns=args.idle_conns,
        idle_procs=args.idle_procs,
        subs=args.subs,
        retained=args.retained,
        scale_timeout=args.scale_timeout,
        fleet_sessions=args.fleet_sessions,
        fleet_timeout=args.fleet_timeout,
        fanout_subs=args.fanout_subs,
        big_payload=args.big_payload,
        js_prefill=args.js_prefill,
        js_timeout=args.js_timeout,
        cluster_runs=args.cluster_runs,
        cluster_rounds=args.cluster_rounds,
        # The selected fleet session scenarios share one server run per server.
        fleet_group=tuple(n for n in names if n in FLEET_GROUP),
    )

    skipped: dict[str, str] = {}
    usable = []
    for name in server_names:
        try:
            servers.check_available(name)
            usable.append(name)
        except servers.ServerUnavailable as e:
            skipped[name] = str(e)
            print(f"note: skipping {name}: {e}")

    from .report import machine_info

    warnings: list[str] = []

    def warn(text: str) -> None:
        print(text)
        warnings.append(text.strip())

    doc: dict[str, Any] = {
        "meta": {
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "host": platform.node(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "machine": machine_info(),
            "options": vars(opts),
            "servers": usable,
            "versions": {name: servers.version_of(name) for name in usable},
            "skipped_servers": skipped,
            "fd_limit": servers.fd_limit(),
        },
        "scenarios": {},
        "warnings": warnings,
    }
    t_start = time.monotonic()
    ceilings: dict[str, dict[str, Any]] = {}
    path = Path(args.json)
    try:
        if not args.no_check:
            ceilings = selfcheck.run_checks(opts)
            doc["generator_capacity"] = ceilings
            selfcheck.print_checks(ceilings)
        for sname in names:
            scn = SCENARIOS[sname]
            title = scenario_title(scn, opts)
            results: dict[str, dict[str, Any]] = {}
            started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
            for server in usable:
                if scn.mode not in servers.CAPABILITIES[server]:
                    continue
                if args.wait_quiet > 0:
                    busy = wait_quiet(args.wait_quiet)
                    if busy >= 0.25:
                        warn(f"  [{sname}/{server}] machine still busy ({busy:.2f} cores)")
                try:
                    results[server] = run_one(scn, server, opts)
                    other = results[server].get("other_cpu") or 0.0
                    if other > OTHER_CPU_WARN:
                        warn(
                            f"  [{sname}/{server}] warning: other processes used "
                            f"{other:.2f} cores during the window; this figure is low"
                        )
                except (servers.ServerStartError, WorkerError, RuntimeError, OSError) as e:
                    results[server] = {"error": str(e)}
                    print(f"  [{sname}/{server}] failed:\n{_indent(str(e))}")
            print_table(scn, title, results)
            for w in _near_ceiling(sname, results, ceilings):
                warn(w)
            entry: dict[str, Any] = {
                "title": title,
                "metric": scn.metric,
                "started": started,
                "results": results,
                "hybridbus_ratio": ratios(results),
            }
            if scn.metric == "connections":
                entry["hybridbus_mem_ratio"] = ratios(results, "rss_per_conn_bytes")
            for _, key in RATIO_COLUMNS.get(scn.metric, []):
                if key != "rate":
                    entry.setdefault("hybridbus_ratios", {})[key] = ratios(results, key)
            doc["scenarios"][sname] = entry
    except KeyboardInterrupt:
        print("\ninterrupted: stopping servers and workers")
        return 130
    finally:
        servers.stop_all()
        doc["meta"]["elapsed_s"] = round(time.monotonic() - t_start, 1)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(doc, indent=2, default=str) + "\n")
        print(f"\nresults: {path}  ({doc['meta']['elapsed_s']} s)")
    if args.report:
        return _write_report(args, [str(path)])
    return 0


# Which generator ceiling bounds each scenario's receive side and send side.
_CEILINGS = {
    "nats_pubsub": ("nats_sub", "nats_pub"),
    "mqtt_qos0": ("mqtt_sub", "mqtt_pub"),
    "mqtt_fanin": ("mqtt_sub", None),
    "mqtt_to_nats": ("nats_sub", "mqtt_pub"),
    "nats_to_mqtt": ("mqtt_sub", "nats_pub"),
    "many_subscriptions": ("mqtt_sub", "mqtt_pub"),
    "js_publish": ("js_pub", None),
    "js_pull": ("js_pull", None),
}
NEAR_CEILING = 0.7


def _near_ceiling(
    sname: str, results: dict[str, dict[str, Any]], ceilings: dict[str, dict[str, Any]]
) -> list[str]:
    out = []
    recv_key, send_key = _CEILINGS.get(sname, (None, None))
    for server, r in results.items():
        for key, rate in ((recv_key, r.get("rate")), (send_key, r.get("sent_rate"))):
            cap = ceilings.get(key or "", {}).get("rate")
            if cap and rate and rate > NEAR_CEILING * cap:
                out.append(
                    f"  warning: {server} reached {rate / cap:.0%} of the {key} generator's "
                    f"ceiling ({cap:,.0f} msgs/s): the generator may be the limit"
                )
    return out


def _warn_near_ceiling(
    sname: str, results: dict[str, dict[str, Any]], ceilings: dict[str, dict[str, Any]]
) -> None:
    for w in _near_ceiling(sname, results, ceilings):
        print(w)


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())
