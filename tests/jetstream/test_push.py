"""Push consumers (/work/shared/docs/jetstream-subset.md section 2.12): nats-py callbacks
and queue groups, delivery only while the deliver subject has interest, headers_only,
flow control and idle heartbeats on the wire, replay_policy original, rate_limit_bps,
max_ack_pending, the inactivity threshold.

Run with HB_REFERENCE=1 to check the same assertions against nats-server 2.15.1
(see consumer_env.py)."""

from __future__ import annotations

import asyncio
import json
import time

import nats
import pytest

from tests.jetstream import consumer_env
from tests.jetstream.consumer_env import frame, no_frame, pub

env = consumer_env.env  # the fixture


async def wait_for(pred, timeout: float = 2.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not pred():
        assert loop.time() < deadline, "condition not met"
        await asyncio.sleep(0.02)


async def test_subscribe_with_a_callback_auto_acks(env):
    await env.add_stream("S", ["s.>"])
    await env.publish("s.a", 5)
    got = []

    async def cb(msg):
        got.append(msg.data)

    sub = await env.js.subscribe("s.>", cb=cb, stream="S", durable="p")
    await wait_for(lambda: len(got) == 5)
    assert got == [b"m0", b"m1", b"m2", b"m3", b"m4"]
    await env.js.publish("s.b", b"live")
    await wait_for(lambda: len(got) == 6)

    async def acked():
        info = await env.js.consumer_info("S", "p")
        return info

    loop = asyncio.get_running_loop()
    deadline = loop.time() + 2
    while True:
        info = await acked()
        if info.ack_floor.stream_seq == 6 or loop.time() > deadline:
            break
        await asyncio.sleep(0.05)
    assert info.ack_floor.stream_seq == 6 and info.num_ack_pending == 0
    assert info.push_bound is True
    await sub.unsubscribe()


async def test_queue_group_shares_the_messages(env):
    await env.add_stream("S", ["s.>"])
    got: dict[str, list] = {"a": [], "b": []}

    def cb(tag):
        async def handler(msg):
            got[tag].append(msg.data)
            await msg.ack()

        return handler

    nc2 = await env.connect()
    js2 = nc2.jetstream()
    await env.js.subscribe("s.>", queue="workers", cb=cb("a"), stream="S")
    await js2.subscribe("s.>", queue="workers", cb=cb("b"), stream="S")
    info = await env.js.consumer_info("S", "workers")
    assert info.config.deliver_group == "workers" and info.config.durable_name == "workers"
    await env.publish("s.a", 40)
    await wait_for(lambda: len(got["a"]) + len(got["b"]) == 40)
    await asyncio.sleep(0.1)
    assert sorted(got["a"] + got["b"]) == sorted(b"m%d" % i for i in range(40))
    assert got["a"] and got["b"]


async def test_deliver_group_needs_a_member_of_that_group(env):
    await env.add_stream("S", ["s.>"])
    w = await env.wire()
    await w.send(b"SUB dlv 1\r\n")  # a plain subscriber, not in the group
    await env.create(
        "S",
        {
            "durable_name": "g",
            "deliver_subject": "dlv",
            "deliver_group": "grp",
            "ack_policy": "none",
        },
    )
    await env.publish("s.a", 2)
    await no_frame(w, 0.3)
    # a member gives it interest; the delivery is then routed like a publish to the
    # deliver subject: one member of the group and every plain subscriber
    await w.send(b"SUB dlv grp 2\r\nSUB dlv grp 3\r\n")
    got = sorted((f.data, f.sid) for f in [await frame(w) for _ in range(4)])
    assert [d for d, _ in got] == [b"m0", b"m0", b"m1", b"m1"]
    assert [sid for d, sid in got if d == b"m0"][0] == b"1" or b"1" in [s for _, s in got]
    assert sum(1 for _, sid in got if sid == b"1") == 2
    await no_frame(w, 0.2)


async def test_no_interest_no_delivery_then_resume(env):
    await env.add_stream("S", ["s.>"])
    await env.publish("s.a", 3)
    await env.create(
        "S", {"durable_name": "p", "deliver_subject": "later.dlv", "ack_policy": "explicit"}
    )
    await asyncio.sleep(0.2)
    info = await env.info("S", "p")
    assert info["num_pending"] == 3 and info["delivered"]["stream_seq"] == 0
    w = await env.wire()
    await w.send(b"SUB later.dlv 1\r\n")
    got = [await frame(w) for _ in range(3)]
    assert [f.data for f in got] == [b"m0", b"m1", b"m2"]
    assert got[0].subject == b"s.a" and got[0].reply.startswith(b"$JS.ACK.S.p.1.1.1.")


async def test_headers_only(env):
    await env.add_stream("S", ["s.>"])
    await env.js.publish("s.h", b"x" * 1234, headers={"H": "v"})
    await env.js.publish("s.h", b"abc")
    w = await env.wire()
    await w.send(b"SUB dlv 1\r\n")
    await env.create(
        "S", {"name": "h", "deliver_subject": "dlv", "headers_only": True, "ack_policy": "none"}
    )
    f = await frame(w)
    assert f.hdr == b"NATS/1.0\r\nH: v\r\nNats-Msg-Size: 1234\r\n\r\n" and f.data == b""
    f = await frame(w)
    assert f.hdr == b"NATS/1.0\r\nNats-Msg-Size: 3\r\n\r\n" and f.data == b""
    # through nats-py
    sub = await env.js.subscribe("s.h", stream="S", headers_only=True)
    m = await sub.next_msg(timeout=1)
    assert m.data == b"" and m.headers["Nats-Msg-Size"] == "1234" and m.headers["H"] == "v"


async def test_flow_control_and_heartbeats_on_the_wire(env):
    await env.add_stream("S", ["s.>"])
    for _ in range(30):
        await env.js.publish("s.a", b"x" * 100_000)
    w = await env.wire()
    await w.send(b"SUB dlv 1\r\n")
    cfg = {
        "name": "q",
        "deliver_subject": "dlv",
        "flow_control": True,
        "idle_heartbeat": 300_000_000,
        "ack_policy": "none",
    }
    await env.create("S", cfg)
    data = fc = 0
    fc_reply = None
    while True:
        f = await frame(w)
        if f.status == b"NATS/1.0 100 FlowControl Request":
            assert f.subject == b"dlv" and f.data == b""
            fc_reply = f.reply.decode()
            assert fc_reply.startswith("$JS.FC.S.q.") and len(fc_reply.split(".")) == 5
            fc = data
            continue
        if f.status == b"NATS/1.0 100 Idle Heartbeat":
            break  # stalled: nothing more until the flow-control reply
        assert f.hdr == b"" and len(f.data) == 100_000
        data += 1
    # past 1 MiB a request (after the 11th), stalled past 2 MiB (after the 21st)
    assert fc == 11 and data == 21
    assert f.header("Nats-Consumer-Stalled") == fc_reply
    assert f.header("Nats-Last-Consumer") == "21" and f.header("Nats-Last-Stream") == "21"
    await pub(w, fc_reply)
    rest = 0
    while rest < 9:
        f = await frame(w)
        if f.hdr:
            continue  # the next flow-control request, heartbeats
        rest += 1
    f = await frame(w, 1.0)
    while f.status != b"NATS/1.0 100 Idle Heartbeat":
        f = await frame(w, 1.0)
    assert f.header("Nats-Last-Consumer") == "30"


async def test_idle_heartbeat_transcript(env):
    await env.add_stream("S", ["s.>"])
    await env.js.publish("s.a", b"one")
    w = await env.wire()
    await w.send(b"SUB dlv 1\r\n")
    t0 = time.monotonic()
    await env.create("S", {"name": "hb", "deliver_subject": "dlv", "idle_heartbeat": 200_000_000})
    assert (await frame(w)).data == b"one"
    f = await frame(w)
    assert 0.15 < time.monotonic() - t0 < 0.6
    assert f.hdr == (
        b"NATS/1.0 100 Idle Heartbeat\r\nNats-Last-Consumer: 1\r\nNats-Last-Stream: 1\r\n\r\n"
    )
    assert (f.subject, f.reply, f.data) == (b"dlv", None, b"")


async def test_replay_original_keeps_the_gaps(env):
    await env.add_stream("S", ["s.>"])
    for i in range(3):
        await env.js.publish("s.a", b"%d" % i)
        await asyncio.sleep(0.3)
    w = await env.wire()
    await w.send(b"SUB dlv 1\r\n")
    await env.create("S", {"name": "r", "deliver_subject": "dlv", "replay_policy": "original"})
    times = []
    for _ in range(3):
        await frame(w)
        times.append(time.monotonic())
    assert 0.2 < times[1] - times[0] < 0.5 and 0.2 < times[2] - times[1] < 0.5
    await env.js.publish("s.a", b"live")  # caught up: new messages go at once
    t0 = time.monotonic()
    assert (await frame(w)).data == b"live" and time.monotonic() - t0 < 0.2


async def test_rate_limit(env):
    # the burst is one maximal message: max_msg_size, here 1000 bytes
    await env.add_stream("S", ["s.>"], max_msg_size=1000)
    for _ in range(5):
        await env.js.publish("s.a", b"x" * 500)
    w = await env.wire()
    await w.send(b"SUB dlv 1\r\n")
    t0 = time.monotonic()
    await env.create("S", {"name": "rl", "deliver_subject": "dlv", "rate_limit_bps": 8000})
    for _ in range(5):
        await frame(w)
    took = time.monotonic() - t0
    assert 1.0 < took < 2.5, took  # 1000 bytes/s after the first 1000


async def test_max_ack_pending_for_push(env):
    await env.add_stream("S", ["s.>"])
    await env.publish("s.a", 5)
    w = await env.wire()
    await w.send(b"SUB dlv 1\r\n")
    await env.create(
        "S",
        {
            "durable_name": "m",
            "deliver_subject": "dlv",
            "ack_policy": "explicit",
            "max_ack_pending": 2,
        },
    )
    first = [await frame(w) for _ in range(2)]
    await no_frame(w, 0.2)
    await pub(w, first[0].reply.decode())
    assert (await frame(w)).data == b"m2"
    await no_frame(w, 0.1)


async def test_ephemeral_push_goes_after_the_inactive_threshold(env):
    await env.add_stream("S", ["s.>"])
    w = await env.wire()
    await w.send(b"SUB dlv.e 1\r\nSUB dlv.d 2\r\n")
    await env.create(
        "S", {"name": "e", "deliver_subject": "dlv.e", "inactive_threshold": 300_000_000}
    )
    await env.create("S", {"durable_name": "d", "deliver_subject": "dlv.d"})
    await asyncio.sleep(0.5)  # bound: nothing happens
    names = (await env.api("$JS.API.CONSUMER.NAMES.S"))["consumers"]
    assert names == ["d", "e"]
    await w.send(b"UNSUB 1\r\nUNSUB 2\r\nPING\r\n")
    await w.expect(b"PONG\r\n")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 2.0
    while loop.time() < deadline:
        names = (await env.api("$JS.API.CONSUMER.NAMES.S"))["consumers"]
        if names == ["d"]:
            break
        await asyncio.sleep(0.05)
    assert names == ["d"]  # the durable stays without a threshold


async def test_durable_rebinds_with_nats_py(env):
    await env.add_stream("S", ["s.>"])
    await env.publish("s.a", 2)
    sub = await env.js.subscribe("s.>", durable="dur", stream="S", manual_ack=True)
    m = await sub.next_msg(timeout=1)
    await m.ack()
    await sub.unsubscribe()
    await env.js.publish("s.a", b"while away")
    await asyncio.sleep(0.2)
    sub = await env.js.subscribe("s.>", durable="dur", stream="S", manual_ack=True)
    m = await sub.next_msg(timeout=1)
    # m1 went to the old subscriber and waits for its ack wait (30 s) to come again
    assert m.data == b"while away" and m.metadata.sequence.stream == 3
    with pytest.raises(nats.errors.TimeoutError):
        await sub.next_msg(timeout=0.3)
    info = json.loads((await env.nc.request("$JS.API.CONSUMER.INFO.S.dur", b"", timeout=1)).data)
    assert info["push_bound"] is True


async def test_a_durable_push_consumer_delivers_as_soon_as_its_subscriber_comes_back(
    server_factory, monkeypatch
):
    """nats-server's interest notifications: a push consumer with no subscriber starts
    the moment one subscribes its deliver subject (a client bound to it again, an MQTT
    session resumed on its node), not at the next look of a poll. The backstop poll is
    slowed to 30 s here, so only the router's notification can deliver in time."""
    from hybridbus.jetstream import delivery

    monkeypatch.setattr(delivery, "POLL", 30.0)
    monkeypatch.setattr(delivery, "POLL_FIRST", 30.0)
    server = await server_factory()
    nc = await nats.connect(f"nats://127.0.0.1:{server.nats_port}")
    try:
        js = nc.jetstream(timeout=2)
        await js.add_stream(name="S", subjects=["s.>"])
        await js.add_consumer("S", durable_name="d", deliver_subject="dlv.d", ack_policy="none")
        await js.publish("s.a", b"queued")
        for round_ in range(3):
            got: asyncio.Queue = asyncio.Queue()
            sub = await nc.subscribe("dlv.d", cb=got.put)
            msg = await asyncio.wait_for(got.get(), 2.0)
            assert msg.subject == "s.a" if round_ == 0 else msg.subject == "s.b"
            await sub.unsubscribe()
            await nc.flush()
            await js.publish("s.b", b"while nobody listens")
        # and a wildcard subscriber gives interest too
        got = asyncio.Queue()
        await nc.subscribe("dlv.*", cb=got.put)
        assert (await asyncio.wait_for(got.get(), 2.0)).data == b"while nobody listens"
    finally:
        await nc.close()
