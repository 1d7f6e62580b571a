"""JetStream per account: an account block's ``jetstream`` gives it its own engine and
store (server/account_state.py), as nats-server gives each account its own JetStream.

Streams, KV buckets and consumers of one account are invisible to another (same names
in both), captures only see their own account's publishes (NATS and MQTT), the
account's limits answer with nats-server's errors, an account without JetStream gets
nats-server's 503 10039, and each account's streams come back after a restart."""

from __future__ import annotations

import json

import nats
import pytest
from nats.js.api import AccountLimits
from nats.js.errors import BadRequestError, NotFoundError

from tests.helpers import mqtt_packets as mp
from tests.helpers.wire import Wire

from .accounts_env import login, start

USERS = """
authorization { users: [{user: g, password: g}] }
accounts {
  A: { jetstream: enabled, users: [{user: a, password: a}, {user: ma, password: ma}] }
  B: { jetstream: true, users: [{user: b, password: b}] }
  L: {
    jetstream { max_mem: 1MB, max_file: 10MB, max_streams: 2, max_consumers: 1 }
    users: [{user: l, password: l}]
  }
  N: { users: [{user: n, password: n}] }
}
"""


@pytest.fixture
async def server(tmp_path):
    server = await start(tmp_path, USERS)
    yield server
    await server.shutdown()


async def test_a_stream_captures_its_own_account_only(server):
    a, b, g = [await login(server, u) for u in ("a", "b", "g")]
    ja, jb, jg = a.jetstream(), b.jetstream(), g.jetstream()
    await ja.add_stream(name="ORDERS", subjects=["orders.>"])
    await jb.add_stream(name="ORDERS", subjects=["orders.>"])  # the same name: its own
    acks_a = [await ja.publish("orders.x", b"a%d" % i) for i in range(2)]
    ack_b = await jb.publish("orders.x", b"b0")
    await g.publish("orders.x", b"g0")  # $G: no stream of A's or B's sees it
    assert [x.seq for x in acks_a] == [1, 2] and ack_b.seq == 1
    assert (await ja.stream_info("ORDERS")).state.messages == 2
    assert (await jb.stream_info("ORDERS")).state.messages == 1
    assert (await jb.get_msg("ORDERS", 1)).data == b"b0"
    with pytest.raises(NotFoundError):
        await jg.stream_info("ORDERS")
    assert await ja.streams_info() and [s.config.name for s in await jb.streams_info()] == [
        "ORDERS"
    ]
    store_a = server.accounts["A"].store
    assert store_a is not server.store and store_a is not server.accounts["B"].store
    for nc in (a, b, g):
        await nc.close()


async def test_kv_buckets_are_per_account(server):
    a, b = await login(server, "a"), await login(server, "b")
    kva = await a.jetstream().create_key_value(bucket="cfg")
    kvb = await b.jetstream().create_key_value(bucket="cfg")
    await kva.put("mode", b"of-a")
    await kvb.put("mode", b"of-b")
    assert (await kva.get("mode")).value == b"of-a"
    assert (await kvb.get("mode")).value == b"of-b"
    g = await login(server, "g")
    with pytest.raises(NotFoundError):
        await g.jetstream().key_value("cfg")
    for nc in (a, b, g):
        await nc.close()


async def test_mqtt_publish_is_captured_in_its_account(server):
    a, b = await login(server, "a"), await login(server, "b")
    ja, jb = a.jetstream(), b.jetstream()
    await ja.add_stream(name="TELE", subjects=["tele.>"])
    await jb.add_stream(name="TELE", subjects=["tele.>"])
    wire = await Wire.open(server.mqtt_port)
    await wire.send(mp.connect("dev", username="ma", password=b"ma"))
    await wire.expect(mp.connack(0, 0))
    await wire.send(mp.publish("tele/t1", b"21.5", qos=1, mid=1))
    await wire.expect(mp.puback(1))  # after A's stream has it
    assert (await ja.stream_info("TELE")).state.messages == 1
    assert (await jb.stream_info("TELE")).state.messages == 0
    assert (await ja.get_msg("TELE", 1)).subject == "tele.t1"
    await wire.close()
    for nc in (a, b):
        await nc.close()


async def request(nc: nats.NATS, subject: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else b""
    msg = await nc.request(subject, data, timeout=2)
    return json.loads(msg.data)


async def test_account_limits_with_nats_server_errors(server):
    nc = await login(server, "l")
    info = await request(nc, "$JS.API.INFO")
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
    big = {"name": "BIG", "subjects": ["big"], "storage": "memory", "max_bytes": 2_000_000}
    err = (await request(nc, "$JS.API.STREAM.CREATE.BIG", big))["error"]
    assert err == {
        "code": 500,
        "err_code": 10028,
        "description": "insufficient memory resources available",
    }
    bigf = {"name": "BIGF", "subjects": ["bigf"], "storage": "file", "max_bytes": 20_000_000}
    err = (await request(nc, "$JS.API.STREAM.CREATE.BIGF", bigf))["error"]
    assert err["err_code"] == 10047
    for i in range(2):
        cfg = {"name": f"S{i}", "subjects": [f"s{i}"], "storage": "memory"}
        assert "error" not in await request(nc, f"$JS.API.STREAM.CREATE.S{i}", cfg)
    cfg = {"name": "S2", "subjects": ["s2"], "storage": "memory"}
    err = (await request(nc, "$JS.API.STREAM.CREATE.S2", cfg))["error"]
    assert err == {
        "code": 400,
        "err_code": 10027,
        "description": "maximum number of streams reached",
    }
    # an existing stream's create is no new stream
    same = {"name": "S0", "subjects": ["s0"], "storage": "memory"}
    assert "error" not in await request(nc, "$JS.API.STREAM.CREATE.S0", same)
    consumer = {"stream_name": "S0", "config": {"durable_name": "D0", "ack_policy": "explicit"}}
    assert "error" not in await request(nc, "$JS.API.CONSUMER.CREATE.S0.D0", consumer)
    consumer["config"]["durable_name"] = "D1"
    err = await request(nc, "$JS.API.CONSUMER.CREATE.S1.D1", consumer | {"stream_name": "S1"})
    assert err["error"] == {
        "code": 400,
        "err_code": 10026,
        "description": "maximum consumers limit reached",
    }
    info = await request(nc, "$JS.API.INFO")
    assert (info["streams"], info["consumers"]) == (2, 1)
    await nc.close()


async def test_an_account_without_jetstream_gets_10039(server):
    nc = await login(server, "n")
    not_enabled = {
        "code": 503,
        "err_code": 10039,
        "description": "JetStream not enabled for account",
    }
    info = await request(nc, "$JS.API.INFO")
    assert info == {"type": "io.nats.jetstream.api.v1.account_info_response", "error": not_enabled}
    names = await request(nc, "$JS.API.STREAM.NAMES")
    assert names == {
        "type": "io.nats.jetstream.api.v1.stream_names_response",
        "error": not_enabled,
        "total": 0,
        "offset": 0,
        "limit": 0,
        "streams": None,
    }
    create = await request(nc, "$JS.API.STREAM.CREATE.X", {"name": "X", "subjects": ["x"]})
    assert create["error"] == not_enabled
    with pytest.raises(nats.errors.TimeoutError):  # no API subject: no answer (nats-server)
        await nc.request("$JS.API.NOT.A.THING", b"", timeout=0.3)
    assert server.accounts["N"].jetstream is None and server.accounts["N"].store is None
    await nc.close()


async def test_each_accounts_streams_survive_a_restart(server_process, tmp_path):
    conf = tmp_path / "accounts.conf"
    conf.write_text(USERS)
    proc = server_process(config=str(conf)).start()
    url = f"nats://127.0.0.1:{proc.ports['nats']}"

    async def connect(user: str) -> nats.NATS:
        return await nats.connect(url, user=user, password=user, allow_reconnect=False)

    for user, count in (("a", 3), ("b", 1)):
        nc = await connect(user)
        js = nc.jetstream()
        await js.add_stream(name="KEEP", subjects=["keep.>"])
        for i in range(count):
            await js.publish("keep.x", b"%s%d" % (user.encode(), i))
        await nc.close()
    assert proc.stop() == 0
    assert (tmp_path / "store" / "accounts" / "A" / "streams" / "KEEP").is_dir()
    proc = server_process(config=str(conf), ports=proc.ports).start()
    for user, count in (("a", 3), ("b", 1)):
        nc = await connect(user)
        js = nc.jetstream()
        assert (await js.stream_info("KEEP")).state.messages == count
        assert (await js.get_msg("KEEP", count)).data == b"%s%d" % (user.encode(), count - 1)
        await nc.close()
    nc = await connect("g")
    with pytest.raises(NotFoundError):
        await nc.jetstream().stream_info("KEEP")
    await nc.close()
    proc.stop()


# nats.py's test_account_limits (tests/conf/js-limits.conf): the per-stream and
# per-consumer limits of an account's jetstream block, with nats-server 2.15.1's errors
# (each checked against the binary); ``max_stream_bytes: true`` is its alias of
# max_bytes_required.
LIMITS = """
accounts {
  A {
    users: [{ user: a, password: a }]
    jetstream: {
      max_mem: 64MB, max_file: 32MB, max_streams: 10, max_consumers: 20,
      max_ack_pending: 100, memory_max_stream_bytes: 2048, store_max_stream_bytes: 4096,
      max_stream_bytes: true
    }
  }
  B {
    users: [{ user: b, password: b }]
    jetstream { max_ack_pending: 100, mem_max_stream_bytes: 2048, disk_max_stream_bytes: 4096 }
  }
}
"""
REQUIRED = {
    "code": 400,
    "err_code": 10113,
    "description": "account requires a stream config to have max bytes set",
}
OVER_CAP = {
    "code": 400,
    "err_code": 10122,
    "description": "stream max bytes exceeds account limit max stream bytes",
}


@pytest.fixture
async def limited(tmp_path):
    server = await start(tmp_path, LIMITS)
    yield server
    await server.shutdown()


async def test_nats_py_account_limits(limited):
    nc = await login(limited, "a")
    js = nc.jetstream()
    with pytest.raises(BadRequestError) as err:
        await js.add_stream(name="limits", subjects=["limits"])
    assert (err.value.err_code, err.value.description) == (10113, REQUIRED["description"])
    with pytest.raises(BadRequestError) as err:
        await js.add_stream(name="limits", subjects=["limits"], max_bytes=65536)
    assert (err.value.err_code, err.value.description) == (10122, OVER_CAP["description"])
    si = await js.add_stream(name="limits", subjects=["limits"], max_bytes=128)
    assert si.config.max_bytes == 128
    await js.publish("limits", b"A" * 55)
    assert (await js.stream_info("limits")).state.messages == 1
    for _ in range(5):
        await js.publish("limits", b"A")
    info = await js.account_info()
    assert (info.memory, info.storage, info.streams, info.consumers) == (0, 111, 1, 0)
    assert info.limits == AccountLimits(
        max_memory=64 << 20,
        max_storage=32 << 20,
        max_streams=10,
        max_consumers=20,
        max_ack_pending=100,
        memory_max_stream_bytes=2048,
        storage_max_stream_bytes=4096,
        max_bytes_required=True,
    )
    assert (info.api.total, info.api.errors) == (4, 2)
    assert (await js.stream_info("limits")).state.messages == 3  # max_bytes 128 holds
    await nc.close()


async def test_stream_byte_limits_at_create_and_update(limited):
    a, b = await login(limited, "a"), await login(limited, "b")

    async def create(nc, verb: str, name: str, **cfg) -> dict:
        body = {"name": name, "subjects": [name], **cfg}
        out = await request(nc, f"$JS.API.STREAM.{verb}.{name}", body)
        return out.get("error") or out["config"]["max_bytes"]

    # A requires max_bytes (0 reads as unset), of any storage; the caps per storage
    assert await create(a, "CREATE", "m", storage="memory") == REQUIRED
    assert await create(a, "CREATE", "z", max_bytes=0) == REQUIRED
    assert await create(a, "CREATE", "m", storage="memory", max_bytes=2049) == OVER_CAP
    assert await create(a, "CREATE", "m", storage="memory", max_bytes=2048) == 2048
    assert await create(a, "CREATE", "f", max_bytes=4097) == OVER_CAP
    assert await create(a, "CREATE", "f", max_bytes=4096) == 4096
    assert await create(a, "UPDATE", "f", max_bytes=5000) == OVER_CAP
    assert await create(a, "UPDATE", "f") == REQUIRED
    assert await create(a, "UPDATE", "f", max_bytes=4000) == 4000
    # B has the caps without the requirement: an unset max_bytes passes, uncapped
    assert await create(b, "CREATE", "f") == -1
    assert await create(b, "CREATE", "g", max_bytes=4097) == OVER_CAP
    assert await create(b, "UPDATE", "f", max_bytes=5000) == OVER_CAP
    assert await create(b, "UPDATE", "f", max_bytes=4096) == 4096
    assert await create(b, "UPDATE", "f") == -1
    for nc in (a, b):
        await nc.close()


async def test_consumer_max_ack_pending_is_capped_by_the_account(limited):
    nc = await login(limited, "b")
    await nc.jetstream().add_stream(name="S", subjects=["s"])

    async def consumer(name: str, **cfg) -> object:
        body = {"stream_name": "S", "config": {"durable_name": name, **cfg}}
        out = await request(nc, f"$JS.API.CONSUMER.CREATE.S.{name}", body)
        return out.get("error") or out["config"].get("max_ack_pending")

    over = {
        "code": 400,
        "err_code": 10121,
        "description": "consumer max ack pending exceeds system limit of 100",
    }
    # the default (1000) becomes the account's; more than it is refused, whatever the
    # ack policy; -1 (no limit) passes; an update is checked too
    assert await consumer("c1", ack_policy="explicit") == 100
    assert await consumer("c2", ack_policy="explicit", max_ack_pending=101) == over
    assert await consumer("c3", ack_policy="all", max_ack_pending=100) == 100
    assert await consumer("c4", ack_policy="explicit", max_ack_pending=-1) == -1
    assert await consumer("c5", max_ack_pending=101) == over  # ack none
    assert await consumer("c6") is None  # ack none: no default
    assert await consumer("c1", ack_policy="explicit", max_ack_pending=200) == over
    # and the pull consumer holds at most 100 unacknowledged
    js = nc.jetstream()
    for i in range(120):
        await nc.publish("s", b"%d" % i)
    sub = await js.pull_subscribe_bind("c1", "S")
    msgs = await sub.fetch(120, timeout=1)
    assert len(msgs) == 100
    await nc.close()
