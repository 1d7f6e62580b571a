"""docker-compose.yml, Dockerfile and conf/docker.conf agree with each other.

No Docker engine runs here, so the files are parsed: the compose file with PyYAML,
the config with hybridbus's own loader (the one `hybridbus serve -c` uses). The
config is then started in-process (loopback, OS-chosen ports, a temp store) to
prove it runs, and the container health check is run against it."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hybridbus.config.load import check_config, load_options, startup_errors
from hybridbus.monitor.http import start_monitor
from hybridbus.server.server import Server

ROOT = Path(__file__).resolve().parents[2]
CONFIG_IN_IMAGE = "/etc/hybridbus/server.conf"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def service(compose) -> dict:
    return compose["services"]["hybridbus"]


@pytest.fixture(scope="module")
def dockerfile() -> str:
    return (ROOT / "Dockerfile").read_text()


@pytest.fixture(scope="module")
def options():
    opts, warnings = load_options(str(ROOT / "conf" / "docker.conf"))
    assert warnings == []
    assert startup_errors(opts) == []
    return opts


def _ports(service: dict) -> dict[int, int]:
    """container port -> host port, from short-syntax "HOST:CONTAINER" entries."""
    out = {}
    for entry in service["ports"]:
        host, container = str(entry).split(":")[-2:]
        out[int(container.split("/")[0])] = int(host)
    return out


def test_config_passes_check_mode():
    code, lines = check_config(str(ROOT / "conf" / "docker.conf"))
    assert code == 0, lines


def test_compose_ports_match_config(service, options):
    ports = _ports(service)
    assert ports == {4222: 4222, 1883: 1883, 8222: 8222}
    assert set(ports) == {options.port, options.mqtt.port, options.http_port}
    # inside the container the listeners must bind every interface to be published
    assert options.host == options.mqtt.host == options.http_host == "0.0.0.0"
    assert options.mqtt.enabled


def test_compose_store_volume_and_config_mount(compose, service, options):
    mounts = {}
    for entry in service["volumes"]:
        source, target, *mode = entry.split(":")
        mounts[target] = (source, mode)
    # the store directory of the config is a named volume declared at the top level
    source, _ = mounts[options.jetstream.store_dir]
    assert options.jetstream.store_dir == "/data"
    assert not source.startswith((".", "/")) and source in compose["volumes"]
    # the config file the command reads is conf/docker.conf, read-only
    command = service["command"]
    assert command[:2] == ["hybridbus", "serve"]
    config_path = command[command.index("-c") + 1]
    assert config_path == CONFIG_IN_IMAGE
    assert mounts[config_path] == ("./conf/docker.conf", ["ro"])
    assert (ROOT / "conf" / "docker.conf").is_file()


def test_dockerfile(dockerfile, service, options):
    assert re.search(r"^FROM python:3\.11-slim\s*$", dockerfile, re.M)
    assert re.search(r"^RUN pip install \.", dockerfile, re.M)
    assert re.search(rf"^COPY conf/docker\.conf {CONFIG_IN_IMAGE}\s*$", dockerfile, re.M)
    exposed = {
        int(p) for m in re.finditer(r"^EXPOSE (.+)$", dockerfile, re.M) for p in m[1].split()
    }
    assert exposed == {options.port, options.mqtt.port, options.http_port}
    assert re.search(rf'^VOLUME \["{options.jetstream.store_dir}"\]', dockerfile, re.M)
    cmd = re.search(r"^CMD (\[.*\])\s*$", dockerfile, re.M)
    assert cmd and json.loads(cmd[1]) == service["command"]
    # the image's own health check is the compose one
    assert service["healthcheck"]["test"][-1] in dockerfile
    # every file `pip install .` needs is copied in
    for name in ("pyproject.toml", "README.md", "hybridbus"):
        assert re.search(rf"^COPY .*\b{re.escape(name)}\b", dockerfile, re.M), name
        assert (ROOT / name).exists()


async def test_docker_config_runs_and_health_check_passes(service, tmp_path):
    opts, _ = load_options(str(ROOT / "conf" / "docker.conf"))
    # the same config, moved to loopback, free ports and a temp store for the test
    opts.host = opts.mqtt.host = opts.http_host = "127.0.0.1"
    opts.port = opts.mqtt.port = opts.http_port = 0
    opts.jetstream.store_dir = str(tmp_path / "data")
    server = Server(opts)
    await server.start()
    mon = getattr(server, "monitor", None) or await start_monitor(server)
    try:
        test = service["healthcheck"]["test"]
        assert test[0] == "CMD"
        code = test[-1].replace("127.0.0.1:8222", f"127.0.0.1:{mon.port}")
        proc = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-c", code], timeout=20, capture_output=True
        )
        assert proc.returncode == 0, proc.stderr
        assert test[1:-1] == ["python", "-c"]
    finally:
        if getattr(server, "monitor", None) is not mon:
            await mon.close()
        await server.shutdown()
