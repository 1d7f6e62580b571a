"""MQTT data representations (3.1.1 section 1.5, 5.0 section 1.5): the field types every
packet is built from, in both directions.

Theory of operation: a packet body is first cut out of the stream by the framing loop
in `decode.py`, so every reader here works on a `bytes` object that ends exactly where
the packet ends. A read past that end is a truncated (malformed) packet; `Reader`
surfaces it as IndexError / struct.error (fixed-width reads) or by comparing the slice
length (length-prefixed reads), and the parser turns both into reason code 0x81.

Abbreviations: vbi = Variable Byte Integer, u16/u32 = Two/Four Byte Integer.
"""

from __future__ import annotations

import re
import struct

from .errors import MQTTProtocolError

__all__ = [
    "MAX_VARINT",
    "Reader",
    "decode_utf8",
    "encode_binary",
    "encode_string",
    "encode_string_pair",
    "encode_varint",
    "has_discouraged_code_points",
    "read_varint",
]

MALFORMED = 0x81

# Four bytes of seven bits each [MQTT-1.5.5-1]; 3.1.1 section 2.2.3 has the same cap.
MAX_VARINT = 268_435_455

_u16 = struct.Struct(">H")
_u32 = struct.Struct(">I")
_unpack_u16 = _u16.unpack_from
_unpack_u32 = _u32.unpack_from
pack_u16 = _u16.pack
pack_u32 = _u32.pack

# One-byte vbi values cover every remaining length below 128 and every property
# identifier; caching them keeps `bytes((n,))` off the hot path.
_SMALL_VARINT = [bytes((n,)) for n in range(128)]


def encode_varint(n: int) -> bytes:
    """Variable Byte Integer, shortest form [MQTT-1.5.5-1]."""
    if 0 <= n < 128:
        return _SMALL_VARINT[n]
    if n < 16384:
        return bytes(((n & 0x7F) | 0x80, n >> 7))
    if n > MAX_VARINT or n < 0:
        raise ValueError(f"{n} does not fit a Variable Byte Integer")
    out = bytearray()
    while n >= 128:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def read_varint(buf: bytes, pos: int, end: int) -> tuple[int, int] | None:
    """Decode a vbi at `buf[pos:end]`; return (value, next position), or None if the
    bytes stop before the integer does (the caller decides whether that means "wait for
    more" or "truncated").

    At most four bytes [MQTT-1.5.5-1]; a fifth continuation byte is malformed. A
    non-shortest encoding (a final 0x00 after a continuation byte) breaks the same
    statement ("MUST use the minimum number of bytes") and is refused too, so no two
    byte strings decode to the same packet."""
    value = 0
    shift = 0
    while pos < end:
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            if b == 0 and shift:
                raise MQTTProtocolError(
                    MALFORMED, "Variable Byte Integer not in shortest form [MQTT-1.5.5-1]"
                )
            return value, pos
        shift += 7
        if shift == 28:
            raise MQTTProtocolError(
                MALFORMED, "Variable Byte Integer longer than 4 bytes [MQTT-1.5.5-1]"
            )
    return None


def decode_utf8(raw: bytes) -> str:
    """Check and decode an MQTT UTF-8 string.

    Python's strict UTF-8 codec already refuses overlong forms, code points above
    U+10FFFF and encoded surrogates U+D800..U+DFFF [MQTT-1.5.3-1] (v5 [MQTT-1.5.4-1]).
    U+0000 is valid UTF-8 but banned by [MQTT-1.5.3-2] (v5 [MQTT-1.5.4-2]). A leading
    U+FEFF is kept as-is, never stripped [MQTT-1.5.3-3] (v5 [MQTT-1.5.4-3]): the codec
    is "utf-8", not "utf-8-sig"."""
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        raise MQTTProtocolError(
            MALFORMED, "ill-formed UTF-8 string [MQTT-1.5.3-1] [MQTT-1.5.4-1]"
        ) from None
    if 0 in raw:  # int operand: a memchr, far cheaper than b"\x00" in raw
        raise MQTTProtocolError(
            MALFORMED, "UTF-8 string contains U+0000 [MQTT-1.5.3-2] [MQTT-1.5.4-2]"
        )
    return text


def _discouraged_class() -> str:
    # Control characters and Unicode non-characters: allowed on the wire, but a receiver
    # MAY refuse them (3.1.1 section 1.5.3, 5.0 section 1.5.4 and 5.4.9).
    parts = ["\x01-\x1f", "\x7f-\x9f", "\ufdd0-\ufdef"]
    for plane in range(17):
        base = plane << 16
        parts.append(f"{chr(base | 0xFFFE)}{chr(base | 0xFFFF)}")
    return "[" + "".join(parts) + "]"


_DISCOURAGED = re.compile(_discouraged_class())


def has_discouraged_code_points(text: str) -> bool:
    """True if `text` holds U+0001..U+001F, U+007F..U+009F or a Unicode non-character.

    The spec lets a receiver treat these as errors ("SHOULD NOT include"); the codec
    decodes them and leaves the policy to the caller. One regex scan, so it is cheap
    enough to run on topics."""
    return _DISCOURAGED.search(text) is not None


class Reader:
    """A cursor over one packet body (`buf` ends where the packet ends)."""

    __slots__ = ("buf", "pos", "end")

    def __init__(self, buf: bytes, pos: int = 0):
        self.buf = buf
        self.pos = pos
        self.end = len(buf)

    def u8(self) -> int:
        b = self.buf[self.pos]  # IndexError past the end: truncated packet
        self.pos += 1
        return b

    def u16(self) -> int:
        (v,) = _unpack_u16(self.buf, self.pos)  # struct.error when truncated
        self.pos += 2
        return v

    def u32(self) -> int:
        (v,) = _unpack_u32(self.buf, self.pos)
        self.pos += 4
        return v

    def varint(self) -> int:
        got = read_varint(self.buf, self.pos, self.end)
        if got is None:
            raise MQTTProtocolError(MALFORMED, "truncated Variable Byte Integer")
        value, self.pos = got
        return value

    def binary(self) -> bytes:
        """Binary Data: u16 length, then that many bytes (3.1.1 1.5.3 for the layout)."""
        (n,) = _unpack_u16(self.buf, self.pos)
        start = self.pos + 2
        stop = start + n
        if stop > self.end:
            raise MQTTProtocolError(MALFORMED, "length-prefixed field runs past the packet")
        self.pos = stop
        return self.buf[start:stop]

    def utf8(self) -> str:
        return decode_utf8(self.binary())

    def rest(self) -> bytes:
        data = self.buf[self.pos :]
        self.pos = self.end
        return data

    def at_end(self) -> bool:
        return self.pos >= self.end


def encode_binary(data: bytes) -> bytes:
    n = len(data)
    if n > 0xFFFF:
        raise ValueError(f"field of {n} bytes exceeds 65535")
    return pack_u16(n) + data


def encode_string(text: str) -> bytes:
    """UTF-8 Encoded String. Encoding refuses what decoding would refuse: lone surrogates
    (str.encode raises) and U+0000 [MQTT-1.5.3-2]."""
    if "\x00" in text:
        raise ValueError("MQTT strings must not contain U+0000 [MQTT-1.5.3-2]")
    return encode_binary(text.encode())


def encode_string_pair(key: str, value: str) -> bytes:
    return encode_string(key) + encode_string(value)
