"""BENCHMARKS.md and docs/benchmarks.png from the results JSON of one or more runs.

Theory of operation: ``generate`` loads the JSON files in order; a later file's scenarios
replace an earlier file's (so one scenario can be re-run on its own and merged), and every
scenario remembers which file and run it came from. From that it writes one Markdown page:
the machine (from the run's own metadata), the server versions, the targets with pass or
miss, one table with every scenario's figure per server and hybridbus's ratio to each
peer, the extra figures of the scale and fleet scenarios, and the noise the harness saw. The chart
(matplotlib, Agg backend, imported only here) has four panels: msgs/s per rate scenario,
hybridbus/peer ratios, memory per idle connection, and the publish rate without and with
100,000 subscriptions. Without matplotlib the page is written and the chart is skipped.
"""

from __future__ import annotations

import json
import math
import os
import platform
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
DEFAULT_MD = REPO / "BENCHMARKS.md"
DEFAULT_PNG = REPO / "docs" / "benchmarks.png"
SERVER_ORDER = ["hybridbus", "nats-server", "mosquitto", "amqtt"]
PEERS = SERVER_ORDER[1:]
OTHER_CPU_WARN = 0.25

# Scenario order in the report, with the unit of its main figure ("rate").
UNITS = {
    "nats_pubsub": "msgs/s",
    "nats_reqrep": "round trips/s",
    "mqtt_qos0": "msgs/s",
    "mqtt_fanin": "msgs/s",
    "mqtt_fanout": "msgs/s",
    "mqtt_qos1": "msgs/s",
    "mqtt_qos1_persistent": "msgs/s",
    "mqtt_qos2": "msgs/s",
    "mqtt_to_nats": "msgs/s",
    "nats_to_mqtt": "msgs/s",
    "idle_connections": "connections/s",
    "many_subscriptions": "msgs/s",
    "retained_replay": "msgs/s",
    "fleet_sessions": "sessions/s",
    "fleet_commands": "msgs/s",
    "big_qos1": "msgs/s",
    "fanout_10k": "deliveries/s",
    "fanout_10k_slow": "deliveries/s",
    "js_publish": "msgs/s",
    "js_pull": "msgs/s",
    "kv_latency": "round trips/s",
}

# The fleet scenarios that run the ping probe (loop latency target).
PROBED = ["fleet_sessions", "fleet_broadcast", "fleet_commands", "fanout_10k", "fanout_10k_slow"]

# (label, scenario, result key, unit, lower is better)
EXTRA_ROWS = [
    ("nats_reqrep p50 latency", "nats_reqrep", "p50_us", "us", True),
    ("nats_reqrep p99 latency", "nats_reqrep", "p99_us", "us", True),
    (
        "idle_connections RSS per connection",
        "idle_connections",
        "rss_per_conn_bytes",
        "bytes",
        True,
    ),
    (
        "many_subscriptions baseline (no extra subs)",
        "many_subscriptions",
        "baseline_rate",
        "msgs/s",
        False,
    ),
    (
        "many_subscriptions with/without subs",
        "many_subscriptions",
        "loaded_over_baseline",
        "ratio",
        False,
    ),
    ("many_subscriptions subscribe rate", "many_subscriptions", "subscribe_rate", "subs/s", False),
    (
        "many_subscriptions RSS per subscription",
        "many_subscriptions",
        "rss_per_sub_bytes",
        "bytes",
        True,
    ),
    ("retained_replay seconds for all", "retained_replay", "replay_s", "s", True),
    ("retained_replay store rate (QoS 1, acked)", "retained_replay", "store_rate", "msgs/s", False),
    (
        "fleet_sessions RSS per offline session",
        "fleet_sessions",
        "rss_per_session_bytes",
        "bytes",
        True,
    ),
    ("fleet_sessions restart to session present", "fleet_sessions", "restart_s", "s", True),
    ("fleet_sessions SIGTERM to exit", "fleet_sessions", "stop_s", "s", True),
    ("fleet_sessions ping p99 while creating", "fleet_sessions", "ping_p99_ms", "ms", True),
    ("fleet_broadcast send to PUBACK", "fleet_broadcast", "ack_s", "s", True),
    ("fleet_broadcast ping p99", "fleet_broadcast", "ping_p99_ms", "ms", True),
    ("fleet_commands ping p99", "fleet_commands", "ping_p99_ms", "ms", True),
    ("big_qos1 disconnects", "big_qos1", "disconnects", "count", True),
    ("big_qos1 server RSS peak", "big_qos1", "rss_peak_mb", "MB", True),
    ("fanout_10k server RSS peak", "fanout_10k", "rss_peak_mb", "MB", True),
    ("fanout_10k ping p99", "fanout_10k", "ping_p99_ms", "ms", True),
    ("fanout_10k SIGTERM to exit", "fanout_10k", "stop_s", "s", True),
    ("fanout_10k_slow lag p50", "fanout_10k_slow", "lag_p50_ms", "ms", True),
    ("fanout_10k_slow lag p99", "fanout_10k_slow", "lag_p99_ms", "ms", True),
    ("js_pull pre-fill rate (acked publishes)", "js_pull", "prefill_rate", "msgs/s", False),
    ("kv_latency put p50", "kv_latency", "put_p50_us", "us", True),
    ("kv_latency put p99", "kv_latency", "put_p99_us", "us", True),
    ("kv_latency get p50", "kv_latency", "get_p50_us", "us", True),
    ("kv_latency get p99", "kv_latency", "get_p99_us", "us", True),
]


# ---------------------------------------------------------------- machine


def machine_info() -> dict[str, Any]:
    """nproc, CPU model, RAM and kernel of this machine (stdlib, /proc)."""
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_kb = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem_kb = int(line.split()[1])
                    break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model or platform.processor() or "unknown",
        "mem_total_kb": mem_kb,
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


# ---------------------------------------------------------------- loading


def load(paths: list[str]) -> dict[str, Any]:
    """Merge result files: later files' scenarios replace earlier ones'."""
    merged: dict[str, Any] = {"meta": {}, "scenarios": {}, "warnings": [], "sources": []}
    for p in paths:
        doc = json.loads(Path(p).read_text())
        meta = doc.get("meta", {})
        if not merged["meta"]:
            merged["meta"] = dict(meta)
        elif not all(n.startswith("cluster_") for n in doc.get("scenarios", {})):
            # Versions and servers of every run count; the first run's machine stays. A
            # run of cluster scenarios only names its own in the Clustering block.
            merged["meta"].setdefault("versions", {}).update(meta.get("versions", {}))
            for s in meta.get("servers", []):
                if s not in merged["meta"].setdefault("servers", []):
                    merged["meta"]["servers"].append(s)
        names = list(doc.get("scenarios", {}))
        merged["sources"].append(
            {
                "path": str(p),
                "started": meta.get("started"),
                "scenarios": names,
                # Each run's own machine, versions and options (the cluster block names them).
                "machine": meta.get("machine"),
                "versions": meta.get("versions"),
                "options": meta.get("options"),
            }
        )
        for name, entry in doc.get("scenarios", {}).items():
            entry = dict(entry)
            entry["source"] = str(p)
            entry.setdefault("started", meta.get("started"))
            merged["scenarios"][name] = entry
            # A re-run replaces the scenario's warnings too.
            merged["warnings"] = [w for w in merged["warnings"] if f"[{name}/" not in w]
        merged["warnings"] += doc.get("warnings", [])
        if "generator_capacity" in doc:
            merged["generator_capacity"] = doc["generator_capacity"]
    return merged


# ---------------------------------------------------------------- numbers


def _res(doc: dict[str, Any], scn: str, server: str) -> dict[str, Any] | None:
    r = doc["scenarios"].get(scn, {}).get("results", {}).get(server)
    if r is None or "error" in r:
        return None
    return r


def value(doc: dict[str, Any], scn: str, server: str, key: str = "rate") -> float | None:
    r = _res(doc, scn, server)
    v = r.get(key) if r else None
    return float(v) if isinstance(v, (int, float)) else None


def ratio(doc: dict[str, Any], scn: str, peer: str, key: str = "rate") -> float | None:
    a, b = value(doc, scn, "hybridbus", key), value(doc, scn, peer, key)
    return a / b if a and b else None


def targets(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The targets (the mission's five, issue 18's fleet targets, issue 15's JetStream
    ones): what was measured
    and whether it is met (None: not measured, or not at the scale the target is for)."""
    out = []

    def rate_target(label: str, scn: str, peer: str, need: float) -> None:
        r = ratio(doc, scn, peer)
        a, b = value(doc, scn, "hybridbus"), value(doc, scn, peer)
        measured = (
            f"{r:.2f}x ({_n(a)} vs {_n(b)} msgs/s, `{scn}`)" if r is not None else f"n/a (`{scn}`)"
        )
        out.append(dict(target=label, measured=measured, ok=None if r is None else r >= need))

    rate_target("MQTT QoS 0 >= 1.5x Mosquitto", "mqtt_qos0", "mosquitto", 1.5)
    rate_target(
        "MQTT QoS 1 persisted >= 1.5x nats-server's MQTT",
        "mqtt_qos1_persistent",
        "nats-server",
        1.5,
    )
    rate_target("NATS core >= 0.5x nats-server", "nats_pubsub", "nats-server", 0.5)
    per = value(doc, "idle_connections", "hybridbus", "rss_per_conn_bytes")
    n = value(doc, "idle_connections", "hybridbus", "connections")
    out.append(
        dict(
            target="<= 4 KB RSS per idle MQTT connection",
            measured=(
                f"{per / 1024:.1f} KB ({per:,.0f} bytes over {n:,.0f} connections)"
                if per is not None and n
                else "n/a"
            ),
            ok=None if per is None else per <= 4096,
        )
    )
    lo = value(doc, "many_subscriptions", "hybridbus", "loaded_over_baseline")
    b = value(doc, "many_subscriptions", "hybridbus", "baseline_rate")
    a = value(doc, "many_subscriptions", "hybridbus")
    out.append(
        dict(
            target="100,000 subscriptions do not halve the publish rate",
            measured=(
                f"{lo:.2f} of the rate without them ({_n(a)} vs {_n(b)} msgs/s)"
                if lo is not None
                else "n/a"
            ),
            ok=None if lo is None else lo >= 0.5,
        )
    )
    out += fleet_targets(doc)
    from .jetstream import js_targets

    out += js_targets(doc, value, ratio)
    from .cluster_report import cluster_targets

    out += cluster_targets(doc, value)
    return out


BROADCAST_SESSIONS = 100_000


def fleet_targets(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 18's targets for the fleet scenarios."""
    out = []
    r = _res(doc, "fleet_broadcast", "hybridbus")
    if r is None:
        measured, ok = "n/a (`fleet_broadcast`)", None
    else:
        n = r.get("sessions") or 0
        ack = r.get("ack_s")
        measured = (
            f"{ack:.2f} s with {n:,} sessions" if ack is not None else f"no PUBACK ({n:,} sessions)"
        )
        ok = ack is not None and ack <= 3.0
        if n < BROADCAST_SESSIONS:
            measured += f" (the target is for {BROADCAST_SESSIONS:,})"
            ok = None if ok else ok
    out.append(
        dict(
            target="Broadcast to 100,000 offline sessions acknowledged in <= 3 s",
            measured=measured,
            ok=ok,
        )
    )

    def vs(scn: str, peer: str, need: float, unit: str) -> tuple[str, bool | None]:
        x = ratio(doc, scn, peer)
        a, b = value(doc, scn, "hybridbus"), value(doc, scn, peer)
        if x is None:
            return f"n/a vs {peer}", None
        return f"{x:.2f}x {peer} ({_n(a)} vs {_n(b)} {unit})", x >= need

    m, ok = vs("fleet_commands", "mosquitto", 1.0, "msgs/s")
    out.append(dict(target="fleet_commands >= 1.0x Mosquitto", measured=m, ok=ok))

    m1, ok1 = vs("big_qos1", "mosquitto", 0.5, "msgs/s")
    m2, ok2 = vs("big_qos1", "nats-server", 1.0, "msgs/s")
    disc = value(doc, "big_qos1", "hybridbus", "disconnects")
    parts = [m1, m2, "disconnects n/a" if disc is None else f"{disc:.0f} disconnects"]
    oks = [ok1, ok2, None if disc is None else disc == 0]
    out.append(
        dict(
            target="big_qos1 >= 0.5x Mosquitto and >= 1.0x nats-server, no disconnect",
            measured="; ".join(parts),
            ok=False if False in oks else (None if None in oks else True),
        )
    )

    m, ok = vs("fanout_10k", "nats-server", 1.0, "deliveries/s")
    rss = value(doc, "fanout_10k", "hybridbus", "rss_peak_mb")
    oks = [ok, None if rss is None else rss < 700]
    out.append(
        dict(
            target="fanout_10k >= 1.0x nats-server's deliveries/s, hybridbus RSS < 700 MB",
            measured=f"{m}; RSS peak " + ("n/a" if rss is None else f"{rss:,.0f} MB"),
            ok=False if False in oks else (None if None in oks else True),
        )
    )

    lat = [(scn, value(doc, scn, "hybridbus", "ping_p99_ms")) for scn in PROBED]
    seen = [(scn, v) for scn, v in lat if v is not None]
    out.append(
        dict(
            target="Loop latency (PINGREQ -> PINGRESP) p99 < 100 ms in every fleet scenario",
            measured=(", ".join(f"`{scn}` {v:,.1f} ms" for scn, v in seen) if seen else "n/a"),
            ok=None if not seen else all(v < 100.0 for _, v in seen),
        )
    )
    return out


def _n(x: float | None, spec: str = ",.0f") -> str:
    return "-" if x is None else format(x, spec)


def _fmt(x: float | None, unit: str) -> str:
    if x is None:
        return "-"
    if unit == "ratio":
        return f"{x:.2f}"
    if unit == "s":
        return f"{x:.2f}"
    if unit in ("us", "ms"):
        return f"{x:,.1f}"
    return f"{x:,.0f}"


# ---------------------------------------------------------------- Markdown


def _servers(doc: dict[str, Any]) -> list[str]:
    seen = set()
    for entry in doc["scenarios"].values():
        seen.update(entry.get("results", {}))
    return [s for s in SERVER_ORDER if s in seen]


def _noisy(r: dict[str, Any] | None) -> bool:
    return bool(r) and (r.get("other_cpu") or 0.0) > OTHER_CPU_WARN


def markdown(doc: dict[str, Any], chart_rel: str | None) -> str:
    meta = doc["meta"]
    mach = meta.get("machine") or {}
    servers = _servers(doc)
    peers = [s for s in servers if s != "hybridbus"]
    versions = meta.get("versions", {})
    opts = meta.get("options", {})
    L: list[str] = []
    L.append("# hybridbus benchmarks")
    L.append("")
    L.append(
        "Generated by `python bench/run_all.py --report` (or `--from-json PATH` from saved "
        "results); do not edit by hand. How the harness works, and every option: "
        "[bench/README.md](bench/README.md)."
    )
    L.append("")
    L.append("## Run")
    L.append("")
    mem = mach.get("mem_total_kb")
    L.append(f"- Date: {meta.get('started', '?')}")
    for src in doc.get("sources", [])[1:]:
        L.append(f"  - re-run {src['started']}: {', '.join(f'`{s}`' for s in src['scenarios'])}")
    L.append(
        f"- Machine: {mach.get('nproc', meta.get('cpus', '?'))} CPUs ({mach.get('cpu_model', '?')}), "
        f"{(mem / 1048576) if mem else 0:.1f} GiB RAM, Linux {mach.get('kernel', '?')}, "
        f"Python {meta.get('python', '?')}"
    )
    vers = ", ".join(f"{s} {versions.get(s) or '?'}" for s in servers)
    L.append(f"- Servers: {vers}")
    for name, why in (meta.get("skipped_servers") or {}).items():
        L.append(f"- Skipped: {name} ({why.splitlines()[0]})")
    L.append(
        f"- Load: {opts.get('payload', 64)} B payloads, {opts.get('duration', '?')} s measured "
        f"after {opts.get('warmup', '?')} s warm-up per run, a fresh server per run, every "
        "generator role its own process on raw sockets with pre-encoded packets"
    )
    L.append("")
    L.append("## Targets")
    L.append("")
    L.append("| target | measured (same run) | met |")
    L.append("|---|---|---|")
    for t in targets(doc):
        ok = "n/a" if t["ok"] is None else ("yes" if t["ok"] else "**no**")
        L.append(f"| {t['target']} | {t['measured']} | {ok} |")
    L.append("")
    L.append("## Results")
    L.append("")
    L.append(
        "Main figure per scenario and server; `hybridbus/x` is hybridbus's figure divided by "
        "that server's (higher is better for hybridbus on rates). `-` = the server does not "
        "take part (no NATS protocol) or the run failed (see below). A † marks a run during "
        "which other processes used more than 0.25 core (its figure is low)."
    )
    L.append("")
    head = ["scenario", "unit", *servers, *(f"hybridbus/{p}" for p in peers)]
    L.append("| " + " | ".join(head) + " |")
    L.append("|" + "---|" * 2 + "---:|" * (len(head) - 2))
    for scn, unit in UNITS.items():
        if scn not in doc["scenarios"]:
            continue
        cells = [f"`{scn}`", unit]
        for s in servers:
            r = _res(doc, scn, s)
            cell = _fmt(value(doc, scn, s), unit)
            if s in doc["scenarios"][scn].get("results", {}) and r is None:
                cell = "FAILED"
            cells.append(cell + (" †" if _noisy(r) else ""))
        for p in peers:
            x = ratio(doc, scn, p)
            cells.append("-" if x is None else f"{x:.2f}x")
        L.append("| " + " | ".join(cells) + " |")
    L.append("")
    L.append("More figures from the same runs (for bytes, seconds and latency lower is better):")
    L.append("")
    head = ["figure", "unit", *servers, *(f"hybridbus/{p}" for p in peers)]
    L.append("| " + " | ".join(head) + " |")
    L.append("|" + "---|" * 2 + "---:|" * (len(head) - 2))
    for label, scn, key, unit, _lower in EXTRA_ROWS:
        if scn not in doc["scenarios"]:
            continue
        cells = [label, unit] + [_fmt(value(doc, scn, s, key), unit) for s in servers]
        for p in peers:
            # A ratio of ratios says nothing useful.
            x = None if unit == "ratio" else ratio(doc, scn, p, key)
            cells.append("-" if x is None else f"{x:.2f}x")
        L.append("| " + " | ".join(cells) + " |")
    L.append("")
    from .cluster_report import cluster_block

    L += cluster_block(doc, value)
    if chart_rel:
        L.append(f"![benchmark chart]({chart_rel})")
        L.append("")
    failed = [
        (scn, s, r["error"])
        for scn, e in doc["scenarios"].items()
        for s, r in e.get("results", {}).items()
        if "error" in r
    ]
    notes = [
        (scn, s, r["note"])
        for scn, e in doc["scenarios"].items()
        for s, r in e.get("results", {}).items()
        if r.get("note")
    ]
    for scn, e in doc["scenarios"].items():
        if e.get("metric", "throughput") != "throughput":
            continue
        for s, r in e.get("results", {}).items():
            obs = observe(r)
            if obs:
                notes.append((scn, s, obs))
    if failed or notes:
        L.append("Failures and notes:")
        L.append("")
        for scn, s, err in failed:
            L.append(f"- `{scn}` / {s}: FAILED: {error_summary(err)}")
        # One line for a note every server of a scenario got (the fd limit, say).
        by_note: dict[tuple[str, str], list[str]] = {}
        for scn, s, note in notes:
            by_note.setdefault((scn, note), []).append(s)
        for (scn, note), who in by_note.items():
            ran = doc["scenarios"][scn].get("results", {})
            who_txt = "all servers" if len(who) == len(ran) and len(who) > 1 else ", ".join(who)
            L.append(f"- `{scn}` / {who_txt}: {note}")
        L.append("")
    L += _scenario_notes(doc)
    L += _noise(doc)
    return "\n".join(L) + "\n"


def observe(r: dict[str, Any]) -> str:
    """What a throughput row says about itself: queueing, or a server that waits."""
    if "error" in r or not r.get("rate"):
        return ""
    out = []
    sent, got, cpu = r.get("sent_rate"), r["rate"], r.get("server_cpu")
    if sent and sent >= 1.5 * got:
        out.append(
            f"acknowledged or sent {sent / got:.1f}x what it delivered (queued or dropped the rest)"
        )
    if cpu is not None and cpu < 0.5:
        out.append(f"server CPU only {cpu:.0%}: it waited rather than worked")
    return "; ".join(out)


def error_summary(err: str) -> str:
    """First line of an error and, for a traceback, its last line (the exception)."""
    lines = [x.strip() for x in err.strip().splitlines() if x.strip()]
    if not lines:
        return "error"
    text = lines[0]
    last = next((x for x in reversed(lines) if not x.startswith(("File ", "^", "~"))), "")
    if last and last != text and len(lines) > 1:
        text = f"{text} ... {last}"
    return text[:240]


def _scenario_notes(doc: dict[str, Any]) -> list[str]:
    L = ["## Scenarios", ""]
    for name, e in doc["scenarios"].items():
        L.append(f"- `{name}`: {e.get('title', '')}")
    L += [
        "",
        "Persistence in `mqtt_qos1_persistent`: the subscriber connects with clean session 0 "
        "and a fixed client id. hybridbus writes every message it owes that session to its "
        "stream store before the PUBACK to the publisher, under its default sync policy "
        "(written to the OS at once, fsync on its sync interval, as nats-server's JetStream "
        "default). nats-server's MQTT keeps every QoS 1 message in JetStream. Mosquitto runs "
        "with `persistence true` and its default `autosave_interval` (1800 s): it holds "
        "messages in memory and writes its database only at that interval and at shutdown, "
        "so nothing reaches its disk during the run.",
        "",
    ]
    wr = []
    for s in _servers(doc):
        v = value(doc, "mqtt_qos1_persistent", s, "server_write_Bps")
        rate = value(doc, "mqtt_qos1_persistent", s)
        if v is not None and rate:
            wr.append(f"{s} {v / 1e6:.1f} MB/s ({v / rate:,.0f} bytes per message)")
    if wr:
        L += [
            "What the servers wrote towards storage during that window (/proc/PID/io "
            "`write_bytes`): " + ", ".join(wr) + ".",
            "",
        ]
    L += [
        "`idle_connections`: RSS is VmRSS from /proc (the same for every server), read once "
        "it stops moving after the last CONNACK; per connection = (after - before) / N. "
        "`many_subscriptions`: the filler subscriptions are QoS 0 filters `bench/s/<i>` on "
        "other connections; the baseline run is on the same server just before they are "
        "added. `retained_replay`: the messages are stored with QoS 1 (all PUBACKs in "
        "before the replay starts); the replay is timed from the SUBSCRIBE to the last "
        "message.",
        "",
    ]
    if any(scn in doc["scenarios"] for scn in (*PROBED, "big_qos1")):
        L += [
            "Fleet scenarios: `fleet_sessions`, `fleet_broadcast` and `fleet_commands` share "
            "one server run per server: N persistent sessions (clean session 0, `dev-<i>`, "
            "`fleet/all` and `fleet/dev/<i>` at QoS 1) created in waves and left offline "
            "(RSS per session = settled RSS after - before, over N), then one QoS 1 PUBLISH "
            "to `fleet/all` (send to PUBACK), then one QoS 1 PUBLISH to each "
            "`fleet/dev/<i>` (window 1000), then SIGTERM and a restart on the same store: "
            "restart time is process start to the first CONNACK with session present 1 for "
            "a reconnecting device. Ping latency: a probe connection sends PINGREQ every "
            "10 ms during each phase and times the PINGRESPs (unanswered pings count with "
            "their age). `big_qos1`: RSS peak sampled every 0.2 s. `fanout_10k`: "
            "deliveries counted from bytes received (every PUBLISH has one length); "
            "`fanout_10k_slow` timestamps each payload and times 1 subscriber in 100.",
            "",
        ]
    return L


def _noise(doc: dict[str, Any]) -> list[str]:
    meta = doc["meta"]
    n = (meta.get("machine") or {}).get("nproc") or meta.get("cpus") or "?"
    L = [
        "## Noise",
        "",
        f"The machine has {n} cores; the server, the load generators and any other work on "
        "the machine share them. The harness "
        "measures the machine's busy CPU over every window and subtracts the server's and "
        "the generators' own; what is left (`other_cpu` in the JSON) took CPU from the "
        "server under test. It also holds kernel work charged to no process (loopback "
        "network processing), so it is rarely zero even on a quiet machine. Compare ratios "
        "from the same run rather than absolute figures between runs.",
        "",
    ]
    worst = []
    for scn, e in doc["scenarios"].items():
        if scn.startswith("cluster_"):
            continue  # the Clustering block gives its own
        for s, r in e.get("results", {}).items():
            oc = r.get("other_cpu")
            if isinstance(oc, (int, float)) and oc > OTHER_CPU_WARN:
                worst.append((oc, scn, s))
    if worst:
        worst.sort(reverse=True)
        L.append(
            "Runs during which other processes used more than 0.25 core: "
            + ", ".join(f"`{scn}`/{s} ({oc:.2f})" for oc, scn, s in worst)
            + "."
        )
    else:
        L.append("No run saw more than 0.25 core of other load.")
    other = [
        w
        for w in doc.get("warnings", [])
        if "other processes used" not in w and "[cluster_" not in w
    ]
    if other:
        L.append("")
        L.append("Other warnings the harness printed:")
        L.append("")
        L += [f"- {w.strip()}" for w in other]
    cap = doc.get("generator_capacity")
    if cap:
        L.append("")
        L.append(
            "Generator ceilings (each generator against a stand-in server that costs next to "
            "nothing): "
            + ", ".join(f"{k} {_n(v.get('rate'))}/s" for k, v in cap.items() if v.get("rate"))
            + "."
        )
    L.append("")
    return L


# ---------------------------------------------------------------- chart

_COLORS = {
    "hybridbus": "#d62728",
    "nats-server": "#1f77b4",
    "mosquitto": "#2ca02c",
    "amqtt": "#9467bd",
}


def chart(doc: dict[str, Any], path: Path) -> bool:
    """Write the PNG; False when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    servers = _servers(doc)
    peers = [s for s in servers if s != "hybridbus"]
    rate_scn = [
        s for s in UNITS if s in doc["scenarios"] and UNITS[s] in ("msgs/s", "round trips/s")
    ]
    from matplotlib.ticker import FuncFormatter

    fig, axes = plt.subplots(
        2, 2, figsize=(15, 15), gridspec_kw={"height_ratios": [1.7, 1.0]}, squeeze=False
    )
    short = FuncFormatter(_short_num)
    machine = doc["meta"].get("machine") or {}
    fig.suptitle(
        f"hybridbus vs peers, {doc['meta'].get('started', '')[:10]}, "
        f"{machine.get('nproc', '?')} CPUs ({machine.get('cpu_model', '?')})",
        fontsize=13,
    )

    # (a) msgs/s per rate scenario.
    ax = axes[0][0]
    h = 0.8 / max(1, len(servers))
    ys = range(len(rate_scn))
    for i, s in enumerate(servers):
        vals = [value(doc, scn, s) or 0 for scn in rate_scn]
        ax.barh([y + i * h for y in ys], vals, height=h, label=s, color=_COLORS.get(s))
    ax.set_yticks([y + h * (len(servers) - 1) / 2 for y in ys], [_label(s) for s in rate_scn])
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(short)
    ax.set_xlabel("msgs/s received, log scale")
    ax.set_title("Throughput", pad=26)
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=len(servers), fontsize=8)
    ax.grid(axis="x", alpha=0.3)

    # (b) hybridbus / peer.
    ax = axes[0][1]
    scns = [s for s in UNITS if s in doc["scenarios"]]
    h = 0.8 / max(1, len(peers))
    for i, p in enumerate(peers):
        ys2, vals = [], []
        for y, scn in enumerate(scns):
            x = ratio(doc, scn, p)
            if x:
                ys2.append(y + i * h)
                vals.append(x)
        ax.barh(ys2, vals, height=h, label=f"hybridbus / {p}", color=_COLORS.get(p))
    ax.set_yticks(
        [y + h * (len(peers) - 1) / 2 for y in range(len(scns))], [_label(s) for s in scns]
    )
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}x"))
    ax.axvline(1.0, color="black", lw=1)
    for x in (0.5, 1.5):
        ax.axvline(x, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("hybridbus / peer on the main figure (log; > 1 = hybridbus higher)")
    ax.set_title("hybridbus / peer (dashed: the 0.5x and 1.5x targets)", pad=26)
    if peers:  # a run of hybridbus alone has no ratios (and no legend entries)
        ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=len(peers), fontsize=8)
    ax.grid(axis="x", alpha=0.3)

    # (c) memory per idle connection.
    ax = axes[1][0]
    names = [s for s in servers if value(doc, "idle_connections", s, "rss_per_conn_bytes")]
    vals = [value(doc, "idle_connections", s, "rss_per_conn_bytes") / 1024 for s in names]
    bars = ax.bar(names, vals, color=[_COLORS.get(s) for s in names])
    for b, v in zip(bars, vals, strict=True):
        ax.text(b.get_x() + b.get_width() / 2, v, f"{v:.1f}", ha="center", va="bottom")
    ax.axhline(4.0, color="grey", ls="--", lw=0.8, label="target: 4 KB")
    ax.legend(fontsize=8)
    conns = value(doc, "idle_connections", "hybridbus", "connections")
    ax.set_ylabel("KB of RSS per connection")
    ax.set_title(f"Idle MQTT connections ({_n(conns)}): memory each")
    ax.grid(axis="y", alpha=0.3)

    # (d) publish rate without / with 100k subscriptions.
    ax = axes[1][1]
    names = [s for s in servers if value(doc, "many_subscriptions", s)]
    x = range(len(names))
    base = [value(doc, "many_subscriptions", s, "baseline_rate") or 0 for s in names]
    load = [value(doc, "many_subscriptions", s) or 0 for s in names]
    ax.bar([i - 0.2 for i in x], base, width=0.4, label="without", color="#aaaaaa")
    ax.bar(
        [i + 0.2 for i in x], load, width=0.4, label="with", color=[_COLORS.get(s) for s in names]
    )
    for i, s in enumerate(names):
        lo = value(doc, "many_subscriptions", s, "loaded_over_baseline")
        if lo is not None:
            txt = f"{lo:.2f}x" if lo >= 0.1 else f"{lo:.3f}x"
            ax.text(i + 0.2, load[i], txt, ha="center", va="bottom", fontsize=9)
    subs = (doc["meta"].get("options") or {}).get("subs", 100000)
    ax.set_xticks(list(x), names)
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(short)
    ax.yaxis.set_minor_formatter(FuncFormatter(_minor_label))
    ax.set_ylabel("QoS 0 msgs/s, 1 -> 1 (log)")
    ax.set_title(f"Publish rate without / with {subs:,} subscriptions")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)

    fig.tight_layout(rect=(0, 0, 1, 0.96))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def _short_num(v: float, _pos: object = None) -> str:
    for div, suffix in ((1e6, "M"), (1e3, "k")):
        if v >= div:
            return f"{v / div:g}{suffix}"
    return f"{v:g}"


def _minor_label(v: float, _pos: object = None) -> str:
    # Label the 2x and 5x minor ticks of a log axis, so a short range still has labels.
    if v <= 0:
        return ""
    lead = v / 10 ** math.floor(math.log10(v) + 1e-9)
    return _short_num(v) if round(lead) in (2, 5) and abs(lead - round(lead)) < 1e-6 else ""


def _label(scn: str) -> str:
    return {
        "idle_connections": "idle_connections (conns/s)",
        "many_subscriptions": "many_subscriptions (with subs)",
        "nats_reqrep": "nats_reqrep (round trips/s)",
    }.get(scn, scn)


def generate(
    paths: list[str], md_out: str | None = None, png_out: str | None = None
) -> tuple[Path, Path | None]:
    """Write the report and the chart from ``paths``; return both paths (chart None if skipped)."""
    doc = load(paths)
    md_path = Path(md_out) if md_out else DEFAULT_MD
    png_path = Path(png_out) if png_out else DEFAULT_PNG
    wrote = chart(doc, png_path)
    rel = os.path.relpath(png_path, md_path.parent) if wrote else None
    md_path.write_text(markdown(doc, rel))
    return md_path, png_path if wrote else None
