"""Helpers of the account tests: a real server from a config text, nats-py clients
logged in as a user, and a collector of what a subscription receives."""

from __future__ import annotations

import asyncio
from pathlib import Path

import nats

from hybridbus.config.load import load_options, startup_errors
from hybridbus.server.server import Server

BASE = """
host: 127.0.0.1
port: -1
http: "127.0.0.1:-1"
jetstream {{ store_dir: "{store}" }}
mqtt {{ host: 127.0.0.1, port: -1 }}
"""

# Three accounts with a user each, $G with one user; nothing exported.
PLAIN = """
authorization { users: [{user: g, password: g}] }
accounts {
  A: { users: [{user: a, password: a}, {user: a2, password: a2}] }
  B: { users: [{user: b, password: b}] }
  C: { users: [{user: c, password: c}] }
}
"""


def write_conf(tmp_path: Path, text: str, name: str = "accounts.conf") -> str:
    path = tmp_path / name
    path.write_text(BASE.format(store=tmp_path / "store") + text)
    return str(path)


async def start(tmp_path: Path, text: str) -> Server:
    path = write_conf(tmp_path, text)
    opts, warnings = load_options(path)
    assert startup_errors(opts) == []
    server = Server(opts)
    await server.start()
    return server


async def login(server: Server, user: str, **kwargs) -> nats.NATS:
    async def quiet(e):
        pass

    return await nats.connect(
        f"nats://127.0.0.1:{server.nats_port}",
        user=user,
        password=user,
        allow_reconnect=False,
        max_reconnect_attempts=0,
        connect_timeout=2,
        error_cb=quiet,
        **kwargs,
    )


class Inbox:
    """Every message a subscription receives, as (subject, data)."""

    def __init__(self) -> None:
        self.got: list[tuple[str, bytes]] = []
        self.event = asyncio.Event()

    async def cb(self, msg) -> None:
        self.got.append((msg.subject, msg.data))
        self.event.set()

    async def wait(self, n: int, timeout: float = 2.0) -> None:
        async def enough():
            while len(self.got) < n:
                self.event.clear()
                await self.event.wait()

        await asyncio.wait_for(enough(), timeout)


async def sub(nc: nats.NATS, subject: str, queue: str = "") -> Inbox:
    box = Inbox()
    await nc.subscribe(subject, queue=queue, cb=box.cb)
    await nc.flush(1)
    return box


async def settle(*clients: nats.NATS) -> None:
    """Every client's traffic has been through the server (a PING round each, twice:
    hops between accounts run after their round)."""
    for _ in range(2):
        for nc in clients:
            await nc.flush(1)
    await asyncio.sleep(0.05)
