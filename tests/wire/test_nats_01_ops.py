"""NATS client protocol transcripts: every operation on a raw socket (nats-conventions §4)."""

from __future__ import annotations

import json
import re

from tests.helpers.wire import Wire, nats_connect


async def test_info_first_with_required_fields(nats_server):
    wire = await Wire.open(nats_server.nats_port)
    m = await wire.expect_re(rb"INFO (\{.*?\}) \r\n")
    info = json.loads(m.group(1))
    assert info["server_id"].startswith("N") and len(info["server_id"]) == 56
    major, minor, _ = (int(x) for x in info["version"].split("."))
    assert major == 2 and minor >= 9  # nats-py gates on minor >= 9
    assert info["proto"] == 1
    assert info["headers"] is True
    assert info["max_payload"] == 1048576
    assert info["client_id"] >= 1
    assert info["client_ip"] == "127.0.0.1"
    assert info["port"] == nats_server.nats_port
    await wire.close()


async def test_ping_pong_before_connect(nats_server):
    wire = await Wire.open(nats_server.nats_port)
    await wire.expect_re(rb"INFO .*? \r\n")
    await wire.send(b"PING\r\n")
    await wire.expect(b"PONG\r\n")
    await wire.close()


async def test_bare_connect_turns_verbose_on(nats_server):
    # The server starts from verbose=true and overlays the CONNECT JSON (§4.3).
    wire = await Wire.open(nats_server.nats_port)
    await wire.expect_re(rb"INFO .*? \r\n")
    await wire.send(b"CONNECT {}\r\nSUB foo 1\r\nPUB foo 2\r\nhi\r\n")
    # the MSG is queued while the PUB is processed, before its +OK
    await wire.expect(b"+OK\r\n+OK\r\nMSG foo 1 2\r\nhi\r\n+OK\r\n")
    await wire.close()


async def test_sub_pub_msg_with_reply(nats_server):
    wire = await nats_connect(nats_server.nats_port)
    await wire.send(b"SUB foo q1 7\r\nPUB foo bar.reply 2\r\nhi\r\n")
    await wire.expect(b"MSG foo 7 bar.reply 2\r\nhi\r\n")
    await wire.close()


async def test_zero_length_and_binary_payload(nats_server):
    wire = await nats_connect(nats_server.nats_port)
    await wire.send(b"SUB a 1\r\nPUB a 0\r\n\r\nPUB a 4\r\n\r\n\r\n\r\n")
    await wire.expect(b"MSG a 1 0\r\n\r\nMSG a 1 4\r\n\r\n\r\n\r\n")
    await wire.close()


async def test_ops_are_case_insensitive_and_accept_bare_lf_and_tabs(nats_server):
    wire = await nats_connect(nats_server.nats_port)
    await wire.send(b"sub\tfoo  3\npub foo\t1\nx\r\nping\n")
    await wire.expect(b"MSG foo 3 1\r\nx\r\nPONG\r\n")
    await wire.close()


async def test_wildcards_and_full_wildcard(nats_server):
    wire = await nats_connect(nats_server.nats_port)
    await wire.send(b"SUB foo.* 1\r\nSUB foo.> 2\r\nSUB > 3\r\nSUB foo 4\r\nPING\r\n")
    await wire.expect(b"PONG\r\n")
    await wire.send(b"PUB foo.bar 1\r\na\r\nPING\r\n")
    m = await wire.expect_re(rb"((?:MSG foo\.bar \d 1\r\na\r\n)*)PONG\r\n")
    assert sorted(re.findall(rb"MSG foo\.bar (\d)", m.group(1))) == [b"1", b"2", b"3"]
    await wire.send(b"PUB foo.bar.baz 1\r\nb\r\nPING\r\n")
    m = await wire.expect_re(rb"((?:MSG foo\.bar\.baz \d 1\r\nb\r\n)*)PONG\r\n")
    # foo.* does not match two tokens; foo.> and > do
    assert sorted(re.findall(rb"MSG foo\.bar\.baz (\d)", m.group(1))) == [b"2", b"3"]
    await wire.close()


async def test_hpub_to_header_client_and_stripped_for_plain_client(nats_server):
    headers_client = await nats_connect(nats_server.nats_port, b'{"verbose":false,"headers":true}')
    plain_client = await nats_connect(nats_server.nats_port)
    await headers_client.send(b"SUB h 1\r\nPING\r\n")
    await headers_client.expect(b"PONG\r\n")
    await plain_client.send(b"SUB h 2\r\nPING\r\n")
    await plain_client.expect(b"PONG\r\n")
    block = b"NATS/1.0\r\nA: b\r\n\r\n"
    assert len(block) == 18
    await headers_client.send(b"HPUB h r 18 20\r\n" + block + b"hi\r\n")
    await headers_client.expect(b"HMSG h 1 r 18 20\r\n" + block + b"hi\r\n")
    await plain_client.expect(b"MSG h 2 r 2\r\nhi\r\n")
    await headers_client.close()
    await plain_client.close()


async def test_queue_group_delivers_once_per_group(nats_server):
    wire = await nats_connect(nats_server.nats_port)
    await wire.send(b"SUB foo.* q 1\r\nSUB foo.* q 2\r\nSUB foo.bar 3\r\nPING\r\n")
    await wire.expect(b"PONG\r\n")
    seen = {b"1": 0, b"2": 0, b"3": 0}
    for _ in range(40):
        await wire.send(b"PUB foo.bar 1\r\nx\r\nPING\r\n")
        m = await wire.expect_re(
            rb"MSG foo\.bar (\d) 1\r\nx\r\nMSG foo\.bar (\d) 1\r\nx\r\nPONG\r\n"
        )
        sids = sorted([m.group(1), m.group(2)])
        assert b"3" in sids and sids != [b"3", b"3"]
        for sid in sids:
            seen[sid] += 1
    assert seen[b"3"] == 40
    assert seen[b"1"] + seen[b"2"] == 40
    assert seen[b"1"] > 0 and seen[b"2"] > 0  # random member choice, 40 tries
    await wire.close()


async def test_queue_group_across_connections(nats_server):
    members = [await nats_connect(nats_server.nats_port) for _ in range(3)]
    for i, member in enumerate(members):
        await member.send(b"SUB work workers %d\r\nPING\r\n" % i)
        await member.expect(b"PONG\r\n")
    pub = await nats_connect(nats_server.nats_port)
    for _ in range(30):
        await pub.send(b"PUB work 1\r\nw\r\n")
    await pub.send(b"PING\r\n")
    await pub.expect(b"PONG\r\n")
    total = 0
    for member in members:
        await member.send(b"PING\r\n")
        m = await member.expect_re(rb"((?:MSG work \d 1\r\nw\r\n)*)PONG\r\n")
        total += m.group(1).count(b"MSG ")
    assert total == 30
    for w in [*members, pub]:
        await w.close()


async def test_unsub_with_max_delivers_exactly_max(nats_server):
    own = nats_server.sublist.count()  # the JetStream API's subscriptions
    wire = await nats_connect(nats_server.nats_port)
    await wire.send(b"SUB foo 1\r\nUNSUB 1 2\r\n")
    await wire.send(b"PUB foo 1\r\na\r\nPUB foo 1\r\nb\r\nPUB foo 1\r\nc\r\nPING\r\n")
    await wire.expect(b"MSG foo 1 1\r\na\r\nMSG foo 1 1\r\nb\r\nPONG\r\n")
    assert nats_server.sublist.count() == own
    await wire.close()


async def test_unsub_stops_delivery_and_unknown_sid_is_ignored(nats_server):
    wire = await nats_connect(nats_server.nats_port)
    await wire.send(b"SUB foo 1\r\nUNSUB 1\r\nUNSUB 99\r\nPUB foo 1\r\na\r\nPING\r\n")
    await wire.expect(b"PONG\r\n")
    await wire.close()


async def test_duplicate_sid_is_ignored(nats_server):
    wire = await nats_connect(nats_server.nats_port)
    await wire.send(b"SUB foo 1\r\nSUB bar 1\r\nPUB bar 1\r\nx\r\nPUB foo 1\r\ny\r\nPING\r\n")
    await wire.expect(b"MSG foo 1 1\r\ny\r\nPONG\r\n")
    await wire.close()


async def test_echo_off_skips_own_messages(nats_server):
    wire = await nats_connect(nats_server.nats_port, b'{"verbose":false,"echo":false}')
    other = await nats_connect(nats_server.nats_port)
    await wire.send(b"SUB foo 1\r\nPING\r\n")
    await wire.expect(b"PONG\r\n")
    await wire.send(b"PUB foo 1\r\na\r\nPING\r\n")
    await wire.expect(b"PONG\r\n")
    await other.send(b"PUB foo 1\r\nb\r\n")
    await wire.expect(b"MSG foo 1 1\r\nb\r\n")
    await wire.close()
    await other.close()


async def test_verbose_acknowledges_each_op(nats_server):
    wire = await Wire.open(nats_server.nats_port)
    await wire.expect_re(rb"INFO .*? \r\n")
    await wire.send(b'CONNECT {"verbose":true}\r\nSUB a 1\r\nUNSUB 1\r\nPUB a 0\r\n\r\n')
    await wire.expect(b"+OK\r\n+OK\r\n+OK\r\n+OK\r\n")
    await wire.close()


async def test_async_info_after_first_pong_for_protocol_1(nats_server):
    wire = await Wire.open(nats_server.nats_port)
    await wire.expect_re(rb"INFO .*? \r\n")
    await wire.send(b'CONNECT {"verbose":false,"protocol":1}\r\nPING\r\n')
    await wire.expect(b"PONG\r\n")
    m = await wire.expect_re(rb"INFO (\{.*?\}) \r\n")
    info = json.loads(m.group(1))
    assert info["connect_info"] is True and info["remote_account"] == "$G"
    await wire.send(b"PING\r\n")
    await wire.expect(b"PONG\r\n")
    await wire.expect_nothing()
    await wire.close()


async def test_no_responders_503(nats_server):
    wire = await nats_connect(
        nats_server.nats_port, b'{"verbose":false,"headers":true,"no_responders":true}'
    )
    await wire.send(b"SUB _INBOX.x 1\r\nPUB nobody.here _INBOX.x 0\r\n\r\n")
    header = b"NATS/1.0 503\r\nNats-Subject: nobody.here\r\n\r\n"
    assert len(header) == 32 + len(b"nobody.here")
    await wire.expect(b"HMSG _INBOX.x 1 43 43\r\n" + header + b"\r\n")
    await wire.close()


async def test_no_responders_needs_the_connect_flag(nats_server):
    wire = await nats_connect(nats_server.nats_port, b'{"verbose":false,"headers":true}')
    await wire.send(b"SUB _INBOX.x 1\r\nPUB nobody.here _INBOX.x 0\r\n\r\nPING\r\n")
    await wire.expect(b"PONG\r\n")
    await wire.close()


async def test_payload_at_max_payload(server_factory):
    server = await server_factory(max_payload=1024)
    wire = await nats_connect(server.nats_port)
    body = bytes(range(256)) * 4
    await wire.send(b"SUB big 1\r\nPUB big 1024\r\n" + body + b"\r\n")
    await wire.expect(b"MSG big 1 1024\r\n" + body + b"\r\n")
    await wire.close()


async def test_many_messages_split_across_reads(nats_server):
    wire = await nats_connect(nats_server.nats_port)
    await wire.send(b"SUB s 1\r\nPING\r\n")
    await wire.expect(b"PONG\r\n")
    frames = b"".join(b"PUB s 5\r\n%05d\r\n" % i for i in range(2000))
    for i in range(0, len(frames), 997):
        await wire.send(frames[i : i + 997])
    await wire.send(b"PING\r\n")
    expected = b"".join(b"MSG s 1 5\r\n%05d\r\n" % i for i in range(2000)) + b"PONG\r\n"
    await wire.expect(expected, timeout=10)
    await wire.close()


async def test_first_server_ping_measures_rtt(server_factory):
    server = await server_factory(ping_interval=0.2)
    wire = await nats_connect(server.nats_port)
    await wire.expect(b"PING\r\n", timeout=3)
    await wire.send(b"PONG\r\n")
    client = next(iter(server.clients.values()))
    await wire.send(b"PING\r\n")
    await wire.expect(b"PONG\r\n")
    assert 0 < client.rtt < 1
    await wire.close()
