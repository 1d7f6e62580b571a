"""Tests of the harness's own wire code, and one short live run per peer server.

Run: ``.venv/bin/pytest bench/harness/test_harness.py`` (about 10 s; not under tests/).
"""

from __future__ import annotations

import random
import shutil

import pytest

from .loadgen_nats import EdgeCounter, _parse_msgs
from .mqttwire import (
    PINGRESP_BYTES,
    MqttStream,
    encode_publish,
    encode_varint,
    publish_qos1_cycle,
)
from .run import run_one
from .scenarios import SCENARIOS, Options
from .servers import find_nats_server, port_accepts


def _chunks(data: bytes, rnd: random.Random) -> list[bytes]:
    out = []
    pos = 0
    while pos < len(data):
        n = rnd.choice([1, 2, 3, 7, 100, 4096, 65536])
        out.append(data[pos : pos + n])
        pos += n
    return out


@pytest.mark.parametrize(
    "n,expected",
    [
        (0, b"\x00"),
        (127, b"\x7f"),
        (128, b"\x80\x01"),
        (16383, b"\xff\x7f"),
        (16384, b"\x80\x80\x01"),
    ],
)
def test_varint_boundaries_mqtt_2_2_3(n: int, expected: bytes) -> None:
    assert encode_varint(n) == expected


def test_mqtt_stream_counts_mixed_frames_in_any_chunking() -> None:
    rnd = random.Random(7)
    template = encode_publish("bench/q0", b"x" * 64)
    frames, publishes, ids = [], 0, []
    for _ in range(5000):
        r = rnd.random()
        if r < 0.7:
            frames.append(template)
            publishes += 1
        elif r < 0.8:
            frames.append(PINGRESP_BYTES)
        elif r < 0.9:
            pid = rnd.randint(1, 65535)
            frames.append(encode_publish("a/b", b"y" * rnd.randint(0, 300), 1, pid))
            publishes += 1
            ids.append(pid)
        else:
            # Large enough for a 3-byte remaining length now and then.
            size = rnd.choice([0, 50, 20000])
            frames.append(encode_publish("other/t", b"z" * size))
            publishes += 1
    data = b"".join(frames)
    for seed in range(3):
        stream = MqttStream()
        acks = b"".join(stream.feed(c) for c in _chunks(data, random.Random(seed)))
        assert stream.publishes == publishes
        assert stream.buf == b""
        got = [int.from_bytes(acks[i + 2 : i + 4], "big") for i in range(0, len(acks), 4)]
        assert got == ids


@pytest.mark.parametrize("marker", [b"MSG ", b"PONG", b"\xc0\x00"])
@pytest.mark.parametrize("step", [1, 2, 3, 5, 97, 65536])
def test_edge_counter_finds_markers_split_across_chunks(marker: bytes, step: int) -> None:
    unit = b"abc" + marker + b"y" * 40
    data = unit * 1000
    c = EdgeCounter(marker)
    for i in range(0, len(data), step):
        c.feed(bytearray(data[i : i + step] + b"\0" * 8), len(data[i : i + step]))
    assert c.count == 1000


def test_parse_msgs_keeps_partial_frame() -> None:
    msgs, rest = _parse_msgs(
        b"MSG a 1 _INBOX.x 3\r\nabc\r\nPING\r\nMSG a 1 2\r\nhi\r\nMSG a 1 5\r\nab"
    )
    assert msgs == [(b"_INBOX.x", b"abc"), (b"", b"hi")]
    assert rest == b"MSG a 1 5\r\nab"


def test_qos1_cycle_slices_hold_consecutive_packet_ids() -> None:
    cycle, size = publish_qos1_cycle("t", b"p")
    assert len(cycle) == 65535 * size
    for pid in (1, 2, 65534, 65535):
        frame = cycle[(pid - 1) * size : pid * size]
        assert frame == encode_publish("t", b"p", 1, pid)


def _short() -> Options:
    return Options(duration=0.6, warmup=0.2)


def test_live_nats_pubsub_against_nats_server() -> None:
    find_nats_server()
    r = run_one(SCENARIOS["nats_pubsub"], "nats-server", _short())
    assert r["rate"] > 10_000
    # Every message received was sent: the subscriber cannot count more than was published.
    assert r["workers"]["sub"]["total"] <= r["workers"]["pub"]["total"]


def test_live_reqrep_latency_against_nats_server() -> None:
    r = run_one(SCENARIOS["nats_reqrep"], "nats-server", _short())
    assert r["samples"] > 100
    assert 0 < r["p50_us"] <= r["p99_us"] <= r["max_us"]


@pytest.mark.skipif(shutil.which("mosquitto") is None, reason="Debian mosquitto not installed")
def test_live_mqtt_qos1_against_mosquitto_gets_pubacks() -> None:
    r = run_one(SCENARIOS["mqtt_qos1"], "mosquitto", _short())
    assert r["rate"] > 1_000
    assert r["workers"]["pub"]["acked"] > 0
    # QoS 1 both legs: the subscriber cannot receive more than the publisher sent.
    assert r["workers"]["sub"]["total"] <= r["workers"]["pub"]["total"]


def test_server_stop_frees_port() -> None:
    from .servers import start_nats_server

    srv = start_nats_server(mqtt=True)
    port = srv.mqtt_port
    assert port and port_accepts(port)
    srv.stop()
    assert not srv.alive()
    assert not port_accepts(port)
