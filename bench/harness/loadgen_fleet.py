"""MQTT roles for the fleet scenarios: persistent sessions in waves, the ping probe, commands
to many devices, 1 MB QoS 1 messages, and 10,000 QoS 0 subscribers.

Theory of operation: every role runs in its own process (``workers``), encodes what it
sends before it reports ready, and bounds every wait by the ``t_stop`` it is given, so a
server that stalls gives a result that says so, never a hung harness.

- ``Handshakes`` drives many MQTT handshakes at once over non-blocking sockets and epoll
  (TCP connect, CONNECT -> CONNACK, SUBSCRIBE -> SUBACK), at most ``inflight`` under way
  (Mosquitto's listen backlog is 100). Like ``loadgen_scale.IdleConnector`` it binds its
  own loopback source address (127.0.1xx.1) and numbers source ports itself, wrapping
  round: a connection ends with an RST (SO_LINGER 0), so no TIME_WAIT holds a port.
- ``SessionMaker`` creates persistent sessions (clean session 0, ids ``dev-<i>``), each
  subscribed to two QoS 1 filters, and leaves them offline: DISCONNECT, then RST. Only
  ``inflight`` connections are open at any time, so 100,000 sessions need no more fds.
- ``PingProbe`` sends a PINGREQ on every 10 ms tick on its own connection, one at a time,
  and times each PINGRESP; ticks that pass while a ping is outstanding count as pings
  answered with it (no coordinated omission), and a ping unanswered at the end counts
  with its age, so a server that stops answering shows as long latencies.
- ``CommandPublisher`` sends one QoS 1 PUBLISH to each ``fleet/dev/<i>`` with a window
  of unacknowledged messages, from one pre-encoded buffer, until the last PUBACK.
- ``BigPublisher`` / ``BigSubscriber``: 1 MB QoS 1 messages; the payload is one buffer
  sent after a per-message head (``sendmsg``), the subscriber counts with
  ``BigFrameStream`` (no payload copies). Both reconnect when the server drops them and
  count the disconnects.
- ``FanoutSubscribers``: thousands of QoS 0 subscribers in one process. Every PUBLISH
  they get has one length (same topic, same payload size), so deliveries are counted from
  bytes received per connection (one check of the frame head per read, no parsing). The
  process reads every ``sweep`` seconds (epoll, then one ``recv_into`` per ready
  socket), so thousands of sockets cost a few syscalls per message batch, not per
  message. Every ``sample_every``-th connection is instead read as soon as data comes
  (a second epoll, waited on between sweeps) and its timestamped payloads give the lag.
- ``TimedPublisher``: QoS 0 at a fixed rate, each payload starting with its send time
  (``time.monotonic()``, one clock for every process on the machine).
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import socket
import struct
import time
from typing import Any

from .loadgen_mqtt import mqtt_connect, send_disconnect
from .loadgen_scale import _close_rst, _rates, _wait_until, raise_nofile
from .mqttwire import (
    PINGREQ_BYTES,
    PINGRESP_BYTES,
    BigFrameStream,
    MqttStream,
    encode_connect,
    encode_publish,
    encode_subscribe,
    encode_subscribe_many,
    publish_head,
)
from .sockets import recv_timeout
from .workers import Window

DISCONNECT = b"\xe0\x00"


def pct_stats(values: list[float], prefix: str, scale: float = 1000.0) -> dict[str, float]:
    """p50/p90/p99/max/mean of ``values`` (seconds) times ``scale``, keys ``<prefix>_p50``..."""
    if not values:
        return {}
    s = sorted(values)
    n = len(s)

    def pct(p: float) -> float:
        return s[min(n - 1, int(p * n))] * scale

    return {
        f"{prefix}_p50": pct(0.50),
        f"{prefix}_p90": pct(0.90),
        f"{prefix}_p99": pct(0.99),
        f"{prefix}_max": s[-1] * scale,
        f"{prefix}_mean": sum(s) / n * scale,
    }


# ---------------------------------------------------------------- handshakes


class Handshakes:
    """MQTT handshakes over non-blocking sockets, at most ``inflight`` under way."""

    def __init__(
        self, host: str, port: int, source: str = "", first_port: int = 10000, inflight: int = 24
    ) -> None:
        self.addr = (host, port)
        self.source = source
        self.first_port = first_port
        self.next_port = first_port
        self.inflight = max(1, inflight)

    def _socket(self) -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        if not self.source:
            return s
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        for _ in range(65536):
            port = self.next_port
            # Wrap round: ports of connections ended with an RST are free again.
            self.next_port = port + 1 if port < 65535 else self.first_port
            try:
                s.bind((self.source, port))
                return s
            except OSError as e:
                if e.errno != errno.EADDRINUSE:
                    s.close()
                    raise
        s.close()
        raise OSError(f"no free source port on {self.source}")

    def _start(self) -> tuple[socket.socket | None, int]:
        """A socket with its connect under way, or (None, errno)."""
        for _ in range(16):
            s = self._socket()
            rc = s.connect_ex(self.addr)
            if rc in (0, errno.EINPROGRESS):
                return s, 0
            s.close()
            # The 4-tuple is still taken (a port that came round too soon): next port.
            if rc != errno.EADDRNOTAVAIL:
                return None, rc
        return None, errno.EADDRNOTAVAIL

    def run(
        self,
        packets: list[tuple[bytes, bytes]],
        deadline: float,
        keep: bool,
        qos: int,
    ) -> dict[str, Any]:
        """One handshake per (CONNECT, SUBSCRIBE) pair; ``keep`` holds the connections
        (returned in ``socks``), otherwise each ends with DISCONNECT and an RST."""
        ep = select.epoll()
        count = len(packets)
        state: dict[int, list[Any]] = {}  # fd -> [socket, index, stage, stream]
        socks: list[socket.socket] = []
        nxt = done = failed = refused = sub_refused = downgraded = present = 0
        errors: list[str] = []
        t_done = None
        mono = time.monotonic

        def fail(fd: int, reason: str) -> None:
            nonlocal failed
            s = state.pop(fd)[0]
            ep.unregister(fd)
            _close_rst(s)
            failed += 1
            if len(errors) < 5 and reason not in errors:
                errors.append(reason)

        while done + failed + refused + sub_refused < count:
            while len(state) < self.inflight and nxt < count:
                s, rc = self._start()
                if s is None:
                    failed += 1
                    if len(errors) < 5:
                        errors.append(f"connect: {os.strerror(rc)}")
                    nxt += 1
                    continue
                state[s.fileno()] = [s, nxt, 0, None]
                ep.register(s.fileno(), select.EPOLLOUT)
                nxt += 1
            if mono() >= deadline:
                break
            for fd, _ in ep.poll(0.05):
                st = state.get(fd)
                if st is None:
                    continue
                s, idx, stage, stream = st
                if stage == 0:
                    err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err:
                        fail(fd, f"connect: {os.strerror(err)}")
                        continue
                    try:
                        # A CONNECT of ~30 bytes always fits an empty send buffer.
                        s.send(packets[idx][0])
                    except OSError as e:
                        fail(fd, f"send CONNECT: {e}")
                        continue
                    st[2] = 1
                    st[3] = MqttStream(auto_ack=False)
                    ep.modify(fd, select.EPOLLIN)
                    continue
                try:
                    data = s.recv(4096)
                except BlockingIOError:
                    continue
                except OSError as e:
                    fail(fd, f"recv: {e}")
                    continue
                if not data:
                    fail(fd, "closed before CONNACK" if stage == 1 else "closed before SUBACK")
                    continue
                stream.feed(data)
                if stage == 1 and stream.connacks:
                    ca = stream.last_connack
                    # CONNACK: flags (bit 0 session present), return code; 0 = accepted
                    # [MQTT-3.2.2-3].
                    if len(ca) < 4 or ca[3] != 0:
                        state.pop(fd)
                        ep.unregister(fd)
                        _close_rst(s)
                        refused += 1
                        if len(errors) < 5:
                            errors.append(f"CONNACK refused: {ca!r}")
                        continue
                    present += ca[2] & 1
                    try:
                        s.send(packets[idx][1])
                    except OSError as e:
                        fail(fd, f"send SUBSCRIBE: {e}")
                        continue
                    st[2] = stage = 2
                if stage == 2 and stream.subacks:
                    codes = stream.last_suback[4:]
                    state.pop(fd)
                    ep.unregister(fd)
                    if 0x80 in codes:
                        # 0x80: the server refused a filter [MQTT-3.9.3-2].
                        _close_rst(s)
                        sub_refused += 1
                        if len(errors) < 5:
                            errors.append(f"SUBACK refused: {stream.last_suback!r}")
                        continue
                    if any(c < qos for c in codes):
                        downgraded += 1
                    if keep:
                        socks.append(s)
                    else:
                        with contextlib.suppress(OSError):
                            s.send(DISCONNECT)
                        _close_rst(s)
                    done += 1
                    if done + failed + refused + sub_refused == count:
                        t_done = mono()
        end = mono()
        for st in state.values():
            _close_rst(st[0])
        ep.close()
        return {
            "done": done,
            "failed": failed,
            "refused": refused,
            "sub_refused": sub_refused,
            "downgraded": downgraded,
            "session_present": present,
            "timed_out": count - done - failed - refused - sub_refused,
            "t_done": t_done if t_done is not None else end,
            "errors": errors,
            "socks": socks,
        }


class SessionMaker:
    """Persistent sessions ``dev-<first>`` .. ``dev-<first+count-1>`` (clean session 0), each
    subscribed to ``fleet/all`` and ``fleet/dev/<i>`` at QoS 1, then left offline."""

    def __init__(
        self,
        host: str,
        port: int,
        first: int,
        count: int,
        inflight: int = 24,
        source: str = "",
        first_port: int = 10000,
        keepalive: int = 60,
    ) -> None:
        self.hs = Handshakes(host, port, source, first_port, inflight)
        self.first = first
        self.count = count
        self.keepalive = keepalive
        self.packets: list[tuple[bytes, bytes]] = []

    def setup(self) -> None:
        self.packets = [
            (
                encode_connect(f"dev-{i}", keepalive=self.keepalive, clean=False),
                encode_subscribe_many(1, ["fleet/all", f"fleet/dev/{i}"], 1),
            )
            for i in range(self.first, self.first + self.count)
        ]

    def run(self, t_go: float, t0: float, t1: float, t_stop: float) -> dict[str, Any]:
        _wait_until(t_go)
        cpu0 = time.process_time()
        res = self.hs.run(self.packets, t_stop, keep=False, qos=1)
        cpu = time.process_time() - cpu0
        res.pop("socks")
        elapsed = res["t_done"] - t_go
        res.update(elapsed=elapsed, **_rates(res["done"], cpu, elapsed))
        return res

    def close(self) -> None:
        pass


# ---------------------------------------------------------------- ping probe


class PingProbe:
    """Loop latency: a PINGREQ on every ``interval`` s tick from ``t0`` (``t_go`` with
    ``from_go``) until ``t1``, ``t_stop`` or ``stop`` (a multiprocessing Event) is set,
    with at most one outstanding; each tick gets a latency sample.

    One outstanding, because a server may read one packet per connection per turn of its
    loop (Mosquitto does): pipelined pings would then queue behind each other and the
    probe would measure its own backlog, growing without bound whenever the loop turns
    slower than 100 times a second. Ticks that pass while a ping is outstanding are not
    dropped (that would hide exactly the stalls to be seen): each counts as a ping sent on
    its tick and answered with the outstanding one, latency = answer - tick. A ping still
    unanswered at the end counts the same way up to now (a lower bound), so a server that
    stops answering shows as long latencies, never as missing samples.
    """

    def __init__(
        self,
        host: str,
        port: int,
        interval: float = 0.01,
        stop: Any = None,
        grace: float = 1.0,
        client_id: str = "bench-probe",
        from_go: bool = False,
    ) -> None:
        self.from_go = from_go
        self.host = host
        self.port = port
        self.interval = interval
        self.stop = stop
        self.grace = grace
        self.client_id = client_id
        self.sock: socket.socket | None = None
        self.error = ""

    def setup(self) -> None:
        # The probe measures the server, not its own wait for a core: on a machine whose
        # cores the generators keep busy it asks for a higher priority (allowed for root;
        # otherwise it stays as it is, and ``late`` shows what its own scheduling added).
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, 0, -10)
        # Keep alive 0: a server that stalls must not also drop the probe [MQTT-3.1.2-22].
        # A server that does not even accept the probe gets a result that says so (and
        # the phase still runs), not a failed run.
        try:
            self.sock, _ = mqtt_connect(self.host, self.port, self.client_id, keepalive=0)
        except OSError as e:
            self.error = f"the probe could not connect: {type(e).__name__}: {e}"
            return
        self.sock.setblocking(False)

    def run(self, t_go: float, t0: float, t1: float, t_stop: float) -> dict[str, Any]:
        if self.error:
            return {"pings": 0, "samples": 0, "error": self.error, "cpu": 0.0, "elapsed": 0.0}
        sock = self.sock
        assert sock is not None
        stop = self.stop
        interval = self.interval
        lat: list[float] = []
        late: list[float] = []  # how late each ping left: the probe's own scheduling
        pend = b""
        closed = False
        pings = 0
        covered = 0  # ticks that passed while a ping was outstanding
        mono = time.monotonic
        if self.from_go:
            t0 = t_go
        _wait_until(t0)
        cpu0 = time.process_time()
        tick = mono()  # the next tick
        out_sent: float | None = None  # when the outstanding ping left
        end = None

        def answered(now: float) -> None:
            """Samples for the outstanding ping and the ticks it covered; next tick."""
            nonlocal out_sent, tick, covered
            assert out_sent is not None
            lat.append(now - out_sent)
            while tick < now:
                lat.append(now - tick)
                covered += 1
                tick += interval
            out_sent = None

        while True:
            now = mono()
            if end is None and (now >= t1 or now >= t_stop or (stop is not None and stop.is_set())):
                end = now
            if end is not None and (out_sent is None or now >= min(end + self.grace, t_stop)):
                break
            if end is None and out_sent is None and now >= tick:
                late.append(now - tick)
                try:
                    sock.send(PINGREQ_BYTES)
                except BlockingIOError:
                    pass
                except OSError:
                    closed = True
                    break
                else:
                    out_sent = now
                    pings += 1
                    tick += interval
                    if tick <= now:
                        tick = now + interval
            wait = 0.01 if out_sent is not None or end is not None else tick - mono()
            r, _, _ = select.select([sock], [], [], max(0.0, min(wait, 0.01)))
            if not r:
                continue
            try:
                data = sock.recv(4096)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                closed = True
                break
            pend += data
            if len(pend) >= 2:
                if pend[:2] != PINGRESP_BYTES or len(pend) > 2:
                    raise ValueError(f"probe expected one PINGRESP, got {pend[:16]!r}")
                pend = b""
                if out_sent is not None:
                    answered(mono())
        now = mono()
        unanswered = out_sent is not None
        if out_sent is not None:
            # Censored: counted as answered now (they were not answered before).
            if end is not None:
                now = max(now, end)
            answered(now)
        cpu = time.process_time() - cpu0
        elapsed = (end or now) - t0
        out: dict[str, Any] = {
            "pings": pings,
            "samples": len(lat),
            "covered": covered,
            "unanswered": int(unanswered),
            "closed": closed,
            "elapsed": elapsed,
            "cpu": cpu / elapsed if elapsed > 0 else 0.0,
        }
        out.update(pct_stats(lat, "ping"))
        out.update(pct_stats(late, "late"))
        return out

    def close(self) -> None:
        if self.sock:
            send_disconnect(self.sock, 0.5)
            self.sock.close()


# ---------------------------------------------------------------- commands


class CommandPublisher:
    """One QoS 1 PUBLISH to each ``fleet/dev/<i>`` (i in [first, first+count)), at most
    ``inflight`` unacknowledged, ``batch`` per send; starts at ``t0``, done at the last
    PUBACK or at ``t1``."""

    def __init__(
        self,
        host: str,
        port: int,
        count: int,
        first: int = 0,
        payload_size: int = 64,
        inflight: int = 1000,
        batch: int = 100,
        client_id: str = "bench-fleet-cmd",
    ) -> None:
        self.host = host
        self.port = port
        self.count = count
        self.first = first
        self.payload = b"c" * payload_size
        self.inflight = inflight
        self.batch = batch
        self.client_id = client_id
        self.buf = b""
        self.offsets: list[int] = []
        self.sock: socket.socket | None = None
        self.stream: MqttStream | None = None

    def setup(self) -> None:
        frames = [
            encode_publish(f"fleet/dev/{self.first + k}", self.payload, 1, k % 65535 + 1)
            for k in range(self.count)
        ]
        offsets = [0]
        for f in frames:
            offsets.append(offsets[-1] + len(f))
        self.offsets = offsets
        self.buf = b"".join(frames)
        again = _reconnect(
            self.host, self.port, self.client_id, time.monotonic() + 10.0, required=True
        )
        assert again is not None
        self.sock, self.stream = again
        recv_timeout(self.sock, 0.05)

    def run(self, t_go: float, t0: float, t1: float, t_stop: float) -> dict[str, Any]:
        sock, stream = self.sock, self.stream
        assert sock is not None and stream is not None
        view = memoryview(self.buf)
        off = self.offsets
        count = self.count
        sent = 0
        closed = ""
        mono = time.monotonic
        _wait_until(t0)
        cpu0 = time.process_time()
        while stream.pubacks < count:
            if mono() >= t1:
                break
            if sent < count and sent - stream.pubacks + self.batch <= self.inflight:
                end = min(count, sent + self.batch)
                try:
                    sock.sendall(view[off[sent] : off[end]])
                except OSError as e:
                    closed = f"send: {e}"
                    break
                sent = end
                continue
            try:
                data = sock.recv(65536)
            except BlockingIOError:
                continue
            except OSError as e:
                closed = f"recv: {e}"
                break
            if not data:
                closed = "server closed the publisher's connection"
                break
            stream.feed(data)
        t_done = mono()
        cpu = time.process_time() - cpu0
        elapsed = t_done - t0
        return {
            "count": count,
            "sent": sent,
            "acked": stream.pubacks,
            "complete": stream.pubacks >= count,
            "closed": closed,
            "t_done": t_done,
            "elapsed": elapsed,
            **_rates(stream.pubacks, cpu, elapsed),
        }

    def close(self) -> None:
        if self.sock:
            send_disconnect(self.sock, 0.5)
            self.sock.close()


# ---------------------------------------------------------------- 1 MB QoS 1


def _reconnect(
    host: str,
    port: int,
    client_id: str,
    t_stop: float,
    topic: str = "",
    qos: int = 1,
    required: bool = False,
) -> tuple[socket.socket, MqttStream] | None:
    """Connect again (and subscribe to ``topic``) until it works or ``t_stop``; then None,
    or with ``required`` a TimeoutError that says what went wrong last."""
    t = time.monotonic()
    last = "no attempt"
    while time.monotonic() < t_stop:
        try:
            sock, stream = mqtt_connect(
                host, port, client_id, timeout=max(0.1, min(5.0, t_stop - time.monotonic()))
            )
            if topic:
                sock.sendall(encode_subscribe(1, topic, qos))
                while not stream.subacks:
                    data = sock.recv(65536)
                    if not data:
                        raise ConnectionError("closed before SUBACK")
                    stream.feed(data)
            return sock, stream
        except OSError as e:
            last = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
            time.sleep(0.05)
    if required:
        raise TimeoutError(
            f"{client_id}: no connection{' and subscription' if topic else ''} within "
            f"{time.monotonic() - t:.0f} s ({last})"
        )
    return None


class BigPublisher:
    """QoS 1 PUBLISHes of ``payload_size`` bytes, at most ``inflight`` unacknowledged."""

    def __init__(
        self,
        host: str,
        port: int,
        topic: str,
        payload_size: int = 1_000_000,
        inflight: int = 8,
        client_id: str = "bench-big-pub",
    ) -> None:
        self.host = host
        self.port = port
        self.topic = topic
        self.payload = b"B" * payload_size
        self.inflight = inflight
        self.client_id = client_id
        self.sock: socket.socket | None = None
        self.stream: MqttStream | None = None

    def setup(self) -> None:
        again = _reconnect(
            self.host, self.port, self.client_id, time.monotonic() + 10.0, required=True
        )
        assert again is not None
        self.sock, self.stream = again
        self.sock.setblocking(False)

    def run(self, t_go: float, t0: float, t1: float, t_stop: float) -> dict[str, Any]:
        sock, stream = self.sock, self.stream
        assert sock is not None and stream is not None
        payload = memoryview(self.payload)
        plen = len(self.payload)
        sent = 0  # PUBLISHes fully written
        acked_before = 0  # PUBACKs on earlier connections
        lost = 0  # messages in flight when a connection dropped
        disconnects = 0
        pid = 0
        parts: list[memoryview] = []
        w = Window(t0, t1)
        wa = Window(t0, t1)
        mono = time.monotonic
        _wait_until(t_go)
        while True:
            now = mono()
            acked = acked_before + stream.pubacks
            if w.due(now):
                w.snap(now, sent)
            if wa.due(now):
                wa.snap(now, acked)
            if now >= t_stop:
                break
            if not parts and sent - lost - acked < self.inflight:
                pid = pid % 65535 + 1
                parts = [memoryview(publish_head(self.topic, plen, 1, pid)), payload]
            r, wr, _ = select.select([sock], [sock] if parts else [], [], min(0.05, t_stop - now))
            dropped = False
            if wr:
                try:
                    n = sock.sendmsg(parts)
                except BlockingIOError:
                    n = 0
                except OSError:
                    dropped = True
                    n = 0
                while n and parts:
                    if n >= len(parts[0]):
                        n -= len(parts[0])
                        parts.pop(0)
                    else:
                        parts[0] = parts[0][n:]
                        n = 0
                if not parts and not dropped:
                    sent += 1
            if r and not dropped:
                try:
                    data = sock.recv(65536)
                    dropped = not data
                except BlockingIOError:
                    data = b""
                except OSError:
                    dropped = True
                if data:
                    stream.feed(data)
            if dropped:
                disconnects += 1
                acked_before += stream.pubacks
                lost = sent - acked_before
                parts = []
                sock.close()
                again = _reconnect(self.host, self.port, self.client_id, t_stop)
                if again is None:
                    break
                sock, stream = again
                sock.setblocking(False)
                self.sock = sock
        acked = acked_before + stream.pubacks
        w.finish(sent)
        wa.finish(acked)
        res = w.result()
        a = wa.result()
        res.update(
            total=sent,
            acked=acked,
            acked_in_window=a["count"],
            ack_rate=a["rate"],
            disconnects=disconnects,
            frame_bytes=plen,
        )
        return res

    def close(self) -> None:
        if self.sock:
            send_disconnect(self.sock, 0.5)
            self.sock.close()


class BigSubscriber:
    """One QoS 1 subscription; counts (and PUBACKs) PUBLISHes of any size with
    ``BigFrameStream``; reconnects and counts it if the server drops the connection."""

    def __init__(
        self, host: str, port: int, topic: str, qos: int = 1, client_id: str = "bench-big-sub"
    ) -> None:
        self.host = host
        self.port = port
        self.topic = topic
        self.qos = qos
        self.client_id = client_id
        self.sock: socket.socket | None = None

    def setup(self) -> None:
        again = _reconnect(
            self.host,
            self.port,
            self.client_id,
            time.monotonic() + 10.0,
            self.topic,
            self.qos,
            required=True,
        )
        assert again is not None
        self.sock, stream = again
        sa = stream.last_suback
        if len(sa) < 5 or sa[4] != self.qos:
            raise ConnectionError(f"SUBACK granted {sa[4:]!r}, asked for QoS {self.qos}")
        recv_timeout(self.sock, 0.05)

    def run(self, t_go: float, t0: float, t1: float, t_stop: float) -> dict[str, Any]:
        sock = self.sock
        assert sock is not None
        stream = BigFrameStream()
        before = 0  # PUBLISHes counted on earlier connections
        disconnects = 0
        buf = bytearray(1 << 20)
        view = memoryview(buf)
        w = Window(t0, t1)
        mono = time.monotonic
        while not w.closed:
            now = mono()
            if w.due(now):
                w.snap(now, before + stream.publishes)
                continue
            try:
                n = sock.recv_into(buf)
            except BlockingIOError:
                continue
            except OSError:
                n = 0
            if n:
                acks = stream.feed(view[:n])
                if acks:
                    try:
                        sock.sendall(acks)
                    except OSError:
                        n = 0
            if not n:
                disconnects += 1
                before += stream.publishes
                stream = BigFrameStream()
                sock.close()
                again = _reconnect(self.host, self.port, self.client_id, t1, self.topic, self.qos)
                if again is None:
                    break
                sock = again[0]
                recv_timeout(sock, 0.05)
                self.sock = sock
        w.finish(before + stream.publishes)
        res = w.result()
        res.update(total=before + stream.publishes, disconnects=disconnects, conns=1)
        return res

    def close(self) -> None:
        if self.sock:
            send_disconnect(self.sock, 0.5)
            self.sock.close()


# ---------------------------------------------------------------- fan-out


class TimedPublisher:
    """QoS 0 PUBLISHes on ``topic`` at ``rate`` per second from ``t_go`` to ``t_stop``; the
    payload starts with the send time (``!d``, time.monotonic()), padded to ``payload_size``."""

    def __init__(
        self,
        host: str,
        port: int,
        topic: str,
        rate: float = 10.0,
        payload_size: int = 64,
        client_id: str = "bench-timed-pub",
    ) -> None:
        self.host = host
        self.port = port
        self.topic = topic
        self.rate = rate
        self.pad = b"t" * max(0, payload_size - 8)
        self.client_id = client_id
        self.sock: socket.socket | None = None

    def setup(self) -> None:
        self.sock, _ = mqtt_connect(self.host, self.port, self.client_id, keepalive=0)

    def run(self, t_go: float, t0: float, t1: float, t_stop: float) -> dict[str, Any]:
        sock = self.sock
        assert sock is not None
        sock.settimeout(1.0)
        head = publish_head(self.topic, 8 + len(self.pad))
        step = 1.0 / self.rate
        sent = 0
        w = Window(t0, t1)
        mono = time.monotonic
        nxt = t_go
        while True:
            _wait_until(nxt)
            now = mono()
            if w.due(now):
                w.snap(now, sent)
            if now >= t_stop:
                break
            sock.sendall(head + struct.pack("!d", mono()) + self.pad)
            sent += 1
            nxt += step
        w.finish(sent)
        res = w.result()
        res.update(total=sent)
        return res

    def close(self) -> None:
        if self.sock:
            send_disconnect(self.sock, 0.5)
            self.sock.close()


class FanoutSubscribers:
    """``count`` QoS 0 subscriptions to ``topic`` (one connection each), connected in
    ``setup`` (bounded by ``setup_timeout``); deliveries counted from bytes received. The
    connections stay open after the result until the runner releases them (``hold``)."""

    hold = True

    def __init__(
        self,
        host: str,
        port: int,
        topic: str,
        count: int,
        payload_size: int = 64,
        prefix: str = "fan",
        source: str = "",
        first_port: int = 10000,
        inflight: int = 24,
        sweep: float = 0.25,
        sample_every: int = 0,
        setup_timeout: float = 120.0,
    ) -> None:
        self.hs = Handshakes(host, port, source, first_port, inflight)
        self.topic = topic
        self.count = count
        self.prefix = prefix
        self.sweep = sweep
        self.sample_every = sample_every
        self.setup_timeout = setup_timeout
        frame = encode_publish(topic, b"\0" * payload_size)
        self.flen = len(frame)
        self.head = frame[: len(frame) - payload_size]  # fixed header + topic
        self.socks: list[socket.socket] = []
        self.connect: dict[str, Any] = {}

    def setup(self) -> None:
        raise_nofile(self.count + 64)
        packets = [
            (
                encode_connect(f"{self.prefix}-{i}", keepalive=0),
                encode_subscribe(1, self.topic, 0),
            )
            for i in range(self.count)
        ]
        t = time.monotonic()
        res = self.hs.run(packets, t + self.setup_timeout, keep=True, qos=0)
        self.socks = res.pop("socks")
        res["connect_s"] = res.pop("t_done") - t
        self.connect = res
        if not self.socks:
            why = res["errors"][:3]
            if res["timed_out"]:
                why.append(
                    f"{res['timed_out']} handshakes not done within {self.setup_timeout:.0f} s"
                )
            raise ConnectionError(f"no subscriber connected: {'; '.join(why)}")

    def run(self, t_go: float, t0: float, t1: float, t_stop: float) -> dict[str, Any]:
        flen, head = self.flen, self.head
        hl = len(head)
        ts_at = hl  # the timestamp opens the payload
        ep_bulk, ep_lag = select.epoll(), select.epoll()
        socks: dict[int, socket.socket] = {}
        offs: dict[int, int] = {}
        pend: dict[int, bytes] = {}
        for k, s in enumerate(self.socks):
            fd = s.fileno()
            socks[fd] = s
            offs[fd] = 0
            if self.sample_every and k % self.sample_every == 0:
                pend[fd] = b""
                ep_lag.register(fd, select.EPOLLIN)
            else:
                ep_bulk.register(fd, select.EPOLLIN)
        buf = bytearray(1 << 18)
        view = memoryview(buf)
        frames = 0
        bad = 0
        closed = 0
        recvs = 0
        lags: list[float] = []
        mono = time.monotonic
        w = Window(t0, t1)

        def recv(fd: int) -> int:
            nonlocal frames, bad, closed, recvs
            s = socks[fd]
            got = 0
            while True:
                try:
                    n = s.recv_into(buf)
                except BlockingIOError:
                    return got
                except OSError:
                    n = 0
                if not n:
                    ep_bulk.unregister(fd)
                    del socks[fd]
                    s.close()
                    closed += 1
                    return got
                recvs += 1
                off = offs[fd]
                # The first frame boundary in this chunk must open with the frame head.
                b = -off % flen
                if b + hl <= n and view[b : b + hl] != head:
                    bad += 1
                offs[fd] = off + n
                frames += (off + n) // flen - off // flen
                got += n
                if n < len(buf):
                    return got

        def lag_read(fd: int, now: float) -> None:
            nonlocal frames, closed, bad, recvs
            s = socks[fd]
            try:
                data = s.recv(65536)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                ep_lag.unregister(fd)
                del socks[fd]
                del pend[fd]
                s.close()
                closed += 1
                return
            recvs += 1
            data = pend[fd] + data
            k = len(data) // flen
            for j in range(k):
                p = j * flen
                if data[p : p + hl] != head:
                    bad += 1
                    continue
                if t0 <= now < t1:
                    lags.append(now - struct.unpack_from("!d", data, p + ts_at)[0])
            pend[fd] = data[k * flen :]
            frames += k

        def lag_poll(timeout: float) -> None:
            for fd, _ in ep_lag.poll(timeout, max(1, len(pend))):
                lag_read(fd, mono())

        cpu0 = time.process_time()
        nxt = t_go
        while not w.closed:
            now = mono()
            if now < nxt:
                if pend:
                    lag_poll(nxt - now)
                else:
                    time.sleep(nxt - now)
                continue
            # maxevents: Python's default (1023) would leave the other ready sockets unread.
            events = ep_bulk.poll(0, max(1, len(socks)))
            for k, (fd, _) in enumerate(events):
                recv(fd)
                if pend and k % 256 == 255:
                    lag_poll(0)
            now = mono()
            nxt = now + self.sweep
            if w.due(now):
                w.snap(now, frames)
        cpu = time.process_time() - cpu0
        elapsed_all = mono() - t_go
        ep_bulk.close()
        ep_lag.close()
        res = w.result()
        res.update(
            total=frames,
            conns=len(self.socks),
            closed=closed,
            misframed=bad,
            recvs=recvs,
            cpu_all=cpu / elapsed_all if elapsed_all > 0 else 0.0,
            sampled_conns=len(pend),
            connect=self.connect,
            # Raw, so the runner can take percentiles over every process's samples.
            lags=lags,
        )
        return res

    def close(self) -> None:
        for s in self.socks:
            _close_rst(s)
        self.socks.clear()


__all__ = [
    "BigPublisher",
    "BigSubscriber",
    "CommandPublisher",
    "FanoutSubscribers",
    "Handshakes",
    "PingProbe",
    "SessionMaker",
    "TimedPublisher",
    "pct_stats",
]
