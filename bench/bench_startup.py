"""Start-up time: from exec of `hybridbus serve` to every listener accepting connections.

Run: .venv/bin/python bench/bench_startup.py [--runs 7] [--messages 100000] [--root DIR]
                                             [--fresh] [--no-site] [--no-pyc] [--importtime]

Each run execs the server (the same Python and `-m hybridbus` a user's `hybridbus`
script amounts to) with the NATS, MQTT and HTTP listeners on free loopback ports and a
fresh store directory, then polls the three ports every millisecond; the time is from
just before exec to the moment the last of them accepts. The server is stopped with
SIGTERM and must exit 0. Prints the best and the median of the runs.

By default every timed start is a restart on the same store directory (created by an
untimed first start), as when a server is restarted; `--fresh` gives each run a new,
empty directory instead, which adds creating the MQTT state streams (and their fsyncs).
`--no-site` runs the servers with `python -S` and the venv's site-packages on
PYTHONPATH: what an ordinary `pip install .` costs, without the import hook that an
editable install (`pip install -e .`) adds to every start.

`--messages N` first fills the store with N stored QoS 1 messages (queued for
persistent MQTT sessions that are offline, 50,000 each), then times start-ups that
recover them. `--root DIR` runs the hybridbus source tree in DIR instead of this one
(to compare against an older checkout: `git archive HEAD | tar -x -C /tmp/base`).
`--importtime` prints the ten slowest imports of one start (`python -X importtime`).

Bytecode: an installed package has its modules compiled (pip writes the .pyc files), so
by default the servers run with a private bytecode cache (PYTHONPYCACHEPREFIX in a
temporary directory, warmed by one untimed start) even when the environment says
PYTHONDONTWRITEBYTECODE; `--no-pyc` keeps the environment's setting instead, which with
PYTHONDONTWRITEBYTECODE=1 recompiles every module on every start.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def accepting(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.05):
            return True
    except OSError:
        return False


def serve_args(ports: list[int], store: str) -> list[str]:
    conf = os.path.join(os.path.dirname(store), "startup.conf")
    extra = ["-c", conf] if os.path.exists(conf) else []
    return [
        "serve",
        *extra,
        "-a",
        "127.0.0.1",
        "-p",
        str(ports[0]),
        "--mqtt-port",
        str(ports[1]),
        "--http-port",
        str(ports[2]),
        "--store-dir",
        store,
    ]


ENV: dict[str, str] = {}  # what main() adds to (or removes from) the servers' environment


PYTHON_FLAGS: list[str] = []  # ["-S"] with --no-site


def server_env(root: str) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=root, **ENV)
    if PYTHON_FLAGS:
        import site

        env["PYTHONPATH"] = os.pathsep.join([root, *site.getsitepackages()])
    if "PYTHONPYCACHEPREFIX" in ENV:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def one_start(root: str, store: str) -> tuple[float, str]:
    """Seconds from exec to all three listeners accepting; and the server's stderr."""
    ports = [free_port() for _ in range(3)]
    env = server_env(root)
    log = tempfile.TemporaryFile()
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, *PYTHON_FLAGS, "-m", "hybridbus", *serve_args(ports, store)],
        cwd=root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    try:
        waiting = list(ports)
        deadline = t0 + 30
        while waiting and time.perf_counter() < deadline:
            if proc.poll() is not None:
                break
            if accepting(waiting[0]):
                waiting.pop(0)
            else:
                time.sleep(0.001)
        elapsed = time.perf_counter() - t0
        if waiting:
            raise RuntimeError(f"server did not accept on {waiting}")
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
        log.seek(0)
        err = log.read().decode(errors="replace")
        log.close()
    if code != 0:
        raise RuntimeError(f"server exited {code}:\n{err}")
    return elapsed, err


def fill_store(root: str, store: str, messages: int) -> None:
    """Start a server on `store`, queue `messages` QoS 1 messages for an offline
    persistent MQTT session, stop it cleanly."""
    ports = [free_port() for _ in range(3)]
    env = server_env(root)
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(
        [sys.executable, *PYTHON_FLAGS, "-m", "hybridbus", *serve_args(ports, store)],
        cwd=root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    try:
        deadline = time.monotonic() + 30
        while not accepting(ports[1]):
            if time.monotonic() > deadline or proc.poll() is not None:
                log.seek(0)
                raise RuntimeError("filler server did not start:\n" + log.read().decode())
            time.sleep(0.01)
        _queue_messages(ports[1], messages)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(120)


def _packet(kind: int, body: bytes) -> bytes:
    n, rl = len(body), bytearray()
    while True:
        b, n = n % 128, n // 128
        rl.append(b | (0x80 if n else 0))
        if not n:
            return bytes([kind]) + bytes(rl) + body


def _connect(client_id: bytes, clean: bool) -> bytes:
    flags = 0x02 if clean else 0x00
    body = b"\x00\x04MQTT\x04" + bytes([flags]) + b"\x00\x00"
    return _packet(0x10, body + len(client_id).to_bytes(2, "big") + client_id)


def _read_packets(sock: socket.socket, count: int) -> None:
    """Read until `count` packets have arrived (all short acks here)."""
    buf = b""
    seen = 0
    while seen < count:
        data = sock.recv(65536)
        if not data:
            raise RuntimeError("server closed the connection")
        buf += data
        while len(buf) >= 2 and len(buf) >= 2 + buf[1]:
            buf = buf[2 + buf[1] :]
            seen += 1


# Messages queued per offline session: a session holds at most 65,535 (one packet id
# each), so larger stores are spread over several sessions.
PER_SESSION = 50_000


def _queue_messages(port: int, messages: int) -> None:
    # Persistent subscribers at QoS 1 that then go away: what is published to them
    # stays queued in the store for their sessions, one topic each.
    sessions = max(1, -(-messages // PER_SESSION))
    topics = [b"bench/startup/%d" % i for i in range(sessions)]
    for i, topic in enumerate(topics):
        with socket.create_connection(("127.0.0.1", port)) as sub:
            sub.sendall(_connect(b"startup-sub-%d" % i, clean=False))
            _read_packets(sub, 1)
            body = b"\x00\x01" + len(topic).to_bytes(2, "big") + topic + b"\x01"
            sub.sendall(_packet(0x82, body))
            _read_packets(sub, 1)
    with socket.create_connection(("127.0.0.1", port)) as pub:
        pub.sendall(_connect(b"startup-pub", clean=True))
        _read_packets(pub, 1)
        payload = b"x" * 64
        sent = 0
        window = 500
        while sent < messages:
            n = min(window, messages - sent)
            frames = []
            for i in range(n):
                topic = topics[(sent + i) // PER_SESSION]
                head = len(topic).to_bytes(2, "big") + topic
                frames.append(
                    _packet(0x32, head + ((sent + i) % 65535 + 1).to_bytes(2, "big") + payload)
                )
            pub.sendall(b"".join(frames))
            _read_packets(pub, n)
            sent += n


def importtime(root: str, store: str) -> None:
    ports = [free_port() for _ in range(3)]
    env = server_env(root)
    proc = subprocess.Popen(
        [sys.executable, "-X", "importtime", "-m", "hybridbus", *serve_args(ports, store)],
        cwd=root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while not accepting(ports[2]) and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    rows = []
    for line in err.splitlines():
        if line.startswith("import time:") and "|" in line:
            parts = line[len("import time:") :].split("|")
            try:
                rows.append((int(parts[1]), parts[2].rstrip()))
            except ValueError:
                continue
    total = sum(us for us, name in rows if not name.startswith("  "))
    print(f"imports: {len(rows)} modules, {total / 1000:.1f} ms cumulative at top level")
    for us, name in sorted(rows, reverse=True)[:10]:
        print(f"  {us / 1000:7.1f} ms  {name.strip()}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--messages", type=int, default=0)
    ap.add_argument("--root", default=os.path.dirname(HERE))
    ap.add_argument("--importtime", action="store_true")
    ap.add_argument("--no-pyc", action="store_true")
    ap.add_argument("--fresh", action="store_true")
    ap.add_argument("--no-site", action="store_true")
    args = ap.parse_args()
    if args.no_site:
        PYTHON_FLAGS.append("-S")
    root = os.path.abspath(args.root)
    tmp = tempfile.mkdtemp(prefix="hb-startup-")
    if not args.no_pyc:
        ENV["PYTHONPYCACHEPREFIX"] = os.path.join(tmp, "pycache")
    try:
        store = os.path.join(tmp, "store")
        if not args.no_pyc:
            one_start(root, os.path.join(tmp, "warm"))  # compiles and caches every module
        if not args.fresh and not args.messages:
            one_start(root, store)  # the store directory the timed restarts reuse
        if args.messages:
            # One offline session keeps them all (the default keeps 10,000 per session).
            with open(os.path.join(tmp, "startup.conf"), "w") as f:
                f.write(f"mqtt {{ max_session_messages: {args.messages * 2} }}\n")
            fill_store(root, store, args.messages)
        if args.importtime:
            importtime(root, store)
        times = []
        for _ in range(args.runs):
            if args.fresh:
                shutil.rmtree(store, ignore_errors=True)
            elapsed, err = one_start(root, store)
            times.append(elapsed)
        recovered = [line for line in err.splitlines() if "ecover" in line]
        label = f"{args.messages:,} stored messages" if args.messages else "empty store"
        label += ", fresh directory each run" if args.fresh else ""
        label += ", python -S" if args.no_site else ""
        label += ", no bytecode cache" if args.no_pyc else ""
        print(
            f"start-up ({label}, {root}): best {min(times) * 1000:.0f} ms, "
            f"median {statistics.median(times) * 1000:.0f} ms over {len(times)} runs"
        )
        for line in recovered:  # what the last start found in the store
            print("  " + line.split("] ", 2)[-1])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
