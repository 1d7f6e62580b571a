"""MQTT 5.0 properties (section 2.2.2): the identifier table, and the two directions.

Theory of operation: a property block is a vbi length followed by (identifier, value)
pairs. `PROPERTIES` is the whole of Table 2-4 as data: identifier, name, value type and
the packets that may carry it (`WILL` stands for the Will Properties inside the CONNECT
payload). Both directions walk that one table, so a property can't be accepted by the
decoder yet refused by the encoder, or the other way round.

Decoded properties are a dict keyed by snake_case name. Properties the spec lets repeat
are lists: `user_property` (a list of (name, value) pairs, order kept, 3.3.2.3.7) and
`subscription_identifier` in PUBLISH (one per matching subscription, 3.3.4). Any other
property seen twice is a Protocol Error ("It is a Protocol Error to include ... more than
once"); an identifier unknown or not valid for the packet is a Malformed Packet (2.2.2.2).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from .errors import MQTTProtocolError
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
)
from .wire import (
    Reader,
    encode_binary,
    encode_string,
    encode_string_pair,
    encode_varint,
    pack_u16,
    pack_u32,
)

__all__ = [
    "PROPERTIES",
    "PROPERTY_IDS",
    "WILL",
    "PropertySpec",
    "decode_properties",
    "encode_properties",
]

MALFORMED = 0x81
PROTOCOL_ERROR = 0x82

# Pseudo packet type for the Will Properties of CONNECT (packet types stop at 15).
WILL = 16

# Value types (5.0 section 1.5).
BYTE = "byte"
U16 = "u16"
U32 = "u32"
VARINT = "varint"
STRING = "string"
BINARY = "binary"
PAIR = "string pair"


def _read_pair(r: Reader) -> tuple[str, str]:
    return r.utf8(), r.utf8()


_READERS: dict[str, Callable[[Reader], Any]] = {
    BYTE: Reader.u8,
    U16: Reader.u16,
    U32: Reader.u32,
    VARINT: Reader.varint,
    STRING: Reader.utf8,
    BINARY: Reader.binary,
    PAIR: _read_pair,
}


def _write_byte(v: int) -> bytes:
    return bytes((v,))  # ValueError outside 0..255


_WRITERS: dict[str, Callable[[Any], bytes]] = {
    BYTE: _write_byte,
    U16: pack_u16,
    U32: pack_u32,
    VARINT: encode_varint,
    STRING: encode_string,
    BINARY: encode_binary,
    PAIR: lambda kv: encode_string_pair(*kv),
}

_ALL = frozenset(
    {CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP, SUBSCRIBE, SUBACK}
    | {UNSUBSCRIBE, UNSUBACK, DISCONNECT, AUTH, WILL}
)
_MESSAGE = frozenset({PUBLISH, WILL})


def _zero_or_one(v: int) -> bool:
    return v <= 1


def _non_zero(v: int) -> bool:
    return v != 0


class PropertySpec:
    """One row of Table 2-4, plus the value rule the spec states for it (if any)."""

    __slots__ = ("identifier", "name", "kind", "packets", "multi", "check", "rule", "_reader")

    def __init__(
        self,
        identifier: int,
        name: str,
        kind: str,
        packets: frozenset[int],
        multi: frozenset[int] = frozenset(),
        check: Callable[[Any], bool] | None = None,
        rule: str = "",
    ):
        self.identifier = identifier
        self.name = name
        self.kind = kind
        self.packets = packets
        self.multi = multi  # packet types where the property may repeat
        self.check = check
        self.rule = rule
        self._reader = _READERS[kind]

    def __repr__(self) -> str:
        return f"PropertySpec(0x{self.identifier:02X}, {self.name!r}, {self.kind})"


_01 = "a value other than 0 or 1 is a Protocol Error"
_NZ = "a value of 0 is a Protocol Error"

PROPERTIES: tuple[PropertySpec, ...] = (
    PropertySpec(0x01, "payload_format_indicator", BYTE, _MESSAGE, check=_zero_or_one, rule=_01),
    PropertySpec(0x02, "message_expiry_interval", U32, _MESSAGE),
    PropertySpec(0x03, "content_type", STRING, _MESSAGE),
    PropertySpec(0x08, "response_topic", STRING, _MESSAGE),
    PropertySpec(0x09, "correlation_data", BINARY, _MESSAGE),
    PropertySpec(
        0x0B,
        "subscription_identifier",
        VARINT,
        frozenset({PUBLISH, SUBSCRIBE}),
        multi=frozenset({PUBLISH}),
        check=_non_zero,
        rule=_NZ,
    ),
    PropertySpec(0x11, "session_expiry_interval", U32, frozenset({CONNECT, CONNACK, DISCONNECT})),
    PropertySpec(0x12, "assigned_client_identifier", STRING, frozenset({CONNACK})),
    PropertySpec(0x13, "server_keep_alive", U16, frozenset({CONNACK})),
    PropertySpec(0x15, "authentication_method", STRING, frozenset({CONNECT, CONNACK, AUTH})),
    PropertySpec(0x16, "authentication_data", BINARY, frozenset({CONNECT, CONNACK, AUTH})),
    PropertySpec(
        0x17,
        "request_problem_information",
        BYTE,
        frozenset({CONNECT}),
        check=_zero_or_one,
        rule=_01,
    ),
    PropertySpec(0x18, "will_delay_interval", U32, frozenset({WILL})),
    PropertySpec(
        0x19,
        "request_response_information",
        BYTE,
        frozenset({CONNECT}),
        check=_zero_or_one,
        rule=_01,
    ),
    PropertySpec(0x1A, "response_information", STRING, frozenset({CONNACK})),
    PropertySpec(0x1C, "server_reference", STRING, frozenset({CONNACK, DISCONNECT})),
    PropertySpec(
        0x1F,
        "reason_string",
        STRING,
        frozenset({CONNACK, PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK, UNSUBACK, DISCONNECT, AUTH}),
    ),
    PropertySpec(
        0x21, "receive_maximum", U16, frozenset({CONNECT, CONNACK}), check=_non_zero, rule=_NZ
    ),
    PropertySpec(0x22, "topic_alias_maximum", U16, frozenset({CONNECT, CONNACK})),
    PropertySpec(0x23, "topic_alias", U16, frozenset({PUBLISH}), check=_non_zero, rule=_NZ),
    PropertySpec(0x24, "maximum_qos", BYTE, frozenset({CONNACK}), check=_zero_or_one, rule=_01),
    PropertySpec(
        0x25, "retain_available", BYTE, frozenset({CONNACK}), check=_zero_or_one, rule=_01
    ),
    PropertySpec(0x26, "user_property", PAIR, _ALL, multi=_ALL),
    PropertySpec(
        0x27, "maximum_packet_size", U32, frozenset({CONNECT, CONNACK}), check=_non_zero, rule=_NZ
    ),
    PropertySpec(
        0x28,
        "wildcard_subscription_available",
        BYTE,
        frozenset({CONNACK}),
        check=_zero_or_one,
        rule=_01,
    ),
    PropertySpec(
        0x29,
        "subscription_identifier_available",
        BYTE,
        frozenset({CONNACK}),
        check=_zero_or_one,
        rule=_01,
    ),
    PropertySpec(
        0x2A,
        "shared_subscription_available",
        BYTE,
        frozenset({CONNACK}),
        check=_zero_or_one,
        rule=_01,
    ),
)

PROPERTY_IDS: dict[str, int] = {spec.name: spec.identifier for spec in PROPERTIES}
_BY_NAME: dict[str, PropertySpec] = {spec.name: spec for spec in PROPERTIES}
# Indexed by the identifier byte. Every identifier in 5.0 is a one-byte vbi, so a first
# byte >= 0x80 can only start an identifier this version does not define: unknown.
_BY_ID: list[PropertySpec | None] = [None] * 256
for _spec in PROPERTIES:
    _BY_ID[_spec.identifier] = _spec
del _spec


def decode_properties(r: Reader, packet_type: int) -> dict[str, Any]:
    """Read a property block (length included) at `r.pos` for `packet_type` (or WILL)."""
    length = r.varint()
    stop = r.pos + length
    if stop > r.end:
        raise MQTTProtocolError(MALFORMED, "Property Length runs past the packet (5.0 2.2.2.1)")
    props: dict[str, Any] = {}
    buf = r.buf
    while r.pos < stop:
        ident = buf[r.pos]
        r.pos += 1
        spec = _BY_ID[ident]
        if spec is None:
            raise MQTTProtocolError(
                MALFORMED, f"unknown property identifier 0x{ident:02X} (5.0 2.2.2.2)"
            )
        if packet_type not in spec.packets:
            raise MQTTProtocolError(
                MALFORMED, f"property {spec.name} is not valid in this packet (5.0 2.2.2.2)"
            )
        value = spec._reader(r)
        if r.pos > stop:
            raise MQTTProtocolError(MALFORMED, f"property {spec.name} runs past Property Length")
        check = spec.check
        if check is not None and not check(value):
            raise MQTTProtocolError(PROTOCOL_ERROR, f"property {spec.name}: {spec.rule}")
        name = spec.name
        if packet_type in spec.multi:
            got = props.get(name)
            if got is None:
                props[name] = [value]
            else:
                got.append(value)
        elif name in props:
            raise MQTTProtocolError(
                PROTOCOL_ERROR, f"property {name} included more than once (5.0 2.2.2.2)"
            )
        else:
            props[name] = value
    return props


def encode_properties(props: dict[str, Any] | None, packet_type: int) -> bytes:
    """Encode a property block, Property Length included (b"\\x00" when empty).

    Raises ValueError for an unknown name, a property the packet type may not carry, or
    a value the decoder would refuse, so what we send always decodes."""
    if not props:
        return b"\x00"
    parts: list[bytes] = []
    for name, value in props.items():
        spec = _BY_NAME.get(name)
        if spec is None:
            raise ValueError(f"unknown MQTT property {name!r}")
        if packet_type not in spec.packets:
            raise ValueError(f"property {name} is not valid in packet type {packet_type}")
        ident = encode_varint(spec.identifier)
        write = _WRITERS[spec.kind]
        if packet_type in spec.multi or spec.kind == VARINT:
            # Repeatable properties are lists; a single subscription identifier may be
            # given bare. SUBSCRIBE allows at most one (3.8.2.1.2).
            values = [value] if isinstance(value, int) else list(value)
            if packet_type not in spec.multi and len(values) != 1:
                raise ValueError(f"property {name} takes one value in packet type {packet_type}")
        else:
            values = [value]
        for v in values:
            if spec.check is not None and not spec.check(v):
                raise ValueError(f"property {name}: {spec.rule}")
            try:
                encoded = write(v)
            except struct.error as exc:  # u16/u32 out of range
                raise ValueError(f"property {name}: {exc}") from None
            parts.append(ident)
            parts.append(encoded)
    body = b"".join(parts)
    return encode_varint(len(body)) + body
