"""MQTT codec throughput: PUBLISH decode and encode rates, in packets per second.

    .venv/bin/python bench/bench_mqtt_codec.py [--seconds 0.5] [--profile CASE]

Cases: 64-byte QoS 0 and QoS 1 PUBLISH packets (the whole packet is 64 bytes) at
levels 4 and 5, decoded either batched (as many packets per feed() as fit in 64 KiB, the
size of one socket read) or one packet per feed(), and encoded with encode_publish from
pre-encoded topic bytes. `--profile CASE` runs one case under cProfile instead
(e.g. `--profile decode-batch-qos1-v4`).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time
from collections.abc import Callable

from hybridbus.codec.mqtt import MQTTParser, encode_properties, encode_publish

PACKET_SIZE = 64
BATCH_BYTES = 64 * 1024
TOPIC = b"sensors/building-1/floor-2/temp"


def make_packet(qos: int, level: int) -> tuple[bytes, bytes]:
    """A PUBLISH of exactly PACKET_SIZE bytes, and its payload."""
    payload = b""
    pkt = encode_publish(TOPIC, payload, qos, False, False, 1 if qos else 0, level=level)
    payload = b"x" * (PACKET_SIZE - len(pkt))
    pkt = encode_publish(TOPIC, payload, qos, False, False, 1 if qos else 0, level=level)
    assert len(pkt) == PACKET_SIZE, len(pkt)
    return pkt, payload


def rate(fn: Callable[[], int], seconds: float) -> float:
    """Run fn (which returns how many packets it handled) for about `seconds`."""
    fn()  # warm up
    count = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        count += fn()
        now = time.perf_counter()
        if now >= deadline:
            return count / (now - start)


def decode_batch(qos: int, level: int) -> Callable[[], int]:
    pkt, _ = make_packet(qos, level)
    per_feed = BATCH_BYTES // len(pkt)
    data = pkt * per_feed
    parser = MQTTParser(protocol_level=level)
    feed = parser.feed

    def run() -> int:
        for _ in range(20):
            got = feed(data)
        assert len(got) == per_feed
        return 20 * per_feed

    return run


def decode_single(qos: int, level: int) -> Callable[[], int]:
    pkt, _ = make_packet(qos, level)
    parser = MQTTParser(protocol_level=level)
    feed = parser.feed

    def run() -> int:
        for _ in range(10_000):
            feed(pkt)
        return 10_000

    return run


def encode_one(qos: int, level: int) -> Callable[[], int]:
    _, payload = make_packet(qos, level)
    pid = 1 if qos else 0

    def run() -> int:
        for _ in range(10_000):
            encode_publish(TOPIC, payload, qos, False, False, pid, b"", level)
        return 10_000

    return run


def encode_with_props(qos: int, level: int) -> Callable[[], int]:
    _, payload = make_packet(qos, level)
    props = encode_properties({"content_type": "text/plain"}, 3)
    pid = 1 if qos else 0

    def run() -> int:
        for _ in range(10_000):
            encode_publish(TOPIC, payload, qos, False, False, pid, props, level)
        return 10_000

    return run


CASES: dict[str, Callable[[], int]] = {}
for _level in (4, 5):
    for _qos in (0, 1):
        _sfx = f"qos{_qos}-v{_level}"
        CASES[f"decode-batch-{_sfx}"] = lambda q=_qos, lv=_level: decode_batch(q, lv)
        CASES[f"decode-single-{_sfx}"] = lambda q=_qos, lv=_level: decode_single(q, lv)
        CASES[f"encode-{_sfx}"] = lambda q=_qos, lv=_level: encode_one(q, lv)
CASES["encode-props-qos1-v5"] = lambda: encode_with_props(1, 5)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=0.5, help="time per case")
    ap.add_argument("--profile", metavar="CASE", choices=sorted(CASES))
    args = ap.parse_args()
    if args.profile:
        run = CASES[args.profile]()
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(50):
            run()
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(12)
        return
    print(f"{'case':28} {'packets/s':>12}  ({PACKET_SIZE}-byte PUBLISH)")
    for name, make in CASES.items():
        print(f"{name:28} {rate(make(), args.seconds):12,.0f}")


if __name__ == "__main__":
    main()
