"""Wills that outlive their node (hybridbus/mqtt/nodewatch.py), beyond nats-server:
a client's node is killed (-9) while the client is connected; a surviving node
publishes its will, once. A client that left with DISCONNECT has no will to publish."""

from __future__ import annotations

import os
import signal
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from .conftest import wait_for


class Watcher:
    """A paho subscriber collecting (topic, payload)."""

    def __init__(self, port: int, topic_filter: str) -> None:
        self.got: list[tuple[str, bytes]] = []
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"w{port}")
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.client.subscribe(topic_filter, qos=1)
        assert self.subscribed.wait(5)

    def _on_message(self, client, userdata, msg) -> None:
        with self.lock:
            self.got.append((msg.topic, msg.payload))

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def device(port: int, client_id: str, will_payload: bytes, v5: bool, delay: int = 0):
    proto = mqtt.MQTTv5 if v5 else mqtt.MQTTv311
    kwargs = {} if v5 else {"clean_session": False}
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=proto, **kwargs)
    props = None
    will_props = None
    if v5:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 300
        if delay:
            will_props = Properties(PacketTypes.WILLMESSAGE)
            will_props.WillDelayInterval = delay
    c.will_set(f"status/{client_id}", will_payload, qos=1, properties=will_props)
    connected = threading.Event()
    c.on_connect = lambda *a: connected.set()
    if v5:
        c.connect("127.0.0.1", port, clean_start=False, properties=props)
    else:
        c.connect("127.0.0.1", port)
    c.loop_start()
    assert connected.wait(10)
    return c


def test_wills_of_a_killed_node_are_published_once_by_another(hb_node):
    a = hb_node("hb-will-a")
    b = hb_node("hb-will-b")
    a.wait_linked()
    b.wait_linked()
    watcher = Watcher(b.mqtt_port, "status/#")
    devices = [
        device(a.mqtt_port, "dev5", b"dev5 offline", v5=True),
        device(a.mqtt_port, "dev3", b"dev3 offline", v5=False),
    ]
    leaver = device(a.mqtt_port, "leaver", b"must not appear", v5=True)
    leaver.disconnect()  # a normal DISCONNECT: no will [MQTT-3.1.2-10]
    leaver.loop_stop()
    time.sleep(2.5)  # B has heard A's heartbeats, A has recorded the wills
    killed = time.monotonic()
    a.kill()
    try:
        wait_for(lambda: len(watcher.got) >= 2, 15, "both wills published by B")
    except AssertionError:
        print("GOT", watcher.got, "\nB LOG\n", b.output()[-4000:], "\nA LOG\n", a.output()[-3000:])
        raise
    took = time.monotonic() - killed
    time.sleep(1.5)  # and nothing more comes
    watcher.close()
    for d in devices:
        d.loop_stop()
    assert sorted(watcher.got) == [
        ("status/dev3", b"dev3 offline"),
        ("status/dev5", b"dev5 offline"),
    ]
    assert took < 10, took


def test_a_will_with_a_delay_is_not_sent_when_the_client_is_back_elsewhere(hb_node):
    """[MQTT-3.1.3-9]: the client reconnects (on B) within its Will Delay Interval."""
    a = hb_node("hb-wd-a")
    b = hb_node("hb-wd-b")
    a.wait_linked()
    b.wait_linked()
    watcher = Watcher(b.mqtt_port, "status/#")
    dev = device(a.mqtt_port, "movable", b"gone", v5=True, delay=3)
    time.sleep(2.5)
    a.kill()
    dev.loop_stop()
    back = device(b.mqtt_port, "movable", b"gone", v5=True, delay=3)
    time.sleep(10)  # past detection (4-5 s) + the delay (3 s)
    watcher.close()
    back.loop_stop()
    back.disconnect()
    assert watcher.got == []


def test_a_node_that_falls_behind_does_not_declare_others_dead(hb_node):
    """B stops for longer than the death timeout (its link then hands it a backlog,
    A's heartbeats late in it): B asks the hub when A last beat, finds it alive, and
    publishes no will of A's connected clients."""
    a = hb_node("hb-lag-a")
    b = hb_node("hb-lag-b")
    a.wait_linked()
    b.wait_linked()
    watcher = Watcher(a.mqtt_port, "status/#")
    dev = device(a.mqtt_port, "alive1", b"must not appear", v5=True)
    time.sleep(2.5)
    os.kill(b.pid, signal.SIGSTOP)
    try:
        time.sleep(6)
    finally:
        os.kill(b.pid, signal.SIGCONT)
    time.sleep(4)
    watcher.close()
    dev.loop_stop()
    dev.disconnect()
    assert watcher.got == []
    assert "silent for" not in b.output()
