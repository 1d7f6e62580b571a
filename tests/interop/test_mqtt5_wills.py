"""Wills and flow control with paho-mqtt 5.0 clients (issue 13).

The Eclipse Paho interoperability suite (paho.mqtt.testing, client_test5.py) cannot
be installed here; test_will_message, test_will_delay and test_flow_control2 below
check what its tests of those names check, with paho-mqtt as the client library.
"""

from __future__ import annotations

import asyncio
import queue
import time

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tests.interop.test_mqtt_paho import Paho, _in_thread

V5 = mqtt.MQTTv5


def props(packet_type: int, **values) -> Properties:
    p = Properties(packet_type)
    for name, value in values.items():
        setattr(p, name, value)
    return p


def terminate(client: Paho) -> None:
    """Drop the connection without DISCONNECT (paho.mqtt.testing's terminate()); the
    network thread is stopped first so that it does not reconnect."""
    client.client.loop_stop()
    client.client.socket().close()


async def _start(port: int, client_id: str, protocol=V5, will=None, **connect) -> Paho:
    def start() -> Paho:
        paho = Paho(port, client_id, protocol)
        if will is not None:
            paho.client.will_set(*will[:2], qos=will[2], properties=will[3])
        return paho.start(**connect)

    return await _in_thread(start)


async def _get(client: Paho, timeout: float = 5.0):
    return await _in_thread(client.get, timeout)


async def _nothing(client: Paho, wait: float) -> None:
    try:
        msg = await _in_thread(client.get, wait)
    except queue.Empty:
        return
    raise AssertionError(f"unexpected message on {msg.topic}: {msg.payload!r}")


async def test_MQTT_3_1_2_8_will_with_properties_reaches_mqtt5_subscribers(nats_server):
    port = nats_server.mqtt_port
    v5 = await _start(port, "v5-watcher")
    await _in_thread(v5.subscribe, "will/props", 1)
    old = await _start(port, "v311-watcher", mqtt.MQTTv311)
    await _in_thread(old.subscribe, "will/props", 1)
    will_props = props(
        PacketTypes.WILLMESSAGE,
        WillDelayInterval=0,  # CONNECT-only: it must not be copied into the PUBLISH
        PayloadFormatIndicator=1,
        MessageExpiryInterval=30,
        ContentType="text/plain",
        ResponseTopic="will/answers",
        CorrelationData=b"c-1",
        UserProperty=[("b", "1"), ("a", "2"), ("b", "3")],
    )
    dev = await _start(port, "dev", will=("will/props", b"gone", 1, will_props))
    terminate(dev)
    msg = await _get(v5)
    assert (msg.topic, msg.payload, msg.qos) == ("will/props", b"gone", 1)
    p = msg.properties
    assert p.PayloadFormatIndicator == 1
    assert p.ContentType == "text/plain"
    assert p.ResponseTopic == "will/answers"
    assert p.CorrelationData == b"c-1"
    assert p.UserProperty == [("b", "1"), ("a", "2"), ("b", "3")]  # order kept [MQTT-3.1.3-10]
    assert 29 <= p.MessageExpiryInterval <= 30
    assert not hasattr(p, "WillDelayInterval")
    assert (await _get(old)).payload == b"gone"
    # the dropped connection is gone from the server's books
    assert all(getattr(c, "client_id", "") != "dev" for c in nats_server.clients.values())
    assert nats_server.mqtt.sessions.get("dev") is None
    v5.stop()
    old.stop()


async def test_MQTT_3_1_2_8_failing_will_still_releases_the_connection(nats_server, caplog):
    """Whatever publishing a will raises, the connection is unregistered, counted
    closed and its session let go: no ghost in /connz holding shutdown."""

    def broken(*_args) -> None:
        raise ValueError("a will that cannot be published")

    nats_server.mqtt.send_will = broken
    dev = await _start(nats_server.mqtt_port, "doomed", will=("will/x", b"w", 0, None))
    before = nats_server.stats.total_connections
    terminate(dev)
    deadline = time.monotonic() + 3
    while any(getattr(c, "client_id", "") == "doomed" for c in nats_server.clients.values()):
        assert time.monotonic() < deadline, "connection still registered"
        await asyncio.sleep(0.02)
    assert "doomed" not in nats_server.mqtt.sessions
    assert nats_server.closed[-1].info.get("client_id") == "doomed"
    assert nats_server.stats.total_connections == before
    assert "a will that cannot be published" in caplog.text


async def test_will_message(nats_server):
    """paho.mqtt.testing test_will_message: a client that vanishes has its will
    delivered, once, to a subscriber of its will topic."""
    port = nats_server.mqtt_port
    a = await _start(port, "myclientid", will=("Topic/C", b"client not disconnected", 0, None))
    b = await _start(port, "myclientid2", clean_start=False)
    await _in_thread(b.subscribe, "Topic/C", 2)
    terminate(a)
    msg = await _get(b)
    assert (msg.topic, msg.payload) == ("Topic/C", b"client not disconnected")
    await _nothing(b, 0.5)
    b.stop()


async def _will_after(port: int, delay: int, expiry: int) -> float:
    """Seconds from dropping a client with the given Will Delay Interval and Session
    Expiry Interval to its will's arrival."""
    watcher = await _start(port, f"watch-{delay}-{expiry}")
    await _in_thread(watcher.subscribe, "TopicA", 2)
    will = ("TopicA", b"test_will_delay will message", 0, None)
    will = (*will[:3], props(PacketTypes.WILLMESSAGE, WillDelayInterval=delay))
    connect = props(PacketTypes.CONNECT, SessionExpiryInterval=expiry)
    dev = await _start(port, f"dev-{delay}-{expiry}", will=will, properties=connect)
    await _in_thread(terminate, dev)  # loop_stop may take a second: time the close
    started = time.monotonic()
    msg = await _get(watcher, 10)
    took = time.monotonic() - started
    assert (msg.topic, msg.payload) == ("TopicA", b"test_will_delay will message")
    watcher.stop()
    return took


async def test_will_delay(nats_server):
    """paho.mqtt.testing test_will_delay, with shorter intervals: the will waits for
    the Will Delay Interval or for the session to end, whichever comes first
    [MQTT-3.1.3-9] (5.0 section 3.1.3.2.2)."""
    port = nats_server.mqtt_port
    # (the server's clock starts at the close, a moment before ours: 0.1 s of slack)
    assert 1.9 <= await _will_after(port, delay=2, expiry=10) < 3.5
    assert await _will_after(port, delay=5, expiry=0) < 1.0  # the session ends at once
    assert 0.9 <= await _will_after(port, delay=5, expiry=1) < 2.5  # ... after 1 s


async def test_flow_control2(server_factory):
    """paho.mqtt.testing test_flow_control2: more unacknowledged QoS 2 PUBLISHes than
    the server's Receive Maximum get DISCONNECT 0x93 [MQTT-3.3.4-9], and the client
    reads it although it was still sending."""
    server = await server_factory(mqtt__receive_maximum=2)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="flow", protocol=V5)
    connacks, disconnects = [], []
    client.on_connect = lambda c, u, flags, rc, p: connacks.append(p)
    client.on_disconnect = lambda c, u, flags, rc, p: disconnects.append(rc)

    def run() -> None:
        client.connect("127.0.0.1", server.mqtt_port, keepalive=30)
        deadline = time.monotonic() + 5
        while not connacks and time.monotonic() < deadline:
            client.loop(0.05)
        receive_maximum = connacks[0].ReceiveMaximum
        assert receive_maximum == 2
        # No loop between the publishes: no PUBREL can go out before the server has
        # seen more QoS 2 messages in flight than it allows.
        for i in range(receive_maximum + 18):
            client.publish("TopicA", b"message %d" % i + b"." * 8192, qos=2)
        while not disconnects and time.monotonic() < deadline:
            client.loop(0.05)

    await _in_thread(run)
    assert len(disconnects) == 1
    assert disconnects[0].value == 0x93, disconnects[0]
