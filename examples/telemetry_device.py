"""An MQTT device whose telemetry goes into a JetStream stream and whose configuration
comes from a NATS Key/Value bucket (the other half of examples/mqtt_to_stream.py).

    python examples/telemetry_device.py --id k1 --count 5

Topics (one device `k1`):
    plant/k1/status   retained "online" (the will sets "offline"): the KV key
                      plant.k1.status of the bucket `devices`
    telemetry/k1      {"seq": n, "temp": 21.3}, QoS 1: the PUBACK means the stream
                      TELEMETRY holds it
    plant/k1/config   subscribed: a service's kv.put("plant.k1.config", ...) arrives here
"""

from __future__ import annotations

import argparse
import json
import random
import threading

import paho.mqtt.client as mqtt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=1883)
    ap.add_argument("--id", default="k1")
    ap.add_argument("--count", type=int, default=5, help="telemetry readings to send")
    ap.add_argument("--wait", type=float, default=10.0, help="seconds to wait for a config")
    args = ap.parse_args()

    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=f"device-{args.id}", protocol=mqtt.MQTTv5
    )
    client.will_set(f"plant/{args.id}/status", b"offline", qos=1, retain=True)
    subscribed = threading.Event()
    configured = threading.Event()

    def on_connect(c, userdata, flags, reason_code, properties):
        c.subscribe(f"plant/{args.id}/config", qos=1)

    def on_subscribe(c, userdata, mid, reason_codes, properties):
        subscribed.set()

    def on_message(c, userdata, msg):
        # The retained config from an earlier run comes first (retain=1), then live ones.
        print(f"config received: {msg.payload.decode()} (retained={msg.retain})", flush=True)
        configured.set()

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.connect(args.host, args.port, keepalive=30)
    client.loop_start()
    try:
        if not subscribed.wait(10):
            raise SystemExit("could not connect and subscribe")
        status = client.publish(f"plant/{args.id}/status", b"online", qos=1, retain=True)
        status.wait_for_publish(5)
        for seq in range(1, args.count + 1):
            reading = {"seq": seq, "temp": round(20 + random.random() * 3, 2)}
            info = client.publish(f"telemetry/{args.id}", json.dumps(reading).encode(), qos=1)
            info.wait_for_publish(5)  # PUBACK: stored in the stream
            print(f"telemetry/{args.id} {reading} stored", flush=True)
        if not configured.wait(args.wait):
            raise SystemExit("no config received")
    finally:
        offline = client.publish(f"plant/{args.id}/status", b"offline", qos=1, retain=True)
        offline.wait_for_publish(5)
        client.disconnect()
        client.loop_stop()


if __name__ == "__main__":
    main()
