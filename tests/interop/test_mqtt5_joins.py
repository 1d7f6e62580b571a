"""The four joins of MQTT 5 to NATS, with real clients: paho-mqtt (v5) and nats-py."""

from __future__ import annotations

import asyncio

import nats
import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tests.helpers import mqtt_packets as mp
from tests.helpers.wire import mqtt_connect
from tests.interop.test_mqtt_paho import Paho, _in_thread


def publish_props(**values) -> Properties:
    props = Properties(PacketTypes.PUBLISH)
    for name, value in values.items():
        setattr(props, name, value)
    return props


async def nats_client(server):
    return await nats.connect(f"nats://127.0.0.1:{server.nats_port}")


async def test_user_properties_become_nats_headers(nats_server):
    nc = await nats_client(nats_server)
    sub = await nc.subscribe("tele.k1")
    await nc.flush()
    dev = await _in_thread(lambda: Paho(nats_server.mqtt_port, "dev", mqtt.MQTTv5).start())
    info = dev.client.publish(
        "tele/k1",
        b"22",
        qos=1,
        properties=publish_props(
            UserProperty=[("unit", "C"), ("site", "north")], ContentType="text/plain"
        ),
    )
    await _in_thread(info.wait_for_publish, 5)
    msg = await sub.next_msg(2)
    assert msg.data == b"22"
    assert msg.headers["unit"] == "C" and msg.headers["site"] == "north"
    assert msg.headers["Content-Type"] == "text/plain"
    dev.stop()
    await nc.close()


async def test_nats_headers_become_user_properties(nats_server):
    dev = await _in_thread(lambda: Paho(nats_server.mqtt_port, "dev", mqtt.MQTTv5).start())
    await _in_thread(dev.subscribe, "cmd/#", 1)
    old = await mqtt_connect(nats_server.mqtt_port, "old")
    await old.send(mp.subscribe(1, ("cmd/#", 0)))
    await old.expect(mp.suback(1, 0))
    nc = await nats_client(nats_server)
    await nc.publish(
        "cmd.reboot", b"now", headers={"Trace-Id": "t-1", "Content-Type": "text/plain"}
    )
    msg = await _in_thread(dev.get)
    assert msg.payload == b"now"
    assert ("Trace-Id", "t-1") in msg.properties.UserProperty
    assert msg.properties.ContentType == "text/plain"
    # the 3.1.1 subscriber gets the same message with no properties at all
    await old.expect(mp.publish("cmd/reboot", b"now"))
    dev.stop()
    await old.close()
    await nc.close()


async def test_nats_request_answered_by_mqtt5_device(nats_server):
    dev = await _in_thread(lambda: Paho(nats_server.mqtt_port, "thermo", mqtt.MQTTv5).start())

    def answer(client, userdata, msg):
        props = publish_props()
        if getattr(msg.properties, "CorrelationData", None):
            props.CorrelationData = msg.properties.CorrelationData
        client.publish(msg.properties.ResponseTopic, b"21.5C", qos=1, properties=props)

    dev.client.on_message = answer
    await _in_thread(dev.subscribe, "thermo/read", 1)
    nc = await nats_client(nats_server)
    reply = await nc.request("thermo.read", b"?", timeout=3)
    assert reply.data == b"21.5C"
    dev.stop()
    await nc.close()


async def test_mqtt5_request_answered_by_nats_service(nats_server):
    nc = await nats_client(nats_server)

    async def service(msg):
        assert msg.reply  # the MQTT Response Topic arrives as the reply subject
        await msg.respond(b"pong:" + msg.data)

    await nc.subscribe("svc.ping", cb=service)
    await nc.flush()
    dev = await _in_thread(lambda: Paho(nats_server.mqtt_port, "req", mqtt.MQTTv5).start())
    await _in_thread(dev.subscribe, "replies/req", 1)
    info = dev.client.publish(
        "svc/ping",
        b"hi",
        qos=1,
        properties=publish_props(ResponseTopic="replies/req", CorrelationData=b"c-42"),
    )
    await _in_thread(info.wait_for_publish, 5)
    msg = await _in_thread(dev.get)
    assert (msg.topic, msg.payload) == ("replies/req", b"pong:hi")
    assert msg.properties.CorrelationData == b"c-42"
    dev.stop()
    await nc.close()


async def test_shared_subscription_and_queue_group_are_one_group(nats_server):
    nc = await nats_client(nats_server)
    nats_got = []

    async def worker(msg):
        nats_got.append(msg.data)

    await nc.subscribe("jobs.resize", queue="workers", cb=worker)
    await nc.flush()
    dev = await _in_thread(lambda: Paho(nats_server.mqtt_port, "w1", mqtt.MQTTv5).start())
    await _in_thread(dev.subscribe, "$share/workers/jobs/resize", 0)
    total = 200
    for i in range(total):
        await nc.publish("jobs.resize", b"%d" % i)
    await nc.flush()
    await asyncio.sleep(0.5)
    mqtt_got = []
    while not dev.messages.empty():
        mqtt_got.append(dev.messages.get_nowait().payload)
    assert len(nats_got) + len(mqtt_got) == total
    assert set(nats_got).isdisjoint(mqtt_got)
    assert nats_got and mqtt_got
    dev.stop()
    await nc.close()
