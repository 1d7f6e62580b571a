"""Runners of the fleet scenarios: fleet_sessions, fleet_broadcast, fleet_commands, big_qos1,
fanout_10k and fanout_10k_slow.

Theory of operation: every phase is bounded (``fleet_timeout`` seconds, and at most
``SETTLE_MAX`` for the waits for a server to go quiet), so a server that stalls yields a
row that says so (``timed_out``, a note) rather than a hung harness.

The three session scenarios share one server run (``run_fleet_group``), because creating
100,000 persistent sessions is most of their cost: whichever of them runs first on a
server creates the sessions and runs the phases of every fleet scenario selected, in this
order, and the others take their results from ``_CACHE``:

1. sessions: RSS (settled) before; ``SessionMaker`` processes create N persistent sessions
   (clean session 0, ids ``dev-<i>``, ``fleet/all`` and ``fleet/dev/<i>`` at QoS 1) and
   leave them offline; RSS (settled) after; per session = (after - before) / created.
2. broadcast: with a ``PingProbe`` running (from 0.5 s before), one QoS 1 PUBLISH to
   ``fleet/all``, timed from the send to its PUBACK; the probe runs on until the server's
   CPU is quiet again (``settle_s``: work it did after the PUBACK), bounded.
3. commands: with the probe running, one QoS 1 PUBLISH to each ``fleet/dev/<i>``, a
   window of 1000 unacknowledged; msgs/s to the last PUBACK.
4. restart (part of fleet_sessions): SIGTERM, timed to the exit; the same command started
   again on the same store / persistence file and ports; from process start, ``dev-0``
   connects (clean session 0) again and again until a CONNACK comes: restart_s is the time
   to that CONNACK, which must say session present = 1. Then a sample of 10 other devices
   reconnects: is each session there, and how many queued messages (the broadcast and its
   command) does each get.

big_qos1 and the fan-outs are rate runs (``measure.measure_flow``, one window, the
server's RSS sampled every 0.2 s for its peak). The fan-outs run the probe over the
window and, once the results are in and the subscribers still connected, time SIGTERM
to exit.
"""

from __future__ import annotations

import contextlib
import math
import socket
import struct
import time
from typing import Any

from . import servers
from .loadgen_fleet import (
    BigPublisher,
    BigSubscriber,
    CommandPublisher,
    FanoutSubscribers,
    PingProbe,
    SessionMaker,
    TimedPublisher,
    pct_stats,
)
from .loadgen_mqtt import MqttPublisher, mqtt_connect, send_disconnect
from .measure import check_alive, measure_flow
from .mqttwire import MqttStream, encode_connect, encode_publish
from .procstat import proc_cpu, proc_rss_kb, settled_rss_kb, sleep_until, system_busy
from .scale import FD_RESERVE, MIN_SPAN
from .sockets import recv_timeout
from .workers import _CTX, Fleet, Worker, WorkerError

FLEET_GROUP = ("fleet_sessions", "fleet_broadcast", "fleet_commands")
SETTLE_MAX = 30.0  # seconds: longest wait for a server to go quiet after a phase
QUIET_CORES = 0.1  # server CPU below this (cores, over QUIET_STEP) counts as quiet
QUIET_STEP = 0.25
BASELINE = 0.5  # seconds of pings before a phase's load starts
SAMPLE = 10  # devices that reconnect after the restart
PER_PROC_MAX = 50000  # sessions per generator process (source ports 10000-65535 each)

# (server, scenario) -> the result a shared run produced for a scenario not yet reported.
_CACHE: dict[tuple[str, str], dict[str, Any]] = {}


def _mb(kb: int | None) -> float | None:
    return None if kb is None else kb / 1024.0


def _expect(w: Worker, srv: servers.RunningServer, deadline: float) -> dict[str, Any]:
    """A worker's result; a failure names the server's death if that caused it."""
    try:
        w.result = w.expect("result", deadline)
    except WorkerError as e:
        if not srv.alive():
            raise WorkerError(
                f"{e}\n{srv.name} died (code {srv.proc.returncode}); log tail:\n{srv.log_tail()}"
            ) from None
        raise
    return dict(w.result or {})


def settle(pid: int, max_wait: float = SETTLE_MAX) -> tuple[float, bool]:
    """Seconds until the server's CPU over QUIET_STEP drops below QUIET_CORES (the start
    of the first quiet step), and whether it did before ``max_wait``."""
    t = time.monotonic()
    c0 = proc_cpu(pid)
    while True:
        s0 = time.monotonic()
        time.sleep(QUIET_STEP)
        c1 = proc_cpu(pid)
        now = time.monotonic()
        if c0 is None or c1 is None:
            return s0 - t, False
        if (c1 - c0) / (now - s0) < QUIET_CORES:
            return s0 - t, True
        if now - t >= max_wait:
            return now - t, False
        c0 = c1


def _probe_figures(r: dict[str, Any]) -> dict[str, Any]:
    if r.get("error"):
        return {"probe_error": r["error"]}
    return {
        "ping_p50_ms": r.get("ping_p50"),
        "ping_p99_ms": r.get("ping_p99"),
        "ping_max_ms": r.get("ping_max"),
        "pings": r.get("pings"),
        "pings_unanswered": r.get("unanswered"),
    }


def _probe_note(out: dict[str, Any], pr: dict[str, Any]) -> None:
    if pr.get("error"):
        out["note"] = _join(out.get("note"), f"no loop latency: {pr['error']}")


def _spawn_probe(fleet: Fleet, srv: servers.RunningServer) -> tuple[Worker, Any]:
    stop = _CTX.Event()
    w = fleet.spawn(
        "probe", "probe", PingProbe, host=srv.host, port=srv.mqtt_port, stop=stop, from_go=True
    )
    return w, stop


# ---------------------------------------------------------------- the shared session run


def run_fleet_scenario(scn: Any, server_name: str, opts: Any) -> dict[str, Any]:
    """Runner of fleet_sessions, fleet_broadcast and fleet_commands (see the module doc)."""
    key = (server_name, scn.name)
    if key not in _CACHE:
        wanted = {scn.name} | {s for s in getattr(opts, "fleet_group", ()) if s in FLEET_GROUP}
        try:
            results = run_fleet_group(server_name, opts, wanted)
        except (servers.ServerStartError, WorkerError, RuntimeError, OSError) as e:
            results = {name: {"error": str(e)} for name in wanted}
        for name, r in results.items():
            _CACHE[(server_name, name)] = r
    r = _CACHE.pop(key)
    if "error" in r:
        raise RuntimeError(r["error"])
    return r


def run_fleet_group(server_name: str, opts: Any, wanted: set[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    srv = servers.start(server_name, "mqtt", persistent=True)
    try:
        base = _sessions_phase(srv, opts)
        shared = sorted(wanted) if len(wanted) > 1 else []
        for name, phase in (
            ("fleet_broadcast", _broadcast_phase),
            ("fleet_commands", _commands_phase),
        ):
            if name not in wanted:
                continue
            try:
                check_alive(srv)
                r = phase(srv, opts, base)
                r["sessions"] = base["sessions"]
                r["shared_run"] = shared
                out[name] = r
            except (WorkerError, RuntimeError, OSError) as e:
                out[name] = {"error": str(e)}
        if "fleet_sessions" in wanted:
            base["shared_run"] = shared
            try:
                check_alive(srv)
                base.update(_restart_phase(srv, opts, base, out))
            except (WorkerError, RuntimeError, OSError) as e:
                base["restart_error"] = str(e)
                base["note"] = _join(base.get("note"), f"restart failed: {str(e).splitlines()[0]}")
            out["fleet_sessions"] = base
    finally:
        srv.stop()
    return out


def _join(a: str | None, b: str) -> str:
    return f"{a}; {b}" if a else b


def _sessions_phase(srv: servers.RunningServer, opts: Any) -> dict[str, Any]:
    n = opts.fleet_sessions
    timeout = opts.fleet_timeout
    time.sleep(0.3)
    rss0 = settled_rss_kb(srv.pid, max_wait=3.0)
    procs = max(1, min(n, max(opts.fleet_procs, math.ceil(n / PER_PROC_MAX))))
    base, extra = divmod(n, procs)
    makers: list[Worker] = []
    with Fleet() as fleet:
        probe, stop = _spawn_probe(fleet, srv)
        first = 0
        firsts: list[int] = []
        for i in range(procs):
            count = base + (1 if i < extra else 0)
            firsts.append(first)
            makers.append(
                fleet.spawn(
                    f"make{i}",
                    "make",
                    SessionMaker,
                    host=srv.host,
                    port=srv.mqtt_port,
                    first=first,
                    count=count,
                    inflight=opts.fleet_inflight,
                    source=f"127.0.{101 + i}.1",
                )
            )
            first += count
        fleet.wait_ready(fleet.workers, timeout=120.0)
        t_go, _, t_stop = fleet.go(0.0, timeout, 0.0)
        sleep_until(t_go)
        cpu0, sys0 = proc_cpu(srv.pid), system_busy()
        res = {w.name: _expect(w, srv, t_stop + 30.0) for w in makers}
        cpu1, sys1, c1 = proc_cpu(srv.pid), system_busy(), time.monotonic()
        stop.set()
        pr = _expect(probe, srv, time.monotonic() + 10.0)
    check_alive(srv)
    rss1 = settled_rss_kb(srv.pid, max_wait=10.0)
    t_done = max(r["t_done"] for r in res.values())
    wall = max(1e-9, t_done - t_go)
    span = max(1e-9, c1 - t_go)
    srv_cpu = (cpu1 - cpu0) / span if cpu0 is not None and cpu1 is not None else None
    gen = sum(r["cpu"] * r["elapsed"] for r in res.values()) / span
    other = max(0.0, (sys1 - sys0) / span - (srv_cpu or 0.0) - gen) if span >= MIN_SPAN else None
    created = sum(r["done"] for r in res.values())
    counts = {
        k: sum(r[k] for r in res.values())
        for k in ("failed", "refused", "sub_refused", "timed_out", "downgraded", "session_present")
    }
    out: dict[str, Any] = {
        "rate": created / wall,
        "sessions": created,
        "requested": n,
        **counts,
        "create_s": wall,
        "rss_before_kb": rss0,
        "rss_after_kb": rss1,
        "rss_per_session_bytes": (
            (rss1 - rss0) * 1024 / created if created and rss0 is not None and rss1 else None
        ),
        "server_cpu": srv_cpu,
        "gen_cpu": max((r["cpu"] for r in res.values()), default=0.0),
        "other_cpu": other,
        "create_probe": pr,
        **_probe_figures(pr),
        "workers": res,
        # Which devices exist: maker i creates dev-<first_i> onwards, in order, so about
        # its first ``done`` ids.
        "ranges": [[f, res[w.name]["done"]] for f, w in zip(firsts, makers, strict=True)],
    }
    if created < n:
        errs = sorted({e for r in res.values() for e in r.get("errors", [])})
        out["note"] = (
            f"{created:,} of {n:,} sessions created ({counts['failed']} failed, "
            f"{counts['refused']} CONNACK refused, {counts['sub_refused']} SUBACK refused, "
            f"{counts['timed_out']} not done within {timeout:.0f} s)"
            + (f": {'; '.join(errs[:3])}" if errs else "")
        )
    if counts["downgraded"]:
        out["note"] = _join(
            out.get("note"), f"{counts['downgraded']:,} SUBACKs granted less than QoS 1"
        )
    _probe_note(out, pr)
    return out


def _broadcast_phase(srv: servers.RunningServer, opts: Any, base: dict[str, Any]) -> dict[str, Any]:
    timeout = opts.fleet_timeout
    with Fleet() as fleet:
        probe, stop = _spawn_probe(fleet, srv)
        fleet.wait_ready(fleet.workers, timeout=20.0)
        try:
            sock, stream = mqtt_connect(srv.host, srv.mqtt_port, "bench-fleet-broadcast")
        except OSError as e:
            raise RuntimeError(
                f"the broadcast publisher could not connect: {type(e).__name__}: {e}"
            ) from None
        recv_timeout(sock, 0.05)
        frame = encode_publish("fleet/all", b"b" * opts.payload, 1, 1)
        try:
            t_go, _, _ = fleet.go(0.0, BASELINE + timeout + SETTLE_MAX + 10.0, 0.0)
            sleep_until(t_go + BASELINE)
            cpu0, sys0, c0 = proc_cpu(srv.pid), system_busy(), time.monotonic()
            t_send = time.monotonic()
            sock.sendall(frame)
            ack_s, closed = _wait_pubacks(sock, stream, 1, t_send + timeout)
            t_ack = time.monotonic()
            settle_s, quiet = settle(srv.pid)
            cpu1, sys1, c1 = proc_cpu(srv.pid), system_busy(), time.monotonic()
        finally:
            stop.set()
            send_disconnect(sock, 0.5)
            sock.close()
        pr = _expect(probe, srv, time.monotonic() + 10.0)
    span = max(1e-9, c1 - c0)
    srv_cpu = (cpu1 - cpu0) / span if cpu0 is not None and cpu1 is not None else None
    out: dict[str, Any] = {
        "ack_s": ack_s,
        "timed_out": ack_s is None,
        "settle_s": settle_s,
        "quiet": quiet,
        "busy_s": (t_ack - t_send) + settle_s,
        "server_cpu": srv_cpu,
        "other_cpu": (
            max(0.0, (sys1 - sys0) / span - (srv_cpu or 0.0) - pr.get("cpu", 0.0))
            if span >= MIN_SPAN
            else None
        ),
        "server_rss_kb": proc_rss_kb(srv.pid),
        **_probe_figures(pr),
        "probe": pr,
    }
    notes = []
    if ack_s is None:
        notes.append(f"no PUBACK within {timeout:.0f} s" + (f" ({closed})" if closed else ""))
    if not quiet:
        notes.append(f"server still busy {settle_s:.0f} s after the PUBACK")
    if notes:
        out["note"] = "; ".join(notes)
    _probe_note(out, pr)
    return out


def _wait_pubacks(
    sock: socket.socket, stream: MqttStream, n: int, deadline: float
) -> tuple[float | None, str]:
    """Seconds until ``n`` PUBACKs are in (None by ``deadline``), and why it stopped early."""
    t = time.monotonic()
    while stream.pubacks < n:
        if time.monotonic() >= deadline:
            return None, ""
        try:
            data = sock.recv(65536)
        except BlockingIOError:
            continue
        except OSError as e:
            return None, f"recv: {e}"
        if not data:
            return None, "the server closed the connection"
        stream.feed(data)
    return time.monotonic() - t, ""


def _commands_phase(srv: servers.RunningServer, opts: Any, base: dict[str, Any]) -> dict[str, Any]:
    n = opts.fleet_sessions
    timeout = opts.fleet_timeout
    with Fleet() as fleet:
        probe, stop = _spawn_probe(fleet, srv)
        pub = fleet.spawn(
            "pub",
            "pub",
            CommandPublisher,
            host=srv.host,
            port=srv.mqtt_port,
            count=n,
            payload_size=opts.payload,
            inflight=opts.fleet_window,
            batch=min(100, opts.fleet_window),
        )
        fleet.wait_ready(fleet.workers, timeout=120.0)
        try:
            t0, t1, _ = fleet.go(BASELINE, timeout, SETTLE_MAX + 10.0)
            sleep_until(t0)
            cpu0, sys0, c0 = proc_cpu(srv.pid), system_busy(), time.monotonic()
            r = _expect(pub, srv, t1 + 30.0)
            cpu1, sys1, c1 = proc_cpu(srv.pid), system_busy(), time.monotonic()
            settle_s, quiet = settle(srv.pid)
        finally:
            stop.set()
        pr = _expect(probe, srv, time.monotonic() + 10.0)
    span = max(1e-9, c1 - c0)
    srv_cpu = (cpu1 - cpu0) / span if cpu0 is not None and cpu1 is not None else None
    out: dict[str, Any] = {
        "rate": r["rate"],
        "commands": n,
        "acked": r["acked"],
        "complete": r["complete"],
        "commands_s": r["elapsed"],
        "timed_out": not r["complete"] and not r["closed"],
        "settle_s": settle_s,
        "quiet": quiet,
        "server_cpu": srv_cpu,
        "pub_cpu": r["cpu"],
        "other_cpu": (
            max(0.0, (sys1 - sys0) / span - (srv_cpu or 0.0) - r["cpu"] - pr.get("cpu", 0.0))
            if span >= MIN_SPAN
            else None
        ),
        "server_rss_kb": proc_rss_kb(srv.pid),
        **_probe_figures(pr),
        "workers": {"pub": r, "probe": pr},
    }
    notes = []
    if not r["complete"]:
        why = r["closed"] or f"not all acknowledged within {timeout:.0f} s"
        notes.append(f"{r['acked']:,} of {n:,} PUBACKs ({why})")
    if not quiet:
        notes.append(f"server still busy {settle_s:.0f} s after the last PUBACK")
    if notes:
        out["note"] = "; ".join(notes)
    _probe_note(out, pr)
    return out


def _connack(
    host: str, port: int, client_id: str, deadline: float, clean: bool = False
) -> tuple[socket.socket | None, bytes, str]:
    """One connection attempt: (socket, CONNACK, "") or (None, b"", why not)."""
    left = deadline - time.monotonic()
    if left <= 0:
        return None, b"", "deadline"
    try:
        s = socket.create_connection((host, port), timeout=min(1.0, left))
    except OSError as e:
        return None, b"", f"connect: {e}"
    try:
        s.sendall(encode_connect(client_id, keepalive=60, clean=clean))
        data = b""
        while len(data) < 4:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no CONNACK by the deadline")
            s.settimeout(min(1.0, left))
            try:
                chunk = s.recv(4 - len(data))
            except TimeoutError:
                continue
            if not chunk:
                raise ConnectionError("closed before CONNACK")
            data += chunk
        if data[0] != 0x20:
            raise ConnectionError(f"not a CONNACK: {data!r}")
        return s, data, ""
    except OSError as e:
        _rst(s)
        return None, b"", str(e) or type(e).__name__


def _rst(s: socket.socket) -> None:
    with contextlib.suppress(OSError):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def _restart_phase(
    srv: servers.RunningServer, opts: Any, base: dict[str, Any], done: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    timeout = opts.fleet_timeout
    stop = srv.terminate(timeout=timeout)
    t_start = srv.relaunch()
    deadline = t_start + timeout
    attempts = 0
    restart_s = None
    present = None
    last = ""
    probe_id = "dev-0"
    while time.monotonic() < deadline:
        if not srv.alive():
            raise RuntimeError(
                f"{srv.name} exited after the restart (code {srv.proc.returncode}); "
                f"log tail:\n{srv.log_tail()}"
            )
        attempts += 1
        s, ca, last = _connack(srv.host, srv.mqtt_port, probe_id, deadline)
        if s is None:
            time.sleep(0.005)
            continue
        _rst(s)
        if ca[3] != 0:
            # Refused (3 = server unavailable, say, while it loads): try again.
            last = f"CONNACK code {ca[3]}"
            time.sleep(0.005)
            continue
        restart_s = time.monotonic() - t_start
        present = bool(ca[2] & 1)
        break
    out: dict[str, Any] = {
        "stop_s": stop["stop_s"],
        "stop_killed": stop["killed"],
        "stop_rc": stop["rc"],
        "restart_s": restart_s,
        "restart_session_present": present,
        "restart_attempts": attempts,
    }
    notes = []
    if stop["killed"]:
        notes.append(f"SIGTERM did not stop the server within {timeout:.0f} s: SIGKILLed")
    if restart_s is None:
        notes.append(f"no CONNACK within {timeout:.0f} s of the restart ({last})")
        out["note"] = _join(base.get("note"), "; ".join(notes))
        return out
    if not present:
        notes.append(f"{probe_id}'s session was gone after the restart (session present 0)")
    out["rss_restarted_kb"] = settled_rss_kb(srv.pid, max_wait=5.0)
    # Queued for each device: the broadcast (if acknowledged) and its own command (if all
    # commands were acknowledged).
    bc = done.get("fleet_broadcast", {})
    cm = done.get("fleet_commands", {})
    expect = int(bool(bc.get("ack_s") is not None)) + int(bool(cm.get("complete")))
    out.update(_sample_sessions(srv, base, expect, min(deadline, time.monotonic() + 20.0)))
    if out["sample_present"] < out["sample_size"]:
        notes.append(
            f"after the restart {out['sample_present']} of {out['sample_size']} sampled "
            "sessions were there"
        )
    if expect and out["sample_msgs"] < expect * out["sample_present"]:
        notes.append(
            f"sampled sessions got {out['sample_msgs']} queued messages of "
            f"{expect * out['sample_present']} expected"
        )
    if notes:
        out["note"] = _join(base.get("note"), "; ".join(notes))
    return out


def _sample_sessions(
    srv: servers.RunningServer, base: dict[str, Any], expect: int, deadline: float
) -> dict[str, Any]:
    """Reconnect SAMPLE devices spread over the created ones: is the session there (CONNACK
    session present), and how many queued PUBLISHes arrive (acknowledged, up to ``expect``,
    waiting at most 1 s each)."""
    ids: list[int] = []
    created = [(f, d) for f, d in base.get("ranges", []) if d > 1]
    for j, (f, d) in enumerate(created):
        m = SAMPLE // len(created) + (1 if j < SAMPLE % len(created) else 0)
        # Spread over the range, past its first device (dev-0 answered the restart poll).
        ids += sorted({f + 1 + q * (d - 1) // max(1, m) for q in range(m)})
    present = msgs = 0
    for i in ids:
        s, ca, _ = _connack(srv.host, srv.mqtt_port, f"dev-{i}", deadline)
        if s is None or ca[3] != 0:
            if s is not None:
                _rst(s)
            continue
        present += ca[2] & 1
        stream = MqttStream()
        end = min(deadline, time.monotonic() + 1.0)
        try:
            while stream.publishes < expect and time.monotonic() < end:
                s.settimeout(max(0.01, end - time.monotonic()))
                try:
                    data = s.recv(65536)
                except TimeoutError:
                    break
                if not data:
                    break
                acks = stream.feed(data)
                if acks:
                    s.sendall(acks)
            s.sendall(b"\xe0\x00")
        except OSError:
            pass
        msgs += stream.publishes
        _rst(s)
    return {"sample_size": len(ids), "sample_present": present, "sample_msgs": msgs}


# ---------------------------------------------------------------- big_qos1


def run_big_qos1(scn: Any, server_name: str, opts: Any) -> dict[str, Any]:
    from .scenarios import RoleSpec

    srv = servers.start(server_name, "mqtt")
    try:
        p = dict(host=srv.host, port=srv.mqtt_port, topic="bench/big")
        specs = [
            RoleSpec("sub", "sub", BigSubscriber, dict(p, qos=1)),
            RoleSpec(
                "pub",
                "pub",
                BigPublisher,
                dict(p, payload_size=opts.big_payload, inflight=opts.big_window),
            ),
        ]
        out = measure_flow(srv, "throughput", specs, opts.warmup, opts.duration)
    finally:
        srv.stop()
    sub, pub = out["workers"]["sub"], out["workers"]["pub"]
    out.update(
        disconnects=sub["disconnects"] + pub["disconnects"],
        sub_disconnects=sub["disconnects"],
        pub_disconnects=pub["disconnects"],
        received=sub["count"],
        pubacks=pub["acked_in_window"],
        rss_peak_mb=_mb(out.get("server_rss_peak_kb")),
        mbytes_per_s=out["rate"] * opts.big_payload / 1e6,
    )
    notes = []
    if sub["disconnects"]:
        notes.append(f"the server dropped the subscriber {sub['disconnects']} time(s)")
    if pub["disconnects"]:
        notes.append(f"the server dropped the publisher {pub['disconnects']} time(s)")
    if not sub["total"]:
        notes.append("no message reached the subscriber")
    if notes:
        out["note"] = "; ".join(notes)
    return out


# ---------------------------------------------------------------- fan-out


def fanout_count(requested: int) -> tuple[int, str]:
    """Subscribers to open: the server needs one fd each (plus FD_RESERVE)."""
    cap = servers.fd_limit() - FD_RESERVE
    if requested > cap:
        return cap, f"{requested:,} subscribers asked for, {cap:,} opened (fd limit)"
    return requested, ""


def run_fanout(scn: Any, server_name: str, opts: Any) -> dict[str, Any]:
    from .scenarios import RoleSpec

    slow = scn.name.endswith("_slow")
    n, note = fanout_count(opts.fanout_subs)
    procs = max(1, min(opts.fanout_subs_procs, n))
    base, extra = divmod(n, procs)
    srv = servers.start(server_name, "mqtt")
    try:
        time.sleep(0.3)
        rss0 = settled_rss_kb(srv.pid, max_wait=3.0)
        p = dict(host=srv.host, port=srv.mqtt_port, topic="bench/fan")
        specs = [
            RoleSpec(
                "sub",
                f"subs{i}",
                FanoutSubscribers,
                dict(
                    p,
                    count=base + (1 if i < extra else 0),
                    payload_size=opts.payload,
                    prefix=f"fan{i}",
                    source=f"127.0.{111 + i}.1",
                    inflight=opts.fleet_inflight,
                    sweep=opts.fanout_sweep,
                    sample_every=opts.lag_every if slow else 0,
                    setup_timeout=opts.fleet_timeout,
                ),
            )
            for i in range(procs)
        ]
        specs.append(RoleSpec("probe", "probe", PingProbe, dict(host=srv.host, port=srv.mqtt_port)))
        if slow:
            pub = RoleSpec(
                "pub",
                "pub",
                TimedPublisher,
                dict(p, rate=opts.slow_rate, payload_size=opts.payload),
            )
        else:
            pub = RoleSpec(
                "pub",
                "pub",
                MqttPublisher,
                dict(
                    p,
                    qos=0,
                    payload_size=opts.payload,
                    batch=opts.fanout_batch,
                    window=opts.fanout_window,
                    client_id="bench-fan-pub",
                ),
            )
        specs.append(pub)
        out = measure_flow(
            srv,
            "throughput",
            specs,
            opts.warmup,
            opts.duration,
            ready_timeout=opts.fleet_timeout + 30.0,
            after=lambda: srv.terminate(timeout=opts.fleet_timeout),
        )
    finally:
        srv.stop()
    subs = [r for name, r in out["workers"].items() if name.startswith("subs")]
    lags: list[float] = []
    for r in subs:
        lags += r.pop("lags", [])
    pr = out["workers"]["probe"]
    stop = out.pop("after")
    connected = sum(r["connect"]["done"] for r in subs)
    sent = out.get("sent_rate") or 0.0
    out.update(
        subscribers=connected,
        requested=opts.fanout_subs,
        connect_s=max(r["connect"]["connect_s"] for r in subs),
        closed=sum(r["closed"] for r in subs),
        misframed=sum(r["misframed"] for r in subs),
        delivered_fraction=out["rate"] / (sent * connected) if sent and connected else None,
        rss_before_kb=rss0,
        rss_peak_mb=_mb(out.get("server_rss_peak_kb")),
        stop_s=stop["stop_s"],
        stop_killed=stop["killed"],
        lag_samples=len(lags),
        **_probe_figures(pr),
    )
    out.update({f"{k}_ms": v for k, v in pct_stats(lags, "lag").items()})
    notes = [note] if note else []
    if connected < n:
        errs = sorted({e for r in subs for e in r["connect"].get("errors", [])})
        notes.append(
            f"only {connected:,} of {n:,} subscribers connected"
            + (f": {'; '.join(errs[:3])}" if errs else "")
        )
    if out["closed"]:
        notes.append(f"the server closed {out['closed']:,} subscriber connections")
    if out["misframed"]:
        notes.append(
            f"{out['misframed']} reads did not line up with the expected PUBLISH frames: "
            "the delivery count is suspect"
        )
    if stop["killed"]:
        notes.append(f"SIGTERM did not stop the server within {opts.fleet_timeout:.0f} s")
    if notes:
        out["note"] = "; ".join(notes)
    _probe_note(out, pr)
    return out
