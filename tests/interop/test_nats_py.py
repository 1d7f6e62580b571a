"""The official nats-py client against a live hybridbus on a loopback port."""

from __future__ import annotations

import asyncio

import nats
import pytest
from nats.errors import MaxPayloadError, NoRespondersError, TimeoutError


async def connect(server, **kwargs):
    return await nats.connect(
        f"nats://127.0.0.1:{server.nats_port}",
        connect_timeout=2,
        max_reconnect_attempts=kwargs.pop("max_reconnect_attempts", 0),
        **kwargs,
    )


async def test_version_and_info(nats_server):
    nc = await connect(nats_server)
    assert nc.connected_server_version.major == 2
    assert nc.connected_server_version.minor >= 9
    assert nc.max_payload == 1048576
    await nc.close()


async def test_pub_sub_wildcards(nats_server):
    nc = await connect(nats_server)
    exact = await nc.subscribe("orders.new")
    star = await nc.subscribe("orders.*")
    full = await nc.subscribe("orders.>")
    await nc.publish("orders.new", b"a")
    await nc.publish("orders.eu.new", b"b")
    await nc.flush()
    assert (await exact.next_msg(1)).data == b"a"
    assert (await star.next_msg(1)).data == b"a"
    assert [(await full.next_msg(1)).data for _ in range(2)] == [b"a", b"b"]
    with pytest.raises(TimeoutError):
        await star.next_msg(0.2)
    await nc.close()


async def test_queue_groups_share_work(nats_server):
    nc = await connect(nats_server)
    got = {"a": 0, "b": 0}

    def counter(name):
        async def cb(msg):
            got[name] += 1

        return cb

    await nc.subscribe("jobs", queue="workers", cb=counter("a"))
    await nc.subscribe("jobs", queue="workers", cb=counter("b"))
    for i in range(100):
        await nc.publish("jobs", str(i).encode())
    await nc.flush()
    await asyncio.sleep(0.1)
    assert got["a"] + got["b"] == 100
    assert got["a"] > 0 and got["b"] > 0
    await nc.close()


async def test_request_reply(nats_server):
    service = await connect(nats_server)
    client = await connect(nats_server)

    async def echo(msg):
        await msg.respond(b"re: " + msg.data)

    await service.subscribe("svc.echo", cb=echo)
    await service.flush()
    reply = await client.request("svc.echo", b"hi", timeout=2)
    assert reply.data == b"re: hi"
    await service.close()
    await client.close()


async def test_no_responders(nats_server):
    nc = await connect(nats_server)
    with pytest.raises(NoRespondersError):
        await nc.request("nobody.here", b"?", timeout=2)
    await nc.close()


async def test_headers_round_trip(nats_server):
    nc = await connect(nats_server)
    sub = await nc.subscribe("h")
    await nc.publish("h", b"body", headers={"Trace-Id": "abc", "X": "1"})
    msg = await sub.next_msg(1)
    assert msg.data == b"body"
    assert msg.headers["Trace-Id"] == "abc" and msg.headers["X"] == "1"
    await nc.close()


async def test_unsubscribe_with_limit(nats_server):
    # The server's own subscriptions (the JetStream API) are not the client's.
    own = nats_server.sublist.count()
    nc = await connect(nats_server)
    sub = await nc.subscribe("lim")
    await sub.unsubscribe(limit=3)
    for i in range(5):
        await nc.publish("lim", str(i).encode())
    await nc.flush()
    got = []
    for _ in range(3):
        got.append((await sub.next_msg(1)).data)
    assert got == [b"0", b"1", b"2"]
    await asyncio.sleep(0.1)
    assert nats_server.sublist.count() == own
    await nc.close()


async def test_drain_delivers_in_flight(nats_server):
    nc = await connect(nats_server)
    pub = await connect(nats_server)
    got = []

    async def cb(msg):
        got.append(msg.data)

    await nc.subscribe("d", cb=cb)
    await nc.flush()
    for i in range(50):
        await pub.publish("d", b"%d" % i)
    await pub.flush()
    await nc.drain()
    assert got == [b"%d" % i for i in range(50)]
    await pub.close()


async def test_flush_round_trips(nats_server):
    nc = await connect(nats_server)
    await nc.flush(timeout=1)
    rtt = await nc.rtt()
    assert 0 <= rtt < 1
    await nc.close()


async def test_payload_at_and_over_max_payload(server_factory):
    server = await server_factory(max_payload=4096)
    nc = await connect(server)
    sub = await nc.subscribe("big")
    await nc.publish("big", b"z" * 4096)
    assert len((await sub.next_msg(1)).data) == 4096
    with pytest.raises(MaxPayloadError):
        await nc.publish("big", b"z" * 4097)
    await nc.close()


async def test_reconnect_after_server_restart(server_process):
    proc = server_process().start()
    url = f"nats://127.0.0.1:{proc.ports['nats']}"
    reconnected = asyncio.Event()

    async def on_reconnect():
        reconnected.set()

    nc = await nats.connect(
        url, reconnect_time_wait=0.2, max_reconnect_attempts=100, reconnected_cb=on_reconnect
    )
    sub = await nc.subscribe("after.restart")
    await nc.flush()
    assert proc.stop() == 0
    proc2 = server_process(ports=proc.ports).start()
    await asyncio.wait_for(reconnected.wait(), 15)
    await nc.publish("after.restart", b"back")
    # the client re-sent its subscription on reconnect
    assert (await sub.next_msg(3)).data == b"back"
    await nc.close()
    assert proc2.stop() == 0
