"""MQTT 3.1.1 load-generator roles over raw sockets: publisher and subscriber.

Theory of operation:
- QoS 0 publisher: one PUBLISH encoded once, repeated ``batch`` times, then a PINGREQ; one
  ``sendall`` per batch. A broker handles a connection's packets in order, so a PINGRESP
  means the batch before it was read; at most ``window`` batches ride unanswered.
- QoS 1 publisher: a buffer holding the PUBLISH for every packet id 1..65535 is built once;
  the publisher sends consecutive slices of it (``batch`` packets each) while fewer than
  ``inflight`` are unacknowledged, and counts PUBACKs as they come back.
- QoS 2 publisher: the same with a QoS 2 buffer; a message is done at its PUBCOMP. After
  each send it drains what the server sent back without blocking and answers every PUBREC
  with a PUBREL in one write, so the second half of the handshake never waits for the
  window to fill.
- Subscriber: ``conns`` connections in one process, multiplexed with selectors (one
  connection: a plain blocking ``recv_into`` loop, one syscall per read). Frames are
  counted by ``MqttStream`` (remaining-length framing, with a run-compare fast path for
  identical QoS 0 PUBLISHes); the PUBACKs (QoS 1) or PUBRECs and PUBCOMPs (QoS 2) for a
  chunk go out in one send. With ``clean=False`` and a fixed ``client_id`` the subscriber
  is a persistent session, which a broker must keep (and hybridbus persists) messages for.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import socket
import time
from typing import Any

from .mqttwire import (
    PINGREQ_BYTES,
    MqttStream,
    encode_connect,
    encode_publish,
    encode_subscribe,
    publish_cycle,
)
from .sockets import recv_timeout, set_lowat, tune
from .workers import Window

# recv_into one preallocated buffer: sock.recv(1 MiB) allocates 1 MiB per call.
RECV_SIZE = 1 << 20


def send_disconnect(sock: socket.socket, timeout: float | None = None) -> None:
    """DISCONNECT, so a clean session ends without a will or a warning; a connection that
    is already gone is no error. ``timeout`` bounds the send (as a socket timeout)."""
    with contextlib.suppress(OSError):
        if timeout is not None:
            sock.settimeout(timeout)
        sock.sendall(b"\xe0\x00")


def mqtt_connect(
    host: str,
    port: int,
    client_id: str,
    timeout: float = 10.0,
    clean: bool = True,
    keepalive: int = 120,
) -> tuple[socket.socket, MqttStream]:
    """Connect (clean session unless ``clean`` is False) and wait for an accepting CONNACK."""
    sock = socket.create_connection((host, port), timeout)
    tune(sock)
    stream = MqttStream()
    sock.sendall(encode_connect(client_id, keepalive=keepalive, clean=clean))
    deadline = time.monotonic() + timeout
    while not stream.connacks:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{client_id}: no CONNACK")
        data = sock.recv(65536)
        if not data:
            raise ConnectionError(f"{client_id}: server closed before CONNACK")
        stream.feed(data)
    ca = stream.last_connack
    # CONNACK: 0x20 0x02 flags return-code; 0 = accepted [MQTT-3.2.2-3].
    if len(ca) < 4 or ca[3] != 0:
        raise ConnectionError(f"{client_id}: CONNACK refused: {ca!r}")
    return sock, stream


class MqttPublisher:
    def __init__(
        self,
        host: str,
        port: int,
        topic: str,
        qos: int = 0,
        payload_size: int = 64,
        batch: int = 0,
        window: int = 8,
        inflight: int = 1000,
        client_id: str = "",
    ) -> None:
        self.host = host
        self.port = port
        self.topic = topic
        self.qos = qos
        self.payload = b"x" * payload_size
        # QoS 0: PUBLISHes per PINGREQ; QoS 1 and 2: PUBLISHes per send.
        self.batch = batch or (500 if qos == 0 else 100)
        self.window = window
        self.inflight = inflight
        self.client_id = client_id or f"bench-pub-{os.getpid()}"
        self.sock: socket.socket | None = None
        self.stream: MqttStream | None = None
        self.cycle = b""
        self.size = 0

    def setup(self) -> None:
        if self.qos:
            # Built before "ready": 65535 encodes take ~0.1 s, not to be spent in the run.
            self.cycle, self.size = publish_cycle(self.topic, self.payload, self.qos)
        self.sock, self.stream = mqtt_connect(self.host, self.port, self.client_id)
        # A server that stalls (amqtt with 100,000 subscriptions takes seconds per batch)
        # must not turn into a socket timeout: waits are short and the loop checks t_stop.
        recv_timeout(self.sock, 0.2)

    def run(self, t_go: float, t0: float, t1: float, t_stop: float) -> dict[str, Any]:
        mono = time.monotonic
        while mono() < t_go:
            time.sleep(0.001)
        if self.qos == 0:
            return self._run_qos0(t0, t1, t_stop)
        return self._run_qos12(t0, t1, t_stop)

    def _run_qos0(self, t0: float, t1: float, t_stop: float) -> dict[str, Any]:
        sock, stream = self.sock, self.stream
        assert sock is not None and stream is not None
        frame = encode_publish(self.topic, self.payload)
        chunk = frame * self.batch + PINGREQ_BYTES
        batch = self.batch
        window = self.window
        sent = 0
        pings = 0
        w = Window(t0, t1)
        mono = time.monotonic
        while True:
            now = mono()
            if w.due(now):
                w.snap(now, sent)
            if now >= t_stop:
                break
            if pings - stream.pingresps >= window:
                try:
                    data = sock.recv(65536)
                except BlockingIOError:
                    continue
                if not data:
                    raise ConnectionError("server closed the publisher connection")
                stream.feed(data)
                continue
            sock.sendall(chunk)
            sent += batch
            pings += 1
        w.finish(sent)
        res = w.result()
        res.update(total=sent, frame_bytes=len(frame))
        return res

    def _run_qos12(self, t0: float, t1: float, t_stop: float) -> dict[str, Any]:
        sock, stream = self.sock, self.stream
        assert sock is not None and stream is not None
        qos2 = self.qos == 2
        # The count that frees a slot of the window: PUBACK (QoS 1) or PUBCOMP (QoS 2).
        done_attr = "pubcomps" if qos2 else "pubacks"
        size = self.size
        view = memoryview(self.cycle)
        batch = self.batch
        inflight = self.inflight
        ids = 65535
        nxt = 0  # index (packet id - 1) of the next PUBLISH to send
        sent = 0
        w = Window(t0, t1)
        wa = Window(t0, t1)  # the same window over PUBACKs (PUBCOMPs) received
        mono = time.monotonic
        while True:
            now = mono()
            done = getattr(stream, done_attr)
            if w.due(now):
                w.snap(now, sent)
            if wa.due(now):
                wa.snap(now, done)
            if now >= t_stop:
                break
            if sent - done + batch > inflight:
                flags = 0  # window full: wait for acknowledgements (SO_RCVTIMEO bounds it)
            else:
                end = nxt + batch
                if end <= ids:
                    sock.sendall(view[nxt * size : end * size])
                else:
                    sock.sendall(view[nxt * size :])
                    sock.sendall(view[: (end - ids) * size])
                nxt = end % ids
                sent += batch
                if not qos2:
                    continue
                flags = socket.MSG_DONTWAIT  # QoS 2: drain what came back, without waiting
            try:
                data = sock.recv(65536, flags)
            except BlockingIOError:
                continue
            if not data:
                raise ConnectionError("server closed the publisher connection")
            rels = stream.feed(data)
            if rels:
                sock.sendall(rels)
        done = getattr(stream, done_attr)
        w.finish(sent)
        wa.finish(done)
        res = w.result()
        acked = wa.result()
        res.update(
            total=sent,
            acked=done,
            ack_rate=acked["rate"],
            frame_bytes=size,
        )
        if qos2:
            res.update(pubrecs=stream.pubrecs, pubcomps=stream.pubcomps)
        return res

    def close(self) -> None:
        if self.sock:
            send_disconnect(self.sock)
            self.sock.close()


class MqttSubscriber:
    """``conns`` connections subscribed to ``topic`` at ``qos``, counting PUBLISHes."""

    def __init__(
        self,
        host: str,
        port: int,
        topic: str,
        qos: int = 0,
        conns: int = 1,
        client_prefix: str = "",
        lowat: int = 0,
        clean: bool = True,
        client_id: str = "",
    ) -> None:
        self.lowat = lowat
        self.clean = clean
        # A fixed id (one connection only): a persistent session is found again by its id.
        self.client_id = client_id
        self.host = host
        self.port = port
        self.topic = topic
        self.qos = qos
        self.n = conns
        self.prefix = client_prefix or f"bench-sub-{os.getpid()}"
        self.conns: list[tuple[socket.socket, MqttStream]] = []

    def setup(self) -> None:
        if self.client_id and self.n != 1:
            raise ValueError("a fixed client_id needs conns=1")
        for i in range(self.n):
            cid = self.client_id or f"{self.prefix}-{i}"
            sock, stream = mqtt_connect(self.host, self.port, cid, clean=self.clean)
            sock.sendall(encode_subscribe(1, self.topic, self.qos))
            deadline = time.monotonic() + 10.0
            while not stream.subacks:
                if time.monotonic() > deadline:
                    raise TimeoutError("no SUBACK")
                data = sock.recv(65536)
                if not data:
                    raise ConnectionError("server closed before SUBACK")
                stream.feed(data)
            sa = stream.last_suback
            # SUBACK payload: one return code per filter; 0x80 = failure [MQTT-3.9.3].
            if len(sa) < 5 or sa[4] == 0x80:
                raise ConnectionError(f"SUBSCRIBE {self.topic!r} refused: {sa!r}")
            if sa[4] != self.qos:
                raise ConnectionError(f"SUBACK granted QoS {sa[4]}, asked for {self.qos}")
            set_lowat(sock, self.lowat)
            if self.n == 1:
                recv_timeout(sock, 0.05)
            else:
                sock.setblocking(False)
            self.conns.append((sock, stream))

    def run(self, t_go: float, t0: float, t1: float, t_stop: float) -> dict[str, Any]:
        if self.n == 1:
            return self._run_one(t0, t1)
        sel = selectors.DefaultSelector()
        streams = []
        for sock, stream in self.conns:
            sel.register(sock, selectors.EVENT_READ, stream)
            streams.append(stream)
        w = Window(t0, t1)
        mono = time.monotonic
        recvs = 0
        buf = bytearray(RECV_SIZE)
        view = memoryview(buf)
        while not w.closed:
            now = mono()
            if w.due(now):
                w.snap(now, sum(s.publishes for s in streams))
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
                    raise ConnectionError("server closed a subscriber connection")
                recvs += 1
                acks = key.data.feed(bytes(view[:n]))
                if acks:
                    sock.setblocking(True)
                    sock.sendall(acks)
                    sock.setblocking(False)
        sel.close()
        res = w.result()
        per_conn = [s.publishes for s in streams]
        res.update(
            total=sum(per_conn),
            recvs=recvs,
            conns=self.n,
            min_conn=min(per_conn),
            max_conn=max(per_conn),
        )
        return res

    def _run_one(self, t0: float, t1: float) -> dict[str, Any]:
        # One connection: a blocking recv_into with a kernel timeout is one syscall per
        # read, where selectors would add an epoll_wait to each.
        sock, stream = self.conns[0]
        w = Window(t0, t1)
        mono = time.monotonic
        recvs = 0
        buf = bytearray(RECV_SIZE)
        view = memoryview(buf)
        feed = stream.feed
        while not w.closed:
            now = mono()
            if w.due(now):
                w.snap(now, stream.publishes)
                continue
            try:
                n = sock.recv_into(buf)
            except BlockingIOError:
                continue
            if not n:
                raise ConnectionError("server closed the subscriber connection")
            recvs += 1
            acks = feed(bytes(view[:n]))
            if acks:
                sock.sendall(acks)
        res = w.result()
        res.update(total=stream.publishes, recvs=recvs, conns=1)
        return res

    def close(self) -> None:
        for sock, _ in self.conns:
            send_disconnect(sock, 0.5)
            sock.close()
