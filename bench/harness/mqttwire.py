"""Hand-encoded MQTT 3.1.1 packets and an incremental frame counter for the load generators.

Theory of operation: the generators never build a packet per message. A publisher encodes
one PUBLISH once and sends it repeated (QoS 0) or sends slices of a buffer that holds one
PUBLISH per packet id (QoS 1). A receiver feeds whatever ``recv`` returned into
``MqttStream.feed``, which walks fixed headers (type nibble, remaining-length varint
[MQTT-2.2.3]) and keeps any partial frame for the next call.

The fast path: a QoS 0 stream from a broker is the same PUBLISH over and over (same topic,
same payload), so after decoding one QoS 0 PUBLISH the parser remembers its bytes as a
template and, at each later packet start, compares a whole run of templates with one C-level
slice compare instead of looping in Python. Anything that is not the template (a PINGRESP, a
different topic, a QoS 1 PUBLISH) falls back to the generic per-frame path, so the count is
exact either way.
"""

from __future__ import annotations

import struct

# Packet type nibbles [MQTT-2.2.1].
CONNECT = 1
CONNACK = 2
PUBLISH = 3
PUBACK = 4
PUBREC = 5
PUBREL = 6
PUBCOMP = 7
SUBSCRIBE = 8
SUBACK = 9
PINGREQ_BYTES = b"\xc0\x00"
PINGRESP = 13
PINGRESP_BYTES = b"\xd0\x00"

# The template run compare looks at most this many bytes at once, so the repeated
# template buffer stays small.
_RUN_BYTES = 1 << 20


def encode_varint(n: int) -> bytes:
    """Remaining length [MQTT-2.2.3]: 7 bits per byte, high bit = more bytes follow."""
    out = bytearray()
    while True:
        digit = n & 0x7F
        n >>= 7
        if n:
            out.append(digit | 0x80)
        else:
            out.append(digit)
            return bytes(out)


def encode_str(s: str | bytes) -> bytes:
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("!H", len(b)) + b


def encode_connect(client_id: str, keepalive: int = 60, clean: bool = True) -> bytes:
    # Variable header: protocol name "MQTT", level 4 = 3.1.1 [MQTT-3.1.2-2], flags, keepalive.
    flags = 0x02 if clean else 0x00
    body = encode_str("MQTT") + bytes((4, flags)) + struct.pack("!H", keepalive)
    body += encode_str(client_id)
    return b"\x10" + encode_varint(len(body)) + body


def encode_subscribe(packet_id: int, topic_filter: str, qos: int) -> bytes:
    return encode_subscribe_many(packet_id, [topic_filter], qos)


def encode_subscribe_many(packet_id: int, topic_filters: list[str], qos: int) -> bytes:
    """One SUBSCRIBE carrying several filters; the SUBACK has one return code each [MQTT-3.9.3-1]."""
    # Fixed header flags must be 0b0010 [MQTT-3.8.1-1].
    body = struct.pack("!H", packet_id)
    body += b"".join(encode_str(f) + bytes((qos,)) for f in topic_filters)
    return b"\x82" + encode_varint(len(body)) + body


def encode_publish(
    topic: str, payload: bytes, qos: int = 0, packet_id: int = 0, retain: bool = False
) -> bytes:
    body = encode_str(topic)
    if qos:
        # The packet id is present only for QoS 1 and 2 [MQTT-2.3.1-5].
        body += struct.pack("!H", packet_id)
    body += payload
    return bytes((0x30 | (qos << 1) | int(retain),)) + encode_varint(len(body)) + body


def encode_puback(packet_id: int) -> bytes:
    return b"\x40\x02" + struct.pack("!H", packet_id)


def publish_qos1_cycle(topic: str, payload: bytes) -> tuple[bytes, int]:
    return publish_cycle(topic, payload, 1)


def publish_cycle(topic: str, payload: bytes, qos: int) -> tuple[bytes, int]:
    """All QoS 1 or 2 PUBLISHes for packet ids 1..65535 back to back, and the size of one.

    Every packet has the same length (same topic and payload; the id is always 2 bytes),
    so the packets for ids a..b-1 are the slice ``[(a-1)*size : (b-1)*size]``.
    """
    first = encode_publish(topic, payload, qos, 1)
    size = len(first)
    parts = [encode_publish(topic, payload, qos, pid) for pid in range(1, 65536)]
    return b"".join(parts), size


def retained_topic(i: int) -> str:
    """Topic of the i-th retained message: fixed width, so every PUBLISH has one length."""
    return f"bench/r/{i:06d}"


def publish_retained_run(count: int, payload: bytes) -> tuple[bytes, int]:
    """``count`` retained QoS 1 PUBLISHes on distinct topics, packet id (i % 65535) + 1.

    All the same length, so a window of them is one slice. An id comes round again only
    65535 packets later, long after it was acknowledged (the publisher keeps at most a
    few thousand in flight) [MQTT-2.3.1-4].
    """
    parts = [
        encode_publish(retained_topic(i), payload, 1, i % 65535 + 1, retain=True)
        for i in range(count)
    ]
    return b"".join(parts), len(parts[0]) if parts else 0


class MqttStream:
    """Incremental counter of received MQTT frames on one connection.

    ``feed(data)`` returns the acknowledgements to send for what it completed (empty when
    ``auto_ack`` is off or there are none): PUBACK for a QoS 1 PUBLISH, PUBREC for a QoS 2
    PUBLISH, PUBREL for a PUBREC, PUBCOMP for a PUBREL. Counters are plain attributes.
    """

    __slots__ = (
        "buf",
        "publishes",
        "pubacks",
        "pubrecs",
        "pubrels",
        "pubcomps",
        "pingresps",
        "connacks",
        "subacks",
        "suback_codes",
        "suback_failures",
        "other",
        "auto_ack",
        "last_suback",
        "last_connack",
        "_tmpl",
        "_tmpl_len",
        "_tmpl_run",
        "_tmpl_max",
    )

    def __init__(self, auto_ack: bool = True) -> None:
        self.buf = b""
        self.publishes = 0
        self.pubacks = 0
        self.pubrecs = 0
        self.pubrels = 0
        self.pubcomps = 0
        self.pingresps = 0
        self.connacks = 0
        self.subacks = 0
        self.suback_codes = 0
        self.suback_failures = 0
        self.other = 0
        self.auto_ack = auto_ack
        self.last_suback = b""
        self.last_connack = b""
        self._tmpl = b""
        self._tmpl_len = 0
        self._tmpl_run = b""
        self._tmpl_max = 0

    def _learn(self, frame: bytes) -> None:
        self._tmpl = frame
        self._tmpl_len = len(frame)
        self._tmpl_max = max(1, _RUN_BYTES // len(frame))
        self._tmpl_run = frame * self._tmpl_max

    def feed(self, data: bytes) -> bytes:
        buf = self.buf + data if self.buf else data
        n = len(buf)
        pos = 0
        acks: list[bytes] = []
        tmpl = self._tmpl
        tl = self._tmpl_len
        while pos < n:
            if tl and buf.startswith(tmpl, pos):
                # Largest k such that the next k frames all equal the template: one slice
                # compare when the whole run matches, else a binary search (prefix
                # matching is monotone in k).
                k = min((n - pos) // tl, self._tmpl_max)
                run = self._tmpl_run
                if buf[pos : pos + k * tl] != run[: k * tl]:
                    lo, hi = 1, k  # lo frames known to match, hi known to fail
                    while hi - lo > 1:
                        mid = (lo + hi) // 2
                        if buf[pos : pos + mid * tl] == run[: mid * tl]:
                            lo = mid
                        else:
                            hi = mid
                    k = lo
                self.publishes += k
                pos += k * tl
                continue
            b0 = buf[pos]
            # Remaining length: at most 4 bytes [MQTT-2.2.3].
            i = pos + 1
            mult = 1
            rl = 0
            while True:
                if i >= n:
                    self.buf = buf[pos:]
                    return b"".join(acks)
                d = buf[i]
                i += 1
                rl += (d & 0x7F) * mult
                if d < 0x80:
                    break
                mult <<= 7
                if mult > 0x200000:
                    raise ValueError("malformed remaining length")
            end = i + rl
            if end > n:
                break
            ptype = b0 >> 4
            if ptype == PUBLISH:
                self.publishes += 1
                if b0 & 0x06:
                    if self.auto_ack:
                        tlen = (buf[i] << 8) | buf[i + 1]
                        j = i + 2 + tlen
                        # QoS 1: PUBACK; QoS 2: PUBREC, then PUBCOMP for the PUBREL
                        # [MQTT-4.3.3-2].
                        acks.append((b"\x50\x02" if b0 & 0x04 else b"\x40\x02") + buf[j : j + 2])
                else:
                    # A QoS 0 PUBLISH that is not the template: it becomes the template.
                    self._learn(buf[pos:end])
                    tmpl = self._tmpl
                    tl = self._tmpl_len
            elif ptype == PUBACK:
                self.pubacks += 1
            elif ptype == PUBREC:
                # Sender side of QoS 2: answer with PUBREL, whose flags must be 0b0010
                # [MQTT-3.6.1-1].
                self.pubrecs += 1
                if self.auto_ack:
                    acks.append(b"\x62\x02" + buf[i : i + 2])
            elif ptype == PUBREL:
                self.pubrels += 1
                if self.auto_ack:
                    acks.append(b"\x70\x02" + buf[i : i + 2])
            elif ptype == PUBCOMP:
                self.pubcomps += 1
            elif ptype == PINGRESP:
                self.pingresps += 1
            elif ptype == CONNACK:
                self.connacks += 1
                self.last_connack = buf[pos:end]
            elif ptype == SUBACK:
                self.subacks += 1
                self.last_suback = buf[pos:end]
                # One return code per filter after the packet id; 0x80 = failure
                # [MQTT-3.9.3-2].
                codes = buf[i + 2 : end]
                self.suback_codes += len(codes)
                self.suback_failures += codes.count(0x80)
            else:
                self.other += 1
            pos = end
        self.buf = buf[pos:]
        return b"".join(acks)


class FixedPublishCounter:
    """Counts PUBLISHes that all have one length and one header, fed in arbitrary chunks.

    The retained replay receives 100,000 PUBLISHes on distinct topics, so ``MqttStream``'s
    identical-frame fast path does not apply and a Python loop per frame would cost the
    receiver about as much as the server's work. All the frames have the same length
    ``size`` (fixed-width topics) and start with the same ``head`` bytes (fixed header,
    topic length, topic prefix), so for a run of k whole frames the receiver checks each
    head byte at every frame start with one strided slice compare (``buf[j::size]``) and
    counts k at once. Anything else (the SUBACK, a frame of another size) is parsed one
    frame at a time, so the count stays exact.
    """

    __slots__ = ("head", "size", "buf", "publishes", "subacks", "other", "last_suback")

    def __init__(self, head: bytes, size: int) -> None:
        assert 0 < len(head) <= size
        self.head = head
        self.size = size
        self.buf = b""
        self.publishes = 0
        self.subacks = 0
        self.other = 0
        self.last_suback = b""

    def _run(self, buf: bytes, pos: int, k: int) -> bool:
        size = self.size
        stop = pos + k * size
        for j, byte in enumerate(self.head):
            if buf[pos + j : stop : size] != bytes((byte,)) * k:
                return False
        return True

    def feed(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        n = len(buf)
        pos = 0
        size = self.size
        head = self.head
        while pos < n:
            if buf.startswith(head, pos):
                k = (n - pos) // size
                if k and not self._run(buf, pos, k):
                    # A foreign frame inside the run: binary search the matching prefix.
                    lo, hi = 0, k
                    while hi - lo > 1:
                        mid = (lo + hi) // 2
                        if self._run(buf, pos, mid):
                            lo = mid
                        else:
                            hi = mid
                    k = lo
                if k:
                    self.publishes += k
                    pos += k * size
                    continue
            # Generic frame: fixed header, remaining length [MQTT-2.2.3].
            i = pos + 1
            mult = 1
            rl = 0
            while True:
                if i >= n:
                    self.buf = buf[pos:]
                    return
                d = buf[i]
                i += 1
                rl += (d & 0x7F) * mult
                if d < 0x80:
                    break
                mult <<= 7
                if mult > 0x200000:
                    raise ValueError("malformed remaining length")
            end = i + rl
            if end > n:
                break
            ptype = buf[pos] >> 4
            if ptype == PUBLISH:
                self.publishes += 1
            elif ptype == SUBACK:
                self.subacks += 1
                self.last_suback = buf[pos:end]
            else:
                self.other += 1
            pos = end
        self.buf = buf[pos:]


def publish_head(topic: str, payload_len: int, qos: int = 0, packet_id: int = 0) -> bytes:
    """Everything of a PUBLISH before its payload (fixed header, topic, packet id): a big
    payload is then sent from one buffer after it (``sendmsg([head, payload])``)."""
    body = encode_str(topic)
    if qos:
        body += struct.pack("!H", packet_id)
    return bytes((0x30 | (qos << 1),)) + encode_varint(len(body) + payload_len) + body


class BigFrameStream:
    """Counts MQTT frames of any size without keeping their payloads.

    ``MqttStream`` joins what it has buffered with each new chunk, which for a 1 MB
    PUBLISH arriving in 64 KiB reads copies ~8 MB per message. This parser buffers only
    a frame's head (fixed header, and for a PUBLISH the topic and packet id) and then
    skips the rest of the frame by count, so a 1 MB payload costs no copy at all.
    ``feed`` returns the acknowledgements for the frames it completed: PUBACK for a QoS 1
    PUBLISH, PUBREC for QoS 2 [MQTT-4.3.2-2, MQTT-4.3.3-2], sent once the whole frame
    is in.
    """

    __slots__ = ("head", "skip", "pending", "publishes", "pubacks", "pingresps", "other")

    HEAD_STEP = 1024  # bytes moved into the head buffer at a time

    def __init__(self) -> None:
        self.head = b""
        self.skip = 0  # bytes of the current frame still to pass over
        self.pending = b""  # the ack due when the current frame is complete
        self.publishes = 0
        self.pubacks = 0
        self.pingresps = 0
        self.other = 0

    @staticmethod
    def _parse(h: bytes) -> tuple[int, int, bytes] | None:
        """(frame length, packet type, ack) of the frame at the start of ``h``, or None
        while ``h`` is too short to tell."""
        n = len(h)
        i, mult, rl = 1, 1, 0
        while True:
            if i >= n:
                return None
            d = h[i]
            i += 1
            rl += (d & 0x7F) * mult
            if d < 0x80:
                break
            mult <<= 7
            if mult > 0x200000:
                raise ValueError("malformed remaining length")
        b0 = h[0]
        ptype = b0 >> 4
        ack = b""
        if ptype == PUBLISH and b0 & 0x06:
            if i + 2 > n:
                return None
            j = i + 2 + ((h[i] << 8) | h[i + 1])
            if j + 2 > n:
                return None
            ack = (b"\x50\x02" if b0 & 0x04 else b"\x40\x02") + h[j : j + 2]
        return i + rl, ptype, ack

    def _complete(self, ptype: int) -> None:
        if ptype == PUBLISH:
            self.publishes += 1
        elif ptype == PUBACK:
            self.pubacks += 1
        elif ptype == PINGRESP:
            self.pingresps += 1
        else:
            self.other += 1

    def feed(self, data: bytes | bytearray | memoryview) -> bytes:
        acks: list[bytes] = []
        pos, n = 0, len(data)
        while True:
            if self.skip:
                take = min(self.skip, n - pos)
                self.skip -= take
                pos += take
                if self.skip:
                    break
                if self.pending:
                    acks.append(self.pending)
                    self.pending = b""
                self._complete(PUBLISH)
                continue
            parsed = self._parse(self.head) if self.head else None
            if parsed is None:
                if pos >= n:
                    break
                take = min(n - pos, self.HEAD_STEP)
                self.head += bytes(data[pos : pos + take])
                pos += take
                continue
            size, ptype, ack = parsed
            if len(self.head) >= size:
                self.head = self.head[size:]
                if ack:
                    acks.append(ack)
                self._complete(ptype)
            elif ptype == PUBLISH:
                self.skip = size - len(self.head)
                self.head = b""
                self.pending = ack
            else:
                # Only a PUBLISH can be large; any other frame is read whole.
                if pos >= n:
                    break
                take = min(n - pos, size - len(self.head))
                self.head += bytes(data[pos : pos + take])
                pos += take
        return b"".join(acks)
