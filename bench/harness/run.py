"""Run scenarios against servers, print a table per scenario, write results JSON.

One run of one scenario on one server: start a fresh server (own ports, own temp dir),
start the receivers and wait until they are subscribed, start the senders, send "go" with
one clock for all, sample the server's CPU time over the measurement window from
/proc/PID/stat, collect every worker's result, stop the workers and the server. Any
failure is recorded for that (scenario, server) and the suite goes on; every process is
killed by PID in ``finally`` blocks and again by ``atexit`` hooks.
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

from . import selfcheck, servers
from .scenarios import SCENARIOS, Options, Scenario
from .workers import Fleet, WorkerError

DEFAULT_SERVERS = ["hybridbus", "nats-server", "mosquitto", "amqtt"]
RESULTS_DIR = Path(__file__).resolve().parents[1] / "results"
OTHER_CPU_WARN = 0.25  # cores used by unrelated processes that make a run suspect
PUB_TAIL = 0.5  # senders keep going this long past the window, so its end is under load
_CLK_TCK = os.sysconf("SC_CLK_TCK")


def _proc_cpu(pid: int) -> float | None:
    """utime + stime of ``pid`` in seconds, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    # Field 2 (comm) may contain spaces; the fields after the last ')' are fixed.
    fields = raw[raw.rindex(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def _system_busy() -> float:
    """CPU seconds the whole machine spent busy so far (all cores; /proc/stat)."""
    with open("/proc/stat") as f:
        parts = f.readline().split()[1:]
    vals = [int(x) for x in parts]
    # user nice system idle iowait irq softirq steal [guest guest_nice: already in user]
    busy = vals[0] + vals[1] + vals[2] + vals[5] + vals[6] + (vals[7] if len(vals) > 7 else 0)
    return busy / _CLK_TCK


def _proc_rss_kb(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _sleep_until(t: float) -> None:
    while True:
        left = t - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(left, 0.2))


def run_one(scn: Scenario, server_name: str, opts: Options) -> dict[str, Any]:
    srv = servers.start(server_name, scn.mode)
    try:
        with Fleet() as fleet:
            specs = scn.build(srv, opts)
            recv = [
                fleet.spawn(s.name, s.kind, s.role_cls, **s.params) for s in specs if s.receiver
            ]
            fleet.wait_ready(recv)
            send = [
                fleet.spawn(s.name, s.kind, s.role_cls, **s.params) for s in specs if not s.receiver
            ]
            fleet.wait_ready(send)
            t0, t1, t_stop = fleet.go(opts.warmup, opts.duration, PUB_TAIL)
            _sleep_until(t0)
            cpu0, sys0, c0 = _proc_cpu(srv.pid), _system_busy(), time.monotonic()
            _sleep_until(t1)
            cpu1, sys1, c1 = _proc_cpu(srv.pid), _system_busy(), time.monotonic()
            rss = _proc_rss_kb(srv.pid)
            try:
                fleet.collect(t_stop + 30.0)
            except WorkerError as e:
                if not srv.alive():
                    raise WorkerError(
                        f"{e}\n{server_name} died (code {srv.proc.returncode}); log tail:\n"
                        f"{srv.log_tail()}"
                    ) from None
                raise
            workers = [(w.name, w.kind, w.result or {}) for w in fleet.workers]
        if not srv.alive():
            raise RuntimeError(f"{server_name} exited during the run; log tail:\n{srv.log_tail()}")
    finally:
        srv.stop()
    out = _aggregate(scn, workers, cpu0, cpu1, c1 - c0, rss)
    # What the rest of the machine used meanwhile: busy CPU minus the server and the
    # generators. Other work on a 2-core box takes CPU from the server under test.
    ours = (out["server_cpu"] or 0.0) + sum(r.get("cpu", 0.0) for _, _, r in workers)
    out["other_cpu"] = max(0.0, (sys1 - sys0) / (c1 - c0) - ours)
    return out


def _aggregate(
    scn: Scenario,
    workers: list[tuple[str, str, dict[str, Any]]],
    cpu0: float | None,
    cpu1: float | None,
    wall: float,
    rss_kb: int | None,
) -> dict[str, Any]:
    subs = [r for _, k, r in workers if k == "sub"]
    pubs = [r for _, k, r in workers if k == "pub"]
    out: dict[str, Any] = {
        "server_cpu": (cpu1 - cpu0) / wall if cpu0 is not None and cpu1 is not None else None,
        "server_rss_kb": rss_kb,
        "workers": {name: r for name, _, r in workers},
    }
    if scn.metric == "latency":
        req = next(r for _, k, r in workers if k == "req")
        out["rate"] = req["rate"]
        for key in ("p50_us", "p90_us", "p99_us", "p999_us", "max_us", "mean_us", "samples"):
            out[key] = req.get(key)
        out["gen_cpu"] = max(r["cpu"] for _, _, r in workers)
        return out
    out["rate"] = sum(r["rate"] for r in subs)
    out["sent_rate"] = sum(r["rate"] for r in pubs)
    out["pub_cpu"] = max(r["cpu"] for r in pubs)
    out["sub_cpu"] = max(r["cpu"] for r in subs)
    acks = [r["ack_rate"] for r in pubs if "ack_rate" in r]
    if acks:
        # QoS 1: what the publisher got acknowledged is its rate; what it merely handed
        # to the kernel (up to the in-flight window ahead) is kept as sent_raw_rate.
        out["sent_raw_rate"] = out["sent_rate"]
        out["sent_rate"] = sum(acks)
    return out


def wait_quiet(max_wait: float, threshold: float = 0.25) -> float:
    """Wait up to ``max_wait`` s until the machine's busy CPU over 0.5 s is below
    ``threshold`` cores; return the last busy figure."""
    deadline = time.monotonic() + max_wait
    while True:
        b0, c0 = _system_busy(), time.monotonic()
        time.sleep(0.5)
        busy = (_system_busy() - b0) / (time.monotonic() - c0)
        if busy < threshold or time.monotonic() >= deadline:
            return busy


# ---------------------------------------------------------------- output


def _fmt_rate(x: float | None) -> str:
    return "-" if x is None else f"{x:,.0f}"


def _fmt_pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.0f}%"


def _ratios(results: dict[str, dict[str, Any]]) -> dict[str, float | None]:
    """hybridbus / peer on the scenario's rate (msgs/s, or round trips/s for latency)."""
    hb = results.get("hybridbus", {})
    out: dict[str, float | None] = {}
    for name, r in results.items():
        if name == "hybridbus":
            continue
        a, b = hb.get("rate"), r.get("rate")
        out[name] = a / b if a and b else None
    return out


def print_table(scn: Scenario, title: str, results: dict[str, dict[str, Any]]) -> None:
    ratios = _ratios(results)
    print(f"\n== {scn.name}: {title}")
    if scn.metric == "latency":
        head = f"  {'server':<12} {'round trips/s':>13} {'p50 us':>8} {'p99 us':>8} {'p99.9 us':>9} {'srv cpu':>8} {'hybridbus/x':>12}"
    else:
        head = f"  {'server':<12} {'recv msgs/s':>12} {'sent msgs/s':>12} {'srv cpu':>8} {'pub cpu':>8} {'sub cpu':>8} {'hybridbus/x':>12}"
    print(head)
    for name, r in results.items():
        if "error" in r:
            first = r["error"].strip().splitlines()[0] if r["error"].strip() else "error"
            print(f"  {name:<12} {'FAILED':>12}  {first[:90]}")
            continue
        ratio = ratios.get(name)
        rtxt = "-" if name == "hybridbus" else ("n/a" if ratio is None else f"{ratio:.2f}x")
        if scn.metric == "latency":
            print(
                f"  {name:<12} {_fmt_rate(r['rate']):>13} {r['p50_us'] or 0:>8.1f} "
                f"{r['p99_us'] or 0:>8.1f} {r['p999_us'] or 0:>9.1f} {_fmt_pct(r['server_cpu']):>8} {rtxt:>12}"
            )
        else:
            print(
                f"  {name:<12} {_fmt_rate(r['rate']):>12} {_fmt_rate(r['sent_rate']):>12} "
                f"{_fmt_pct(r['server_cpu']):>8} {_fmt_pct(r['pub_cpu']):>8} "
                f"{_fmt_pct(r['sub_cpu']):>8} {rtxt:>12}"
            )
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
    p.add_argument("--list", action="store_true", help="list scenarios and exit")
    return p.parse_args(argv)


def _on_sigterm(signum: int, frame: object) -> None:
    # Turn SIGTERM into SystemExit so finally blocks and atexit hooks stop every process.
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list:
        for s in SCENARIOS.values():
            print(f"{s.name:<14} [{s.mode}] {s.title}")
        return 0
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

    doc: dict[str, Any] = {
        "meta": {
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "host": platform.node(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "options": vars(opts),
            "servers": usable,
            "skipped_servers": skipped,
        },
        "scenarios": {},
    }
    t_start = time.monotonic()
    ceilings: dict[str, dict[str, Any]] = {}
    try:
        if not args.no_check:
            ceilings = selfcheck.run_checks(opts)
            doc["generator_capacity"] = ceilings
            selfcheck.print_checks(ceilings)
        for sname in names:
            scn = SCENARIOS[sname]
            title = scn.title.format(**vars(opts)) + f", {opts.payload} B payload"
            results: dict[str, dict[str, Any]] = {}
            for server in usable:
                if scn.mode not in servers.CAPABILITIES[server]:
                    continue
                if args.wait_quiet > 0:
                    busy = wait_quiet(args.wait_quiet)
                    if busy >= 0.25:
                        print(f"  [{sname}/{server}] machine still busy ({busy:.2f} cores)")
                try:
                    results[server] = run_one(scn, server, opts)
                    other = results[server].get("other_cpu") or 0.0
                    if other > OTHER_CPU_WARN:
                        print(
                            f"  [{sname}/{server}] warning: other processes used "
                            f"{other:.2f} cores during the window; this figure is low"
                        )
                except (servers.ServerStartError, WorkerError, RuntimeError, OSError) as e:
                    results[server] = {"error": str(e)}
                    print(f"  [{sname}/{server}] failed:\n{_indent(str(e))}")
            print_table(scn, title, results)
            _warn_near_ceiling(sname, results, ceilings)
            doc["scenarios"][sname] = {
                "title": title,
                "metric": scn.metric,
                "results": results,
                "hybridbus_ratio": _ratios(results),
            }
    except KeyboardInterrupt:
        print("\ninterrupted: stopping servers and workers")
        return 130
    finally:
        servers.stop_all()
        doc["meta"]["elapsed_s"] = round(time.monotonic() - t_start, 1)
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(doc, indent=2, default=str) + "\n")
        print(f"\nresults: {path}  ({doc['meta']['elapsed_s']} s)")
    return 0


# Which generator ceiling bounds each scenario's receive side and send side.
_CEILINGS = {
    "nats_pubsub": ("nats_sub", "nats_pub"),
    "mqtt_qos0": ("mqtt_sub", "mqtt_pub"),
    "mqtt_fanin": ("mqtt_sub", None),
    "mqtt_to_nats": ("nats_sub", "mqtt_pub"),
    "nats_to_mqtt": ("mqtt_sub", "nats_pub"),
}
NEAR_CEILING = 0.7


def _warn_near_ceiling(
    sname: str, results: dict[str, dict[str, Any]], ceilings: dict[str, dict[str, Any]]
) -> None:
    recv_key, send_key = _CEILINGS.get(sname, (None, None))
    for server, r in results.items():
        for key, rate in ((recv_key, r.get("rate")), (send_key, r.get("sent_rate"))):
            cap = ceilings.get(key or "", {}).get("rate")
            if cap and rate and rate > NEAR_CEILING * cap:
                print(
                    f"  warning: {server} reached {rate / cap:.0%} of the {key} generator's "
                    f"ceiling ({cap:,.0f} msgs/s): the generator may be the limit"
                )


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())
