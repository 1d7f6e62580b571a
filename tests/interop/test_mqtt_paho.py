"""paho-mqtt (3.1.1 and 5.0) against a live hybridbus, and the bridge to nats-py."""

from __future__ import annotations

import asyncio
import queue
import threading

import nats
import paho.mqtt.client as mqtt
import pytest

PROTOCOLS = [mqtt.MQTTv311, mqtt.MQTTv5]


class Paho:
    """A paho client on its own network thread; received messages land in a queue."""

    def __init__(self, port: int, client_id: str, protocol=mqtt.MQTTv311, clean=True):
        kwargs = {"client_id": client_id, "protocol": protocol}
        if protocol != mqtt.MQTTv5:
            kwargs["clean_session"] = clean
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, **kwargs)
        self.messages: queue.Queue = queue.Queue()
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.client.on_connect = lambda c, u, f, rc, p=None: self.connected.set()
        self.client.on_subscribe = lambda c, u, mid, rcs, p=None: self.subscribed.set()
        self.client.on_message = lambda c, u, m: self.messages.put(m)
        self.port = port
        self.protocol = protocol

    def start(self, **connect_kwargs) -> Paho:
        self.client.connect("127.0.0.1", self.port, keepalive=30, **connect_kwargs)
        self.client.loop_start()
        assert self.connected.wait(5), "no CONNACK"
        return self

    def subscribe(self, topic: str, qos: int = 0) -> None:
        self.subscribed.clear()
        self.client.subscribe(topic, qos)
        assert self.subscribed.wait(5), "no SUBACK"

    def get(self, timeout: float = 5.0):
        return self.messages.get(timeout=timeout)

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


async def _in_thread(fn, *args):
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


@pytest.mark.parametrize("protocol", PROTOCOLS, ids=["v311", "v5"])
async def test_paho_pub_sub_qos_levels(nats_server, protocol):
    sub = await _in_thread(lambda: Paho(nats_server.mqtt_port, "sub", protocol).start())
    pub = await _in_thread(lambda: Paho(nats_server.mqtt_port, "pub", protocol).start())
    await _in_thread(sub.subscribe, "sensors/+/temp", 2)
    for qos in (0, 1, 2):
        info = pub.client.publish("sensors/k1/temp", f"q{qos}".encode(), qos=qos)
        await _in_thread(info.wait_for_publish, 5)
        msg = await _in_thread(sub.get)
        assert msg.topic == "sensors/k1/temp"
        assert msg.payload == f"q{qos}".encode()
        assert msg.qos == qos
    sub.stop()
    pub.stop()


@pytest.mark.parametrize("protocol", PROTOCOLS, ids=["v311", "v5"])
async def test_mqtt_to_nats_and_back(nats_server, protocol):
    nc = await nats.connect(f"nats://127.0.0.1:{nats_server.nats_port}")
    exact = await nc.subscribe("plant.line1.temp")
    star = await nc.subscribe("plant.*.temp")
    full = await nc.subscribe("plant.>")
    await nc.flush()
    dev = await _in_thread(lambda: Paho(nats_server.mqtt_port, "dev", protocol).start())
    await _in_thread(dev.subscribe, "plant/#", 1)
    info = dev.client.publish("plant/line1/temp", b"21.5", qos=1)
    await _in_thread(info.wait_for_publish, 5)
    for sub in (exact, star, full):
        msg = await sub.next_msg(2)
        assert (msg.subject, msg.data) == ("plant.line1.temp", b"21.5")
    # own message comes back to the MQTT subscriber too
    assert (await _in_thread(dev.get)).payload == b"21.5"
    # NATS -> MQTT: `plant/#` matches `plant` and below
    await nc.publish("plant.line2.pressure", b"3 bar")
    await nc.publish("plant", b"root")
    got = [await _in_thread(dev.get), await _in_thread(dev.get)]
    assert [(m.topic, m.payload) for m in got] == [
        ("plant/line2/pressure", b"3 bar"),
        ("plant", b"root"),
    ]
    dev.stop()
    await nc.close()


async def test_nats_reaches_escaped_mqtt_topics_byte_for_byte(nats_server):
    dev = await _in_thread(lambda: Paho(nats_server.mqtt_port, "dev").start())
    await _in_thread(dev.subscribe, "#", 0)
    nc = await nats.connect(f"nats://127.0.0.1:{nats_server.nats_port}")
    pub = await _in_thread(lambda: Paho(nats_server.mqtt_port, "pub").start())
    for topic in ("room 1/temp", "v1.2/fw", "/lead", "trail/", "a//b"):
        info = pub.client.publish(topic, b"x", qos=1)
        await _in_thread(info.wait_for_publish, 5)
        assert (await _in_thread(dev.get)).topic == topic
    await nc.close()
    dev.stop()
    pub.stop()


async def test_nats_publish_reaches_offline_persistent_session(nats_server):
    dev = await _in_thread(lambda: Paho(nats_server.mqtt_port, "dev", clean=False).start())
    await _in_thread(dev.subscribe, "cmd/dev", 1)
    await _in_thread(dev.stop)
    nc = await nats.connect(f"nats://127.0.0.1:{nats_server.nats_port}")
    await nc.publish("cmd.dev", b"reboot")
    await nc.flush()
    dev2 = await _in_thread(lambda: Paho(nats_server.mqtt_port, "dev", clean=False).start())
    msg = await _in_thread(dev2.get)
    assert (msg.topic, msg.payload, msg.qos) == ("cmd/dev", b"reboot", 1)
    dev2.stop()
    await nc.close()


async def test_nats_request_answered_by_mqtt_service_via_plain_topics(nats_server):
    """A 3.1.1 device can answer a NATS request when the reply subject is in the payload
    convention of the app; here the service echoes to a topic the requester listens on."""
    nc = await nats.connect(f"nats://127.0.0.1:{nats_server.nats_port}")
    answers = await nc.subscribe("answers.>")
    dev = await _in_thread(lambda: Paho(nats_server.mqtt_port, "svc").start())
    dev.client.on_message = lambda c, u, m: c.publish(
        "answers/" + m.topic.split("/")[-1], m.payload[::-1]
    )
    await _in_thread(dev.subscribe, "ask/+", 0)
    await nc.publish("ask.q1", b"abc")
    msg = await answers.next_msg(3)
    assert (msg.subject, msg.data) == ("answers.q1", b"cba")
    dev.stop()
    await nc.close()
