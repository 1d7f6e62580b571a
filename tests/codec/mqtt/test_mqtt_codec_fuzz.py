"""Property-based tests (h11's fuzz invariant, run under hypothesis):

- any byte stream, fed in any chunks, yields packets or MQTTProtocolError, nothing else;
- whatever does decode re-encodes to bytes that decode to the same packets;
- generated packets of every type and level survive encode -> chunked feed -> decode.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hybridbus.codec.mqtt import (
    PROPERTIES,
    VALID_REASON_CODES,
    WILL,
    Auth,
    Connack,
    Connect,
    Disconnect,
    MQTTParser,
    MQTTProtocolError,
    PacketType,
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
    encode,
)
from tests.codec.mqtt.mqtt_codec_cases import samples

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    out = []
    last = 0
    for cut in sorted({c % (len(data) + 1) for c in cuts}) + [len(data)]:
        out.append(data[last:cut])
        last = cut
    return out


def feed_chunks(parser: MQTTParser, data: bytes, cuts: list[int]) -> list:
    out = []
    for chunk in chunks(data, cuts):
        out += parser.feed(chunk)
    return out


def outcome(level, pieces: list[bytes]) -> tuple[list, tuple | None, MQTTParser]:
    """Feed the pieces; only MQTTProtocolError may escape."""
    parser = MQTTParser(protocol_level=level)
    packets = []
    try:
        for piece in pieces:
            packets += parser.feed(piece)
    except MQTTProtocolError as exc:
        assert 0x80 <= exc.reason_code <= 0xA2
        return packets + exc.packets, (exc.reason_code, exc.message), parser
    return packets, None, parser


def check_invariant(level, data: bytes, cuts: list[int]) -> None:
    """Chunked and whole feeding agree on packets and verdict; what decoded re-encodes."""
    packets, error, parser = outcome(level, chunks(data, cuts))
    whole_packets, whole_error, _ = outcome(level, [data])
    assert (packets, error) == (whole_packets, whole_error)
    if not packets:
        return
    final_level = parser.protocol_level
    again = MQTTParser(protocol_level=level)
    assert again.feed(b"".join(encode(p, final_level) for p in packets)) == packets


@FUZZ
@given(
    level=st.sampled_from([None, 3, 4, 5]),
    data=st.binary(max_size=200),
    cuts=st.lists(st.integers(0, 200), max_size=4),
)
def test_random_bytes_give_packets_or_protocol_error(level, data, cuts):
    check_invariant(level, data, cuts)


@FUZZ
@given(
    level=st.sampled_from([4, 5]),
    body=st.binary(max_size=60),
    b0=st.integers(0, 255),
    cuts=st.lists(st.integers(0, 70), max_size=3),
)
def test_random_bodies_behind_a_valid_header(level, body, b0, cuts):
    # Random bytes rarely frame; a correct fixed header gets them into every decoder.
    data = bytes((b0, len(body))) + body
    check_invariant(level, data, cuts)


_STREAMS = {
    level: b"".join(encode(p, level) for p in [samples(level)[0]] + samples(level)[2:])
    for level in (3, 4, 5)
}


@st.composite
def mutated_stream(draw):
    level = draw(st.sampled_from([3, 4, 5]))
    data = bytearray(_STREAMS[level])
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        i = draw(st.integers(0, max(len(data) - 1, 0)))
        if not data:
            break
        if op == "flip":
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "set":
            data[i] = draw(st.integers(0, 255))
        elif op == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=4))
        elif op == "delete":
            del data[i : i + draw(st.integers(1, 4))]
        else:
            del data[i:]
    return bytes(data)


@FUZZ
@given(data=mutated_stream(), cuts=st.lists(st.integers(0, 2000), max_size=4))
def test_mutated_sessions_give_packets_or_protocol_error(data, cuts):
    check_invariant(None, data, cuts)


# ------------------------------------------------------------ generated packets

text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    max_size=12,
)
# A topic filter is never empty: the decoder refuses one [MQTT-4.7.3-1].
topic_filter = text.filter(bool)
blob = st.binary(max_size=24)
packet_id = st.integers(1, 0xFFFF)

_VALUES = {
    "byte": st.integers(0, 255),
    "u16": st.integers(0, 0xFFFF),
    "u32": st.integers(0, 0xFFFF_FFFF),
    "varint": st.integers(1, 268_435_455),
    "string": text,
    "binary": blob,
    "string pair": st.tuples(text, text),
}


def _value(spec):
    base = _VALUES[spec.kind]
    if spec.rule.startswith("a value other than 0 or 1"):
        base = st.integers(0, 1)
    elif spec.check is not None:
        base = base.filter(spec.check)
    return base


@st.composite
def properties_for(draw, ptype: int, level: int):
    if level != 5:
        return {}
    specs = [p for p in PROPERTIES if ptype in p.packets]
    chosen = draw(st.lists(st.sampled_from(specs), unique_by=lambda p: p.name, max_size=4))
    props = {}
    for spec in chosen:
        if ptype in spec.multi:
            props[spec.name] = draw(st.lists(_value(spec), min_size=1, max_size=3))
        else:
            props[spec.name] = draw(_value(spec))
    if "authentication_data" in props and "authentication_method" not in props:
        props["authentication_method"] = draw(text)
    return props


def reason(ptype: int, level: int):
    if level != 5:
        return st.just(0)
    return st.sampled_from(sorted(VALID_REASON_CODES[ptype]))


@st.composite
def connect(draw, level):
    will = draw(st.booleans())
    username = draw(st.none() | text)
    password = draw(st.none() | blob)
    if level < 5 and username is None:
        password = None
    return Connect(
        client_id=draw(text),
        keep_alive=draw(st.integers(0, 0xFFFF)),
        clean_start=draw(st.booleans()),
        username=username,
        password=password,
        will_topic=draw(text) if will else None,
        will_payload=draw(blob) if will else b"",
        will_qos=draw(st.integers(0, 2)) if will else 0,
        will_retain=draw(st.booleans()) if will else False,
        will_properties=draw(properties_for(WILL, level)) if will else {},
        properties=draw(properties_for(PacketType.CONNECT, level)),
        protocol_level=level,
        protocol_name="MQIsdp" if level == 3 else "MQTT",
    )


@st.composite
def publish(draw, level):
    qos = draw(st.integers(0, 2))
    return Publish(
        topic=draw(text),
        payload=draw(st.binary(max_size=300)),
        qos=qos,
        retain=draw(st.booleans()),
        dup=draw(st.booleans()) if qos else False,
        packet_id=draw(packet_id) if qos else 0,
        properties=draw(properties_for(PacketType.PUBLISH, level)),
    )


@st.composite
def subscription(draw, level):
    if level != 5:
        return Subscription(draw(topic_filter), draw(st.integers(0, 2)))
    return Subscription(
        draw(topic_filter),
        draw(st.integers(0, 2)),
        draw(st.booleans()),
        draw(st.booleans()),
        draw(st.integers(0, 2)),
    )


def ack(cls, ptype, level):
    return st.builds(cls, packet_id, reason(ptype, level), properties_for(ptype, level))


def packet_strategy(level: int):
    suback_codes = (
        st.sampled_from(sorted(VALID_REASON_CODES[PacketType.SUBACK]))
        if level == 5
        else st.sampled_from([0, 1, 2, 0x80])
    )
    choices = [
        connect(level),
        st.builds(
            Connack,
            st.booleans() if level >= 4 else st.just(False),
            reason(PacketType.CONNACK, level) if level == 5 else st.integers(0, 5),
            properties_for(PacketType.CONNACK, level),
        ),
        publish(level),
        ack(Puback, PacketType.PUBACK, level),
        ack(Pubrec, PacketType.PUBREC, level),
        ack(Pubrel, PacketType.PUBREL, level),
        ack(Pubcomp, PacketType.PUBCOMP, level),
        st.builds(
            Subscribe,
            packet_id,
            st.lists(subscription(level), min_size=1, max_size=3),
            properties_for(PacketType.SUBSCRIBE, level),
        ),
        st.builds(
            Suback,
            packet_id,
            st.lists(suback_codes, min_size=1, max_size=3),
            properties_for(PacketType.SUBACK, level),
        ),
        st.builds(
            Unsubscribe,
            packet_id,
            st.lists(topic_filter, min_size=1, max_size=3),
            properties_for(PacketType.UNSUBSCRIBE, level),
        ),
        st.builds(
            Unsuback,
            packet_id,
            st.lists(reason(PacketType.UNSUBACK, level), min_size=1, max_size=3)
            if level == 5
            else st.just([]),
            properties_for(PacketType.UNSUBACK, level),
        ),
        st.just(Pingreq()),
        st.just(Pingresp()),
        st.builds(
            Disconnect,
            reason(PacketType.DISCONNECT, level),
            properties_for(PacketType.DISCONNECT, level),
        ),
    ]
    if level == 5:
        choices.append(
            st.builds(Auth, reason(PacketType.AUTH, level), properties_for(PacketType.AUTH, level))
        )
    return st.one_of(choices)


@st.composite
def session(draw):
    level = draw(st.sampled_from([3, 4, 5]))
    packets = draw(st.lists(packet_strategy(level), min_size=1, max_size=6))
    # At most one CONNECT, and only first: the parser enforces [MQTT-3.1.0-1/2].
    packets = [p for p in packets if not isinstance(p, Connect)]
    return level, [draw(connect(level))] + packets


@FUZZ
@given(case=session(), cuts=st.lists(st.integers(0, 3000), max_size=5))
def test_generated_packets_round_trip(case, cuts):
    level, packets = case
    data = b"".join(encode(p, level) for p in packets)
    parser = MQTTParser()
    assert feed_chunks(parser, data, cuts) == packets
    assert parser.protocol_level == level
    assert parser.buffered == 0
