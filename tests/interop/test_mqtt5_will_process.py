"""A real `hybridbus serve` process: an MQTT 5 will with properties leaves no ghost
connection behind, and SIGTERM then takes milliseconds (issue 13, defect 1)."""

from __future__ import annotations

import asyncio
import json
import signal
import time
import urllib.request

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes

from tests.helpers import mqtt_packets as mp
from tests.helpers.wire import Wire, mqtt_packets
from tests.interop.test_mqtt5_wills import _get, _start, props


def _http(port: int, path: str) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
        return resp.read().decode()


async def _monitor(port: int) -> tuple[int, int, str]:
    """(/connz num_connections, /varz connections, the online-sessions metric line)."""
    loop = asyncio.get_running_loop()
    connz = json.loads(await loop.run_in_executor(None, _http, port, "/connz"))
    varz = json.loads(await loop.run_in_executor(None, _http, port, "/varz"))
    metrics = await loop.run_in_executor(None, _http, port, "/metrics")
    online = next(line for line in metrics.splitlines() if 'state="online"' in line)
    return connz["num_connections"], varz["connections"], online


async def test_MQTT_3_1_2_8_will_with_properties_no_ghost_and_fast_sigterm(server_process):
    proc = server_process().start()
    try:
        mqtt_port, http_port = proc.ports["mqtt"], proc.ports["http"]
        watcher = await _start(mqtt_port, "watcher", mqtt.MQTTv5)
        await asyncio.get_running_loop().run_in_executor(None, watcher.subscribe, "will/g", 1)
        # A raw MQTT 5 client with session expiry 0 and a will carrying properties
        # (a Will Delay Interval of 0 among them), dropped without DISCONNECT.
        will_props = props(PacketTypes.WILLMESSAGE, WillDelayInterval=0, ContentType="x/y")
        dev = await Wire.open(mqtt_port)
        await dev.send(
            mp.connect(
                "ghost",
                level=5,
                will=("will/g", b"bye", 1, False),
                will_properties=will_props.pack()[1:],  # without its length byte
            )
        )
        (connack,) = await mqtt_packets(dev, 1)
        assert connack.reason_code == 0
        dev.writer.transport.abort()
        msg = await _get(watcher)
        assert (msg.payload, msg.properties.ContentType) == (b"bye", "x/y")
        # Only the watcher is left: in /connz, /varz and the online-sessions gauge.
        deadline = time.monotonic() + 5
        while (state := await _monitor(http_port))[:2] != (1, 1):
            assert time.monotonic() < deadline, f"ghost connection: {state}"
            await asyncio.sleep(0.05)
        assert state[2].endswith(" 1.0") or state[2].endswith(" 1"), state[2]
        watcher.stop()
        while (state := await _monitor(http_port))[:2] != (0, 0):
            assert time.monotonic() < deadline, f"connections left: {state}"
            await asyncio.sleep(0.05)
        started = time.monotonic()
        assert proc.stop(signal.SIGTERM, timeout=10) == 0
        took = time.monotonic() - started
        # A ghost held shutdown for its whole 2 s drain deadline.
        assert took < 1.0, f"SIGTERM took {took:.2f}s:\n{proc.output()[-2000:]}"
    finally:
        proc.kill()
