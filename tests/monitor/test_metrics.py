"""/metrics: the prometheus-client collector, parsed back with prometheus_client's
own parser. Values are read at scrape time from the server's counters."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import mqtt_packets as mp
from tests.helpers.wire import mqtt_connect, nats_connect
from tests.monitor.conftest import eventually


async def scrape(m, headers: dict | None = None) -> dict:
    r = await m.get("/metrics", headers=headers)
    assert r.status == 200
    families = {f.name: f for f in text_string_to_metric_families(r.text)}
    return families


def value(families: dict, name: str, **labels) -> float:
    for fam in families.values():
        for s in fam.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    raise AssertionError(f"no sample {name} {labels}")


async def test_metrics_traffic_by_protocol(probes):
    r = await probes.get("/metrics")
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    f = await scrape(probes)
    assert f["hybridbus_connections"].type == "gauge"
    assert f["hybridbus_received_messages"].type == "counter"
    assert value(f, "hybridbus_connections", protocol="nats") == 1
    assert value(f, "hybridbus_connections", protocol="mqtt") == 1
    assert value(f, "hybridbus_accepted_connections_total") == 2
    assert value(f, "hybridbus_received_messages_total", protocol="nats") == 5
    assert value(f, "hybridbus_received_messages_total", protocol="mqtt") == 2
    assert value(f, "hybridbus_sent_messages_total", protocol="nats") == 10
    assert value(f, "hybridbus_sent_messages_total", protocol="mqtt") == 1
    assert value(f, "hybridbus_received_bytes_total", protocol="nats") == 30
    assert value(f, "hybridbus_server_received_messages_total") == 7
    assert value(f, "hybridbus_subscriptions") == 6 + probes.extra["base_subs"]
    assert value(f, "hybridbus_mqtt_sessions", state="online") == 1
    assert value(f, "hybridbus_mqtt_sessions", state="offline") == 0
    assert value(f, "hybridbus_mqtt_inflight_messages") == 0
    assert value(f, "hybridbus_slow_consumers_total") == 0
    assert value(f, "hybridbus_stale_connections_total") == 0
    assert value(f, "hybridbus_auth_failures_total") == 0
    assert value(f, "hybridbus_store_streams") >= 4
    assert value(f, "hybridbus_store_bytes", storage="file") >= 0
    assert value(f, "hybridbus_store_write_errors_total") == 0
    assert value(f, "hybridbus_http_requests_total", path="/metrics") == 2
    info = f["hybridbus_info"].samples[0]
    assert info.labels["server_id"] == probes.server.server_id
    # the store times its fsyncs: a real histogram with cumulative buckets and +Inf
    fsync = f["hybridbus_store_fsync_seconds"]
    assert fsync.type == "histogram"
    buckets = [s for s in fsync.samples if s.name.endswith("_bucket")]
    assert buckets[-1].labels["le"] == "+Inf"
    counts = [s.value for s in buckets]
    assert counts == sorted(counts)


async def test_metrics_counters_survive_closed_connections(probes):
    before = await scrape(probes)
    await probes.extra["nc"].close()
    await eventually(lambda: len(probes.server.clients) == 1)
    after = await scrape(probes)
    assert value(after, "hybridbus_connections", protocol="nats") == 0
    for name in ("hybridbus_received_messages_total", "hybridbus_sent_messages_total"):
        assert value(after, name, protocol="nats") == value(before, name, protocol="nats")
    # a connection that opens and closes between two scrapes is counted too
    w = await nats_connect(probes.server.nats_port)
    await w.send(b"PUB a 1\r\nx\r\nPING\r\n")
    await w.expect(b"PONG\r\n")
    await w.close()
    await eventually(lambda: len(probes.server.clients) == 1)
    last = await scrape(probes)
    assert value(last, "hybridbus_received_messages_total", protocol="nats") == 6
    assert value(last, "hybridbus_accepted_connections_total") == 3


async def test_metrics_without_closed_ring(monitored_factory):
    m = await monitored_factory(max_closed_clients=0)
    w = await nats_connect(m.server.nats_port)
    await w.send(b"PUB a 2\r\nhi\r\nPING\r\n")
    await w.expect(b"PONG\r\n")
    assert value(await scrape(m), "hybridbus_received_messages_total", protocol="nats") == 1
    await w.close()
    await eventually(lambda: not m.server.clients)
    f = await scrape(m)
    assert value(f, "hybridbus_received_messages_total", protocol="nats") == 1
    assert value(f, "hybridbus_received_bytes_total", protocol="nats") == 2


async def test_metrics_mqtt_inflight_queued_retained(monitored):
    server = monitored.server
    port = server.mqtt_port
    # an online subscriber that never acks, and an offline persistent session
    live = await mqtt_connect(port, "live")
    await live.send(mp.subscribe(1, ("jobs/#", 1)))
    await live.expect(mp.suback(1, 1))
    gone = await mqtt_connect(port, "gone", clean=False)
    await gone.send(mp.subscribe(1, ("jobs/#", 1)))
    await gone.expect(mp.suback(1, 1))
    await gone.close()
    await eventually(lambda: len(server.clients) == 1)
    pub = await mqtt_connect(port, "pub")
    for i in range(3):
        await pub.send(mp.publish("jobs/a", b"j%d" % i, qos=1, mid=i + 1))
        await pub.expect(mp.puback(i + 1))
    await pub.send(mp.publish("state/door", b"open", retain=True, qos=1, mid=9))
    await pub.expect(mp.puback(9))
    f = await scrape(monitored)
    assert value(f, "hybridbus_mqtt_inflight_messages") == 3  # live never PUBACKed
    assert value(f, "hybridbus_mqtt_queued_messages") == 3  # waiting for `gone`
    assert value(f, "hybridbus_mqtt_sessions", state="online") == 2
    assert value(f, "hybridbus_mqtt_sessions", state="offline") == 1
    assert value(f, "hybridbus_mqtt_retained_messages") == 1
    assert value(f, "hybridbus_store_messages") >= 4  # queued copies + retained + session
    for w in (live, pub):
        await w.close()


async def test_metrics_fsync_histogram_when_store_times_fsyncs(monitored, monkeypatch):
    store = monitored.server.store
    real = store.stats
    timings = {"buckets": [(0.001, 5), (0.01, 9), (0.1, 10)], "count": 10, "sum": 0.042}
    monkeypatch.setattr(store, "stats", lambda: dict(real(), fsync_latency=timings))
    f = await scrape(monitored)
    fam = f["hybridbus_store_fsync_seconds"]
    assert fam.type == "histogram"
    buckets = {s.labels["le"]: s.value for s in fam.samples if s.name.endswith("_bucket")}
    assert buckets == {"0.001": 5, "0.01": 9, "0.1": 10, "+Inf": 10}
    assert value(f, "hybridbus_store_fsync_seconds_sum") == 0.042


async def test_metrics_openmetrics_on_request(monitored):
    r = await monitored.get(
        "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
    )
    assert r.headers["content-type"].startswith("application/openmetrics-text")
    assert r.text.rstrip().endswith("# EOF")
