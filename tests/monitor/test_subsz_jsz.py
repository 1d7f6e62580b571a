"""/subsz (§1.5) and /jsz (§1.6): router stats, the subscription list and its `test`
filter, and the store's streams (the MQTT state streams included)."""

from __future__ import annotations

from hybridbus.store.api import ConsumerConfig, StreamConfig
from tests.monitor.conftest import Paho, eventually
from tests.monitor.gocheck import JSZ, SUBSZ, check


async def test_subsz_stats_without_list(probes):
    r = await probes.get("/subsz")
    doc = r.json()
    check(doc, SUBSZ)
    base = probes.extra["base_subs"]  # the JetStream engine's own subscriptions
    assert doc["num_subscriptions"] == 6 + base
    assert doc["num_inserts"] >= 6 + base
    assert (doc["total"], doc["offset"], doc["limit"]) == (0, 0, 1024)
    assert "subscriptions_list" not in doc
    assert isinstance(doc["num_matches"], int) and doc["num_matches"] > 0
    # floats stay floats even when whole (Go float64 fields)
    assert 0.0 <= doc["cache_hit_rate"] <= 1.0
    alias = await probes.json("/subscriptionsz")
    assert set(alias) == set(doc)


async def test_subsz_list_and_test_filter(probes):
    cids = {c.conn_type: c.cid for c in probes.server.clients.values()}
    doc = await probes.json("/subsz?subs=1")
    check(doc, SUBSZ)
    total = 6 + probes.extra["base_subs"]
    assert doc["total"] == total and len(doc["subscriptions_list"]) == total
    # the engine's subscriptions are the server's own: cid 0, like an offline session's
    # (and the system account's services: server/system.py)
    internal = [s for s in doc["subscriptions_list"] if s["subject"].startswith(("$JS.", "$SYS."))]
    assert len(internal) == probes.extra["base_subs"] and all(s["cid"] == 0 for s in internal)
    for sub in doc["subscriptions_list"]:
        assert sub["account"] == sub["account_tag"]
        assert sub["account"] == "$G" or sub in internal  # $SYS: the system's only
    by_subject = {s["subject"]: s for s in doc["subscriptions_list"]}
    assert by_subject["sensors.>"]["cid"] == cids["mqtt"]
    assert by_subject["orders.new"]["cid"] == cids["nats"]

    async def matched(subject: str) -> list[str]:
        d = await probes.json(f"/subsz?subs=true&test={subject}")
        assert d["total"] == len(d.get("subscriptions_list", []))
        return sorted(s["subject"] for s in d.get("subscriptions_list", []))

    assert await matched("orders.new") == ["orders.>", "orders.new"]  # queue subs included
    assert await matched("orders.old") == ["orders.>"]
    assert await matched("sensors") == ["sensors"]
    assert await matched("sensors.temp.1") == ["sensors.>"]
    assert await matched("alerts.x.high") == ["alerts.*.high"]
    assert await matched("nothing.here") == []
    # without subs=1 the test filter has no visible effect
    d = await probes.json("/subsz?test=orders.new")
    assert d["total"] == 0 and "subscriptions_list" not in d


async def test_subsz_paging_and_accounts(probes):
    everything = (await probes.json("/subsz?subs=1"))["subscriptions_list"]
    page = await probes.json("/subsz?subs=1&offset=2&limit=3")
    assert (page["offset"], page["limit"], page["total"]) == (2, 3, 6 + probes.extra["base_subs"])
    assert page["subscriptions_list"] == everything[2:5]
    tail = await probes.json("/subsz?subs=1&offset=-4&limit=0")
    assert (tail["offset"], tail["limit"]) == (0, 1024)
    sys = await probes.json("/subsz?subs=1&acc=$SYS")  # the system account's services
    own = probes.server.accounts["$SYS"].sublist.count()
    assert sys["num_subscriptions"] == sys["total"] == own > 0


async def test_subsz_offline_mqtt_session_has_cid_zero(monitored):
    port = monitored.server.mqtt_port
    dev = await Paho(port, "sleepy", clean=False).start()
    await dev.subscribe("cmd/sleepy", 1)
    await dev.stop()
    await eventually(lambda: not monitored.server.clients)
    doc = await monitored.json("/subsz?subs=1&test=cmd.sleepy")
    assert [(s["subject"], s["cid"]) for s in doc["subscriptions_list"]] == [("cmd.sleepy", 0)]


async def test_jsz_lists_store_streams(probes):
    server = probes.server
    stream = server.store.add_stream(StreamConfig(name="ORDERS", subjects=["orders.>"]))
    for i in range(3):
        stream.append(f"orders.{i}", b"payload-%d" % i)
    consumer = stream.add_consumer(ConsumerConfig(durable_name="billing"))
    assert len(consumer.next_batch(2)) == 2

    doc = await probes.json("/jsz")
    check(doc, JSZ)
    names = {s.name for s in server.store.streams()}
    assert {"ORDERS", "$MQTT_sess", "$MQTT_out", "$MQTT_rmsgs"} <= names
    assert doc["streams"] == len(names)
    assert doc["consumers"] == 1
    assert doc["messages"] == sum(s.state().messages for s in server.store.streams())
    assert doc["bytes"] == sum(s.state().bytes for s in server.store.streams())
    assert doc["total"] == 1 and doc["accounts"] == 1
    assert "account_details" not in doc and "disabled" not in doc
    recovery = doc["hybridbus"]["store"]["recovery"]
    assert {"streams", "records", "corrupt_records", "torn_tails"} <= set(recovery)
    assert "write_errors" in doc["hybridbus"]["store"]["stats"]

    doc = await probes.json("/jsz?streams=1")
    check(doc, JSZ)
    (acc,) = doc["account_details"]
    assert acc["name"] == acc["id"] == "$G"
    details = {s["name"]: s for s in acc["stream_detail"]}
    assert set(details) == names
    orders = details["ORDERS"]
    assert orders["state"]["messages"] == 3 and orders["state"]["last_seq"] == 3
    assert orders["state"]["consumer_count"] == 1
    assert orders["cluster"]["leader"] == server.server_name
    assert "config" not in orders and "consumer_detail" not in orders

    doc = await probes.json("/jsz?consumers=true&config=true")
    check(doc, JSZ)
    details = {s["name"]: s for s in doc["account_details"][0]["stream_detail"]}
    orders = details["ORDERS"]
    assert orders["config"]["subjects"] == ["orders.>"]
    assert orders["config"]["duplicate_window"] == 120_000_000_000  # ns
    (billing,) = orders["consumer_detail"]
    assert billing["name"] == "billing" and billing["stream_name"] == "ORDERS"
    assert billing["num_ack_pending"] == 2 and billing["num_pending"] == 1
    assert billing["delivered"]["stream_seq"] == 2
    assert billing["config"]["ack_wait"] == 30_000_000_000
    assert "consumer_detail" not in details["$MQTT_sess"]

    assert "account_details" not in await probes.json("/jsz?acc=nope")
    assert len((await probes.json("/jsz?acc=$G"))["account_details"]) == 1
    assert "account_details" not in await probes.json("/jsz?accounts=1&offset=1")


async def test_jsz_counts_persistent_mqtt_session(monitored):
    dev = await Paho(monitored.server.mqtt_port, "keeper", clean=False).start()
    await dev.subscribe("keep/#", 1)
    doc = await monitored.json("/jsz?streams=1")
    details = {s["name"]: s for s in doc["account_details"][0]["stream_detail"]}
    assert details["$MQTT_sess"]["state"]["messages"] == 1
    assert doc["messages"] >= 1
    await dev.stop()
