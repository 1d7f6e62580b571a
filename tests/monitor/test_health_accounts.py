"""/healthz (§1.7), /accountz and /routez (§1.8)."""

from __future__ import annotations

import json

from hybridbus.store.api import ConsumerConfig, StreamConfig
from tests.monitor.gocheck import ACCOUNTZ, ACCOUNTZ_DETAIL, ROUTEZ, check


async def test_healthz_ok_is_compact(monitored):
    for path in ("/healthz", "/healthz?js-enabled-only=true", "/healthz?js-server-only=1"):
        r = await monitored.get(path)
        assert (r.status, r.body) == (200, b'{"status":"ok"}')
        assert r.headers["content-type"] == "application/json"
        assert r.headers["access-control-allow-origin"] == "*"


async def test_healthz_stream_and_consumer_checks(monitored):
    store = monitored.server.store
    store.add_stream(StreamConfig(name="S", subjects=["s.>"])).add_consumer(
        ConsumerConfig(durable_name="C")
    )
    cases = [
        (
            "/healthz?stream=S",
            400,
            {
                "status": "error",
                "error": '"account" must not be empty when checking stream health',
            },
        ),
        (
            "/healthz?account=$G&consumer=C",
            400,
            {
                "status": "error",
                "error": '"stream" must not be empty when checking consumer health',
            },
        ),
        (
            "/healthz?account=$G&stream=nope",
            404,
            {
                "status": "unavailable",
                "error": 'JetStream stream "nope" not found on account "$G"',
            },
        ),
        (
            "/healthz?account=$G&stream=S&consumer=x",
            404,
            {
                "status": "unavailable",
                "error": 'JetStream consumer "x" not found for stream "S" on account "$G"',
            },
        ),
        ("/healthz?account=$G&stream=S", 200, {"status": "ok"}),
        ("/healthz?account=$G&stream=S&consumer=C", 200, {"status": "ok"}),
        ("/healthz?account=$G&stream=$MQTT_sess", 200, {"status": "ok"}),
    ]
    for path, status, body in cases:
        r = await monitored.get(path)
        assert (r.status, r.json()) == (status, body), path
        assert "\n" not in r.text and "status_code" not in r.text

    r = await monitored.get("/healthz?account=$G&stream=nope&details=true")
    assert r.status == 404
    assert r.json() == {
        "status": "error",
        "errors": [
            {
                "type": "STREAM",
                "account": "$G",
                "stream": "nope",
                "error": 'JetStream stream "nope" not found on account "$G"',
            }
        ],
    }
    r = await monitored.get("/healthz?details=1")
    assert (r.status, r.json()) == (200, {"status": "ok"})


async def test_healthz_reports_store_write_errors(monitored):
    store = monitored.server.store
    assert (await monitored.get("/healthz")).status == 200
    # The store counts a failed write in its stats; a growing count means it cannot
    # write right now.
    store.counters["write_errors"] += 1
    r = await monitored.get("/healthz")
    assert r.status == 503
    body = r.json()
    assert body["status"] == "unavailable"
    assert "store cannot write" in body["error"]
    # the exporter only reads the body: anything but "ok" is unhealthy
    r = await monitored.get("/healthz?js-enabled-only=true")
    assert r.json()["status"] != "ok"
    monitored.monitor._health.failing_until = 0.0  # the hold has run out
    assert (await monitored.get("/healthz")).status == 200


async def test_healthz_store_may_say_it_is_failing(monitored, monkeypatch):
    store = monitored.server.store
    real = store.stats
    monkeypatch.setattr(
        store, "stats", lambda: dict(real(), write_failing=True, last_write_error="ENOSPC")
    )
    r = await monitored.get("/healthz")
    assert r.status == 503 and "ENOSPC" in r.json()["error"]


async def test_accountz(probes):
    doc = await probes.json("/accountz")
    check(doc, ACCOUNTZ)
    assert doc["accounts"] == ["$G", "$SYS"] and doc["system_account"] == "$SYS"
    g = await probes.json("/accountz?acc=$G")
    check(g, ACCOUNTZ_DETAIL)
    detail = g["account_detail"]
    assert detail["account_name"] == "$G"
    assert detail["client_connections"] == 2
    # the probes' 6, the engine's and the four system imports; $SYS counts its own
    own = probes.extra["base_subs"] - probes.server.accounts["$SYS"].sublist.count()
    assert detail["subscriptions"] == 6 + own
    assert detail["jetstream_enabled"] is True and "is_system" not in detail
    s = await probes.json("/accountz?acc=$SYS")
    check(s, ACCOUNTZ_DETAIL)
    assert s["account_detail"]["is_system"] is True
    assert s["account_detail"]["client_connections"] == 0


async def test_routez_is_empty_standalone(monitored):
    r = await monitored.get("/routez?subs=detail")
    doc = r.json()
    check(doc, ROUTEZ)
    assert (doc["num_routes"], doc["routes"]) == (0, [])
    assert '"routes": []' in r.text
    assert json.loads(r.text)["server_name"] == monitored.server.server_name
