"""MQTT encoder: one `encode_<packet>` function per packet type, plus `encode(packet,
level)` for packet objects.

The functions take plain arguments so the server never has to build a packet object
just to send it. PUBLISH, the hot path, takes pre-encoded pieces (`topic_bytes`,
`properties_bytes` from `encode_properties`) and only concatenates: a broker fanning one
message out encodes the topic and properties once and, for receivers of the same shape
(level, QoS, flags, packet id), reuses the whole packet.

Below level 5 the encoder drops what the older layout cannot carry (properties, ack
reason codes) and maps CONNACK/SUBACK failures to 3.1.1 return codes (reasons.py). It
raises ValueError for what no level can express (Will QoS without a will, an empty
SUBSCRIBE, AUTH before 5.0, a field over 65535 bytes, ...), so what it produces always
decodes. Hot-path functions trust their caller instead (qos in 0..2, a non-zero
packet_id for QoS > 0): those come from the server, not from the network.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Sequence
from typing import Any

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
    Pubrec,
    Pubrel,
    Suback,
    Subscribe,
    Subscription,
    Unsuback,
    Unsubscribe,
)
from .properties import WILL, encode_properties
from .reasons import connack_return_code, suback_return_code
from .wire import encode_binary, encode_string, encode_varint, pack_u16

__all__ = [
    "PINGREQ_BYTES",
    "PINGRESP_BYTES",
    "encode",
    "encode_auth",
    "encode_connack",
    "encode_connect",
    "encode_disconnect",
    "encode_pingreq",
    "encode_pingresp",
    "encode_puback",
    "encode_pubcomp",
    "encode_publish",
    "encode_publish_packet",
    "encode_pubrec",
    "encode_pubrel",
    "encode_suback",
    "encode_subscribe",
    "encode_unsuback",
    "encode_unsubscribe",
]

PINGREQ_BYTES = b"\xc0\x00"
_pack_publish_head = struct.Struct(">BBH").pack  # type byte, 1-byte Remaining Length, topic length
PINGRESP_BYTES = b"\xd0\x00"


def _frame(b0: int, body: bytes) -> bytes:
    n = len(body)
    if n < 128:
        return bytes((b0, n)) + body
    return bytes((b0,)) + encode_varint(n) + body


# --------------------------------------------------------------------------- PUBLISH


def encode_publish(
    topic_bytes: bytes,
    payload: bytes,
    qos: int = 0,
    retain: bool = False,
    dup: bool = False,
    packet_id: int = 0,
    properties_bytes: bytes = b"",
    level: int = 4,
) -> bytes:
    """PUBLISH from pre-encoded pieces. `topic_bytes` is the UTF-8 topic (no length
    prefix); `properties_bytes` a block from encode_properties(props, PUBLISH), used at
    level 5 only (empty means no properties). The payload is copied once, at the end."""
    tl = len(topic_bytes)
    rl = tl + len(payload) + (4 if qos else 2)
    if level == 5:
        if not properties_bytes:
            properties_bytes = b"\x00"
        rl += len(properties_bytes)
    else:
        properties_bytes = b""
    b0 = 0x30 | (qos << 1) | (8 if dup else 0) | (1 if retain else 0)
    # One struct call for the first four bytes beats building them piecewise (measured
    # with bench/bench_mqtt_codec.py); `+` chains left to right, so the payload (last)
    # is copied exactly once.
    if rl < 128:
        head = _pack_publish_head(b0, rl, tl)
    else:
        head = bytes((b0,)) + encode_varint(rl) + pack_u16(tl)
    if qos:
        return head + topic_bytes + pack_u16(packet_id) + properties_bytes + payload
    return head + topic_bytes + properties_bytes + payload


def encode_publish_packet(packet: Publish, level: int = 4) -> bytes:
    props = b""
    if level == 5 and packet.properties:
        props = encode_properties(packet.properties, PUBLISH)
    if packet.qos and not packet.packet_id:
        raise ValueError("QoS > 0 PUBLISH needs a non-zero packet_id [MQTT-2.2.1-3]")
    if packet.qos not in (0, 1, 2):
        raise ValueError(f"QoS {packet.qos} [MQTT-3.3.1-4]")
    if packet.dup and not packet.qos and level != 3:
        raise ValueError("DUP on a QoS 0 PUBLISH [MQTT-3.3.1-2]")
    if "\x00" in packet.topic:
        raise ValueError("topic contains U+0000 [MQTT-1.5.3-2]")
    topic = packet.topic.encode()
    if len(topic) > 0xFFFF:
        raise ValueError("topic longer than 65535 bytes")
    return encode_publish(
        topic,
        packet.payload,
        packet.qos,
        packet.retain,
        packet.dup,
        packet.packet_id if packet.qos else 0,
        props,
        level,
    )


# --------------------------------------------------------------------------- CONNECT


def encode_connect(
    client_id: str = "",
    keep_alive: int = 0,
    clean_start: bool = True,
    username: str | None = None,
    password: bytes | None = None,
    will_topic: str | None = None,
    will_payload: bytes = b"",
    will_qos: int = 0,
    will_retain: bool = False,
    will_properties: dict[str, Any] | None = None,
    properties: dict[str, Any] | None = None,
    level: int = 4,
) -> bytes:
    if level == 3:
        head = b"\x00\x06MQIsdp\x03"
    elif level in (4, 5):
        head = b"\x00\x04MQTT" + bytes((level,))
    else:
        raise ValueError(f"protocol level must be 3, 4 or 5, not {level!r}")
    will = will_topic is not None
    if not will and (will_qos or will_retain):
        raise ValueError("Will QoS/Retain without a will [MQTT-3.1.2-13] [MQTT-3.1.2-15]")
    if will_qos not in (0, 1, 2):
        raise ValueError(f"Will QoS {will_qos} [MQTT-3.1.2-14]")
    if level < 5 and password is not None and username is None:
        raise ValueError("a password needs a user name before MQTT 5.0 [MQTT-3.1.2-22]")
    flags = (
        (0x02 if clean_start else 0)
        | (0x04 if will else 0)
        | (will_qos << 3)
        | (0x20 if will_retain else 0)
        | (0x40 if password is not None else 0)
        | (0x80 if username is not None else 0)
    )
    parts = [head, bytes((flags,)), pack_u16(keep_alive)]
    if level == 5:
        parts.append(encode_properties(properties, CONNECT))
    parts.append(encode_string(client_id))
    if will:
        if level == 5:
            parts.append(encode_properties(will_properties, WILL))
        parts.append(encode_string(will_topic))
        parts.append(encode_binary(will_payload))
    if username is not None:
        parts.append(encode_string(username))
    if password is not None:
        parts.append(encode_binary(password))
    return _frame(CONNECT << 4, b"".join(parts))


def encode_connack(
    session_present: bool = False,
    reason_code: int = 0,
    properties: dict[str, Any] | None = None,
    level: int = 4,
) -> bytes:
    """CONNACK. Below level 5 a 5.0 failure code becomes the nearest 3.1.1 return
    code, and 3.1 (level 3) gets no Session Present flag."""
    if level == 5:
        return _frame(
            CONNACK << 4,
            bytes((1 if session_present else 0, reason_code))
            + encode_properties(properties, CONNACK),
        )
    sp = 1 if session_present and level >= 4 else 0
    return bytes((CONNACK << 4, 2, sp, connack_return_code(reason_code)))


# ------------------------------------------------------- PUBACK PUBREC PUBREL PUBCOMP


def _ack(
    b0: int, ptype: int, packet_id: int, reason_code: int, properties: dict | None, level: int
) -> bytes:
    if level == 5 and (reason_code or properties):
        if not properties:
            # 3.4.2.2.1: Property Length may be left off when there are none.
            return bytes((b0, 3, packet_id >> 8, packet_id & 0xFF, reason_code))
        return _frame(
            b0, pack_u16(packet_id) + bytes((reason_code,)) + encode_properties(properties, ptype)
        )
    # Success without properties is the 2-byte form at every level (3.4.2.1).
    return bytes((b0, 2, packet_id >> 8, packet_id & 0xFF))


def encode_puback(
    packet_id: int, reason_code: int = 0, properties: dict | None = None, level: int = 4
) -> bytes:
    return _ack(0x40, PUBACK, packet_id, reason_code, properties, level)


def encode_pubacks(packet_ids: list[int]) -> bytes:
    """Successful PUBACKs for several packet ids, back to back: each the 2-byte form
    that encode_puback writes for success without properties, at every level (3.4.2.1)."""
    return b"".join([b"\x40\x02" + packet_id.to_bytes(2, "big") for packet_id in packet_ids])


def encode_pubrec(
    packet_id: int, reason_code: int = 0, properties: dict | None = None, level: int = 4
) -> bytes:
    return _ack(0x50, PUBREC, packet_id, reason_code, properties, level)


def encode_pubrel(
    packet_id: int, reason_code: int = 0, properties: dict | None = None, level: int = 4
) -> bytes:
    return _ack(0x62, PUBREL, packet_id, reason_code, properties, level)  # [MQTT-3.6.1-1]


def encode_pubcomp(
    packet_id: int, reason_code: int = 0, properties: dict | None = None, level: int = 4
) -> bytes:
    return _ack(0x70, PUBCOMP, packet_id, reason_code, properties, level)


# ------------------------------------------------------------- SUBSCRIBE ... UNSUBACK


def encode_subscribe(
    packet_id: int,
    subscriptions: Iterable[Subscription | tuple[str, int]],
    properties: dict | None = None,
    level: int = 4,
) -> bytes:
    """SUBSCRIBE; each item is a Subscription or a (topic_filter, qos) pair."""
    parts = [pack_u16(packet_id)]
    if level == 5:
        parts.append(encode_properties(properties, SUBSCRIBE))
    count = 0
    for sub in subscriptions:
        if isinstance(sub, tuple):
            sub = Subscription(*sub)
        if sub.qos not in (0, 1, 2) or sub.retain_handling not in (0, 1, 2):
            raise ValueError(f"invalid subscription options {sub!r} (3.8.3.1)")
        opts = sub.qos
        if level == 5:
            opts |= (
                (0x04 if sub.no_local else 0)
                | (0x08 if sub.retain_as_published else 0)
                | (sub.retain_handling << 4)
            )
        parts.append(encode_string(sub.topic_filter))
        parts.append(bytes((opts,)))
        count += 1
    if not count:
        raise ValueError("SUBSCRIBE needs at least one Topic Filter [MQTT-3.8.3-3]")
    return _frame(0x82, b"".join(parts))  # [MQTT-3.8.1-1]


def encode_suback(
    packet_id: int, reason_codes: Sequence[int], properties: dict | None = None, level: int = 4
) -> bytes:
    if not reason_codes:
        raise ValueError("SUBACK needs one reason code per Topic Filter (3.9.3)")
    if level == 5:
        return _frame(
            0x90,
            pack_u16(packet_id) + encode_properties(properties, SUBACK) + bytes(reason_codes),
        )
    return _frame(0x90, pack_u16(packet_id) + bytes(suback_return_code(c) for c in reason_codes))


def encode_unsubscribe(
    packet_id: int, topic_filters: Iterable[str], properties: dict | None = None, level: int = 4
) -> bytes:
    parts = [pack_u16(packet_id)]
    if level == 5:
        parts.append(encode_properties(properties, UNSUBSCRIBE))
    filters = [encode_string(f) for f in topic_filters]
    if not filters:
        raise ValueError("UNSUBSCRIBE needs at least one Topic Filter [MQTT-3.10.3-2]")
    return _frame(0xA2, b"".join(parts + filters))  # [MQTT-3.10.1-1]


def encode_unsuback(
    packet_id: int,
    reason_codes: Sequence[int] = (),
    properties: dict | None = None,
    level: int = 4,
) -> bytes:
    """UNSUBACK; `reason_codes` (one per filter) and properties exist at level 5 only."""
    if level != 5:
        return bytes((0xB0, 2, packet_id >> 8, packet_id & 0xFF))
    if not reason_codes:
        raise ValueError("5.0 UNSUBACK needs one reason code per Topic Filter (3.11.3)")
    return _frame(
        0xB0, pack_u16(packet_id) + encode_properties(properties, UNSUBACK) + bytes(reason_codes)
    )


# ------------------------------------------------------ PINGREQ PINGRESP DISCONNECT AUTH


def encode_pingreq() -> bytes:
    return PINGREQ_BYTES


def encode_pingresp() -> bytes:
    return PINGRESP_BYTES


def encode_disconnect(
    reason_code: int = 0, properties: dict | None = None, level: int = 4
) -> bytes:
    """DISCONNECT; reason code and properties exist at level 5 only (3.14.2.1)."""
    if level != 5 or (not reason_code and not properties):
        return b"\xe0\x00"
    if not properties:
        return bytes((0xE0, 1, reason_code))
    return _frame(0xE0, bytes((reason_code,)) + encode_properties(properties, DISCONNECT))


def encode_auth(reason_code: int = 0, properties: dict | None = None, level: int = 5) -> bytes:
    if level != 5:
        raise ValueError("AUTH exists only in MQTT 5.0")
    if not reason_code and not properties:
        return b"\xf0\x00"  # 3.15.2.1: Remaining Length 0 means Success
    return _frame(0xF0, bytes((reason_code,)) + encode_properties(properties, AUTH))


# --------------------------------------------------------------------------- generic


def _enc_connect(p: Connect, level: int) -> bytes:
    return encode_connect(
        p.client_id,
        p.keep_alive,
        p.clean_start,
        p.username,
        p.password,
        p.will_topic,
        p.will_payload,
        p.will_qos,
        p.will_retain,
        p.will_properties,
        p.properties,
        level,
    )


_ENCODERS: dict[type, Callable[[Any, int], bytes]] = {
    Connect: _enc_connect,
    Connack: lambda p, lv: encode_connack(p.session_present, p.reason_code, p.properties, lv),
    Publish: encode_publish_packet,
    Puback: lambda p, lv: encode_puback(p.packet_id, p.reason_code, p.properties, lv),
    Pubrec: lambda p, lv: encode_pubrec(p.packet_id, p.reason_code, p.properties, lv),
    Pubrel: lambda p, lv: encode_pubrel(p.packet_id, p.reason_code, p.properties, lv),
    Pubcomp: lambda p, lv: encode_pubcomp(p.packet_id, p.reason_code, p.properties, lv),
    Subscribe: lambda p, lv: encode_subscribe(p.packet_id, p.subscriptions, p.properties, lv),
    Suback: lambda p, lv: encode_suback(p.packet_id, p.reason_codes, p.properties, lv),
    Unsubscribe: lambda p, lv: encode_unsubscribe(p.packet_id, p.topic_filters, p.properties, lv),
    Unsuback: lambda p, lv: encode_unsuback(p.packet_id, p.reason_codes, p.properties, lv),
    Pingreq: lambda p, lv: PINGREQ_BYTES,
    Pingresp: lambda p, lv: PINGRESP_BYTES,
    Disconnect: lambda p, lv: encode_disconnect(p.reason_code, p.properties, lv),
    Auth: lambda p, lv: encode_auth(p.reason_code, p.properties, lv),
}


def encode(packet: Packet, protocol_level: int = 4) -> bytes:
    """Encode any packet object for `protocol_level` (3, 4 or 5). For Connect the level
    argument, not `packet.protocol_level`, picks the layout."""
    return _ENCODERS[type(packet)](packet, protocol_level)
