"""Retained messages and wills on a raw socket."""

from __future__ import annotations

from tests.helpers import mqtt_packets as mp
from tests.helpers.wire import Wire, mqtt_connect


async def test_MQTT_3_3_1_6_retained_sent_on_subscribe_with_retain_flag(nats_server):
    pub = await mqtt_connect(nats_server.mqtt_port, "p")
    await pub.send(mp.publish("r/state", b"on", qos=1, retain=True, mid=1))
    await pub.expect(mp.puback(1))
    sub = await mqtt_connect(nats_server.mqtt_port, "s")
    await sub.send(mp.subscribe(1, ("r/+", 1)))
    await sub.expect(mp.suback(1, 1) + mp.publish("r/state", b"on", qos=1, retain=True, mid=1))
    await sub.close()
    await pub.close()


async def test_MQTT_3_3_1_9_live_delivery_has_retain_0(nats_server):
    sub = await mqtt_connect(nats_server.mqtt_port, "s")
    await sub.send(mp.subscribe(1, ("r/live", 0)))
    await sub.expect(mp.suback(1, 0))
    pub = await mqtt_connect(nats_server.mqtt_port, "p")
    await pub.send(mp.publish("r/live", b"v", retain=True))
    await sub.expect(mp.publish("r/live", b"v", retain=False))
    await sub.close()
    await pub.close()


async def test_retained_replaced_and_cleared_by_empty_payload(nats_server):
    pub = await mqtt_connect(nats_server.mqtt_port, "p")
    await pub.send(mp.publish("r/x", b"1", retain=True))
    await pub.send(mp.publish("r/x", b"2", retain=True))
    await pub.send(mp.publish("r/y", b"y", retain=True))
    await pub.send(mp.publish("r/y", b"", retain=True))  # [MQTT-3.3.1-10]
    await pub.send(mp.PINGREQ)
    await pub.expect(mp.PINGRESP)
    sub = await mqtt_connect(nats_server.mqtt_port, "s")
    await sub.send(mp.subscribe(1, ("r/#", 0)))
    await sub.expect(mp.suback(1, 0) + mp.publish("r/x", b"2", retain=True))
    await sub.expect_nothing()
    await sub.close()
    await pub.close()


async def test_wildcard_retained_replay_skips_dollar(nats_server):
    pub = await mqtt_connect(nats_server.mqtt_port, "p")
    await pub.send(mp.publish("$internal/x", b"hidden", retain=True))
    await pub.send(mp.publish("open/x", b"seen", retain=True))
    await pub.send(mp.PINGREQ)
    await pub.expect(mp.PINGRESP)
    sub = await mqtt_connect(nats_server.mqtt_port, "s")
    await sub.send(mp.subscribe(1, ("#", 0)))
    await sub.expect(mp.suback(1, 0) + mp.publish("open/x", b"seen", retain=True))
    await sub.expect_nothing()
    await sub.close()
    await pub.close()


async def test_will_published_on_network_loss(nats_server):
    watcher = await mqtt_connect(nats_server.mqtt_port, "watcher")
    await watcher.send(mp.subscribe(1, ("status/#", 1)))
    await watcher.expect(mp.suback(1, 1))
    dev = await mqtt_connect(
        nats_server.mqtt_port, "dev", will=("status/dev", b"offline", 1, False)
    )
    dev.writer.transport.abort()
    await watcher.expect(mp.publish("status/dev", b"offline", qos=1, mid=1))
    await watcher.close()


async def test_will_not_published_after_disconnect(nats_server):
    watcher = await mqtt_connect(nats_server.mqtt_port, "watcher")
    await watcher.send(mp.subscribe(1, ("status/#", 0)))
    await watcher.expect(mp.suback(1, 0))
    dev = await mqtt_connect(nats_server.mqtt_port, "dev", will=("status/dev", b"gone", 0, False))
    await dev.send(mp.DISCONNECT)
    await dev.expect_closed()
    await watcher.expect_nothing(0.5)
    await watcher.close()


async def test_will_published_on_protocol_error_and_retained(nats_server):
    dev = await mqtt_connect(nats_server.mqtt_port, "dev", will=("status/dev", b"dead", 0, True))
    await dev.send(mp.publish("bad/#", b"x"))
    await dev.expect_closed()
    sub = await mqtt_connect(nats_server.mqtt_port, "late")
    await sub.send(mp.subscribe(1, ("status/dev", 0)))
    await sub.expect(mp.suback(1, 0) + mp.publish("status/dev", b"dead", retain=True))
    await sub.close()


async def test_will_published_on_takeover(nats_server):
    watcher = await mqtt_connect(nats_server.mqtt_port, "watcher")
    await watcher.send(mp.subscribe(1, ("status/#", 0)))
    await watcher.expect(mp.suback(1, 0))
    await mqtt_connect(nats_server.mqtt_port, "dev", will=("status/dev", b"replaced", 0, False))
    second = await Wire.open(nats_server.mqtt_port)
    await second.send(mp.connect("dev"))
    await second.expect(mp.connack(0, 0))
    await watcher.expect(mp.publish("status/dev", b"replaced"))
    await watcher.close()
    await second.close()


async def test_will_published_on_keep_alive_timeout(nats_server):
    watcher = await mqtt_connect(nats_server.mqtt_port, "watcher")
    await watcher.send(mp.subscribe(1, ("status/#", 0)))
    await watcher.expect(mp.suback(1, 0))
    dev = await mqtt_connect(
        nats_server.mqtt_port, "quiet", keepalive=1, will=("status/quiet", b"timed out", 0, False)
    )
    # the device says nothing more: after 1.5 x keep alive it is cut and its will goes out
    await watcher.expect(mp.publish("status/quiet", b"timed out"), timeout=5)
    await dev.expect_closed()
    await watcher.close()
