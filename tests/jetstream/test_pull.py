"""Pull consumers: nats-py's fetch, and raw MSG.NEXT transcripts for every status line
and header (/work/shared/docs/jetstream-subset.md sections 1 and 2.10).

Run with HB_REFERENCE=1 to check the same assertions against nats-server 2.15.1
(see consumer_env.py)."""

from __future__ import annotations

import asyncio
import re
import time

import nats
import pytest
from nats.js.errors import FetchTimeoutError

from tests.helpers.wire import nats_connect
from tests.jetstream import consumer_env
from tests.jetstream.consumer_env import frame, no_frame, pub, pull

env = consumer_env.env  # the fixture

ACK = re.compile(rb"\$JS\.ACK\.S\.d\.(\d+)\.(\d+)\.(\d+)\.(\d+)\.(\d+)")


def ack_tokens(f) -> tuple[int, ...]:
    m = ACK.fullmatch(f.reply)
    assert m, f
    return tuple(int(x) for x in m.groups())


async def setup(env, n: int = 3, **cfg) -> None:
    await env.add_stream("S", ["s.>"])
    await env.publish("s.a", n)
    await env.create("S", {"durable_name": "d", "ack_policy": "explicit", **cfg})


async def test_fetch_with_nats_py(env):
    await setup(env, 3)
    sub = await env.js.pull_subscribe("s.>", durable="d", stream="S")
    (m,) = await sub.fetch(1, timeout=1)
    md = m.metadata
    assert (m.subject, m.data) == ("s.a", b"m0")
    assert (md.stream, md.consumer, md.num_delivered, md.num_pending) == ("S", "d", 1, 2)
    assert md.sequence.stream == md.sequence.consumer == 1
    assert abs(md.timestamp.timestamp() - time.time()) < 10
    t0 = time.monotonic()
    rest = await sub.fetch(10, timeout=2)
    assert [x.data for x in rest] == [b"m1", b"m2"]
    assert time.monotonic() - t0 < 1.0
    t0 = time.monotonic()
    # nats-py raises its TimeoutError, or the builtin one when the 408 at the request's
    # expiry (100 us before the client's deadline) is read after that deadline: the
    # same timeout, a race of loop timers (1 in ~20 runs either way).
    with pytest.raises(TimeoutError):
        await sub.fetch(5, timeout=1)
    assert 0.8 < time.monotonic() - t0 < 1.8
    with pytest.raises(FetchTimeoutError):
        await sub.fetch(5, timeout=1, heartbeat=0.2)
    info = await env.js.consumer_info("S", "d")
    assert info.num_ack_pending == 3 and info.num_pending == 0


async def test_request_bodies(env):
    await setup(env, 5)
    w = await env.wire()
    await w.send(b"SUB inb.> 1\r\n")
    await pull(w, "S", "d", b"")  # empty: one message
    f = await frame(w)
    assert (f.subject, f.data, f.hdr) == (b"s.a", b"m0", b"")
    dc, sseq, cseq, ts, pending = ack_tokens(f)
    assert (dc, sseq, cseq, pending) == (1, 1, 1, 4) and ts > 1_600_000_000_000_000_000
    await pull(w, "S", "d", b"2")  # a bare integer: a batch
    assert [ack_tokens(await frame(w))[1] for _ in range(2)] == [2, 3]
    await pull(w, "S", "d", b'{"batch":2}')
    assert [ack_tokens(await frame(w))[4] for _ in range(2)] == [1, 0]
    await pull(w, "S", "d", b"hello")  # anything else: one message, waiting for it
    await no_frame(w, 0.2)
    await env.js.publish("s.b", b"late")
    f = await frame(w)
    assert f.data == b"late" and f.reply.endswith(b".0")


async def test_a_batch_with_and_without_headers_byte_for_byte(env):
    # A pull batch goes to its inbox in one call (route_to_each -> deliver_run): each
    # frame as a lone delivery writes it, HMSG with the stored headers, MSG without, and
    # a client that did not ask for headers gets the payloads alone.
    await env.add_stream("S", ["s.>"])
    w = await env.wire()
    hdr = b"NATS/1.0\r\nX-K: v\r\n\r\n"
    await w.send(b"HPUB s.h %d %d\r\n%shi\r\nPUB s.p 2\r\nyo\r\n" % (len(hdr), len(hdr) + 2, hdr))
    await env.create("S", {"durable_name": "d", "ack_policy": "explicit"})
    await env.create("S", {"durable_name": "e", "ack_policy": "explicit"})
    await w.send(b"SUB inb.> 1\r\n")
    await pull(w, "S", "d", b"2")
    ack = rb"\$JS\.ACK\.S\.d\.1\.%d\.%d\.\d+\.%d"
    first = rb"HMSG s\.h 1 " + ack % (1, 1, 1) + rb" %d %d\r\n" % (len(hdr), len(hdr) + 2)
    await w.expect_re(first + re.escape(hdr) + rb"hi\r\n")
    await w.expect_re(rb"MSG s\.p 1 " + ack % (2, 2, 0) + rb" 2\r\nyo\r\n")
    bare = await nats_connect(env.port, b'{"verbose":false,"pedantic":false,"headers":false}')
    try:
        await bare.send(b"SUB inb.> 7\r\n")
        await pull(bare, "S", "e", b"2")
        ack = ack.replace(rb"\.d\.", rb"\.e\.")
        await bare.expect_re(rb"MSG s\.h 7 " + ack % (1, 1, 1) + rb" 2\r\nhi\r\n")
        await bare.expect_re(rb"MSG s\.p 7 " + ack % (2, 2, 0) + rb" 2\r\nyo\r\n")
    finally:
        await bare.close()


async def test_no_wait_and_expiry(env):
    await setup(env, 1)
    w = await env.wire()
    await w.send(b"SUB inb.> 1\r\n")
    await pull(w, "S", "d", b'{"batch":5,"no_wait":true}')
    f = await frame(w)
    assert f.data == b"m0"
    f = await frame(w)
    assert f.hdr == b"NATS/1.0 404 No Messages\r\n\r\n" and f.data == b""
    assert f.subject == b"inb.x" and f.reply is None
    await pull(w, "S", "d", b'{"batch":2,"no_wait":true}')
    f = await frame(w)
    assert f.hdr == b"NATS/1.0 404 No Messages\r\n\r\n"
    t0 = time.monotonic()
    await pull(w, "S", "d", b'{"batch":2,"expires":300000000}')
    f = await frame(w)
    assert time.monotonic() - t0 > 0.25
    assert f.hdr == (
        b"NATS/1.0 408 Request Timeout\r\nNats-Pending-Messages: 2\r\nNats-Pending-Bytes: 0\r\n\r\n"
    )
    # no_wait with an expiry waits, and returns as soon as something came
    await pull(w, "S", "d", b'{"batch":3,"no_wait":true,"expires":2000000000}')
    await no_frame(w, 0.2)
    await env.js.publish("s.a", b"new")
    f = await frame(w)
    assert f.data == b"new"
    f = await frame(w, 1.0)
    assert f.status == b"NATS/1.0 404 No Messages"


async def test_heartbeats_and_bad_requests(env):
    await setup(env, 0)
    w = await env.wire()
    await w.send(b"SUB inb.> 1\r\n")
    await pull(w, "S", "d", b'{"batch":2,"expires":300000000,"idle_heartbeat":200000000}')
    f = await frame(w)
    assert f.hdr == b"NATS/1.0 400 Bad Request - heartbeat value too large\r\n\r\n"
    await pull(w, "S", "d", b'{"batch":')
    f = await frame(w)
    assert f.status.startswith(b"NATS/1.0 400 Bad Request - ")
    await pull(w, "S", "d", b'{"batch":2,"expires":700000000,"idle_heartbeat":200000000}')
    beats = 0
    while True:
        f = await frame(w, 1.5)
        if f.status == b"NATS/1.0 100 Idle Heartbeat":
            assert f.header("Nats-Last-Consumer") == "0" and f.header("Nats-Last-Stream") == "0"
            beats += 1
            continue
        assert f.status == b"NATS/1.0 408 Request Timeout"
        break
    assert 2 <= beats <= 4


async def test_max_bytes(env):
    await env.add_stream("S", ["s.>"])
    for _ in range(4):
        await env.js.publish("s.c", b"x" * 100)
    await env.create("S", {"durable_name": "d", "ack_policy": "explicit"})
    w = await env.wire()
    await w.send(b"SUB inb.> 1\r\n")
    await pull(w, "S", "d", b'{"batch":5,"max_bytes":50}')
    f = await frame(w)
    assert f.hdr == (
        b"NATS/1.0 409 Message Size Exceeds MaxBytes\r\nNats-Pending-Messages: 5\r\n"
        b"Nats-Pending-Bytes: 50\r\n\r\n"
    )
    await pull(w, "S", "d", b'{"batch":1,"max_bytes":1000}')
    f = await frame(w)
    size = len(f.subject) + len(f.reply) + len(f.data)
    f2 = await frame(w)
    assert f2.status == b"NATS/1.0 409 Batch Completed"
    assert f2.header("Nats-Pending-Messages") == "0"
    assert f2.header("Nats-Pending-Bytes") == str(1000 - size)
    # room for exactly two messages and a few bytes: two, then the request waits (408)
    body = b'{"batch":5,"max_bytes":%d,"expires":400000000}' % (2 * size + 5)
    await pull(w, "S", "d", body)
    assert (await frame(w)).data == b"x" * 100
    assert (await frame(w)).data == b"x" * 100
    f = await frame(w)
    assert f.status == b"NATS/1.0 409 Message Size Exceeds MaxBytes"
    assert f.header("Nats-Pending-Bytes") == "5" and f.header("Nats-Pending-Messages") == "3"


async def test_push_based_and_missing_consumer(env):
    await env.add_stream("S", ["s.>"])
    await env.create("S", {"durable_name": "p", "deliver_subject": "dlv"})
    w = await env.wire()
    await w.send(b"SUB inb.> 1\r\n")
    await pull(w, "S", "p")
    assert (await frame(w)).hdr == b"NATS/1.0 409 Consumer is push based\r\n\r\n"
    await pull(w, "S", "nope")
    f = await frame(w)
    assert f.hdr == b"NATS/1.0 503\r\nNats-Subject: $JS.API.CONSUMER.MSG.NEXT.S.nope\r\n\r\n"
    await pull(w, "NOPE", "nope")
    assert (await frame(w)).status == b"NATS/1.0 503"
    # nats-py's fetch on a missing consumer: a 503 in the inbox
    sub = await env.js.pull_subscribe_bind("nope", "S")
    with pytest.raises(nats.js.errors.ServiceUnavailableError):
        await sub.fetch(1, timeout=1)


async def test_max_waiting_and_consumer_deleted(env):
    await setup(env, 0, max_waiting=2)
    w = await env.wire()
    await w.send(b"SUB inb.> 1\r\n")
    for inbox in ("inb.w1", "inb.w2", "inb.w3"):
        await pull(w, "S", "d", b'{"batch":1,"expires":3000000000}', inbox)
    f = await frame(w)
    assert (f.subject, f.hdr) == (b"inb.w3", b"NATS/1.0 409 Exceeded MaxWaiting\r\n\r\n")
    assert (await env.info("S", "d"))["num_waiting"] == 2
    await env.api("$JS.API.CONSUMER.DELETE.S.d")
    got = {(await frame(w)).subject for _ in range(2)}
    assert got == {b"inb.w1", b"inb.w2"}
    assert w.buffer == b"" or b"409 Consumer Deleted" in w.buffer
    await no_frame(w, 0.2)


async def test_consumer_deleted_status_transcript(env):
    await setup(env, 0)
    w = await env.wire()
    await w.send(b"SUB inb.> 1\r\n")
    await pull(w, "S", "d", b'{"batch":1,"expires":3000000000}', "inb.del")
    await no_frame(w, 0.1)
    await env.js.delete_consumer("S", "d")
    f = await frame(w)
    assert (f.subject, f.hdr) == (b"inb.del", b"NATS/1.0 409 Consumer Deleted\r\n\r\n")


async def test_new_messages_wake_a_waiting_request(env):
    await setup(env, 0)
    w = await env.wire()
    await w.send(b"SUB inb.> 1\r\n")
    await pull(w, "S", "d", b'{"batch":2,"expires":3000000000}')
    await no_frame(w, 0.1)
    t0 = time.monotonic()
    await env.js.publish("s.a", b"one")
    assert (await frame(w)).data == b"one"
    assert time.monotonic() - t0 < 0.5
    await env.js.publish("s.a", b"two")
    assert (await frame(w)).data == b"two"
    await env.js.publish("s.a", b"three")  # the batch is done: nothing more goes
    await no_frame(w, 0.2)
    assert (await env.info("S", "d"))["num_waiting"] == 0


async def test_waiting_requests_take_turns(env):
    await setup(env, 0)
    w = await env.wire()
    await w.send(b"SUB inb.a 1\r\nSUB inb.b 2\r\n")
    await pull(w, "S", "d", b'{"batch":2,"expires":3000000000}', "inb.a")
    await pull(w, "S", "d", b'{"batch":2,"expires":3000000000}', "inb.b")
    await asyncio.sleep(0.1)
    for i in range(4):
        await env.js.publish("s.a", b"%d" % i)
    order = [(await frame(w)).sid for _ in range(4)]  # data shows the stream subject
    assert sorted(order) == [b"1", b"1", b"2", b"2"]
    assert order[0] != order[1]


async def test_a_request_whose_inbox_went_is_dropped(env):
    await setup(env, 0)
    w = await env.wire()
    await w.send(b"SUB inb.gone 1\r\n")
    await pull(w, "S", "d", b'{"batch":2,"expires":3000000000}', "inb.gone")
    await asyncio.sleep(0.1)
    await w.send(b"UNSUB 1\r\nPING\r\n")
    await w.expect(b"PONG\r\n")
    await env.js.publish("s.a", b"one")
    await asyncio.sleep(0.1)
    info = await env.info("S", "d")
    assert info["num_waiting"] == 0 and info["num_pending"] == 1
    assert info["num_ack_pending"] == 0


async def test_max_ack_pending_holds_deliveries_until_acks(env):
    await setup(env, 4, max_ack_pending=2)
    w = await env.wire()
    await w.send(b"SUB inb.> 1\r\n")
    await pull(w, "S", "d", b'{"batch":4,"expires":3000000000}')
    first = [await frame(w) for _ in range(2)]
    await no_frame(w, 0.2)
    await pub(w, first[0].reply.decode())
    f = await frame(w)
    assert ack_tokens(f)[1] == 3
    await pub(w, first[1].reply.decode(), b"+ACK")
    assert ack_tokens(await frame(w))[1] == 4


async def test_pull_ephemeral_goes_when_inactive_durable_stays(env):
    await env.add_stream("S", ["s.>"])
    eph = await env.create("S", {"name": "e", "inactive_threshold": 300_000_000})
    assert eph["config"]["inactive_threshold"] == 300_000_000
    await env.create("S", {"durable_name": "keep"})
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 3.0  # nats-server adds up to 1 s of jitter for pull consumers
    while loop.time() < deadline:
        names = (await env.api("$JS.API.CONSUMER.NAMES.S"))["consumers"]
        if "e" not in names:
            break
        await asyncio.sleep(0.1)
    assert names == ["keep"]


async def test_stream_deleted_while_a_request_waits(env):
    await setup(env, 0)
    w = await env.wire()
    await w.send(b"SUB inb.> 1\r\n")
    await pull(w, "S", "d", b'{"batch":1,"expires":3000000000}', "inb.w")
    await no_frame(w, 0.1)
    await env.js.delete_stream("S")
    f = await frame(w)
    assert (f.subject, f.hdr) == (b"inb.w", b"NATS/1.0 409 Consumer Deleted\r\n\r\n")


async def test_an_mqtt_publish_wakes_a_waiting_pull(server_factory):
    """hybridbus: a QoS 1 PUBLISH to a topic a stream captures reaches a pull consumer."""
    from tests.helpers import mqtt_packets as mp
    from tests.helpers.wire import mqtt_connect

    server = await server_factory()
    nc = await nats.connect(f"nats://127.0.0.1:{server.nats_port}")
    try:
        js = nc.jetstream()
        await js.add_stream(name="M", subjects=["sensors.>"])
        sub = await js.pull_subscribe("sensors.>", durable="d", stream="M")
        fetch = asyncio.ensure_future(sub.fetch(1, timeout=2))
        await asyncio.sleep(0.2)
        mq = await mqtt_connect(server.mqtt_port, "pub1")
        await mq.send(mp.publish("sensors/room1", b"21.5", qos=1, mid=7))
        await mq.expect(mp.puback(7))
        (m,) = await fetch
        assert (m.subject, m.data) == ("sensors.room1", b"21.5")
        await m.ack_sync()
        await mq.close()
    finally:
        await nc.close()


async def test_a_batch_stops_at_an_inbox_that_reaches_its_max(env):
    # The inbox auto-unsubscribes after 2 messages (UNSUB <sid> 2) in the middle of a
    # batch of 4: 2 arrive, the other 2 reach nobody and go to the next request.
    await setup(env, 4)
    w = await env.wire()
    await w.send(b"SUB inb.x 1\r\nUNSUB 1 2\r\nSUB inb.y 2\r\n")
    await pull(w, "S", "d", b'{"batch":4,"expires":3000000000}')
    assert [ack_tokens(await frame(w))[1] for _ in range(2)] == [1, 2]
    await no_frame(w, 0.2)
    await pull(w, "S", "d", b'{"batch":4,"expires":1000000000}', "inb.y")
    got = [await frame(w) for _ in range(2)]
    assert [f.sid for f in got] == [b"2", b"2"]
    assert [ack_tokens(f)[1] for f in got] == [3, 4]
