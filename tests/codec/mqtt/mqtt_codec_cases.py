"""Shared sample packets and feeding helpers for the MQTT codec tests."""

from __future__ import annotations

from hybridbus.codec.mqtt import (
    Auth,
    Connack,
    Connect,
    Disconnect,
    MQTTParser,
    Packet,
    Pingreq,
    Pingresp,
    Puback,
    Pubcomp,
    Publish,
    Pubrec,
    Pubrel,
    Suback,
    Subscribe,
    Subscription,
    Unsuback,
    Unsubscribe,
)

LEVELS = (3, 4, 5)
NAME = {3: "MQIsdp", 4: "MQTT", 5: "MQTT"}


def samples(level: int) -> list[Packet]:
    """One or more packets of every type the level has, each filled in as far as the
    level's layout allows, so a round trip must carry every field."""
    v5 = level == 5
    sp = level >= 4  # 3.1 CONNACK has no Session Present flag
    props = (lambda d: d) if v5 else (lambda d: {})
    out: list[Packet] = [
        Connect(
            client_id="dev-1",
            keep_alive=30,
            clean_start=False,
            username="user",
            password=b"\x00secret\xff",
            will_topic="dev/1/status",
            will_payload=b"offline",
            will_qos=1,
            will_retain=True,
            will_properties=props(
                {
                    "will_delay_interval": 5,
                    "payload_format_indicator": 1,
                    "message_expiry_interval": 60,
                    "content_type": "text/plain",
                    "response_topic": "dev/1/reply",
                    "correlation_data": b"\x01\x02",
                    "user_property": [("k", "v")],
                }
            ),
            properties=props(
                {
                    "session_expiry_interval": 3600,
                    "receive_maximum": 20,
                    "maximum_packet_size": 1 << 20,
                    "topic_alias_maximum": 10,
                    "request_response_information": 1,
                    "request_problem_information": 0,
                    "authentication_method": "SCRAM-SHA-1",
                    "authentication_data": b"client-first",
                    "user_property": [("a", "1"), ("a", "2"), ("b", "")],
                }
            ),
            protocol_level=level,
            protocol_name=NAME[level],
        ),
        Connect(client_id="", keep_alive=0, protocol_level=level, protocol_name=NAME[level]),
        Connack(
            session_present=sp,
            reason_code=0x86 if v5 else 4,
            properties=props(
                {
                    "session_expiry_interval": 10,
                    "receive_maximum": 100,
                    "maximum_qos": 1,
                    "retain_available": 0,
                    "maximum_packet_size": 65536,
                    "assigned_client_identifier": "auto-1",
                    "topic_alias_maximum": 5,
                    "reason_string": "nope",
                    "user_property": [("x", "y")],
                    "wildcard_subscription_available": 1,
                    "subscription_identifier_available": 1,
                    "shared_subscription_available": 0,
                    "server_keep_alive": 120,
                    "response_information": "resp/",
                    "server_reference": "other:1883",
                    "authentication_method": "SCRAM-SHA-1",
                    "authentication_data": b"server-first",
                }
            ),
        ),
        Connack(),
        Publish(topic="a/b", payload=b"hello", qos=0, retain=True),
        Publish(topic="a/\u00e9/\U0001f600", payload=b"", qos=1, dup=True, packet_id=65535),
        Publish(
            topic="" if v5 else "x",
            payload=b"\x00" * 300,  # two-byte Remaining Length
            qos=2,
            packet_id=1,
            properties=props(
                {
                    "topic_alias": 3,
                    "payload_format_indicator": 0,
                    "message_expiry_interval": 9,
                    "content_type": "application/json",
                    "response_topic": "r/t",
                    "correlation_data": b"cid",
                    "subscription_identifier": [1, 268_435_455],
                    "user_property": [("trace", "abc")],
                }
            ),
        ),
        Puback(packet_id=1),
        Pubrec(packet_id=2),
        Pubrel(packet_id=3),
        Pubcomp(packet_id=4),
        Subscribe(
            packet_id=10,
            subscriptions=[
                Subscription("a/+/c", 0),
                Subscription("#", 2),
                Subscription(
                    "$share/g/x" if v5 else "x/y",
                    1,
                    no_local=v5,
                    retain_as_published=v5,
                    retain_handling=2 if v5 else 0,
                ),
            ],
            properties=props({"subscription_identifier": 42, "user_property": [("u", "p")]}),
        ),
        Suback(
            packet_id=10,
            reason_codes=[0, 1, 2, 0x80] if level >= 4 else [0, 1, 2],
            properties=props({"reason_string": "ok", "user_property": [("u", "p")]}),
        ),
        Unsubscribe(
            packet_id=11,
            topic_filters=["a/+/c", "#"],
            properties=props({"user_property": [("u", "p")]}),
        ),
        Unsuback(
            packet_id=11,
            reason_codes=[0x00, 0x11] if v5 else [],
            properties=props({"reason_string": "done"}),
        ),
        Pingreq(),
        Pingresp(),
        Disconnect(),
    ]
    if v5:
        out += [
            Puback(packet_id=5, reason_code=0x10),
            Puback(packet_id=6, reason_code=0x87, properties={"reason_string": "denied"}),
            Pubrec(packet_id=7, reason_code=0x80, properties={"user_property": [("a", "b")]}),
            Pubrel(packet_id=8, reason_code=0x92),
            Pubcomp(packet_id=9, reason_code=0x92, properties={"reason_string": "gone"}),
            Disconnect(reason_code=0x04),
            Disconnect(
                reason_code=0x8B,
                properties={
                    "session_expiry_interval": 0,
                    "reason_string": "bye",
                    "server_reference": "s2",
                    "user_property": [("a", "b")],
                },
            ),
            Auth(),
            Auth(
                reason_code=0x18,
                properties={
                    "authentication_method": "SCRAM-SHA-1",
                    "authentication_data": b"\x00\x01",
                    "reason_string": "more",
                    "user_property": [("a", "b")],
                },
            ),
        ]
    return out


def sample_id(level: int, index: int, packet: Packet) -> str:
    return f"v{level}-{index:02d}-{type(packet).__name__}"


SAMPLE_CASES = [(level, packet) for level in LEVELS for packet in samples(level)]
SAMPLE_IDS = [
    sample_id(level, i, packet) for level in LEVELS for i, packet in enumerate(samples(level))
]


def parser_for(packet: Packet, level: int, **kwargs) -> MQTTParser:
    """A parser in the state that expects `packet`: fresh for CONNECT, level known
    otherwise."""
    if isinstance(packet, Connect):
        return MQTTParser(**kwargs)
    return MQTTParser(protocol_level=level, **kwargs)


def feed_whole(parser: MQTTParser, data: bytes) -> list[Packet]:
    return parser.feed(data)


def feed_bytewise(parser: MQTTParser, data: bytes) -> list[Packet]:
    out: list[Packet] = []
    for i in range(len(data)):
        out += parser.feed(data[i : i + 1])
    return out
