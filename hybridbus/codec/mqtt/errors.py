"""Errors raised by the MQTT codec.

Every decoding failure is an `MQTTProtocolError` carrying the MQTT 5 reason code the
server should put in its CONNACK or DISCONNECT (for 3.1.1 clients the server just closes
the connection, [MQTT-4.8.0-1]) and a message that names the violated normative
statement, e.g. "[MQTT-3.3.1-4]".

The one case a server must answer differently is a CONNECT for a protocol it does not
speak: 3.1.1 wants CONNACK return code 0x01 [MQTT-3.1.2-2], 5.0 allows reason code 0x84
[MQTT-3.1.2-2 (v5)]. That gets its own subclass so the caller can tell it apart without
parsing messages.
"""

from __future__ import annotations

__all__ = ["MQTTProtocolError", "MQTTUnsupportedProtocol"]


class MQTTProtocolError(Exception):
    """The peer sent bytes that break the MQTT specification.

    `reason_code` is an MQTT 5 reason code: 0x81 malformed packet, 0x82 protocol error,
    0x95 packet too large, 0x84 unsupported protocol version. `packets` holds the packets
    the same `feed()` call decoded before the error, so a caller may still act on them
    (the parser itself stays broken: every later `feed()` raises the same error)."""

    __slots__ = ("reason_code", "message", "packets")

    def __init__(self, reason_code: int, message: str):
        super().__init__(reason_code, message)
        self.reason_code = reason_code
        self.message = message
        self.packets: list = []

    def __str__(self) -> str:
        return f"0x{self.reason_code:02X}: {self.message}"


class MQTTUnsupportedProtocol(MQTTProtocolError):
    """CONNECT named a protocol name/level pair this codec does not implement.

    Reply with CONNACK `return_code` (0x01, 3.1.1 layout) or `reason_code` (0x84, 5.0
    layout), then close. `protocol_name` is the raw name from the wire."""

    __slots__ = ("protocol_name", "protocol_level", "return_code")

    def __init__(self, protocol_name: bytes, protocol_level: int):
        super().__init__(
            0x84,
            f"unsupported protocol {protocol_name!r} level {protocol_level}"
            " [MQTT-3.1.2-1] [MQTT-3.1.2-2]",
        )
        self.protocol_name = protocol_name
        self.protocol_level = protocol_level
        self.return_code = 0x01
