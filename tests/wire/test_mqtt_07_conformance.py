"""MQTT MUSTs found missing by third-party suites (issue 13), one transcript each:
expiry forwarding, zero-length filters, the client's Maximum Packet Size on CONNACK
and DISCONNECT, and acknowledgements of the wrong QoS flow."""

from __future__ import annotations

import pytest

from hybridbus.codec.mqtt import Connack, Disconnect, MQTTParser, Publish, encode_properties
from hybridbus.codec.mqtt.packets import CONNECT, PUBLISH
from tests.helpers import mqtt_packets as mp
from tests.helpers.wire import Wire, mqtt5_connect, mqtt_connect, mqtt_packets


def props(ptype: int, **values) -> bytes:
    """A property block without its length prefix (mp.* adds the prefix)."""
    block = encode_properties(values, ptype)
    i = 0
    while block[i] & 0x80:
        i += 1
    return block[i + 1 :]


async def _one_raw_packet(wire: Wire) -> bytes:
    """The next whole packet as the server wrote it (remaining length < 128)."""
    await wire.expect_re(rb"(?=..)", timeout=3)  # wait for the fixed header
    size = 2 + wire.buffer[1]
    assert wire.buffer[1] < 0x80
    m = await wire.expect_re(b"." * size)
    return m.group(0)


# -- [MQTT-3.3.2-6] ------------------------------------------------------------------


async def test_MQTT_3_3_2_6_expiry_forwarded_minus_whole_seconds_waited(nats_server):
    sub, _ = await mqtt5_connect(nats_server.mqtt_port, "sub")
    await sub.send(mp.subscribe(1, ("exp/now", 1), level=5))
    await mqtt_packets(sub, 1)
    pub, _ = await mqtt5_connect(nats_server.mqtt_port, "pub")
    for mid, interval in ((1, 4), (2, 1), (3, 60)):
        expiry = props(PUBLISH, message_expiry_interval=interval)
        await pub.send(mp.publish("exp/now", b"x", qos=1, mid=mid, level=5, properties=expiry))
    got = await mqtt_packets(sub, 3)
    # Forwarded at once: no whole second has passed, so the value is unchanged.
    assert [p.properties["message_expiry_interval"] for p in got] == [4, 1, 60]
    await sub.close()
    await pub.close()


# -- [MQTT-4.7.3-1] ------------------------------------------------------------------


@pytest.mark.parametrize("packet", ["subscribe", "unsubscribe"])
@pytest.mark.parametrize("level", [4, 5], ids=["v311", "v5"])
async def test_MQTT_4_7_3_1_zero_length_topic_filter_closes(nats_server, packet, level):
    if level == 5:
        wire, _ = await mqtt5_connect(nats_server.mqtt_port, "empty")
    else:
        wire = await mqtt_connect(nats_server.mqtt_port, "empty")
    if packet == "subscribe":
        await wire.send(mp.subscribe(1, ("ok/x", 0), ("", 0), level=level))
    else:
        await wire.send(mp.unsubscribe(1, "ok/x", "", level=level))
    rest = await wire.expect_closed()
    if level == 5:
        # A malformed packet: DISCONNECT 0x81 (5.0 section 4.13), no SUBACK/UNSUBACK.
        (disconnect,) = MQTTParser(protocol_level=5).feed(rest)
        assert isinstance(disconnect, Disconnect) and disconnect.reason_code == 0x81
    else:
        assert rest == b""  # 3.1.1: the connection is closed, nothing is answered
    assert "empty" not in nats_server.mqtt.sessions


# -- [MQTT-3.1.2-24] -----------------------------------------------------------------


async def test_MQTT_3_1_2_24_connack_trimmed_to_client_maximum_packet_size(nats_server):
    wire = await Wire.open(nats_server.mqtt_port)
    limit = props(CONNECT, maximum_packet_size=20)
    await wire.send(mp.connect("small", level=5, properties=limit))
    raw = await _one_raw_packet(wire)
    assert len(raw) <= 20, raw
    (connack,) = MQTTParser(protocol_level=5).feed(raw)
    assert isinstance(connack, Connack) and connack.reason_code == 0
    # What the client must know to stay within our limits is kept.
    assert connack.properties["receive_maximum"] == nats_server.options.mqtt.receive_maximum
    assert connack.properties["maximum_packet_size"] > 0
    await wire.send(mp.PINGREQ)
    await wire.expect(mp.PINGRESP)
    await wire.close()


async def test_MQTT_3_1_2_24_connack_that_cannot_fit_refused_with_0x95(nats_server):
    wire = await Wire.open(nats_server.mqtt_port)
    await wire.send(mp.connect("tiny", level=5, properties=props(CONNECT, maximum_packet_size=8)))
    # Even a bare CONNACK with our limits is larger than 8 bytes: the 5-byte refusal.
    assert await wire.expect_closed() == mp.connack(0, 0x95, level=5)
    assert "tiny" not in nats_server.mqtt.sessions


async def test_MQTT_3_1_2_24_no_packet_at_all_when_nothing_fits(nats_server):
    wire = await Wire.open(nats_server.mqtt_port)
    await wire.send(mp.connect("tinier", level=5, properties=props(CONNECT, maximum_packet_size=4)))
    assert await wire.expect_closed() == b""
    assert "tinier" not in nats_server.mqtt.sessions


async def test_MQTT_3_14_2_3_disconnect_reason_string_dropped_to_fit(nats_server):
    wire, _ = await mqtt5_connect(
        nats_server.mqtt_port, "strict", properties=props(CONNECT, maximum_packet_size=16)
    )
    await wire.send(mp.publish("a/+", b"x", level=5))  # a wildcard in a topic name
    rest = await wire.expect_closed()
    assert len(rest) <= 16, rest
    (disconnect,) = MQTTParser(protocol_level=5).feed(rest)
    assert disconnect.reason_code == 0x90 and "reason_string" not in disconnect.properties


# -- [MQTT-4.8.0-1] ------------------------------------------------------------------


@pytest.mark.parametrize(
    "qos, wrong",
    [(1, mp.pubrec), (1, mp.pubcomp), (2, mp.puback)],
    ids=["pubrec-for-qos1", "pubcomp-for-qos1", "puback-for-qos2"],
)
@pytest.mark.parametrize("level", [4, 5], ids=["v311", "v5"])
async def test_MQTT_4_8_0_1_ack_of_the_wrong_qos_flow_closes(nats_server, qos, wrong, level):
    if level == 5:
        sub, _ = await mqtt5_connect(nats_server.mqtt_port, "sub")
    else:
        sub = await mqtt_connect(nats_server.mqtt_port, "sub")
    await sub.send(mp.subscribe(1, ("acks/x", qos), level=level))
    await mqtt_packets(sub, 1, level=level)
    pub = await mqtt_connect(nats_server.mqtt_port, "pub")
    await pub.send(mp.publish("acks/x", b"m", qos=qos, mid=9))
    if qos == 2:  # the whole inbound flow: routed on PUBLISH or on PUBREL (4.3.3)
        await pub.expect(mp.pubrec(9))
        await pub.send(mp.pubrel(9))
        await pub.expect(mp.pubcomp(9))
    (msg,) = await mqtt_packets(sub, 1, level=level)
    assert isinstance(msg, Publish) and msg.qos == qos
    await sub.send(wrong(msg.packet_id))
    rest = await sub.expect_closed()
    if level == 5:
        (disconnect,) = MQTTParser(protocol_level=5).feed(rest)
        assert disconnect.reason_code == 0x82  # protocol error (5.0 section 4.13)
    else:
        assert rest == b""
    await pub.close()


async def test_ack_for_an_id_not_in_flight_is_ignored(nats_server):
    """Only an ack of the other flow is a violation: a late PUBACK for an id that is
    no longer (or never was) in flight stays harmless, as before."""
    wire = await mqtt_connect(nats_server.mqtt_port, "late")
    await wire.send(mp.puback(77) + mp.pubcomp(78) + mp.PINGREQ)
    await wire.expect(mp.PINGRESP)
    await wire.close()
