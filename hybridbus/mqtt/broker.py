"""The MQTT broker state: every session, the retained index, wills, and persistence.

``MqttBroker`` is owned by the server. Connections call it to open and close
sessions, subscribe, and publish; it talks to the router through the server
and to the store through ``Persistence``.

Publishing and acknowledging
----------------------------
``publish`` stores the retained copy, routes the message, and returns a
``Ticket`` when anything it caused is still on its way to disk (a persistent
session's queued copy, the retained record). The publishing connection sends
PUBACK/PUBREC only when its ticket is done, so an acknowledged message is in
the store under the configured sync policy. A message no persistent session
wants is acknowledged at once: there is nothing to make durable.

JetStream streams join the same ticket: a stream capturing the PUBLISH appends it
through ``capture`` (Persistence.join), so device to stream is at-least-once, and a
stream's refusal fails that PUBLISH's ack with an MQTT 5 reason code
(persistence.refusal_reason; a 3.1.1 client is disconnected, as for a failed write,
and re-sends). A QoS 2 message from a persistent session reaches streams on PUBREL,
with a msg id that the stream's duplicate window uses if a crash makes it route
again. With ``mqtt.retained_kv``, retained messages of the bucket's topics live in
that KV bucket (``jetstream/retained_kv.py``; ``attach_retained_kv`` and below).
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from hybridbus.codec.mqtt import encode_publish
from hybridbus.core.account import Origin
from hybridbus.mqtt.headers import (
    headers_to_properties,
    kv_properties,
    properties_to_headers,
    qos_pairs,
)
from hybridbus.mqtt.message import MqttMessage
from hybridbus.mqtt.persistence import Ticket
from hybridbus.mqtt.retained import RetainedIndex
from hybridbus.mqtt.session import MqttSubscription, Session
from hybridbus.mqtt.systopics import SysTopics
from hybridbus.store.errors import StoreError
from hybridbus.subjects import (
    filter_skips_dollar,
    filter_to_subjects,
    subject_to_topic,
    topic_to_subject,
)

if TYPE_CHECKING:
    from hybridbus.core.hub import Hub
    from hybridbus.mqtt.persistence import Persistence
    from hybridbus.options import MQTTOptions

log = logging.getLogger("hybridbus.mqtt")

# A client id taken over more often than this within FLAP_WINDOW seconds is
# "flapping" (two devices sharing an id); its next CONNECT waits FLAP_DELAY.
FLAP_TAKEOVERS = 3
FLAP_WINDOW = 5.0
FLAP_DELAY = 1.0


# How long, and for how many requests, the bridge remembers an MQTT 5 request's
# Correlation Data to put on NATS replies.
CORRELATION_TTL = 60.0
MAX_CORRELATIONS = 10000


def session_key(client_id: str) -> str:
    """A store-safe token for a client id (ids may hold any UTF-8, even `.` and spaces)."""
    return hashlib.sha256(client_id.encode()).hexdigest()[:40]


class MqttBroker:
    """One account's MQTT state. ``$G``'s broker is ``server.mqtt``; another account's
    (server/account_state.py) has its own sessions (client ids are per account), retained
    messages, wills and store, subscribes in its account's sublist and routes there:
    what it publishes with no client behind it (wills, $SYS, KV changes) goes out as
    ``origin``, None for $G (as before accounts), the account's Origin otherwise."""

    def __init__(
        self,
        server: Hub,
        options: MQTTOptions,
        persistence: Persistence | None,
        account: Any = None,
    ):
        self.server = server
        self.options = options
        self.persistence = persistence
        self.account = account if account is not None else server.global_account
        self.sublist = self.account.sublist
        self.origin: Any = None if self.account is server.global_account else Origin(self.account)
        # traffic of this broker's closed connections (in_msgs, in_bytes, out_msgs,
        # out_bytes) for $SYS of an account's broker ($G's reads the server's totals)
        self.closed_traffic = [0, 0, 0, 0]
        self.sessions: dict[str, Session] = {}
        self.retained = RetainedIndex()
        self.stats_dropped = 0
        self.takeovers: dict[str, deque[float]] = {}
        self._nats_msg_mark = -1
        self._nats_msg: MqttMessage | None = None
        # the last header block read as (QoS, properties): messages from another node
        # mostly carry the same one (leaf/connection.py mqtt_headers)
        self._headers_seen: tuple = (None, 1, None)
        self.pending_wills: dict[str, tuple[MqttMessage, Any]] = {}
        # wills that outlive this node (mqtt/nodewatch.py), with a JetStream domain
        self.nodewatch: Any = None
        # reply subject -> (correlation data, monotonic expiry) of MQTT 5 requests
        self.correlations: dict[str, tuple[bytes, float]] = {}
        self.sys_topics = SysTopics(self)  # $SYS/broker/..., see systopics.py
        # After a restart: stored QoS 2 message seq -> the sessions that already hold a
        # record of it (see release_qos2); emptied as their publishers send PUBREL.
        self.routed: dict[int, list[Session]] = {}
        self._run_frames: tuple | None = None  # (the run, {level: (frames, bytes)})

    # -- startup ----------------------------------------------------------------------

    def restore(self) -> None:
        """Rebuild persistent sessions and retained messages from the store."""
        if self.persistence is None:
            return
        sessions, retained, self.routed = self.persistence.load(self)
        for msg, seq in retained:
            self.retained.set(msg, seq)
        for session in sessions:
            self.sessions[session.client_id] = session
            for subs in session.subs.values():
                for sub in subs:
                    self.sublist.insert(sub)
        if sessions or retained:
            log.info(
                "Restored %d MQTT sessions and %d retained messages%s",
                len(sessions),
                len(retained),
                "" if self.origin is None else f" of account {self.account.name}",
            )

    def start(self) -> None:
        """The broker's own timer: $SYS topics every mqtt.sys_interval (0: none)."""
        if self.options.enabled:
            self.sys_topics.start()
        if self.options.retained_kv and not self.server.options.jetstream.enabled:
            log.warning("mqtt.retained_kv needs JetStream: retained messages stay MQTT-only")

    # -- sessions ---------------------------------------------------------------------

    def is_flapping(self, client_id: str) -> bool:
        history = self.takeovers.get(client_id)
        if not history:
            return False
        now = time.monotonic()
        while history and now - history[0] > FLAP_WINDOW:
            history.popleft()
        return len(history) >= FLAP_TAKEOVERS

    def assign_client_id(self) -> str:
        return "hb_" + secrets.token_hex(11)

    def open_session(
        self, conn: Any, client_id: str, clean_start: bool, persistent: bool, attached: Any = None
    ) -> tuple[Session, bool]:
        """Attach `conn` to its session, taking it over from an older connection.
        `attached`: the session's state fetched from a JetStream domain
        (jspersist.JetStreamPersistence.attach), which then builds the session.

        Returns the session and the CONNACK Session Present flag."""
        session = self.sessions.get(client_id)
        if session is not None and session.conn is not None:
            old = session.conn
            history = self.takeovers.setdefault(client_id, deque())
            history.append(time.monotonic())
            log.info(
                "%s:%d - MQTT client %r taken over by %s:%d",
                old.ip,
                old.port,
                client_id,
                conn.ip,
                conn.port,
            )
            old.taken_over()
            # a clean session ended with its connection; a persistent one waits for us
            session = self.sessions.get(client_id)
        if session is not None and session.expiry_handle is not None:
            session.expiry_handle.cancel()
            session.expiry_handle = None
        self.cancel_will(client_id)
        if attached is not None:
            return self.persistence.resume(self, conn, session, attached)
        if session is not None and (clean_start or not session.persistent):
            self.end_session(session)
            session = None
        present = session is not None
        if session is None:
            session = Session(self, client_id, session_key(client_id), persistent)
            self.sessions[client_id] = session
        else:
            session.persistent = persistent
        session.conn = conn
        if persistent and self.persistence is not None:
            self.persistence.save_session(session)
        elif not persistent and self.persistence is not None and session.seq:
            self.persistence.delete_session(session)
        return session, present

    def detach(self, session: Session, conn: Any) -> None:
        """The connection is gone; a persistent session stays, a clean one ends."""
        if session.conn is not conn:
            return  # taken over: the session already belongs to a newer connection
        if self.nodewatch is not None and session.client_id not in self.pending_wills:
            self.nodewatch.disarm(session.client_id)  # published or dropped here
        session.conn = None
        session.disconnected_at = time.monotonic()
        if session.durable is not None:
            self.persistence.detached(session)  # its JetStream deliveries stop here
        if self.origin is not None:
            traffic = self.closed_traffic
            traffic[0] += conn.in_msgs
            traffic[1] += conn.in_bytes
            traffic[2] += conn.out_msgs
            traffic[3] += conn.out_bytes
        if not session.persistent:
            self.end_session(session)
            return
        expiry = session.expiry_interval
        if expiry is not None and 0 < expiry < 0xFFFFFFFF:
            # A 5.0 session ends `expiry` seconds after its connection (3.1.2.11.2).
            session.expiry_handle = self.server.loop.call_later(expiry, self._expire, session)
        if self.nodewatch is not None and not session.closing:
            self.nodewatch.track(session, offline=True)  # its clock, should we die

    def _expire(self, session: Session) -> None:
        session.expiry_handle = None
        if session.conn is None and self.sessions.get(session.client_id) is session:
            log.debug("MQTT session %r expired", session.client_id)
            self.fire_will_now(session.client_id)
            self.end_session(session)

    # -- wills ------------------------------------------------------------------------

    def send_will(self, session: Session, will: MqttMessage, delay: int) -> None:
        """Publish a will now, or after the 5.0 Will Delay Interval (3.1.3.2.2).

        A reconnect within the delay cancels it [MQTT-3.1.3-9]; the session ending
        first publishes it early."""
        if delay <= 0:
            self._publish_will(will)
            return
        if session.expiry_interval is not None and session.expiry_interval < delay:
            delay = session.expiry_interval
            if delay <= 0:
                self._publish_will(will)
                return
        self.cancel_will(session.client_id)
        handle = self.server.loop.call_later(delay, self._delayed_will, session.client_id)
        self.pending_wills[session.client_id] = (will, handle)

    def _delayed_will(self, client_id: str) -> None:
        entry = self.pending_wills.pop(client_id, None)
        if entry is not None:
            self._publish_will(entry[0])
            self._disarm(client_id)
            self.server.flush()

    def fire_will_now(self, client_id: str) -> None:
        entry = self.pending_wills.pop(client_id, None)
        if entry is not None:
            entry[1].cancel()
            self._publish_will(entry[0])
            self._disarm(client_id)

    def cancel_will(self, client_id: str) -> None:
        entry = self.pending_wills.pop(client_id, None)
        if entry is not None:
            entry[1].cancel()
            self._disarm(client_id)

    def _disarm(self, client_id: str) -> None:
        if self.nodewatch is not None:
            self.nodewatch.disarm(client_id)

    def _publish_will(self, will: MqttMessage) -> None:
        log.debug("publishing will on %r", will.topic)
        # Restart the expiry clock: the will is published now.
        expiry = will.properties.get("message_expiry_interval") if will.properties else None
        if expiry is not None:
            will.expires_at = time.monotonic() + expiry
        if will.origin is None:
            will.origin = self.origin  # published in this broker's account
        self.publish(will, topic_to_subject(will.topic))

    def end_session(self, session: Session, keep_state: bool = False) -> None:
        """End a session here; its stored state goes too unless `keep_state` (it lives
        on in a JetStream domain, taken over by another node)."""
        sublist = self.sublist
        for subs in session.subs.values():
            for sub in subs:
                sublist.remove(sub)
        session.subs.clear()
        if self.sessions.get(session.client_id) is session:
            del self.sessions[session.client_id]
        if self.persistence is not None and session.persistent and not keep_state:
            self.persistence.delete_session(session)
        if session.durable is not None:
            self.persistence.release(session)
        if self.nodewatch is not None:
            self.nodewatch.untrack(session)
        session.inflight = {}
        session.queued = ()
        session.inflight_bytes = session.queued_bytes = 0
        session.closing = True
        session.pids = None

    # -- subscriptions ----------------------------------------------------------------

    def subscribe(
        self,
        session: Session,
        topic_filter: str,
        qos: int,
        *,
        no_local: bool = False,
        retain_as_published: bool = False,
        retain_handling: int = 0,
        sub_id: int = 0,
        queue: str | None = None,
        inner_filter: str | None = None,
    ) -> bool:
        """Add or replace a subscription [MQTT-3.8.4-3]; True if it existed before.

        For a shared subscription `$share/g/f`, `topic_filter` is the whole
        filter (the session's key) and `inner_filter` is `f`; the router holds
        `f`'s subjects in queue group `g`, the same group a NATS queue
        subscriber `g` joins, so the two protocols share one group."""
        existed = self._remove_filter(session, topic_filter)
        inner = inner_filter or topic_filter
        skips = filter_skips_dollar(inner)
        subs = []
        for subject in filter_to_subjects(inner):
            sub = MqttSubscription(
                subject,
                queue,
                session,
                topic_filter,
                qos,
                no_local=no_local,
                retain_as_published=retain_as_published,
                retain_handling=retain_handling,
                sub_id=sub_id,
                skips_dollar=skips,
            )
            self.sublist.insert(sub)
            subs.append(sub)
        session.subs[topic_filter] = subs
        return existed

    def unsubscribe(self, session: Session, topic_filter: str) -> bool:
        return self._remove_filter(session, topic_filter)

    def _remove_filter(self, session: Session, topic_filter: str) -> bool:
        subs = session.subs.pop(topic_filter, None)
        if subs is None:
            return False
        for sub in subs:
            self.sublist.remove(sub)
        return True

    def save(self, session: Session) -> Any:
        """Store the session's record; a Ticket (done once it is stored) when that takes
        a round trip (a JetStream domain: SUBACK waits for its consumer), else None."""
        if session.persistent and self.persistence is not None:
            return self.persistence.save_session(session)
        return None

    # -- publishing -------------------------------------------------------------------

    def receive_qos2(self, msg: MqttMessage, subject: str, packet_id: int) -> Any:
        """An inbound QoS 2 PUBLISH (not a re-send); returns the Ticket PUBREC waits for.

        From a persistent session it is stored and kept until its PUBREL, when it is
        delivered (4.3.3 "Method A"): exactly once across a crash. Delivering on
        PUBLISH cannot promise that, since the dedup record and the receivers'
        records live in different streams and a crash may keep one without the
        other (a loss or a duplicate once the publisher re-sends). From a clean
        session, which a crash ends (it never re-sends), it is delivered at once
        ("Method B"): a receiver's record the store refuses still fails the PUBREC."""
        session = msg.origin
        if not session.persistent or self.persistence is None:
            session.keep_incoming(packet_id, (0, None))
            return self.publish(msg, subject)
        seq, ticket = self.persistence.add_incoming(session, packet_id, msg)
        session.keep_incoming(packet_id, (seq, msg))
        return ticket

    def release_qos2(self, session: Session, entry: tuple) -> Any:
        """PUBREL for a kept QoS 2 message: deliver it, then forget its stored copy once
        the receivers' records are durable. Returns the Ticket PUBCOMP waits for; the
        receivers' PUBLISHes wait for it too (msg.hold): until the copy is gone for
        good, a crash makes the publisher re-send PUBREL and the message is routed
        again, skipping the sessions that already have a record of it (self.routed).
        A receiver whose record the store refuses now misses it (logged): PUBCOMP
        has no failure code, and the others have theirs."""
        seq, msg = entry
        persistence = self.persistence
        if msg is None or not seq or persistence is None:
            # Delivered on arrival (a clean session's, or stored by an older version).
            return self.release_incoming(session, seq)
        done = Ticket()
        done.pending = 1
        msg.hold = done
        msg.q2in_seq = seq
        skip = self.routed.pop(seq, None)
        if skip:
            # Already holding a record of it (routed before a crash): marked as seen in
            # the coming route, so Session.deliver never queues them for a second copy.
            mark = self.server.route_seq + 1
            for other in skip:
                other.route_mark = mark
                other.matched = []
        routed = self.publish(msg, topic_to_subject(msg.topic))

        def forget() -> None:
            if routed is not None and routed.failed:
                log.error("QoS 2 message on %r: a receiver's record was refused", msg.topic)
            gone = persistence.remove_incoming(session, seq)
            gone.on_done(lambda: done.durable(0, None if not gone.failed else StoreError()))

        if routed is None:
            forget()
        else:
            routed.on_done(forget)
        return done

    def publish(self, msg: MqttMessage, subject: str) -> Any:
        """Retain (if asked), route, and return a Ticket for what must reach disk first."""
        persistence = self.persistence
        if msg.qos == 0 and not msg.retain and not msg.properties:
            # Delivered QoS is min(published, granted): a QoS 0 message is never stored.
            self.server.route(msg.origin, subject, None, None, msg.payload, msg)
            return None
        if persistence is not None:
            persistence.begin()
            if msg.qos and persistence.remote:
                # Stored once in the domain's HB_msgs for the durable consumers of
                # persistent sessions on every node; PUBACK waits for its PubAck.
                persistence.store_message(msg, subject)
        if msg.retain:
            self.set_retained(msg)
        reply = None
        headers = None
        props = msg.properties
        if props:
            # MQTT 5 -> NATS: Response Topic becomes the reply subject, user
            # properties become headers (see the README's mapping section).
            response_topic = props.get("response_topic")
            if response_topic:
                reply = topic_to_subject(response_topic)
                correlation = props.get("correlation_data")
                if correlation is not None:
                    self.remember_correlation(reply, correlation)
            headers = properties_to_headers(props)
        self.server.route(msg.origin, subject, reply, headers, msg.payload, msg)
        if persistence is not None:
            return persistence.end()
        return None

    def publish_run(self, msgs: list[MqttMessage], subject: str) -> tuple[Any, int]:
        """`publish` for a run of messages from one session to one subject at one QoS
        (0 or 1), none retained and none with properties (handle_publish_run): one
        route for all, one Ticket (or None) for their acks. Returns the ticket and how
        many of the run were routed: the rest waits for the read loop's budget check
        (core/flow.py)."""
        payloads = [msg.payload for msg in msgs]
        # Delivered QoS is min(published, granted): a QoS 0 run is never stored.
        persistence = self.persistence if msgs[0].qos else None
        if persistence is None:
            return None, self.server.route_run(msgs[0].origin, subject, payloads, msgs)
        persistence.begin()
        routed = self.server.route_run(msgs[0].origin, subject, payloads, msgs)
        if persistence.remote:
            for msg in msgs[:routed]:  # the rest comes again (see publish)
                persistence.store_message(msg, subject)
        return persistence.end(), routed

    def capture(self, msg: MqttMessage, append: Any) -> int:
        """A JetStream stream stores `msg` (its capture, running inside Server.route):
        ``append(on_durable, msg_id)`` joins the PUBLISH's ticket, so PUBACK/PUBREC
        waits until every capturing stream has it durably, and a stream's refusal fails
        that ack (Persistence.join). Returns the stream seq; raises the StoreError of a
        refusal. A QoS 2 message released on PUBREL (msg.q2in_seq) is stored with a
        msg id made of its stored copy's seq: if a crash comes before its copy is
        forgotten, the re-sent PUBREL routes it again and the stream's duplicate window
        stores it once."""
        msg_id = f"mqtt-qos2-{msg.q2in_seq}" if msg.q2in_seq else None
        if self.persistence is None:
            return append(None, msg_id)
        return self.persistence.join(lambda on_durable: append(on_durable, msg_id))

    def run_frames(self, msgs: list[MqttMessage], level: int) -> tuple[bytes, int]:
        """A run's QoS 0 PUBLISHes (one topic, no properties, no RETAIN) as one block of
        bytes for protocol `level`, with their payload bytes: made for the first
        receiver of that level and shared by the rest (a fan-out to 10,000 devices
        encodes each message twice at most, not 10,000 times)."""
        cache = self._run_frames
        if cache is None or cache[0] is not msgs:
            cache = self._run_frames = (msgs, {})
        entry = cache[1].get(level)
        if entry is None:
            topic = msgs[0].topic_bytes()
            payloads = [m.payload for m in msgs]
            sizes = list(map(len, payloads))
            first = encode_publish(topic, payloads[0], 0, False, False, 0, b"", level)
            if sizes.count(sizes[0]) == len(sizes):  # one frame head for all of them
                head = first[: len(first) - sizes[0]]
                frames = head + head.join(payloads)
            else:
                frames = first + b"".join(
                    [encode_publish(topic, p, 0, False, False, 0, b"", level) for p in payloads[1:]]
                )
            entry = cache[1][level] = (frames, sum(sizes))
        return entry

    def set_retained(self, msg: MqttMessage) -> None:
        persistence = self.persistence
        bucket = self.retained.bucket
        if bucket is not None:
            subject = bucket.subject_for(msg.topic)
            if subject is not None:
                self._set_retained_kv(bucket, subject, msg)
                return
        if not msg.payload:
            # An empty retained payload removes the retained message [MQTT-3.3.1-10].
            seq = self.retained.clear(msg.topic)
            if persistence is not None:
                persistence.clear_retained(msg.topic, seq)
            return
        seq = persistence.set_retained(msg) if persistence is not None else 0
        self.retained.set(msg, seq)

    # -- the retained_kv bucket (jetstream/retained_kv.py) -------------------------------

    def attach_retained_kv(self, bucket: Any) -> None:
        """mqtt.retained_kv: the retained messages of the bucket's topics live in the
        bucket, and the retained replay reads them there (RetainedIndex.bucket). Those
        $MQTT_rmsgs holds from before move into it (unless it has the key), each
        dropped from $MQTT_rmsgs once its copy in the bucket is durable."""
        self.retained.bucket = bucket
        moved = 0
        persistence = self.persistence
        for topic, msg in list(self.retained.by_topic.items()):
            subject = bucket.subject_for(topic)
            if subject is None:
                continue
            seq = self.retained.clear(topic)

            def forget(_seq: int, err: BaseException | None, topic=topic, seq=seq) -> None:
                if err is None and persistence is not None:
                    persistence.clear_retained(topic, seq)

            try:
                if bucket.has_value(subject):
                    forget(0, None)
                else:
                    headers = properties_to_headers(msg.properties, qos_pairs(msg.qos))
                    bucket.put(subject, msg.payload, headers, forget)
                    moved += 1
            except StoreError as err:
                log.error("retained message on %r not moved to the KV bucket: %s", topic, err)
        if moved:
            log.info("Moved %d MQTT retained messages to the KV bucket %r", moved, bucket.bucket)

    def _set_retained_kv(self, bucket: Any, subject: str, msg: MqttMessage) -> None:
        """A bucket topic's retained message (or its clearing) goes to the bucket only,
        on the PUBLISH's ticket: its PUBACK waits for it, a refusal fails it."""
        if msg.payload:
            headers = properties_to_headers(msg.properties, qos_pairs(msg.qos))

            def append(on_durable: Any) -> int:
                return bucket.put(subject, msg.payload, headers, on_durable)
        else:

            def append(on_durable: Any) -> int:
                return bucket.delete(subject, on_durable)

        try:
            if self.persistence is not None:
                self.persistence.join(append)
            else:
                append(None)
        except StoreError as err:
            log.error("retained message on %r refused by the KV bucket: %s", msg.topic, err)

    def message_from_kv(self, topic: str, payload: bytes, headers: bytes | None) -> MqttMessage:
        """A retained_kv value as the retained message of `topic`."""
        qos, props = kv_properties(headers)
        return MqttMessage(topic, payload, qos, True, props)

    def retained_changed(
        self, topic: str, subject: str, headers: bytes | None, payload: bytes
    ) -> None:
        """A NATS client changed a bucket topic's value (retained_kv.stored, as deferred
        work): delivered live like an MQTT retained PUBLISH of it, to MQTT and NATS
        subscribers of the topic (RETAIN as Retain As Published says [MQTT-3.3.1-12]).
        The bucket holds it already: nothing is written here, and the route is on the
        topic's subject, which no bucket captures."""
        msg = self.message_from_kv(topic, payload, headers)
        headers = properties_to_headers(msg.properties) if msg.properties else None
        self.server.route(self.origin, subject, None, headers, payload, msg)

    def message_from_nats(
        self, subject: str, reply: str | None, headers: bytes | None, payload: bytes
    ) -> MqttMessage:
        """A NATS message entering MQTT: built once per route and shared.

        It counts as a QoS 1 publish, so a QoS 1 subscriber (even an offline
        persistent session) gets it at least once."""
        server = self.server
        if self._nats_msg_mark == server.route_seq and self._nats_msg is not None:
            return self._nats_msg
        props: dict[str, Any] | None = None
        qos = 1
        if headers:
            seen = self._headers_seen
            if headers == seen[0]:
                qos, props = seen[1], seen[2]
            else:
                qos, props = headers_to_properties(headers)
                self._headers_seen = (headers, qos, props)
            if props is not None:
                props = dict(props)  # the message's own: a reply adds to it below
        if reply is not None:
            # NATS -> MQTT 5: the reply subject is the Response Topic, so a device's
            # answer published there reaches the requester's inbox.
            if props is None:
                props = {}
            props["response_topic"] = subject_to_topic(reply)
        if self.correlations:
            entry = self.correlations.get(subject)
            if entry is not None and entry[1] > time.monotonic():
                # A NATS responder answering an MQTT 5 request: give the requester back
                # the Correlation Data it sent (NATS replies carry none).
                if props is None:
                    props = {}
                props.setdefault("correlation_data", entry[0])
        msg = MqttMessage(subject_to_topic(subject), payload, qos, False, props or None, None)
        self._nats_msg = msg
        self._nats_msg_mark = server.route_seq
        return msg

    def messages_from_leaf(self, subject: str, qos: int, payloads: list) -> list[MqttMessage]:
        """A run of plain MQTT messages from another node (leaf/connection.py)."""
        return MqttMessage.many(subject_to_topic(subject), payloads, qos, None)

    def remember_correlation(self, reply: str, correlation: bytes) -> None:
        correlations = self.correlations
        correlations.pop(reply, None)
        correlations[reply] = (correlation, time.monotonic() + CORRELATION_TTL)
        if len(correlations) > MAX_CORRELATIONS:
            # dicts keep insertion order: drop the oldest tenth
            for key in list(correlations)[: MAX_CORRELATIONS // 10]:
                del correlations[key]

    # -- persistence hooks used by sessions -------------------------------------------

    def persist_outgoing(self, session: Session, out) -> None:
        if self.persistence is not None:
            self.persistence.add_outgoing(session, out)

    def persist_outgoing_many(self, session: Session, outs: list) -> None:
        if self.persistence is not None:
            self.persistence.add_outgoing_many(session, outs)

    def forget_outgoing_many(self, session: Session, outs: list) -> None:
        """forget_outgoing for each (all persisted)."""
        if self.persistence is not None:
            self.persistence.remove_outgoing_many(outs)
        for out in outs:
            out.seq = 0

    def forget_outgoing(self, session: Session, out) -> None:
        if self.persistence is not None and out.seq:
            self.persistence.remove_outgoing(session, out)
            out.seq = 0

    def release_incoming(self, session: Session, seq: int) -> Any:
        """Forget an inbound QoS 2 id's record; the Ticket PUBCOMP must wait for, or None."""
        if self.persistence is not None and seq:
            return self.persistence.remove_incoming(session, seq)
        return None

    def persist_released(self, session: Session, out) -> None:
        if self.persistence is not None:
            self.persistence.mark_released(session, out)

    def shutdown(self) -> None:
        """Cancel timers; sessions and queued messages stay in the store."""
        self.sys_topics.stop()
        if self.persistence is not None:
            self.persistence.end_of_read()  # acked records still to delete
            self.persistence.close()
        for _will, handle in self.pending_wills.values():
            handle.cancel()
        self.pending_wills.clear()
        for session in self.sessions.values():
            if session.expiry_handle is not None:
                session.expiry_handle.cancel()
                session.expiry_handle = None
