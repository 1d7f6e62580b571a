"""One leaf-node link to a hub: ``LeafConnection``, a router client like a NATS
connection, whose subscriptions are the hub's interest.

Into the router: the hub's ``LS+`` become ``LeafSubscription``s in the bound account's
``Sublist`` (a publish here reaches the hub only when the cluster wants it), and its
``LMSG``/``HMSG`` are routed as if published here, with nats-server's rules for a
message from a leaf: no echo back over the link, and local queue groups only when the
message names them (one member each; nats-server ``processMsgResults``).

Out of the router: ``deliver`` only notes, per delivery round, whether a plain
subscription matched and which queue groups picked the hub; ``deliver_matched`` then
writes one ``LMSG``/``HMSG`` naming those groups (``| g1 g2``), so several matching
hub subscriptions never send a message twice.

MQTT messages cross with their MQTT metadata in headers (``Nmqtt-Pub: <qos>``, as
nats-server's MQTT marks them, plus ``Nmqtt-*`` for MQTT 5 properties that are not
headers already: ``mqtt_headers``), so a subscriber on another node gets the QoS
[MQTT-3.8.4-8 min(QoS)] and the properties it would get on a single node.
"""

from __future__ import annotations

import base64
import logging
import time
from typing import TYPE_CHECKING, Any

from hybridbus.codec.leaf import (
    LEAF_ERR,
    LEAF_ERROR,
    LEAF_INFO,
    LEAF_MSG,
    LEAF_OK,
    LEAF_PING,
    LEAF_PONG,
    LEAF_RUN,
    LEAF_SUB,
    LEAF_UNSUB,
    LeafParser,
    encode_ls_minus,
    encode_ls_plus,
)
from hybridbus.core import client as reasons
from hybridbus.core.client import ClientBase
from hybridbus.core.flow import WORK_CHECK
from hybridbus.router.sublist import Subscription
from hybridbus.store.match import filters_overlap
from hybridbus.subjects import subject_is_subset, subject_matches

if TYPE_CHECKING:
    from hybridbus.core.hub import Hub
    from hybridbus.leaf.remote import LeafRemote

log = logging.getLogger("hybridbus.leaf")

LINK_SOFT_LIMIT = 1 << 20
PING = b"PING\r\n"
PONG = b"PONG\r\n"
LOOP_DETECTED = "Loop detected"
HDR_LINE = b"NATS/1.0\r\n"
# The QoS header of an MQTT message crossing the link, per QoS (nats-server's name).
QOS_HEADER = "Nmqtt-Pub"
_QOS_LINES = [b"Nmqtt-Pub: %d\r\n" % q for q in range(3)]
# The whole header block of a plain MQTT message (QoS only) -> its QoS.
_QOS_ONLY = {HDR_LINE + line + b"\r\n": q for q, line in enumerate(_QOS_LINES)}


class LeafSubscription(Subscription):
    """The hub's interest in a subject (and queue group, with the hub's member count)."""

    __slots__ = ("weight", "checked")

    def __init__(self, subject: str, queue: str | None, client: LeafConnection, weight: int):
        super().__init__(subject, queue, client, (subject, queue))
        self.weight = weight
        # Whether a message must be checked against the link's deny rules: only when
        # this interest overlaps one of them (a `>` does, `orders.*` does not).
        self.checked = False


def mqtt_headers(msg: Any, headers: bytes | None) -> bytes:
    """The header block an MQTT message crosses the link with: its QoS, the MQTT 5
    properties that are not headers already (user properties and content type are,
    see MqttBroker.publish), then the headers it had."""
    lines = [HDR_LINE, _QOS_LINES[msg.qos]]
    props = msg.properties
    if props:
        fmt = props.get("payload_format_indicator")
        if fmt:
            lines.append(b"Nmqtt-Fmt: %d\r\n" % fmt)
        expiry = props.get("message_expiry_interval")
        if expiry is not None:
            lines.append(b"Nmqtt-Exp: %d\r\n" % expiry)
        corr = props.get("correlation_data")
        if corr is not None:
            lines.append(b"Nmqtt-Corr: %s\r\n" % base64.b64encode(corr))
    if headers:
        body = headers[len(HDR_LINE) :] if headers.startswith(HDR_LINE) else headers
        lines.append(body)
    else:
        lines.append(b"\r\n")
    return b"".join(lines)


class LeafConnection(ClientBase):
    """The spoke's end of one link. Not in ``server.clients`` (nor /connz): it is in
    ``server.leafnodes`` once the hub accepted it (/leafz)."""

    __slots__ = (
        "remote",
        "parser",
        "subs",
        "connected",
        "remote_name",
        "remote_id",
        "remote_domain",
        "url",
        "rtt",
        "ping_sent",
        "pings_out",
        "info",
        "msg_queues",
        "mark",
        "hit_plain",
        "hit_queues",
        "hit_subject",
        "deny_out",
        "deny_in",
        "tls_pending",
        "_in_cache",
        "_out_cache",
    )

    conn_type = "leaf"
    is_leaf = True
    echo = False  # a message from the hub never goes back to it
    compression = "off"

    def __init__(self, server: Hub, remote: LeafRemote, url: str) -> None:
        super().__init__(server)
        self.kind = "Leafnode"
        self.remote = remote
        self.account = remote.account
        self.parser = LeafParser()
        self.subs: dict[tuple, LeafSubscription] = {}
        self.connected = False
        self.remote_name = ""
        self.remote_id = ""
        self.remote_domain = ""
        self.url = url
        self.rtt = 0.0
        self.ping_sent = 0.0
        self.pings_out = 0
        self.info: dict = {}
        self.msg_queues: list | None = None  # the queue names of the message being routed
        self.mark = -1
        self.hit_plain = False
        self.hit_queues: list | None = None
        self.hit_subject = ""
        # subjects we never send to the hub / never take from it (nats-server's
        # deny_exports / deny_imports, plus its JetStream rules: remote.py)
        self.deny_out: list[str] = remote.deny_out
        self.deny_in: list[str] = remote.deny_in
        self.tls_pending = False
        # subject -> denied?, per direction: a link sees the same few subjects again
        self._in_cache: dict[str, bool] = {}
        self._out_cache: dict[str, bool] = {}

    @property
    def remote_subs(self) -> dict:
        return {key: sub.weight for key, sub in self.subs.items()}

    # -- asyncio.Protocol -------------------------------------------------------------

    def connection_made(self, transport) -> None:
        # Not ClientBase's: a link is not a client (no register, no connection count).
        self.transport = transport
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            self.ip, self.port = peer[0], peer[1]
        self.cid = self.remote.next_cid()
        # Past LINK_SOFT_LIMIT unsent bytes the hub is behind: the connection whose read
        # feeds the link waits (Server.note_congested, STALL at most each time), as
        # nats-server stalls a producer; reading on would only grow this buffer and
        # take the CPU the hub and the other node need (the bench's A -> B flood).
        transport.set_write_buffer_limits(high=LINK_SOFT_LIMIT, low=LINK_SOFT_LIMIT // 4)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.close_reason is None:
            self.close_reason = reasons.READ_ERROR if exc is not None else reasons.CLIENT_CLOSED
        self.closing = True
        self._release()

    def on_closed(self) -> None:
        sublist = self.account.sublist
        for sub in self.subs.values():
            sublist.remove(sub)
        self.subs.clear()
        if self.connected:
            log.info(
                "%s:%d - lid:%d - Leafnode connection to %s closed: %s",
                self.ip,
                self.port,
                self.cid,
                self.remote_name or self.url,
                self.close_reason,
            )
        self.connected = False
        self.remote.link_lost(self)

    def subscription_count(self) -> int:
        return len(self.subs)

    # -- input ------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self.last_activity = time.time()
        server = self.server
        server.reading = self
        server.read_started = time.perf_counter()
        server.work = 0
        self._process(self.parser.feed(data), 0)

    def _process(self, ops: list, start: int) -> None:  # hot path: the link's reads
        server = self.server
        route = server.route
        deny_in = self.deny_in
        i = start
        n = len(ops)
        while i < n:
            if self.closing or self.tls_pending:
                if self.tls_pending:
                    self.resume_input = lambda i=i: self._process(ops, i)
                break
            if server.work >= WORK_CHECK and server.must_yield(self):
                self.resume_input = lambda i=i: self._process(ops, i)
                break
            op = ops[i]
            i += 1
            kind = op[0]
            if kind == LEAF_RUN:
                _, subject, headers, payloads = op
                if deny_in and _denied(subject, deny_in, self._in_cache):
                    continue
                self.msg_queues = None
                if headers is None or headers in _QOS_ONLY:
                    routed = self._route_run(subject, headers, payloads)
                else:
                    for payload in payloads:
                        route(self, subject, None, headers, payload)
                    routed = len(payloads)
                self.in_msgs += routed
                self.in_bytes += sum(map(len, payloads[:routed]))
                if routed < len(payloads):  # the rest after the turn's budget check
                    i -= 1
                    ops[i] = (LEAF_RUN, subject, headers, payloads[routed:])
                continue
            if kind != LEAF_MSG:
                self._control(op)
                continue
            _, subject, reply, queues, headers, payload = op
            if deny_in and _denied(subject, deny_in, self._in_cache):
                continue
            if reply is None and queues is None and i < n:
                # A run of messages to one subject with one header block (none, or a
                # plain MQTT message's QoS): one match for the run.
                j = i
                while j < n:
                    nxt = ops[j]
                    if (
                        nxt[0] != LEAF_MSG
                        or nxt[1] is not subject
                        or nxt[2] is not None
                        or nxt[3] is not None
                        or nxt[4] != headers
                    ):
                        break
                    j += 1
                if j > i and (headers is None or headers in _QOS_ONLY):
                    payloads = [m[5] for m in ops[i - 1 : j]]
                    self.msg_queues = None
                    routed = self._route_run(subject, headers, payloads)
                    self.in_msgs += routed
                    self.in_bytes += sum(map(len, payloads[:routed]))
                    i += routed - 1
                    continue
            self.in_msgs += 1
            self.in_bytes += len(payload) if headers is None else len(payload) + len(headers)
            self.msg_queues = queues
            if reply is not None and "@" in reply and reply.startswith("$JS.ACK."):
                # A hub consumer's delivery: nats-server sends it over a link to the
                # deliver subject with "<ack reply>@<stream subject>" as the reply, and
                # a client sees the stream's subject with the ack reply (deliverMsg).
                ack, _, shown = reply.rpartition("@")
                server.route_to(self, subject, shown, ack, headers, payload)
                continue
            route(self, subject, reply, headers, payload)
        server.flush()
        server.reading = None

    def _route_run(self, subject: str, headers: bytes | None, payloads: list) -> int:
        """Server.route_run for a run from the hub; an MQTT run (QoS header only) goes
        as MQTT messages, so sessions take it as they take a local publisher's run."""
        msgs = None
        if headers is not None:
            broker = self.account.mqtt
            if broker is None:
                return self.server.route_run(self, subject, payloads)  # no MQTT here
            msgs = broker.messages_from_leaf(subject, _QOS_ONLY[headers], payloads)
        return self.server.route_run(self, subject, payloads, msgs)

    def _control(self, op: tuple) -> None:
        kind = op[0]
        if kind == LEAF_SUB:
            self._hub_sub(op[1], op[2], op[3])
        elif kind == LEAF_UNSUB:
            sub = self.subs.pop((op[1], op[2]), None)
            if sub is not None:
                self.account.sublist.remove(sub)
        elif kind == LEAF_PING:
            self.queue(PONG)
        elif kind == LEAF_PONG:
            self.pings_out = 0
            if self.ping_sent:
                self.rtt = time.monotonic() - self.ping_sent
                self.ping_sent = 0.0
        elif kind == LEAF_INFO:
            self.remote.hub_info(self, op[1])
        elif kind == LEAF_ERR:
            self.remote.hub_error(self, op[1])
        elif kind == LEAF_ERROR:
            log.warning(
                "%s:%d - lid:%d - leafnode protocol error: %s", self.ip, self.port, self.cid, op[1]
            )
            self.close(reasons.PARSE_ERROR)
        elif kind == LEAF_OK:
            pass

    def _hub_sub(self, subject: str, queue: str | None, weight: int) -> None:
        key = (subject, queue)
        sub = self.subs.get(key)
        if sub is not None:
            sub.weight = weight  # a queue group's member count changed
            return
        if subject == self.remote.loop_subject:
            # Our own loop-detection subject came back through the hub: two links of
            # this server reach one account (nats-server handleLeafNodeLoop).
            self.remote.loop_detected(self)
            return
        deny = self.deny_out
        if deny and any(subject_is_subset(subject, p) for p in deny):
            return  # we would never send it anything
        sub = LeafSubscription(subject, queue, self, weight)
        if deny and any(filters_overlap(subject, p) for p in deny):
            sub.checked = True
        try:
            self.account.sublist.insert(sub)
        except ValueError:
            log.warning("lid:%d - hub sent invalid interest %r %r", self.cid, subject, queue)
            return
        self.subs[key] = sub

    # -- output -----------------------------------------------------------------------

    def deliver(self, sub, subject, reply, headers, payload, mqtt_msg=None) -> None:
        """Notes what matched this round; ``deliver_matched`` sends once."""
        if self.closing or not self.connected:
            return
        if sub.checked and _denied(subject, self.deny_out, self._out_cache):
            return
        server = self.server
        if self.mark != server.route_seq:
            self.mark = server.route_seq
            self.hit_plain = False
            self.hit_queues = None
            self.hit_subject = subject
            server.route_sessions.append(self)
        queue = sub.queue
        if queue is None:
            self.hit_plain = True
        elif self.hit_queues is None:
            self.hit_queues = [queue]
        else:
            self.hit_queues.append(queue)

    def deliver_matched(self, subject, reply, headers, payload, mqtt_msg) -> None:
        queues = self.hit_queues
        if mqtt_msg is not None:
            headers = mqtt_headers(mqtt_msg, headers)
        out = self.out
        subj = subject.encode("utf-8", "surrogateescape")
        if queues:
            names = " ".join(queues).encode("utf-8", "surrogateescape")
            if reply is None:
                middle = b" | " + names
            else:
                middle = b" + " + reply.encode("utf-8", "surrogateescape") + b" " + names
        elif reply is not None:
            middle = b" " + reply.encode("utf-8", "surrogateescape")
        else:
            middle = b""
        size = len(payload)
        if headers is None:
            out += b"LMSG %s%s %d\r\n" % (subj, middle, size)
        else:
            hsize = len(headers)
            out += b"HMSG %s%s %d %d\r\n" % (subj, middle, hsize, hsize + size)
            out += headers
            size += hsize
        out += payload
        out += b"\r\n"
        self.out_msgs += 1
        self.out_bytes += size
        if not self.dirty:
            self.server.mark_dirty(self)

    def deliver_matched_run(self, msgs: list) -> None:
        """A run of MQTT messages to one subject (one QoS, no properties: Server.route_run)."""
        if not msgs:
            return
        head_hdr = HDR_LINE + _QOS_LINES[msgs[0].qos] + b"\r\n"
        hsize = len(head_hdr)
        prefix = b"HMSG %s %d " % (self.hit_subject.encode("utf-8", "surrogateescape"), hsize)
        payloads = [msg.payload for msg in msgs]
        sizes = list(map(len, payloads))
        size = sizes[0]
        out = self.out
        if sizes.count(size) == len(sizes):
            # One frame head for the whole run (as NatsConnection.deliver_batch).
            head = prefix + b"%d\r\n" % (hsize + size) + head_hdr
            out += head
            out += (b"\r\n" + head).join(payloads)
            out += b"\r\n"
        else:
            for payload in payloads:
                out += prefix
                out += b"%d\r\n" % (hsize + len(payload))
                out += head_hdr
                out += payload
                out += b"\r\n"
        self.out_msgs += len(msgs)
        self.out_bytes += sum(sizes) + hsize * len(msgs)
        if not self.dirty:
            self.server.mark_dirty(self)

    # -- interest out -----------------------------------------------------------------

    def announce(self, subject: str, queue: str | None, weight: int) -> None:
        if weight > 0:
            self.queue(encode_ls_plus(subject, queue, weight))
        else:
            self.queue(encode_ls_minus(subject, queue))

    # -- timers -----------------------------------------------------------------------

    def sweep(self, now: float) -> None:
        if self.closing or not self.connected:
            return
        opts = self.server.options
        if now - self.ping_sent < opts.ping_interval and self.ping_sent:
            return
        if self.pings_out + 1 > opts.ping_max:
            log.info("lid:%d - Stale leafnode connection to %s", self.cid, self.remote_name)
            self.close(reasons.STALE_CONNECTION)
            return
        self.pings_out += 1
        self.ping_sent = now
        self.queue(PING)


def _denied(subject: str, patterns: list[str], cache: dict) -> bool:
    """Whether a deny rule matches `subject`, remembered in `cache`."""
    hit = cache.get(subject)
    if hit is None:
        hit = any(subject_matches(pattern, subject) for pattern in patterns)
        if len(cache) > 4096:
            cache.clear()
        cache[subject] = hit
    return hit
