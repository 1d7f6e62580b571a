"""Malformed and forbidden input: each case is named after the statement it breaks and
must raise MQTTProtocolError with the right reason code and that statement in its
message. Bytes are built by hand (`frame`), not with the encoder, which refuses them."""

from __future__ import annotations

import pytest

from hybridbus.codec.mqtt import (
    MQTTParser,
    MQTTProtocolError,
    MQTTUnsupportedProtocol,
    encode_connect,
    encode_pingreq,
    encode_publish,
)
from hybridbus.codec.mqtt.wire import encode_varint

MALFORMED = 0x81
PROTOCOL = 0x82
TOO_LARGE = 0x95


def frame(b0: int, body: bytes) -> bytes:
    return bytes((b0,)) + encode_varint(len(body)) + body


def s(text: bytes) -> bytes:
    return len(text).to_bytes(2, "big") + text


def connect_body(flags: int, level: int = 4, payload: bytes = b"\x00\x01c", name=b"MQTT") -> bytes:
    props = b"\x00" if level == 5 else b""
    return s(name) + bytes((level, flags)) + b"\x00\x3c" + props + payload


def props(*items: bytes) -> bytes:
    body = b"".join(items)
    return encode_varint(len(body)) + body


# (id, level (None = expect CONNECT first), bytes, reason code, text in the message)
CASES = [
    # ---- framing and data representation
    ("MQTT-1.5.5-1 five-byte length", 4, b"\x30\xff\xff\xff\xff\x7f", MALFORMED, "MQTT-1.5.5-1"),
    ("MQTT-1.5.5-1 not shortest", 4, b"\xc0\x80\x00", MALFORMED, "MQTT-1.5.5-1"),
    ("reserved type 0", 4, b"\x00\x00", MALFORMED, "reserved"),
    ("type 15 before 5.0", 4, b"\xf0\x00", MALFORMED, "reserved"),
    (
        "MQTT-1.5.3-1 ill-formed topic",
        4,
        frame(0x30, s(b"a\xffb") + b"x"),
        MALFORMED,
        "MQTT-1.5.3-1",
    ),
    (
        "MQTT-1.5.3-1 surrogate in topic",
        4,
        frame(0x30, s(b"a\xed\xa0\x80") + b"x"),
        MALFORMED,
        "MQTT-1.5.3-1",
    ),
    ("MQTT-1.5.3-1 overlong NUL", 4, frame(0x30, s(b"\xc0\x80")), MALFORMED, "MQTT-1.5.3-1"),
    ("MQTT-1.5.3-2 NUL in topic", 4, frame(0x30, s(b"a\x00b")), MALFORMED, "MQTT-1.5.3-2"),
    (
        "MQTT-1.5.3-2 NUL in client id",
        None,
        frame(0x10, connect_body(0x02, payload=s(b"c\x00"))),
        MALFORMED,
        "MQTT-1.5.3-2",
    ),
    (
        "MQTT-1.5.3-1 surrogate in filter",
        4,
        frame(0x82, b"\x00\x01" + s(b"\xed\xbf\xbf") + b"\x00"),
        MALFORMED,
        "MQTT-1.5.3-1",
    ),
    (
        "MQTT-1.5.3-1 bad user property",
        5,
        frame(0x30, s(b"t") + props(b"\x26" + s(b"k") + s(b"\xff"))),
        MALFORMED,
        "MQTT-1.5.3-1",
    ),
    # ---- fixed header flags [MQTT-2.2.2-1] [MQTT-2.2.2-2]
    ("MQTT-2.2.2-1 CONNECT flags", None, frame(0x11, connect_body(0x02)), MALFORMED, "2.2.2-1"),
    ("MQTT-2.2.2-1 CONNACK flags", 4, b"\x28\x02\x00\x00", MALFORMED, "MQTT-2.2.2-1"),
    ("MQTT-2.2.2-1 PUBACK flags", 4, b"\x41\x02\x00\x01", MALFORMED, "MQTT-2.2.2-1"),
    ("MQTT-2.2.2-1 PUBREC flags", 5, b"\x52\x02\x00\x01", MALFORMED, "MQTT-2.1.3-1"),
    ("MQTT-3.6.1-1 PUBREL flags 0", 4, b"\x60\x02\x00\x01", MALFORMED, "MQTT-2.2.2-1"),
    ("MQTT-2.2.2-1 PUBCOMP flags", 4, b"\x78\x02\x00\x01", MALFORMED, "MQTT-2.2.2-1"),
    (
        "MQTT-3.8.1-1 SUBSCRIBE flags",
        4,
        frame(0x80, b"\x00\x01" + s(b"a") + b"\x00"),
        MALFORMED,
        "2.2.2-1",
    ),
    ("MQTT-2.2.2-1 SUBACK flags", 4, b"\x92\x03\x00\x01\x00", MALFORMED, "MQTT-2.2.2-1"),
    (
        "MQTT-3.10.1-1 UNSUBSCRIBE flags",
        4,
        frame(0xA0, b"\x00\x01" + s(b"a")),
        MALFORMED,
        "2.2.2-1",
    ),
    ("MQTT-2.2.2-1 UNSUBACK flags", 4, b"\xb1\x02\x00\x01", MALFORMED, "MQTT-2.2.2-1"),
    ("MQTT-2.2.2-1 PINGREQ flags", 4, b"\xc1\x00", MALFORMED, "MQTT-2.2.2-1"),
    ("MQTT-2.2.2-1 PINGRESP flags", 4, b"\xd4\x00", MALFORMED, "MQTT-2.2.2-1"),
    ("MQTT-3.14.1-1 DISCONNECT flags", 4, b"\xe2\x00", MALFORMED, "MQTT-2.2.2-1"),
    ("MQTT-3.15.1-1 AUTH flags", 5, b"\xf1\x00", MALFORMED, "MQTT-2.2.2-1"),
    # ---- PUBLISH
    ("MQTT-3.3.1-4 QoS 3", 4, frame(0x36, s(b"t") + b"\x00\x01"), MALFORMED, "MQTT-3.3.1-4"),
    ("MQTT-3.3.1-4 QoS 3 v5", 5, frame(0x37, s(b"t") + b"\x00\x01\x00"), MALFORMED, "3.3.1-4"),
    ("MQTT-3.3.1-2 DUP on QoS 0", 4, frame(0x38, s(b"t") + b"x"), MALFORMED, "MQTT-3.3.1-2"),
    ("MQTT-2.3.1-1 PUBLISH id 0", 4, frame(0x32, s(b"t") + b"\x00\x00"), PROTOCOL, "2.3.1-1"),
    ("MQTT-3.3.2-1 no topic", 4, b"\x30\x01\x00", MALFORMED, "MQTT-3.3.2-1"),
    ("MQTT-3.3.2-1 topic past end", 4, frame(0x30, b"\x00\x05abc"), MALFORMED, "MQTT-3.3.2-1"),
    ("PUBLISH id truncated", 4, frame(0x32, s(b"t") + b"\x00"), MALFORMED, "Packet Identifier"),
    ("PUBLISH v5 no property length", 5, frame(0x30, s(b"t")), MALFORMED, "Property Length"),
    (
        "PUBLISH v5 QoS 1 no property length",
        5,
        frame(0x32, s(b"t") + b"\x00\x01"),
        MALFORMED,
        "Property Length",
    ),
    (
        "MQTT-2.2.1-3 PUBLISH id 0 (5.0)",
        5,
        frame(0x34, s(b"t") + b"\x00\x00\x00"),
        PROTOCOL,
        "2.2.1-3",
    ),
    # ---- CONNECT
    ("MQTT-3.1.0-1 PUBLISH first", None, frame(0x30, s(b"t")), PROTOCOL, "MQTT-3.1.0-1"),
    ("MQTT-3.1.0-1 PINGREQ first", None, b"\xc0\x00", PROTOCOL, "MQTT-3.1.0-1"),
    (
        "MQTT-3.1.0-2 second CONNECT",
        None,
        encode_connect("a") + encode_connect("b"),
        PROTOCOL,
        "MQTT-3.1.0-2",
    ),
    ("MQTT-3.1.2-3 reserved flag", None, frame(0x10, connect_body(0x03)), MALFORMED, "3.1.2-3"),
    (
        "MQTT-3.1.2-13 will QoS, no will",
        None,
        frame(0x10, connect_body(0x0A)),
        MALFORMED,
        "3.1.2-13",
    ),
    (
        "MQTT-3.1.2-11 will QoS, no will (5.0)",
        None,
        frame(0x10, connect_body(0x12, level=5)),
        MALFORMED,
        "MQTT-3.1.2-11",
    ),
    (
        "MQTT-3.1.2-14 will QoS 3",
        None,
        frame(0x10, connect_body(0x1E, payload=s(b"c") + s(b"w") + s(b"m"))),
        MALFORMED,
        "MQTT-3.1.2-14",
    ),
    (
        "MQTT-3.1.2-15 will retain, no will",
        None,
        frame(0x10, connect_body(0x22)),
        MALFORMED,
        "MQTT-3.1.2-15",
    ),
    (
        "MQTT-3.1.2-22 password, no user name",
        None,
        frame(0x10, connect_body(0x42, payload=s(b"c") + s(b"pw"))),
        MALFORMED,
        "MQTT-3.1.2-22",
    ),
    (
        "MQTT-3.1.2-9 will flag, no will topic",
        None,
        frame(0x10, connect_body(0x06)),
        MALFORMED,
        "runs past",
    ),
    (
        "MQTT-3.1.2-17 user name flag, no user name",
        None,
        frame(0x10, connect_body(0x82)),
        MALFORMED,
        "runs past",
    ),
    (
        "CONNECT trailing bytes",
        None,
        frame(0x10, connect_body(0x02, payload=s(b"c") + b"zz")),
        MALFORMED,
        "longer than its fields",
    ),
    (
        "CONNECT truncated header",
        None,
        frame(0x10, s(b"MQTT") + b"\x04\x02\x00"),
        MALFORMED,
        "runs past",
    ),
    # ---- packet identifiers [MQTT-2.3.1-1] (5.0 [MQTT-2.2.1-3])
    ("MQTT-2.3.1-1 PUBACK id 0", 4, b"\x40\x02\x00\x00", PROTOCOL, "MQTT-2.3.1-1"),
    ("MQTT-2.3.1-1 PUBREL id 0", 5, b"\x62\x02\x00\x00", PROTOCOL, "MQTT-2.2.1-3"),
    (
        "MQTT-2.3.1-1 SUBSCRIBE id 0",
        4,
        frame(0x82, b"\x00\x00" + s(b"a") + b"\x00"),
        PROTOCOL,
        "2.3.1-1",
    ),
    ("MQTT-2.3.1-1 SUBACK id 0", 4, b"\x90\x03\x00\x00\x00", PROTOCOL, "MQTT-2.3.1-1"),
    ("MQTT-2.3.1-1 UNSUBSCRIBE id 0", 4, frame(0xA2, b"\x00\x00" + s(b"a")), PROTOCOL, "2.3.1-1"),
    ("MQTT-2.3.1-1 UNSUBACK id 0", 4, b"\xb0\x02\x00\x00", PROTOCOL, "MQTT-2.3.1-1"),
    # ---- SUBSCRIBE / UNSUBSCRIBE
    ("MQTT-3.8.3-3 no filters", 4, b"\x82\x02\x00\x01", PROTOCOL, "MQTT-3.8.3-3"),
    ("MQTT-3.8.3-2 no filters (5.0)", 5, b"\x82\x03\x00\x01\x00", PROTOCOL, "MQTT-3.8.3-2"),
    (
        "MQTT-3-8.3-4 requested QoS 3",
        4,
        frame(0x82, b"\x00\x01" + s(b"a") + b"\x03"),
        MALFORMED,
        "3-8.3-4",
    ),
    (
        "MQTT-3-8.3-4 reserved bits",
        4,
        frame(0x82, b"\x00\x01" + s(b"a") + b"\x04"),
        MALFORMED,
        "3-8.3-4",
    ),
    (
        "MQTT-3.8.3-5 reserved bits (5.0)",
        5,
        frame(0x82, b"\x00\x01\x00" + s(b"a") + b"\x40"),
        MALFORMED,
        "MQTT-3.8.3-5",
    ),
    ("5.0 Maximum QoS 3", 5, frame(0x82, b"\x00\x01\x00" + s(b"a") + b"\x03"), PROTOCOL, "QoS 3"),
    (
        "5.0 Retain Handling 3",
        5,
        frame(0x82, b"\x00\x01\x00" + s(b"a") + b"\x30"),
        PROTOCOL,
        "Retain",
    ),
    ("SUBSCRIBE missing options", 4, frame(0x82, b"\x00\x01" + s(b"a")), MALFORMED, "Remaining"),
    ("MQTT-3.10.3-2 no filters", 4, b"\xa2\x02\x00\x01", PROTOCOL, "MQTT-3.10.3-2"),
    ("MQTT-3.10.3-2 no filters (5.0)", 5, b"\xa2\x03\x00\x01\x00", PROTOCOL, "MQTT-3.10.3-2"),
    ("MQTT-3.9.3-2 reserved SUBACK code", 4, b"\x90\x03\x00\x01\x03", MALFORMED, "MQTT-3.9.3-2"),
    ("SUBACK without codes", 4, b"\x90\x02\x00\x01", PROTOCOL, "SUBACK"),
    # ---- lengths of fixed-size packets
    ("PUBACK too long (3.1.1)", 4, b"\x40\x03\x00\x01\x00", MALFORMED, "longer"),
    ("PUBACK too short", 5, b"\x40\x01\x00", MALFORMED, "too short"),
    ("PINGREQ with body", 4, b"\xc0\x01\x00", MALFORMED, "longer"),
    ("DISCONNECT with body (3.1.1)", 4, b"\xe0\x01\x00", MALFORMED, "longer"),
    ("CONNACK too long (3.1.1)", 4, b"\x20\x03\x00\x00\x00", MALFORMED, "longer"),
    ("MQTT-3.2.2-1 CONNACK reserved bits", 4, b"\x20\x02\x02\x00", MALFORMED, "MQTT-3.2.2-1"),
    ("reserved CONNACK return code", 4, b"\x20\x02\x00\x06", PROTOCOL, "return code"),
    ("UNSUBACK too long (3.1.1)", 4, b"\xb0\x03\x00\x01\x00", MALFORMED, "longer"),
    ("AUTH reason code without properties", 5, b"\xf0\x01\x18", MALFORMED, "Variable Byte"),
    # ---- reason codes (5.0)
    ("PUBACK reason code not for PUBACK", 5, b"\x40\x03\x00\x01\x92", PROTOCOL, "not valid"),
    ("PUBREL reason code not for PUBREL", 5, b"\x62\x03\x00\x01\x10", PROTOCOL, "not valid"),
    ("DISCONNECT reason code 0x01", 5, b"\xe0\x01\x01", PROTOCOL, "not valid"),
    ("AUTH reason code 0x80", 5, b"\xf0\x02\x80\x00", PROTOCOL, "not valid"),
    ("CONNACK reason code 0x01 (5.0)", 5, b"\x20\x03\x00\x01\x00", PROTOCOL, "not valid"),
    ("SUBACK reason code 0x03 (5.0)", 5, b"\x90\x04\x00\x01\x00\x03", PROTOCOL, "not valid"),
    ("UNSUBACK reason code 0x01 (5.0)", 5, b"\xb0\x04\x00\x01\x00\x01", PROTOCOL, "not valid"),
    ("UNSUBACK without codes (5.0)", 5, b"\xb0\x03\x00\x01\x00", PROTOCOL, "UNSUBACK"),
    # ---- properties (5.0 2.2.2)
    (
        "2.2.2.2 unknown property",
        5,
        frame(0x30, s(b"t") + props(b"\x7f\x00")),
        MALFORMED,
        "unknown property",
    ),
    (
        "2.2.2.2 property not valid in packet",
        5,
        frame(0xE0, b"\x00" + props(b"\x23\x00\x01")),
        MALFORMED,
        "not valid in this packet",
    ),
    (
        "2.2.2.2 will property in CONNECT properties",
        None,
        frame(0x10, s(b"MQTT") + b"\x05\x02\x00\x00" + props(b"\x18\x00\x00\x00\x01") + s(b"c")),
        MALFORMED,
        "will_delay_interval",
    ),
    (
        "2.2.2.2 duplicate content type",
        5,
        frame(0x30, s(b"t") + props(b"\x03" + s(b"a"), b"\x03" + s(b"b"))),
        PROTOCOL,
        "more than once",
    ),
    (
        "3.8.2.1.2 two subscription identifiers in SUBSCRIBE",
        5,
        frame(0x82, b"\x00\x01" + props(b"\x0b\x01", b"\x0b\x02") + s(b"a") + b"\x00"),
        PROTOCOL,
        "more than once",
    ),
    (
        "subscription identifier 0",
        5,
        frame(0x82, b"\x00\x01" + props(b"\x0b\x00") + s(b"a") + b"\x00"),
        PROTOCOL,
        "subscription_identifier",
    ),
    (
        "receive maximum 0",
        None,
        frame(0x10, s(b"MQTT") + b"\x05\x02\x00\x00" + props(b"\x21\x00\x00") + s(b"c")),
        PROTOCOL,
        "receive_maximum",
    ),
    (
        "maximum packet size 0",
        5,
        frame(0x20, b"\x00\x00" + props(b"\x27\x00\x00\x00\x00")),
        PROTOCOL,
        "maximum_packet_size",
    ),
    ("topic alias 0", 5, frame(0x30, s(b"t") + props(b"\x23\x00\x00")), PROTOCOL, "topic_alias"),
    (
        "request problem information 2",
        None,
        frame(0x10, s(b"MQTT") + b"\x05\x02\x00\x00" + props(b"\x17\x02") + s(b"c")),
        PROTOCOL,
        "request_problem_information",
    ),
    (
        "authentication data without method",
        5,
        frame(0xF0, b"\x18" + props(b"\x16" + s(b"x"))),
        PROTOCOL,
        "Authentication Method",
    ),
    (
        "2.2.2.1 property length past packet",
        5,
        frame(0x30, s(b"t") + b"\x05\x01"),
        MALFORMED,
        "Property Length",
    ),
    (
        "property value past property length",
        5,
        frame(0x40, b"\x00\x01\x00" + b"\x02\x1f\x00\x05" + b"abcde"),
        MALFORMED,
        "runs past",
    ),
    (
        "property vbi truncated",
        5,
        frame(0x30, s(b"t") + b"\x02\x0b\x80"),
        MALFORMED,
        "Variable Byte Integer",
    ),
]


@pytest.mark.parametrize(
    ("level", "data", "code", "text"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_malformed(level, data, code, text):
    parser = MQTTParser(protocol_level=level)
    with pytest.raises(MQTTProtocolError) as info:
        parser.feed(data)
    assert info.value.reason_code == code
    assert text in info.value.message
    # The parser is dead from then on, and says why again.
    with pytest.raises(MQTTProtocolError) as again:
        parser.feed(encode_pingreq())
    assert again.value is info.value


@pytest.mark.parametrize(
    ("level", "data", "code", "text"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_malformed_bytewise(level, data, code, text):
    # The same verdict when the bad packet trickles in one byte at a time.
    parser = MQTTParser(protocol_level=level)
    with pytest.raises(MQTTProtocolError) as info:
        for i in range(len(data)):
            parser.feed(data[i : i + 1])
    assert (info.value.reason_code, text in info.value.message) == (code, True)


@pytest.mark.parametrize(
    ("name", "level"),
    [(b"MQTT", 3), (b"MQTT", 6), (b"MQTT", 0), (b"MQIsdp", 4), (b"MQIsdp", 5), (b"HTTP", 4)],
)
def test_MQTT_3_1_2_2_unsupported_protocol_is_reported_apart(name, level):
    data = frame(0x10, s(name) + bytes((level, 0x02)) + b"\x00\x3c\x00\x01c")
    with pytest.raises(MQTTUnsupportedProtocol) as info:
        MQTTParser().feed(data)
    err = info.value
    assert (err.reason_code, err.return_code) == (0x84, 0x01)
    assert (err.protocol_name, err.protocol_level) == (name, level)
    assert "MQTT-3.1.2-2" in err.message


def test_level_3_is_lenient_where_3_1_was():
    # 3.1 sets QoS 1 and DUP on SUBSCRIBE retries, knows no DUP/QoS 0 rule, no reserved
    # CONNECT flag, and uses the whole Requested QoS byte loosely.
    data = (
        frame(0x11, connect_body(0x03, level=3, name=b"MQIsdp"))
        + frame(0x8A, b"\x00\x01" + s(b"a") + b"\x05")
        + frame(0x38, s(b"t") + b"x")
        + b"\x41\x02\x00\x01"
    )
    connect, sub, pub, ack = MQTTParser().feed(data)
    assert connect.protocol_level == 3 and connect.protocol_name == "MQIsdp"
    assert sub.subscriptions[0].qos == 1
    assert pub.dup and pub.qos == 0
    assert ack.packet_id == 1


def test_packets_before_the_error_are_handed_over():
    good = encode_publish(b"a", b"1") + encode_publish(b"b", b"2")
    with pytest.raises(MQTTProtocolError) as info:
        MQTTParser(protocol_level=4).feed(good + b"\x36\x00")
    assert [p.topic for p in info.value.packets] == ["a", "b"]
    assert str(info.value).startswith("0x81: ")


# ------------------------------------------------------------- maximum packet size


def test_max_packet_size_from_the_fixed_header_alone():
    parser = MQTTParser(max_packet_size=1 << 20, protocol_level=4)
    header = b"\x30" + encode_varint(100 * 1024 * 1024)  # claims 100 MB
    assert len(header) == 5
    with pytest.raises(MQTTProtocolError) as info:
        parser.feed(header)
    assert info.value.reason_code == TOO_LARGE
    assert parser.buffered == 0


def test_max_packet_size_counts_the_whole_packet():
    limit = 200
    data = encode_publish(b"t", b"x" * (limit - 6))  # 3-byte header + 3-byte topic field
    assert len(data) == limit
    assert len(MQTTParser(limit, 4).feed(data)) == 1
    too_big = encode_publish(b"t", b"x" * (limit - 5))
    with pytest.raises(MQTTProtocolError) as info:
        MQTTParser(limit, 4).feed(too_big[:3])
    assert info.value.reason_code == TOO_LARGE


def test_max_packet_size_applies_to_connect():
    data = encode_connect("c" * 100)
    with pytest.raises(MQTTProtocolError) as info:
        MQTTParser(max_packet_size=50).feed(data[:2])
    assert info.value.reason_code == TOO_LARGE


def test_incomplete_header_is_not_an_error_yet():
    parser = MQTTParser(max_packet_size=10, protocol_level=4)
    assert parser.feed(b"\x30\xff") == []
    assert parser.feed(b"\xff") == []
    with pytest.raises(MQTTProtocolError):
        parser.feed(b"\x01")
