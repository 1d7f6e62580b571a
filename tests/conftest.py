"""Fixtures shared by every test: uvloop, in-process servers on free loopback ports,
and server processes started through the real CLI."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import uvloop

from hybridbus.options import Options
from hybridbus.server.server import Server

ROOT = Path(__file__).resolve().parent.parent


def pytest_asyncio_loop_factories(config, item):
    """Every async test runs on uvloop, as the server does in production."""
    return {"uvloop": uvloop.new_event_loop}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_options(tmp_path: Path | None = None, **overrides) -> Options:
    """Options for a test server: loopback, OS-chosen ports, store under tmp_path.

    Overrides use `section__field` for nested options, e.g. `mqtt__port=0`."""
    opts = Options(host="127.0.0.1", port=0, http_port=0)
    opts.mqtt.host = "127.0.0.1"
    opts.mqtt.port = 0
    opts.http_host = "127.0.0.1"
    if tmp_path is not None:
        opts.jetstream.store_dir = str(tmp_path / "store")
    for key, value in overrides.items():
        target = opts
        parts = key.split("__")
        for part in parts[:-1]:
            target = getattr(target, part)
        if not hasattr(target, parts[-1]):
            raise AttributeError(f"no option {key}")
        setattr(target, parts[-1], value)
    return opts


@pytest.fixture
async def server_factory(tmp_path):
    servers: list[Server] = []

    async def make(**overrides) -> Server:
        server = Server(make_options(tmp_path / f"s{len(servers)}", **overrides))
        await server.start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        await server.shutdown()


@pytest.fixture
async def nats_server(server_factory) -> Server:
    return await server_factory()


class ServerProcess:
    """`hybridbus serve` in a child process, stopped by PID."""

    def __init__(self, args: list[str], cwd: Path, ports: dict[str, int], preexec_fn=None):
        self.args = args
        self.cwd = cwd
        self.ports = ports
        self.preexec_fn = preexec_fn
        self.proc: subprocess.Popen | None = None
        self.log_path = cwd / f"server-{len(list(cwd.glob('server-*.log')))}.log"

    def start(self, timeout: float = 15.0) -> ServerProcess:
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hybridbus", *self.args],
            cwd=self.cwd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=self.preexec_fn,
        )
        deadline = time.monotonic() + timeout
        waiting = [self.ports[name] for name in ("nats", "mqtt", "http") if name in self.ports]
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.output()}")
            try:
                with socket.create_connection(("127.0.0.1", waiting[0]), timeout=0.2):
                    waiting.pop(0)
                    if not waiting:
                        return self
            except OSError:
                time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"server did not listen on {waiting}:\n{self.output()}")

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


@pytest.fixture
def server_process(tmp_path):
    started: list[ServerProcess] = []

    def make(*extra: str, config: str | None = None, ports: dict | None = None) -> ServerProcess:
        ports = ports or {"nats": free_port(), "mqtt": free_port(), "http": free_port()}
        args = ["serve", "-a", "127.0.0.1", "-p", str(ports["nats"])]
        args += ["--mqtt-port", str(ports["mqtt"]), "--http-port", str(ports["http"])]
        args += ["--store-dir", str(tmp_path / "store")]
        if config:
            args += ["-c", config]
        args += list(extra)
        proc = ServerProcess(args, tmp_path, ports)
        started.append(proc)
        return proc

    yield make
    for proc in started:
        proc.kill()
