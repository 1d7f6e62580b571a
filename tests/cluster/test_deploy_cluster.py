"""conf/nats-cluster.conf, conf/hb-cluster.conf and docker-compose.cluster.yml agree
with each other and run.

No Docker engine runs here: the compose file is parsed (PyYAML, already a test
dependency), the hub config is checked by nats-server itself (``-t``; the route
hosts need not resolve for that) and hybridbus's by ``hybridbus check``. Then both
files run for real with the container names and ports rewritten to loopback: three
nats-servers from nats-cluster.conf (named by ``--name`` as in the compose file) and
a hybridbus node from hb-cluster.conf that links to them.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import nats
import pytest
import yaml

from hybridbus.config.load import load_options, startup_errors
from tests.cluster.conftest import NATS_SERVER, HbNode, NatsCluster, unique_port

ROOT = Path(__file__).resolve().parents[2]
HUB_CONF = ROOT / "conf" / "nats-cluster.conf"
NODE_CONF = ROOT / "conf" / "hb-cluster.conf"
COMPOSE = ROOT / "docker-compose.cluster.yml"
HUBS = ("nats1", "nats2", "nats3")
NODES = ("hb-a", "hb-b")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_hub_config_passes_nats_server_t():
    out = subprocess.run(
        [NATS_SERVER, "-t", "-c", str(HUB_CONF), "--name", "nats1"],
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert out.returncode == 0, out.stderr + out.stdout
    assert "is valid" in out.stderr + out.stdout


def test_node_config_loads_and_checks():
    opts, warnings = load_options(str(NODE_CONF))
    assert warnings == []
    assert startup_errors(opts) == []
    assert opts.mqtt.js_domain == "hub"
    assert opts.mqtt.stream_replicas == 3
    (remote,) = opts.leafnodes.remotes
    assert [u.split("//")[1] for u in remote.urls] == [f"{h}:7422" for h in HUBS]
    # `hybridbus check` is `nats-server -t`: warnings fail it too.
    out = subprocess.run(
        [sys.executable, "-m", "hybridbus", "check", "-c", str(NODE_CONF)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr


def test_hub_config_matches_the_node_config():
    hub = HUB_CONF.read_text()
    assert re.search(r'domain:\s*"hub"', hub)
    assert re.search(r"leafnodes\s*\{\s*port:\s*7422", hub)
    for h in HUBS:
        assert f"nats-route://{h}:6222" in hub


def test_compose_names_files_that_exist(compose):
    services = compose["services"]
    assert set(services) == set(HUBS) | set(NODES)
    declared = set(compose["volumes"])
    for name, svc in services.items():
        for vol in svc["volumes"]:
            source, target = vol.split(":")[:2]
            if source.startswith("./"):
                assert (ROOT / source).is_file(), f"{name}: {source} missing"
            else:
                assert source in declared, f"{name}: volume {source} not declared"
            if target == "/data":
                assert source == f"{name}-data", f"{name} must have its own volume"
        assert svc.get("healthcheck", {}).get("test"), f"{name} has no health check"
    for h in HUBS:
        svc = services[h]
        assert svc["image"].startswith("nats:2.11")
        cmd = svc["command"]
        conf_in_container = cmd[cmd.index("-c") + 1]
        assert cmd[cmd.index("--name") + 1] == h
        assert f"./conf/nats-cluster.conf:{conf_in_container}:ro" in svc["volumes"]
    for n in NODES:
        svc = services[n]
        assert svc["build"] == "."
        assert (ROOT / "Dockerfile").is_file()
        cmd = svc["command"]
        assert cmd[:2] == ["hybridbus", "serve"]
        assert cmd[cmd.index("-n") + 1] == n
        conf_in_container = cmd[cmd.index("-c") + 1]
        assert f"./conf/hb-cluster.conf:{conf_in_container}:ro" in svc["volumes"]
        assert set(svc["depends_on"]) == set(HUBS)
    host_ports = [p.split(":")[0] for svc in services.values() for p in svc.get("ports", [])]
    assert len(host_ports) == len(set(host_ports)), "a host port published twice"
    mqtt = {n: [p for p in services[n]["ports"] if p.endswith(":1883")] for n in NODES}
    assert mqtt == {"hb-a": ["1883:1883"], "hb-b": ["1884:1883"]}


# ----------------------------------------------------------------------- a real run


def _hub_conf(cluster: NatsCluster, p) -> str:
    """nats-cluster.conf with the container addresses moved to loopback ports."""
    procs = {q.name: q for q in cluster._procs}
    text = HUB_CONF.read_text()
    text = text.replace('"0.0.0.0:4222"', f'"127.0.0.1:{p.client_port}"')
    text = text.replace('"0.0.0.0:8222"', f'"127.0.0.1:{p.http_port}"')
    text = text.replace('"0.0.0.0:6222"', f'"127.0.0.1:{p.cluster_port}"')
    for name, q in procs.items():
        text = text.replace(f"{name}:6222", f"127.0.0.1:{q.cluster_port}")
    text = text.replace("port: 7422", f'listen: "127.0.0.1:{p.leaf_port}"')
    text = text.replace('"/data"', f'"{p.store_dir}"')
    p.args = ["--name", p.name]  # as the compose file names them
    return text


def _node_conf(cluster: NatsCluster, ports: dict, store: Path) -> str:
    text = NODE_CONF.read_text()
    text = text.replace('"0.0.0.0:4222"', f'"127.0.0.1:{ports["nats"]}"')
    text = text.replace('"0.0.0.0:8222"', f'"127.0.0.1:{ports["http"]}"')
    text = text.replace('"0.0.0.0:1883"', f'"127.0.0.1:{ports["mqtt"]}"')
    for i, h in enumerate(HUBS):
        text = text.replace(f"nats-leaf://{h}:7422", cluster.leaf_url(i))
    return text.replace('"/data"', f'"{store}"')


async def test_the_deployment_configs_run(tmp_path):
    cluster = NatsCluster(tmp_path / "hub", prefix="nats", conf=_hub_conf)
    node = None
    try:
        cluster.start()
        assert [m.name for m in cluster.members] == list(HUBS)
        varz = cluster.http_json("nats2", "/varz")
        assert varz["server_name"] == "nats2" and varz["cluster"]["name"] == "hbc"
        nc = await nats.connect(cluster.client_url(0))
        try:
            js = nc.jetstream(domain="hub")
            info = await js.add_stream(name="DEPLOY", subjects=["deploy"], num_replicas=3)
            assert len(info.cluster.replicas) == 2
        finally:
            await nc.close()

        ports = {"nats": unique_port(), "mqtt": unique_port(), "http": unique_port()}
        text = _node_conf(cluster, ports, tmp_path / "hb-a" / "store")
        node = HbNode(tmp_path, "hb-a", text, ports)
        node.cluster = cluster
        node.start()
        assert node.http_json("/varz")["server_name"] == "hb-a"
        ((member, leaf),) = node.wait_linked(timeout=15)
        assert member in HUBS and leaf["is_spoke"] is False  # the hub's side of it
    finally:
        if node is not None:
            node.kill()
        cluster.stop()
