"""Per-account limits { max_connections, max_subscriptions, max_payload } with
nats-server 2.15's errors (checked against the real server: -ERR 'maximum account
active connections exceeded', 'maximum subscriptions exceeded' (per connection, the
connection stays), 'Maximum Payload Violation' (the connection closes))."""

from __future__ import annotations

import pytest

from tests.helpers.wire import Wire, eventually

from .accounts_env import login, start

LIMITS = """
authorization { users: [{user: g, password: g}] }
accounts {
  L: {
    users: [{user: l, password: l}, {user: l2, password: l2}]
    limits: {max_connections: 2, max_subscriptions: 2, max_payload: 10}
  }
  Z: { users: [{user: z, password: z}], limits: {max_conn: 0} }
}
"""


@pytest.fixture
async def server(tmp_path):
    server = await start(tmp_path, LIMITS)
    yield server
    await server.shutdown()


async def connect(port: int, user: str) -> Wire:
    wire = await Wire.open(port)
    await wire.expect_re(rb"INFO \{.*?\} \r\n")
    await wire.send(
        b'CONNECT {"verbose":false,"user":"%s","pass":"%s"}\r\nPING\r\n'
        % (user.encode(), user.encode())
    )
    return wire


async def test_max_connections(server):
    port = server.nats_port
    first, second = await connect(port, "l"), await connect(port, "l2")
    await first.expect(b"PONG\r\n")
    await second.expect(b"PONG\r\n")
    third = await connect(port, "l")
    got = await third.expect_closed()
    assert got == b"-ERR 'maximum account active connections exceeded'\r\n"
    assert server.accounts["L"].nconns == 2
    # another account and $G are not limited by L's count
    g = await connect(port, "g")
    await g.expect(b"PONG\r\n")
    # a slot frees when a connection closes
    await first.close()
    await eventually(lambda: server.accounts["L"].nconns == 1)
    again = await connect(port, "l")
    await again.expect(b"PONG\r\n")
    # max_connections: 0 lets nobody in
    zero = await connect(port, "z")
    assert (await zero.expect_closed()).startswith(b"-ERR 'maximum account active")
    for w in (second, g, again):
        await w.close()


async def test_max_connections_with_nats_py(server):
    import nats

    a, b = await login(server, "l"), await login(server, "l2")
    with pytest.raises(nats.errors.Error, match="maximum account active connections"):
        await login(server, "l")
    await a.close()
    await b.close()


async def test_max_subscriptions_per_connection(server):
    port = server.nats_port
    wire = await connect(port, "l")
    await wire.expect(b"PONG\r\n")
    await wire.send(b"SUB a 1\r\nSUB b 2\r\nSUB c 3\r\nPING\r\n")
    await wire.expect(b"-ERR 'maximum subscriptions exceeded'\r\nPONG\r\n")
    # the connection stays and its two subscriptions work; an UNSUB frees a slot
    await wire.send(b"PUB a 1\r\nx\r\nUNSUB 2\r\nSUB c 3\r\nPUB c 1\r\ny\r\nPING\r\n")
    await wire.expect(b"MSG a 1 1\r\nx\r\nMSG c 3 1\r\ny\r\nPONG\r\n")
    # per connection, as nats-server: another connection of L has its own two
    other = await connect(port, "l2")
    await other.send(b"SUB a 1\r\nSUB b 2\r\nPING\r\n")
    await other.expect(b"PONG\r\nPONG\r\n")
    # $G has no such limit
    g = await connect(port, "g")
    await g.send(b"SUB a 1\r\nSUB b 2\r\nSUB c 3\r\nPING\r\n")
    await g.expect(b"PONG\r\nPONG\r\n")
    for w in (wire, other, g):
        await w.close()


async def test_max_payload(server):
    port = server.nats_port
    wire = await connect(port, "l")
    await wire.expect(b"PONG\r\n")
    await wire.send(b"SUB a 1\r\nPUB a 10\r\n0123456789\r\nPING\r\n")
    await wire.expect(b"MSG a 1 10\r\n0123456789\r\nPONG\r\n")
    await wire.send(b"PUB a 11\r\n0123456789X\r\n")
    got = await wire.expect_closed()
    assert got == b"-ERR 'Maximum Payload Violation'\r\n"
    g = await connect(port, "g")
    await g.expect(b"PONG\r\n")
    await g.send(b"PUB a 11\r\n0123456789X\r\nPING\r\n")
    await g.expect(b"PONG\r\n")  # the server's max_payload applies to $G
    await g.close()


async def test_limits_change_on_reload(server, tmp_path):
    port = server.nats_port
    wire = await connect(port, "l")
    await wire.expect(b"PONG\r\n")
    path = server.options.config_file
    with open(path) as f:
        text = f.read()
    with open(path, "w") as f:
        f.write(
            text.replace(
                "max_subscriptions: 2, max_payload: 10", "max_subscriptions: 5, max_payload: 20"
            )
        )
    assert server.reload()
    await wire.send(b"SUB a 1\r\nSUB b 2\r\nSUB c 3\r\nPUB a 15\r\n012345678901234\r\nPING\r\n")
    await wire.expect(b"MSG a 1 15\r\n012345678901234\r\nPONG\r\n")
    await wire.close()
