"""Pull consumers: ``$JS.API.CONSUMER.MSG.NEXT.<stream>.<consumer>`` and the waiting list.

A pull request is a publish whose reply is the client's inbox. Its body is empty (one
message, no expiry), a bare integer (a batch), or JSON ``{batch, expires, max_bytes,
no_wait, idle_heartbeat}`` (nats-server ``nextReqFromMsg``). A request that cannot be
served at once waits in ``PullRuntime.waiting`` (at most ``max_waiting``, else ``409
Exceeded MaxWaiting``) until messages come, it expires (``408 Request Timeout`` with
what it still wanted in ``Nats-Pending-Messages``/``-Bytes``), its inbox loses interest
(dropped quietly) or the consumer goes (``409 Consumer Deleted``).

Serving (``pump``): due redeliveries first, then new messages, as the store's
``next_batch`` hands them out. With one request waiting (the usual case, and the
benchmark's) a whole batch is taken in one call; with several, one message each in
turn, as nats-server's wait queue rotates its head. A request with ``max_bytes`` is
served one message at a time, each sized first with ``peek``: subject + ack reply +
headers + payload, nats-server's count; the first that does not fit ends the request
with ``409 Message Size Exceeds MaxBytes``, and a batch that ends with bytes to spare
says ``409 Batch Completed``. When the stream has nothing more, a ``no_wait`` request
ends with ``404 No Messages``, unless it has an expiry and got nothing yet: then it
waits, and returns as soon as anything comes (nats-server ``processWaiting(eos)``).
"""

from __future__ import annotations

import json
import time
from collections import deque
from typing import Any

from hybridbus.jetstream.runtime import BUDGET, Runtime, headers_only, status


class BadRequest(Exception):
    pass


class PullRequest:
    __slots__ = ("reply", "n", "d", "b", "expires", "hb", "hb_due", "no_wait")

    def __init__(self, reply: str, n: int, b: int, expires: float, hb: float, no_wait: bool):
        self.reply = reply
        self.n = n  # messages still wanted
        self.d = 0  # messages delivered
        self.b = b  # bytes still allowed (max_bytes), 0: no limit
        self.expires = expires  # loop time, 0: never
        self.hb = hb  # heartbeat interval, 0: none
        self.hb_due = 0.0
        self.no_wait = no_wait


def parse(payload: bytes) -> tuple[int, int, int, bool, int]:
    """(batch, expires ns, max_bytes, no_wait, idle_heartbeat ns) of a request body."""
    body = payload.strip()
    if not body:
        return 1, 0, 0, False, 0
    if body[:1] == b"{":
        try:
            req = json.loads(body)
        except (ValueError, UnicodeDecodeError) as e:
            raise BadRequest(str(e).split(":")[0]) from None
        if not isinstance(req, dict):
            raise BadRequest("invalid request")
        try:
            batch = int(req.get("batch") or 0)
            expires = int(req.get("expires") or 0)
            max_bytes = int(req.get("max_bytes") or 0)
            hb = int(req.get("idle_heartbeat") or 0)
        except (TypeError, ValueError):
            raise BadRequest("invalid request") from None
        no_wait = bool(req.get("no_wait"))
        if hb > 0 and hb * 2 > expires:
            raise BadRequest("heartbeat value too large")
        return batch, expires, max_bytes, no_wait, hb
    try:
        return int(body), 0, 0, False, 0
    except ValueError:
        return 1, 0, 0, False, 0  # nats-server: anything else asks for one message


class PullRuntime(Runtime):
    pull = True

    def __init__(self, reg: Any, c: Any) -> None:
        self.waiting: deque[PullRequest] = deque()
        super().__init__(reg, c)

    def apply_config(self) -> None:
        super().apply_config()
        cfg = self.c.config
        self.max_waiting = cfg.max_waiting or 512
        extra = cfg.extra
        self.max_batch = int(extra.get("max_batch") or 0)
        self.max_expires = int(extra.get("max_expires") or 0)
        self.max_req_bytes = int(extra.get("max_bytes") or 0)

    def has_receiver(self) -> bool:
        return bool(self.waiting)

    def _send_status(self, reply: str, code: int, text: str, *hdrs: tuple[str, Any]) -> None:
        self.js.reply(reply, b"", status(code, text, *hdrs))

    # -- requests ----------------------------------------------------------------------

    def request(self, reply: str, payload: bytes) -> None:
        """A MSG.NEXT (or the pull half of a ``+NXT`` ack); deferred work."""
        if not reply or self.closed:
            return
        try:
            batch, expires, max_bytes, no_wait, hb = parse(payload)
        except BadRequest as e:
            self._send_status(reply, 400, f"Bad Request - {e}")
            return
        if self._over_limits(reply, batch, expires, max_bytes):
            return
        now = self.loop.time()
        self.last_activity = now
        if len(self.waiting) >= self.max_waiting:
            self.expire(now, eos=False)
            if len(self.waiting) >= self.max_waiting:
                if not hb:  # nats-server: a heartbeating client waits for them instead
                    self._send_status(reply, 409, "Exceeded MaxWaiting")
                return
        if no_wait:
            c = self.c
            if c.num_ack_pending:
                c.redeliveries_due()
            available = c.num_pending + len(c._rq)
            if available == 0 and not expires:
                self._send_status(reply, 404, "No Messages")
                return
            if available and available < sum(w.n for w in self.waiting):
                self._send_status(reply, 408, "Requests Pending")
                return
        req = PullRequest(
            reply,
            max(batch, 1),
            max_bytes,
            now + expires / 1e9 if expires > 0 else 0.0,
            hb / 1e9,
            no_wait,
        )
        if req.hb:
            req.hb_due = now + req.hb
        self.waiting.append(req)
        self.pump()
        if not self.closed:
            self.schedule()

    def _over_limits(self, reply: str, batch: int, expires: int, max_bytes: int) -> bool:
        if self.max_batch and batch > self.max_batch:
            self._send_status(reply, 409, f"Exceeded MaxRequestBatch of {self.max_batch}")
            return True
        if expires and self.max_expires and expires > self.max_expires:
            self._send_status(
                reply, 409, f"Exceeded MaxRequestExpires of {_go_duration(self.max_expires)}"
            )
            return True
        if max_bytes and self.max_req_bytes and max_bytes > self.max_req_bytes:
            self._send_status(reply, 409, f"Exceeded MaxRequestMaxBytes of {self.max_req_bytes}")
            return True
        return False

    # -- serving -----------------------------------------------------------------------

    def pump(self) -> None:
        # hot path: the benchmark's fetch of 500 with one request waiting takes the
        # whole batch in one next_batch call and one send per message.
        waiting = self.waiting
        if not waiting:
            return
        if self.pause_until and self.paused(self.loop.time()):
            # paused (pause.py): requests wait, expire, a no_wait one ends as at the end
            # of the stream (nats-server's loop goes to processWaiting(eos))
            self.expire(self.loop.time(), eos=True)
            return
        c = self.c
        has_interest = self.js.has_interest
        now = self.loop.time()
        budget = BUDGET
        eos = False
        while waiting and budget > 0:
            req = waiting[0]
            if req.expires and now >= req.expires:
                waiting.popleft()
                self._timeout(req)
                continue
            if not has_interest(req.reply):
                waiting.popleft()  # the client went away (nats-server drops it quietly)
                continue
            if req.b:
                got = self._serve_sized(req)
                if got < 0:
                    continue  # did not fit: the request ended
                if got == 0:
                    eos = True
                    break
                budget -= 1
            else:
                want = min(req.n if len(waiting) == 1 else 1, budget)
                batch = c.next_batch(want)
                if not batch:
                    eos = True
                    break
                missed = self._send(req.reply, batch)
                if missed:
                    self.undelivered(missed)
                got = len(batch)
                req.n -= got
                req.d += got
                budget -= got
                if got < want:
                    eos = True
            if req.n <= 0:
                waiting.popleft()
                if req.b > 0:
                    self._send_status(
                        req.reply,
                        409,
                        "Batch Completed",
                        ("Nats-Pending-Messages", 0),
                        ("Nats-Pending-Bytes", req.b),
                    )
            else:
                if req.hb:
                    req.hb_due = now + req.hb
                if len(waiting) > 1:
                    waiting.rotate(-1)
            if eos:
                break
        self.last_activity = now
        if not waiting:
            return
        if budget <= 0:
            self.kick()
            return
        limit = self.max_ack_pending
        if limit > 0 and c.num_ack_pending >= limit:
            self.ack_stalled = True  # an ack frees a slot and kicks; one-shots keep waiting
            return
        self.expire(now, eos=True)

    def _send(self, inbox: str, batch: list) -> list[int]:
        """Deliver ``batch`` (``next_batch``'s) to ``inbox``, each message with its ack
        reply; returns the stream sequences that reached nobody. One subject and no
        headers (the usual batch): each message is encoded once, straight into the tail
        of its MSG frame (codec ``msg_head_tail``), when the inbox's receiver takes that
        (``JetStream.send_tails``); otherwise as (subject, reply, headers, payload), the
        inbox matched once for the batch (``send_each``)."""
        # hot path: one bytes format per message of a fetch of 500.
        js = self.js
        subject = batch[0][0].subject
        if not self.headers_only and all(
            m.headers is None and m.subject == subject for m, _ in batch
        ):
            prefix = self.ack_prefix_b
            tails = [
                b" %s%d.%d.%d.%d.%d %d\r\n%s\r\n"
                % (
                    prefix,
                    d.num_delivered,
                    d.stream_seq,
                    d.consumer_seq,
                    m.ts_ns,
                    d.num_pending,
                    len(m.payload),
                    m.payload,
                )
                for m, d in batch
            ]
            nbytes = sum(len(m.payload) for m, _ in batch)
            if js.send_tails(inbox, subject, tails, nbytes):
                return []
        hdr_only = self.headers_only
        prefix_s = self.ack_prefix
        msgs = []
        for msg, d in batch:
            hdr, payload = msg.headers, msg.payload
            if hdr_only:
                hdr, payload = headers_only(hdr, payload), b""
            reply = (
                f"{prefix_s}{d.num_delivered}.{d.stream_seq}."
                f"{d.consumer_seq}.{msg.ts_ns}.{d.num_pending}"
            )
            msgs.append((msg.subject, reply, hdr, payload))
        missed = js.send_each(inbox, msgs)  # one router lookup for the batch
        return [batch[k][0].seq for k in missed]

    def _serve_sized(self, req: PullRequest) -> int:
        """One message to a ``max_bytes`` request: 1 sent, 0 nothing to send, -1 the
        next message does not fit (the request is answered and removed)."""
        c = self.c
        peeked = c.peek()
        if peeked is None:
            return 0
        msg, dc, pending = peeked
        hdr, payload = msg.headers, msg.payload
        if self.headers_only:
            hdr, payload = headers_only(hdr, payload), b""
        reply = f"{self.ack_prefix}{dc}.{msg.seq}.{c._dseq + 1}.{msg.ts_ns}.{pending}"
        size = len(msg.subject) + len(reply) + len(hdr or b"") + len(payload)
        if size > req.b:
            self.waiting.popleft()
            self._send_status(
                req.reply,
                409,
                "Message Size Exceeds MaxBytes",
                ("Nats-Pending-Messages", req.n),
                ("Nats-Pending-Bytes", req.b),
            )
            return -1
        batch = c.next_batch(1)
        if not batch:
            return 0
        msg, d = batch[0]
        if not self.js.send_to(req.reply, msg.subject, self.ack_reply(msg, d), hdr, payload):
            self.undelivered([msg.seq])
        req.b -= size
        req.n = 0 if req.b == 0 else req.n - 1  # an exact fit ends the request
        req.d += 1
        return 1

    def _timeout(self, req: PullRequest) -> None:
        self._send_status(
            req.reply,
            408,
            "Request Timeout",
            ("Nats-Pending-Messages", req.n),
            ("Nats-Pending-Bytes", req.b),
        )

    def expire(self, now: float, eos: bool) -> None:
        """nats-server processWaiting: expired requests get 408, requests whose inbox
        lost interest go, and at the end of the stream (``eos``) a no_wait request
        ends with 404 unless it has an expiry and got nothing yet."""
        keep: deque[PullRequest] = deque()
        has_interest = self.js.has_interest
        for req in self.waiting:
            if req.expires and now >= req.expires:
                self._timeout(req)
            elif eos and req.no_wait and (not req.expires or req.d > 0):
                self._send_status(req.reply, 404, "No Messages")
            elif has_interest(req.reply):
                keep.append(req)
        self.waiting = keep

    # -- the timer -----------------------------------------------------------------------

    def tick(self, now: float) -> None:
        if not self.waiting:
            return
        # A request's own deadline (expiry or heartbeat) is due: nats-server's wait
        # timer runs processWaiting(eos=true) then, so a no_wait request held at
        # max_ack_pending (which the pump does not end: acks may come) ends with 404
        # at its first heartbeat, or 408 at its expiry (nats.py's fetch(n, heartbeat=)).
        due = False
        for req in self.waiting:
            if (req.expires and now >= req.expires) or (req.hb and now >= req.hb_due):
                due = True
                break
        self.expire(now, eos=due)
        c = self.c
        for req in self.waiting:
            if req.hb and now >= req.hb_due:
                self._send_status(
                    req.reply,
                    100,
                    "Idle Heartbeat",
                    ("Nats-Last-Consumer", c._dseq),
                    ("Nats-Last-Stream", c._sseq),
                )
                req.hb_due = now + req.hb

    def next_event(self, now: float) -> float | None:
        best = None
        for req in self.waiting:
            for t in (req.expires, req.hb_due if req.hb else 0.0):
                if t and (best is None or t < best):
                    best = t
        return best

    def inactive_at(self, now: float) -> float | None:
        """nats-server deleteNotActive for pull mode: ``threshold`` after the last
        request, delivery or ack, with no request waiting, and not before the last
        pending message's ack deadline plus the threshold."""
        if not self.threshold or self.waiting:
            return None
        at = self.last_activity + self.threshold
        c = self.c
        if c.num_ack_pending:
            last = max(ent[1] for ent in c._pending.values())
            at = max(at, now + (last - time.time_ns()) / 1e9 + self.threshold)
        return at

    def on_delete(self) -> None:
        for req in self.waiting:
            self._send_status(req.reply, 409, "Consumer Deleted")
        self.waiting.clear()


def _go_duration(ns: int) -> str:
    """Go's time.Duration String for the common cases (whole ms or s)."""
    if ns % 1_000_000_000 == 0:
        return f"{ns // 1_000_000_000}s"
    if ns % 1_000_000 == 0:
        return f"{ns // 1_000_000}ms"
    return f"{ns}ns"
