"""/varz over real HTTP, with real NATS and MQTT clients connected: every field
with the Go type nats-top and Telegraf decode it into (nats-conventions §1.3)."""

from __future__ import annotations

import json

from tests.monitor.gocheck import VARZ, check


async def test_varz_go_types_and_values(probes):
    server = probes.server
    r = await probes.get("/varz")
    assert r.status == 200
    assert r.headers["content-type"] == "application/json"
    assert r.headers["access-control-allow-origin"] == "*"
    v = r.json()
    check(v, VARZ)
    assert v["server_id"] == server.server_id and v["server_id"].startswith("N")
    assert len(v["server_id"]) == 56
    assert v["version"] == "2.11.0"
    assert v["proto"] == 1
    assert v["port"] == server.nats_port
    assert v["http_port"] == probes.port
    assert v["mqtt"]["port"] == server.mqtt_port
    # config durations are integer nanoseconds; auth_timeout a float64 printed as 2
    assert v["ping_interval"] == 120_000_000_000
    assert v["write_deadline"] == 10_000_000_000
    assert '"auth_timeout": 2,' in r.text
    assert v["max_payload"] == 1048576
    assert v["cluster"] == {} and v["gateway"] == {} and v["leaf"] == {}
    assert v["jetstream"]["config"]["sync_interval"] == 120_000_000_000
    # JetStreamStats with the engine's API counters (no request made yet)
    level = server.jetstream.api_level
    assert v["jetstream"]["stats"]["api"] == {"level": level, "total": 0, "errors": 0}
    assert v["jetstream"]["stats"]["accounts"] == 1
    assert v["connections"] == 2
    assert v["total_connections"] == 2
    # 3 NATS subs + MQTT: sensors/# is two router subjects, alerts/+/high one
    # (plus the server's own: the JetStream engine's, as nats-server counts its internal ones)
    assert v["subscriptions"] == 6 + probes.extra["base_subs"]
    assert v["subscriptions"] == sum(a.sublist.count() for a in server.accounts.values())
    # 5 NATS publishes + 2 MQTT ones
    assert v["in_msgs"] == 7
    assert v["in_bytes"] == sum(len(b"order%d" % i) for i in range(5)) + len(b"21.5fine")
    assert v["in_client_msgs"] == v["in_msgs"] and v["out_client_bytes"] == v["out_bytes"]
    # orders.new reached orders.> and the queue member (10), sensors/temp the MQTT sub
    assert v["out_msgs"] == 11
    assert v["slow_consumer_stats"]["clients"] == v["slow_consumers"] == 0
    assert v["system_account"] == "$SYS"
    assert v["now"] >= v["start"]


async def test_varz_text_is_marshal_indent(monitored):
    r = await monitored.get("/varz")
    text = r.text
    assert not text.endswith("\n")
    assert text.startswith('{\n  "server_id": "N')
    # every line is indented by a multiple of two spaces, objects close on their own line
    for line in text.splitlines():
        assert (len(line) - len(line.lstrip(" "))) % 2 == 0, line
    assert '\n  "cluster": {},\n' in text
    assert json.loads(text)["http_req_stats"] == {"/varz": 1}


async def test_http_req_stats_count_every_known_path(monitored):
    for path in ("/varz", "/connz", "/connz?sort=bogus", "/subsz", "/subscriptionsz", "/nope"):
        await monitored.get(path)
    v = await monitored.json("/varz")
    # a 400 still counts; the alias counts as /subsz; unknown paths do not count
    assert v["http_req_stats"] == {"/varz": 2, "/connz": 2, "/subsz": 2}


async def test_varz_totals_include_closed_clients(probes):
    nc = probes.extra["nc"]
    before = await probes.json("/varz")
    await nc.close()
    from tests.monitor.conftest import eventually

    await eventually(lambda: len(probes.server.clients) == 1)
    after = await probes.json("/varz")
    assert after["connections"] == 1
    assert after["total_connections"] == 2
    # the closed client's traffic stays in the totals
    assert after["in_msgs"] == before["in_msgs"]
    assert after["out_msgs"] >= before["out_msgs"]


async def test_varz_reflects_options(monitored_factory):
    m = await monitored_factory(
        server_name="edge-1",
        max_subscriptions=50,
        ping_interval=30.0,
        tags=["region:eu"],
        metadata={"owner": "iot"},
        config_digest="sha256:abc",
    )
    v = await m.json("/varz")
    check(v, VARZ)
    assert v["server_name"] == "edge-1"
    assert v["max_subscriptions"] == 50
    assert v["ping_interval"] == 30_000_000_000
    assert v["tags"] == ["region:eu"]
    assert v["metadata"] == {"owner": "iot"}
    assert v["config_digest"] == "sha256:abc"


async def test_varz_without_jetstream_and_mqtt(monitored_factory):
    m = await monitored_factory(jetstream__enabled=False, mqtt__enabled=False)
    v = await m.json("/varz")
    check(v, VARZ)
    assert v["jetstream"] == {}
    assert v["mqtt"] == {}
    j = await m.json("/jsz")
    assert j["disabled"] is True
    assert j["config"] == {"max_memory": 0, "max_storage": 0}
