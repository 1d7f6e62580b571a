"""CPU cost of the NATS publish path inside the server, without sockets.

Run: .venv/bin/python bench/bench_nats_server.py [--seconds 2] [--subs 1]

A Server (not started) gets a publisher and `--subs` subscriber NatsConnections on an
in-memory transport; 64 KiB chunks of 64-byte PUBs are fed to the publisher's
data_received, exactly as uvloop would, and the subscribers' writes are discarded.
Prints messages per CPU-second (time.process_time), best of several rounds: the whole
Python side of the NATS core benchmark (parse, route, encode, flush), minus the syscalls.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from bench.harness.memory_transport import MemoryTransport  # noqa: E402
from hybridbus.nats.connection import NatsConnection  # noqa: E402
from hybridbus.options import Options  # noqa: E402
from hybridbus.server.server import Server  # noqa: E402


class _Loop:
    def call_soon(self, fn, *args):
        return None


def _connect(server: Server, port: int) -> NatsConnection:
    conn = NatsConnection(server)
    conn.connection_made(MemoryTransport(port, keep=False))
    conn.data_received(b'CONNECT {"verbose":false,"pedantic":false}\r\n')
    return conn


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--subs", type=int, default=1)
    ap.add_argument("--payload", type=int, default=64)
    args = ap.parse_args()
    server = Server(Options())
    server._loop = _Loop()
    pub = _connect(server, 1)
    for i in range(args.subs):
        sub = _connect(server, 100 + i)
        sub.data_received(b"SUB bench.nats %d\r\n" % (i + 1))
    frame = b"PUB bench.nats %d\r\n%s\r\n" % (args.payload, b"x" * args.payload)
    per_chunk = 65536 // len(frame)
    chunk = frame * per_chunk
    feed = pub.data_received
    best = 0.0
    rounds = 5
    for _ in range(rounds):
        calls = 0
        t0 = time.process_time()
        while True:
            feed(chunk)
            calls += 1
            dt = time.process_time() - t0
            if dt >= args.seconds / rounds:
                break
        best = max(best, calls * per_chunk / dt)
    print(
        f"NATS PUB -> {args.subs} sub(s), {args.payload} B: {best:,.0f} msgs/CPU-s "
        f"({1e6 / best:.2f} us/msg)"
    )


if __name__ == "__main__":
    main()
