"""A NATS service that answers requests from MQTT 5 devices.

    python examples/nats_responder.py --count 5

It answers on `time.now` (MQTT topic `time/now`). An MQTT 5 device that
publishes there with a Response Topic gets the answer on that topic, with its
Correlation Data echoed back by the bridge (see mqtt5_requester.py).
"""

from __future__ import annotations

import argparse
import asyncio
import time

import nats


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--server", default="nats://127.0.0.1:4222")
    ap.add_argument("--count", type=int, default=0, help="requests to answer (0 = forever)")
    args = ap.parse_args()
    nc = await nats.connect(args.server, name="time-service")
    answered = 0
    done = asyncio.Event()

    async def on_request(msg):
        nonlocal answered
        await msg.respond(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()).encode())
        answered += 1
        print(f"answered request {answered} on {msg.reply}", flush=True)
        if args.count and answered >= args.count:
            done.set()

    await nc.subscribe("time.now", cb=on_request)
    await nc.flush()
    print("ready", flush=True)
    await done.wait()
    await nc.drain()


if __name__ == "__main__":
    asyncio.run(main())
