"""``MQTTParser(runs=True)``: consecutive like PUBLISHes as one ``PublishRun``.

The contract: expanding the runs gives exactly the packets the plain parser gives, for
any stream and any way it is cut into reads, and a stream with a bad packet fails with
the same error after the same good packets. Runs form only from PUBLISHes at QoS 0/1,
not retained, without properties, with the same fixed header and topic bytes."""

from __future__ import annotations

import random

import pytest

from hybridbus.codec.mqtt import (
    MQTTParser,
    MQTTProtocolError,
    PublishRun,
    encode_connect,
    encode_publish,
)

PINGREQ = b"\xc0\x00"


def _expand(packets: list) -> list:
    out = []
    for p in packets:
        out.extend(p.expand() if isinstance(p, PublishRun) else [p])
    return out


def _feed(data: bytes, runs: bool, level: int, cuts: list[int]) -> tuple[list, Exception | None]:
    parser = MQTTParser(runs=runs)
    got: list = []
    try:
        got += parser.feed(encode_connect("c", level=level))
        last = 0
        for cut in [*cuts, len(data)]:
            got += parser.feed(data[last:cut])
            last = cut
    except MQTTProtocolError as err:
        return got + err.packets, err
    return got, None


def _stream(rnd: random.Random, level: int) -> bytes:
    props = b"\x00" if level == 5 else b""
    parts = []
    pid = 1
    for _ in range(rnd.randrange(1, 60)):
        topic = rnd.choice([b"a/b", b"a/b", b"a/b", b"c", "t/\u00e9".encode()])
        size = rnd.choice([0, 5, 5, 5, 64, 200])
        qos = rnd.choice([0, 0, 1, 1, 2])
        retain = rnd.random() < 0.1
        dup = qos > 0 and rnd.random() < 0.1
        kind = rnd.random()
        if kind < 0.08:
            parts.append(PINGREQ)
            continue
        if kind < 0.12 and level == 5:
            props_b = b"\x02\x01\x01"  # Payload Format Indicator: a run must not take it
        else:
            props_b = props
        payload = bytes(rnd.randrange(256) for _ in range(size))
        parts.append(
            encode_publish(topic, payload, qos, retain, dup, pid if qos else 0, props_b, level)
        )
        pid = pid % 65535 + 1
    return b"".join(parts)


@pytest.mark.parametrize("level", [4, 5])
def test_runs_expand_to_what_the_plain_parser_gives_under_any_cutting(level):
    rnd = random.Random(level)
    runs_seen = 0
    for _ in range(300):
        data = _stream(rnd, level)
        cuts = sorted(rnd.sample(range(1, len(data)), min(len(data) - 1, rnd.randrange(0, 6))))
        plain, err1 = _feed(data, False, level, [])
        ran, err2 = _feed(data, True, level, cuts)
        assert err1 is None and err2 is None
        runs_seen += sum(isinstance(p, PublishRun) for p in ran)
        assert _expand(ran) == plain
    assert runs_seen > 100  # the streams did make runs


@pytest.mark.parametrize("level", [4, 5])
def test_a_run_takes_only_like_packets(level):
    props = b"\x00" if level == 5 else b""
    pub = lambda t, pl, q=0, pid=0, r=False, d=False, pr=props: encode_publish(  # noqa: E731
        t, pl, q, r, d, pid, pr, level
    )
    data = b"".join(
        [
            pub(b"x", b"11"),
            pub(b"x", b"22"),
            pub(b"x", b"333"),  # another size: another Remaining Length
            pub(b"x", b"444"),
            pub(b"y", b"444"),  # another topic
            pub(b"x", b"55", 1, 7),
            pub(b"x", b"66", 1, 8),
            pub(b"x", b"77", 1, 9, d=True),  # DUP: another fixed header
            pub(b"x", b"88", 0, r=True),
            pub(b"x", b"99", 0, r=True),  # retained: never a run
        ]
    )
    got, err = _feed(data, True, level, [])
    assert err is None
    shape = [
        (type(p).__name__, p.topic, len(p) if isinstance(p, PublishRun) else p.payload)
        for p in got[1:]
    ]
    assert shape == [
        ("PublishRun", "x", 2),
        ("PublishRun", "x", 2),
        ("Publish", "y", b"444"),
        ("PublishRun", "x", 2),
        ("Publish", "x", b"77"),
        ("Publish", "x", b"88"),
        ("Publish", "x", b"99"),
    ]
    assert got[4].packet_ids == [7, 8]
    assert got[1].payloads == [b"11", b"22"] and got[1].packet_ids == []


@pytest.mark.parametrize("level", [4, 5])
def test_a_bad_packet_after_a_run_fails_as_without_runs(level):
    """A zero packet id (and, 5.0, a property the run would have skipped) in the middle:
    the run stops before it, and the packet is decoded on its own."""
    props = b"\x00" if level == 5 else b""
    good = [encode_publish(b"q", b"ok", 1, False, False, i, props, level) for i in (1, 2, 3)]
    bad = encode_publish(b"q", b"ok", 1, False, False, 0, props, level)
    data = b"".join(good + [bad] + good)
    plain, err1 = _feed(data, False, level, [])
    ran, err2 = _feed(data, True, level, [])
    assert isinstance(err1, MQTTProtocolError) and isinstance(err2, MQTTProtocolError)
    assert (err1.reason_code, err1.message) == (err2.reason_code, err2.message)
    assert _expand(ran) == plain and len(plain) == 4  # CONNECT and the three before it
    if level == 5:
        # a non-empty property length where the run expects 0: decoded on its own
        odd = encode_publish(b"q", b"ok", 1, False, False, 4, b"\x02\x01\x01", level)
        got, err = _feed(b"".join(good + [odd]), True, level, [])
        assert err is None
        assert isinstance(got[1], PublishRun) and len(got[1]) == 3
        assert got[2].properties == {"payload_format_indicator": 1}


def test_a_run_splits_after_k_packets():
    run = PublishRun("t", 1, False, [b"a", b"b", b"c"], [1, 2, 3])
    rest = run.tail(1)
    assert (rest.payloads, rest.packet_ids, rest.topic, rest.qos) == ([b"b", b"c"], [2, 3], "t", 1)
    assert [p.packet_id for p in run.expand()] == [1, 2, 3]
    assert [p.payload for p in PublishRun("t", 0, False, [b"x", b"y"], []).expand()] == [b"x", b"y"]


@pytest.mark.parametrize("level", [4, 5])
def test_an_oversized_packet_after_a_run_is_refused_as_without_runs(level):
    """The Maximum Packet Size is checked from each fixed header: a run takes only
    packets as long as its first, and the big one after it fails on its own."""
    props = b"\x00" if level == 5 else b""
    small = [encode_publish(b"m", b"x" * 10, 0, False, False, 0, props, level) for _ in range(5)]
    big = encode_publish(b"m", b"x" * 500, 0, False, False, 0, props, level)
    data = b"".join(small + [big])
    results = []
    for runs in (False, True):
        parser = MQTTParser(max_packet_size=100, runs=runs)
        got = parser.feed(encode_connect("c", level=level))
        with pytest.raises(MQTTProtocolError) as err:
            parser.feed(data)
        results.append((_expand(got + err.value.packets), err.value.reason_code))
    assert results[0] == results[1]
    assert len(results[1][0]) == 6  # CONNECT and the five small ones, then the refusal
    assert results[1][1] == 0x95  # Packet too large
