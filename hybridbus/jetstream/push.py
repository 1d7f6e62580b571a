"""Push consumers: deliveries to ``deliver_subject`` while it has interest.

Interest is looked up in the router (with a ``deliver_group``, a member of that queue
group). A delivery is routed like a publish to the deliver subject, as nats-server's
internal client sends it: every plain subscriber, and one member of each queue group
(seen on nats-server 2.15.1: a plain subscriber of a ``deliver_group`` consumer's
subject gets the messages too, once a group member gives it interest). It is checked
before each pump, and
``delivery.Consumers`` re-checks every push consumer when the router's generation moves
(a SUB or UNSUB), so a consumer resumes when its subscriber comes back and starts its
inactivity countdown when it leaves (``inactive_threshold``: 5 s by default for an
ephemeral, never for a durable without one), as nats-server's interest notifications do.

Flow control (``flow_control: true``, nats-server ``needFlowControl``): the bytes sent
since the last answered request are counted (subject + ack reply + headers + payload);
past half the window a ``100 FlowControl Request`` goes out with the reply
``$JS.FC.<stream>.<consumer>.<4 chars>``, and past the whole window delivery stalls
until the client answers it. The window starts at 2 MiB and doubles with each answer up
to 32 MiB. Idle heartbeats (``100 Idle Heartbeat`` with ``Nats-Last-Consumer`` and
``Nats-Last-Stream``, plus ``Nats-Consumer-Stalled: <fc subject>`` while stalled) go out
after ``idle_heartbeat`` without a delivery.

``replay_policy: original`` keeps the stored messages' time gaps until the consumer has
caught up with the stream's last message at start; ``rate_limit_bps`` is a token bucket
(bits per second, a burst of one maximal message, as nats-server's rate.Limiter). Both
hold the next message (already taken from the store) on the consumer's timer; a
flow-control stall holds the rest of a batch the same way, until the reply.
"""

from __future__ import annotations

import secrets
import string
from collections import deque
from typing import Any

from hybridbus.jetstream.runtime import BUDGET, Runtime, headers_only, status

FC_LIMIT = 32 * 1024 * 1024  # JsFlowControlMaxPending
FC_START = FC_LIMIT // 16
_ALNUM = string.ascii_letters + string.digits


class PushRuntime(Runtime):
    def __init__(self, reg: Any, c: Any) -> None:
        self.active = False
        self.inactive_since = 0.0
        self.pbytes = 0
        self.maxpb = FC_START
        self.fcid: str | None = None
        self.fcsz = 0
        self.held: deque[tuple[Any, Any]] = deque()
        self.held_at = 0.0
        self.hb_due = 0.0
        self.last_ts = 0
        self.tokens = 0.0
        self.tokens_at = 0.0
        self.dsubj = ""
        # the last delivery that went out (held messages have left the store already):
        # what a heartbeat reports, and what an ordered consumer checks it against
        self.sent = (c._dseq, c._sseq)
        super().__init__(reg, c)
        self.inactive_since = self.loop.time()
        self.check_interest()

    def apply_config(self) -> None:
        super().apply_config()
        cfg = self.c.config
        old = self.dsubj
        self.dsubj = cfg.deliver_subject or ""
        self.group = cfg.deliver_group or None
        self.fc = bool(cfg.flow_control)
        self.hb = float(cfg.idle_heartbeat or 0.0)
        self.replaying = cfg.replay_policy == "original"
        self.replay_end = self.c.stream._last_seq
        bps = cfg.rate_limit_bps or 0
        self.rate = bps / 8.0
        if self.rate:
            scfg = self.c.stream.config
            mx = scfg.max_msg_size if scfg.max_msg_size > 0 else self.js.hub.options.max_payload
            self.burst = float(mx)
            self.tokens = self.burst
            self.tokens_at = self.loop.time()
        if old != self.dsubj:
            self.reg.deliver_subject_changed()
        if old and old != self.dsubj:
            # nats-server updateDeliverSubject: what the old subscriber had is sent again.
            for seq in list(self.c._pending):
                self.c.nak(seq)
            self.active = False
            self.check_interest()

    # -- interest ------------------------------------------------------------------------

    def interest(self) -> bool:
        r = self.js.sublist.match(self.dsubj)
        if self.group is not None:
            return any(g and g[0].queue == self.group for g in r.queues)
        return bool(r.plain or r.queues)

    def check_interest(self) -> None:
        active = self.interest()
        if active == self.active:
            return
        self.active = active
        now = self.loop.time()
        if active:
            self.hb_due = now + self.hb
            self.kick()
        else:
            self.inactive_since = now
            if not self.closed:
                self.schedule()
                self.reg.hurry()  # an ordered consumer's reset subscribes anew at once

    def has_receiver(self) -> bool:
        return self.active

    # -- delivery --------------------------------------------------------------------------

    def pump(self) -> None:
        self.check_interest()
        if not self.active:
            return
        if self.pause_until and self.paused(self.loop.time()):
            return  # paused (pause.py): the unpause timer kicks again
        if self.held and not self.release(self.loop.time()):
            return  # the timer releases the rest in order
        c = self.c
        budget = BUDGET
        paced = self.replaying or self.rate
        fc = self.fc
        while budget > 0:
            if fc and self.pbytes > self.maxpb:
                return  # stalled until the flow-control reply
            batch = c.next_batch(1 if paced else min(256, budget))
            if not batch:
                limit = self.max_ack_pending
                if limit > 0 and c.num_ack_pending >= limit:
                    self.ack_stalled = True
                return
            budget -= len(batch)
            if paced or fc:
                self.held.extend(batch)
                if not self.release(self.loop.time()):
                    return
            else:
                for msg, d in batch:
                    self.send(msg, d)
            if not self.active:
                return
        self.kick()

    def send(self, msg: Any, d: Any) -> int:
        """One delivery to the deliver subject; returns the bytes counted."""
        reply = self.ack_reply(msg, d)
        hdr, payload = msg.headers, msg.payload
        if self.headers_only:
            hdr, payload = headers_only(hdr, payload), b""
        size = len(msg.subject) + len(reply) + len(hdr or b"") + len(payload)
        if not self.js.send_to(self.dsubj, msg.subject, reply, hdr, payload):
            self.undelivered([msg.seq])
            if self.active:
                self.active = False
                self.inactive_since = self.loop.time()
            return 0
        self.hb_due = self.loop.time() + self.hb
        self.sent = (d.consumer_seq, d.stream_seq)
        self.last_ts = msg.ts_ns
        if self.replaying and msg.seq >= self.replay_end:
            self.replaying = False
        if self.fc:
            self.pbytes += size
            if self.fcid is None and self.pbytes > self.maxpb // 2:
                self.send_fc()
        return size

    def _pause(self, msg: Any, now: float) -> float:
        """Seconds to wait before ``msg`` may go (replay gaps, the rate limit)."""
        wait = 0.0
        if self.replaying and self.last_ts:
            gap = (msg.ts_ns - self.last_ts) / 1e9
            if gap > 0.001:
                wait = gap
        if self.rate:
            self.tokens = min(self.burst, self.tokens + (now - self.tokens_at) * self.rate)
            self.tokens_at = now
            need = min(float(len(msg.payload) + len(msg.headers or b"")), self.burst)
            if self.tokens < need:
                wait = max(wait, (need - self.tokens) / self.rate)
        return wait

    def release(self, now: float) -> bool:
        """Send held messages whose time has come; False while one still waits (for its
        time, or for the flow-control reply)."""
        held = self.held
        while held:
            if self.fc and self.pbytes > self.maxpb:
                return False
            msg, d = held[0]
            if self.held_at and now < self.held_at:
                self.wake_at(self.held_at)
                return False
            if not self.held_at:
                wait = self._pause(msg, now)
                if wait > 0:
                    self.held_at = now + wait
                    self.wake_at(self.held_at)
                    return False
            held.popleft()
            self.held_at = 0.0
            if self.rate:
                self.tokens -= min(float(len(msg.payload) + len(msg.headers or b"")), self.burst)
            self.send(msg, d)
        return True

    # -- flow control and heartbeats -------------------------------------------------------------

    def send_fc(self) -> None:
        rand = "".join(secrets.choice(_ALNUM) for _ in range(4))
        self.fcid = f"$JS.FC.{self.stream_name}.{self.name}.{rand}"
        self.fcsz = self.pbytes
        hdr = status(100, "FlowControl Request")
        self.js.send_to(self.dsubj, self.dsubj, self.fcid, hdr, b"")

    def flow_control_reply(self, subject: str) -> None:
        """The client answered ``subject`` (nats-server processFlowControl)."""
        if subject != self.fcid:
            return  # not the latest request: ignored
        if self.maxpb < FC_LIMIT:
            self.maxpb = min(self.maxpb * 2, FC_LIMIT)
        self.pbytes = max(0, self.pbytes - self.fcsz)
        self.fcid = None
        self.fcsz = 0
        self.kick()

    def heartbeat(self) -> None:
        c = self.c
        dseq, sseq = self.sent if self.held else (c._dseq, c._sseq)
        hdrs: list[tuple[str, Any]] = [
            ("Nats-Last-Consumer", dseq),
            ("Nats-Last-Stream", sseq),
        ]
        if self.fcid is not None:
            hdrs.append(("Nats-Consumer-Stalled", self.fcid))
        self.js.send_to(self.dsubj, self.dsubj, None, status(100, "Idle Heartbeat", *hdrs), b"")

    def tick(self, now: float) -> None:
        if self.held:
            if self.active and self.release(now):
                self.kick()
        if self.hb and now >= self.hb_due:
            if self.active:
                self.heartbeat()
            self.hb_due = now + self.hb

    def next_event(self, now: float) -> float | None:
        best = self.held_at if self.held and self.held_at else None
        if self.hb and self.active:
            if best is None or self.hb_due < best:
                best = self.hb_due
        return best

    def inactive_at(self, now: float) -> float | None:
        if not self.threshold or self.active:
            return None
        return max(self.inactive_since, self.last_activity) + self.threshold
