"""SUBSCRIBE and UNSUBSCRIBE, with retained replay (§3.8 - §3.11)."""

from __future__ import annotations

import logging
from itertools import chain
from typing import TYPE_CHECKING

from hybridbus.codec.mqtt import Subscribe, Unsubscribe, encode_suback, encode_unsuback
from hybridbus.subjects import filter_to_subjects, is_valid_queue_name, is_valid_topic_filter

if TYPE_CHECKING:
    from hybridbus.mqtt.connection import MqttConnection

log = logging.getLogger("hybridbus.mqtt")

FAILURE = 0x80  # 3.1.1 SUBACK failure; 5.0 "unspecified error"
TOPIC_FILTER_INVALID = 0x8F
NOT_AUTHORIZED = 0x87
SHARED_NOT_SUPPORTED = 0x9E
NO_SUBSCRIPTION_EXISTED = 0x11
QUOTA_EXCEEDED = 0x97
SHARE_PREFIX = "$share/"


def parse_shared(topic_filter: str) -> tuple[str | None, str]:
    """`$share/{group}/{filter}` -> (group, filter); (None, filter) for a plain filter.

    Returns ("", "") for a malformed shared filter [MQTT-4.8.2-1] [MQTT-4.8.2-2], and
    for a share name that cannot be a NATS queue group name (it holds whitespace):
    the group is the same group NATS queue subscribers join, so it must be one."""
    if not topic_filter.startswith(SHARE_PREFIX):
        return None, topic_filter
    rest = topic_filter[len(SHARE_PREFIX) :]
    group, sep, inner = rest.partition("/")
    if not sep or "+" in group or "#" in group or not inner or not is_valid_queue_name(group):
        return "", ""
    return group, inner


def handle_subscribe(conn: MqttConnection, p: Subscribe) -> None:
    session = conn.session
    broker = session.broker  # its account's
    server = conn.server
    level = conn.level
    sub_id = p.properties.get("subscription_identifier", 0) if level == 5 else 0
    if isinstance(sub_id, list):
        sub_id = sub_id[0] if sub_id else 0
    codes: list[int] = []
    replays = []
    for s in p.subscriptions:
        # Shared subscriptions are 5.0's, but like Mosquitto we honour them at every level.
        group, inner = parse_shared(s.topic_filter)
        if group == "" or not is_valid_topic_filter(inner):
            codes.append(TOPIC_FILTER_INVALID if level == 5 else FAILURE)
            continue
        if conn.perms is not None and not all(
            server.may_subscribe(conn, subject, group) for subject in filter_to_subjects(inner)
        ):
            log.info("%s - subscription to %r denied", conn.describe(), s.topic_filter)
            codes.append(NOT_AUTHORIZED if level == 5 else FAILURE)
            continue
        if group is not None and s.no_local:
            # [MQTT-3.8.3-4] No Local on a shared subscription is a protocol error.
            conn.protocol_error("no local on a shared subscription [MQTT-3.8.3-4]", 0x82)
            return
        limit = server.options.max_subscriptions
        if limit > 0 and s.topic_filter not in session.subs and len(session.subs) >= limit:
            # max_subscriptions counts MQTT filters as it counts NATS SUBs.
            log.info("%s - maximum subscriptions exceeded", conn.describe())
            codes.append(QUOTA_EXCEEDED if level == 5 else FAILURE)
            continue
        qos = min(s.qos, 2)
        if qos == 2 and server.options.mqtt.downgrade_qos2_subscribe:
            qos = 1
        existed = broker.subscribe(
            session,
            s.topic_filter,
            qos,
            no_local=s.no_local,
            retain_as_published=s.retain_as_published,
            retain_handling=s.retain_handling,
            sub_id=sub_id,
            queue=group,
            inner_filter=inner,
        )
        codes.append(qos)
        # Retained replay: handling 0 always, 1 only for a new subscription, 2 never
        # (5.0 3.8.3.1); shared subscriptions get none [MQTT-3.8.4-?].
        if group is None and (s.retain_handling == 0 or (s.retain_handling == 1 and not existed)):
            replays.append((inner, qos))
    ticket = broker.save(session)
    if ticket is not None and not ticket.done:
        # The session's state is in a JetStream domain (mqtt/jspersist.py): SUBACK once
        # its record and durable consumer are stored, so that what is published after
        # SUBACK reaches it even from another node.
        ticket.on_done(lambda: _subacked(conn, p, codes, replays, sub_id, ticket))
        return
    _subacked(conn, p, codes, replays, sub_id, ticket)


def _subacked(conn: MqttConnection, p: Subscribe, codes, replays, sub_id, ticket) -> None:
    session = conn.session
    if session is None or conn.closing:
        return
    broker = session.broker
    level = conn.level
    if ticket is not None and ticket.failed:
        # Not stored: the QoS 1/2 filters are refused (0x80, both levels) and dropped.
        log.error("%s - subscription state not stored; refusing QoS 1/2 filters", conn.describe())
        for i, s in enumerate(p.subscriptions):
            if 0 < codes[i] < 0x80:
                codes[i] = FAILURE
                broker.unsubscribe(session, s.topic_filter)
        replays = [(inner, qos) for inner, qos in replays if qos == 0]
    conn.queue(encode_suback(p.packet_id, codes, None, level))
    for inner, qos in replays:
        for msg in chain(broker.retained.match(inner), broker.sys_topics.match(inner)):
            if msg.expires_at and msg.expired():
                continue
            # Retained messages sent on subscribe carry RETAIN=1 [MQTT-3.3.1-8].
            session.send(msg, min(qos, msg.qos), True, [sub_id] if sub_id else None)
    if ticket is not None:
        conn.server.schedule_flush()  # answered outside the read (no flush at its end)


def handle_unsubscribe(conn: MqttConnection, p: Unsubscribe) -> None:
    session = conn.session
    broker = session.broker  # its account's
    codes = []
    for topic_filter in p.topic_filters:
        existed = broker.unsubscribe(session, topic_filter)
        codes.append(0 if existed else NO_SUBSCRIPTION_EXISTED)
    ticket = broker.save(session)
    # [MQTT-3.10.4-4] UNSUBACK even when nothing was removed (after the session's
    # record in a JetStream domain, so a move to another node sees the change).
    if ticket is not None and not ticket.done:
        ticket.on_done(lambda: _unsubacked(conn, p.packet_id, codes))
    else:
        _unsubacked(conn, p.packet_id, codes)


def _unsubacked(conn: MqttConnection, packet_id: int, codes: list[int]) -> None:
    if not conn.closing:
        conn.queue(encode_unsuback(packet_id, codes, None, conn.level))
        conn.server.schedule_flush()
