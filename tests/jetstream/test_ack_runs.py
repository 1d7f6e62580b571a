"""A read of many acks (``PUB $JS.ACK.<...> 0`` one after another, as a pull consumer
acks its batch): the parser gives them as one run (codec ``OP_ACKS``) and the router
hands the run to the engine in one call (``Server.route_acks``). Everything a single
ack's route does must still happen: other subscribers of the ack subjects get them,
permissions refuse them, a verbose client gets its +OKs, an ack sent as a request is
answered, other bodies (-NAK, +WPI, +TERM) and other publishes in the same read keep
their order, and an account's acks reach its own JetStream only.

The ``env`` tests run against nats-server 2.15.1 with HB_REFERENCE=1 (consumer_env.py)."""

from __future__ import annotations

import nats

from hybridbus.options import AuthOptions, Permissions, User
from tests.helpers.wire import Wire, nats_connect
from tests.jetstream import consumer_env
from tests.jetstream.consumer_env import frame, pull
from tests.security.accounts_env import start as start_with_config

env = consumer_env.env  # the fixture


def acks(replies: list[bytes], body: bytes = b"") -> bytes:
    """One write acking every reply subject (``body``: the ack kind)."""
    return b"".join(b"PUB %s %d\r\n%s\r\n" % (r, len(body), body) for r in replies)


async def fetch(w: Wire, n: int, stream: str = "S", consumer: str = "d") -> list[bytes]:
    """Pull ``n`` on a raw wire subscribed to ``inb.>``; the ack reply subjects."""
    await pull(w, stream, consumer, b"%d" % n)
    return [(await frame(w)).reply for _ in range(n)]


async def synced(w: Wire, data: bytes) -> list[bytes]:
    """Send ``data`` and a PING; the lines before the PONG (the acks were applied in
    the read that answered the PING, or an earlier one)."""
    await w.send(data + b"PING\r\n")
    lines = []
    while True:
        line = (await w.read_line(2.0)).rstrip(b"\r\n")
        if line == b"PONG":
            return lines
        lines.append(line)


async def setup(env, n: int, **cfg) -> Wire:
    await env.add_stream("S", ["s.>"])
    await env.publish("s.a", n)
    await env.create("S", {"durable_name": "d", "ack_policy": "explicit", **cfg})
    w = await env.wire()
    await w.send(b"SUB inb.> 1\r\nSUB rep.> 2\r\n")
    return w


async def pending(env, stream: str = "S", consumer: str = "d") -> tuple[int, int]:
    info = await env.info(stream, consumer)
    return info["num_ack_pending"], info["ack_floor"]["stream_seq"]


async def test_a_read_of_acks_acks_every_message(env):
    w = await setup(env, 60)
    replies = await fetch(w, 50)
    assert await synced(w, acks(replies)) == []
    assert await pending(env) == (0, 50)
    # and a fetch's acks sent by nats-py, as it writes them
    sub = await env.js.pull_subscribe_bind("d", "S")
    msgs = await sub.fetch(10, timeout=2)
    for m in msgs:
        await m.ack()
    await env.nc.flush()
    assert await pending(env) == (0, 60)


async def test_other_subscribers_of_the_ack_subjects_still_get_them(env):
    w = await setup(env, 5)
    replies = await fetch(w, 5)
    watcher = await env.wire()
    await synced(
        watcher, b"SUB $JS.ACK.> 7\r\nSUB $JS.ACK.S.d.1.3.> 8\r\nSUB $JS.ACK.*.d.> q 9\r\n"
    )
    await synced(w, acks(replies))
    got = [await frame(watcher) for _ in range(11)]
    assert [f.subject for f in got if f.sid == b"7"] == replies
    assert [f.subject for f in got if f.sid == b"8"] == [replies[2]]
    assert [f.subject for f in got if f.sid == b"9"] == replies  # the queue group's one member
    assert await pending(env) == (0, 5)


async def test_an_auto_unsubscribe_in_the_middle_of_a_run(env):
    w = await setup(env, 6)
    replies = await fetch(w, 6)
    watcher = await env.wire()
    await synced(watcher, b"SUB $JS.ACK.> 7\r\nUNSUB 7 2\r\n")
    await synced(w, acks(replies))
    assert [(await frame(watcher)).subject for _ in range(2)] == replies[:2]
    await watcher.expect_nothing(0.2)
    assert await pending(env) == (0, 6)


async def test_double_acks_and_other_bodies_inside_a_run(env):
    w = await setup(env, 6)
    r = await fetch(w, 6)
    data = acks(r[:2])
    data += b"PUB %s rep.1 0\r\n\r\n" % r[1]  # a double ack, sent as a request
    data += acks([r[2]], b"-NAK") + acks([r[3]]) + acks([r[4]], b"+WPI")
    data += acks([r[5]], b"+TERM") + acks([r[4]]) + b"PUB %s rep.2 0\r\n\r\n" % r[4]
    await synced(w, data)
    answers = [await frame(w) for _ in range(2)]
    assert [(f.subject, f.data) for f in answers] == [(b"rep.1", b""), (b"rep.2", b"")]
    info = await env.info("S", "d")
    assert info["num_ack_pending"] == 1 and info["ack_floor"]["stream_seq"] == 2
    again = await fetch(w, 1)  # the NAKed one comes again
    assert again[0].split(b".")[4:6] == [b"2", b"3"]  # delivered twice, stream seq 3
    await synced(w, acks(again))
    assert await pending(env) == (0, 6)


async def test_acks_interleaved_with_other_publishes_keep_their_order(env):
    w = await setup(env, 4)
    replies = await fetch(w, 4)
    other = await env.wire()
    await synced(other, b"SUB other.> 5\r\n")
    data = acks(replies[:1]) + b"PUB other.1 1\r\na\r\n" + acks(replies[1:3])
    data += b"PUB s.b 1\r\nz\r\n" + b"PUB other.2 1\r\nb\r\n" + acks(replies[3:])
    await synced(w, data)
    got = [await frame(other) for _ in range(2)]
    assert [(f.subject, f.data) for f in got] == [(b"other.1", b"a"), (b"other.2", b"b")]
    assert await pending(env) == (0, 4)
    assert (await env.js.stream_info("S")).state.messages == 5  # s.b was captured


async def test_a_verbose_and_pedantic_client_gets_every_answer(env):
    await setup(env, 3)
    w = await nats_connect(env.port, b'{"verbose":true,"pedantic":true,"headers":true}')
    await w.send(b"SUB inb.> 1\r\n")
    await w.expect(b"+OK\r\n")
    replies = await fetch(w, 3)
    bad = b"$JS.ACK.S.d.1..2.3.4"  # an empty token: not a valid subject
    lines = await synced(w, acks(replies[:2]) + acks([bad]) + acks(replies[2:]))
    assert lines[:3] == [b"+OK", b"+OK", b"-ERR 'Invalid Publish Subject'"]
    # (nats-server also routes the invalid one and says +OK: one more here)
    assert lines[3:] == [b"+OK"] * (2 if env.reference else 1)
    assert await pending(env) == (0, 3)
    await w.close()


def _user(name: str, **perms) -> User:
    return User(name, "pw", Permissions(**perms))


async def test_publish_permissions_apply_to_every_ack_of_a_run(server_factory):
    allow = ["$JS.API.>", "$JS.ACK.S.d.1.1.>", "$JS.ACK.S.d.1.3.>"]
    server = await server_factory(
        auth=AuthOptions(
            users=[
                User("admin", "pw"),
                _user("some", publish_allow=allow),
                _user("none", publish_deny=["$JS.ACK.>"]),
            ]
        )
    )
    nc = await nats.connect(f"nats://127.0.0.1:{server.nats_port}", user="admin", password="pw")
    js = nc.jetstream(timeout=2)
    await js.add_stream(name="S", subjects=["s.>"])
    for i in range(8):
        await js.publish("s.a", b"m%d" % i)
    await js.add_consumer("S", durable_name="d", ack_policy="explicit")

    async def login(user: str) -> Wire:
        creds = b'{"verbose":false,"pedantic":false,"user":"%s","pass":"pw"}' % user.encode()
        w = await nats_connect(server.nats_port, creds)
        await w.send(b"SUB inb.> 1\r\n")
        return w

    some = await login("some")
    replies = await fetch(some, 4)
    lines = await synced(some, acks(replies))
    denied = [b"-ERR 'Permissions Violation for Publish to \"%s\"'" % r for r in replies[1::2]]
    assert lines == denied
    info = await js.consumer_info("S", "d")
    assert info.num_ack_pending == 2 and info.ack_floor.stream_seq == 1

    none = await login("none")
    replies = await fetch(none, 4)
    lines = await synced(none, acks(replies))
    assert len(lines) == 4 and all(b"Permissions Violation" in x for x in lines)
    info = await js.consumer_info("S", "d")
    assert info.num_ack_pending == 6
    for w in (some, none):
        await w.close()
    await nc.close()


ACCOUNTS = """
accounts {
  A: { jetstream: enabled, users: [{user: a, password: a}] }
  B: { jetstream: enabled, users: [{user: b, password: b}] }
  C: { users: [{user: c, password: c}] }
}
"""


async def test_acks_reach_their_own_accounts_jetstream_only(tmp_path):
    server = await start_with_config(tmp_path, ACCOUNTS)
    try:
        wires = {}
        for acc in ("a", "b"):
            nc = await nats.connect(f"nats://127.0.0.1:{server.nats_port}", user=acc, password=acc)
            js = nc.jetstream(timeout=2)
            await js.add_stream(name="S", subjects=["s.>"])
            for i in range(3):
                await js.publish("s.a", b"m%d" % i)
            await js.add_consumer("S", durable_name="d", ack_policy="explicit")
            await nc.close()
        for acc in ("a", "b", "c"):
            creds = b'{"verbose":false,"pedantic":false,"user":"%s","pass":"%s"}' % (
                acc.encode(),
                acc.encode(),
            )
            wires[acc] = await nats_connect(server.nats_port, creds)
            await wires[acc].send(b"SUB inb.> 1\r\n")
        a_replies = await fetch(wires["a"], 3)
        await fetch(wires["b"], 1)  # B's consumer has stream seq 1 out
        # the same subjects from B (the same names: they are B's acks) and from C
        assert await synced(wires["c"], acks(a_replies)) == []
        assert await synced(wires["b"], acks(a_replies)) == []
        infos = {}
        for acc in ("a", "b"):
            nc = await nats.connect(f"nats://127.0.0.1:{server.nats_port}", user=acc, password=acc)
            infos[acc] = await nc.jetstream(timeout=2).consumer_info("S", "d")
            await nc.close()
        assert infos["a"].num_ack_pending == 3  # nothing reached A's
        assert infos["b"].num_ack_pending == 0 and infos["b"].ack_floor.stream_seq == 1
        assert await synced(wires["a"], acks(a_replies)) == []
        nc = await nats.connect(f"nats://127.0.0.1:{server.nats_port}", user="a", password="a")
        info = await nc.jetstream(timeout=2).consumer_info("S", "d")
        assert info.num_ack_pending == 0 and info.ack_floor.stream_seq == 3
        await nc.close()
        for w in wires.values():
            await w.close()
    finally:
        await server.shutdown()


async def test_acks_in_an_account_with_mappings(tmp_path):
    # a mapping may rename any subject: such an account's acks go the general way
    server = await start_with_config(tmp_path, 'mappings { "$JS.ACK.S.d.1.2.*.*.*": "moved.$1" }')
    try:
        nc = await nats.connect(f"nats://127.0.0.1:{server.nats_port}")
        js = nc.jetstream(timeout=2)
        await js.add_stream(name="S", subjects=["s.>"])
        for i in range(3):
            await js.publish("s.a", b"m%d" % i)
        await js.add_consumer("S", durable_name="d", ack_policy="explicit")
        w = await nats_connect(server.nats_port, b'{"verbose":false,"pedantic":false}')
        await w.send(b"SUB inb.> 1\r\nSUB moved.> 2\r\n")
        replies = await fetch(w, 3)
        lines = await synced(w, acks(replies))
        assert lines == [b"MSG moved.%s 2 0" % replies[1].split(b".")[6], b""]
        info = await js.consumer_info("S", "d")
        assert info.num_ack_pending == 1 and info.ack_floor.stream_seq == 1
        await w.close()
        await nc.close()
    finally:
        await server.shutdown()
