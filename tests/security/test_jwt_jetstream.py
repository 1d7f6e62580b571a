"""Operator mode: an account JWT's JetStream limits give the account its own JetStream
(nats-server: enabled when mem_storage or disk_storage is not 0; streams and consumer
limits, 0 being none; max_ack_pending, the per-stream byte caps and max_bytes_required
with nats-server's errors), its mappings apply, and a claims update changes both at once.
What is not enforced (tiers other than R1) and mappings that cannot be honoured make the
JWT unusable."""

from __future__ import annotations

import json

import pytest

from tests.helpers import jwts as T
from tests.helpers import mqtt_packets as mp
from tests.helpers.wire import Wire

from .operator_env import Op, connect, start

NOT_ENABLED = {"code": 503, "err_code": 10039, "description": "JetStream not enabled for account"}
A_JS = {"mem_storage": 1 << 20, "disk_storage": 10 << 20, "streams": 2, "consumer": 1}


@pytest.fixture
async def env(tmp_path):
    op = Op(tmp_path)
    op.set_account("A", limits=dict(A_JS))
    op.set_account("B", mappings={"orders.new": [{"subject": "orders.v2.new"}]})
    server = await start(op)
    yield op, server
    await server.shutdown()


async def request(nc, subject: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else b""
    msg = await nc.request(subject, data, timeout=2)
    return json.loads(msg.data)


async def push(op: Op, server, name: str) -> dict:
    """The account's JWT sent as `nsc push` sends it, by a system account user."""
    sys_client = await connect(server, op.creds("SYS"))
    try:
        subject = f"$SYS.REQ.ACCOUNT.{op.key(name)}.CLAIMS.UPDATE"
        msg = await sys_client.request(subject, op.account_jwts[name].encode(), timeout=2)
        return json.loads(msg.data)
    finally:
        await sys_client.close()


def stream(name: str, **cfg) -> dict:
    return {"name": name, "subjects": [name.lower()], "storage": "memory", **cfg}


async def test_jwt_limits_give_the_account_its_own_jetstream(env):
    op, server = env
    a = await connect(server, op.creds("A"))
    info = await request(a, "$JS.API.INFO")
    assert info["limits"] == {
        "max_memory": 1 << 20,
        "max_storage": 10 << 20,
        "max_streams": 2,
        "max_consumers": 1,
        "max_ack_pending": -1,
        "memory_max_stream_bytes": -1,
        "storage_max_stream_bytes": -1,
        "max_bytes_required": False,
    }
    big = stream("BIG", max_bytes=2_000_000)  # past mem_storage
    assert (await request(a, "$JS.API.STREAM.CREATE.BIG", big))["error"]["err_code"] == 10028
    for name in ("S0", "S1"):
        assert "error" not in await request(a, f"$JS.API.STREAM.CREATE.{name}", stream(name))
    err = (await request(a, "$JS.API.STREAM.CREATE.S2", stream("S2")))["error"]
    assert err["err_code"] == 10027
    consumer = {"stream_name": "S0", "config": {"durable_name": "D0", "ack_policy": "explicit"}}
    assert "error" not in await request(a, "$JS.API.CONSUMER.CREATE.S0.D0", consumer)
    consumer = {"stream_name": "S1", "config": {"durable_name": "D1", "ack_policy": "explicit"}}
    err = (await request(a, "$JS.API.CONSUMER.CREATE.S1.D1", consumer))["error"]
    assert err["err_code"] == 10026
    # the stream captures A's publishes only; B (no JetStream limits) gets 10039
    b = await connect(server, op.creds("B"))
    await b.publish("s0", b"from B")
    await a.publish("s0", b"from A")
    await a.flush()
    assert (await request(a, "$JS.API.STREAM.INFO.S0"))["state"]["messages"] == 1
    assert (await request(b, "$JS.API.INFO"))["error"] == NOT_ENABLED
    assert server.accounts[op.key("A")].jetstream is not None
    for nc in (a, b):
        await nc.close()


async def test_claims_update_enables_changes_and_disables_jetstream(env):
    op, server = env
    a, b = await connect(server, op.creds("A")), await connect(server, op.creds("B"))
    for name in ("S0", "S1"):
        assert "error" not in await request(a, f"$JS.API.STREAM.CREATE.{name}", stream(name))
    # A gets room for a third stream, at once
    op.set_account("A", limits=dict(A_JS, streams=3))
    assert (await push(op, server, "A"))["data"]["code"] == 200
    assert "error" not in await request(a, "$JS.API.STREAM.CREATE.S2", stream("S2"))
    assert (await request(a, "$JS.API.INFO"))["limits"]["max_streams"] == 3
    # B is given JetStream (unlimited storage, 0 streams = no limit): it answers now
    op.set_account("B", limits={"mem_storage": -1, "disk_storage": -1})
    assert (await push(op, server, "B"))["data"]["code"] == 200
    info = await request(b, "$JS.API.INFO")
    assert (info["limits"]["max_streams"], info["limits"]["max_consumers"]) == (-1, -1)
    assert "error" not in await request(b, "$JS.API.STREAM.CREATE.S0", stream("S0"))
    assert (await request(b, "$JS.API.STREAM.NAMES"))["streams"] == ["S0"]
    # A's JetStream is taken away: 10039, its streams stay in its store...
    op.set_account("A", limits={"conn": -1})
    assert (await push(op, server, "A"))["data"]["code"] == 200
    assert (await request(a, "$JS.API.INFO"))["error"] == NOT_ENABLED
    # ...and are back when it is given again
    op.set_account("A", limits=dict(A_JS, streams=3))
    assert (await push(op, server, "A"))["data"]["code"] == 200
    names = (await request(a, "$JS.API.STREAM.NAMES"))["streams"]
    assert sorted(names) == ["S0", "S1", "S2"]
    for nc in (a, b):
        await nc.close()


async def test_tiered_r1_limits_are_the_accounts_limits(tmp_path):
    op = Op(tmp_path)
    op.set_account("A", limits={"tiered_limits": {"R1": {"mem_storage": -1, "streams": 1}}})
    server = await start(op)
    try:
        a = await connect(server, op.creds("A"))
        assert (await request(a, "$JS.API.INFO"))["limits"]["max_streams"] == 1
        assert "error" not in await request(a, "$JS.API.STREAM.CREATE.S0", stream("S0"))
        err = (await request(a, "$JS.API.STREAM.CREATE.S1", stream("S1")))["error"]
        assert err["err_code"] == 10027
        await a.close()
    finally:
        await server.shutdown()


async def test_jwt_mappings_apply_to_nats_and_mqtt(env):
    op, server = env
    b = await connect(server, op.creds("B"))
    mapped, original = await b.subscribe("orders.v2.new"), await b.subscribe("orders.new")
    await b.publish("orders.new", b"nats")
    _, bearer = op.user("B", bearer_token=True)
    wire = await Wire.open(server.mqtt_port)
    await wire.send(mp.connect("dev", username="dev", password=bearer.encode()))
    await wire.expect(mp.connack(0, 0))
    await wire.send(mp.publish("orders/new", b"mqtt", qos=1, mid=1))
    await wire.expect(mp.puback(1))
    got = [await mapped.next_msg(timeout=2) for _ in range(2)]
    assert [(m.subject, m.data) for m in got] == [
        ("orders.v2.new", b"nats"),
        ("orders.v2.new", b"mqtt"),
    ]
    # A has no mappings: its orders.new stays orders.new
    a = await connect(server, op.creds("A"))
    plain = await a.subscribe("orders.new")
    await a.publish("orders.new", b"a")
    assert (await plain.next_msg(timeout=2)).subject == "orders.new"
    # an update replaces B's mappings at once
    op.set_account("B", mappings={"orders.new": [{"subject": "orders.v3.new"}]})
    assert (await push(op, server, "B"))["data"]["code"] == 200
    v3 = await b.subscribe("orders.v3.new")
    await b.publish("orders.new", b"again")
    assert (await v3.next_msg(timeout=2)).data == b"again"
    with pytest.raises(TimeoutError):
        await original.next_msg(timeout=0.2)
    await wire.close()
    for nc in (a, b):
        await nc.close()


@pytest.mark.parametrize(
    "nats, why",
    [
        ({"limits": {"tiered_limits": {"R3": {"mem_storage": -1}}}}, "tiered"),
        ({"mappings": {"a.*": [{"subject": "b.$2"}]}}, "mapping"),
        (
            {"mappings": {"a": [{"subject": "b", "weight": 60}, {"subject": "c", "weight": 60}]}},
            "mapping",
        ),
    ],
)
async def test_what_is_not_enforced_is_refused(env, nats, why):
    """Fail closed: such a claims update is refused (the JWT in force stays)."""
    op, server = env
    op.account_jwts["A"] = T.account_jwt(op.accounts["A"], op.signer, **nats)
    answer = await push(op, server, "A")
    assert answer["error"]["code"] == 500 and why in answer["error"]["description"], answer
    a = await connect(server, op.creds("A"))  # the JWT in force still works
    assert (await request(a, "$JS.API.INFO"))["limits"]["max_streams"] == 2
    await a.close()


async def test_an_account_whose_jwt_is_refused_logs_nobody_in(tmp_path):
    op = Op(tmp_path)
    op.set_account("A", limits={"tiered_limits": {"R3": {"mem_storage": -1}}})
    server = await start(op)
    try:
        assert op.key("A") not in server.accounts
        with pytest.raises(Exception, match="[Aa]uthorization"):
            await connect(server, op.creds("A"))
        b = await connect(server, op.creds("B"))  # the other accounts serve
        await b.flush(1)
        await b.close()
    finally:
        await server.shutdown()


async def test_jwt_stream_and_consumer_limits_are_enforced(env):
    """A claims update with max_ack_pending, mem/disk_max_stream_bytes and
    max_bytes_required applies at once, with nats-server 2.15.1's errors."""
    op, server = env
    limits = dict(
        A_JS,
        max_ack_pending=10,
        mem_max_stream_bytes=1024,
        disk_max_stream_bytes=2048,
        max_bytes_required=True,
    )
    op.account_jwts["A"] = T.account_jwt(op.accounts["A"], op.signer, limits=limits)
    assert "error" not in await push(op, server, "A")
    a = await connect(server, op.creds("A"))
    info = await request(a, "$JS.API.INFO")
    assert info["limits"] == {
        "max_memory": 1 << 20,
        "max_storage": 10 << 20,
        "max_streams": 2,
        "max_consumers": 1,
        "max_ack_pending": 10,
        "memory_max_stream_bytes": 1024,
        "storage_max_stream_bytes": 2048,
        "max_bytes_required": True,
    }
    err = (await request(a, "$JS.API.STREAM.CREATE.S", stream("S")))["error"]
    assert (err["err_code"], err["description"]) == (
        10113,
        "account requires a stream config to have max bytes set",
    )
    err = (await request(a, "$JS.API.STREAM.CREATE.S", stream("S", max_bytes=1025)))["error"]
    assert (err["err_code"], err["description"]) == (
        10122,
        "stream max bytes exceeds account limit max stream bytes",
    )
    assert "error" not in await request(a, "$JS.API.STREAM.CREATE.S", stream("S", max_bytes=1024))
    body = {"stream_name": "S", "config": {"durable_name": "D", "ack_policy": "explicit"}}
    err = await request(a, "$JS.API.CONSUMER.CREATE.S.D", body)
    assert err["config"]["max_ack_pending"] == 10  # the account's, not the default 1000
    body["config"]["max_ack_pending"] = 11
    err = (await request(a, "$JS.API.CONSUMER.CREATE.S.D", body))["error"]
    assert (err["err_code"], err["description"]) == (
        10121,
        "consumer max ack pending exceeds system limit of 10",
    )
    await a.close()
