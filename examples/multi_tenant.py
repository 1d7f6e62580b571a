"""Two tenants on one server: the same topics, separate worlds, one shared service.

    hybridbus serve -c conf/accounts.conf
    python examples/multi_tenant.py

Tenants A and B (accounts in conf/accounts.conf) each run an MQTT device (paho-mqtt)
and a NATS service (nats-py) on the same names: the devices, both with client id
`sensor-1`, publish `plant/sensor-1/temp`; each service subscribes `plant.*.temp` and
answers `plant.latest` with the last reading it saw. Each service sees only its own
tenant's device. A exports `plant.latest` to B, which imports it as
`partner.a.latest`: B's service asks A's service through it, while B's own
`plant.latest` stays B's. A has JetStream of its own (a stream of A's readings
only); B has none. The system account's admin lists every connection with its user
and account ($SYS.REQ.SERVER.PING.CONNZ).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import threading

import nats
import paho.mqtt.client as mqtt
from nats.js.errors import APIError

# The users and passwords of conf/accounts.conf.
TENANTS = {
    "A": {
        "device": ("a-device", "a-device-pw"),
        "service": ("a-service", "a-service-pw"),
        "temp": 21.5,
    },
    "B": {
        "device": ("b-device", "b-device-pw"),
        "service": ("b-service", "b-service-pw"),
        "temp": 35.0,
    },
}
ADMIN = ("admin", "admin-pw")


async def start_service(server: str, tenant: str) -> tuple[nats.NATS, dict]:
    """Tenant's NATS service: keeps the readings it sees, answers plant.latest."""
    user, password = TENANTS[tenant]["service"]
    nc = await nats.connect(server, user=user, password=password, name=f"service-{tenant}")
    seen: dict = {"readings": [], "event": asyncio.Event()}

    async def on_reading(msg):
        seen["readings"].append((msg.subject, json.loads(msg.data)))
        seen["event"].set()

    async def on_latest(msg):
        last = seen["readings"][-1][1] if seen["readings"] else None
        await msg.respond(json.dumps({"tenant": tenant, "latest": last}).encode())

    await nc.subscribe("plant.*.temp", cb=on_reading)
    await nc.subscribe("plant.latest", cb=on_latest)
    await nc.flush()
    return nc, seen


def start_device(host: str, port: int, tenant: str) -> mqtt.Client:
    """Tenant's MQTT device: logs in and sends one QoS 1 reading on plant/sensor-1/temp."""
    user, password = TENANTS[tenant]["device"]
    # The same client id in both tenants: sessions are per account, no takeover.
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="sensor-1")
    client.username_pw_set(user, password)
    connected = threading.Event()
    client.on_connect = lambda c, u, f, rc, p: connected.set() if rc == 0 else None
    client.connect(host, port, keepalive=30)
    client.loop_start()
    if not connected.wait(5):
        client.loop_stop()
        raise SystemExit(f"device {tenant}: MQTT login refused or no answer")
    reading = {"tenant": tenant, "temp": TENANTS[tenant]["temp"]}
    client.publish("plant/sensor-1/temp", json.dumps(reading), qos=1).wait_for_publish(5)
    return client


def stop_device(client: mqtt.Client) -> None:
    client.disconnect()
    client.loop_stop()


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--server", default="nats://127.0.0.1:4222")
    ap.add_argument("--mqtt", default="127.0.0.1:1883", help="MQTT host:port")
    args = ap.parse_args()
    host, _, port = args.mqtt.removeprefix("mqtt://").rpartition(":")

    services = {t: await start_service(args.server, t) for t in TENANTS}
    # A has its own JetStream (conf/accounts.conf): a stream of A's readings. Made
    # before the devices publish; an existing one with this config is accepted.
    js_a = services["A"][0].jetstream()
    await js_a.add_stream(name="READINGS", subjects=["plant.*.temp"])
    devices = [
        await asyncio.to_thread(start_device, host or "127.0.0.1", int(port), t) for t in TENANTS
    ]
    for tenant, (_, seen) in services.items():
        await asyncio.wait_for(seen["event"].wait(), 5)
        await asyncio.sleep(0.2)  # time for a stray reading of the other tenant to show up
        for subject, reading in seen["readings"]:
            print(f"service {tenant} got {subject}: {reading}", flush=True)

    nc_b = services["B"][0]
    own = json.loads((await nc_b.request("plant.latest", b"", timeout=2)).data)
    print(f"B asks plant.latest: {own}", flush=True)
    partner = json.loads((await nc_b.request("partner.a.latest", b"", timeout=2)).data)
    print(f"B asks partner.a.latest (A's export): {partner}", flush=True)

    info = await js_a.stream_info("READINGS")
    last = await js_a.get_last_msg("READINGS", "plant.sensor-1.temp")
    print(
        f"A's stream READINGS: {info.state.messages} message(s), last {json.loads(last.data)}",
        flush=True,
    )
    try:
        await nc_b.jetstream().account_info()
    except APIError as err:
        print(f"B's JetStream: {err.description} ({err.err_code})", flush=True)

    # The system account sees every account's connections ($SYS.REQ.SERVER.PING.CONNZ,
    # nats-server's /connz as a request; auth: true adds the users and accounts).
    admin = await nats.connect(args.server, user=ADMIN[0], password=ADMIN[1], name="admin")
    reply = await admin.request("$SYS.REQ.SERVER.PING.CONNZ", b'{"auth": true}', timeout=2)
    for conn in json.loads(reply.data)["data"]["connections"]:
        user, account = conn.get("authorized_user"), conn.get("account", "$G")
        print(f"admin sees {conn['type']} connection of {user} in account {account}", flush=True)
    await admin.close()
    for client in devices:
        await asyncio.to_thread(stop_device, client)
    for nc, _ in services.values():
        await nc.drain()


if __name__ == "__main__":
    asyncio.run(main())
