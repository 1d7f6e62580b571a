"""Runs of PUBs in one read: the batched route (Server.route_batch) must deliver
exactly what one route per message would, in order, to every kind of receiver.

Each test sends all of its PUBs in one write, so the server reads them as one chunk
and its parser hands over runs of PUBs to one subject."""

from __future__ import annotations

import re

from hybridbus.options import AuthOptions, Permissions, User
from tests.helpers import mqtt_packets as mp
from tests.helpers.wire import mqtt_connect, nats_connect


def pubs(subject: bytes, payloads: list[bytes]) -> bytes:
    return b"".join(b"PUB %s %d\r\n%s\r\n" % (subject, len(p), p) for p in payloads)


def msgs(subject: bytes, sid: bytes, payloads: list[bytes]) -> bytes:
    return b"".join(b"MSG %s %s %d\r\n%s\r\n" % (subject, sid, len(p), p) for p in payloads)


async def subscribed(port: int, *subs: bytes):
    wire = await nats_connect(port)
    await wire.send(b"".join(subs) + b"PING\r\n")
    await wire.expect(b"PONG\r\n")
    return wire


async def test_run_of_equal_sizes_then_ping(nats_server):
    # The run ends in a PING: the publisher gets its PONG and stays connected.
    sub = await subscribed(nats_server.nats_port, b"SUB run 1\r\n")
    pub = await nats_connect(nats_server.nats_port)
    payloads = [b"%04d" % i for i in range(300)]
    await pub.send(pubs(b"run", payloads) + b"PING\r\n")
    await pub.expect(b"PONG\r\n")
    await sub.expect(msgs(b"run", b"1", payloads))
    await sub.expect_nothing(0.1)


async def test_run_of_mixed_sizes_and_binary_payloads(nats_server):
    sub = await subscribed(nats_server.nats_port, b"SUB run 1\r\n")
    pub = await nats_connect(nats_server.nats_port)
    payloads = [bytes(range(i % 40)) + b"\r\n" * (i % 3) for i in range(200)]
    await pub.send(pubs(b"run", payloads) + b"PING\r\n")
    await pub.expect(b"PONG\r\n")
    await sub.expect(msgs(b"run", b"1", payloads))
    counts = [c for c in nats_server.clients.values() if c is not None]
    assert sum(c.in_msgs for c in counts) == 200
    (nsub,) = [s for c in counts for s in getattr(c, "subs", {}).values()]
    assert nsub.msgs == 200


async def test_runs_interleaved_with_other_subjects_replies_and_headers(nats_server):
    port = nats_server.nats_port
    sub = await nats_connect(port, b'{"verbose":false,"pedantic":false,"headers":true}')
    await sub.send(b"SUB a 1\r\nSUB b 2\r\nPING\r\n")
    await sub.expect(b"PONG\r\n")
    pub = await nats_connect(port, b'{"verbose":false,"pedantic":false,"headers":true}')
    hdr = b"NATS/1.0\r\nK: v\r\n\r\n"
    wire = (
        pubs(b"a", [b"1", b"2", b"3"])
        + pubs(b"b", [b"4"])
        + pubs(b"a", [b"5", b"6"])
        + b"PUB a inbox 1\r\n7\r\n"
        + pubs(b"a", [b"8"])
        + b"HPUB a %d %d\r\n%s9\r\n" % (len(hdr), len(hdr) + 1, hdr)
        + pubs(b"a", [b"10", b"11"])
        + b"PING\r\n"
    )
    await pub.send(wire)
    await pub.expect(b"PONG\r\n")
    await sub.expect(
        msgs(b"a", b"1", [b"1", b"2", b"3"])
        + msgs(b"b", b"2", [b"4"])
        + msgs(b"a", b"1", [b"5", b"6"])
        + b"MSG a 1 inbox 1\r\n7\r\n"
        + msgs(b"a", b"1", [b"8"])
        + b"HMSG a 1 %d %d\r\n%s9\r\n" % (len(hdr), len(hdr) + 1, hdr)
        + msgs(b"a", b"1", [b"10", b"11"])
    )


async def test_auto_unsubscribe_stops_mid_run(nats_server):
    sub = await subscribed(nats_server.nats_port, b"SUB run 1\r\nUNSUB 1 3\r\nSUB run 2\r\n")
    pub = await nats_connect(nats_server.nats_port)
    payloads = [b"m%d" % i for i in range(10)]
    await pub.send(pubs(b"run", payloads) + b"PING\r\n")
    await pub.expect(b"PONG\r\n")
    got = []
    while len(got) < 13:
        line = await sub.read_line()
        got.append(re.match(rb"MSG run (\d) 2\r\n", line).group(1) + await sub.read_line())
    assert [g for g in got if g.startswith(b"1")] == [b"1m%d\r\n" % i for i in range(3)]
    assert [g for g in got if g.startswith(b"2")] == [b"2m%d\r\n" % i for i in range(10)]
    await sub.expect_nothing(0.1)
    (conn,) = [c for c in nats_server.clients.values() if getattr(c, "subs", None)]
    assert list(conn.subs) == ["2"]  # sid 1 was removed at its limit


async def test_echo_off_publisher_skips_itself_others_get_the_run(nats_server):
    port = nats_server.nats_port
    other = await subscribed(port, b"SUB run 5\r\n")
    pub = await nats_connect(port, b'{"verbose":false,"pedantic":false,"echo":false}')
    await pub.send(b"SUB run 1\r\n" + pubs(b"run", [b"x", b"y", b"z"]) + b"PING\r\n")
    await pub.expect(b"PONG\r\n")
    await other.expect(msgs(b"run", b"5", [b"x", b"y", b"z"]))
    await pub.expect_nothing(0.1)


async def test_run_to_queue_group_wildcards_and_fan_out(nats_server):
    port = nats_server.nats_port
    plain = await subscribed(port, b"SUB s.run 1\r\nSUB s.* 2\r\nSUB > 3\r\n")
    queue = await subscribed(port, b"SUB s.run workers 9\r\n")
    pub = await nats_connect(port)
    payloads = [b"p%d" % i for i in range(50)]
    await pub.send(pubs(b"s.run", payloads) + b"PING\r\n")
    await pub.expect(b"PONG\r\n")
    await queue.expect(msgs(b"s.run", b"9", payloads))  # the only member gets them all
    data = b"".join([await plain.read_line() for _ in range(300)])  # 150 MSG + payload
    # each subscription gets all 50, in publish order
    for sid in (b"1", b"2", b"3"):
        order = re.findall(rb"MSG s\.run %s \d+\r\n(p\d+)\r\n" % sid, data)
        assert order == payloads


async def test_run_reaches_mqtt_subscriber_in_order(server_factory):
    server = await server_factory()
    mqtt = await mqtt_connect(server.mqtt_port, "runner")
    await mqtt.send(mp.subscribe(1, ("m/run", 0)))
    await mqtt.expect(mp.suback(1, 0))
    nats = await subscribed(server.nats_port, b"SUB m.run 1\r\n")
    pub = await nats_connect(server.nats_port)
    payloads = [b"v%d" % i for i in range(40)]
    await pub.send(pubs(b"m.run", payloads) + b"PING\r\n")
    await pub.expect(b"PONG\r\n")
    await nats.expect(msgs(b"m.run", b"1", payloads))
    await mqtt.expect(b"".join(mp.publish("m/run", p) for p in payloads))


async def test_denied_delivery_filter_applies_to_a_run(server_factory):
    perms = Permissions(subscribe_allow=["cmd.>"], subscribe_deny=["cmd.secret"])
    auth = AuthOptions(users=[User("dev", "pw", perms), User("pub", "pw")])
    server = await server_factory(auth=auth)
    dev = await nats_connect(
        server.nats_port, b'{"verbose":false,"pedantic":false,"user":"dev","pass":"pw"}'
    )
    await dev.send(b"SUB cmd.> 1\r\nPING\r\n")
    await dev.expect(b"PONG\r\n")
    pub = await nats_connect(
        server.nats_port, b'{"verbose":false,"pedantic":false,"user":"pub","pass":"pw"}'
    )
    await pub.send(pubs(b"cmd.secret", [b"s1", b"s2"]) + pubs(b"cmd.ok", [b"o1", b"o2"]))
    await pub.send(b"PING\r\n")
    await pub.expect(b"PONG\r\n")
    await dev.expect(msgs(b"cmd.ok", b"1", [b"o1", b"o2"]))
    await dev.expect_nothing(0.1)


async def test_two_subscriptions_of_one_connection_interleave_per_message(nats_server):
    # nats-server (and the per-message router) write each message to every matching
    # subscription before the next message: a run keeps that order.
    sub = await subscribed(nats_server.nats_port, b"SUB foo 1\r\nSUB > 2\r\n")
    pub = await nats_connect(nats_server.nats_port)
    await pub.send(pubs(b"foo", [b"a", b"b", b"c"]) + b"PING\r\n")
    await pub.expect(b"PONG\r\n")
    frames = [msgs(b"foo", sid, [p]) for p in (b"a", b"b", b"c") for sid in (b"1", b"2")]
    await sub.expect(b"".join(frames))


async def test_mqtt_run_to_a_nats_connection_with_two_subscriptions(server_factory):
    server = await server_factory()
    sub = await subscribed(server.nats_port, b"SUB t.x 1\r\nSUB t.* 2\r\n")
    pub = await mqtt_connect(server.mqtt_port, "p")
    await pub.send(mp.publish("t/x", b"0") + mp.PINGREQ)  # the topic is known from now on
    await pub.expect(mp.PINGRESP)
    payloads = [b"a", b"b", b"c"]
    await pub.send(b"".join(mp.publish("t/x", p) for p in payloads) + mp.PINGREQ)
    await pub.expect(mp.PINGRESP)
    frames = [msgs(b"t.x", sid, [p]) for p in [b"0", *payloads] for sid in (b"1", b"2")]
    await sub.expect(b"".join(frames))


async def test_run_then_bad_size_and_oversized_payload(server_factory):
    # The PUBs before the bad one are delivered; the offender gets nats-server's
    # answer (a bad size: silent close; too big: -ERR 'Maximum Payload Violation');
    # the subscriber and another publisher keep working.
    server = await server_factory(max_payload=64)
    sub = await subscribed(server.nats_port, b"SUB run 1\r\n")
    bad = await nats_connect(server.nats_port)
    await bad.send(pubs(b"run", [b"a", b"b", b"c"]) + b"PUB run x\r\n")
    assert await bad.expect_closed() == b""
    big = await nats_connect(server.nats_port)
    await big.send(pubs(b"run", [b"d", b"e"]) + b"PUB run 65\r\n" + b"z" * 65 + b"\r\n")
    assert await big.expect_closed() == b"-ERR 'Maximum Payload Violation'\r\n"
    await sub.expect(msgs(b"run", b"1", [b"a", b"b", b"c", b"d", b"e"]))
    good = await nats_connect(server.nats_port)
    await good.send(pubs(b"run", [b"f", b"g"]) + b"PING\r\n")
    await good.expect(b"PONG\r\n")
    await sub.expect(msgs(b"run", b"1", [b"f", b"g"]))
