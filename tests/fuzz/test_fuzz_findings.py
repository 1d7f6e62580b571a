"""Reproducers for what the live fuzzer found, pinned as plain wire tests.

NATS tokens are bytes: nats-server never checks that a subject, reply or sid is
UTF-8. The codec decodes them with ``surrogateescape`` so any byte survives; every
place that turns them back into bytes must use the same error handler, and MQTT
delivery must not hand an MQTT client a topic that is not UTF-8 [MQTT-1.5.4-1].
"""

from __future__ import annotations

from tests.helpers import mqtt_packets as mp
from tests.helpers.wire import Wire, mqtt_packets, nats_connect


async def test_sid_with_invalid_utf8(nats_server):
    wire = await nats_connect(nats_server.nats_port)
    await wire.send(b"SUB foo s\xff\r\nPUB foo 2\r\nhi\r\nPING\r\n")
    await wire.expect(b"MSG foo s\xff 2\r\nhi\r\nPONG\r\n")


async def test_subject_and_reply_with_invalid_utf8(nats_server):
    wire = await nats_connect(nats_server.nats_port)
    await wire.send(b"SUB a.\xfe 1\r\nPUB a.\xfe r.\xfd 2\r\nhi\r\nPING\r\n")
    await wire.expect(b"MSG a.\xfe 1 r.\xfd 2\r\nhi\r\nPONG\r\n")


async def test_invalid_utf8_subject_never_reaches_mqtt_as_a_topic(nats_server):
    mq = await Wire.open(nats_server.mqtt_port)
    await mq.send(mp.connect("m"))
    await mq.expect(mp.connack(0, 0))
    await mq.send(mp.subscribe(1, ("#", 0)))
    await mq.expect(mp.suback(1, 0))
    wire = await nats_connect(nats_server.nats_port)
    await wire.send(b"PUB x.\xff 2\r\nhi\r\nPUB ok 2\r\nok\r\nPING\r\n")
    await wire.expect(b"PONG\r\n")  # the publisher was not cut off
    await mq.send(b"\xc0\x00")  # PINGREQ
    packets = []
    while not packets or type(packets[-1]).__name__ != "Pingresp":
        packets += await mqtt_packets(mq, 1, level=4)
    topics = [p.topic for p in packets if type(p).__name__ == "Publish"]
    assert "ok" in topics
    for topic in topics:
        topic.encode("utf-8")  # only well-formed UTF-8 topics go out
