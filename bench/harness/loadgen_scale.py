"""MQTT roles for the scale scenarios: idle connections, subscription holders, retained replay.

Theory of operation: these roles measure a phase (connect N clients, subscribe 100,000
filters, store and replay 100,000 retained messages) rather than a steady rate, so each one
starts at ``t_go`` and reports when its phase ended (``time.monotonic()``, one clock for
every process), with ``t_stop`` as the hard deadline. Every packet is encoded in
``setup()``, before the role reports ready.

- ``IdleConnector`` opens ``count`` connections with non-blocking sockets and epoll,
  keeping at most ``inflight`` handshakes (TCP connect, CONNECT, CONNACK) under way, so
  a server's listen backlog (Mosquitto's is 100) never overflows into SYN retransmits.
  Each connector binds its sockets to its own loopback source address (127.0.1xx.1, all
  of 127/8 reaches a server on 127.0.0.1) and numbers the source ports itself: left to
  the kernel, connect() searches the ephemeral range for a free port, which past ~14,000
  connections to one address (connect takes even ports first) costs more than the
  server's whole handshake and made the connect rate a measure of the kernel.
  It holds the connections (``hold``) until the runner has read the server's RSS, then
  closes them with SO_LINGER 0: an RST each, no TIME_WAIT left behind to eat the
  ephemeral ports of the next server's run.
- ``SubscriptionHolder`` opens ``conns`` connections and sends each its share of the
  filters, ``per_packet`` filters per SUBSCRIBE, then waits for every SUBACK and checks
  that no filter was refused; it holds the subscriptions while the runner measures.
- ``RetainedPublisher`` sends ``count`` retained QoS 1 PUBLISHes on distinct topics with
  an in-flight window and waits until every one is acknowledged, i.e. stored.
- ``RetainedReplayer`` subscribes to ``#`` and counts the retained PUBLISHes that arrive
  with ``FixedPublishCounter`` (strided compares, no loop per frame). It keeps SO_RCVLOWAT
  at min(16 KiB, the bytes still to come), so it wakes once per 16 KiB even from a server
  that writes one packet per syscall, and never waits for bytes that will not come.
"""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import selectors
import socket
import struct
import time
from typing import Any

from .loadgen_mqtt import RECV_SIZE, mqtt_connect, send_disconnect
from .mqttwire import (
    FixedPublishCounter,
    MqttStream,
    encode_connect,
    encode_publish,
    encode_subscribe,
    encode_subscribe_many,
    publish_retained_run,
    retained_topic,
)
from .sockets import recv_timeout, tune

_LINGER_RST = struct.pack("ii", 1, 0)


def raise_nofile(want: int) -> int:
    """Raise this process's soft RLIMIT_NOFILE towards ``want`` (the hard limit caps it
    unless the process may raise that too); return the soft limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and want > hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
            return want
        except (ValueError, OSError):
            want = hard
    if want > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        return want
    return soft


def _wait_until(t: float) -> None:
    while True:
        left = t - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(left, 0.001))


def _rates(count: int, cpu: float, elapsed: float) -> dict[str, float]:
    """A phase's ``rate`` (``count`` per second) and ``cpu`` (CPU-seconds per second)."""
    return {
        "rate": count / elapsed if elapsed > 0 else 0.0,
        "cpu": cpu / elapsed if elapsed > 0 else 0.0,
    }


def _close_rst(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
    sock.close()


class IdleConnector:
    """``count`` MQTT connections that CONNECT (clean session, keep alive ``keepalive``,
    0 = none [MQTT-3.1.2-22]) and then stay silent."""

    hold = True

    def __init__(
        self,
        host: str,
        port: int,
        count: int,
        inflight: int = 24,
        keepalive: int = 0,
        prefix: str = "idle",
        source: str = "",
        first_port: int = 10000,
    ) -> None:
        self.source = source
        self.next_port = first_port
        self.host = host
        self.port = port
        self.count = count
        self.inflight = max(1, inflight)
        self.keepalive = keepalive
        self.prefix = prefix
        self.packets: list[bytes] = []
        self.socks: list[socket.socket] = []

    def setup(self) -> None:
        limit = raise_nofile(self.count + 64)
        if limit < self.count + 16:
            raise OSError(f"RLIMIT_NOFILE is {limit}, too low for {self.count} connections")
        self.packets = [
            encode_connect(f"{self.prefix}-{i}", keepalive=self.keepalive)
            for i in range(self.count)
        ]

    def _socket(self) -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if self.source:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            while True:
                if self.next_port > 65535:
                    s.close()
                    raise OSError(f"no free source port left on {self.source}")
                port = self.next_port
                self.next_port += 1
                try:
                    s.bind((self.source, port))
                    break
                except OSError as e:
                    # Taken (e.g. by a listener on 0.0.0.0): the next one.
                    if e.errno != errno.EADDRINUSE:
                        s.close()
                        raise
        s.setblocking(False)
        return s

    def run(self, t_go: float, t0: float, t1: float, t_stop: float) -> dict[str, Any]:
        sel = selectors.DefaultSelector()
        addr = (self.host, self.port)
        nxt = 0
        pending = 0
        done = 0
        failed = 0
        errors: list[str] = []
        t_done = None
        mono = time.monotonic
        _wait_until(t_go)
        cpu0 = time.process_time()
        while done + failed < self.count:
            while pending < self.inflight and nxt < self.count:
                s = self._socket()
                rc = s.connect_ex(addr)
                if rc not in (0, errno.EINPROGRESS):
                    s.close()
                    failed += 1
                    if len(errors) < 5:
                        errors.append(f"connect: {os.strerror(rc)}")
                    nxt += 1
                    continue
                # data: [packet index, CONNACK bytes so far]
                sel.register(s, selectors.EVENT_WRITE, [nxt, b""])
                nxt += 1
                pending += 1
            if mono() >= t_stop:
                break
            for key, ev in sel.select(0.05):
                s = key.fileobj
                state = key.data
                if ev & selectors.EVENT_WRITE:
                    err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err:
                        reason = f"connect: {os.strerror(err)}"
                    else:
                        try:
                            # A ~30-byte CONNECT always fits an empty send buffer.
                            s.send(self.packets[state[0]])
                            sel.modify(s, selectors.EVENT_READ, state)
                            continue
                        except OSError as e:
                            reason = f"send CONNECT: {e}"
                else:
                    try:
                        data = s.recv(64)
                    except BlockingIOError:
                        continue
                    except OSError as e:
                        data = b""
                        reason = f"recv: {e}"
                    else:
                        reason = "closed before CONNACK"
                    if data:
                        state[1] += data
                        if len(state[1]) < 4:
                            continue
                        # CONNACK 0x20 0x02 flags code; code 0 = accepted [MQTT-3.2.2-3].
                        if state[1][0] == 0x20 and state[1][3] == 0:
                            sel.unregister(s)
                            self.socks.append(s)
                            pending -= 1
                            done += 1
                            if done + failed == self.count:
                                t_done = mono()
                            continue
                        reason = f"CONNACK refused: {state[1][:4]!r}"
                sel.unregister(s)
                _close_rst(s)
                pending -= 1
                failed += 1
                if len(errors) < 5:
                    errors.append(reason)
        now = mono()
        cpu = time.process_time() - cpu0
        for key in list(sel.get_map().values()):
            _close_rst(key.fileobj)
        sel.close()
        end = t_done if t_done is not None else now
        elapsed = end - t_go
        return {
            "connected": done,
            "failed": failed,
            "timed_out": self.count - done - failed,
            "t_done": end,
            "elapsed": elapsed,
            **_rates(done, cpu, elapsed),
            "errors": errors,
        }

    def close(self) -> None:
        for s in self.socks:
            _close_rst(s)
        self.socks.clear()


class SubscriptionHolder:
    """``conns`` connections holding the filters ``bench/s/<first>`` .. ``bench/s/<first+n-1>``
    (QoS ``qos``), spread evenly; subscribed at ``t_go``, held until released."""

    hold = True

    def __init__(
        self,
        host: str,
        port: int,
        first: int,
        count: int,
        conns: int = 5,
        per_packet: int = 100,
        qos: int = 0,
        prefix: str = "subhold",
    ) -> None:
        self.host = host
        self.port = port
        self.first = first
        self.count = count
        self.n = max(1, conns)
        self.per_packet = max(1, per_packet)
        self.qos = qos
        self.prefix = prefix
        self.conns: list[tuple[socket.socket, MqttStream, bytes, int]] = []

    def setup(self) -> None:
        raise_nofile(self.n + 64)
        base, extra = divmod(self.count, self.n)
        start = self.first
        for c in range(self.n):
            n = base + (1 if c < extra else 0)
            filters = [f"bench/s/{i}" for i in range(start, start + n)]
            start += n
            packets = [
                encode_subscribe_many(
                    k // self.per_packet + 1, filters[k : k + self.per_packet], self.qos
                )
                for k in range(0, n, self.per_packet)
            ]
            sock, stream = mqtt_connect(self.host, self.port, f"{self.prefix}-{c}", keepalive=0)
            self.conns.append((sock, stream, b"".join(packets), len(packets)))

    def run(self, t_go: float, t0: float, t1: float, t_stop: float) -> dict[str, Any]:
        _wait_until(t_go)
        cpu0 = time.process_time()
        for sock, _, data, _ in self.conns:
            # Each connection's SUBACKs (~1 byte per filter) fit in the socket buffers, so
            # sending every connection's packets before reading any cannot deadlock.
            sock.sendall(data)
        for sock, stream, _, npk in self.conns:
            while stream.subacks < npk:
                left = t_stop - time.monotonic()
                if left <= 0:
                    raise TimeoutError(
                        f"{stream.subacks} of {npk} SUBACKs on one connection before the deadline"
                    )
                sock.settimeout(min(left, 1.0))
                try:
                    data = sock.recv(RECV_SIZE)
                except TimeoutError:
                    continue
                if not data:
                    raise ConnectionError("server closed a subscription holder's connection")
                stream.feed(data)
        t_done = time.monotonic()
        cpu = time.process_time() - cpu0
        codes = sum(s.suback_codes for _, s, _, _ in self.conns)
        failures = sum(s.suback_failures for _, s, _, _ in self.conns)
        if codes != self.count or failures:
            raise ConnectionError(
                f"SUBACKs carried {codes} return codes for {self.count} filters, "
                f"{failures} of them failures (0x80)"
            )
        elapsed = t_done - t_go
        return {
            "subscriptions": self.count,
            "conns": self.n,
            "t_done": t_done,
            "elapsed": elapsed,
            **_rates(self.count, cpu, elapsed),
        }

    def close(self) -> None:
        for sock, _, _, _ in self.conns:
            send_disconnect(sock, 0.5)
            _close_rst(sock)
        self.conns.clear()


class RetainedPublisher:
    """``count`` retained QoS 1 messages on ``bench/r/000000``..; done when all are PUBACKed."""

    def __init__(
        self,
        host: str,
        port: int,
        count: int,
        payload_size: int = 64,
        inflight: int = 1000,
        batch: int = 100,
    ) -> None:
        self.host = host
        self.port = port
        self.count = count
        self.payload = b"x" * payload_size
        self.inflight = inflight
        self.batch = batch
        self.buf = b""
        self.size = 0
        self.sock: socket.socket | None = None
        self.stream: MqttStream | None = None

    def setup(self) -> None:
        self.buf, self.size = publish_retained_run(self.count, self.payload)
        self.sock, self.stream = mqtt_connect(self.host, self.port, "bench-retain-pub")
        recv_timeout(self.sock, 0.2)

    def run(self, t_go: float, t0: float, t1: float, t_stop: float) -> dict[str, Any]:
        sock, stream = self.sock, self.stream
        assert sock is not None and stream is not None
        view = memoryview(self.buf)
        size = self.size
        count = self.count
        sent = 0
        mono = time.monotonic
        _wait_until(t_go)
        cpu0 = time.process_time()
        while stream.pubacks < count:
            if mono() >= t_stop:
                raise TimeoutError(
                    f"{stream.pubacks} of {count} retained messages acknowledged by the deadline"
                )
            if sent < count and sent - stream.pubacks + self.batch <= self.inflight:
                end = min(count, sent + self.batch)
                sock.sendall(view[sent * size : end * size])
                sent = end
                continue
            try:
                data = sock.recv(65536)
            except BlockingIOError:
                continue
            if not data:
                raise ConnectionError("server closed the retained publisher's connection")
            stream.feed(data)
        t_done = mono()
        cpu = time.process_time() - cpu0
        elapsed = t_done - t_go
        return {
            "count": count,
            "acked": stream.pubacks,
            "t_done": t_done,
            "elapsed": elapsed,
            **_rates(count, cpu, elapsed),
        }

    def close(self) -> None:
        if self.sock:
            send_disconnect(self.sock)
            self.sock.close()


class RetainedReplayer:
    """Subscribes to ``#`` at ``t_go`` and times the arrival of ``count`` retained messages."""

    def __init__(
        self, host: str, port: int, count: int, payload_size: int = 64, lowat: int = 16384
    ) -> None:
        self.lowat = lowat
        self.host = host
        self.port = port
        self.count = count
        self.payload = b"x" * payload_size
        self.sock: socket.socket | None = None
        self.counter: FixedPublishCounter | None = None
        self.subscribe = encode_subscribe(1, "#", 0)

    def setup(self) -> None:
        # What a retained message looks like on a QoS 0 subscription: RETAIN set because
        # it is sent for a new subscription [MQTT-3.3.1-8], QoS min(1, 0) = 0.
        frame = encode_publish(retained_topic(0), self.payload, 0, retain=True)
        head_len = len(frame) - len(self.payload) - len(retained_topic(0)) + len("bench/r/")
        self.counter = FixedPublishCounter(frame[:head_len], len(frame))
        self.sock, _ = mqtt_connect(self.host, self.port, "bench-retain-sub")
        tune(self.sock)
        recv_timeout(self.sock, 0.05)

    def run(self, t_go: float, t0: float, t1: float, t_stop: float) -> dict[str, Any]:
        sock, counter = self.sock, self.counter
        assert sock is not None and counter is not None
        buf = bytearray(RECV_SIZE)
        view = memoryview(buf)
        mono = time.monotonic
        _wait_until(t_go)
        cpu0 = time.process_time()
        t_sub = mono()
        sock.sendall(self.subscribe)
        t_first = None
        size = counter.size
        lowat = self.lowat
        cur = 1  # SO_RCVLOWAT in force (1 is the kernel default)
        while counter.publishes < self.count:
            if mono() >= t_stop:
                break
            if lowat:
                left = (self.count - counter.publishes) * size - len(counter.buf)
                want = max(1, min(lowat, left))
                if want != cur:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, want)
                    cur = want
            try:
                n = sock.recv_into(buf)
            except BlockingIOError:
                continue
            if not n:
                raise ConnectionError("server closed the replay subscriber's connection")
            counter.feed(bytes(view[:n]))
            if t_first is None and counter.publishes:
                t_first = mono()
        t_done = mono()
        cpu = time.process_time() - cpu0
        got = counter.publishes
        elapsed = t_done - t_sub
        if got < self.count:
            raise TimeoutError(
                f"received {got} of {self.count} retained messages in {elapsed:.1f} s"
            )
        return {
            "received": got,
            "subacks": counter.subacks,
            "t_done": t_done,
            "elapsed": elapsed,
            "first_s": (t_first - t_sub) if t_first else None,
            **_rates(got, cpu, elapsed),
        }

    def close(self) -> None:
        if self.sock:
            send_disconnect(self.sock)
            self.sock.close()
