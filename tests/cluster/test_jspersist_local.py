"""MQTT state in a JetStream domain, on ONE hybridbus in local-domain mode:
`jetstream { domain: hub }` + `mqtt { js_domain: hub }` runs the JetStream backend
(hybridbus/mqtt/jspersist.py) against our own engine. paho-mqtt (3.1.1 and 5.0) and
nats-py against a real server."""

from __future__ import annotations

import asyncio
import queue
import threading
import time

import nats
import paho.mqtt.client as mqtt
import pytest

V311, V5 = mqtt.MQTTv311, mqtt.MQTTv5
PROTOCOLS = [V311, V5]
IDS = ["v311", "v5"]


class Dev:
    """A paho client on its own network thread."""

    def __init__(self, port: int, client_id: str, protocol=V311, persistent=True):
        kwargs = {"client_id": client_id, "protocol": protocol}
        if protocol != V5:
            kwargs["clean_session"] = not persistent
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, **kwargs)
        self.protocol = protocol
        self.persistent = persistent
        self.port = port
        self.messages: queue.Queue = queue.Queue()
        self.connack = queue.Queue()
        self.disconnects: queue.Queue = queue.Queue()
        self.subscribed = threading.Event()
        self.client.on_connect = lambda c, u, f, rc, p=None: self.connack.put((f, rc))
        self.client.on_subscribe = lambda c, u, mid, rcs, p=None: self.subscribed.set()
        self.client.on_message = lambda c, u, m: self.messages.put(m)
        self.client.on_disconnect = lambda c, u, f, rc, p=None: self.disconnects.put(rc)

    def connect(self, timeout: float = 8.0):
        """(session present, reason code)"""
        kwargs = {}
        if self.protocol == V5:
            from paho.mqtt.packettypes import PacketTypes
            from paho.mqtt.properties import Properties

            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = 3600 if self.persistent else 0
            kwargs = {"clean_start": not self.persistent, "properties": props}
        self.client.connect("127.0.0.1", self.port, keepalive=30, **kwargs)
        self.client.loop_start()
        flags, rc = self.connack.get(timeout=timeout)
        return flags.session_present, rc

    def subscribe(self, topic: str, qos: int = 1) -> None:
        self.subscribed.clear()
        self.client.subscribe(topic, qos)
        assert self.subscribed.wait(5), "no SUBACK"

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain=False) -> None:
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        info.wait_for_publish(5)
        assert info.is_published()

    def drain(self, n: int, timeout: float = 5.0) -> list:
        out = []
        deadline = time.monotonic() + timeout
        while len(out) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                out.append(self.messages.get(timeout=left))
            except queue.Empty:
                break
        return out

    def quiet(self, seconds: float = 0.3) -> list:
        """What else arrives within `seconds` (duplicates)."""
        time.sleep(seconds)
        out = []
        while not self.messages.empty():
            out.append(self.messages.get())
        return out

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def drop(self) -> None:
        """Network loss without DISCONNECT."""
        self.client.loop_stop()
        self.client.socket().close()


def run(fn, *args):
    return asyncio.get_running_loop().run_in_executor(None, fn, *args)


async def _server(server_factory, **kw):
    opts = dict(jetstream__domain="hub", mqtt__js_domain="hub", mqtt__sys_interval=0)
    opts.update(kw)
    server = await server_factory(**opts)
    jsp = server.mqtt.persistence
    for _ in range(200):
        if jsp.ready and jsp.rcons:
            break
        await asyncio.sleep(0.02)
    assert jsp.ready
    return server


@pytest.mark.parametrize("protocol", PROTOCOLS, ids=IDS)
async def test_session_present_and_queued_qos1(server_factory, protocol):
    server = await _server(server_factory)
    port = server.mqtt_port
    sub = Dev(port, "dev-1", protocol)
    assert await run(sub.connect) == (False, 0)
    await run(sub.subscribe, "a/#", 1)
    await run(sub.stop)
    pub = Dev(port, "pub-1", protocol, persistent=False)
    await run(pub.connect)
    for i in range(5):
        await run(pub.publish, f"a/{i}", b"m%d" % i, 1)
    sub = Dev(port, "dev-1", protocol)
    present, rc = await run(sub.connect)
    assert present and rc == 0
    got = await run(sub.drain, 5)
    assert [m.payload for m in got] == [b"m%d" % i for i in range(5)]
    assert all(m.qos == 1 for m in got)
    # live: exactly one copy each (consumer, not the router too)
    for i in range(3):
        await run(pub.publish, "a/live", b"L%d" % i, 1)
    got = await run(sub.drain, 3)
    assert [m.payload for m in got] == [b"L0", b"L1", b"L2"]
    assert await run(sub.quiet) == []
    await run(sub.stop)
    await run(pub.stop)


def _on_puback(dev: Dev) -> queue.Queue:
    acks: queue.Queue = queue.Queue()
    dev.client.on_publish = lambda c, u, mid, rc, p=None: acks.put(rc)
    return acks


@pytest.mark.parametrize("protocol", PROTOCOLS, ids=IDS)
async def test_puback_after_the_puback_of_the_domain(server_factory, protocol):
    server = await _server(server_factory)
    port = server.mqtt_port
    nc = await nats.connect(f"nats://127.0.0.1:{server.nats_port}")
    js = nc.jetstream(domain="hub")
    try:
        sub = Dev(port, f"keep-{protocol}", protocol)
        await run(sub.connect)
        await run(sub.subscribe, "p/#", 1)
        await run(sub.stop)  # offline: its consumer keeps what comes
        pub = Dev(port, f"pub-{protocol}", protocol, persistent=False)
        await run(pub.connect)
        for i in range(3):
            await run(pub.publish, "p/1", b"%d" % i, 1)
        # every PUBACKed message is in the domain's HB_msgs (held for the offline session)
        info = await js.stream_info("HB_msgs")
        assert info.state.messages == 3
        # the domain refuses (no stream captures the subject): no positive PUBACK
        await js.delete_stream("HB_msgs")
        acks = _on_puback(pub)
        pub.client.publish("p/1", b"lost", qos=1)
        if protocol == V5:
            rc = await run(acks.get, True, 5.0)
            assert rc == 0x80  # Unspecified error
        else:
            rc = await run(pub.disconnects.get, True, 5.0)  # 3.1.1: closed, re-sends later
            assert acks.empty()
        pub.client.loop_stop()
    finally:
        await nc.close()


@pytest.mark.parametrize("protocol", PROTOCOLS, ids=IDS)
async def test_domain_unreachable(server_factory, protocol):
    """A CONNECT needing state gets CONNACK 0x03 (3.1.1) / 0x88 (5.0) at once, a clean
    one connects; open connections keep working; the domain back, CONNECTs succeed."""
    server = await _server(server_factory)
    port = server.mqtt_port
    online = Dev(port, f"online-{protocol}", protocol)
    await run(online.connect)
    await run(online.subscribe, "u/#", 0)
    engine = server.jetstream
    domain_subs = [s for s in engine._subs if s.subject.startswith("$JS.hub.API")]
    for s in domain_subs:
        engine.unsubscribe(s)
    started = time.monotonic()
    refused = Dev(port, f"refused-{protocol}", protocol)
    present, rc = await run(refused.connect)
    assert time.monotonic() - started < 2.0
    assert rc == "Server unavailable"
    refused.client.loop_stop()
    if protocol == V311:
        # the exact wire: CONNACK return code 0x03 Server unavailable
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"\x10\x0f\x00\x04MQTT\x04\x00\x00\x3c\x00\x03raw")
        assert await asyncio.wait_for(reader.read(4), 3) == b"\x20\x02\x00\x03"
        writer.close()
    clean = Dev(port, f"clean-{protocol}", protocol, persistent=False)
    assert (await run(clean.connect))[1] == 0
    await run(clean.publish, "u/1", b"q0", 0)
    got = await run(online.drain, 1)
    assert [m.payload for m in got] == [b"q0"]
    await run(clean.stop)
    engine.subscribe("$JS.hub.API.>", engine._domain_request)
    back = Dev(port, f"refused-{protocol}", protocol)
    assert (await run(back.connect))[1] == 0
    await run(back.stop)
    await run(online.stop)


@pytest.mark.parametrize("protocol", PROTOCOLS, ids=IDS)
async def test_takeover_on_one_node(server_factory, protocol):
    server = await _server(server_factory)
    first = Dev(server.mqtt_port, f"twin-{protocol}", protocol)
    await run(first.connect)
    await run(first.subscribe, "tw/#", 1)
    second = Dev(server.mqtt_port, f"twin-{protocol}", protocol)
    present, rc = await run(second.connect)
    assert present and rc == 0
    rc = await run(first.disconnects.get, True, 5.0)
    if protocol == V5:
        assert rc == 0x8E
    first.client.loop_stop()
    pub = Dev(server.mqtt_port, f"tp-{protocol}", protocol, persistent=False)
    await run(pub.connect)
    await run(pub.publish, "tw/1", b"one", 1)
    assert [m.payload for m in await run(second.drain, 1)] == [b"one"]
    assert await run(second.quiet) == []
    await run(second.stop)
    await run(pub.stop)


@pytest.mark.parametrize("protocol", PROTOCOLS, ids=IDS)
async def test_qos2_exactly_once_and_retained(server_factory, protocol):
    server = await _server(server_factory)
    port = server.mqtt_port
    sub = Dev(port, f"q2s-{protocol}", protocol)
    await run(sub.connect)
    await run(sub.subscribe, "q2/#", 2)
    pub = Dev(port, f"q2p-{protocol}", protocol)  # persistent: HB_qos2in until PUBREL
    await run(pub.connect)
    for i in range(5):
        await run(pub.publish, "q2/x", b"%d" % i, 2)
    got = await run(sub.drain, 5)
    got += await run(sub.quiet)
    assert [(m.payload, m.qos) for m in got] == [(b"%d" % i, 2) for i in range(5)]
    # retained: set, seen by a new subscriber, cleared (tombstone), gone
    await run(pub.publish, "q2/ret", b"kept", 1, True)
    late = Dev(port, f"q2l-{protocol}", protocol, persistent=False)
    await run(late.connect)
    await run(late.subscribe, "q2/ret", 1)
    assert [(m.payload, m.retain) for m in await run(late.drain, 1)] == [(b"kept", True)]
    await run(pub.publish, "q2/ret", b"", 1, True)
    await run(late.stop)
    late = Dev(port, f"q2l-{protocol}", protocol, persistent=False)
    await run(late.connect)
    await run(late.subscribe, "q2/ret", 1)
    assert await run(late.drain, 1, 0.5) == []
    for c in (sub, pub, late):
        await run(c.stop)


async def test_queued_messages_survive_kill9(server_process, tmp_path):
    conf = tmp_path / "hb.conf"
    conf.write_text("jetstream { domain: hub }\nmqtt { js_domain: hub }\n")
    proc = server_process(config=str(conf)).start()
    port = proc.ports["mqtt"]

    def connect(cid, persistent=True):
        deadline = time.monotonic() + 10
        while True:
            dev = Dev(port, cid, V311, persistent)
            present, rc = dev.connect()
            if rc == 0:
                return dev, present
            dev.client.loop_stop()
            assert time.monotonic() < deadline, f"CONNACK {rc}"
            time.sleep(0.1)

    dev, present = await run(connect, "survivor")
    assert not present
    await run(dev.subscribe, "k/#", 1)
    await run(dev.stop)
    pub, _ = await run(connect, "k-pub", False)
    for i in range(3):
        await run(pub.publish, "k/1", b"%d" % i, 1)
    await run(pub.publish, "k/ret", b"kept", 1, True)
    pub.client.loop_stop()
    proc.kill()  # SIGKILL
    proc.start()
    dev, present = await run(connect, "survivor")
    assert present
    got = await run(dev.drain, 4)
    got += await run(dev.quiet)
    assert sorted(m.payload for m in got) == [b"0", b"1", b"2", b"kept"]
    late, _ = await run(connect, "k-late", False)
    await run(late.subscribe, "k/ret", 1)
    assert [m.payload for m in await run(late.drain, 1)] == [b"kept"]
    await run(dev.stop)
    await run(late.stop)


async def test_inflight_resent_with_its_packet_id(server_factory):
    """Unacknowledged at a disconnect, re-sent on reconnect to the same node with the
    same packet id and DUP=1 [MQTT-4.4.0-1]; the PUBACK then acks the consumer."""
    from hybridbus.mqtt.broker import session_key
    from tests.helpers import mqtt_packets as mp
    from tests.helpers.wire import Wire, mqtt_connect, mqtt_packets

    server = await _server(server_factory)
    port = server.mqtt_port
    dev = await mqtt_connect(port, "inflight", clean=False)
    await dev.send(mp.subscribe(1, ("f/#", 1)))
    await dev.expect(mp.suback(1, 1))
    pub = await mqtt_connect(port, "inflight-pub")
    await pub.send(mp.publish("f/1", b"hello", qos=1, mid=7))
    await pub.expect(mp.puback(7))
    (first,) = await mqtt_packets(dev, 1, level=4)
    assert first.payload == b"hello" and not first.dup
    dev.writer.close()  # no PUBACK
    await asyncio.sleep(0.1)
    dev = await mqtt_connect(port, "inflight", clean=False, expect_present=1)
    (again,) = await mqtt_packets(dev, 1, level=4)
    assert (again.packet_id, again.payload, again.dup) == (first.packet_id, b"hello", True)
    await dev.send(mp.puback(again.packet_id))
    nc = await nats.connect(f"nats://127.0.0.1:{server.nats_port}")
    try:
        js = nc.jetstream(domain="hub")
        name = "HB_" + session_key("inflight")
        for _ in range(100):
            info = await js.consumer_info("HB_msgs", name)
            if info.num_ack_pending == 0:
                break
            await asyncio.sleep(0.02)
        assert info.num_ack_pending == 0 and info.num_pending == 0
    finally:
        await nc.close()
    with pytest.raises(AssertionError):
        await mqtt_packets(dev, 1, level=4, timeout=0.3)
    pub.writer.close()
    dev.writer.close()
    assert isinstance(dev, Wire)


async def test_session_expiry_removes_its_state(server_factory):
    """A 5.0 session ends Session Expiry Interval after its connection: its record and
    consumer go from the domain, and the next CONNECT finds no session."""
    from hybridbus.mqtt.broker import session_key
    from tests.helpers import mqtt_packets as mp
    from tests.helpers.wire import mqtt5_connect, mqtt_packets

    server = await _server(server_factory)
    port = server.mqtt_port
    expiry = b"\x11" + (1).to_bytes(4, "big")  # Session Expiry Interval 1 s
    dev, connack = await mqtt5_connect(port, "shortlived", clean=False, properties=expiry)
    await dev.send(mp.subscribe(1, ("e/#", 1), level=5))
    await mqtt_packets(dev, 1)
    await dev.send(b"\xe0\x00")  # DISCONNECT
    nc = await nats.connect(f"nats://127.0.0.1:{server.nats_port}")
    try:
        js = nc.jetstream(domain="hub")
        key = session_key("shortlived")
        assert (await js.consumer_info("HB_msgs", "HB_" + key)).name == "HB_" + key
        await asyncio.sleep(1.6)
        with pytest.raises(nats.js.errors.NotFoundError):
            await js.consumer_info("HB_msgs", "HB_" + key)
        with pytest.raises(nats.js.errors.NotFoundError):
            await js.get_last_msg("HB_sess", "$HB.sess." + key)
    finally:
        await nc.close()
    dev, connack = await mqtt5_connect(port, "shortlived", clean=False, properties=expiry)
    assert not connack.session_present
    dev.writer.close()


async def test_nats_messages_reach_a_persistent_session_by_the_router(server_factory):
    """NATS-originated messages are not in HB_msgs: the router brings them (QoS 1, kept
    in memory by the node holding the session), once, beside the consumer's MQTT ones."""
    server = await _server(server_factory)
    dev = Dev(server.mqtt_port, "mixed", V5)
    await run(dev.connect)
    await run(dev.subscribe, "mix/#", 1)
    nc = await nats.connect(f"nats://127.0.0.1:{server.nats_port}")
    try:
        await nc.publish("mix.nats", b"from-nats")
        await nc.flush()
        pub = Dev(server.mqtt_port, "mixed-pub", V5, persistent=False)
        await run(pub.connect)
        await run(pub.publish, "mix/mqtt", b"from-mqtt", 1)
        got = await run(dev.drain, 2)
        got += await run(dev.quiet)
        assert sorted((m.topic, m.payload, m.qos) for m in got) == [
            ("mix/mqtt", b"from-mqtt", 1),
            ("mix/nats", b"from-nats", 1),
        ]
        await run(pub.stop)
    finally:
        await nc.close()
    await run(dev.stop)


async def test_clean_start_discards_the_stored_session(server_factory):
    """A clean session on a persistent session's id ends it [MQTT-3.1.2-6]: no Session
    Present, its consumer gone from the domain, and nothing of it afterwards."""
    from hybridbus.mqtt.broker import session_key

    server = await _server(server_factory)
    port = server.mqtt_port
    dev = Dev(port, "cleaner", V311)
    await run(dev.connect)
    await run(dev.subscribe, "cl/#", 1)
    await run(dev.stop)
    clean = Dev(port, "cleaner", V311, persistent=False)
    assert await run(clean.connect) == (False, 0)
    await run(clean.stop)
    nc = await nats.connect(f"nats://127.0.0.1:{server.nats_port}")
    try:
        js = nc.jetstream(domain="hub")
        with pytest.raises(nats.js.errors.NotFoundError):
            await js.consumer_info("HB_msgs", "HB_" + session_key("cleaner"))
    finally:
        await nc.close()
    again = Dev(port, "cleaner", V311)
    assert await run(again.connect) == (False, 0)
    await run(again.stop)


async def test_claim_from_the_known_record_and_from_a_stale_one(server_factory):
    """A CONNECT claims with the last republished record (no read first); a stale one
    (another write came since, unseen here) fails the compare-and-set and the claim
    reads the stream instead: Session Present either way, its subscription kept."""
    from hybridbus.mqtt.broker import session_key

    server = await _server(server_factory)
    jsp = server.mqtt.persistence
    port = server.mqtt_port
    dev = Dev(port, "known-1")
    assert await run(dev.connect) == (False, 0)
    await run(dev.subscribe, "k/#", 1)
    await run(dev.stop)
    key = session_key("known-1")
    for _ in range(100):
        if key in jsp.known:
            break
        await asyncio.sleep(0.02)
    seq, record = jsp.known[key]  # the republished record is remembered
    dev = Dev(port, "known-1")
    assert await run(dev.connect) == (True, 0)
    await run(dev.stop)
    jsp.known[key] = (seq, record)  # now stale: the reconnect above wrote a newer one
    dev = Dev(port, "known-1")
    assert await run(dev.connect) == (True, 0)
    pub = Dev(port, "known-pub", persistent=False)
    await run(pub.connect)
    await run(pub.publish, "k/x", b"still subscribed", 1)
    got = await run(dev.drain, 1)
    assert [m.payload for m in got] == [b"still subscribed"]
    await run(dev.stop)
    await run(pub.stop)


async def test_a_connect_reads_qos2_state_only_for_sessions_that_had_some(server_factory):
    """A CONNECT that resumes a session reads its owed PUBRELs and kept inbound QoS 2
    messages (HB_out, HB_qos2in) only if its record says it ever had such state ("q2",
    set before its first QoS 2 record): a QoS 1 device's reconnect costs the hub no
    read. Each read that finds nothing is a JetStream API error (no message), counted
    by the engine answering the domain here."""
    server = await _server(server_factory)
    port = server.mqtt_port
    js = server.jetstream

    async def reconnect_errors(client_id: str) -> int:
        dev = Dev(port, client_id, V311)
        before = js.api_errors
        present, rc = await run(dev.connect)
        assert present and rc == 0
        errors = js.api_errors - before
        await run(dev.stop)
        return errors

    q1 = Dev(port, "q1-only", V311)
    await run(q1.connect)
    await run(q1.subscribe, "q1/#", 1)
    await run(q1.publish, "elsewhere/q1", b"x", 1)
    await run(q1.stop)
    q2 = Dev(port, "q2-used", V311)
    await run(q2.connect)
    await run(q2.subscribe, "q2/#", 2)
    await run(q2.publish, "q2/x", b"exactly once", 2)  # both flows, to itself
    assert [m.payload for m in await run(q2.drain, 1)] == [b"exactly once"]
    await run(q2.stop)
    await asyncio.sleep(0.3)  # the republished records reach the node's cache
    assert await reconnect_errors("q1-only") == 0
    assert await reconnect_errors("q2-used") == 2  # both streams read, both empty
