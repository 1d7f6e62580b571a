"""What a consumer does between API calls: the base of a pull or push runtime.

A ``Runtime`` sits on one store consumer (``store/consumer.py`` keeps the state that is
persisted: cursor, pending acks, redelivery counts) and adds what lives only while
the server runs: the receivers (``pull.py``: the waiting pull requests; ``push.py``:
the deliver subject), heartbeats, flow control, the inactivity countdown.

Work is driven two ways, never per message:

- ``kick``: something may be deliverable (the store's ``on_available`` on an append,
  an ack that freed a ``max_ack_pending`` slot, a new pull request). It schedules one
  ``pump`` with ``JetStream.later`` however many times it is called before that runs
  (an append happens inside ``Server.route``, which must not route again). A pump
  delivers at most ``BUDGET`` messages, then kicks itself for the next turn of the loop.
- one timer per consumer (``wake_at``), armed for the earliest of its deadlines: the
  first ack deadline (``ConsumerImpl.next_timeout``), a pull request's expiry or
  heartbeat, a push heartbeat, a held message (replay or rate limit), the inactivity
  threshold. ``tick`` handles whatever is due and re-arms it.

Times inside a runtime are ``loop.time()`` (monotonic); the store's deadlines are epoch
ns and are converted when the timer is armed.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from hybridbus.jetstream.pause import until_ns as pause_until_ns

if TYPE_CHECKING:
    from hybridbus.jetstream.delivery import Consumers
    from hybridbus.store.api import DeliveryInfo, StoredMsg

log = logging.getLogger("hybridbus.jetstream")

BUDGET = 2048  # deliveries per pump: then the loop gets a turn, and the pump goes on
MSG_SIZE_HDR = b"Nats-Msg-Size: "


def status(code: int, text: str, *headers: tuple[str, Any]) -> bytes:
    """A status header block: ``NATS/1.0 <code> <text>`` and ``Key: value`` lines."""
    parts = [f"NATS/1.0 {code} {text}\r\n"]
    for k, v in headers:
        parts.append(f"{k}: {v}\r\n")
    parts.append("\r\n")
    return "".join(parts).encode()


def no_responders(subject: str) -> bytes:
    """What nats-server sends a request nobody subscribes to (a missing consumer)."""
    return b"NATS/1.0 503\r\nNats-Subject: %s\r\n\r\n" % subject.encode()


def headers_only(headers: bytes | None, payload: bytes) -> bytes:
    """nats-server convertToHeadersOnly: the stored headers plus ``Nats-Msg-Size``."""
    size = b"%d\r\n\r\n" % len(payload)
    if headers:
        return headers[:-2] + MSG_SIZE_HDR + size
    return b"NATS/1.0\r\n" + MSG_SIZE_HDR + size


class Runtime:
    """The live side of one consumer; see the module docstring."""

    pull = False

    def __init__(self, reg: Consumers, c: Any) -> None:
        self.reg = reg
        self.js = reg.js
        self.loop = reg.js.hub.loop
        self.c = c
        self.stream_name: str = c.stream.name
        self.name: str = c.name
        self.key = (self.stream_name, self.name)
        self.ack_prefix = f"$JS.ACK.{self.stream_name}.{self.name}."
        self.ack_prefix_b = self.ack_prefix.encode("utf-8", "surrogateescape")
        self.closed = False
        self._kicked = False
        self._timer: Any = None
        self._timer_at = 0.0
        self.last_activity = self.loop.time()
        self.ack_stalled = False  # the last pump stopped at max_ack_pending
        self.pause_until = 0.0  # loop time a paused consumer resumes at (pause.py)
        self._unpause: Any = None
        self.apply_config()
        c.on_available = self.kick

    def apply_config(self) -> None:
        cfg = self.c.config
        self.headers_only = bool(cfg.headers_only)
        self.ack_none = cfg.ack_policy == "none"
        self.threshold = float(cfg.inactive_threshold or 0.0)
        self.max_ack_pending = cfg.max_ack_pending
        self._apply_pause(cfg)

    def _apply_pause(self, cfg: Any) -> None:
        """``pause_until`` (pause.py): until then ``paused`` holds the pumps back; a
        timer kicks delivery at the time."""
        if self._unpause is not None:
            self._unpause.cancel()
            self._unpause = None
        self.pause_until = 0.0
        until = pause_until_ns(cfg)
        left = (until - time.time_ns()) / 1e9 if until else 0.0
        if left > 0:
            self.pause_until = self.loop.time() + left
            self._unpause = self.loop.call_at(self.pause_until, self._end_pause, until)

    def _end_pause(self, until: int) -> None:
        # (asyncio may run a timer up to its clock resolution early: the pause ends
        # here, not by comparing times in the pump; and never before pause_until by the
        # wall clock, which ConsumerInfo's "paused" reads, pause.add_info)
        left = until - time.time_ns()
        if left > 0:
            self.pause_until = self.loop.time() + left / 1e9 + 1e-4
            self._unpause = self.loop.call_at(self.pause_until, self._end_pause, until)
            return
        self._unpause = None
        self.pause_until = 0.0
        self.kick()

    def paused(self, now: float) -> bool:
        """Still paused at loop time ``now`` (callers test ``pause_until`` first)."""
        if now < self.pause_until:
            return True
        self.pause_until = 0.0
        return False

    @property
    def durable(self) -> bool:
        return bool(self.c.config.durable_name)

    # -- scheduling ------------------------------------------------------------------

    def kick(self) -> None:
        """Something may be deliverable: one pump soon (safe inside Server.route)."""
        if not self._kicked and not self.closed:
            self._kicked = True
            self.js.later(self._pump_now)

    def _pump_now(self) -> None:
        self._kicked = False
        if self.closed:
            return
        if self.c.stream._closed:
            self.reg.drop(self, deleted=True)
            return
        try:
            self.pump()
        finally:
            if not self.closed:
                self.schedule()

    def wake_at(self, when: float) -> None:
        """Arm the consumer's one timer for ``when`` (loop time) unless it rings sooner."""
        t = self._timer
        if t is not None:
            if when >= self._timer_at - 0.0005:
                return
            t.cancel()
        self._timer_at = when
        self._timer = self.loop.call_at(when, self._ring)

    def _ring(self) -> None:
        self._timer = None
        if self.closed:
            return
        if self.c.stream._closed:
            self.reg.drop(self, deleted=True)
            return
        try:
            now = self.loop.time()
            if self.c.num_ack_pending:
                # Due redeliveries join the redelivery queue (and max_deliver casualties
                # leave pending) even with nobody to deliver to, as nats-server's timer.
                if self.c.redeliveries_due() and self.has_receiver():
                    self.kick()
            self.tick(now)
            if not self.closed and self.inactive_due(now):
                self.reg.delete(self, "inactive")
        except Exception:
            log.exception("consumer %s > %s: timer failed", self.stream_name, self.name)
        if not self.closed:
            self.schedule()

    def schedule(self) -> None:
        """Arm the timer for the earliest deadline of this consumer."""
        now = self.loop.time()
        best = self.next_event(now)
        ns = self.c.next_timeout() if self.c.num_ack_pending else None
        if ns is not None:
            # +1 ms as nats-server's ackWaitDelay: one ring handles a burst of deadlines
            at = now + (ns - time.time_ns()) / 1e9 + 0.001
            best = at if best is None or at < best else best
        idle = self.inactive_at(now)
        if idle is not None and (best is None or idle < best):
            best = idle
        if best is not None:
            self.wake_at(max(best, now))

    # -- what subclasses provide -------------------------------------------------------

    def pump(self) -> None:
        raise NotImplementedError

    def tick(self, now: float) -> None:
        """Handle what is due at ``now`` (expiries, heartbeats, held messages)."""

    def next_event(self, now: float) -> float | None:
        """Loop time of this runtime's own next deadline, if any."""
        return None

    def has_receiver(self) -> bool:
        raise NotImplementedError

    def inactive_at(self, now: float) -> float | None:
        """When the inactivity threshold would remove this consumer, if counting."""
        return None

    def inactive_due(self, now: float) -> bool:
        at = self.inactive_at(now)
        return at is not None and now >= at

    def on_delete(self) -> None:
        """The consumer is going away (deleted, or its stream is)."""

    # -- acks (acks.py calls these inside Server.route) ---------------------------------

    def touched(self) -> None:
        """An ack or a pull request: the consumer is in use (nats-server
        suppressDeletion)."""
        self.last_activity = self.loop.time()

    def after_ack(self) -> None:
        if self.ack_stalled:
            self.ack_stalled = False
            self.kick()

    # -- sending ---------------------------------------------------------------------

    def ack_reply(self, msg: StoredMsg, d: DeliveryInfo) -> str:
        return (
            f"{self.ack_prefix}{d.num_delivered}.{d.stream_seq}."
            f"{d.consumer_seq}.{msg.ts_ns}.{d.num_pending}"
        )

    def undelivered(self, seqs: list[int]) -> None:
        """Nobody received these (no interest any more): redeliver them first, as
        nats-server didNotDeliver does (an ack-none delivery is lost, as there)."""
        if self.ack_none:
            return
        for seq in seqs:
            self.c.nak(seq)

    def close(self) -> None:
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.c.on_available == self.kick:
            self.c.on_available = None
