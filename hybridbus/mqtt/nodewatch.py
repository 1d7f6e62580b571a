"""Wills that outlive their node (``mqtt { js_domain }``): nats-server loses the will of
a client whose node dies; hybridbus publishes it from a surviving node.

How a node knows. Every node publishes ``$HB.alive.<node>`` once a second (across the
leaf link; the hub keeps the last one of each node in stream ``HB_nodes``) and watches
``$HB.alive.*``. A node it has heard from that stays silent for ``DEAD_AFTER`` seconds
is suspect; since our own link may be seconds behind (heartbeats queue behind a flood
like any message), the hub is asked when it stored that node's last heartbeat, and the
node is dead only if that was over ``DEAD_AFTER`` before the question. (A node cut off
from the hub for that long looks dead too: its clients' wills may then be published
although they are still connected to it.)

What it knows. While a connection with a will is open, its node keeps a record in the
stream ``HB_wills``, subject ``$HB.will.<node>.<key>`` (one per subject), with the will
and its delay; the record goes when the connection ends (the node itself then publishes
the will or discards it, as on one node). A dead node's records are the wills it owed.

Who publishes, once. A surviving node reads the dead node's records. A will with a
Will Delay Interval waits it out, then the session's record in ``HB_sess`` is read: if
another node holds the client id since (the client reconnected elsewhere), the will is
not due [MQTT-3.1.3-9]. Then the node claims the record by writing an empty one with ``Nats-Expected-Last-Subject-Sequence``
(compare and set): one node wins, and only the winner publishes the will, after the
Will Delay Interval [MQTT-3.1.3-9] (counted from the claim, so a will may come up to
``DEAD_AFTER`` + 1 s + the delay after the node died). A restarted node does the same
with records left by its own previous run (``server_name`` must be stable for that).

Sessions that outlive their node end on time too. A persistent session with a finite
Session Expiry Interval held by a node has a record in stream ``HB_exp``, subject
``$HB.exp.<node>.<key>``: the interval, when its device left (0 while connected) and the
node's run token, which the session's own record in ``HB_sess`` carries too. Without
it, a session whose node died would never expire (its clock ran in that process only),
and a device coming back after the interval would find it [MQTT-3.1.2-23 keeps it for
the interval only]. A surviving node reads the dead node's records; at each one's end
(the interval after the device left, or after the node's last heartbeat if it was
connected then) the session ends if its record still names that run: an empty record
is written by compare and set (one node wins; a client back meanwhile made the set
fail), then its consumer and its QoS 2 state go, as when it expires on its node.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import msgpack

from hybridbus.codec.nats import encode_headers
from hybridbus.core.jsclient import JsError
from hybridbus.mqtt.broker import session_key
from hybridbus.mqtt.message import MqttMessage

if TYPE_CHECKING:
    from hybridbus.mqtt.broker import MqttBroker

log = logging.getLogger("hybridbus.mqtt")

WILLS = "HB_wills"
EXPIRIES = "HB_exp"  # the sessions each node holds, with their expiry clocks
SESS = "HB_sess"
NEVER = 0xFFFFFFFF  # a Session Expiry Interval that never ends (3.2.2.3.2)
NODES = "HB_nodes"  # each node's last heartbeat, as the hub stored it
ALIVE = "$HB.alive."
HEARTBEAT = 1.0
DEAD_AFTER = 4.0
NO_MESSAGE = 10037
WRONG_LAST_SEQ = 10071

_pack = msgpack.Packer(use_bin_type=True).pack


def _ignore(answer: Any, err: Any) -> None:
    """A record write nothing waits for (a lost one costs a late expiry at worst)."""


def _wall_time(stamp: str) -> float:
    """Seconds since the epoch of an RFC 3339 time as JetStream writes it
    (``2026-12-07T10:12:13.123456789Z``; nanoseconds cut to microseconds)."""
    head, _, frac = stamp.rstrip("Z").partition(".")
    when = datetime.fromisoformat(head).replace(tzinfo=UTC)
    return when.timestamp() + (float("0." + frac[:6]) if frac else 0.0)


class NodeWatch:
    """One per MQTT broker whose state is in a JetStream domain."""

    def __init__(self, broker: MqttBroker, persistence: Any) -> None:
        self.broker = broker
        self.persistence = persistence
        self.js = persistence.js
        self.node = persistence.node or broker.server.server_id
        self.prefix = f"$HB.will.{self.node}."
        self.exp_prefix = f"$HB.exp.{self.node}."
        self.tracked: set[str] = set()  # keys of the sessions with a record in HB_exp
        self.expired = 0  # sessions of dead nodes this node ended (monitoring, tests)
        self.seen: dict[str, float] = {}  # node -> monotonic time of its last heartbeat
        self.armed: dict[str, int] = {}  # key -> seq of our record (0: being written)
        self.suspected: set[str] = set()
        self.claimed = 0  # wills this node published for dead nodes (monitoring, tests)
        self._task: asyncio.Task | None = None
        self._ready = False

    def start(self) -> None:
        self.js.subscribe(ALIVE + "*", self._on_alive)
        self._task = self.broker.server.loop.create_task(self._run())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    # -- this node's wills ------------------------------------------------------------

    def arm(self, client_id: str, will: MqttMessage, delay: int) -> None:
        """A connection with a will is open on this node."""
        if not self._ready:
            return  # no stream yet: the will is this node's alone (as nats-server's)
        key = session_key(client_id)
        record = [
            client_id,
            will.topic,
            will.payload,
            will.qos,
            will.retain,
            will.properties,
            delay,
        ]
        self.armed[key] = 0

        def acked(answer: dict | None, err: JsError | None) -> None:
            if err is not None:
                log.debug("will of %r not recorded: %s", client_id, err)
                self.armed.pop(key, None)
            elif key in self.armed:
                self.armed[key] = answer["seq"]

        self.js.publish(self.prefix + key, _pack(record), None, acked)

    def disarm(self, client_id: str) -> None:
        """The connection ended here: this node publishes or discards the will itself."""
        key = session_key(client_id)
        if self.armed.pop(key, None) is None:
            return
        self.js.publish(self.prefix + key, b"", None, lambda answer, err: None)

    # -- this node's sessions' expiry clocks --------------------------------------------

    def track(self, session: Any, offline: bool) -> None:
        """A session is held here (``offline``: its device just left, the expiry clock
        runs): recorded if it is one that expires, else its record (if any) goes."""
        expiry = session.expiry_interval
        if not self._ready or not session.persistent or not expiry or not 0 < expiry < NEVER:
            self.untrack(session)
            return
        self.tracked.add(session.key)
        run = self.persistence.token
        record = [session.client_id, expiry, time.time() if offline else 0.0, run]
        self.js.publish(self.exp_prefix + session.key, _pack(record), None, _ignore)

    def untrack(self, session: Any) -> None:
        """The session no longer lives here (ended, or taken over by another node)."""
        if session.key in self.tracked:
            self.tracked.discard(session.key)
            self.js.publish(self.exp_prefix + session.key, b"", None, _ignore)

    # -- other nodes ------------------------------------------------------------------

    def _on_alive(self, subject: str, reply, headers, payload) -> None:
        node = subject[len(ALIVE) :]
        if node != self.node:
            self.seen[node] = time.monotonic()

    async def _run(self) -> None:
        while True:
            try:
                await self._setup()
                break
            except (JsError, OSError) as err:
                log.debug("HB_wills not ready: %s", err)
                await asyncio.sleep(1.0)
        await self._claim_node(self.node)  # what our previous run left
        await self._expire_node(self.node, time.time())
        self._ready = True  # only now: the claim above must not see this run's wills
        for session in list(self.broker.sessions.values()):
            conn = session.conn  # connected before the stream was there
            if conn is not None and getattr(conn, "will", None) is not None:
                self.arm(session.client_id, conn.will, conn.will_delay)
            if session.persistent:
                self.track(session, offline=conn is None)
        while True:
            self.js.send(ALIVE + self.node, b"")
            self.js.run()
            now = time.monotonic()
            for node, last in list(self.seen.items()):
                if now - last > DEAD_AFTER and node not in self.suspected:
                    self.suspected.add(node)
                    self.broker.server.loop.create_task(self._suspect(node))
            await asyncio.sleep(HEARTBEAT)

    async def _suspect(self, node: str) -> None:
        """`node` went silent here. Our own link may be behind (heartbeats queue behind
        a flood like any message), so ask the hub when it last stored one: dead only
        if that is older than DEAD_AFTER before we asked."""
        try:
            asked = time.time()
            try:
                answer = await self.js.request(
                    f"STREAM.MSG.GET.{NODES}", {"last_by_subj": ALIVE + node}
                )
                last = _wall_time(answer["message"].get("time", ""))
            except JsError as err:
                if err.err_code != NO_MESSAGE:
                    return  # cannot tell now: asked again at the next beat
                last = 0.0  # none within the stream's max age
            if last > asked - DEAD_AFTER:
                self.seen[node] = time.monotonic()  # alive: we were behind
                return
            self.seen.pop(node, None)
            log.warning("MQTT node %r silent for %gs: publishing its wills", node, DEAD_AFTER)
            await self._claim_node(node)
            await self._expire_node(node, last or asked)
        finally:
            self.suspected.discard(node)

    async def _setup(self) -> None:
        while not getattr(self.persistence, "ready", False):
            await asyncio.sleep(0.2)
        cfg = {
            "name": WILLS,
            "subjects": ["$HB.will.>"],
            "storage": "file",
            "num_replicas": self.broker.server.options.mqtt.stream_replicas or 1,
            "max_msgs_per_subject": 1,
        }
        nodes = {
            **cfg,
            "name": NODES,
            "subjects": [ALIVE + ">"],
            "storage": "memory",
            "max_age": int(60e9),  # a node gone for a minute is long dead
        }
        expiries = {**cfg, "name": EXPIRIES, "subjects": ["$HB.exp.>"]}
        for name, config in ((WILLS, cfg), (NODES, nodes), (EXPIRIES, expiries)):
            try:
                await self.js.request(f"STREAM.CREATE.{name}", config)
            except JsError as err:
                if err.err_code != 10058:  # exists with another config: keep it
                    raise

    async def _claim_node(self, node: str) -> None:
        try:
            records = await self.persistence.records(WILLS, f"$HB.will.{node}.>")
        except JsError as err:
            log.warning("wills of node %r not read: %s", node, err)
            return
        for subject, seq, record in records:
            if not record:
                continue  # an empty record: the will is gone
            try:
                await self._claim(node, subject, seq, record)
            except (JsError, ValueError, TypeError) as err:
                log.warning("will %s not published: %s", subject, err)

    async def _claim(self, node: str, subject: str, seq: int, record: list) -> None:
        client_id, topic, payload, qos, retain, props, delay = record
        key = subject.rsplit(".", 1)[1]
        if delay:
            # A client back within the Will Delay Interval keeps its will unsent
            # [MQTT-3.1.3-9]; without a delay it was due when the node died.
            await asyncio.sleep(delay)
            if await self._moved(key, node):
                return
        hdr = encode_headers([("Nats-Expected-Last-Subject-Sequence", str(seq))])
        try:
            await self.persistence.publish_record(subject, b"", hdr)
        except JsError as err:
            if err.err_code == WRONG_LAST_SEQ:
                return  # another node claimed it first
            raise
        will = MqttMessage(topic, payload, qos, retain, props or None, None)
        log.info("publishing the will of %r (node %r is gone)", client_id, node)
        self.claimed += 1
        self.broker._publish_will(will)
        self.broker.server.flush()

    async def _moved(self, key: str, node: str) -> bool:
        """Whether the session's record names another node than `node` (the client is
        back, elsewhere: its will is not due)."""
        record, _seq = await self.persistence.last_record("HB_sess", "$HB.sess." + key)
        owner = record.get("node") if record else None
        return bool(owner) and owner != node

    # -- sessions of dead nodes ---------------------------------------------------------

    async def _expire_node(self, node: str, died: float) -> None:
        """Schedule the end of each session `node` held (the module docstring)."""
        try:
            records = await self.persistence.records(EXPIRIES, f"$HB.exp.{node}.>")
        except JsError as err:
            log.warning("sessions of node %r not read: %s", node, err)
            return
        loop = self.broker.server.loop
        for subject, seq, record in records:
            try:
                _client_id, expiry, left, run = record
                due = (left or died) + float(expiry)
            except (TypeError, ValueError):
                continue  # an empty record: nothing held
            loop.call_later(
                max(0.0, due - time.time()),
                lambda s=subject, q=seq, r=run: loop.create_task(self._end_session(s, q, r)),
            )

    async def _end_session(self, subject: str, seq: int, run: str) -> None:
        key = subject.rsplit(".", 1)[1]
        p = self.persistence
        sess = "$HB.sess." + key
        try:
            record, rseq = await p.last_record(SESS, sess)
            if record and record.get("run") == run:
                hdr = encode_headers([("Nats-Expected-Last-Subject-Sequence", str(rseq))])
                try:
                    ack = await p.publish_record(sess, b"", hdr)
                except JsError as err:
                    if err.err_code != WRONG_LAST_SEQ:
                        raise
                    ack = None  # the client is back, or another node ended it first
                if ack is not None:
                    log.info("MQTT session %r expired (its node is gone)", record.get("id"))
                    self.expired += 1
                    await p._clear(key, record.get("cons"))
                    try:  # the empty record has done its job
                        await p.js.request(f"STREAM.MSG.DELETE.{SESS}", {"seq": ack["seq"]})
                    except JsError:
                        pass  # a claim replaced it meanwhile
            # Done with the clock, unless this node's run wrote it again (a restart).
            hdr = encode_headers([("Nats-Expected-Last-Subject-Sequence", str(seq))])
            await p.publish_record(subject, b"", hdr)
        except JsError as err:
            if err.err_code != WRONG_LAST_SEQ:
                log.warning("expiry of MQTT session %s not done: %s", key, err)
