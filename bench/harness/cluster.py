"""The cluster scenarios (issue 17): two leaf nodes A and B on a 3-member nats-server hub.

Theory of operation: every run starts a real hub (``Hub``: three nats-server processes,
routes between them, clustered JetStream in domain ``hub``, ``leafnodes { listen }``, a
monitoring port each, free 127.0.0.1 ports, its own temp dirs) and two leaf nodes of one
kind linked to all three members:

- hybridbus: ``hybridbus serve -c <conf> -n <prefix>-a`` with ``leafnodes { remotes }``
  and ``mqtt { js_domain: hub, stream_replicas: 3 }`` (conf/hb-cluster.conf's shape);
- nats-server as the leaf: its own config with the same remotes and ``mqtt { port,
  js_domain: hub, stream_replicas: 3 }`` and no local JetStream (its MQTT state lives in
  the hub's JetStream).

A node is linked once a hub member lists a leaf connection named after it in /leafz.
Every process sits in ``servers``' registry (stopped by PID, also at exit); a hub member
is killed with SIGKILL by its PID and restarted on its ports and store. Clients speak
MQTT 3.1.1 (nats-server's MQTT has no 5.0).

- ``cluster_qos0`` / ``cluster_qos1``: the suite's MQTT publisher on A and subscriber on B
  (raw sockets, pre-encoded; 1 -> 1, 64 B) for one window; then both on A with the link
  up; then, on a fresh standalone server of the same kind, the ``mqtt_qos0``/``mqtt_qos1``
  shape (the single-node reference). ``rate`` is A -> B. CPU is read from /proc for A, B
  and the hub over the window, so CPU per message on the leaf path is (A + B) / rate.
- ``cluster_relink``: ticks (a QoS 0 and a QoS 1 PUBLISH every 10 ms, send time in the
  payload) from A to subscribers on B; SIGKILL of the hub member A is linked to (from the
  members' /leafz); then polled every 20 ms: the hub lists A again (``relink_s``), A's
  own /leafz lists a link (``leaf_relink_s``), and the first tick *sent after the kill*
  arrives at B (``flow_s`` QoS 0, ``flow_q1_s`` QoS 1), and the first PUBACK on A of a
  QoS 1 tick sent after it (``puback_s``). The member is restarted between rounds. Figures are medians over every round of every run.
- ``cluster_failover`` / ``cluster_takeover``: in ``cluster_sessions``.

Each scenario repeats ``cluster_runs`` times per server on a fresh hub; every run's
figures stay in ``runs`` and the headline figure is their median.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from . import servers
from .cluster_clients import Ticker
from .measure import PUB_TAIL, aggregate, collect
from .procstat import proc_cpu, proc_rss_kb, sleep_until, system_busy
from .servers import HOST, RunningServer
from .workers import Fleet

DOMAIN = "hub"
READY_TIMEOUT = 40.0  # a hub's meta leader, a leaf's link (seconds)
FLOW_TIMEOUT = 30.0  # after a kill: bound on every wait for relink / flow
SETTLE = 1.0  # seconds for B's interest to reach A through the hub before publishing
POLL = 0.02
PREFIX = {"hybridbus": "hb", "nats-server": "ns"}


def http_json(url: str, timeout: float = 1.0) -> Any:
    """The JSON body of a 200 answer, else None (no answer, other status, not JSON)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return json.loads(resp.read()) if resp.status == 200 else None
    except (OSError, ValueError, urllib.error.URLError):
        return None


def median(xs: list[float | None]) -> float | None:
    v = [x for x in xs if x is not None]
    return statistics.median(v) if v else None


# ---------------------------------------------------------------- the hub


class Hub:
    """Three routed nats-servers, clustered JetStream in domain ``hub``, leafnodes listen."""

    def __init__(self, size: int = 3) -> None:
        self.binary = servers.find_nats_server()
        ports = servers.free_ports(4 * size)
        self.names = [f"hub-n{i + 1}" for i in range(size)]
        self.client = ports[0:size]
        self.route = ports[size : 2 * size]
        self.leaf = ports[2 * size : 3 * size]
        self.http = ports[3 * size : 4 * size]
        self.members: list[RunningServer | None] = [None] * size

    @property
    def leaf_urls(self) -> list[str]:
        return [f"nats-leaf://{HOST}:{p}" for p in self.leaf]

    def _conf(self, i: int, tmpdir: str) -> str:
        routes = ", ".join(f'"nats-route://{HOST}:{p}"' for p in self.route)
        store = os.path.join(tmpdir, "js")
        return (
            f"server_name: {self.names[i]}\nlisten: {HOST}:{self.client[i]}\n"
            f"http: {HOST}:{self.http[i]}\n"
            f"cluster {{ name: hbc, listen: {HOST}:{self.route[i]}, routes: [{routes}] }}\n"
            f'jetstream {{ store_dir: "{store}", domain: {DOMAIN} }}\n'
            f"leafnodes {{ listen: {HOST}:{self.leaf[i]} }}\n"
        )

    def start(self) -> Hub:
        try:
            for i in range(len(self.names)):
                tmpdir = tempfile.mkdtemp(prefix=f"bench-{self.names[i]}-")
                conf = os.path.join(tmpdir, "nats.conf")
                Path(conf).write_text(self._conf(i, tmpdir))
                self.members[i] = servers._launch(
                    self.names[i],
                    [self.binary, "-c", conf],
                    tmpdir,
                    {"nats_port": self.client[i], "http_port": self.http[i]},
                )
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def alive(self, i: int) -> bool:
        m = self.members[i]
        return m is not None and m.alive()

    def _ready(self, i: int) -> bool:
        base = f"http://{HOST}:{self.http[i]}"
        # The full /healthz: a meta leader known and this member current with it.
        if http_json(base + "/healthz") is None:
            return False
        jsz = http_json(base + "/jsz") or {}
        live = {self.names[k] for k in range(len(self.names)) if self.alive(k)}
        return (jsz.get("meta_cluster") or {}).get("leader") in live

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        for i in range(len(self.names)):
            while self.alive(i) and not self._ready(i):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"hub not ready in {timeout:.0f}s:\n{self.log_tails()}")
                time.sleep(0.05)

    def leafz(self) -> list[tuple[int, dict[str, Any]]]:
        """(member index, LeafInfo) for every leaf connection live members list."""
        out = []
        for i in range(len(self.names)):
            if self.alive(i):
                body = http_json(f"http://{HOST}:{self.http[i]}/leafz", 0.5) or {}
                out += [(i, leaf) for leaf in body.get("leafs") or []]
        return out

    def linked_to(self, name: str) -> list[int]:
        return [i for i, leaf in self.leafz() if leaf.get("name") == name]

    def kill(self, i: int) -> float:
        """SIGKILL member ``i`` by its PID; the monotonic time of the kill."""
        m = self.members[i]
        assert m is not None
        t = time.monotonic()
        os.kill(m.pid, signal.SIGKILL)
        m.proc.wait(5.0)
        servers._LIVE.pop(m.pid, None)
        return t

    def restart(self, i: int) -> None:
        m = self.members[i]
        assert m is not None
        m.relaunch()
        deadline = time.monotonic() + READY_TIMEOUT
        while not servers.port_accepts(self.client[i]):
            if not m.alive() or time.monotonic() > deadline:
                raise RuntimeError(f"{m.name} did not restart:\n{m.log_tail()}")
            time.sleep(0.05)
        self.wait_ready()

    def pids(self) -> list[int]:
        return [m.pid for m in self.members if m is not None and m.alive()]

    def log_tails(self) -> str:
        return "\n".join(f"--- {m.name}\n{m.log_tail(8)}" for m in self.members if m)

    def stop(self) -> None:
        for m in self.members:
            if m is not None:
                m.stop()


# ---------------------------------------------------------------- leaf nodes


def _leaf_conf(kind: str, name: str, hub: Hub, ports: dict[str, int], tmpdir: str) -> str:
    urls = ", ".join(f'"{u}"' for u in hub.leaf_urls)
    head = (
        f"server_name: {name}\nlisten: {HOST}:{ports['nats_port']}\n"
        f"http: {HOST}:{ports['http_port']}\n"
        f'leafnodes {{ reconnect: "1s", remotes: [ {{ urls: [{urls}] }} ] }}\n'
    )
    mqtt = f"js_domain: {DOMAIN}, stream_replicas: 3"
    if kind == "nats-server":
        # No local JetStream: its MQTT state is in the hub's (log: JetStream using
        # domains: local "", remote "hub").
        return head + f"mqtt {{ host: {HOST}, port: {ports['mqtt_port']}, {mqtt} }}\n"
    store = os.path.join(tmpdir, "store")
    return (
        head
        + f'jetstream {{ store_dir: "{store}" }}\n'
        + f"mqtt {{ listen: {HOST}:{ports['mqtt_port']}, {mqtt} }}\n"
    )


def start_leaf(kind: str, name: str, hub: Hub) -> RunningServer:
    """A leaf node of ``kind`` named ``name`` with one remote listing every hub member."""
    tmpdir = tempfile.mkdtemp(prefix=f"bench-{name}-")
    n, m, h = servers.free_ports(3)
    ports = {"nats_port": n, "mqtt_port": m, "http_port": h}
    conf = os.path.join(tmpdir, "leaf.conf")
    Path(conf).write_text(_leaf_conf(kind, name, hub, ports, tmpdir))
    if kind == "nats-server":
        argv = [servers.find_nats_server(), "-c", conf]
    else:
        argv = servers.hybridbus_argv() + ["serve", "-c", conf, "-n", name]
    return servers._launch(kind, argv, tmpdir, ports)


def wait_linked(hub: Hub, leaf: RunningServer, name: str, timeout: float = READY_TIMEOUT) -> int:
    """Until a hub member lists ``name`` in /leafz; returns that member's index."""
    deadline = time.monotonic() + timeout
    while True:
        on = hub.linked_to(name)
        if on:
            return on[0]
        if not leaf.alive() or time.monotonic() > deadline:
            raise RuntimeError(
                f"{name} not linked to the hub in {timeout:.0f}s:\n{leaf.log_tail()}"
            )
        time.sleep(0.05)


def wait_mqtt_state(leaf: RunningServer, name: str, timeout: float = READY_TIMEOUT) -> float:
    """Until the node accepts a persistent session (CONNACK 0 to clean session 0): its
    MQTT state in the hub's JetStream is usable. hybridbus refuses such CONNECTs (0x03)
    until its streams exist in the domain; nats-server holds the CONNECT meanwhile. The
    probe's session is removed again (a clean-session connect). Returns the seconds."""
    from .cluster_clients import close, connect

    t = time.monotonic()
    cid = f"ready-{name}"
    while True:
        try:
            close(connect(leaf.mqtt_port or 0, cid, clean=False, timeout=2.0)[0])
            close(connect(leaf.mqtt_port or 0, cid, clean=True, timeout=2.0)[0])
            return time.monotonic() - t
        except (OSError, ConnectionError, TimeoutError) as e:
            if not leaf.alive() or time.monotonic() - t > timeout:
                raise RuntimeError(
                    f"{name}: no persistent session in {timeout:.0f}s: {e!r}"
                ) from None
            time.sleep(0.1)


class Pair:
    """A hub and leaf nodes A and B of one kind, linked; ``close`` stops everything."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.names = [f"{PREFIX[kind]}-a", f"{PREFIX[kind]}-b"]
        self.hub = Hub()
        self.a: RunningServer | None = None
        self.b: RunningServer | None = None
        self.state_ready_s: list[float] = []

    def __enter__(self) -> Pair:
        try:
            self.hub.start()
            self.a = start_leaf(self.kind, self.names[0], self.hub)
            self.b = start_leaf(self.kind, self.names[1], self.hub)
            wait_linked(self.hub, self.a, self.names[0])
            wait_linked(self.hub, self.b, self.names[1])
            self.state_ready_s = [
                wait_mqtt_state(leaf, n)
                for leaf, n in ((self.a, self.names[0]), (self.b, self.names[1]))
            ]
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for leaf in (self.a, self.b):
            if leaf is not None:
                leaf.stop()
        self.hub.stop()


# ---------------------------------------------------------------- rate runs


def flow(
    specs: list[Any],
    main: RunningServer,
    nodes: dict[str, int],
    o: Any,
    settle: float = SETTLE,
) -> dict[str, Any]:
    """One measured window of ``specs`` (RoleSpecs); CPU of every pid in ``nodes``."""
    with Fleet() as fleet:
        recv = [fleet.spawn(s.name, s.kind, s.role_cls, **s.params) for s in specs if s.receiver]
        fleet.wait_ready(recv, 20.0)
        time.sleep(settle)
        send = [
            fleet.spawn(s.name, s.kind, s.role_cls, **s.params) for s in specs if not s.receiver
        ]
        fleet.wait_ready(send, 20.0)
        t0, t1, t_stop = fleet.go(o.warmup, o.duration, PUB_TAIL)
        sleep_until(t0)
        c0 = {k: proc_cpu(pid) for k, pid in nodes.items()}
        sys0, m0 = system_busy(), time.monotonic()
        sleep_until(t1)
        c1 = {k: proc_cpu(pid) for k, pid in nodes.items()}
        sys1, m1 = system_busy(), time.monotonic()
        rss = proc_rss_kb(main.pid)
        collect(fleet, main, t_stop + 30.0)
        workers = [(w.name, w.kind, w.result or {}) for w in fleet.workers]
    wall = m1 - m0
    out = aggregate("throughput", workers, None, None, wall, rss)
    cpu = {
        k: (c1[k] - c0[k]) / wall if c0[k] is not None and c1[k] is not None else None
        for k in nodes
    }
    out["cpu"] = cpu
    leaves = [v for k, v in cpu.items() if not k.startswith("hub") and v is not None]
    out["server_cpu"] = sum(leaves) if leaves else None
    out["hub_cpu"] = sum(v for k, v in cpu.items() if k.startswith("hub") and v is not None)
    if out["rate"] and out["server_cpu"] is not None:
        out["us_per_msg"] = 1e6 * out["server_cpu"] / out["rate"]
    ours = sum(v for v in cpu.values() if v is not None)
    ours += sum(r.get("cpu", 0.0) for _, _, r in workers)
    out["other_cpu"] = max(0.0, (sys1 - sys0) / wall - ours)
    return out


def _specs(pub: RunningServer, sub: RunningServer, o: Any, qos: int, topic: str) -> list[Any]:
    from .scenarios import _mqtt_pub, _mqtt_sub

    return [_mqtt_sub(sub, o, topic, qos=qos), _mqtt_pub(pub, o, topic, qos=qos)]


def _one_rate_run(kind: str, qos: int, o: Any) -> dict[str, Any]:
    run: dict[str, Any] = {}
    with Pair(kind) as p:
        assert p.a is not None and p.b is not None
        nodes = {"A": p.a.pid, "B": p.b.pid}
        nodes.update({f"hub{k + 1}": pid for k, pid in enumerate(p.hub.pids())})
        run["a_to_b"] = flow(_specs(p.a, p.b, o, qos, f"bench/c{qos}/ab"), p.a, nodes, o)
        run["a_to_a"] = flow(_specs(p.a, p.a, o, qos, f"bench/c{qos}/aa"), p.a, nodes, o)
        for leaf in (p.a, p.b):
            if not leaf.alive():
                raise RuntimeError(f"{leaf.name} exited during the run:\n{leaf.log_tail()}")
    single = servers.start(kind, "mqtt")
    try:
        run["single"] = flow(
            _specs(single, single, o, qos, f"bench/c{qos}/one"), single, {"S": single.pid}, o
        )
    finally:
        single.stop()
    return run


def run_cluster_rate(scn: Any, kind: str, o: Any) -> dict[str, Any]:
    """cluster_qos0 / cluster_qos1: ``cluster_runs`` runs, each on a fresh hub."""
    qos = 1 if scn.name.endswith("qos1") else 0
    return summarize_rate([_one_rate_run(kind, qos, o) for _ in range(max(1, o.cluster_runs))])


def summarize_rate(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The medians over ``runs`` (each a_to_b, a_to_a, single); the runs kept."""
    ab = [r["a_to_b"] for r in runs]
    out: dict[str, Any] = {
        "rate": median([r["rate"] for r in ab]),
        "sent_rate": median([r.get("sent_rate") for r in ab]),
        "local_rate": median([r["a_to_a"]["rate"] for r in runs]),
        "single_rate": median([r["single"]["rate"] for r in runs]),
        "server_cpu": median([r.get("server_cpu") for r in ab]),
        "hub_cpu": median([r.get("hub_cpu") for r in ab]),
        "us_per_msg": median([r.get("us_per_msg") for r in ab]),
        "other_cpu": max((r.get("other_cpu") or 0.0) for r in ab),
        "runs": runs,
    }
    if out["rate"] and out["single_rate"]:
        out["over_single"] = out["rate"] / out["single_rate"]
    if out["local_rate"] and out["single_rate"]:
        out["local_over_single"] = out["local_rate"] / out["single_rate"]
    return out


# ---------------------------------------------------------------- relink


def _leaf_linked(leaf: RunningServer, dead: str) -> bool:
    """The leaf's own /leafz lists a link to a hub member other than ``dead``."""
    body = http_json(f"http://{HOST}:{leaf.http_port}/leafz", 0.5) or {}
    return any(x.get("name") and x.get("name") != dead for x in body.get("leafs") or [])


def _relink_round(p: Pair, ticker: Ticker) -> dict[str, Any]:
    assert p.a is not None
    name = p.names[0]
    # Flowing before the kill (both QoS), so a late figure is never the warm-up.
    t_warm = time.monotonic()
    deadline = t_warm + FLOW_TIMEOUT
    while not ticker.flowing(t_warm):
        if time.monotonic() > deadline:
            raise RuntimeError(f"ticks not flowing A -> B before the kill: {ticker.summary()}")
        time.sleep(0.05)
    on = p.hub.linked_to(name)
    if not on:
        raise RuntimeError(f"{name} not linked before the kill")
    victim = on[0]
    b_on = p.hub.linked_to(p.names[1])
    dead = p.hub.names[victim]
    t_kill = p.hub.kill(victim)
    got: dict[str, float | None] = dict(relink=None, leaf=None, flow=None, flow_q1=None, ack=None)
    while time.monotonic() < t_kill + FLOW_TIMEOUT and None in got.values():
        now = time.monotonic()
        if got["relink"] is None and p.hub.linked_to(name):
            got["relink"] = now - t_kill
        if got["leaf"] is None and _leaf_linked(p.a, dead):
            got["leaf"] = now - t_kill
        for key, qos in (("flow", 0), ("flow_q1", 1)):
            t = ticker.first_after(qos, t_kill)
            if got[key] is None and t is not None:
                got[key] = t - t_kill
        t = ticker.first_ack_after(t_kill)
        if got["ack"] is None and t is not None:
            got["ack"] = t - t_kill
        time.sleep(POLL)
    rnd = {
        "killed": dead,
        "b_on_killed": victim in b_on,
        "relink_s": got["relink"],
        "leaf_relink_s": got["leaf"],
        "flow_s": got["flow"],
        "flow_q1_s": got["flow_q1"],
        "puback_s": got["ack"],
    }
    p.hub.restart(victim)
    wait_linked(p.hub, p.a, name)
    wait_linked(p.hub, p.b, p.names[1]) if p.b is not None else None
    return rnd


def run_cluster_relink(scn: Any, kind: str, o: Any) -> dict[str, Any]:
    runs = []
    for _ in range(max(1, o.cluster_runs)):
        with Pair(kind) as p:
            assert p.a is not None and p.b is not None
            ticker = Ticker(p.a.mqtt_port, p.b.mqtt_port, tag=PREFIX[kind])
            ticker.start()
            try:
                mine = [_relink_round(p, ticker) for _ in range(max(1, o.cluster_rounds))]
            finally:
                ticker.stop()
            runs.append({"rounds": mine, "ticker": ticker.summary()})
    return summarize_relink(runs)


def summarize_relink(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median, worst and missing count of each figure over every round of ``runs``."""
    rounds = [rd for run in runs for rd in run["rounds"]]
    out: dict[str, Any] = {"runs": runs, "rounds": len(rounds)}
    for key in ("relink_s", "leaf_relink_s", "flow_s", "flow_q1_s", "puback_s"):
        vals = [r.get(key) for r in rounds]
        out[key] = median(vals)
        out[key.replace("_s", "_max_s")] = max((v for v in vals if v is not None), default=None)
        out[key.replace("_s", "_missing")] = sum(1 for v in vals if v is None)
    return out


# ---------------------------------------------------------------- reporting


def _f(x: Any, spec: str = ",.0f") -> str:
    return "-" if x is None else format(x, spec)


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{1000 * x:,.0f}"


COLUMNS: dict[str, tuple[list[tuple[str, int]], Any]] = {
    "cluster": (
        [
            ("A->B msgs/s", 12),
            ("sent/s", 10),
            ("A->A msgs/s", 12),
            ("single", 10),
            ("AB/single", 9),
            ("A+B cpu", 8),
            ("hub cpu", 8),
            ("us/msg", 7),
            ("runs A->B", 20),
        ],
        lambda r: [
            _f(r.get("rate")),
            _f(r.get("sent_rate")),
            _f(r.get("local_rate")),
            _f(r.get("single_rate")),
            _f(r.get("over_single"), ".2f"),
            _f(r.get("server_cpu"), ".0%"),
            _f(r.get("hub_cpu"), ".0%"),
            _f(r.get("us_per_msg"), ".1f"),
            "/".join(_f(x["a_to_b"].get("rate")) for x in r.get("runs", [])),
        ],
    ),
    "relink": (
        [
            ("rounds", 6),
            ("relink ms", 9),
            ("leaf ms", 8),
            ("flow q0 ms", 10),
            ("flow q1 ms", 10),
            ("max q1 ms", 9),
            ("PUBACK ms", 9),
            ("missing", 7),
        ],
        lambda r: [
            _f(r.get("rounds")),
            _ms(r.get("relink_s")),
            _ms(r.get("leaf_relink_s")),
            _ms(r.get("flow_s")),
            _ms(r.get("flow_q1_s")),
            _ms(r.get("flow_q1_max_s")),
            _ms(r.get("puback_s")),
            _f(sum(r.get(k, 0) for k in r if k.endswith("_missing"))),
        ],
    ),
}

RATIO_COLUMNS = {
    "cluster": [("hybridbus/x", "rate")],
    "relink": [("relink hb/x", "relink_s"), ("flow hb/x", "flow_s")],
}
