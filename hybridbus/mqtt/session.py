"""MQTT sessions: subscriptions, the in-flight window and the queue, socket-free.

Theory of operation
-------------------
A ``Session`` outlives its connections. It is what the router knows: every MQTT
subscription is a router ``Subscription`` whose ``client`` is the session, so a
message reaches a persistent session whether or not a device is connected.

Delivery happens in two steps, because one client may hold several
subscriptions that match the same message (``a/+`` and ``a/#``):

1. ``deliver`` (called by ``Server.route`` per matching subscription) only
   collects the matching subscriptions of this route;
2. ``deliver_matched`` (called once per session after the route loop) sends
   ONE copy at the highest granted QoS of those subscriptions. 3.1.1 asks that
   the maximum QoS be respected [MQTT-3.3.5-1]; 5.0 allows one copy carrying
   every matching subscription identifier [MQTT-3.3.4-3]. One copy is the choice
   the spec allows for both levels, and what a device on a metered link wants.

Outgoing QoS 1/2 messages are ``Outgoing`` records. A record takes its packet
identifier when it is queued, not when it is sent: a persistent session writes
the record to the store at that moment, and the identifier must be the same
when the message is re-sent after a reconnect or a restart [MQTT-4.4.0-1].
At most ``window`` records are in flight (the smaller of the server's
``max_ack_pending`` and a 5.0 client's Receive Maximum); the rest wait in
``queued``. An offline persistent session keeps queueing up to
``max_session_messages``; past that the oldest record is dropped, logged and
counted. QoS 0 messages to an offline session are not kept (allowed by
[MQTT-3.1.2-5]'s "MAY").
"""

from __future__ import annotations

import logging
from collections import deque
from typing import TYPE_CHECKING, Any

from hybridbus.core.client import CONGESTED_QUEUE, WRITE_ERROR
from hybridbus.core.flow import INFLIGHT_BYTES, SESSION_QUEUE_BYTES, SESSION_QUEUE_HIGH
from hybridbus.router.sublist import Subscription

if TYPE_CHECKING:
    from hybridbus.mqtt.broker import MqttBroker
    from hybridbus.mqtt.message import MqttMessage

log = logging.getLogger("hybridbus.mqtt")

# Outgoing record states
SENT = 0  # PUBLISH sent (or to be sent), waiting for PUBACK / PUBREC
RELEASED = 1  # QoS 2: PUBREC received, PUBREL sent, waiting for PUBCOMP
# QoS 2, persistent session: PUBREC received, the release record is being written.
# PUBREL waits for it: once PUBREL is sent the PUBLISH must never be re-sent
# [MQTT-4.3.3-5 (3.1.1: 4.3.3)], and after a crash only that record says so.
RELEASING = 2

MAX_PACKET_ID = 65535

# Shared by every session that awaits no inbound QoS 2 release (most): read-only,
# replaced by a dict of its own in keep_incoming.
NO_INCOMING: dict[int, tuple] = {}
# Likewise for sessions with nothing in flight: an empty dict costs 64 bytes a session.
NO_INFLIGHT: dict[int, Outgoing] = {}


def _delivery(subs: list, msg: MqttMessage) -> tuple[int, bool, list[int] | None]:
    """(QoS, RETAIN, subscription ids) for one message to one session whose
    subscriptions `subs` all match it: the highest granted QoS, capped at the
    published one [MQTT-3.8.4-8]; RETAIN kept if any asks Retain As Published."""
    qos = 0
    retain = False
    sub_ids: list[int] | None = None
    for s in subs:
        if s.qos > qos:
            qos = s.qos
        if s.retain_as_published and msg.retain:
            retain = True
        if s.sub_id:
            if sub_ids is None:
                sub_ids = []
            sub_ids.append(s.sub_id)
    if msg.qos < qos:
        qos = msg.qos
    return qos, retain, sub_ids


class MqttSubscription(Subscription):
    """One MQTT topic filter of one session, as the router holds it.

    A filter ending in `#` needs two router subscriptions (`a/#` matches `a`
    too), so one filter may own two of these; `sid` is the filter itself."""

    __slots__ = (
        "qos",
        "no_local",
        "retain_as_published",
        "retain_handling",
        "sub_id",
        "skips_dollar",
    )

    def __init__(
        self,
        subject: str,
        queue: str | None,
        session: Session,
        topic_filter: str,
        qos: int,
        *,
        no_local: bool = False,
        retain_as_published: bool = False,
        retain_handling: int = 0,
        sub_id: int = 0,
        skips_dollar: bool = False,
    ) -> None:
        super().__init__(subject, queue, session, topic_filter)
        self.qos = qos
        self.no_local = no_local
        self.retain_as_published = retain_as_published
        self.retain_handling = retain_handling
        self.sub_id = sub_id
        # [MQTT-4.7.2-1]: a filter starting with a wildcard does not match `$` topics.
        self.skips_dollar = skips_dollar

    def options(self) -> dict[str, Any]:
        return {
            "qos": self.qos,
            "nl": self.no_local,
            "rap": self.retain_as_published,
            "rh": self.retain_handling,
            "id": self.sub_id,
        }


class Outgoing:
    """A QoS 1/2 message owed to a session, from queueing to its final ack."""

    __slots__ = ("packet_id", "msg", "qos", "retain", "state", "seq", "sent", "sub_ids")

    def __init__(
        self, packet_id: int, msg: MqttMessage, qos: int, retain: bool, sub_ids: list[int] | None
    ) -> None:
        self.packet_id = packet_id
        self.msg = msg
        self.qos = qos
        self.retain = retain
        self.state = SENT
        self.seq = 0  # store sequence of the persisted record, 0 when not persisted
        self.sent = False  # sent at least once: a resend carries DUP=1 [MQTT-3.3.1-1]
        self.sub_ids = sub_ids


class Session:
    __slots__ = (
        "broker",
        "client_id",
        "key",
        "persistent",
        "expiry_interval",
        "subs",
        "conn",
        "perms",
        "inflight",
        "queued",
        "pids",
        "next_pid",
        "incoming",
        "window",
        "matched",
        "route_mark",
        "dropped",
        "disconnected_at",
        "seq",
        "expiry_handle",
        "out_subject",
        "inflight_bytes",
        "queued_bytes",
        "closing",
        "account",
        "durable",
    )

    # The router's echo rule (NATS `echo`) never applies to MQTT; no-local is per subscription.
    echo = True

    def __init__(self, broker: MqttBroker, client_id: str, key: str, persistent: bool) -> None:
        self.broker = broker
        self.client_id = client_id
        self.key = key
        self.persistent = persistent
        self.expiry_interval: int | None = None  # None: never expires (3.1.1 persistent)
        self.subs: dict[str, list[MqttSubscription]] = {}
        self.conn: Any = None
        # The permissions of the last connection, kept while offline (see Security).
        self.perms: Any = None
        self.inflight: dict[int, Outgoing] = NO_INFLIGHT  # its own dict on first use
        # Made on first use: an empty deque costs ~600 bytes per idle session.
        self.queued: deque[Outgoing] | tuple = ()
        # Packet ids in use; made on first use, as an empty set costs 216 bytes and most
        # offline sessions owe nothing (the fleet's memory per session).
        self.pids: set[int] | None = None
        self.next_pid = 0
        # QoS 2 messages received and not yet released: id -> (store seq of the kept
        # copy or 0, the message, delivered on PUBREL; None if routed on arrival by an
        # older version)
        self.incoming: dict[int, tuple] = NO_INCOMING  # a dict of its own on first use
        self.window = broker.options.max_ack_pending or MAX_PACKET_ID
        self.matched: list[MqttSubscription] | tuple = ()  # set by deliver per route
        self.route_mark = -1
        self.dropped = 0
        self.disconnected_at = 0.0
        self.seq = 0  # store sequence of this session's own record
        self.expiry_handle: Any = None  # timer ending an offline 5.0 session
        self.out_subject: str | None = None  # store subject of its queued messages
        # payload bytes in flight and queued (the byte window, core/flow.py)
        self.inflight_bytes = 0
        self.queued_bytes = 0
        self.closing = False  # ended (MqttBroker.end_session): a late delivery is dropped
        # the account it publishes in (Server.route reads origin.account): its broker's
        self.account = broker.account
        # With mqtt { js_domain }: its state there (jspersist.SessionState); a durable
        # JetStream consumer then brings it the QoS 1/2 MQTT messages (skipped below).
        self.durable: Any = None

    # -- router side ------------------------------------------------------------------

    def deliver(self, sub, subject, reply, headers, payload, mqtt_msg=None) -> None:
        if sub.skips_dollar and subject[:1] == "$":
            return
        perms = self.perms
        if perms is not None and perms.filters_delivery and not perms.may_receive(subject):
            return
        server = self.broker.server
        if self.route_mark != server.route_seq:
            self.route_mark = server.route_seq
            self.matched = [sub]
            server.route_sessions.append(self)
        else:
            self.matched.append(sub)

    def deliver_matched(self, subject, reply, headers, payload, mqtt_msg) -> None:
        subs = self.matched
        self.matched = []
        if self.durable is not None and self.durable.skips(subs, mqtt_msg, headers):
            return  # its consumer brings it (jspersist.SessionState.skips)
        if mqtt_msg is None:
            mqtt_msg = self.broker.message_from_nats(subject, reply, headers, payload)
        elif mqtt_msg.origin is self:
            # No Local [MQTT-3.8.3-3]: not to the session that published it.
            subs = [s for s in subs if not s.no_local]
            if not subs:
                return
        if mqtt_msg.expires_at and mqtt_msg.expired():
            return
        qos, retain, sub_ids = _delivery(subs, mqtt_msg)
        self.send(mqtt_msg, qos, retain, sub_ids)

    def deliver_matched_run(self, msgs: list[MqttMessage]) -> None:
        """deliver_matched for a run of messages (Server.route_run): one publisher,
        one subject, one QoS, none retained and none with properties, so the same
        subscriptions match each and the delivery QoS is decided once."""
        subs = self.matched
        self.matched = []
        first = msgs[0]
        if self.durable is not None and self.durable.skips(subs, first, None):
            return  # its consumer brings them (jspersist.SessionState.skips)
        if first.origin is self:
            subs = [s for s in subs if not s.no_local]  # [MQTT-3.8.3-3]
            if not subs:
                return
        qos, retain, sub_ids = _delivery(subs, first)
        if not qos and not retain and not sub_ids:
            conn = self.conn
            if conn is not None and conn.takes_shared_frames():
                # The same bytes for every such receiver: encoded once per run and
                # protocol level (MqttBroker.run_frames), appended here in one go.
                frames, nbytes = self.broker.run_frames(msgs, conn.level)
                conn.queue_frames(frames, len(msgs), nbytes)
                return
        if qos and self.persistent and len(self.pids or ()) + len(msgs) <= MAX_PACKET_ID:
            # Owed to a persistent session: stored in one call, then sent or queued.
            outs = [Outgoing(self._alloc_pid(), msg, qos, retain, sub_ids) for msg in msgs]
            self.broker.persist_outgoing_many(self, outs)
            place = self._place
            for out in outs:
                place(out)
            return
        send = self.send
        for msg in msgs:
            send(msg, qos, retain, sub_ids)

    # -- sending ----------------------------------------------------------------------

    def send(self, msg: MqttMessage, qos: int, retain: bool, sub_ids: list[int] | None) -> None:
        """Send or queue one message at the delivery QoS."""
        conn = self.conn
        if qos == 0:
            if conn is not None:
                conn.send_publish(msg, 0, retain, False, 0, sub_ids)
            return
        pid = self._alloc_pid()
        if pid == 0:
            self._drop(None)
            return
        out = Outgoing(pid, msg, qos, retain, sub_ids)
        if self.persistent:
            self.broker.persist_outgoing(self, out)
        self._place(out)

    def claim_pid(self, pid: int) -> None:
        """A packet id restored from the store is in use."""
        if self.pids is None:
            self.pids = set()
        self.pids.add(pid)

    def put_inflight(self, out: Outgoing) -> None:
        """A message in flight restored from the store (a released QoS 2 one)."""
        if self.inflight is NO_INFLIGHT:
            self.inflight = {}
        self.inflight[out.packet_id] = out

    def keep_incoming(self, packet_id: int, entry: tuple) -> None:
        """An inbound QoS 2 id awaiting its PUBREL: (store seq, message or None)."""
        if self.incoming is NO_INCOMING:
            self.incoming = {}
        self.incoming[packet_id] = entry

    def _place(self, out: Outgoing) -> None:
        """Send a new QoS 1/2 message now if the window allows, else queue it. An
        offline session keeps at most max_session_messages (the oldest goes); an
        online one never drops: past its queue limits it holds the publisher
        (core/flow.py)."""
        conn = self.conn
        if (
            conn is not None
            and not self.queued
            and len(self.inflight) < self.window
            and self.inflight_bytes < INFLIGHT_BYTES
        ):
            inflight = self.inflight
            if inflight is NO_INFLIGHT:
                inflight = self.inflight = {}
            inflight[out.packet_id] = out
            self.inflight_bytes += len(out.msg.payload)
            self._transmit(out)
            return
        self.enqueue(out)
        if conn is None:
            limit = self.broker.options.max_session_messages
            while limit and len(self.queued) + len(self.inflight) > limit and self.queued:
                self._drop(self.queued.popleft())
        elif len(self.queued) > SESSION_QUEUE_HIGH or self.queued_bytes > SESSION_QUEUE_BYTES:
            conn.congest(CONGESTED_QUEUE)

    def enqueue(self, out: Outgoing) -> None:
        if not self.queued:
            self.queued = deque()
        self.queued.append(out)
        self.queued_bytes += len(out.msg.payload)

    def _drop(self, out: Outgoing | None) -> None:
        self.dropped += 1
        self.broker.stats_dropped += 1
        if out is not None:
            self.queued_bytes -= len(out.msg.payload)
            self.pids.discard(out.packet_id)
            if out.seq:
                self.broker.forget_outgoing(self, out)
        if self.dropped == 1 or self.dropped % 1000 == 0:
            log.warning(
                "MQTT session %r: queue full, dropped the oldest message (%d dropped so far)",
                self.client_id,
                self.dropped,
            )

    def _alloc_pid(self) -> int:
        pids = self.pids
        if pids is None:
            pids = self.pids = set()
        elif len(pids) >= MAX_PACKET_ID:
            return 0
        pid = self.next_pid
        while True:
            pid = pid + 1 if pid < MAX_PACKET_ID else 1
            if pid not in pids:
                break
        self.next_pid = pid
        pids.add(pid)
        return pid

    def pump(self) -> None:
        """Move queued messages into the in-flight window while there is room."""
        conn = self.conn
        if conn is None:
            return
        queued = self.queued
        inflight = self.inflight
        if queued and inflight is NO_INFLIGHT:
            inflight = self.inflight = {}
        while queued and len(inflight) < self.window and self.inflight_bytes < INFLIGHT_BYTES:
            out = queued.popleft()
            size = len(out.msg.payload)
            self.queued_bytes -= size
            if out.msg.expires_at and out.msg.expired():
                self._finish(out)
                continue
            inflight[out.packet_id] = out
            self.inflight_bytes += size
            self._transmit(out)
        if (
            conn.congested & CONGESTED_QUEUE
            and len(queued) <= SESSION_QUEUE_HIGH // 4
            and self.queued_bytes <= SESSION_QUEUE_BYTES // 4
        ):
            conn.decongest(CONGESTED_QUEUE)

    def resume(self) -> None:
        """A connection took this session: re-send what is unacknowledged, in order
        [MQTT-4.4.0-1], then what was queued."""
        conn = self.conn
        for out in list(self.inflight.values()):
            if out.state == RELEASED:
                conn.send_pubrel(out.packet_id)
            elif out.state == SENT:
                self._transmit(out)
            # RELEASING: its PUBREL goes out once the release record is durable (released)
        self.pump()

    def _transmit(self, out: Outgoing) -> None:
        """Send an in-flight record; a re-send carries DUP=1 [MQTT-3.3.1-1]."""
        hold = out.msg.hold
        if hold is not None:
            if not hold.done:
                # Exactly once across a crash: until the publisher's dedup record is
                # durable, a crash would make its re-send a new message, and a receiver
                # that already had this one would get it twice. It goes out once done.
                hold.on_done(self._send_held)
                return
            out.msg.hold = None
        dup = out.sent
        out.sent = True
        if not self.conn.send_publish(
            out.msg, out.qos, out.retain, dup, out.packet_id, out.sub_ids
        ):
            # Larger than the client's Maximum Packet Size: discarded as if delivered
            # [MQTT-3.1.2-25].
            if self.inflight.pop(out.packet_id, None) is not None:
                self.inflight_bytes -= len(out.msg.payload)
            self._finish(out)

    def _send_held(self) -> None:
        """The dedup record of held messages is durable: send those in the window."""
        if self.conn is None or self.conn.closing:
            return
        for out in list(self.inflight.values()):
            if out.state == SENT and not out.sent:
                self._transmit(out)

    # -- acks from the client ---------------------------------------------------------

    def _finish(self, out: Outgoing) -> None:
        self.pids.discard(out.packet_id)
        if out.seq:
            self.broker.forget_outgoing(self, out)

    def on_puback(self, packet_id: int) -> bool:
        out = self.inflight.get(packet_id)
        if out is None or out.qos != 1:
            return False
        del self.inflight[packet_id]
        self.inflight_bytes -= len(out.msg.payload)
        self._finish(out)
        self.pump()
        return True

    def on_puback_many(self, packet_ids: list[int]) -> list[int]:
        """on_puback for each id, then one pump; returns the ids that matched no QoS 1
        message in flight."""
        inflight = self.inflight
        pids = self.pids
        unknown = []
        stored = []  # finished outbox records, forgotten in one call
        for packet_id in packet_ids:
            out = inflight.get(packet_id)
            if out is None or out.qos != 1:
                unknown.append(packet_id)
                continue
            del inflight[packet_id]
            self.inflight_bytes -= len(out.msg.payload)
            pids.discard(packet_id)  # as _finish, for a run
            if out.seq:
                stored.append(out)
        if stored:
            self.broker.forget_outgoing_many(self, stored)
        self.pump()
        return unknown

    def on_pubrec(self, packet_id: int, failed: bool = False) -> bool:
        """PUBREC for a QoS 2 message in flight: PUBREL now, or once its release record
        is durable (persistent sessions). False when the id is no QoS 2 message of ours."""
        out = self.inflight.get(packet_id)
        if out is None or out.qos != 2:
            return False
        if out.state != SENT:
            # A repeated PUBREC: PUBREL again (a RELEASING one gets it when durable).
            if out.state == RELEASED:
                self.conn.send_pubrel(packet_id)
            return True
        if failed:
            # A 5.0 PUBREC with a failure code ends the flow (4.3.3): no PUBREL.
            del self.inflight[packet_id]
            self.inflight_bytes -= len(out.msg.payload)
            self._finish(out)
            self.pump()
            return True
        if out.seq:
            out.state = RELEASING
            self.broker.persist_released(self, out)  # then released()
        else:
            out.state = RELEASED
            self.conn.send_pubrel(packet_id)
        return True

    def released(self, out: Outgoing, seq: int, err: BaseException | None) -> None:
        """The release record of `out` is durable (seq), or could not be written (err)."""
        if out.state != RELEASING or self.inflight.get(out.packet_id) is not out:
            return  # the session ended meanwhile; its records went with it
        conn = self.conn
        if err is not None:
            # The PUBLISH is still owed: the client re-sends PUBREC when it gets the
            # DUP re-send after reconnecting, so close the connection it waits on.
            out.state = SENT
            if conn is not None:
                conn.close(WRITE_ERROR)
            return
        out.seq = seq
        out.state = RELEASED
        if conn is not None and not conn.closing:
            conn.send_pubrel(out.packet_id)

    def on_pubcomp(self, packet_id: int) -> bool:
        out = self.inflight.get(packet_id)
        if out is None or out.state != RELEASED:
            return False
        del self.inflight[packet_id]
        self.inflight_bytes -= len(out.msg.payload)
        self._finish(out)
        self.pump()
        return True

    # -- state ------------------------------------------------------------------------

    def all_subscriptions(self) -> list[MqttSubscription]:
        return [s for subs in self.subs.values() for s in subs]

    def pending_count(self) -> int:
        return len(self.inflight) + len(self.queued)
