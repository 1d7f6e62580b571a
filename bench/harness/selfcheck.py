"""Generator capacity: each load generator against a fake peer that costs next to nothing.

Theory of operation: a benchmark only measures the server if the generator is faster.
Here each generator role talks to a stand-in server process instead of a broker:

- a *sink* does the handshake (INFO/PONG or CONNACK), then only reads, answering each
  PING with PONG (NATS) or PINGREQ with PINGRESP (MQTT) so the publisher's flow-control
  window keeps moving; the publisher's send rate is its ceiling;
- a *blaster* does the handshake (including the subscription), then writes one
  pre-encoded buffer of MSG frames / QoS 0 PUBLISHes in a loop; the subscriber's
  receive rate is its ceiling.

The parent opens the listening socket before forking the stand-in, so the generator can
connect at once. Both run through the same Fleet/Window machinery as real scenarios, so
the figures are directly comparable to the servers' rows.
"""

from __future__ import annotations

import socket
import time
from typing import Any

from .loadgen_js import JsPublisher, JsPuller
from .loadgen_mqtt import MqttPublisher, MqttSubscriber
from .loadgen_nats import EdgeCounter, NatsPublisher, NatsSubscriber
from .mqttwire import PINGREQ_BYTES, PINGRESP_BYTES, encode_publish
from .servers import HOST
from .workers import Fleet, Window

BLAST_BYTES = 1 << 20  # one sendall of the blaster


class _StandIn:
    """Common part: accept the one client on the inherited listening socket."""

    def __init__(self, lsock: socket.socket, **kw: Any) -> None:
        self.lsock = lsock
        self.kw = kw
        self.sock: socket.socket | None = None
        self.pending = b""

    def _accept(self) -> socket.socket:
        self.lsock.settimeout(20)
        sock, _ = self.lsock.accept()
        self.lsock.close()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(20)
        self.sock = sock
        return sock

    def _read_until(self, pred: Any) -> bytes:
        assert self.sock is not None
        buf = self.pending
        while not pred(buf):
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("generator closed during handshake")
            buf += chunk
        return buf

    def close(self) -> None:
        if self.sock:
            self.sock.close()


class _Sink(_StandIn):
    """Reads everything, answering each ``ping`` marker with a ``pong``; counts the pings."""

    ping = b""
    pong = b""

    def run(self, t_go: float, t0: float, t1: float, t_stop: float) -> dict[str, Any]:
        sock = self.sock
        assert sock is not None
        sock.settimeout(0.05)
        pings = EdgeCounter(self.ping)
        pong = self.pong
        buf = bytearray(1 << 20)
        w = Window(t0, t1)
        while True:
            now = time.monotonic()
            if w.due(now):
                w.snap(now, pings.count)
            if now >= t_stop + 0.5:
                break
            try:
                n = sock.recv_into(buf)
            except TimeoutError:
                continue
            except ConnectionResetError:
                # The publisher closes at t_stop with our PONGs unread: a reset, not a fault.
                if now >= w.t1:
                    break
                raise
            if not n:
                break
            k = pings.feed(buf, n)
            if k and not _send_after_window(sock, pong * k, w):
                break
        w.finish(pings.count)
        return w.result()


class NatsSink(_Sink):
    ping = b"PING"
    pong = b"PONG\r\n"

    def setup(self) -> None:
        sock = self._accept()
        sock.sendall(
            b'INFO {"server_id":"sink","version":"2.11.0","proto":1,"max_payload":1048576}\r\n'
        )
        self._read_until(lambda b: b"PING\r\n" in b)
        sock.sendall(b"PONG\r\n")


class NatsBlaster(_StandIn):
    def setup(self) -> None:
        sock = self._accept()
        sock.sendall(b'INFO {"server_id":"blaster","version":"2.11.0","proto":1}\r\n')
        # CONNECT + PING, then SUB + PING: answer both PINGs.
        buf = self._read_until(lambda b: b"PING\r\n" in b)
        sock.sendall(b"PONG\r\n")
        self.pending = buf[buf.index(b"PING\r\n") + 6 :]
        buf = self._read_until(lambda b: b"PING\r\n" in b)
        line = buf[buf.index(b"SUB ") :].split(b"\r\n")[0].split()
        self.subject, self.sid = line[1], line[-1]
        sock.sendall(b"PONG\r\n")

    def run(self, t_go: float, t0: float, t1: float, t_stop: float) -> dict[str, Any]:
        size = self.kw.get("payload_size", 64)
        frame = b"MSG %s %s %d\r\n%s\r\n" % (self.subject, self.sid, size, b"x" * size)
        return _blast(self.sock, frame, t0, t1, t_stop)


class _NatsTwoPings(_StandIn):
    def _handshake(self) -> socket.socket:
        # CONNECT + PING, then SUB + PING: answer both PINGs.
        sock = self._accept()
        sock.sendall(
            b'INFO {"server_id":"standin","version":"2.11.0","proto":1,"headers":true}\r\n'
        )
        buf = self._read_until(lambda b: b"PING\r\n" in b)
        sock.sendall(b"PONG\r\n")
        self.pending = buf[buf.index(b"PING\r\n") + 6 :]
        self._read_until(lambda b: b"PING\r\n" in b)
        sock.sendall(b"PONG\r\n")
        return sock


class JsAckSink(_NatsTwoPings, _Sink):
    """Answers every PUB with one pre-encoded PubAck (the publisher counts, never parses,
    so one inbox subject does for all)."""

    ping = b"PUB "

    def setup(self) -> None:
        self._handshake()
        ack = b'{"stream":"BENCH","seq":1}'
        self.pong = b"MSG _INBOX.standin 1 %d\r\n%s\r\n" % (len(ack), ack)


class JsPullBlaster(_NatsTwoPings, _Sink):
    """Answers every MSG.NEXT with a batch of pre-encoded messages and discards the acks."""

    ping = b"MSG.NEXT"

    def setup(self) -> None:
        self._handshake()
        size, batch = self.kw.get("payload_size", 64), self.kw.get("batch", 500)
        reply = b"$JS.ACK.BENCHP.bench.1.%d.%d.1700000000000000000.999999"
        self.pong = b"".join(
            b"MSG bench.pull 1 %s %d\r\n%s\r\n" % (reply % (i, i), size, b"x" * size)
            for i in range(1, batch + 1)
        )


class MqttSink(_Sink):
    # The QoS 0 publisher's stream is PUBLISHes of ASCII topic and 'x' payload, so
    # 0xC0 0x00 only occurs as a PINGREQ.
    ping = PINGREQ_BYTES
    pong = PINGRESP_BYTES

    def setup(self) -> None:
        sock = self._accept()
        self._read_until(lambda b: len(b) >= 2 and b[0] == 0x10)
        sock.sendall(b"\x20\x02\x00\x00")  # CONNACK, accepted


class MqttBlaster(_StandIn):
    def setup(self) -> None:
        sock = self._accept()
        buf = self._read_until(lambda b: len(b) >= 2 and b[0] == 0x10)
        sock.sendall(b"\x20\x02\x00\x00")
        self.pending = buf[2 + buf[1] :]  # CONNECT is short: 1-byte remaining length
        buf = self._read_until(lambda b: len(b) >= 4 and b[0] == 0x82)
        pid = buf[2:4]
        tlen = int.from_bytes(buf[4:6], "big")
        self.topic = buf[6 : 6 + tlen].decode()
        sock.sendall(b"\x90\x03" + pid + b"\x00")  # SUBACK, granted QoS 0

    def run(self, t_go: float, t0: float, t1: float, t_stop: float) -> dict[str, Any]:
        size = self.kw.get("payload_size", 64)
        frame = encode_publish(self.topic, b"x" * size)
        return _blast(self.sock, frame, t0, t1, t_stop)


def _send_after_window(sock: socket.socket, data: bytes, w: Window) -> bool:
    """sendall; False if the generator hung up after the window (it stops at t1)."""
    try:
        sock.sendall(data)
        return True
    except (BrokenPipeError, ConnectionResetError):
        if time.monotonic() >= w.t1:
            return False
        raise


def _blast(
    sock: socket.socket | None, frame: bytes, t0: float, t1: float, t_stop: float
) -> dict[str, Any]:
    assert sock is not None
    sock.settimeout(5)
    per = max(1, BLAST_BYTES // len(frame))
    chunk = frame * per
    sent = 0
    w = Window(t0, t1)
    while True:
        now = time.monotonic()
        if w.due(now):
            w.snap(now, sent)
        if now >= t_stop:
            break
        if not _send_after_window(sock, chunk, w):
            break
        sent += per
    w.finish(sent)
    return w.result()


def _pair(fleet: Fleet, standin: type, gen: type, gen_kind: str, **params: Any) -> None:
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.bind((HOST, 0))
    lsock.listen(4)
    port = lsock.getsockname()[1]
    try:
        peer_kind = "pub" if gen_kind == "sub" else "sub"
        fleet.spawn(
            "standin",
            peer_kind,
            standin,
            lsock=lsock,
            payload_size=params.get("payload_size", 64),
            batch=params.get("batch", 500),
        )
        gen_params = dict(host=HOST, port=port, **params)
        fleet.spawn("generator", gen_kind, gen, **gen_params)
    finally:
        lsock.close()  # the forked stand-in holds its own copy
    fleet.wait_ready(fleet.workers)


CHECKS: list[tuple[str, str, type, type, str, dict[str, Any]]] = [
    (
        "nats_pub",
        "NATS publisher -> sink",
        NatsSink,
        NatsPublisher,
        "pub",
        {"subject": "bench.core"},
    ),
    (
        "nats_sub",
        "blaster -> NATS subscriber",
        NatsBlaster,
        NatsSubscriber,
        "sub",
        {"subject": "bench.core"},
    ),
    (
        "mqtt_pub",
        "MQTT QoS 0 publisher -> sink",
        MqttSink,
        MqttPublisher,
        "pub",
        {"topic": "bench/q0"},
    ),
    (
        "mqtt_sub",
        "blaster -> MQTT QoS 0 subscriber",
        MqttBlaster,
        MqttSubscriber,
        "sub",
        {"topic": "bench/q0"},
    ),
    (
        "js_pub",
        "JetStream publisher -> ack sink",
        JsAckSink,
        JsPublisher,
        "pub",
        {"subject": "bench.js"},
    ),
    (
        "js_pull",
        "pull blaster -> JetStream pull consumer",
        JsPullBlaster,
        JsPuller,
        "sub",
        {"stream": "BENCHP", "create": False},
    ),
]


def run_checks(opts: Any, duration: float = 3.0) -> dict[str, dict[str, Any]]:
    """Each generator's ceiling in msgs/s (plus its CPU), keyed by check name."""
    out: dict[str, dict[str, Any]] = {}
    for name, title, standin, gen, kind, extra in CHECKS:
        params = dict(extra)
        if gen is NatsPublisher:
            params.update(payload_size=opts.payload, batch=opts.nats_batch, window=opts.nats_window)
        elif gen is MqttPublisher:
            params.update(payload_size=opts.payload, batch=opts.mqtt_batch, window=opts.mqtt_window)
        elif gen is JsPublisher:
            params.update(payload_size=opts.payload, inflight=opts.js_inflight, batch=opts.js_batch)
        elif gen is JsPuller:
            params.update(batch=opts.js_pull_batch)
        else:
            params.update(lowat=opts.lowat)
        try:
            with Fleet() as fleet:
                _pair(fleet, standin, gen, kind, **params)
                _, _, t_stop = fleet.go(opts.warmup, duration, 0.5)
                fleet.collect(t_stop + 30)
                res = {w.name: w.result or {} for w in fleet.workers}
            g, s = res["generator"], res["standin"]
            out[name] = {
                "title": title,
                "rate": g["rate"],
                "cpu": g["cpu"],
                "standin_rate": s["rate"],
                "standin_cpu": s["cpu"],
            }
        except Exception as e:  # noqa: BLE001 - reported, the suite goes on
            out[name] = {"title": title, "error": str(e)}
    return out


def print_checks(results: dict[str, dict[str, Any]]) -> None:
    print("\n== generator capacity (each generator against a stand-in server)")
    print(f"  {'check':<10} {'what':<36} {'msgs/s':>12} {'gen cpu':>8} {'peer cpu':>9}")
    for name, r in results.items():
        if "error" in r:
            print(f"  {name:<10} {r['title']:<36} FAILED {r['error'].splitlines()[0][:60]}")
            continue
        print(
            f"  {name:<10} {r['title']:<36} {r['rate']:>12,.0f} {100 * r['cpu']:>7.0f}% "
            f"{100 * r['standin_cpu']:>8.0f}%"
        )
