"""Live-server fuzzing: hostile byte streams at the NATS, MQTT and websocket ports of a
running server, while control clients keep publishing and receiving.

The codec test suites already fuzz the parsers in isolation; this checks what only a
live server can show:

* no input makes the server log an ERROR (an unhandled exception in a protocol
  callback, a timer or the sweep would be logged by asyncio or by us);
* the control clients are served throughout: every control message arrives, over
  NATS and over MQTT, within a bound, while the fuzzers run;
* afterwards nothing leaks: every fuzz connection is gone (stalled ones reclaimed by
  the timeouts) and no subscription points at a closed connection.

Inputs are seeded (``HYBRIDBUS_FUZZ_SEED``; the seed is printed) and the duration per
test is ``HYBRIDBUS_FUZZ_SECONDS`` (default 5). The number of inputs is printed and
kept as a test property (``--junitxml`` shows it).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import socket
import struct
import time

import nats
import pytest

from hybridbus.core.client import ClientBase
from hybridbus.options import AuthOptions, Permissions, User
from tests.fuzz import corpus as C
from tests.helpers import mqtt_packets as mp
from tests.helpers.wire import Wire, eventually, mqtt_packets, nats_connect

FUZZ_SECONDS = float(os.environ.get("HYBRIDBUS_FUZZ_SECONDS", "5"))
WORKERS_PER_PORT = 4
CONTROL_DEADLINE = 2.0  # a control message must arrive within this many seconds


class ErrorRecords(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def report(self) -> str:
        shown = "\n".join(self.format(r) for r in self.records[:3])
        return f"{len(self.records)} ERROR records; the first:\n{shown}"


@pytest.fixture
def server_errors(caplog):
    # Thousands of refusals are logged as warnings; keep only errors (also cheaper).
    caplog.set_level(logging.ERROR, logger="hybridbus")
    handler = ErrorRecords()
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    loggers = [logging.getLogger("hybridbus"), logging.getLogger("asyncio")]
    for lg in loggers:
        lg.addHandler(handler)
    yield handler
    for lg in loggers:
        lg.removeHandler(handler)


@pytest.fixture
def seed() -> int:
    value = int(os.environ.get("HYBRIDBUS_FUZZ_SEED", random.randrange(1 << 30)))
    print(f"fuzz seed: HYBRIDBUS_FUZZ_SEED={value}")
    return value


class Counts:
    def __init__(self) -> None:
        self.inputs = {"nats": 0, "mqtt": 0, "websocket": 0}
        self.bytes = 0
        self.control_rounds = 0
        self.control_max_latency = 0.0


async def fuzz_worker(
    port: int, kind: str, rng: random.Random, deadline: float, counts: Counts, stalled: list
):
    loop = asyncio.get_running_loop()
    while loop.time() < deadline:
        data = make_input(kind, rng)
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.01)
            continue
        try:
            for chunk in C.splits(rng, data):
                writer.write(chunk)
                if rng.random() < 0.3:
                    await writer.drain()
                    await asyncio.sleep(0)
            await writer.drain()
            try:
                await asyncio.wait_for(reader.read(65536), 0.003)
            except TimeoutError:
                pass
        except (ConnectionError, OSError):
            pass
        counts.inputs[kind] += 1
        counts.bytes += len(data)
        r = rng.random()
        if r < 0.02 and len(stalled) < 40:
            stalled.append(writer)  # leave it hanging: the server's timers must reclaim it
        elif r < 0.3:
            sock = writer.get_extra_info("socket")
            if sock is not None:
                # RST instead of FIN
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
        else:
            writer.close()


def make_input(kind: str, rng: random.Random) -> bytes:
    """A session as is (30%), with an intact handshake and a damaged rest (30%),
    damaged anywhere (30%), or noise (10%)."""
    r = rng.random()
    if kind == "nats":
        head, body = C.nats_session(rng) if rng.random() < 0.9 else C.mqtt_session(rng)
    elif kind == "mqtt":
        head, body = C.mqtt_session(rng) if rng.random() < 0.9 else C.nats_session(rng)
    elif r < 0.6:
        head, body = C.ws_session(rng, mutate_inner=0.3 <= r)
        return head + body if r < 0.3 or rng.random() < 0.5 else head + C.mutate(rng, body)
    else:
        head, body = C.ws_session(rng)
    if r < 0.3:
        return head + body
    if r < 0.6:
        return head + C.mutate(rng, body)
    if r < 0.9:
        return C.mutate(rng, head + body)
    return C.noise(rng)


async def control_loop(server, creds: dict, stop: asyncio.Event, counts: Counts, failures: list):
    """Publish over NATS; a NATS and an MQTT subscriber must each get every message."""
    url = f"nats://127.0.0.1:{server.nats_port}"
    sub_nc = await nats.connect(url, **creds)
    pub_nc = await nats.connect(url, **creds)
    sub = await sub_nc.subscribe("ctl.echo")
    await sub_nc.flush()
    mq = await Wire.open(server.mqtt_port)
    user = creds.get("user")
    await mq.send(
        mp.connect(
            "control",
            username=user,
            password=creds["password"].encode() if user else None,
            keepalive=0,
        )
    )
    await mq.expect(mp.connack(0, 0))
    await mq.send(mp.subscribe(1, ("ctl/echo", 0)))
    await mq.expect(mp.suback(1, 0))
    i = 0
    try:
        while not stop.is_set():
            i += 1
            payload = b"ctl-%d" % i
            started = time.monotonic()
            await pub_nc.publish("ctl.echo", payload)
            try:
                msg = await sub.next_msg(CONTROL_DEADLINE)
                if msg.data != payload:
                    failures.append(f"NATS control got {msg.data!r}, wanted {payload!r}")
                (pkt,) = await mqtt_packets(mq, 1, level=4, timeout=CONTROL_DEADLINE)
                if pkt.payload != payload:
                    failures.append(f"MQTT control got {pkt!r}, wanted {payload!r}")
            except Exception as err:  # a missed deadline is the failure being tested
                failures.append(f"control round {i}: {err!r}")
                return
            counts.control_rounds += 1
            counts.control_max_latency = max(counts.control_max_latency, time.monotonic() - started)
            await asyncio.sleep(0.01)
    finally:
        await sub_nc.close()
        await pub_nc.close()
        await mq.close()


class NatsSink:
    """A raw NATS client subscribed to `>` (headers on) that parses every MSG/HMSG.

    Raw, because subjects may hold any non-space bytes; nats-py decodes them as UTF-8
    and gives up on the connection when they are not."""

    def __init__(self) -> None:
        self.wire: Wire | None = None
        self.received = 0
        self.pong = asyncio.Event()
        self.task: asyncio.Task | None = None

    async def start(self, server, creds: dict) -> None:
        connect = {"verbose": False, "pedantic": False, "headers": True}
        if creds:
            connect.update(user=creds["user"], **{"pass": creds["password"]})
        self.wire = await nats_connect(server.nats_port, json.dumps(connect).encode())
        await self.wire.send(b"SUB > 1\r\nPING\r\n")
        await self.wire.expect(b"PONG\r\n")
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        buf = bytearray()
        wire = self.wire
        while True:
            data = await wire.reader.read(65536)
            if not data:
                return
            buf += data
            while True:
                end = buf.find(b"\n")
                if end < 0:
                    break
                line = bytes(buf[: end + 1])
                args = line.split()
                if args and args[0] in (b"MSG", b"HMSG"):
                    need = end + 1 + int(args[-1]) + 2
                    if len(buf) < need:
                        break
                    del buf[:need]
                    self.received += 1
                    continue
                del buf[: end + 1]
                if line.startswith(b"PING"):
                    wire.writer.write(b"PONG\r\n")
                elif line.startswith(b"PONG"):
                    self.pong.set()

    async def alive(self) -> bool:
        self.pong.clear()
        await self.wire.send(b"PING\r\n")
        try:
            await asyncio.wait_for(self.pong.wait(), 3)
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        self.task.cancel()
        await self.wire.close()


class MqttSink:
    """An MQTT client subscribed to `#` that reads and decodes everything it is sent,
    so fuzzed publishes travel the NATS -> MQTT delivery path too."""

    def __init__(self) -> None:
        self.wire: Wire | None = None
        self.received = 0
        self.pingresp = asyncio.Event()
        self.task: asyncio.Task | None = None

    async def start(self, server, creds: dict) -> None:
        from hybridbus.codec.mqtt import MQTTParser

        user = creds.get("user")
        self.wire = await Wire.open(server.mqtt_port)
        await self.wire.send(
            mp.connect(
                "sink",
                username=user,
                password=creds["password"].encode() if user else None,
                keepalive=0,
            )
        )
        await self.wire.expect(mp.connack(0, 0))
        await self.wire.send(mp.subscribe(1, ("#", 0)))
        await self.wire.expect(mp.suback(1, 0))
        parser = MQTTParser(protocol_level=4)

        async def read() -> None:
            while True:
                data = await self.wire.reader.read(65536)
                if not data:
                    return
                for p in parser.feed(data):
                    if type(p).__name__ == "Pingresp":
                        self.pingresp.set()
                    else:
                        self.received += 1

        self.task = asyncio.create_task(read())

    async def alive(self) -> bool:
        await self.wire.send(b"\xc0\x00")  # PINGREQ
        try:
            await asyncio.wait_for(self.pingresp.wait(), 3)
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        self.task.cancel()
        await self.wire.close()


async def run_fuzz(server, ports: dict, creds: dict, seed: int, server_errors, record_property):
    counts = Counts()
    failures: list[str] = []
    stalled: list = []
    stop = asyncio.Event()
    # Sinks on both protocols receive whatever the fuzzers manage to publish.
    nats_sink = NatsSink()
    await nats_sink.start(server, creds)
    mqtt_sink = MqttSink()
    await mqtt_sink.start(server, creds)
    control = asyncio.create_task(control_loop(server, creds, stop, counts, failures))
    await asyncio.sleep(0.2)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + FUZZ_SECONDS
    workers = [
        fuzz_worker(port, kind, random.Random(seed * 100 + n), deadline, counts, stalled)
        for n, (kind, port) in enumerate(
            (kind, port) for kind, port in ports.items() for _ in range(WORKERS_PER_PORT)
        )
    ]
    await asyncio.gather(*workers)
    stop.set()
    await control
    # the sinks survived everything that was routed to them
    assert await nats_sink.alive() and await mqtt_sink.alive()
    sunk = (nats_sink.received, mqtt_sink.received)
    await nats_sink.close()
    await mqtt_sink.close()
    # Stalled fuzz connections are reclaimed by the server's own timeouts (auth,
    # CONNECT, ping, websocket handshake), except an MQTT client whose keep alive has
    # not run out: with keep alive 0 it may idle forever [MQTT-3.1.2-10], and a fuzzed
    # CONNECT may well ask for 65535 s.
    for w in stalled:
        w.transport.pause_reading()

    def only_idle_mqtt() -> bool:
        now = time.monotonic()
        return all(
            getattr(c, "session", None) is not None
            and (c.keep_alive == 0 or now - c.last_packet <= 1.5 * c.keep_alive)
            for c in server.clients.values()
        )

    await eventually(only_idle_mqtt, timeout=8)
    for w in stalled:
        w.transport.abort()
    await eventually(lambda: len(server.clients) == 0, timeout=3)
    total = sum(counts.inputs.values())
    summary = (
        f"fuzz inputs: {total} ({counts.inputs}), {counts.bytes} bytes, "
        f"{counts.control_rounds} control rounds, max control latency "
        f"{counts.control_max_latency * 1000:.0f} ms, sinks received {sunk} (NATS, MQTT)"
    )
    print(summary)
    record_property("fuzz_inputs", total)
    record_property("fuzz_summary", summary)
    assert not failures, failures[:5]
    assert not server_errors.records, server_errors.report()
    assert counts.control_rounds > 10
    assert total > 200
    leaked = [
        s
        for s in server.sublist.subscriptions()
        if isinstance(s.client, ClientBase) and s.client.cid not in server.clients
    ]
    assert not leaked


FUZZ_OPTS = {
    "max_payload": 65536,
    "ping_interval": 0.5,
    "ping_max": 1,
    "mqtt__connect_timeout": 0.5,
    "websocket__enabled": True,
    "websocket__no_tls": True,
    "websocket__host": "127.0.0.1",
    "websocket__handshake_timeout": 0.5,
    "websocket__compression": True,
}


@pytest.mark.timeout(60)
async def test_fuzz_open_server(server_factory, seed, server_errors, record_property):
    server = await server_factory(**FUZZ_OPTS)
    ports = {"nats": server.nats_port, "mqtt": server.mqtt_port, "websocket": server.websocket_port}
    await run_fuzz(server, ports, {}, seed, server_errors, record_property)


@pytest.mark.timeout(60)
async def test_fuzz_secured_server(server_factory, seed, server_errors, record_property):
    auth = AuthOptions(
        timeout=0.5,
        users=[
            User("ctl", "ctl-pw"),
            User(
                "fz",
                "fz-pw",
                Permissions(
                    publish_allow=["fz.>", "a.>"],
                    publish_deny=["a.b.c"],
                    subscribe_allow=["fz.>", "q.* q1", ">"],
                    subscribe_deny=["$SYS.>", "foo.*"],
                    allow_responses=(2, 1.0),
                ),
                ["STANDARD", "MQTT", "WEBSOCKET", "MQTT_WS"],
            ),
        ],
    )
    server = await server_factory(auth=auth, **FUZZ_OPTS)
    ports = {"nats": server.nats_port, "mqtt": server.mqtt_port, "websocket": server.websocket_port}
    creds = {"user": "ctl", "password": "ctl-pw"}
    await run_fuzz(server, ports, creds, seed + 1, server_errors, record_property)
