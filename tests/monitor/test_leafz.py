"""The leaf-node link's monitoring without a hub: /leafz, the /varz leaf block, /healthz
and the /metrics families with no remote, and with a remote whose hub is down.
(With a real hub: tests/cluster/test_leafz_cluster.py.)"""

from __future__ import annotations

import re

from hybridbus.options import LeafRemoteOptions
from tests.conftest import free_port
from tests.monitor.gocheck import is_go_time
from tests.monitor.test_dashboard import element_text, needs_chromium, run_chromium

LEAFZ_KEYS = ["server_id", "now", "leafnodes", "leafs"]


def _metric(text: str, name: str, labels: str = "") -> float:
    m = re.search(rf"^{re.escape(name + labels)} (\S+)$", text, re.M)
    assert m, f"{name}{labels} not in /metrics"
    return float(m.group(1))


async def test_no_remotes(monitored):
    leafz = await monitored.json("/leafz")
    assert list(leafz) == LEAFZ_KEYS
    assert leafz["server_id"] == monitored.server.server_id
    assert is_go_time(leafz["now"])
    assert leafz["leafnodes"] == 0 and leafz["leafs"] == []
    assert (await monitored.json("/leafz?subs=true&acc=$G"))["leafs"] == []
    varz = await monitored.json("/varz")
    assert varz["leafnodes"] == 0
    assert varz["leaf"] == {}  # struct-valued: always present, {} when unused
    assert varz["http_req_stats"]["/leafz"] == 2
    metrics = (await monitored.get("/metrics")).text
    assert _metric(metrics, "hybridbus_leafnode_links") == 0
    assert _metric(metrics, "hybridbus_leafnode_remotes") == 0
    assert _metric(metrics, "hybridbus_leafnode_messages_total", '{direction="in"}') == 0
    assert _metric(metrics, "hybridbus_leafnode_bytes_total", '{direction="out"}') == 0


async def test_bad_subs_parameter_is_400(monitored):
    r = await monitored.get("/leafz?subs=maybe")
    assert r.status == 400
    assert "Error decoding boolean for 'subs'" in r.text


async def test_remote_down_shows_in_varz_and_metrics_not_in_healthz(monitored_factory):
    # Nothing listens on the hub's port: the link stays down and keeps redialling.
    dead = free_port()
    remote = LeafRemoteOptions(
        urls=[f"nats-leaf://hb:s3cret@127.0.0.1:{dead}", f"nats-leaf://localhost:{dead}"],
        deny_imports=["secret.>"],
    )
    mon = await monitored_factory(leafnodes__remotes=[remote])
    varz = await mon.json("/varz")
    assert varz["leafnodes"] == 0
    # nats-server's RemoteLeafOptsVarz: host:port only, never the URL's credentials.
    assert varz["leaf"] == {
        "remotes": [
            {
                "local_account": "$G",
                "urls": [f"127.0.0.1:{dead}", f"localhost:{dead}"],
                "deny": {"imports": ["secret.>"]},
            }
        ]
    }
    assert "s3cret" not in (await mon.get("/varz")).text
    assert (await mon.json("/leafz"))["leafnodes"] == 0
    # As nats-server: a link that is down does not make the server unhealthy.
    r = await mon.get("/healthz")
    assert (r.status, r.json()) == (200, {"status": "ok"})
    metrics = (await mon.get("/metrics")).text
    assert _metric(metrics, "hybridbus_leafnode_links") == 0
    assert _metric(metrics, "hybridbus_leafnode_remotes") == 1
    assert "hybridbus_leafnode_rtt_seconds{" not in metrics


@needs_chromium
async def test_dashboard_link_line_without_a_link(monitored_factory, tmp_path):
    remote = LeafRemoteOptions(urls=[f"nats-leaf://127.0.0.1:{free_port()}"])
    mon = await monitored_factory(leafnodes__remotes=[remote])
    dom = (
        await run_chromium(
            tmp_path, "leaf", "--dump-dom", "--virtual-time-budget=3000", mon.url("/")
        )
    ).decode()
    assert element_text(dom, "status") == "live"
    assert element_text(dom, "leaf-state") == "down"
    assert element_text(dom, "leaf-links") == "0"
    assert element_text(dom, "leaf-remotes") == "1"
    assert element_text(dom, "leaf-hubs") == "-"
