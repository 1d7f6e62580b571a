"""NATS -ERR transcripts: the offender gets nats-server's exact text (§4.7), is closed
where nats-server closes, and every other client keeps being served."""

from __future__ import annotations

import asyncio

from tests.helpers.wire import Wire, nats_connect


async def _bystander(server):
    """A client subscribed to `watch`, to prove others keep working."""
    wire = await nats_connect(server.nats_port)
    await wire.send(b"SUB watch 1\r\nPING\r\n")
    await wire.expect(b"PONG\r\n")
    return wire


async def _still_served(server, bystander):
    pub = await nats_connect(server.nats_port)
    await pub.send(b"PUB watch 2\r\nok\r\n")
    await bystander.expect(b"MSG watch 1 2\r\nok\r\n")
    await pub.close()


async def test_unknown_operation_closes(nats_server):
    bystander = await _bystander(nats_server)
    wire = await nats_connect(nats_server.nats_port)
    await wire.send(b"FOO bar\r\n")
    assert await wire.expect_closed() == b"-ERR 'Unknown Protocol Operation'\r\n"
    await _still_served(nats_server, bystander)


async def test_pub_without_arguments_closes(nats_server):
    wire = await nats_connect(nats_server.nats_port)
    await wire.send(b"PUB\r\n")
    rest = await wire.expect_closed()
    assert rest in (b"-ERR 'Unknown Protocol Operation'\r\n", b"")


async def test_payload_length_mismatch_closes(nats_server):
    bystander = await _bystander(nats_server)
    wire = await nats_connect(nats_server.nats_port)
    await wire.send(b"PUB foo 2\r\nhello\r\n")
    assert await wire.expect_closed() == b"-ERR 'Unknown Protocol Operation'\r\n"
    await _still_served(nats_server, bystander)


async def test_max_payload_violation_closes(server_factory):
    server = await server_factory(max_payload=16)
    bystander = await _bystander(server)
    wire = await nats_connect(server.nats_port)
    await wire.send(b"PUB foo 17\r\n")
    assert await wire.expect_closed() == b"-ERR 'Maximum Payload Violation'\r\n"
    await _still_served(server, bystander)
    assert server.closed[-1].reason == "Maximum Message Payload Exceeded"


async def test_max_control_line_exceeded_closes(server_factory):
    server = await server_factory(max_control_line=64)
    wire = await nats_connect(server.nats_port)
    await wire.send(b"SUB " + b"a" * 100)  # no CRLF: detected before the line ends
    assert await wire.expect_closed() == b"-ERR 'maximum control line exceeded'\r\n"


async def test_bad_pub_size_closes_without_err(nats_server):
    wire = await nats_connect(nats_server.nats_port)
    await wire.send(b"PUB foo abc\r\n")
    assert await wire.expect_closed() == b""
    assert nats_server.closed[-1].reason == "Protocol Violation"


async def test_malformed_connect_json_closes_without_err(nats_server):
    wire = await Wire.open(nats_server.nats_port)
    await wire.expect_re(rb"INFO .*? \r\n")
    await wire.send(b"CONNECT {not json\r\n")
    assert await wire.expect_closed() == b""


async def test_invalid_client_protocol(nats_server):
    wire = await Wire.open(nats_server.nats_port)
    await wire.expect_re(rb"INFO .*? \r\n")
    await wire.send(b'CONNECT {"protocol":2}\r\n')
    assert await wire.expect_closed() == b"-ERR 'invalid client protocol'\r\n"


async def test_no_responders_without_headers(nats_server):
    wire = await Wire.open(nats_server.nats_port)
    await wire.expect_re(rb"INFO .*? \r\n")
    await wire.send(b'CONNECT {"no_responders":true}\r\n')
    assert await wire.expect_closed() == b"-ERR 'no responders requires headers support'\r\n"


async def test_hpub_without_headers_support_closes(nats_server):
    wire = await nats_connect(nats_server.nats_port)
    await wire.send(b"HPUB foo 12 12\r\nNATS/1.0\r\n\r\n\r\n")
    assert await wire.expect_closed() == b""
    assert nats_server.closed[-1].reason == "Message Header Violation"


async def test_invalid_subject_keeps_connection(nats_server):
    wire = await nats_connect(nats_server.nats_port)
    await wire.send(b"SUB foo..bar 1\r\nSUB foo.>.bar 2\r\nPING\r\n")
    await wire.expect(b"-ERR 'Invalid Subject'\r\n-ERR 'Invalid Subject'\r\nPONG\r\n")
    await wire.send(b"SUB ok 3\r\nPUB ok 1\r\nx\r\n")
    await wire.expect(b"MSG ok 3 1\r\nx\r\n")
    await wire.close()


async def test_pedantic_publish_to_wildcard(nats_server):
    wire = await nats_connect(nats_server.nats_port, b'{"verbose":false,"pedantic":true}')
    await wire.send(b"PUB foo.* 1\r\nx\r\nPING\r\n")
    await wire.expect(b"-ERR 'Invalid Publish Subject'\r\nPONG\r\n")
    await wire.close()


async def test_max_subscriptions_refuses_but_keeps_connection(server_factory):
    server = await server_factory(max_subscriptions=2)
    wire = await nats_connect(server.nats_port)
    await wire.send(b"SUB a 1\r\nSUB b 2\r\nSUB c 3\r\nPING\r\n")
    await wire.expect(b"-ERR 'maximum subscriptions exceeded'\r\nPONG\r\n")
    await wire.send(b"PUB b 1\r\nx\r\n")
    await wire.expect(b"MSG b 2 1\r\nx\r\n")
    await wire.close()


async def test_max_connections_exceeded(server_factory):
    server = await server_factory(max_connections=1)
    first = await nats_connect(server.nats_port)
    second = await Wire.open(server.nats_port)
    await second.expect_re(rb"INFO .*? \r\n")
    assert await second.expect_closed() == b"-ERR 'maximum connections exceeded'\r\n"
    await first.send(b"PING\r\n")
    await first.expect(b"PONG\r\n")
    await first.close()


async def test_stale_connection_after_unanswered_pings(server_factory):
    server = await server_factory(ping_interval=0.1, ping_max=2)
    wire = await Wire.open(server.nats_port)
    await wire.expect_re(rb"INFO .*? \r\n")
    await wire.send(b'CONNECT {"verbose":false}\r\n')
    rest = await wire.expect_closed(timeout=5)
    assert rest == b"PING\r\nPING\r\n-ERR 'Stale Connection'\r\n"
    assert server.stats.stale_connections == 1


async def test_answering_pings_keeps_connection(server_factory):
    server = await server_factory(ping_interval=0.1, ping_max=1)
    wire = await nats_connect(server.nats_port)
    for _ in range(4):
        await wire.expect(b"PING\r\n", timeout=3)
        await wire.send(b"PONG\r\n")
    assert server.stats.stale_connections == 0
    await wire.close()


async def test_slow_consumer_is_cut_without_slowing_others(server_factory):
    server = await server_factory(max_pending=256 * 1024)
    slow = await nats_connect(server.nats_port, rcvbuf=4096)
    await slow.send(b"SUB flood 1\r\nPING\r\n")
    await slow.expect(b"PONG\r\n")
    # `slow` never reads again; a healthy subscriber reads everything.
    fast = await nats_connect(server.nats_port)
    await fast.send(b"SUB flood 9\r\nPING\r\n")
    await fast.expect(b"PONG\r\n")
    pub = await nats_connect(server.nats_port)
    payload = b"x" * 1024
    frame = b"PUB flood 1024\r\n" + payload + b"\r\n"
    received = 0

    frame_out = len(b"MSG flood 9 1024\r\n") + 1024 + 2

    async def drain_fast():
        nonlocal received
        total = 0
        while total < 4000 * frame_out:
            chunk = await asyncio.wait_for(fast.reader.read(1 << 20), 10)
            assert chunk
            total += len(chunk)
        received = total // frame_out

    reader = asyncio.create_task(drain_fast())
    for _ in range(40):
        await pub.send(frame * 100)
    await asyncio.wait_for(reader, 15)
    assert received == 4000
    assert server.stats.slow_consumers == 1
    assert any(c.reason == "Slow Consumer (Pending Bytes)" for c in server.closed)
    await pub.send(b"PING\r\n")
    await pub.expect(b"PONG\r\n")
    for w in (slow, fast, pub):
        await w.close()
