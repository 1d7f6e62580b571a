"""A NATS service that reads MQTT telemetry from a JetStream stream and configures
devices through the retained-message KV bucket.

    hybridbus serve -c conf/jetstream-mqtt.conf
    python examples/mqtt_to_stream.py --count 5
    python examples/telemetry_device.py --id k1 --count 5

The service creates the stream TELEMETRY (subjects `telemetry.>`): every QoS 1
PUBLISH a device sends on `telemetry/<id>` is stored there before the device gets
its PUBACK, so nothing is lost while the service is down. The service pulls and
acks through the durable consumer `service`, which remembers where it stopped.

With `mqtt { retained_kv: "devices" }` in the server config, MQTT retained messages
are the KV bucket `devices`: the device's retained `plant/<id>/status` is
`kv.get("plant.<id>.status")` here, and `kv.put("plant.<id>.config", ...)` is the
retained message of `plant/<id>/config`, delivered live to the subscribed device.
"""

from __future__ import annotations

import argparse
import asyncio
import json

import nats
from nats.errors import TimeoutError
from nats.js.errors import KeyNotFoundError


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--server", default="nats://127.0.0.1:4222")
    ap.add_argument("--count", type=int, default=0, help="readings to process (0 = forever)")
    args = ap.parse_args()

    nc = await nats.connect(args.server, name="telemetry-store-service")
    js = nc.jetstream()
    # Idempotent: the same config again is accepted, so every start may ask for it.
    await js.add_stream(name="TELEMETRY", subjects=["telemetry.>"])
    sub = await js.pull_subscribe("telemetry.>", durable="service", stream="TELEMETRY")
    kv = await js.key_value("devices")  # made by the server from mqtt.retained_kv
    print("ready", flush=True)

    configured: set[str] = set()
    seen = 0
    while args.count == 0 or seen < args.count:
        try:
            msgs = await sub.fetch(10, timeout=1)
        except TimeoutError:
            continue  # nothing new yet
        for msg in msgs:
            device = msg.subject.split(".", 1)[1]
            reading = json.loads(msg.data)
            print(f"telemetry {device} #{msg.metadata.sequence.stream}: {reading}", flush=True)
            await msg.ack()  # the stream may now count it as processed by `service`
            seen += 1
            if device not in configured:
                configured.add(device)
                await configure(kv, device)
    await nc.drain()


async def configure(kv, device: str) -> None:
    """Read the device's retained state, push it a configuration."""
    try:
        state = (await kv.get(f"plant.{device}.status")).value.decode()
    except KeyNotFoundError:
        state = "unknown"
    print(f"state {device}: {state}", flush=True)
    config = {"interval": 5, "unit": "C"}
    revision = await kv.put(f"plant.{device}.config", json.dumps(config).encode())
    print(f"config {device}: {config} (revision {revision})", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
