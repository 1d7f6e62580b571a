"""One slotted dataclass per MQTT control packet: what was said, not how it was framed.

Field names follow the spec's own words (snake_case). The same classes serve protocol
levels 3 (MQIsdp 3.1), 4 (3.1.1) and 5 (5.0); fields a level lacks keep their defaults
(`properties == {}`, `reason_code == 0`, ...). Notes on naming across versions:

- `Connect.clean_start` is 5.0's Clean Start, which is 3.1.1's CleanSession bit.
- `reason_code` is 3.1.1's "return code" in CONNACK and SUBACK (`Suback.reason_codes`).
- `packet_id == 0` means "no Packet Identifier" (QoS 0 PUBLISH); 0 is never valid on
  the wire [MQTT-2.3.1-1] [MQTT-2.2.1-3].
- `properties` maps property names (see properties.py) to values; `user_property` is a
  list of (name, value) pairs, `subscription_identifier` a list of ints in PUBLISH (it
  may repeat there) and a single int in SUBSCRIBE.

The classes are deliberately not frozen: a frozen dataclass pays object.__setattr__ per
field in __init__, and PUBLISH is built once per message on the hot path. Treat
decoded packets as read-only all the same.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, ClassVar

__all__ = [
    "AUTH",
    "CONNACK",
    "CONNECT",
    "DISCONNECT",
    "PINGREQ",
    "PINGRESP",
    "PUBACK",
    "PUBCOMP",
    "PUBLISH",
    "PUBREC",
    "PUBREL",
    "SUBACK",
    "SUBSCRIBE",
    "UNSUBACK",
    "UNSUBSCRIBE",
    "Auth",
    "Connack",
    "Connect",
    "Disconnect",
    "PACKET_CLASSES",
    "Packet",
    "PacketType",
    "Pingreq",
    "Pingresp",
    "Puback",
    "Pubcomp",
    "Publish",
    "PublishRun",
    "PUBLISH_RUN",
    "Pubrec",
    "Pubrel",
    "Suback",
    "Subscribe",
    "Subscription",
    "Unsuback",
    "Unsubscribe",
]


class PacketType(IntEnum):
    """MQTT Control Packet type: the high nibble of the first fixed-header byte."""

    CONNECT = 1
    CONNACK = 2
    PUBLISH = 3
    PUBACK = 4
    PUBREC = 5
    PUBREL = 6
    PUBCOMP = 7
    SUBSCRIBE = 8
    SUBACK = 9
    UNSUBSCRIBE = 10
    UNSUBACK = 11
    PINGREQ = 12
    PINGRESP = 13
    DISCONNECT = 14
    AUTH = 15


# Plain ints for the hot path and for table indices.
CONNECT = 1
CONNACK = 2
PUBLISH = 3
PUBACK = 4
PUBREC = 5
PUBREL = 6
PUBCOMP = 7
SUBSCRIBE = 8
SUBACK = 9
UNSUBSCRIBE = 10
UNSUBACK = 11
PINGREQ = 12
PINGRESP = 13
DISCONNECT = 14
AUTH = 15
PUBLISH_RUN = 0x103  # not a wire type: PublishRun (below)


class Packet:
    """Base of every packet class; `packet_type` is the wire type nibble."""

    __slots__ = ()
    packet_type: ClassVar[int] = 0


@dataclass(slots=True)
class Connect(Packet):
    packet_type: ClassVar[int] = CONNECT
    client_id: str = ""
    keep_alive: int = 0
    clean_start: bool = True
    username: str | None = None
    # repr=False: a password must not end up in a log line by accident.
    password: bytes | None = field(default=None, repr=False)
    # No will when will_topic is None; then the other will_* fields keep their defaults
    # [MQTT-3.1.2-11] [MQTT-3.1.2-13] (3.1.1: [MQTT-3.1.2-13] [MQTT-3.1.2-15]).
    will_topic: str | None = None
    will_payload: bytes = b""
    will_qos: int = 0
    will_retain: bool = False
    will_properties: dict[str, Any] = field(default_factory=dict)
    properties: dict[str, Any] = field(default_factory=dict)
    protocol_level: int = 4
    protocol_name: str = "MQTT"


@dataclass(slots=True)
class Connack(Packet):
    packet_type: ClassVar[int] = CONNACK
    session_present: bool = False
    reason_code: int = 0
    properties: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Publish(Packet):
    packet_type: ClassVar[int] = PUBLISH
    topic: str = ""
    payload: bytes = b""
    qos: int = 0
    retain: bool = False
    dup: bool = False
    packet_id: int = 0
    properties: dict[str, Any] = field(default_factory=dict)


class PublishRun(Packet):
    """Consecutive PUBLISH packets of one read whose fixed header, topic (and, 5.0, empty
    properties) are byte for byte the same: a publisher's stream to one topic at QoS 0
    or 1, not retained. Made only by a parser asked for runs (``MQTTParser(runs=True)``),
    so a run costs one check and one slice per packet; ``expand()`` gives the
    ``Publish`` packets it stands for. Never empty; ``packet_ids`` is empty at QoS 0."""

    __slots__ = ("topic", "qos", "dup", "payloads", "packet_ids")
    packet_type: ClassVar[int] = PUBLISH_RUN
    retain: ClassVar[bool] = False

    def __init__(
        self, topic: str, qos: int, dup: bool, payloads: list[bytes], packet_ids: list[int]
    ) -> None:
        self.topic = topic
        self.qos = qos
        self.dup = dup
        self.payloads = payloads
        self.packet_ids = packet_ids

    @classmethod
    def of(cls, publishes: list[Publish]) -> PublishRun:
        """PUBLISHes to one topic at one QoS, not retained, without properties."""
        first = publishes[0]
        ids = [p.packet_id for p in publishes] if first.qos else []
        return cls(first.topic, first.qos, False, [p.payload for p in publishes], ids)

    def __len__(self) -> int:
        return len(self.payloads)

    def __repr__(self) -> str:
        return f"PublishRun({self.topic!r}, qos={self.qos}, {len(self.payloads)} packets)"

    def expand(self) -> list[Publish]:
        ids = self.packet_ids or [0] * len(self.payloads)
        return [
            Publish(self.topic, payload, self.qos, False, self.dup, pid, {})
            for payload, pid in zip(self.payloads, ids, strict=True)
        ]

    def tail(self, k: int) -> PublishRun:
        """The packets after the first ``k``."""
        ids = self.packet_ids[k:] if self.packet_ids else []
        return PublishRun(self.topic, self.qos, self.dup, self.payloads[k:], ids)


@dataclass(slots=True)
class Puback(Packet):
    packet_type: ClassVar[int] = PUBACK
    packet_id: int = 0
    reason_code: int = 0
    properties: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Pubrec(Packet):
    packet_type: ClassVar[int] = PUBREC
    packet_id: int = 0
    reason_code: int = 0
    properties: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Pubrel(Packet):
    packet_type: ClassVar[int] = PUBREL
    packet_id: int = 0
    reason_code: int = 0
    properties: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Pubcomp(Packet):
    packet_type: ClassVar[int] = PUBCOMP
    packet_id: int = 0
    reason_code: int = 0
    properties: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Subscription:
    """One Topic Filter with its Subscription Options (5.0 3.8.3.1). Levels 3 and 4
    carry only the Requested QoS; the other options stay at their defaults."""

    topic_filter: str
    qos: int = 0
    no_local: bool = False
    retain_as_published: bool = False
    retain_handling: int = 0


@dataclass(slots=True)
class Subscribe(Packet):
    packet_type: ClassVar[int] = SUBSCRIBE
    packet_id: int = 0
    subscriptions: list[Subscription] = field(default_factory=list)
    properties: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Suback(Packet):
    packet_type: ClassVar[int] = SUBACK
    packet_id: int = 0
    reason_codes: list[int] = field(default_factory=list)
    properties: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Unsubscribe(Packet):
    packet_type: ClassVar[int] = UNSUBSCRIBE
    packet_id: int = 0
    topic_filters: list[str] = field(default_factory=list)
    properties: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Unsuback(Packet):
    """`reason_codes` is empty below level 5: 3.1.1 UNSUBACK has no payload."""

    packet_type: ClassVar[int] = UNSUBACK
    packet_id: int = 0
    reason_codes: list[int] = field(default_factory=list)
    properties: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Pingreq(Packet):
    packet_type: ClassVar[int] = PINGREQ


@dataclass(slots=True)
class Pingresp(Packet):
    packet_type: ClassVar[int] = PINGRESP


@dataclass(slots=True)
class Disconnect(Packet):
    packet_type: ClassVar[int] = DISCONNECT
    reason_code: int = 0
    properties: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Auth(Packet):
    packet_type: ClassVar[int] = AUTH
    reason_code: int = 0
    properties: dict[str, Any] = field(default_factory=dict)


PACKET_CLASSES: dict[int, type[Packet]] = {
    cls.packet_type: cls
    for cls in (
        Connect,
        Connack,
        Publish,
        Puback,
        Pubrec,
        Pubrel,
        Pubcomp,
        Subscribe,
        Suback,
        Unsubscribe,
        Unsuback,
        Pingreq,
        Pingresp,
        Disconnect,
        Auth,
    )
}
