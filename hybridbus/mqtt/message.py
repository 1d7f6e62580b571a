"""An application message as MQTT receivers see it.

An MQTT publish (or a NATS message on its way to MQTT subscribers) becomes one
``MqttMessage``, shared by every receiver, with its topic encoded once. Each
connection keeps the PUBLISH head (fixed header and topic) of the last topic it
sent, so a stream of messages on one topic is written as head + packet id +
payload without building a frame (see ``MqttConnection.send_publish``).
"""

from __future__ import annotations

import time
from typing import Any


class MqttMessage:
    __slots__ = (
        "topic",
        "payload",
        "qos",
        "retain",
        "properties",
        "expires_at",
        "origin",
        "hold",
        "q2in_seq",
        "_topic_bytes",
    )

    def __init__(
        self,
        topic: str,
        payload: bytes,
        qos: int = 0,
        retain: bool = False,
        properties: dict[str, Any] | None = None,
        origin: Any = None,
    ) -> None:
        self.topic = topic
        self.payload = payload
        self.qos = qos
        self.retain = retain
        self.properties = properties or None
        self.origin = origin
        # A QoS 2 publish from a persistent session: the Ticket of its dedup record.
        # Receivers get it only once that is durable (Session._transmit says why).
        self.hold: Any = None
        # Delivered on a persistent publisher's PUBREL: the store seq of its stored
        # copy, written into receivers' records so a re-route after a crash skips them.
        self.q2in_seq = 0
        self._topic_bytes: bytes | None = None
        expiry = properties.get("message_expiry_interval") if properties else None
        self.expires_at = time.monotonic() + expiry if expiry is not None else 0.0

    @classmethod
    def many(cls, topic: str, payloads: list[bytes], qos: int, origin: Any) -> list[MqttMessage]:
        """One message per payload to one topic at one QoS, not retained, without
        properties (a publisher's run, handle_publish_run): what ``__init__`` would make,
        without its general path per message."""
        # hot path: a run of a few hundred messages per read at full speed.
        new = cls.__new__
        out = []
        for payload in payloads:
            m = new(cls)
            m.topic = topic
            m.payload = payload
            m.qos = qos
            m.retain = False
            m.properties = None
            m.origin = origin
            m.hold = None
            m.q2in_seq = 0
            m._topic_bytes = None
            m.expires_at = 0.0
            out.append(m)
        return out

    def expired(self, now: float | None = None) -> bool:
        """Whether the v5 message expiry interval has passed [MQTT-3.3.2-5]."""
        if not self.expires_at:
            return False
        return (now if now is not None else time.monotonic()) >= self.expires_at

    def topic_bytes(self) -> bytes:
        tb = self._topic_bytes
        if tb is None:
            tb = self._topic_bytes = self.topic.encode()
        return tb
