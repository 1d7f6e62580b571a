"""Field types (wire.py), the property table (properties.py) and reason codes
(reasons.py), including a cross-check of the property codec against paho-mqtt's."""

from __future__ import annotations

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from hybridbus.codec.mqtt import (
    PROPERTIES,
    REASON_CODES,
    VALID_REASON_CODES,
    WILL,
    ConnackReturnCode,
    MQTTProtocolError,
    PacketType,
    ReasonCode,
    connack_return_code,
    decode_properties,
    decode_utf8,
    encode_properties,
    has_discouraged_code_points,
    reason_name,
    suback_return_code,
)
from hybridbus.codec.mqtt.wire import Reader, encode_varint, read_varint

# ------------------------------------------------------------ Variable Byte Integer


@pytest.mark.parametrize(
    ("value", "size"),
    [
        (0, 1),
        (127, 1),
        (128, 2),
        (16_383, 2),
        (16_384, 3),
        (2_097_151, 3),
        (2_097_152, 4),
        (268_435_455, 4),
    ],
)
def test_varint_boundaries(value, size):
    # The boundary table of 5.0 1.5.5 / 3.1.1 2.2.3.
    data = encode_varint(value)
    assert len(data) == size
    assert read_varint(data + b"junk", 0, len(data) + 4) == (value, size)
    assert read_varint(data, 0, size - 1) is None  # stops early: incomplete, not wrong


@pytest.mark.parametrize("value", [-1, 268_435_456])
def test_varint_out_of_range(value):
    with pytest.raises(ValueError):
        encode_varint(value)


def test_MQTT_1_5_5_1_varint_rejects_five_bytes_and_long_forms():
    for data in (b"\x80\x80\x80\x80\x01", b"\x80\x00", b"\xff\x80\x00"):
        with pytest.raises(MQTTProtocolError) as info:
            read_varint(data, 0, len(data))
        assert "MQTT-1.5.5-1" in info.value.message


# ---------------------------------------------------------------------- strings


@pytest.mark.parametrize(
    ("raw", "spec"),
    [
        (b"\xed\xa0\x80", "MQTT-1.5.3-1"),  # U+D800 encoded
        (b"\xed\xbf\xbf", "MQTT-1.5.3-1"),  # U+DFFF encoded
        (b"\xc0\x80", "MQTT-1.5.3-1"),  # overlong U+0000
        (b"\xe0\x80\xaf", "MQTT-1.5.3-1"),  # overlong '/'
        (b"\xf4\x90\x80\x80", "MQTT-1.5.3-1"),  # above U+10FFFF
        (b"\xff", "MQTT-1.5.3-1"),
        (b"abc\xe2\x82", "MQTT-1.5.3-1"),  # truncated sequence
        (b"a\x00", "MQTT-1.5.3-2"),
    ],
)
def test_utf8_refused(raw, spec):
    with pytest.raises(MQTTProtocolError) as info:
        decode_utf8(raw)
    assert info.value.reason_code == 0x81 and spec in info.value.message


def test_MQTT_1_5_3_3_bom_is_kept_and_edges_are_valid():
    assert decode_utf8(b"\xef\xbb\xbfa") == "\ufeffa"
    assert decode_utf8("\U0010ffff\ud7ff\ue000".encode()) == "\U0010ffff\ud7ff\ue000"
    assert decode_utf8(b"") == ""


@pytest.mark.parametrize(
    "text", ["\x01", "a\x1fb", "\x7f", "\x80", "\x9f", "\ufdd0", "\ufdef", "\ufffe", "\U0010ffff"]
)
def test_discouraged_code_points_are_flagged(text):
    assert has_discouraged_code_points(text)


@pytest.mark.parametrize("text", ["", "a/b", "\xa0", "\u00e9", "\ufdcf", "\ufdf0", "\U0001f600"])
def test_ordinary_text_is_not_flagged(text):
    assert not has_discouraged_code_points(text)


def test_reader_reports_truncation_as_errors_the_parser_maps():
    r = Reader(b"\x00\x05ab")
    with pytest.raises(MQTTProtocolError):
        r.binary()
    with pytest.raises(IndexError):
        Reader(b"").u8()


# ---------------------------------------------------------------- property table


def test_property_table_is_the_whole_of_table_2_4():
    assert len(PROPERTIES) == 27
    ids = [p.identifier for p in PROPERTIES]
    assert len(set(ids)) == 27 and len({p.name for p in PROPERTIES}) == 27
    by_name = {p.name: p for p in PROPERTIES}
    assert by_name["user_property"].packets == by_name["user_property"].multi
    assert len(by_name["user_property"].packets) == 14  # 13 packet types + Will
    assert by_name["subscription_identifier"].multi == {PacketType.PUBLISH}
    assert by_name["will_delay_interval"].packets == {WILL}
    assert PacketType.PINGREQ not in by_name["user_property"].packets
    for code, spec in [(0x26, "user_property"), (0x0B, "subscription_identifier")]:
        assert by_name[spec].identifier == code


def _one_value(spec):
    return {
        "byte": 1,
        "u16": 513,
        "u32": 70_000,
        "varint": 300,
        "string": "s\u00e9",
        "binary": b"\x00\xff",
        "string pair": ("k", "v"),
    }[spec.kind]


@pytest.mark.parametrize("spec", PROPERTIES, ids=[p.name for p in PROPERTIES])
def test_each_property_round_trips_in_each_packet_that_may_carry_it(spec):
    for ptype in spec.packets:
        value = _one_value(spec)
        if ptype in spec.multi:
            value = [value, value]
        block = encode_properties({spec.name: value}, ptype)
        r = Reader(block + b"tail")
        assert decode_properties(r, ptype) == {spec.name: value}
        assert r.pos == len(block)


@pytest.mark.parametrize(
    ("props", "ptype"),
    [
        ({"no_such_property": 1}, PacketType.PUBLISH),
        ({"topic_alias": 1}, PacketType.CONNECT),
        ({"will_delay_interval": 1}, PacketType.CONNECT),
        ({"receive_maximum": 0}, PacketType.CONNECT),
        ({"maximum_qos": 2}, PacketType.CONNACK),
        ({"subscription_identifier": [1, 2]}, PacketType.SUBSCRIBE),
        ({"subscription_identifier": 0}, PacketType.SUBSCRIBE),
        ({"server_keep_alive": 70_000}, PacketType.CONNACK),
        ({"content_type": "a" * 70_000}, PacketType.PUBLISH),
        ({"user_property": [("a", "\x00")]}, PacketType.PUBLISH),
    ],
)
def test_encode_properties_refuses_what_decoding_would(props, ptype):
    with pytest.raises(ValueError):
        encode_properties(props, ptype)


def test_empty_property_block():
    assert encode_properties({}, PacketType.PUBLISH) == b"\x00"
    assert encode_properties(None, PacketType.AUTH) == b"\x00"


# ------------------------------------------------------- against paho's property codec

PAHO_PROPS = {
    "PayloadFormatIndicator": ("payload_format_indicator", 1),
    "MessageExpiryInterval": ("message_expiry_interval", 3600),
    "ContentType": ("content_type", "text/plain"),
    "ResponseTopic": ("response_topic", "reply/to"),
    "CorrelationData": ("correlation_data", b"\x01\x02\x03"),
    "TopicAlias": ("topic_alias", 7),
}


def test_paho_packs_what_we_decode():
    props = Properties(PacketTypes.PUBLISH)
    for paho_name, (_, value) in PAHO_PROPS.items():
        setattr(props, paho_name, value)
    props.UserProperty = [("a", "1"), ("b", "2")]
    props.SubscriptionIdentifier = 5
    decoded = decode_properties(Reader(props.pack()), PacketType.PUBLISH)
    expected = {name: value for name, value in PAHO_PROPS.values()}
    expected["user_property"] = [("a", "1"), ("b", "2")]
    expected["subscription_identifier"] = [5]
    assert decoded == expected


def test_paho_unpacks_what_we_encode():
    ours = {name: value for name, value in PAHO_PROPS.values()}
    ours["user_property"] = [("a", "1"), ("b", "2")]
    block = encode_properties(ours, PacketType.PUBLISH)
    props = Properties(PacketTypes.PUBLISH)
    props.unpack(block)
    for paho_name, (_, value) in PAHO_PROPS.items():
        assert getattr(props, paho_name) == value
    assert props.UserProperty == [("a", "1"), ("b", "2")]


# ------------------------------------------------------------------- reason codes


def test_reason_code_names_and_sets():
    assert len(REASON_CODES) == 43
    assert ReasonCode.PACKET_TOO_LARGE == 0x95
    assert ReasonCode(0) is ReasonCode.SUCCESS
    assert reason_name(0, PacketType.DISCONNECT) == "Normal disconnection"
    assert reason_name(0, PacketType.SUBACK) == "Granted QoS 0"
    assert reason_name(0x81) == "Malformed Packet"
    assert "0x07" in reason_name(0x07)
    for ptype, codes in VALID_REASON_CODES.items():
        assert 0 in codes, ptype
        assert codes <= set(REASON_CODES), ptype


def test_3_1_1_fallbacks():
    assert ConnackReturnCode.NOT_AUTHORIZED == 5
    assert connack_return_code(0) == 0
    assert connack_return_code(ReasonCode.BAD_USER_NAME_OR_PASSWORD) == 4
    assert connack_return_code(ReasonCode.BANNED) == 5
    assert connack_return_code(ReasonCode.QUOTA_EXCEEDED) == 3
    assert suback_return_code(2) == 2
    assert suback_return_code(ReasonCode.NOT_AUTHORIZED) == 0x80
