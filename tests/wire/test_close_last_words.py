"""Last words before a close reach a client that is still sending (issue 13, defect 6).

The setup makes the loss certain without a fix: the client stops reading while the
server owes it a backlog (so the server's last words wait in its send queue), then
sends the offending packet followed by more input than the server reads in one go.
Closing a socket with unread input makes the kernel send a reset and throw the send
queue away; a graceful close (our side shut for writing, input drained) delivers the
backlog, then the last words, then end-of-stream.
"""

from __future__ import annotations

import asyncio
import socket

from hybridbus.codec.mqtt import Disconnect, MQTTParser
from tests.helpers import mqtt_packets as mp

BACKLOG = 200  # messages of 4 KiB the client does not read at first
JUNK = 4 * 1024 * 1024  # input after the offending packet (the server reads 256 KiB)


def _client(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # backs up at once
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)
    return sock


async def _send_some(sock: socket.socket, data: bytes, seconds: float) -> int:
    """Send what the peer takes within `seconds`, never blocking the (shared) loop."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    view = memoryview(data)
    sent = 0
    while sent < len(data) and loop.time() < deadline:
        try:
            sent += sock.send(view[sent:])
        except BlockingIOError:
            await asyncio.sleep(0.002)
        except OSError:
            break
    return sent


async def _read_until_closed(sock: socket.socket, timeout: float = 10.0) -> tuple[bytes, bool]:
    """Everything until end-of-stream; (data, True) if the connection was reset."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    data = bytearray()
    while True:
        left = deadline - loop.time()
        assert left > 0, f"still open after {timeout}s; read {len(data)} bytes"
        try:
            chunk = await asyncio.wait_for(loop.sock_recv(sock, 65536), left)
        except ConnectionResetError:
            return bytes(data), True
        if not chunk:
            return bytes(data), False
        data += chunk


async def _read_exactly(sock: socket.socket, size: int) -> bytes:
    loop = asyncio.get_running_loop()
    data = b""
    while len(data) < size:
        chunk = await asyncio.wait_for(loop.sock_recv(sock, size - len(data)), 3)
        assert chunk, "closed early"
        data += chunk
    return data


async def test_MQTT_3_14_4_disconnect_0x93_reaches_a_client_still_sending(server_factory):
    server = await server_factory(mqtt__receive_maximum=2)
    sock = _client(server.mqtt_port)
    try:
        await _send_some(sock, mp.connect("flood", level=5), 3)
        connack = await _read_exactly(sock, 2)
        await _read_exactly(sock, connack[1])
        await _send_some(sock, mp.subscribe(1, ("bl", 0), level=5), 3)
        await _read_exactly(sock, 6)  # SUBACK
        backlog = mp.publish("bl", b"b" * 4096, level=5) * BACKLOG
        assert await _send_some(sock, backlog, 5) == len(backlog)
        await asyncio.sleep(0.2)
        # Three QoS 2 PUBLISHes with no PUBREL: one over our Receive Maximum of 2.
        offence = b"".join(mp.publish("rm", b"x", qos=2, mid=i, level=5) for i in (1, 2, 3))
        await _send_some(sock, offence + mp.PINGREQ * (JUNK // 2), 1.0)
        data, reset = await _read_until_closed(sock)
    finally:
        sock.close()
    packets = MQTTParser(protocol_level=5).feed(data)
    assert not reset, f"reset after {len(packets)} packets"
    assert sum(p.payload == b"b" * 4096 for p in packets if hasattr(p, "payload")) == BACKLOG
    assert isinstance(packets[-1], Disconnect) and packets[-1].reason_code == 0x93
    assert not server.clients  # released at once, not after the linger


async def test_nats_err_reaches_a_client_still_sending(server_factory):
    server = await server_factory()
    sock = _client(server.nats_port)
    try:
        info = await asyncio.wait_for(asyncio.get_running_loop().sock_recv(sock, 4096), 3)
        assert info.startswith(b"INFO ")
        await _send_some(sock, b'CONNECT {"verbose":false}\r\nSUB bl 1\r\nPING\r\n', 3)
        assert await _read_exactly(sock, 6) == b"PONG\r\n"
        payload = b"b" * 4096
        backlog = b"PUB bl 4096\r\n" + payload + b"\r\n"
        assert await _send_some(sock, backlog * BACKLOG, 5) == len(backlog) * BACKLOG
        await asyncio.sleep(0.2)
        await _send_some(sock, b"FOO bar\r\n" + b"PING\r\n" * (JUNK // 6), 1.0)
        data, reset = await _read_until_closed(sock)
    finally:
        sock.close()
    assert not reset, f"reset after {len(data)} bytes"
    assert data.count(payload) == BACKLOG
    assert data.endswith(b"-ERR 'Unknown Protocol Operation'\r\n")
    assert not server.clients


async def test_server_shutdown_is_not_held_by_a_lingering_close(server_factory):
    """A client that never closes its side costs shutdown nothing: its DISCONNECT
    0x8B is written, the linger is dropped, and shutdown takes milliseconds."""
    server = await server_factory()
    sock = _client(server.mqtt_port)
    try:
        await _send_some(sock, mp.connect("stays", level=5), 3)
        connack = await _read_exactly(sock, 2)
        await _read_exactly(sock, connack[1])
        loop = asyncio.get_running_loop()
        started = loop.time()
        await server.shutdown()
        assert loop.time() - started < 0.5
        assert not server.lingering
        data, _reset = await _read_until_closed(sock, 3)
        assert data == b"\xe0\x01\x8b"  # DISCONNECT 0x8B Server shutting down
    finally:
        sock.close()


async def test_linger_is_bounded_when_the_client_never_closes(server_factory, monkeypatch):
    from hybridbus.core import client

    monkeypatch.setattr(client, "LINGER", 0.3)
    server = await server_factory()
    sock = _client(server.nats_port)
    try:
        await asyncio.wait_for(asyncio.get_running_loop().sock_recv(sock, 4096), 3)
        await _send_some(sock, b"FOO\r\n", 3)
        err = b"-ERR 'Unknown Protocol Operation'\r\n"
        assert await _read_exactly(sock, len(err)) == err
        # our side is shut: end-of-stream now, though the client keeps its side open
        assert await asyncio.wait_for(asyncio.get_running_loop().sock_recv(sock, 10), 3) == b""
        assert len(server.lingering) == 1 and not server.clients
        await asyncio.sleep(0.6)
        assert not server.lingering  # aborted after LINGER
    finally:
        sock.close()
