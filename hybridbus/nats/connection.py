"""The NATS client protocol front end: an asyncio.Protocol over the sans-IO codec.

Bytes come in through ``data_received``, the codec turns them into ops, and one
``handle_*`` method per op applies them to the router. Nothing here parses
text; nothing here blocks. Replies and deliveries are appended to outbound
buffers and written once per read (see ``client.py``).

Defaults follow nats-server: a client starts verbose, pedantic and with echo on,
and its CONNECT overlays that (nats-conventions §4.3). Errors use nats-server's
exact -ERR texts (§4.7); permission and subject errors keep the connection,
protocol errors close it.
"""

from __future__ import annotations

import json
import logging
import random
import time
from itertools import islice
from typing import TYPE_CHECKING, Any

from hybridbus.codec.nats import (
    OP_ACKS,
    OP_CONNECT,
    OP_ERROR,
    OP_HPUB,
    OP_PING,
    OP_PONG,
    OP_PUB,
    OP_SUB,
    OP_UNSUB,
    Parser,
    ack_subjects,
    encode_err,
)
from hybridbus.core import client as reasons
from hybridbus.core.client import ClientBase
from hybridbus.core.flow import WORK_CHECK
from hybridbus.router.sublist import Subscription
from hybridbus.subjects import is_valid_publish_subject, is_valid_queue_name, is_valid_subject

if TYPE_CHECKING:
    from hybridbus.core.hub import Hub

log = logging.getLogger("hybridbus.nats")

OK = b"+OK\r\n"


def _wire(text: str) -> bytes:
    """Protocol text back to bytes. The codec decodes with 'surrogateescape', so a
    client's invalid UTF-8 goes back out exactly as it came in."""
    return text.encode("utf-8", "surrogateescape")


# Seconds after connect before the first server PING, which seeds the RTT.
FIRST_PING_DELAY = 2.0
PING = b"PING\r\n"
PONG = b"PONG\r\n"


class NatsSubscription(Subscription):
    """A NATS SUB: `sid` is the client's token, kept as bytes for MSG lines."""

    __slots__ = ("sid_bytes", "msgs", "max_msgs", "last_subject", "last_size", "head")

    batchable = True  # NatsConnection.deliver_batch

    def __init__(self, subject: str, queue: str | None, client: NatsConnection, sid: str) -> None:
        super().__init__(subject, queue, client, sid)
        self.sid_bytes = _wire(sid)
        self.msgs = 0
        self.max_msgs = 0
        self.last_subject: str | None = None
        self.last_size = -1
        self.head = b""

    def set_head(self, subject: str, size: int) -> None:
        """Cache the MSG line for `subject` and payload `size` (the hot case: one
        subject, often one size, per subscription)."""
        self.last_subject = subject
        self.last_size = size
        self.head = b"MSG %s %s %d\r\n" % (_wire(subject), self.sid_bytes, size)


class NatsConnection(ClientBase):
    """One NATS client connection."""

    __slots__ = (
        "parser",
        "subs",
        "verbose",
        "pedantic",
        "echo",
        "headers",
        "no_responders",
        "protocol",
        "name",
        "lang",
        "version",
        "connected",
        "pings_out",
        "ping_due",
        "ping_sent",
        "rtt",
        "active",
        "first_pong",
        "auth_deadline",
        "nonce",
    )

    conn_type = "nats"

    def __init__(self, server: Hub) -> None:
        super().__init__(server)
        opts = server.options
        # ack_runs: a read's JetStream acks come as one op (Server.route_acks)
        self.parser = Parser(opts.max_control_line, opts.max_payload, ack_runs=True)
        self.subs: dict[str, NatsSubscription] = {}
        self.verbose = True
        self.pedantic = True
        self.echo = True
        self.headers = False
        self.no_responders = False
        self.protocol = 0
        self.name = ""
        self.lang = ""
        self.version = ""
        self.connected = False
        self.pings_out = 0
        # The first PING goes out early (as nats-server's does) to measure the RTT.
        self.ping_due = time.monotonic() + min(FIRST_PING_DELAY, opts.ping_interval)
        self.ping_sent = 0.0
        self.rtt = 0.0
        self.active = False
        self.first_pong = True
        self.auth_deadline = 0.0
        # what an nkey user signs: per connection, sent in INFO (security/nkey.py)
        self.nonce: str | None = None

    # -- lifecycle --------------------------------------------------------------------

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        server = self.server
        if server.auth_required:
            self.nonce = server.security.nonce_for(self)
        info = server.client_info(self)
        self.queue(b"INFO " + json.dumps(info, separators=(",", ":")).encode() + b" \r\n")
        if server.over_connection_limit():
            log.warning(
                "%s:%d - cid:%d - maximum connections exceeded", self.ip, self.port, self.cid
            )
            self.close(reasons.MAX_CONNECTIONS, encode_err("maximum connections exceeded"))
            return
        if server.auth_required:
            self.auth_deadline = time.monotonic() + server.options.auth.timeout
        log.debug(
            "%s:%d - cid:%d - Client connection created (%s)",
            self.ip,
            self.port,
            self.cid,
            self.conn_type,
        )
        server.flush()
        if server.nats_tls is not None and self.tls_version is None and not self.ws:
            # INFO went out in clear text; now the client starts TLS (nats-server's order).
            self.transport.pause_reading()
            server.loop.create_task(self._upgrade_tls())

    async def _upgrade_tls(self) -> None:
        server = self.server
        old = self.transport
        try:
            new = await server.loop.start_tls(
                old,
                self,
                server.nats_tls,
                server_side=True,
                ssl_handshake_timeout=server.options.tls.timeout,
            )
        except (OSError, ValueError, TimeoutError, ConnectionError) as err:
            log.info("%s:%d - cid:%d - TLS handshake error: %s", self.ip, self.port, self.cid, err)
            self.close_reason = reasons.TLS_HANDSHAKE_FAILURE
            self.closing = True
            old.abort()
            return
        except Exception as err:  # ssl errors come in several shapes
            log.info("%s:%d - cid:%d - TLS handshake error: %r", self.ip, self.port, self.cid, err)
            self.close_reason = reasons.TLS_HANDSHAKE_FAILURE
            self.closing = True
            old.abort()
            return
        if new is None or self.closing:
            return
        self.transport = new
        new.set_write_buffer_limits(high=server.options.max_pending)
        ssl_obj = new.get_extra_info("ssl_object")
        if ssl_obj is not None:
            self.tls_version = (ssl_obj.version() or "").replace("TLSv", "")
            cipher = ssl_obj.cipher()
            self.tls_cipher = cipher[0] if cipher else None

    def on_closed(self) -> None:
        sublist = self.account.sublist
        for sub in self.subs.values():
            sublist.remove(sub)
        self.subs.clear()
        log.debug(
            "%s:%d - cid:%d - Client connection closed (%s): %s",
            self.ip,
            self.port,
            self.cid,
            self.conn_type,
            self.close_reason,
        )

    def subscription_count(self) -> int:
        return len(self.subs)

    def auth_revoked_notice(self) -> bytes:
        return encode_err("Authorization Violation")

    # -- input ------------------------------------------------------------------------

    def _plain_publisher(self) -> bool:
        """True when a PUB needs no checks beyond routing: the common case, which
        data_received handles inline."""
        return (
            (self.connected or not self.server.auth_required)
            and not self.pedantic
            and not self.verbose
            and self.perms is None
        )

    def data_received(self, data: bytes) -> None:
        self.last_activity = time.time()
        self.active = True
        server = self.server
        server.reading = self
        server.read_started = time.perf_counter()
        server.work = 0
        self._process(self.parser.feed(data), 0, False)

    def _process(self, ops: list, start: int, checked: bool) -> None:
        """Apply ops[start:]. A CONNECT whose password needs bcrypt stops here and
        resumes once the check has run off the loop (`checked` then skips it)."""
        server = self.server
        route = server.route
        route_run = server.route_run
        plain = self._plain_publisher()
        i = start
        n = len(ops)
        solo = 0  # ops before this index are in a run of requests to route one by one
        while i < n:
            if self.closing:
                break
            if server.work >= WORK_CHECK and server.must_yield(self):
                # The turn's budget is spent, or a receiver holds us (core/flow.py).
                self.resume_input = lambda i=i, checked=checked: self._process(ops, i, checked)
                break
            op = ops[i]
            i += 1
            kind = op[0]
            if kind == OP_PUB:
                if plain:
                    subject, reply, payload = op[1], op[2], op[3]
                    if reply is None and i < n:
                        # A run of PUBs to one subject goes to the router at once. The
                        # parser hands out one str per subject, so `is` finds the run.
                        j = i
                        while j < n:
                            nxt = ops[j]
                            if nxt[0] != OP_PUB or nxt[1] is not subject or nxt[2] is not None:
                                break
                            j += 1
                        if j > i:
                            payloads = [pub[3] for pub in ops[i - 1 : j]]
                            routed = route_run(self, subject, payloads)
                            if routed < len(payloads):
                                del payloads[routed:]  # the rest after the budget check
                            i += routed - 1
                            self.in_msgs += routed
                            self.in_bytes += sum(map(len, payloads))
                            continue
                    elif i < n and i > solo and ops[i][0] == OP_PUB and ops[i][1] is subject:
                        # A run of requests to one subject (a stream's publisher): to a
                        # stream's capture alone at once (Server.route_requests).
                        routed, solo = self._request_run(ops, i - 1, subject)
                        if routed:
                            i += routed - 1
                            continue
                    self.in_msgs += 1
                    self.in_bytes += len(payload)
                    if not route(self, subject, reply, None, payload) and reply is not None:
                        if self.no_responders:
                            self.send_no_responders(subject, reply)
                else:
                    self.handle_pub(op[1], op[2], None, op[3])
            elif kind == OP_ACKS:
                self.handle_acks(ack_subjects(op[1]), plain)
            elif kind == OP_HPUB:
                self.handle_hpub(op[1], op[2], op[3], op[4])
            elif kind == OP_SUB:
                self.handle_sub(op[1], op[2], op[3])
            elif kind == OP_PING:
                self.handle_ping()
            elif kind == OP_PONG:
                self.pings_out = 0
                if self.ping_sent:
                    self.rtt = time.monotonic() - self.ping_sent
                    self.ping_sent = 0.0
            elif kind == OP_UNSUB:
                self.handle_unsub(op[1], op[2])
            elif kind == OP_CONNECT:
                if not checked and self._defer_for_bcrypt(op[1], ops, i - 1):
                    return
                checked = False
                self.handle_connect(op[1])
                plain = self._plain_publisher()
            elif kind == OP_ERROR:
                self.handle_parse_error(op[1], op[2])
        server.flush()
        server.reading = None

    def _request_run(self, ops: list, start: int, subject: str) -> tuple[int, int]:
        """The run of PUBs to ``subject`` with a reply from ``ops[start]``, at once if the
        router can (``Server.route_requests``): how many were routed (0: one by one, as
        before) and the index from which a new run may begin."""
        end = start + 1
        for op in islice(ops, end, None):
            if op[0] != OP_PUB or op[1] is not subject or op[2] is None:
                break
            end += 1
        if end - start < 2:
            return 0, end
        _, _, replies, payloads = zip(*ops[start:end], strict=True)  # in C
        routed = self.server.route_requests(self, subject, replies, payloads)
        if not routed:
            return 0, end
        self.in_msgs += routed
        self.in_bytes += sum(map(len, payloads[:routed]))
        return routed, 0

    def _defer_for_bcrypt(self, connect: Any, ops: list, index: int) -> bool:
        server = self.server
        if self.connected or not server.auth_required or not isinstance(connect, dict):
            return False
        work = server.security.pending_nats(self, connect)
        if work is None:
            return False
        server.flush()
        self.verify_off_loop(work, lambda: self._process(ops, index, True))
        return True

    def handle_parse_error(self, err_text: str | None, reason: str) -> None:
        log.info("%s:%d - cid:%d - %s: %s", self.ip, self.port, self.cid, reason, err_text or "")
        self.close(reason, encode_err(err_text) if err_text else b"")

    def _require_auth(self) -> bool:
        """Before an authenticated CONNECT, every op is an authorization violation."""
        if self.connected or not self.server.auth_required:
            return True
        self.server.stats.auth_failures += 1
        log.warning("%s:%d - cid:%d - Authorization Violation", self.ip, self.port, self.cid)
        self.close(reasons.AUTH_FAILURE, encode_err("Authorization Violation"))
        return False

    def handle_connect(self, opts: Any) -> None:
        if not isinstance(opts, dict):
            self.close(reasons.PROTOCOL_VIOLATION)
            return
        protocol = opts.get("protocol", 0)
        if protocol not in (0, 1) or isinstance(protocol, bool):
            self.close(reasons.BAD_CLIENT_PROTOCOL, encode_err("invalid client protocol"))
            return
        self.protocol = protocol
        self.verbose = bool(opts.get("verbose", True))
        self.pedantic = bool(opts.get("pedantic", True))
        self.echo = bool(opts.get("echo", True))
        self.headers = bool(opts.get("headers", False))
        self.no_responders = bool(opts.get("no_responders", False))
        if self.no_responders and not self.headers:
            self.close(
                reasons.NO_RESPONDERS_REQUIRES_HEADERS,
                encode_err("no responders requires headers support"),
            )
            return
        self.name = str(opts.get("name") or "")
        self.lang = str(opts.get("lang") or "")
        self.version = str(opts.get("version") or "")
        server = self.server
        if server.auth_required and not self.connected:
            user = server.authenticate(self, opts)
            if user is None:
                server.stats.auth_failures += 1
                # Security logged the refusal with its reason; one warning per failure
                # keeps a flood of bad logins cheap (tests/security/test_nkeys.py).
                log.debug("%s:%d - cid:%d - authentication error", self.ip, self.port, self.cid)
                self.close(reasons.AUTH_FAILURE, encode_err("Authorization Violation"))
                return
            self.user = user or None
            if not server.join_account(self):
                self.close(
                    reasons.MAX_CONNECTIONS,
                    encode_err("maximum account active connections exceeded"),
                )
                return
            limit = self.account.max_payload
            if 0 <= limit < self.parser.max_payload:
                self.parser.max_payload = limit  # the account's limits { max_payload }
        if not self.connected:
            self.connected = True
            server.client_connected(self)  # the system account's CONNECT event
        if self.verbose:
            self.queue(OK)

    def handle_ping(self) -> None:
        self.queue(PONG)
        if self.first_pong:
            self.first_pong = False
            # A protocol>=1 client gets an async INFO after its first PONG (§4.2).
            if self.protocol >= 1 and self.connected:
                info = self.server.client_info(self)
                info["connect_info"] = True
                info["remote_account"] = self.account.name
                self.queue(b"INFO " + json.dumps(info, separators=(",", ":")).encode() + b" \r\n")

    def handle_pub(
        self, subject: str, reply: str | None, headers: bytes | None, payload: bytes
    ) -> None:
        if not self.connected and not self._require_auth():
            return
        self.in_msgs += 1
        self.in_bytes += len(payload) if headers is None else len(payload) + len(headers)
        if self.pedantic and not is_valid_publish_subject(subject):
            self.queue(encode_err("Invalid Publish Subject"))
            return
        server = self.server
        if self.perms is not None and not server.may_publish(self, subject, reply):
            log.info("%s:%d - cid:%d - publish to %r denied", self.ip, self.port, self.cid, subject)
            self.queue(encode_err(f'Permissions Violation for Publish to "{subject}"'))
            return
        delivered = server.route(self, subject, reply, headers, payload)
        if not delivered and reply is not None and self.no_responders:
            self.send_no_responders(subject, reply)
        if self.verbose:
            self.queue(OK)

    def handle_acks(self, subjects: list[str], plain: bool) -> None:
        """Consecutive ``PUB $JS.ACK.<...> 0`` (no reply, no payload; codec ``OP_ACKS``).
        A plain publisher's go to the router at once, which routes them as it would
        each (``Server.route_acks``); any other's are checked and routed one by one,
        as the PUBs they are (permissions, pedantic subjects, verbose +OKs)."""
        if plain:
            self.in_msgs += len(subjects)
            self.server.route_acks(self, subjects)
            return
        for subject in subjects:
            if self.closing:
                break
            self.handle_pub(subject, None, None, b"")

    def handle_hpub(self, subject: str, reply: str | None, headers: bytes, payload: bytes) -> None:
        if not self.headers:
            # HPUB from a client that did not announce headers: nats-server closes, no -ERR.
            self.close(reasons.HEADER_VIOLATION)
            return
        self.handle_pub(subject, reply, headers, payload)

    def handle_sub(self, subject: str, queue: str | None, sid: str) -> None:
        if not self.connected and not self._require_auth():
            return
        if not is_valid_subject(subject) or (queue is not None and not is_valid_queue_name(queue)):
            self.queue(encode_err("Invalid Subject"))
            return
        server = self.server
        if self.perms is not None and not server.may_subscribe(self, subject, queue):
            log.info(
                "%s:%d - cid:%d - subscription to %r denied", self.ip, self.port, self.cid, subject
            )
            text = f'Permissions Violation for Subscription to "{subject}"'
            if queue is not None:
                text += f' using queue "{queue}"'
            self.queue(encode_err(text))
            return
        if sid in self.subs:
            # A duplicate sid on one connection is ignored, as nats-server does.
            if self.verbose:
                self.queue(OK)
            return
        limit = server.options.max_subscriptions
        at_limit = limit > 0 and len(self.subs) >= limit
        account_limit = self.account.max_subscriptions  # per connection, as nats-server
        if account_limit >= 0 and len(self.subs) >= account_limit:
            at_limit = True
        if at_limit:
            log.info(
                "%s:%d - cid:%d - maximum subscriptions exceeded", self.ip, self.port, self.cid
            )
            self.queue(encode_err("maximum subscriptions exceeded"))
            return
        sub = NatsSubscription(subject, queue, self, sid)
        self.account.sublist.insert(sub)
        self.subs[sid] = sub
        if self.verbose:
            self.queue(OK)

    def handle_unsub(self, sid: str, max_msgs: int | None) -> None:
        if not self.connected and not self._require_auth():
            return
        sub = self.subs.get(sid)
        if sub is not None:
            if max_msgs and sub.msgs < max_msgs:
                # Auto-unsubscribe once `max_msgs` messages in total have been delivered.
                sub.max_msgs = max_msgs
            else:
                self._drop_sub(sub)
        if self.verbose:
            self.queue(OK)

    def _drop_sub(self, sub: NatsSubscription) -> None:
        if self.subs.pop(sub.sid, None) is not None:
            self.account.sublist.remove(sub)

    # -- output -----------------------------------------------------------------------

    def deliver_batch(self, sub: NatsSubscription, subject: str, payloads: list[bytes]) -> None:
        """Append one MSG per payload for `sub` (no reply, no headers), as `deliver`
        would one by one. Called by Server.route_run."""
        if self.closing:
            return
        perms = self.perms
        if perms is not None and perms.filters_delivery and not perms.may_receive(subject):
            return
        if sub.max_msgs:
            # The auto-unsubscribe count may end mid-run: one at a time.
            for payload in payloads:
                self.deliver(sub, subject, None, None, payload)
            return
        n = len(payloads)
        sizes = list(map(len, payloads))
        size = sizes[0]
        if sub.last_size != size or sub.last_subject != subject:
            sub.set_head(subject, size)
        out = self.out
        if sizes.count(size) == n:
            # Every frame has the same MSG line: one join builds the whole run.
            head = sub.head
            out += head
            out += (b"\r\n" + head).join(payloads)
            out += b"\r\n"
        else:
            for payload in payloads:
                size = len(payload)
                if sub.last_size != size:
                    sub.set_head(subject, size)
                out += sub.head
                out += payload
                out += b"\r\n"
        sub.msgs += n
        self.out_msgs += n
        self.out_bytes += sum(sizes)
        if not self.dirty:
            self.server.mark_dirty(self)

    def deliver_each(self, sub: NatsSubscription, msgs: list[tuple[str, bytes]]) -> None:
        """``deliver(sub, subject, None, None, payload)`` for each ``(subject, payload)``
        of ``msgs``: the same frames, counters and checks, with one call for the lot
        (JetStream's PubAcks to one inbox subscription, a subject each: the MSG line is
        not cached per subscription, as it would be built for one message only)."""
        if self.closing:
            return
        perms = self.perms
        if sub.max_msgs or (perms is not None and perms.filters_delivery):
            for subject, payload in msgs:  # per message: a limit or a filter may stop it
                self.deliver(sub, subject, None, None, payload)
            return
        sid = sub.sid_bytes
        out = self.out
        size = 0
        for subject, payload in msgs:
            n = len(payload)
            out += b"MSG %s %s %d\r\n%s\r\n" % (_wire(subject), sid, n, payload)
            size += n
        n = len(msgs)
        sub.msgs += n
        self.out_msgs += n
        self.out_bytes += size
        if not self.dirty:
            self.server.mark_dirty(self)

    def deliver_run(self, sub: NatsSubscription, msgs: list[tuple]) -> None:
        """``deliver(sub, subject, reply, headers, payload)`` for each tuple of ``msgs``:
        the same frames and counters, one call for the lot (a JetStream pull batch to
        its inbox: ``route_to_each``). With permissions or an auto-unsubscribe limit,
        one by one (a filter or the limit may stop any of them)."""
        if sub.max_msgs or self.perms is not None:
            for subject, reply, headers, payload in msgs:
                self.deliver(sub, subject, reply, headers, payload)
            return
        if self.closing:
            return
        sid = sub.sid_bytes
        with_headers = self.headers
        out = self.out
        total = 0
        for subject, reply, headers, payload in msgs:
            size = len(payload)
            if headers is not None and with_headers:
                hsize = len(headers)
                size += hsize
                if reply is None:
                    out += b"HMSG %s %s %d %d\r\n" % (_wire(subject), sid, hsize, size)
                else:
                    out += b"HMSG %s %s %s %d %d\r\n" % (
                        _wire(subject),
                        sid,
                        _wire(reply),
                        hsize,
                        size,
                    )
                out += headers
            elif reply is None:
                out += b"MSG %s %s %d\r\n" % (_wire(subject), sid, size)
            else:
                out += b"MSG %s %s %s %d\r\n" % (_wire(subject), sid, _wire(reply), size)
            out += payload
            out += b"\r\n"
            total += size
        n = len(msgs)
        sub.msgs += n
        self.out_msgs += n
        self.out_bytes += total
        if not self.dirty:
            self.server.mark_dirty(self)

    def deliver_tails(
        self, sub: NatsSubscription, subject: str, tails: list[bytes], nbytes: int
    ) -> None:
        """The frames ``MSG <subject> <sid><tail>`` for each of ``tails`` (the second half
        of codec ``msg_head_tail``: `` <reply> <size>\\r\\n<payload>\\r\\n``, no
        headers), with one join: a JetStream pull batch on one subject, encoded once by
        its consumer (``Server.route_tails``, which leaves permissions and limits to
        ``deliver_run``). ``nbytes``: the payload bytes of them all."""
        if self.closing:
            return
        head = b"MSG " + _wire(subject) + b" " + sub.sid_bytes
        out = self.out
        out += head
        out += head.join(tails)
        n = len(tails)
        sub.msgs += n
        self.out_msgs += n
        self.out_bytes += nbytes
        if not self.dirty:
            self.server.mark_dirty(self)

    def deliver(
        self,
        sub: NatsSubscription,
        subject: str,
        reply: str | None,
        headers: bytes | None,
        payload: bytes,
        mqtt_msg=None,
    ) -> None:
        """Append one MSG/HMSG for `sub`. Called by Server.route for each receiver."""
        if self.closing:
            return
        perms = self.perms
        if perms is not None and perms.filters_delivery and not perms.may_receive(subject):
            # A wildcard subscription that overlaps a deny rule (nats-server's "deny
            # filter"): the denied subjects are dropped here.
            return
        if sub.max_msgs:
            if sub.msgs >= sub.max_msgs:
                return
            sub.msgs += 1
            if sub.msgs >= sub.max_msgs:
                self.server.expire(sub)
        else:
            sub.msgs += 1
        size = len(payload)
        if reply is None and (headers is None or not self.headers):
            # The hot case: `MSG <subject> <sid> <size>`. The whole line is cached per
            # subscription, which mostly sees one subject and often one payload size.
            if sub.last_size != size or sub.last_subject != subject:
                sub.set_head(subject, size)
            out = self.out
            out += sub.head
            out += payload
            out += b"\r\n"
            self.out_msgs += 1
            self.out_bytes += size
            if not self.dirty:
                self.server.mark_dirty(self)
            return
        out = self.out
        if headers is not None and self.headers:
            hsize = len(headers)
            if reply is None:
                out += b"HMSG %s %s %d %d\r\n" % (
                    _wire(subject),
                    sub.sid_bytes,
                    hsize,
                    hsize + size,
                )
            else:
                out += b"HMSG %s %s %s %d %d\r\n" % (
                    _wire(subject),
                    sub.sid_bytes,
                    _wire(reply),
                    hsize,
                    hsize + size,
                )
            out += headers
            size += hsize
        else:
            # A client without headers gets the payload alone (header block stripped).
            out += b"MSG %s %s %s %d\r\n" % (_wire(subject), sub.sid_bytes, _wire(reply), size)
        out += payload
        out += b"\r\n"
        if reply is not None and self.perms is not None:
            # allow_responses: a restricted client may answer the requests it receives.
            self.perms.note_reply(reply)
        self.out_msgs += 1
        self.out_bytes += size
        if not self.dirty:
            self.server.mark_dirty(self)

    def send_no_responders(self, subject: str, reply: str) -> None:
        """503 status to the requester's own reply subscription (§4.6)."""
        for sub in self.account.sublist.match(reply).plain:
            if sub.client is self:
                header = b"NATS/1.0 503\r\nNats-Subject: %s\r\n\r\n" % _wire(subject)
                n = len(header)
                self.queue(
                    b"HMSG %s %s %d %d\r\n%s\r\n" % (_wire(reply), sub.sid_bytes, n, n, header)
                )
                return

    # -- timers -----------------------------------------------------------------------

    def sweep(self, now: float) -> None:
        if self.closing:
            return
        if (
            self.auth_deadline
            and not self.connected
            and not self.verifying
            and now >= self.auth_deadline
        ):
            log.warning("%s:%d - cid:%d - Authentication Timeout", self.ip, self.port, self.cid)
            self.close(reasons.AUTH_TIMEOUT, encode_err("Authentication Timeout"))
            return
        if now < self.ping_due:
            return
        opts = self.server.options
        self.ping_due = now + opts.ping_interval
        if self.active and self.pings_out == 0 and self.rtt:
            # The client talked during the interval: skip this round, as nats-server does.
            self.active = False
            return
        self.active = False
        if self.pings_out + 1 > opts.ping_max:
            self.server.stats.stale_connections += 1
            log.debug("%s:%d - cid:%d - Stale Client Connection", self.ip, self.port, self.cid)
            self.close(reasons.STALE_CONNECTION, encode_err("Stale Connection"))
            return
        self.pings_out += 1
        self.ping_sent = now
        self.queue(PING)


def pick_member(group: list, origin: ClientBase) -> Any:
    """One member of a queue group, at random; skips the publisher when it has echo off.
    A hub's member (a leaf link's) only when no local member is left: local members
    are served first, as nats-server does across leaf links."""
    n = len(group)
    if n == 1:
        sub = group[0]
    else:
        sub = group[int(random.random() * n)]
        if getattr(sub.client, "is_leaf", False):
            local = [s for s in group if not getattr(s.client, "is_leaf", False)]
            local = [s for s in local if s.client is not origin or origin.echo]
            if local:
                return random.choice(local)
    client = sub.client
    if client is origin and not getattr(origin, "echo", True):
        others = [s for s in group if s.client is not origin]
        return random.choice(others) if others else None
    return sub
