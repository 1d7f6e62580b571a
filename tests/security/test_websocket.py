"""The websocket listener: MQTT (paho) and NATS (raw wsproto client) over RFC 6455,
origin rules, handshake errors and timeout, control frames, TLS, auth, compression."""

from __future__ import annotations

import asyncio
import json
import os
import queue
import struct
import threading
import time
import zlib

import nats
import paho.mqtt.client as mqtt
import pytest
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, BytesMessage, Request
from wsproto.extensions import PerMessageDeflate

from hybridbus.options import AuthOptions, TLSOptions, User
from hybridbus.server.websocket import frame_header
from tests.helpers import mqtt_packets as mp
from tests.helpers.wire import Wire, eventually
from tests.security.wsclient import Rejected, WsClient

WS = {"websocket__enabled": True, "websocket__no_tls": True, "websocket__host": "127.0.0.1"}


async def ws_server(server_factory, **overrides):
    return await server_factory(**{**WS, **overrides})


async def nats_ws(port: int, connect: bytes = b'{"verbose":false}', **kw) -> WsClient:
    ws = await WsClient.open(port, "/", **kw)
    info = await ws.recv_until(b"\r\n")
    assert info.startswith(b"INFO {")
    await ws.send(b"CONNECT " + connect + b"\r\nPING\r\n")
    assert (await ws.recv_until(b"PONG\r\n")).endswith(b"PONG\r\n")
    return ws


# -- MQTT over websocket (paho) ------------------------------------------------------


class PahoWs:
    def __init__(self, port: int, client_id: str, tls_ca: str | None = None, user=None):
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, transport="websockets"
        )
        self.client.ws_set_options(path="/mqtt")
        if tls_ca:
            self.client.tls_set(ca_certs=tls_ca)
        if user:
            self.client.username_pw_set(*user)
        self.messages: queue.Queue = queue.Queue()
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.rc = None

        def on_connect(c, u, f, rc, p=None):
            self.rc = rc
            self.connected.set()

        self.client.on_connect = on_connect
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.on_message = lambda c, u, m: self.messages.put(m)
        self.port = port

    def start(self) -> PahoWs:
        self.client.connect("127.0.0.1", self.port, keepalive=30)
        self.client.loop_start()
        assert self.connected.wait(5), "no CONNACK"
        return self

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


async def test_paho_over_websocket_and_bridge_to_nats(server_factory):
    server = await ws_server(server_factory)
    nc = await nats.connect(f"nats://127.0.0.1:{server.nats_port}")
    nsub = await nc.subscribe("dev.*.temp")
    await nc.flush()
    paho = await asyncio.to_thread(lambda: PahoWs(server.websocket_port, "wsdev").start())
    try:
        assert paho.rc == 0
        paho.client.subscribe("cmd/#", 1)
        assert await asyncio.to_thread(paho.subscribed.wait, 5)
        paho.client.publish("dev/7/temp", b"21.5", qos=1)
        msg = await nsub.next_msg(3)
        assert msg.data == b"21.5"
        await nc.publish("cmd.reboot", b"now")
        got = await asyncio.to_thread(paho.messages.get, True, 3)
        assert (got.topic, got.payload) == ("cmd/reboot", b"now")
        (client,) = [c for c in server.clients.values() if getattr(c, "ws", False)]
        assert client.conn_type == "mqtt" and client.client_id == "wsdev"
    finally:
        await asyncio.to_thread(paho.stop)
        await nc.close()
    await eventually(lambda: len(server.clients) == 0)


async def test_mqtt_path_requires_mqtt_subprotocol(server_factory):
    server = await ws_server(server_factory)
    with pytest.raises(Rejected) as info:
        await WsClient.open(server.websocket_port, "/mqtt", subprotocols=["chat"])
    assert info.value.status == 400
    assert b"Sec-Websocket-Protocol" in info.value.body
    ws = await WsClient.open(server.websocket_port, "/mqtt", subprotocols=["chat", "mqtt"])
    assert ws.subprotocol == "mqtt"
    await ws.send(mp.connect("raw-ws"))
    assert await ws.recv_exactly(4) == mp.connack(0, 0)


async def test_text_frame_on_mqtt_websocket_closes(server_factory):
    server = await ws_server(server_factory)
    ws = await WsClient.open(server.websocket_port, "/mqtt", subprotocols=["mqtt"])
    await ws.send(mp.connect("t"))
    await ws.recv_exactly(4)
    # [MQTT-6.0.0-1] data in a non-binary frame: the server closes the connection.
    await ws.send_text("hello")
    close = await ws.wait_closed()
    assert close is not None and close.code == 1003


# -- NATS over websocket --------------------------------------------------------------


async def test_nats_over_websocket(server_factory):
    server = await ws_server(server_factory)
    ws = await nats_ws(server.websocket_port)
    assert ws.subprotocol is None
    await ws.send(b"SUB ws.x 1\r\nPUB ws.x 5\r\nhello\r\n")
    assert await ws.recv_until(b"hello\r\n") == b"MSG ws.x 1 5\r\nhello\r\n"
    # Across transports: a TCP NATS client publishes, the websocket client receives.
    nc = await nats.connect(f"nats://127.0.0.1:{server.nats_port}")
    await nc.publish("ws.x", b"tcp")
    await nc.flush()
    assert await ws.recv_until(b"tcp\r\n") == b"MSG ws.x 1 3\r\ntcp\r\n"
    (client,) = [c for c in server.clients.values() if getattr(c, "ws", False)]
    assert server.describe(client)["type"] == "websocket"
    await nc.close()
    await ws.close()
    await eventually(lambda: not any(getattr(c, "ws", False) for c in server.clients.values()))


async def test_nats_frames_split_and_text_frames(server_factory):
    server = await ws_server(server_factory)
    ws = await nats_ws(server.websocket_port)
    # One op split over a fragmented message (continuation frames) and over messages.
    ws.writer.write(ws.conn.send(BytesMessage(data=b"SUB s 1\r\nPUB s ", message_finished=False)))
    ws.writer.write(ws.conn.send(BytesMessage(data=b"3\r\nab", message_finished=True)))
    ws.writer.write(ws.conn.send(BytesMessage(data=b"c\r\n")))
    await ws.writer.drain()
    assert await ws.recv_until(b"abc\r\n") == b"MSG s 1 3\r\nabc\r\n"
    await ws.send_text("PUB s 2\r\nzz\r\n")  # nats.ws clients may use text frames
    assert await ws.recv_until(b"zz\r\n") == b"MSG s 1 2\r\nzz\r\n"
    assert ws.texts == 0  # the server always answers in binary frames


async def test_ping_pong_and_close_handshake(server_factory):
    server = await ws_server(server_factory)
    ws = await nats_ws(server.websocket_port)
    await ws.ping(b"are-you-there")
    await ws.send(b"PING\r\n")
    await ws.recv_until(b"PONG\r\n")
    assert ws.pongs == [b"are-you-there"]
    await ws.close()
    await eventually(lambda: not server.clients)
    assert server.closed[-1].reason == "Client Closed"


async def test_upgrade_with_pipelined_first_frame(server_factory):
    """Bytes sent right behind the upgrade request are the first frames, not lost."""
    server = await ws_server(server_factory)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.websocket_port)
    client = WSConnection(ConnectionType.CLIENT)
    request = client.send(Request(host="127.0.0.1", target="/"))
    payload = b'CONNECT {"verbose":false}\r\nPING\r\n'
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    frame = bytes((0x82, 0x80 | len(payload))) + mask + masked
    writer.write(request + frame)
    data = bytearray()
    accepted = False
    deadline = time.monotonic() + 3
    while b"PONG\r\n" not in data and time.monotonic() < deadline:
        client.receive_data(await asyncio.wait_for(reader.read(65536), 3))
        for ev in client.events():
            if isinstance(ev, AcceptConnection):
                accepted = True
            elif isinstance(ev, BytesMessage):
                data += ev.data
    assert accepted and data.startswith(b"INFO ") and data.endswith(b"PONG\r\n")
    writer.close()


def test_frame_header_lengths():
    assert frame_header(5) == b"\x82\x05"
    assert frame_header(125) == b"\x82\x7d"
    assert frame_header(126) == b"\x82\x7e" + struct.pack("!H", 126)
    assert frame_header(70000) == b"\x82\x7f" + struct.pack("!Q", 70000)


async def test_large_message_through_websocket(server_factory):
    server = await ws_server(server_factory)
    ws = await nats_ws(server.websocket_port)
    body = os.urandom(200_000)
    await ws.send(b"SUB big 1\r\nPUB big %d\r\n%s\r\n" % (len(body), body))
    head = await ws.recv_until(b"\r\n")
    assert head == b"MSG big 1 %d\r\n" % len(body)
    assert await ws.recv_exactly(len(body) + 2) == body + b"\r\n"


# -- handshake errors and limits ------------------------------------------------------


async def raw_http(port: int, request: bytes) -> bytes:
    wire = await Wire.open(port)
    await wire.send(request)
    return await wire.expect_closed()


async def test_bad_upgrade_requests(server_factory):
    server = await ws_server(server_factory)
    port = server.websocket_port
    plain_get = await raw_http(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert plain_get.startswith(b"HTTP/1.1 400 ")
    assert plain_get.endswith(b"invalid value for header 'Upgrade'\n")
    post = await raw_http(
        port, b"POST / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
    )
    assert post.startswith(b"HTTP/1.1 405 ")
    upgrade = b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    nokey = await raw_http(port, upgrade + b"Sec-WebSocket-Version: 13\r\n\r\n")
    assert nokey.startswith(b"HTTP/1.1 400 ") and nokey.endswith(b"key missing\n")
    version = await raw_http(
        port,
        upgrade
        + b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n",
    )
    assert version.startswith(b"HTTP/1.1 400 ") and b"Sec-WebSocket-Version: 13" in version
    garbage = await raw_http(port, b"\x16\x03\x01\x02\x00garbage\r\n\r\n")
    assert garbage.startswith(b"HTTP/1.1 400 ")
    # headers that never end: h11's buffer is bounded
    huge = await raw_http(port, b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 40000)
    assert huge.startswith(b"HTTP/1.1 431 ")
    assert not server.clients


async def test_handshake_timeout(server_factory):
    server = await ws_server(server_factory, websocket__handshake_timeout=0.3)
    wire = await Wire.open(server.websocket_port)
    await wire.send(b"GET / HTTP/1.1\r\nHost: x\r\n")  # and then nothing
    started = time.monotonic()
    assert await wire.expect_closed(timeout=3) == b""
    assert 0.25 <= time.monotonic() - started < 2


@pytest.mark.parametrize(
    "overrides, origin, ok",
    [
        ({"websocket__same_origin": True}, None, True),
        ({"websocket__same_origin": True}, "http://127.0.0.1:{port}", True),
        ({"websocket__same_origin": True}, "http://evil.example", False),
        # nats-server compares host and port only, not the scheme
        ({"websocket__same_origin": True}, "https://127.0.0.1:{port}", True),
        ({"websocket__same_origin": True}, "http://127.0.0.1:1", False),
        ({"websocket__allowed_origins": ["http://good.example"]}, "http://good.example", True),
        ({"websocket__allowed_origins": ["http://good.example"]}, "http://good.example:80", True),
        ({"websocket__allowed_origins": ["http://good.example"]}, "https://good.example", False),
        ({"websocket__allowed_origins": ["http://good.example"]}, "http://bad.example", False),
        ({}, "http://anything.example", True),
    ],
)
async def test_origin_rules(server_factory, overrides, origin, ok):
    server = await ws_server(server_factory, **overrides)
    port = server.websocket_port
    origin = origin.format(port=port) if origin else None
    if ok:
        ws = await WsClient.open(port, "/", origin=origin)
        assert (await ws.recv_until(b"\r\n")).startswith(b"INFO ")
    else:
        with pytest.raises(Rejected) as info:
            await WsClient.open(port, "/", origin=origin)
        assert info.value.status == 403
        assert info.value.body.startswith(b"origin not allowed: ")


# -- TLS, auth, compression ----------------------------------------------------------


async def test_wss_with_paho_and_raw_client(server_factory, pki):
    server = await server_factory(
        websocket__enabled=True,
        websocket__host="127.0.0.1",
        websocket__tls=TLSOptions(cert_file=pki.server_cert, key_file=pki.server_key),
        # NATS port TLS too: the websocket client must not be asked for in-band STARTTLS.
        tls=TLSOptions(cert_file=pki.server_cert, key_file=pki.server_key),
    )
    paho = await asyncio.to_thread(
        lambda: PahoWs(server.websocket_port, "wss", tls_ca=pki.ca_file).start()
    )
    assert paho.rc == 0
    await asyncio.to_thread(paho.stop)
    ws = await nats_ws(server.websocket_port, ssl_context=pki.client_context())
    await ws.send(b"SUB a 1\r\nPUB a 1\r\nx\r\n")
    await ws.recv_until(b"MSG a 1 1\r\nx\r\n")
    (client,) = [c for c in server.clients.values() if getattr(c, "ws", False)]
    assert client.tls_version in ("1.2", "1.3")


async def test_plain_websocket_while_nats_port_has_tls(server_factory, pki):
    server = await ws_server(
        server_factory, tls=TLSOptions(cert_file=pki.server_cert, key_file=pki.server_key)
    )
    ws = await nats_ws(server.websocket_port)
    await ws.send(b"SUB a 1\r\nPUB a 1\r\ny\r\n")
    await ws.recv_until(b"MSG a 1 1\r\ny\r\n")
    (client,) = [c for c in server.clients.values() if getattr(c, "ws", False)]
    assert client.tls_version is None


async def test_websocket_auth_and_connection_types(server_factory):
    users = [
        User("browser", "pw", allowed_connection_types=["WEBSOCKET"]),
        User("device", "pw", allowed_connection_types=["MQTT_WS"]),
    ]
    server = await ws_server(server_factory, auth=AuthOptions(users=users))
    port = server.websocket_port
    await nats_ws(port, b'{"verbose":false,"user":"browser","pass":"pw"}')
    tcp = await Wire.open(server.nats_port)
    await tcp.expect_re(rb"INFO .*\r\n")
    await tcp.send(b'CONNECT {"user":"browser","pass":"pw"}\r\n')
    assert await tcp.expect_closed() == b"-ERR 'Authorization Violation'\r\n"
    ws = await WsClient.open(port, "/")
    info = json.loads((await ws.recv_until(b"\r\n"))[5:])
    assert info["auth_required"] is True
    await ws.send(b'CONNECT {"user":"device","pass":"pw"}\r\n')
    assert await ws.recv_until(b"\r\n") == b"-ERR 'Authorization Violation'\r\n"
    await ws.wait_closed()
    paho = await asyncio.to_thread(lambda: PahoWs(port, "dev1", user=("device", "pw")).start())
    assert paho.rc == 0
    await asyncio.to_thread(paho.stop)
    mq = await Wire.open(server.mqtt_port)
    await mq.send(mp.connect("dev2", username="device", password=b"pw"))
    assert await mq.expect_closed() == mp.connack(0, 0x04)


async def test_websocket_auth_override_token(server_factory):
    server = await ws_server(server_factory, websocket__auth=AuthOptions(token="wst"))
    await nats_ws(server.websocket_port, b'{"verbose":false,"auth_token":"wst"}')
    ws = await WsClient.open(server.websocket_port, "/")
    await ws.recv_until(b"\r\n")
    await ws.send(b"CONNECT {}\r\n")
    assert await ws.recv_until(b"\r\n") == b"-ERR 'Authorization Violation'\r\n"
    # plain TCP clients are not affected by the websocket block
    nc = await nats.connect(f"nats://127.0.0.1:{server.nats_port}")
    await nc.close()


async def test_compression_roundtrip_and_deflate_bomb(server_factory):
    server = await ws_server(server_factory, websocket__compression=True, max_payload=65536)
    ws = await nats_ws(server.websocket_port, extensions=[PerMessageDeflate()])
    assert ws.extensions, "permessage-deflate was not negotiated"
    body = b"z" * 30000
    await ws.send(b"SUB c 1\r\nPUB c %d\r\n%s\r\n" % (len(body), body))
    await ws.recv_until(b"MSG c 1 30000\r\n")
    assert await ws.recv_exactly(len(body) + 2) == body + b"\r\n"
    # 50 MB of zeros deflates to ~50 KB: inflation is capped, the socket closed (1009).
    bomb = zlib.compressobj(9, zlib.DEFLATED, -15)
    data = bomb.compress(b"\0" * 50_000_000) + bomb.flush(zlib.Z_SYNC_FLUSH)
    ws2 = await nats_ws(server.websocket_port, extensions=[PerMessageDeflate()])
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
    # FIN + RSV1 (compressed) + binary; masked
    n = len(data)
    length = bytes((0xFE,)) + struct.pack("!H", n) if n < 65536 else b"\xff" + struct.pack("!Q", n)
    await ws2.send_raw(b"\xc2" + length + mask + masked)
    close = await ws2.wait_closed(timeout=5)
    assert close is not None and close.code == 1009
