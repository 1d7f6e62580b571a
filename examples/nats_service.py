"""A NATS service that consumes the devices' MQTT telemetry and commands them.

    python examples/nats_service.py --count 10

It subscribes to `plant.*.telemetry` and `plant.*.status` (the MQTT topics
`plant/+/telemetry` and `plant/+/status`), and sends each device that reports
a `ping` request on `plant.<id>.cmd`; MQTT 5 devices answer through the
request's reply subject.
"""

from __future__ import annotations

import argparse
import asyncio
import json

import nats
from nats.errors import NoRespondersError, TimeoutError


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--server", default="nats://127.0.0.1:4222")
    ap.add_argument("--count", type=int, default=0, help="telemetry messages to read (0 = forever)")
    args = ap.parse_args()

    nc = await nats.connect(args.server, name="telemetry-service")
    seen = 0
    pinged: set[str] = set()
    done = asyncio.Event()

    async def on_status(msg):
        device = msg.subject.split(".")[1]
        print(f"status {device}: {msg.data.decode()}", flush=True)

    async def on_telemetry(msg):
        nonlocal seen
        device = msg.subject.split(".")[1]
        reading = json.loads(msg.data)
        seen += 1
        print(f"telemetry {device}: {reading}", flush=True)
        if device not in pinged:
            pinged.add(device)
            try:
                reply = await nc.request(f"plant.{device}.cmd", b"ping", timeout=2)
                print(f"reply {device}: {reply.data.decode()}", flush=True)
            except (TimeoutError, NoRespondersError) as err:
                print(f"no reply from {device}: {err!r}", flush=True)
        if args.count and seen >= args.count:
            done.set()

    await nc.subscribe("plant.*.status", cb=on_status)
    await nc.subscribe("plant.*.telemetry", cb=on_telemetry)
    await nc.flush()
    print("ready", flush=True)
    await done.wait()
    await nc.drain()


if __name__ == "__main__":
    asyncio.run(main())
