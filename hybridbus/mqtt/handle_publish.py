"""PUBLISH and its acknowledgement flows, both directions (§3.3 - §3.7, §4.3).

Inbound QoS 2 uses the spec's "Method B" ordering of 4.3.3: the message is
routed when the PUBLISH arrives and its packet identifier is kept (in the store
for a persistent session) until PUBREL, so a re-sent PUBLISH with the same
identifier is acknowledged again but never routed twice [MQTT-4.3.3-9].
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from hybridbus.codec.mqtt import Puback, Pubcomp, Publish, PublishRun, Pubrec, Pubrel
from hybridbus.codec.mqtt.packets import PUBLISH
from hybridbus.mqtt.message import MqttMessage
from hybridbus.mqtt.systopics import is_sys_topic
from hybridbus.subjects import is_valid_topic_name, topic_to_subject

if TYPE_CHECKING:
    from hybridbus.mqtt.connection import MqttConnection

log = logging.getLogger("hybridbus.mqtt")

TOPIC_NAME_INVALID = 0x90
PROTOCOL_ERROR = 0x82
NOT_AUTHORIZED = 0x87
QOS_NOT_SUPPORTED = 0x9B
TOPIC_ALIAS_INVALID = 0x94
PACKET_ID_NOT_FOUND = 0x92
# In a connection's queue of pending acks (MqttConnection.acks), the QoS field holds
# 1 for PUBACK, 2 for PUBREC, and this for a PUBCOMP that waits on the store.
PUBCOMP_ACK = 3
NO_MATCHING_SUBSCRIBERS = 0x10
RECEIVE_MAXIMUM_EXCEEDED = 0x93

# Topic -> subject entries remembered per connection.
TOPIC_CACHE_SIZE = 64


def handle_publish(conn: MqttConnection, p: Publish) -> None:
    topic = p.topic
    props = p.properties
    if props and conn.level == 5:
        topic = conn.resolve_topic_alias(topic, props)
        if topic is None:
            return
    # Devices publish to a handful of topics over and over: remember their subjects.
    topics = conn.topics
    subject = topics.get(topic)
    if subject is None:
        if not is_valid_topic_name(topic):
            # [MQTT-3.3.2-2] no wildcards in a topic name; [MQTT-4.7.3-1] not empty.
            conn.protocol_error(f"invalid topic name {topic!r} [MQTT-3.3.2-2]", TOPIC_NAME_INVALID)
            return
        if is_sys_topic(topic):
            # The broker's own $SYS tree (never cached, so checked on every PUBLISH to
            # it): refused like a denied publish, 5.0 0x87, 3.1.1 acked and dropped
            # [MQTT-3.3.5-2].
            log.info("%s - publish to %r refused: $SYS is the broker's", conn.describe(), topic)
            if p.qos:
                conn.ack_inbound(p.packet_id, p.qos, None, NOT_AUTHORIZED)
            return
        subject = topic_to_subject(topic)
        if len(topics) >= TOPIC_CACHE_SIZE:
            topics.clear()
        topics[topic] = subject
    qos = p.qos
    session = conn.session
    conn.in_msgs += 1
    conn.in_bytes += len(p.payload)
    if qos == 2:
        if p.packet_id in session.incoming:
            # A re-sent QoS 2 PUBLISH before PUBREL: acknowledge, do not keep it again.
            conn.ack_inbound(p.packet_id, 2, None, 0)
            return
    if qos and conn.level == 5 and len(conn.acks) + len(session.incoming) >= conn.receive_maximum:
        # [MQTT-3.3.4-9] more unacknowledged QoS 1/2 PUBLISHes than our Receive Maximum.
        conn.protocol_error("receive maximum exceeded [MQTT-3.3.4-9]", RECEIVE_MAXIMUM_EXCEEDED)
        return
    if qos == 2:
        if conn.server.options.mqtt.reject_qos2_publish:
            conn.protocol_error("QoS 2 publish rejected by configuration", QOS_NOT_SUPPORTED)
            return
    server = conn.server
    if conn.perms is not None and not server.may_publish(conn, subject, None):
        log.info("%s - publish to %r denied", conn.describe(), topic)
        if qos:
            conn.ack_inbound(p.packet_id, qos, None, NOT_AUTHORIZED)
        return
    msg = MqttMessage(topic, p.payload, qos, p.retain, conn.forwardable_properties(props), session)
    if qos == 2:
        ticket = session.broker.receive_qos2(msg, subject, p.packet_id)
        conn.ack_inbound(p.packet_id, 2, ticket, 0)
        return
    ticket = session.broker.publish(msg, subject)
    if qos:
        conn.ack_inbound(p.packet_id, qos, ticket, 0)


def handle_publish_run(conn: MqttConnection, run: PublishRun) -> int:
    """Consecutive PUBLISHes from one read, to one topic at one QoS (0 or 1), none
    retained and none with properties: checked once, routed once (Server.route_run),
    acknowledged in order. Anything that needs a per-message decision (a topic not
    seen yet, publish permissions, a 5.0 Receive Maximum the run would exceed, a
    subject a JetStream stream captures: each message is appended and acknowledged on
    its own) takes handle_publish one by one instead. Returns how many of the run were handled; the
    rest waits for the read loop's budget check (core/flow.py)."""
    topic = run.topic
    subject = conn.topics.get(topic)
    session = conn.session
    qos = run.qos
    payloads = run.payloads
    if (
        subject is None
        or conn.perms is not None
        or (
            qos
            and conn.level == 5
            and len(conn.acks) + len(session.incoming) + len(run) > conn.receive_maximum
        )
        or _captured(conn, subject)
    ):
        handled = 0
        for p in run.expand():
            if conn.closing:
                break
            handle_publish(conn, p)
            handled += 1
            if conn.holds:
                break  # a fan-out job or a congested receiver: the rest waits
        return max(handled, 1)
    msgs = MqttMessage.many(topic, payloads, qos, session)
    ticket, routed = session.broker.publish_run(msgs, subject)
    if routed < len(payloads):
        payloads = payloads[:routed]
    conn.in_msgs += routed
    conn.in_bytes += sum(map(len, payloads))
    if qos:
        conn.ack_inbound_run(run.packet_ids[:routed], ticket)
    return routed


def like_publishes(packets: list, i: int) -> int:
    """Where the PUBLISHes like ``packets[i - 1]`` (same topic and QoS, not retained, no
    properties) that follow it end."""
    first = packets[i - 1]
    topic, qos = first.topic, first.qos
    n = len(packets)
    while i < n:
        q = packets[i]
        if q.packet_type != PUBLISH or q.qos != qos or q.topic != topic:
            break
        if q.retain or q.properties:
            break
        i += 1
    return i


def _captured(conn: MqttConnection, subject: str) -> bool:
    """Whether a JetStream stream captures `subject` (jetstream/capture.py CaptureIndex)."""
    index = getattr(conn.account.jetstream, "capture_index", None)  # its account's
    return index is not None and index.covers(subject)


def wrong_ack(conn: MqttConnection, packet_id: int, qos: int, name: str) -> bool:
    """True (and the connection closed) when `name`, an acknowledgement of the QoS
    `qos` flow, names a message in flight at the other QoS: PUBACK for QoS 2, PUBREC
    or PUBCOMP for QoS 1. A protocol violation closes the connection [MQTT-4.8.0-1]
    (5.0: DISCONNECT 0x82, section 4.13), as Mosquitto does; an id not in flight at
    all is only logged (a late ack after a re-send)."""
    out = conn.session.inflight.get(packet_id)
    if out is None or out.qos == qos:
        return False
    conn.protocol_error(
        f"{name} for QoS {out.qos} message {packet_id} [MQTT-4.8.0-1]", PROTOCOL_ERROR
    )
    return True


def handle_puback(conn: MqttConnection, p: Puback) -> None:
    if not conn.session.on_puback(p.packet_id):
        if wrong_ack(conn, p.packet_id, 1, "PUBACK"):
            return
        log.debug("%s - PUBACK for unknown packet id %d", conn.describe(), p.packet_id)


def handle_puback_run(conn: MqttConnection, run: list[Puback]) -> None:
    """Several PUBACKs in one read (a subscriber working through its window)."""
    unknown = conn.session.on_puback_many([p.packet_id for p in run])
    for packet_id in unknown:
        if wrong_ack(conn, packet_id, 1, "PUBACK"):
            return
        log.debug("%s - PUBACK for unknown packet id %d", conn.describe(), packet_id)


def handle_pubrec(conn: MqttConnection, p: Pubrec) -> None:
    if wrong_ack(conn, p.packet_id, 2, "PUBREC"):
        return
    failed = p.reason_code >= 0x80
    if not conn.session.on_pubrec(p.packet_id, failed) and not failed:
        # [MQTT-4.3.3-?] answer PUBREC for an unknown id with PUBREL (5.0: 0x92).
        conn.send_pubrel(p.packet_id, PACKET_ID_NOT_FOUND)


def handle_pubrel(conn: MqttConnection, p: Pubrel) -> None:
    session = conn.session
    entry = session.incoming.pop(p.packet_id, None)
    ticket = None if entry is None else session.broker.release_qos2(session, entry)
    # [MQTT-4.3.3-11] PUBCOMP answers every PUBREL, even a repeated one; it waits until
    # the message is delivered and its stored copy gone for good (release_qos2).
    reason = 0 if entry is not None else PACKET_ID_NOT_FOUND
    conn.ack_inbound(p.packet_id, PUBCOMP_ACK, ticket, reason)


def handle_pubcomp(conn: MqttConnection, p: Pubcomp) -> None:
    if not conn.session.on_pubcomp(p.packet_id):
        if wrong_ack(conn, p.packet_id, 2, "PUBCOMP"):
            return
        log.debug("%s - PUBCOMP for unknown packet id %d", conn.describe(), p.packet_id)
