"""h11-style feeding: every packet whole, one byte at a time, and followed by the first
bytes of the next packet; plus every split point of a two-packet stream."""

from __future__ import annotations

import pytest

from hybridbus.codec.mqtt import (
    MQTTParser,
    Pingreq,
    encode,
    encode_connect,
    encode_publish,
)
from tests.codec.mqtt.mqtt_codec_cases import (
    SAMPLE_CASES,
    SAMPLE_IDS,
    feed_bytewise,
    parser_for,
    samples,
)

NEXT = encode(Pingreq(), 4)  # the same two bytes at every level


@pytest.mark.parametrize(("level", "packet"), SAMPLE_CASES, ids=SAMPLE_IDS)
def test_whole(level, packet):
    data = encode(packet, level)
    assert parser_for(packet, level).feed(data) == [packet]


@pytest.mark.parametrize(("level", "packet"), SAMPLE_CASES, ids=SAMPLE_IDS)
def test_one_byte_at_a_time(level, packet):
    data = encode(packet, level)
    parser = parser_for(packet, level)
    got = []
    for i in range(len(data)):
        step = parser.feed(data[i : i + 1])
        # Nothing may come out before the last byte, and everything on it.
        assert step == ([packet] if i == len(data) - 1 else [])
        got += step
    assert got == [packet]
    assert parser.buffered == 0


@pytest.mark.parametrize(("level", "packet"), SAMPLE_CASES, ids=SAMPLE_IDS)
def test_with_trailing_bytes_of_next_packet(level, packet):
    data = encode(packet, level)
    parser = parser_for(packet, level)
    # The packet plus the first byte of the next: the packet comes out, one byte waits.
    assert parser.feed(data + NEXT[:1]) == [packet]
    assert parser.buffered == 1
    assert parser.feed(NEXT[1:]) == [Pingreq()]
    assert parser.buffered == 0


@pytest.mark.parametrize("level", [3, 4, 5])
def test_every_split_point_of_a_session(level):
    packets = samples(level)
    stream = [packets[0]] + packets[2:]  # one CONNECT, then everything else
    data = b"".join(encode(p, level) for p in stream)
    assert feed_bytewise(MQTTParser(), data) == stream
    # Two reads, split at every offset (a cheap superset of h11's three ways).
    for cut in range(0, len(data), 7):
        parser = MQTTParser()
        assert parser.feed(data[:cut]) + parser.feed(data[cut:]) == stream


def test_large_packet_in_small_reads_waits_without_rejoining():
    parser = MQTTParser(protocol_level=4)
    data = encode_publish(b"big", b"p" * 300_000, 1, False, False, 1) + NEXT
    chunks = [data[i : i + 1000] for i in range(0, len(data), 1000)]
    got = []
    for chunk in chunks[:-1]:
        got += parser.feed(chunk)
        assert got == []
        # While the body is incomplete the chunks are kept as they came.
        assert len(parser._pending) >= 1
    got += parser.feed(chunks[-1])
    assert [type(p).__name__ for p in got] == ["Publish", "Pingreq"]
    assert got[0].payload == b"p" * 300_000
    assert parser.buffered == 0


def test_empty_and_bytearray_feeds():
    parser = MQTTParser()
    assert parser.feed(b"") == []
    data = encode_connect("c", level=4)
    assert parser.feed(bytearray(data[:3])) == []
    assert parser.feed(b"") == []
    (pkt,) = parser.feed(memoryview(data)[3:])
    assert pkt.client_id == "c"


def test_connect_level_applies_to_the_rest_of_the_same_read():
    # CONNECT (5.0) and a 5.0 PUBLISH with properties arrive in one read: the PUBLISH
    # must be decoded with the level the CONNECT just set.
    data = encode_connect("c", level=5) + encode_publish(
        b"t", b"x", 1, False, False, 3, b"\x03\x23\x00\x01", 5
    )
    parser = MQTTParser()
    connect, publish = parser.feed(data)
    assert parser.protocol_level == 5
    assert publish.properties == {"topic_alias": 1} and publish.packet_id == 3


def test_caller_may_set_the_level_later():
    parser = MQTTParser()
    parser.protocol_level = 5
    assert parser.feed(b"\x20\x03\x01\x00\x00")[0].session_present is True
    with pytest.raises(ValueError):
        parser.protocol_level = 6
