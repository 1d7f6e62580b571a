"""Subject mappings on a real server: top-level ones ($G's) and per-account ones, NATS
and MQTT publishers, weighted destinations, permissions on the mapped subject, JetStream
capture and reload. What nats-server 2.15.1 does was checked against its binary
(tests/router/test_transform.py compares the transforms themselves)."""

from __future__ import annotations

import asyncio
from collections import Counter

import paho.mqtt.client as mqtt

from tests.helpers.wire import Wire

from .accounts_env import login, settle, start, sub

CONF = """
authorization { users: [
  {user: g, password: g},
  {user: p, password: p, permissions: {publish: ["orders.new", "in.>"], subscribe: ">"}}
] }
mappings {
  "orders.new": "orders.v2.new"
  "in.*.*": "out.$2.$1"
  "split": [{destination: "left", weight: 40%}, {destination: "right", weight: 60%}]
  "part.*": "part.{{partition(3,1)}}.$1"
}
accounts {
  A: { users: [{user: a, password: a}], mappings: { "orders.new": "a.orders" } }
  B: { users: [{user: b, password: b}] }
}
"""


async def test_nats_publish_is_mapped_in_g(tmp_path):
    server = await start(tmp_path, CONF)
    try:
        g = await login(server, "g")
        everything = await sub(g, ">")
        await g.publish("orders.new", b"o")
        await g.publish("in.x.y", b"i")
        await g.publish("part.k", b"p")
        await g.publish("other", b"x")
        await everything.wait(4)
        await settle(g)
        assert everything.got == [
            ("orders.v2.new", b"o"),
            ("out.y.x", b"i"),
            ("part.0.k", b"p"),  # fnv1a32(b"k") % 3, as nats-server partitions
            ("other", b"x"),
        ]
        await g.close()
    finally:
        await server.shutdown()


def _paho(port: int, client_id: str) -> mqtt.Client:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
    c.username_pw_set("g", "g")
    c.connect("127.0.0.1", port, keepalive=10)
    c.loop_start()
    return c


async def test_mqtt_publish_is_mapped(tmp_path):
    """An MQTT PUBLISH to orders/new reaches NATS on orders.v2.new and MQTT subscribers
    of orders/v2/new; subscribers of orders/new get nothing (as on nats-server, where
    MQTT publishes go through the account's mappings like NATS ones)."""
    server = await start(tmp_path, CONF)
    try:
        g = await login(server, "g")
        mapped, original = await sub(g, "orders.v2.new"), await sub(g, "orders.new")
        got: list = []
        listener = await asyncio.to_thread(_paho, server.mqtt_port, "listener")
        listener.on_message = lambda c, u, m: got.append((m.topic, m.payload))
        listener.subscribe([("orders/v2/new", 1), ("orders/new", 1)])
        dev = await asyncio.to_thread(_paho, server.mqtt_port, "dev")
        await asyncio.sleep(0.3)
        for qos in (0, 1):
            dev.publish("orders/new", b"q%d" % qos, qos=qos)
        await mapped.wait(2)
        for _ in range(40):
            if len(got) >= 2:
                break
            await asyncio.sleep(0.05)
        await settle(g)
        assert mapped.got == [("orders.v2.new", b"q0"), ("orders.v2.new", b"q1")]
        assert original.got == []
        assert sorted(got) == [("orders/v2/new", b"q0"), ("orders/v2/new", b"q1")]
        for c in (dev, listener):
            c.loop_stop()
            c.disconnect()
        await g.close()
    finally:
        await server.shutdown()


async def test_weighted_mapping_distribution(tmp_path):
    server = await start(tmp_path, CONF)
    try:
        g = await login(server, "g")
        box = await sub(g, ">")
        for i in range(500):
            await g.publish("split", b"%d" % i)  # a run of one subject: route_run
        await g.flush(2)
        for i in range(500):
            await g.publish("split", b"%d" % i)
            if i % 50 == 0:
                await g.flush(2)  # smaller reads: route one by one
        await box.wait(1000, timeout=4)
        counts = Counter(subject for subject, _ in box.got)
        assert set(counts) == {"left", "right"}
        assert 320 < counts["left"] < 480, counts  # 40% of 1,000
        await g.close()
    finally:
        await server.shutdown()


async def test_mappings_are_per_account(tmp_path):
    server = await start(tmp_path, CONF)
    try:
        g, a, b = [await login(server, u) for u in "gab"]
        in_g, in_a, in_b = await sub(g, ">"), await sub(a, ">"), await sub(b, ">")
        for nc in (g, a, b):
            await nc.publish("orders.new", nc.options["user"].encode())
        await settle(g, a, b)
        await asyncio.sleep(0.1)
        assert in_g.got == [("orders.v2.new", b"g")]
        assert in_a.got == [("a.orders", b"a")]  # A's own mapping, not $G's
        assert in_b.got == [("orders.new", b"b")]  # B has none
        for nc in (g, a, b):
            await nc.close()
    finally:
        await server.shutdown()


async def test_publish_permission_applies_to_the_mapped_subject(tmp_path):
    """nats-server maps in its parser, before the permission check: user p may publish
    orders.new but not orders.v2.new, so the mapped message is refused with its -ERR."""
    server = await start(tmp_path, CONF)
    try:
        g = await login(server, "g")
        box = await sub(g, ">")
        wire = await Wire.open(server.nats_port)
        await wire.expect_re(rb"INFO \{.*?\} \r\n")
        await wire.send(b'CONNECT {"verbose":false,"user":"p","pass":"p"}\r\nPING\r\n')
        await wire.expect(b"PONG\r\n")
        await wire.send(b"PUB orders.new 1\r\nx\r\nPUB in.a.b 1\r\ny\r\nPING\r\n")
        await wire.expect(
            b"-ERR 'Permissions Violation for Publish to \"orders.v2.new\"'\r\n"
            b"-ERR 'Permissions Violation for Publish to \"out.b.a\"'\r\nPONG\r\n"
        )
        await settle(g)
        assert box.got == []
        await wire.close()
        await g.close()
    finally:
        await server.shutdown()


async def test_jetstream_captures_the_mapped_subject(tmp_path):
    server = await start(tmp_path, CONF)
    try:
        g = await login(server, "g")
        js = g.jetstream()
        await js.add_stream(name="ORDERS", subjects=["orders.v2.>"])
        ack = await js.publish("orders.new", b"captured")
        assert ack.stream == "ORDERS" and ack.seq == 1
        msg = await js.get_msg("ORDERS", 1)
        assert msg.subject == "orders.v2.new" and msg.data == b"captured"
        await g.close()
    finally:
        await server.shutdown()


async def test_reload_replaces_mappings(tmp_path):
    server = await start(tmp_path, CONF)
    try:
        g, a = await login(server, "g"), await login(server, "a")
        in_g, in_a = await sub(g, ">"), await sub(a, ">")
        path = server.options.config_file
        with open(path) as f:
            text = f.read()
        text = text.replace('"orders.new": "orders.v2.new"', '"orders.new": "orders.v3.new"')
        text = text.replace('mappings: { "orders.new": "a.orders" }', "")
        with open(path, "w") as f:
            f.write(text)
        assert server.reload()
        await g.publish("orders.new", b"g")
        await a.publish("orders.new", b"a")
        await settle(g, a)
        await asyncio.sleep(0.1)
        assert in_g.got == [("orders.v3.new", b"g")]
        assert in_a.got == [("orders.new", b"a")]  # A's mappings are gone
        assert server.accounts["A"].mappings is None
        await g.close()
        await a.close()
    finally:
        await server.shutdown()
