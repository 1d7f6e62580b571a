"""JetStream load-generator roles over raw sockets: acked publisher, pull consumer, KV client.

Theory of operation (the NATS roles' rules hold here too: frames encoded once, counting in
C where possible, one process per role):

- ``JsControl`` is a plain blocking client for the setup calls ($JS.API requests: create a
  stream, a consumer, read ConsumerInfo). It parses frames properly; it is never on a
  measured path.
- ``JsPublisher`` publishes with a reply subject (what ``js.publish_async`` does) and
  keeps at most ``inflight`` PubAcks outstanding. The PUBs go out in pre-encoded slices of
  ``batch``, each PUB with its own reply token (``_INBOX.jsp<pid>.<i>``, i cycling over
  more tokens than the window holds). PubAcks are counted, not parsed: every ack is one
  ``MSG `` (or ``HMSG ``) frame on the inbox, and ``"error"`` occurs only in error acks,
  so two ``EdgeCounter``s over the raw stream give good acks = frames - errors.
  With ``total`` it stops once that many are acked (the stream pre-fill of ``js_pull``).
- ``JsPuller`` is a durable pull consumer in the shape of ``nats bench js pull`` and
  nats-py's ``fetch(500)``: one ``MSG.NEXT`` request for ``batch`` messages at a time
  (the next one when the last message of a batch is in), every message acked with an
  empty PUB to its ``$JS.ACK...`` reply. The reply subjects are cut out of each received
  chunk with one regex (``findall`` in C; payloads are all ``x``, so nothing else can
  match) and the acks for a chunk are one ``join`` and one write. Only the part of a
  chunk up to its last CRLF is scanned; the rest waits for the next chunk, so a reply
  subject is never split. The last token of the reply is the consumer's pending count:
  0 means the pre-filled stream is drained, and the window closes there.
- ``KvClient``: one round trip at a time, alternating a KV put (a publish to
  ``$KV.<bucket>.<key>`` with a reply: the PubAck) and a direct get
  (``$JS.API.DIRECT.GET.KV_<bucket>.$KV.<bucket>.<key>``, empty body, the reply is the
  message with its headers); the latency of each is kept separately.
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
from typing import Any

from .loadgen_nats import EdgeCounter, latency_stats, nats_connect, payload_bytes, wait_pong
from .sockets import recv_timeout
from .workers import Window

RECV_SIZE = 1 << 20
# CONNECT options of a JetStream client: headers (status replies, direct get) and
# no_responders (a publish with no stream behind it fails at once with a 503).
JS_CONNECT = {"headers": True, "no_responders": True}
ACK_RE = re.compile(rb"\$JS\.ACK\.[^ \r\n]+")


class JsApiError(Exception):
    pass


def _frame(buf: bytes, pos: int) -> tuple[tuple[bytes, bytes, bytes, bytes] | None, int]:
    """One MSG/HMSG at ``pos`` as (subject, reply, header block, payload), or None for
    another line (PING/PONG/+OK/INFO) or an incomplete frame; returns the next position
    (``pos`` itself when incomplete). -ERR raises."""
    eol = buf.find(b"\r\n", pos)
    if eol < 0:
        return None, pos
    line = buf[pos:eol]
    if line.startswith(b"-ERR"):
        raise ConnectionError(line.decode(errors="replace"))
    if not line.startswith((b"MSG ", b"HMSG ")):
        return None, eol + 2
    parts = line.split()
    hmsg = parts[0] == b"HMSG"
    total = int(parts[-1])
    hlen = int(parts[-2]) if hmsg else 0
    reply = parts[3] if len(parts) == (6 if hmsg else 5) else b""
    end = eol + 2 + total + 2
    if end > len(buf):
        return None, pos
    body = buf[eol + 2 : eol + 2 + total]
    return (parts[1], reply, body[:hlen], body[hlen:]), end


class JsControl:
    """Blocking request/reply over its own connection, for setup and checks."""

    def __init__(self, host: str, port: int, name: str = "bench-js-ctl") -> None:
        self.sock = nats_connect(host, port, name, extra=JS_CONNECT)
        self.inbox = b"_INBOX.ctl%d_%d" % (os.getpid(), id(self) & 0xFFFFFF)
        self.sock.sendall(b"SUB %s.* 1\r\nPING\r\n" % self.inbox)
        self.buf = wait_pong(self.sock, b"", time.monotonic() + 10)
        self.n = 0

    def request(self, subject: str | bytes, body: bytes = b"", timeout: float = 10.0):
        """Send a request, return (header block, payload) of its reply."""
        subj = subject.encode() if isinstance(subject, str) else subject
        self.n += 1
        reply = b"%s.%d" % (self.inbox, self.n)
        self.sock.sendall(b"PUB %s %s %d\r\n%s\r\n" % (subj, reply, len(body), body))
        deadline = time.monotonic() + timeout
        self.sock.settimeout(timeout)
        while True:
            pos = 0
            while True:
                fr, nxt = _frame(self.buf, pos)
                if nxt == pos:
                    break
                pos = nxt
                if self.buf[:pos].endswith(b"PING\r\n"):
                    self.sock.sendall(b"PONG\r\n")
                if fr is not None and fr[0] == reply:
                    self.buf = self.buf[pos:]
                    return fr[2], fr[3]
            self.buf = self.buf[pos:]
            if time.monotonic() > deadline:
                raise TimeoutError(f"no reply to {subj.decode()}")
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("server closed the control connection")
            self.buf += chunk

    def api(self, subject: str, req: dict[str, Any] | None = None) -> dict[str, Any]:
        """A $JS.API call: JSON in, JSON out; an error response or status raises."""
        body = json.dumps(req).encode() if req is not None else b""
        hdr, payload = self.request(subject, body)
        if hdr and not hdr.startswith(b"NATS/1.0\r\n"):
            status = hdr.split(b"\r\n")[0].decode(errors="replace")
            raise JsApiError(f"{subject}: {status}")
        resp = json.loads(payload or b"{}")
        if "error" in resp:
            raise JsApiError(f"{subject}: {resp['error']}")
        return resp

    def close(self) -> None:
        self.sock.close()


def stream_config(name: str, subjects: list[str], **extra: Any) -> dict[str, Any]:
    """A file-storage limits stream, as ``js.add_stream`` sends it."""
    cfg: dict[str, Any] = {
        "name": name,
        "subjects": subjects,
        "retention": "limits",
        "storage": "file",
        "num_replicas": 1,
        "discard": "old",
    }
    cfg.update(extra)
    return cfg


def kv_config(bucket: str, history: int = 1) -> dict[str, Any]:
    """The stream ``create_key_value(bucket, history, direct=True)`` asks for (nats-py 2.16)."""
    return stream_config(
        f"KV_{bucket}",
        [f"$KV.{bucket}.>"],
        max_consumers=-1,
        max_msgs=-1,
        discard="new",
        discard_new_per_subject=False,
        max_msgs_per_subject=history,
        no_ack=False,
        duplicate_window=120_000_000_000,
        sealed=False,
        deny_delete=True,
        deny_purge=False,
        allow_rollup_hdrs=True,
        allow_direct=True,
        allow_msg_ttl=True,
        max_age=0,
    )


def _js_socket(host: str, port: int, name: str, sub: bytes) -> socket.socket:
    sock = nats_connect(host, port, name, extra=JS_CONNECT)
    sock.sendall(b"SUB %s 1\r\nPING\r\n" % sub)
    wait_pong(sock, b"", time.monotonic() + 10)
    recv_timeout(sock, 0.05)
    return sock


def _check_inbound(sock: socket.socket, data: bytes | bytearray | memoryview) -> None:
    """Answer a server PING; a 503 status means no stream listens on the subject."""
    raw = bytes(data)
    if b"PING\r\n" in raw:
        sock.sendall(b"PONG\r\n")
    i = raw.find(b"NATS/1.0 503")
    if i >= 0:
        raise ConnectionError("503 no responders: no stream takes this subject")
    i = raw.find(b"-ERR")
    if i >= 0:
        raise ConnectionError(raw[i:].split(b"\r\n")[0].decode(errors="replace"))


class JsPublisher:
    """Acked publishes to ``subject`` with at most ``inflight`` PubAcks outstanding."""

    def __init__(
        self,
        host: str,
        port: int,
        subject: str,
        payload_size: int = 64,
        inflight: int = 1000,
        batch: int = 100,
        stream: dict[str, Any] | None = None,
        total: int = 0,
        name: str = "bench-js-pub",
    ) -> None:
        self.host = host
        self.port = port
        self.subject = subject.encode()
        self.payload = payload_bytes(payload_size)
        self.inflight = inflight
        self.batch = batch
        self.stream = stream  # created in setup when given (None: a stand-in server)
        self.total = total  # stop once this many are acked (0: run to t_stop)
        self.name = name
        self.inbox = b"_INBOX.jsp%d" % os.getpid()
        self.sock: socket.socket | None = None

    def setup(self) -> None:
        if self.stream is not None:
            ctl = JsControl(self.host, self.port)
            try:
                ctl.api(f"$JS.API.STREAM.CREATE.{self.stream['name']}", self.stream)
            finally:
                ctl.close()
        self.sock = _js_socket(self.host, self.port, self.name, self.inbox + b".*")

    def slices(self) -> list[bytes]:
        """Pre-encoded slices of ``batch`` PUBs; their reply tokens cover more than the
        window, so no two outstanding publishes share one."""
        n = -(-self.inflight // self.batch) + 1
        p = self.payload
        return [
            b"".join(
                b"PUB %s %s.%d %d\r\n%s\r\n" % (self.subject, self.inbox, i, len(p), p)
                for i in range(k * self.batch, (k + 1) * self.batch)
            )
            for k in range(n)
        ]

    def run(self, t_go: float, t0: float, t1: float, t_stop: float) -> dict[str, Any]:
        sock = self.sock
        assert sock is not None
        slices = self.slices()
        nslices = len(slices)
        batch, inflight, total = self.batch, self.inflight, self.total
        acks = EdgeCounter(b"MSG ")  # also counts HMSG
        errs = EdgeCounter(b'"error"')
        first_error = b""
        buf = bytearray(RECV_SIZE)
        view = memoryview(buf)
        sent = k = 0
        w = Window(t0, t1)  # PUBs written
        wa = Window(t0, t1)  # good PubAcks
        mono = time.monotonic
        t_start = None
        while mono() < t_go:
            time.sleep(0.001)
        while True:
            now = mono()
            good = acks.count - errs.count
            if w.due(now):
                w.snap(now, sent)
            if wa.due(now):
                wa.snap(now, good)
            if now >= t_stop or (total and good >= total):
                break
            if sent - acks.count + batch <= inflight and not (total and sent >= total):
                if t_start is None:
                    t_start = now
                sock.sendall(slices[k])
                k = (k + 1) % nslices
                sent += batch
                continue
            try:
                n = sock.recv_into(buf)
            except BlockingIOError:
                continue
            if not n:
                raise ConnectionError("server closed the publisher connection")
            acks.feed(buf, n)
            if errs.feed(buf, n) and not first_error:
                i = buf.find(b'"error"', 0, n)
                first_error = bytes(buf[max(0, i - 2) : min(n, i + 200)])
            _check_inbound(sock, view[:n])
        good = acks.count - errs.count
        t_end = mono()
        w.finish(sent)
        wa.finish(good)
        res = w.result()
        acked = wa.result()
        res.update(
            total=sent,
            acked=good,
            ack_rate=acked["rate"],
            errors=errs.count,
            first_error=first_error.decode(errors="replace"),
            fill_s=(t_end - t_start) if t_start is not None else None,
        )
        return res

    def close(self) -> None:
        if self.sock:
            self.sock.close()


class ReplyCutter:
    """The ``$JS.ACK`` reply subjects of a MSG stream fed in arbitrary chunks.

    Only the part up to the last CRLF is scanned; the rest is kept for the next chunk, so
    a MSG line (and its reply subject) is always scanned whole. Payloads must not contain
    ``$JS.ACK.`` (the generators' are all ``x``).
    """

    __slots__ = ("rest",)

    def __init__(self) -> None:
        self.rest = b""

    def feed(self, chunk: bytes | bytearray | memoryview) -> tuple[list[bytes], bytes]:
        """(reply subjects completed by ``chunk``, the scanned bytes)."""
        data = self.rest + chunk if self.rest else bytes(chunk)
        cut = data.rfind(b"\r\n") + 2
        if cut < 2:
            self.rest = data
            return [], b""
        self.rest = data[cut:]
        done = data[:cut]
        return ACK_RE.findall(done), done


class JsPuller:
    """A durable pull consumer: fetch ``batch`` at a time, ack every message."""

    def __init__(
        self,
        host: str,
        port: int,
        stream: str,
        consumer: str = "bench",
        batch: int = 500,
        expires: float = 5.0,
        max_ack_pending: int = 1000,
        create: bool = True,
        name: str = "bench-js-pull",
    ) -> None:
        self.host = host
        self.port = port
        self.stream = stream
        self.consumer = consumer
        self.batch = batch
        self.expires = expires
        self.max_ack_pending = max_ack_pending
        self.create = create  # False against a stand-in server (no API to call)
        self.name = name
        self.inbox = b"_INBOX.jsf%d" % os.getpid()
        self.sock: socket.socket | None = None
        self.ctl: JsControl | None = None

    def setup(self) -> None:
        if self.create:
            self.ctl = JsControl(self.host, self.port)
            cfg = {
                "durable_name": self.consumer,
                "name": self.consumer,
                "deliver_policy": "all",
                "ack_policy": "explicit",
                "ack_wait": 30_000_000_000,
                "max_ack_pending": self.max_ack_pending,
                "replay_policy": "instant",
            }
            self.ctl.api(
                f"$JS.API.CONSUMER.CREATE.{self.stream}.{self.consumer}",
                {"stream_name": self.stream, "config": cfg},
            )
        self.sock = _js_socket(self.host, self.port, self.name, self.inbox)

    def pull_request(self) -> bytes:
        body = json.dumps({"batch": self.batch, "expires": int(self.expires * 1e9)}).encode()
        subj = f"$JS.API.CONSUMER.MSG.NEXT.{self.stream}.{self.consumer}".encode()
        return b"PUB %s %s %d\r\n%s\r\n" % (subj, self.inbox, len(body), body)

    def run(self, t_go: float, t0: float, t1: float, t_stop: float) -> dict[str, Any]:
        # hot path: one regex and one write of acks per received chunk, no per-message
        # Python beyond the join.
        sock = self.sock
        assert sock is not None
        req = self.pull_request()
        batch = self.batch
        feed = ReplyCutter().feed
        buf = bytearray(RECV_SIZE)
        view = memoryview(buf)
        got = due = requests = statuses = recvs = 0
        drained_at = None
        w = Window(t0, t1)
        mono = time.monotonic
        while mono() < t_go:
            time.sleep(0.001)
        sock.sendall(req)
        due, requests = batch, 1
        while True:
            now = mono()
            if w.due(now):
                w.snap(now, got)
            if now >= t_stop or drained_at is not None:
                break
            try:
                n = sock.recv_into(buf)
            except BlockingIOError:
                continue
            if not n:
                raise ConnectionError("server closed the pull consumer connection")
            recvs += 1
            replies, done = feed(view[:n])
            out = b""
            if replies:
                got += len(replies)
                due -= len(replies)
                out = b"PUB " + b" 0\r\n\r\nPUB ".join(replies) + b" 0\r\n\r\n"
                last = replies[-1]
                if last.endswith(b".0") and last[last.rfind(b".") + 1 :] == b"0":
                    drained_at = mono()
            if b"NATS/1.0 " in done:
                # A status ends the request (404 No Messages, 408 Request Timeout, 409).
                statuses += done.count(b"NATS/1.0 4")
                _check_inbound(sock, done)
                due = 0
            elif b"PING\r\n" in done:
                out += b"PONG\r\n"
            if due <= 0 and drained_at is None:
                out += req
                due, requests = batch, requests + 1
            if out:
                sock.sendall(out)
        w.finish(got)
        res = w.result()
        res.update(
            total=got,
            requests=requests,
            statuses=statuses,
            recvs=recvs,
            drained=drained_at is not None,
            drained_in_window=drained_at is not None and drained_at < t1,
        )
        res.update(self._consumer_state())
        return res

    def _consumer_state(self) -> dict[str, Any]:
        """ConsumerInfo after the run: were the acks processed (ack floor near delivered)?"""
        if self.ctl is None:
            return {}
        time.sleep(0.3)
        try:
            info = self.ctl.api(f"$JS.API.CONSUMER.INFO.{self.stream}.{self.consumer}")
        except (JsApiError, TimeoutError, ConnectionError) as e:
            return {"consumer_info_error": str(e)}
        return {
            "delivered_stream_seq": (info.get("delivered") or {}).get("stream_seq"),
            "ack_floor_stream_seq": (info.get("ack_floor") or {}).get("stream_seq"),
            "num_ack_pending": info.get("num_ack_pending"),
            "num_pending": info.get("num_pending"),
            "num_redelivered": info.get("num_redelivered"),
        }

    def close(self) -> None:
        for s in (self.sock, self.ctl):
            if s is not None:
                s.close()


class KvClient:
    """Sequential KV put and direct-get round trips over ``keys`` keys."""

    def __init__(
        self,
        host: str,
        port: int,
        bucket: str = "bench",
        keys: int = 100,
        payload_size: int = 64,
        name: str = "bench-kv",
    ) -> None:
        self.host = host
        self.port = port
        self.bucket = bucket
        self.keys = keys
        self.payload = payload_bytes(payload_size)
        self.name = name
        self.inbox = b"_INBOX.kv%d" % os.getpid()
        self.sock: socket.socket | None = None
        self.buf = b""

    def frames(self) -> tuple[list[bytes], list[bytes]]:
        b, p, inbox = self.bucket.encode(), self.payload, self.inbox
        puts = [
            b"PUB $KV.%s.k%d %s.p %d\r\n%s\r\n" % (b, i, inbox, len(p), p) for i in range(self.keys)
        ]
        gets = [
            b"PUB $JS.API.DIRECT.GET.KV_%s.$KV.%s.k%d %s.g 0\r\n\r\n" % (b, b, i, inbox)
            for i in range(self.keys)
        ]
        return puts, gets

    def setup(self) -> None:
        ctl = JsControl(self.host, self.port)
        try:
            cfg = kv_config(self.bucket)
            ctl.api(f"$JS.API.STREAM.CREATE.{cfg['name']}", cfg)
        finally:
            ctl.close()
        self.sock = _js_socket(self.host, self.port, self.name, self.inbox + b".*")
        recv_timeout(self.sock, 5.0)
        puts, _ = self.frames()
        for frame in puts:  # every key has a value before the first get
            self._round_trip(frame)

    def _round_trip(self, frame: bytes) -> tuple[bytes, bytes]:
        sock = self.sock
        assert sock is not None
        sock.sendall(frame)
        while True:
            pos = 0
            while True:
                fr, nxt = _frame(self.buf, pos)
                if nxt == pos:
                    break
                pos = nxt
                if fr is not None:
                    self.buf = self.buf[pos:]
                    return fr[2], fr[3]
            self.buf = self.buf[pos:]
            try:
                data = sock.recv(65536)
            except BlockingIOError:
                raise TimeoutError("no reply within 5 s") from None
            if not data:
                raise ConnectionError("server closed the KV connection")
            if b"PING\r\n" in data:
                sock.sendall(b"PONG\r\n")
            self.buf += data

    def run(self, t_go: float, t0: float, t1: float, t_stop: float) -> dict[str, Any]:
        puts, gets = self.frames()
        size = len(self.payload)
        put_lat: list[int] = []
        get_lat: list[int] = []
        bad_put = bad_get = 0
        first_bad = b""
        total = i = 0
        w = Window(t0, t1)
        mono = time.monotonic
        clock = time.perf_counter_ns
        rt = self._round_trip
        while mono() < t_go:
            time.sleep(0.001)
        while True:
            now = mono()
            if w.due(now):
                w.snap(now, total)
            if w.closed:
                break
            in_window = w.start is not None
            k = i % self.keys
            i += 1
            start = clock()
            hdr, payload = rt(puts[k])
            mid = clock()
            if b'"error"' in payload or b'"seq"' not in payload:
                bad_put += 1
                first_bad = first_bad or payload[:200]
            hdr, payload = rt(gets[k])
            end = clock()
            if not hdr.startswith(b"NATS/1.0\r\n") or len(payload) != size:
                bad_get += 1
                first_bad = first_bad or hdr[:200]
            total += 2
            if in_window:
                put_lat.append(mid - start)
                get_lat.append(end - mid)
        res = w.result()
        res.update(total=total, bad_puts=bad_put, bad_gets=bad_get)
        res["first_bad"] = first_bad.decode(errors="replace")
        for prefix, lat in (("put_", put_lat), ("get_", get_lat)):
            res.update({prefix + k: v for k, v in latency_stats(lat).items()})
        return res

    def close(self) -> None:
        if self.sock:
            self.sock.close()
