"""MQTT state in the stream store, and the tickets that gate acknowledgements.

Four streams, all internal (their names start with `$MQTT_`, as nats-server's
do, so they show in monitoring and never collide with a user's streams):

| stream         | subject                       | one record per                      |
|----------------|-------------------------------|-------------------------------------|
| `$MQTT_sess`   | `$MQTT.sess.all`              | persistent session (latest wins)    |
| `$MQTT_out`    | `$MQTT.out.<key>.m` / `.r`    | QoS 1/2 message owed to a session / |
|                |                               | QoS 2 message released (PUBREL due) |
| `$MQTT_qos2in` | `$MQTT.q2in.<key>`            | inbound QoS 2 id awaiting PUBREL    |
| `$MQTT_rmsgs`  | `$MQTT.rmsgs.<topic subject>` | retained topic (latest wins)        |

`<key>` is a hash of the client id (ids may hold any character). Records are
msgpack maps with short keys (the hot `.m` record is a fixed-order array),
written once and deleted when their job is done; the store compacts dead
records away. At start, ``load`` replays the streams
into sessions (offline, subscribed, with their queues) and the retained index.

A ``Ticket`` collects every append one inbound PUBLISH causes; it is done when
the store reports each of them durable under its sync policy.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgpack

from hybridbus.mqtt.message import MqttMessage
from hybridbus.mqtt.session import RELEASED, MqttSubscription, Outgoing, Session
from hybridbus.store.api import StreamConfig
from hybridbus.store.errors import (
    LimitExceeded,
    MsgSizeExceeded,
    StoreClosed,
    StoreError,
    StoreFull,
    StoreWriteError,
    StreamNotFound,
)
from hybridbus.subjects import filter_skips_dollar, filter_to_subjects, topic_to_subject

if TYPE_CHECKING:
    from hybridbus.mqtt.broker import MqttBroker

log = logging.getLogger("hybridbus.mqtt")

SESSIONS = "$MQTT_sess"
SESSION_SUBJECT = "$MQTT.sess.all"
OUTGOING = "$MQTT_out"
QOS2_IN = "$MQTT_qos2in"
RETAINED = "$MQTT_rmsgs"

STREAMS = (
    # One subject for every session's record: a subject each cost the store ~0.5 KB
    # of per-subject state per session (a fleet's memory). The session deletes its
    # previous record itself; stores written before kept one `$MQTT.sess.<key>` each.
    StreamConfig(name=SESSIONS, subjects=["$MQTT.sess.>"]),
    StreamConfig(name=OUTGOING, subjects=["$MQTT.out.>"]),
    StreamConfig(name=QOS2_IN, subjects=["$MQTT.q2in.>"]),
    StreamConfig(name=RETAINED, subjects=["$MQTT.rmsgs.>"], max_msgs_per_subject=1),
)

_pack = msgpack.Packer(use_bin_type=True).pack


def subs_record(session: Session) -> dict:
    """A session's filters as its record keeps them (``subscriptions_of`` reads them
    back): filter -> [qos, no local, retain as published, retain handling,
    subscription id, share group or None]."""
    subs = {}
    for topic_filter, entries in session.subs.items():
        first = entries[0]
        subs[topic_filter] = [
            first.qos,
            first.no_local,
            first.retain_as_published,
            first.retain_handling,
            first.sub_id,
            first.queue,
        ]
    return subs


def subscriptions_of(session: Session, topic_filter: str, opts: list) -> list[MqttSubscription]:
    """The router subscriptions of one stored filter; `opts` as a session record keeps
    them: [qos, no local, retain as published, retain handling, subscription id, share
    group or None] (also the JetStream records, mqtt/jspersist.py)."""
    qos, nl, rap, rh, sub_id, queue = opts
    inner = topic_filter.split("/", 2)[2] if queue is not None else topic_filter
    return [
        MqttSubscription(
            subject,
            queue,
            session,
            topic_filter,
            qos,
            no_local=nl,
            retain_as_published=rap,
            retain_handling=rh,
            sub_id=sub_id,
            skips_dollar=filter_skips_dollar(inner),
        )
        for subject in filter_to_subjects(inner)
    ]


def _unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


def _outgoing_record(out: Outgoing) -> list:
    """One record per message owed: a msgpack array (packs at twice the speed of a
    map, and this is written for every QoS 1/2 message a persistent session gets):
    [packet id, qos, retain, topic, payload, properties, expiry (wall clock, so that
    a restart keeps counting [MQTT-3.3.2-5]; 0 = none), subscription ids], and for a
    QoS 2 message delivered on its publisher's PUBREL, the seq of the publisher's
    stored copy (MqttBroker.release_qos2)."""
    msg = out.msg
    record = [
        out.packet_id,
        out.qos,
        out.retain,
        msg.topic,
        msg.payload,
        msg.properties,
        _wall_expiry(msg),
        out.sub_ids,
    ]
    if msg.q2in_seq:
        record.append(msg.q2in_seq)
    return record


def _wall_expiry(msg: MqttMessage) -> float:
    return (msg.expires_at - time.monotonic() + time.time()) if msg.expires_at else 0


def _restore_expiry(msg: MqttMessage, expires: float, now_wall: float) -> None:
    if expires:
        msg.expires_at = time.monotonic() + (expires - now_wall)


class Ticket:
    """Durability of the appends made for the inbound PUBLISHes of one read; no
    Future, no task.

    One ticket is shared by every QoS 1/2 PUBLISH a connection's read brings (a busy
    publisher sends hundreds per read): each append still reports its own durability
    (`durable`), and the ticket is done when the last of them has. A failed write
    fails the whole ticket: the read's records were all in it, so none is stored, and
    a 5.0 publisher gets error acks (a 3.1.1 publisher is disconnected) and sends them
    again. An append the store refuses at once fails only its own PUBLISH (see
    Persistence.end), with `reason`: the MQTT 5 reason code its PUBACK/PUBREC
    carries (0: Unspecified error)."""

    __slots__ = ("pending", "done", "failed", "callbacks", "reason")

    def __init__(self) -> None:
        self.pending = 0
        self.done = False
        self.failed = False
        self.callbacks: list | None = None
        self.reason = 0

    def durable(self, seq: int, err: BaseException | None) -> None:
        if err is not None:
            self.failed = True
        self.pending -= 1
        if self.pending <= 0 and not self.done:
            self._finish()

    def _finish(self) -> None:
        self.done = True
        callbacks, self.callbacks = self.callbacks, None
        for cb in callbacks or ():
            cb()

    def on_done(self, cb) -> None:
        if self.done:
            cb()
        elif self.callbacks is None:
            self.callbacks = [cb]
        elif self.callbacks[-1] != cb:  # one call per waiter, however many acks it holds
            self.callbacks.append(cb)


# MQTT 5 PUBACK/PUBREC reason codes for an append a stream refuses. Only these are
# allowed in PUBACK (3.4.2.1) and PUBREC (3.5.2.1) [MQTT-3.4.2-1] [MQTT-3.5.2-1]:
# 0x95 Packet too large is not among them, so a message over a stream's
# max_msg_size is 0x97 too (a limit an administrator set, in the spec's words).
# 0x97 Quota exceeded: "An implementation or administrative imposed limit has been
# exceeded"; 0x83 Implementation specific error: "The PUBLISH is valid but the
# receiver is not willing to accept it".
QUOTA_EXCEEDED = 0x97
IMPLEMENTATION_SPECIFIC = 0x83
UNSPECIFIED_ERROR = 0x80


def refusal_reason(err: BaseException) -> int:
    """The MQTT 5 reason code for a store's refusal of an append: a limit (a stream's
    discard-new max_msgs/max_bytes/max_msgs_per_subject, its max_msg_size, the store's
    max_file_store/max_memory_store) is 0x97 Quota exceeded; a write that failed is
    0x80 Unspecified error; any other refusal (a sealed stream, an expectation header
    from a user property that does not hold, a rollup not allowed) is 0x83."""
    if isinstance(err, (LimitExceeded, MsgSizeExceeded, StoreFull)):
        return QUOTA_EXCEEDED
    if isinstance(err, (StoreWriteError, StoreClosed)) or not isinstance(err, StoreError):
        return UNSPECIFIED_ERROR
    return IMPLEMENTATION_SPECIFIC


class Durability:
    """What every MQTT persistence shares: the tickets that gate acknowledgements.

    ``Persistence`` (below) keeps MQTT state in the local store; ``JetStreamPersistence``
    (``mqtt/jspersist.py``, with ``mqtt { js_domain }``) in a JetStream domain. Both
    answer the same calls from ``MqttBroker`` and ``Session`` (begin/end/end_of_read,
    save_session, delete_session, add/remove_outgoing, mark_released,
    add/remove_incoming, set/clear_retained, load); ``remote`` says which one it is
    (the broker's few extra steps for a remote one: ``MqttBroker.publish``)."""

    remote = False  # MQTT state in a JetStream domain (jspersist.py), not in the store

    def __init__(self) -> None:
        self._collecting = False
        self._wrote = False  # the PUBLISH being handled appended something
        self._refused = False  # ... or the store refused one of its appends
        self._reason = 0  # ... and the MQTT 5 reason code of that refusal
        self._ticket: Ticket | None = None
        self.write_errors = 0

    def reveal(self) -> None:
        """MQTT is used (a CONNECT got past authentication)."""

    def close(self) -> None:
        """The server stops."""

    # -- tickets ----------------------------------------------------------------------

    def begin(self) -> None:
        """An inbound PUBLISH (or a run of them) starts: its appends go on the read's
        ticket."""
        self._collecting = True
        self._wrote = False
        self._refused = False
        self._reason = 0

    def end(self) -> Ticket | None:
        """The PUBLISH is handled: the ticket its ack must wait for, or None. One whose
        own append was refused gets a failed ticket of its own: the others of the read
        are acknowledged as usual."""
        self._collecting = False
        if self._refused:
            failed = Ticket()
            failed.failed = failed.done = True
            failed.reason = self._reason
            return failed
        if not self._wrote:
            return None
        return self._ticket

    def end_of_read(self) -> None:
        """Called once the server has handled a read (Server.flush): the next
        PUBLISH starts a new ticket."""
        self._ticket = None

    def _writing(self) -> Ticket | None:
        """The ticket an append made now must report to: the read's (opened here if
        need be) while a PUBLISH is handled, else None."""
        if not self._collecting:
            return None
        ticket = self._ticket
        if ticket is None or ticket.done:
            ticket = self._ticket = Ticket()
        self._wrote = True
        return ticket

    # -- a fan-out served over several turns of the loop (server/fanout.py) -----------

    def collecting(self) -> bool:
        """Whether a PUBLISH is being handled (its appends go on a ticket)."""
        return self._collecting

    def hold_ticket(self) -> Ticket:
        """The PUBLISH's ticket, held open until the fan-out's last slice releases it
        (``ticket.durable(0, None)``): its ack waits for every receiver's record."""
        ticket = self._writing()
        ticket.pending += 1
        return ticket

    def resume_ticket(self, ticket: Ticket) -> tuple:
        """A later slice of the fan-out: its appends go on `ticket` again. Returns the
        state to give back to pause_ticket."""
        state = (self._collecting, self._ticket, self._wrote, self._refused, self._reason)
        self._collecting, self._ticket, self._wrote, self._refused = True, ticket, False, False
        self._reason = 0
        return state

    def pause_ticket(self, state: tuple) -> None:
        if self._refused and self._ticket is not None:
            self._ticket.failed = True  # a receiver's record was refused: so is the ack
            self._ticket.reason = self._ticket.reason or self._reason
        self._collecting, self._ticket, self._wrote, self._refused, self._reason = state

    def current_ticket(self) -> Ticket | None:
        """The ticket of the PUBLISH being handled, if it has appended anything."""
        return self._ticket if self._collecting and self._wrote else None

    def join(self, append: Callable[[Any], int]) -> int:
        """An append to a stream that is not MQTT's own, caused by the PUBLISH being
        handled (a JetStream stream capturing it, the retained_kv bucket): run
        ``append(on_durable)`` so that the PUBLISH's ack waits until it is durable,
        as it waits for the MQTT records. A refusal (StoreError, re-raised for the
        caller) fails this PUBLISH's ack only, with ``refusal_reason``. Outside a
        PUBLISH (QoS 0 without properties, a will, a NATS message) it is a plain
        append: there is no ack to hold."""
        ticket = self._writing()
        try:
            seq = append(None if ticket is None else ticket.durable)
        except StoreError as err:
            if ticket is not None:
                self._refused = True
                self._reason = refusal_reason(err)
            raise
        if ticket is not None:
            ticket.pending += 1
        return seq


class Persistence(Durability):
    """MQTT state in the local stream store (the module docstring)."""

    def __init__(self, store: Any) -> None:
        super().__init__()
        self.store = store
        self.streams = {}
        for config in STREAMS:
            try:
                stream = store.stream(config.name)
            except StreamNotFound:
                stream = store.add_stream(config)
            if stream.config.max_msgs_per_subject != config.max_msgs_per_subject:
                stream = store.update_stream(config)  # a store from an older version
            self.streams[config.name] = stream
        self._hidden = not any(st.state().last_seq for st in self.streams.values())
        if self._hidden:
            # No MQTT state yet: nats-server creates its $MQTT_ streams at the first
            # MQTT CONNECT, so until then (`reveal`) STREAM.NAMES/LIST/INFO, account
            # info and /jsz do not show ours. Restored state shows at once.
            for name in self.streams:
                store.hide(name)
        self._outgoing = self.streams[OUTGOING]
        self._acked: list[int] = []  # outbox records to delete at the end of the read

    def reveal(self) -> None:
        """MQTT is used (a CONNECT got past authentication): the streams show from now on."""
        if self._hidden:
            self._hidden = False
            for name in self.streams:
                self.store.show(name)

    def end_of_read(self) -> None:
        """As Durability's, and the records acked meanwhile are deleted in one go."""
        self._ticket = None
        if self._acked:
            acked, self._acked = self._acked, []
            try:
                self._outgoing.delete_many(acked)
            except StoreError as err:
                log.debug("MQTT store delete of %d acked records: %s", len(acked), err)

    def _append(self, stream_name: str, subject: str, record: Any) -> int:
        """Append one record; the read's ticket (if a PUBLISH is being handled) waits for it."""
        ticket = self._writing()
        on_durable = None if ticket is None else ticket.durable
        try:
            seq = self.streams[stream_name].append(subject, _pack(record), on_durable=on_durable)
        except StoreError as err:
            self.write_errors += 1
            log.error("MQTT store append to %s failed: %s", stream_name, err)
            if ticket is not None:
                self._refused = True
            return 0
        if ticket is not None:
            ticket.pending += 1
        return seq

    def _delete(self, stream_name: str, seq: int) -> None:
        if not seq:
            return
        try:
            self.streams[stream_name].delete(seq)
        except StoreError as err:
            log.debug("MQTT store delete %s/%d: %s", stream_name, seq, err)

    def _purge(self, stream_name: str, subject: str) -> None:
        try:
            self.streams[stream_name].purge(subject=subject)
        except StoreError as err:
            log.error("MQTT store purge %s %s failed: %s", stream_name, subject, err)

    # -- sessions ---------------------------------------------------------------------

    def save_session(self, session: Session) -> None:
        record = {
            "id": session.client_id,
            "subs": subs_record(session),
            "exp": session.expiry_interval,
        }
        old = session.seq
        session.seq = self._append(SESSIONS, SESSION_SUBJECT, record)
        if old and session.seq:
            # After a crash between the two, load keeps the later record.
            self._delete(SESSIONS, old)

    def delete_session(self, session: Session) -> None:
        key = session.key
        self._delete(SESSIONS, session.seq)
        self._purge(OUTGOING, f"$MQTT.out.{key}.>")
        self._purge(QOS2_IN, f"$MQTT.q2in.{key}")
        session.seq = 0

    # -- outgoing QoS 1/2 -------------------------------------------------------------

    def add_outgoing(self, session: Session, out: Outgoing) -> None:
        subject = session.out_subject
        if subject is None:
            subject = session.out_subject = f"$MQTT.out.{session.key}.m"
        out.seq = self._append(OUTGOING, subject, _outgoing_record(out))

    def add_outgoing_many(self, session: Session, outs: list[Outgoing]) -> None:
        """add_outgoing for several messages, in one store call."""
        subject = session.out_subject
        if subject is None:
            subject = session.out_subject = f"$MQTT.out.{session.key}.m"
        ticket = self._writing()
        on_durable = None if ticket is None else ticket.durable
        records = [_pack(_outgoing_record(out)) for out in outs]
        try:
            seqs = self._outgoing.append_many(subject, records, on_durable=on_durable)
        except StoreError as err:
            # append_many took back what it had appended: none of these is stored.
            self.write_errors += 1
            log.error("MQTT store append to %s failed: %s", OUTGOING, err)
            if ticket is not None:
                self._refused = True
            return
        if ticket is not None:
            ticket.pending += 1  # one durability report for the whole batch
        for out, seq in zip(outs, seqs, strict=True):
            out.seq = seq

    def remove_outgoing(self, session: Session, out: Outgoing) -> None:
        # Deleted with the rest of the read's acks (end_of_read): one store call.
        if out.seq:
            self._acked.append(out.seq)

    def remove_outgoing_many(self, outs: list[Outgoing]) -> None:
        self._acked += [out.seq for out in outs]

    def mark_released(self, session: Session, out: Outgoing) -> None:
        """Write a release record for `out` (PUBREC received); once it is durable the
        message record goes and the session sends PUBREL (Session.released). Until
        then a crash leaves the message record alone, and the PUBLISH is re-sent."""
        old = out.seq

        def durable(seq: int, err: BaseException | None) -> None:
            if err is None:
                self._delete(OUTGOING, old)
            session.released(out, seq, err)

        subject = f"$MQTT.out.{session.key}.r"
        try:
            self._outgoing.append(subject, _pack({"p": out.packet_id}), on_durable=durable)
        except StoreError as err:
            self.write_errors += 1
            log.error("MQTT store append to %s failed: %s", OUTGOING, err)
            session.released(out, 0, err)

    # -- inbound QoS 2 ----------------------------------------------------------------

    def add_incoming(self, session: Session, packet_id: int, msg: MqttMessage) -> tuple:
        """Store an inbound QoS 2 message until its PUBREL: (seq, the Ticket PUBREC
        waits for)."""
        record = {
            "p": packet_id,
            "m": [msg.topic, msg.payload, msg.retain, msg.properties, _wall_expiry(msg)],
        }
        self.begin()
        seq = self._append(QOS2_IN, f"$MQTT.q2in.{session.key}", record)
        return seq, self.end()

    def remove_incoming(self, session: Session, seq: int) -> Ticket:
        """Delete an inbound QoS 2 record (PUBREL received, or a failing PUBREC); the
        ticket is done once the deletion is durable. PUBCOMP waits for it: after
        PUBCOMP the client may reuse the id at once, and a record that came back after a
        crash would take that new message for a re-send and drop it."""
        self._delete(QOS2_IN, seq)
        ticket = Ticket()
        ticket.pending = 1
        self.streams[QOS2_IN].when_durable(ticket.durable)
        return ticket

    # -- retained ---------------------------------------------------------------------

    def set_retained(self, msg: MqttMessage) -> int:
        record = {"t": msg.topic, "d": msg.payload, "q": msg.qos, "x": msg.properties}
        return self._append(RETAINED, "$MQTT.rmsgs." + topic_to_subject(msg.topic), record)

    def clear_retained(self, topic: str, seq: int) -> None:
        self._purge(RETAINED, "$MQTT.rmsgs." + topic_to_subject(topic))

    # -- recovery ---------------------------------------------------------------------

    def _records(self, stream_name: str):
        for msg in self.streams[stream_name].iter(1):
            try:
                yield msg.seq, msg.subject, _unpack(msg.payload)
            except Exception:  # a record we cannot read must not stop the server
                log.error("unreadable MQTT record %s/%d skipped", stream_name, msg.seq)

    def load(self, broker: MqttBroker) -> tuple[list[Session], list[tuple[MqttMessage, int]], dict]:
        """Sessions (with their queues and kept QoS 2 messages), retained messages, and
        which sessions already hold a record of each kept QoS 2 message."""
        by_key = self._load_sessions(broker)
        now_wall = time.time()
        routed = self._load_outgoing(by_key, now_wall)
        self._load_incoming(by_key, now_wall)
        retained = []
        for seq, _subject, rec in self._records(RETAINED):
            msg = MqttMessage(rec["t"], rec["d"], rec["q"], True, rec.get("x"))
            retained.append((msg, seq))
        return list(by_key.values()), retained, routed

    def _load_sessions(self, broker: MqttBroker) -> dict[str, Session]:
        from hybridbus.mqtt.broker import session_key

        by_key: dict[str, Session] = {}
        for seq, _subject, rec in self._records(SESSIONS):
            client_id = rec["id"]
            key = session_key(client_id)
            earlier = by_key.get(key)
            if earlier is not None:
                self._delete(SESSIONS, earlier.seq)  # superseded (a crash in save_session)
            session = Session(broker, client_id, key, True)
            session.seq = seq
            session.expiry_interval = rec.get("exp")
            for topic_filter, opts in rec["subs"].items():
                session.subs[topic_filter] = subscriptions_of(session, topic_filter, opts)
            by_key[key] = session
        return by_key

    def _load_outgoing(self, by_key: dict[str, Session], now_wall: float) -> dict:
        """Queue each session's owed messages; returns kept QoS 2 seq -> sessions."""
        routed: dict[int, list[Session]] = {}
        for seq, subject, rec in self._records(OUTGOING):
            parts = subject.split(".")
            session = by_key.get(parts[2])
            if session is None:
                self._delete(OUTGOING, seq)
                continue
            if parts[3] == "r":
                self._load_released(session, seq, rec["p"])
                continue
            pid, qos, retain, topic, payload, props, expires, sub_ids = rec[:8]
            msg = MqttMessage(topic, payload, qos, False, props)
            _restore_expiry(msg, expires, now_wall)
            if len(rec) > 8:
                routed.setdefault(rec[8], []).append(session)
            out = Outgoing(pid, msg, qos, retain, sub_ids)
            out.seq = seq
            # It may have been sent before the restart: a re-send carries DUP=1.
            out.sent = True
            session.enqueue(out)
            session.claim_pid(pid)
            session.next_pid = max(session.next_pid, pid)
        return routed

    def _load_released(self, session: Session, seq: int, pid: int) -> None:
        """A release record: PUBREL is owed for `pid`."""
        out = session.inflight.get(pid) or next(
            (o for o in session.queued if o.packet_id == pid), None
        )
        if out is None:
            out = Outgoing(pid, MqttMessage("", b"", 2), 2, False, None)
        else:
            # The message record outlived its release (its delete was not yet
            # written): PUBREL is owed, never the PUBLISH again [MQTT-4.3.3-5].
            self._delete(OUTGOING, out.seq)
            if session.queued and out in session.queued:
                session.queued.remove(out)
                session.queued_bytes -= len(out.msg.payload)
                session.inflight_bytes += len(out.msg.payload)
        session.put_inflight(out)
        out.state = RELEASED
        out.sent = True
        out.seq = seq
        session.claim_pid(pid)

    def _load_incoming(self, by_key: dict[str, Session], now_wall: float) -> None:
        """Kept QoS 2 messages (and ids) awaiting their PUBREL."""
        for seq, subject, rec in self._records(QOS2_IN):
            session = by_key.get(subject.split(".")[2])
            if session is None:
                self._delete(QOS2_IN, seq)
                continue
            kept = rec.get("m")
            msg = None
            if kept is not None:
                topic, payload, retain, props, expires = kept
                msg = MqttMessage(topic, payload, 2, retain, props, session)
                _restore_expiry(msg, expires, now_wall)
            session.keep_incoming(rec["p"], (seq, msg))


# The local-store persistence by the name the design gives it (jspersist.py is the other).
LocalPersistence = Persistence
