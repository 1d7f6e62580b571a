"""MQTT state in a JetStream domain, on ONE hybridbus in local-domain mode:
`jetstream { domain: hub }` + `mqtt { js_domain: hub }` runs the JetStream backend
(hybridbus/mqtt/jspersist.py) against our own engine. paho-mqtt (3.1.1 and 5.0) and
nats-py against a real server."""

from __future__ import annotations

import asyncio
import queue
import threading
import time

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
