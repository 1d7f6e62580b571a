"""MQTT publish/subscribe and the QoS flows on a raw socket."""

from __future__ import annotations

from tests.helpers import mqtt_packets as mp
from tests.helpers.wire import mqtt_connect


async def test_qos0_pub_sub(nats_server):
    sub = await mqtt_connect(nats_server.mqtt_port, "s")
    await sub.send(mp.subscribe(1, ("a/b", 0)))
    await sub.expect(mp.suback(1, 0))
    pub = await mqtt_connect(nats_server.mqtt_port, "p")
    await pub.send(mp.publish("a/b", b"hello"))
    await sub.expect(mp.publish("a/b", b"hello"))
    await sub.close()
    await pub.close()


async def test_wildcards_plus_and_hash(nats_server):
    sub = await mqtt_connect(nats_server.mqtt_port, "s")
    await sub.send(mp.subscribe(1, ("a/+/c", 0), ("x/#", 0)))
    await sub.expect(mp.suback(1, 0, 0))
    pub = await mqtt_connect(nats_server.mqtt_port, "p")
    for topic in ("a/b/c", "a/b/d", "x", "x/y/z", "a/c"):
        await pub.send(mp.publish(topic, topic.encode()))
    # [MQTT-4.7.1-2] `x/#` matches `x` itself
    for topic in ("a/b/c", "x", "x/y/z"):
        await sub.expect(mp.publish(topic, topic.encode()))
    await sub.expect_nothing()
    await sub.close()
    await pub.close()


async def test_MQTT_4_7_2_1_wildcards_skip_dollar_topics(nats_server):
    sub = await mqtt_connect(nats_server.mqtt_port, "s")
    # Any `$` topic (clients may not publish under $SYS itself, see test_sys_topics).
    await sub.send(mp.subscribe(1, ("#", 0), ("+/info", 0), ("$app/#", 0)))
    await sub.expect(mp.suback(1, 0, 0, 0))
    pub = await mqtt_connect(nats_server.mqtt_port, "p")
    await pub.send(mp.publish("$app/info", b"sys"))
    await pub.send(mp.publish("plain", b"p"))
    await sub.expect(mp.publish("$app/info", b"sys"))  # only via $app/#, once
    await sub.expect(mp.publish("plain", b"p"))
    await sub.expect_nothing()
    await sub.close()
    await pub.close()


async def test_overlapping_subscriptions_deliver_one_copy_at_max_qos(nats_server):
    sub = await mqtt_connect(nats_server.mqtt_port, "s")
    await sub.send(mp.subscribe(1, ("o/+", 0), ("o/#", 1)))
    await sub.expect(mp.suback(1, 0, 1))
    pub = await mqtt_connect(nats_server.mqtt_port, "p")
    await pub.send(mp.publish("o/x", b"m", qos=1, mid=5))
    await pub.expect(mp.puback(5))
    await sub.expect(mp.publish("o/x", b"m", qos=1, mid=1))
    await sub.expect_nothing()
    await sub.send(mp.puback(1))
    await sub.close()
    await pub.close()


async def test_qos1_both_legs(nats_server):
    sub = await mqtt_connect(nats_server.mqtt_port, "s")
    await sub.send(mp.subscribe(1, ("q/1", 1)))
    await sub.expect(mp.suback(1, 1))
    pub = await mqtt_connect(nats_server.mqtt_port, "p")
    await pub.send(mp.publish("q/1", b"one", qos=1, mid=10))
    await pub.expect(mp.puback(10))
    await sub.expect(mp.publish("q/1", b"one", qos=1, mid=1))
    assert nats_server.mqtt.sessions["s"].inflight
    await sub.send(mp.puback(1) + mp.PINGREQ)
    await sub.expect(mp.PINGRESP)
    assert not nats_server.mqtt.sessions["s"].inflight
    await sub.close()
    await pub.close()


async def test_delivered_qos_is_min_of_published_and_granted(nats_server):
    sub = await mqtt_connect(nats_server.mqtt_port, "s")
    await sub.send(mp.subscribe(1, ("g/0", 0), ("g/2", 2)))
    await sub.expect(mp.suback(1, 0, 2))
    pub = await mqtt_connect(nats_server.mqtt_port, "p")
    await pub.send(mp.publish("g/0", b"a", qos=2, mid=1))
    await pub.expect(mp.pubrec(1))
    await sub.expect(mp.publish("g/0", b"a"))
    await pub.send(mp.publish("g/2", b"b", qos=1, mid=2))
    await pub.expect(mp.puback(2))
    await sub.expect(mp.publish("g/2", b"b", qos=1, mid=1))
    await sub.close()
    await pub.close()


async def test_qos2_exactly_once_inbound_and_outbound(nats_server):
    sub = await mqtt_connect(nats_server.mqtt_port, "s")
    await sub.send(mp.subscribe(1, ("q/2", 2)))
    await sub.expect(mp.suback(1, 2))
    pub = await mqtt_connect(nats_server.mqtt_port, "p")
    await pub.send(mp.publish("q/2", b"once", qos=2, mid=7))
    await pub.expect(mp.pubrec(7))
    # [MQTT-4.3.3-9] the same id again before PUBREL: acknowledged, not routed twice
    await pub.send(mp.publish("q/2", b"once", qos=2, dup=True, mid=7))
    await pub.expect(mp.pubrec(7))
    await pub.send(mp.pubrel(7))
    await pub.expect(mp.pubcomp(7))
    await sub.expect(mp.publish("q/2", b"once", qos=2, mid=1))
    await sub.send(mp.pubrec(1))
    await sub.expect(mp.pubrel(1))
    await sub.send(mp.pubcomp(1))
    await sub.expect_nothing()
    assert not nats_server.mqtt.sessions["s"].inflight
    await sub.close()
    await pub.close()


async def test_MQTT_3_3_2_2_wildcard_in_topic_name_closes(nats_server):
    pub = await mqtt_connect(nats_server.mqtt_port, "p")
    await pub.send(mp.publish("a/+", b"x"))
    assert await pub.expect_closed() == b""


async def test_MQTT_3_3_1_4_qos3_is_malformed(nats_server):
    pub = await mqtt_connect(nats_server.mqtt_port, "p")
    await pub.send(b"\x36\x05\x00\x01a\x00\x01")
    assert await pub.expect_closed() == b""


async def test_invalid_filter_gets_0x80(nats_server):
    sub = await mqtt_connect(nats_server.mqtt_port, "s")
    await sub.send(mp.subscribe(3, ("a/#/b", 0), ("ok/+", 1), ("a+", 0)))
    await sub.expect(mp.suback(3, 0x80, 1, 0x80))
    await sub.close()


async def test_unsubscribe_stops_delivery(nats_server):
    sub = await mqtt_connect(nats_server.mqtt_port, "s")
    await sub.send(mp.subscribe(1, ("u/t", 0)))
    await sub.expect(mp.suback(1, 0))
    await sub.send(mp.unsubscribe(2, "u/t", "never/subscribed"))
    await sub.expect(mp.unsuback(2))
    pub = await mqtt_connect(nats_server.mqtt_port, "p")
    await pub.send(mp.publish("u/t", b"x"))
    await sub.send(mp.PINGREQ)
    await sub.expect(mp.PINGRESP)
    await sub.close()
    await pub.close()


async def test_in_flight_window_queues_the_rest(server_factory):
    server = await server_factory(mqtt__max_ack_pending=2)
    sub = await mqtt_connect(server.mqtt_port, "s")
    await sub.send(mp.subscribe(1, ("w", 1)))
    await sub.expect(mp.suback(1, 1))
    pub = await mqtt_connect(server.mqtt_port, "p")
    for i in range(4):
        await pub.send(mp.publish("w", b"%d" % i, qos=1, mid=i + 1))
        await pub.expect(mp.puback(i + 1))
    await sub.expect(mp.publish("w", b"0", qos=1, mid=1) + mp.publish("w", b"1", qos=1, mid=2))
    await sub.expect_nothing()
    await sub.send(mp.puback(1))
    await sub.expect(mp.publish("w", b"2", qos=1, mid=3))
    await sub.send(mp.puback(2) + mp.puback(3))
    await sub.expect(mp.publish("w", b"3", qos=1, mid=4))
    await sub.close()
    await pub.close()


async def test_topics_with_dots_spaces_and_empty_levels_arrive_unchanged(nats_server):
    sub = await mqtt_connect(nats_server.mqtt_port, "s")
    await sub.send(mp.subscribe(1, ("#", 0)))
    await sub.expect(mp.suback(1, 0))
    pub = await mqtt_connect(nats_server.mqtt_port, "p")
    for topic in ("dot.ted/x", "/lead", "trail/", "dbl//slash", "has space/tab\there", "ünï/*/>/%"):
        await pub.send(mp.publish(topic, b"t"))
        await sub.expect(mp.publish(topic, b"t"))
    await sub.close()
    await pub.close()


async def test_max_subscriptions_applies_to_mqtt_filters(server_factory):
    server = await server_factory(max_subscriptions=2)
    sub = await mqtt_connect(server.mqtt_port, "s")
    await sub.send(mp.subscribe(1, ("a", 0), ("b", 0), ("c", 0)))
    await sub.expect(mp.suback(1, 0, 0, 0x80))
    # re-subscribing to an existing filter replaces it and does not count again
    await sub.send(mp.subscribe(2, ("a", 1)))
    await sub.expect(mp.suback(2, 1))
    await sub.close()


async def test_share_name_that_is_no_queue_name_is_refused(nats_server):
    # The share name is the NATS queue group too, and a queue name has no whitespace:
    # refused in the SUBACK (found by the live fuzzer, which once took the connection
    # down with it); the connection and the other filters are fine.
    from tests.helpers.wire import mqtt5_connect, mqtt_packets

    sub = await mqtt_connect(nats_server.mqtt_port, "s")
    await sub.send(mp.subscribe(1, ("$share/g /t", 1), ("$share/g/t", 1), ("$share/a\tb/t", 0)))
    await sub.expect(mp.suback(1, 0x80, 1, 0x80))
    await sub.send(mp.PINGREQ)
    await sub.expect(mp.PINGRESP)
    v5, _ = await mqtt5_connect(nats_server.mqtt_port, "s5")
    await v5.send(mp.subscribe(2, ("$share/g h/t", 1), level=5))
    (suback,) = await mqtt_packets(v5, 1)
    assert suback.reason_codes == [0x8F]
