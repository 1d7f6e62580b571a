"""MQTT state in a JetStream domain (``mqtt { js_domain: D }``): several nodes, one state.

The same calls as the local store's ``Persistence`` (``persistence.Durability`` lists
them), answered with streams of domain D, reached through ``core/jsclient.py`` on
``$JS.D.API.>`` (the leaf link carries it to the hub; a local engine with that domain
answers it itself). Streams (file storage, ``mqtt.stream_replicas``), nats-server's MQTT
design (``mqtt.go``) under names of our own, so they never clash with its ``$MQTT_*``:

| stream      | subject                   | one message per                                 |
|-------------|---------------------------|-------------------------------------------------|
| `HB_sess`   | `$HB.sess.<key>`          | session (MaxMsgsPerSubject 1; each write        |
|             |                           | republished headers-only on `$HB.sessev.<key>`) |
| `HB_msgs`   | `$HB.msgs.<subject>`      | QoS 1/2 MQTT PUBLISH, stored once (Interest)    |
| `HB_qos2in` | `$HB.q2in.<key>.<pid>`    | inbound QoS 2 awaiting PUBREL (DiscardNew per   |
|             |                           | subject: a re-sent PUBLISH is stored once)      |
| `HB_out`    | `$HB.out.<key>`           | PUBREL owed to a session (outbound QoS 2)       |
| `HB_rmsgs`  | `$HB.rmsgs.<subject>`     | retained topic (MaxMsgsPerSubject 1; `[topic]`  |
|             |                           | alone is the tombstone of a cleared one)        |

``<key>`` is ``broker.session_key`` (a hash of the client id). Records are msgpack.

Sessions. A CONNECT claims its client id before CONNACK (``attach``): the last record,
then a new one written with ``Nats-Expected-Last-Subject-Sequence`` (compare and set,
as nats-server's ``mqttSession.save``). Every node watches ``$HB.sessev.>``: a node
holding the id sees a later claim than its own and lets the session go (5.0 DISCONNECT
0x8E Session taken over), so the same client id on another node takes it over.

Messages. A QoS 1/2 PUBLISH is routed as on one node (QoS 0 and NATS subscribers,
other nodes over the leaf link) and appended once to ``HB_msgs``; its PUBACK waits for
the PubAck (the ``Ticket``). Each persistent session with QoS 1/2 filters has ONE
durable push consumer (``HB_<key>``, ``filter_subjects`` = those filters, deliver
subject ``$HB.dlv.<key>`` without a node in it): the node holding the session
subscribes it while the device is connected, assigns packet ids and acks on PUBACK;
while nobody holds it the consumer keeps collecting. One consumer per session (not per
filter, as nats-server has) gives one copy per message, as on one node
[MQTT-3.3.4-2]. The router then must not deliver those messages to the session too:
``SessionState.skips``.

Retained messages: each node's ``RetainedIndex`` follows ``HB_rmsgs`` through an
ephemeral consumer (deliver last per subject, then live).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import secrets
from typing import TYPE_CHECKING, Any

from hybridbus.codec.nats import encode_headers, parse_headers
from hybridbus.core.jsclient import JsClient, JsError
from hybridbus.mqtt.broker import session_key
from hybridbus.mqtt.jsmessages import (
    MSGS,
    NO_MESSAGE,
    OUT,
    Q2IN,
    RMSGS,
    JsMessages,
    SessionState,
    _message,
    _ns,
    _pack,
    _unpack,
)
from hybridbus.mqtt.message import MqttMessage
from hybridbus.mqtt.persistence import Durability, Ticket, subs_record, subscriptions_of
from hybridbus.mqtt.session import RELEASED, Outgoing, Session
from hybridbus.store.match import filters_overlap
from hybridbus.subjects import subject_is_subset

if TYPE_CHECKING:
    from hybridbus.mqtt.broker import MqttBroker

log = logging.getLogger("hybridbus.mqtt")

SESS = "HB_sess"
SESSEV = "$HB.sessev."
# nats-server err_codes
WRONG_LAST_SEQ = 10071
STREAM_IN_USE = 10058
CONSUMER_NOT_FOUND = 10014
CLAIM_TRIES = 3
KNOWN_MAX = 200_000  # session records a node remembers (about 200 bytes each)
RETRY = 0.25  # seconds between attempts to reach the domain (a no-responders answer is instant)
RECHECK_BATCH = 64  # records read at once after a relink
WATCH_CHECK = 5.0  # seconds between checks that the retained watcher still exists


def _retrieved(fut: asyncio.Future) -> None:
    """A speculative read not needed after all: its outcome is let go quietly."""
    if not fut.cancelled():
        fut.exception()


class Unavailable(Exception):
    connack_code = 0x88  # Server unavailable (3.1.1: 0x03)


class Busy(Exception):
    connack_code = 0x89  # Server busy (3.1.1: 0x03): other nodes kept winning the claim


def stream_configs(replicas: int) -> list[dict]:
    base = {"storage": "file", "num_replicas": max(1, replicas), "retention": "limits"}
    per1 = {"max_msgs_per_subject": 1}
    return [
        {
            **base,
            **per1,
            "name": SESS,
            "subjects": ["$HB.sess.>"],
            # with the record: every node keeps the last ones (``known``), so a claim
            # needs no read first (one round trip less before CONNACK)
            "republish": {"src": "$HB.sess.>", "dest": SESSEV + ">"},
        },
        {**base, "name": MSGS, "subjects": ["$HB.msgs.>"], "retention": "interest"},
        {
            **base,
            **per1,
            "name": Q2IN,
            "subjects": ["$HB.q2in.>"],
            "discard": "new",
            "discard_new_per_subject": True,
        },
        {**base, "name": OUT, "subjects": ["$HB.out.>"]},
        {**base, **per1, "name": RMSGS, "subjects": ["$HB.rmsgs.>"]},
    ]


def _may_have_q2(known: tuple[int, bytes] | None) -> bool:
    """Whether a session's last known record (seq, bytes) leaves QoS 2 state possible:
    yes unless it says ``q2`` false (records of older versions have no ``q2``)."""
    if known is None:
        return True
    try:
        return bool(_unpack(known[1]).get("q2", True))
    except Exception:
        return True


def consumer_filters(session: Session) -> list[str]:
    """The ``filter_subjects`` of a session's consumer: its QoS 1/2 filters that are not
    shared ($share/ groups stay on the router: one member per group, not per session),
    each once; nats-server refuses overlapping filters, so a filter inside another goes,
    and if two still overlap the consumer takes all (the session picks, ``_deliver``)."""
    subjects = sorted(
        {
            "$HB.msgs." + sub.subject
            for subs in session.subs.values()
            for sub in subs
            if sub.qos and sub.queue is None
        }
    )
    kept = [s for s in subjects if not any(o != s and subject_is_subset(s, o) for o in subjects)]
    for i, a in enumerate(kept):
        if any(filters_overlap(a, b) for b in kept[i + 1 :]):
            return ["$HB.msgs.>"]
    return kept


def _restore_subs(broker: MqttBroker, session: Session, record: dict) -> None:
    for topic_filter, opts in record.items():
        subs = subscriptions_of(session, topic_filter, opts)
        for sub in subs:
            broker.sublist.insert(sub)
        session.subs[topic_filter] = subs


class Attached:
    """What ``attach`` found and wrote for a CONNECT."""

    __slots__ = ("record", "present", "seq", "prev_seq", "pubrels", "incoming", "will")

    def __init__(self, record, present, seq, prev_seq, pubrels=(), incoming=(), will=None):
        self.record = record
        self.present = present
        self.seq = seq
        self.prev_seq = prev_seq
        self.pubrels = pubrels
        self.incoming = incoming
        self.will = will


class JetStreamPersistence(JsMessages, Durability):
    """See the module docstring."""

    remote = True

    def __init__(self, hub: Any, account: Any) -> None:
        super().__init__()
        opts = hub.options
        self.hub = hub
        self.mqtt = opts.mqtt
        self.node = opts.server_name or ""
        self.js = JsClient(hub, account, opts.mqtt.js_domain, opts.mqtt.js_api_timeout)
        self.token = secrets.token_hex(8)
        self.broker: Any = None
        self.ready = False  # the streams exist in the domain
        self._task: asyncio.Task | None = None
        self.held: dict[str, Session] = {}  # key -> the session this node holds
        self.writing: dict[str, int] = {}  # key -> record writes in flight
        self.mine: dict[str, int] = {}  # key -> the last record seq this node wrote
        self.latest: dict[str, int] = {}  # key -> the last record seq seen (held keys)
        # key -> (seq, record bytes) of the last session records republished to us
        self.known: dict[str, tuple[int, bytes]] = {}
        # Outgoing -> (ack reply, its SessionState, HB_msgs seq) of consumer deliveries
        self.dlv_acks: dict[Outgoing, tuple] = {}
        self.q2in: dict[int, str] = {}  # token -> $HB.q2in.<key>.<pid> (add_incoming)
        self._q2in_next = 0
        self.rseq: dict[str, float] = {}  # retained topic -> seq of what the index has
        self.rlater: dict[str, tuple] = {}  # ... a delivery held while ours was pending
        self.rsub: Any = None
        self.rcons: str | None = None
        self._links: int | None = None  # leaf-link handshakes seen (see _relinked)

    # -- life cycle -------------------------------------------------------------------

    def load(self, broker: MqttBroker) -> tuple[list, list, dict]:
        """Nothing to replay: sessions come with their CONNECT (attach), retained
        messages from the retained watcher. Starts the client and the upkeep task."""
        self.broker = broker
        self.js.start()
        self.js.subscribe(SESSEV + ">", self._on_sess_event)
        self._task = self.hub.loop.create_task(self._maintain())
        return [], [], {}

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self.js.stop()

    def end_of_read(self) -> None:
        self._ticket = None
        if self.js._work:
            self.js.run()

    async def _maintain(self) -> None:
        """Create the streams (again and again until the domain answers), then keep the
        retained watcher alive."""
        failing = ""
        while True:
            try:
                if not self.ready:
                    await self._create_streams()
                    self.ready = True
                    log.info("MQTT state in JetStream domain %r", self.js.domain)
                await self._relinked()
                if self.rcons is None:
                    await self._watch_retained()
                else:
                    await self.js.request(f"CONSUMER.INFO.{RMSGS}.{self.rcons}")
                failing = ""
            except JsError as err:
                if err.err_code == CONSUMER_NOT_FOUND:
                    self.rcons = None  # gone while the domain was away: again
                    continue
                if str(err) != failing:
                    failing = str(err)
                    log.warning("MQTT JetStream domain %r: %s", self.js.domain, err)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("MQTT JetStream upkeep failed")
            await asyncio.sleep(WATCH_CHECK if self.ready and not failing else RETRY)

    async def _relinked(self) -> None:
        """After the leaf link came back, claims made meanwhile may have been missed
        (their $HB.sessev events went nowhere): read the record of every session held
        here again, and let go of those another node claimed."""
        links = sum(getattr(r, "connects", 0) for r in getattr(self.hub, "leaf_remotes", ()))
        if self._links is None or links == self._links or not self.held:
            self._links = links
            return
        keys = list(self.held)
        for i in range(0, len(keys), RECHECK_BATCH):
            batch = keys[i : i + RECHECK_BATCH]
            found = await asyncio.gather(
                *(self.last_record(SESS, "$HB.sess." + key) for key in batch),
                return_exceptions=True,
            )
            for key, result in zip(batch, found, strict=True):
                if isinstance(result, BaseException):
                    raise result  # the hub not answering yet: all again next round
                seq = result[1]
                if key in self.held and seq > self.latest.get(key, 0):
                    self.latest[key] = seq
                    if key not in self.writing:
                        self._check(key)
        self._links = links

    async def _create_streams(self) -> None:
        for cfg in stream_configs(self.mqtt.stream_replicas):
            name = cfg["name"]
            try:
                await self.js.request(f"STREAM.CREATE.{name}", cfg)
            except JsError as err:
                if err.err_code != STREAM_IN_USE:
                    raise
                try:  # made by an older version, or by hand: ours again
                    await self.js.request(f"STREAM.UPDATE.{name}", cfg)
                except JsError as err2:
                    log.warning("MQTT stream %s kept as it is: %s", name, err2)

    # -- requests ---------------------------------------------------------------------

    def publish_record(self, subject: str, payload: bytes, headers: bytes | None = None):
        """Publish and wait for the PubAck (not the hot path: CONNECT, SUBSCRIBE)."""
        fut = self.hub.loop.create_future()

        def acked(answer: dict | None, err: JsError | None) -> None:
            if not fut.done():
                if err is not None:
                    fut.set_exception(err)
                else:
                    fut.set_result(answer)

        self.js.publish(subject, payload, headers, acked)
        return fut

    def _forget(self, fut: asyncio.Future, what: str) -> None:
        """A request nobody waits for: its failure is logged."""

        def done(f: asyncio.Future) -> None:
            err = f.exception()
            if err is not None and getattr(err, "err_code", 0) not in (NO_MESSAGE,):
                log.debug("MQTT JetStream %s: %s", what, err)

        fut.add_done_callback(done)

    async def last_record(self, stream: str, subject: str) -> tuple[Any, int]:
        """(the last record on `subject` unpacked, or None, and its seq, or 0)."""
        try:
            answer = await self.js.request(f"STREAM.MSG.GET.{stream}", {"last_by_subj": subject})
        except JsError as err:
            if err.err_code == NO_MESSAGE:
                return None, 0
            raise
        msg = answer["message"]
        data = base64.b64decode(msg.get("data") or "")
        return (_unpack(data) if data else None), msg["seq"]

    async def records(self, stream: str, subject: str) -> list[tuple[str, int, Any]]:
        """Every message of ``stream`` on ``subject`` (wildcards allowed), in order."""
        found = []
        seq = 1
        while True:
            body = {"seq": seq, "next_by_subj": subject}
            try:
                answer = await self.js.request(f"STREAM.MSG.GET.{stream}", body)
            except JsError as err:
                if err.err_code == NO_MESSAGE:
                    return found
                raise
            msg = answer["message"]
            data = base64.b64decode(msg.get("data") or "")
            found.append((msg["subject"], msg["seq"], _unpack(data) if data else None))
            seq = msg["seq"] + 1

    # -- sessions: claims and takeover --------------------------------------------------

    def attach(self, client_id: str, clean_start: bool, persistent: bool, expiry, will) -> Any:
        """Claim `client_id` for a CONNECT (a Task of ``Attached``); handle_connect
        answers the CONNECT when it ends (``MqttConnection.wait_for_state``)."""
        # Bounded as a whole, not only per request: a CONNECT is answered (0x88 at
        # worst) within twice js_api_timeout even while the hub elects leaders.
        claim = self._attach(client_id, clean_start, persistent, expiry, will)
        return self.hub.loop.create_task(asyncio.wait_for(claim, 2 * self.mqtt.js_api_timeout))

    async def _attach(self, client_id, clean_start, persistent, expiry, will) -> Attached:
        will_rec = None
        if will is not None:
            msg, delay = will
            will_rec = [msg.topic, msg.payload, msg.qos, msg.retain, msg.properties, delay]
        if not self.ready:
            if not persistent:
                return Attached(None, False, 0, 0, will=will_rec)  # needs no state
            raise Unavailable(f"JetStream domain {self.js.domain!r} not reachable")
        key = session_key(client_id)
        subject = "$HB.sess." + key
        lists = None
        if persistent and not clean_start and _may_have_q2(self.known.get(key)):
            # Read while the claim goes on (one round trip less before CONNACK); used
            # only if the session is kept. Not at all when the last record known says
            # the session never had QoS 2 state (two requests less per CONNECT).
            lists = self._read_q2(key)
        self.writing[key] = self.writing.get(key, 0) + 1
        try:
            cached = self.known.pop(key, None)
            for _ in range(CLAIM_TRIES + (cached is not None)):
                if cached is not None:
                    # The last record seen: a claim on it fails if another came since,
                    # and the next try reads the stream.
                    old_seq, old = cached[0], _unpack(cached[1])
                    cached = None
                else:
                    old, old_seq = await self.last_record(SESS, subject)
                keep = bool(old) and persistent and not clean_start and old.get("p")
                record = {
                    "id": client_id,
                    "p": persistent,
                    "exp": expiry,
                    "subs": old["subs"] if keep else {},
                    "cons": old.get("cons") if keep else None,
                    "cf": old.get("cf", []) if keep else [],
                    "node": self.node,
                    "run": self.token,  # this run of the node (nodewatch: expiry after death)
                    "will": will_rec,
                    "q2": bool(old.get("q2", True)) if keep else False,
                }
                hdr = encode_headers([("Nats-Expected-Last-Subject-Sequence", str(old_seq))])
                try:
                    ack = await self.publish_record(subject, _pack(record), hdr)
                except JsError as err:
                    if err.err_code == WRONG_LAST_SEQ:
                        continue  # another node claimed it meanwhile: read again
                    raise
                break
            else:
                raise Busy(f"client id {client_id!r} claimed elsewhere {CLAIM_TRIES} times")
            self._note_write(key, ack["seq"])
        except BaseException as err:
            if lists is not None:
                lists.cancel()
                lists.add_done_callback(_retrieved)
            if isinstance(err, JsError) and not persistent:
                log.debug("clean MQTT session %r not claimed: %s", client_id, err)
                return Attached(None, False, 0, 0, will=will_rec)
            raise
        finally:
            self._settle(key)
        pubrels, incoming = (), ()
        if keep and lists is None and old.get("q2", True):
            lists = self._read_q2(key)  # the record won says otherwise than the one known
        if keep and lists is not None:
            pubrels, incoming = await lists
        elif lists is not None:
            lists.cancel()
            lists.add_done_callback(_retrieved)
        if old and not keep:
            await self._clear(key, old.get("cons"))
        return Attached(record, bool(keep), ack["seq"], old_seq, pubrels, incoming, will_rec)

    def _read_q2(self, key: str) -> asyncio.Future:
        """A session's owed PUBRELs and inbound QoS 2 messages (HB_out, HB_qos2in)."""
        return asyncio.gather(
            self.records(OUT, "$HB.out." + key), self.records(Q2IN, f"$HB.q2in.{key}.*")
        )

    async def _clear(self, key: str, cons: str | None) -> None:
        """A session's state other than its record: consumer, PUBRELs, QoS 2 ids."""
        if cons:
            try:
                await self.js.request(f"CONSUMER.DELETE.{MSGS}.{cons}")
            except JsError as err:
                if err.err_code != CONSUMER_NOT_FOUND:
                    raise
        await self.js.request(f"STREAM.PURGE.{OUT}", {"filter": "$HB.out." + key})
        await self.js.request(f"STREAM.PURGE.{Q2IN}", {"filter": f"$HB.q2in.{key}.*"})

    def _note_write(self, key: str, seq: int) -> None:
        if seq > self.mine.get(key, 0):
            self.mine[key] = seq
        if seq > self.latest.get(key, 0):
            self.latest[key] = seq

    def _settle(self, key: str) -> None:
        n = self.writing.get(key, 0) - 1
        if n > 0:
            self.writing[key] = n
            return
        self.writing.pop(key, None)
        self._check(key)

    def _on_sess_event(self, subject: str, reply, headers: bytes | None, payload) -> None:
        """A session record was written (HB_sess's republish): a later claim than ours
        on a client id this node holds means another node took it."""
        key = subject[len(SESSEV) :]
        seq = 0
        for name, value in parse_headers(headers or b"NATS/1.0\r\n\r\n")[2]:
            if name == "Nats-Sequence":
                seq = int(value)
        if seq > self.known.get(key, (0,))[0]:
            known = self.known
            known.pop(key, None)
            if payload:  # (empty: the session was ended by another node, nodewatch.py)
                if len(known) >= KNOWN_MAX:
                    del known[next(iter(known))]  # the oldest
                known[key] = (seq, payload)
        if key not in self.held and key not in self.writing:
            return
        if seq > self.latest.get(key, 0):
            self.latest[key] = seq
        if key not in self.writing:
            self._check(key)

    def _check(self, key: str) -> None:
        session = self.held.get(key)
        if session is None or self.latest.get(key, 0) <= self.mine.get(key, 0):
            return
        log.info("MQTT client %r taken over by another node", session.client_id)
        conn = session.conn
        if conn is not None:
            conn.will = None  # the new owner has the session (and decides about wills)
            conn.taken_over()  # 5.0 DISCONNECT 0x8E Session taken over [MQTT-3.1.4-3]
        if self.broker.sessions.get(session.client_id) is session:
            self.broker.end_session(session, keep_state=True)
        self.hub.flush()

    def resume(self, broker: MqttBroker, conn: Any, local: Session | None, att: Attached):
        """open_session's second half for a claimed session: (session, present)."""
        client_id = conn.client_id
        key = session_key(client_id)
        reuse = (
            local is not None
            and att.present
            and local.persistent
            and local.durable is not None
            and local.seq == att.prev_seq
        )
        if local is not None and not reuse:
            broker.end_session(local, keep_state=True)
        if reuse:
            session = local
            st = session.durable
        else:
            persistent = att.record["p"] if att.record else False
            session = Session(broker, client_id, key, persistent)
            broker.sessions[client_id] = session
            st = session.durable = SessionState(key, session)
            st.q2 = bool(att.record.get("q2", True)) if att.record else False
            if att.present:
                self._restore(broker, session, st, att)
        st.will = att.will
        session.seq = att.seq
        session.conn = conn
        self.held[key] = session
        if st.cons is not None and st.dsub is None:
            self._subscribe_dlv(st)
        if att.seq:
            self.hub.loop.call_soon(self._check, key)  # a later claim seen meanwhile
        return session, att.present

    def _restore(self, broker: MqttBroker, session: Session, st: SessionState, att) -> None:
        rec = att.record
        _restore_subs(broker, session, rec.get("subs") or {})
        st.cons = rec.get("cons")
        st.filters = rec.get("cf") or []
        for _subject, seq, prec in att.pubrels:
            pid = prec["p"]
            out = Outgoing(pid, MqttMessage("", b"", 2), 2, False, None)
            out.state = RELEASED
            out.sent = True
            out.seq = seq
            session.put_inflight(out)
            session.claim_pid(pid)
        for subject, _seq, qrec in att.incoming:
            token = self._q2in_token(subject)
            session.keep_incoming(qrec["p"], (token, _message(qrec["m"], session)))

    def detached(self, session: Session) -> None:
        """The device left: the consumer keeps what comes meanwhile (in flight stays in
        flight here, re-sent with the same packet ids if it comes back to this node)."""
        st = session.durable
        if st.dsub is not None:
            self.js.unsubscribe(st.dsub)
            st.dsub = None
        if not session.persistent and session.seq:
            self.delete_session(session)  # a clean session's claim record

    def release(self, session: Session) -> None:
        """The session ends here (expired, clean start, or taken over by another node):
        what its consumer gave us goes back (-NAK: redelivered at once to the new owner)."""
        st = session.durable
        session.durable = None
        if st.dsub is not None:
            self.js.unsubscribe(st.dsub)
            st.dsub = None
        for out in st.by_sseq.values():
            entry = self.dlv_acks.pop(out, None)
            if entry is not None:
                self.js.send(entry[0], b"-NAK")
        st.by_sseq.clear()
        if self.held.get(st.key) is session:
            del self.held[st.key]
            if st.key not in self.writing:
                self.mine.pop(st.key, None)
                self.latest.pop(st.key, None)

    # -- sessions: records and consumers ----------------------------------------------

    def save_session(self, session: Session) -> Ticket | None:
        """Write the record (and create, change or delete the consumer); the Ticket
        SUBACK/UNSUBACK waits for."""
        st = session.durable
        if st is None or not session.seq:
            return None  # a clean session connected while the domain was away
        ticket = Ticket()
        ticket.pending = 1
        task = self.hub.loop.create_task(self._sync(session, st))

        def done(t: asyncio.Task) -> None:
            err = t.exception() if not t.cancelled() else Unavailable("cancelled")
            if err is not None:
                log.error("MQTT session %r not stored: %s", session.client_id, err)
            ticket.durable(0, err)

        task.add_done_callback(done)
        return ticket

    async def _sync(self, session: Session, st: SessionState) -> None:
        if st.lock is None:
            st.lock = asyncio.Lock()
        async with st.lock:
            filters = consumer_filters(session) if session.persistent else []
            if filters != st.filters:
                await self._set_consumer(st, filters)
            if session.durable is not st:
                return  # ended meanwhile
            if st.cons is not None and st.dsub is None and session.conn is not None:
                self._subscribe_dlv(st)
            await self._write_record(session, st)

    async def _rewrite_record(self, session: Session, st: SessionState) -> None:
        """The session's record again (after ``q2`` turned on), in turn with the others."""
        if st.lock is None:
            st.lock = asyncio.Lock()
        async with st.lock:
            if session.durable is st:
                await self._write_record(session, st)

    async def _set_consumer(self, st: SessionState, filters: list[str]) -> None:
        name = "HB_" + st.key
        if not filters:
            if st.cons is not None:
                try:
                    await self.js.request(f"CONSUMER.DELETE.{MSGS}.{name}")
                except JsError as err:
                    if err.err_code != CONSUMER_NOT_FOUND:
                        raise
            st.cons = None
            st.filters = []
            return
        mq = self.mqtt
        config = {
            "durable_name": name,
            "deliver_subject": "$HB.dlv." + st.key,
            "deliver_policy": "new",
            "ack_policy": "explicit",
            "ack_wait": _ns(mq.ack_wait),
            "max_deliver": -1,
            "max_ack_pending": mq.max_ack_pending or 1000,
            "filter_subjects": filters,
            "replay_policy": "instant",
            "num_replicas": mq.consumer_replicas,
            "mem_storage": mq.consumer_memory_storage,
        }
        body = {"stream_name": MSGS, "config": config}
        await self.js.request(f"CONSUMER.CREATE.{MSGS}.{name}", body)
        st.cons = name
        st.filters = filters

    async def _write_record(self, session: Session, st: SessionState) -> None:
        key = st.key
        record = {
            "id": session.client_id,
            "p": session.persistent,
            "exp": session.expiry_interval,
            "subs": subs_record(session),
            "cons": st.cons,
            "cf": st.filters,
            "node": self.node,
            "run": self.token,
            "will": st.will,
            "q2": st.q2,
        }
        hdr = encode_headers([("Nats-Expected-Last-Subject-Sequence", str(session.seq))])
        self.writing[key] = self.writing.get(key, 0) + 1
        try:
            ack = await self.publish_record("$HB.sess." + key, _pack(record), hdr)
            session.seq = ack["seq"]
            self._note_write(key, ack["seq"])
        finally:
            self._settle(key)

    def delete_session(self, session: Session) -> None:
        """The session ended for good (expiry, or a clean one left): its record, if it is
        still the last one, and everything else it had in the domain."""
        key = session.key
        st = session.durable
        if session.seq and self.latest.get(key, 0) <= session.seq:
            fut = self.js.request(f"STREAM.MSG.DELETE.{SESS}", {"seq": session.seq})
            self._forget(fut, f"delete of session record {key}")
        cons = st.cons if st is not None else None
        if cons or session.persistent:
            self._forget(asyncio.ensure_future(self._clear(key, cons)), f"cleanup of session {key}")
        if st is not None:
            st.cons = None
            st.filters = []
        session.seq = 0
