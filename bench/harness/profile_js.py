"""Profile hybridbus under a JetStream load with py-spy: where the server's time goes.

    .venv/bin/python -m bench.harness.profile_js pub|pull|kv [--secs 8] [--prefill 500000]
        [--svg PATH] [--lines] [--cpu] [--server nats-server]

Starts hybridbus (JetStream, file storage, a temp dir) as the suite does, runs the
scenario's generator role (the same as js_publish / js_pull / kv_latency), and while the
load runs samples the server with ``py-spy record --nonblocking`` (200 Hz; py-spy must be
installed: ``.venv/bin/pip install py-spy``). Prints the role's result, the server's CPU,
then the functions by self time and by inclusive time (``--lines``: per line), from the
collapsed stacks (kept in ``/tmp/profile_js_<scenario>.txt``); ``--svg`` also writes a
flame graph (a second py-spy sampling the same window). Profiling costs the server some speed, so
take rates from the suite and proportions from here.

``--cpu`` samples nothing: it prints the server's CPU time per message over the window
(microseconds; for ``pub`` per acked publish, for ``pull`` per message consumed and acked,
for ``kv`` per round trip, a put or a get). On a machine shared with other work this is
steadier than a rate: it measures what an optimisation saves, not what the neighbours
took. ``--server nats-server`` measures the reference the same way.
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from . import servers
from .jetstream import prefill
from .loadgen_js import JsPublisher, JsPuller, KvClient, stream_config
from .measure import collect
from .procstat import proc_cpu
from .scenarios import Options
from .workers import Fleet


def _py_spy() -> str:
    for cand in (servers.VENV_BIN / "py-spy", Path(sys.prefix) / "bin" / "py-spy"):
        if cand.is_file():
            return str(cand)
    found = shutil.which("py-spy")
    if not found:
        raise SystemExit("py-spy not found: .venv/bin/pip install py-spy")
    return found


def summarize(path: str, lines: bool = False, top: int = 30) -> str:
    """Self and inclusive shares per function (or line) from py-spy's raw output."""
    own: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    for row in Path(path).read_text().splitlines():
        stack, _, n = row.rpartition(" ")
        if not n.isdigit():
            continue
        k = int(n)
        total += k
        frames = [
            re.sub(r" \(/\S*?/(hybridbus|json|asyncio)/", r" (\1/", f) for f in stack.split(";")
        ]
        frames = [f for f in frames if not f.startswith(("process ", "thread "))]
        if not lines:
            frames = [re.sub(r":\d+\)$", ")", f) for f in frames]
        if frames:
            own[frames[-1]] += k
        for f in set(frames):
            incl[f] += k
    out = [f"samples {total}", "-- self --"]
    out += [f"{100 * k / total:5.1f}% {f}" for f, k in own.most_common(top)]
    out.append("-- inclusive --")
    out += [
        f"{100 * k / total:5.1f}% {f}"
        for f, k in incl.most_common(top + 12)
        if "click/" not in f and "cli.py" not in f
    ]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="profile_js", description=__doc__.split("\n\n")[0])
    p.add_argument("scenario", choices=["pub", "pull", "kv"])
    p.add_argument("--secs", type=float, default=8.0)
    p.add_argument("--prefill", type=int, default=500000, help="js_pull's stream (500000)")
    p.add_argument("--svg", help="also write a flame graph here")
    p.add_argument("--lines", action="store_true", help="per line rather than per function")
    p.add_argument("--cpu", action="store_true", help="no profile: server CPU per message")
    p.add_argument("--server", default="hybridbus", help="with --cpu: hybridbus or nats-server")
    a = p.parse_args(argv)
    spy = "" if a.cpu else _py_spy()
    raw = f"/tmp/profile_js_{a.scenario}.txt"
    o = Options(js_prefill=a.prefill)
    srv = servers.start(a.server if a.cpu else "hybridbus", "jetstream")
    msgs = 0
    try:
        host, port = srv.host, srv.nats_port
        if a.scenario == "pull":
            print("prefill:", prefill(srv, o, "BENCHP", "bench.pull"), flush=True)
        with Fleet() as fleet:
            if a.scenario == "pub":
                cfg = stream_config("BENCH", ["bench.js"])
                fleet.spawn(
                    "pub", "pub", JsPublisher, host=host, port=port, subject="bench.js", stream=cfg
                )
            elif a.scenario == "pull":
                fleet.spawn("pull", "sub", JsPuller, host=host, port=port, stream="BENCHP")
            else:
                fleet.spawn("kv", "req", KvClient, host=host, port=port)
            fleet.wait_ready(fleet.workers)
            t0, t1, t_stop = fleet.go(1.0, a.secs, 0.5)
            time.sleep(max(0.0, t0 - time.monotonic()))
            c0 = proc_cpu(srv.pid)
            base = [spy, "record", "--pid", str(srv.pid), "--nonblocking", "--rate", "200"]
            base += ["--duration", str(int(a.secs))]
            outs = [["--format", "raw", "-o", raw]] + ([["-o", a.svg]] if a.svg else [])
            recs = [
                subprocess.Popen([*base, *o], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
                for o in ([] if a.cpu else outs)
            ]
            time.sleep(max(0.0, t1 - time.monotonic()))
            c1 = proc_cpu(srv.pid)
            for rec in recs:
                rec.wait(30)
            collect(fleet, srv, t_stop + 30.0)
            for w in fleet.workers:
                r = w.result or {}
                print(w.name, {k: round(v, 2) if isinstance(v, float) else v for k, v in r.items()})
                # messages in the window: acked publishes, or what the role counted
                rate = r.get("ack_rate", r.get("rate", 0.0)) or 0.0
                msgs += r.get("count", 0) if "ack_rate" not in r else int(rate * r["elapsed"])
        if c0 is not None and c1 is not None:
            print(f"server cpu {(c1 - c0) / a.secs:.0%} over {a.secs:g} s")
            if msgs:
                print(f"server cpu per message {1e6 * (c1 - c0) / msgs:.2f} us ({msgs} msgs)")
    finally:
        srv.stop()
    if not a.cpu:
        print(summarize(raw, a.lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
