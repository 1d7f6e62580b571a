"""CPU cost of the MQTT QoS 1 path inside the server, without sockets.

Run: .venv/bin/python bench/bench_mqtt_server.py [--seconds 3] [--persistent] [--profile]

A started Server (store in a temp dir, default sync policy) gets a publisher and a
subscriber MqttConnection on in-memory transports. Each round feeds the publisher a
chunk of QoS 1 PUBLISH packets, lets the loop run the store's flush, then feeds the
subscriber one PUBACK per PUBLISH it was sent, as the harness's clients would. Prints
messages per CPU-second: the Python side of `mqtt_qos1` / `mqtt_qos1_persistent`
(parse, route, persist, encode, acks), minus the syscalls. `--profile` runs it under
cProfile and prints the top functions.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import struct
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from bench.harness.memory_transport import MemoryTransport  # noqa: E402
from hybridbus.mqtt.connection import MqttConnection  # noqa: E402
from hybridbus.options import Options  # noqa: E402
from hybridbus.server.server import Server  # noqa: E402


def _s(text: bytes) -> bytes:
    return struct.pack("!H", len(text)) + text


def _packet(b0: int, body: bytes) -> bytes:
    n = len(body)
    out = bytearray([b0])
    while True:
        byte = n % 128
        n //= 128
        out.append(byte | 0x80 if n else byte)
        if not n:
            break
    return bytes(out) + body


def _connect(client_id: bytes, clean: bool) -> bytes:
    flags = 0x02 if clean else 0
    return _packet(0x10, _s(b"MQTT") + bytes([4, flags]) + struct.pack("!H", 0) + _s(client_id))


def _publish_pids(data: bytearray) -> list[int]:
    """Packet ids of the QoS 1 PUBLISH packets in `data` (the subscriber's input)."""
    pids = []
    i, n = 0, len(data)
    while i < n:
        b0 = data[i]
        j, mult, length = i + 1, 1, 0
        while True:
            byte = data[j]
            length += (byte & 0x7F) * mult
            mult *= 128
            j += 1
            if not byte & 0x80:
                break
        if b0 >> 4 == 3 and (b0 >> 1) & 3:
            tlen = (data[j] << 8) | data[j + 1]
            k = j + 2 + tlen
            pids.append((data[k] << 8) | data[k + 1])
        i = j + length
    return pids


async def run(args) -> None:
    tmp = tempfile.mkdtemp(prefix="bench-mqtt-")
    opts = Options(host="127.0.0.1", port=0, http_port=0)
    opts.mqtt.host = "127.0.0.1"
    opts.mqtt.port = 0
    opts.jetstream.store_dir = os.path.join(tmp, "store")
    server = Server(opts)
    await server.start()
    try:
        sub_t, pub_t = MemoryTransport(2), MemoryTransport(1)
        sub = MqttConnection(server)
        sub.connection_made(sub_t)
        sub.data_received(_connect(b"bench-sub", clean=not args.persistent))
        sub.data_received(_packet(0x82, struct.pack("!H", 1) + _s(b"bench/q1") + b"\x01"))
        pub = MqttConnection(server)
        pub.connection_made(pub_t)
        pub.data_received(_connect(b"bench-pub", clean=True))
        await asyncio.sleep(0.05)
        sub_t.data.clear()
        payload = b"x" * 64
        pid = 0
        chunk_frames = []
        for _ in range(args.batch):
            pid = pid % 65535 + 1
            chunk_frames.append(_packet(0x32, _s(b"bench/q1") + struct.pack("!H", pid) + payload))
        chunk = b"".join(chunk_frames)

        async def one_round() -> None:
            pub.data_received(chunk)
            await asyncio.sleep(0)  # the store's flush, then the PUBACKs
            await asyncio.sleep(0)
            pids = _publish_pids(sub_t.data)
            sub_t.data.clear()
            pub_t.data.clear()
            sub.data_received(b"".join(b"\x40\x02" + struct.pack("!H", p) for p in pids))

        for _ in range(20):
            await one_round()
        best = 0.0
        rounds = 5
        for _ in range(rounds):
            calls = 0
            t0 = time.process_time()
            while True:
                await one_round()
                calls += 1
                dt = time.process_time() - t0
                if dt >= args.seconds / rounds:
                    break
            best = max(best, calls * args.batch / dt)
        kind = "persistent" if args.persistent else "clean"
        print(
            f"MQTT QoS 1 -> {kind} session, 64 B: {best:,.0f} msgs/CPU-s ({1e6 / best:.2f} us/msg)"
        )
        if args.profile:
            import cProfile
            import pstats

            prof = cProfile.Profile()
            prof.enable()
            for _ in range(300):
                await one_round()
            prof.disable()
            pstats.Stats(prof).sort_stats("tottime").print_stats(25)
    finally:
        await server.shutdown()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--persistent", action="store_true")
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    import uvloop

    uvloop.run(run(args))


if __name__ == "__main__":
    main()
