"""The message side of MQTT state in a JetStream domain (``jspersist.py`` has the
sessions): QoS 1/2 PUBLISHes into ``HB_msgs`` and back out of each persistent
session's durable consumer, PUBREL records (``HB_out``), inbound QoS 2 kept until
PUBREL (``HB_qos2in``), and retained messages (``HB_rmsgs``) followed by every node.

``JsMessages`` is a mixin of ``JetStreamPersistence``: it uses its ``js`` (the
``JsClient``), ``broker``, ``hub``, ``dlv_acks``, ``q2in`` and ``rseq``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import msgpack

from hybridbus.core.jsclient import JsError
from hybridbus.mqtt.message import MqttMessage
from hybridbus.mqtt.persistence import Ticket
from hybridbus.mqtt.session import RELEASED, Outgoing, Session, _delivery
from hybridbus.subjects import subject_matches, topic_to_subject

log = logging.getLogger("hybridbus.mqtt")

MSGS, Q2IN, OUT, RMSGS = "HB_msgs", "HB_qos2in", "HB_out", "HB_rmsgs"
PER_SUBJECT_FULL = 10077  # discard new per subject: this QoS 2 id is stored already
NO_MESSAGE = 10037
PENDING = float("inf")  # a retained write of ours awaiting its PubAck

_pack = msgpack.Packer(use_bin_type=True).pack


def _unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


def _ns(seconds: float) -> int:
    return int(seconds * 1e9)


def _wall_expiry(msg: MqttMessage) -> float:
    return (msg.expires_at - time.monotonic() + time.time()) if msg.expires_at else 0


def _message(rec: list, origin: Any = None) -> MqttMessage:
    topic, payload, qos, retain, props, expires = rec[:6]
    msg = MqttMessage(topic, payload, qos, retain, props, origin)
    if expires:
        msg.expires_at = time.monotonic() + (expires - time.time())
    return msg


def ack_reply(reply: str) -> str:
    """The ``$JS.ACK`` reply of a delivery. nats-server sends a consumer's delivery over
    a leaf link with ``<reply>@<stream subject>`` as the reply (the deliver subject is
    the LMSG subject); the part after ``@`` is not ours to ack to."""
    at = reply.find("@")
    return reply if at < 0 else reply[:at]


def _ack_tokens(reply: str) -> tuple[int, int]:
    """(delivered count, stream seq) of a ``$JS.ACK`` reply, v1 (9 tokens) or v2."""
    t = reply.split(".")
    base = 2 if len(t) == 9 else 4
    return int(t[base + 2]), int(t[base + 3])


def _failure(fut: asyncio.Future) -> BaseException | None:
    """A finished future's error (cancelled counts as one), or None."""
    if fut.cancelled():
        return asyncio.CancelledError()
    return fut.exception()


def _qos_header(headers: bytes) -> int:
    """The QoS an MQTT message crossed the leaf link with (``Nmqtt-Pub``), or -1."""
    i = headers.find(b"Nmqtt-Pub:")
    if i < 0:
        return -1
    value = headers[i + 10 : i + 14].strip()[:1]
    return int(value) if value.isdigit() else -1


class SessionState:
    """A session's part in the domain (``Session.durable``): its consumer, the
    subscription of its deliver subject, and the messages the consumer gave it."""

    __slots__ = ("key", "session", "cons", "filters", "dsub", "by_sseq", "lock", "will", "q2")

    def __init__(self, key: str, session: Session) -> None:
        self.key = key
        self.session = session
        self.cons: str | None = None  # the durable consumer's name, once it exists
        self.filters: list[str] = []  # its filter_subjects
        self.dsub: Any = None  # our subscription of $HB.dlv.<key> while connected
        self.by_sseq: dict[int, Outgoing] = {}  # HB_msgs seq -> the message it became
        self.lock: asyncio.Lock | None = None  # one record/consumer write at a time
        self.will: list | None = None
        # Whether HB_out / HB_qos2in may hold records of the session (its record's "q2"):
        # a CONNECT reads them back only then. Unknown counts as yes.
        self.q2 = True

    def skips(self, subs: list, mqtt_msg: Any, headers: bytes | None) -> bool:
        """The router must not deliver what the consumer brings (design 2.3 step 4): an
        MQTT QoS 1/2 message (stored in HB_msgs) that one of the session's QoS 1/2
        unshared filters matches. NATS messages (no ``Nmqtt-Pub``) and QoS 0 ones
        still come through the router."""
        if self.cons is None:
            return False
        if mqtt_msg is not None:
            if not mqtt_msg.qos:
                return False
        elif headers is None or _qos_header(headers) < 1:
            return False
        for sub in subs:
            if sub.qos and sub.queue is None:
                return True
        return False


class JsMessages:
    """Messages, QoS 2 and retained (the module docstring); mixed into
    JetStreamPersistence."""

    js: Any
    broker: Any
    hub: Any
    dlv_acks: dict
    q2in: dict
    rseq: dict
    rlater: dict
    _q2in_next: int

    # -- messages ---------------------------------------------------------------------

    def store_message(self, msg: MqttMessage, subject: str) -> None:
        """A QoS 1/2 MQTT PUBLISH into HB_msgs, once (hot path: no future, no task)."""
        origin = msg.origin
        src = origin.key if type(origin) is Session else ""
        record = _pack(
            [msg.topic, msg.payload, msg.qos, msg.retain, msg.properties, _wall_expiry(msg), src]
        )
        ticket = self._writing()
        if ticket is None:
            self.js.send("$HB.msgs." + subject, record)
            return
        ticket.pending += 1
        self.js.publish("$HB.msgs." + subject, record, None, ticket.durable)

    def _subscribe_dlv(self, st: SessionState) -> None:
        st.dsub = self.js.subscribe("$HB.dlv." + st.key, lambda s, r, h, p: self._deliver(st, r, p))

    def _deliver(self, st: SessionState, reply: str | None, payload: bytes) -> None:
        """A message from the session's consumer: to the device as the router would
        have sent it (QoS, RETAIN, subscription ids from the filters it matches)."""
        session = st.session
        if session.durable is not st or session.conn is None or not reply:
            return  # let go meanwhile: ack_wait brings it back to whoever holds it
        if not reply.startswith("$JS.ACK."):
            return  # heartbeat or flow control (not asked for)
        reply = ack_reply(reply)
        delivered, sseq = _ack_tokens(reply)
        out = st.by_sseq.get(sseq)
        if out is not None:
            # Redelivered after ack_wait while still unacknowledged here: never re-sent
            # on the same connection (MQTT 5 4.4: only on reconnect); the newer reply acks.
            entry = self.dlv_acks.get(out)
            if entry is not None:
                self.dlv_acks[out] = (reply, st, sseq)
            return
        try:
            rec = _unpack(payload)
            msg = _message(rec)
            src = rec[6]
        except Exception:
            log.error("unreadable MQTT message %d in %s skipped", sseq, MSGS)
            self.js.send(reply, b"")
            return
        subject = topic_to_subject(msg.topic)
        perms = session.perms
        subs = [
            sub
            for subs in session.subs.values()
            for sub in subs
            if sub.queue is None
            and subject_matches(sub.subject, subject)
            and not (sub.skips_dollar and subject[:1] == "$")
            and not (sub.no_local and src == session.key)
        ]
        if (
            not subs
            or (msg.expires_at and msg.expired())
            or (perms is not None and perms.filters_delivery and not perms.may_receive(subject))
        ):
            self.js.send(reply, b"")  # not for this session (any more): done
            return
        qos, retain, sub_ids = _delivery(subs, msg)
        pid = session._alloc_pid() if qos else 0
        if not pid:
            session.send(msg, 0, retain, sub_ids)
            self.js.send(reply, b"")
            return
        out = Outgoing(pid, msg, qos, retain, sub_ids)
        out.seq = sseq
        out.sent = delivered > 1  # a redelivery (a move, a crash) carries DUP=1
        st.by_sseq[sseq] = out
        self.dlv_acks[out] = (reply, st, sseq)
        session._place(out)

    # -- outgoing QoS 1/2 -------------------------------------------------------------

    def add_outgoing(self, session: Session, out: Outgoing) -> None:
        """Messages the router gives a persistent session (NATS ones, QoS 1 to a QoS 0
        filter...) are kept in memory only: HB_msgs has the MQTT ones."""

    def add_outgoing_many(self, session: Session, outs: list[Outgoing]) -> None:
        pass

    def remove_outgoing(self, session: Session | None, out: Outgoing) -> None:
        entry = self.dlv_acks.pop(out, None)
        if entry is not None:
            self.js.send(entry[0], b"")  # PUBACK (or PUBREC failed): +ACK the consumer
            entry[1].by_sseq.pop(entry[2], None)
        elif out.state == RELEASED and out.seq:
            fut = self.js.request(f"STREAM.MSG.DELETE.{OUT}", {"seq": out.seq})
            self._forget(fut, "delete of a PUBREL record")

    def remove_outgoing_many(self, outs: list[Outgoing]) -> None:
        for out in outs:
            self.remove_outgoing(None, out)

    def mark_released(self, session: Session, out: Outgoing) -> None:
        """PUBREC for a consumer's QoS 2 message: the PUBREL owed is recorded in HB_out,
        then the consumer's message is acked and PUBREL goes out (session.released)."""
        entry = self.dlv_acks.pop(out, None)
        marked = self._mark_q2(session)

        def acked(answer: dict | None, err: JsError | None) -> None:
            if marked is not None and err is None:
                if not marked.done():
                    marked.add_done_callback(lambda f: acked(answer, _failure(f)))
                    return
                err = _failure(marked)
            if entry is not None:
                if err is None:
                    self.js.send(entry[0], b"")
                    entry[1].by_sseq.pop(entry[2], None)
                else:
                    self.dlv_acks[out] = entry
            session.released(out, answer["seq"] if answer else 0, err)

        self.js.publish("$HB.out." + session.key, _pack({"p": out.packet_id}), None, acked)

    # -- inbound QoS 2 ----------------------------------------------------------------

    def _q2in_token(self, subject: str) -> int:
        self._q2in_next += 1
        self.q2in[self._q2in_next] = subject
        return self._q2in_next

    def add_incoming(self, session: Session, packet_id: int, msg: MqttMessage) -> tuple:
        """Keep an inbound QoS 2 message until PUBREL: (token, the Ticket PUBREC waits
        for). A copy already stored (a re-send after a move) counts as stored."""
        subject = f"$HB.q2in.{session.key}.{packet_id}"
        record = {
            "p": packet_id,
            "m": [msg.topic, msg.payload, 2, msg.retain, msg.properties, _wall_expiry(msg)],
        }
        ticket = Ticket()
        ticket.pending = 1
        marked = self._mark_q2(session)
        if marked is not None:
            ticket.pending += 1
            marked.add_done_callback(lambda f: ticket.durable(0, _failure(f)))

        def acked(answer: dict | None, err: JsError | None) -> None:
            ticket.durable(0, None if err is None or err.err_code == PER_SUBJECT_FULL else err)

        self.js.publish(subject, _pack(record), None, acked)
        return self._q2in_token(subject), ticket

    def _mark_q2(self, session: Session) -> asyncio.Future | None:
        """Before a session's first QoS 2 record: its own record says it may have some
        (``q2``), so a CONNECT reads them back. None when it says so already."""
        st = session.durable
        if st is None or st.q2 or not session.persistent or not session.seq:
            return None
        st.q2 = True
        return self.hub.loop.create_task(self._rewrite_record(session, st))

    def remove_incoming(self, session: Session, token: int) -> Ticket:
        ticket = Ticket()
        subject = self.q2in.pop(token, None)
        if subject is None:
            ticket.done = True
            return ticket
        ticket.pending = 1
        fut = self.js.request(f"STREAM.PURGE.{Q2IN}", {"filter": subject})
        fut.add_done_callback(lambda f: ticket.durable(0, f.exception()))
        return ticket

    # -- retained ---------------------------------------------------------------------

    def set_retained(self, msg: MqttMessage) -> int:
        record = [msg.topic, msg.payload, msg.qos, msg.properties]
        self._retain(msg.topic, record)
        return 0

    def clear_retained(self, topic: str, seq: int) -> None:
        self._retain(topic, [topic])  # the tombstone other nodes clear it by

    def _retain(self, topic: str, record: list) -> None:
        ticket = self._writing()
        if ticket is not None:
            ticket.pending += 1
        self.rseq[topic] = PENDING

        def acked(answer: dict | None, err: JsError | None) -> None:
            if ticket is not None:
                ticket.durable(0, err)
            if self.rseq.get(topic) == PENDING:
                self.rseq[topic] = answer["seq"] if answer else 0
            later = self.rlater.pop(topic, None)
            if later is not None:
                self._apply_retained(topic, *later)

        self.js.publish("$HB.rmsgs." + topic_to_subject(topic), _pack(record), None, acked)

    async def _watch_retained(self) -> None:
        subject = f"$HB.rdlv.{self.token}"
        if self.rsub is None:
            self.rsub = self.js.subscribe(subject, self._on_retained)
        name = f"HBR_{self.token}"
        config = {
            "name": name,
            "deliver_subject": subject,
            "deliver_policy": "last_per_subject",
            "ack_policy": "none",
            "filter_subject": "$HB.rmsgs.>",
            "inactive_threshold": _ns(30.0),
            "mem_storage": True,
            "num_replicas": 1,
        }
        await self.js.request(
            f"CONSUMER.CREATE.{RMSGS}.{name}", {"stream_name": RMSGS, "config": config}
        )
        self.rcons = name

    def _on_retained(self, subject: str, reply: str | None, headers, payload: bytes) -> None:
        try:
            record = _unpack(payload)
            seq = _ack_tokens(ack_reply(reply))[1] if reply else 0
        except Exception:
            log.error("unreadable retained record on %r skipped", subject)
            return
        topic = record[0]
        known = self.rseq.get(topic, 0)
        if known == PENDING:
            held = self.rlater.get(topic)
            if held is None or held[0] < seq:
                self.rlater[topic] = (seq, record)
            return
        if seq and seq <= known:
            return
        self._apply_retained(topic, seq, record)

    def _apply_retained(self, topic: str, seq: int, record: list) -> None:
        if seq and seq <= self.rseq.get(topic, 0):
            return
        self.rseq[topic] = seq
        retained = self.broker.retained
        if len(record) == 1:
            retained.clear(topic)
        else:
            retained.set(MqttMessage(topic, record[1], record[2], True, record[3]), seq)
