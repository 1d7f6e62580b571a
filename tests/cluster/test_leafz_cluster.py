"""The link's monitoring with a real hub: a hybridbus node's /leafz, /varz, /metrics and
dashboard while it is linked, compared with what a nats-server spoke of the same hub
reports in its own /leafz."""

from __future__ import annotations

import asyncio
import re
import subprocess

import nats

from tests.cluster.conftest import (
    NATS_SERVER,
    NatsCluster,
    deliver_probes,
    http_get,
    unique_port,
    until,
    wait_for,
)
from tests.monitor.gocheck import is_go_time, is_rtt
from tests.monitor.test_dashboard import element_text, needs_chromium, run_chromium


def _metric(text: str, name: str, labels: str = "") -> float:
    m = re.search(rf"^{re.escape(name)}{re.escape(labels)} (\S+)$", text, re.M)
    assert m, f"{name}{labels} not in /metrics"
    return float(m.group(1))


def _nats_spoke_leafz(cluster: NatsCluster, tmp_path) -> dict:
    """/leafz?subs=true of a nats-server 2.15.1 spoke of the same hub."""
    http, port = unique_port(), unique_port()
    conf = tmp_path / "spoke.conf"
    conf.write_text(
        f"server_name: ref-spoke\nlisten: 127.0.0.1:{port}\nhttp: 127.0.0.1:{http}\n"
        f'leafnodes {{ remotes: [ {{ urls: ["{cluster.leaf_url(0)}"] }} ] }}\n'
    )
    proc = subprocess.Popen(
        [NATS_SERVER, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:

        def linked():
            status, body = http_get(f"http://127.0.0.1:{http}/leafz?subs=true")
            return body if status == 200 and body.get("leafnodes") == 1 else None

        return wait_for(linked, 10, "the nats-server spoke linked")
    finally:
        proc.kill()
        proc.wait(5)


async def test_leafz_of_a_linked_node(nats_cluster: NatsCluster, hb_node, tmp_path):
    a = hb_node("hb-a", js_domain=False)
    ((member, hub_side),) = a.wait_linked()
    assert hub_side["is_spoke"] is False  # the hub's view of the same link

    leafz = a.http_json("/leafz?subs=true")
    reference = _nats_spoke_leafz(nats_cluster, tmp_path)
    # nats-server's field set and order, for the document and for each link.
    assert list(leafz) == list(reference) == ["server_id", "now", "leafnodes", "leafs"]
    assert list(leafz["leafs"][0]) == list(reference["leafs"][0])
    assert leafz["server_id"] == a.http_json("/varz")["server_id"]
    assert is_go_time(leafz["now"])
    assert leafz["leafnodes"] == 1
    (leaf,) = leafz["leafs"]
    members = {m.name: m for m in nats_cluster.members}
    assert leaf["name"] == member
    assert leaf["is_spoke"] is True  # as the nats-server spoke reports its own link
    assert leaf["account"] == "$G"
    assert leaf["ip"] == "127.0.0.1"
    assert f"127.0.0.1:{leaf['port']}" in members[member].leaf_url
    assert is_rtt(leaf["rtt"])
    assert isinstance(leaf["id"], int)
    # The hub's interest on the link: its JetStream API among it.
    assert leaf["subscriptions"] == len(leaf["subscriptions_list"]) > 0
    assert "$JS.hub.API.STREAM.>" in leaf["subscriptions_list"]
    assert leaf["compression"] == "off"
    assert "subscriptions_list" not in a.http_json("/leafz")["leafs"][0]
    assert a.http_json("/leafz?acc=OTHER") | {"now": ""} == {
        "server_id": leafz["server_id"],
        "now": "",
        "leafnodes": 0,
        "leafs": [],
    }


async def test_link_traffic_in_leafz_varz_and_metrics(nats_cluster: NatsCluster, hb_node):
    a = hb_node("hb-a", js_domain=False)
    ((member, _),) = a.wait_linked()
    a_nats = await nats.connect(a.nats_url)
    n2 = await nats.connect(nats_cluster.client_url("n2"))
    try:
        up: list[bytes] = []
        down: list[bytes] = []

        async def on_up(m):
            up.append(m.data)

        async def on_down(m):
            down.append(m.data)

        await n2.subscribe("lz.up", cb=on_up)
        await a_nats.subscribe("lz.down", cb=on_down)
        await n2.flush()
        await a_nats.flush()

        async def settled(sent: list):
            await asyncio.sleep(0.05)
            return bool(sent)

        async def send_up():
            await a_nats.publish("lz.up", b"probe")

        async def send_down():
            await n2.publish("lz.down", b"probe")

        await deliver_probes(send_up, lambda: settled(up), 10, "A -> n2")
        await deliver_probes(send_down, lambda: settled(down), 10, "n2 -> A")
        await asyncio.sleep(0.2)
        before = a.http_json("/leafz")["leafs"][0]
        for _ in range(10):
            await a_nats.publish("lz.up", b"0123456789")
            await n2.publish("lz.down", b"0123456789")
        await a_nats.flush()
        await n2.flush()
        await until(lambda: len(up) >= 10 and len(down) >= 10, 5, "10 each way")
        await asyncio.sleep(0.2)
        leaf = a.http_json("/leafz")["leafs"][0]
        assert leaf["out_msgs"] - before["out_msgs"] == 10
        assert leaf["in_msgs"] - before["in_msgs"] == 10
        assert leaf["out_bytes"] - before["out_bytes"] >= 100
        assert leaf["in_bytes"] - before["in_bytes"] >= 100

        varz = a.http_json("/varz")
        assert varz["leafnodes"] == 1
        assert varz["leaf"]["remotes"][0]["urls"] == [
            u.removeprefix("nats-leaf://") for u in nats_cluster.leaf_urls
        ]
        # Totals count the link too; the client totals do not.
        leaf = a.http_json("/leafz")["leafs"][0]
        assert varz["in_msgs"] - varz["in_client_msgs"] == leaf["in_msgs"]
        assert varz["out_msgs"] - varz["out_client_msgs"] == leaf["out_msgs"]

        metrics = http_get(a.monitor_url + "/metrics")[1]
        assert _metric(metrics, "hybridbus_leafnode_links") == 1
        assert _metric(metrics, "hybridbus_leafnode_remotes") == 1
        assert _metric(metrics, "hybridbus_leafnode_messages_total", '{direction="in"}') >= 10
        assert _metric(metrics, "hybridbus_leafnode_messages_total", '{direction="out"}') >= 10
        assert _metric(metrics, "hybridbus_leafnode_bytes_total", '{direction="out"}') >= 100
        rtt = _metric(metrics, "hybridbus_leafnode_rtt_seconds", f'{{account="$G",hub="{member}"}}')
        assert 0 <= rtt < 1
    finally:
        await a_nats.close()
        await n2.close()


@needs_chromium
async def test_dashboard_shows_the_link(hb_node, tmp_path):
    a = hb_node("hb-a", js_domain=False)
    ((member, _),) = a.wait_linked()
    dom = (
        await run_chromium(
            tmp_path, "leaf", "--dump-dom", "--virtual-time-budget=3000", a.monitor_url + "/"
        )
    ).decode()
    assert element_text(dom, "status") == "live"
    assert element_text(dom, "leaf-state") == "up"
    assert element_text(dom, "leaf-links") == "1"
    assert element_text(dom, "leaf-remotes") == "1"
    assert element_text(dom, "leaf-hubs") == member
