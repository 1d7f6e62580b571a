"""The ``nats`` CLI's server commands against the system account (natscli's cli/).

Each test sends what natscli sends, the way it sends it (its doReqAsync: a reply inbox,
``{}`` or the Go options struct marshalled whole as the body, ``Accept-Encoding:
snappy`` on every subject but ``$SYS.REQ.SERVER.PING`` and ``$SYS.REQ.ACCOUNT.*``,
answers gathered until ``expect`` came or, adaptively, 300 ms after the last one), and
reads every answer as Go's encoding/json reads it into the nats-server structs the CLI
decodes (``ServerStatsMsg``, ``ServerAPIResponse`` with ``Varz``, ``Connz`` and
``JSInfo``): a field of the wrong JSON type fails the whole decode (``server list``
exits), a missing one shows as zero, so the fields the CLI prints must be there.

- ``nats server list``: ``$SYS.REQ.SERVER.PING`` -> ServerStatsMsg {server, statsz}.
- ``nats server info [id|name]``: ``$SYS.REQ.SERVER.<id>.VARZ`` with ``{}`` for a
  56-character upper-case id, else ``$SYS.REQ.SERVER.PING.VARZ`` with
  ``{"server_name": name}``; one answer (nc.Request), an ``error`` key is a failure.
- ``nats server report connections|accounts``: first ``$SYS.REQ.SERVER.PING``
  (expect 1) for ``statsz.active_servers``, then ``$SYS.REQ.SERVER.PING.CONNZ`` with
  ConnzEventOptions (auth and subscriptions on, limit 1024), expecting that many
  answers; a connection's ``kind`` must be set (the CLI indexes its first letter when
  it is not ``Client``).
- ``nats server report jetstream [--account A]``: ``$SYS.REQ.SERVER.PING.JSZ`` with
  JszEventOptions (streams, consumers and limit 10000 for an account).

The last test asks a real nats-server 2.15.1 the same and compares key sets and JSON
types, all the way down.
"""

from __future__ import annotations

import asyncio
import json
import re

import nats
import pytest

from tests.helpers import mqtt_packets as mp
from tests.helpers.wire import Wire
from tests.jetstream.stream_env import free_port, stop

from .accounts_env import login, settle, start, write_conf
from .test_system_account import SYS_CONF, nats_server_from

PING = "$SYS.REQ.SERVER.PING"

# ConnzOptions and JSzOptions as Go marshals them (no omitempty: every field is sent);
# the EventFilterOptions are all omitempty, so an unfiltered request adds nothing.
CONNZ_OPTS = {
    "sort": "",
    "auth": True,
    "subscriptions": True,
    "subscriptions_detail": False,
    "offset": 0,
    "limit": 1024,
    "cid": 0,
    "mqtt_client": "",
    "state": 0,
    "user": "",
    "acc": "",
    "filter_subject": "",
}
JSZ_OPTS = {
    "account": "",
    "accounts": False,
    "streams": False,
    "consumer": False,
    "config": False,
    "leader_only": False,
    "offset": 0,
    "limit": 0,
    "raft": False,
    "stream_leader_only": False,
}


def jsz_for(account: str) -> dict:
    return {**JSZ_OPTS, "account": account, "streams": True, "consumer": True, "limit": 10000}


class NoResponders(Exception):
    pass


async def cli_request(
    nc: nats.NATS,
    subject: str,
    req: dict | None = None,
    expect: int = 0,
    timeout: float = 2.0,
    snappy: bool = True,
) -> list[dict]:
    """natscli's doReqAsync: every answer's JSON, until ``expect`` came (``0``: until
    300 ms pass without one, the first may take ``timeout``). ``snappy=False`` leaves
    out the Accept-Encoding header (nats-server would s2-compress its answer)."""
    body = b"{}" if req is None else json.dumps(req).encode()
    headers = None
    if snappy and subject != PING and not subject.startswith("$SYS.REQ.ACCOUNT"):
        headers = {"Accept-Encoding": "snappy"}
    queue: asyncio.Queue = asyncio.Queue()

    async def cb(msg) -> None:
        queue.put_nowait(msg)

    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox, cb=cb)
    await nc.publish(subject, body, reply=inbox, headers=headers)
    out: list[dict] = []
    wait = timeout
    try:
        while expect <= 0 or len(out) < expect:
            try:
                msg = await asyncio.wait_for(queue.get(), wait)
            except TimeoutError:
                break
            hdrs = msg.headers or {}
            if hdrs.get("Status") == "503":
                raise NoResponders(subject)
            # the CLI s2-decodes only when told so; hybridbus answers uncompressed
            assert "Content-Encoding" not in hdrs
            out.append(json.loads(msg.data))
            wait = 0.3
    finally:
        await sub.unsubscribe()
    return out


# =========================================================== Go's decoder, in miniature


class Need:
    """A field the CLI prints: it must be there (absent, Go shows a zero)."""

    def __init__(self, spec) -> None:
        self.spec = spec


_RANGES = {
    "int": (-(1 << 63), (1 << 63) - 1),
    "int32": (-(1 << 31), (1 << 31) - 1),
    "int64": (-(1 << 63), (1 << 63) - 1),
    "duration": (-(1 << 63), (1 << 63) - 1),
    "uint32": (0, (1 << 32) - 1),
    "uint64": (0, (1 << 64) - 1),
}
_RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d)$")


def go_errors(value, spec, path: str = "$") -> list[str]:
    """What Go's json.Unmarshal would refuse in ``value`` read as ``spec`` (null is
    a zero value anywhere; unknown keys are ignored), plus every ``Need`` missing."""
    if value is None:
        return []
    if isinstance(spec, dict):
        if not isinstance(value, dict):
            return [f"{path}: {type(value).__name__} for a struct"]
        errors = []
        for key, sub in spec.items():
            if isinstance(sub, Need):
                if key not in value:
                    errors.append(f"{path}.{key}: missing")
                    continue
                sub = sub.spec
            if key in value:
                errors += go_errors(value[key], sub, f"{path}.{key}")
        return errors
    if isinstance(spec, list):
        if not isinstance(value, list):
            return [f"{path}: {type(value).__name__} for a slice"]
        return [e for i, v in enumerate(value) for e in go_errors(v, spec[0], f"{path}[{i}]")]
    if isinstance(spec, tuple):  # ("map", item)
        if not isinstance(value, dict):
            return [f"{path}: {type(value).__name__} for a map"]
        return [e for k, v in value.items() for e in go_errors(v, spec[1], f"{path}.{k}")]
    return _scalar_errors(value, spec, path)


def _scalar_errors(value, spec: str, path: str) -> list[str]:
    ok = {
        "string": isinstance(value, str),
        "bool": isinstance(value, bool),
        "float64": isinstance(value, int | float) and not isinstance(value, bool),
        "time": isinstance(value, str) and bool(_RFC3339.match(value)),
    }.get(spec)
    if ok is None:  # an integer type: a JSON number without fraction, in range
        lo, hi = _RANGES[spec]
        ok = type(value) is int and lo <= value <= hi
    return [] if ok else [f"{path}: {value!r} is no Go {spec}"]


DATA_STATS = {"msgs": Need("int64"), "bytes": Need("int64")}
SERVER_INFO = {
    "name": Need("string"),
    "host": Need("string"),
    "id": Need("string"),
    "cluster": "string",
    "domain": "string",
    "ver": Need("string"),
    "tags": ["string"],
    "seq": Need("uint64"),
    "jetstream": Need("bool"),
    "flags": "uint64",
    "time": Need("time"),
}
JS_API = {"level": "int", "total": Need("uint64"), "errors": Need("uint64"), "inflight": "uint64"}
JS_STATS = {
    "memory": Need("uint64"),
    "storage": Need("uint64"),
    "reserved_memory": "uint64",
    "reserved_storage": "uint64",
    "accounts": Need("int"),
    "ha_assets": "int",
    "api": Need(JS_API),
}
JS_CONFIG = {
    "max_memory": Need("int64"),
    "max_storage": Need("int64"),
    "store_dir": "string",
    "sync_interval": "duration",
    "sync_always": "bool",
    "domain": "string",
    "compress_ok": "bool",
    "unique_tag": "string",
    "strict": "bool",
}
JS_VARZ = {"config": JS_CONFIG, "stats": JS_STATS, "limits": {"default_max_consumers": "int"}}
STATSZ = {
    "start": Need("time"),
    "mem": Need("int64"),
    "cores": Need("int"),
    "cpu": Need("float64"),
    "connections": Need("int"),
    "total_connections": "uint64",
    "active_accounts": "int",
    "subscriptions": Need("uint32"),
    "sent": Need(DATA_STATS),
    "received": Need(DATA_STATS),
    "slow_consumers": Need("int64"),
    "slow_consumer_stats": {k: "uint64" for k in ("clients", "routes", "gateways", "leafs")},
    "routes": [{"rid": "uint64", "name": "string", "sent": DATA_STATS, "pending": "int"}],
    "gateways": [{"gwid": "uint64", "name": "string", "inbound_connections": "int"}],
    "active_servers": Need("int"),
    "jetstream": JS_VARZ,
    "gomaxprocs": "int",
}
SERVER_STATS_MSG = {"server": Need(SERVER_INFO), "statsz": Need(STATSZ)}
API_ERROR = {"code": "int", "description": "string"}
VARZ = {
    "server_id": Need("string"),
    "server_name": Need("string"),
    "version": Need("string"),
    "proto": "int",
    "git_commit": "string",
    "go": Need("string"),
    "host": Need("string"),
    "port": Need("int"),
    "auth_required": Need("bool"),
    "tls_required": "bool",
    "ip": "string",
    "connect_urls": ["string"],
    "ws_connect_urls": ["string"],
    "max_connections": Need("int"),
    "max_subscriptions": "int",
    "ping_interval": "duration",
    "ping_max": "int",
    "http_host": "string",
    "http_port": "int",
    "auth_timeout": "float64",
    "max_control_line": "int32",
    "max_payload": Need("int"),
    "max_pending": "int64",
    "cluster": {"name": "string", "host": "string", "port": "int", "urls": ["string"]},
    "gateway": {"name": "string", "host": "string", "port": "int", "gateways": [{}]},
    "mqtt": {"host": "string", "port": "int", "tls_timeout": "float64", "ack_wait": "duration"},
    "jetstream": Need(JS_VARZ),
    "tls_timeout": Need("float64"),
    "write_deadline": Need("duration"),
    "start": Need("time"),
    "now": "time",
    "uptime": Need("string"),
    "mem": Need("int64"),
    "cores": Need("int"),
    "gomaxprocs": "int",
    "cpu": Need("float64"),
    "connections": Need("int"),
    "total_connections": "uint64",
    "routes": "int",
    "remotes": "int",
    "leafnodes": "int",
    "in_msgs": Need("int64"),
    "out_msgs": Need("int64"),
    "in_bytes": Need("int64"),
    "out_bytes": Need("int64"),
    "slow_consumers": Need("int64"),
    "subscriptions": Need("uint32"),
    "http_req_stats": ("map", "uint64"),
    "config_load_time": "time",
    "tags": ["string"],
    "system_account": "string",
}
CONN_INFO = {
    "cid": Need("uint64"),
    "kind": Need("string"),
    "type": "string",
    "ip": Need("string"),
    "port": Need("int"),
    "start": Need("time"),
    "last_activity": "time",
    "stop": "time",
    "reason": "string",
    "rtt": "string",
    "uptime": Need("string"),
    "idle": "string",
    "pending_bytes": "int",
    "in_msgs": Need("int64"),
    "out_msgs": Need("int64"),
    "in_bytes": Need("int64"),
    "out_bytes": Need("int64"),
    "subscriptions": Need("uint32"),
    "name": "string",
    "lang": "string",
    "version": "string",
    "tls_version": "string",
    "tls_cipher_suite": "string",
    "tls_first": "bool",
    "authorized_user": "string",
    "account": "string",
    "subscriptions_list": ["string"],
    "subscriptions_list_detail": [{"subject": "string", "sid": "string", "msgs": "int64"}],
    "name_tag": "string",
    "tags": ["string"],
    "mqtt_client": "string",
}
CONNZ = {
    "server_id": Need("string"),
    "now": Need("time"),
    "num_connections": Need("int"),
    "total": Need("int"),
    "offset": Need("int"),
    "limit": Need("int"),
    "connections": Need([CONN_INFO]),
}
SEQ_INFO = {"consumer_seq": "uint64", "stream_seq": "uint64", "last_active": "time"}
CONSUMER_INFO = {
    "stream_name": "string",
    "name": "string",
    "created": "time",
    "delivered": SEQ_INFO,
    "ack_floor": SEQ_INFO,
    "num_ack_pending": "int",
    "num_redelivered": "int",
    "num_waiting": "int",
    "num_pending": "uint64",
    "push_bound": "bool",
    "ts": "time",
}
STREAM_STATE = {
    "messages": Need("uint64"),
    "bytes": "uint64",
    "first_seq": "uint64",
    "first_ts": "time",
    "last_seq": "uint64",
    "last_ts": "time",
    "num_subjects": "int",
    "num_deleted": "int",
    "consumer_count": Need("int"),
}
STREAM_DETAIL = {
    "name": Need("string"),
    "created": "time",
    "cluster": {"name": "string", "leader": "string"},
    "state": Need(STREAM_STATE),
    "consumer_detail": [CONSUMER_INFO],
}
ACCOUNT_DETAIL = {
    **JS_STATS,
    "name": Need("string"),
    "id": "string",
    "stream_detail": Need([STREAM_DETAIL]),
}
JSZ = {
    **JS_STATS,
    "server_id": Need("string"),
    "now": "time",
    "disabled": "bool",
    "config": JS_CONFIG,
    "limits": {"default_max_consumers": "int"},
    "streams": Need("int"),
    "consumers": Need("int"),
    "messages": Need("uint64"),
    "bytes": Need("uint64"),
    "meta_cluster": {"name": "string", "leader": "string", "size": "int", "pending": "int"},
    "account_details": [ACCOUNT_DETAIL],
    "total": "int",
}


def api_response(data_spec) -> dict:
    return {"server": Need(SERVER_INFO), "data": Need(data_spec), "error": API_ERROR}


def go_decoded(answer: dict, spec) -> dict:
    errors = go_errors(answer, spec)
    assert errors == [], errors
    assert "error" not in answer, answer["error"]  # every command stops at an error
    return answer


# ======================================================================== the commands


@pytest.fixture
async def server(tmp_path):
    server = await start(tmp_path, SYS_CONF)
    yield server
    await server.shutdown()


async def traffic(
    port: int, mqtt_port: int, js_user: str, mqtt_user: str = "a"
) -> tuple[list, Wire]:
    """What a busy server has: an account's named client with subscriptions and
    traffic, a JetStream stream with a consumer (made by ``js_user``), an MQTT client
    (of ``mqtt_user``), and a closed connection."""
    url = f"nats://127.0.0.1:{port}"
    a = await nats.connect(url, user="a", password="a", name="a-client")
    g = await nats.connect(url, user="g", password="g")
    js_nc = a if js_user == "a" else g
    await a.subscribe("foo.>")
    await a.subscribe("bar")
    await a.publish("foo.x", b"hi")
    js = js_nc.jetstream()
    await js.add_stream(name="S", subjects=["s.>"])
    await js.publish("s.1", b"x")
    await js.add_consumer("S", durable_name="D")
    await js.subscribe("s.>", durable="P", cb=_ignore)  # a bound push consumer
    gone = await nats.connect(url, user="a2", password="a2", name="gone")
    await gone.close()
    wire = await Wire.open(mqtt_port)
    await wire.send(mp.connect("dev-1", username=mqtt_user, password=mqtt_user.encode()))
    await wire.expect(mp.connack(0, 0))
    await settle(a, g)
    return [a, g], wire


async def _ignore(msg) -> None:
    pass


async def test_server_list(server):
    """``nats server list``: one ServerStatsMsg per server, with what the table shows
    (name, host, version, JetStream, connections, subscriptions, memory, CPU, cores,
    slow consumers, uptime from server.time - statsz.start)."""
    sys_nc = await login(server, "sys")
    clients, wire = await traffic(server.nats_port, server.mqtt_port, "g")
    try:
        answers = await cli_request(sys_nc, PING)
        assert len(answers) == 1
        ssm = go_decoded(answers[0], SERVER_STATS_MSG)
        info, stats = ssm["server"], ssm["statsz"]
        assert (info["id"], info["name"], info["jetstream"]) == (
            server.server_id,
            server.server_name,
            True,
        )
        assert stats["connections"] == len(server.clients) == 4  # sys, a, g, MQTT
        assert stats["subscriptions"] > 0 and stats["mem"] > 0 and stats["cores"] >= 1
        assert stats["active_servers"] == 1  # what report connections expects
        assert stats["received"]["msgs"] >= 3 and stats["sent"]["msgs"] >= 1
    finally:
        await wire.close()
        for nc in (*clients, sys_nc):
            await nc.close()


async def test_server_info_by_id_and_name(server):
    """``nats server info``, ``nats server info <id>``, ``nats server info <name>``:
    the Varz in ``data`` with the sections the CLI prints (JetStream shows when its
    store_dir is set); a name no server has gets no answer."""
    sys_nc = await login(server, "sys")
    try:
        sid, name = server.server_id, server.server_name
        assert len(sid) == 56 and sid.upper() == sid  # the CLI's test for "an id"
        asks = [
            (f"$SYS.REQ.SERVER.{sid}.VARZ", {}),
            ("$SYS.REQ.SERVER.PING.VARZ", {}),  # no argument: Name ""
            ("$SYS.REQ.SERVER.PING.VARZ", {"server_name": name}),
            ("$SYS.REQ.SERVER.PING.VARZ", {"server_name": name[3:9]}),  # Go's Contains
        ]
        for subject, body in asks:
            msg = await sys_nc.request(subject, json.dumps(body).encode(), timeout=1)
            varz = go_decoded(json.loads(msg.data), api_response(VARZ))["data"]
            assert (varz["server_id"], varz["server_name"]) == (sid, name), subject
            assert varz["jetstream"]["config"]["store_dir"]
            assert varz["connections"] == 1 and varz["max_payload"] > 0
            assert varz["port"] == server.nats_port
        with pytest.raises(nats.errors.TimeoutError):
            await sys_nc.request("$SYS.REQ.SERVER.PING.VARZ", b'{"server_name":"zz"}', 0.3)
    finally:
        await sys_nc.close()


async def report_connz(sys_nc: nats.NATS, **opts) -> list[dict]:
    """natscli's getConnz: the active server count first, then that many CONNZ."""
    ping = await cli_request(sys_nc, PING, expect=1)
    expect = go_decoded(ping[0], SERVER_STATS_MSG)["statsz"]["active_servers"]
    assert expect == 1
    answers = await cli_request(
        sys_nc, "$SYS.REQ.SERVER.PING.CONNZ", {**CONNZ_OPTS, **opts}, expect=expect
    )
    assert len(answers) == expect
    return [go_decoded(a, api_response(CONNZ))["data"] for a in answers]


def by_account(conns: list[dict]) -> dict:
    """``nats server report accounts``: connections, messages and subscriptions
    summed per ``account`` (absent for $G, as nats-server)."""
    out: dict = {}
    for c in conns:
        row = out.setdefault(c.get("account", ""), {"conns": 0, "in_msgs": 0, "subs": 0})
        row["conns"] += 1
        row["in_msgs"] += c["in_msgs"]
        row["subs"] += len(c.get("subscriptions_list", []))
    return out


async def test_report_connections_and_accounts(server):
    sys_nc = await login(server, "sys")
    clients, wire = await traffic(server.nats_port, server.mqtt_port, "g")
    try:
        (connz,) = await report_connz(sys_nc)
        conns = connz["connections"]
        assert connz["total"] == connz["num_connections"] == len(conns) == 4
        assert connz["offset"] + connz["limit"] >= connz["total"]  # no paging
        for c in conns:
            assert c["kind"] == "Client"  # the CLI prints kind[0]+cid otherwise
        named = {c.get("name") or c.get("mqtt_client"): c for c in conns}
        a = named["a-client"]
        assert (a["account"], a["authorized_user"]) == ("A", "a")
        assert sorted(a["subscriptions_list"])[:2] == ["bar", "foo.>"]
        assert a["subscriptions"] == len(a["subscriptions_list"]) and a["in_msgs"] >= 1
        mqtt = named["dev-1"]
        assert (mqtt["type"], mqtt["account"]) == ("mqtt", "A")
        accounts = by_account(conns)
        assert sorted(accounts) == ["", "A", "SYS"]
        assert accounts["A"]["conns"] == 2 and accounts["A"]["subs"] >= 2

        # --account A, --subject foo.x (with it), --username a, --state closed|all
        (only_a,) = await report_connz(sys_nc, acc="A")
        assert {c["account"] for c in only_a["connections"]} == {"A"}
        (subj,) = await report_connz(sys_nc, acc="A", filter_subject="foo.x")
        assert [c.get("name") for c in subj["connections"]] == ["a-client"]
        (user,) = await report_connz(sys_nc, user="a")
        assert {c["authorized_user"] for c in user["connections"]} == {"a"}
        (closed,) = await report_connz(sys_nc, state=1)
        gone = [c for c in closed["connections"] if c.get("name") == "gone"]
        assert gone and gone[0]["reason"] and gone[0]["stop"]
        (every,) = await report_connz(sys_nc, state=2)
        assert every["total"] == 4 + closed["total"]
    finally:
        await wire.close()
        for nc in (*clients, sys_nc):
            await nc.close()


async def test_report_jetstream(server):
    """``nats server report jetstream`` (server totals) and ``--account $G`` (one
    AccountDetail, its streams with their state)."""
    sys_nc = await login(server, "sys")
    clients, wire = await traffic(server.nats_port, server.mqtt_port, "g")
    try:
        (answer,) = await cli_request(sys_nc, "$SYS.REQ.SERVER.PING.JSZ", JSZ_OPTS)
        data = go_decoded(answer, api_response(JSZ))["data"]
        assert data["streams"] >= 1 and data["consumers"] >= 1 and data["messages"] >= 1
        assert data["api"]["total"] >= 2 and data["storage"] > 0
        assert "meta_cluster" not in data  # standalone: the CLI skips the RAFT table
        (answer,) = await cli_request(sys_nc, "$SYS.REQ.SERVER.PING.JSZ", jsz_for("$G"))
        data = go_decoded(answer, api_response(JSZ))["data"]
        (acc,) = data["account_details"]  # the CLI's per-account columns need exactly one
        streams = {s["name"]: s["state"] for s in acc["stream_detail"]}
        assert streams["S"]["messages"] == 1 and streams["S"]["consumer_count"] == 2
        assert acc["storage"] > 0 and acc["api"]["total"] >= 2
    finally:
        await wire.close()
        for nc in (*clients, sys_nc):
            await nc.close()


async def test_not_for_other_accounts(server):
    """Outside the system account the CLI gets its "ensure the account used has
    system privileges" (no responders), but for CONNZ, which every account imports
    about itself."""
    a = await login(server, "a")
    try:
        for subject in (PING, "$SYS.REQ.SERVER.PING.VARZ", "$SYS.REQ.SERVER.PING.JSZ"):
            with pytest.raises(NoResponders):
                await cli_request(a, subject, expect=1)
        (own,) = await cli_request(a, "$SYS.REQ.SERVER.PING.CONNZ", CONNZ_OPTS, expect=1)
        conns = go_decoded(own, api_response(CONNZ))["data"]["connections"]
        assert {c["account"] for c in conns} == {"A"}
    finally:
        await a.close()


# ============================================================ the same, from nats-server

# nats-server gives JetStream to the accounts that ask for it (its $G has none once
# accounts are configured); hybridbus's stream lives in $G, nats-server's in A.
FOO_IN_A = {"acc": "A", "filter_subject": "foo.x"}
REF_CONF = SYS_CONF.replace("A: { users", "A: { jetstream: enabled, users")
FLOAT_KEYS = {"cpu", "auth_timeout", "tls_timeout"}  # Go float64: 2.0 is written "2"
# Left out on purpose (ServerInfo's and /varz's feature_flags, /varz's git_commit) or
# not there yet: nats-server 2.15's JetStream limits block (default_max_consumers).
NOT_OURS = (
    "feature_flags",
    "git_commit",
    "default_max_consumers",
    "jetstream.limits",
    "data.limits",
)
# hybridbus's own additions (Go ignores unknown keys): the store report of /jsz, MQTT's
# defaults and dropped-message counter in /varz.
ONLY_OURS = (".hybridbus", ".mqtt.ack_wait", ".mqtt.max_ack_pending", ".mqtt.dropped_messages")


def _kind(v) -> str:
    if isinstance(v, bool):
        return "bool"
    return {int: "number", float: "number", str: "string", list: "list", dict: "object"}.get(
        type(v), "null"
    )


def shape(value, path: str = "", out: dict | None = None) -> dict:
    """Every key path of ``value`` (list items merged under ``[]``) with its JSON
    types; an integer and a float are both numbers (integers checked apart)."""
    out = {} if out is None else out
    kinds = out.setdefault(path, set())
    kinds.add(_kind(value))
    if path.rsplit(".", 1)[-1] in FLOAT_KEYS:
        pass  # a float64: Go reads 2 and 2.0 alike
    elif isinstance(value, int) and not isinstance(value, bool):
        kinds.add("integer")
    elif isinstance(value, float):
        kinds.add("fraction")
    if isinstance(value, dict):
        for key, item in value.items():
            shape(item, f"{path}.{key}", out)
    elif isinstance(value, list):
        for item in value:
            shape(item, f"{path}[]", out)
    return out


async def cli_session(
    port: int, mqtt_port: int, js_user: str, js_account: str, snappy: bool
) -> dict:
    """Every command's answers from the server on ``port``, after the same traffic."""
    clients, wire = await traffic(port, mqtt_port, js_user)
    sys_nc = await nats.connect(f"nats://sys:sys@127.0.0.1:{port}", connect_timeout=2)
    out: dict = {}
    try:
        for label, subject, body in (
            ("list", PING, None),
            ("info", "$SYS.REQ.SERVER.PING.VARZ", {}),
            ("conns", "$SYS.REQ.SERVER.PING.CONNZ", CONNZ_OPTS),
            ("conns A", "$SYS.REQ.SERVER.PING.CONNZ", {**CONNZ_OPTS, "acc": "A"}),
            ("conns foo", "$SYS.REQ.SERVER.PING.CONNZ", {**CONNZ_OPTS, **FOO_IN_A}),
            ("conns all", "$SYS.REQ.SERVER.PING.CONNZ", {**CONNZ_OPTS, "state": 2}),
            ("js", "$SYS.REQ.SERVER.PING.JSZ", JSZ_OPTS),
            ("js account", "$SYS.REQ.SERVER.PING.JSZ", jsz_for(js_account)),
            ("js SYS", "$SYS.REQ.SERVER.PING.JSZ", jsz_for("SYS")),
        ):
            out[label] = await cli_request(sys_nc, subject, body, expect=1, snappy=snappy)
    finally:
        await wire.close()
        for nc in (*clients, sys_nc):
            await nc.close()
    return out


async def test_shapes_match_nats_server(tmp_path):
    """Each command's answers, key by key and type by type, as nats-server 2.15.1's
    (both started from the same accounts): nothing nats-server sends is missing, no
    number is a fraction where Go wants an integer, nothing has another JSON type."""
    mqtt_port = free_port()
    conf = write_conf(
        tmp_path,
        f"{REF_CONF}\nhttp: -1\nmqtt {{ host: 127.0.0.1, port: {mqtt_port} }}\n",
        "ref.conf",
    )
    proc, port = await nats_server_from(conf)
    try:
        reference = await asyncio.wait_for(cli_session(port, mqtt_port, "a", "A", False), 20)
    finally:
        stop(proc)
    server = await start(tmp_path, SYS_CONF)
    try:
        ours = await asyncio.wait_for(
            cli_session(server.nats_port, server.mqtt_port, "g", "$G", True), 20
        )
    finally:
        await server.shutdown()
    for label, answers in reference.items():
        assert len(ours[label]) == len(answers) == 1, label
        ref, got = shape(answers[0]), shape(ours[label][0])
        missing = [p for p in ref if p not in got and not any(n in p for n in NOT_OURS)]
        extra = [p for p in got if p not in ref and not any(n in p for n in ONLY_OURS)]
        differ = [
            (p, sorted(ref[p]), sorted(got[p]))
            for p in ref
            if p in got and ref[p] - {"null"} and got[p] - {"null"} and ref[p] != got[p]
        ]
        assert (missing, extra, differ) == ([], [], []), label
    names = [
        [c.get("name") for c in s["conns foo"][0]["data"]["connections"]] for s in (reference, ours)
    ]
    assert names == [["a-client"], ["a-client"]]  # the subject filter, as nats-server's
