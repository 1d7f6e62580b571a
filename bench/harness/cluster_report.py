"""The "Clustering" block of BENCHMARKS.md and issue 17's targets, from the cluster
scenarios' results (``cluster``, ``cluster_sessions``). ``report`` calls
``cluster_targets`` and ``cluster_block``; both take the merged results document and
``report.value`` (scenario, server, key -> float or None).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

SCENARIOS = (
    "cluster_qos0",
    "cluster_qos1",
    "cluster_relink",
    "cluster_failover",
    "cluster_takeover",
)
KINDS = ("hybridbus", "nats-server")
NS = "nats-server"

Value = Callable[[dict[str, Any], str, str, str], "float | None"]


def _n(x: float | None, spec: str = ",.0f") -> str:
    return "-" if x is None else format(x, spec)


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{1000 * x:,.1f}"


def cluster_targets(doc: dict[str, Any], value: Value) -> list[dict[str, Any]]:
    out = []
    for qos in (0, 1):
        scn = f"cluster_qos{qos}"
        a, b = value(doc, scn, "hybridbus", "rate"), value(doc, scn, NS, "rate")
        x = a / b if a and b else None
        out.append(
            dict(
                target=f"Cluster: MQTT A -> B QoS {qos} >= nats-server as the leaf",
                measured=f"{x:.2f}x ({_n(a)} vs {_n(b)} msgs/s, `{scn}`)"
                if x is not None
                else f"n/a (`{scn}`)",
                ok=None if x is None else x >= 1.0,
            )
        )
    a = value(doc, "cluster_failover", "hybridbus", "connack_s")
    b = value(doc, "cluster_failover", NS, "connack_s")
    a_all = value(doc, "cluster_failover", "hybridbus", "failover_s")
    b_all = value(doc, "cluster_failover", NS, "failover_s")
    out.append(
        dict(
            target="Cluster: failover (kill -9 A to CONNACK with session present on B; "
            "then every queued QoS 1 message) no slower than nats-server",
            measured=f"CONNACK {_ms(a)} vs {_ms(b)} ms, every message {_ms(a_all)} vs "
            f"{_ms(b_all)} ms (medians, `cluster_failover`)"
            if None not in (a, b, a_all, b_all)
            else "n/a (`cluster_failover`)",
            ok=None if None in (a, b, a_all, b_all) else a <= b and a_all <= b_all,
        )
    )
    parts, worse = [], []
    for key in ("takeover_p50_s", "takeover_p99_s"):
        a = value(doc, "cluster_takeover", "hybridbus", key)
        b = value(doc, "cluster_takeover", NS, key)
        if a is not None and b is not None:
            parts.append(f"{key[9:12]} {_ms(a)} vs {_ms(b)} ms")
            worse.append(a > b)
    out.append(
        dict(
            target="Cluster: takeover across nodes (old connection closed) no slower than "
            "nats-server, p50 and p99",
            measured=", ".join(parts) + " (`cluster_takeover`)"
            if parts
            else "n/a (`cluster_takeover`)",
            ok=None if len(worse) < 2 else not any(worse),
        )
    )
    return out


# (label, scenario, key, unit); unit "ms" values are stored in seconds.
ROWS = [
    ("QoS 0 A -> B", "cluster_qos0", "rate", "msgs/s"),
    ("QoS 0 sent by the publisher on A", "cluster_qos0", "sent_rate", "msgs/s"),
    ("QoS 0 A -> A, link up", "cluster_qos0", "local_rate", "msgs/s"),
    ("QoS 0 single node", "cluster_qos0", "single_rate", "msgs/s"),
    ("QoS 0 A -> B / single node", "cluster_qos0", "over_single", "ratio"),
    ("QoS 0 A -> B, CPU of A + B per message", "cluster_qos0", "us_per_msg", "us"),
    ("QoS 0 A -> B, CPU of A per message it read", "cluster_qos0", "node:A", "us"),
    ("QoS 0 A -> B, CPU of B per message it delivered", "cluster_qos0", "node:B", "us"),
    ("QoS 1 A -> B", "cluster_qos1", "rate", "msgs/s"),
    ("QoS 1 A -> A, link up", "cluster_qos1", "local_rate", "msgs/s"),
    ("QoS 1 single node", "cluster_qos1", "single_rate", "msgs/s"),
    ("QoS 1 A -> B / single node", "cluster_qos1", "over_single", "ratio"),
    ("QoS 1 A -> B, CPU of A + B per message", "cluster_qos1", "us_per_msg", "us"),
    ("QoS 1 A -> B, CPU of A per message", "cluster_qos1", "node:A", "us"),
    ("QoS 1 A -> B, CPU of B per message", "cluster_qos1", "node:B", "us"),
    ("relink: the hub lists A again (median)", "cluster_relink", "relink_s", "ms"),
    ("relink: A's own /leafz lists a link", "cluster_relink", "leaf_relink_s", "ms"),
    ("relink: first QoS 0 A -> B sent after the kill", "cluster_relink", "flow_s", "ms"),
    ("relink: first QoS 1 A -> B sent after the kill", "cluster_relink", "flow_q1_s", "ms"),
    ("relink: first QoS 1, worst round", "cluster_relink", "flow_q1_max_s", "ms"),
    (
        "relink: first QoS 1 PUBACK on A for a message sent after the kill",
        "cluster_relink",
        "puback_s",
        "ms",
    ),
    ("relink: first PUBACK, worst round", "cluster_relink", "puback_max_s", "ms"),
    ("failover: kill -9 A to CONNACK on B (median)", "cluster_failover", "connack_s", "ms"),
    ("failover: kill -9 A to its connections closed", "cluster_failover", "down_s", "ms"),
    ("failover: A's connections closed to CONNACK on B", "cluster_failover", "survivor_s", "ms"),
    ("failover: kill -9 A to every queued message", "cluster_failover", "failover_s", "ms"),
    ("failover: worst round", "cluster_failover", "failover_max_s", "ms"),
    ("takeover: old connection closed, p50", "cluster_takeover", "takeover_p50_s", "ms"),
    ("takeover: old connection closed, p99", "cluster_takeover", "takeover_p99_s", "ms"),
    ("takeover: new CONNACK, p50", "cluster_takeover", "connack_p50_s", "ms"),
]


def node_cost(doc: dict[str, Any], scn: str, kind: str, node: str) -> float | None:
    """Median over the runs of one leaf's CPU per message in the A -> B window (us): A's
    over what the publisher sent (A reads and forwards all of it), B's over what the
    subscriber received (B delivers what it reads; the backlog stays in the hub)."""
    r = doc["scenarios"].get(scn, {}).get("results", {}).get(kind) or {}
    vals = []
    for run in r.get("runs") or []:
        ab = run.get("a_to_b") or {}
        cpu = (ab.get("cpu") or {}).get(node)
        n = ab.get("sent_rate") if node == "A" else ab.get("rate")
        if cpu is not None and n:
            vals.append(1e6 * cpu / n)
    vals.sort()
    if not vals:
        return None
    k = len(vals) // 2
    return vals[k] if len(vals) % 2 else (vals[k - 1] + vals[k]) / 2


def _cell(x: float | None, unit: str) -> str:
    if unit == "ms":
        return _ms(x)
    if unit == "ratio":
        return _n(x, ".2f")
    if unit == "us":
        return _n(x, ",.1f")
    return _n(x)


def _source_meta(doc: dict[str, Any], scn: str) -> dict[str, Any]:
    src = doc["scenarios"].get(scn, {}).get("source")
    for s in doc.get("sources", []):
        if s.get("path") == src:
            return s
    return {}


def _runs(doc: dict[str, Any], scn: str, kind: str) -> str:
    r = doc["scenarios"].get(scn, {}).get("results", {}).get(kind) or {}
    if "error" in r:
        return "FAILED: " + r["error"].strip().splitlines()[0][:200]
    runs = r.get("runs") or []
    if scn in ("cluster_qos0", "cluster_qos1"):
        return "; ".join(
            f"run {i + 1}: A->B {_n(x['a_to_b'].get('rate'))}, A->A "
            f"{_n(x['a_to_a'].get('rate'))}, single {_n(x['single'].get('rate'))}"
            for i, x in enumerate(runs)
        )
    if scn == "cluster_relink":
        rounds = [rd for x in runs for rd in x.get("rounds", [])]
        return "; ".join(
            f"relink {_ms(rd['relink_s'])}, q0 {_ms(rd['flow_s'])}, q1 {_ms(rd['flow_q1_s'])}"
            f", PUBACK {_ms(rd.get('puback_s'))} ms"
            + (" (B on it too)" if rd.get("b_on_killed") else "")
            for rd in rounds
        )
    if scn == "cluster_failover":
        rounds = [rd for x in runs for rd in x]
        return "; ".join(
            f"down {_ms(rd.get('down_s'))}, CONNACK {_ms(rd['connack_s'])}, "
            f"all {_ms(rd['failover_s'])} ms"
            + ("" if rd.get("session_present") else " (no session)")
            + (f" ({rd['received']} recv)" if rd.get("received") != r.get("msgs") else "")
            for rd in rounds
        )
    if scn == "cluster_takeover":
        parts = []
        for i, x in enumerate(runs):
            closes = sorted(rd["close_s"] for rd in x if rd.get("close_s") is not None)
            if closes:
                parts.append(
                    f"run {i + 1}: {len(closes)}/{len(x)} closed, min {_ms(closes[0])}, "
                    f"median {_ms(closes[len(closes) // 2])}, max {_ms(closes[-1])} ms"
                )
        return "; ".join(parts)
    return ""


def cluster_block(doc: dict[str, Any], value: Value) -> list[str]:
    present = [s for s in SCENARIOS if s in doc["scenarios"]]
    if not present:
        return []
    meta = _source_meta(doc, present[0])
    counts = sorted(
        {
            len(r.get("runs") or [])
            for scn in present
            for r in doc["scenarios"][scn].get("results", {}).values()
            if "runs" in r
        }
    )
    times = "?" if not counts else "-".join(str(c) for c in sorted({counts[0], counts[-1]}))
    mach = meta.get("machine") or {}
    mem = mach.get("mem_total_kb")
    vers = meta.get("versions") or {}
    L = ["## Clustering", ""]
    L.append(
        f"Run {meta.get('started', '?')} on {mach.get('nproc', '?')} CPUs "
        f"({mach.get('cpu_model', '?')}), {(mem / 1048576) if mem else 0:.1f} GiB RAM, "
        f"Linux {mach.get('kernel', '?')}, loopback; hybridbus {vers.get('hybridbus', '?')}, "
        f"nats-server {vers.get(NS, '?')}. The hub is three nats-servers (routes, clustered "
        "JetStream in domain `hub`, `leafnodes { listen }`); leaf nodes A and B are both "
        "hybridbus (`hybridbus serve -c <conf> -n hb-a`) or both nats-server, each with one "
        "remote listing all three members and `mqtt { js_domain: hub, stream_replicas: 3 }`. "
        "MQTT 3.1.1 (nats-server's MQTT has no 5.0), 64 B payloads, the suite's raw-socket "
        f"generators. Each scenario ran {times} times per server, each run on a fresh hub "
        "(the kill scenarios 3 rounds per run); the figure is the median over all runs "
        "(rounds), every one is listed below. All processes (3 hub members, 2 leaves, the "
        "generators) share the machine's cores.",
    )
    L.append("")
    L.append("| figure | unit | hybridbus leaf | nats-server leaf | hybridbus/nats-server |")
    L.append("|---|---|---:|---:|---:|")
    for label, scn, key, unit in ROWS:
        if scn not in doc["scenarios"]:
            continue
        if key.startswith("node:"):
            a, b = (node_cost(doc, scn, k, key[5:]) for k in KINDS)
        else:
            a, b = value(doc, scn, "hybridbus", key), value(doc, scn, NS, key)
        x = a / b if a and b and unit != "ratio" else None
        shown = "ms" if unit == "ms" else unit
        L.append(
            f"| {label} | {shown} | {_cell(a, unit)} | {_cell(b, unit)} | "
            f"{'-' if x is None else f'{x:.2f}x'} |"
        )
    L.append("")
    L.append(
        "Lower is better for ms and us. QoS 0: a nats-server leaf A forwards what it reads "
        "and the hub queues for B up to its pending limit (its publisher sends more than B "
        "gets); a hybridbus leaf A stops reading its publisher while 1 MiB waits for the hub, "
        "so sent and received stay close. The A -> B figure is what B delivers, and the CPU "
        "per message is over the messages delivered. Relink: SIGKILL of the hub member A is linked to "
        "(from the members' /leafz), then polled every 20 ms; QoS 0 and QoS 1 ticks go from "
        "A to B every 10 ms and the figure is the first tick sent after the kill that B "
        "receives. Failover: a persistent session (clean session 0, QoS 1 filter) made on A "
        "and left offline, QoS 1 messages published on B and PUBACKed, SIGKILL of A, the "
        "same client id reconnecting to B once a connection of the harness to A is closed "
        "(as a device learns of the death). The kernel closes a killed process's sockets "
        "after freeing its memory, so the time to that close grows with the process's "
        "resident memory (measured here: about 0.1 ms per MB; nats-server holds about 4 MB "
        "of anonymous memory, a hybridbus node about 22 MB, mostly the Python interpreter "
        "and its modules). Takeover: a fresh client id per round connected "
        "(clean session 0) on one node, then on the other; time from the new TCP connect to "
        "the old node closing the old connection."
    )
    L.append("")
    noisy = [
        f"`{scn}`/{kind} ({r['other_cpu']:.2f})"
        for scn in present
        for kind, r in doc["scenarios"][scn].get("results", {}).items()
        if isinstance(r.get("other_cpu"), (int, float)) and r["other_cpu"] > 0.25
    ]
    if noisy:
        L.append(
            "Other load (busy CPU beyond the hub, the leaves and the generators, worst A -> B "
            "window; it includes loopback network work charged to no process, and the path "
            "here has twice the TCP hops of a single node): " + ", ".join(noisy) + "."
        )
        L.append("")
    L.append("Every run:")
    L.append("")
    for scn in present:
        for kind in KINDS:
            txt = _runs(doc, scn, kind)
            if txt:
                L.append(f"- `{scn}` / {kind}: {txt}")
    L.append("")
    return L


def merge(paths: list[str], out: str) -> dict[str, Any]:
    """One results file from several runs of the cluster scenarios: every scenario's runs
    per server put together (in file order) and summarized again, so the report's
    medians are over all of them. The first file's meta stays, with the files named in
    ``merged_from``; a failed server result is kept only when no file has runs for it."""
    import json
    from pathlib import Path

    from .cluster import summarize_rate, summarize_relink
    from .cluster_sessions import summarize_failover, summarize_takeover

    docs = [json.loads(Path(p).read_text()) for p in paths]
    base = dict(docs[0])
    meta = dict(base.get("meta", {}))
    meta.update(merged_from=[str(p) for p in paths])
    base.update(meta=meta, scenarios={}, warnings=[w for d in docs for w in d.get("warnings", [])])
    for scn in SCENARIOS:
        entries = [d["scenarios"][scn] for d in docs if scn in d.get("scenarios", {})]
        if not entries:
            continue
        results: dict[str, Any] = {}
        for kind in KINDS:
            got = [e["results"][kind] for e in entries if kind in e.get("results", {})]
            runs = [run for r in got if "runs" in r for run in r["runs"]]
            if not runs:
                if got:
                    results[kind] = got[-1]
                continue
            if scn in ("cluster_qos0", "cluster_qos1"):
                results[kind] = summarize_rate(runs)
            elif scn == "cluster_relink":
                results[kind] = summarize_relink(runs)
            elif scn == "cluster_failover":
                results[kind] = summarize_failover(runs, got[0].get("msgs", 0))
            else:
                results[kind] = summarize_takeover(runs)
        entry = dict(entries[0], results=results)
        a, b = (results.get(k, {}).get("rate") for k in KINDS)
        entry["hybridbus_ratio"] = {NS: a / b if a and b else None}
        base["scenarios"][scn] = entry
    Path(out).write_text(json.dumps(base, indent=2, default=str) + "\n")
    return base


if __name__ == "__main__":
    import sys

    if len(sys.argv) < 4 or sys.argv[1] != "merge":
        sys.exit(
            "usage: python -m bench.harness.cluster_report merge IN.json [IN.json ...] OUT.json"
        )
    merge(sys.argv[2:-1], sys.argv[-1])
