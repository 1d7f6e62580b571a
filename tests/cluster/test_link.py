"""The leaf-node link against a real cluster (docs: scale-out.md §5, scenarios 1 at
QoS 0, 2, 3, 8 and 9): hybridbus nodes A and B are spokes of the 3-member hub.

The nodes keep their MQTT state in their own stores (``js_domain=False``): these are
link-level scenarios (QoS 0, NATS, the JetStream API over the link); MQTT state in the
hub's JetStream is tested elsewhere.
"""

from __future__ import annotations

import asyncio
import json
import re
import time

import nats
import pytest

from tests.cluster.conftest import (
    HbNode,
    MqttClient,
    NatsCluster,
    deliver_probes,
    http_get,
    until,
)

# Each scenario well under the 30 s budget of scale-out.md §5 (pytest-timeout).
pytestmark = pytest.mark.timeout(45)


def collect(into: list, what=lambda m: m.data):
    """A nats-py callback (a coroutine function) appending ``what(msg)``."""

    async def cb(msg):
        into.append(what(msg))

    return cb


def _pair(hb_node, cluster: NatsCluster | None = None) -> tuple[HbNode, HbNode]:
    a = hb_node("hb-a", js_domain=False, cluster=cluster)
    b = hb_node("hb-b", js_domain=False, cluster=cluster)
    a.wait_linked()
    b.wait_linked()
    return a, b


async def _mqtt_probe(pub: MqttClient, sub: MqttClient, topic: str, what: str) -> None:
    """Publish ``topic`` probes from ``pub`` until ``sub`` gets one; drop the rest."""

    async def send():
        await pub.publish(topic, b"probe")

    async def arrived():
        return bool(await sub.messages(1, timeout=0.1, partial=True))

    await deliver_probes(send, arrived, 10, what)
    await asyncio.sleep(0.2)
    await sub.messages(1000, timeout=0.05, partial=True)  # late probes


# ------------------------------------------------------------------ scenario 1 (QoS 0)


async def test_mqtt_qos0_from_a_to_b_in_order(hb_node):
    a, b = _pair(hb_node)
    sub = await MqttClient.connect(b.mqtt_port, "sub-b")
    pub = await MqttClient.connect(a.mqtt_port, "pub-a")
    try:
        await sub.subscribe("s1/#")
        await _mqtt_probe(pub, sub, "s1/probe", "A -> B over the hub")
        n = 1000
        for start in range(0, n, 100):  # in writes of 100, as a busy device would
            await pub.publish_many("s1/data", [b"%d" % i for i in range(start, start + 100)])
        got = await sub.messages(n, timeout=20)
        assert {m.topic for m in got} == {"s1/data"}
        assert [int(m.payload) for m in got] == list(range(n))
        assert await sub.messages(1, timeout=0.3, partial=True) == []  # nothing twice
    finally:
        await pub.close()
        await sub.close()


# ------------------------------------------------------------------ scenario 2


async def test_nats_on_the_hub_to_mqtt_on_a_and_back(nats_cluster: NatsCluster, hb_node):
    a = hb_node("hb-a", js_domain=False)
    a.wait_linked()
    device = await MqttClient.connect(a.mqtt_port, "device-a")
    n3 = await nats.connect(nats_cluster.client_url("n3"))
    n2 = await nats.connect(nats_cluster.client_url("n2"))
    a_nats = await nats.connect(a.nats_url)
    try:
        # n3 (a nats-py client of the hub) -> an MQTT device on A.
        await device.subscribe("dev/+/cmd")

        async def send_cmd():
            await n3.publish("dev.7.cmd", b"probe")

        async def device_got():
            return bool(await device.messages(1, timeout=0.1, partial=True))

        await deliver_probes(send_cmd, device_got, 10, "n3 -> device on A")
        await asyncio.sleep(0.2)
        await device.messages(1000, timeout=0.05, partial=True)
        await n3.publish("dev.7.cmd", b"reboot")
        (msg,) = await device.messages(1, timeout=3)
        assert (msg.topic, msg.payload) == ("dev/7/cmd", b"reboot")

        # A (a NATS client and the MQTT device) -> a nats-py subscriber on n2.
        up: asyncio.Queue = asyncio.Queue()

        async def on_up(m):
            up.put_nowait((m.subject, m.data))

        sub = await n2.subscribe("up.>", cb=on_up)
        await n2.flush()

        async def send_up():
            await a_nats.publish("up.probe", b"probe")
            await a_nats.flush()

        async def n2_got():
            try:
                await asyncio.wait_for(up.get(), 0.1)
                return True
            except TimeoutError:
                return False

        await deliver_probes(send_up, n2_got, 10, "A -> n2")
        await asyncio.sleep(0.2)
        while not up.empty():
            up.get_nowait()
        await a_nats.publish("up.nats", b"from a nats client of A")
        await device.publish("up/mqtt", b"from the device on A")
        got = {await asyncio.wait_for(up.get(), 3) for _ in range(2)}
        assert got == {
            ("up.nats", b"from a nats client of A"),
            ("up.mqtt", b"from the device on A"),
        }
        await sub.unsubscribe()
    finally:
        await device.close()
        for nc in (n3, n2, a_nats):
            await nc.close()


async def _replies(nc, subject: str, wait: float = 0.5) -> list[dict]:
    """Every answer to one request within ``wait`` (a raw inbox, not nc.request, so a
    second answer would show)."""
    inbox = nc.new_inbox()
    answers: list[dict] = []
    sub = await nc.subscribe(inbox, cb=collect(answers, lambda m: json.loads(m.data)))
    await nc.publish(subject, b"", reply=inbox)
    await nc.flush()
    await until(lambda: answers, 5, f"an answer to {subject}")
    await asyncio.sleep(wait)
    await sub.unsubscribe()
    return answers


async def test_jetstream_api_over_the_link(nats_cluster: NatsCluster, hb_node):
    a = hb_node("hb-a", js_domain=False)
    a.wait_linked()
    hub = await nats.connect(nats_cluster.client_url(0))
    a_nats = await nats.connect(a.nats_url)
    try:
        await hub.jetstream(domain="hub").add_stream(name="ON_HUB", subjects=["onhub"])
        await a_nats.jetstream().add_stream(name="ON_A", subjects=["ona"])

        # $JS.hub.API from a NATS client of A: answered by the hub's JetStream.
        async def hub_info():
            try:
                await a_nats.request("$JS.hub.API.INFO", b"", timeout=0.3)
                return True
            except (nats.errors.TimeoutError, nats.errors.NoRespondersError):
                return False

        await until_async(hub_info, 10, "the hub's $JS.hub.API.INFO from A")
        (info,) = await _replies(a_nats, "$JS.hub.API.INFO")
        assert info["type"] == "io.nats.jetstream.api.v1.account_info_response"
        assert info.get("domain") == "hub"
        (names,) = await _replies(a_nats, "$JS.hub.API.STREAM.NAMES")
        assert "ON_HUB" in names["streams"] and "ON_A" not in names["streams"]

        # $JS.API from a NATS client of A: A's own JetStream, exactly one answer (the
        # link keeps $JS.API.> on A's side: the hub's JetStream never sees it).
        (local,) = await _replies(a_nats, "$JS.API.STREAM.NAMES")
        assert local["streams"] == ["ON_A"]
        (local_info,) = await _replies(a_nats, "$JS.API.INFO")
        assert "domain" not in local_info or local_info["domain"] != "hub"
        # And the hub's own clients still get only the hub's answer.
        (hub_local,) = await _replies(hub, "$JS.API.STREAM.NAMES")
        assert "ON_HUB" in hub_local["streams"] and "ON_A" not in hub_local["streams"]
    finally:
        await hub.jetstream(domain="hub").delete_stream("ON_HUB")
        await hub.close()
        await a_nats.close()


async def until_async(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)


# ------------------------------------------------------------------ scenario 3


async def test_queue_group_across_the_link(nats_cluster: NatsCluster, hb_node):
    a, b = _pair(hb_node)
    n = 1000
    got: dict[str, list[bytes]] = {"a": [], "b": [], "n2": []}
    a_nats = await nats.connect(a.nats_url)
    n2 = await nats.connect(nats_cluster.client_url("n2"))
    b_member = await MqttClient.connect(b.mqtt_port, "member-b")
    b_pub = await MqttClient.connect(b.mqtt_port, "pub-b")
    try:
        a_sub = await a_nats.subscribe("qt", queue="g", cb=collect(got["a"]))
        await n2.subscribe("qt", queue="g", cb=collect(got["n2"]))
        await b_member.subscribe("$share/g/qt")
        await a_nats.flush()
        await n2.flush()

        # Each node learns the others' queue interest over the hub (A's /leafz lists
        # the hub's interest on its link).
        def a_knows():
            leafs = a.http_json("/leafz?subs=true")["leafs"]
            return leafs and "qt" in leafs[0].get("subscriptions_list", [])

        await until(a_knows, 10, "the hub's queue interest on A's link")

        # From each side: every message to its local member (nats-server prefers a
        # local queue member to a remote one).
        await a_nats.publish("qt", b"probe")  # settles nothing; counted below
        for i in range(n):
            await a_nats.publish("qt", b"a%d" % i)
            await n2.publish("qt", b"n%d" % i)
        await a_nats.flush()
        await n2.flush()
        await b_pub.publish_many("qt", [b"b%d" % i for i in range(n)])
        b_got = await b_member.messages(n, timeout=10)
        got["b"] = [m.payload for m in b_got]
        await until(lambda: len(got["a"]) >= n + 1 and len(got["n2"]) >= n, 10, "local deliveries")
        await asyncio.sleep(0.3)
        got["b"] += [m.payload for m in await b_member.messages(n, timeout=0.05, partial=True)]
        assert got["a"] == [b"probe"] + [b"a%d" % i for i in range(n)]
        assert got["n2"] == [b"n%d" % i for i in range(n)]
        assert got["b"] == [b"b%d" % i for i in range(n)]

        # Without A's member, A's messages cross the link: each to exactly one of the
        # group's remote members (B's or n2's).
        await a_sub.unsubscribe()
        await a_nats.flush()
        for received in got.values():
            received.clear()
        await asyncio.sleep(0.3)  # LS- reaches the hub
        for i in range(n):
            await a_nats.publish("qt", b"x%d" % i)
        await a_nats.flush()
        deadline = time.monotonic() + 10
        while len(got["b"]) + len(got["n2"]) < n and time.monotonic() < deadline:
            more = await b_member.messages(n, timeout=0.1, partial=True)
            got["b"] += [m.payload for m in more]
        await asyncio.sleep(0.3)
        got["b"] += [m.payload for m in await b_member.messages(n, timeout=0.05, partial=True)]
        both = got["b"] + got["n2"]
        assert got["a"] == []
        assert sorted(both) == sorted(b"x%d" % i for i in range(n)), (
            f"{len(both)} deliveries of {n}; b={len(got['b'])} n2={len(got['n2'])}"
        )
    finally:
        await b_member.close()
        await b_pub.close()
        await a_nats.close()
        await n2.close()


# ------------------------------------------------------------------ scenario 8


def _leaf_out_total(node: HbNode) -> float:
    text = http_get(node.monitor_url + "/metrics")[1]
    m = re.search(r'^hybridbus_leafnode_messages_total\{direction="out"\} (\S+)$', text, re.M)
    assert m, "no leaf message counter in /metrics"
    return float(m.group(1))


async def test_kill_the_member_a_is_linked_to(fresh_cluster: NatsCluster, hb_node):
    a, b = _pair(hb_node, fresh_cluster)
    ((member, _),) = a.wait_linked()
    a_nats = await nats.connect(a.nats_url)
    local: list[tuple[float, bytes]] = []
    sub_b = await MqttClient.connect(b.mqtt_port, "sub-b")
    pub_a = await MqttClient.connect(a.mqtt_port, "pub-a")
    stop = asyncio.Event()
    sent_local = 0

    async def local_traffic():
        nonlocal sent_local
        while not stop.is_set():
            await a_nats.publish("loc.tick", b"%d" % sent_local)
            sent_local += 1
            await asyncio.sleep(0.01)

    try:
        await a_nats.subscribe("loc.tick", cb=collect(local, lambda m: (time.monotonic(), m.data)))
        await a_nats.flush()
        ticker = asyncio.create_task(local_traffic())
        await sub_b.subscribe("ab/#")
        await _mqtt_probe(pub_a, sub_b, "ab/probe", "A -> B before the kill")

        carried_before = _leaf_out_total(a)
        assert carried_before > 0
        killed_at = time.monotonic()
        fresh_cluster.kill(member)
        # A relinks to another member (its own URL list and the hub's leafnode_urls).
        links = await asyncio.to_thread(a.wait_linked, 1, 10)
        relinked = time.monotonic() - killed_at
        assert links[0][0] != member
        # A -> B resumes (B may have been on the killed member too and relinked).
        await _mqtt_probe(pub_a, sub_b, "ab/probe", "A -> B after the kill")
        await pub_a.publish("ab/after", b"resumed")
        (msg,) = await sub_b.messages(1, timeout=5)
        assert (msg.topic, msg.payload) == ("ab/after", b"resumed")
        # The link's traffic counter keeps what the dead link carried (monitor/leafz.py).
        assert _leaf_out_total(a) > carried_before

        stop.set()
        await ticker
        await a_nats.flush()
        await until(lambda: len(local) == sent_local, 3, "every local message")
        # A-local traffic never stopped: no gap near the relink time.
        times = [t for t, _ in local]
        gaps = [t2 - t1 for t1, t2 in zip(times, times[1:], strict=False)]
        assert max(gaps) < 0.5, f"local traffic stalled {max(gaps):.2f}s (relink {relinked:.2f}s)"
        assert [int(p) for _, p in local] == list(range(sent_local))
        assert relinked < 10
    finally:
        stop.set()
        await sub_b.close()
        await pub_a.close()
        await a_nats.close()


# ------------------------------------------------------------------ scenario 9


async def test_loop_through_a_second_hub_is_detected(
    nats_cluster: NatsCluster, cluster_factory, hb_node
):
    """A true loop, as scale-out.md §5 draws it: A has one remote into the hub and one
    into a second hub H that is itself a spoke of the first (same account). A's $LDS
    subject comes back over the other link; A closes the looping links with an error
    in its log, redials only after 30 s, and nothing storms meanwhile. nats-server
    2.15.1 as the spoke of this topology does the same (both links closed, "Loop
    detected for leafnode account" logged, 30 s delay)."""
    second = cluster_factory(
        size=1, name="h", domain="h", prefix="h", leaf_remotes=[nats_cluster.leaf_url(2)]
    )
    await until(
        lambda: any(leaf["name"] == "h1" for _, leaf in nats_cluster.leafs()),
        10,
        "the second hub linked to the first",
    )
    a = hb_node(
        "hb-loop",
        js_domain=False,
        remotes=[[nats_cluster.leaf_url(0)], [second.leaf_url(0)]],
    )
    a_nats = await nats.connect(a.nats_url)
    hub = await nats.connect(nats_cluster.client_url(1))
    try:
        got: list[bytes] = []
        await a_nats.subscribe("loop.t", cb=collect(got))
        await a_nats.flush()
        await until(lambda: "loop detected" in a.output().lower(), 10, "a loop error in A's log")
        log = a.output()
        assert "[ERR]" in log and "$LDS." in log
        await until(lambda: a.http_json("/leafz")["leafnodes"] == 0, 5, "the loop links closed")
        for _ in range(10):
            await hub.publish("loop.t", b"x")
        await hub.flush()
        await asyncio.sleep(1.0)
        # Still closed (the 30 s delay), and no storm: nothing went round and round.
        assert a.http_json("/leafz")["leafnodes"] == 0
        assert a.hub_links() == []
        varz = a.http_json("/varz")
        assert varz["in_msgs"] < 1000 and got == [], (varz["in_msgs"], len(got))
        assert a.output().lower().count("loop detected") <= 4  # once per link, no flood
    finally:
        await a_nats.close()
        await hub.close()


async def test_two_remotes_into_one_cluster_are_no_loop(nats_cluster: NatsCluster, hb_node):
    """Two remotes of A into the same hub account through two members of one cluster.
    nats-server 2.15.1 as the spoke of this config (measured): no loop, both links stay
    up, every message crosses twice (20 of 10, both ways). Its leaf CONNECT carries
    ``cluster`` (its own name when it has no cluster block), and the hub does not send
    interest back to the cluster it came from: a raw leaf CONNECT without ``cluster``
    gets its LS+ $LDS.x from link 1 back on link 2, with ``cluster`` it does not.

    hybridbus sends no ``cluster``: it sees its $LDS come back, closes both links and
    redials 30 s later, into the same false loop, so the node stays cut off from the
    hub. This test fails until the leaf CONNECT carries ``cluster``."""
    a = hb_node(
        "hb-two",
        js_domain=False,
        remotes=[[nats_cluster.leaf_url(0)], [nats_cluster.leaf_url(1)]],
    )
    a.wait_linked(count=2, timeout=5)
    await asyncio.sleep(1.0)
    assert "loop detected" not in a.output().lower(), a.output()[-2000:]
    assert a.http_json("/leafz")["leafnodes"] == 2
    a_nats = await nats.connect(a.nats_url)
    hub = await nats.connect(nats_cluster.client_url(2))
    try:
        got: list[bytes] = []
        await a_nats.subscribe("two.t", cb=collect(got))
        await a_nats.flush()

        async def send():
            await hub.publish("two.t", b"probe")

        async def arrived():
            await asyncio.sleep(0.05)
            return bool(got)

        await deliver_probes(send, arrived, 10, "hub -> A")
        await asyncio.sleep(0.3)
        got.clear()
        for i in range(10):
            await hub.publish("two.t", b"%d" % i)
        await hub.flush()
        await until(lambda: len(got) >= 10, 5, "10 messages")
        await asyncio.sleep(0.5)
        # Each message at least once and at most once per link: no storm.
        assert set(got) == {b"%d" % i for i in range(10)}
        assert len(got) <= 20
    finally:
        await a_nats.close()
        await hub.close()
