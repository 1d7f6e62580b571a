"""`mqtt { retained_kv: "devices" }`: MQTT retained messages as the nats-py KV bucket
"devices", both directions (hybridbus/jetstream/retained_kv.py).

Devices are paho-mqtt clients or raw MQTT 5 sockets (for exact RETAIN flags and
reason codes); the back end is nats-py's KeyValue. Each test runs its own server, on
a store directory it may restart on.
"""

from __future__ import annotations

import asyncio
import queue
import signal
import threading

import nats
import paho.mqtt.client as paho
import pytest
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError, NoKeysError

from hybridbus.config import ConfigError
from hybridbus.config.load import load_options
from hybridbus.server.server import Server
from tests.conftest import make_options
from tests.helpers import mqtt_packets as mp
from tests.helpers.wire import eventually, mqtt5_connect, mqtt_packets

RETAIN_AS_PUBLISHED = 0x08


class Node:
    """A hybridbus server with retained_kv on one store directory, restartable."""

    def __init__(self, tmp_path, **overrides) -> None:
        self.tmp_path = tmp_path
        self.overrides = {"mqtt__retained_kv": "devices", **overrides}
        self.server: Server | None = None
        self.clients: list = []

    async def start(self) -> Server:
        self.server = Server(make_options(self.tmp_path, **self.overrides))
        await self.server.start()
        return self.server

    async def stop(self) -> None:
        for nc in self.clients:
            await nc.close()
        self.clients.clear()
        if self.server is not None:
            await self.server.shutdown()
            self.server = None

    async def kv(self):
        nc = await nats.connect(f"nats://127.0.0.1:{self.server.nats_port}")
        self.clients.append(nc)
        return await nc.jetstream().key_value("devices")

    async def headers(self, key: str) -> dict | None:
        """The stored headers of a key's last entry (nats-py's Entry has none)."""
        js = self.clients[0].jetstream()
        return (await js.get_last_msg("KV_devices", f"$KV.devices.{key}")).headers

    async def device(self, client_id: str, *filters: tuple[str, int]):
        wire, _ = await mqtt5_connect(self.server.mqtt_port, client_id)
        if filters:
            await wire.send(mp.subscribe(1, *filters, level=5))
            (suback,) = await mqtt_packets(wire, 1)
            assert type(suback).__name__ == "Suback"
        return wire


@pytest.fixture
async def node(tmp_path):
    n = Node(tmp_path)
    await n.start()
    yield n
    await n.stop()


class Paho:
    """A paho-mqtt 3.1.1 device on its own network thread."""

    def __init__(self, port: int, client_id: str) -> None:
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id)
        self.messages: queue.Queue = queue.Queue()
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.client.on_connect = lambda c, u, f, rc, p=None: self.connected.set()
        self.client.on_subscribe = lambda c, u, mid, rcs, p=None: self.subscribed.set()
        self.client.on_message = lambda c, u, m: self.messages.put(m)
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()
        assert self.connected.wait(5), "no CONNACK"

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = True) -> None:
        self.client.publish(topic, payload, qos, retain).wait_for_publish(5)

    def subscribe(self, topic_filter: str, qos: int = 1) -> None:
        self.subscribed.clear()
        self.client.subscribe(topic_filter, qos)
        assert self.subscribed.wait(5), "no SUBACK"

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


async def in_thread(fn, *args):
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


async def publishes(wire, count: int) -> list:
    """The next `count` PUBLISHes to a raw device, each acknowledged if QoS 1."""
    got = []
    for p in await mqtt_packets(wire, count):
        assert type(p).__name__ == "Publish", p
        if p.qos == 1:
            await wire.send(mp.puback(p.packet_id))
        got.append(p)
    return got


# -- MQTT -> KV ----------------------------------------------------------------------


async def test_a_device_retained_message_is_the_key_value(node):
    dev = await in_thread(Paho, node.server.mqtt_port, "plant-k1")
    try:
        await in_thread(dev.publish, "plant/k1/status", b"online")
        await in_thread(dev.publish, "plant/k1/temp", b"21.5", 0)
    finally:
        await in_thread(dev.stop)
    kv = await node.kv()
    entry = await kv.get("plant.k1.status")
    assert (entry.key, entry.value) == ("plant.k1.status", b"online")
    assert not await node.headers("plant.k1.status")
    await eventually(lambda: node.server.store.stream("KV_devices").state().messages == 2)
    assert (await kv.get("plant.k1.temp")).value == b"21.5"
    # The retained QoS rides along when it is not 1 (a NATS value counts as QoS 1).
    assert await node.headers("plant.k1.temp") == {"Mqtt-Qos": "0"}
    assert sorted(await kv.keys()) == ["plant.k1.status", "plant.k1.temp"]


async def test_mqtt5_properties_are_kept_and_an_empty_payload_deletes_the_key(node):
    dev = await node.device("dev")
    props = b"\x03" + mp.s("application/json") + b"\x26" + mp.s("fw") + mp.s("1.2")
    await dev.send(mp.publish("cfg/a", b"{}", qos=1, retain=True, mid=1, level=5, properties=props))
    assert (await mqtt_packets(dev, 1))[0].reason_code == 0
    kv = await node.kv()
    assert (await kv.get("cfg.a")).value == b"{}"
    assert await node.headers("cfg.a") == {"Content-Type": "application/json", "fw": "1.2"}
    late = await node.device("late", ("cfg/#", 1))
    (p,) = await publishes(late, 1)
    assert (p.topic, p.payload, p.retain, p.qos) == ("cfg/a", b"{}", True, 1)
    assert p.properties["content_type"] == "application/json"
    assert p.properties["user_property"] == [("fw", "1.2")]
    # [MQTT-3.3.1-10] an empty retained payload clears: a delete marker in the bucket.
    await dev.send(mp.publish("cfg/a", b"", qos=1, retain=True, mid=2, level=5))
    assert (await mqtt_packets(dev, 1))[0].reason_code == 0
    with pytest.raises(KeyNotFoundError):
        await kv.get("cfg.a")
    fresh = await node.device("fresh", ("cfg/#", 1))
    await fresh.expect_nothing(0.3)


async def test_watch_sees_devices_and_history_keeps_their_revisions(node):
    stream = node.server.store.stream("KV_devices")
    node.server.store.update_stream(stream.config.copy(max_msgs_per_subject=5))
    kv = await node.kv()
    watcher = await kv.watch("plant.>")
    assert await asyncio.wait_for(watcher.updates(), 3) is None  # nothing yet
    dev = await node.device("dev")
    for i, value in enumerate((b"boot", b"online")):
        await dev.send(mp.publish("plant/k2/status", value, qos=1, retain=True, mid=i + 1, level=5))
    await dev.send(mp.publish("plant/k2/status", b"", qos=1, retain=True, mid=3, level=5))
    assert [p.reason_code for p in await mqtt_packets(dev, 3)] == [0, 0, 0]
    seen = [await asyncio.wait_for(watcher.updates(), 3) for _ in range(3)]
    assert [(e.key, e.value, e.operation) for e in seen] == [
        ("plant.k2.status", b"boot", None),
        ("plant.k2.status", b"online", None),
        ("plant.k2.status", b"", "DEL"),
    ]
    await watcher.stop()
    history = await kv.history("plant.k2.status")
    assert [(e.value, e.operation) for e in history] == [
        (b"boot", None),
        (b"online", None),
        (b"", "DEL"),
    ]


# -- KV -> MQTT ----------------------------------------------------------------------


async def test_a_put_from_nats_is_retained_and_delivered_live_once(node):
    live = await node.device("live", ("plant/k1/cfg", 1))
    rap = await node.device("rap", ("plant/+/cfg", 1 | RETAIN_AS_PUBLISHED))
    nc = await nats.connect(f"nats://127.0.0.1:{node.server.nats_port}")
    node.clients.append(nc)
    nats_sub = await nc.subscribe("plant.k1.cfg")
    kv = await node.kv()
    rev = await kv.put("plant.k1.cfg", b'{"rate": 5}')
    (p,) = await publishes(live, 1)
    assert (p.topic, p.payload, p.qos, p.retain) == ("plant/k1/cfg", b'{"rate": 5}', 1, False)
    (p,) = await publishes(rap, 1)
    assert p.retain is True  # Retain As Published [MQTT-3.3.1-12]
    assert (await nats_sub.next_msg(timeout=2)).data == b'{"rate": 5}'
    await live.expect_nothing(0.3)  # once: the route on plant.k1.cfg is not captured again
    late = await node.device("late", ("plant/#", 2))
    (p,) = await publishes(late, 1)
    assert (p.topic, p.payload, p.retain) == ("plant/k1/cfg", b'{"rate": 5}', True)
    # A device's own retained update is delivered once too, and is the next revision.
    dev = await node.device("dev")
    await dev.send(mp.publish("plant/k1/cfg", b"local", qos=1, retain=True, mid=1, level=5))
    assert (await mqtt_packets(dev, 1))[0].reason_code == 0
    (p,) = await publishes(live, 1)
    assert p.payload == b"local"
    await live.expect_nothing(0.3)
    entry = await kv.get("plant.k1.cfg")
    assert (entry.value, entry.revision > rev) == (b"local", True)


async def test_paho_device_gets_configuration_pushed_by_a_back_end(node):
    dev = await in_thread(Paho, node.server.mqtt_port, "plant-k3")
    try:
        await in_thread(dev.subscribe, "plant/k3/#")
        kv = await node.kv()
        await kv.put("plant.k3.cfg", b"interval=10")
        msg = await in_thread(dev.messages.get, True, 5)
        assert (msg.topic, msg.payload, msg.qos) == ("plant/k3/cfg", b"interval=10", 1)
        await kv.update(
            "plant.k3.cfg", b"interval=20", last=(await kv.get("plant.k3.cfg")).revision
        )
        msg = await in_thread(dev.messages.get, True, 5)
        assert msg.payload == b"interval=20"
        with pytest.raises(KeyWrongLastSequenceError):
            await kv.update("plant.k3.cfg", b"stale", last=1)
        await asyncio.sleep(0.2)
        assert dev.messages.empty()  # a refused update is not delivered
    finally:
        await in_thread(dev.stop)


@pytest.mark.parametrize("how", ["delete", "purge"])
async def test_delete_and_purge_clear_the_retained_message(node, how):
    dev = await node.device("dev")
    await dev.send(mp.publish("plant/k4/status", b"up", qos=1, retain=True, mid=1, level=5))
    await mqtt_packets(dev, 1)
    live = await node.device("live", ("plant/k4/status", 1))
    (p,) = await publishes(live, 1)
    assert (p.payload, p.retain) == (b"up", True)
    kv = await node.kv()
    await getattr(kv, how)("plant.k4.status")
    # Delivered as MQTT delivers a cleared retained topic: an empty message.
    (p,) = await publishes(live, 1)
    assert (p.topic, p.payload) == ("plant/k4/status", b"")
    fresh = await node.device("fresh", ("plant/#", 1))
    await fresh.expect_nothing(0.3)
    with pytest.raises(NoKeysError):
        await kv.keys()


# -- which topics, limits, restarts ----------------------------------------------------


async def test_topics_that_are_not_keys_stay_mqtt_only(node):
    dev = await node.device("dev")
    topics = ["odd.topic/x", "with space/x", "/lead", "trail/", "$app/x", "caf\u00e9/x"]
    for i, topic in enumerate(topics):
        await dev.send(mp.publish(topic, b"v%d" % i, qos=1, retain=True, mid=i + 1, level=5))
    assert [p.reason_code for p in await mqtt_packets(dev, len(topics))] == [0] * len(topics)
    assert node.server.store.stream("KV_devices").state().messages == 0
    kv = await node.kv()
    with pytest.raises(NoKeysError):
        await kv.keys()
    sub = await node.device("sub", ("#", 1), ("$app/#", 1))
    got = await publishes(sub, len(topics))
    assert sorted(p.topic for p in got) == sorted(topics)
    # A key with "/" is NATS-only: MQTT would see it as a%2Fb, another topic's subject.
    live = await node.device("live", ("+", 1))
    await kv.put("a/b", b"nats-only")
    await live.expect_nothing(0.3)


async def test_a_refused_retained_write_fails_the_puback(node):
    stream = node.server.store.stream("KV_devices")
    node.server.store.update_stream(stream.config.copy(max_msg_size=64))
    dev = await node.device("dev")
    await dev.send(mp.publish("plant/k5/blob", b"x" * 100, qos=1, retain=True, mid=1, level=5))
    assert [(p.packet_id, p.reason_code) for p in await mqtt_packets(dev, 1)] == [(1, 0x97)]
    kv = await node.kv()
    with pytest.raises(KeyNotFoundError):
        await kv.get("plant.k5.blob")


async def test_restart_keeps_the_bucket_and_old_retained_messages_move_in(tmp_path):
    plain = Node(tmp_path, mqtt__retained_kv=None)  # before the option was set
    await plain.start()
    dev = await plain.device("dev")
    await dev.send(mp.publish("plant/k6/status", b"old", qos=1, retain=True, mid=1, level=5))
    await dev.send(mp.publish("odd.topic/y", b"mqtt", qos=1, retain=True, mid=2, level=5))
    await mqtt_packets(dev, 2)
    await plain.stop()
    node = Node(tmp_path)
    await node.start()
    try:
        kv = await node.kv()
        assert (await kv.get("plant.k6.status")).value == b"old"
        await kv.put("plant.k7.cfg", b"from-nats")
        await node.stop()
        await node.start()
        kv = await node.kv()
        assert sorted(await kv.keys()) == ["plant.k6.status", "plant.k7.cfg"]
        sub = await node.device("sub", ("#", 1))
        got = await publishes(sub, 3)
        assert sorted((p.topic, p.payload) for p in got) == [
            ("odd.topic/y", b"mqtt"),
            ("plant/k6/status", b"old"),
            ("plant/k7/cfg", b"from-nats"),
        ]
        await sub.expect_nothing(0.3)  # each once: the moved one left $MQTT_rmsgs
        rmsgs = node.server.store.stream("$MQTT_rmsgs").subjects()
        assert list(rmsgs) == ["$MQTT.rmsgs.odd%2Etopic.y"]
    finally:
        await node.stop()


async def test_a_retained_puback_means_the_bucket_has_it_across_kill9(server_process, tmp_path):
    conf = tmp_path / "kv.conf"
    conf.write_text('jetstream { sync_interval: always }\nmqtt { retained_kv: "devices" }\n')
    proc = server_process(config=str(conf)).start()
    dev, _ = await mqtt5_connect(proc.ports["mqtt"], "dev")
    burst = b"".join(
        mp.publish(f"plant/k{i}/status", b"s%d" % i, qos=1, retain=True, mid=i, level=5)
        for i in range(1, 11)
    )
    await dev.send(burst)
    assert [p.reason_code for p in await mqtt_packets(dev, 10)] == [0] * 10
    proc.stop(signal.SIGKILL)
    await dev.close()
    proc.start()
    nc = await nats.connect(f"nats://127.0.0.1:{proc.ports['nats']}")
    try:
        kv = await nc.jetstream().key_value("devices")
        for i in range(1, 11):
            assert (await kv.get(f"plant.k{i}.status")).value == b"s%d" % i
    finally:
        await nc.close()


async def test_a_deleted_bucket_is_made_again_by_the_next_retained_message(node):
    kv = await node.kv()
    await kv.put("plant.k8.cfg", b"v1")
    await node.clients[0].jetstream().delete_key_value("devices")
    sub = await node.device("sub", ("plant/#", 1))
    await sub.expect_nothing(0.3)  # the bucket was the only copy
    dev = await node.device("dev")
    await dev.send(mp.publish("plant/k8/cfg", b"v2", qos=1, retain=True, mid=1, level=5))
    assert (await mqtt_packets(dev, 1))[0].reason_code == 0
    kv = await node.kv()
    assert (await kv.get("plant.k8.cfg")).value == b"v2"


def test_the_bucket_name_is_checked(tmp_path):
    good = tmp_path / "good.conf"
    good.write_text('mqtt { retained_kv: "plant-devices_1" }\n')
    assert load_options(str(good))[0].mqtt.retained_kv == "plant-devices_1"
    for bad in ('"de.v"', '"a b"', '""', "5"):
        conf = tmp_path / "bad.conf"
        conf.write_text(f"mqtt {{ retained_kv: {bad} }}\n")
        with pytest.raises(ConfigError, match="retained_kv"):
            load_options(str(conf))
