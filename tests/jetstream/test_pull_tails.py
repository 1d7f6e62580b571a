"""A pull batch on one subject without headers is encoded once per message, straight
into the tail of its MSG frame (PullRuntime._send, Server.route_tails,
NatsConnection.deliver_tails). The bytes must be those of every other batch, and a
receiver that needs a check per message (an auto-unsubscribe limit, a permission that
filters what it receives) must get the batch the other way, message by message.

The ``env`` tests run against nats-server 2.15.1 with HB_REFERENCE=1 (consumer_env.py)."""

from __future__ import annotations

import nats

from hybridbus.options import AuthOptions, Permissions, User
from tests.helpers.wire import Wire, nats_connect
from tests.jetstream import consumer_env
from tests.jetstream.consumer_env import pull

env = consumer_env.env  # the fixture

MSG = rb"MSG (\S+) 1 \$JS\.ACK\.S\.d\.1\.(\d+)\.(\d+)\.\d+\.(\d+) (\d+)\r\n"


async def frames(w: Wire, n: int) -> list[tuple]:
    """``n`` MSG frames exactly as framed: (subject, stream seq, consumer seq, pending,
    payload)."""
    out = []
    for _ in range(n):
        m = await w.expect_re(MSG)
        body = (await w.expect_re(rb"(.{%d})\r\n" % int(m.group(5)))).group(1)
        out.append((m.group(1), int(m.group(2)), int(m.group(3)), int(m.group(4)), body))
    return out


async def test_a_batch_on_one_subject_is_framed_as_any_other(env):
    await env.add_stream("S", ["s.>"])
    await env.publish("s.a", 3)
    await env.js.publish("s.b", b"other")
    await env.js.publish("s.a", b"")  # an empty payload
    await env.js.publish("s.a", b"with\r\nnewlines")
    await env.create("S", {"durable_name": "d", "ack_policy": "explicit"})
    w = await env.wire()
    await w.send(b"SUB inb.> 1\r\n")
    await pull(w, "S", "d", b"3")
    assert await frames(w, 3) == [
        (b"s.a", 1, 1, 5, b"m0"),
        (b"s.a", 2, 2, 4, b"m1"),
        (b"s.a", 3, 3, 3, b"m2"),
    ]
    await pull(w, "S", "d", b"3")  # two subjects in one batch
    assert await frames(w, 3) == [
        (b"s.b", 4, 4, 2, b"other"),
        (b"s.a", 5, 5, 1, b""),
        (b"s.a", 6, 6, 0, b"with\r\nnewlines"),
    ]
    await w.expect_nothing(0.2)


async def test_an_auto_unsubscribe_limit_ends_the_batch(server_factory):
    server = await server_factory()
    nc = await nats.connect(f"nats://127.0.0.1:{server.nats_port}")
    js = nc.jetstream(timeout=2)
    await js.add_stream(name="S", subjects=["s.>"])
    for i in range(5):
        await js.publish("s.a", b"m%d" % i)
    await js.add_consumer("S", durable_name="d", ack_policy="explicit")
    w = await nats_connect(server.nats_port)
    await w.send(b"SUB inb.> 1\r\nUNSUB 1 2\r\n")
    await pull(w, "S", "d", b"5")
    assert [f[1] for f in await frames(w, 2)] == [1, 2]
    await w.expect_nothing(0.3)
    # the three nobody received are delivered first to the next request
    await w.send(b"SUB inb.> 2\r\n")
    await pull(w, "S", "d", b"3")
    redelivery = rb"MSG s\.a 2 \$JS\.ACK\.S\.d\.2\.(\d+)\.\d+\.\d+\.\d+ 2\r\nm\d\r\n"
    got = [await w.expect_re(redelivery) for _ in range(3)]
    assert [int(m.group(1)) for m in got] == [3, 4, 5]
    await w.close()
    await nc.close()


async def test_a_delivery_filter_of_the_receiver_applies_to_each_message(server_factory):
    # a wildcard subscription that overlaps a subscribe deny drops the denied subjects
    # at delivery (nats-server's deny filter): a batch on a denied subject reaches
    # nothing, one on an allowed subject arrives whole
    perms = Permissions(subscribe_allow=["inb.>"], subscribe_deny=["s.secret"])
    server = await server_factory(
        auth=AuthOptions(users=[User("admin", "pw"), User("r", "pw", perms)])
    )
    nc = await nats.connect(f"nats://127.0.0.1:{server.nats_port}", user="admin", password="pw")
    js = nc.jetstream(timeout=2)
    await js.add_stream(name="S", subjects=["s.>"])
    for i in range(2):
        await js.publish("s.secret", b"x%d" % i)
    for i in range(2):
        await js.publish("s.a", b"m%d" % i)
    await js.add_consumer("S", durable_name="d", ack_policy="explicit")
    w = await nats_connect(server.nats_port, b'{"verbose":false,"user":"r","pass":"pw"}')
    await w.send(b"SUB inb.> 1\r\n")
    await pull(w, "S", "d", b"2")
    await w.expect_nothing(0.3)
    await pull(w, "S", "d", b"2")
    assert [(f[0], f[4]) for f in await frames(w, 2)] == [(b"s.a", b"m0"), (b"s.a", b"m1")]
    await w.close()
    await nc.close()
