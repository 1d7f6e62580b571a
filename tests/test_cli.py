"""The `hybridbus` command line: version, check, serve, signals, logs."""

from __future__ import annotations

import re
import signal
import subprocess
import sys

from click.testing import CliRunner

from hybridbus import __version__
from hybridbus.cli import build_options, main
from tests.conftest import ROOT, free_port

LOG_LINE = re.compile(
    rb"^\[\d+\] \d{4}/\d\d/\d\d \d\d:\d\d:\d\d\.\d{6} \[(INF|WRN|ERR|DBG|TRC)\] ", re.M
)


def test_version():
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.output


def test_embedded_defaults():
    options, warnings = build_options(None)
    assert warnings == []
    assert (options.host, options.port) == ("0.0.0.0", 4222)
    assert options.mqtt.port == 1883
    assert options.http_port == 8222
    assert options.jetstream.store_dir == "./hybridbus-data"


def test_flags_override_config(tmp_path):
    conf = tmp_path / "s.conf"
    conf.write_text("port: 5000\nmqtt { port: 6000 }\n")
    options, _ = build_options(str(conf), port=7000, store_dir="/x")
    assert options.port == 7000
    assert options.mqtt.port == 6000
    assert options.jetstream.store_dir == "/x"


def test_check_accepts_the_example_config():
    result = CliRunner().invoke(main, ["check", "-c", str(ROOT / "conf/server.conf")])
    assert result.exit_code == 0, result.output
    assert re.search(r"configuration file .* is valid \(sha256:[0-9a-f]{64}\)", result.output)


def test_check_reports_position_and_fails(tmp_path):
    bad = tmp_path / "bad.conf"
    bad.write_text("port: 4222\nfoo_bar: 1\n")
    result = CliRunner().invoke(main, ["check", "-c", str(bad)])
    assert result.exit_code == 1
    assert f'{bad}:2:1: unknown field "foo_bar"' in result.output


def test_check_treats_warnings_as_fatal(tmp_path):
    conf = tmp_path / "warn.conf"
    conf.write_text("ping_interval: 30\n")
    result = CliRunner().invoke(main, ["check-config", "-c", str(conf)])
    assert result.exit_code == 1
    assert "ping_interval should be converted to a duration" in result.output


def test_serve_refuses_a_bad_config(tmp_path):
    bad = tmp_path / "bad.conf"
    bad.write_text("max_payload: 3GB\n")
    proc = subprocess.run(
        [sys.executable, "-m", "hybridbus", "serve", "-c", str(bad)],
        capture_output=True,
        timeout=30,
    )
    assert proc.returncode == 1
    assert b"max_payload value is too big" in proc.stderr


def test_serve_refuses_startup_only_errors(tmp_path):
    conf = tmp_path / "ws.conf"
    conf.write_text(f'websocket {{ listen: "127.0.0.1:{free_port()}" }}\n')
    proc = subprocess.run(
        [sys.executable, "-m", "hybridbus", "serve", "-c", str(conf), "-a", "127.0.0.1", "-p", "0"],
        capture_output=True,
        timeout=30,
    )
    assert proc.returncode == 1
    assert b"websocket requires TLS configuration" in proc.stderr


def test_serve_default_store_dir_logs_and_sigint(tmp_path):
    ports = [free_port() for _ in range(3)]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hybridbus",
            "serve",
            "-a",
            "127.0.0.1",
            "-p",
            str(ports[0]),
            "--mqtt-port",
            str(ports[1]),
            "--http-port",
            str(ports[2]),
            "-D",
        ],
        cwd=tmp_path,
        stderr=subprocess.PIPE,
    )
    try:
        seen = b""
        while b"Server is ready" not in seen:
            line = proc.stderr.readline()
            assert line, seen
            seen += line
        proc.send_signal(signal.SIGINT)
        _, rest = proc.communicate(timeout=15)
        seen += rest
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, seen
    assert (tmp_path / "hybridbus-data").is_dir()
    lines = seen.splitlines()
    assert all(LOG_LINE.match(line) for line in lines), seen
    assert b"[DBG]" in seen
    assert b"Trapped 'SIGINT' signal" in seen
    assert b"Server Exiting.." in seen


async def test_connection_events_are_logged_with_address_id_and_protocol(nats_server, caplog):
    import logging

    from tests.helpers import mqtt_packets as mp
    from tests.helpers.wire import eventually, mqtt_connect, nats_connect

    caplog.set_level(logging.DEBUG, logger="hybridbus")
    nats = await nats_connect(nats_server.nats_port)
    mqtt = await mqtt_connect(nats_server.mqtt_port, "sensor-9")
    await mqtt.send(mp.DISCONNECT)
    await nats.close()
    await eventually(lambda: "Client connection closed (nats)" in caplog.text)
    assert re.search(
        r"127\.0\.0\.1:\d+ - cid:\d+ - Client connection created \(nats\)", caplog.text
    )
    assert re.search(
        r"127\.0\.0\.1:\d+ - mid:\d+ - 'sensor-9' - Client connection created \(mqtt, level 4\)",
        caplog.text,
    )
    await eventually(lambda: "Client connection closed (mqtt): Client Closed" in caplog.text)
