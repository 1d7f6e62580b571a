"""Resource limits a hostile or broken client runs into, on both protocols."""

from __future__ import annotations

import json
import time

from hybridbus.options import AuthOptions, User
from tests.helpers import mqtt_packets as mp
from tests.helpers.wire import Wire, mqtt_packets, nats_connect


async def test_nats_max_connections(server_factory):
    server = await server_factory(max_connections=2)
    a = await nats_connect(server.nats_port)
    b = await nats_connect(server.nats_port)
    c = await Wire.open(server.nats_port)
    rest = await c.expect_closed()
    assert rest.startswith(b"INFO ")
    assert rest.endswith(b"-ERR 'maximum connections exceeded'\r\n")
    for w in (a, b):
        await w.send(b"PING\r\n")
        await w.expect(b"PONG\r\n")


async def test_nats_max_payload(server_factory):
    server = await server_factory(max_payload=1000)
    wire = await Wire.open(server.nats_port)
    m = await wire.expect_re(rb"INFO (\{.*?\}) \r\n")
    assert json.loads(m.group(1))["max_payload"] == 1000
    await wire.send(b"CONNECT {}\r\nPUB ok 1000\r\n" + b"x" * 1000 + b"\r\n")
    await wire.expect(b"+OK\r\n+OK\r\n")
    # decided from the control line: the 1001 bytes are never waited for
    await wire.send(b"PUB big 1001\r\n")
    assert await wire.expect_closed() == b"-ERR 'Maximum Payload Violation'\r\n"


async def test_nats_max_subscriptions_keeps_connection(server_factory):
    server = await server_factory(max_subscriptions=2)
    wire = await nats_connect(server.nats_port)
    await wire.send(b"SUB a 1\r\nSUB b 2\r\nSUB c 3\r\nPING\r\n")
    await wire.expect(b"-ERR 'maximum subscriptions exceeded'\r\nPONG\r\n")


async def test_nats_max_control_line_bounds_buffering(server_factory):
    server = await server_factory(max_control_line=64)
    wire = await nats_connect(server.nats_port)
    await wire.send(b"SUB " + b"a" * 80 + b" 1\r\n")
    assert await wire.expect_closed() == b"-ERR 'maximum control line exceeded'\r\n"
    # A line that never ends is refused once it passes the limit, not buffered forever.
    wire = await nats_connect(server.nats_port)
    await wire.send(b"PUB " + b"b" * 300)
    assert await wire.expect_closed() == b"-ERR 'maximum control line exceeded'\r\n"


async def test_nats_stalled_half_message_is_closed_as_stale(server_factory):
    # No auth: the ping timer is what reclaims a client that stops mid-message.
    server = await server_factory(ping_interval=0.1, ping_max=1)
    wire = await nats_connect(server.nats_port)
    await wire.send(b"PUB foo 100\r\nonly-part-of-it")
    started = time.monotonic()
    rest = await wire.expect_closed(timeout=5)
    assert rest.endswith(b"-ERR 'Stale Connection'\r\n") and b"PING\r\n" in rest
    assert time.monotonic() - started < 3


async def test_nats_never_connects_with_auth_is_timed_out(server_factory):
    server = await server_factory(auth=AuthOptions(users=[User("u", "p")], timeout=0.2))
    wire = await Wire.open(server.nats_port)
    rest = await wire.expect_closed(timeout=3)
    assert rest.endswith(b"-ERR 'Authentication Timeout'\r\n")


async def test_mqtt_max_packet_size(server_factory):
    server = await server_factory(mqtt__max_packet_size=1024)
    wire = await Wire.open(server.mqtt_port)
    await wire.send(mp.connect("p5", level=5))
    (ack,) = await mqtt_packets(wire, 1)
    assert ack.properties["maximum_packet_size"] == 1024
    await wire.send(mp.publish("t", b"x" * 2000, level=5))
    (disc,) = await mqtt_packets(wire, 1)
    assert disc.reason_code == 0x95  # Packet too large
    await wire.expect_closed()
    old = await Wire.open(server.mqtt_port)
    await old.send(mp.connect("p4"))
    await old.expect(mp.connack(0, 0))
    await old.send(mp.publish("t", b"x" * 2000))
    assert await old.expect_closed() == b""  # 3.1.1: just closed


async def test_mqtt_huge_remaining_length_refused_from_header(server_factory):
    server = await server_factory()
    wire = await Wire.open(server.mqtt_port)
    await wire.send(mp.connect("h"))
    await wire.expect(mp.connack(0, 0))
    started = time.monotonic()
    await wire.send(b"\x30\xff\xff\xff\x7f")  # PUBLISH announcing 256 MB, no body
    await wire.expect_closed()
    assert time.monotonic() - started < 1


async def test_mqtt_no_connect_or_half_connect_is_timed_out(server_factory):
    server = await server_factory(mqtt__connect_timeout=0.3)
    silent = await Wire.open(server.mqtt_port)
    half = await Wire.open(server.mqtt_port)
    await half.send(mp.connect("half", username="u", password=b"p")[:9])
    started = time.monotonic()
    assert await silent.expect_closed(timeout=3) == b""
    assert await half.expect_closed(timeout=3) == b""
    assert time.monotonic() - started < 2.5
    assert not server.clients


async def test_mqtt_max_connections_answers_with_connack(server_factory):
    server = await server_factory(max_connections=2)
    first = await Wire.open(server.mqtt_port)
    await first.send(mp.connect("one"))
    await first.expect(mp.connack(0, 0))
    second = await Wire.open(server.mqtt_port)
    await second.send(mp.connect("two", level=5))
    await mqtt_packets(second, 1)
    third = await Wire.open(server.mqtt_port)
    await third.send(mp.connect("three"))
    # 3.1.1: 0x03 Server unavailable
    assert await third.expect_closed() == b"\x20\x02\x00\x03"
    fourth = await Wire.open(server.mqtt_port)
    await fourth.send(mp.connect("four", level=5))
    (ack,) = await mqtt_packets(fourth, 1)
    assert ack.reason_code == 0x97  # 5.0: Quota exceeded
    await fourth.expect_closed()
    assert any(c.reason == "Maximum Connections Exceeded" for c in server.closed)
    await first.send(mp.PINGREQ)
    await first.expect(mp.PINGRESP)
