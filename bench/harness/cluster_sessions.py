"""The cluster session scenarios (issue 17): failover of a persistent session after kill -9
of its node, and client-id takeover across nodes. Both on leaf nodes A and B of a
3-member nats-server hub (``cluster.Pair``), MQTT 3.1.1, clients in the harness process
(``cluster_clients``), every wait bounded.

- ``cluster_failover``, per round: client ``D`` connects to A with clean session 0,
  subscribes to ``bench/fo/<round>`` at QoS 1 and disconnects (its session stays, offline);
  a publisher on B sends ``failover_msgs`` QoS 1 PUBLISHes there, all PUBACKed; then A is
  killed (SIGKILL by PID) and ``D`` connects to B (clean session 0) again and again until
  a CONNACK comes, once a connection of the harness to A is closed (a device learns of
  the death that way; the kernel closes a killed process's sockets after freeing its
  memory, ``down_s``). ``connack_s``: kill to that CONNACK, whose session-present flag is
  recorded; ``survivor_s``: A's connections closed to that CONNACK (B's part);
  ``first_s`` / ``failover_s``: kill to the first / last of the queued messages
  (distinct sequence numbers) received, each PUBACKed. A is restarted on its store
  between rounds.
- ``cluster_takeover``: one client id connects (clean session 0) alternately to A and B,
  ``takeover_rounds`` times; each connect takes the session over from the connection on
  the other node. ``takeover`` latency: from the start of the new connection (TCP
  connect) to the moment the old connection is closed by its server (seen by a thread
  blocked in its recv); also the new connection's CONNACK. p50 / p99 over the rounds.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import threading
import time
from typing import Any

from . import servers
from .cluster import FLOW_TIMEOUT, PREFIX, Pair, median, wait_linked, wait_mqtt_state
from .cluster_clients import TICK, close, connect, parse_publish, subscribe
from .mqttwire import encode_puback, encode_publish
from .servers import RunningServer

CLOSE_WAIT = 5.0  # seconds a takeover may take before the round counts as "not closed"


def _pct(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    s = sorted(xs)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def _publish_n(port: int, cid: str, topic: str, n: int) -> int:
    """``n`` QoS 1 PUBLISHes (payload: TICK with seq 1..n); returns the PUBACKs seen."""
    sock, fr, _, _ = connect(port, cid)
    try:
        sock.sendall(
            b"".join(
                encode_publish(topic, TICK.pack(time.monotonic(), i), 1, i) for i in range(1, n + 1)
            )
        )
        acks = 0
        deadline = time.monotonic() + 20.0
        while acks < n and time.monotonic() < deadline:
            data = sock.recv(65536)
            if not data:
                break
            acks += sum(1 for typ, _, _ in fr.feed(data) if typ == 4)
        return acks
    finally:
        close(sock)


def _reconnect_until(port: int, cid: str, deadline: float) -> tuple[Any, ...] | None:
    while time.monotonic() < deadline:
        try:
            return connect(port, cid, clean=False, timeout=2.0)
        except (OSError, ConnectionError, TimeoutError):
            time.sleep(0.02)
    return None


def _failover_round(p: Pair, o: Any, rnd: int) -> dict[str, Any]:
    assert p.a is not None and p.b is not None
    n = o.failover_msgs
    cid = f"fo-{PREFIX[p.kind]}-{os.getpid()}-{rnd}"
    topic = f"bench/fo/{rnd}"
    sock, fr, _, _ = connect(p.a.mqtt_port, cid, clean=False)
    subscribe(sock, fr, topic, 1)
    close(sock)
    time.sleep(0.3)
    acked = _publish_n(p.b.mqtt_port, f"fo-pub-{rnd}", topic, n)
    a = p.a
    # The device learns of the death as a device would: a connection of its own to A is
    # closed by the kernel (after the process's memory is freed). Polling for the exit
    # (Popen.wait with a timeout sleeps 1, 2, 4, 8 ms between looks) would add up to as
    # much again as the death takes.
    sentinel = connect(a.mqtt_port or 0, f"fo-watch-{rnd}")[0]
    sentinel.settimeout(5.0)
    t_kill = time.monotonic()
    os.kill(a.pid, signal.SIGKILL)
    with contextlib.suppress(OSError):
        sentinel.recv(1)
    t_down = time.monotonic()
    sentinel.close()
    out: dict[str, Any] = {
        "acked": acked,
        "connack_s": None,
        "session_present": None,
        "down_s": t_down - t_kill,
        "first_s": None,
    }
    got = _reconnect_until(p.b.mqtt_port, cid, t_kill + FLOW_TIMEOUT)
    seqs: set[int] = set()
    dups = 0
    t_all = None
    if got is not None:
        sock, fr, connack, pending = got
        out["connack_s"] = time.monotonic() - t_kill
        out["session_present"] = bool(connack[0] & 1)
        sock.settimeout(0.2)
        deadline = t_kill + FLOW_TIMEOUT
        try:
            while len(seqs) < n and time.monotonic() < deadline:
                acks = []
                for typ, flags, body in pending:
                    if typ != 3:
                        continue
                    _, q, pid, payload = parse_publish(flags, body)
                    seq = TICK.unpack_from(payload)[1] if len(payload) >= TICK.size else 0
                    dups += seq in seqs
                    seqs.add(seq)
                    if out["first_s"] is None:
                        out["first_s"] = time.monotonic() - t_kill
                    if q:
                        acks.append(encode_puback(pid))
                if acks:
                    sock.sendall(b"".join(acks))
                if len(seqs) >= n:
                    break
                try:
                    data = sock.recv(65536)
                except TimeoutError:
                    pending = []
                    continue
                if not data:
                    break
                pending = fr.feed(data)
            if len(seqs) >= n:
                t_all = time.monotonic()
        finally:
            close(sock)
    out.update(received=len(seqs), dups=dups, failover_s=None if t_all is None else t_all - t_kill)
    a.proc.wait(5.0)  # reaped (long dead: its sockets closed after its memory was freed)
    servers._LIVE.pop(a.pid, None)
    a.relaunch()
    servers._LIVE[a.pid] = a
    deadline = time.monotonic() + 30.0
    while not servers.port_accepts(a.mqtt_port or 0):
        if not a.alive() or time.monotonic() > deadline:
            raise RuntimeError(f"{a.name} did not restart:\n{a.log_tail()}")
        time.sleep(0.05)
    wait_linked(p.hub, a, p.names[0])
    wait_mqtt_state(a, p.names[0])
    return out


def run_cluster_failover(scn: Any, kind: str, o: Any) -> dict[str, Any]:
    runs = []
    for _ in range(max(1, o.cluster_runs)):
        with Pair(kind) as p:
            runs.append([_failover_round(p, o, r) for r in range(max(1, o.cluster_rounds))])
    return summarize_failover(runs, o.failover_msgs)


def summarize_failover(runs: list[list[dict[str, Any]]], msgs: int) -> dict[str, Any]:
    """Over every round of ``runs``: ``failover_s`` is the median only when every round
    found its session and every message (else None: the row says how many did)."""
    rounds = [r for run in runs for r in run]
    ok = [r for r in rounds if r["session_present"] and r["failover_s"] is not None]
    return {
        "runs": runs,
        "rounds": len(rounds),
        "complete": len(ok),
        "failover_s": median([r["failover_s"] for r in rounds]) if len(ok) == len(rounds) else None,
        "failover_max_s": max((r["failover_s"] for r in ok), default=None),
        "connack_s": median([r["connack_s"] for r in rounds]),
        "down_s": median([r.get("down_s") for r in rounds]),
        "survivor_s": median(
            [
                r["connack_s"] - r["down_s"]
                for r in rounds
                if r.get("connack_s") is not None and r.get("down_s") is not None
            ]
        ),
        "first_s": median([r.get("first_s") for r in rounds]),
        "present": sum(1 for r in rounds if r["session_present"]),
        "received_min": min((r["received"] for r in rounds), default=0),
        "dups": sum(r["dups"] for r in rounds),
        "msgs": msgs,
    }


class _Watch(threading.Thread):
    """Records when the server closes ``sock`` (recv returns b"" or fails)."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(daemon=True)
        self.sock = sock
        self.closed_at: float | None = None
        self.quit = threading.Event()

    def run(self) -> None:
        while not self.quit.is_set():
            try:
                r, _, _ = select.select([self.sock], [], [], 0.05)
                if r and not self.sock.recv(65536):
                    self.closed_at = time.monotonic()
                    return
            except (OSError, ValueError):
                self.closed_at = time.monotonic()
                return


def _takeover_run(p: Pair, o: Any) -> list[dict[str, Any]]:
    """A fresh client id per round (nats-server jails a client id that moves between
    servers again within a second, as session flapping: a second move of one id would
    measure that jail), alternately A -> B and B -> A."""
    assert p.a is not None and p.b is not None
    nodes: list[RunningServer] = [p.a, p.b]
    out = []
    for i in range(o.takeover_rounds):
        cid = f"to-{PREFIX[p.kind]}-{os.getpid()}-{i}"
        old_node, new_node = nodes[i % 2], nodes[(i + 1) % 2]
        sock = connect(old_node.mqtt_port or 0, cid, clean=False)[0]
        time.sleep(0.1)
        watch = _Watch(sock)
        watch.start()
        t0 = time.monotonic()
        new = None
        err = ""
        try:
            new = connect(new_node.mqtt_port or 0, cid, clean=False)[0]
        except (OSError, ConnectionError, TimeoutError) as e:
            err = repr(e)
        t_connack = time.monotonic()
        watch.join(CLOSE_WAIT)
        watch.quit.set()
        out.append(
            {
                "to": new_node.name,
                "connack_s": None if new is None else t_connack - t0,
                "close_s": None if watch.closed_at is None else watch.closed_at - t0,
                "error": err,
            }
        )
        close(sock, disconnect=False)
        close(new)
        time.sleep(0.1)
    return out


def run_cluster_takeover(scn: Any, kind: str, o: Any) -> dict[str, Any]:
    runs = []
    for _ in range(max(1, o.cluster_runs)):
        with Pair(kind) as p:
            runs.append(_takeover_run(p, o))
    return summarize_takeover(runs)


def summarize_takeover(runs: list[list[dict[str, Any]]]) -> dict[str, Any]:
    """p50/p99 over every round of ``runs``; None when a round's old connection was not
    closed within CLOSE_WAIT (``not_closed`` counts them)."""
    rounds = [r for run in runs for r in run]
    closes = [r["close_s"] for r in rounds if r["close_s"] is not None]
    conn = [r["connack_s"] for r in rounds if r["connack_s"] is not None]
    res: dict[str, Any] = {
        "runs": runs,
        "rounds": len(rounds),
        "not_closed": len(rounds) - len(closes),
        "refused": sum(1 for r in rounds if r["connack_s"] is None),
        "connack_p50_s": _pct(conn, 0.5),
        "connack_p99_s": _pct(conn, 0.99),
    }
    if len(closes) == len(rounds):
        res.update(takeover_p50_s=_pct(closes, 0.5), takeover_p99_s=_pct(closes, 0.99))
    else:
        res.update(takeover_p50_s=None, takeover_p99_s=None)
    res["takeover_seen_p50_s"] = _pct(closes, 0.5)
    return res


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{1000 * x:,.0f}"


COLUMNS: dict[str, tuple[list[tuple[str, int]], Any]] = {
    "failover": (
        [
            ("rounds", 6),
            ("present", 7),
            ("recv min", 8),
            ("connack ms", 10),
            ("all msgs ms", 11),
            ("max ms", 8),
            ("dups", 5),
        ],
        lambda r: [
            str(r.get("rounds")),
            f"{r.get('present')}/{r.get('rounds')}",
            f"{r.get('received_min')}/{r.get('msgs')}",
            _ms(r.get("connack_s")),
            _ms(r.get("failover_s")),
            _ms(r.get("failover_max_s")),
            str(r.get("dups")),
        ],
    ),
    "takeover": (
        [
            ("rounds", 6),
            ("not closed", 10),
            ("close p50 ms", 12),
            ("close p99 ms", 12),
            ("connack p50", 11),
            ("connack p99", 11),
        ],
        lambda r: [
            str(r.get("rounds")),
            str(r.get("not_closed")),
            _ms(r.get("takeover_p50_s")),
            _ms(r.get("takeover_p99_s")),
            _ms(r.get("connack_p50_s")),
            _ms(r.get("connack_p99_s")),
        ],
    ),
}

RATIO_COLUMNS = {
    "failover": [("failover hb/x", "failover_s")],
    "takeover": [("p50 hb/x", "takeover_p50_s"), ("p99 hb/x", "takeover_p99_s")],
}
