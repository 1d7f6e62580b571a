"""A small raw websocket client for tests (wsproto, client side).

ws = await WsClient.open(port, "/", subprotocols=[])
await ws.send(b"CONNECT {}\\r\\n")
data = await ws.recv_until(b"PONG\\r\\n")
"""

from __future__ import annotations

import asyncio
import ssl

from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    Pong,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)


class Rejected(Exception):
    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(f"HTTP {status}: {body!r}")
        self.status = status
        self.body = body


class WsClient:
    def __init__(self, reader, writer, conn: WSConnection) -> None:
        self.reader = reader
        self.writer = writer
        self.conn = conn
        self.data = bytearray()
        self.closed: CloseConnection | None = None
        self.pongs: list[bytes] = []
        self.subprotocol: str | None = None
        self.texts = 0
        self.extensions: list = []

    @classmethod
    async def open(
        cls,
        port: int,
        path: str = "/",
        subprotocols: list[str] | None = None,
        origin: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        host: str = "127.0.0.1",
        timeout: float = 3.0,
        extensions: list | None = None,
    ) -> WsClient:
        reader, writer = await asyncio.open_connection(
            host, port, ssl=ssl_context, server_hostname=host if ssl_context else None
        )
        conn = WSConnection(ConnectionType.CLIENT)
        headers = [(b"Origin", origin.encode())] if origin else []
        writer.write(
            conn.send(
                Request(
                    host=f"{host}:{port}",
                    target=path,
                    subprotocols=subprotocols or [],
                    extensions=extensions or [],
                    extra_headers=headers,
                )
            )
        )
        client = cls(reader, writer, conn)
        status, body = None, b""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            chunk = await asyncio.wait_for(reader.read(65536), max(0.01, deadline - loop.time()))
            if not chunk:
                if status is not None:
                    raise Rejected(status, body)
                raise EOFError("closed during the handshake")
            conn.receive_data(chunk)
            accepted = False
            for event in conn.events():
                if accepted:
                    client._handle(event)  # frames that came with the 101
                elif isinstance(event, AcceptConnection):
                    client.subprotocol = event.subprotocol
                    client.extensions = event.extensions
                    accepted = True
                elif isinstance(event, RejectConnection):
                    status = event.status_code
                    if not event.has_body:
                        raise Rejected(status, b"")
                elif isinstance(event, RejectData):
                    body += event.data
                    if event.body_finished:
                        raise Rejected(status, body)
            if accepted:
                return client

    async def send(self, data: bytes) -> None:
        self.writer.write(self.conn.send(BytesMessage(data=data)))
        await self.writer.drain()

    async def send_text(self, text: str) -> None:
        self.writer.write(self.conn.send(TextMessage(data=text)))
        await self.writer.drain()

    async def send_raw(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def ping(self, payload: bytes) -> None:
        self.writer.write(self.conn.send(Ping(payload=payload)))
        await self.writer.drain()

    async def _pump(self, timeout: float) -> bool:
        """Read once; False on EOF."""
        try:
            chunk = await asyncio.wait_for(self.reader.read(65536), timeout)
        except ConnectionError:
            chunk = b""
        if not chunk:
            return False
        self.conn.receive_data(chunk)
        for event in self.conn.events():
            self._handle(event)
        return True

    def _handle(self, event) -> None:
        if isinstance(event, BytesMessage):
            self.data += event.data
        elif isinstance(event, TextMessage):
            self.texts += 1
            self.data += event.data.encode()
        elif isinstance(event, Pong):
            self.pongs.append(bytes(event.payload))
        elif isinstance(event, Ping):
            self.writer.write(self.conn.send(event.response()))
        elif isinstance(event, CloseConnection):
            self.closed = event

    async def recv_until(self, marker: bytes, timeout: float = 3.0) -> bytes:
        """Bytes up to and including `marker` (consumed from the buffer)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while marker not in self.data:
            left = deadline - loop.time()
            if left <= 0:
                raise AssertionError(f"no {marker!r} within {timeout}s; got {bytes(self.data)!r}")
            try:
                if not await self._pump(left):
                    raise EOFError(f"closed; got {bytes(self.data)!r}")
            except TimeoutError:
                continue
        end = self.data.index(marker) + len(marker)
        out = bytes(self.data[:end])
        del self.data[:end]
        return out

    async def recv_exactly(self, n: int, timeout: float = 3.0) -> bytes:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(self.data) < n:
            left = deadline - loop.time()
            if left <= 0:
                raise AssertionError(f"only {len(self.data)} of {n} bytes: {bytes(self.data)!r}")
            try:
                if not await self._pump(left):
                    raise EOFError(f"closed; got {bytes(self.data)!r}")
            except TimeoutError:
                continue
        out = bytes(self.data[:n])
        del self.data[:n]
        return out

    async def wait_closed(self, timeout: float = 3.0) -> CloseConnection | None:
        """Until the TCP connection ends; returns the close frame the server sent."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            left = deadline - loop.time()
            if left <= 0:
                raise AssertionError("websocket still open")
            try:
                if not await self._pump(left):
                    return self.closed
            except TimeoutError:
                continue

    async def close(self) -> None:
        try:
            self.writer.write(self.conn.send(CloseConnection(code=1000)))
        except Exception:
            pass
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except (ConnectionError, OSError, ssl.SSLError):
            pass
