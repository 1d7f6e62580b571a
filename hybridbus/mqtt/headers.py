"""MQTT 5 properties <-> NATS headers, both ways across the bridge.

An MQTT message reaching NATS subscribers carries its user properties and Content
Type as headers; a NATS message reaching MQTT subscribers brings its headers back as
properties. Two header names carry a QoS: ``Nmqtt-Pub`` (nats-server's mark of an
MQTT message, used across the leaf link with the other ``Nmqtt-*`` headers, see
hybridbus/leaf/connection.py ``mqtt_headers``) and ``Mqtt-Qos`` (the QoS of a retained
message kept in the retained_kv bucket, jetstream/retained_kv.py).
"""

from __future__ import annotations

import base64
from typing import Any

from hybridbus.codec.nats import encode_headers, parse_headers


def properties_to_headers(props: dict[str, Any] | None, extra: list | None = None) -> bytes | None:
    """MQTT 5 user properties (and Content Type) as a NATS header block, after the
    `extra` pairs.

    A pair that cannot be a header line (CR/LF anywhere, `:` or blank in the
    name) is left out rather than allowed to inject headers."""
    pairs = list(extra or ())
    props = props or {}
    content_type = props.get("content_type")
    if content_type:
        pairs.append(("Content-Type", content_type))
    for name, value in props.get("user_property") or ():
        pairs.append((name, value))
    if not pairs:
        return None
    safe = [
        (n, v)
        for n, v in pairs
        if n and not any(c in n for c in ":\r\n \t") and "\r" not in v and "\n" not in v
    ]
    if not safe:
        return None
    return encode_headers(safe)


def headers_to_properties(headers: bytes) -> tuple[int, dict[str, Any] | None]:
    """A NATS header block as (QoS, MQTT 5 properties): user properties, Content-Type as
    Content Type, and the ``Nmqtt-*`` headers an MQTT message crosses a leaf link with
    (hybridbus/leaf/connection.py ``mqtt_headers``): its QoS (``Nmqtt-Pub``, as
    nats-server marks MQTT messages; a NATS message counts as QoS 1), payload format,
    expiry and correlation data."""
    _status, _description, pairs = parse_headers(headers)
    qos = 1
    extra: dict[str, Any] = {}
    if any(name[:6].lower() == "nmqtt-" for name, _ in pairs):
        rest = []
        for name, value in pairs:
            low = name.lower()
            try:
                if low == "nmqtt-pub":
                    qos = min(max(int(value), 0), 2)
                elif low == "nmqtt-fmt":
                    extra["payload_format_indicator"] = int(value)
                elif low == "nmqtt-exp":
                    extra["message_expiry_interval"] = int(value)
                elif low == "nmqtt-corr":
                    extra["correlation_data"] = base64.b64decode(value)
                else:
                    rest.append((name, value))
            except ValueError:
                continue  # a malformed value is dropped, never trusted
        pairs = rest
    props = _pairs_to_properties(pairs)
    if extra:
        props = {**extra, **(props or {})}
    return qos, props


def _pairs_to_properties(pairs: list) -> dict[str, Any] | None:
    props: dict[str, Any] = {}
    users = []
    for name, value in pairs:
        if name.lower() == "content-type" and "content_type" not in props:
            props["content_type"] = value
        else:
            users.append((name, value))
    if users:
        props["user_property"] = users
    return props or None


# The QoS of a retained message kept in the retained_kv bucket, when not 1 (the QoS a
# NATS message has in MQTT): jetstream/retained_kv.py.
QOS_HEADER = "Mqtt-Qos"


def kv_properties(headers: bytes | None) -> tuple[int, dict[str, Any] | None]:
    """A retained_kv value's QoS and MQTT 5 properties. The bucket's own headers
    (KV-Operation, Nats-Rollup, Nats-TTL, ...) are not the message's."""
    if not headers:
        return 1, None
    _status, _description, pairs = parse_headers(headers)
    qos = 1
    kept = []
    for name, value in pairs:
        lower = name.lower()
        if lower == QOS_HEADER.lower():
            qos = 0 if value.strip() == "0" else 2 if value.strip() == "2" else 1
        elif not lower.startswith(("kv-", "nats-")):
            kept.append((name, value))
    return qos, _pairs_to_properties(kept)


def qos_pairs(qos: int) -> list:
    return [] if qos == 1 else [(QOS_HEADER, str(qos))]
