"""Monitoring of the JetStream API: /jsz, /varz's ``jetstream`` block, /metrics and
/overviewz report the streams, consumers and API counters exactly, in nats-server's
shapes (captured from nats-server 2.15.1: see the comments), while real nats-py
clients use the API."""

from __future__ import annotations

import asyncio

import nats
import pytest
from nats.js.api import ConsumerConfig, StreamSource
from nats.js.errors import NotFoundError, ServiceUnavailableError

from tests.helpers.wire import mqtt_connect
from tests.monitor.conftest import eventually
from tests.monitor.gocheck import JSZ, VARZ, check
from tests.monitor.test_metrics import scrape, value

MQTT_STREAMS = {"$MQTT_sess", "$MQTT_out", "$MQTT_qos2in", "$MQTT_rmsgs"}
UINT64_MAX = 18446744073709551615
SUBJECTS = ["orders.1", "orders.2", "orders.3"]
PAYLOADS = [b"payload-1", b"payload-22", b"payload-333"]


def stored_size(subject: str, payload: bytes) -> int:
    """What a file stream counts for a message without headers: subject, payload and
    30 bytes of record framing (nats-server's fileStoreMsgSize)."""
    return len(subject) + len(payload) + 30


# Fixed limits: unlimited ones are derived from free RAM and disk, which move.
LIMITS = {"jetstream__max_memory_store": 1 << 28, "jetstream__max_file_store": 1 << 30}

ORDERS_BYTES = sum(stored_size(s, p) for s, p in zip(SUBJECTS, PAYLOADS, strict=True))


# API requests make_orders sends: STREAM.CREATE and two CONSUMER.CREATE (publishes,
# pull requests and acks are no API requests, in nats-server's count either)
SETUP_REQUESTS = 3


async def make_orders(server) -> tuple:
    """Through nats-py's JetStream API: ORDERS (orders.>) with 3 messages, a durable
    pull consumer `billing` that has been handed 2 of them and NAKed one, which came
    again (2 unacknowledged, 1 redelivered, 1 never delivered), and a consumer
    `audit` that has delivered none. An MQTT client has connected (and gone), so the
    MQTT state streams show too (`MQTT_STREAMS`, empty). Returns (connection,
    JetStreamContext)."""
    await (await mqtt_connect(server.mqtt_port)).close()
    nc = await nats.connect(f"nats://127.0.0.1:{server.nats_port}")
    js = nc.jetstream(timeout=2)
    await js.add_stream(name="ORDERS", subjects=["orders.>"])
    for i, (subject, payload) in enumerate(zip(SUBJECTS, PAYLOADS, strict=True)):
        ack = await js.publish(subject, payload)
        assert (ack.stream, ack.seq) == ("ORDERS", i + 1)
    await js.add_consumer("ORDERS", ConsumerConfig(durable_name="billing", ack_wait=30))
    await js.add_consumer("ORDERS", ConsumerConfig(durable_name="audit", description="auditors"))
    billing = await js.pull_subscribe_bind("billing", stream="ORDERS")
    first = await billing.fetch(2, timeout=2)
    assert [m.metadata.sequence.stream for m in first] == [1, 2]
    await first[0].nak()
    again = await billing.fetch(1, timeout=2)
    assert [(m.metadata.sequence.stream, m.metadata.num_delivered) for m in again] == [(1, 2)]
    return nc, js


async def api_requests(js, good: int, bad: int = 0) -> None:
    """``good`` $JS.API.INFO requests, each answered, and ``bad`` STREAM.INFO requests
    for a stream that does not exist, each answered with an error (404, 10059)."""
    for _ in range(good):
        info = await js.account_info()
        assert info.streams >= 1
    for _ in range(bad):
        with pytest.raises(NotFoundError):
            await js.stream_info("NOPE")


async def test_jsz_reports_streams_consumers_and_api_counters(monitored):
    server = monitored.server
    nc, js = await make_orders(server)
    await api_requests(js, 3, bad=2)
    doc = await monitored.json("/jsz")
    check(doc, JSZ)
    assert doc["streams"] == 1 + len(MQTT_STREAMS)
    assert doc["consumers"] == 2
    assert doc["messages"] == 3  # the MQTT state streams are empty
    assert doc["bytes"] == ORDERS_BYTES
    assert doc["storage"] == ORDERS_BYTES and doc["memory"] == 0
    total = SETUP_REQUESTS + 3 + 2
    assert doc["api"] == {"level": server.jetstream.api_level, "total": total, "errors": 2}
    assert (doc["accounts"], doc["ha_assets"], doc["total"]) == (1, 0, 1)
    assert (doc["reserved_memory"], doc["reserved_storage"]) == (0, 0)
    assert doc["config"]["sync_interval"] == 120_000_000_000
    assert "account_details" not in doc and "disabled" not in doc
    # reading the monitor is no API request
    again = await monitored.json("/jsz?consumers=true")
    assert again["api"] == doc["api"]
    # an unknown API subject gets no reply and is not counted (nats-server 2.15.1 too);
    # a body that is no JSON is a counted error
    with pytest.raises(nats.errors.TimeoutError):
        await nc.request("$JS.API.STREAM.NAMES.EXTRA", b"", timeout=0.3)
    bad = await nc.request("$JS.API.STREAM.CREATE.X", b"{bad json", timeout=2)
    assert b'"error"' in bad.data
    later = await monitored.json("/jsz")
    assert later["api"]["total"] == total + 1 and later["api"]["errors"] == 3
    await nc.close()


async def test_jsz_account_and_stream_details(monitored):
    server = monitored.server
    nc, js = await make_orders(server)
    await api_requests(js, 2, bad=1)
    doc = await monitored.json("/jsz?accounts=true&streams=true&consumers=true&config=true")
    check(doc, JSZ)
    (acc,) = doc["account_details"]
    # nats-server 2.15.1: an account's own stats leave accounts and the API level at 0
    # and show no reservation as uint64's max
    assert (acc["name"], acc["id"]) == ("$G", "$G")
    assert acc["api"] == {"level": 0, "total": SETUP_REQUESTS + 3, "errors": 1}
    assert (acc["accounts"], acc["ha_assets"]) == (0, 0)
    assert acc["reserved_memory"] == acc["reserved_storage"] == UINT64_MAX
    assert (acc["memory"], acc["storage"]) == (0, ORDERS_BYTES)
    names = [s["name"] for s in acc["stream_detail"]]
    assert names == sorted(names) and set(names) == MQTT_STREAMS | {"ORDERS"}
    orders = acc["stream_detail"][names.index("ORDERS")]
    assert orders["cluster"] == {"leader": server.server_name}
    assert orders["config"]["subjects"] == ["orders.>"]
    assert orders["config"]["storage"] == "file"
    state = orders["state"]
    assert (state["messages"], state["bytes"]) == (3, ORDERS_BYTES)
    assert (state["first_seq"], state["last_seq"]) == (1, 3)
    assert state["num_subjects"] == 3 and state["consumer_count"] == 2
    consumers = {c["name"]: c for c in orders["consumer_detail"]}
    assert set(consumers) == {"billing", "audit"}
    billing = consumers["billing"]
    assert billing["stream_name"] == "ORDERS"
    assert billing["num_pending"] == 1  # seq 3 never delivered
    assert billing["num_ack_pending"] == 2
    assert billing["num_redelivered"] == 1
    assert billing["num_waiting"] == 0
    assert billing["delivered"]["stream_seq"] == 2
    assert billing["ack_floor"] == {"consumer_seq": 0, "stream_seq": 0}
    assert billing["config"]["ack_wait"] == 30_000_000_000
    # standalone nats-server shows no cluster block on a consumer
    assert "cluster" not in billing and billing["ts"] >= billing["created"]
    audit = consumers["audit"]
    assert audit["num_pending"] == 3 and audit["num_ack_pending"] == 0
    assert audit["config"]["description"] == "auditors"
    # the internal MQTT streams are listed like nats-server lists its $MQTT_ ones
    for detail in acc["stream_detail"]:
        if detail["name"] in MQTT_STREAMS:
            assert detail["state"]["consumer_count"] == 0
            assert "consumer_detail" not in detail
    await nc.close()


async def test_jsz_options_select_what_is_shown(monitored):
    server = monitored.server
    nc, _js = await make_orders(server)
    accounts = await monitored.json("/jsz?accounts=true")
    (acc,) = accounts["account_details"]
    assert "stream_detail" not in acc
    streams = await monitored.json("/jsz?streams=true")
    orders = next(
        s for s in streams["account_details"][0]["stream_detail"] if s["name"] == "ORDERS"
    )
    assert "config" not in orders and "consumer_detail" not in orders
    # consumers=true turns on streams; without config=true no consumer config either
    doc = await monitored.json("/jsz?consumers=true")
    orders = next(s for s in doc["account_details"][0]["stream_detail"] if s["name"] == "ORDERS")
    assert "config" not in orders
    assert all("config" not in c for c in orders["consumer_detail"])
    # acc= picks one account; an unknown one is silently none
    assert len((await monitored.json("/jsz?acc=$G&streams=true"))["account_details"]) == 1
    assert "account_details" not in await monitored.json("/jsz?acc=OTHER&streams=true")
    # paging is over accounts; leader-only changes nothing on a standalone server
    assert "account_details" not in await monitored.json("/jsz?accounts=true&offset=1")
    assert len((await monitored.json("/jsz?accounts=true&limit=1"))["account_details"]) == 1
    leader = await monitored.json("/jsz?leader-only=true&accounts=true")
    assert leader["streams"] == 1 + len(MQTT_STREAMS) and len(leader["account_details"]) == 1
    await nc.close()


async def test_varz_jetstream_block_counts_the_api(monitored_factory):
    monitored = await monitored_factory(**LIMITS)
    server = monitored.server
    nc, js = await make_orders(server)
    await api_requests(js, 4, bad=1)
    v = await monitored.json("/varz")
    check(v, VARZ)
    stats = v["jetstream"]["stats"]
    assert stats == {
        "memory": 0,
        "storage": ORDERS_BYTES,
        "reserved_memory": 0,
        "reserved_storage": 0,
        "accounts": 1,
        "ha_assets": 0,
        "api": {"level": server.jetstream.api_level, "total": SETUP_REQUESTS + 5, "errors": 1},
    }
    jsz = await monitored.json("/jsz")
    assert v["jetstream"]["config"] == jsz["config"]
    assert (jsz["config"]["max_memory"], jsz["config"]["max_storage"]) == (1 << 28, 1 << 30)
    await nc.close()


async def test_metrics_jetstream_families(monitored_factory):
    monitored = await monitored_factory(**LIMITS)
    server = monitored.server
    nc, js = await make_orders(server)
    await api_requests(js, 5, bad=3)
    f = await scrape(monitored)
    assert f["hybridbus_jetstream_api_requests"].type == "counter"
    assert f["hybridbus_jetstream_stream_total_messages"].type == "gauge"
    assert value(f, "hybridbus_jetstream_enabled") == 1
    assert value(f, "hybridbus_jetstream_server_total_streams") == 1 + len(MQTT_STREAMS)
    assert value(f, "hybridbus_jetstream_server_total_consumers") == 2
    assert value(f, "hybridbus_jetstream_server_total_messages") == 3
    assert value(f, "hybridbus_jetstream_server_total_message_bytes") == ORDERS_BYTES
    assert value(f, "hybridbus_jetstream_api_requests_total") == SETUP_REQUESTS + 8
    assert value(f, "hybridbus_jetstream_api_errors_total") == 3
    assert value(f, "hybridbus_jetstream_server_max_memory") == 1 << 28
    assert value(f, "hybridbus_jetstream_server_max_storage") == 1 << 30
    stream = {"stream": "ORDERS"}
    assert value(f, "hybridbus_jetstream_stream_total_messages", **stream) == 3
    assert value(f, "hybridbus_jetstream_stream_total_bytes", **stream) == ORDERS_BYTES
    assert value(f, "hybridbus_jetstream_stream_first_seq", **stream) == 1
    assert value(f, "hybridbus_jetstream_stream_last_seq", **stream) == 3
    assert value(f, "hybridbus_jetstream_stream_consumer_count", **stream) == 2
    assert value(f, "hybridbus_jetstream_stream_total_messages", stream="$MQTT_sess") == 0
    billing = {"stream": "ORDERS", "consumer": "billing"}
    assert value(f, "hybridbus_jetstream_consumer_num_pending", **billing) == 1
    assert value(f, "hybridbus_jetstream_consumer_num_ack_pending", **billing) == 2
    assert value(f, "hybridbus_jetstream_consumer_num_redelivered", **billing) == 1
    assert value(f, "hybridbus_jetstream_consumer_num_waiting", **billing) == 0
    assert value(f, "hybridbus_jetstream_consumer_delivered_stream_seq", **billing) == 2
    assert value(f, "hybridbus_jetstream_consumer_ack_floor_stream_seq", **billing) == 0
    audit = {"stream": "ORDERS", "consumer": "audit"}
    assert value(f, "hybridbus_jetstream_consumer_num_pending", **audit) == 3
    await nc.close()


async def test_overviewz_jetstream_section(monitored):
    server = monitored.server
    nc, js = await make_orders(server)
    await api_requests(js, 2, bad=1)
    ov = (await monitored.json("/overviewz"))["jetstream"]
    assert ov["enabled"] is True
    assert ov["api"] == {
        "level": server.jetstream.api_level,
        "total": SETUP_REQUESTS + 3,
        "errors": 1,
    }
    assert ov["streams_total"] == 1 + len(MQTT_STREAMS)
    rows = {r["name"]: r for r in ov["streams"]}
    assert rows["ORDERS"] == {
        "name": "ORDERS",
        "subjects": ["orders.>"],
        "messages": 3,
        "bytes": ORDERS_BYTES,
        "consumers": 2,
        "internal": False,
    }
    assert all(rows[name]["internal"] for name in MQTT_STREAMS)
    await nc.close()


async def test_monitoring_with_jetstream_disabled(monitored_factory):
    """No engine: /jsz says disabled with nats-server's zero report (2.15.1 without
    -js), /varz has an empty jetstream block, /metrics says 0, and $JS.API requests
    find no responder."""
    m = await monitored_factory(jetstream__enabled=False)
    assert m.server.jetstream is None
    doc = await m.json("/jsz?accounts=true&streams=true")
    check(doc, JSZ)
    assert doc["disabled"] is True
    assert doc["config"] == {"max_memory": 0, "max_storage": 0}
    assert (doc["streams"], doc["consumers"], doc["messages"], doc["bytes"]) == (0, 0, 0, 0)
    assert (doc["accounts"], doc["total"]) == (0, 0)
    assert doc["api"] == {"level": 0, "total": 0, "errors": 0}
    assert "account_details" not in doc
    assert (await m.json("/varz"))["jetstream"] == {}
    f = await scrape(m)
    assert value(f, "hybridbus_jetstream_enabled") == 0
    assert value(f, "hybridbus_jetstream_server_total_streams") == 0
    assert value(f, "hybridbus_jetstream_api_requests_total") == 0
    assert (await m.json("/overviewz"))["jetstream"]["enabled"] is False
    nc = await nats.connect(f"nats://127.0.0.1:{m.server.nats_port}")
    # nats-py turns "no responders" into ServiceUnavailableError
    with pytest.raises(ServiceUnavailableError):
        await asyncio.wait_for(nc.jetstream(timeout=0.5).account_info(), 2)
    await nc.close()


async def test_jsz_mirror_and_sources_blocks(monitored):
    """A mirror's stream detail has nats-server's ``mirror`` block, a sourcing
    stream's a ``sources`` list (StreamSourceInfo: name, lag, active, filter)."""
    server = monitored.server
    nc, js = await make_orders(server)
    engine = server.jetstream
    await js.add_stream(name="BACKUP", mirror=StreamSource(name="ORDERS"))
    await js.add_stream(
        name="FIRST",
        subjects=["first.>"],
        sources=[StreamSource(name="ORDERS", filter_subject="orders.1")],
    )

    def copied() -> bool:
        backup, first = engine.store.stream("BACKUP"), engine.store.stream("FIRST")
        return backup.state().messages == 3 and first.state().messages == 1

    await eventually(copied, timeout=3)
    doc = await monitored.json("/jsz?streams=true&config=true")
    check(doc, JSZ)
    details = {s["name"]: s for s in doc["account_details"][0]["stream_detail"]}
    backup, first = details["BACKUP"], details["FIRST"]
    assert backup["config"]["mirror"] == {"name": "ORDERS"}
    assert backup["mirror"]["name"] == "ORDERS" and backup["mirror"]["lag"] == 0
    assert backup["mirror"]["active"] >= 0 and "sources" not in backup
    (source,) = first["sources"]
    assert (source["name"], source["lag"], source["filter_subject"]) == ("ORDERS", 0, "orders.1")
    assert "mirror" not in first and "mirror" not in details["ORDERS"]
    assert (backup["state"]["messages"], first["state"]["messages"]) == (3, 1)
    assert doc["messages"] == 3 + 3 + 1
    await nc.close()


async def test_jsz_and_metrics_show_live_consumer_state(monitored):
    """What only the engine knows: a pull request waiting for messages (num_waiting)
    and a push consumer whose deliver subject has a subscriber (push_bound)."""
    server = monitored.server
    nc, js = await make_orders(server)
    await js.add_consumer("ORDERS", ConsumerConfig(durable_name="idle", filter_subject="orders.9"))
    await js.add_consumer(
        "ORDERS", ConsumerConfig(durable_name="pusher", deliver_subject="deliver.orders")
    )
    got: asyncio.Queue = asyncio.Queue()
    await nc.subscribe("deliver.orders", cb=got.put)
    inbox = nc.new_inbox()
    await nc.subscribe(inbox)
    # a pull request for a message that is not there: it waits (expires in 5 s)
    await nc.publish(
        "$JS.API.CONSUMER.MSG.NEXT.ORDERS.idle", b'{"batch":1,"expires":5000000000}', reply=inbox
    )
    for _ in range(3):
        await asyncio.wait_for(got.get(), 2)  # the push consumer delivered all three

    async def waiting() -> bool:
        doc = await monitored.json("/jsz?consumers=true")
        orders = next(
            s for s in doc["account_details"][0]["stream_detail"] if s["name"] == "ORDERS"
        )
        return {c["name"]: c for c in orders["consumer_detail"]}["idle"]["num_waiting"] == 1

    await eventually(waiting, timeout=3)
    doc = await monitored.json("/jsz?consumers=true")
    check(doc, JSZ)
    orders = next(s for s in doc["account_details"][0]["stream_detail"] if s["name"] == "ORDERS")
    consumers = {c["name"]: c for c in orders["consumer_detail"]}
    assert consumers["pusher"]["push_bound"] is True
    assert consumers["pusher"]["delivered"]["stream_seq"] == 3
    assert consumers["pusher"]["num_ack_pending"] == 3
    assert "push_bound" not in consumers["idle"] and "push_bound" not in consumers["billing"]
    assert consumers["idle"]["num_pending"] == 0
    f = await scrape(monitored)
    idle = {"stream": "ORDERS", "consumer": "idle"}
    assert value(f, "hybridbus_jetstream_consumer_num_waiting", **idle) == 1
    pusher = {"stream": "ORDERS", "consumer": "pusher"}
    assert value(f, "hybridbus_jetstream_consumer_num_ack_pending", **pusher) == 3
    assert value(f, "hybridbus_jetstream_server_total_consumers") == 4
    await nc.close()
