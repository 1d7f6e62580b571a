"""FanoutJob (server/fanout.py) with its limits lowered so a handful of receivers
take the sliced path: every receiver gets every message, in order, once; a QoS 1
publisher's PUBACK waits for every session's record; the publisher's next message
waits for the job."""

from __future__ import annotations

import asyncio

import pytest

from hybridbus.server import fanout
from hybridbus.server import server as server_module
from tests.helpers import mqtt_packets as mp
from tests.helpers.wire import mqtt_connect, nats_connect


@pytest.fixture
def tiny_slices(monkeypatch):
    # Two receivers are "thousands"; one receiver per chunk; every chunk over budget.
    monkeypatch.setattr(server_module, "FANOUT_SLICE", 2)
    monkeypatch.setattr(fanout, "CHUNK", 1)
    monkeypatch.setattr(fanout, "TURN_BUDGET", 0.0)


async def test_nats_run_to_many_subscribers_arrives_whole_and_in_order(server_factory, tiny_slices):
    server = await server_factory()
    subs = []
    for i in range(5):
        w = await nats_connect(server.nats_port)
        await w.send(b"SUB fan.t %d\r\nPING\r\n" % i)
        await w.expect(b"PONG\r\n")
        subs.append((i, w))
    pub = await nats_connect(server.nats_port)
    await pub.send(b"".join(b"PUB fan.t 3\r\nm%02d\r\n" % n for n in range(90)) + b"PING\r\n")
    await pub.expect(b"PONG\r\n", timeout=10)
    for i, w in subs:
        want = b"".join(b"MSG fan.t %d 3\r\nm%02d\r\n" % (i, n) for n in range(90))
        await w.expect(want, timeout=10)
        await w.expect_nothing(0.2)


async def test_mqtt_qos1_broadcast_to_offline_sessions_in_slices(server_factory, tiny_slices):
    server = await server_factory()
    port = server.mqtt_port
    for i in range(5):
        dev = await mqtt_connect(port, f"d{i}", clean=False)
        await dev.send(mp.subscribe(1, ("all/cfg", 1)))
        await dev.expect(mp.suback(1, 1))
        await dev.send(mp.DISCONNECT)
        await dev.expect_closed()
    pub = await mqtt_connect(port, "pub")
    await pub.send(
        mp.publish("all/cfg", b"v1", qos=1, mid=1) + mp.publish("all/cfg", b"v2", qos=1, mid=2)
    )
    await pub.expect(mp.puback(1) + mp.puback(2), timeout=10)
    # acknowledged: every session holds both, in order
    assert all(len(s.queued) == 2 for s in server.mqtt.sessions.values() if s.client_id != "pub")
    for i in range(5):
        dev = await mqtt_connect(port, f"d{i}", clean=False, expect_present=1)
        await dev.expect(
            mp.publish("all/cfg", b"v1", qos=1, mid=1) + mp.publish("all/cfg", b"v2", qos=1, mid=2)
        )
        await dev.close()


async def test_mqtt_qos0_run_to_online_subscribers_in_slices(server_factory, tiny_slices):
    server = await server_factory()
    port = server.mqtt_port
    subs = []
    for i in range(4):
        w = await mqtt_connect(port, f"s{i}")
        await w.send(mp.subscribe(1, ("live/t", 0)))
        await w.expect(mp.suback(1, 0))
        subs.append(w)
    pub = await mqtt_connect(port, "p")
    await pub.send(b"".join(mp.publish("live/t", b"%03d" % n) for n in range(150)))
    for w in subs:
        await w.expect(b"".join(mp.publish("live/t", b"%03d" % n) for n in range(150)), timeout=10)
        await w.expect_nothing(0.2)
    # the publisher's input was released after the jobs: it is served again
    await pub.send(mp.PINGREQ)
    await pub.expect(mp.PINGRESP)
    await asyncio.sleep(0)


async def test_input_read_while_a_job_holds_the_publisher_keeps_its_order(
    server_factory, tiny_slices
):
    # PUBLISH + PINGREQ pairs written one at a time while fan-out jobs hold the
    # publisher: what arrives meanwhile is read ahead and kept (mqtt/connection.py
    # _read_ahead), its PINGREQs answered; every subscriber still gets every message
    # once, in order, and every PINGREQ gets its PINGRESP.
    server = await server_factory()
    port = server.mqtt_port
    subs = []
    for i in range(4):
        w = await mqtt_connect(port, f"r{i}")
        await w.send(mp.subscribe(1, ("ahead/t", 0)))
        await w.expect(mp.suback(1, 0))
        subs.append(w)
    pub = await mqtt_connect(port, "p")
    for n in range(40):
        await pub.send(mp.publish("ahead/t", b"%03d" % n) + mp.PINGREQ)
    await pub.expect(mp.PINGRESP * 40, timeout=10)
    for w in subs:
        await w.expect(b"".join(mp.publish("ahead/t", b"%03d" % n) for n in range(40)), timeout=10)
        await w.expect_nothing(0.2)


async def test_malformed_packet_read_while_held_closes_only_the_offender(
    server_factory, tiny_slices
):
    # A fan-out job holds the publisher; a malformed packet follows its PUBLISHes
    # (read ahead or not, by timing). What came before it is delivered, in order; the
    # offender is closed; subscribers and another publisher keep working.
    server = await server_factory()
    port = server.mqtt_port
    subs = []
    for i in range(4):
        w = await mqtt_connect(port, f"m{i}")
        await w.send(mp.subscribe(1, ("bad/t", 0)))
        await w.expect(mp.suback(1, 0))
        subs.append(w)
    pub = await mqtt_connect(port, "p")
    for n in range(10):
        await pub.send(mp.publish("bad/t", b"%03d" % n))
    await pub.send(b"\x30\x03\x00\x05b")  # topic length 5, 1 byte of it
    await pub.expect_closed(timeout=10)
    good = await mqtt_connect(port, "p2")
    await good.send(mp.publish("bad/t", b"after"))
    for w in subs:
        want = b"".join(mp.publish("bad/t", b"%03d" % n) for n in range(10))
        await w.expect(want + mp.publish("bad/t", b"after"), timeout=10)
