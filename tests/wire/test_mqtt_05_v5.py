"""MQTT 5.0 features on a raw socket; replies decoded with the codec (level 5)."""

from __future__ import annotations

import asyncio

from hybridbus.codec.mqtt import Connack, Disconnect, Publish, encode_properties
from hybridbus.codec.mqtt.packets import CONNECT, PUBLISH, SUBSCRIBE
from hybridbus.codec.mqtt.properties import WILL
from tests.helpers import mqtt_packets as mp
from tests.helpers.wire import Wire, mqtt5_connect, mqtt_connect, mqtt_packets


def props(ptype: int, **values) -> bytes:
    """A property block without its length prefix (mp.* adds the prefix)."""
    block = encode_properties(values, ptype)
    # strip the varint length the codec put in front
    i = 0
    while block[i] & 0x80:
        i += 1
    return block[i + 1 :]


async def test_connack_advertises_capabilities(nats_server):
    wire, connack = await mqtt5_connect(nats_server.mqtt_port, "v5")
    p = connack.properties
    assert p["retain_available"] == 1
    assert p["wildcard_subscription_available"] == 1
    assert p["subscription_identifier_available"] == 1
    assert p["shared_subscription_available"] == 1
    assert p["receive_maximum"] == nats_server.options.mqtt.receive_maximum
    assert p["maximum_packet_size"] > 0
    assert "maximum_qos" not in p  # absent means QoS 2 is supported
    await wire.close()


async def test_assigned_client_identifier(nats_server):
    wire, connack = await mqtt5_connect(nats_server.mqtt_port, "")
    assigned = connack.properties["assigned_client_identifier"]
    assert assigned in nats_server.mqtt.sessions
    await wire.close()


async def test_server_keep_alive(server_factory):
    server = await server_factory(mqtt__max_keepalive=30)
    wire, connack = await mqtt5_connect(server.mqtt_port, "k", keepalive=600)
    assert connack.properties["server_keep_alive"] == 30
    await wire.close()


async def test_bad_authentication_method_refused(nats_server):
    wire = await Wire.open(nats_server.mqtt_port)
    await wire.send(
        mp.connect("a", level=5, properties=props(CONNECT, authentication_method="SCRAM"))
    )
    (connack,) = await mqtt_packets(wire, 1)
    assert isinstance(connack, Connack) and connack.reason_code == 0x8C
    await wire.expect_closed()


async def test_session_expiry_keeps_session_then_ends_it(nats_server):
    expiry = props(CONNECT, session_expiry_interval=1)
    wire, _ = await mqtt5_connect(nats_server.mqtt_port, "exp", clean=False, properties=expiry)
    await wire.send(mp.subscribe(1, ("e/x", 1), level=5))
    await mqtt_packets(wire, 1)
    await wire.close()
    await asyncio.sleep(0.2)
    wire, connack = await mqtt5_connect(
        nats_server.mqtt_port, "exp", clean=False, properties=expiry
    )
    assert connack.session_present
    await wire.close()
    await asyncio.sleep(1.6)
    assert "exp" not in nats_server.mqtt.sessions
    wire, connack = await mqtt5_connect(
        nats_server.mqtt_port, "exp", clean=False, properties=expiry
    )
    assert not connack.session_present
    await wire.close()


async def test_subscription_identifiers_and_user_properties_on_delivery(nats_server):
    sub, _ = await mqtt5_connect(nats_server.mqtt_port, "s")
    await sub.send(
        mp.subscribe(
            1, ("sid/+", 1), level=5, properties=props(SUBSCRIBE, subscription_identifier=7)
        )
    )
    await mqtt_packets(sub, 1)
    pub, _ = await mqtt5_connect(nats_server.mqtt_port, "p")
    user = props(PUBLISH, user_property=[("k", "v")], content_type="text/plain")
    await pub.send(mp.publish("sid/a", b"x", qos=1, mid=1, level=5, properties=user))
    (msg,) = await mqtt_packets(sub, 1)
    assert isinstance(msg, Publish)
    assert msg.properties["subscription_identifier"] == [7]
    assert msg.properties["user_property"] == [("k", "v")]
    assert msg.properties["content_type"] == "text/plain"
    await sub.close()
    await pub.close()


async def test_v311_subscriber_gets_v5_message_without_properties(nats_server):
    sub = await mqtt_connect(nats_server.mqtt_port, "old")
    await sub.send(mp.subscribe(1, ("mix", 0)))
    await sub.expect(mp.suback(1, 0))
    pub, _ = await mqtt5_connect(nats_server.mqtt_port, "new")
    user = props(PUBLISH, user_property=[("k", "v")], response_topic="r/t")
    await pub.send(mp.publish("mix", b"body", level=5, properties=user))
    await sub.expect(mp.publish("mix", b"body"))
    await sub.close()
    await pub.close()


async def test_no_local(nats_server):
    wire, _ = await mqtt5_connect(nats_server.mqtt_port, "nl")
    await wire.send(mp.subscribe(1, ("loop", 0x04), level=5))  # QoS 0 + No Local
    await mqtt_packets(wire, 1)
    await wire.send(mp.publish("loop", b"mine", level=5))
    other, _ = await mqtt5_connect(nats_server.mqtt_port, "other")
    await other.send(mp.publish("loop", b"theirs", level=5))
    (msg,) = await mqtt_packets(wire, 1)
    assert msg.payload == b"theirs"
    await wire.close()
    await other.close()


async def test_retain_handling_and_retain_as_published(nats_server):
    pub, _ = await mqtt5_connect(nats_server.mqtt_port, "p")
    await pub.send(mp.publish("rh/x", b"kept", retain=True, level=5))
    await pub.send(mp.PINGREQ)
    await mqtt_packets(pub, 1)
    sub, _ = await mqtt5_connect(nats_server.mqtt_port, "s")
    await sub.send(mp.subscribe(1, ("rh/x", 0x20), level=5))  # retain handling 2: none
    await mqtt_packets(sub, 1)
    await sub.send(mp.subscribe(2, ("rh/+", 0x10), level=5))  # 1: only if new
    suback, retained = await mqtt_packets(sub, 2)
    assert retained.retain and retained.payload == b"kept"
    await sub.send(mp.subscribe(3, ("rh/+", 0x10), level=5))  # not new: nothing
    (suback,) = await mqtt_packets(sub, 1)
    await sub.send(mp.subscribe(4, ("rap/#", 0x08), level=5))  # retain as published
    await mqtt_packets(sub, 1)
    await pub.send(mp.publish("rap/y", b"r", retain=True, level=5))
    (live,) = await mqtt_packets(sub, 1)
    assert live.retain is True
    await sub.close()
    await pub.close()


async def test_message_expiry_drops_expired_and_forwards_remaining(nats_server):
    dev, _ = await mqtt5_connect(
        nats_server.mqtt_port,
        "dev",
        clean=False,
        properties=props(CONNECT, session_expiry_interval=60),
    )
    await dev.send(mp.subscribe(1, ("exp/#", 1), level=5))
    await mqtt_packets(dev, 1)
    await dev.close()
    pub, _ = await mqtt5_connect(nats_server.mqtt_port, "p")
    await pub.send(
        mp.publish(
            "exp/short",
            b"gone",
            qos=1,
            mid=1,
            level=5,
            properties=props(PUBLISH, message_expiry_interval=1),
        )
    )
    await pub.send(
        mp.publish(
            "exp/long",
            b"kept",
            qos=1,
            mid=2,
            level=5,
            properties=props(PUBLISH, message_expiry_interval=100),
        )
    )
    await mqtt_packets(pub, 2)
    await asyncio.sleep(1.3)
    dev, connack = await mqtt5_connect(
        nats_server.mqtt_port,
        "dev",
        clean=False,
        properties=props(CONNECT, session_expiry_interval=60),
    )
    assert connack.session_present
    (msg,) = await mqtt_packets(dev, 1)
    assert msg.payload == b"kept"
    assert 95 <= msg.properties["message_expiry_interval"] < 100
    await dev.close()
    await pub.close()


async def test_topic_alias_inbound(nats_server):
    sub, _ = await mqtt5_connect(nats_server.mqtt_port, "s")
    await sub.send(mp.subscribe(1, ("alias/t", 0), level=5))
    await mqtt_packets(sub, 1)
    pub, _ = await mqtt5_connect(nats_server.mqtt_port, "p")
    await pub.send(mp.publish("alias/t", b"1", level=5, properties=props(PUBLISH, topic_alias=3)))
    await pub.send(mp.publish("", b"2", level=5, properties=props(PUBLISH, topic_alias=3)))
    first, second = await mqtt_packets(sub, 2)
    assert (first.topic, second.topic) == ("alias/t", "alias/t")
    assert second.payload == b"2"
    await pub.send(mp.publish("", b"3", level=5, properties=props(PUBLISH, topic_alias=9)))
    (disconnect,) = await mqtt_packets(pub, 1)
    assert isinstance(disconnect, Disconnect) and disconnect.reason_code == 0x82
    await sub.close()


async def test_receive_maximum_exceeded_disconnects_0x93(server_factory):
    server = await server_factory(mqtt__receive_maximum=2)
    # a persistent session subscriber makes every publish wait for the store
    wire, connack = await mqtt5_connect(server.mqtt_port, "greedy")
    assert connack.properties["receive_maximum"] == 2
    frames = b"".join(mp.publish("rm", b"x", qos=2, mid=i, level=5) for i in range(1, 4))
    await wire.send(frames)
    packets = await mqtt_packets(wire, 3)
    assert [type(p).__name__ for p in packets] == ["Pubrec", "Pubrec", "Disconnect"]
    assert packets[-1].reason_code == 0x93
    await wire.expect_closed()


async def test_packet_too_large_disconnects_0x95(server_factory):
    server = await server_factory(mqtt__max_packet_size=256)
    wire, connack = await mqtt5_connect(server.mqtt_port, "big")
    assert connack.properties["maximum_packet_size"] == 256
    await wire.send(mp.publish("t", b"x" * 300, level=5))
    (disconnect,) = await mqtt_packets(wire, 1)
    assert disconnect.reason_code == 0x95
    await wire.expect_closed()


async def test_never_send_more_than_client_maximum_packet_size(nats_server):
    small = props(CONNECT, maximum_packet_size=64)
    sub, _ = await mqtt5_connect(nats_server.mqtt_port, "small", properties=small)
    await sub.send(mp.subscribe(1, ("sz", 1), level=5))
    await mqtt_packets(sub, 1)
    pub, _ = await mqtt5_connect(nats_server.mqtt_port, "p")
    await pub.send(mp.publish("sz", b"y" * 200, qos=1, mid=1, level=5))
    await pub.send(mp.publish("sz", b"ok", qos=1, mid=2, level=5))
    (msg,) = await mqtt_packets(sub, 1)
    assert msg.payload == b"ok"
    assert (
        not nats_server.mqtt.sessions["small"].inflight
        or msg.packet_id in nats_server.mqtt.sessions["small"].inflight
    )
    await sub.close()
    await pub.close()


async def test_keep_alive_timeout_sends_0x8d(nats_server):
    wire, _ = await mqtt5_connect(nats_server.mqtt_port, "ka", keepalive=1)
    (disconnect,) = await mqtt_packets(wire, 1, timeout=5)
    assert disconnect.reason_code == 0x8D


async def test_takeover_sends_0x8e(nats_server):
    first, _ = await mqtt5_connect(nats_server.mqtt_port, "same")
    second, _ = await mqtt5_connect(nats_server.mqtt_port, "same")
    (disconnect,) = await mqtt_packets(first, 1)
    assert disconnect.reason_code == 0x8E
    await second.close()


async def test_will_delay_cancelled_by_reconnect_and_fired_otherwise(nats_server):
    watcher = await mqtt_connect(nats_server.mqtt_port, "w")
    await watcher.send(mp.subscribe(1, ("will/#", 0)))
    await watcher.expect(mp.suback(1, 0))
    session = props(CONNECT, session_expiry_interval=30)
    will_props = props(WILL, will_delay_interval=1)
    dev, _ = await mqtt5_connect(
        nats_server.mqtt_port,
        "d",
        clean=False,
        properties=session,
        will=("will/d", b"late", 0, False),
        will_properties=will_props,
    )
    dev.writer.transport.abort()
    await asyncio.sleep(0.3)
    dev, _ = await mqtt5_connect(
        nats_server.mqtt_port,
        "d",
        clean=False,
        properties=session,
        will=("will/d", b"late", 0, False),
        will_properties=will_props,
    )
    await watcher.expect_nothing(1.3)  # reconnected within the delay [MQTT-3.1.3-9]
    dev.writer.transport.abort()
    await watcher.expect(mp.publish("will/d", b"late"), timeout=3)
    await watcher.close()


async def test_session_expiry_changed_at_disconnect(nats_server):
    wire, _ = await mqtt5_connect(
        nats_server.mqtt_port,
        "chg",
        clean=False,
        properties=props(CONNECT, session_expiry_interval=60),
    )
    body = bytes((0,)) + encode_properties({"session_expiry_interval": 0}, 14)
    await wire.send(b"\xe0" + bytes((len(body),)) + body)
    await wire.expect_closed()
    await asyncio.sleep(0.1)
    assert "chg" not in nats_server.mqtt.sessions


async def test_topic_alias_outbound(nats_server):
    sub, _ = await mqtt5_connect(
        nats_server.mqtt_port, "s", properties=props(CONNECT, topic_alias_maximum=1)
    )
    await sub.send(mp.subscribe(1, ("ta/#", 0), level=5))
    await mqtt_packets(sub, 1)
    pub, _ = await mqtt5_connect(nats_server.mqtt_port, "p")
    for topic, body in (("ta/one", b"1"), ("ta/one", b"2"), ("ta/two", b"3")):
        await pub.send(mp.publish(topic, body, level=5))
    first, second, third = await mqtt_packets(sub, 3)
    assert (first.topic, first.properties["topic_alias"]) == ("ta/one", 1)
    assert (second.topic, second.properties["topic_alias"], second.payload) == ("", 1, b"2")
    # the client allows one alias only: the next topic goes out in full, without one
    assert third.topic == "ta/two" and "topic_alias" not in third.properties
    await sub.close()
    await pub.close()


async def test_response_information_on_request(nats_server):
    wire, connack = await mqtt5_connect(
        nats_server.mqtt_port, "asker", properties=props(CONNECT, request_response_information=1)
    )
    assert connack.properties["response_information"] == "hybridbus/response/asker"
    await wire.close()
