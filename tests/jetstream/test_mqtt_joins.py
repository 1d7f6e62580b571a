"""MQTT publishes captured by JetStream streams: device to stream is at-least-once.

A QoS 1/2 PUBLISH a stream captures is acknowledged (PUBACK/PUBREC) only once every
capturing stream holds it durably (MqttBroker.capture -> Persistence.join); a stream's
refusal is the MQTT 5 reason code (0x97 for limits and size, 0x83 for other
refusals); a 3.1.1 client, which has no negative ack, is disconnected so that it
re-sends. QoS 2 from a persistent session reaches the stream on PUBREL, once, also
when a kill -9 makes the client send PUBREL again. MQTT clients are raw sockets
(exact reason codes), the stream side is nats-py.
"""

from __future__ import annotations

import asyncio
import signal

import nats
import pytest
from nats.js import api
from nats.js.errors import NotFoundError

from tests.helpers import mqtt_packets as mp
from tests.helpers.wire import eventually, mqtt5_connect, mqtt_connect, mqtt_packets

QUOTA_EXCEEDED = 0x97
IMPLEMENTATION_SPECIFIC = 0x83


def user_property(name: str, value: str) -> bytes:
    return b"\x26" + mp.s(name) + mp.s(value)


async def js_for(port: int):
    nc = await nats.connect(f"nats://127.0.0.1:{port}")
    return nc, nc.jetstream()


async def stored(js, stream: str) -> list:
    """Every message of `stream`, in order, through STREAM.MSG.GET."""
    info = await js.stream_info(stream)
    msgs = []
    if not info.state.messages:
        return msgs
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        try:
            msgs.append(await js.get_msg(stream, seq))
        except NotFoundError:
            pass  # deleted
    return msgs


def acks(packets: list) -> list[tuple[int, int]]:
    return [(p.packet_id, p.reason_code) for p in packets]


# -- QoS 1 ---------------------------------------------------------------------------


async def test_qos1_puback_after_the_stream_has_it_even_across_kill9(server_process, tmp_path):
    """`sync_interval: always`: 20 QoS 1 PUBLISHes in one write (a run), their PUBACKs,
    kill -9 at once: after the restart the stream holds all 20, in order."""
    conf = tmp_path / "sync.conf"
    conf.write_text("jetstream {\n  sync_interval: always\n}\n")
    proc = server_process(config=str(conf)).start()
    nc, js = await js_for(proc.ports["nats"])
    await js.add_stream(name="T", subjects=["t.>"])
    await nc.close()
    wire = await mqtt_connect(proc.ports["mqtt"], "dev1")
    await wire.send(mp.publish("t/a", b"warm", qos=1, mid=100))
    await wire.expect(mp.puback(100))
    burst = b"".join(mp.publish("t/a", b"m%d" % i, qos=1, mid=i + 1) for i in range(20))
    await wire.send(burst)
    await wire.expect(b"".join(mp.puback(i + 1) for i in range(20)))
    proc.stop(signal.SIGKILL)
    await wire.close()
    proc.start()
    nc, js = await js_for(proc.ports["nats"])
    try:
        msgs = await stored(js, "T")
        assert [m.data for m in msgs] == [b"warm"] + [b"m%d" % i for i in range(20)]
        assert {m.subject for m in msgs} == {"t.a"}
    finally:
        await nc.close()


async def test_qos0_is_captured_and_mqtt5_properties_become_headers(server_factory):
    server = await server_factory()
    nc, js = await js_for(server.nats_port)
    try:
        await js.add_stream(name="T", subjects=["t.>"])
        inbox = await nc.subscribe("reply.here")
        wire, _ = await mqtt5_connect(server.mqtt_port, "dev5")
        props = b"\x03" + mp.s("text/plain") + user_property("site", "berlin")
        await wire.send(mp.publish("t/zero", b"q0", level=5, properties=props))
        # A Response Topic becomes the NATS reply: the stream must not PubAck to it.
        props = user_property("k", "v") + b"\x08" + mp.s("reply/here")
        await wire.send(mp.publish("t/one", b"q1", qos=1, mid=1, level=5, properties=props))
        assert acks(await mqtt_packets(wire, 1)) == [(1, 0)]
        msgs = await stored(js, "T")
        assert [(m.subject, m.data) for m in msgs] == [("t.zero", b"q0"), ("t.one", b"q1")]
        assert msgs[0].headers == {"Content-Type": "text/plain", "site": "berlin"}
        assert msgs[1].headers == {"k": "v"}
        with pytest.raises(asyncio.TimeoutError):
            await inbox.next_msg(timeout=0.3)
    finally:
        await nc.close()


# -- refusals --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "config, props, reason",
    [
        ({"max_msgs": 1, "discard": api.DiscardPolicy.NEW}, b"", QUOTA_EXCEEDED),
        ({"max_msg_size": 8}, b"", QUOTA_EXCEEDED),
        ({}, user_property("Nats-Expected-Last-Sequence", "7"), IMPLEMENTATION_SPECIFIC),
        ({}, user_property("Nats-Expected-Stream", "OTHER"), IMPLEMENTATION_SPECIFIC),
    ],
    ids=["discard-new", "max-msg-size", "expectation", "expected-stream"],
)
async def test_mqtt5_puback_carries_the_refusal(server_factory, config, props, reason):
    server = await server_factory()
    nc, js = await js_for(server.nats_port)
    try:
        await js.add_stream(name="T", subjects=["t.>"], **config)
        wire, _ = await mqtt5_connect(server.mqtt_port, "dev5")
        await wire.send(mp.publish("t/a", b"first", qos=1, mid=1, level=5))
        first = (await mqtt_packets(wire, 1))[0].reason_code
        payload = b"second message, longer"
        await wire.send(mp.publish("t/a", payload, qos=1, mid=2, level=5, properties=props))
        assert acks(await mqtt_packets(wire, 1)) == [(2, reason)]
        # The refusal fails only that PUBLISH: the connection stays and goes on.
        await wire.send(mp.publish("u/b", b"other", qos=1, mid=3, level=5))
        assert acks(await mqtt_packets(wire, 1)) == [(3, 0)]
        msgs = await stored(js, "T")
        assert payload not in [m.data for m in msgs]
        assert len(msgs) == (1 if first == 0 else 0)
    finally:
        await nc.close()


async def test_a_run_refused_midway_acks_each_publish_on_its_own(server_factory):
    """Three QoS 1 PUBLISHes in one read, a stream with room for two: PUBACK 0, 0, 0x97,
    and the stream holds the first two (a captured run is handled one by one)."""
    server = await server_factory()
    nc, js = await js_for(server.nats_port)
    try:
        await js.add_stream(name="T", subjects=["t.>"], max_msgs=2, discard=api.DiscardPolicy.NEW)
        wire, _ = await mqtt5_connect(server.mqtt_port, "dev5")
        await wire.send(mp.publish("t/a", b"warm", qos=0, level=5))  # the topic is known
        await eventually(lambda: server.store.stream("T").state().messages == 1)
        await js.purge_stream("T")
        await wire.send(
            b"".join(mp.publish("t/a", b"r%d" % i, qos=1, mid=i, level=5) for i in (1, 2, 3))
        )
        assert acks(await mqtt_packets(wire, 3)) == [(1, 0), (2, 0), (3, QUOTA_EXCEEDED)]
        assert [m.data for m in await stored(js, "T")] == [b"r1", b"r2"]
    finally:
        await nc.close()


async def test_qos2_clean_session_pubrec_carries_the_refusal(server_factory):
    server = await server_factory()
    nc, js = await js_for(server.nats_port)
    try:
        await js.add_stream(name="T", subjects=["t.>"], max_msgs=1, discard=api.DiscardPolicy.NEW)
        wire, _ = await mqtt5_connect(server.mqtt_port, "dev5")
        await wire.send(mp.publish("t/a", b"one", qos=2, mid=1, level=5))
        await wire.send(mp.publish("t/a", b"two", qos=2, mid=2, level=5))
        recs = await mqtt_packets(wire, 2)
        assert [(type(p).__name__, p.packet_id, p.reason_code) for p in recs] == [
            ("Pubrec", 1, 0),
            ("Pubrec", 2, QUOTA_EXCEEDED),
        ]
        assert [m.data for m in await stored(js, "T")] == [b"one"]
    finally:
        await nc.close()


async def test_mqtt311_is_disconnected_on_a_refusal_and_its_resend_is_stored(server_factory):
    """3.1.1 has no negative PUBACK: as for a failed store write, the server closes the
    connection without acknowledging, and the client re-sends after reconnecting
    (at-least-once, nothing acknowledged that no stream holds)."""
    server = await server_factory()
    nc, js = await js_for(server.nats_port)
    try:
        await js.add_stream(name="T", subjects=["t.>"], max_msgs=1, discard=api.DiscardPolicy.NEW)
        wire = await mqtt_connect(server.mqtt_port, "dev3", clean=False)
        await wire.send(mp.publish("t/a", b"one", qos=1, mid=1))
        await wire.expect(mp.puback(1))
        await wire.send(mp.publish("t/a", b"two", qos=1, mid=2))
        assert mp.puback(2) not in await wire.expect_closed()
        await js.purge_stream("T")  # room again (a consumer drained it, say)
        wire = await mqtt_connect(server.mqtt_port, "dev3", clean=False, expect_present=1)
        await wire.send(mp.publish("t/a", b"two", qos=1, dup=True, mid=2))
        await wire.expect(mp.puback(2))
        assert [m.data for m in await stored(js, "T")] == [b"two"]
        await wire.close()
    finally:
        await nc.close()


# -- QoS 2 from a persistent session ---------------------------------------------------


async def test_qos2_persistent_reaches_the_stream_on_pubrel_once(server_factory):
    """Kept until PUBREL (4.3.3 Method A): PUBREC when the dedup record is durable, the
    stream gets the message on PUBREL, and a re-sent PUBLISH does not store it again."""
    server = await server_factory()
    nc, js = await js_for(server.nats_port)
    try:
        await js.add_stream(name="T", subjects=["t.>"])
        wire = await mqtt_connect(server.mqtt_port, "dev2", clean=False)
        await wire.send(mp.publish("t/a", b"exactly", qos=2, mid=7))
        await wire.expect(mp.pubrec(7))
        assert (await js.stream_info("T")).state.messages == 0
        await wire.send(mp.publish("t/a", b"exactly", qos=2, dup=True, mid=7))
        await wire.expect(mp.pubrec(7))
        await wire.send(mp.pubrel(7))
        await wire.expect(mp.pubcomp(7))
        await wire.send(mp.pubrel(7))  # a late repeat: PUBCOMP again, nothing stored
        await wire.expect(mp.pubcomp(7))
        assert [m.data for m in await stored(js, "T")] == [b"exactly"]
        await wire.close()
    finally:
        await nc.close()


async def test_qos2_persistent_exactly_once_in_the_stream_across_kill9(server_process, tmp_path):
    """Ten QoS 2 messages, PUBRECs, then the ten PUBRELs and kill -9 at once: some were
    stored before the kill, their dedup records maybe not yet forgotten. The client
    reconnects and sends every PUBREL again [MQTT-4.4.0-1]: each message is in the
    stream once (the stream's duplicate window knows a message routed again)."""
    conf = tmp_path / "sync.conf"
    conf.write_text("jetstream {\n  sync_interval: always\n}\n")
    proc = server_process(config=str(conf)).start()
    nc, js = await js_for(proc.ports["nats"])
    await js.add_stream(name="T", subjects=["t.>"])
    await nc.close()
    wire = await mqtt_connect(proc.ports["mqtt"], "dev2", clean=False)
    await wire.send(b"".join(mp.publish("t/a", b"q%d" % i, qos=2, mid=i) for i in range(1, 11)))
    await wire.expect(b"".join(mp.pubrec(i) for i in range(1, 11)))
    await wire.send(b"".join(mp.pubrel(i) for i in range(1, 11)))
    await asyncio.sleep(0.005)
    proc.stop(signal.SIGKILL)
    await wire.close()
    proc.start()
    wire = await mqtt_connect(proc.ports["mqtt"], "dev2", clean=False, expect_present=1)
    await wire.send(b"".join(mp.pubrel(i) for i in range(1, 11)))
    await wire.expect(b"".join(mp.pubcomp(i) for i in range(1, 11)))
    await wire.close()
    nc, js = await js_for(proc.ports["nats"])
    try:
        data = sorted(m.data for m in await stored(js, "T"))
        assert data == sorted(b"q%d" % i for i in range(1, 11))
    finally:
        await nc.close()


async def test_qos2_resent_pubrel_after_a_capture_is_not_stored_twice(server_factory):
    """The crash window made deterministic: the message is in the stream but its QoS 2
    record is still kept (as when a kill -9 comes between the two). The record routed
    again carries the same msg id: the stream's duplicate window drops the copy."""
    server = await server_factory()
    nc, js = await js_for(server.nats_port)
    try:
        await js.add_stream(name="T", subjects=["t.>"])
        wire = await mqtt_connect(server.mqtt_port, "dev2", clean=False)
        await wire.send(mp.publish("t/a", b"once", qos=2, mid=3))
        await wire.expect(mp.pubrec(3))
        session = server.mqtt.sessions["dev2"]
        kept = dict(session.incoming)[3]
        await wire.send(mp.pubrel(3))
        await wire.expect(mp.pubcomp(3))
        # Route the kept record again, as a restart that still had it would on PUBREL.
        ticket = server.mqtt.release_qos2(session, kept)
        await eventually(lambda: ticket.done)
        assert [m.data for m in await stored(js, "T")] == [b"once"]
        await wire.close()
    finally:
        await nc.close()
