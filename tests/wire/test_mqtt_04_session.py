"""Persistent sessions across reconnects (in one server process)."""

from __future__ import annotations

from tests.helpers import mqtt_packets as mp
from tests.helpers.wire import eventually, mqtt_connect


async def test_MQTT_3_2_2_2_session_present_and_queued_messages(nats_server):
    dev = await mqtt_connect(nats_server.mqtt_port, "dev", clean=False)
    await dev.send(mp.subscribe(1, ("cmd/dev", 1)))
    await dev.expect(mp.suback(1, 1))
    await dev.send(mp.DISCONNECT)
    await dev.expect_closed()
    pub = await mqtt_connect(nats_server.mqtt_port, "p")
    for i in range(3):
        await pub.send(mp.publish("cmd/dev", b"%d" % i, qos=1, mid=i + 1))
        await pub.expect(mp.puback(i + 1))
    await pub.send(mp.publish("cmd/dev", b"qos0-dropped-offline"))
    dev = await mqtt_connect(nats_server.mqtt_port, "dev", clean=False, expect_present=1)
    await dev.expect(b"".join(mp.publish("cmd/dev", b"%d" % i, qos=1, mid=i + 1) for i in range(3)))
    for i in range(3):
        await dev.send(mp.puback(i + 1))
    await dev.expect_nothing()
    await dev.close()
    await pub.close()


async def test_MQTT_4_4_0_1_unacked_resent_with_dup_after_reconnect(nats_server):
    dev = await mqtt_connect(nats_server.mqtt_port, "dev", clean=False)
    await dev.send(mp.subscribe(1, ("t", 2)))
    await dev.expect(mp.suback(1, 2))
    pub = await mqtt_connect(nats_server.mqtt_port, "p")
    await pub.send(mp.publish("t", b"q1", qos=1, mid=1))
    await pub.send(mp.publish("t", b"q2", qos=2, mid=2))
    await dev.expect(mp.publish("t", b"q1", qos=1, mid=1) + mp.publish("t", b"q2", qos=2, mid=2))
    await dev.close()  # no acks: network loss
    dev = await mqtt_connect(nats_server.mqtt_port, "dev", clean=False, expect_present=1)
    await dev.expect(
        mp.publish("t", b"q1", qos=1, dup=True, mid=1)
        + mp.publish("t", b"q2", qos=2, dup=True, mid=2)
    )
    await dev.send(mp.puback(1) + mp.pubrec(2))
    await dev.expect(mp.pubrel(2))
    await dev.close()  # PUBREL unanswered
    dev = await mqtt_connect(nats_server.mqtt_port, "dev", clean=False, expect_present=1)
    await dev.expect(mp.pubrel(2))
    await dev.send(mp.pubcomp(2))
    await dev.expect_nothing()
    await dev.close()
    await pub.close()


async def test_clean_session_discards_state(nats_server):
    dev = await mqtt_connect(nats_server.mqtt_port, "dev", clean=False)
    await dev.send(mp.subscribe(1, ("x", 1)))
    await dev.expect(mp.suback(1, 1))
    await dev.close()
    dev = await mqtt_connect(nats_server.mqtt_port, "dev", clean=True, expect_present=0)
    pub = await mqtt_connect(nats_server.mqtt_port, "p")
    await pub.send(mp.publish("x", b"nobody", qos=1, mid=1))
    await pub.expect(mp.puback(1))
    await dev.expect_nothing()
    await dev.close()
    await eventually(lambda: "dev" not in nats_server.mqtt.sessions)
    await pub.close()


async def test_offline_queue_bounded_drops_oldest(server_factory):
    server = await server_factory(mqtt__max_session_messages=3)
    dev = await mqtt_connect(server.mqtt_port, "dev", clean=False)
    await dev.send(mp.subscribe(1, ("b", 1)))
    await dev.expect(mp.suback(1, 1))
    await dev.send(mp.DISCONNECT)
    await dev.expect_closed()
    pub = await mqtt_connect(server.mqtt_port, "p")
    for i in range(5):
        await pub.send(mp.publish("b", b"%d" % i, qos=1, mid=i + 1))
        await pub.expect(mp.puback(i + 1))
    dev = await mqtt_connect(server.mqtt_port, "dev", clean=False, expect_present=1)
    await dev.expect(b"".join(mp.publish("b", b"%d" % i, qos=1, mid=i + 1) for i in (2, 3, 4)))
    assert server.mqtt.sessions["dev"].dropped == 2
    await dev.close()
    await pub.close()
