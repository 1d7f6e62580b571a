"""The leaf-node link against a real nats-server hub: messages and interest both ways,
request/reply, JetStream domains, queue groups across the link, MQTT across two
spokes, reconnection and loop detection."""

from __future__ import annotations

import asyncio
import json
import socket

import nats
import pytest

from hybridbus.options import LeafRemoteOptions
from tests.conftest import free_port
from tests.helpers import mqtt_packets as mp

from .conftest import eventually


def collector(bucket: list, tag: str = ""):
    async def cb(msg):
        bucket.append((tag, msg.subject, msg.data, msg.headers))

    return cb


async def connect(url_or_server):
    if isinstance(url_or_server, str):
        return await nats.connect(url_or_server, allow_reconnect=False)
    return await nats.connect(f"nats://127.0.0.1:{url_or_server.nats_port}", allow_reconnect=False)


async def settle(*conns) -> None:
    for nc in conns:
        await nc.flush()
    await asyncio.sleep(0.15)  # interest crosses the link (LS+) asynchronously


async def test_publish_both_ways_and_no_echo(hub_factory, spoke):
    hub = hub_factory()
    server = await spoke(hub)
    up, down = await connect(hub.client_url), await connect(server)
    got: list = []
    await up.subscribe("up.>", cb=collector(got, "hub"))
    await down.subscribe("down.*", cb=collector(got, "spoke"))
    # subscribers on both sides of one subject: each gets every message exactly once
    await up.subscribe("both", cb=collector(got, "hub-both"))
    await down.subscribe("both", cb=collector(got, "spoke-both"))
    await settle(up, down)
    await down.publish("up.a.b", b"1")
    await up.publish("down.x", b"2")
    await down.publish("both", b"3")
    await up.publish("both", b"4")
    await settle(up, down)
    await eventually(lambda: len(got) >= 6)
    await asyncio.sleep(0.2)
    assert sorted((t, s, d) for t, s, d, _ in got) == [
        ("hub", "up.a.b", b"1"),
        ("hub-both", "both", b"3"),
        ("hub-both", "both", b"4"),
        ("spoke", "down.x", b"2"),
        ("spoke-both", "both", b"3"),
        ("spoke-both", "both", b"4"),
    ]
    await up.close()
    await down.close()


async def test_interest_follows_subscriptions(hub_factory, spoke):
    """Only what the cluster wants crosses: the hub learns and forgets our interest."""
    hub = hub_factory()
    server = await spoke(hub)
    nc = await connect(server)

    def hub_subs():
        leafs = hub.monitor("/leafz?subs=true")["leafs"]
        return set(leafs[0].get("subscriptions_list") or []) if leafs else set()

    sub = await nc.subscribe("telemetry.>")
    await nc.flush()
    await eventually(lambda: "telemetry.>" in hub_subs())
    await sub.unsubscribe()
    await nc.flush()
    await eventually(lambda: "telemetry.>" not in hub_subs())
    link = server.leafnodes[0]
    assert link.remote_name == "n1" and link.remote_domain == "hub"
    await nc.close()


async def test_request_reply_across(hub_factory, spoke):
    hub = hub_factory()
    server = await spoke(hub)
    up, down = await connect(hub.client_url), await connect(server)

    async def echo(msg):
        await msg.respond(b"pong:" + msg.data)

    await up.subscribe("svc.up", cb=echo)
    await down.subscribe("svc.down", cb=echo)
    await settle(up, down)
    assert (await down.request("svc.up", b"a", timeout=2)).data == b"pong:a"
    assert (await up.request("svc.down", b"b", timeout=2)).data == b"pong:b"
    await up.close()
    await down.close()


async def test_jetstream_domains(hub_factory, spoke):
    """$JS.API stays local (answered once, by our JetStream); $JS.hub.API is the hub's."""
    hub = hub_factory()
    server = await spoke(hub)
    nc = await connect(server)
    hub_info = json.loads((await nc.request("$JS.hub.API.INFO", b"", timeout=2)).data)
    assert hub_info.get("domain") == "hub"
    # count every answer to one local API request
    answers: list = []
    inbox = "_INBOX.count"
    await nc.subscribe(inbox, cb=collector(answers))
    await nc.publish("$JS.API.INFO", b"", reply=inbox)
    await nc.flush()
    await asyncio.sleep(0.5)
    assert len(answers) == 1
    assert json.loads(answers[0][2]).get("domain") is None  # ours, not the hub's
    # and a stream in the hub's domain, used from the spoke through nats-py
    js = nc.jetstream(domain="hub")
    await js.add_stream(name="HUBS", subjects=["hubs.>"])
    ack = await js.publish("hubs.1", b"x")
    assert ack.stream == "HUBS" and ack.domain == "hub"
    await nc.close()


async def test_queue_groups_local_first_and_exactly_once(hub_factory, spoke):
    hub = hub_factory()
    server = await spoke(hub)
    up, down = await connect(hub.client_url), await connect(server)
    got: list = []
    await up.subscribe("work", queue="g", cb=collector(got, "hub"))
    await down.subscribe("work", queue="g", cb=collector(got, "spoke"))
    await settle(up, down)
    for i in range(50):
        await down.publish("work", b"d%d" % i)
        await up.publish("work", b"u%d" % i)
    await settle(up, down)
    await eventually(lambda: len(got) >= 100)
    await asyncio.sleep(0.2)
    assert len(got) == 100  # one member per message
    # local members first: each side's publishes stay on its side
    assert {d[:1] for t, _, d, _ in got if t == "spoke"} == {b"d"}
    assert {d[:1] for t, _, d, _ in got if t == "hub"} == {b"u"}
    await up.close()
    await down.close()


async def test_queue_group_falls_back_to_the_other_side(hub_factory, spoke):
    hub = hub_factory()
    server = await spoke(hub)
    up, down = await connect(hub.client_url), await connect(server)
    got_up: list = []
    got_down: list = []
    await up.subscribe("jobs", queue="w", cb=collector(got_up))
    await down.subscribe("other", queue="w", cb=collector(got_down))
    await settle(up, down)
    for i in range(20):
        await down.publish("jobs", b"%d" % i)
    await settle(up, down)
    await eventually(lambda: len(got_up) == 20)
    # a hub group with no local member on our side: every message reaches it once
    await asyncio.sleep(0.2)
    assert len(got_up) == 20 and not got_down
    await up.close()
    await down.close()


async def read_packet(reader) -> tuple[int, bytes]:
    """(first byte, body) of one MQTT packet."""
    b0 = (await reader.readexactly(1))[0]
    size, shift = 0, 0
    while True:
        byte = (await reader.readexactly(1))[0]
        size |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    return b0, await reader.readexactly(size)


def parse_publish(b0: int, body: bytes, level: int = 4) -> tuple[str, int, int, bytes]:
    """(topic, qos, packet id, payload); MQTT 5 properties are skipped."""
    qos = (b0 >> 1) & 3
    n = int.from_bytes(body[:2], "big")
    topic, rest = body[2 : 2 + n].decode(), body[2 + n :]
    pid = 0
    if qos:
        pid, rest = int.from_bytes(rest[:2], "big"), rest[2:]
    if level == 5:
        plen, i, shift = 0, 0, 0
        while True:
            byte = rest[i]
            plen |= (byte & 0x7F) << shift
            shift += 7
            i += 1
            if not byte & 0x80:
                break
        rest = rest[i + plen :]
    return topic, qos, pid, rest


async def _mqtt(port: int, client_id: str, level: int = 4):
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(mp.connect(client_id, level=level))
    await w.drain()
    b0, _ = await asyncio.wait_for(read_packet(r), 3)
    assert b0 >> 4 == 2
    return r, w


async def test_mqtt_between_two_spokes_keeps_qos_and_order(hub_factory, spoke):
    """MQTT A -> hub -> MQTT B: the published QoS crosses (Nmqtt-Pub), so B's QoS 1
    subscriber gets QoS 0 messages at QoS 0 [MQTT-3.8.4-8] and QoS 1 at QoS 1, in order."""
    hub = hub_factory()
    a = await spoke(hub)
    b = await spoke(hub)
    rb, wb = await _mqtt(b.mqtt_port, "sub")
    wb.write(mp.subscribe(1, ("plant/+/temp", 1)))
    await wb.drain()
    await asyncio.wait_for(read_packet(rb), 3)  # SUBACK
    await eventually(
        lambda: a.leafnodes and any(k[0].startswith("plant") for k in a.leafnodes[0].subs)
    )
    ra, wa = await _mqtt(a.mqtt_port, "pub")
    for i in range(300):
        qos = 1 if i % 3 == 0 else 0
        wa.write(mp.publish(f"plant/k{i % 5}/temp", b"%d" % i, qos=qos, mid=i + 1 if qos else 0))
    await wa.drain()
    seen = []
    while len(seen) < 300:
        b0, body = await asyncio.wait_for(read_packet(rb), 5)
        if b0 >> 4 != 3:
            continue
        topic, qos, pid, payload = parse_publish(b0, body)
        seen.append((topic, qos, payload))
        if qos:
            wb.write(mp.puback(pid))
    assert [int(p) for _, _, p in seen] == list(range(300))
    assert all(q == (1 if int(p) % 3 == 0 else 0) for _, q, p in seen)
    # runs: one write of QoS 0 messages to one topic, same sizes then mixed sizes
    # (the link writes a run as one block and the other side routes it as a run)
    payloads = [b"s%03d" % i for i in range(200)] + [b"m" * (i % 7) + b"%d" % i for i in range(200)]
    wa.write(b"".join(mp.publish("plant/run/temp", p) for p in payloads))
    await wa.drain()
    got = []
    while len(got) < len(payloads):
        b0, body = await asyncio.wait_for(read_packet(rb), 5)
        topic, qos, _, payload = parse_publish(b0, body)
        assert (topic, qos) == ("plant/run/temp", 0)
        got.append(payload)
    assert got == payloads
    wa.close()
    wb.close()


async def test_relink_after_the_hub_restarts(hub_factory, spoke):
    hub = hub_factory()
    server = await spoke(hub)
    nc = await connect(server)
    got: list = []
    await nc.subscribe("after.restart", cb=collector(got))
    await nc.flush()
    hub.restart()
    await eventually(lambda: server.leaf_remotes[0].connects == 2 and server.leafnodes, timeout=10)
    up = await connect(hub.client_url)
    await asyncio.sleep(0.2)
    await up.publish("after.restart", b"x")  # our interest was sent again
    await up.flush()
    await eventually(lambda: got)
    assert server.leaf_remotes[0].connects == 2
    await up.close()
    await nc.close()


async def test_next_url_when_the_first_is_dead(hub_factory, spoke):
    hub = hub_factory()
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"nats-leaf://127.0.0.1:{s.getsockname()[1]}"
    server = await spoke([dead, hub.leaf_url], no_randomize=True)
    assert server.leafnodes[0].url == hub.leaf_url


async def test_urls_learned_from_the_hub(hub_factory, spoke):
    hub = hub_factory()
    server = await spoke(hub)
    assert any(u.endswith(f":{hub.leaf_port}") for u in server.leaf_remotes[0].urls)


async def test_two_remotes_into_one_hub_are_no_loop(hub_factory, server_factory):
    """Two remotes of one server into one hub account: as a nats-server spoke (which
    sends its name as `cluster`), both links stay up; a true loop (through a second
    hub) is tests/cluster/test_link.py's."""
    hub = hub_factory()
    remotes = [LeafRemoteOptions(urls=[hub.leaf_url]), LeafRemoteOptions(urls=[hub.leaf_url])]
    server = await server_factory(leafnodes__remotes=remotes, leafnodes__reconnect=0.2)
    await eventually(lambda: len(server.leafnodes) == 2, timeout=10)
    await asyncio.sleep(1.0)
    assert len(server.leafnodes) == 2
    assert all(r.last_error == "" for r in server.leaf_remotes)


async def test_our_loop_subject_coming_back_closes_the_link(spoke):
    """A hub that sends our own $LDS subject back: loop, -ERR, no redial for 30 s."""
    port = free_port()
    answered = asyncio.Event()
    got: list[bytes] = []

    async def fake_hub(reader, writer):
        writer.write(b'INFO {"server_id":"FAKE","server_name":"fake"}\r\n')
        await writer.drain()
        await reader.readline()  # CONNECT
        line = b""
        while not line.startswith(b"LS+ $LDS."):
            line = await reader.readline()
        writer.write(line)  # our own loop subject, back
        await writer.drain()
        got.append(await asyncio.wait_for(reader.read(), 5))  # until the spoke closes
        answered.set()
        writer.close()

    fake = await asyncio.start_server(fake_hub, "127.0.0.1", port)
    try:
        server = await spoke([f"nats-leaf://127.0.0.1:{port}"], wait=False)
        await asyncio.wait_for(answered.wait(), 5)
        assert b"Loop detected" in got[0]
        await eventually(lambda: server.leaf_remotes[0].last_error == "Loop detected")
        await asyncio.sleep(0.8)
        assert server.leaf_remotes[0].connects == 1  # not redialled
    finally:
        fake.close()


async def test_deny_rules_both_ways(hub_factory, spoke):
    hub = hub_factory()
    server = await spoke(hub, deny_exports=["secret.>"], deny_imports=["private.>"])
    up, down = await connect(hub.client_url), await connect(server)
    got_up: list = []
    got_down: list = []
    await up.subscribe(">", cb=collector(got_up))
    await down.subscribe("private.x", cb=collector(got_down))
    await down.subscribe("public.x", cb=collector(got_down))
    await settle(up, down)
    await down.publish("secret.a", b"no")
    await down.publish("open.a", b"yes")
    await up.publish("private.x", b"no")
    await up.publish("public.x", b"yes")
    await settle(up, down)
    await asyncio.sleep(0.3)
    assert [d for _, s, d, _ in got_up if s in ("secret.a", "open.a")] == [b"yes"]
    assert [d for _, _, d, _ in got_down] == [b"yes"]
    await up.close()
    await down.close()


async def test_a_hub_that_never_answers_does_not_stop_the_server(spoke):
    """A remote that accepts TCP and says nothing: the handshake times out, retried,
    while the server serves."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(5)
    try:
        server = await spoke([f"nats-leaf://127.0.0.1:{lsock.getsockname()[1]}"], wait=False)
        assert not await server.leaf_ready(0.5)
        nc = await connect(server)
        assert (await nc.request("$JS.API.INFO", b"", timeout=2)).data
        await nc.close()
    finally:
        lsock.close()


@pytest.mark.parametrize("garbage", [b"LMSG x 5\r\nhelloXX", b"BOGUS\r\n"])
async def test_garbage_from_the_hub_closes_the_link_only(spoke, garbage):
    """A 'hub' that speaks garbage after a valid handshake: the link closes (and is
    retried), clients are not affected."""
    port = free_port()
    seen = asyncio.Event()

    async def fake_hub(reader, writer):
        writer.write(b'INFO {"server_id":"FAKE","server_name":"fake"}\r\n')
        await writer.drain()
        await reader.readline()  # CONNECT
        seen.set()
        writer.write(garbage)
        await writer.drain()
        await asyncio.sleep(1)
        writer.close()

    fake = await asyncio.start_server(fake_hub, "127.0.0.1", port)
    try:
        server = await spoke([f"nats-leaf://127.0.0.1:{port}"], wait=False)
        await asyncio.wait_for(seen.wait(), 5)
        await eventually(lambda: server.leaf_remotes[0].connects >= 1)
        await eventually(lambda: not server.leafnodes or server.leafnodes[0].closing)
        nc = await connect(server)
        await nc.flush()
        await nc.close()
    finally:
        fake.close()


async def test_a_hub_consumer_delivers_to_a_client_of_ours(hub_factory, spoke):
    """A push consumer of the hub's JetStream with its deliver subject on our side: the
    client sees the stream's subject and a plain $JS.ACK reply (nats-server encodes
    them as '<ack>@<subject>' over the link), and its ack reaches the hub."""
    hub = hub_factory()
    server = await spoke(hub)
    nc = await connect(server)
    js = nc.jetstream(domain="hub")
    await js.add_stream(name="EV", subjects=["ev.>"])
    got: list = []

    async def cb(msg):
        got.append((msg.subject, msg.reply))
        await msg.ack()

    await js.subscribe("ev.>", cb=cb, durable="d1", manual_ack=True)
    await js.publish("ev.one", b"1")
    await eventually(lambda: got)
    subject, reply = got[0]
    assert subject == "ev.one"
    assert reply.startswith("$JS.ACK.") and "@" not in reply
    for _ in range(50):
        info = await js.consumer_info("EV", "d1")
        if info.num_ack_pending == 0:
            break
        await asyncio.sleep(0.05)
    assert info.num_ack_pending == 0 and info.delivered.stream_seq == 1
    await nc.close()


async def test_a_hub_error_that_is_not_fatal_keeps_the_link(spoke):
    """-ERR during the handshake (a refused subscription, say) is logged; only a hub
    that closes the link ends it."""
    port = free_port()

    async def fake_hub(reader, writer):
        writer.write(b'INFO {"server_id":"FAKE","server_name":"fake","info_on_connect":true}\r\n')
        await writer.drain()
        await reader.readline()  # CONNECT
        writer.write(b"-ERR 'maximum subscriptions exceeded'\r\n")
        writer.write(b'INFO {"server_id":"FAKE","connect_info":true}\r\n')
        await writer.drain()
        await asyncio.sleep(1)
        writer.close()

    fake = await asyncio.start_server(fake_hub, "127.0.0.1", port)
    try:
        server = await spoke([f"nats-leaf://127.0.0.1:{port}"])
        await asyncio.sleep(0.3)
        assert server.leafnodes and server.leafnodes[0].remote_name == "fake"
        assert server.leaf_remotes[0].connects == 1
    finally:
        fake.close()
