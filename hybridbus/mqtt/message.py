"""An application message as MQTT receivers see it.

An MQTT publish (or a NATS message on its way to MQTT subscribers) becomes one
``MqttMessage``, shared by every receiver. What is the same for all of them is
encoded once and cached here: the topic's wire form and, for QoS 0, the whole
PUBLISH packet per protocol level. QoS 1/2 copies differ only in the packet
identifier and DUP flag, so they are built from the cached pieces.
"""

from __future__ import annotations

import time
from typing import Any

from hybridbus.codec.mqtt import encode_publish


class MqttMessage:
    __slots__ = (
        "topic",
        "payload",
        "qos",
        "retain",
        "properties",
        "expires_at",
        "origin",
        "_topic_bytes",
        "_frames",
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
        self._topic_bytes: bytes | None = None
        self._frames: dict | None = None
        expiry = properties.get("message_expiry_interval") if properties else None
        self.expires_at = time.monotonic() + expiry if expiry is not None else 0.0

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

    def encode(self, qos: int, retain: bool, dup: bool, packet_id: int, level: int) -> bytes:
        """The PUBLISH packet for one receiver; QoS 0 frames are cached per shape."""
        if qos == 0 and level != 5:
            key = (retain, level)
            frames = self._frames
            if frames is None:
                frames = self._frames = {}
            frame = frames.get(key)
            if frame is None:
                frame = frames[key] = encode_publish(
                    self.topic_bytes(), self.payload, 0, retain, False, 0, level=level
                )
            return frame
        return encode_publish(
            self.topic_bytes(), self.payload, qos, retain, dup, packet_id, level=level
        )
