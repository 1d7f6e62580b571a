"""An MQTT device: publishes telemetry, keeps a retained presence flag with a will,
and answers MQTT 5 requests on its command topic.

    python examples/device_simulator.py --id k1 --count 10 --interval 1

Topics (one device `k1`):
    plant/k1/status     retained "online"; the will sets it to "offline" if we vanish
    plant/k1/telemetry  {"seq": n, "temp": 21.3}, QoS 1
    plant/k1/cmd        requests; answered on their Response Topic (MQTT 5)
NATS services see the same traffic as `plant.k1.status`, `plant.k1.telemetry`, ...
"""

from __future__ import annotations

import argparse
import json
import random
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=1883)
    ap.add_argument("--id", default="k1")
    ap.add_argument("--count", type=int, default=0, help="telemetry messages (0 = forever)")
    ap.add_argument("--interval", type=float, default=1.0)
    args = ap.parse_args()

    base = f"plant/{args.id}"
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=f"device-{args.id}", protocol=mqtt.MQTTv5
    )
    client.will_set(f"{base}/status", b"offline", qos=1, retain=True)
    connected = threading.Event()

    def on_connect(c, userdata, flags, reason_code, properties):
        c.publish(f"{base}/status", b"online", qos=1, retain=True)
        c.subscribe(f"{base}/cmd", qos=1)
        connected.set()

    def on_message(c, userdata, msg):
        # An MQTT 5 request: answer on its Response Topic with its Correlation Data.
        response_topic = getattr(msg.properties, "ResponseTopic", None)
        if not response_topic:
            return
        props = Properties(PacketTypes.PUBLISH)
        correlation = getattr(msg.properties, "CorrelationData", None)
        if correlation:
            props.CorrelationData = correlation
        answer = {"device": args.id, "command": msg.payload.decode(errors="replace"), "ok": True}
        c.publish(response_topic, json.dumps(answer).encode(), qos=1, properties=props)

    client.on_connect = on_connect
    client.on_message = on_message
    client.connect(args.host, args.port, keepalive=30)
    client.loop_start()
    if not connected.wait(10):
        raise SystemExit("could not connect")
    seq = 0
    try:
        while args.count == 0 or seq < args.count:
            seq += 1
            reading = {"seq": seq, "temp": round(20 + random.random() * 3, 2)}
            client.publish(
                f"{base}/telemetry", json.dumps(reading).encode(), qos=1
            ).wait_for_publish(5)
            print(f"{base}/telemetry {reading}", flush=True)
            time.sleep(args.interval)
    finally:
        client.publish(f"{base}/status", b"offline", qos=1, retain=True).wait_for_publish(5)
        client.disconnect()
        client.loop_stop()


if __name__ == "__main__":
    main()
