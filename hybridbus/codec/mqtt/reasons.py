"""Reason codes (5.0 section 2.4) and the 3.1.1 return codes they fall back to.

The server thinks in 5.0 reason codes only. When it answers a 3.1.1 or 3.1 client the
encoder maps a failure code to the nearest 3.1.1 return code (`connack_return_code`,
`suback_return_code`); for acknowledgements that have no reason code below 5.0 the
code is simply not sent.
"""

from __future__ import annotations

from enum import IntEnum

from .packets import (
    AUTH,
    CONNACK,
    DISCONNECT,
    PUBACK,
    PUBCOMP,
    PUBREC,
    PUBREL,
    SUBACK,
    UNSUBACK,
)

__all__ = [
    "REASON_CODES",
    "VALID_REASON_CODES",
    "ConnackReturnCode",
    "ReasonCode",
    "SUBACK_FAILURE",
    "connack_return_code",
    "reason_name",
    "suback_return_code",
]


class ReasonCode(IntEnum):
    """MQTT 5.0 reason codes. 0x00..0x02 have several spec names; the aliases below
    share their values (IntEnum keeps the first name as canonical)."""

    SUCCESS = 0x00
    NORMAL_DISCONNECTION = 0x00
    GRANTED_QOS_0 = 0x00
    GRANTED_QOS_1 = 0x01
    GRANTED_QOS_2 = 0x02
    DISCONNECT_WITH_WILL_MESSAGE = 0x04
    NO_MATCHING_SUBSCRIBERS = 0x10
    NO_SUBSCRIPTION_EXISTED = 0x11
    CONTINUE_AUTHENTICATION = 0x18
    RE_AUTHENTICATE = 0x19
    UNSPECIFIED_ERROR = 0x80
    MALFORMED_PACKET = 0x81
    PROTOCOL_ERROR = 0x82
    IMPLEMENTATION_SPECIFIC_ERROR = 0x83
    UNSUPPORTED_PROTOCOL_VERSION = 0x84
    CLIENT_IDENTIFIER_NOT_VALID = 0x85
    BAD_USER_NAME_OR_PASSWORD = 0x86
    NOT_AUTHORIZED = 0x87
    SERVER_UNAVAILABLE = 0x88
    SERVER_BUSY = 0x89
    BANNED = 0x8A
    SERVER_SHUTTING_DOWN = 0x8B
    BAD_AUTHENTICATION_METHOD = 0x8C
    KEEP_ALIVE_TIMEOUT = 0x8D
    SESSION_TAKEN_OVER = 0x8E
    TOPIC_FILTER_INVALID = 0x8F
    TOPIC_NAME_INVALID = 0x90
    PACKET_IDENTIFIER_IN_USE = 0x91
    PACKET_IDENTIFIER_NOT_FOUND = 0x92
    RECEIVE_MAXIMUM_EXCEEDED = 0x93
    TOPIC_ALIAS_INVALID = 0x94
    PACKET_TOO_LARGE = 0x95
    MESSAGE_RATE_TOO_HIGH = 0x96
    QUOTA_EXCEEDED = 0x97
    ADMINISTRATIVE_ACTION = 0x98
    PAYLOAD_FORMAT_INVALID = 0x99
    RETAIN_NOT_SUPPORTED = 0x9A
    QOS_NOT_SUPPORTED = 0x9B
    USE_ANOTHER_SERVER = 0x9C
    SERVER_MOVED = 0x9D
    SHARED_SUBSCRIPTIONS_NOT_SUPPORTED = 0x9E
    CONNECTION_RATE_EXCEEDED = 0x9F
    MAXIMUM_CONNECT_TIME = 0xA0
    SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED = 0xA1
    WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED = 0xA2


# The spec's own names (Table 2-6); 0x00..0x02 depend on the packet, see reason_name().
REASON_CODES: dict[int, str] = {
    0x00: "Success",
    0x01: "Granted QoS 1",
    0x02: "Granted QoS 2",
    0x04: "Disconnect with Will Message",
    0x10: "No matching subscribers",
    0x11: "No subscription existed",
    0x18: "Continue authentication",
    0x19: "Re-authenticate",
    0x80: "Unspecified error",
    0x81: "Malformed Packet",
    0x82: "Protocol Error",
    0x83: "Implementation specific error",
    0x84: "Unsupported Protocol Version",
    0x85: "Client Identifier not valid",
    0x86: "Bad User Name or Password",
    0x87: "Not authorized",
    0x88: "Server unavailable",
    0x89: "Server busy",
    0x8A: "Banned",
    0x8B: "Server shutting down",
    0x8C: "Bad authentication method",
    0x8D: "Keep Alive timeout",
    0x8E: "Session taken over",
    0x8F: "Topic Filter invalid",
    0x90: "Topic Name invalid",
    0x91: "Packet Identifier in use",
    0x92: "Packet Identifier not found",
    0x93: "Receive Maximum exceeded",
    0x94: "Topic Alias invalid",
    0x95: "Packet too large",
    0x96: "Message rate too high",
    0x97: "Quota exceeded",
    0x98: "Administrative action",
    0x99: "Payload format invalid",
    0x9A: "Retain not supported",
    0x9B: "QoS not supported",
    0x9C: "Use another server",
    0x9D: "Server moved",
    0x9E: "Shared Subscriptions not supported",
    0x9F: "Connection rate exceeded",
    0xA0: "Maximum connect time",
    0xA1: "Subscription Identifiers not supported",
    0xA2: "Wildcard Subscriptions not supported",
}

# Which codes each packet may carry (5.0 sections 3.2.2.2, 3.4.2.1, 3.5.2.1, 3.6.2.1,
# 3.7.2.1, 3.9.3, 3.11.3, 3.14.2.1, 3.15.2.1). A code outside its packet's set is
# refused by the decoder as a Protocol Error.
VALID_REASON_CODES: dict[int, frozenset[int]] = {
    CONNACK: frozenset(
        {0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C}
        | {0x90, 0x95, 0x97, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F}
    ),
    PUBACK: frozenset({0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99}),
    PUBREC: frozenset({0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99}),
    PUBREL: frozenset({0x00, 0x92}),
    PUBCOMP: frozenset({0x00, 0x92}),
    SUBACK: frozenset({0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2}),
    UNSUBACK: frozenset({0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91}),
    DISCONNECT: frozenset(
        {0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F, 0x90}
        | {0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F}
        | {0xA0, 0xA1, 0xA2}
    ),
    AUTH: frozenset({0x00, 0x18, 0x19}),
}


def reason_name(code: int, packet_type: int | None = None) -> str:
    """The spec's name for `code`, e.g. reason_name(0, DISCONNECT) == "Normal
    disconnection", reason_name(0, SUBACK) == "Granted QoS 0"."""
    if code == 0:
        if packet_type == DISCONNECT:
            return "Normal disconnection"
        if packet_type == SUBACK:
            return "Granted QoS 0"
    return REASON_CODES.get(code, f"Unknown reason code 0x{code:02X}")


class ConnackReturnCode(IntEnum):
    """3.1.1 CONNACK return codes (Table 3.1); 6..255 are reserved."""

    ACCEPTED = 0x00
    UNACCEPTABLE_PROTOCOL_VERSION = 0x01
    IDENTIFIER_REJECTED = 0x02
    SERVER_UNAVAILABLE = 0x03
    BAD_USER_NAME_OR_PASSWORD = 0x04
    NOT_AUTHORIZED = 0x05


# 3.1.1 SUBACK failure return code [MQTT-3.9.3-2] (3.1 has no failure code at all).
SUBACK_FAILURE = 0x80

# 5.0 CONNACK failure -> the 3.1.1 return code with the closest meaning. Codes with no
# real counterpart become "Server unavailable", which tells the client to try later.
_CONNACK_FALLBACK = {
    0x84: 0x01,
    0x85: 0x02,
    0x86: 0x04,
    0x87: 0x05,
    0x8A: 0x05,
    0x8C: 0x04,
    0x88: 0x03,
    0x89: 0x03,
    0x9F: 0x03,
}


def connack_return_code(reason_code: int) -> int:
    """Map a CONNACK code to 3.1.1. 0x00..0x05 pass through unchanged (they are already
    3.1.1 codes, and 5.0 uses none of 0x01..0x05 in CONNACK)."""
    if reason_code < 0x80:
        return reason_code
    return _CONNACK_FALLBACK.get(reason_code, 0x03)


def suback_return_code(reason_code: int) -> int:
    """Map a SUBACK code to 3.1.1: granted QoS passes through, any failure is 0x80."""
    return reason_code if reason_code < 0x80 else SUBACK_FAILURE
