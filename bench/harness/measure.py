"""One measured flow of messages through a running server: the core of every rate scenario.

``measure_flow`` starts the receivers and waits until each is subscribed, starts the
senders, sends "go" with one clock for all, samples the server's CPU time and the
machine's busy CPU over the window, collects every worker's result and kills the workers.
The caller owns the server (so one server can be measured twice, as ``many_subscriptions``
does).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from .procstat import proc_cpu, proc_rss_kb, proc_write_bytes, system_busy
from .servers import RunningServer
from .workers import Fleet, WorkerError

PUB_TAIL = 0.5  # senders keep going this long past the window, so its end is under load


def collect(fleet: Fleet, srv: RunningServer, deadline: float) -> None:
    """``fleet.collect``; a worker's failure names the server's death if that caused it."""
    try:
        fleet.collect(deadline)
    except WorkerError as e:
        if not srv.alive():
            raise WorkerError(
                f"{e}\n{srv.name} died (code {srv.proc.returncode}); log tail:\n{srv.log_tail()}"
            ) from None
        raise


def check_alive(srv: RunningServer) -> None:
    if not srv.alive():
        raise RuntimeError(f"{srv.name} exited during the run; log tail:\n{srv.log_tail()}")


class RssPeak:
    """The highest VmRSS of ``pid`` seen, reading /proc every ``step`` seconds."""

    def __init__(self, pid: int, step: float = 0.2) -> None:
        self.pid = pid
        self.step = step
        self.kb: int | None = None
        self.sample()

    def sample(self) -> None:
        v = proc_rss_kb(self.pid)
        if v is not None and (self.kb is None or v > self.kb):
            self.kb = v

    def until(self, t: float) -> None:
        """Sample until time.monotonic() reaches ``t``; returns at ``t`` exactly."""
        while True:
            left = t - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, self.step))
            self.sample()


def measure_flow(
    srv: RunningServer,
    metric: str,
    specs: list[Any],
    warmup: float,
    duration: float,
    ready_timeout: float = 20.0,
    after: Callable[[], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Run ``specs`` (RoleSpecs) against ``srv``; return the aggregated result dict. The
    server's RSS is sampled every 0.2 s from the start to the end of the run
    (``server_rss_peak_kb``); roles of kinds other than pub/sub (a ping probe, say) are
    only reported under ``workers``. ``after`` runs once every result is in but before the
    workers are stopped (to stop the server with its clients still connected, say); what it
    returns is ``out["after"]``."""
    with Fleet() as fleet:
        recv = [fleet.spawn(s.name, s.kind, s.role_cls, **s.params) for s in specs if s.receiver]
        fleet.wait_ready(recv, ready_timeout)
        send = [
            fleet.spawn(s.name, s.kind, s.role_cls, **s.params) for s in specs if not s.receiver
        ]
        fleet.wait_ready(send, ready_timeout)
        t0, t1, t_stop = fleet.go(warmup, duration, PUB_TAIL)
        peak = RssPeak(srv.pid)
        peak.until(t0)
        cpu0, sys0, c0 = proc_cpu(srv.pid), system_busy(), time.monotonic()
        wb0 = proc_write_bytes(srv.pid)
        peak.until(t1)
        cpu1, sys1, c1 = proc_cpu(srv.pid), system_busy(), time.monotonic()
        wb1 = proc_write_bytes(srv.pid)
        rss = proc_rss_kb(srv.pid)
        peak.until(t_stop)
        collect(fleet, srv, t_stop + 30.0)
        workers = [(w.name, w.kind, w.result or {}) for w in fleet.workers]
        check_alive(srv)
        extra = after() if after is not None else None
    out = aggregate(metric, workers, cpu0, cpu1, c1 - c0, rss)
    out["server_rss_peak_kb"] = peak.kb
    if extra is not None:
        out["after"] = extra
    # What the rest of the machine used meanwhile: busy CPU minus the server and the
    # generators. Other work on a 2-core box takes CPU from the server under test.
    ours = (out["server_cpu"] or 0.0) + sum(r.get("cpu", 0.0) for _, _, r in workers)
    out["other_cpu"] = max(0.0, (sys1 - sys0) / (c1 - c0) - ours)
    # Shows whether the server wrote messages to storage during the window (persistence).
    out["server_write_Bps"] = (
        (wb1 - wb0) / (c1 - c0) if wb0 is not None and wb1 is not None else None
    )
    return out


def aggregate(
    metric: str,
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
    if metric == "kv":
        # kv_latency: round trips/s (puts and gets), each kind's latency percentiles.
        req = next(r for _, k, r in workers if k == "req")
        out["rate"] = req["rate"]
        out.update({k: v for k, v in req.items() if k.startswith(("put_", "get_", "bad_"))})
        out["gen_cpu"] = req["cpu"]
        return out
    if metric == "latency":
        req = next(r for _, k, r in workers if k == "req")
        out["rate"] = req["rate"]
        for key in ("p50_us", "p90_us", "p99_us", "p999_us", "max_us", "mean_us", "samples"):
            out[key] = req.get(key)
        out["gen_cpu"] = max(r["cpu"] for _, _, r in workers)
        return out
    out["rate"] = sum(r["rate"] for r in subs)
    out["sent_rate"] = sum(r["rate"] for r in pubs) if pubs else None
    out["pub_cpu"] = max((r["cpu"] for r in pubs), default=None)
    out["sub_cpu"] = max((r["cpu"] for r in subs), default=None)
    if metric == "js_publish":
        # Acked publishes are the result; what was written (up to the window ahead) is
        # sent_rate, and error PubAcks are counted apart.
        out["rate"] = sum(r["ack_rate"] for r in pubs)
        out["errors"] = sum(r.get("errors", 0) for r in pubs)
        return out
    acks = [r["ack_rate"] for r in pubs if "ack_rate" in r]
    if acks:
        # QoS 1/2: what the publisher got acknowledged (PUBACK / PUBCOMP) is its rate; what
        # it merely handed to the kernel (up to the in-flight window ahead) is kept as
        # sent_raw_rate.
        out["sent_raw_rate"] = out["sent_rate"]
        out["sent_rate"] = sum(acks)
    return out
