"""Ordered consumers (nats-py ``ordered_consumer=True``, KV watch and keys): ephemeral
push consumers with flow control and idle heartbeats, reset by ``by_start_sequence``
when the client sees a gap or misses heartbeats, and removed after their inactivity
threshold once nobody listens (/work/shared/docs/jetstream-subset.md section 2.12).

Run with HB_REFERENCE=1 to check the same assertions against nats-server 2.15.1
(see consumer_env.py)."""

from __future__ import annotations

import asyncio

import nats
import pytest
from nats.js import api
from nats.js.errors import NoKeysError

from tests.jetstream import consumer_env

env = consumer_env.env  # the fixture


async def names(env) -> list[str]:
    return (await env.api("$JS.API.CONSUMER.NAMES.S"))["consumers"]


async def test_ordered_in_order_with_heartbeats_and_no_resets(env):
    await env.add_stream("S", ["s.>"])
    await env.publish("s.a", 20)
    sub = await env.js.subscribe("s.>", stream="S", ordered_consumer=True, idle_heartbeat=0.5)
    got = [await sub.next_msg(timeout=1) for _ in range(20)]
    assert [m.data for m in got] == [b"m%d" % i for i in range(20)]
    assert [m.metadata.sequence.consumer for m in got] == list(range(1, 21))
    (first,) = await names(env)
    info = await env.info("S", first)
    cfg = info["config"]
    assert cfg["flow_control"] is True and cfg["idle_heartbeat"] == 500_000_000
    assert cfg["ack_policy"] == "none" and cfg["mem_storage"] is True
    assert cfg["max_deliver"] == 1 and info.get("push_bound") is True
    await asyncio.sleep(1.6)  # three heartbeat periods: heartbeats come, so no reset
    assert await names(env) == [first]
    await env.js.publish("s.b", b"later")
    m = await sub.next_msg(timeout=1)
    assert m.data == b"later" and m.metadata.sequence.consumer == 21


async def test_ordered_resets_from_the_next_stream_sequence(env):
    await env.add_stream("S", ["s.>"])
    await env.publish("s.a", 3)
    sub = await env.js.subscribe("s.>", stream="S", ordered_consumer=True, idle_heartbeat=0.3)
    assert [(await sub.next_msg(timeout=1)).data for _ in range(3)] == [b"m0", b"m1", b"m2"]
    (first,) = await names(env)
    # the consumer disappears: no more heartbeats, and the client makes a new one
    await env.api(f"$JS.API.CONSUMER.DELETE.S.{first}")
    await env.js.publish("s.a", b"after")
    m = await sub.next_msg(timeout=3)
    assert m.data == b"after" and m.metadata.sequence.stream == 4
    assert m.metadata.sequence.consumer == 1
    (second,) = await names(env)
    assert second != first
    cfg = (await env.info("S", second))["config"]
    assert cfg["deliver_policy"] == "by_start_sequence" and cfg["opt_start_seq"] == 4


async def test_ordered_consumer_goes_when_unsubscribed(env):
    await env.add_stream("S", ["s.>"])
    sub = await env.js.subscribe(
        "s.>",
        stream="S",
        ordered_consumer=True,
        idle_heartbeat=0.2,
        config=api.ConsumerConfig(inactive_threshold=0.3),
    )
    await env.js.publish("s.a", b"x")
    assert (await sub.next_msg(timeout=1)).data == b"x"
    assert len(await names(env)) == 1
    await sub.unsubscribe()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 2.0
    while await names(env) and loop.time() < deadline:
        await asyncio.sleep(0.05)
    assert await names(env) == []


async def test_by_start_sequence(env):
    await env.add_stream("S", ["s.>"])
    await env.publish("s.a", 5)
    sub = await env.js.subscribe(
        "s.>",
        stream="S",
        config=api.ConsumerConfig(
            deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=4
        ),
        manual_ack=True,
    )
    m = await sub.next_msg(timeout=1)
    assert m.data == b"m3" and m.metadata.sequence.consumer == 1
    assert (await sub.next_msg(timeout=1)).data == b"m4"
    with pytest.raises(nats.errors.TimeoutError):
        await sub.next_msg(timeout=0.2)


async def test_kv_keys_and_watch(env):
    kv = await env.js.create_key_value(bucket="b", history=3)
    with pytest.raises(NoKeysError):
        await asyncio.wait_for(kv.keys(), 3)
    await kv.put("k1", b"1")
    await kv.put("k2", b"2")
    await kv.put("k1", b"3")
    await kv.delete("k2")
    assert await asyncio.wait_for(kv.keys(), 3) == ["k1"]
    w = await kv.watchall()
    first = await w.updates(timeout=2)
    second = await w.updates(timeout=2)
    assert {(first.key, first.operation), (second.key, second.operation)} == {
        ("k1", None),
        ("k2", "DEL"),
    }
    assert await w.updates(timeout=2) is None  # the end of the initial values
    await kv.put("k3", b"new")
    e = await w.updates(timeout=2)
    assert (e.key, e.value, e.revision) == ("k3", b"new", 5)
    hist = await kv.history("k1")
    assert [e.value for e in hist] == [b"1", b"3"]
    await w.stop()
