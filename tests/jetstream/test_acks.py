"""The ack protocol on ``$JS.ACK...`` (/work/shared/docs/jetstream-subset.md section 2.11):
every ack kind through nats-py and raw, replies to acks sent as requests, ack policies,
redelivery after ack_wait with backoff and max_deliver.

Run with HB_REFERENCE=1 to check the same assertions against nats-server 2.15.1
(see consumer_env.py)."""

from __future__ import annotations

import asyncio
import time

import nats

from tests.jetstream import consumer_env
from tests.jetstream.consumer_env import frame, no_frame, pub, pull

env = consumer_env.env  # the fixture


async def setup(env, n: int = 3, **cfg):
    await env.add_stream("S", ["s.>"])
    await env.publish("s.a", n)
    await env.create("S", {"durable_name": "d", "ack_policy": "explicit", **cfg})
    return await env.js.pull_subscribe_bind("d", "S")


async def test_ack_kinds_with_nats_py(env):
    sub = await setup(env, 5)
    msgs = await sub.fetch(5, timeout=1)
    await msgs[0].ack()
    await msgs[1].ack_sync()  # a request: the server answers it
    await msgs[2].term()
    await msgs[3].in_progress()
    await msgs[4].nak()
    again = await sub.fetch(1, timeout=1)
    assert again[0].metadata.sequence.stream == 5 and again[0].metadata.num_delivered == 2
    assert again[0].metadata.sequence.consumer == 6
    info = await env.js.consumer_info("S", "d")
    assert info.num_ack_pending == 2 and info.num_redelivered == 1
    await msgs[3].ack()
    await again[0].ack_sync()
    info = await env.js.consumer_info("S", "d")
    assert info.num_ack_pending == 0 and info.ack_floor.stream_seq == 5


async def test_every_ack_sent_as_a_request_gets_an_empty_reply(env):
    await setup(env, 6)
    w = await env.wire()
    await w.send(b"SUB inb.> 1\r\nSUB rep.> 2\r\n")
    await pull(w, "S", "d", b"5")
    replies = [(await frame(w)).reply.decode() for _ in range(5)]
    for i, body in enumerate([b"", b"+ACK", b"+OK", b"+WPI", b"-NAK"]):
        await pub(w, replies[i], body, f"rep.{i}")
        f = await frame(w)
        assert (f.subject, f.hdr, f.data) == (f"rep.{i}".encode(), b"", b""), body
    # a second ack of the same message is answered too, and so is an unknown body
    for i, body in enumerate([b"", b"+FOO", b"+TERM reason"]):
        await pub(w, replies[0], body, f"rep.x{i}")
        assert (await frame(w)).subject == f"rep.x{i}".encode()
    info = await env.info("S", "d")
    assert info["num_ack_pending"] == 2  # the +WPI'd one and the NAK'd one


async def test_ack_to_nobody_is_a_503(env):
    await setup(env, 1)
    await env.create("S", {"durable_name": "none", "ack_policy": "none"})
    w = await env.wire()
    await w.send(b"SUB rep 1\r\n")
    for subject in ("$JS.ACK.S.zz.1.1.1.0.0", "$JS.ACK.S.none.1.1.1.0.0", "$JS.ACK.S.d.1.1"):
        await pub(w, subject, b"", "rep")
        f = await frame(w)
        assert f.hdr == b"NATS/1.0 503\r\nNats-Subject: %s\r\n\r\n" % subject.encode()


async def test_ack_next(env):
    await setup(env, 4)
    w = await env.wire()
    await w.send(b"SUB inb.> 1\r\n")
    await pull(w, "S", "d", b"1")
    f = await frame(w)
    # +NXT: acked, then the next messages go to the ack's reply
    await pub(w, f.reply.decode(), b'+NXT {"batch":2}', "inb.nxt")
    got = [await frame(w) for _ in range(2)]
    assert [g.data for g in got] == [b"m1", b"m2"] and all(g.sid == b"1" for g in got)
    await pub(w, got[1].reply.decode(), b"+NXT", "inb.nxt2")  # no body: one message
    assert (await frame(w)).data == b"m3"
    await no_frame(w, 0.2)
    info = await env.info("S", "d")
    assert info["ack_floor"]["stream_seq"] == 1 and info["num_ack_pending"] == 2
    assert {"consumer_seq": 1, "stream_seq": 1}.items() <= info["ack_floor"].items()


async def test_redelivery_after_ack_wait_and_max_deliver(env):
    sub = await setup(env, 1, ack_wait=300_000_000, max_deliver=2)
    (m,) = await sub.fetch(1, timeout=1)
    t0 = time.monotonic()
    (again,) = await sub.fetch(1, timeout=2)
    assert 0.25 < time.monotonic() - t0 < 1.0
    assert again.metadata.num_delivered == 2 and again.metadata.sequence.consumer == 2
    await asyncio.sleep(0.5)
    w = await env.wire()
    await w.send(b"SUB inb.> 1\r\n")
    await pull(w, "S", "d", b'{"batch":1,"no_wait":true}')
    assert (await frame(w)).status == b"NATS/1.0 404 No Messages"
    info = await env.js.consumer_info("S", "d")
    # delivered twice, then given up: no longer pending, still counted as redelivered
    assert (info.num_redelivered, info.num_ack_pending) == (1, 0)


async def test_backoff_sets_the_redelivery_delays(env):
    sub = await setup(env, 1, backoff=[200_000_000, 600_000_000], max_deliver=4)
    info = await env.js.consumer_info("S", "d")
    assert info.config.ack_wait == 0.2  # the first backoff value
    (m,) = await sub.fetch(1, timeout=1)
    t0 = time.monotonic()
    (m2,) = await sub.fetch(1, timeout=2)
    t1 = time.monotonic()
    (m3,) = await sub.fetch(1, timeout=2)
    t2 = time.monotonic()
    assert 0.15 < t1 - t0 < 0.5, t1 - t0
    assert 0.5 < t2 - t1 < 1.0, t2 - t1
    assert [x.metadata.num_delivered for x in (m, m2, m3)] == [1, 2, 3]


async def test_in_progress_extends_the_ack_wait(env):
    sub = await setup(env, 1, ack_wait=400_000_000)
    (m,) = await sub.fetch(1, timeout=1)
    for _ in range(3):
        await asyncio.sleep(0.25)
        await m.in_progress()
    w = await env.wire()
    await w.send(b"SUB inb.> 1\r\n")
    await pull(w, "S", "d", b'{"batch":1,"no_wait":true}')
    assert (await frame(w)).status == b"NATS/1.0 404 No Messages"  # not redelivered yet
    await asyncio.sleep(0.5)
    await pull(w, "S", "d", b'{"batch":1,"no_wait":true}')
    f = await frame(w)
    assert f.data == b"m0" and f.reply.split(b".")[4] == b"2"


async def test_nak_with_a_delay(env):
    sub = await setup(env, 2)
    msgs = await sub.fetch(2, timeout=1)
    await msgs[0].nak(delay=0.4)  # JSON {"delay": ns}
    w = await env.wire()
    await w.send(b"SUB inb.> 1\r\n")
    await pub(w, msgs[1].reply, b"-NAK 300ms")  # a Go duration string
    t0 = time.monotonic()
    await pull(w, "S", "d", b'{"batch":2,"expires":2000000000}')
    first = await frame(w)
    t1 = time.monotonic()
    second = await frame(w)
    t2 = time.monotonic()
    assert (first.data, second.data) == (b"m1", b"m0")
    assert 0.2 < t1 - t0 < 0.6 and 0.3 < t2 - t0 < 0.8
    # a bad delay is a plain NAK: redelivered at once
    await pub(w, first.reply.decode(), b"-NAK soon")
    await pull(w, "S", "d", b'{"batch":1,"expires":1000000000}')
    f = await frame(w, 0.5)
    assert f.data == b"m1"


async def test_term_is_never_redelivered(env):
    sub = await setup(env, 1, ack_wait=200_000_000)
    (m,) = await sub.fetch(1, timeout=1)
    await m.term()
    await asyncio.sleep(0.4)
    info = await env.js.consumer_info("S", "d")
    assert info.num_ack_pending == 0 and info.num_redelivered == 0
    assert info.ack_floor.stream_seq == 1


async def test_ack_policy_all(env):
    sub = await setup(env, 4, ack_policy="all")
    msgs = await sub.fetch(4, timeout=1)
    await msgs[2].ack_sync()
    info = await env.js.consumer_info("S", "d")
    assert info.num_ack_pending == 1 and info.ack_floor.stream_seq == 3
    await msgs[1].ack_sync()  # below the floor: nothing changes
    info = await env.js.consumer_info("S", "d")
    assert info.num_ack_pending == 1 and info.ack_floor.stream_seq == 3


async def test_ack_policy_none_takes_no_acks(env):
    await env.add_stream("S", ["s.>"])
    await env.publish("s.a", 2)
    await env.create("S", {"durable_name": "n", "ack_policy": "none"})
    sub = await env.js.pull_subscribe_bind("n", "S")
    msgs = await sub.fetch(2, timeout=1)
    info = await env.js.consumer_info("S", "n")
    assert info.num_ack_pending == 0 and info.ack_floor.stream_seq == 2
    assert [m.data for m in msgs] == [b"m0", b"m1"]


async def test_workqueue_acks_remove_messages(env):
    await env.add_stream("W", ["w.>"], retention="workqueue")
    await env.publish("w.a", 3)
    await env.create("W", {"durable_name": "q", "ack_policy": "explicit"})
    sub = await env.js.pull_subscribe_bind("q", "W")
    msgs = await sub.fetch(3, timeout=1)
    await msgs[0].ack_sync()
    await msgs[1].term()
    await asyncio.sleep(0.1)
    si = await env.js.stream_info("W")
    assert si.state.messages == 1 and si.state.first_seq == 3


async def test_durable_consumer_state_survives_a_restart(server_factory, tmp_path):
    """hybridbus: the durable's deliveries, acks and ack deadlines are in the store."""
    store = str(tmp_path / "shared-store")
    first = await server_factory(jetstream__store_dir=store)
    nc = await nats.connect(f"nats://127.0.0.1:{first.nats_port}")
    js = nc.jetstream()
    await js.add_stream(name="S", subjects=["s.>"])
    for i in range(3):
        await js.publish("s.a", b"m%d" % i)
    await js.add_consumer("S", durable_name="d", ack_policy="explicit", ack_wait=0.5)
    sub = await js.pull_subscribe_bind("d", "S")
    msgs = await sub.fetch(2, timeout=1)
    await msgs[0].ack_sync()
    await nc.close()
    await first.shutdown()
    second = await server_factory(jetstream__store_dir=store)
    nc = await nats.connect(f"nats://127.0.0.1:{second.nats_port}")
    try:
        js = nc.jetstream()
        info = await js.consumer_info("S", "d")
        assert (info.num_ack_pending, info.num_pending) == (1, 1)
        assert info.delivered.consumer_seq == 2 and info.ack_floor.stream_seq == 1
        await asyncio.sleep(0.6)  # m1's ack deadline passes: it comes first
        sub = await js.pull_subscribe_bind("d", "S")
        got = await sub.fetch(2, timeout=2)
        assert [(m.data, m.metadata.num_delivered) for m in got] == [(b"m1", 2), (b"m2", 1)]
        for m in got:
            await m.ack_sync()
        info = await js.consumer_info("S", "d")
        assert info.num_ack_pending == 0 and info.ack_floor.stream_seq == 3
    finally:
        await nc.close()
