"""Authentication on the wire: exact -ERR texts and CONNACK codes, real clients too."""

from __future__ import annotations

import asyncio
import json
import time

import nats
import paho.mqtt.client as mqtt
import pytest

from hybridbus.options import AuthOptions, Permissions, User
from tests.helpers import mqtt_packets as mp
from tests.helpers.wire import Wire, mqtt_packets

AUTH_ERR = b"-ERR 'Authorization Violation'\r\n"


def users_auth(hashes=None, timeout: float = 2.0) -> AuthOptions:
    users = [
        User("alice", "pw-alice"),
        User("svc", "pw-svc", allowed_connection_types=["STANDARD"]),
    ]
    if hashes:
        users.append(User("hashed", hashes["2a"]))
    return AuthOptions(users=users, timeout=timeout)


async def nats_open(port: int) -> tuple[Wire, dict]:
    wire = await Wire.open(port)
    m = await wire.expect_re(rb"INFO (\{.*?\}) \r\n")
    return wire, json.loads(m.group(1))


# -- NATS -----------------------------------------------------------------------------


async def test_nats_user_password(server_factory, hashes):
    server = await server_factory(auth=users_auth(hashes))
    wire, info = await nats_open(server.nats_port)
    assert info["auth_required"] is True
    await wire.send(b'CONNECT {"user":"alice","pass":"pw-alice"}\r\nPING\r\n')
    await wire.expect(b"+OK\r\nPONG\r\n")
    assert server.clients[max(server.clients)].user == "alice"
    await wire.close()
    wire, _ = await nats_open(server.nats_port)
    await wire.send(b'CONNECT {"verbose":false,"user":"hashed","pass":"s3cret"}\r\nPING\r\n')
    await wire.expect(b"PONG\r\n")
    await wire.close()


@pytest.mark.parametrize(
    "connect",
    [
        b'{"user":"alice","pass":"wrong"}',
        b'{"user":"nobody","pass":"pw-alice"}',
        b'{"user":"hashed","pass":"S3cret"}',
        b"{}",
        b'{"auth_token":"pw-alice"}',
    ],
    ids=["bad-pass", "unknown-user", "bad-bcrypt", "no-creds", "token-not-configured"],
)
async def test_nats_refused_then_closed(server_factory, hashes, connect):
    server = await server_factory(auth=users_auth(hashes))
    wire, _ = await nats_open(server.nats_port)
    await wire.send(b"CONNECT " + connect + b"\r\nPING\r\n")
    assert await wire.expect_closed() == AUTH_ERR
    assert server.stats.auth_failures == 1
    assert sum(server.security.failures.values()) == 1


async def test_nats_op_before_connect_is_a_violation(server_factory):
    server = await server_factory(auth=users_auth())
    wire, _ = await nats_open(server.nats_port)
    await wire.send(b"SUB foo 1\r\n")
    assert await wire.expect_closed() == AUTH_ERR


async def test_nats_connection_type_not_allowed(server_factory):
    server = await server_factory(
        auth=AuthOptions(users=[User("dev", "pw", allowed_connection_types=["MQTT"])])
    )
    wire, _ = await nats_open(server.nats_port)
    await wire.send(b'CONNECT {"user":"dev","pass":"pw"}\r\n')
    assert await wire.expect_closed() == AUTH_ERR
    assert server.security.failures["connection type not allowed"] == 1


async def test_nats_token(server_factory):
    server = await server_factory(auth=AuthOptions(token="tok-123"))
    wire, _ = await nats_open(server.nats_port)
    await wire.send(b'CONNECT {"verbose":false,"auth_token":"tok-123"}\r\nPING\r\n')
    await wire.expect(b"PONG\r\n")
    nc = await nats.connect(f"nats://127.0.0.1:{server.nats_port}", token="tok-123")
    assert nc.is_connected
    await nc.close()
    wire2, _ = await nats_open(server.nats_port)
    await wire2.send(b'CONNECT {"auth_token":"tok-124"}\r\n')
    assert await wire2.expect_closed() == AUTH_ERR


async def test_nats_auth_timeout(server_factory):
    server = await server_factory(auth=users_auth(timeout=0.3))
    wire, _ = await nats_open(server.nats_port)
    started = time.monotonic()
    assert await wire.expect_closed(timeout=3) == b"-ERR 'Authentication Timeout'\r\n"
    assert 0.25 <= time.monotonic() - started < 1.5


async def test_nats_half_connect_then_stall_is_timed_out(server_factory):
    server = await server_factory(auth=users_auth(timeout=0.3))
    wire, _ = await nats_open(server.nats_port)
    await wire.send(b'CONNECT {"user":"alice","pa')
    assert await wire.expect_closed(timeout=3) == b"-ERR 'Authentication Timeout'\r\n"
    await asyncio.sleep(0.05)
    assert not server.clients


async def test_nats_py_credentials(server_factory, hashes):
    server = await server_factory(auth=users_auth(hashes))
    url = f"nats://127.0.0.1:{server.nats_port}"
    nc = await nats.connect(url, user="hashed", password="s3cret")
    sub = await nc.subscribe("x")
    await nc.publish("x", b"1")
    assert (await sub.next_msg(2)).data == b"1"
    await nc.close()
    errors = []

    async def on_error(e):
        errors.append(e)

    with pytest.raises(Exception) as info:
        await nats.connect(
            url,
            user="alice",
            password="bad",
            allow_reconnect=False,
            max_reconnect_attempts=0,
            connect_timeout=2,
            error_cb=on_error,
        )
    assert "authorization violation" in (str(info.value) + repr(errors)).lower()


# -- MQTT -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "username, password, code",
    [
        ("alice", b"wrong", 0x04),  # bad user name or password
        ("nobody", b"pw-alice", 0x04),
        (None, None, 0x05),  # not authorized
        ("svc", b"pw-svc", 0x04),  # STANDARD only: refused on MQTT
    ],
)
async def test_mqtt311_refused(server_factory, username, password, code):
    server = await server_factory(auth=users_auth())
    wire = await Wire.open(server.mqtt_port)
    await wire.send(mp.connect("c1", username=username, password=password))
    # [MQTT-3.2.2-5] CONNACK with a failure code, then the server closes.
    assert await wire.expect_closed() == mp.connack(0, code)
    assert server.stats.auth_failures == 1


@pytest.mark.parametrize(
    "username, password, code",
    [("alice", b"wrong", 0x86), ("nobody", b"x", 0x86), (None, None, 0x87)],
)
async def test_mqtt5_refused(server_factory, username, password, code):
    server = await server_factory(auth=users_auth())
    wire = await Wire.open(server.mqtt_port)
    await wire.send(mp.connect("c5", username=username, password=password, level=5))
    assert await wire.expect_closed() == mp.connack(0, code, level=5)


async def test_mqtt_user_password_accepted_both_levels(server_factory, hashes):
    server = await server_factory(auth=users_auth(hashes))
    wire = await Wire.open(server.mqtt_port)
    await wire.send(mp.connect("c1", username="alice", password=b"pw-alice"))
    await wire.expect(mp.connack(0, 0))
    wire5 = await Wire.open(server.mqtt_port)
    await wire5.send(mp.connect("c5", username="hashed", password=b"s3cret", level=5))
    (ack,) = await mqtt_packets(wire5, 1)
    assert ack.reason_code == 0
    users = sorted(c.user for c in server.clients.values())
    assert users == ["alice", "hashed"]


async def test_mqtt_token_as_password_any_username(server_factory):
    server = await server_factory(auth=AuthOptions(token="tok-9"))
    for name in ("whoever", "someone-else"):
        wire = await Wire.open(server.mqtt_port)
        await wire.send(mp.connect(name, username=name, password=b"tok-9"))
        await wire.expect(mp.connack(0, 0))
    wire = await Wire.open(server.mqtt_port)
    await wire.send(mp.connect("bad", username="whoever", password=b"tok-8"))
    assert await wire.expect_closed() == mp.connack(0, 0x04)


async def test_mqtt_no_auth_user(server_factory):
    server = await server_factory(
        auth=AuthOptions(
            users=[User("anon", None, Permissions(publish_allow=["pub.>"])), User("x", "y")]
        ),
        mqtt__no_auth_user="anon",
    )
    wire = await Wire.open(server.mqtt_port)
    await wire.send(mp.connect("c", level=5))
    (ack,) = await mqtt_packets(wire, 1)
    assert ack.reason_code == 0
    (client,) = server.clients.values()
    assert client.user == "anon" and client.perms is not None
    # the NATS port has no no_auth_user: a bare CONNECT is refused there
    nw, _ = await nats_open(server.nats_port)
    await nw.send(b"CONNECT {}\r\n")
    assert await nw.expect_closed() == AUTH_ERR


async def test_mqtt_auth_override_block(server_factory):
    server = await server_factory(
        auth=AuthOptions(user="natsonly", password="n"),
        mqtt__auth=AuthOptions(user="device", password="d"),
    )
    wire = await Wire.open(server.mqtt_port)
    await wire.send(mp.connect("c", username="device", password=b"d"))
    await wire.expect(mp.connack(0, 0))
    wire = await Wire.open(server.mqtt_port)
    await wire.send(mp.connect("c2", username="natsonly", password=b"n"))
    assert await wire.expect_closed() == mp.connack(0, 0x04)


def _paho_connect(port: int, username: str, password: str, protocol) -> object:
    result = {}
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="p-" + username, protocol=protocol)
    c.username_pw_set(username, password)

    def on_connect(client, userdata, flags, rc, props=None):
        result["rc"] = rc

    c.on_connect = on_connect
    c.connect("127.0.0.1", port, keepalive=10)
    deadline = time.monotonic() + 5
    while "rc" not in result and time.monotonic() < deadline:
        c.loop(timeout=0.1)
    c.disconnect()
    return result.get("rc")


@pytest.mark.parametrize("protocol", [mqtt.MQTTv311, mqtt.MQTTv5], ids=["v311", "v5"])
async def test_paho_credentials(server_factory, protocol):
    server = await server_factory(auth=users_auth())
    ok = await asyncio.to_thread(_paho_connect, server.mqtt_port, "alice", "pw-alice", protocol)
    assert ok == 0
    bad = await asyncio.to_thread(_paho_connect, server.mqtt_port, "alice", "nope", protocol)
    # paho reports 3.1.1's return code 4 as the 5.0 reason 0x86 too
    assert bad == "Bad user name or password"
