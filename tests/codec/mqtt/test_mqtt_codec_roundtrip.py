"""Every packet type at every protocol level: encode, decode, compare; plus byte-exact
golden packets written out by hand from the spec's layouts."""

from __future__ import annotations

import pytest

from hybridbus.codec.mqtt import (
    Auth,
    Connack,
    Connect,
    Disconnect,
    MQTTParser,
    Pingreq,
    Puback,
    Publish,
    Pubrel,
    Suback,
    Subscribe,
    Subscription,
    Unsuback,
    encode,
    encode_auth,
    encode_connack,
    encode_connect,
    encode_disconnect,
    encode_properties,
    encode_puback,
    encode_pubcomp,
    encode_publish,
    encode_pubrec,
    encode_pubrel,
    encode_suback,
    encode_subscribe,
    encode_unsuback,
    encode_unsubscribe,
)
from tests.codec.mqtt.mqtt_codec_cases import SAMPLE_CASES, SAMPLE_IDS, parser_for, samples


@pytest.mark.parametrize(("level", "packet"), SAMPLE_CASES, ids=SAMPLE_IDS)
def test_round_trip(level, packet):
    data = encode(packet, level)
    parser = parser_for(packet, level)
    assert parser.feed(data) == [packet]
    assert parser.buffered == 0
    # And back again: the decoded packet encodes to the same bytes.
    assert encode(packet, level) == data


@pytest.mark.parametrize("level", [3, 4, 5])
def test_whole_session_in_one_feed(level):
    packets = samples(level)
    data = b"".join(encode(p, level) for p in packets[:1] + packets[2:])
    parser = MQTTParser()
    assert parser.feed(data) == packets[:1] + packets[2:]
    assert parser.protocol_level == level


def test_every_packet_type_has_a_sample():
    for level in (3, 4, 5):
        kinds = {p.packet_type for p in samples(level)}
        assert kinds == set(range(1, 16 if level == 5 else 15))


# ------------------------------------------------------------------ golden bytes
# Written from the figures in 3.1.1 chapter 3 and 5.0 chapter 3, not from our encoder.

GOLDEN = [
    # 3.1.1 CONNECT: name "MQTT", level 4, flags clean session, keep alive 60, id "c".
    (
        "v4-connect",
        4,
        b"\x10\x0d\x00\x04MQTT\x04\x02\x00\x3c\x00\x01c",
        Connect(client_id="c", keep_alive=60),
    ),
    # 3.1 CONNECT: "MQIsdp" level 3, user name + password flags.
    (
        "v3-connect-auth",
        3,
        b"\x10\x16\x00\x06MQIsdp\x03\xc2\x00\x0a\x00\x01c\x00\x01u\x00\x02pw",
        Connect(
            client_id="c",
            keep_alive=10,
            username="u",
            password=b"pw",
            protocol_level=3,
            protocol_name="MQIsdp",
        ),
    ),
    # 5.0 CONNECT with will: flags 0x2e = will retain, will QoS 1, will flag, clean start.
    (
        "v5-connect-will",
        5,
        b"\x10\x1c\x00\x04MQTT\x05\x2e\x00\x00\x03\x21\x00\x05\x00\x00"
        b"\x05\x18\x00\x00\x00\x07\x00\x01t\x00\x01w",
        Connect(
            keep_alive=0,
            will_topic="t",
            will_payload=b"w",
            will_qos=1,
            will_retain=True,
            will_properties={"will_delay_interval": 7},
            properties={"receive_maximum": 5},
            protocol_level=5,
        ),
    ),
    ("v4-connack", 4, b"\x20\x02\x01\x00", Connack(session_present=True)),
    ("v5-connack-min", 5, b"\x20\x03\x00\x00\x00", Connack()),
    ("v4-publish-qos0", 4, b"\x30\x05\x00\x01aHI", Publish(topic="a", payload=b"HI")),
    (
        "v4-publish-qos1-retain-dup",
        4,
        b"\x3b\x07\x00\x01a\x12\x34HI",
        Publish(topic="a", payload=b"HI", qos=1, retain=True, dup=True, packet_id=0x1234),
    ),
    (
        "v5-publish-alias",
        5,
        b"\x34\x09\x00\x00\x00\x07\x03\x23\x00\x02X",
        Publish(topic="", payload=b"X", qos=2, packet_id=7, properties={"topic_alias": 2}),
    ),
    ("v4-puback", 4, b"\x40\x02\x00\x07", Puback(packet_id=7)),
    ("v5-puback-short", 5, b"\x40\x02\x00\x07", Puback(packet_id=7)),
    ("v5-puback-code", 5, b"\x40\x03\x00\x07\x10", Puback(packet_id=7, reason_code=0x10)),
    ("v4-pubrel", 4, b"\x62\x02\x00\x07", Pubrel(packet_id=7)),
    (
        "v4-subscribe",
        4,
        b"\x82\x08\x00\x01\x00\x03a/b\x01",
        Subscribe(packet_id=1, subscriptions=[Subscription("a/b", 1)]),
    ),
    (
        "v5-subscribe-options",
        5,
        b"\x82\x09\x00\x01\x02\x0b\x05\x00\x01#\x2e",
        Subscribe(
            packet_id=1,
            subscriptions=[Subscription("#", 2, True, True, 2)],
            properties={"subscription_identifier": 5},
        ),
    ),
    ("v4-suback", 4, b"\x90\x04\x00\x01\x01\x80", Suback(packet_id=1, reason_codes=[1, 0x80])),
    ("v4-unsuback", 4, b"\xb0\x02\x00\x09", Unsuback(packet_id=9)),
    (
        "v5-unsuback",
        5,
        b"\xb0\x05\x00\x09\x00\x00\x11",
        Unsuback(packet_id=9, reason_codes=[0, 0x11]),
    ),
    ("v4-pingreq", 4, b"\xc0\x00", Pingreq()),
    ("v4-disconnect", 4, b"\xe0\x00", Disconnect()),
    ("v5-disconnect-short", 5, b"\xe0\x00", Disconnect()),
    ("v5-disconnect-code", 5, b"\xe0\x01\x04", Disconnect(reason_code=4)),
    ("v5-auth-empty", 5, b"\xf0\x00", Auth()),
    (
        "v5-auth",
        5,
        b"\xf0\x08\x18\x06\x15\x00\x03abc",
        Auth(reason_code=0x18, properties={"authentication_method": "abc"}),
    ),
]


@pytest.mark.parametrize(
    ("level", "data", "packet"), [g[1:] for g in GOLDEN], ids=[g[0] for g in GOLDEN]
)
def test_golden_decode(level, data, packet):
    assert parser_for(packet, level).feed(data) == [packet]


@pytest.mark.parametrize(
    ("level", "data", "packet"), [g[1:] for g in GOLDEN], ids=[g[0] for g in GOLDEN]
)
def test_golden_encode(level, data, packet):
    assert encode(packet, level) == data


# ------------------------------------------------------------ level-specific forms


def test_v5_acks_accept_every_short_form():
    parser = MQTTParser(protocol_level=5)
    data = (
        b"\x50\x02\x00\x01"  # PUBREC, no reason code: success
        b"\x50\x03\x00\x02\x80"  # reason code, no property length
        b"\x50\x04\x00\x03\x00\x00"  # empty property block
        b"\xe0\x02\x00\x00"  # DISCONNECT with empty properties
    )
    got = parser.feed(data)
    assert [(type(p).__name__, getattr(p, "packet_id", None), p.reason_code) for p in got] == [
        ("Pubrec", 1, 0),
        ("Pubrec", 2, 0x80),
        ("Pubrec", 3, 0),
        ("Disconnect", None, 0),
    ]


def test_ack_encoders_pick_the_shortest_form():
    assert encode_puback(1, level=5) == b"\x40\x02\x00\x01"
    assert encode_pubrec(1, 0x80, level=5) == b"\x50\x03\x00\x01\x80"
    assert encode_pubrel(1, level=5) == b"\x62\x02\x00\x01"
    assert encode_pubcomp(1, 0x92, {"reason_string": "x"}, level=5) == (
        b"\x70\x08\x00\x01\x92\x04\x1f\x00\x01x"
    )
    # Below 5.0 the reason code and properties have nowhere to go.
    assert encode_puback(1, 0x80, {"reason_string": "x"}, level=4) == b"\x40\x02\x00\x01"
    assert encode_disconnect(0x8B, level=4) == b"\xe0\x00"
    assert encode_disconnect(0x8B, level=5) == b"\xe0\x01\x8b"
    assert encode_auth() == b"\xf0\x00"


def test_v5_failure_codes_fall_back_to_3_1_1_return_codes():
    assert encode_connack(False, 0x86, level=4) == b"\x20\x02\x00\x04"
    assert encode_connack(False, 0x84, level=4) == b"\x20\x02\x00\x01"
    assert encode_connack(False, 0x85, level=4) == b"\x20\x02\x00\x02"
    assert encode_connack(False, 0x87, level=4) == b"\x20\x02\x00\x05"
    assert encode_connack(False, 0x89, level=4) == b"\x20\x02\x00\x03"
    assert encode_connack(False, 0x80, level=4) == b"\x20\x02\x00\x03"
    assert encode_connack(True, 0x00, level=4) == b"\x20\x02\x01\x00"
    # 3.1 has no Session Present flag.
    assert encode_connack(True, 0x00, level=3) == b"\x20\x02\x00\x00"
    assert encode_suback(1, [1, 0x87, 0x97], level=4) == b"\x90\x05\x00\x01\x01\x80\x80"
    assert encode_suback(1, [1, 0x87], level=5) == b"\x90\x05\x00\x01\x00\x01\x87"


def test_publish_encoder_hot_path_matches_generic():
    props = {"content_type": "text/plain", "user_property": [("a", "b")]}
    pkt = Publish("t/x", b"p" * 200, 1, True, False, 9, props)
    fast = encode_publish(b"t/x", b"p" * 200, 1, True, False, 9, encode_properties(props, 3), 5)
    assert fast == encode(pkt, 5)
    assert encode_publish(b"t/x", b"", level=5) == b"\x30\x06\x00\x03t/x\x00"
    assert encode_publish(b"t/x", b"", level=4) == b"\x30\x05\x00\x03t/x"
    # Properties are ignored below level 5.
    assert encode_publish(b"t", b"", 0, False, False, 0, b"\x02\x23\x00", 4) == b"\x30\x03\x00\x01t"


def test_remaining_length_boundaries_round_trip():
    parser = MQTTParser(protocol_level=4)
    for size in (127 - 5, 128 - 5, 16383 - 5, 16384 - 5, 2_097_152):
        data = encode_publish(b"abc", b"z" * size)
        (pkt,) = parser.feed(data)
        assert pkt.payload == b"z" * size


@pytest.mark.parametrize(
    "call",
    [
        lambda: encode_connect(will_qos=1),
        lambda: encode_connect(will_retain=True),
        lambda: encode_connect(will_topic="w", will_qos=3),
        lambda: encode_connect(password=b"x", level=4),
        lambda: encode_connect(level=6),
        lambda: encode_connect(client_id="a\x00b"),
        lambda: encode_connect(client_id="\ud800"),
        lambda: encode_subscribe(1, []),
        lambda: encode_subscribe(1, [("a", 3)]),
        lambda: encode_unsubscribe(1, []),
        lambda: encode_suback(1, []),
        lambda: encode_unsuback(1, [], level=5),
        lambda: encode_auth(level=4),
        lambda: encode(Publish("t", qos=1, packet_id=0), 4),
        lambda: encode(Publish("t\x00", qos=0), 4),
        lambda: encode(Publish("t" * 70000), 4),
    ],
)
def test_encoder_refuses_what_no_level_can_say(call):
    with pytest.raises(ValueError):
        call()


def test_password_without_user_name_is_fine_in_v5():
    data = encode_connect("c", password=b"token", level=5)
    (pkt,) = MQTTParser().feed(data)
    assert pkt.username is None and pkt.password == b"token"
    assert "token" not in repr(pkt)
