"""The cluster harness itself (conftest.py): three routed members with clustered
JetStream in domain hub, kill and restart by PID, and a hybridbus node started from
a written config."""

from __future__ import annotations

import asyncio
import json

import nats
import pytest
from nats.js.errors import NoStreamResponseError

from tests.cluster.conftest import NatsCluster, http_get


async def test_members_are_routed(nats_cluster: NatsCluster):
    members = nats_cluster.members
    assert [m.name for m in members] == ["n1", "n2", "n3"]
    assert all(m.pid > 0 for m in members)
    assert len({m.client_url for m in members}) == 3
    for i in range(3):
        varz = nats_cluster.http_json(i, "/varz")
        assert varz["server_name"] == f"n{i + 1}"
        assert varz["cluster"]["name"] == "hbc"
        assert varz["routes"] >= 2  # routed to both others (pooled routes may count more)
        assert varz["leaf"]["port"] > 0

    n1 = await nats.connect(nats_cluster.client_url(0))
    n3 = await nats.connect(nats_cluster.client_url("n3"))
    try:
        got: asyncio.Queue = asyncio.Queue()

        async def on_msg(msg):
            await got.put(msg.data)

        await n3.subscribe("harness.routed", cb=on_msg)
        await n3.flush()
        # Interest crosses the route asynchronously: publish until one arrives.
        for _ in range(100):
            await n1.publish("harness.routed", b"hi")
            await n1.flush()
            try:
                assert await asyncio.wait_for(got.get(), 0.05) == b"hi"
                break
            except TimeoutError:
                continue
        else:
            pytest.fail("n1 -> n3 publish never arrived")
    finally:
        await n1.close()
        await n3.close()


async def test_jetstream_r3_in_domain_hub(nats_cluster: NatsCluster):
    nc = await nats.connect(nats_cluster.client_url(1))
    try:
        js = nc.jetstream(domain="hub")
        info = await js.add_stream(name="HARNESS_R3", subjects=["harness.r3.>"], num_replicas=3)
        assert info.config.num_replicas == 3
        ack = await _publish_retrying(js, "harness.r3.x", b"1", within=15)  # (leader election)
        assert ack.stream == "HARNESS_R3" and ack.domain == "hub"
        # The same API under its domain prefix, raw: $JS.hub.API.STREAM.INFO.<name>.
        reply = await nc.request("$JS.hub.API.STREAM.INFO.HARNESS_R3", b"", timeout=2)
        body = json.loads(reply.data)
        assert body["state"]["messages"] == 1
        assert len(body["cluster"]["replicas"]) == 2  # the leader plus two replicas
        await js.delete_stream("HARNESS_R3")
    finally:
        await nc.close()
    assert nats_cluster.meta_leader() in {"n1", "n2", "n3"}


async def _publish_retrying(js, subject: str, payload: bytes, within: float):
    """A JetStream publish, retried while the stream elects a new leader."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        try:
            return await js.publish(subject, payload, timeout=1)
        except (nats.errors.TimeoutError, nats.errors.NoRespondersError, NoStreamResponseError):
            if asyncio.get_running_loop().time() >= deadline:
                raise


async def test_kill_and_restart_a_member(fresh_cluster: NatsCluster):
    nc = await nats.connect(fresh_cluster.client_url(0))
    try:
        js = nc.jetstream(domain="hub")
        await js.add_stream(name="KILLED", subjects=["killed"], num_replicas=3)
        # a new R3 stream may answer "no responders" until its leader is elected
        await _publish_retrying(js, "killed", b"before", within=15)

        victim = fresh_cluster.members[2]
        fresh_cluster.kill(2)
        assert not fresh_cluster.alive(2)
        assert fresh_cluster.members[2].pid == 0
        status, _ = http_get(victim.monitor_url + "/healthz", timeout=0.3)
        assert status == 0  # nothing listens any more
        fresh_cluster.wait_ready(15)  # a live meta leader
        assert fresh_cluster.meta_leader() in {"n1", "n2"}

        # Two of three keep the R3 stream writable (a new stream leader if n3 led it).
        ack = await _publish_retrying(js, "killed", b"during", within=15)
        assert ack.seq == 2

        fresh_cluster.restart("n3")
        restarted = fresh_cluster.members[2]
        assert restarted.pid > 0 and restarted.pid != victim.pid
        assert restarted.client_url == victim.client_url
    finally:
        await nc.close()
    nc = await nats.connect(restarted.client_url)
    try:
        reply = await nc.request("$JS.hub.API.STREAM.INFO.KILLED", b"", timeout=5)
        assert json.loads(reply.data)["state"]["messages"] == 2
    finally:
        await nc.close()


async def test_hb_node_starts_from_its_config(nats_cluster: NatsCluster, hb_node):
    node = hb_node("hb-harness", js_domain=False)
    text = node.conf_path.read_text()
    for url in nats_cluster.leaf_urls:
        assert url in text
    assert node.pid > 0
    varz = node.http_json("/varz")
    assert varz["server_name"] == "hb-harness"
    nc = await nats.connect(node.nats_url)
    await nc.close()
    pid = node.pid
    node.kill()
    assert node.pid == 0
    node.start()
    assert node.pid not in (0, pid)
    assert node.stop() == 0
