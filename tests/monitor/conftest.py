"""Monitoring test fixtures: an in-process server with its monitor, a real HTTP
client (the stdlib's, run off the event loop so the server keeps serving), and
real nats-py / paho-mqtt clients for traffic."""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

import nats
import paho.mqtt.client as mqtt
import pytest

from hybridbus.monitor.http import start_monitor
from hybridbus.server.server import Server


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode()

    def json(self) -> Any:
        return json.loads(self.body)


def _fetch(url: str, method: str, headers: dict[str, str]) -> Reply:
    req = urllib.request.Request(url, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return Reply(r.status, {k.lower(): v for k, v in r.headers.items()}, r.read())
    except urllib.error.HTTPError as e:
        return Reply(e.code, {k.lower(): v for k, v in e.headers.items()}, e.read())


@dataclass
class Monitored:
    server: Server
    monitor: Any
    owned: bool = False
    extra: dict = field(default_factory=dict)

    @property
    def port(self) -> int:
        return self.monitor.port

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def get(self, path: str, method: str = "GET", headers: dict | None = None) -> Reply:
        return await asyncio.to_thread(_fetch, self.url(path), method, headers or {})

    async def json(self, path: str) -> Any:
        r = await self.get(path)
        assert r.status == 200, (path, r.status, r.text)
        return r.json()


@pytest.fixture
async def monitored_factory(server_factory):
    """Start a server and its monitor. If the server started one itself
    (``server.monitor``, once Server.start wires it in), that one is used."""
    made: list[Monitored] = []

    async def make(**overrides) -> Monitored:
        server = await server_factory(**overrides)
        mon = getattr(server, "monitor", None)
        owned = mon is None
        if owned:
            mon = await start_monitor(server)
        m = Monitored(server, mon, owned)
        made.append(m)
        return m

    yield make
    for m in made:
        if m.owned:
            await m.monitor.close()


@pytest.fixture
async def monitored(monitored_factory) -> Monitored:
    return await monitored_factory()


class Paho:
    """A paho-mqtt client on its own network thread."""

    def __init__(self, port: int, client_id: str, clean: bool = True) -> None:
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean
        )
        self.port = port
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.client.on_connect = lambda c, u, f, rc, p=None: self.connected.set()
        self.client.on_subscribe = lambda c, u, mid, rcs, p=None: self.subscribed.set()

    def _start(self) -> None:
        self.client.connect("127.0.0.1", self.port, keepalive=30)
        self.client.loop_start()
        assert self.connected.wait(5), "no CONNACK"

    def _subscribe(self, topic: str, qos: int) -> None:
        self.subscribed.clear()
        self.client.subscribe(topic, qos)
        assert self.subscribed.wait(5), "no SUBACK"

    def _publish(self, topic: str, payload: bytes, qos: int) -> None:
        self.client.publish(topic, payload, qos=qos).wait_for_publish(5)

    def _stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    async def start(self) -> Paho:
        await asyncio.to_thread(self._start)
        return self

    async def subscribe(self, topic: str, qos: int = 0) -> None:
        await asyncio.to_thread(self._subscribe, topic, qos)

    async def publish(self, topic: str, payload: bytes, qos: int = 0) -> None:
        await asyncio.to_thread(self._publish, topic, payload, qos)

    async def stop(self) -> None:
        await asyncio.to_thread(self._stop)


@pytest.fixture
async def probes(monitored):
    """The traffic of nats-conventions §1.9: a nats-py client `hb-nats-probe` with
    subscriptions on `orders.>`, `orders.new` (queue `workers`) and `greet` that
    published 5 messages; a paho client `hb-mqtt-probe` subscribed to `sensors/#`
    (QoS 1) and `alerts/+/high` that published twice. ``extra["base_subs"]`` is how many
    subscriptions the server itself held before (the JetStream engine's)."""
    server = monitored.server
    # The server's own subscriptions (the JetStream engine's $JS.API.> and friends):
    # counted in /varz, /subsz and /accountz like nats-server counts its internal ones.
    # (and the system account's $SYS services, in every account: server/system.py)
    monitored.extra["base_subs"] = sum(a.sublist.count() for a in server.accounts.values())
    nc = await nats.connect(f"nats://127.0.0.1:{server.nats_port}", name="hb-nats-probe")
    await nc.subscribe("orders.>")
    await nc.subscribe("orders.new", queue="workers")
    await nc.subscribe("greet")
    for i in range(5):
        await nc.publish("orders.new", b"order%d" % i)
    await nc.flush()
    dev = await Paho(server.mqtt_port, "hb-mqtt-probe").start()
    await dev.subscribe("sensors/#", 1)
    await dev.subscribe("alerts/+/high", 0)
    # QoS 0 first: the QoS 1 PUBACK then proves the server has read both.
    await dev.publish("alerts/x/low", b"fine", 0)
    await dev.publish("sensors/temp", b"21.5", 1)
    monitored.extra.update(nc=nc, dev=dev)
    yield monitored
    await dev.stop()
    if not nc.is_closed:
        await nc.close()


async def eventually(predicate, timeout: float = 5.0, interval: float = 0.02) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)
