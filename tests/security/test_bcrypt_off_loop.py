"""bcrypt runs off the event loop: logins with costly hashes do not stall anyone."""

from __future__ import annotations

import asyncio
import time

import bcrypt

from hybridbus.options import AuthOptions, User
from tests.helpers import mqtt_packets as mp
from tests.helpers.wire import Wire, nats_connect

AUTH_VIOLATION = b"-ERR 'Authorization Violation'\r\n"


def _without_pings(wire_bytes: bytes) -> bytes:
    # A check that waits behind others' on a loaded machine may outlast the first
    # ping interval (2 s): the server's own PINGs can then precede the -ERR.
    return wire_bytes.replace(b"PING\r\n", b"")


async def _max_ping_latency(wire: Wire, stop: asyncio.Event) -> float:
    worst = 0.0
    while not stop.is_set():
        started = time.perf_counter()
        await wire.send(b"PING\r\n")
        # the server's own first PING (after ~2 s) may come first
        await wire.expect_re(rb"(?:PING\r\n)?PONG\r\n")
        worst = max(worst, time.perf_counter() - started)
        await asyncio.sleep(0.005)
    return worst


async def test_bcrypt_logins_do_not_stall_other_clients(server_factory):
    started = time.perf_counter()
    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(13)).decode()
    cost = time.perf_counter() - started  # one check costs about as much as hashing
    users = [User(user="slow", password=hashed)]
    server = await server_factory(auth=AuthOptions(users=users))
    bystander = await nats_connect(
        server.nats_port, b'{"verbose":false,"user":"slow","pass":"s3cret"}'
    )
    stop = asyncio.Event()
    watcher = asyncio.create_task(_max_ping_latency(bystander, stop))
    logins = []
    for i, password in enumerate([b"wrong1", b"s3cret", b"wrong2"]):
        nats = await Wire.open(server.nats_port)
        await nats.expect_re(rb"INFO .*? \r\n")
        await nats.send(
            b'CONNECT {"verbose":false,"user":"slow","pass":"%s"}\r\nPING\r\n' % password
        )
        mqtt = await Wire.open(server.mqtt_port)
        await mqtt.send(mp.connect(f"m{i}", username="slow", password=password))
        logins.append((password, nats, mqtt))
    for password, nats, mqtt in logins:
        if password == b"s3cret":
            await nats.expect_re(rb"(?:PING\r\n)?PONG\r\n", timeout=15)
            await mqtt.expect(mp.connack(0, 0), timeout=15)
        else:
            assert _without_pings(await nats.expect_closed(timeout=15)) == AUTH_VIOLATION
            assert await mqtt.expect_closed(timeout=15) == mp.connack(0, 4)
    stop.set()
    worst = await watcher
    # six bcrypt checks ran (several seconds of CPU in all), yet the loop kept answering
    assert cost > 0.2
    assert worst < cost / 2, (worst, cost)


async def test_login_waiting_for_its_bcrypt_check_is_not_timed_out(server_factory):
    # Logins whose CONNECT arrived in time but whose password check waits behind
    # others' (one bcrypt thread) get their answer, not an authentication timeout.
    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(12)).decode()
    auth = AuthOptions(users=[User(user="slow", password=hashed)], timeout=0.3)
    server = await server_factory(auth=auth)
    nats_logins, mqtt_logins = [], []
    for i in range(3):
        nats = await Wire.open(server.nats_port)
        await nats.expect_re(rb"INFO .*? \r\n")
        await nats.send(b'CONNECT {"verbose":false,"user":"slow","pass":"no%d"}\r\n' % i)
        nats_logins.append(nats)
        mqtt = await Wire.open(server.mqtt_port)
        await mqtt.send(mp.connect(f"m{i}", username="slow", password=b"no"))
        mqtt_logins.append(mqtt)
    # six checks, each longer than the 0.3 s timeout, queue on one thread
    for nats in nats_logins:
        assert _without_pings(await nats.expect_closed(timeout=30)) == AUTH_VIOLATION
    for mqtt in mqtt_logins:
        assert await mqtt.expect_closed(timeout=30) == mp.connack(0, 4)
    # a client that never sends CONNECT is still timed out
    idle = await Wire.open(server.nats_port)
    assert b"Authentication Timeout" in await idle.expect_closed(timeout=5)
