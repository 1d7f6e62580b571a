"""Runners of the scale scenarios: idle_connections, many_subscriptions, retained_replay.

Theory of operation: unlike the rate scenarios these run in phases on one server. A phase
is a Fleet of generator processes (see ``loadgen_scale``) that all start at one ``t_go``
and report when they finished; the phase lasts until the last one finished, and is cut off
at ``scale_timeout`` seconds. Around each phase the runner reads the server's CPU time,
the machine's busy CPU (for ``other_cpu``, as in the rate scenarios) and, where memory is
the point, the server's RSS from /proc once it has stopped moving.

- idle_connections: RSS before; N connections spread over ``idle_procs`` processes; the
  connect rate is N / (last CONNACK - t_go); RSS after; the per-connection cost is
  (after - before) / N. N is capped by the file descriptors the server may open.
- many_subscriptions: QoS 0 1 -> 1 on ``bench/hot`` (the baseline), then 100,000 filters
  ``bench/s/<i>`` on other connections, then the same QoS 0 run again with those
  subscriptions in place; the result is both rates and loaded / baseline.
- retained_replay: a publisher stores 100,000 retained QoS 1 messages on distinct topics
  (every PUBACK in); then a new client subscribes to ``#`` and the runner times the
  arrival of all of them.
"""

from __future__ import annotations

import time
from typing import Any

from . import servers
from .loadgen_mqtt import MqttPublisher, MqttSubscriber
from .loadgen_scale import IdleConnector, RetainedPublisher, RetainedReplayer, SubscriptionHolder
from .measure import check_alive, collect, measure_flow
from .procstat import (
    proc_cpu,
    proc_fds,
    proc_rss_kb,
    settled_rss_kb,
    sleep_until,
    system_busy,
    varz_mem,
)
from .workers import Fleet

MIN_SPAN = 1.0  # seconds: shortest phase whose other_cpu is reported
FD_RESERVE = 100  # descriptors a server needs besides client connections (listeners, store, ...)


def idle_count(requested: int) -> tuple[int, str]:
    """How many idle connections to open, and a note when the fd limit lowered it."""
    limit = servers.fd_limit()
    cap = limit - FD_RESERVE
    if requested > cap:
        return cap, (
            f"{requested:,} idle connections asked for, {cap:,} opened: a server may open "
            f"at most {limit:,} files here (hard RLIMIT_NOFILE; raising it needs "
            "CAP_SYS_RESOURCE)"
        )
    return requested, ""


def _phase(fleet: Fleet, srv: servers.RunningServer, timeout: float) -> dict[str, Any]:
    """Start every worker of ``fleet`` at once, wait for all results (bounded); return
    the results and the phase's wall time, server CPU and other processes' CPU."""
    fleet.wait_ready(fleet.workers, timeout=120.0)
    t_go, _, t_stop = fleet.go(0.0, timeout, 0.0)
    sleep_until(t_go)
    cpu0, sys0 = proc_cpu(srv.pid), system_busy()
    collect(fleet, srv, t_stop + 30.0)
    cpu1, sys1, c1 = proc_cpu(srv.pid), system_busy(), time.monotonic()
    results = {w.name: dict(w.result or {}) for w in fleet.workers}
    t_done = max(r["t_done"] for r in results.values())
    wall = max(1e-9, t_done - t_go)
    span = max(1e-9, c1 - t_go)
    srv_cpu = (cpu1 - cpu0) / span if cpu0 is not None and cpu1 is not None else None
    gen = sum(r.get("cpu", 0.0) * r.get("elapsed", 0.0) for r in results.values()) / span
    # /proc/stat counts in clock ticks (10 ms): over a phase shorter than MIN_SPAN the
    # difference is mostly rounding, so no figure is given.
    other = max(0.0, (sys1 - sys0) / span - (srv_cpu or 0.0) - gen) if span >= MIN_SPAN else None
    for r in results.values():
        r.pop("t_done", None)
    return {
        "results": results,
        "wall": wall,
        "server_cpu": srv_cpu,
        "gen_cpu": max((r.get("cpu", 0.0) for r in results.values()), default=0.0),
        "other_cpu": other,
    }


def _max_known(*values: float | None) -> float | None:
    known = [v for v in values if v is not None]
    return max(known) if known else None


# ---------------------------------------------------------------- idle_connections


def run_idle_connections(scn: Any, server_name: str, opts: Any) -> dict[str, Any]:
    n, note = idle_count(opts.idle_conns)
    srv = servers.start(server_name, scn.mode)
    try:
        time.sleep(0.5)
        fds0 = proc_fds(srv.pid) or 0
        limit = servers.fd_limit()
        if fds0 + n + 16 > limit:
            n = max(1, limit - fds0 - 16)
            note = (note + "; " if note else "") + f"lowered to {n:,} ({fds0} fds at start)"
        rss0 = settled_rss_kb(srv.pid, max_wait=3.0)
        varz0 = varz_mem(srv.http_port)
        procs = max(1, min(opts.idle_procs, n))
        base, extra = divmod(n, procs)
        with Fleet() as fleet:
            for i in range(procs):
                fleet.spawn(
                    f"conn{i}",
                    "conn",
                    IdleConnector,
                    host=srv.host,
                    port=srv.mqtt_port,
                    count=base + (1 if i < extra else 0),
                    inflight=opts.idle_inflight,
                    keepalive=0,
                    prefix=f"idle{i}",
                    source=f"127.0.{101 + i}.1",
                )
            ph = _phase(fleet, srv, opts.scale_timeout)
            check_alive(srv)
            rss1 = settled_rss_kb(srv.pid)
            varz1 = varz_mem(srv.http_port)
            fds1 = proc_fds(srv.pid)
            fleet.release()
        check_alive(srv)
    finally:
        srv.stop()
    res = ph["results"]
    connected = sum(r["connected"] for r in res.values())
    failed = sum(r["failed"] for r in res.values())
    timed_out = sum(r["timed_out"] for r in res.values())
    if not connected:
        errs = [e for r in res.values() for e in r.get("errors", [])]
        raise RuntimeError(f"no connection accepted: {'; '.join(errs[:3])}")
    out: dict[str, Any] = {
        "rate": connected / ph["wall"],
        "connections": connected,
        "requested": opts.idle_conns,
        "target": n,
        "failed": failed,
        "timed_out": timed_out,
        "connect_s": ph["wall"],
        "rss_before_kb": rss0,
        "rss_after_kb": rss1,
        "rss_per_conn_bytes": (
            (rss1 - rss0) * 1024 / connected if rss0 is not None and rss1 is not None else None
        ),
        "varz_mem_before": varz0,
        "varz_mem_after": varz1,
        "fds_before": fds0,
        "fds_after": fds1,
        "server_cpu": ph["server_cpu"],
        "gen_cpu": ph["gen_cpu"],
        "other_cpu": ph["other_cpu"],
        "workers": res,
    }
    notes = [note] if note else []
    if connected < n:
        errs = sorted({e for r in res.values() for e in r.get("errors", [])})
        notes.append(
            f"only {connected:,} of {n:,} connected ({failed} failed, {timed_out} timed out)"
            + (f": {'; '.join(errs[:3])}" if errs else "")
        )
    if notes:
        out["note"] = "; ".join(notes)
    return out


# ---------------------------------------------------------------- many_subscriptions


def _hot_specs(srv: servers.RunningServer, opts: Any, tag: str) -> list[Any]:
    from .scenarios import RoleSpec

    sub = dict(
        host=srv.host,
        port=srv.mqtt_port,
        topic="bench/hot",
        qos=0,
        conns=1,
        client_prefix=f"bench-sub-{tag}",
        lowat=opts.lowat,
    )
    pub = dict(
        host=srv.host,
        port=srv.mqtt_port,
        topic="bench/hot",
        qos=0,
        payload_size=opts.payload,
        batch=opts.mqtt_batch,
        window=opts.mqtt_window,
        client_id=f"bench-pub-{tag}",
    )
    return [RoleSpec("sub", "sub", MqttSubscriber, sub), RoleSpec("pub", "pub", MqttPublisher, pub)]


def run_many_subscriptions(scn: Any, server_name: str, opts: Any) -> dict[str, Any]:
    total = opts.subs
    conns = max(1, opts.subs_conns)
    procs = max(1, min(opts.subs_procs, conns))
    srv = servers.start(server_name, scn.mode)
    try:
        baseline = measure_flow(
            srv, "throughput", _hot_specs(srv, opts, "a"), opts.warmup, opts.duration
        )
        rss0 = settled_rss_kb(srv.pid, max_wait=3.0)
        with Fleet() as holders:
            first = 0
            for i in range(procs):
                c = conns // procs + (1 if i < conns % procs else 0)
                # Filters split in proportion to the connections this process holds.
                count = total * c // conns if i < procs - 1 else total - first
                holders.spawn(
                    f"holder{i}",
                    "hold",
                    SubscriptionHolder,
                    host=srv.host,
                    port=srv.mqtt_port,
                    first=first,
                    count=count,
                    conns=c,
                    per_packet=opts.subs_per_packet,
                    qos=0,
                    prefix=f"subhold{i}",
                )
                first += count
            ph = _phase(holders, srv, opts.scale_timeout)
            check_alive(srv)
            rss1 = settled_rss_kb(srv.pid)
            loaded = measure_flow(
                srv, "throughput", _hot_specs(srv, opts, "b"), opts.warmup, opts.duration
            )
            holders.release()
        check_alive(srv)
    finally:
        srv.stop()
    b, lo = baseline["rate"], loaded["rate"]
    return {
        "rate": lo,
        "baseline_rate": b,
        "loaded_over_baseline": lo / b if b else None,
        "sent_rate": loaded["sent_rate"],
        "server_cpu": loaded["server_cpu"],
        "pub_cpu": loaded["pub_cpu"],
        "sub_cpu": loaded["sub_cpu"],
        # The runs whose rates are reported; the subscribe phase's figure is kept apart.
        "other_cpu": _max_known(baseline["other_cpu"], loaded["other_cpu"]),
        "subscribe_other_cpu": ph["other_cpu"],
        "subscriptions": total,
        "subscribe_s": ph["wall"],
        "subscribe_rate": total / ph["wall"],
        "subscribe_server_cpu": ph["server_cpu"],
        "rss_before_kb": rss0,
        "rss_after_kb": rss1,
        "rss_per_sub_bytes": (
            (rss1 - rss0) * 1024 / total if rss0 is not None and rss1 is not None else None
        ),
        "server_rss_kb": loaded["server_rss_kb"],
        "baseline": baseline,
        "loaded": loaded,
        "holders": ph["results"],
    }


# ---------------------------------------------------------------- retained_replay


def run_retained_replay(scn: Any, server_name: str, opts: Any) -> dict[str, Any]:
    n = opts.retained
    srv = servers.start(server_name, scn.mode)
    try:
        with Fleet() as fleet:
            fleet.spawn(
                "pub",
                "pub",
                RetainedPublisher,
                host=srv.host,
                port=srv.mqtt_port,
                count=n,
                payload_size=opts.payload,
                inflight=opts.qos1_inflight,
                batch=opts.qos1_batch,
            )
            store = _phase(fleet, srv, opts.scale_timeout)
        check_alive(srv)
        rss_stored = proc_rss_kb(srv.pid)
        with Fleet() as fleet:
            fleet.spawn(
                "sub",
                "sub",
                RetainedReplayer,
                host=srv.host,
                port=srv.mqtt_port,
                count=n,
                payload_size=opts.payload,
            )
            replay = _phase(fleet, srv, opts.scale_timeout)
        check_alive(srv)
    finally:
        srv.stop()
    sub = replay["results"]["sub"]
    return {
        "rate": sub["rate"],
        "replay_s": sub["elapsed"],
        "first_s": sub["first_s"],
        "retained": n,
        "store_rate": n / store["wall"],
        "store_s": store["wall"],
        "server_cpu": replay["server_cpu"],
        "sub_cpu": sub["cpu"],
        "store_server_cpu": store["server_cpu"],
        # The replay is the reported figure. The store phase's other_cpu is kept apart: it
        # includes the kernel's writeback of the server's store files (kworker threads).
        "other_cpu": replay["other_cpu"],
        "store_other_cpu": store["other_cpu"],
        "server_rss_kb": rss_stored,
        "workers": {"pub": store["results"]["pub"], "sub": sub},
    }
