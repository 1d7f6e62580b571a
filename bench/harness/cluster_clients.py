"""MQTT 3.1.1 clients for the cluster scenarios that time events rather than rates.

Theory of operation: these run inside the harness process (threads, raw sockets), because
they send a few hundred packets a second at most and what they measure is *when*
something happens, on ``time.monotonic()`` (one clock for every process on the machine):

- ``Frames``: an incremental decoder that yields every packet (type, flags, body), so a
  client can read a PUBLISH's payload, a CONNACK's session-present flag, a SUBACK code.
- ``Ticker``: publishers on one node sending a QoS 0 and a QoS 1 PUBLISH every ``step``
  seconds (payload: send time and a sequence number; one connection per QoS; PUBACKs
  timed), and subscribers on the other node (one QoS 0, one QoS 1 connection) that
  record (receive time, send time, seq) for each.
  Any connection that drops is reconnected (and re-subscribed) in a loop, and the
  reconnects are counted: what a relink measurement needs is the first message *sent
  after* the kill that arrives, whatever the clients went through.
- ``connect``: CONNECT and wait for the CONNACK, returning (socket, frames, CONNACK).
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import threading
import time
from typing import Any

from .mqttwire import encode_connect, encode_puback, encode_publish, encode_subscribe

TICK = struct.Struct("!dI")  # send time (time.monotonic()), sequence number


class Frames:
    """Incremental MQTT frame decoder: ``feed(data)`` returns [(type, flags, body)]."""

    def __init__(self) -> None:
        self.buf = b""

    def feed(self, data: bytes) -> list[tuple[int, int, bytes]]:
        buf = self.buf + data
        out = []
        pos = 0
        n = len(buf)
        while pos + 2 <= n:
            # Remaining length: up to 4 bytes of 7 bits [MQTT-2.2.3].
            mult, length, i = 1, 0, pos + 1
            while True:
                if i >= n:
                    self.buf = buf[pos:]
                    return out
                b = buf[i]
                length += (b & 0x7F) * mult
                mult <<= 7
                i += 1
                if not b & 0x80:
                    break
            if i + length > n:
                break
            out.append((buf[pos] >> 4, buf[pos] & 0x0F, buf[i : i + length]))
            pos = i + length
        self.buf = buf[pos:]
        return out


def parse_publish(flags: int, body: bytes) -> tuple[str, int, int, bytes]:
    """(topic, qos, packet id or 0, payload) of a PUBLISH body."""
    tlen = struct.unpack_from("!H", body)[0]
    topic = body[2 : 2 + tlen].decode(errors="replace")
    qos = (flags >> 1) & 3
    pos = 2 + tlen
    pid = 0
    if qos:
        pid = struct.unpack_from("!H", body, pos)[0]
        pos += 2
    return topic, qos, pid, body[pos:]


def connect(
    port: int,
    client_id: str,
    clean: bool = True,
    timeout: float = 5.0,
    host: str = "127.0.0.1",
    keepalive: int = 60,
) -> tuple[socket.socket, Frames, bytes, list[tuple[int, int, bytes]]]:
    """TCP + CONNECT + CONNACK (accepted); returns the socket, its decoder, the CONNACK
    body and any packets that came after it in the same reads."""
    sock = socket.create_connection((host, port), timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.settimeout(timeout)
    fr = Frames()
    try:
        sock.sendall(encode_connect(client_id, keepalive=keepalive, clean=clean))
        deadline = time.monotonic() + timeout
        while True:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{client_id}: no CONNACK")
            data = sock.recv(65536)
            if not data:
                raise ConnectionError(f"{client_id}: closed before CONNACK")
            pkts = fr.feed(data)
            for k, (typ, _, body) in enumerate(pkts):
                if typ == 2:
                    # CONNACK body: flags (bit 0 session present), return code [MQTT-3.2.2].
                    if len(body) < 2 or body[1] != 0:
                        raise ConnectionError(f"{client_id}: CONNACK refused {body!r}")
                    return sock, fr, body, pkts[k + 1 :]
    except BaseException:
        sock.close()
        raise


def subscribe(
    sock: socket.socket, fr: Frames, topic: str, qos: int, timeout: float = 5.0
) -> list[tuple[int, int, bytes]]:
    """SUBSCRIBE one filter and wait for a granting SUBACK; returns packets that came
    with it (a persistent session's queued PUBLISHes, say)."""
    sock.sendall(encode_subscribe(1, topic, qos))
    deadline = time.monotonic() + timeout
    other = []
    while time.monotonic() < deadline:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("closed before SUBACK")
        for typ, flags, body in fr.feed(data):
            if typ == 9:
                if len(body) < 3 or body[2] == 0x80:
                    raise ConnectionError(f"SUBSCRIBE {topic} refused: {body!r}")
                return other
            other.append((typ, flags, body))
    raise TimeoutError("no SUBACK")


def close(sock: socket.socket | None, disconnect: bool = True) -> None:
    if sock is None:
        return
    if disconnect:
        with contextlib.suppress(OSError):
            sock.settimeout(0.5)
            sock.sendall(b"\xe0\x00")
    with contextlib.suppress(OSError):
        sock.close()


class Ticker:
    """QoS 0 and QoS 1 ticks from ``pub_port`` to subscribers on ``sub_port``."""

    def __init__(self, pub_port: int, sub_port: int, tag: str, step: float = 0.01) -> None:
        self.pub_port = pub_port
        self.sub_port = sub_port
        self.tag = tag
        self.step = step
        self.topics = {0: f"bench/tick0/{tag}", 1: f"bench/tick1/{tag}"}
        self.recv: dict[int, list[tuple[float, float, int]]] = {0: [], 1: []}
        self.reconnects = {"pub0": 0, "pub1": 0, "sub0": 0, "sub1": 0}
        self.sent = [0, 0]
        self.acks: list[tuple[float, float]] = []  # (PUBACK time, send time)
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        for qos in (0, 1):
            t = threading.Thread(target=self._sub_loop, args=(qos,), daemon=True)
            t.start()
            self._threads.append(t)
        for qos in (0, 1):
            t = threading.Thread(target=self._pub_loop, args=(qos,), daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(3.0)

    def _note(self, what: str) -> None:
        with self._lock:
            if len(self.errors) < 20:
                self.errors.append(f"{time.monotonic():.3f} {what}")

    def _sub_loop(self, qos: int) -> None:
        key = f"sub{qos}"
        first = True
        while not self._stop.is_set():
            sock = None
            try:
                sock, fr, _, pending = connect(self.sub_port, f"tick-{key}-{self.tag}")
                pending += subscribe(sock, fr, self.topics[qos], qos)
                if not first:
                    self.reconnects[key] += 1
                first = False
                sock.settimeout(0.1)
                while not self._stop.is_set():
                    self._handle(sock, pending, qos)
                    pending = []
                    try:
                        data = sock.recv(65536)
                    except TimeoutError:
                        continue
                    if not data:
                        raise ConnectionError("closed")
                    pending = fr.feed(data)
            except (OSError, ConnectionError, TimeoutError) as e:
                self._note(f"{key}: {e!r}")
                time.sleep(0.02)
            finally:
                close(sock, disconnect=self._stop.is_set())

    def _handle(self, sock: socket.socket, pkts: list[tuple[int, int, bytes]], qos: int) -> None:
        now = time.monotonic()
        acks = []
        for typ, flags, body in pkts:
            if typ != 3:
                continue
            _, q, pid, payload = parse_publish(flags, body)
            if len(payload) >= TICK.size:
                ts, seq = TICK.unpack_from(payload)
                self.recv[qos].append((now, ts, seq))
            if q:
                acks.append(encode_puback(pid))
        if acks:
            sock.sendall(b"".join(acks))

    def _pub_loop(self, qos: int) -> None:
        """One publisher connection per QoS: hybridbus closes a 3.1.1 connection whose
        QoS 1 PUBLISH it cannot store (no negative PUBACK in 3.1.1), which must not hold
        up the QoS 0 ticks. PUBACKs are matched to their send times (``acks``)."""
        key = f"pub{qos}"
        seq = 0
        pid = 0
        first = True
        sent_at: dict[int, float] = {}
        while not self._stop.is_set():
            sock = None
            try:
                sock, fr, _, _ = connect(self.pub_port, f"tick-{key}-{self.tag}")
                if not first:
                    self.reconnects[key] += 1
                first = False
                sent_at.clear()
                nxt = time.monotonic()
                while not self._stop.is_set():
                    nxt += self.step
                    seq += 1
                    now = time.monotonic()
                    body = TICK.pack(now, seq)
                    if qos:
                        pid = pid % 65535 + 1
                        sent_at[pid] = now
                        sock.sendall(encode_publish(self.topics[1], body, 1, pid))
                    else:
                        sock.sendall(encode_publish(self.topics[0], body))
                    self.sent[qos] += 1
                    # Read what came back without waiting: PUBACKs, timed.
                    while select.select([sock], [], [], 0)[0]:
                        data = sock.recv(65536)
                        if not data:
                            raise ConnectionError("closed")
                        t = time.monotonic()
                        for typ, _, body in fr.feed(data):
                            if typ == 4 and len(body) >= 2:
                                ts = sent_at.pop(struct.unpack_from("!H", body)[0], None)
                                if ts is not None:
                                    self.acks.append((t, ts))
                    time.sleep(max(0.0, nxt - time.monotonic()))
            except (OSError, ConnectionError, TimeoutError) as e:
                self._note(f"{key}: {e!r}")
                time.sleep(0.02)
            finally:
                close(sock, disconnect=self._stop.is_set())

    def first_ack_after(self, t: float) -> float | None:
        """Time of the first PUBACK for a QoS 1 tick sent after ``t``."""
        got = [r for r, ts in list(self.acks) if ts > t]
        return min(got) if got else None

    def first_after(self, qos: int, t: float) -> float | None:
        """Receive time of the first message sent after ``t`` (None: none yet)."""
        got = [r for r, ts, _ in list(self.recv[qos]) if ts > t]
        return min(got) if got else None

    def flowing(self, since: float) -> bool:
        return all(self.first_after(q, since) is not None for q in (0, 1))

    def summary(self) -> dict[str, Any]:
        return {
            "ticks_sent": list(self.sent),
            "pubacks": len(self.acks),
            "ticks_recv_qos0": len(self.recv[0]),
            "ticks_recv_qos1": len(self.recv[1]),
            "reconnects": dict(self.reconnects),
            "client_errors": list(self.errors),
        }
