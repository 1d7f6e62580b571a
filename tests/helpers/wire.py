"""Raw-socket transcripts: send exact bytes, expect exact (or regex) replies.

wire = await Wire.open(port)
await wire.send(b"SUB foo 1\\r\\nPUB foo 2\\r\\nhi\\r\\n")
await wire.expect(b"MSG foo 1 2\\r\\nhi\\r\\n")
"""

from __future__ import annotations

import asyncio
import re
import socket


class Wire:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.buffer = b""

    @classmethod
    async def open(cls, port: int, host: str = "127.0.0.1", rcvbuf: int = 0) -> Wire:
        if rcvbuf:
            # A small receive window makes a reader that stops reading back up quickly.
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            sock.connect((host, port))
            reader, writer = await asyncio.open_connection(sock=sock)
        else:
            reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def _fill(self, timeout: float) -> bool:
        try:
            chunk = await asyncio.wait_for(self.reader.read(65536), timeout)
        except TimeoutError:
            return False
        except ConnectionError:
            chunk = b""
        if not chunk:
            raise EOFError(f"connection closed; unread: {self.buffer!r}")
        self.buffer += chunk
        return True

    async def expect(self, expected: bytes, timeout: float = 3.0) -> bytes:
        """Wait until the buffer starts with `expected`; consume and return it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(self.buffer) < len(expected) and expected.startswith(self.buffer):
            left = deadline - loop.time()
            if left <= 0 or not await self._fill(left):
                break
        if not self.buffer.startswith(expected):
            raise AssertionError(f"expected {expected!r}, got {self.buffer!r}")
        self.buffer = self.buffer[len(expected) :]
        return expected

    async def expect_re(self, pattern: bytes, timeout: float = 3.0) -> re.Match:
        """Wait until the buffer starts with a match of `pattern`; consume it."""
        regex = re.compile(pattern, re.DOTALL)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            m = regex.match(self.buffer)
            if m:
                self.buffer = self.buffer[m.end() :]
                return m
            left = deadline - loop.time()
            if left <= 0:
                raise AssertionError(f"expected /{pattern!r}/, got {self.buffer!r}")
            try:
                if not await self._fill(left):
                    continue
            except EOFError:
                m = regex.match(self.buffer)
                if m:
                    self.buffer = self.buffer[m.end() :]
                    return m
                raise

    async def read_line(self, timeout: float = 3.0) -> bytes:
        m = await self.expect_re(rb"[^\n]*\n", timeout)
        return m.group(0)

    async def expect_nothing(self, wait: float = 0.3) -> None:
        """Nothing more arrives within `wait` seconds."""
        try:
            await self._fill(wait)
        except EOFError:
            pass
        assert self.buffer == b"", f"unexpected bytes: {self.buffer!r}"

    async def expect_closed(self, timeout: float = 3.0) -> bytes:
        """The server closes the connection; returns whatever arrived first."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            left = deadline - loop.time()
            if left <= 0:
                raise AssertionError(f"connection still open; got {self.buffer!r}")
            try:
                await self._fill(left)
            except EOFError:
                rest, self.buffer = self.buffer, b""
                return rest

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except (ConnectionError, OSError):
            pass


async def nats_connect(
    port: int, connect: bytes = b'{"verbose":false,"pedantic":false}', rcvbuf: int = 0
) -> Wire:
    """Open a raw NATS connection, read INFO, send CONNECT and sync with PING/PONG."""
    wire = await Wire.open(port, rcvbuf=rcvbuf)
    await wire.expect_re(rb"INFO \{.*?\} \r\n")
    await wire.send(b"CONNECT " + connect + b"\r\nPING\r\n")
    await wire.expect_re(rb"(\+OK\r\n)?PONG\r\n")
    return wire


async def mqtt_connect(
    port: int, client_id: str = "", clean: bool = True, expect_present: int = 0, **kwargs
) -> Wire:
    """Open a raw MQTT 3.1.1 connection and expect CONNACK accepted."""
    from tests.helpers import mqtt_packets as mp

    wire = await Wire.open(port)
    await wire.send(mp.connect(client_id, clean=clean, **kwargs))
    await wire.expect(mp.connack(expect_present, 0))
    return wire


async def eventually(predicate, timeout: float = 3.0, interval: float = 0.02) -> None:
    """Wait until predicate() is true; fail after `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


async def mqtt_packets(wire: Wire, count: int, level: int = 5, timeout: float = 3.0) -> list:
    """Read exactly `count` MQTT packets from the server, decoded with the codec.

    Packets beyond `count` that arrived in the same read wait for the next call."""
    from hybridbus.codec.mqtt import MQTTParser

    parser = getattr(wire, "mqtt_parser", None)
    if parser is None:
        parser = wire.mqtt_parser = MQTTParser(protocol_level=level)
        wire.mqtt_backlog = []
    packets: list = wire.mqtt_backlog
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        if wire.buffer:
            data, wire.buffer = wire.buffer, b""
            packets.extend(parser.feed(data))
        if len(packets) >= count:
            wire.mqtt_backlog = packets[count:]
            return packets[:count]
        left = deadline - loop.time()
        if left <= 0:
            raise AssertionError(f"got {len(packets)} packets of {count}: {packets}")
        await wire._fill(left)


async def mqtt5_connect(port: int, client_id: str = "", **kwargs) -> tuple[Wire, object]:
    """Open a raw MQTT 5 connection; returns the wire and the decoded CONNACK."""
    from tests.helpers import mqtt_packets as mp

    wire = await Wire.open(port)
    await wire.send(mp.connect(client_id, level=5, **kwargs))
    (connack,) = await mqtt_packets(wire, 1)
    assert connack.reason_code == 0, connack
    return wire, connack
