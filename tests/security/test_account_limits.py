"""Per-account limits { max_connections, max_subscriptions, max_payload } with
nats-server 2.15's errors (checked against the real server: -ERR 'maximum account
active connections exceeded', 'maximum subscriptions exceeded' (per connection, the
connection stays), 'Maximum Payload Violation' (the connection closes))."""

from __future__ import annotations

import asyncio
import json
import urllib.request

import pytest

from tests.helpers import mqtt_packets as mp
from tests.helpers.wire import Wire, eventually

from .accounts_env import login, start

LIMITS = """
authorization { users: [{user: g, password: g}] }
accounts {
  L: {
    users: [{user: l, password: l}, {user: l2, password: l2}]
    limits: {max_connections: 2, max_subscriptions: 2, max_payload: 10}
  }
  Z: { users: [{user: z, password: z}], limits: {max_conn: 0} }
}
"""


@pytest.fixture
async def server(tmp_path):
    server = await start(tmp_path, LIMITS)
    yield server
    await server.shutdown()


async def connect(port: int, user: str) -> Wire:
    wire = await Wire.open(port)
    await wire.expect_re(rb"INFO \{.*?\} \r\n")
    await wire.send(
        b'CONNECT {"verbose":false,"user":"%s","pass":"%s"}\r\nPING\r\n'
        % (user.encode(), user.encode())
    )
    return wire


async def test_max_connections(server):
    port = server.nats_port
    first, second = await connect(port, "l"), await connect(port, "l2")
    await first.expect(b"PONG\r\n")
    await second.expect(b"PONG\r\n")
    third = await connect(port, "l")
    got = await third.expect_closed()
    assert got == b"-ERR 'maximum account active connections exceeded'\r\n"
    assert server.accounts["L"].nconns == 2
    # another account and $G are not limited by L's count
    g = await connect(port, "g")
    await g.expect(b"PONG\r\n")
    # a slot frees when a connection closes
    await first.close()
    await eventually(lambda: server.accounts["L"].nconns == 1)
    again = await connect(port, "l")
    await again.expect(b"PONG\r\n")
    # max_connections: 0 lets nobody in
    zero = await connect(port, "z")
    assert (await zero.expect_closed()).startswith(b"-ERR 'maximum account active")
    for w in (second, g, again):
        await w.close()


async def test_max_connections_with_nats_py(server):
    import nats

    a, b = await login(server, "l"), await login(server, "l2")
    with pytest.raises(nats.errors.Error, match="maximum account active connections"):
        await login(server, "l")
    await a.close()
    await b.close()


async def test_max_subscriptions_per_connection(server):
    port = server.nats_port
    wire = await connect(port, "l")
    await wire.expect(b"PONG\r\n")
    await wire.send(b"SUB a 1\r\nSUB b 2\r\nSUB c 3\r\nPING\r\n")
    await wire.expect(b"-ERR 'maximum subscriptions exceeded'\r\nPONG\r\n")
    # the connection stays and its two subscriptions work; an UNSUB frees a slot
    await wire.send(b"PUB a 1\r\nx\r\nUNSUB 2\r\nSUB c 3\r\nPUB c 1\r\ny\r\nPING\r\n")
    await wire.expect(b"MSG a 1 1\r\nx\r\nMSG c 3 1\r\ny\r\nPONG\r\n")
    # per connection, as nats-server: another connection of L has its own two
    other = await connect(port, "l2")
    await other.send(b"SUB a 1\r\nSUB b 2\r\nPING\r\n")
    await other.expect(b"PONG\r\nPONG\r\n")
    # $G has no such limit
    g = await connect(port, "g")
    await g.send(b"SUB a 1\r\nSUB b 2\r\nSUB c 3\r\nPING\r\n")
    await g.expect(b"PONG\r\nPONG\r\n")
    for w in (wire, other, g):
        await w.close()


async def test_max_payload(server):
    port = server.nats_port
    wire = await connect(port, "l")
    await wire.expect(b"PONG\r\n")
    await wire.send(b"SUB a 1\r\nPUB a 10\r\n0123456789\r\nPING\r\n")
    await wire.expect(b"MSG a 1 10\r\n0123456789\r\nPONG\r\n")
    await wire.send(b"PUB a 11\r\n0123456789X\r\n")
    got = await wire.expect_closed()
    assert got == b"-ERR 'Maximum Payload Violation'\r\n"
    g = await connect(port, "g")
    await g.expect(b"PONG\r\n")
    await g.send(b"PUB a 11\r\n0123456789X\r\nPING\r\n")
    await g.expect(b"PONG\r\n")  # the server's max_payload applies to $G
    await g.close()


async def test_limits_change_on_reload(server, tmp_path):
    port = server.nats_port
    wire = await connect(port, "l")
    await wire.expect(b"PONG\r\n")
    path = server.options.config_file
    with open(path) as f:
        text = f.read()
    with open(path, "w") as f:
        f.write(
            text.replace(
                "max_subscriptions: 2, max_payload: 10", "max_subscriptions: 5, max_payload: 20"
            )
        )
    assert server.reload()
    await wire.send(b"SUB a 1\r\nSUB b 2\r\nSUB c 3\r\nPUB a 15\r\n012345678901234\r\nPING\r\n")
    await wire.expect(b"MSG a 1 15\r\n012345678901234\r\nPONG\r\n")
    await wire.close()


# -- MQTT clients count in their account too ------------------------------------------


async def mqtt_login(port: int, client_id: str, user: str, level: int = 4) -> Wire:
    wire = await Wire.open(port)
    await wire.send(mp.connect(client_id, username=user, password=user.encode(), level=level))
    return wire


async def http_json(server, path: str) -> dict:
    def get() -> dict:
        url = f"http://127.0.0.1:{server.monitor.port}{path}"
        with urllib.request.urlopen(url, timeout=2) as r:
            return json.load(r)

    return await asyncio.to_thread(get)


async def test_mqtt_clients_count_against_max_connections(server):
    """L allows 2 connections: two MQTT clients fill it, so a third MQTT client gets
    CONNACK 0x03 (3.1.1) / 0x97 Quota exceeded (5.0) and a NATS client the -ERR;
    once one leaves, a NATS client gets in. nats-server 2.15.1 closes such an MQTT
    client without a CONNACK (handle_connect.py says why we answer)."""
    port = server.mqtt_port
    m1, m2 = await mqtt_login(port, "m1", "l"), await mqtt_login(port, "m2", "l2")
    for w in (m1, m2):
        await w.expect(mp.connack(0, 0))
    assert server.accounts["L"].nconns == 2
    m3 = await mqtt_login(port, "m3", "l")
    assert await m3.expect_closed() == mp.connack(0, 0x03)
    m5 = await mqtt_login(port, "m5", "l", level=5)
    assert await m5.expect_closed() == mp.connack(0, 0x97, level=5)
    nats_l = await connect(server.nats_port, "l")
    assert (await nats_l.expect_closed()).startswith(b"-ERR 'maximum account active")
    # max_connections: 0 refuses MQTT clients too
    z = await mqtt_login(port, "z", "z")
    assert await z.expect_closed() == mp.connack(0, 0x03)
    await m1.close()
    await eventually(lambda: server.accounts["L"].nconns == 1)
    again = await connect(server.nats_port, "l")
    await again.expect(b"PONG\r\n")
    await m2.close()
    await again.close()
    # every refused or closed client was given back: nothing left over, nothing negative
    await eventually(lambda: server.accounts["L"].nconns == 0)
    assert server.global_account.nconns == 0
    assert server.accounts["Z"].nconns == 0


async def test_mqtt_counts_in_accstatz_and_sys_statz(server):
    """An MQTT client of L and one of $G: /accstatz and the account's
    $SYS.REQ.ACCOUNT.PING.STATZ count them where they are, and nothing is left (or
    negative) after they leave (before, $G counted L's MQTT clients and L went
    below 0)."""
    import paho.mqtt.client as mqtt

    def paho(client_id: str, user: str) -> mqtt.Client:
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
        c.username_pw_set(user, user)
        c.connect("127.0.0.1", server.mqtt_port, keepalive=10)
        c.loop_start()
        return c

    def stop(c: mqtt.Client) -> None:
        c.disconnect()
        c.loop_stop()

    clients = [await asyncio.to_thread(paho, "p1", "l"), await asyncio.to_thread(paho, "pg", "g")]
    await eventually(lambda: server.accounts["L"].nconns == 1)
    await eventually(lambda: server.global_account.nconns == 1)
    statz = (await http_json(server, "/accstatz"))["account_statz"]
    assert {s["acc"]: s["conns"] for s in statz} == {"L": 1, "$G": 1}
    nc = await login(server, "l2")  # L's second connection, asking about its account
    reply = await nc.request("$SYS.REQ.ACCOUNT.PING.STATZ", b"", timeout=2)
    data = json.loads(reply.data)["data"]["account_statz"]
    assert [(s["acc"], s["conns"]) for s in data] == [("L", 2)]
    await nc.close()
    for c in clients:
        await asyncio.to_thread(stop, c)
    await eventually(lambda: server.accounts["L"].nconns == 0)
    assert server.global_account.nconns == 0
    statz = (await http_json(server, "/accstatz?unused=1"))["account_statz"]
    assert {s["acc"]: s["conns"] for s in statz if s["acc"] in ("L", "$G")} == {"L": 0, "$G": 0}


async def test_flapping_mqtt_client_keeps_one_slot(server):
    """A CONNECT delayed for flapping (its client id taken over too often) is
    authenticated again when it resumes: it must not take a second slot of L."""
    server.mqtt_flap_delay = 0.2
    wires = []
    for _ in range(5):
        wire = await mqtt_login(server.mqtt_port, "flapper", "l")
        await wire.expect(mp.connack(0, 0))
        wires.append(wire)
    await eventually(lambda: server.accounts["L"].nconns == 1)
    assert server.global_account.nconns == 0
    for w in wires:
        await w.close()
    await eventually(lambda: server.accounts["L"].nconns == 0)
    assert server.global_account.nconns == 0
