"""MQTT state in the hub's JetStream across hybridbus nodes: a real 3-member nats-server
2.15.1 cluster (JetStream domain hub, R3) and `hybridbus serve` nodes linked to it as
leaf nodes with `mqtt { js_domain: hub, stream_replicas: 3 }` (tests/cluster/conftest.py).
paho-mqtt 3.1.1 and 5.0 devices move between nodes."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.cluster.test_jspersist_local import IDS, PROTOCOLS, V5, Dev, run


def connect_when_ready(port: int, client_id: str, protocol, persistent=True, timeout=15.0):
    """A node refuses CONNECTs needing state (0x03/0x88) until its streams exist in the
    domain: try until it accepts."""
    deadline = time.monotonic() + timeout
    while True:
        dev = Dev(port, client_id, protocol, persistent)
        present, rc = dev.connect()
        if rc == 0:
            return dev, present
        dev.client.loop_stop()
        if time.monotonic() > deadline:
            raise AssertionError(f"{client_id}: CONNACK {rc} for {timeout}s")
        time.sleep(0.2)


def _nodes(hb_node, *names):
    nodes = [hb_node(name) for name in names]
    for node in nodes:
        node.wait_linked()
    return nodes


@pytest.mark.parametrize("protocol", PROTOCOLS, ids=IDS)
async def test_device_moves_after_kill9(hb_node, protocol):
    a, b = _nodes(hb_node, "hb-a", "hb-b")
    cid = f"mover-{protocol}-{time.time_ns()}"
    dev, present = await run(connect_when_ready, a.mqtt_port, cid, protocol)
    assert not present
    await run(dev.subscribe, "plant/+/temp", 1)
    await run(dev.stop)
    pub, _ = await run(connect_when_ready, b.mqtt_port, f"pub-{cid}", protocol, False)
    for i in range(5):
        await run(pub.publish, f"plant/l{i}/temp", b"q%d" % i, 1)
    a.kill()
    started = time.monotonic()
    dev, present = await run(connect_when_ready, b.mqtt_port, cid, protocol)
    assert present
    got = await run(dev.drain, 5, 10.0)
    took = time.monotonic() - started
    assert [m.payload for m in got] == [b"q%d" % i for i in range(5)], took
    for i in range(3):
        await run(pub.publish, "plant/x/temp", b"live%d" % i, 1)
    got = await run(dev.drain, 3)
    assert [m.payload for m in got] == [b"live0", b"live1", b"live2"]
    assert await run(dev.quiet, 0.5) == []
    await run(dev.stop)
    await run(pub.stop)


@pytest.mark.parametrize("protocol", PROTOCOLS, ids=IDS)
async def test_takeover_across_nodes(hb_node, protocol):
    a, b = _nodes(hb_node, "hb-a", "hb-b")
    cid = f"twin-{protocol}-{time.time_ns()}"
    first, _ = await run(connect_when_ready, a.mqtt_port, cid, protocol)
    await run(first.subscribe, "t/#", 1)
    started = time.monotonic()
    second, present = await run(connect_when_ready, b.mqtt_port, cid, protocol)
    assert present
    rc = await run(first.disconnects.get, True, 5.0)
    took = time.monotonic() - started
    if protocol == V5:
        assert rc == 0x8E  # Session taken over
    assert took < 5.0
    # the session (and its subscription) lives on at B; messages reach only B
    pub, _ = await run(connect_when_ready, a.mqtt_port, f"pub-{cid}", protocol, False)
    await run(pub.publish, "t/1", b"after", 1)
    got = await run(second.drain, 1)
    assert [m.payload for m in got] == [b"after"]
    assert await run(second.quiet, 0.3) == []
    assert first.messages.empty()
    first.client.loop_stop()
    await run(second.stop)
    await run(pub.stop)


@pytest.mark.parametrize("protocol", PROTOCOLS, ids=IDS)
async def test_retained_across_nodes(hb_node, protocol):
    a, b = _nodes(hb_node, "hb-a", "hb-b")
    tag = f"{protocol}-{time.time_ns()}"
    topic = f"ret/{tag}"
    pub, _ = await run(connect_when_ready, a.mqtt_port, f"rp-{tag}", protocol, False)
    await run(pub.publish, topic, b"kept", 1, True)
    # B's retained index follows HB_rmsgs: a new subscriber there gets it
    deadline = time.monotonic() + 5
    while True:
        sub, _ = await run(connect_when_ready, b.mqtt_port, f"rs-{tag}", protocol, False)
        await run(sub.subscribe, topic, 1)
        got = await run(sub.drain, 1, 0.5)
        await run(sub.stop)
        if got or time.monotonic() > deadline:
            break
    assert [(m.payload, m.retain) for m in got] == [(b"kept", True)]
    # cleared on B: gone on A too
    await run(sub.connect)
    await run(sub.publish, topic, b"", 1, True)
    await run(sub.stop)
    await asyncio.sleep(0.3)
    late, _ = await run(connect_when_ready, a.mqtt_port, f"rl-{tag}", protocol, False)
    await run(late.subscribe, topic, 1)
    assert await run(late.drain, 1, 0.5) == []
    await run(late.stop)
    await run(pub.stop)


@pytest.mark.parametrize("protocol", PROTOCOLS, ids=IDS)
async def test_exactly_one_copy_and_qos2_across_nodes(hb_node, protocol):
    """A persistent session on A, publishers on A and on B: every QoS 1 and QoS 2
    message once (its consumer; never the router too), QoS 0 once through the router."""
    a, b = _nodes(hb_node, "hb-a", "hb-b")
    tag = f"{protocol}-{time.time_ns()}"
    dev, _ = await run(connect_when_ready, a.mqtt_port, f"d-{tag}", protocol)
    await run(dev.subscribe, f"x/{tag}/#", 2)
    pa, _ = await run(connect_when_ready, a.mqtt_port, f"pa-{tag}", protocol)
    pb, _ = await run(connect_when_ready, b.mqtt_port, f"pb-{tag}", protocol)
    sent = []
    for qos in (0, 1, 2):
        for pub, where in ((pa, "a"), (pb, "b")):
            payload = f"{where}{qos}".encode()
            await run(pub.publish, f"x/{tag}/{where}", payload, qos)
            sent.append((payload, qos))
    got = await run(dev.drain, len(sent), 8.0)
    got += await run(dev.quiet, 0.5)
    assert sorted((m.payload, m.qos) for m in got) == sorted(sent)
    for c in (dev, pa, pb):
        await run(c.stop)


async def _raw_connect(
    port: int, cid: str, present: int, timeout: float = 15.0, connack_timeout: float = 5.0
):
    """A raw 3.1.1 persistent connection, retried while the node is not ready."""
    from tests.helpers import mqtt_packets as mp
    from tests.helpers.wire import Wire

    deadline = time.monotonic() + timeout
    while True:
        wire = await Wire.open(port)
        await wire.send(mp.connect(cid, clean=False))
        head = (await wire.expect_re(rb"\x20\x02..", timeout=connack_timeout)).group(0)
        if head[3] == 0:
            assert head[2] == present, head
            return wire
        wire.writer.close()
        assert time.monotonic() < deadline, head
        await asyncio.sleep(0.2)


async def test_live_takeover_hands_over_inflight(hb_node):
    """A message in flight (unacknowledged) on node A when the device reconnects to B:
    A gives it back (-NAK) and B sends it at once with DUP=1, not after ack_wait."""
    from tests.helpers import mqtt_packets as mp
    from tests.helpers.wire import mqtt_packets

    a, b = _nodes(hb_node, "hb-a", "hb-b")
    cid = f"handover-{time.time_ns()}"
    dev = await _raw_connect(a.mqtt_port, cid, 0)
    await dev.send(mp.subscribe(1, ("h/#", 1)))
    await dev.expect(mp.suback(1, 1), timeout=10)
    pub = await _raw_connect(b.mqtt_port, f"pub-{cid}", 0)
    await pub.send(mp.publish("h/1", b"inflight", qos=1, mid=3))
    await pub.expect(mp.puback(3), timeout=10)
    (first,) = await mqtt_packets(dev, 1, level=4, timeout=10)
    assert first.payload == b"inflight"
    started = time.monotonic()
    moved = await _raw_connect(b.mqtt_port, cid, 1)
    (again,) = await mqtt_packets(moved, 1, level=4, timeout=10)
    assert again.payload == b"inflight" and again.dup
    assert time.monotonic() - started < 5.0  # ack_wait is 30 s
    await moved.send(mp.puback(again.packet_id))
    with pytest.raises(AssertionError):
        await mqtt_packets(moved, 1, level=4, timeout=0.5)
    for w in (dev, pub, moved):
        w.writer.close()


async def test_filters_change_and_move(hb_node):
    """SUBSCRIBE and UNSUBSCRIBE change the session's consumer (overlapping filters
    give one copy); the filters move with the session to another node."""
    from tests.helpers import mqtt_packets as mp
    from tests.helpers.wire import mqtt_packets

    a, b = _nodes(hb_node, "hb-a", "hb-b")
    cid = f"filters-{time.time_ns()}"
    dev = await _raw_connect(a.mqtt_port, cid, 0)
    await dev.send(mp.subscribe(1, ("c/a", 1)))
    await dev.expect(mp.suback(1, 1), timeout=10)
    await dev.send(mp.subscribe(2, ("c/#", 1), ("+/a", 1)))  # overlapping: one consumer
    await dev.expect(mp.suback(2, 1, 1), timeout=10)
    pub = await _raw_connect(b.mqtt_port, f"pub-{cid}", 0)

    async def publish(topic: str, payload: bytes, mid: int) -> None:
        await pub.send(mp.publish(topic, payload, qos=1, mid=mid))
        await pub.expect(mp.puback(mid), timeout=10)

    async def received(wire, n: int) -> list:
        got = await mqtt_packets(wire, n, level=4, timeout=10) if n else []
        for p in got:
            await wire.send(mp.puback(p.packet_id))
        with pytest.raises(AssertionError):
            await mqtt_packets(wire, 1, level=4, timeout=0.4)  # nothing more
        return [p.payload for p in got]

    await publish("c/a", b"1", 1)
    await publish("c/b", b"2", 2)
    assert await received(dev, 2) == [b"1", b"2"]
    await dev.send(mp.unsubscribe(3, "c/#", "+/a"))
    await dev.expect(mp.unsuback(3), timeout=10)
    await publish("c/b", b"3", 3)
    await publish("c/a", b"4", 4)
    assert await received(dev, 1) == [b"4"]
    dev.writer.close()
    await asyncio.sleep(0.2)
    moved = await _raw_connect(b.mqtt_port, cid, 1)
    await publish("c/b", b"5", 5)
    await publish("c/a", b"6", 6)
    assert await received(moved, 1) == [b"6"]
    for w in (pub, moved):
        w.writer.close()


async def test_puback_acks_the_hub_consumer(hb_node, nats_cluster):
    """The device's PUBACK reaches the session's consumer in the hub (no redelivery
    after ack_wait, nothing pending)."""
    import nats

    from hybridbus.mqtt.broker import session_key
    from tests.helpers import mqtt_packets as mp
    from tests.helpers.wire import mqtt_packets

    (a,) = _nodes(hb_node, "hb-a")
    cid = f"acker-{time.time_ns()}"
    dev = await _raw_connect(a.mqtt_port, cid, 0)
    await dev.send(mp.subscribe(1, (f"k/{cid}", 1)))
    await dev.expect(mp.suback(1, 1), timeout=10)
    pub = await _raw_connect(a.mqtt_port, f"pub-{cid}", 0)
    await pub.send(mp.publish(f"k/{cid}", b"ack me", qos=1, mid=3))
    await pub.expect(mp.puback(3), timeout=10)
    (got,) = await mqtt_packets(dev, 1, level=4, timeout=10)
    await dev.send(mp.puback(got.packet_id))
    nc = await nats.connect(nats_cluster.client_url(0))
    try:
        js = nc.jetstream(domain="hub")
        name = "HB_" + session_key(cid)
        for _ in range(100):
            info = await js.consumer_info("HB_msgs", name)
            if info.num_ack_pending == 0:
                break
            await asyncio.sleep(0.05)
        assert (info.num_ack_pending, info.num_pending, info.delivered.stream_seq > 0) == (
            0,
            0,
            True,
        )
        # HB_msgs has interest retention: acked by its only consumer, the message is gone
        with pytest.raises(nats.js.errors.NotFoundError):
            await js.get_last_msg("HB_msgs", f"$HB.msgs.k.{cid}")
    finally:
        await nc.close()
    for w in (dev, pub):
        w.writer.close()


async def test_qos2_flows_move_between_nodes(hb_node):
    """Both QoS 2 flows survive a move mid-flow: a publisher's PUBLISH kept on A is
    delivered on its PUBREL at B (once), and a PUBREL owed to a subscriber on A is
    re-sent by B with its packet id [MQTT-4.3.3-5: never the PUBLISH again]."""
    from tests.helpers import mqtt_packets as mp
    from tests.helpers.wire import mqtt_packets

    a, b = _nodes(hb_node, "hb-a", "hb-b")
    tag = time.time_ns()
    sub = await _raw_connect(a.mqtt_port, f"q2sub-{tag}", 0)
    await sub.send(mp.subscribe(1, (f"q2/{tag}", 2)))
    await sub.expect(mp.suback(1, 2), timeout=10)
    pub = await _raw_connect(a.mqtt_port, f"q2pub-{tag}", 0)
    await pub.send(mp.publish(f"q2/{tag}", b"once", qos=2, mid=9))
    await pub.expect(mp.pubrec(9), timeout=10)
    pub.writer.close()  # no PUBREL yet: the message waits in HB_qos2in
    await asyncio.sleep(0.2)
    pub = await _raw_connect(b.mqtt_port, f"q2pub-{tag}", 1)
    await pub.send(mp.pubrel(9))
    await pub.expect(mp.pubcomp(9), timeout=10)
    (msg,) = await mqtt_packets(sub, 1, level=4, timeout=10)
    assert (msg.payload, msg.qos) == (b"once", 2)
    await sub.send(mp.pubrec(msg.packet_id))
    await sub.expect(mp.pubrel(msg.packet_id), timeout=10)
    sub.writer.close()  # no PUBCOMP: the PUBREL stays owed (HB_out)
    await asyncio.sleep(0.2)
    sub = await _raw_connect(b.mqtt_port, f"q2sub-{tag}", 1)
    await sub.expect(mp.pubrel(msg.packet_id), timeout=10)
    await sub.send(mp.pubcomp(msg.packet_id))
    # a re-sent PUBREL for the finished flow delivers nothing again
    await pub.send(mp.pubrel(9))
    await pub.expect(mp.pubcomp(9), timeout=10)
    with pytest.raises(AssertionError):
        await mqtt_packets(sub, 1, level=4, timeout=0.5)
    sub.writer.close()
    await asyncio.sleep(0.2)
    sub = await _raw_connect(a.mqtt_port, f"q2sub-{tag}", 1)
    with pytest.raises(AssertionError):
        await mqtt_packets(sub, 1, level=4, timeout=0.5)  # nothing owed any more
    for w in (sub, pub):
        w.writer.close()


async def test_hub_unreachable(hb_node):
    """No hub to reach (a remote nobody listens on): a CONNECT that needs state gets
    CONNACK 0x03 (3.1.1, exact bytes) / 0x88 (5.0) at once; a clean session connects
    and QoS 0 works."""
    from paho.mqtt.client import MQTTv5

    from tests.cluster.conftest import unique_port
    from tests.helpers import mqtt_packets as mp
    from tests.helpers.wire import Wire

    node = hb_node("hb-x", remotes=[[f"nats-leaf://127.0.0.1:{unique_port()}"]], js_domain="hub")
    wire = await Wire.open(node.mqtt_port)
    started = time.monotonic()
    await wire.send(mp.connect("lonely", clean=False))
    await wire.expect(mp.connack(0, 3), timeout=5)
    assert time.monotonic() - started < 1.0
    dev = Dev(node.mqtt_port, "lonely5", MQTTv5)
    present, rc = await run(dev.connect)
    assert rc == "Server unavailable" and rc.value == 0x88
    dev.client.loop_stop()
    clean = Dev(node.mqtt_port, "clean", MQTTv5, persistent=False)
    assert (await run(clean.connect))[1] == 0
    await run(clean.subscribe, "u/#", 0)
    await run(clean.publish, "u/1", b"q0", 0)
    assert [m.payload for m in await run(clean.drain, 1)] == [b"q0"]
    await run(clean.stop)


async def test_takeover_missed_during_a_link_outage(hb_node, tmp_path):
    """Node A's link is down while the device's id is claimed at node B: A misses the
    claim's event, and lets its connection go once it relinks (it reads the records of
    its sessions again). The hub does not advertise its other leaf URLs, so A (whose
    only remote is the killed member) stays unlinked until that member is back."""
    from tests.cluster.conftest import NatsCluster

    def quiet_conf(cluster: NatsCluster, p) -> str:
        text = NatsCluster._conf(cluster, p)
        return text.replace("leafnodes {\n", "leafnodes {\n  no_advertise: true\n", 1)

    cluster = NatsCluster(tmp_path / "hub", conf=quiet_conf)
    try:
        cluster.start()
        a = hb_node("hb-a", cluster=cluster, remotes=[[cluster.leaf_url(0)]])
        b = hb_node("hb-b", cluster=cluster, remotes=[[cluster.leaf_url(1), cluster.leaf_url(2)]])
        a.wait_linked()
        b.wait_linked()
        cid = f"split-{time.time_ns()}"
        first = await _raw_connect(a.mqtt_port, cid, 0)
        cluster.kill(0)
        a.wait_unlinked(timeout=15)
        # the killed member may have led HB_sess: the claim waits for the election
        second = await _raw_connect(b.mqtt_port, cid, 1, timeout=20, connack_timeout=11)
        await asyncio.sleep(0.5)
        assert not first.reader.at_eof()  # A has not heard of it
        cluster.restart(0)
        a.wait_linked(timeout=15)
        data = await asyncio.wait_for(first.reader.read(100), 10)
        assert data == b""  # 3.1.1: closed (taken over)
        second.writer.close()
    finally:
        cluster.stop()
