"""Sans-IO MQTT decoder: bytes in, packets out, no sockets and no clocks.

Theory of operation
-------------------
`MQTTParser.feed(data)` returns every packet completed by `data`, in order. Framing is
the three steps of 2.2 (fixed header byte, Remaining Length vbi, body) and resumes across
reads at any byte boundary:

- A partial packet is kept as a list of chunks plus the number of bytes it needs before
  anything can happen (`_need`). Chunks are joined only once that many have arrived, so
  a large packet trickling in costs one copy, not one copy per read.
- As soon as the fixed header is complete, the whole packet size (header included, the
  way 5.0 3.1.2.11.4 counts it) is checked against `max_packet_size`, before a single
  body byte is buffered: a claimed 256 MB packet costs five bytes of memory.
- Each complete body is handed to one decoder per packet type, picked from a table
  keyed by the type nibble (mosquitto's read_handle switch, as data). PUBLISH, the hot
  path, is decoded in place from the read buffer and skips the generic property walk
  when its Property Length is 0.

The protocol level changes the body layout (5.0 adds properties and reason codes), so
the parser must know it. Until it does, only CONNECT is accepted [MQTT-3.1.0-1]; the
CONNECT sets the level (or the caller sets `parser.protocol_level`, e.g. on a client
socket). Level 3 is MQTT 3.1 ("MQIsdp"), which predates 3.1.1's reserved-bit rules (3.1
clients set QoS 1 and DUP on SUBSCRIBE, PUBREL and UNSUBSCRIBE): at level 3 the reserved
fixed-header flags, the DUP-on-QoS-0 rule, the reserved CONNECT flag and the upper bits
of the Requested QoS byte are not checked. QoS 3 is refused at every level.

Errors: every failure raises `MQTTProtocolError(reason_code, message)`; the message cites
the normative statement. The parser is then dead: later feeds raise the same error. What
is *not* checked here: topic and filter syntax (wildcards, empty topics, topic aliases),
session state (packet ids in use, QoS limits), packet direction (a server receiving
CONNACK). Those belong to the caller, which has the context.

Abbreviations: b0 = first fixed-header byte, rl = Remaining Length, cf = Connect Flags,
vbi = Variable Byte Integer.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from .errors import MQTTProtocolError, MQTTUnsupportedProtocol
from .packets import (
    AUTH,
    CONNACK,
    CONNECT,
    DISCONNECT,
    PUBACK,
    PUBCOMP,
    PUBLISH,
    PUBREC,
    PUBREL,
    SUBACK,
    SUBSCRIBE,
    UNSUBACK,
    UNSUBSCRIBE,
    Auth,
    Connack,
    Connect,
    Disconnect,
    Packet,
    Pingreq,
    Pingresp,
    Puback,
    Pubcomp,
    Publish,
    PublishRun,
    Pubrec,
    Pubrel,
    Suback,
    Subscribe,
    Subscription,
    Unsuback,
    Unsubscribe,
)
from .properties import WILL, decode_properties
from .reasons import VALID_REASON_CODES
from .wire import Reader, read_varint

__all__ = ["MQTTParser", "PROTOCOLS"]

MALFORMED = 0x81
PROTOCOL_ERROR = 0x82
PACKET_TOO_LARGE = 0x95

# (protocol name, protocol level) pairs we speak: 3.1, 3.1.1, 5.0.
PROTOCOLS: dict[tuple[bytes, int], str] = {
    (b"MQIsdp", 3): "MQIsdp",
    (b"MQTT", 4): "MQTT",
    (b"MQTT", 5): "MQTT",
}

_NAMES = {
    1: "CONNECT",
    2: "CONNACK",
    3: "PUBLISH",
    4: "PUBACK",
    5: "PUBREC",
    6: "PUBREL",
    7: "PUBCOMP",
    8: "SUBSCRIBE",
    9: "SUBACK",
    10: "UNSUBSCRIBE",
    11: "UNSUBACK",
    12: "PINGREQ",
    13: "PINGRESP",
    14: "DISCONNECT",
    15: "AUTH",
}


def _malformed(message: str) -> MQTTProtocolError:
    return MQTTProtocolError(MALFORMED, message)


def _protocol(message: str) -> MQTTProtocolError:
    return MQTTProtocolError(PROTOCOL_ERROR, message)


def _bad_flags(ptype: int, flags: int) -> MQTTProtocolError:
    return _malformed(
        f"reserved fixed header flags 0x{flags:X} in {_NAMES[ptype]}"
        " [MQTT-2.2.2-1] [MQTT-2.2.2-2] [MQTT-2.1.3-1]"
    )


def _zero_packet_id(ptype: int) -> MQTTProtocolError:
    return _protocol(f"Packet Identifier 0 in {_NAMES[ptype]} [MQTT-2.3.1-1] [MQTT-2.2.1-3]")


def _trailing(ptype: int) -> MQTTProtocolError:
    return _malformed(f"{_NAMES[ptype]} longer than its fields (Remaining Length)")


def _check_reason(ptype: int, code: int) -> None:
    if code not in VALID_REASON_CODES[ptype]:
        raise _protocol(f"reason code 0x{code:02X} is not valid in {_NAMES[ptype]}")


def _check_auth_props(props: dict) -> None:
    # 5.0 3.1.2.11.10 / 3.2.2.3.18 / 3.15.2.2.3
    if "authentication_data" in props and "authentication_method" not in props:
        raise _protocol("Authentication Data without Authentication Method")


# --------------------------------------------------------------------------- PUBLISH


# PUBLISH is decoded inline in MQTTParser.feed(); these helpers hold its tables and its
# cold paths (errors, properties) so the loop itself stays short.


def _publish_flag_table(level: int) -> list[tuple[int, bool, bool] | None]:
    """(qos, retain, dup) for each value of the fixed-header flag nibble, None where the
    nibble is malformed: QoS 3 [MQTT-3.3.1-4], or DUP on QoS 0 [MQTT-3.3.1-2] (a 3.1.1
    rule; 3.1 only says DUP is meaningless there)."""
    table: list[tuple[int, bool, bool] | None] = []
    for flags in range(16):
        qos = (flags >> 1) & 3
        dup = flags & 8 == 8
        if qos == 3 or (dup and not qos and level != 3):
            table.append(None)
        else:
            table.append((qos, flags & 1 == 1, dup))
    return table


_PUBLISH_FLAGS = {level: _publish_flag_table(level) for level in (3, 4, 5)}


def _publish_flags_error(b0: int) -> MQTTProtocolError:
    if (b0 >> 1) & 3 == 3:
        return _malformed("PUBLISH with QoS 3 [MQTT-3.3.1-4]")
    return _malformed("DUP set on a QoS 0 PUBLISH [MQTT-3.3.1-2]")


def _publish_run(
    buf: bytes, head: bytes, pos: int, p: int, end: int, topic: str, qos: int, dup: bool, pid: int
) -> tuple[PublishRun, int] | None:
    """The PUBLISH at ``buf[pos:end]`` (payload from ``p``; decoded and checked) and the
    ones after it that repeat its fixed header, Remaining Length and topic (``head``):
    one PublishRun, and where it ends. Only the packet id (QoS 1: never 0) and, 5.0,
    the Property Length (0) are read from each; a packet that differs there ends the run
    and is decoded on its own (which raises what it must). None: a run of one."""
    size = end - pos
    off = p - pos  # the payload's offset in each packet
    after = len(head)  # the packet id (QoS 1), then the property length (5.0)
    props_at = after + 2 if qos else after
    has_props = off > props_at  # 5.0: one Property Length byte before the payload
    n = len(buf)
    startswith = buf.startswith
    payloads = [buf[p:end]]
    ids = [pid] if qos else []
    q = end
    while q + size <= n and startswith(head, q):
        if has_props and buf[q + props_at]:
            break
        if qos:
            packet_id = (buf[q + after] << 8) | buf[q + after + 1]
            if not packet_id:
                break
            ids.append(packet_id)
        payloads.append(buf[q + off : q + size])
        q += size
    if len(payloads) == 1:
        return None
    return PublishRun(topic, qos, dup, payloads, ids), q


def _publish_error(buf: bytes, start: int, end: int, qos: int) -> MQTTProtocolError:
    """Explain why the fast path refused a PUBLISH body at buf[start:end]."""
    if end - start < 2:
        return _malformed("PUBLISH too short for its Topic Name [MQTT-3.3.2-1]")
    p = start + 2 + ((buf[start] << 8) | buf[start + 1])
    if p > end:
        return _malformed("PUBLISH Topic Name runs past the packet [MQTT-3.3.2-1]")
    if 0 in buf[start + 2 : p]:
        return _malformed("Topic Name contains U+0000 [MQTT-1.5.3-2]")
    if qos:
        if p + 2 > end:
            return _malformed("PUBLISH too short for its Packet Identifier")
        if not (buf[p] << 8) | buf[p + 1]:
            return _zero_packet_id(PUBLISH)
    return _malformed("PUBLISH lacks its Property Length (5.0 2.2.2.1)")


def _publish_properties(buf: bytes, p: int, end: int) -> tuple[dict, int]:
    """5.0 PUBLISH properties at buf[p:end] when the Property Length is not 0."""
    r = Reader(buf[p:end])
    props = decode_properties(r, PUBLISH)
    return props, p + r.pos


def _publish(parser: MQTTParser, flags: int, body: bytes) -> Publish:
    raise AssertionError("PUBLISH is decoded inline by MQTTParser.feed()")


# --------------------------------------------------------------------------- CONNECT


def _connect(parser: MQTTParser, flags: int, body: bytes) -> Connect:
    if parser._seen_connect:
        raise _protocol("second CONNECT on one connection [MQTT-3.1.0-2]")
    r = Reader(body)
    name = r.binary()
    level = r.u8()
    if (name, level) not in PROTOCOLS:
        # Reported apart from other errors: the server owes a CONNACK 0x01 (3.1.1) or
        # may send 0x84 (5.0) before closing [MQTT-3.1.2-1] [MQTT-3.1.2-2].
        raise MQTTUnsupportedProtocol(name, level)
    v5 = level == 5
    if level >= 4 and flags:
        raise _bad_flags(CONNECT, flags)
    cf = r.u8()
    if level >= 4 and cf & 0x01:
        raise _malformed("CONNECT reserved flag is set [MQTT-3.1.2-3]")
    will = cf & 0x04
    will_qos = (cf >> 3) & 3
    will_retain = cf & 0x20 == 0x20
    if will:
        if will_qos == 3:
            raise _malformed("Will QoS 3 [MQTT-3.1.2-14] (5.0: [MQTT-3.1.2-12])")
    else:
        if will_qos:
            raise _malformed(
                "Will QoS set without Will Flag [MQTT-3.1.2-13] (5.0: [MQTT-3.1.2-11])"
            )
        if will_retain:
            raise _malformed(
                "Will Retain set without Will Flag [MQTT-3.1.2-15] (5.0: [MQTT-3.1.2-13])"
            )
    if not v5 and cf & 0x40 and not cf & 0x80:
        # 5.0 dropped this rule (3.1.2.9 non-normative comment).
        raise _malformed("Password Flag set without User Name Flag [MQTT-3.1.2-22]")
    keep_alive = r.u16()
    props = decode_properties(r, CONNECT) if v5 else {}
    if v5:
        _check_auth_props(props)
    client_id = r.utf8()  # [MQTT-3.1.3-4]
    will_topic = None
    will_payload = b""
    will_props: dict = {}
    if will:
        if v5:
            will_props = decode_properties(r, WILL)
        will_topic = r.utf8()  # [MQTT-3.1.3-10]
        will_payload = r.binary()
    username = r.utf8() if cf & 0x80 else None  # [MQTT-3.1.3-11]
    password = r.binary() if cf & 0x40 else None
    if not r.at_end():
        raise _trailing(CONNECT)
    parser._seen_connect = True
    parser.protocol_level = level
    return Connect(
        client_id,
        keep_alive,
        cf & 0x02 == 0x02,
        username,
        password,
        will_topic,
        will_payload,
        will_qos,
        will_retain,
        will_props,
        props,
        level,
        PROTOCOLS[name, level],
    )


def _connack(parser: MQTTParser, flags: int, body: bytes) -> Connack:
    level = parser._level
    if level >= 4 and flags:
        raise _bad_flags(CONNACK, flags)
    r = Reader(body)
    ack = r.u8()
    if level >= 4 and ack & 0xFE:
        raise _malformed("CONNACK Acknowledge Flags bits 7-1 are reserved [MQTT-3.2.2-1]")
    code = r.u8()
    if level == 5:
        _check_reason(CONNACK, code)
        props = decode_properties(r, CONNACK)
        _check_auth_props(props)
    else:
        props = {}
        if code > 5:
            raise _protocol(f"reserved CONNACK return code {code} (3.1.1 Table 3.1)")
    if not r.at_end():
        raise _trailing(CONNACK)
    # 3.1 has no Session Present flag: its first byte is unused.
    return Connack(level >= 4 and ack & 1 == 1, code, props)


# ------------------------------------------------------- PUBACK PUBREC PUBREL PUBCOMP


def _make_ack(ptype: int, cls: type, want_flags: int) -> Callable:
    def decode_ack(parser: MQTTParser, flags: int, body: bytes) -> Packet:
        level = parser._level
        if flags != want_flags and level >= 4:
            raise _bad_flags(ptype, flags)
        n = len(body)
        if n < 2:
            raise _malformed(f"{_NAMES[ptype]} too short for its Packet Identifier")
        packet_id = (body[0] << 8) | body[1]
        if not packet_id:
            raise _zero_packet_id(ptype)
        if level != 5:
            if n != 2:
                raise _trailing(ptype)
            return cls(packet_id, 0, {})
        # 5.0: Reason Code and Property Length may be left off (3.4.2.1, 3.4.2.2.1).
        if n == 2:
            return cls(packet_id, 0, {})
        code = body[2]
        _check_reason(ptype, code)
        if n == 3:
            return cls(packet_id, code, {})
        r = Reader(body, 3)
        props = decode_properties(r, ptype)
        if not r.at_end():
            raise _trailing(ptype)
        return cls(packet_id, code, props)

    return decode_ack


# --------------------------------------------------------------- SUBSCRIBE / SUBACK


# A topic filter is at least one character long [MQTT-4.7.3-1]; an empty one makes
# the packet malformed (5.0 section 4.13: the connection is closed, DISCONNECT 0x81).
_EMPTY_FILTER = "zero-length Topic Filter [MQTT-4.7.3-1]"


def _subscribe(parser: MQTTParser, flags: int, body: bytes) -> Subscribe:
    level = parser._level
    if flags != 2 and level >= 4:
        raise _bad_flags(SUBSCRIBE, flags)  # [MQTT-3.8.1-1]
    r = Reader(body)
    packet_id = r.u16()
    if not packet_id:
        raise _zero_packet_id(SUBSCRIBE)
    props = decode_properties(r, SUBSCRIBE) if level == 5 else {}
    subs = []
    while not r.at_end():
        topic_filter = r.utf8()  # [MQTT-3.8.3-1]
        if not topic_filter:
            raise _malformed(_EMPTY_FILTER)
        opts = r.u8()
        qos = opts & 3
        if level == 5:
            if opts & 0xC0:
                raise _malformed("Subscription Options reserved bits set [MQTT-3.8.3-5]")
            if qos == 3:
                raise _protocol("Subscription Options Maximum QoS 3 (3.8.3.1)")
            retain_handling = (opts >> 4) & 3
            if retain_handling == 3:
                raise _protocol("Subscription Options Retain Handling 3 (3.8.3.1)")
            subs.append(
                Subscription(
                    topic_filter, qos, opts & 0x04 == 0x04, opts & 0x08 == 0x08, retain_handling
                )
            )
        else:
            if qos == 3 or (level == 4 and opts & 0xFC):
                raise _malformed(f"Requested QoS byte 0x{opts:02X} is not 0, 1 or 2 [MQTT-3-8.3-4]")
            subs.append(Subscription(topic_filter, qos))
    if not subs:
        raise _protocol("SUBSCRIBE without a Topic Filter [MQTT-3.8.3-3] (5.0: [MQTT-3.8.3-2])")
    return Subscribe(packet_id, subs, props)


def _suback(parser: MQTTParser, flags: int, body: bytes) -> Suback:
    level = parser._level
    if flags and level >= 4:
        raise _bad_flags(SUBACK, flags)
    r = Reader(body)
    packet_id = r.u16()
    if not packet_id:
        raise _zero_packet_id(SUBACK)
    props = decode_properties(r, SUBACK) if level == 5 else {}
    codes = list(r.rest())
    if not codes:
        raise _protocol("SUBACK without a reason code (3.9.3)")
    if level == 5:
        for code in codes:
            _check_reason(SUBACK, code)
    else:
        for code in codes:
            if code > 2 and code != 0x80:
                raise _malformed(f"SUBACK return code 0x{code:02X} is reserved [MQTT-3.9.3-2]")
    return Suback(packet_id, codes, props)


# ----------------------------------------------------------- UNSUBSCRIBE / UNSUBACK


def _unsubscribe(parser: MQTTParser, flags: int, body: bytes) -> Unsubscribe:
    level = parser._level
    if flags != 2 and level >= 4:
        raise _bad_flags(UNSUBSCRIBE, flags)  # [MQTT-3.10.1-1]
    r = Reader(body)
    packet_id = r.u16()
    if not packet_id:
        raise _zero_packet_id(UNSUBSCRIBE)
    props = decode_properties(r, UNSUBSCRIBE) if level == 5 else {}
    filters = []
    while not r.at_end():
        topic_filter = r.utf8()  # [MQTT-3.10.3-1]
        if not topic_filter:
            raise _malformed(_EMPTY_FILTER)
        filters.append(topic_filter)
    if not filters:
        raise _protocol("UNSUBSCRIBE without a Topic Filter [MQTT-3.10.3-2]")
    return Unsubscribe(packet_id, filters, props)


def _unsuback(parser: MQTTParser, flags: int, body: bytes) -> Unsuback:
    level = parser._level
    if flags and level >= 4:
        raise _bad_flags(UNSUBACK, flags)
    r = Reader(body)
    packet_id = r.u16()
    if not packet_id:
        raise _zero_packet_id(UNSUBACK)
    if level != 5:
        if not r.at_end():
            raise _trailing(UNSUBACK)
        return Unsuback(packet_id, [], {})
    props = decode_properties(r, UNSUBACK)
    codes = list(r.rest())
    if not codes:
        raise _protocol("UNSUBACK without a reason code (3.11.3)")
    for code in codes:
        _check_reason(UNSUBACK, code)
    return Unsuback(packet_id, codes, props)


# ------------------------------------------------------ PINGREQ PINGRESP DISCONNECT AUTH


def _make_empty(ptype: int, cls: type) -> Callable:
    def decode_empty(parser: MQTTParser, flags: int, body: bytes) -> Packet:
        if flags and parser._level >= 4:
            raise _bad_flags(ptype, flags)
        if body:
            raise _trailing(ptype)
        return cls()

    return decode_empty


_pingreq = _make_empty(12, Pingreq)
_pingresp = _make_empty(13, Pingresp)


def _disconnect(parser: MQTTParser, flags: int, body: bytes) -> Disconnect:
    level = parser._level
    if flags and level >= 4:
        raise _bad_flags(DISCONNECT, flags)  # [MQTT-3.14.1-1]
    n = len(body)
    if level != 5:
        if n:
            raise _trailing(DISCONNECT)
        return Disconnect()
    # 5.0 3.14.2.1: no Reason Code means 0x00; fewer than 2 bytes means no properties.
    if n == 0:
        return Disconnect(0, {})
    code = body[0]
    _check_reason(DISCONNECT, code)
    if n == 1:
        return Disconnect(code, {})
    r = Reader(body, 1)
    props = decode_properties(r, DISCONNECT)
    if not r.at_end():
        raise _trailing(DISCONNECT)
    return Disconnect(code, props)


def _auth(parser: MQTTParser, flags: int, body: bytes) -> Auth:
    if parser._level != 5:
        raise _malformed("packet type 15 is reserved before MQTT 5.0 (3.1.1 2.2.1)")
    if flags:
        raise _bad_flags(AUTH, flags)  # [MQTT-3.15.1-1]
    if not body:
        # 3.15.2.1: Remaining Length 0 means Success with no properties.
        return Auth(0, {})
    r = Reader(body)
    code = r.u8()
    _check_reason(AUTH, code)
    props = decode_properties(r, AUTH)
    _check_auth_props(props)
    if not r.at_end():
        raise _trailing(AUTH)
    return Auth(code, props)


def _reserved(parser: MQTTParser, flags: int, body: bytes) -> Packet:
    raise _malformed("packet type 0 is reserved (2.1.2)")


def _before_connect(parser: MQTTParser, flags: int, body: bytes) -> Packet:
    raise _protocol("the first packet must be CONNECT [MQTT-3.1.0-1]")


_TABLE: list[Callable[[MQTTParser, int, bytes], Packet]] = [
    _reserved,
    _connect,
    _connack,
    _publish,
    _make_ack(PUBACK, Puback, 0),
    _make_ack(PUBREC, Pubrec, 0),
    _make_ack(PUBREL, Pubrel, 2),  # [MQTT-3.6.1-1]
    _make_ack(PUBCOMP, Pubcomp, 0),
    _subscribe,
    _suback,
    _unsubscribe,
    _unsuback,
    _pingreq,
    _pingresp,
    _disconnect,
    _auth,
]
_TABLE_BEFORE_CONNECT = [_before_connect] * 16
_TABLE_BEFORE_CONNECT[CONNECT] = _connect

_TRUNCATED = "a field runs past the end of the packet (Remaining Length)"


class MQTTParser:
    """Incremental MQTT decoder for one connection (either side).

    `max_packet_size` (0 = no limit) bounds the whole packet in bytes, fixed header
    included. `protocol_level` is 3, 4 or 5 once known; None until CONNECT arrives."""

    __slots__ = (
        "max_packet_size",
        "_level",
        "_table",
        "_pending",
        "_pending_len",
        "_need",
        "_seen_connect",
        "_error",
        "runs",
    )

    def __init__(
        self, max_packet_size: int = 0, protocol_level: int | None = None, runs: bool = False
    ):
        self.max_packet_size = max_packet_size
        # Consecutive like PUBLISHes (QoS 0/1, not retained, no properties, same header
        # and topic bytes) come out as one PublishRun (packets.py): the server's mode.
        self.runs = runs
        self._pending: list[bytes] = []
        self._pending_len = 0
        self._need = 0
        self._seen_connect = False
        self._error: MQTTProtocolError | None = None
        self._level: int | None = None
        self._table = _TABLE_BEFORE_CONNECT
        self.protocol_level = protocol_level

    @property
    def protocol_level(self) -> int | None:
        return self._level

    @protocol_level.setter
    def protocol_level(self, level: int | None) -> None:
        if level is None:
            self._table = _TABLE_BEFORE_CONNECT
        elif level in (3, 4, 5):
            self._table = _TABLE
        else:
            raise ValueError(f"protocol level must be 3, 4 or 5, not {level!r}")
        self._level = level

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a complete packet."""
        return self._pending_len

    def feed(self, data: bytes) -> list[Packet]:
        """Consume `data`; return the packets it completes (possibly none)."""
        # hot path: one call per read decodes every packet in it; kept whole so the
        # common packets (PUBLISH, PUBACK) cost no extra call each (bench/bench_mqtt_server.py).
        if self._error is not None:
            raise self._error
        if self._pending:
            self._pending.append(data)
            self._pending_len += len(data)
            if self._pending_len < self._need:
                return []
            buf = b"".join(self._pending)
            self._pending = []
            self._pending_len = 0
        elif not data:
            return []
        else:
            buf = data if type(data) is bytes else bytes(data)
        out: list[Packet] = []
        pos = 0
        n = len(buf)
        limit = self.max_packet_size
        table = self._table
        level = self._level
        pub_flags = _PUBLISH_FLAGS.get(level)
        runs = self.runs
        try:
            while n - pos >= 2:
                b0 = buf[pos]
                rl = buf[pos + 1]
                if rl < 0x80:
                    start = pos + 2
                else:
                    got = read_varint(buf, pos + 1, n)
                    if got is None:
                        need = n - pos + 1
                        break
                    rl, start = got
                end = start + rl
                if limit and end - pos > limit:
                    raise MQTTProtocolError(
                        PACKET_TOO_LARGE,
                        f"packet of {end - pos} bytes exceeds the maximum of {limit}"
                        " (5.0 3.2.2.3.6 Maximum Packet Size; checked from the fixed header)",
                    )
                if end > n:
                    need = end - pos
                    break
                if b0 >> 4 == PUBLISH and level:
                    # The hot path, inline. Reads of buf[start], buf[start + 1] and of
                    # the packet id may land past `end` (in the next packet) when the
                    # packet is too short; the `> end` checks after them catch that.
                    flags = pub_flags[b0 & 0x0F]
                    if flags is None:
                        raise _publish_flags_error(b0)
                    qos, retain, dup = flags
                    p = start + 2 + ((buf[start] << 8) | buf[start + 1])
                    if p > end:
                        raise _publish_error(buf, start, end, qos)
                    raw = buf[start + 2 : p]
                    topic = raw.decode()  # UnicodeDecodeError: see the except below
                    # `0 in bytes` is memchr; `b"\x00" in bytes` is ten times slower.
                    if 0 in raw:
                        raise _publish_error(buf, start, end, qos)
                    if qos:
                        packet_id = (buf[p] << 8) | buf[p + 1]
                        p += 2
                        if not packet_id or p > end:
                            raise _publish_error(buf, start, end, qos)
                    else:
                        packet_id = 0
                    if level == 5:
                        if p >= end:
                            raise _publish_error(buf, start, end, qos)
                        if buf[p]:
                            props, p = _publish_properties(buf, p, end)
                        else:
                            props = {}
                            p += 1
                    else:
                        props = {}
                    if runs and qos < 2 and not retain and not props:
                        head = buf[pos : start + 2 + len(raw)]
                        if buf.startswith(head, end):
                            got = _publish_run(buf, head, pos, p, end, topic, qos, dup, packet_id)
                            if got is not None:
                                out.append(got[0])
                                pos = got[1]
                                continue
                    out.append(Publish(topic, buf[p:end], qos, retain, dup, packet_id, props))
                elif b0 == 0x40 and rl == 2 and level:
                    # A plain PUBACK (flags 0, just the packet id; any level), inline:
                    # a QoS 1 subscriber sends one per message.
                    packet_id = (buf[start] << 8) | buf[start + 1]
                    if not packet_id:
                        raise _zero_packet_id(PUBACK)
                    out.append(Puback(packet_id, 0, {}))
                else:
                    out.append(table[b0 >> 4](self, b0 & 0x0F, buf[start:end]))
                    if b0 >> 4 == CONNECT:
                        table = self._table
                        level = self._level
                        pub_flags = _PUBLISH_FLAGS[level]
                pos = end
            else:
                need = 2
        except MQTTProtocolError as exc:
            raise self._fail(exc, out) from None
        except (IndexError, struct.error):
            if level and buf[pos] >> 4 == PUBLISH:
                # The inline path read past the buffer: name the field that is short.
                exc = _publish_error(buf, start, end, (buf[pos] >> 1) & 3)
            else:
                exc = _malformed(_TRUNCATED)
            raise self._fail(exc, out) from None
        except UnicodeDecodeError:
            # Only the inline PUBLISH path decodes without decode_utf8().
            msg = "ill-formed UTF-8 Topic Name [MQTT-1.5.3-1] [MQTT-3.3.2-1]"
            raise self._fail(_malformed(msg), out) from None
        if pos < n:
            self._pending = [buf[pos:] if pos else buf]
            self._pending_len = n - pos
            self._need = need
        return out

    def _fail(self, exc: MQTTProtocolError, out: list[Packet]) -> MQTTProtocolError:
        exc.packets = out
        self._error = exc
        self._pending = []
        self._pending_len = 0
        return exc
