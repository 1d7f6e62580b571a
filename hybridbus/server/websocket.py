"""The websocket listener: NATS and MQTT carried in RFC 6455 frames.

Theory of operation
-------------------
``WebSocketConnection`` is the asyncio.Protocol of the websocket port. It lives in
two phases:

1. *Handshake.* h11 parses the HTTP/1.1 upgrade request (its buffer is bounded, so
   a client cannot grow it). The request is checked as nats-server checks it
   (GET, ``Upgrade: websocket``, ``Connection: Upgrade``, a key, version 13), then
   the origin rules (``same_origin``, ``allowed_origins``; a request without an
   ``Origin`` header is a non-browser client and passes). The path picks the
   protocol: ``/mqtt`` carries MQTT and must offer the ``mqtt`` subprotocol
   [MQTT-6.0.0-3]; any other path carries NATS. Failures get a plain-text HTTP
   error and a close; the whole phase is bounded by ``handshake_timeout``.
2. *Frames.* wsproto decodes the client's frames (it streams payloads, so a huge
   frame never sits in memory whole) and answers pings and closes. The payload
   bytes go to an inner ``NatsConnection`` / ``MqttConnection``, which believes it
   talks to a socket: ``_WsTransport`` wraps each of its writes in one binary frame.
   Without compression the frame header is written here directly (a server frame is
   never masked, so this is two lines); with ``permessage-deflate`` wsproto frames
   and compresses, and inflation is bounded so a deflate bomb is refused.

The inner protocols are subclasses that carry the class attribute ``ws = True``
(what ``Security`` uses for ``allowed_connection_types``, and what /connz can show);
NATS over websocket also reports ``conn_type`` "websocket", as nats-server does. MQTT
over websocket stays "mqtt" (nats-server's ``clientType`` is MQTT for it).

Write flow control is the inner protocol's: the real transport's high-water mark is
its ``max_pending``, and ``pause_writing`` is forwarded, so a slow websocket consumer
is cut exactly like a TCP one.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import logging
import struct
import zlib
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import h11
from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, TextMessage
from wsproto.extensions import PerMessageDeflate
from wsproto.frame_protocol import CloseReason
from wsproto.handshake import server_extensions_handshake
from wsproto.utilities import LocalProtocolError

from hybridbus.core import client as reasons
from hybridbus.mqtt.connection import MqttConnection
from hybridbus.nats.connection import NatsConnection

if TYPE_CHECKING:
    from hybridbus.server.server import Server

log = logging.getLogger("hybridbus.websocket")

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MQTT_PATH = "/mqtt"
# [MQTT-6.0.0-3] the subprotocol is "mqtt"; 3.1 clients offer "mqttv3.1".
MQTT_SUBPROTOCOLS = ("mqtt", "mqttv3.1")
# The upgrade request (request line + headers) may not exceed this.
MAX_HANDSHAKE = 16384
OPCODE_BINARY = 0x82  # FIN + binary
OPCODE_CLOSE = 0x88


def _tokens(value: bytes) -> list[str]:
    return [t.strip().lower() for t in value.decode("latin-1").split(",") if t.strip()]


def _host_port(netloc: str, secure: bool) -> tuple[str, str]:
    """host and port of a Host header / origin netloc, with the scheme's default port."""
    host, port = netloc, ""
    if netloc.startswith("["):
        end = netloc.find("]")
        host = netloc[: end + 1]
        rest = netloc[end + 1 :]
        port = rest[1:] if rest.startswith(":") else ""
    elif ":" in netloc:
        host, _, port = netloc.rpartition(":")
    return host.lower(), port or ("443" if secure else "80")


def frame_header(size: int, opcode: int = OPCODE_BINARY) -> bytes:
    """An unmasked server frame header for a `size`-byte payload (RFC 6455 5.2)."""
    if size < 126:
        return bytes((opcode, size))
    if size < 65536:
        return struct.pack("!BBH", opcode, 126, size)
    return struct.pack("!BBQ", opcode, 127, size)


class BoundedDeflate(PerMessageDeflate):
    """permessage-deflate whose inflation of one read is capped (no deflate bombs)."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def frame_inbound_payload_data(self, proto: Any, data: bytes) -> bytes | CloseReason:
        if not self._inbound_compressed or not self._inbound_is_compressible:
            return data
        try:
            out = self._decompressor.decompress(bytes(data), self.limit)
        except zlib.error:
            return CloseReason.INVALID_FRAME_PAYLOAD_DATA
        if self._decompressor.unconsumed_tail:
            return CloseReason.MESSAGE_TOO_BIG
        return out


class WsNatsConnection(NatsConnection):
    """NATS over websocket."""

    __slots__ = ()
    conn_type = "websocket"
    ws = True


class WsMqttConnection(MqttConnection):
    """MQTT over websocket (MQTT 5.0 §6)."""

    __slots__ = ()
    ws = True


class _WsTransport(asyncio.Transport):
    """What the inner protocol sees as its transport: writes become binary frames."""

    __slots__ = ("_outer",)

    def __init__(self, outer: WebSocketConnection) -> None:
        super().__init__()
        self._outer = outer

    def write(self, data: bytes | bytearray | memoryview) -> None:
        outer = self._outer
        if outer.closing or not data:
            return
        if outer.raw_frames:
            outer.transport.writelines((frame_header(len(data)), data))
        else:
            outer.transport.write(outer.ws.send(BytesMessage(data=bytes(data))))

    def writelines(self, list_of_data: Any) -> None:
        self.write(b"".join(list_of_data))

    def close(self) -> None:
        self._outer.close_ws(1000)

    def abort(self) -> None:
        outer = self._outer
        outer.closing = True
        outer.transport.abort()

    def is_closing(self) -> bool:
        return self._outer.closing or self._outer.transport.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._outer.transport.get_extra_info(name, default)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._outer.transport.set_write_buffer_limits(high, low)

    def get_write_buffer_size(self) -> int:
        return self._outer.transport.get_write_buffer_size()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._outer.transport.get_write_buffer_limits()

    def pause_reading(self) -> None:
        self._outer.transport.pause_reading()

    def resume_reading(self) -> None:
        self._outer.transport.resume_reading()

    def is_reading(self) -> bool:
        return self._outer.transport.is_reading()

    def can_write_eof(self) -> bool:
        return False

    def write_eof(self) -> None:
        self.close()

    def get_protocol(self) -> Any:
        return self._outer.inner

    def set_protocol(self, protocol: Any) -> None:
        raise NotImplementedError("the websocket shim has a fixed protocol")


class WebSocketConnection(asyncio.Protocol):
    """One websocket connection: handshake, then frames around an inner protocol."""

    __slots__ = (
        "server",
        "transport",
        "http",
        "ws",
        "inner",
        "is_mqtt",
        "raw_frames",
        "closing",
        "timer",
        "peer",
    )

    def __init__(self, server: Server) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.http: h11.Connection | None = h11.Connection(
            h11.SERVER, max_incomplete_event_size=MAX_HANDSHAKE
        )
        self.ws: Connection | None = None
        self.inner: NatsConnection | MqttConnection | None = None
        self.is_mqtt = False
        self.raw_frames = True
        self.closing = False
        self.timer: asyncio.TimerHandle | None = None
        self.peer = "?"

    # -- asyncio.Protocol -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            self.peer = f"{peer[0]}:{peer[1]}"
        timeout = self.server.options.websocket.handshake_timeout
        if timeout and timeout > 0:
            loop = asyncio.get_running_loop()
            self.timer = loop.call_later(timeout, self._handshake_expired)

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        if self.ws is None:
            self._handshake(data)
            return
        self.ws.receive_data(data)
        self._frames()

    def eof_received(self) -> bool | None:
        return None  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        inner = self.inner
        if inner is not None:
            inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.inner is not None:
            self.inner.resume_writing()

    # -- handshake --------------------------------------------------------------------

    def _handshake_expired(self) -> None:
        self.timer = None
        if self.ws is None and not self.closing:
            log.info("%s - websocket handshake timeout", self.peer)
            self.closing = True
            self.transport.abort()

    def _reject(self, status: int, text: str, extra: bytes = b"") -> None:
        log.info("%s - websocket handshake refused (%d): %s", self.peer, status, text)
        body = text.encode("utf-8", "replace") + b"\n"
        reason = {400: b"Bad Request", 403: b"Forbidden", 405: b"Method Not Allowed"}.get(
            status, b"Error"
        )
        self.transport.write(
            b"HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n%s\r\n%s"
            % (status, reason, len(body), extra, body)
        )
        self._finish_handshake_phase()
        self.closing = True
        self.transport.close()

    def _finish_handshake_phase(self) -> None:
        self.http = None
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _handshake(self, data: bytes) -> None:
        http = self.http
        if http is None:
            return
        try:
            http.receive_data(data)
            event = http.next_event()
        except h11.RemoteProtocolError as err:
            self._reject(err.error_status_hint or 400, f"websocket: bad HTTP request: {err}")
            return
        if event is h11.NEED_DATA:
            return
        if not isinstance(event, h11.Request):
            self._reject(400, "websocket: expected an HTTP upgrade request")
            return
        self._upgrade(event)

    def _upgrade(self, req: h11.Request) -> None:
        headers: dict[bytes, list[bytes]] = {}
        for name, value in req.headers:
            headers.setdefault(name, []).append(value)
        checked = self._check_upgrade(req, headers)
        if checked is None:
            return
        key, subprotocol = checked
        extensions, accept_ext = self._negotiate_compression(headers)
        self._switch_protocols(key, subprotocol, extensions, accept_ext)

    def _check_upgrade(
        self, req: h11.Request, headers: dict[bytes, list[bytes]]
    ) -> tuple[bytes, str | None] | None:
        """RFC 6455 §4.2.1 checks, origin and subprotocol; rejects and returns None
        on the first failure, else (Sec-WebSocket-Key, chosen subprotocol)."""

        def one(name: bytes) -> bytes:
            values = headers.get(name)
            return values[0].strip() if values else b""

        def tokens(name: bytes) -> list[str]:
            return [t for v in headers.get(name, ()) for t in _tokens(v)]

        if req.method != b"GET":
            self._reject(405, "request method must be GET")
            return None
        if b"content-length" in headers or b"transfer-encoding" in headers:
            self._reject(400, "websocket: an upgrade request has no body")
            return None
        if not one(b"host"):
            self._reject(400, "'Host' missing in request")
            return None
        if "websocket" not in tokens(b"upgrade"):
            self._reject(400, "invalid value for header 'Upgrade'")
            return None
        if "upgrade" not in tokens(b"connection"):
            self._reject(400, "invalid value for header 'Connection'")
            return None
        key = one(b"sec-websocket-key")
        try:
            valid_key = len(base64.b64decode(key, validate=True)) == 16
        except (binascii.Error, ValueError):
            valid_key = False
        if not valid_key:
            self._reject(400, "key missing")
            return None
        if one(b"sec-websocket-version") != b"13":
            self._reject(400, "invalid version", b"Sec-WebSocket-Version: 13\r\n")
            return None
        secure = self.transport.get_extra_info("ssl_object") is not None
        problem = self._origin_problem(
            one(b"origin") or one(b"sec-websocket-origin"), one(b"host"), secure
        )
        if problem:
            self._reject(403, f"origin not allowed: {problem}")
            return None
        path = req.target.split(b"?", 1)[0].decode("latin-1")
        subprotocol = None
        if path == MQTT_PATH:
            offered = tokens(b"sec-websocket-protocol")
            subprotocol = next((p for p in offered if p in MQTT_SUBPROTOCOLS), None)
            if subprotocol is None:
                self._reject(400, "invalid value for header 'Sec-Websocket-Protocol'")
                return None
            self.is_mqtt = True
        return key, subprotocol

    def _negotiate_compression(self, headers: dict[bytes, list[bytes]]) -> tuple[list, Any]:
        """permessage-deflate when configured and offered: (extensions, accept header)."""
        extensions: list = []
        accept_ext = None
        opts = self.server.options
        if opts.websocket.compression and b"sec-websocket-extensions" in headers:
            offers = [
                o.strip()
                for v in headers[b"sec-websocket-extensions"]
                for o in v.decode("latin-1").split(",")
                if o.strip()
            ]
            limit = max(opts.max_payload, opts.mqtt.max_packet_size) + 65536
            ext = BoundedDeflate(limit)
            accept_ext = server_extensions_handshake(offers, [ext])
            if accept_ext:
                extensions = [ext]
        return extensions, accept_ext

    def _switch_protocols(
        self, key: bytes, subprotocol: str | None, extensions: list, accept_ext: Any
    ) -> None:
        """Answer 101, then hand the connection to the protocol it carries."""
        # The request is complete (no body): what h11 holds past it are the first frames.
        while True:
            try:
                ev = self.http.next_event()
            except h11.RemoteProtocolError:
                break
            if ev is h11.PAUSED or ev is h11.NEED_DATA or isinstance(ev, h11.ConnectionClosed):
                break
        trailing = self.http.trailing_data[0]
        self._finish_handshake_phase()

        accept = base64.b64encode(hashlib.sha1(key + WS_GUID).digest())
        response = [
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n"
        ]
        if subprotocol:
            response.append(b"Sec-WebSocket-Protocol: " + subprotocol.encode() + b"\r\n")
        if accept_ext:
            response.append(b"Sec-WebSocket-Extensions: " + accept_ext + b"\r\n")
        response.append(b"\r\n")
        self.transport.write(b"".join(response))
        self.raw_frames = not extensions
        self.ws = Connection(ConnectionType.SERVER, extensions)
        log.debug("%s - websocket upgraded (%s)", self.peer, "mqtt" if self.is_mqtt else "nats")

        inner = WsMqttConnection(self.server) if self.is_mqtt else WsNatsConnection(self.server)
        self.inner = inner
        inner.connection_made(_WsTransport(self))
        if trailing and not self.closing:
            self.ws.receive_data(trailing)
            self._frames()

    def _origin_problem(self, origin: bytes, host: bytes, secure: bool) -> str | None:
        """nats-server's origin rules; None when the origin is acceptable."""
        wopts = self.server.options.websocket
        if not origin or not (wopts.same_origin or wopts.allowed_origins):
            return None
        try:
            u = urlsplit(origin.decode("latin-1"))
        except ValueError:
            return "invalid origin"
        if not u.scheme or not u.netloc:
            return "invalid origin"
        ohost, oport = _host_port(u.netloc, u.scheme == "https")
        if wopts.same_origin:
            rhost, rport = _host_port(host.decode("latin-1"), secure)
            if (ohost, oport) != (rhost, rport):
                return "not same origin"
        if wopts.allowed_origins:
            for allowed in wopts.allowed_origins:
                a = urlsplit(allowed)
                ahost, aport = _host_port(a.netloc, a.scheme == "https")
                if a.scheme == u.scheme and ahost == ohost and aport == oport:
                    break
            else:
                return "not in the allowed list"
        return None

    # -- frames -----------------------------------------------------------------------

    def _frames(self) -> None:
        inner = self.inner
        for event in self.ws.events():
            if self.closing:
                return
            if isinstance(event, BytesMessage):
                inner.data_received(bytes(event.data))
            elif isinstance(event, TextMessage):
                if self.is_mqtt:
                    # [MQTT-6.0.0-1] MQTT travels in binary frames only.
                    log.info("%s - text frame on an MQTT websocket", self.peer)
                    inner.close_reason = reasons.PROTOCOL_VIOLATION
                    self.close_ws(CloseReason.UNSUPPORTED_DATA)
                    return
                inner.data_received(event.data.encode("utf-8"))
            elif isinstance(event, Ping):
                self.transport.write(self.ws.send(event.response()))
            elif isinstance(event, CloseConnection):
                self._closed_by_peer(event)
                return

    def _closed_by_peer(self, event: CloseConnection) -> None:
        ws = self.ws
        if ws.state is ConnectionState.OPEN:
            # wsproto reports a frame it could not parse as a close in state OPEN.
            log.info("%s - websocket protocol error: %s", self.peer, event.reason)
            if self.inner.close_reason is None:
                self.inner.close_reason = reasons.PROTOCOL_VIOLATION
            self.close_ws(event.code)
            return
        if ws.state is ConnectionState.REMOTE_CLOSING:
            try:
                self.transport.write(ws.send(event.response()))
            except LocalProtocolError:
                pass
        self.closing = True
        self.transport.close()

    def close_ws(self, code: int) -> None:
        """Send a close frame (once), then close the TCP connection after it."""
        if self.closing:
            return
        self.closing = True
        ws = self.ws
        if ws is not None and ws.state in (ConnectionState.OPEN, ConnectionState.REMOTE_CLOSING):
            try:
                self.transport.write(ws.send(CloseConnection(code=code)))
            except LocalProtocolError:
                pass
        self.transport.close()
