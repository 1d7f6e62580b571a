"""NATS load-generator roles over raw sockets: publisher, subscriber, responder, requester.

Theory of operation: the publisher encodes ``PUB subj N\\r\\n<payload>\\r\\n`` once, repeats it
``batch`` times, appends ``PING\\r\\n`` and sends that one buffer per ``sendall``. The
server answers a PING only after it has processed everything before it, so counting PONGs
bounds how far the publisher runs ahead of the server (``window`` batches) without any
per-message work.

The subscriber never parses frames: the payload is all ``x`` and the subject has no
``MSG ``, so every ``MSG `` in the byte stream starts one delivered message and
``bytes.count`` over each received chunk counts them in C. A match split across two chunks
is caught by also counting in (last 3 bytes of the stream + first 3 of the chunk): a
4-byte match there must span the edge, so it was not counted on either side.

Requests and replies are parsed properly (the reply subject is needed), one at a time;
that path measures latency, not throughput.
"""

from __future__ import annotations

import json
import os
import selectors
import socket
import time
from typing import Any

from .sockets import recv_timeout, set_lowat, tune
from .workers import Window

# Receivers read with recv_into into one preallocated buffer: sock.recv(1 MiB) would
# allocate (and shrink) a 1 MiB bytes object per call, ~15 us of CPU each.
RECV_SIZE = 1 << 20


def payload_bytes(size: int) -> bytes:
    return b"x" * size


def nats_connect(
    host: str, port: int, name: str, timeout: float = 10.0, extra: dict[str, Any] | None = None
) -> socket.socket:
    """Open a NATS connection: read INFO, send CONNECT (plus ``extra`` options) + PING,
    wait for PONG."""
    sock = socket.create_connection((host, port), timeout)
    tune(sock)
    buf = b""
    deadline = time.monotonic() + timeout
    while b"\r\n" not in buf:
        if time.monotonic() > deadline:
            raise TimeoutError("no INFO from server")
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed before INFO")
        buf += chunk
    if not buf.startswith(b"INFO "):
        raise ConnectionError(f"expected INFO, got {buf[:80]!r}")
    buf = buf[buf.index(b"\r\n") + 2 :]
    opts = {
        "verbose": False,
        "pedantic": False,
        "name": name,
        "lang": "python-bench",
        "version": "0",
        "protocol": 1,
        **(extra or {}),
    }
    sock.sendall(b"CONNECT " + json.dumps(opts).encode() + b"\r\nPING\r\n")
    wait_pong(sock, buf, deadline)
    return sock


def wait_pong(sock: socket.socket, buf: bytes, deadline: float) -> bytes:
    """Read until a PONG; return what followed it. -ERR raises."""
    while b"PONG\r\n" not in buf:
        if b"-ERR" in buf:
            raise ConnectionError(buf[buf.index(b"-ERR") :].split(b"\r\n")[0].decode())
        if time.monotonic() > deadline:
            raise TimeoutError("no PONG from server")
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed the connection")
        buf += chunk
    if b"-ERR" in buf[: buf.index(b"PONG\r\n")]:
        raise ConnectionError(buf[buf.index(b"-ERR") :].split(b"\r\n")[0].decode())
    return buf[buf.index(b"PONG\r\n") + 6 :]


class EdgeCounter:
    """Count a marker (2+ bytes, no self-overlap) in a byte stream fed in arbitrary chunks.

    The last len(marker)-1 bytes of the stream are kept; a match inside (kept bytes + first
    len(marker)-1 bytes of the next chunk) must straddle the edge, so it was counted on
    neither side.
    """

    __slots__ = ("marker", "k", "tail", "count")

    def __init__(self, marker: bytes) -> None:
        assert len(marker) >= 2
        self.marker = marker
        self.k = len(marker) - 1
        self.tail = b""
        self.count = 0

    def feed(self, data: bytes | bytearray, n: int | None = None) -> int:
        """Count markers in ``data[:n]`` (all of it when n is None); no copy of the chunk."""
        if n is None:
            n = len(data)
        m = self.marker
        k = self.k
        c = data.count(m, 0, n)
        tail = self.tail
        if tail:
            c += (tail + bytes(data[: min(k, n)])).count(m)
        self.tail = bytes(data[n - k : n]) if n >= k else (tail + bytes(data[:n]))[-k:]
        self.count += c
        return c


class NatsPublisher:
    """Publish ``payload_size``-byte messages to ``subject`` as fast as the server takes them."""

    def __init__(
        self,
        host: str,
        port: int,
        subject: str,
        payload_size: int = 64,
        batch: int = 1000,
        window: int = 8,
        name: str = "bench-pub",
    ) -> None:
        self.host = host
        self.port = port
        self.subject = subject.encode()
        self.payload = payload_bytes(payload_size)
        self.batch = batch
        self.window = window
        self.name = name
        self.sock: socket.socket | None = None

    def setup(self) -> None:
        self.sock = nats_connect(self.host, self.port, self.name)

    def run(self, t_go: float, t0: float, t1: float, t_stop: float) -> dict[str, Any]:
        sock = self.sock
        assert sock is not None
        frame = b"PUB %s %d\r\n%s\r\n" % (self.subject, len(self.payload), self.payload)
        chunk = frame * self.batch + b"PING\r\n"
        batch = self.batch
        window = self.window
        pongs = EdgeCounter(b"PONG")
        sent = 0
        pings = 0
        w = Window(t0, t1)
        mono = time.monotonic
        while mono() < t_go:
            time.sleep(0.001)
        while True:
            now = mono()
            if w.due(now):
                w.snap(now, sent)
            if now >= t_stop:
                break
            if pings - pongs.count >= window:
                data = sock.recv(65536)
                if not data:
                    raise ConnectionError("server closed the publisher connection")
                pongs.feed(data)
                _check_inbound(sock, data)
                continue
            sock.sendall(chunk)
            sent += batch
            pings += 1
        w.finish(sent)
        res = w.result()
        res.update(total=sent, frame_bytes=len(frame))
        return res

    def close(self) -> None:
        if self.sock:
            self.sock.close()


def _check_inbound(sock: socket.socket, data: bytes) -> None:
    if b"-ERR" in data:
        raise ConnectionError(data[data.index(b"-ERR") :].split(b"\r\n")[0].decode())
    if b"PING\r\n" in data:
        sock.sendall(b"PONG\r\n")


class NatsSubscriber:
    """``conns`` connections subscribed to ``subject``, counting MSG frames."""

    def __init__(
        self,
        host: str,
        port: int,
        subject: str,
        conns: int = 1,
        name: str = "bench-sub",
        lowat: int = 0,
    ) -> None:
        self.lowat = lowat
        self.host = host
        self.port = port
        self.subject = subject
        self.n = conns
        self.name = name
        self.socks: list[socket.socket] = []

    def setup(self) -> None:
        deadline = time.monotonic() + 20.0
        for i in range(self.n):
            sock = nats_connect(self.host, self.port, f"{self.name}-{i}")
            sock.sendall(b"SUB %s %d\r\nPING\r\n" % (self.subject.encode(), i + 1))
            wait_pong(sock, b"", deadline)
            set_lowat(sock, self.lowat)
            if self.n == 1:
                recv_timeout(sock, 0.05)
            else:
                sock.setblocking(False)
            self.socks.append(sock)

    def run(self, t_go: float, t0: float, t1: float, t_stop: float) -> dict[str, Any]:
        if self.n == 1:
            return self._run_one(t0, t1)
        sel = selectors.DefaultSelector()
        counters = []
        for sock in self.socks:
            c = EdgeCounter(b"MSG ")
            counters.append(c)
            sel.register(sock, selectors.EVENT_READ, c)
        w = Window(t0, t1)
        mono = time.monotonic
        total = 0
        errors: list[str] = []
        recvs = 0
        buf = bytearray(RECV_SIZE)
        while not w.closed:
            now = mono()
            if w.due(now):
                w.snap(now, total)
                continue
            events = sel.select(0.05)
            if not events and self.lowat:
                # Quiet for 50 ms: read what sits below the low-water mark too.
                events = [(k, 0) for k in sel.get_map().values()]
            for key, _ in events:
                sock = key.fileobj
                try:
                    n = sock.recv_into(buf)
                except BlockingIOError:
                    continue
                if not n:
                    raise ConnectionError(
                        "server closed a subscriber connection" + (f": {errors}" if errors else "")
                    )
                recvs += 1
                total += key.data.feed(buf, n)
                i = buf.find(b"-ERR", 0, n)
                if i >= 0:
                    errors.append(bytes(buf[i:n]).split(b"\r\n")[0].decode())
                if buf.find(b"PING\r\n", 0, n) >= 0:
                    sock.setblocking(True)
                    sock.sendall(b"PONG\r\n")
                    sock.setblocking(False)
        sel.close()
        res = w.result()
        res.update(total=total, recvs=recvs, errors=errors[:5], conns=self.n)
        return res

    def _run_one(self, t0: float, t1: float) -> dict[str, Any]:
        # One connection: blocking recv_into with a kernel timeout, one syscall per read.
        sock = self.socks[0]
        counter = EdgeCounter(b"MSG ")
        feed = counter.feed
        w = Window(t0, t1)
        mono = time.monotonic
        errors: list[str] = []
        recvs = 0
        buf = bytearray(RECV_SIZE)
        while not w.closed:
            now = mono()
            if w.due(now):
                w.snap(now, counter.count)
                continue
            try:
                n = sock.recv_into(buf)
            except BlockingIOError:
                continue
            if not n:
                raise ConnectionError(
                    "server closed the subscriber connection" + (f": {errors}" if errors else "")
                )
            recvs += 1
            feed(buf, n)
            i = buf.find(b"-ERR", 0, n)
            if i >= 0:
                errors.append(bytes(buf[i:n]).split(b"\r\n")[0].decode())
            if buf.find(b"PING\r\n", 0, n) >= 0:
                sock.sendall(b"PONG\r\n")
        res = w.result()
        res.update(total=counter.count, recvs=recvs, errors=errors[:5], conns=1)
        return res

    def close(self) -> None:
        for s in self.socks:
            s.close()


def _parse_msgs(buf: bytes) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """Split complete MSG frames off ``buf``: [(reply_subject, payload)], rest."""
    out = []
    pos = 0
    n = len(buf)
    while pos < n:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            break
        line = buf[pos:eol]
        if line.startswith(b"MSG "):
            parts = line.split()
            size = int(parts[-1])
            end = eol + 2 + size + 2
            if end > n:
                break
            reply = parts[3] if len(parts) == 5 else b""
            out.append((reply, buf[eol + 2 : eol + 2 + size]))
            pos = end
        elif line.startswith(b"-ERR"):
            raise ConnectionError(line.decode())
        else:
            # PING, PONG, +OK, INFO: the caller answers PINGs by checking the raw data.
            pos = eol + 2
    return out, buf[pos:]


class NatsResponder:
    """Reply to every request on ``subject`` with the request's payload."""

    def __init__(self, host: str, port: int, subject: str, name: str = "bench-responder") -> None:
        self.host = host
        self.port = port
        self.subject = subject
        self.name = name
        self.sock: socket.socket | None = None

    def setup(self) -> None:
        self.sock = nats_connect(self.host, self.port, self.name)
        self.sock.sendall(b"SUB %s 1\r\nPING\r\n" % self.subject.encode())
        wait_pong(self.sock, b"", time.monotonic() + 10)
        recv_timeout(self.sock, 0.1)

    def run(self, t_go: float, t0: float, t1: float, t_stop: float) -> dict[str, Any]:
        sock = self.sock
        assert sock is not None
        buf = b""
        replies = 0
        w = Window(t0, t1)
        while True:
            now = time.monotonic()
            if w.due(now):
                w.snap(now, replies)
            if now >= t_stop:
                break
            try:
                data = sock.recv(65536)
            except (BlockingIOError, TimeoutError):
                continue
            if not data:
                raise ConnectionError("server closed the responder connection")
            if b"PING\r\n" in data:
                sock.sendall(b"PONG\r\n")
            msgs, buf = _parse_msgs(buf + data)
            if msgs:
                sock.sendall(
                    b"".join(
                        b"PUB %s %d\r\n%s\r\n" % (reply, len(p), p) for reply, p in msgs if reply
                    )
                )
                replies += len(msgs)
        w.finish(replies)
        res = w.result()
        res.update(total=replies)
        return res

    def close(self) -> None:
        if self.sock:
            self.sock.close()


class NatsRequester:
    """One outstanding request at a time; records each round trip's latency in the window."""

    def __init__(
        self,
        host: str,
        port: int,
        subject: str,
        payload_size: int = 64,
        name: str = "bench-requester",
    ) -> None:
        self.host = host
        self.port = port
        self.subject = subject.encode()
        self.payload = payload_bytes(payload_size)
        self.inbox = b"_INBOX.bench%d" % os.getpid()
        self.name = name
        self.sock: socket.socket | None = None

    def setup(self) -> None:
        self.sock = nats_connect(self.host, self.port, self.name)
        self.sock.sendall(b"SUB %s 1\r\nPING\r\n" % self.inbox)
        wait_pong(self.sock, b"", time.monotonic() + 10)
        recv_timeout(self.sock, 5.0)

    def run(self, t_go: float, t0: float, t1: float, t_stop: float) -> dict[str, Any]:
        sock = self.sock
        assert sock is not None
        req = b"PUB %s %s %d\r\n%s\r\n" % (
            self.subject,
            self.inbox,
            len(self.payload),
            self.payload,
        )
        lat: list[int] = []
        buf = b""
        total = 0
        w = Window(t0, t1)
        mono = time.monotonic
        clock = time.perf_counter_ns
        while mono() < t_go:
            time.sleep(0.001)
        while True:
            now = mono()
            if w.due(now):
                w.snap(now, total)
            if w.closed:
                break
            in_window = w.start is not None
            start = clock()
            sock.sendall(req)
            while True:
                data = sock.recv(65536)
                if not data:
                    raise ConnectionError("server closed the requester connection")
                if b"PING\r\n" in data:
                    sock.sendall(b"PONG\r\n")
                msgs, buf = _parse_msgs(buf + data)
                if msgs:
                    break
            rtt = clock() - start
            total += 1
            if in_window:
                lat.append(rtt)
        res = w.result()
        res.update(total=total, **latency_stats(lat))
        return res

    def close(self) -> None:
        if self.sock:
            self.sock.close()


def latency_stats(lat_ns: list[int]) -> dict[str, float]:
    """p50/p90/p99/p99.9/max/mean in microseconds."""
    if not lat_ns:
        return {}
    s = sorted(lat_ns)
    n = len(s)

    def pct(p: float) -> float:
        return s[min(n - 1, int(p * n))] / 1000.0

    return {
        "samples": n,
        "p50_us": pct(0.50),
        "p90_us": pct(0.90),
        "p99_us": pct(0.99),
        "p999_us": pct(0.999),
        "max_us": s[-1] / 1000.0,
        "mean_us": sum(s) / n / 1000.0,
    }
