"""Profile hybridbus on the leaf path: MQTT publisher on leaf A -> subscriber on leaf B.

    .venv/bin/python -m bench.harness.profile_cluster [--qos 0|1] [--secs 8] [--lines]

Starts a 3-member nats-server hub and two hybridbus leaf nodes as ``cluster_qos0`` does
(``cluster.Pair``), then runs the suite's MQTT publisher on A and subscriber on B twice:
first without sampling, for the rate and each process's CPU time per message (A, B, the
hub members; microseconds over the window), then with ``py-spy record --nonblocking``
(200 Hz) on A and on B at once, for where each node's time goes (self and inclusive
shares per function, from the collapsed stacks kept in /tmp/profile_cluster_[ab].txt).
Profiling slows the nodes: take rates from the first window, proportions from the second.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

from .cluster import Pair, _specs, flow
from .measure import collect
from .profile_js import _py_spy, summarize
from .scenarios import Options
from .workers import Fleet


def _io(pid: int) -> dict[str, int]:
    """/proc/<pid>/io: read and write syscalls and their bytes (sockets included)."""
    try:
        with open(f"/proc/{pid}/io") as f:
            return {k: int(v) for k, v in (line.split(": ") for line in f)}
    except OSError:
        return {}


def _cpu_window(p: Pair, o: Options, qos: int) -> None:
    assert p.a is not None and p.b is not None
    nodes = {"A": p.a.pid, "B": p.b.pid}
    nodes.update({f"hub{k + 1}": pid for k, pid in enumerate(p.hub.pids())})
    io0 = {k: _io(pid) for k, pid in nodes.items()}
    r = flow(_specs(p.a, p.b, o, qos, f"bench/prof{qos}"), p.a, nodes, o)
    io1 = {k: _io(pid) for k, pid in nodes.items()}
    rate = r["rate"] or 0.0
    print(f"A -> B QoS {qos}: {rate:,.0f} msgs/s received, {r.get('sent_rate') or 0:,.0f} sent")
    for k in ("A", "B"):
        d = {f: io1[k].get(f, 0) - io0[k].get(f, 0) for f in io1[k]}
        # over the whole flow (warm-up and tail too): sizes, not rates
        print(
            f"  {k}: {d.get('syscr', 0):,} reads of {d.get('rchar', 0) / max(1, d.get('syscr', 1)):,.0f} B"
            f", {d.get('syscw', 0):,} writes of {d.get('wchar', 0) / max(1, d.get('syscw', 1)):,.0f} B"
        )
    for k, c in r["cpu"].items():
        if c is not None:
            per = f", {1e6 * c / rate:.2f} us/msg" if rate else ""
            print(f"  cpu {k:<5} {c:6.0%}{per}")
    print(f"  other cpu {r.get('other_cpu') or 0:.2f} cores")


def _profiled_window(p: Pair, o: Options, qos: int, secs: float, lines: bool) -> None:
    assert p.a is not None and p.b is not None
    spy = _py_spy()
    with Fleet() as fleet:
        for s in _specs(p.a, p.b, o, qos, f"bench/prof{qos}b"):
            w = fleet.spawn(s.name, s.kind, s.role_cls, **s.params)
            fleet.wait_ready([w])
            if s.receiver:
                time.sleep(1.0)  # B's interest reaches A through the hub
        t0, t1, t_stop = fleet.go(1.0, secs, 0.5)
        time.sleep(max(0.0, t0 - time.monotonic()))
        recs = []
        for tag, srv in (("a", p.a), ("b", p.b)):
            argv = [spy, "record", "--pid", str(srv.pid), "--nonblocking", "--rate", "200"]
            argv += ["--duration", str(int(secs)), "--format", "raw"]
            argv += ["-o", f"/tmp/profile_cluster_{tag}.txt"]
            recs.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT))
        for rec in recs:
            rec.wait(secs + 30)
        collect(fleet, p.a, t_stop + 30.0)
        sub = next(w.result for w in fleet.workers if w.kind == "sub") or {}
        print(f"\nwhile sampled: {sub.get('rate', 0):,.0f} msgs/s received")
    for tag in ("a", "b"):
        print(f"\n==== node {tag.upper()} (py-spy, /tmp/profile_cluster_{tag}.txt)")
        print(summarize(f"/tmp/profile_cluster_{tag}.txt", lines, top=25))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="profile_cluster", description=__doc__.split("\n\n")[0])
    ap.add_argument("--qos", type=int, default=0, choices=[0, 1])
    ap.add_argument("--secs", type=float, default=8.0)
    ap.add_argument("--lines", action="store_true", help="per line rather than per function")
    ap.add_argument("--no-profile", action="store_true", help="only the CPU per message")
    a = ap.parse_args(argv)
    o = Options(duration=a.secs)
    with Pair("hybridbus") as p:
        _cpu_window(p, o, a.qos)
        if not a.no_profile:
            _profiled_window(p, o, a.qos, a.secs, a.lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
