"""Runs of PUBLISHes in one read: handle_publish_run / Server.route_run must do what
one handle_publish per packet would, in order, for every kind of receiver.

Each test sends its PUBLISHes in one write, so the server reads them as one chunk."""

from __future__ import annotations

from hybridbus.codec.mqtt import Disconnect, Puback, Publish
from hybridbus.options import AuthOptions, Permissions, User
from tests.helpers import mqtt_packets as mp
from tests.helpers.wire import mqtt5_connect, mqtt_connect, mqtt_packets, nats_connect


def run(topic: str, payloads: list[bytes], qos: int = 1, first_mid: int = 1, level: int = 4):
    return b"".join(
        mp.publish(topic, p, qos=qos, mid=first_mid + i if qos else 0, level=level)
        for i, p in enumerate(payloads)
    )


async def subscriber(port: int, client_id: str, *filters: tuple[str, int], clean: bool = True):
    wire = await mqtt_connect(port, client_id, clean=clean)
    await wire.send(mp.subscribe(1, *filters))
    await wire.expect(mp.suback(1, *(qos for _, qos in filters)))
    return wire


async def test_qos1_run_delivered_and_acked_in_order(server_factory):
    server = await server_factory()
    sub = await subscriber(server.mqtt_port, "s", ("r/1", 1))
    pub = await mqtt_connect(server.mqtt_port, "p")
    payloads = [b"m%03d" % i for i in range(200)]
    await pub.send(mp.publish("r/1", b"warm", qos=1, mid=999))  # the topic is now known
    await pub.expect(mp.puback(999))
    await sub.expect(mp.publish("r/1", b"warm", qos=1, mid=1))
    await sub.send(mp.puback(1))
    await pub.send(run("r/1", payloads))
    await pub.expect(b"".join(mp.puback(i + 1) for i in range(200)))
    await sub.expect(
        b"".join(mp.publish("r/1", p, qos=1, mid=i + 2) for i, p in enumerate(payloads))
    )
    session = server.mqtt.sessions["s"]
    assert len(session.inflight) == 200  # nothing acked by the subscriber yet
    await sub.send(b"".join(mp.puback(i + 2) for i in range(200)))
    await sub.send(mp.PINGREQ)
    await sub.expect(mp.PINGRESP)
    assert not session.inflight and not session.pids


async def test_first_sight_of_a_topic_and_qos0_run(server_factory):
    server = await server_factory()
    sub = await subscriber(server.mqtt_port, "s", ("q0/#", 1))
    pub = await mqtt_connect(server.mqtt_port, "p")
    payloads = [b"%d" % i for i in range(50)]
    await pub.send(run("q0/a", payloads, qos=0))
    # published at QoS 0: delivered at QoS 0 whatever the subscription grants
    await sub.expect(b"".join(mp.publish("q0/a", p) for p in payloads))
    await sub.expect_nothing(0.1)


async def test_run_reaches_nats_qos0_and_overlapping_filters_once(server_factory):
    server = await server_factory()
    both = await subscriber(server.mqtt_port, "both", ("o/x", 0), ("o/+", 1))
    low = await subscriber(server.mqtt_port, "low", ("o/#", 0))
    nats = await nats_connect(server.nats_port)
    await nats.send(b"SUB o.x 1\r\nPING\r\n")
    await nats.expect(b"PONG\r\n")
    pub = await mqtt_connect(server.mqtt_port, "p")
    payloads = [b"v%d" % i for i in range(30)]
    await pub.send(run("o/x", payloads[:1]) + run("o/x", payloads[1:], first_mid=2))
    await pub.expect(b"".join(mp.puback(i + 1) for i in range(30)))
    # one copy per session, at the highest granted QoS [MQTT-3.3.4-2]
    await both.expect(
        b"".join(mp.publish("o/x", p, qos=1, mid=i + 1) for i, p in enumerate(payloads))
    )
    await low.expect(b"".join(mp.publish("o/x", p) for p in payloads))
    await nats.expect(b"".join(b"MSG o.x 1 %d\r\n%s\r\n" % (len(p), p) for p in payloads))
    await both.expect_nothing(0.1)


async def test_run_to_shared_subscription_and_back_to_publisher(server_factory):
    server = await server_factory()
    shared = await subscriber(server.mqtt_port, "g1", ("$share/g/sh/t", 1))
    pub = await mqtt_connect(server.mqtt_port, "p")
    await pub.send(mp.subscribe(1, ("sh/t", 0)))
    await pub.expect(mp.suback(1, 0))
    payloads = [b"s%d" % i for i in range(20)]
    await pub.send(run("sh/t", payloads[:1]) + run("sh/t", payloads[1:], first_mid=2))
    # MQTT 3.1.1 has no No Local: the publisher's own subscription gets them too
    got = await mqtt_packets(pub, 40, level=4)
    acks = [p.packet_id for p in got if isinstance(p, Puback)]
    own = [p.payload for p in got if isinstance(p, Publish)]
    assert acks == list(range(1, 21)) and own == payloads
    await shared.expect(
        b"".join(mp.publish("sh/t", p, qos=1, mid=i + 1) for i, p in enumerate(payloads))
    )


async def test_no_local_applies_to_a_run(server_factory):
    server = await server_factory()
    wire, _ = await mqtt5_connect(server.mqtt_port, "nl")
    await wire.send(mp.subscribe(1, ("loop", 0x04 | 1), level=5))  # QoS 1 + No Local
    await mqtt_packets(wire, 1)
    await wire.send(run("loop", [b"a"], level=5) + run("loop", [b"b", b"c"], first_mid=2, level=5))
    packets = await mqtt_packets(wire, 3)
    assert [p.packet_id for p in packets if isinstance(p, Puback)] == [1, 2, 3]
    await wire.expect_nothing(0.2)  # none of its own messages came back


async def test_wildcard_topic_inside_a_run_is_a_protocol_error(server_factory):
    server = await server_factory()
    sub = await subscriber(server.mqtt_port, "s", ("#", 0))
    pub = await mqtt_connect(server.mqtt_port, "p")
    await pub.send(run("bad/+", [b"1", b"2", b"3"]))
    await pub.expect_closed()  # [MQTT-3.3.2-2]: 3.1.1 closes without a PUBACK
    await sub.expect_nothing(0.1)


async def test_denied_publish_in_a_run_gets_0x87_each_and_routes_nothing(server_factory):
    perms = Permissions(publish_allow=["ok.>"])
    server = await server_factory(auth=AuthOptions(users=[User("dev", "pw", perms)]))
    pub, _ = await mqtt5_connect(server.mqtt_port, "p", username="dev", password=b"pw")
    await pub.send(run("secret/x", [b"1", b"2", b"3"], level=5))
    acks = await mqtt_packets(pub, 3)
    assert [(a.packet_id, a.reason_code) for a in acks] == [(1, 0x87), (2, 0x87), (3, 0x87)]


async def test_run_beyond_receive_maximum_disconnects_0x93(server_factory):
    server = await server_factory(mqtt__receive_maximum=2)
    # a persistent subscriber makes each PUBACK wait for the store, so acks pile up
    keep = await subscriber(server.mqtt_port, "keep", ("rm", 1), clean=False)
    wire, _ = await mqtt5_connect(server.mqtt_port, "greedy")
    await wire.send(mp.publish("rm", b"0", qos=1, mid=9, level=5))  # topic known
    await mqtt_packets(wire, 1)
    await wire.send(run("rm", [b"1", b"2", b"3"], level=5))
    # The third is one more than Receive Maximum [MQTT-3.3.4-9]: DISCONNECT 0x93 (the
    # first two were still waiting for the store, so their PUBACKs never went out).
    (disconnect,) = await mqtt_packets(wire, 1)
    assert isinstance(disconnect, Disconnect) and disconnect.reason_code == 0x93
    await wire.expect_closed()
    got = await mqtt_packets(keep, 3, level=4)
    assert [p.payload for p in got] == [b"0", b"1", b"2"]  # the third was never routed
    await keep.expect_nothing(0.1)


async def test_offline_persistent_session_keeps_a_run_across_restart(server_process):
    proc = server_process().start()
    port = proc.ports["mqtt"]
    sub = await subscriber(port, "keeper", ("k/t", 1), clean=False)
    await sub.close()
    pub = await mqtt_connect(port, "p")
    payloads = [b"k%d" % i for i in range(100)]
    await pub.send(run("k/t", payloads[:1]) + run("k/t", payloads[1:], first_mid=2))
    await pub.expect(b"".join(mp.puback(i + 1) for i in range(100)))
    await pub.close()
    assert proc.stop() == 0
    proc = proc.start()
    sub = await mqtt_connect(port, "keeper", clean=False, expect_present=1)
    got = await mqtt_packets(sub, 100, level=4)
    assert [p.payload for p in got] == payloads
    assert all(p.qos == 1 for p in got)
    proc.stop()


async def test_puback_run_with_unknown_and_repeated_ids(server_factory):
    server = await server_factory()
    sub = await subscriber(server.mqtt_port, "s", ("a/1", 1))
    pub = await mqtt_connect(server.mqtt_port, "p")
    await pub.send(mp.publish("a/1", b"x", qos=1, mid=1))
    await pub.expect(mp.puback(1))
    await pub.send(run("a/1", [b"y", b"z"], first_mid=2))
    await pub.expect(mp.puback(2) + mp.puback(3))
    await sub.expect(
        b"".join(mp.publish("a/1", p, qos=1, mid=i + 1) for i, p in enumerate([b"x", b"y", b"z"]))
    )
    session = server.mqtt.sessions["s"]
    # 7 was never sent, 2 is acknowledged twice: both ignored, the rest take effect
    await sub.send(mp.puback(7) + mp.puback(2) + mp.puback(2) + mp.puback(1) + mp.PINGREQ)
    await sub.expect(mp.PINGRESP)
    assert sorted(session.inflight) == [3] and session.pids == {3}
    await sub.send(mp.puback(3) + mp.puback(3) + mp.PINGREQ)
    await sub.expect(mp.PINGRESP)
    assert not session.inflight and not session.pids


async def test_store_refusing_one_publish_fails_only_its_ack(server_factory):
    # A QoS 2 message and a QoS 1 message too big for the store's quota arrive in one
    # read: the first is stored and acknowledged, only the second is refused (0x80).
    # A refused QoS 2 id is released at once [5.0 section 4.3.3]: reused for a new
    # message, it is routed, not taken for a re-send.
    from hybridbus.codec.mqtt import Pubrec

    server = await server_factory(jetstream__max_file_store=20000)
    await subscriber(server.mqtt_port, "keep", ("q/#", 2), clean=False)
    live = await subscriber(server.mqtt_port, "live", ("q/#", 0))
    pub, _ = await mqtt5_connect(server.mqtt_port, "p", clean=False)
    await pub.send(
        mp.publish("q/a", b"small", qos=2, mid=7, level=5)
        + mp.publish("q/b", b"x" * 30000, qos=1, mid=8, level=5)
        + mp.publish("q/c", b"y" * 30000, qos=2, mid=9, level=5)
    )
    acks = await mqtt_packets(pub, 3)
    assert [(type(a).__name__, a.packet_id, a.reason_code) for a in acks] == [
        ("Pubrec", 7, 0),
        ("Puback", 8, 0x80),
        ("Pubrec", 9, 0x80),
    ]
    assert 9 not in server.mqtt.sessions["p"].incoming
    await pub.send(mp.publish("q/d", b"again", qos=2, mid=9, level=5))
    (rec,) = await mqtt_packets(pub, 1)
    assert isinstance(rec, Pubrec) and (rec.packet_id, rec.reason_code) == (9, 0)
    got = await mqtt_packets(live, 4, level=4)
    assert [p.topic for p in got] == ["q/a", "q/b", "q/c", "q/d"]


async def test_run_then_malformed_or_oversized_packet(server_factory):
    # The PUBLISHes before the bad packet are routed (and stored for the persistent
    # subscriber); the offender is closed (5.0: DISCONNECT with the reason); the
    # subscriber and other publishers keep working, and nothing routed is lost.
    server = await server_factory(mqtt__max_packet_size=256)
    keep = await subscriber(server.mqtt_port, "keep", ("bad/t", 1), clean=False)
    pub = await mqtt_connect(server.mqtt_port, "p")
    await pub.send(mp.publish("bad/t", b"0", qos=1, mid=9))  # the topic is known
    await pub.expect(mp.puback(9))
    malformed = b"\x32\x03\x00\x05b"  # topic length 5, only 1 byte of it
    await pub.send(run("bad/t", [b"1", b"2", b"3"]) + malformed)
    await pub.expect_closed()
    v5, _ = await mqtt5_connect(server.mqtt_port, "big")
    await v5.send(run("bad/t", [b"4"], level=5) + mp.publish("bad/t", b"x" * 300, level=5))
    # "4" was still waiting for the store when the connection closed: no PUBACK
    (disconnect,) = await mqtt_packets(v5, 1)
    assert isinstance(disconnect, Disconnect) and disconnect.reason_code == 0x95
    await v5.expect_closed()
    got = await mqtt_packets(keep, 5, level=4)
    assert [p.payload for p in got] == [b"0", b"1", b"2", b"3", b"4"]
    other = await mqtt_connect(server.mqtt_port, "other")
    await other.send(mp.publish("bad/t", b"5", qos=1, mid=1))
    await other.expect(mp.puback(1))
    (last,) = await mqtt_packets(keep, 1, level=4)
    assert last.payload == b"5"
