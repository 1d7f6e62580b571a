"""A read of requests to one subject (``PUB <subject> <inbox> <size>`` one after another,
each with its own reply, as a JetStream publisher with many in flight writes them): a
plain publisher's run goes to the router at once (nats/connection.py ``_request_run``),
which hands it whole to a stream's capture when that is the subject's one receiver
(``Server.route_requests``, ``JetStream.deliver_requests``, capture.py
``on_requests``). Everything a request's route does one by one must still happen:
each PubAck in publish order, refused ones refused in order, other subscribers of the
subject, no responders, permissions, mappings, and the order of everything else in the
read."""

from __future__ import annotations

import json

import nats

from hybridbus.core.flow import RUN_WORK
from hybridbus.options import AuthOptions, Permissions, User
from tests.helpers.wire import Wire, nats_connect
from tests.jetstream import stream_env
from tests.jetstream.consumer_env import frame
from tests.security.accounts_env import start as start_with_config

senv = stream_env.senv  # the fixture


def requests(subject: bytes, replies: list[bytes], prefix: bytes = b"m") -> bytes:
    """One write of a request per reply, payload ``<prefix><i>``."""
    return b"".join(
        b"PUB %s %s %d\r\n%s\r\n" % (subject, r, len(prefix) + len(b"%d" % i), prefix + b"%d" % i)
        for i, r in enumerate(replies)
    )


def inboxes(n: int, start: int = 0) -> list[bytes]:
    return [b"r.%d" % i for i in range(start, start + n)]


async def answers(w: Wire, n: int) -> list[tuple[bytes, dict | bytes]]:
    """The next ``n`` messages on ``w``: (reply subject, the PubAck's JSON or the status)."""
    out = []
    for _ in range(n):
        f = await frame(w)
        out.append((f.subject, f.status if f.hdr else json.loads(f.data)))
    return out


def connection_of(server, w: Wire):
    """The server's side of a raw wire (the client whose port is the wire's own)."""
    port = w.writer.get_extra_info("sockname")[1]
    (conn,) = [c for c in server.clients.values() if c.port == port]
    return conn


async def stored(senv, stream: str, seq: int) -> tuple[str, bytes]:
    import base64

    doc = await senv.api(f"$JS.API.STREAM.MSG.GET.{stream}", {"seq": seq})
    return doc["message"]["subject"], base64.b64decode(doc["message"]["data"])


async def test_a_run_of_requests_in_one_write_is_acked_in_order(senv):
    await senv.js.add_stream(name="S", subjects=["s.>"])
    w = await senv.wire()
    await w.send(b"SUB r.> 1\r\n")
    replies = inboxes(300)
    data = requests(b"s.a", replies)
    await w.send(data)
    got = await answers(w, 300)
    assert got == [(r, {"stream": "S", "seq": k + 1}) for k, r in enumerate(replies)]
    await w.expect_nothing(0.2)
    assert await stored(senv, "S", 1) == ("s.a", b"m0")
    assert await stored(senv, "S", 300) == ("s.a", b"m299")
    # every message counted as a route counts it
    conn = connection_of(senv.server, w)
    assert conn.in_msgs == 300
    assert conn.in_bytes == sum(len(b"m%d" % i) for i in range(300))


async def test_route_requests_takes_a_captured_run_whole_and_nothing_else(senv):
    # The router's decision, asked directly with a real connection as the origin.
    await senv.js.add_stream(name="S", subjects=["s.>"])
    w = await senv.wire()
    await w.send(b"SUB r.> 1\r\nSUB other 2\r\nPING\r\n")
    await w.expect(b"PONG\r\n")
    server = senv.server
    conn = connection_of(server, w)
    replies = [r.decode() for r in inboxes(5)]
    payloads = [b"p%d" % i for i in range(5)]
    seq, work = server.route_seq, server.work
    assert server.route_requests(conn, "s.a", replies, payloads) == 5
    assert (server.route_seq - seq, server.work - work) == (5, 5)
    server.flush()
    got = await answers(w, 5)
    assert got == [(r.encode(), {"stream": "S", "seq": k + 1}) for k, r in enumerate(replies)]
    # no receiver, a core subscriber, a capture with another receiver: not taken
    assert server.route_requests(conn, "nobody", replies, payloads) == 0
    assert server.route_requests(conn, "other", replies, payloads) == 0
    await w.send(b"SUB s.b 3\r\nPING\r\n")
    await w.expect(b"PONG\r\n")
    assert server.route_requests(conn, "s.b", replies, payloads) == 0
    server.flush()
    await w.expect_nothing(0.2)
    # a run longer than a run's work is cut there (the read loop routes the rest)
    many = [f"r.x.{i}" for i in range(RUN_WORK + 5)]
    assert server.route_requests(conn, "s.a", many, [b"z"] * len(many)) == RUN_WORK
    server.flush()
    assert await answers(w, 1) == [(b"r.x.0", {"stream": "S", "seq": 6})]
    info = await senv.js.stream_info("S")
    assert info.state.messages == 5 + RUN_WORK


async def test_a_run_mixed_with_other_subjects_and_publishes_keeps_its_order(senv):
    await senv.js.add_stream(name="S", subjects=["s.>"])
    await senv.js.add_stream(name="T", subjects=["t.>"])
    w = await senv.wire()
    await w.send(b"SUB r.> 1\r\n")
    hdr = b"NATS/1.0\r\nNats-Expected-Last-Sequence: 7\r\n\r\n"
    data = requests(b"s.a", inboxes(2, 0), b"a")
    data += requests(b"t.x", inboxes(3, 2), b"t")
    data += requests(b"s.b", inboxes(2, 5), b"b")
    data += b"PUB s.b 2\r\nnr\r\n"  # no reply: stored, no PubAck
    data += requests(b"s.b", inboxes(2, 7), b"c")
    data += b"HPUB s.a r.9 %d %d\r\n%sh\r\n" % (len(hdr), len(hdr) + 1, hdr)  # seq 7 is last: 8
    data += requests(b"s.a", inboxes(3, 10), b"d")
    await w.send(data)
    got = await answers(w, 13)
    s_seqs = [(b"r.%d" % k, {"stream": "S", "seq": seq}) for k, seq in ((0, 1), (1, 2))]
    t_seqs = [(b"r.%d" % k, {"stream": "T", "seq": k - 1}) for k in (2, 3, 4)]
    later = [(b"r.5", 3), (b"r.6", 4), (b"r.7", 6), (b"r.8", 7)]
    s_later = [(r, {"stream": "S", "seq": seq}) for r, seq in later]
    hpub = (b"r.9", {"stream": "S", "seq": 8})
    tail = [(b"r.%d" % k, {"stream": "S", "seq": k - 1}) for k in (10, 11, 12)]
    # each stream's PubAcks in publish order (as from nats-server, two streams' answers
    # may interleave otherwise: T's batch can be acked before S's)
    t_got = [a for a in got if a[1].get("stream") == "T"]
    assert t_got == t_seqs
    assert [a for a in got if a not in t_got] == s_seqs + s_later + [hpub] + tail
    assert [await stored(senv, "S", k) for k in (2, 3, 5, 6, 8, 11)] == [
        ("s.a", b"a1"),
        ("s.b", b"b0"),
        ("s.b", b"nr"),
        ("s.b", b"c0"),
        ("s.a", b"h"),
        ("s.a", b"d2"),
    ]


async def test_a_refusal_inside_a_read_is_answered_in_its_place(senv):
    # nats-server answers a stream's publishes in order, a refused one included
    # (checked with 2.15.1): the refusal waits for the PubAcks of the batch before it.
    await senv.js.add_stream(name="S", subjects=["s.>"])
    w = await senv.wire()
    await w.send(b"SUB r.> 1\r\n")
    hdr = b"NATS/1.0\r\nNats-Expected-Last-Sequence: 5\r\n\r\n"
    data = requests(b"s.a", inboxes(2, 0), b"a")
    data += b"HPUB s.a r.2 %d %d\r\n%sh\r\n" % (len(hdr), len(hdr) + 1, hdr)
    data += requests(b"s.a", inboxes(2, 3), b"b")
    data += b"HPUB s.a r.5 %d %d\r\n%sh\r\n" % (len(hdr), len(hdr) + 1, hdr)
    await w.send(data)
    refused = {
        "error": {"code": 400, "err_code": 10071, "description": "wrong last sequence: %d"},
        "stream": "S",
        "seq": 0,
    }
    first = json.loads(json.dumps(refused).replace("%d", "2"))
    second = json.loads(json.dumps(refused).replace("%d", "4"))
    assert await answers(w, 6) == [
        (b"r.0", {"stream": "S", "seq": 1}),
        (b"r.1", {"stream": "S", "seq": 2}),
        (b"r.2", first),
        (b"r.3", {"stream": "S", "seq": 3}),
        (b"r.4", {"stream": "S", "seq": 4}),
        (b"r.5", second),
    ]
    # and a header check's refusal (Nats-Expected-Stream) too
    bad = b"NATS/1.0\r\nNats-Expected-Stream: T\r\n\r\n"
    data = requests(b"s.a", inboxes(2, 6), b"c")
    data += b"HPUB s.a r.8 %d %d\r\n%sh\r\n" % (len(bad), len(bad) + 1, bad)
    await w.send(data)
    got = await answers(w, 3)
    assert [r for r, _ in got] == [b"r.6", b"r.7", b"r.8"]
    assert got[2][1]["error"]["err_code"] == 10060


async def test_another_subscriber_of_the_subject_gets_every_request(senv):
    await senv.js.add_stream(name="S", subjects=["s.>"])
    w = await senv.wire()
    watcher = await senv.wire()
    await watcher.send(b"SUB s.a 5\r\nPING\r\n")
    await watcher.expect(b"PONG\r\n")
    await w.send(b"SUB r.> 1\r\n")
    replies = inboxes(40)
    await w.send(requests(b"s.a", replies))
    seen = [await frame(watcher) for _ in range(40)]
    assert [(f.subject, f.sid, f.reply, f.data) for f in seen] == [
        (b"s.a", b"5", r, b"m%d" % k) for k, r in enumerate(replies)
    ]
    got = await answers(w, 40)
    assert got == [(r, {"stream": "S", "seq": k + 1}) for k, r in enumerate(replies)]
    # and once it has gone (an auto-unsubscribe in the middle of a run), the stream
    # alone takes the rest
    await watcher.send(b"UNSUB 5 43\r\nPING\r\n")
    await watcher.expect(b"PONG\r\n")
    more = inboxes(10, 40)
    await w.send(requests(b"s.a", more, b"n"))
    seen = [await frame(watcher) for _ in range(3)]
    assert [f.reply for f in seen] == more[:3]
    got = await answers(w, 10)
    assert got == [(r, {"stream": "S", "seq": 41 + k}) for k, r in enumerate(more)]
    await watcher.expect_nothing(0.2)


async def test_discard_new_refuses_the_run_past_the_limit_in_order(senv):
    await senv.js.add_stream(name="L", subjects=["l.>"], max_msgs=3, discard="new")
    w = await senv.wire()
    await w.send(b"SUB r.> 1\r\n")
    replies = inboxes(6)
    await w.send(requests(b"l.a", replies))
    got = await answers(w, 6)
    refused = {
        "error": {"code": 503, "err_code": 10077, "description": "maximum messages exceeded"},
        "stream": "L",
        "seq": 0,
    }
    assert got == [(r, {"stream": "L", "seq": k + 1}) for k, r in enumerate(replies[:3])] + [
        (r, refused) for r in replies[3:]
    ]
    assert (await senv.js.stream_info("L")).state.messages == 3


async def test_a_run_nobody_receives_gets_no_responders_each(senv):
    await senv.js.add_stream(name="S", subjects=["s.>"])
    w = await senv.wire()  # headers and no_responders
    await w.send(b"SUB r.> 1\r\n")
    replies = inboxes(8)
    await w.send(requests(b"nobody.here", replies) + requests(b"s.a", inboxes(2, 8)))
    got = await answers(w, 10)
    assert got[:8] == [(r, b"NATS/1.0 503") for r in replies]
    assert got[8:] == [(b"r.8", {"stream": "S", "seq": 1}), (b"r.9", {"stream": "S", "seq": 2})]
    conn = connection_of(senv.server, w)
    assert conn.in_msgs == 10


def _user(name: str, **perms) -> User:
    return User(name, "pw", Permissions(**perms))


async def test_publish_permissions_apply_to_every_request_of_a_run(server_factory):
    server = await server_factory(
        auth=AuthOptions(users=[User("admin", "pw"), _user("some", publish_allow=["s.a"])])
    )
    nc = await nats.connect(f"nats://127.0.0.1:{server.nats_port}", user="admin", password="pw")
    js = nc.jetstream(timeout=2)
    await js.add_stream(name="S", subjects=["s.>"])
    creds = b'{"verbose":false,"pedantic":false,"user":"some","pass":"pw"}'
    w = await nats_connect(server.nats_port, creds)
    await w.send(b"SUB r.> 1\r\n")
    await w.send(requests(b"s.b", inboxes(4)) + requests(b"s.a", inboxes(3, 4)) + b"PING\r\n")
    denied = b"-ERR 'Permissions Violation for Publish to \"s.b\"'\r\n"
    for _ in range(4):
        await w.expect(denied)
    got = await answers(w, 3)
    assert got == [(b"r.%d" % (4 + k), {"stream": "S", "seq": k + 1}) for k in range(3)]
    info = await js.stream_info("S")
    assert info.state.messages == 3 and info.state.last_seq == 3  # none of s.b stored
    await w.close()
    await nc.close()


async def test_a_verbose_client_gets_an_ok_per_request(senv):
    await senv.js.add_stream(name="S", subjects=["s.>"])
    w = await nats_connect(senv.port, b'{"verbose":true,"pedantic":true}')
    await w.send(b"SUB r.> 1\r\n")
    await w.expect(b"+OK\r\n")
    await w.send(requests(b"s.a", inboxes(4)) + b"PING\r\n")
    for _ in range(4):
        await w.expect(b"+OK\r\n")
    await w.expect(b"PONG\r\n")
    got = await answers(w, 4)
    assert got == [(b"r.%d" % k, {"stream": "S", "seq": k + 1}) for k in range(4)]
    await w.close()


async def test_a_run_in_an_account_with_mappings(tmp_path):
    # a mapping may rename the subject: such an account's requests go the general way
    server = await start_with_config(tmp_path, 'mappings { "s.a": "s.m" }')
    try:
        nc = await nats.connect(f"nats://127.0.0.1:{server.nats_port}")
        js = nc.jetstream(timeout=2)
        await js.add_stream(name="S", subjects=["s.>"])
        w = await nats_connect(server.nats_port, b'{"verbose":false,"pedantic":false}')
        await w.send(b"SUB r.> 1\r\n")
        await w.send(requests(b"s.a", inboxes(3)))
        got = await answers(w, 3)
        assert got == [(b"r.%d" % k, {"stream": "S", "seq": k + 1}) for k in range(3)]
        msg = await js.get_msg("S", 3)
        assert (msg.subject, msg.data) == ("s.m", b"m2")
        await w.close()
        await nc.close()
    finally:
        await server.shutdown()


def test_the_parser_reads_a_request_line_as_before():
    # codec/nats.py takes ``PUB <subject> <reply> <size>`` with a known subject by a
    # shorter way; any other spelling goes the general way, to the same ops and errors.
    from hybridbus.codec.nats import OP_ERROR, OP_PUB, Parser

    p = Parser(max_control_line=64, max_payload=8)
    data = b"PUB s.a r.1 2\r\nhi\r\n"  # first: the subject is new
    data += b"PUB s.a r.2 2\r\nok\r\n"  # now known: the short way
    data += b"PUB\ts.a  r.3\t2\r\nab\r\npub s.a r.4 1\r\nx\r\n"
    data += b"PUB s.a r\xff 1\r\ny\r\nPUB s.a r.6 02\r\nzz\r\nPUB s.a r.7 0\r\n\r\n"
    assert p.feed(data) == [
        (OP_PUB, "s.a", "r.1", b"hi"),
        (OP_PUB, "s.a", "r.2", b"ok"),
        (OP_PUB, "s.a", "r.3", b"ab"),
        (OP_PUB, "s.a", "r.4", b"x"),
        (OP_PUB, "s.a", "r\udcff", b"y"),  # not UTF-8: kept byte for byte (surrogateescape)
        (OP_PUB, "s.a", "r.6", b"zz"),
        (OP_PUB, "s.a", "r.7", b""),
    ]
    assert p.feed(b"PUB s.a r.8 9\r\n") == [
        (OP_ERROR, "Maximum Payload Violation", "Maximum Message Payload Exceeded")
    ]
    p = Parser(max_control_line=64)
    p.feed(b"PUB s.a r.1 1\r\nx\r\n")
    long = b"PUB s.a %s 1\r\nx\r\n" % (b"r" * 70)
    assert p.feed(long) == [
        (OP_ERROR, "maximum control line exceeded", "Maximum Control Line Exceeded")
    ]
    p = Parser()
    p.feed(b"PUB s.a r.1 1\r\nx\r\n")
    assert p.feed(b" PUB s.a r.2 1\r\nx\r\n") == [
        (OP_ERROR, "Unknown Protocol Operation", "Protocol Violation")
    ]
    p = Parser()
    p.feed(b"PUB s.a r.1 1\r\nx\r\n")
    assert p.feed(b"PUB s.a r.2 1\r\nxy\r\n") == [
        (OP_ERROR, "Unknown Protocol Operation", "Protocol Violation")
    ]


async def test_an_empty_line_after_a_run_of_acks_is_an_unknown_op(nats_server):
    # (the parser's ack run test once read parts[-1] of an empty line: an IndexError)
    w = await nats_connect(nats_server.nats_port)
    await w.send(b"PUB $JS.ACK.S.d.1.1.1.1.0 0\r\n\r\nPUB $JS.ACK.S.d.1.2.2.1.0 0\r\n\r\n\r\n")
    assert await w.expect_closed() == b"-ERR 'Unknown Protocol Operation'\r\n"


ACCOUNTS = """
accounts {
  A: { jetstream: enabled, users: [{user: a, password: a}] }
  B: { jetstream: enabled, users: [{user: b, password: b}] }
}
"""


async def test_a_run_reaches_its_own_accounts_stream_only(tmp_path):
    # B's stream captures s.>; A's run to s.a must not reach it (the run is matched in
    # the publisher's account), and once A has a stream of its own, only A's stores it.
    server = await start_with_config(tmp_path, ACCOUNTS)
    try:
        ncb = await nats.connect(f"nats://127.0.0.1:{server.nats_port}", user="b", password="b")
        jsb = ncb.jetstream(timeout=2)
        await jsb.add_stream(name="S", subjects=["s.>"])
        creds = b'{"verbose":false,"pedantic":false,"headers":true,"no_responders":true,'
        w = await nats_connect(server.nats_port, creds + b'"user":"a","pass":"a"}')
        await w.send(b"SUB r.> 1\r\n")
        await w.send(requests(b"s.a", inboxes(3)))
        got = await answers(w, 3)
        assert got == [(b"r.%d" % k, b"NATS/1.0 503") for k in range(3)]
        assert (await jsb.stream_info("S")).state.messages == 0
        nca = await nats.connect(f"nats://127.0.0.1:{server.nats_port}", user="a", password="a")
        await nca.jetstream(timeout=2).add_stream(name="S", subjects=["s.>"])
        await w.send(requests(b"s.a", inboxes(3, 3)))
        got = await answers(w, 3)
        assert got == [(b"r.%d" % (k + 3), {"stream": "S", "seq": k + 1}) for k in range(3)]
        assert (await jsb.stream_info("S")).state.messages == 0
        await w.close()
        await nca.close()
        await ncb.close()
    finally:
        await server.shutdown()
