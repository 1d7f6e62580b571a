"""$SYS/broker/... topics (issue 13): Mosquitto's set, retained, every sys_interval;
never seen by a `#` subscriber [MQTT-4.7.2-1]; not publishable by clients; readable
only where subscribe permissions allow; NATS sees them at `$SYS.broker.>`."""

from __future__ import annotations

import asyncio
import queue
import re
import time

import nats
import paho.mqtt.client as mqtt

from hybridbus.options import AuthOptions, Permissions
from tests.helpers import mqtt_packets as mp
from tests.helpers.wire import Wire, mqtt5_connect, mqtt_connect, mqtt_packets
from tests.interop.test_mqtt_paho import Paho, _in_thread

INTERVAL = 0.2

# Mosquitto's names (src/sys_tree.c), all published every round.
TOPICS = {
    "$SYS/broker/version",
    "$SYS/broker/uptime",
    "$SYS/broker/clients/connected",
    "$SYS/broker/clients/disconnected",
    "$SYS/broker/clients/total",
    "$SYS/broker/clients/maximum",
    "$SYS/broker/messages/received",
    "$SYS/broker/messages/sent",
    "$SYS/broker/bytes/received",
    "$SYS/broker/bytes/sent",
    "$SYS/broker/subscriptions/count",
    "$SYS/broker/retained messages/count",
    "$SYS/broker/store/messages/count",
    "$SYS/broker/store/messages/bytes",
    "$SYS/broker/messages/stored",
} | {
    f"$SYS/broker/load/{what}/{way}/{window}"
    for what in ("messages", "bytes")
    for way in ("received", "sent")
    for window in ("1min", "5min", "15min")
}


def _drain(client: Paho, seconds: float) -> list:
    """Every message that arrives within `seconds` (in a thread)."""
    got = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            got.append(client.messages.get(timeout=left))
        except queue.Empty:
            break
    return got


async def test_every_sys_topic_updates_within_one_interval(server_factory):
    server = await server_factory(mqtt__sys_interval=INTERVAL)
    watcher = await _in_thread(lambda: Paho(server.mqtt_port, "dash", mqtt.MQTTv5).start())
    await _in_thread(watcher.subscribe, "$SYS/#", 0)
    subscribed = time.monotonic()
    first = await _in_thread(_drain, watcher, INTERVAL * 3)
    # The retained replay on subscribe has every topic (RETAIN=1) ...
    assert {m.topic for m in first if m.retain} == TOPICS
    # ... and each is published again, live, within one interval (plus scheduling slack).
    live = {}
    for m in first:
        if not m.retain and m.topic not in live:
            live[m.topic] = m.timestamp
    assert set(live) == TOPICS
    assert max(live.values()) - subscribed < INTERVAL + 0.3
    latest = {m.topic: m.payload.decode() for m in first}
    assert latest["$SYS/broker/version"].startswith("hybridbus version ")
    assert re.fullmatch(r"\d+ seconds", latest["$SYS/broker/uptime"])
    assert int(latest["$SYS/broker/clients/connected"]) == 1
    assert int(latest["$SYS/broker/subscriptions/count"]) == 1
    assert int(latest["$SYS/broker/retained messages/count"]) == 0  # client messages only
    assert re.fullmatch(r"\d+\.\d\d", latest["$SYS/broker/load/messages/sent/1min"])

    # Traffic shows in the totals and, per minute, in the load averages.
    pub = await _in_thread(lambda: Paho(server.mqtt_port, "pub").start())
    for i in range(20):
        info = pub.client.publish("plant/line", b"%d" % i, qos=1)
        await _in_thread(info.wait_for_publish, 5)
    later = {m.topic: m.payload.decode() for m in await _in_thread(_drain, watcher, INTERVAL * 3)}
    assert int(later["$SYS/broker/messages/received"]) >= 20
    assert int(later["$SYS/broker/bytes/received"]) >= 20
    assert int(later["$SYS/broker/clients/connected"]) == 2
    assert int(later["$SYS/broker/clients/maximum"]) == 2
    assert float(later["$SYS/broker/load/messages/received/1min"]) > 0
    assert int(later["$SYS/broker/messages/sent"]) > int(latest["$SYS/broker/messages/sent"])
    pub.stop()
    watcher.stop()


async def test_hash_subscriber_never_sees_sys(server_factory):
    server = await server_factory(mqtt__sys_interval=INTERVAL)
    await asyncio.sleep(INTERVAL * 1.5)  # retained $SYS values exist before subscribing
    everything = await _in_thread(lambda: Paho(server.mqtt_port, "all", mqtt.MQTTv5).start())
    await _in_thread(everything.subscribe, "#", 0)
    plus = await _in_thread(lambda: Paho(server.mqtt_port, "plus").start())
    await _in_thread(plus.subscribe, "+/broker/#", 0)
    pub = await _in_thread(lambda: Paho(server.mqtt_port, "pub").start())
    info = pub.client.publish("normal/topic", b"seen", qos=1)
    await _in_thread(info.wait_for_publish, 5)
    got = await _in_thread(_drain, everything, INTERVAL * 4)
    assert [m.topic for m in got] == ["normal/topic"]  # and no $SYS topic, retained or live
    assert await _in_thread(_drain, plus, INTERVAL) == []
    # ... while the `#` subscriber does get ordinary traffic.
    info = pub.client.publish("normal/topic", b"again", qos=1)
    await _in_thread(info.wait_for_publish, 5)
    assert (await _in_thread(everything.get)).payload == b"again"
    for client in (everything, plus, pub):
        client.stop()


async def test_clients_cannot_publish_to_sys(server_factory):
    server = await server_factory(mqtt__sys_interval=INTERVAL)
    watcher, _ = await mqtt5_connect(server.mqtt_port, "watch")
    await watcher.send(mp.subscribe(1, ("$SYS/broker/uptime", 0x20), level=5))  # no replay
    await mqtt_packets(watcher, 1)
    v5, _ = await mqtt5_connect(server.mqtt_port, "v5")
    await v5.send(mp.publish("$SYS/broker/uptime", b"fake", qos=1, mid=1, level=5))
    (ack,) = await mqtt_packets(v5, 1)
    assert (ack.packet_id, ack.reason_code) == (1, 0x87)  # not authorized
    old = await mqtt_connect(server.mqtt_port, "v311")
    # 3.1.1 cannot say no: acknowledged and dropped [MQTT-3.3.5-2], retained too.
    await old.send(mp.publish("$SYS/broker/uptime", b"fake", qos=1, mid=2, retain=True))
    await old.expect(mp.puback(2))
    for packet in await mqtt_packets(watcher, 3, timeout=INTERVAL * 10):
        assert packet.payload.endswith(b" seconds"), packet
    assert server.mqtt.sys_topics.retained["$SYS/broker/uptime"].payload != b"fake"
    assert "$SYS/broker/uptime" not in server.mqtt.retained.by_topic
    # A will is a publish too: a CONNECT with a will under $SYS is refused.
    wire = await Wire.open(server.mqtt_port)
    await wire.send(mp.connect("w", will=("$SYS/broker/version", b"x", 0, False)))
    assert await wire.expect_closed() == mp.connack(0, 0x05)
    for w in (watcher, v5, old):
        await w.close()


async def test_sys_follows_subscribe_permissions(server_factory):
    server = await server_factory(
        mqtt__sys_interval=INTERVAL,
        auth=AuthOptions(default_permissions=Permissions(subscribe_deny=["$SYS.>"])),
    )
    wire = await mqtt_connect(server.mqtt_port, "nosys")
    await wire.send(mp.subscribe(1, ("$SYS/#", 0), ("$SYS/broker/uptime", 0)))
    await wire.expect(mp.suback(1, 0x80, 0x80))
    await wire.expect_nothing(INTERVAL * 2)
    await wire.close()


async def test_nats_subject_of_sys_topics(server_factory):
    server = await server_factory(mqtt__sys_interval=INTERVAL)
    nc = await nats.connect(f"nats://127.0.0.1:{server.nats_port}")
    sub = await nc.subscribe("$SYS.broker.>")
    seen = set()
    deadline = time.monotonic() + INTERVAL * 5
    while len(seen) < len(TOPICS) and time.monotonic() < deadline:
        seen.add((await sub.next_msg(2)).subject)
    assert "$SYS.broker.uptime" in seen
    assert "$SYS.broker.retained%20messages.count" in seen
    assert "$SYS.broker.load.bytes.sent.15min" in seen
    await nc.close()


async def test_sys_interval_zero_turns_sys_off(server_factory):
    server = await server_factory(mqtt__sys_interval=0)
    assert server.mqtt.sys_topics.handle is None
    wire = await mqtt_connect(server.mqtt_port, "quiet")
    await wire.send(mp.subscribe(1, ("$SYS/#", 0)))
    await wire.expect(mp.suback(1, 0))
    await wire.expect_nothing(0.3)
    assert not server.mqtt.sys_topics.retained
    await wire.close()


async def test_reload_turns_sys_on_and_off(server_factory, tmp_path):
    server = await server_factory(mqtt__sys_interval=0)
    conf = tmp_path / "reload.conf"
    server.options.config_file = str(conf)
    conf.write_text(f'mqtt {{ sys_interval: "{INTERVAL}s" }}\n')
    assert server.reload()
    wire = await mqtt_connect(server.mqtt_port, "reloaded")
    await wire.send(mp.subscribe(1, ("$SYS/broker/uptime", 0)))
    await wire.expect(mp.suback(1, 0))
    # the retained value (RETAIN=1, 0x31), then a live one within the interval (0x30)
    await wire.expect_re(rb"\x31.\x00\x12\$SYS/broker/uptime\d+ seconds")
    await wire.expect_re(rb"\x30.\x00\x12\$SYS/broker/uptime\d+ seconds", timeout=INTERVAL * 5)
    conf.write_text("mqtt { sys_interval: 0 }\n")
    assert server.reload()
    assert server.mqtt.sys_topics.handle is None and not server.mqtt.sys_topics.retained
    await wire.expect_nothing(INTERVAL * 3)
    await wire.close()
