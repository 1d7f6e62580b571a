"""Lame duck mode (SIGUSR2, `hybridbus ldm`) on a real `hybridbus serve` process:
stop accepting, INFO "ldm" to NATS clients, DISCONNECT 0x9C / 0x8B to MQTT 5
clients, 3.1.1 clients closed, wills published, the store closed cleanly, exit 0."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import nats
import pytest

from hybridbus.server.lameduck import close_plan
from tests.helpers import mqtt_packets as mp
from tests.helpers.wire import Wire, mqtt5_connect, mqtt_connect, mqtt_packets

LDM_CONF = """
lame_duck_duration: "30s"
lame_duck_grace_period: "1s"
mqtt { server_reference: "mqtt://backup.example:1883" }
"""


def _refused(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except ConnectionRefusedError:
        return True


def _no_connections(http_port: int) -> None:
    """Wait until the fixture's port probes are gone from the server's client table."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/varz", timeout=2) as r:
            if json.load(r)["connections"] == 0:
                return
        time.sleep(0.02)
    raise AssertionError("connections still open")


def _wait_exit(proc, timeout: float) -> int:
    proc.proc.wait(timeout)
    return proc.proc.returncode


def _hybridbus(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "hybridbus", *args], capture_output=True, timeout=30
    )


async def test_ldm_command_drains_nats_and_mqtt_clients_and_exits_0(server_process, tmp_path):
    conf = tmp_path / "ldm.conf"
    conf.write_text(LDM_CONF)
    server = server_process(config=str(conf)).start()
    ports = server.ports
    ldm_seen = asyncio.Event()

    async def on_ldm() -> None:
        ldm_seen.set()

    nc = await nats.connect(
        f"nats://127.0.0.1:{ports['nats']}",
        lame_duck_mode_cb=on_ldm,
        allow_reconnect=False,
        name="ldm-nats",
    )
    v5, _ = await mqtt5_connect(ports["mqtt"], "ldm-v5")
    # A 3.1.1 client with a retained will: published when the server closes it.
    v311 = await mqtt_connect(ports["mqtt"], "ldm-311", will=("wills/ldm-311", b"gone", 1, True))
    try:
        sent = await asyncio.to_thread(_hybridbus, "ldm", "--pid", str(server.proc.pid))
        assert sent.returncode == 0, sent.stderr
        assert f"lame duck mode signal sent to {server.proc.pid}".encode() in sent.stdout
        started = time.monotonic()
        await asyncio.wait_for(ldm_seen.wait(), 5)  # nats-py's lame_duck_mode_cb
        # The INFO went out after the listeners closed: nobody new gets in.
        assert _refused(ports["nats"]) and _refused(ports["mqtt"])
        # The MQTT 5 client is pointed at the other server, after the grace period.
        (disconnect,) = await mqtt_packets(v5, 1, timeout=10)
        waited = time.monotonic() - started
        assert disconnect.reason_code == 0x9C, disconnect  # Use another server
        assert disconnect.properties["server_reference"] == "mqtt://backup.example:1883"
        assert waited >= 0.8, waited  # lame_duck_grace_period: 1s
        assert await v311.expect_closed(10) == b""  # 3.1.1: closed, no packet
        code = await asyncio.to_thread(_wait_exit, server, 30)
    finally:
        await nc.close()
        await v5.close()
        await v311.close()
    log = server.output()
    assert code == 0, log
    assert "Trapped 'SIGUSR2' signal" in log
    assert "[INF] Entering lame duck mode, stop accepting new clients" in log
    assert "[INF] Closing existing clients" in log
    assert "Server Exiting.." in log
    assert "Traceback" not in log

    # Restarted on the same store: it was closed cleanly, and the will was published
    # (retained) when lame duck mode closed its client.
    again = server_process(config=str(conf)).start()
    try:
        sub = await mqtt_connect(again.ports["mqtt"], "ldm-check")
        await sub.send(mp.subscribe(1, ("wills/#", 0)))
        await sub.expect(mp.suback(1, 0))
        await sub.expect(mp.publish("wills/ldm-311", b"gone", retain=True))
        await sub.close()
    finally:
        assert again.stop() == 0
    assert "repaired" not in again.output()


async def test_sigusr2_mqtt5_without_server_reference_gets_0x8b(server_process, tmp_path):
    conf = tmp_path / "ldm.conf"
    conf.write_text('lame_duck_duration: "30s"\nlame_duck_grace_period: "0s"\n')
    server = server_process(config=str(conf)).start()
    v5, _ = await mqtt5_connect(server.ports["mqtt"], "ldm-plain")
    try:
        server.proc.send_signal(signal.SIGUSR2)
        (disconnect,) = await mqtt_packets(v5, 1, timeout=10)
        assert disconnect.reason_code == 0x8B, disconnect  # Server shutting down
        assert "server_reference" not in disconnect.properties
        code = await asyncio.to_thread(_wait_exit, server, 30)
    finally:
        await v5.close()
    assert code == 0, server.output()


def test_lame_duck_without_clients_exits_at_once(server_process):
    # Default grace period (10s): with no client there is nothing to wait for.
    server = server_process().start()
    _no_connections(server.ports["http"])
    started = time.monotonic()
    server.proc.send_signal(signal.SIGUSR2)
    assert _wait_exit(server, 8) == 0, server.output()
    assert time.monotonic() - started < 5
    assert "Entering lame duck mode" in server.output()


async def test_sigterm_during_lame_duck_stops_at_once(server_process):
    server = server_process().start()  # grace period 10s, duration 2m: the defaults
    wire = await Wire.open(server.ports["nats"])
    try:
        await wire.expect_re(rb"INFO \{.*?\} \r\n")
        await wire.send(b'CONNECT {"protocol":1,"verbose":false}\r\nPING\r\n')
        await wire.expect(b"PONG\r\n")
        server.proc.send_signal(signal.SIGUSR2)
        # protocol 1 and a PONG sent: the client is told (the async INFO after the
        # first PONG may come first)
        info = await wire.expect_re(
            rb'(INFO \{[^\r]*?\} \r\n)*INFO \{[^\r]*"ldm":true[^\r]*\} \r\n'
        )
        assert info
        started = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(_wait_exit, server, 8)
    finally:
        await wire.close()
    assert code == 0, server.output()
    assert time.monotonic() - started < 5  # not the 10s grace period
    assert "Closing existing clients" not in server.output()


def test_ldm_command_with_pid_file_and_errors(server_process, tmp_path):
    pid_file = tmp_path / "hb.pid"
    conf = tmp_path / "pid.conf"
    conf.write_text(f'pid_file: "{pid_file}"\n')
    server = server_process(config=str(conf)).start()
    deadline = time.monotonic() + 5
    while not pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    sent = _hybridbus("ldm", "-P", str(pid_file))
    assert sent.returncode == 0, sent.stderr
    assert _wait_exit(server, 15) == 0
    missing = _hybridbus("ldm", "-P", str(tmp_path / "nope.pid"))
    assert missing.returncode == 1
    assert b"cannot read a PID from" in missing.stderr
    assert b"Traceback" not in missing.stderr


@pytest.mark.parametrize(
    "clients, duration, grace, pause, batch",
    [
        (3, 120.0, 10.0, 1.0, 1),  # few clients: at most a second apart
        (1000, 120.0, 10.0, 0.11, 1),  # an even share of the 110s left
        (100_000, 120.0, 10.0, 0.01, 9),  # too many for one per pause: batches
        (10, 30.0, 40.0, 0.1, 1),  # grace >= duration: spread over one second
    ],
)
def test_close_plan_spreads_closes_like_nats_server(clients, duration, grace, pause, batch):
    got_pause, got_batch = close_plan(clients, duration, grace)
    assert got_pause == pytest.approx(pause, rel=0.01)
    assert got_batch == batch
