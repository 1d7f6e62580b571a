"""Sessions that outlive their node end on time (hybridbus/mqtt/nodewatch.py): an MQTT 5
session's expiry clock ran in its node's process only, so a session whose node died
never expired. Now a surviving node ends it when the Session Expiry Interval has passed
since the device left (or since the node died, for a device connected then), and a
client that came back elsewhere meanwhile keeps it. paho-mqtt 5.0 devices, nats-py on
the hub for the consumers, a real 3-member nats-server cluster."""

from __future__ import annotations

import asyncio
import threading
import time

import nats
import paho.mqtt.client as mqtt
from nats.js.errors import NotFoundError
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from hybridbus.mqtt.broker import session_key

from .conftest import wait_for


class Device:
    """A paho 5.0 client with clean_start 0 and a Session Expiry Interval."""

    def __init__(self, port: int, client_id: str, expiry: int) -> None:
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
        )
        self.present: list[bool] = []
        self.codes: list[int] = []
        self.connected = threading.Event()
        self.subscribed = threading.Event()

        def on_connect(client, userdata, flags, rc, props=None) -> None:
            self.codes.append(rc.value)
            self.present.append(flags.session_present)
            self.connected.set()

        self.client.on_connect = on_connect
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = expiry
        deadline = time.monotonic() + 15
        while True:
            # A node refuses (0x88) until its MQTT streams exist in the hub's domain.
            self.connected.clear()
            self.client.connect("127.0.0.1", port, clean_start=False, properties=props)
            self.client.loop_start()
            assert self.connected.wait(10), f"{client_id}: no CONNACK"
            if self.codes[-1] == 0:
                break
            self.client.loop_stop()
            assert time.monotonic() < deadline, f"{client_id}: refused {self.codes}"
            time.sleep(0.2)
        self.present = self.present[-1:]

    def subscribe(self, topic_filter: str) -> None:
        self.client.subscribe(topic_filter, qos=1)
        assert self.subscribed.wait(5), "no SUBACK"

    def leave(self) -> None:
        """A normal DISCONNECT: the session stays, its expiry clock starts."""
        self.client.disconnect()
        self.client.loop_stop()

    def drop(self) -> None:
        """Stop the network loop without a word (the node is dead anyway)."""
        self.client.loop_stop()


def present_on(port: int, client_id: str, expiry: int) -> bool:
    """Whether a reconnect (clean_start 0) to ``port`` finds the session; leaves."""
    dev = Device(port, client_id, expiry)
    dev.leave()
    return dev.present[0]


def consumers(url: str, client_ids: list[str]) -> dict[str, bool]:
    """Which of the sessions' durable consumers exist in the hub's domain."""

    async def main() -> dict[str, bool]:
        nc = await nats.connect(url, connect_timeout=5)
        try:
            js = nc.jetstream(domain="hub")
            found = {}
            for cid in client_ids:
                try:
                    await js.consumer_info("HB_msgs", "HB_" + session_key(cid))
                    found[cid] = True
                except NotFoundError:
                    found[cid] = False
            return found
        finally:
            await nc.close()

    return asyncio.run(asyncio.wait_for(main(), 10))


def test_sessions_of_a_killed_node_expire_on_time_and_long_ones_stay(hb_node, nats_cluster):
    a = hb_node("hb-exp-a")
    b = hb_node("hb-exp-b")
    a.wait_linked()
    b.wait_linked()
    url = nats_cluster.client_url(0)
    off = Device(a.mqtt_port, "exp-off", 2)  # left before the kill: 2 s after it left
    try:
        off.subscribe("exp/off")
    except AssertionError:
        print("A LOG\n", a.output()[-3000:])
        raise
    on = Device(a.mqtt_port, "exp-on", 2)  # connected at the kill: 2 s after the death
    on.subscribe("exp/on")
    long = Device(a.mqtt_port, "exp-long", 300)
    long.subscribe("exp/long")
    ids = ["exp-off", "exp-on", "exp-long"]
    wait_for(lambda: all(consumers(url, ids).values()), 10, "the sessions' consumers")
    time.sleep(2.5)  # B has heard A's heartbeats
    off.leave()
    long.leave()
    time.sleep(0.5)  # their records are in (not yet expired on A: 2 s)
    killed = time.monotonic()
    a.kill()
    on.drop()
    try:
        wait_for(
            lambda: consumers(url, ids) == {"exp-off": False, "exp-on": False, "exp-long": True},
            20,
            "the two short sessions ended by B, the long one kept",
            step=0.5,
        )
    except AssertionError:
        print("B LOG\n", b.output()[-4000:])
        raise
    took = time.monotonic() - killed
    # Declared dead after 4-5 s of silence; the connected one's 2 s count from there.
    assert 4.0 < took < 12.0, took
    assert present_on(b.mqtt_port, "exp-off", 2) is False  # [MQTT-3.2.2-3]: 0, none kept
    assert present_on(b.mqtt_port, "exp-on", 2) is False
    assert present_on(b.mqtt_port, "exp-long", 300) is True
    assert b.output().count("expired (its node is gone)") == 2


def test_a_session_back_on_another_node_is_not_ended_by_the_dead_nodes_clock(hb_node, nats_cluster):
    """The device fails over to B at once: A's record of its clock is stale, and B (the
    survivor reading it) must not end the session B now holds."""
    a = hb_node("hb-exb-a")
    b = hb_node("hb-exb-b")
    a.wait_linked()
    b.wait_linked()
    url = nats_cluster.client_url(0)
    dev = Device(a.mqtt_port, "exp-back", 2)
    dev.subscribe("exp/back")
    wait_for(lambda: consumers(url, ["exp-back"])["exp-back"], 10, "the session's consumer")
    time.sleep(2.5)
    a.kill()
    dev.drop()
    back = Device(b.mqtt_port, "exp-back", 2)  # failover: the session comes along
    assert back.present == [True]
    time.sleep(9)  # A declared dead (4-5 s) and its clock for the session long run out
    assert consumers(url, ["exp-back"])["exp-back"] is True
    back.leave()
    assert present_on(b.mqtt_port, "exp-back", 2) is True  # left and back within 2 s
    assert "expired (its node is gone)" not in b.output()
