"""Consumers: a durable cursor over one stream, with acks and redelivery.

Owns ``ConsumerImpl`` and the consumer op codes of the COPS records. The stream
(``stream.py``) creates consumers and calls their hooks (``_needs``, ``_removed``,
``_purged``) as messages come and go.

A consumer holds a cursor (``_sseq``, the last stream sequence handed out as new), the
consumer sequence ``_dseq``, and ``_pending``: stream seq -> [consumer seq, deadline ns],
in deadline order while every deadline is "now + ack_wait" (``_irregular`` is set once a
nak delay or backoff breaks that order, and due scans then look at every entry).
``_rq`` is the ordered set of sequences to redeliver first. ``_num_pending`` (messages
after the cursor that match the filter) is kept incrementally: +1 on a matching append,
-1 on delivery or on removal of an undelivered message; it is only counted from scratch
at creation and after recovery or a purge.

Every state change of a persisted consumer is appended to ``_ops`` as a flat triple
``(code, stream_seq, t)``; the file store writes them as COPS records once per batch and
replays them after the latest CSNAP (a ``snapshot()``) at start-up. Replaying uses the same
``_apply`` as the live path, so the two cannot drift apart.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .api import ConsumerConfig, DeliveryInfo, StoredMsg, rfc3339
from .blocks import DEAD
from .filters import SubjectFilter

if TYPE_CHECKING:
    from .stream import BaseStream
# consumer op codes (COPS records; never renumber)
OP_DELIVER = 1
OP_REDELIVER = 2
OP_ACK = 3
OP_ACK_ALL = 4
OP_NAK = 5
OP_TERM = 6
OP_PROGRESS = 7
OP_EXHAUSTED = 8
OP_PURGE = 9  # everything below seq is gone: drop pending, move the cursor


class ConsumerImpl:
    """A durable cursor over one stream; see the module docstring."""

    __slots__ = (
        "stream",
        "config",
        "name",
        "cid",
        "created_ns",
        "flt",
        "on_available",
        "_dseq",
        "_sseq",
        "_pending",
        "_rdc",
        "_rq",
        "_num_pending",
        "_lps",
        "_lps_set",
        "_lps_end",
        "_ops",
        "_irregular",
        "_last_active_ns",
        "_last_ack_ns",
        "_ack_none",
        "_ack_all",
        "_wait_ns",
        "_backoff_ns",
        "_max_deliver",
        "_max_ack_pending",
    )

    def __init__(self, stream: BaseStream, config: ConsumerConfig, cid: int, created_ns: int):
        self.stream = stream
        self.cid = cid
        self.created_ns = created_ns
        self.on_available: Callable[[], None] | None = None
        self._dseq = 0
        self._sseq = 0
        self._pending: dict[int, list[int]] = {}
        self._rdc: dict[int, int] = {}
        self._rq: dict[int, None] = {}
        self._num_pending = 0
        self._lps: deque[int] | None = None
        self._lps_set: set[int] = set()
        self._lps_end = 0
        self._ops: list[int] | None = None
        self._irregular = False
        self._last_active_ns = 0
        self._last_ack_ns = 0
        self._set_config(config)

    def _set_config(self, config: ConsumerConfig) -> None:
        self.config = config
        self.name = config.name  # type: ignore[assignment]
        self.flt = SubjectFilter(config.filters())
        self._ack_none = config.ack_policy == "none"
        self._ack_all = config.ack_policy == "all"
        self._wait_ns = int(config.ack_wait * 1e9)
        self._backoff_ns = [int(b * 1e9) for b in config.backoff] if config.backoff else None
        if self._backoff_ns:
            self._irregular = True
        self._max_deliver = config.max_deliver
        self._max_ack_pending = config.max_ack_pending

    # ---- position

    def _init_position(self) -> None:
        """Place the cursor per the deliver policy (creation only)."""
        s = self.stream
        cfg = self.config
        dp = cfg.deliver_policy
        self._lps = None
        if dp == "all":
            self._sseq = s._first - 1
        elif dp == "new":
            self._sseq = s._last_seq
        elif dp == "by_start_sequence":
            self._sseq = max(0, (cfg.opt_start_seq or 1) - 1)
        elif dp == "by_start_time":
            seq = s._seq_at_time(int((cfg.opt_start_time or 0.0) * 1e9))
            self._sseq = (seq - 1) if seq else s._last_seq
        elif dp == "last":
            seq = s._last_match(self.flt)
            self._sseq = (seq - 1) if seq else s._last_seq
        else:  # last_per_subject
            heads = s._heads(self.flt)
            self._lps = deque(heads)
            self._lps_set = set(heads)
            self._lps_end = s._last_seq
            self._sseq = (heads[0] - 1) if heads else s._last_seq
            if not heads:
                self._lps = None
        self._recount()

    def _end_lps(self) -> None:
        """The last-per-subject heads are all delivered: follow the stream from there on."""
        self._lps = None
        self._lps_set = set()
        if self._sseq < self._lps_end:
            self._sseq = self._lps_end

    def _recount(self) -> None:
        s = self.stream
        if self._lps is not None:
            live = [h for h in self._lps if h in self._lps_set and s._is_live(h)]
            self._lps = deque(live)
            self._lps_set = set(live)
            if not live:
                self._end_lps()
        if self._lps is not None:
            self._num_pending = len(self._lps) + s._count_after(self._lps_end, self.flt)
        else:
            self._num_pending = s._count_after(self._sseq, self.flt)

    # ---- op log

    def _op(self, code: int, seq: int, t: int) -> None:
        ops = self._ops
        if ops is not None:
            ops.append(code)
            ops.append(seq)
            ops.append(t)
            if len(ops) == 3:
                self.stream._consumer_dirty(self)

    def _wait_for(self, delivered: int) -> int:
        b = self._backoff_ns
        if b:
            return b[min(delivered, len(b)) - 1]
        return self._wait_ns

    def _apply(self, code: int, seq: int, t: int) -> None:
        """Apply one state change; ``t`` is ms (a delivery time, or a nak deadline)."""
        p = self._pending
        if code == OP_DELIVER:
            self._dseq += 1
            if seq > self._sseq:
                self._sseq = seq
            if self._lps is not None:
                self._lps_set.discard(seq)
                if not self._lps_set:
                    self._end_lps()
            if not self._ack_none:
                p[seq] = [self._dseq, t * 1_000_000 + self._wait_for(1)]
        elif code == OP_REDELIVER:
            self._dseq += 1
            dc = self._rdc.get(seq, 1) + 1
            self._rdc[seq] = dc
            # nats-server keeps the first delivery's consumer seq in its pending entry
            # (trackPending): the ack floor's consumer_seq is counted from it.
            ent = p.pop(seq, None)
            p[seq] = [ent[0] if ent else self._dseq, t * 1_000_000 + self._wait_for(dc)]
            self._rq.pop(seq, None)
        elif code == OP_ACK or code == OP_TERM:
            p.pop(seq, None)
            self._rq.pop(seq, None)
            self._rdc.pop(seq, None)
        elif code == OP_ACK_ALL:
            for s in [s for s in p if s <= seq]:
                del p[s]
                self._rq.pop(s, None)
                self._rdc.pop(s, None)
        elif code == OP_NAK:
            ent = p.get(seq)
            if ent is not None:
                if t:
                    ent[1] = t * 1_000_000
                    self._irregular = True
                else:
                    self._rq[seq] = None
        elif code == OP_PROGRESS:
            ent = p.pop(seq, None)
            if ent is not None:
                ent[1] = t * 1_000_000 + self._wait_for(self._rdc.get(seq, 1))
                p[seq] = ent
        elif code == OP_EXHAUSTED:
            p.pop(seq, None)
            self._rq.pop(seq, None)
        elif code == OP_PURGE:
            for s in [s for s in p if s < seq]:
                del p[s]
                self._rq.pop(s, None)
            for s in [s for s in self._rdc if s < seq]:
                del self._rdc[s]
            if self._sseq < seq - 1:
                self._sseq = seq - 1
        if not p:
            self._irregular = bool(self._backoff_ns)

    def snapshot(self) -> dict:
        """The full state, as a CSNAP record holds it (deadlines in ms)."""
        pend: list[int] = []
        for s, (c, dl) in self._pending.items():
            pend += (s, c, dl // 1_000_000)
        rdc: list[int] = []
        for s, n in self._rdc.items():
            rdc += (s, n)
        snap = {
            "d": self._dseq,
            "s": self._sseq,
            "p": pend,
            "r": rdc,
            "q": list(self._rq),
            "i": self._irregular,
        }
        if self._lps is not None:
            snap["l"] = [h for h in self._lps if h in self._lps_set]
            snap["e"] = self._lps_end
        return snap

    def restore(self, snap: dict) -> None:
        self._dseq = snap.get("d", 0)
        self._sseq = snap.get("s", 0)
        pend = snap.get("p", [])
        self._pending = {
            pend[i]: [pend[i + 1], pend[i + 2] * 1_000_000] for i in range(0, len(pend), 3)
        }
        rdc = snap.get("r", [])
        self._rdc = {rdc[i]: rdc[i + 1] for i in range(0, len(rdc), 2)}
        self._rq = dict.fromkeys(snap.get("q", []))
        self._irregular = bool(snap.get("i")) or bool(self._backoff_ns)
        lps = snap.get("l")
        if lps is not None:
            self._lps = deque(lps)
            self._lps_set = set(lps)
            self._lps_end = snap.get("e", 0)
        else:
            self._lps = None
            self._lps_set = set()

    def _after_recovery(self) -> None:
        """Drop pending entries of messages that are gone; recount num_pending."""
        s = self.stream
        for seq in [q for q in self._pending if not s._is_live(q)]:
            del self._pending[seq]
            self._rq.pop(seq, None)
        for seq in [q for q in self._rq if q not in self._pending]:
            del self._rq[seq]
        self._recount()

    # ---- stream hooks (called by the stream)

    def _needs(self, seq: int) -> bool:
        """Interest retention: does this consumer still need ``seq``?"""
        if seq in self._pending:
            return True
        if self._lps is not None:
            return seq in self._lps_set or seq > self._lps_end
        return seq > self._sseq

    def _removed(self, seq: int) -> None:
        if self._pending and self._pending.pop(seq, None) is not None:
            self._rq.pop(seq, None)
        if self._rdc:
            self._rdc.pop(seq, None)  # also the counts kept for max-deliver casualties
        if self._lps is not None:
            if seq in self._lps_set:
                self._lps_set.discard(seq)
                self._num_pending -= 1
                if not self._lps_set:
                    self._end_lps()
            elif seq > self._lps_end:
                self._num_pending -= 1
        elif seq > self._sseq:
            self._num_pending -= 1

    def _purged(self, upto: int) -> None:
        """Everything below ``upto`` is gone (full or sequence purge)."""
        if self._sseq < upto - 1 or any(q < upto for q in self._pending):
            self._apply(OP_PURGE, upto, 0)
            self._op(OP_PURGE, upto, 0)
        self._recount()

    # ---- public API

    @property
    def num_pending(self) -> int:
        return self._num_pending

    @property
    def num_ack_pending(self) -> int:
        return len(self._pending)

    @property
    def num_redelivered(self) -> int:
        return len(self._rdc)

    @property
    def delivered(self) -> tuple[int, int]:
        """(consumer_seq, stream_seq) of the last delivery."""
        return self._dseq, self._sseq

    @property
    def ack_floor(self) -> tuple[int, int]:
        """(consumer_seq, stream_seq) below which everything is acked."""
        if not self._pending:
            return self._dseq, self._sseq
        low = min(self._pending)
        return self._pending[low][0] - 1, low - 1

    def next_batch(self, n: int, now: float | None = None) -> list[tuple[StoredMsg, DeliveryInfo]]:
        out: list[tuple[StoredMsg, DeliveryInfo]] = []
        s = self.stream
        if n <= 0 or s._closed:
            return out
        now_ns = time.time_ns() if now is None else int(now * 1e9)
        now_ms = now_ns // 1_000_000
        if self._pending:
            self._collect_due(now_ns)
        if self._rq:
            self._take_redeliveries(out, n, now_ms)
        if len(out) < n:
            if self._lps is None:
                self._take_new(out, n, now_ms)
            else:
                self._take_heads(out, n, now_ms)
        if out:
            self._last_active_ns = now_ns
        return out

    def _take_redeliveries(self, out: list, n: int, now_ms: int) -> None:
        s = self.stream
        rq, pending = self._rq, self._pending
        while rq and len(out) < n:
            seq = next(iter(rq))
            del rq[seq]
            if seq not in pending:
                continue
            msg = s._load(seq)
            if msg is None:
                del pending[seq]
                self._rdc.pop(seq, None)
                continue
            self._apply(OP_REDELIVER, seq, now_ms)
            self._op(OP_REDELIVER, seq, now_ms)
            out.append((msg, DeliveryInfo(seq, self._dseq, self._rdc[seq], self._num_pending)))

    def _take_new(self, out: list, n: int, now_ms: int) -> None:
        """New messages after the cursor, block by block: the slots of a block are read
        in place (no search per message) and OP_DELIVER is applied inline, as
        ``_apply`` does it; a pull of 500 is the benchmark's hot path."""
        # hot path: one loop per delivered message, the work of _apply/_op inlined.
        s = self.stream
        pending = self._pending
        limit = self._max_ack_pending
        ack_none = self._ack_none
        interest = s._retention_interest
        flt = self.flt
        pred, cache, names = flt.pred, flt.cache, s._names
        deadline = now_ms * 1_000_000 + self._wait_for(1)
        ops = self._ops
        was_clean = ops is not None and not ops
        seq = self._sseq + 1
        while len(out) < n and not (limit > 0 and len(pending) >= limit):
            found = s._find_next(seq, flt)
            if found is None:
                break
            blk, j = found
            subj, first = blk.subj, blk.first
            end = len(subj)
            run = None
            if pred is None:
                # Every live slot from here on is taken: load the run this call can
                # take at once (one read on a file stream), up to the block's end.
                room = n - len(out)
                if limit > 0:
                    room = min(room, limit - len(pending))
                end = min(end, j + room)
                run = s._load_slots(blk, j, end)
                base = j
                if not (ack_none and interest):
                    # Every slot is taken (room counted them): no test per message,
                    # the counters in locals. (An ack-none consumer of an interest
                    # stream removes as it goes, which the counters must see.)
                    seq = first + j
                    np, dseq, last = self._num_pending, self._dseq, self._sseq
                    for msg in run:
                        if msg is None:
                            if subj[seq - first] != DEAD:  # unreadable: handed out as nothing
                                np -= 1
                                last = seq
                            seq += 1
                            continue
                        np -= 1
                        dseq += 1
                        if not ack_none:
                            pending[seq] = [dseq, deadline]
                        if ops is not None:
                            ops += (OP_DELIVER, seq, now_ms)
                        out.append((msg, DeliveryInfo(seq, dseq, 1, np)))
                        last = seq
                        seq += 1
                    self._num_pending, self._dseq, self._sseq = np, dseq, last
                    continue
            while j < end:
                sid = subj[j]
                if sid == DEAD:
                    j += 1
                    continue
                if pred is not None:
                    m = cache.get(sid)
                    if m is None:
                        m = cache[sid] = pred(names[sid])
                    if not m:
                        j += 1
                        continue
                seq = first + j
                j += 1
                msg = s._load_slot(blk, j - 1, seq) if run is None else run[j - 1 - base]
                self._num_pending -= 1
                self._sseq = seq
                if msg is None:  # unreadable record: skip it rather than stall the consumer
                    continue
                self._dseq = dseq = self._dseq + 1
                if not ack_none:
                    pending[seq] = [dseq, deadline]
                if ops is not None:
                    ops += (OP_DELIVER, seq, now_ms)
                out.append((msg, DeliveryInfo(seq, dseq, 1, self._num_pending)))
                if ack_none and interest:
                    s._check_interest(seq)
                if len(out) >= n or (limit > 0 and len(pending) >= limit):
                    break
            seq = first + j
        if was_clean and ops:
            s._consumer_dirty(self)

    def _take_heads(self, out: list, n: int, now_ms: int) -> None:
        """Deliver policy last_per_subject: the per-subject heads first, in stream order."""
        s = self.stream
        pending = self._pending
        limit = self._max_ack_pending
        ack_none = self._ack_none
        interest = s._retention_interest
        while len(out) < n:
            if limit > 0 and len(pending) >= limit:
                break
            lps = self._lps
            if lps is None:
                self._take_new(out, n, now_ms)
                return
            seq = 0
            while lps:
                h = lps.popleft()
                if h in self._lps_set:
                    seq = h
                    break
            if not seq:
                self._end_lps()
                continue
            msg = s._load(seq)
            if msg is None:  # unreadable record: count it as handed out
                self._num_pending -= 1
                self._lps_set.discard(seq)
                if not self._lps_set:
                    self._end_lps()
                continue
            self._num_pending -= 1
            self._apply(OP_DELIVER, seq, now_ms)
            self._op(OP_DELIVER, seq, now_ms)
            out.append((msg, DeliveryInfo(seq, self._dseq, 1, self._num_pending)))
            if ack_none and interest:
                s._check_interest(seq)

    def peek(self, now: float | None = None) -> tuple[StoredMsg, int, int] | None:
        """What ``next_batch(1)`` would hand out now, changing nothing but the due
        redeliveries it queues: ``(msg, delivery count, num_pending after it)``, or None.
        A pull request with ``max_bytes`` sizes the next delivery before taking it."""
        s = self.stream
        if s._closed:
            return None
        pending = self._pending
        if pending:
            self._collect_due(time.time_ns() if now is None else int(now * 1e9))
        for seq in self._rq:
            if seq in pending:
                msg = s._load(seq)
                if msg is not None:
                    return msg, self._rdc.get(seq, 1) + 1, self._num_pending
        limit = self._max_ack_pending
        if limit > 0 and len(pending) >= limit:
            return None
        if self._lps is not None:
            for h in self._lps:
                if h in self._lps_set:
                    msg = s._load(h)
                    return (msg, 1, self._num_pending - 1) if msg is not None else None
        seq = self._sseq + 1
        while True:
            found = s._find_next(seq, self.flt)
            if found is None:
                return None
            blk, j = found
            seq = blk.first + j
            msg = s._load_slot(blk, j, seq)
            if msg is not None:
                return msg, 1, self._num_pending - 1
            seq += 1

    def next_timeout(self) -> int | None:
        """Epoch ns of the earliest ack deadline of a message not already queued for
        redelivery (those wait for a receiver, not for a time): the one timer of a
        consumer is armed for it."""
        rq = self._rq
        best = None
        for seq, ent in self._pending.items():
            if seq in rq:
                continue
            if best is None or ent[1] < best:
                best = ent[1]
            if not self._irregular:
                break
        return best

    def _collect_due(self, now_ns: int) -> list[int]:
        due: list[int] = []
        rq = self._rq
        if self._irregular:
            for seq, ent in self._pending.items():
                if ent[1] <= now_ns and seq not in rq:
                    due.append(seq)
        else:
            for seq, ent in self._pending.items():
                if ent[1] > now_ns:
                    break
                if seq not in rq:
                    due.append(seq)
        md = self._max_deliver
        out: list[int] = []
        for seq in due:
            if md > 0 and self._rdc.get(seq, 1) >= md:
                # nats-server keeps the redelivery count but stops tracking the ack
                self._apply(OP_EXHAUSTED, seq, 0)
                self._op(OP_EXHAUSTED, seq, 0)
            else:
                rq[seq] = None
                out.append(seq)
        return out

    def redeliveries_due(self, now: float | None = None) -> list[int]:
        now_ns = time.time_ns() if now is None else int(now * 1e9)
        self._collect_due(now_ns)
        return list(self._rq)

    def next_deadline(self) -> float | None:
        if self._rq:
            return time.time()
        best = None
        for ent in self._pending.values():
            if best is None or ent[1] < best:
                best = ent[1]
            if not self._irregular:
                break
        return None if best is None else best / 1e9

    def ack(self, stream_seq: int) -> bool:
        if self._ack_none:
            return False
        if self._ack_all:
            done = [q for q in self._pending if q <= stream_seq]
            if not done:
                return False
            self._apply(OP_ACK_ALL, stream_seq, 0)
            self._op(OP_ACK_ALL, stream_seq, 0)
            self._last_ack_ns = time.time_ns()
            self.stream._acked(done)
            return True
        # hot path (an explicit ack per message): _apply(OP_ACK) and _op inlined.
        p = self._pending
        if p.pop(stream_seq, None) is None:
            return False
        if self._rq:
            self._rq.pop(stream_seq, None)
        if self._rdc:
            self._rdc.pop(stream_seq, None)
        if not p:
            self._irregular = bool(self._backoff_ns)
        ops = self._ops
        if ops is not None:
            ops += (OP_ACK, stream_seq, 0)
            if len(ops) == 3:
                self.stream._consumer_dirty(self)
        self._last_ack_ns = time.time_ns()
        s = self.stream
        if s._retention_wq or s._retention_interest:
            s._acked((stream_seq,))
        return True

    def ack_many(self, seqs: list[int]) -> int:
        """``ack(seq)`` for each of ``seqs``, in order (a client's acks of one read);
        returns how many were pending."""
        if self._ack_none or self._ack_all:
            return sum(1 for seq in seqs if self.ack(seq))
        # hot path: ack's body for the explicit policy, once for the run.
        pop = self._pending.pop
        done = [seq for seq in seqs if pop(seq, None) is not None]
        if not done:
            return 0
        rq, rdc = self._rq, self._rdc
        for seq in done if rq or rdc else ():
            rq.pop(seq, None)
            rdc.pop(seq, None)
        if not self._pending:
            self._irregular = bool(self._backoff_ns)
        ops = self._ops
        if ops is not None:
            was_clean = not ops
            for seq in done:
                ops += (OP_ACK, seq, 0)
            if was_clean:
                self.stream._consumer_dirty(self)
        self._last_ack_ns = time.time_ns()
        s = self.stream
        if s._retention_wq or s._retention_interest:
            s._acked(done)
        return len(done)

    def term(self, stream_seq: int) -> bool:
        if stream_seq not in self._pending:
            return False
        self._apply(OP_TERM, stream_seq, 0)
        self._op(OP_TERM, stream_seq, 0)
        self._last_ack_ns = time.time_ns()
        self.stream._acked((stream_seq,))
        return True

    def nak(self, stream_seq: int, delay: float = 0.0) -> bool:
        if stream_seq not in self._pending:
            return False
        t = (time.time_ns() + int(delay * 1e9)) // 1_000_000 if delay > 0 else 0
        self._apply(OP_NAK, stream_seq, t)
        self._op(OP_NAK, stream_seq, t)
        return True

    def in_progress(self, stream_seq: int) -> bool:
        if stream_seq not in self._pending:
            return False
        t = time.time_ns() // 1_000_000
        self._apply(OP_PROGRESS, stream_seq, t)
        self._op(OP_PROGRESS, stream_seq, t)
        return True

    def info(self, wire: bool = False) -> dict[str, Any]:
        fc, fs = self.ack_floor
        delivered: dict[str, Any] = {"consumer_seq": self._dseq, "stream_seq": self._sseq}
        if self._last_active_ns:
            delivered["last_active"] = rfc3339(self._last_active_ns)
        return {
            "stream_name": self.stream.name,
            "name": self.name,
            "created": rfc3339(self.created_ns),
            "config": self.config.to_dict(wire=wire),
            "delivered": delivered,
            "ack_floor": {"consumer_seq": fc, "stream_seq": fs},
            "num_ack_pending": len(self._pending),
            "num_redelivered": len(self._rdc),
            "num_waiting": 0,
            "num_pending": self._num_pending,
        }

    def __repr__(self) -> str:
        return f"Consumer({self.stream.name}/{self.name})"
