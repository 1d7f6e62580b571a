"""The ``env`` fixture of the consumer tests (test_consumers_api, test_pull, test_push,
test_acks, test_ordered): a fresh server, a nats-py client and raw wires.

Every test runs against a fresh hybridbus server. With HB_REFERENCE=1 the same tests run
against a fresh nats-server (/tmp/venv/bin/nats-server, or $HB_NATS_SERVER), which is
how they were checked: what passes there is nats-server's behaviour. ``env.reference``
says which one it is, for the few hybridbus-only checks.
"""

from __future__ import annotations

import os
from typing import Any, NamedTuple

import pytest

from tests.helpers.wire import Wire
from tests.jetstream.stream_env import StreamEnv, start_nats_server, stop


class Frame(NamedTuple):
    subject: bytes
    sid: bytes
    reply: bytes | None
    hdr: bytes
    data: bytes

    @property
    def status(self) -> bytes:
        """The status line (``NATS/1.0 404 No Messages``), or b"" for plain data."""
        return self.hdr.split(b"\r\n", 1)[0] if self.hdr else b""

    def header(self, key: str) -> str | None:
        for line in self.hdr.split(b"\r\n")[1:]:
            k, _, v = line.partition(b":")
            if k.strip().decode() == key:
                return v.strip().decode()
        return None


async def frame(w: Wire, timeout: float = 2.0) -> Frame:
    """The next MSG/HMSG on a raw wire (a PING on the way is answered)."""
    while True:
        line = (await w.read_line(timeout)).rstrip(b"\r\n")
        if line == b"PING":
            await w.send(b"PONG\r\n")
            continue
        if line in (b"PONG", b"+OK"):
            continue
        parts = line.split()
        if parts[0] == b"MSG":
            subject, sid = parts[1], parts[2]
            reply = parts[3] if len(parts) == 5 else None
            hlen, total = 0, int(parts[-1])
        elif parts[0] == b"HMSG":
            subject, sid = parts[1], parts[2]
            reply = parts[3] if len(parts) == 6 else None
            hlen, total = int(parts[-2]), int(parts[-1])
        else:
            raise AssertionError(f"unexpected line {line!r}")
        body = (await w.expect_re(rb"(.{%d})\r\n" % total, timeout)).group(1)
        return Frame(subject, sid, reply, body[:hlen], body[hlen:])


async def no_frame(w: Wire, wait: float = 0.3) -> None:
    """Nothing but PINGs arrives within ``wait`` seconds."""
    try:
        f = await frame(w, wait)
    except AssertionError as e:
        if "expected" in str(e) and w.buffer in (b"",):
            return
        raise
    raise AssertionError(f"unexpected {f}")


async def pub(w: Wire, subject: str, body: bytes = b"", reply: str | None = None) -> None:
    r = f" {reply}" if reply else ""
    await w.send(b"PUB %s%s %d\r\n%s\r\n" % (subject.encode(), r.encode(), len(body), body))


async def pull(
    w: Wire, stream: str, consumer: str, body: bytes = b"", inbox: str = "inb.x"
) -> None:
    """A MSG.NEXT request with reply ``inbox`` on a raw wire."""
    await pub(w, f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}", body, inbox)


class Env(StreamEnv):
    """StreamEnv (connect, raw wires, raw API requests) plus consumer helpers."""

    async def add_stream(self, name: str, subjects: list[str], **kw: Any) -> None:
        await self.js.add_stream(name=name, subjects=subjects, **kw)

    async def create(self, stream: str, config: dict, subject: str | None = None) -> dict:
        """CONSUMER.CREATE (named form when the config has a name)."""
        if subject is None:
            name = config.get("name") or config.get("durable_name")
            subject = f"$JS.API.CONSUMER.CREATE.{stream}" + (f".{name}" if name else "")
        return await self.api(subject, {"stream_name": stream, "config": config})

    async def info(self, stream: str, name: str) -> dict:
        return await self.api(f"$JS.API.CONSUMER.INFO.{stream}.{name}")

    async def publish(self, subject: str, count: int, prefix: bytes = b"m") -> None:
        for i in range(count):
            await self.js.publish(subject, prefix + b"%d" % i)


@pytest.fixture
async def env(server_factory, tmp_path):
    proc = None
    if os.environ.get("HB_REFERENCE"):
        proc, port = await start_nats_server(str(tmp_path / "ref"))
        e = Env(port)
    else:
        server = await server_factory()
        e = Env(server.nats_port, server)
    e.nc = await e.connect()
    e.js = e.nc.jetstream(timeout=2)
    try:
        yield e
    finally:
        await e.close()
        if proc is not None:
            stop(proc)
