"""An MQTT 5 device asking a NATS service for the time (request/response).

    python examples/mqtt5_requester.py --count 3

Publishes to `time/now` with Response Topic `replies/<id>` and a fresh
Correlation Data each time; the NATS service's `msg.respond()` comes back on the
Response Topic carrying the same Correlation Data.
"""

from __future__ import annotations

import argparse
import queue
import threading
import uuid

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=1883)
    ap.add_argument("--id", default="clock-1")
    ap.add_argument("--count", type=int, default=3)
    args = ap.parse_args()
    replies: queue.Queue = queue.Queue()
    subscribed = threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=args.id, protocol=mqtt.MQTTv5)
    client.on_connect = lambda c, u, f, rc, p: c.subscribe(f"replies/{args.id}", qos=1)
    client.on_subscribe = lambda c, u, mid, rcs, p: subscribed.set()
    client.on_message = lambda c, u, m: replies.put(m)
    client.connect(args.host, args.port, keepalive=30)
    client.loop_start()
    if not subscribed.wait(10):
        raise SystemExit("could not subscribe")
    try:
        for _ in range(args.count):
            correlation = uuid.uuid4().bytes
            props = Properties(PacketTypes.PUBLISH)
            props.ResponseTopic = f"replies/{args.id}"
            props.CorrelationData = correlation
            client.publish("time/now", b"?", qos=1, properties=props).wait_for_publish(5)
            answer = replies.get(timeout=5)
            matched = answer.properties.CorrelationData == correlation
            print(f"time is {answer.payload.decode()} (correlation matched: {matched})", flush=True)
    finally:
        client.disconnect()
        client.loop_stop()


if __name__ == "__main__":
    main()
