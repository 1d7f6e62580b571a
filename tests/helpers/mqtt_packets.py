"""Hand-built MQTT packets for wire transcripts, written apart from the server's codec
so that a codec bug cannot hide behind itself (the idea of mosquitto's mqtt_packets.py)."""

from __future__ import annotations

import struct


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n % 128
        n //= 128
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def s(text: str | bytes) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    return struct.pack("!H", len(raw)) + raw


def packet(b0: int, body: bytes) -> bytes:
    return bytes((b0,)) + varint(len(body)) + body


def props(raw: bytes = b"") -> bytes:
    return varint(len(raw)) + raw


def connect(
    client_id: str = "",
    clean: bool = True,
    keepalive: int = 60,
    will: tuple | None = None,  # (topic, payload, qos, retain)
    username: str | None = None,
    password: bytes | None = None,
    level: int = 4,
    properties: bytes = b"",
    will_properties: bytes = b"",
) -> bytes:
    name = b"\x00\x06MQIsdp" if level == 3 else b"\x00\x04MQTT"
    flags = 0x02 if clean else 0
    if will:
        flags |= 0x04 | (will[2] << 3) | (0x20 if will[3] else 0)
    if username is not None:
        flags |= 0x80
    if password is not None:
        flags |= 0x40
    body = name + bytes((level, flags)) + struct.pack("!H", keepalive)
    if level == 5:
        body += props(properties)
    body += s(client_id)
    if will:
        if level == 5:
            body += props(will_properties)
        body += s(will[0]) + s(will[1])
    if username is not None:
        body += s(username)
    if password is not None:
        body += s(password)
    return packet(0x10, body)


def connack(
    session_present: int = 0, rc: int = 0, level: int = 4, properties: bytes = b""
) -> bytes:
    if level == 5:
        return packet(0x20, bytes((session_present, rc)) + props(properties))
    return bytes((0x20, 2, session_present, rc))


def publish(
    topic: str,
    payload: bytes = b"",
    qos: int = 0,
    retain: bool = False,
    dup: bool = False,
    mid: int = 0,
    level: int = 4,
    properties: bytes = b"",
) -> bytes:
    b0 = 0x30 | (qos << 1) | (0x08 if dup else 0) | (0x01 if retain else 0)
    body = s(topic)
    if qos:
        body += struct.pack("!H", mid)
    if level == 5:
        body += props(properties)
    return packet(b0, body + payload)


def puback(mid: int) -> bytes:
    return b"\x40\x02" + struct.pack("!H", mid)


def pubrec(mid: int) -> bytes:
    return b"\x50\x02" + struct.pack("!H", mid)


def pubrel(mid: int) -> bytes:
    return b"\x62\x02" + struct.pack("!H", mid)


def pubcomp(mid: int) -> bytes:
    return b"\x70\x02" + struct.pack("!H", mid)


def subscribe(
    mid: int, *filters: tuple[str, int], level: int = 4, properties: bytes = b""
) -> bytes:
    body = struct.pack("!H", mid)
    if level == 5:
        body += props(properties)
    for topic_filter, options in filters:
        body += s(topic_filter) + bytes((options,))
    return packet(0x82, body)


def suback(mid: int, *codes: int, level: int = 4) -> bytes:
    body = struct.pack("!H", mid)
    if level == 5:
        body += props()
    return packet(0x90, body + bytes(codes))


def unsubscribe(mid: int, *filters: str, level: int = 4) -> bytes:
    body = struct.pack("!H", mid)
    if level == 5:
        body += props()
    return packet(0xA2, body + b"".join(s(f) for f in filters))


def unsuback(mid: int, *codes: int, level: int = 4) -> bytes:
    if level == 5:
        return packet(0xB0, struct.pack("!H", mid) + props() + bytes(codes))
    return b"\xb0\x02" + struct.pack("!H", mid)


PINGREQ = b"\xc0\x00"
PINGRESP = b"\xd0\x00"
DISCONNECT = b"\xe0\x00"
