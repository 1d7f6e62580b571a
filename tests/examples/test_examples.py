"""The examples run end to end against a live server process."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT


def test_device_and_service_talk_through_the_bridge(server_process):
    proc = server_process().start()
    nats_url = f"nats://127.0.0.1:{proc.ports['nats']}"
    service = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "examples/nats_service.py"),
            "--server",
            nats_url,
            "--count",
            "3",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert service.stdout.readline().strip() == "ready"
        device = subprocess.run(
            [
                sys.executable,
                str(ROOT / "examples/device_simulator.py"),
                "--port",
                str(proc.ports["mqtt"]),
                "--id",
                "k7",
                "--count",
                "3",
                "--interval",
                "0.3",
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert device.returncode == 0, device.stdout + device.stderr
        out, _ = service.communicate(timeout=30)
    finally:
        if service.poll() is None:
            service.kill()
    assert "status k7: online" in out
    assert out.count("telemetry k7:") == 3
    assert 'reply k7: {"device": "k7", "command": "ping", "ok": true}' in out
    assert proc.stop() == 0


def test_mqtt5_device_asks_a_nats_service(server_process):
    proc = server_process().start()
    nats_url = f"nats://127.0.0.1:{proc.ports['nats']}"
    service = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "examples/nats_responder.py"),
            "--server",
            nats_url,
            "--count",
            "2",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert service.stdout.readline().strip() == "ready"
        device = subprocess.run(
            [
                sys.executable,
                str(ROOT / "examples/mqtt5_requester.py"),
                "--port",
                str(proc.ports["mqtt"]),
                "--count",
                "2",
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert device.returncode == 0, device.stdout + device.stderr
        service.communicate(timeout=30)
    finally:
        if service.poll() is None:
            service.kill()
    assert device.stdout.count("(correlation matched: True)") == 2, device.stdout
    assert proc.stop() == 0


def test_mqtt_telemetry_into_a_stream_and_config_from_kv(server_process):
    proc = server_process(config=str(ROOT / "conf/jetstream-mqtt.conf")).start()
    nats_url = f"nats://127.0.0.1:{proc.ports['nats']}"
    service = subprocess.Popen(
        [sys.executable, str(ROOT / "examples/mqtt_to_stream.py"), "--server", nats_url]
        + ["--count", "3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert service.stdout.readline().strip() == "ready"
        device = subprocess.run(
            [sys.executable, str(ROOT / "examples/telemetry_device.py")]
            + ["--port", str(proc.ports["mqtt"]), "--id", "k7", "--count", "3"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert device.returncode == 0, device.stdout + device.stderr
        out, _ = service.communicate(timeout=30)
    finally:
        if service.poll() is None:
            service.kill()
    assert [line.split(":")[0] for line in out.splitlines() if "telemetry" in line] == [
        "telemetry k7 #1",
        "telemetry k7 #2",
        "telemetry k7 #3",
    ], out
    assert "state k7: online" in out
    assert "config k7: {'interval': 5, 'unit': 'C'} (revision" in out
    assert device.stdout.count(" stored") == 3
    assert 'config received: {"interval": 5, "unit": "C"} (retained=False)' in device.stdout
    assert proc.stop() == 0


def test_two_tenants_with_a_shared_service(server_process):
    # conf/accounts.conf as shipped: the command line's ports and store replace its own.
    proc = server_process(config=str(ROOT / "conf/accounts.conf")).start()
    demo = subprocess.run(
        [sys.executable, str(ROOT / "examples/multi_tenant.py")]
        + ["--server", f"nats://127.0.0.1:{proc.ports['nats']}"]
        + ["--mqtt", f"127.0.0.1:{proc.ports['mqtt']}"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    out = demo.stdout
    assert demo.returncode == 0, out + demo.stderr
    lines = out.splitlines()
    # Same topic, same MQTT client id: each service got its own tenant's reading only.
    assert [line for line in lines if line.startswith("service ")] == [
        "service A got plant.sensor-1.temp: {'tenant': 'A', 'temp': 21.5}",
        "service B got plant.sensor-1.temp: {'tenant': 'B', 'temp': 35.0}",
    ], out
    assert "B asks plant.latest: {'tenant': 'B', 'latest': {'tenant': 'B', 'temp': 35.0}}" in lines
    assert (
        "B asks partner.a.latest (A's export): "
        "{'tenant': 'A', 'latest': {'tenant': 'A', 'temp': 21.5}}"
    ) in lines
    # A's own JetStream captured A's reading only; B has no JetStream.
    assert "A's stream READINGS: 1 message(s), last {'tenant': 'A', 'temp': 21.5}" in lines
    assert "B's JetStream: JetStream not enabled for account (10039)" in lines
    assert sorted(line for line in lines if line.startswith("admin sees")) == [
        "admin sees mqtt connection of a-device in account A",
        "admin sees mqtt connection of b-device in account B",
        "admin sees nats connection of a-service in account A",
        "admin sees nats connection of admin in account SYS",
        "admin sees nats connection of b-service in account B",
    ], out
    assert proc.stop() == 0
