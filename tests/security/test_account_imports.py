"""Stream and service exports/imports between accounts (nats-server's config syntax),
positive and negative: what is imported arrives mapped and only in the importing
account; a service's reply goes back to the requester and nowhere else; what is not
exported to an account cannot be imported (the start is refused)."""

from __future__ import annotations

import asyncio

import pytest

from hybridbus.config import ConfigError
from hybridbus.config.load import load_options

from .accounts_env import Inbox, login, settle, start, sub, write_conf

IMPORTS = """
accounts {
  A: {
    users: [{user: a, password: a}, {user: a2, password: a2}]
    exports: [
      {stream: "a.>"}
      {stream: "private.>", accounts: [B]}
      {service: "svc.>", accounts: [B]}
      {service: "multi.>", accounts: [B], response_type: stream, response_threshold: "1s"}
    ]
  }
  B: {
    users: [{user: b, password: b}, {user: b2, password: b2}]
    imports: [
      {stream: {account: A, subject: "a.>"}, prefix: "fromA"}
      {stream: {account: A, subject: "private.*"}, to: "mine.*"}
      {service: {account: A, subject: "svc.x"}, to: "local.x"}
      {service: {account: A, subject: "svc.*.w"}, to: "wild.*"}
      {service: {account: A, subject: "multi.q"}}
    ]
  }
  C: { users: [{user: c, password: c}] }
}
"""


@pytest.fixture
async def server(tmp_path):
    server = await start(tmp_path, IMPORTS)
    yield server
    await server.shutdown()


async def test_stream_import_with_prefix(server):
    a, b, c = [await login(server, u) for u in ("a", "b", "c")]
    in_b, in_c = await sub(b, ">"), await sub(c, ">")
    await a.publish("a.one", b"1")
    await a.publish("a.two.three", b"2")
    await a.publish("other", b"no")  # not exported
    await in_b.wait(2)
    await settle(a, b, c)
    assert in_b.got == [("fromA.a.one", b"1"), ("fromA.a.two.three", b"2")]
    assert in_c.got == []
    # only the importer's space: B publishing a.one stays in B (nobody in A sees it)
    in_a = await sub(a, ">")
    await b.publish("a.one", b"back")
    await settle(a, b)
    assert ("a.one", b"back") not in in_a.got
    for nc in (a, b, c):
        await nc.close()


async def test_stream_import_with_to_mapping(server):
    a, b = await login(server, "a"), await login(server, "b")
    mine = await sub(b, "mine.*")
    await a.publish("private.k", b"v")
    await a.publish("private.k.deeper", b"not imported")  # private.* is one token
    await mine.wait(1)
    await settle(a, b)
    assert mine.got == [("mine.k", b"v")]
    await a.close()
    await b.close()


async def test_service_import_request_reply(server):
    a, b = await login(server, "a"), await login(server, "b")
    seen: list = []

    async def responder(msg):
        seen.append((msg.subject, msg.reply))
        await msg.respond(b"answer:" + msg.data)

    await a.subscribe("svc.x", cb=responder)
    await a.flush(1)
    reply = await b.request("local.x", b"q", timeout=2)
    assert reply.data == b"answer:q"
    # the responder saw its own subject and a reply subject of its own account
    assert seen[0][0] == "svc.x" and seen[0][1].startswith("_R_.")
    await a.close()
    await b.close()


async def test_service_import_with_wildcards(server):
    a, b = await login(server, "a"), await login(server, "b")

    async def responder(msg):
        await msg.respond(msg.subject.encode())

    await a.subscribe("svc.*.w", cb=responder)
    await a.flush(1)
    reply = await b.request("wild.t1", b"", timeout=2)
    assert reply.data == b"svc.t1.w"
    await a.close()
    await b.close()


async def test_service_reply_reaches_only_the_requester(server):
    """A third party cannot see the reply, and cannot answer in the requester's
    place: C has no path at all, A's other users and B's other users see neither the
    _R_ subject nor the requester's inbox, and a Singleton reply path closes after one
    answer (a second answer, or a forged one later, reaches nobody)."""
    a, a2, b, b2, c = [await login(server, u) for u in ("a", "a2", "b", "b2", "c")]
    in_c, in_b2 = await sub(c, ">"), await sub(b2, "_R_.>")
    answered = asyncio.Event()
    reply_subjects: list[str] = []

    async def responder(msg):
        reply_subjects.append(msg.reply)
        await a.publish(msg.reply, b"first")
        await a.publish(msg.reply, b"second")  # Singleton: dropped
        answered.set()

    await a.subscribe("svc.x", cb=responder)
    await a.flush(1)
    inbox = b.new_inbox()
    replies = await sub(b, inbox)
    await b.publish("local.x", b"q", reply=inbox)
    await asyncio.wait_for(answered.wait(), 2)
    await settle(a, b)
    # a third party in A who learns the _R_ subject answers after it is spent
    await a2.publish(reply_subjects[0], b"forged")
    # C and B2 publish to the requester's inbox subject: their own spaces (C) or a
    # plain same-account publish B's users could always make (B2): C's never arrives
    await c.publish(inbox, b"from-c")
    await settle(a, a2, b, b2, c)
    assert replies.got == [(inbox, b"first")]
    assert [s for s, _ in in_c.got] == [inbox]  # C only sees its own publish
    assert in_b2.got == []
    for nc in (a, a2, b, b2, c):
        await nc.close()


async def test_streamed_responses_until_the_threshold(server):
    a, b = await login(server, "a"), await login(server, "b")
    replies: list = []

    async def responder(msg):
        for i in range(3):
            await a.publish(msg.reply, b"%d" % i)
        replies.append(msg.reply)

    await a.subscribe("multi.q", cb=responder)
    await a.flush(1)
    inbox = b.new_inbox()
    box = await sub(b, inbox)
    await b.publish("multi.q", b"", reply=inbox)
    await box.wait(3)
    assert [d for _, d in box.got] == [b"0", b"1", b"2"]
    await asyncio.sleep(1.2)  # past response_threshold: the path is gone
    await a.publish(replies[0], b"late")
    await settle(a, b)
    assert len(box.got) == 3
    await a.close()
    await b.close()


async def test_account_without_the_import_has_no_path(server):
    a, c = await login(server, "a"), await login(server, "c")
    in_c = await sub(c, ">")
    hits = Inbox()
    await a.subscribe("svc.x", cb=hits.cb)
    await a.flush(1)
    await c.publish("local.x", b"q", reply="r")
    await c.publish("svc.x", b"q", reply="r")
    await a.publish("a.one", b"1")
    await settle(a, c)
    assert hits.got == []
    assert [s for s, _ in in_c.got] == ["local.x", "svc.x"]  # its own, nothing else
    await a.close()
    await c.close()


async def test_import_cycle_delivers_once(tmp_path):
    text = """
accounts {
  A: { users: [{user: a, password: a}], exports: [{stream: "x"}],
       imports: [{stream: {account: B, subject: "x"}}] }
  B: { users: [{user: b, password: b}], exports: [{stream: "x"}],
       imports: [{stream: {account: A, subject: "x"}}] }
}
"""
    server = await start(tmp_path, text)
    try:
        a, b = await login(server, "a"), await login(server, "b")
        in_a, in_b = await sub(a, "x"), await sub(b, "x")
        await a.publish("x", b"1")
        await settle(a, b)
        await asyncio.sleep(0.1)
        assert in_a.got == [("x", b"1")]  # its own copy; the one back from B is not taken
        assert in_b.got == [("x", b"1")]
        await a.close()
        await b.close()
    finally:
        await server.shutdown()


BAD_IMPORTS = [
    (
        'A: { exports: [{stream: "a.>"}] }, B: { imports: [{stream: {account: A, subject: "b.>"}}] }',
        'Error adding stream import "b.>": stream import not authorized',
    ),
    (
        'A: { exports: [{stream: "a.>", accounts: [C]}] }, C: {}, '
        'B: { imports: [{stream: {account: A, subject: "a.>"}}] }',
        'Error adding stream import "a.>": stream import not authorized',
    ),
    (
        'A: { exports: [{stream: "a.>"}] }, B: { imports: [{service: {account: A, subject: "a.x"}}] }',
        'Error adding service import "a.x": service import not authorized',
    ),
    (
        'B: { imports: [{stream: {account: Z, subject: "a.>"}}] }',
        '"Z" account not defined for stream import',
    ),
    (
        'A: { exports: [{stream: "a.>", accounts: [D]}] }',
        '"D" account not defined for stream export',
    ),
    ("$G: {}", '"$G" is a Reserved Account'),
    (
        'A: { exports: [{stream: "a.>"}] }, '
        'B: { imports: [{stream: {account: A, subject: "a.>"}, prefix: "p", to: "x"}] }',
        "Stream import can not have a 'prefix' and a 'to' property",
    ),
]


@pytest.mark.parametrize("accounts, line", BAD_IMPORTS)
def test_what_is_not_exported_cannot_be_imported(tmp_path, accounts, line):
    path = write_conf(tmp_path, f"accounts {{ {accounts} }}\n")
    with pytest.raises(ConfigError) as err:
        load_options(path)
    assert len(err.value.lines) == 1, err.value.lines
    assert line in err.value.lines[0]


async def test_monitoring_shows_imports_exports(server):
    import json
    import urllib.request

    port = server.monitor.port

    def get(path):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
            return json.load(r)

    b = await login(server, "b")
    names = (await asyncio.to_thread(get, "/accountz"))["accounts"]
    assert set(names) == {"$G", "A", "B", "C", "$SYS"}
    detail = (await asyncio.to_thread(get, "/accountz?acc=B"))["account_detail"]
    assert detail["client_connections"] == 1
    # its own imports, and nats-server's four of the system account's services
    assert {i["local_subject"] for i in detail["imports"] if i["account"] != "$SYS"} == {
        "fromA.a.>",
        "mine.*",
        "local.x",
        "wild.*",
        "multi.q",
    }
    exports = (await asyncio.to_thread(get, "/accountz?acc=A"))["account_detail"]["exports"]
    assert {"subject": "private.>", "type": "stream", "approved_accounts": ["B"]} in exports
    conns = (await asyncio.to_thread(get, "/connz?auth=1&acc=B"))["connections"]
    assert [(c["account"], c["authorized_user"]) for c in conns] == [("B", "b")]
    statz = (await asyncio.to_thread(get, "/accstatz"))["account_statz"]
    assert [(s["acc"], s["conns"]) for s in statz] == [("B", 1)]
    subs = await asyncio.to_thread(get, "/subsz?acc=B&subs=1")
    assert {s["account"] for s in subs["subscriptions_list"]} == {"B"}
    await b.close()
