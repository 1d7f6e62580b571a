"""Throughput of the NATS codec (hybridbus.codec.nats).

Run: .venv/bin/python bench/bench_nats_codec.py [--seconds 1.0]

Rates are ops per second of CPU time used by this process (time.process_time), best
of several rounds: the development machine is shared, and wall-clock rates there mostly
measure the neighbours. Measures:
  * parse, 64-byte PUBs batched in 64 KiB chunks (the way a busy socket delivers them):
    text payloads (with and without a reply subject, chunks aligned or cut mid-frame),
    random binary payloads, and payloads that all contain a b"\\n" (the slow path);
  * parse, one PUB per feed() call (a quiet client, one frame per read);
  * encode, MSG via encode_msg and via msg_head_tail fan-out (one encode, N sids).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from hybridbus.codec.nats import (  # noqa: E402
    OP_ERROR,
    Parser,
    encode_msg,
    msg_head_tail,
)

PAYLOAD = bytes(range(64))  # binary with a \n (and a \r) in every payload: the worst case


def _rate(fn, ops_per_call: int, seconds: float, rounds: int = 5) -> float:
    """Best ops per CPU-second over `rounds` rounds of about `seconds / rounds` each."""
    fn()  # warm up
    best = 0.0
    per_round = seconds / rounds
    for _ in range(rounds):
        calls = 0
        t0 = time.process_time()
        while True:
            fn()
            calls += 1
            dt = time.process_time() - t0
            if dt >= per_round:
                break
        best = max(best, calls * ops_per_call / dt)
    return best


def _chunks(stream: bytes, size: int) -> list[bytes]:
    return [stream[i : i + size] for i in range(0, len(stream), size)]


def bench_parse_batched(seconds: float, frame: bytes, aligned: bool, frames: int = 1) -> float:
    """`frame` holds `frames` PUBs; repeat it to fill 64 KiB chunks."""
    per_chunk = 65536 // len(frame)
    if aligned:
        chunks = [frame * per_chunk]
        n_ops = per_chunk * frames
    else:
        assert frames == 1
        # 16 chunks of exactly 64 KiB, so boundaries cut control lines and payloads.
        stream = frame * (65536 * 16 // len(frame) + 1)
        chunks = _chunks(stream[: 65536 * 16], 65536)
        n_ops = (65536 * 16) // len(frame)

    def run():
        p = Parser()
        feed = p.feed
        n = 0
        for c in chunks:
            n += len(feed(c))
        assert n == n_ops, n

    check = Parser().feed(chunks[0])
    assert check and check[-1][0] != OP_ERROR
    return _rate(run, n_ops, seconds)


def bench_parse_single(seconds: float, frame: bytes) -> float:
    frames = [frame] * 1000
    p = Parser()
    feed = p.feed

    def run():
        for f in frames:
            feed(f)

    return _rate(run, len(frames), seconds)


def bench_encode_msg(seconds: float) -> float:
    subjects = [f"sensors.room{i}.temp" for i in range(100)]

    def run():
        for s in subjects:
            encode_msg(s, "17", None, PAYLOAD)

    return _rate(run, len(subjects), seconds)


def bench_encode_msg_reply(seconds: float) -> float:
    subjects = [f"sensors.room{i}.temp" for i in range(100)]

    def run():
        for s in subjects:
            encode_msg(s, "17", "_INBOX.abcdef.1", PAYLOAD)

    return _rate(run, len(subjects), seconds)


def bench_fanout(seconds: float, receivers: int) -> float:
    sids = [str(i).encode() for i in range(receivers)]

    def run():
        head, tail = msg_head_tail(b"sensors.room1.temp", None, PAYLOAD)
        out = []
        for sid in sids:
            out.append(head)
            out.append(sid)
            out.append(tail)
        b"".join(out)

    return _rate(run, receivers, seconds)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=1.0, help="CPU time per measurement")
    a = ap.parse_args()
    s = a.seconds

    def pub(payload: bytes, reply: bytes = b"") -> bytes:
        return b"PUB sensors.room1.temp %s%d\r\n%s\r\n" % (reply, len(payload), payload)

    text = b'{"t":21.5,"h":40,"id":"sensor-0001","ts":1700000000123,"ok":true}'[:64]
    rnd = random.Random(1)
    mixed = b"".join(pub(rnd.randbytes(64)) for _ in range(64))  # ~22% hold a b"\n"
    print(f"python {sys.version.split()[0]}, 64-byte payloads, ops per CPU-second, best of 5")
    rows = [
        ("parse PUB text, 64 KiB chunks", bench_parse_batched(s, pub(text), True)),
        ("parse PUB text, 64 KiB chunks cut mid-frame", bench_parse_batched(s, pub(text), False)),
        (
            "parse PUB+reply text, 64 KiB chunks",
            bench_parse_batched(s, pub(text, b"_INBOX.ab.1 "), True),
        ),
        ("parse PUB random binary, 64 KiB chunks", bench_parse_batched(s, mixed, True, 64)),
        ("parse PUB, every payload has \\n, 64 KiB", bench_parse_batched(s, pub(PAYLOAD), True)),
        ("parse PUB text, one frame per feed()", bench_parse_single(s, pub(text))),
        ("encode_msg (no reply)", bench_encode_msg(s)),
        ("encode_msg (reply)", bench_encode_msg_reply(s)),
        ("msg_head_tail fan-out x100 (per receiver)", bench_fanout(s, 100)),
    ]
    for name, rate in rows:
        print(f"{name:45} {rate / 1e6:8.3f} M ops/s")


if __name__ == "__main__":
    main()
