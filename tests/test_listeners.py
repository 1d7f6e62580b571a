"""`-a HOST` binds every listener the config file does not place itself (NATS, HTTP
monitoring, MQTT, WebSocket), on a real process. The test binds to 127.0.0.2 (Linux
routes all of 127/8 to the loopback device), so a listener left on 0.0.0.0 still
answers on 127.0.0.1 and one bound to -a's host does not."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time

from hybridbus.cli import build_options
from tests.conftest import ROOT, free_port

HOST = "127.0.0.2"


def answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def start(tmp_path, *args: str) -> subprocess.Popen:
    log = open(tmp_path / "server.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "hybridbus", "serve", "--store-dir", str(tmp_path / "s"), *args],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 15
    while b"Server is ready" not in (tmp_path / "server.log").read_bytes():
        assert proc.poll() is None, (tmp_path / "server.log").read_text()
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    return proc


def stop(proc: subprocess.Popen) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(15)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_dash_a_binds_monitoring_mqtt_and_websocket_too(tmp_path):
    nats, mqtt, http, ws = (free_port() for _ in range(4))
    conf = tmp_path / "ws.conf"
    conf.write_text(f"websocket {{ port: {ws}, no_tls: true }}\n")  # a port, no host
    proc = start(
        tmp_path,
        *("-c", str(conf), "-a", HOST, "-p", str(nats)),
        *("--mqtt-port", str(mqtt), "-m", str(http)),
    )
    try:
        for port in (nats, mqtt, http, ws):
            assert answers(HOST, port), port
            assert not answers("127.0.0.1", port), f"port {port} is not on {HOST} only"
    finally:
        assert stop(proc) == 0
    log = (tmp_path / "server.log").read_text()
    assert f"Listening for MQTT clients on mqtt://{HOST}:{mqtt}" in log
    assert f"Starting http monitor on {HOST}:{http}" in log


def test_hosts_placed_by_the_config_file_stay_where_they_are(tmp_path):
    nats, mqtt, http = (free_port() for _ in range(3))
    conf = tmp_path / "placed.conf"
    conf.write_text(f'mqtt {{ listen: "127.0.0.1:{mqtt}" }}\nhttp: "127.0.0.1:{http}"\n')
    proc = start(tmp_path, "-c", str(conf), "-a", HOST, "-p", str(nats))
    try:
        assert answers(HOST, nats) and not answers("127.0.0.1", nats)
        assert answers("127.0.0.1", mqtt) and not answers(HOST, mqtt)
        assert answers("127.0.0.1", http) and not answers(HOST, http)
    finally:
        assert stop(proc) == 0


def test_build_options_moves_unplaced_hosts_only():
    opts, _ = build_options(None, host="10.1.2.3")
    assert (opts.host, opts.http_host, opts.mqtt.host, opts.websocket.host) == ("10.1.2.3",) * 4
    opts, _ = build_options(None)
    assert (opts.host, opts.http_host, opts.mqtt.host) == ("0.0.0.0",) * 3
    # conf/server.conf places every listener itself (and says so): -a moves NATS only
    opts, _ = build_options(str(ROOT / "conf/server.conf"), host="10.1.2.3")
    assert opts.host == "10.1.2.3"
    assert (opts.http_host, opts.mqtt.host, opts.websocket.host) == (
        "0.0.0.0",
        "0.0.0.0",
        "127.0.0.1",
    )
    assert opts.hosts_from_config == {"http_host", "mqtt.host", "websocket.host"}
