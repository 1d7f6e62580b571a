"""TLS listeners: nats-py and paho over TLS, mutual TLS, certificate -> user mapping,
and plaintext clients on TLS ports."""

from __future__ import annotations

import asyncio
import json
import ssl
import time

import nats
import paho.mqtt.client as mqtt
import pytest

from hybridbus.options import AuthOptions, Permissions, TLSOptions, User
from hybridbus.security.tls import server_context
from tests.helpers import mqtt_packets as mp
from tests.helpers.wire import Wire


def tls_opts(pki, **kw) -> TLSOptions:
    return TLSOptions(cert_file=pki.server_cert, key_file=pki.server_key, ca_file=pki.ca_file, **kw)


def test_server_context_settings(pki):
    assert server_context(None) is None
    assert server_context(TLSOptions()) is None
    plain = server_context(tls_opts(pki))
    assert plain.verify_mode == ssl.CERT_NONE
    assert plain.minimum_version == ssl.TLSVersion.TLSv1_2
    mutual = server_context(tls_opts(pki, verify=True, min_version="1.3"))
    assert mutual.verify_mode == ssl.CERT_REQUIRED
    assert mutual.minimum_version == ssl.TLSVersion.TLSv1_3
    assert server_context(tls_opts(pki, verify_and_map=True)).verify_mode == ssl.CERT_REQUIRED
    with pytest.raises((ssl.SSLError, OSError)):
        server_context(TLSOptions(cert_file=pki.server_cert, key_file=pki.ca_file))


async def test_nats_py_over_tls(server_factory, pki):
    server = await server_factory(tls=tls_opts(pki))
    nc = await nats.connect(f"tls://127.0.0.1:{server.nats_port}", tls=pki.client_context())
    sub = await nc.subscribe("t")
    await nc.publish("t", b"secure")
    assert (await sub.next_msg(2)).data == b"secure"
    (client,) = server.clients.values()
    assert client.tls_version in ("1.2", "1.3") and client.tls_cipher
    await nc.close()


async def nats_usable(url: str, ctx: ssl.SSLContext) -> bool:
    """Connected and answering a PING round trip.

    With TLS 1.3 the server checks the client certificate after the client thinks
    the handshake is over, so nats-py may return from connect() and only then see
    the connection drop."""

    async def quiet(e):
        pass

    try:
        nc = await nats.connect(
            url,
            tls=ctx,
            allow_reconnect=False,
            max_reconnect_attempts=0,
            connect_timeout=2,
            error_cb=quiet,
        )
    except Exception:
        return False
    try:
        if not nc.is_connected:
            return False
        await nc.flush(1)
        return nc.is_connected
    except Exception:
        return False
    finally:
        await nc.close()


async def test_nats_mutual_tls(server_factory, pki):
    server = await server_factory(tls=tls_opts(pki, verify=True))
    url = f"tls://127.0.0.1:{server.nats_port}"
    assert await nats_usable(url, pki.client_context("alice"))
    assert not await nats_usable(url, pki.client_context(None))
    assert not await nats_usable(url, pki.client_context("stranger"))
    m = await (await Wire.open(server.nats_port)).expect_re(rb"INFO (\{.*?\}) \r\n")
    assert json.loads(m.group(1))["tls_verify"] is True


async def test_nats_verify_and_map(server_factory, pki):
    users = [
        User("alice@example.com", None, Permissions(publish_allow=["alice.>"])),
        User("bob", None),
    ]
    server = await server_factory(
        auth=AuthOptions(users=users), tls=tls_opts(pki, verify_and_map=True)
    )
    url = f"tls://127.0.0.1:{server.nats_port}"
    errors = []

    async def on_error(e):
        errors.append(str(e))

    alice = await nats.connect(url, tls=pki.client_context("alice"), error_cb=on_error)
    bob = await nats.connect(url, tls=pki.client_context("bob"))
    assert sorted(c.user for c in server.clients.values()) == ["alice@example.com", "bob"]
    sub = await bob.subscribe(">")
    await bob.flush()
    await alice.publish("alice.ok", b"1")
    await alice.publish("bob.no", b"2")
    await alice.flush()
    assert (await sub.next_msg(2)).subject == "alice.ok"
    with pytest.raises(nats.errors.TimeoutError):
        await sub.next_msg(0.2)
    assert any("permissions violation" in e.lower() for e in errors)
    await alice.close()
    await bob.close()
    # a valid certificate that names no user: Authorization Violation
    with pytest.raises(Exception) as info:
        await nats.connect(
            url,
            tls=pki.client_context("mallory"),
            allow_reconnect=False,
            max_reconnect_attempts=0,
            connect_timeout=2,
        )
    assert "authorization violation" in str(info.value).lower()
    assert server.security.failures["certificate not mapped to a user"] == 1


async def test_nats_plaintext_client_on_tls_port_fails_cleanly(server_factory, pki, caplog):
    server = await server_factory(tls=tls_opts(pki))
    wire = await Wire.open(server.nats_port)
    m = await wire.expect_re(rb"INFO (\{.*?\}) \r\n")
    assert json.loads(m.group(1))["tls_required"] is True
    await wire.send(b"CONNECT {}\r\nPING\r\n")
    rest = await wire.expect_closed()
    assert b"PONG" not in rest
    await asyncio.sleep(0.05)
    assert not server.clients
    # the listener still serves TLS clients
    nc = await nats.connect(f"tls://127.0.0.1:{server.nats_port}", tls=pki.client_context())
    await nc.close()
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]


async def test_nats_tls_handshake_timeout(server_factory, pki):
    server = await server_factory(tls=tls_opts(pki, timeout=0.3))
    wire = await Wire.open(server.nats_port)
    await wire.expect_re(rb"INFO \{.*?\} \r\n")
    started = time.monotonic()
    await wire.expect_closed(timeout=3)
    assert time.monotonic() - started < 2


async def test_nats_min_version(server_factory, pki):
    server = await server_factory(tls=tls_opts(pki, min_version="1.3"))
    url = f"tls://127.0.0.1:{server.nats_port}"
    ctx = pki.client_context()
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    assert not await nats_usable(url, ctx)
    assert await nats_usable(url, pki.client_context())


# -- MQTT -----------------------------------------------------------------------------


def paho_tls(port: int, pki, who: str | None, username: str | None = None) -> object:
    result = {}
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"tls-{who}")
    cert, key = pki.clients[who] if who else (None, None)
    c.tls_set(ca_certs=pki.ca_file, certfile=cert, keyfile=key)
    if username:
        c.username_pw_set(username, "irrelevant")
    got = []
    c.on_connect = lambda cl, u, f, rc, p=None: result.setdefault("rc", rc)
    c.on_message = lambda cl, u, m: got.append(m.payload)
    c.on_subscribe = lambda *a: result.setdefault("sub", True)
    try:
        c.connect("127.0.0.1", port, keepalive=10)
    except (ssl.SSLError, OSError) as err:
        return err
    deadline = time.monotonic() + 5
    while "rc" not in result and time.monotonic() < deadline:
        try:
            if c.loop(timeout=0.05) != mqtt.MQTT_ERR_SUCCESS:
                result["lost"] = True
                return result
        except (ssl.SSLError, OSError) as err:
            return err
    if result.get("rc") == 0:
        c.subscribe("loop/back", 1)
        while "sub" not in result and time.monotonic() < deadline:
            c.loop(timeout=0.05)
        c.publish("loop/back", b"over-tls", qos=1)
        while not got and time.monotonic() < deadline:
            c.loop(timeout=0.05)
        result["got"] = got
    c.disconnect()
    return result


async def test_paho_over_tls(server_factory, pki):
    server = await server_factory(mqtt__tls=tls_opts(pki))
    result = await asyncio.to_thread(paho_tls, server.mqtt_port, pki, None)
    assert result["rc"] == 0 and result["got"] == [b"over-tls"]


async def test_paho_mutual_tls_and_map(server_factory, pki):
    server = await server_factory(
        auth=AuthOptions(users=[User("bob", None, Permissions(publish_allow=["loop.>"]))]),
        mqtt__tls=tls_opts(pki, verify_and_map=True),
    )
    result = await asyncio.to_thread(paho_tls, server.mqtt_port, pki, "bob", "someone-else")
    assert result["rc"] == 0 and result["got"] == [b"over-tls"]
    # no client certificate: the handshake itself fails
    result = await asyncio.to_thread(paho_tls, server.mqtt_port, pki, None)
    assert isinstance(result, Exception) or result.get("rc") != 0
    # a certificate that maps to nobody: CONNACK refused
    result = await asyncio.to_thread(paho_tls, server.mqtt_port, pki, "mallory")
    assert result["rc"] != 0


async def test_mqtt_plaintext_client_on_tls_port(server_factory, pki):
    server = await server_factory(mqtt__tls=tls_opts(pki))
    wire = await Wire.open(server.mqtt_port)
    await wire.send(mp.connect("plain"))
    rest = await wire.expect_closed(timeout=5)
    assert not rest.startswith(b"\x20")  # never a CONNACK
    await asyncio.sleep(0.05)
    assert not server.clients
