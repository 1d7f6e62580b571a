"""/connz (nats-conventions §1.4): NATS and MQTT rows, subscriptions, every sort key
with nats-server's direction, paging, cid, state=closed with reasons, filters."""

from __future__ import annotations

import pytest

from hybridbus.store.api import parse_rfc3339
from tests.helpers import mqtt_packets as mp
from tests.helpers.wire import Wire, mqtt_connect, nats_connect
from tests.monitor.conftest import eventually
from tests.monitor.gocheck import CONNZ, check


def _rows(doc) -> list[dict]:
    return doc["connections"]


def _cids(doc) -> list[int]:
    return [c["cid"] for c in doc["connections"]]


async def test_connz_nats_and_mqtt_rows(probes):
    r = await probes.get("/connz")
    assert r.headers["content-type"] == "application/json"
    doc = r.json()
    check(doc, CONNZ)
    assert doc["server_id"] == probes.server.server_id
    assert (doc["num_connections"], doc["total"], doc["offset"], doc["limit"]) == (2, 2, 0, 1024)
    nats_row, mqtt_row = _rows(doc)
    assert nats_row["cid"] < mqtt_row["cid"]
    assert nats_row["kind"] == mqtt_row["kind"] == "Client"
    assert nats_row["type"] == "nats" and mqtt_row["type"] == "mqtt"
    assert nats_row["name"] == "hb-nats-probe"
    assert nats_row["lang"] == "python3" and nats_row["version"]
    assert nats_row["ip"] == mqtt_row["ip"] == "127.0.0.1"
    assert (nats_row["in_msgs"], nats_row["out_msgs"], nats_row["subscriptions"]) == (5, 10, 3)
    assert nats_row["in_bytes"] == 30
    assert "mqtt_client" not in nats_row
    assert mqtt_row["mqtt_client"] == "hb-mqtt-probe"
    assert mqtt_row["rtt"] == "0s"
    assert (mqtt_row["in_msgs"], mqtt_row["out_msgs"], mqtt_row["subscriptions"]) == (2, 1, 3)
    for absent in ("name", "lang", "version", "stop", "reason", "subscriptions_list"):
        assert absent not in mqtt_row
    # the field order follows nats-server's ConnInfo struct
    assert list(mqtt_row)[:6] == ["cid", "kind", "type", "ip", "port", "start"]


async def test_connz_subscription_lists(probes):
    doc = await probes.json("/connz?subs=1")
    check(doc, CONNZ)
    nats_row, mqtt_row = _rows(doc)
    assert sorted(nats_row["subscriptions_list"]) == ["greet", "orders.>", "orders.new"]
    # MQTT rows list the router subjects: `#` also covers the parent level
    assert sorted(mqtt_row["subscriptions_list"]) == ["alerts.*.high", "sensors", "sensors.>"]

    r = await probes.get("/connz?subs=DETAIL&auth=true")
    assert '"subject": "orders.\\u003e"' in r.text  # Go's HTML-safe escaping
    doc = r.json()
    check(doc, CONNZ)
    nats_row, mqtt_row = _rows(doc)
    assert "subscriptions_list" not in nats_row
    detail = {d["subject"]: d for d in nats_row["subscriptions_list_detail"]}
    assert detail["orders.new"]["qgroup"] == "workers"
    assert detail["orders.>"]["msgs"] == 5 and detail["orders.new"]["msgs"] == 5
    assert detail["greet"]["msgs"] == 0 and "qgroup" not in detail["greet"]
    assert {d["cid"] for d in detail.values()} == {nats_row["cid"]}
    mdetail = {d["subject"]: d for d in mqtt_row["subscriptions_list_detail"]}
    assert mdetail["sensors"]["sid"] == "sensors fwc"
    assert mdetail["sensors.>"]["sid"] == "sensors.>"
    assert mdetail["alerts.*.high"]["sid"] == "alerts.*.high"
    assert {d["cid"] for d in mdetail.values()} == {mqtt_row["cid"]}
    # auth=true: name_tag for the global account, `account` omitted for $G
    assert nats_row["name_tag"] == mqtt_row["name_tag"] == "$G"
    assert "account" not in nats_row


async def test_connz_filters_and_accounts(probes):
    doc = await probes.json("/connz?mqtt_client=hb-mqtt-probe")
    # total is counted before the user / mqtt_client filters (as observed on 2.15.1)
    assert (doc["num_connections"], doc["total"]) == (1, 2)
    assert _rows(doc)[0]["mqtt_client"] == "hb-mqtt-probe"
    doc = await probes.json("/connz?user=nobody")
    assert (doc["num_connections"], doc["total"], doc["connections"]) == (0, 2, [])
    assert (await probes.json("/connz?acc=$G"))["num_connections"] == 2
    sys = await probes.json("/connz?acc=$SYS")
    assert (sys["num_connections"], sys["total"], sys["connections"]) == (0, 0, [])
    r = await probes.get("/connz?acc=nope")
    assert r.status == 200
    # nats-server's quirk: an unknown account gives an empty Connz struct
    assert r.json() == {
        "server_id": "",
        "now": "0001-01-01T00:00:00Z",
        "num_connections": 0,
        "total": 0,
        "offset": 0,
        "limit": 0,
        "connections": None,
    }


@pytest.fixture
async def busy(monitored):
    """Four raw NATS connections with different traffic:
    a publishes 1 msg, b publishes 3 (bigger), c has 3 subs and receives all 4,
    d has 1 sub and was active last."""
    port = monitored.server.nats_port
    a, b, c, d = [await nats_connect(port) for _ in range(4)]
    await c.send(b"SUB x 1\r\nSUB y 2\r\nSUB z 3\r\nPING\r\n")
    await c.expect(b"PONG\r\n")
    await a.send(b"PUB x 2\r\nhi\r\nPING\r\n")
    await a.expect(b"PONG\r\n")
    await b.send(b"PUB y 10\r\n0123456789\r\n" * 3 + b"PING\r\n")
    await b.expect(b"PONG\r\n")
    await c.expect_re(rb"(MSG [^\r]*\r\n[^\r]*\r\n){4}")
    await d.send(b"SUB q 1\r\nPING\r\n")
    await d.expect(b"PONG\r\n")
    cids = sorted(monitored.server.clients)
    monitored.extra.update(wires=[a, b, c, d], cids=dict(zip("abcd", cids, strict=True)))
    yield monitored
    for w in (a, b, c, d):
        await w.close()


@pytest.mark.parametrize(
    "sort, field, descending",
    [
        ("subs", "subscriptions", True),
        ("pending", "pending_bytes", True),
        ("msgs_to", "out_msgs", True),
        ("msgs_from", "in_msgs", True),
        ("bytes_to", "out_bytes", True),
        ("bytes_from", "in_bytes", True),
    ],
)
async def test_connz_sort_counters(busy, sort, field, descending):
    doc = await busy.json(f"/connz?sort={sort}")
    check(doc, CONNZ)
    values = [c[field] for c in _rows(doc)]
    assert values == sorted(values, reverse=descending)
    assert len(values) == 4


async def test_connz_sort_who_comes_first(busy):
    cid = busy.extra["cids"]
    first = {}
    for sort in ("cid", "start", "subs", "msgs_to", "msgs_from", "bytes_to", "bytes_from", "last"):
        first[sort] = _cids(await busy.json(f"/connz?sort={sort}"))[0]
    assert first["cid"] == first["start"] == cid["a"]
    assert first["subs"] == cid["c"]
    assert first["msgs_to"] == first["bytes_to"] == cid["c"]
    assert first["msgs_from"] == first["bytes_from"] == cid["b"]
    assert first["last"] == cid["d"]  # newest activity first
    # uptime sorts ascending: the youngest connection first
    assert _cids(await busy.json("/connz?sort=uptime")) == sorted(cid.values(), reverse=True)
    assert _cids(await busy.json("/connz")) == sorted(cid.values())


async def test_connz_sort_by_activity_times(busy):
    last = [parse_rfc3339(c["last_activity"]) for c in _rows(await busy.json("/connz?sort=last"))]
    assert last == sorted(last, reverse=True)
    idle = [parse_rfc3339(c["last_activity"]) for c in _rows(await busy.json("/connz?sort=idle"))]
    assert idle == sorted(idle)  # most idle (oldest activity) first
    doc = await busy.json("/connz?sort=rtt")
    assert len(_rows(doc)) == 4 and all(c["rtt"] == "0s" for c in _rows(doc))


async def test_connz_paging(busy):
    cids = sorted(busy.extra["cids"].values())
    doc = await busy.json("/connz?limit=2")
    assert (_cids(doc), doc["num_connections"], doc["total"], doc["limit"]) == (cids[:2], 2, 4, 2)
    doc = await busy.json("/connz?offset=1&limit=2")
    assert (_cids(doc), doc["offset"]) == (cids[1:3], 1)
    doc = await busy.json("/connz?offset=-5&limit=-1")
    assert (doc["offset"], doc["limit"], _cids(doc)) == (0, 1024, cids)
    doc = await busy.json("/connz?limit=0&sort=msgs_from&offset=1")
    assert doc["limit"] == 1024 and len(_cids(doc)) == 3
    doc = await busy.json("/connz?offset=10")
    assert (doc["connections"], doc["num_connections"], doc["total"], doc["offset"]) == (
        [],
        0,
        4,
        10,
    )


async def test_connz_cid_forces_limit_one(busy):
    cid = busy.extra["cids"]
    doc = await busy.json(f"/connz?cid={cid['c']}&limit=50")
    assert (_cids(doc), doc["limit"], doc["num_connections"]) == ([cid["c"]], 1, 1)
    assert (await busy.json("/connz?cid=99999"))["connections"] == []


async def test_connz_closed_connections_and_reasons(monitored_factory):
    m = await monitored_factory(max_payload=64)
    server = m.server
    keep = await nats_connect(server.nats_port)
    polite = await nats_connect(server.nats_port, b'{"verbose":false,"name":"polite"}')
    await polite.close()
    rude = await nats_connect(server.nats_port)
    await rude.send(b"FOO\r\n")
    await rude.expect_closed()
    big = await nats_connect(server.nats_port)
    await big.send(b"PUB x 100\r\n" + b"x" * 100 + b"\r\n")
    await big.expect_closed()
    first = await mqtt_connect(server.mqtt_port, "dup-id")
    second = await mqtt_connect(server.mqtt_port, "dup-id")
    await first.expect_closed()
    await eventually(lambda: len(server.closed) == 4)

    doc = await m.json("/connz?state=closed")
    check(doc, CONNZ)
    assert (doc["num_connections"], doc["total"]) == (4, 4)
    by_reason = {c["reason"]: c for c in _rows(doc)}
    assert set(by_reason) == {
        "Client Closed",
        "Protocol Violation",
        "Maximum Message Payload Exceeded",
        "Duplicate Client ID",
    }
    assert by_reason["Client Closed"]["name"] == "polite"
    assert by_reason["Duplicate Client ID"]["type"] == "mqtt"
    assert by_reason["Duplicate Client ID"]["mqtt_client"] == "dup-id"
    for row in _rows(doc):
        assert parse_rfc3339(row["stop"]) >= parse_rfc3339(row["start"])
        assert row["pending_bytes"] == 0
    assert _cids(doc) == sorted(_cids(doc))

    stops = [parse_rfc3339(c["stop"]) for c in _rows(await m.json("/connz?state=closed&sort=stop"))]
    assert stops == sorted(stops, reverse=True)
    reasons = [c["reason"] for c in _rows(await m.json("/connz?state=CLOSED&sort=reason"))]
    assert reasons == sorted(reasons)

    every = await m.json("/connz?state=all")
    assert (every["total"], every["num_connections"]) == (6, 6)  # keep + second are open
    assert sum("stop" in c for c in _rows(every)) == 4
    assert (await m.json("/connz?state=any"))["total"] == 6
    assert (await m.json("/connz"))["total"] == 2

    closed_cid = by_reason["Protocol Violation"]["cid"]
    assert _cids(await m.json(f"/connz?cid={closed_cid}")) == []
    found = await m.json(f"/connz?cid={closed_cid}&state=all")
    assert _rows(found)[0]["reason"] == "Protocol Violation"
    doc = await m.json("/connz?state=closed&mqtt_client=dup-id")
    assert (doc["num_connections"], doc["total"]) == (1, 4)
    for w in (keep, second):
        await w.close()


async def test_connz_mqtt_row_before_connect_and_after_takeover(monitored):
    port = monitored.server.mqtt_port
    raw = await Wire.open(port)  # TCP only, no CONNECT yet
    await eventually(lambda: len(monitored.server.clients) == 1)
    row = _rows(await monitored.json("/connz?subs=1"))[0]
    assert row["type"] == "mqtt" and row["subscriptions"] == 0
    assert "mqtt_client" not in row and "subscriptions_list" not in row
    await raw.send(mp.connect("late", clean=True))
    await raw.expect(mp.connack(0, 0))
    row = _rows(await monitored.json("/connz"))[0]
    assert row["mqtt_client"] == "late"
    await raw.close()


async def test_connz_users_and_auth_failures(monitored_factory):
    from hybridbus.options import User

    m = await monitored_factory(auth__users=[User("alice", "pw-a"), User("bob", "pw-b")])
    port = m.server.nats_port
    alice = await nats_connect(port, b'{"verbose":false,"user":"alice","pass":"pw-a"}')
    bob = await nats_connect(port, b'{"verbose":false,"user":"bob","pass":"pw-b"}')
    bad = await Wire.open(port)
    await bad.expect_re(rb"INFO \{.*?\} \r\n")
    await bad.send(b'CONNECT {"verbose":false,"user":"bob","pass":"nope"}\r\nPING\r\n')
    await bad.expect_closed()
    await eventually(lambda: len(m.server.closed) == 1)

    doc = await m.json("/connz?auth=1")
    assert sorted(c["authorized_user"] for c in _rows(doc)) == ["alice", "bob"]
    # `user` filters even without `auth`, and `total` is counted before it
    doc = await m.json("/connz?user=alice")
    assert (doc["num_connections"], doc["total"]) == (1, 2)
    assert "authorized_user" not in _rows(doc)[0]
    closed = _rows(await m.json("/connz?state=closed"))
    assert [c["reason"] for c in closed] == ["Authentication Failure"]
    text = (await m.get("/metrics")).text
    assert "hybridbus_auth_failures_total 1.0" in text
    v = await m.json("/varz")
    assert v["auth_required"] is True
    for w in (alice, bob):
        await w.close()
