"""The system account (server/system.py): nats-server's $SYS services and events.

A user of the system account gets the monitoring requests ($SYS.REQ.SERVER.PING[.X],
$SYS.REQ.SERVER.<id>.X, $SYS.REQ.ACCOUNT.<acc>.X) in nats-server's shapes (compared key
by key with a real nats-server 2.15.1 started from the same config), the CONNECT and
DISCONNECT events of NATS and MQTT clients, the account CONNS events and STATSZ. A user
of another account reaches none of it: its $SYS subjects are its own subject space,
where only nats-server's four imports answer, about its own account.
"""

from __future__ import annotations

import asyncio
import json
import subprocess

import nats
import pytest
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout

from hybridbus.config import ConfigError
from hybridbus.config.load import load_options, startup_errors
from tests.helpers import mqtt_packets as mp
from tests.helpers.wire import Wire, eventually
from tests.jetstream.stream_env import NATS_SERVER, free_port, stop

from .accounts_env import Inbox, login, settle, start, sub, write_conf

SYS_CONF = """
authorization { users: [{user: g, password: g}] }
accounts {
  SYS: { users: [{user: sys, password: sys}] }
  A: { users: [{user: a, password: a}, {user: a2, password: a2,
        permissions: {publish: {deny: ["no.>"]}}}] }
}
system_account: SYS
"""

# What hybridbus leaves out on purpose: ServerInfo's feature_flags (nats-server's
# JetStream cluster capabilities), /varz's git_commit and feature_flags.
NOT_OURS = {"feature_flags", "git_commit"}


async def http_get_json(port: int, path: str) -> dict:
    import urllib.request

    def get() -> dict:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
            return json.load(r)

    return await asyncio.to_thread(get)


@pytest.fixture
async def server(tmp_path):
    server = await start(tmp_path, SYS_CONF)
    yield server
    await server.shutdown()


async def request(nc: nats.NATS, subject: str, body: bytes = b"", timeout: float = 1.0) -> dict:
    msg = await nc.request(subject, body, timeout=timeout)
    return json.loads(msg.data)


async def gather(nc: nats.NATS, subject: str, body: bytes = b"", wait: float = 0.3) -> list:
    """Every answer to a request within ``wait`` (PING subjects: one per server)."""
    inbox = nc.new_inbox()
    box = await sub(nc, inbox)
    await nc.publish(subject, body, reply=inbox)
    await asyncio.sleep(wait)
    return [json.loads(data) for _, data in box.got]


# -- shapes, compared with nats-server ----------------------------------------------

REQUESTS = [
    "$SYS.REQ.SERVER.PING",
    "$SYS.REQ.SERVER.PING.STATSZ",
    "$SYS.REQ.SERVER.PING.IDZ",
    "$SYS.REQ.SERVER.PING.VARZ",
    "$SYS.REQ.SERVER.PING.CONNZ",
    "$SYS.REQ.SERVER.PING.SUBSZ",
    "$SYS.REQ.SERVER.PING.HEALTHZ",
    "$SYS.REQ.SERVER.PING.ACCOUNTZ",
    "$SYS.REQ.SERVER.PING.LEAFZ",
    "$SYS.REQ.ACCOUNT.A.CONNZ",
    "$SYS.REQ.ACCOUNT.A.SUBSZ",
    "$SYS.REQ.ACCOUNT.A.INFO",
    "$SYS.REQ.ACCOUNT.A.STATZ",
    "$SYS.REQ.ACCOUNT.SYS.STATZ",
    "$SYS.REQ.ACCOUNT.A.JSZ",
    "$SYS.REQ.ACCOUNT.SYS.CONNS",
    "$SYS.REQ.ACCOUNT.PING.STATZ",
    "$SYS.REQ.USER.INFO",
    '$SYS.REQ.SERVER.PING.CONNZ={"subscriptions": true, "auth": true}',
    '$SYS.REQ.SERVER.PING.VARZ={"server_name": "no-such-server"}',
    "$SYS.REQ.SERVER.PING.CONNZ=notjson",
    "$SYS.REQ.SERVER.PING.STATSZ=bad",
]


def shape(answer: dict) -> dict:
    """The key sets of an answer and of its blocks, less what hybridbus leaves out."""
    out = {"": sorted(set(answer) - NOT_OURS)}
    for key in ("server", "data", "statsz", "client"):
        if isinstance(answer.get(key), dict):
            out[key] = sorted(set(answer[key]) - NOT_OURS)
    if "error" in answer:
        out["error"] = answer["error"]
    return out


async def shapes(port: int) -> dict:
    """Every REQUESTS answer's shape from the server on ``port``, asked by user sys."""
    sys_nc = await nats.connect(f"nats://sys:sys@127.0.0.1:{port}", connect_timeout=2)
    a = await nats.connect(f"nats://a:a@127.0.0.1:{port}", connect_timeout=2)
    await a.subscribe("foo")
    await a.flush()
    try:
        boxes = {}
        for item in REQUESTS:  # all at once, then one wait for every answer
            subject, _, body = item.partition("=")
            inbox = sys_nc.new_inbox()
            boxes[item] = await sub(sys_nc, inbox)
            await sys_nc.publish(subject, body.encode(), reply=inbox)
        await asyncio.sleep(0.5)
        out = {item: [shape(json.loads(d)) for _, d in box.got] for item, box in boxes.items()}
    finally:
        await a.close()
        await sys_nc.close()
    return out


async def nats_server_from(conf: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    proc = subprocess.Popen(
        [NATS_SERVER, "-c", conf, "-a", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(250):
        try:
            (await asyncio.open_connection("127.0.0.1", port))[1].close()
            return proc, port
        except OSError:
            await asyncio.sleep(0.02)
    stop(proc)
    raise RuntimeError("nats-server did not start")


async def test_answers_have_nats_servers_shapes(tmp_path):
    """Each request answered as nats-server 2.15.1 answers it (same config): the same
    number of answers (none for a filtered request), the same keys in the envelope,
    ServerInfo, data and statsz, the same errors (400 with Go's decoder words, 500 for
    an account without JetStream)."""
    conf = write_conf(tmp_path, SYS_CONF + "\nhttp: -1\nmqtt { port: -1 }\n", "ref.conf")
    proc, port = await nats_server_from(conf)
    try:
        reference = await asyncio.wait_for(shapes(port), 20)
    finally:
        stop(proc)
    server = await start(tmp_path, SYS_CONF)
    try:
        ours = await asyncio.wait_for(shapes(server.nats_port), 20)
    finally:
        await server.shutdown()
    assert all(reference[item] for item in REQUESTS[:18])  # every one answered there
    for item in REQUESTS:
        assert ours[item] == reference[item], item


# -- the system account's user --------------------------------------------------------


async def test_ping_and_statsz_name_this_server(server):
    nc = await login(server, "sys")
    try:
        for subject in ("$SYS.REQ.SERVER.PING", "$SYS.REQ.SERVER.PING.STATSZ"):
            answers = await gather(nc, subject)
            assert len(answers) == 1
            info, stats = answers[0]["server"], answers[0]["statsz"]
            assert info["id"] == server.server_id and info["name"] == server.server_name
            assert info["jetstream"] is True and info["flags"] == 1
            assert stats["connections"] == 1 and stats["active_accounts"] == 1
            assert stats["subscriptions"] > 0 and stats["jetstream"]["config"]
        seqs = [(await request(nc, "$SYS.REQ.SERVER.PING.STATSZ"))["server"]["seq"] for _ in "ab"]
        assert seqs[1] > seqs[0]  # every answer carries the next sequence number
    finally:
        await nc.close()


async def test_per_server_subjects_use_our_id(server):
    nc = await login(server, "sys")
    try:
        sid = server.server_id
        for name in ("STATSZ", "VARZ", "CONNZ", "SUBSZ", "JSZ", "HEALTHZ", "ACCOUNTZ", "LEAFZ"):
            got = await request(nc, f"$SYS.REQ.SERVER.{sid}.{name}")
            assert got["server"]["id"] == sid, name
        varz = (await request(nc, f"$SYS.REQ.SERVER.{sid}.VARZ"))["data"]
        assert varz["server_id"] == sid and varz["system_account"] == "SYS"
        assert (await request(nc, f"$SYS.REQ.SERVER.{sid}.IDZ")) == {
            "name": server.server_name,
            "host": "127.0.0.1",
            "id": sid,
        }
        with pytest.raises(NoRespondersError):
            await nc.request("$SYS.REQ.SERVER.NOTANID.VARZ", b"", timeout=1)
    finally:
        await nc.close()


async def test_data_is_the_monitors(server):
    """The same report builders as the HTTP endpoints: /connz and CONNZ agree."""
    nc = await login(server, "sys")
    a = await login(server, "a")
    try:
        await a.subscribe("x.y")
        await settle(a)
        data = (await request(nc, "$SYS.REQ.SERVER.PING.CONNZ", b'{"subscriptions":true}'))["data"]
        http = await http_get_json(server.monitor.port, "/connz?subs=1")
        assert [c["cid"] for c in data["connections"]] == [c["cid"] for c in http["connections"]]
        assert sorted(c.get("subscriptions_list", []) == ["x.y"] for c in data["connections"])
        accountz = (await request(nc, "$SYS.REQ.SERVER.PING.ACCOUNTZ"))["data"]
        assert accountz["system_account"] == "SYS"
        assert sorted(accountz["accounts"]) == ["$G", "A", "SYS"]
        detail = await request(nc, "$SYS.REQ.SERVER.PING.ACCOUNTZ", b'{"account":"SYS"}')
        assert detail["data"]["account_detail"]["is_system"] is True
        health = (await request(nc, "$SYS.REQ.SERVER.PING.HEALTHZ"))["data"]
        assert health == {"status": "ok", "status_code": 200}
    finally:
        await a.close()
        await nc.close()


async def test_account_requests(server):
    nc = await login(server, "sys")
    a = await login(server, "a")
    try:
        await a.subscribe("only.in.a")
        await settle(a)
        connz = (await request(nc, "$SYS.REQ.ACCOUNT.A.CONNZ"))["data"]
        assert [c["cid"] for c in connz["connections"]] == [a._client_id]
        subsz = (await request(nc, "$SYS.REQ.ACCOUNT.A.SUBSZ"))["data"]
        assert "only.in.a" in [s["subject"] for s in subsz["subscriptions_list"]]
        info = (await request(nc, "$SYS.REQ.ACCOUNT.A.INFO"))["data"]
        assert info["account_name"] == "A" and info["client_connections"] == 1
        assert {i["local_subject"] for i in info["imports"]} >= {
            "$SYS.REQ.SERVER.PING.CONNZ",
            "$SYS.REQ.USER.INFO",
        }
        statz = (await request(nc, "$SYS.REQ.ACCOUNT.A.STATZ"))["data"]["account_statz"]
        assert [(s["acc"], s["conns"]) for s in statz] == [("A", 1)]
        conns = await request(nc, "$SYS.REQ.ACCOUNT.A.CONNS")
        assert conns["type"] == "io.nats.server.advisory.v1.account_connections"
        assert conns["acc"] == "A" and conns["conns"] == 1
        jsz = await request(nc, "$SYS.REQ.ACCOUNT.A.JSZ")
        assert jsz["error"] == {"code": 500, "description": 'account "A" not jetstream enabled'}
        ping = (await request(nc, "$SYS.REQ.ACCOUNT.PING.STATZ"))["data"]["account_statz"]
        assert sorted(s["acc"] for s in ping) == ["A", "SYS"]
        # an account without connections: no answer unless unused ones are asked for
        await a.close()
        await eventually(lambda: server.accounts["A"].nconns == 0)
        assert await gather(nc, "$SYS.REQ.ACCOUNT.A.STATZ") == []
        unused = await request(nc, "$SYS.REQ.ACCOUNT.A.STATZ", b'{"include_unused":true}')
        assert unused["data"]["account_statz"][0]["conns"] == 0
    finally:
        await a.close()
        await nc.close()


async def test_bad_bodies_and_filters(server):
    nc = await login(server, "sys")
    try:
        bad = await request(nc, "$SYS.REQ.SERVER.PING.VARZ", b"{")
        assert bad["error"]["code"] == 400 and "data" not in bad
        typed = await request(nc, "$SYS.REQ.SERVER.PING.CONNZ", b'{"limit":"x"}')
        assert typed["error"]["code"] == 400
        sort = await request(nc, "$SYS.REQ.SERVER.PING.CONNZ", b'{"sort":"nope"}')
        assert sort["error"] == {"code": 500, "description": "invalid sorting option: nope"}
        assert sort["data"] is None
        name = server.server_name.encode()
        assert (
            len(await gather(nc, "$SYS.REQ.SERVER.PING.VARZ", b'{"server_name":"' + name + b'"}'))
            == 1
        )
        assert await gather(nc, "$SYS.REQ.SERVER.PING.SUBSZ", b'{"tags":["nope"]}') == []
        assert await gather(nc, "$SYS.REQ.SERVER.PING", b'{"cluster":"c1"}') == []
    finally:
        await nc.close()


# -- other accounts -------------------------------------------------------------------


async def test_other_accounts_get_no_server_services(server):
    """$SYS subjects of account A (and $G) are their own: no responders for the
    server's services, and a $SYS.> subscription there sees no event."""
    for user in ("a", "g"):
        nc = await login(server, user)
        try:
            for subject in (
                "$SYS.REQ.SERVER.PING",
                "$SYS.REQ.SERVER.PING.VARZ",
                "$SYS.REQ.SERVER.PING.SUBSZ",
                f"$SYS.REQ.SERVER.{server.server_id}.VARZ",
                "$SYS.REQ.ACCOUNT.A.CONNZ",
                "$SYS.REQ.ACCOUNT.SYS.INFO",
            ):
                with pytest.raises(NoRespondersError):
                    await nc.request(subject, b"", timeout=1)
            spy = await sub(nc, "$SYS.>")
            other = await login(server, "a2")
            await other.close()
            await asyncio.sleep(0.2)
            assert spy.got == []  # no event of the server
        finally:
            await nc.close()


async def test_other_accounts_see_only_themselves(server):
    """nats-server's imports into every account: CONNZ, STATZ and USER.INFO about the
    requester's own account."""
    a = await login(server, "a2")
    sys_nc = await login(server, "sys")
    try:
        for subject in ("$SYS.REQ.SERVER.PING.CONNZ", "$SYS.REQ.ACCOUNT.PING.CONNZ"):
            connz = (await request(a, subject))["data"]
            assert [c["cid"] for c in connz["connections"]] == [a._client_id], subject
        statz = (await request(a, "$SYS.REQ.ACCOUNT.PING.STATZ"))["data"]["account_statz"]
        assert [s["acc"] for s in statz] == ["A"]
        user = (await request(a, "$SYS.REQ.USER.INFO"))["data"]
        assert user == {
            "user": "a2",
            "account": "A",
            "account_name": "A",
            "permissions": {"publish": {"deny": ["no.>"]}},
        }
        own = (await request(sys_nc, "$SYS.REQ.USER.INFO"))["data"]
        assert own == {"user": "sys", "account": "SYS", "account_name": "SYS"}
    finally:
        await a.close()
        await sys_nc.close()


async def test_an_account_cannot_forge_events(server):
    """A publish on $SYS.ACCOUNT.A.CONNECT in account A stays in A."""
    sys_nc = await login(server, "sys")
    a = await login(server, "a")
    try:
        spy = await sub(sys_nc, "$SYS.>")
        await a.publish("$SYS.ACCOUNT.A.CONNECT", b"{}")
        await a.publish(f"$SYS.SERVER.{server.server_id}.STATSZ", b"{}")
        await settle(a, sys_nc)
        assert [s for s, _ in spy.got if not s.startswith("$SYS.SERVER.")] == []
        assert all(json.loads(d).get("server") for _, d in spy.got)  # only the server's
    finally:
        await a.close()
        await sys_nc.close()


# -- events ---------------------------------------------------------------------------


async def test_connect_and_disconnect_events(server):
    sys_nc = await login(server, "sys")
    try:
        events = Inbox()
        await sys_nc.subscribe("$SYS.ACCOUNT.A.>", cb=events.cb)
        await sys_nc.flush()
        a = await login(server, "a", name="evtest")
        cid = a._client_id
        await a.publish("x", b"hello")
        await a.flush()
        await a.close()
        await events.wait(4)
        by_subject = {}
        for subject, data in events.got:
            by_subject.setdefault(subject, []).append(json.loads(data))
        connect = by_subject["$SYS.ACCOUNT.A.CONNECT"][0]
        assert connect["type"] == "io.nats.server.advisory.v1.client_connect"
        assert connect["server"]["id"] == server.server_id and len(connect["id"]) == 22
        client = connect["client"]
        assert (client["id"], client["acc"], client["user"], client["name"]) == (
            cid,
            "A",
            "a",
            "evtest",
        )
        assert (client["kind"], client["client_type"], client["name_tag"]) == (
            "Client",
            "nats",
            "A",
        )
        assert "stop" not in client
        gone = by_subject["$SYS.ACCOUNT.A.DISCONNECT"][0]
        assert gone["type"] == "io.nats.server.advisory.v1.client_disconnect"
        assert gone["client"]["id"] == cid and gone["client"]["stop"]
        assert gone["sent"]["msgs"] >= 1 and gone["sent"]["bytes"] >= 5  # what it sent
        assert gone["reason"] == "Client Closed"
        counts = [e["conns"] for e in by_subject["$SYS.ACCOUNT.A.SERVER.CONNS"]]
        assert counts == [1, 0]
    finally:
        await sys_nc.close()


async def test_mqtt_connect_and_disconnect_events(server):
    """An MQTT client of an account is announced too, with its client id; the global
    account's clients are not (nats-server ignores $G activity)."""
    sys_nc = await login(server, "sys")
    try:
        events = Inbox()
        await sys_nc.subscribe("$SYS.ACCOUNT.*.CONNECT", cb=events.cb)
        await sys_nc.subscribe("$SYS.ACCOUNT.*.DISCONNECT", cb=events.cb)
        await sys_nc.flush()
        g = await Wire.open(server.mqtt_port)
        await g.send(mp.connect("dev-g", username="g", password=b"g"))
        await g.expect(mp.connack(0, 0))
        wire = await Wire.open(server.mqtt_port)
        await wire.send(mp.connect("dev-1", username="a", password=b"a"))
        await wire.expect(mp.connack(0, 0))
        await events.wait(1)
        await wire.send(b"\xe0\x00")  # DISCONNECT
        await events.wait(2)
        subjects = [s for s, _ in events.got]
        assert subjects == ["$SYS.ACCOUNT.A.CONNECT", "$SYS.ACCOUNT.A.DISCONNECT"]
        for _, data in events.got:
            client = json.loads(data)["client"]
            assert (client["client_type"], client["client_id"], client["user"]) == (
                "mqtt",
                "dev-1",
                "a",
            )
        await wire.close()
        await g.close()
    finally:
        await sys_nc.close()


async def test_statsz_is_published_periodically(server):
    sys_nc = await login(server, "sys")
    try:
        box = await sub(sys_nc, f"$SYS.SERVER.{server.server_id}.STATSZ")
        await box.wait(1, timeout=12)  # nats-server's heartbeat: at most every 10 s
        event = json.loads(box.got[0][1])
        assert event["server"]["id"] == server.server_id and "statsz" in event
        # a STATSZ request without a reply goes to the broadcast subject
        await sys_nc.publish("$SYS.REQ.SERVER.PING.STATSZ", b"")
        await box.wait(2, timeout=2)
    finally:
        await sys_nc.close()


# -- configs --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, name",
    [
        ("accounts { A: { users: [{user: a, password: a}] } }", "$SYS"),
        ("", "$SYS"),
        ("accounts { $SYS: { users: [{user: sys, password: sys}] } }", "$SYS"),
        ("no_system_account: true\naccounts { A: { users: [{user: a, password: a}] } }", ""),
        ("system: A\naccounts { A: { users: [{user: a, password: a}] } }", "A"),
    ],
)
async def test_which_account_is_the_system_account(tmp_path, text, name):
    """nats-server: $SYS unless another is named, none with no_system_account."""
    server = await start(tmp_path, text)
    try:
        varz = await http_get_json(server.monitor.port, "/varz")
        accountz = await http_get_json(server.monitor.port, "/accountz")
        assert varz.get("system_account", "") == name
        assert accountz.get("system_account", "") == name
        assert (name in accountz["accounts"]) == bool(name)
        if name == "$SYS" and "$SYS" in text:
            nc = await login(server, "sys")
            assert len(await gather(nc, "$SYS.REQ.SERVER.PING")) == 1
            await nc.close()
    finally:
        await server.shutdown()


def test_system_account_config_errors(tmp_path):
    path = write_conf(tmp_path, "accounts { A: {} }\nsystem_account: NOPE\n")
    opts, _ = load_options(path)
    assert startup_errors(opts) == ["error resolving system account: account missing"]
    path = write_conf(tmp_path, "system_account: 12\n", "b.conf")
    with pytest.raises(ConfigError) as err:
        load_options(path)
    assert "system account name must be a string" in str(err.value)


async def test_accstatz_and_accountz_show_the_system_account(server):
    nc = await login(server, "sys")
    try:
        port = server.monitor.port
        statz = await http_get_json(port, "/accstatz")
        assert [s["acc"] for s in statz["account_statz"]] == ["SYS"]
        detail = (await http_get_json(port, "/accountz?acc=SYS"))["account_detail"]
        assert detail["is_system"] is True
        assert {e["subject"] for e in detail["exports"]} == {
            "$SYS.REQ.ACCOUNT.*.CONNZ",
            "$SYS.REQ.ACCOUNT.*.STATZ",
            "$SYS.DEBUG.SUBSCRIBERS",
            "$SYS.REQ.USER.*.INFO",
        }
        a_detail = (await http_get_json(port, "/accountz?acc=A"))["account_detail"]
        assert "is_system" not in a_detail and len(a_detail["imports"]) == 4
    finally:
        await nc.close()


async def test_reload_keeps_the_system_services(tmp_path):
    server = await start(tmp_path, SYS_CONF)
    try:
        write_conf(
            tmp_path,
            SYS_CONF.replace("A: {", "B: { users: [{user: b, password: b}] }\n  A: {"),
        )
        assert server.reload()
        nc = await login(server, "sys")
        b = await login(server, "b")
        try:
            assert len(await gather(nc, "$SYS.REQ.SERVER.PING")) == 1
            user = (await request(b, "$SYS.REQ.USER.INFO"))["data"]
            assert user["account"] == "B"
            with pytest.raises((NoRespondersError, NatsTimeout)):
                await b.request("$SYS.REQ.SERVER.PING.VARZ", b"", timeout=0.5)
        finally:
            await b.close()
            await nc.close()
    finally:
        await server.shutdown()
