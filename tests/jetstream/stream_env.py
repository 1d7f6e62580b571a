"""The ``senv`` fixture of the stream tests (test_streams_api, test_publish,
test_direct_get, test_api_bad_input): a fresh server, a nats-py client, raw API requests
and raw wires, and ``reference_server`` (a real nats-server 2.15.1 on a free loopback
port) for the tests that compare answers key by key.

With HB_REFERENCE=1 the ``senv`` tests run against a fresh nats-server instead
(/tmp/venv/bin/nats-server, or $HB_NATS_SERVER): what passes there is nats-server's
behaviour. ``senv.reference`` says which one it is, for the hybridbus-only checks
(the $MQTT_ streams, the strict option, restarts).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
from typing import Any

import nats
import pytest

from tests.helpers.wire import Wire, nats_connect

JS_CONNECT = b'{"verbose":false,"pedantic":false,"headers":true,"no_responders":true}'
NATS_SERVER = (
    os.environ.get("HB_NATS_SERVER") or shutil.which("nats-server") or ("/tmp/venv/bin/nats-server")
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def start_nats_server(store_dir: str) -> tuple[subprocess.Popen, int]:
    """A nats-server with JetStream on a free loopback port (stop it with ``stop``)."""
    port = free_port()
    proc = subprocess.Popen(
        [NATS_SERVER, "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", store_dir],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(250):
        try:
            socket.create_connection(("127.0.0.1", port), 0.1).close()
            return proc, port
        except OSError:
            await asyncio.sleep(0.02)
    stop(proc)
    raise RuntimeError("nats-server did not start")


def stop(proc: subprocess.Popen) -> None:
    """Stop a server we started, by its PID."""
    if proc.poll() is None:
        proc.kill()
        proc.wait(5)


class StreamEnv:
    def __init__(self, port: int, server: Any = None) -> None:
        self.port = port
        self.url = f"nats://127.0.0.1:{port}"
        self.server = server
        self.reference = server is None
        self.nc: Any = None
        self.js: Any = None
        self._clients: list[Any] = []
        self._wires: list[Wire] = []

    async def connect(self) -> Any:
        nc = await nats.connect(self.url)
        self._clients.append(nc)
        return nc

    async def wire(self) -> Wire:
        """A raw connection with headers and no_responders, PING/PONG synced."""
        w = await nats_connect(self.port, JS_CONNECT)
        self._wires.append(w)
        return w

    async def api(self, subject: str, body: Any = b"", timeout: float = 2.0) -> dict:
        """A raw $JS.API request; the JSON answer with its ``type`` dropped."""
        if not isinstance(body, bytes):
            body = json.dumps(body).encode()
        msg = await self.nc.request(subject, body, timeout=timeout)
        doc = json.loads(msg.data)
        doc.pop("type", None)
        return doc

    async def error(self, subject: str, body: Any = b"") -> tuple[int, int, str]:
        """(code, err_code, description) of an API request that must fail."""
        doc = await self.api(subject, body)
        assert "error" in doc, doc
        err = doc["error"]
        assert set(err) == {"code", "err_code", "description"}, err
        return err["code"], err["err_code"], err["description"]

    async def request(self, subject: str, body: bytes = b"", headers=None, timeout=2.0):
        return await self.nc.request(subject, body, timeout=timeout, headers=headers)

    async def pub_ack(self, subject: str, body: bytes = b"", headers=None) -> dict:
        """A publish as a request; the PubAck JSON, exactly as sent."""
        msg = await self.request(subject, body, headers)
        return json.loads(msg.data)

    async def close(self) -> None:
        for w in self._wires:
            await w.close()
        for nc in self._clients:
            try:
                await nc.close()
            except Exception:
                pass


@pytest.fixture
async def senv(server_factory, tmp_path):
    proc = None
    if os.environ.get("HB_REFERENCE"):
        proc, port = await start_nats_server(str(tmp_path / "ref"))
        e = StreamEnv(port)
    else:
        server = await server_factory()
        e = StreamEnv(server.nats_port, server)
    e.nc = await e.connect()
    e.js = e.nc.jetstream(timeout=2)
    try:
        yield e
    finally:
        await e.close()
        if proc is not None:
            stop(proc)


async def second_client_works(url: str) -> None:
    """Another client can still use the server (nothing a bad request did hurt it)."""
    nc = await nats.connect(url)
    try:
        sub = await nc.subscribe("alive.check")
        await nc.publish("alive.check", b"yes")
        msg = await sub.next_msg(timeout=2)
        assert msg.data == b"yes"
        info = await nc.jetstream(timeout=2).account_info()
        assert info.streams >= 0
    finally:
        await nc.close()
