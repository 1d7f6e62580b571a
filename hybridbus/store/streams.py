"""Streams, consumers, acks and redelivery: the logic both stores share.

Theory of operation
===================
A stream is a run of *blocks*. A block covers a contiguous range of sequences
``first .. first + len(subj) - 1`` and keeps one slot per sequence in parallel arrays:

``subj``  subject id (``DEAD`` once the message is gone)
``size``  stored size (0 once gone), so ``sum(size)`` is the block's live bytes
``ts``    timestamp in ns; never decreases along the stream, so start-time lookups bisect

The memory store keeps the message objects in a list beside the arrays; the file store
keeps record offsets and reads bodies on demand (``filestore.py``). Searches run in C:
"next message on subject X" is ``array.index(sid, i)``, counts are ``array.count``.

Subjects are interned to ids. ``_sstate[sid] = [count, first, last, last_exact]``:
``first`` is a lower bound (advancing it eagerly would cost a search per delete; it is
resolved when needed), ``last`` is exact unless ``last_exact`` is False, in which case it is
an upper bound resolved by a backward search. Ids are never reused, so caches keyed by id
never go stale; they are only trimmed.

Appends check expectations, duplicates and limits in nats-server's order
(``processJetStreamMsg``), assign ``last_seq + 1``, then enforce discard-old limits and
rollups by removing the oldest messages. Every removal goes through ``_remove_at``, which
keeps the counters, the subject state, the consumers' pending counts and the backend's
tombstones in step.

Consumers
---------
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

Retention: on an interest stream a message goes once no consumer whose filter matches it
still needs it; on a work-queue stream it goes on ack or term. These removals are ordinary
deletes (and tombstones).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from array import array
from bisect import bisect_right
from collections import Counter, deque
from collections.abc import Callable, Iterator
from typing import Any

from . import errors as E
from .api import (
    ConsumerConfig,
    DeliveryInfo,
    OnDurable,
    StoredMsg,
    StreamConfig,
    StreamState,
    encode_headers,
    rfc3339,
)
from .match import compile_filters, filters_overlap, is_literal, valid_subject

log = logging.getLogger("hybridbus.store")
_time_ns = time.time_ns

DEAD = 0xFFFFFFFF
assert array("I").itemsize == 4, "the store needs 32-bit unsigned arrays"
_CACHE_TRIM = 65536  # trim per-subject caches past this many entries

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


class Block:
    """Slots for sequences ``first .. first + len(subj) - 1`` (see the module docstring)."""

    __slots__ = ("first", "subj", "size", "ts", "live")

    def __init__(self, first: int):
        self.first = first
        self.subj = array("I")
        self.size = array("I")
        self.ts = array("q")
        self.live = 0

    @property
    def end(self) -> int:
        return self.first + len(self.subj)


class MemBlock(Block):
    __slots__ = ("msgs",)

    def __init__(self, first: int):
        super().__init__(first)
        self.msgs: list[StoredMsg | None] = []


class SubjectFilter:
    """A compiled consumer/API filter with a per-subject-id verdict cache."""

    __slots__ = ("filters", "pred", "literal", "cache")

    def __init__(self, filters: list[str] | None):
        fs = [f for f in (filters or []) if f]
        self.filters = fs
        self.pred = compile_filters(fs)
        self.literal = fs[0] if len(fs) == 1 and is_literal(fs[0]) else None
        self.cache: dict[int, bool] = {}

    def matches(self, sid: int, name: str) -> bool:
        if self.pred is None:
            return True
        m = self.cache.get(sid)
        if m is None:
            if len(self.cache) > _CACHE_TRIM:
                self.cache.clear()
            m = self.cache[sid] = self.pred(name)
        return m


def _as_filter(subject: str | None) -> SubjectFilter | None:
    if subject is None or subject == "" or subject == ">":
        return None
    return SubjectFilter([subject])


# =========================================================================== consumer


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
            p.pop(seq, None)
            p[seq] = [self._dseq, t * 1_000_000 + self._wait_for(dc)]
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
        self._last_active_ns = now_ns
        pending = self._pending
        if pending:
            self._collect_due(now_ns)
        rq = self._rq
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
        limit = self._max_ack_pending
        ack_none = self._ack_none
        flt = self.flt
        interest = s._retention_interest
        while len(out) < n:
            if limit > 0 and len(pending) >= limit:
                break
            lps = self._lps
            if lps is not None:
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
            else:
                found = s._find_next(self._sseq + 1, flt)
                if found is None:
                    break
                blk, j = found
                seq = blk.first + j
                msg = s._load_slot(blk, j, seq)
                if msg is None:  # unreadable record: skip it rather than stall the consumer
                    self._sseq = seq
                    self._num_pending -= 1
                    continue
            self._num_pending -= 1
            self._apply(OP_DELIVER, seq, now_ms)
            self._op(OP_DELIVER, seq, now_ms)
            out.append((msg, DeliveryInfo(seq, self._dseq, 1, self._num_pending)))
            if ack_none and interest:
                s._check_interest(seq)
        return out

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
            self.stream._acked(done)
            return True
        if stream_seq not in self._pending:
            return False
        self._apply(OP_ACK, stream_seq, 0)
        self._op(OP_ACK, stream_seq, 0)
        self.stream._acked((stream_seq,))
        return True

    def term(self, stream_seq: int) -> bool:
        if stream_seq not in self._pending:
            return False
        self._apply(OP_TERM, stream_seq, 0)
        self._op(OP_TERM, stream_seq, 0)
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


# =========================================================================== stream


class BaseStream:
    """Everything about a stream except where message bodies live."""

    storage_kind = "memory"
    _guarded = False  # True: call _check_writable before committing an append

    def __init__(self, store: BaseStore, config: StreamConfig, created_ns: int):
        self._store = store
        self.config = config
        self.name = config.name
        self.created_ns = created_ns
        self.was_duplicate = False
        self._closed = False
        self._blocks: list[Block] = []
        self._firsts: list[int] = []
        self._tail: Block | None = None
        self._last_seq = 0
        self._last_ts = 0
        self._first = 1
        self._msgs = 0
        self._bytes = 0
        self._sids: dict[str, int] = {}
        self._names: dict[int, str] = {}
        self._next_sid = 0
        self._sstate: dict[int, list] = {}
        self._ids: dict[str, tuple[int, int]] = {}
        self._last_msg_id: str | None = None
        self._consumers: dict[str, ConsumerImpl] = {}
        self._interest: dict[int, tuple[ConsumerImpl, ...]] = {}
        self._expiry_handle: asyncio.TimerHandle | None = None
        self._apply_config(config)
        if config.first_seq and config.first_seq > 1:
            self._last_seq = config.first_seq - 1
            self._first = config.first_seq

    def _apply_config(self, config: StreamConfig) -> None:
        self.config = config
        self._accept = compile_filters(config.subjects)
        # appends take a slower, fully checked path only when a limit or policy needs it
        self._checks = config.sealed or config.max_msg_size > 0 or config.discard == "new"
        self._retention_interest = config.retention == "interest"
        self._retention_wq = config.retention == "workqueue"
        self._dup_window_ns = int(config.duplicate_window * 1e9)
        self._max_age_ns = int(config.max_age * 1e9)
        # No policy or limit in the config for an append to consult (see _takes_plain).
        self._plain = not (
            self._checks
            or self._retention_interest
            or self._max_age_ns
            or config.max_msgs_per_subject > 0
            or (config.discard == "old" and (config.max_msgs > 0 or config.max_bytes > 0))
        )

    # ---- backend hooks -------------------------------------------------------

    def _put(self, seq: int, ts: int, sid: int, subject: str, hdr, payload, msg_id, size: int):
        raise NotImplementedError

    def _load_slot(self, blk: Block, i: int, seq: int) -> StoredMsg | None:
        raise NotImplementedError

    def _slot_removed(self, blk: Block, i: int, seq: int) -> None:
        """A live slot died (tombstone it)."""

    def _block_emptied(self, blk: Block) -> None:
        """The last live slot of a block died."""

    def _range_purged(self, a: int, b: int) -> None:
        """Whole-prefix removal of a..b (one tombstone range)."""

    def _durable(self, cb: OnDurable, seq: int) -> None:
        self._store._defer(cb, seq)

    def _touch(self) -> None:
        """Called after each write-side operation (the file store schedules a flush)."""

    def _consumer_dirty(self, c: ConsumerImpl) -> None:
        """A persisted consumer has unwritten ops."""

    def _consumer_created(self, c: ConsumerImpl, existed: bool) -> None:
        """Persist a new or updated consumer."""

    def _consumer_deleted(self, c: ConsumerImpl) -> None:
        pass

    def _config_changed(self) -> None:
        pass

    def _check_writable(self) -> None:
        """Raise StoreWriteError while the stream is in write-error back-off."""

    # ---- slots ---------------------------------------------------------------

    def _add_block(self, blk: Block) -> Block:
        self._blocks.append(blk)
        self._firsts.append(blk.first)
        self._tail = blk
        return blk

    def _drop_block(self, blk: Block) -> None:
        i = self._block_index(blk.first)
        if i >= 0 and self._blocks[i] is blk:
            del self._blocks[i]
            del self._firsts[i]
            self._tail = self._blocks[-1] if self._blocks else None

    def _block_index(self, seq: int) -> int:
        return bisect_right(self._firsts, seq) - 1

    def _locate(self, seq: int) -> tuple[Block, int] | None:
        blk = self._tail
        if blk is None:
            return None
        if seq < blk.first:
            bi = bisect_right(self._firsts, seq) - 1
            if bi < 0:
                return None
            blk = self._blocks[bi]
        i = seq - blk.first
        if i >= len(blk.subj):
            return None
        return blk, i

    def _is_live(self, seq: int) -> bool:
        loc = self._locate(seq)
        return loc is not None and loc[0].subj[loc[1]] != DEAD

    def _load(self, seq: int) -> StoredMsg | None:
        loc = self._locate(seq)
        if loc is None:
            return None
        blk, i = loc
        if blk.subj[i] == DEAD:
            return None
        return self._load_slot(blk, i, seq)

    def _intern(self, subject: str) -> int:
        sid = self._next_sid
        self._next_sid = sid + 1
        self._sids[subject] = sid
        self._names[sid] = subject
        return sid

    def _forget(self, sid: int) -> None:
        name = self._names.pop(sid, None)
        if name is not None:
            self._sids.pop(name, None)
        self._interest.pop(sid, None)

    # ---- searches ------------------------------------------------------------

    def _find_next(self, start: int, flt: SubjectFilter | None) -> tuple[Block, int] | None:
        """The first live slot with seq >= start matching ``flt``."""
        if self._msgs == 0:
            return None
        if start < self._first:
            start = self._first
        if start > self._last_seq:
            return None
        blocks = self._blocks
        nb = len(blocks)
        bi = bisect_right(self._firsts, start) - 1
        if bi < 0:
            bi = 0
        if flt is None or flt.pred is None:
            while bi < nb:
                blk = blocks[bi]
                bi += 1
                if not blk.live:
                    continue
                subj = blk.subj
                j = start - blk.first if start > blk.first else 0
                n = len(subj)
                while j < n:
                    if subj[j] != DEAD:
                        return blk, j
                    j += 1
            return None
        if flt.literal is not None:
            sid = self._sids.get(flt.literal)
            return None if sid is None else self._find_sid(start, sid)
        names = self._names
        cache = flt.cache
        pred = flt.pred
        while bi < nb:
            blk = blocks[bi]
            bi += 1
            if not blk.live:
                continue
            subj = blk.subj
            j = start - blk.first if start > blk.first else 0
            n = len(subj)
            while j < n:
                sid = subj[j]
                if sid != DEAD:
                    m = cache.get(sid)
                    if m is None:
                        m = cache[sid] = pred(names[sid])
                    if m:
                        return blk, j
                j += 1
        return None

    def _find_sid(self, start: int, sid: int) -> tuple[Block, int] | None:
        """The first live slot with seq >= start and subject id ``sid`` (searched in C)."""
        st = self._sstate[sid]
        if start < st[1]:
            start = st[1]
        blocks = self._blocks
        bi = max(0, bisect_right(self._firsts, start) - 1)
        while bi < len(blocks):
            blk = blocks[bi]
            bi += 1
            if not blk.live or blk.end <= start:
                continue
            try:
                return blk, blk.subj.index(sid, start - blk.first if start > blk.first else 0)
            except ValueError:
                continue
        return None

    def _find_prev(self, seq: int, sid: int | None) -> int:
        """The last live seq <= ``seq`` (with subject id ``sid`` if given), or 0."""
        bi = bisect_right(self._firsts, seq) - 1
        while bi >= 0:
            blk = self._blocks[bi]
            bi -= 1
            if not blk.live:
                continue
            hi = min(seq - blk.first, len(blk.subj) - 1)
            if hi < 0:
                continue
            if sid is None:
                subj = blk.subj
                for j in range(hi, -1, -1):
                    if subj[j] != DEAD:
                        return blk.first + j
                continue
            # reverse search in C: find the 4-byte pattern on an element boundary
            raw = blk.subj[: hi + 1].tobytes()
            pat = array("I", [sid]).tobytes()
            pos = raw.rfind(pat)
            while pos >= 0 and pos % 4:
                pos = raw.rfind(pat, 0, pos + 3)
            if pos >= 0:
                return blk.first + pos // 4
        return 0

    def _subject_last(self, sid: int) -> int:
        st = self._sstate[sid]
        if not st[3]:
            st[2] = self._find_prev(st[2], sid)
            st[3] = True
        return st[2]

    def _subject_first(self, sid: int) -> int:
        st = self._sstate[sid]
        found = self._find_sid(st[1], sid)
        if found is not None:
            st[1] = found[0].first + found[1]
        return st[1]

    def _matching_sids(self, flt: SubjectFilter | None) -> list[int]:
        names = self._names
        if flt is None or flt.pred is None:
            return list(self._sstate)
        if flt.literal is not None:
            sid = self._sids.get(flt.literal)
            return [sid] if sid is not None and sid in self._sstate else []
        return [sid for sid in self._sstate if flt.matches(sid, names[sid])]

    def _last_match(self, flt: SubjectFilter | None) -> int:
        if self._msgs == 0:
            return 0
        if flt is None or flt.pred is None:
            return self._find_prev(self._last_seq, None)
        best = 0
        for sid in self._matching_sids(flt):
            last = self._subject_last(sid)
            if last > best:
                best = last
        return best

    def _heads(self, flt: SubjectFilter | None) -> list[int]:
        return sorted(self._subject_last(sid) for sid in self._matching_sids(flt))

    def _count_after(self, cursor: int, flt: SubjectFilter | None) -> int:
        """Live messages with seq > cursor matching ``flt``."""
        if self._msgs == 0 or cursor >= self._last_seq:
            return 0
        sids = None
        if flt is not None and flt.pred is not None:
            sids = self._matching_sids(flt)
            if len(sids) == len(self._sstate):
                sids = None  # the filter covers every subject in the stream
        if sids is None:
            if cursor < self._first:
                return self._msgs
            before = 0
            for blk in self._blocks:
                if blk.end <= cursor + 1:
                    before += blk.live
                elif blk.first <= cursor:
                    part = blk.subj[: cursor + 1 - blk.first]
                    before += len(part) - part.count(DEAD)
                    break
                else:
                    break
            return self._msgs - before
        total = 0
        straddle = []
        for sid in sids:
            st = self._sstate[sid]
            if st[1] > cursor:
                total += st[0]
            elif st[2] > cursor:
                straddle.append(sid)
        if straddle:
            bi = max(0, bisect_right(self._firsts, cursor) - 1)
            for blk in self._blocks[bi:]:
                if not blk.live or blk.end <= cursor + 1:
                    continue
                part = blk.subj[cursor + 1 - blk.first :] if blk.first <= cursor else blk.subj
                for sid in straddle:
                    total += part.count(sid)
        return total

    def _seq_at_time(self, ts_ns: int) -> int:
        """First live seq whose timestamp is >= ts_ns (0 if none)."""
        for blk in self._blocks:
            if not blk.live or blk.ts[-1] < ts_ns:
                continue
            j = bisect_right(blk.ts, ts_ns - 1)
            found = self._find_next(blk.first + j, None)
            return found[0].first + found[1] if found else 0
        return 0

    # ---- append --------------------------------------------------------------

    def append(
        self,
        subject: str,
        payload: bytes,
        headers: bytes | dict | None = None,
        *,
        msg_id: str | None = None,
        expected_last_seq: int | None = None,
        expected_last_subject_seq: int | None = None,
        expected_last_msg_id: str | None = None,
        rollup: str | None = None,
        on_durable: OnDurable | None = None,
    ) -> int:
        if (
            headers is None
            and msg_id is None
            and rollup is None
            and expected_last_seq is None
            and expected_last_subject_seq is None
            and expected_last_msg_id is None
            and self._takes_plain()
        ):
            # Nothing for the checks below to look at (the common case: the MQTT
            # outbox, retained messages, sessions).
            return self.append_many(subject, [payload], on_durable=on_durable)[0]
        if self._closed:
            raise E.StoreClosed()
        if headers is not None and headers.__class__ is not bytes:
            headers = encode_headers(headers) if isinstance(headers, dict) else bytes(headers)
        if not headers:
            headers = None
        if payload.__class__ is not bytes:
            payload = bytes(payload)
        sid = self._sids.get(subject)
        if sid is None:
            if not valid_subject(subject, wildcards=False) or (
                self._accept is not None and not self._accept(subject)
            ):
                raise E.InvalidConfig(f"subject {subject!r} is not part of stream {self.name}")
        size = len(subject) + len(payload) + 16
        if headers is not None:
            size += len(headers)
        now_ns = _time_ns()
        if (
            self._checks
            or msg_id
            or rollup
            or expected_last_seq is not None
            or expected_last_msg_id is not None
        ):
            self._check_append(
                len(subject),
                sid,
                size,
                now_ns,
                msg_id,
                expected_last_seq,
                expected_last_subject_seq,
                expected_last_msg_id,
                rollup,
            )
            if self.was_duplicate:
                seq = self._ids[msg_id][0]  # type: ignore[index]
                if on_durable is not None:
                    self._durable(on_durable, seq)
                    self._touch()
                return seq
        else:
            self.was_duplicate = False
            if expected_last_subject_seq is not None:
                cur = self._subject_last(sid) if sid is not None else 0
                if cur != expected_last_subject_seq:
                    raise E.WrongLastSequence(cur)
        store = self._store
        kind = self.storage_kind
        if store._limits[kind] >= 0:
            growth = size
            cfg = self.config
            if cfg.discard == "old" and cfg.max_bytes > 0 and self._bytes + size > cfg.max_bytes:
                growth = cfg.max_bytes - self._bytes
            store._reserve(kind, growth)
        if self._guarded:
            self._check_writable()
        cfg = self.config

        # ---- commit
        seq = self._last_seq + 1
        ts = now_ns if now_ns > self._last_ts else self._last_ts
        if sid is None:
            sid = self._intern(subject)
            st = self._sstate[sid] = [1, seq, seq, True]
        else:
            st = self._sstate[sid]
            st[0] += 1
            st[2] = seq
            st[3] = True
        self._last_seq = seq
        self._last_ts = ts
        self._put(seq, ts, sid, subject, headers, payload, msg_id, size)
        self._msgs += 1
        self._bytes += size
        self._store._used[self.storage_kind] += size
        if self._msgs == 1:
            self._first = seq
        if msg_id:
            ids = self._ids
            ids.pop(msg_id, None)  # keep the map in time order
            ids[msg_id] = (seq, ts)
            self._last_msg_id = msg_id
            # drop at most two expired ids per append: bounded work, bounded map
            for _ in range(2):
                k = next(iter(ids))
                if ids[k][1] >= ts - self._dup_window_ns:
                    break
                del ids[k]
        if on_durable is not None:
            self._durable(on_durable, seq)

        # ---- limits with discard old (and per subject, which drops old even with discard new)
        if cfg.max_msgs_per_subject > 0 and st[0] > cfg.max_msgs_per_subject:
            while st[0] > cfg.max_msgs_per_subject:
                self._remove_seq(self._subject_first(sid))
        if cfg.discard == "old":
            if cfg.max_msgs > 0:
                while self._msgs > cfg.max_msgs:
                    self._remove_seq(self._first)
            if cfg.max_bytes > 0:
                while self._bytes > cfg.max_bytes and self._msgs > 1:
                    self._remove_seq(self._first)
        if self._max_age_ns:
            self._arm_expiry(ts)
        if rollup == "sub":
            self._purge_filtered(SubjectFilter([subject]), seq, None)
        elif rollup == "all":
            self._purge_prefix(seq)

        # ---- consumers
        if self._consumers:
            interested = self._interest.get(sid)
            if interested is None:
                interested = self._interest_for(sid)
            for c in interested:
                c._num_pending += 1
                cb = c.on_available
                if cb is not None:
                    cb()
            if self._retention_interest and not interested:
                self._remove_seq(seq)
        elif self._retention_interest:
            self._remove_seq(seq)
        self._touch()
        return seq

    def append_many(
        self, subject: str, payloads: list[bytes], *, on_durable: OnDurable | None = None
    ) -> list[int]:
        """Append each payload to `subject` (no headers, no options), in order; returns
        their sequences. `on_durable(seq, err)` is called once, with the last seq, when
        all of them are durable (they are written together). As `append` for each,
        with the subject checked once; a stream with limits or consumers takes
        `append` one by one. All or none: if an append fails, the ones this call made
        are removed again and the error is raised."""
        if not payloads:
            return []
        seqs: list[int] = []
        try:
            if self._takes_plain():
                self._append_many_plain(subject, payloads, seqs)
            else:
                for payload in payloads:
                    seqs.append(self.append(subject, payload))
        except E.StoreError:
            for seq in seqs:  # no caller will ever know these seqs: take them back
                self._remove_seq(seq)
            if seqs:
                self._touch()
            raise
        if on_durable is not None:
            # One registration covers them all: nothing is flushed between the appends
            # of one call, so every record is in the same write (and fsync) as the last.
            self._durable(on_durable, seqs[-1])
            self._touch()
        return seqs

    def _takes_plain(self) -> bool:
        """No policy, limit, consumer or store-wide quota for an append to consult."""
        return self._plain and not self._consumers and self._store._limits[self.storage_kind] < 0

    def _append_many_plain(self, subject: str, payloads: list[bytes], seqs: list[int]) -> None:
        """The commit step of `append`, for several messages on one subject: the
        per-subject state and the counters are brought up to date once, after the loop
        (nothing in between reads them). Each seq goes into `seqs` as soon as its record
        is in."""
        if self._closed:
            raise E.StoreClosed()
        sid = self._sids.get(subject)
        if sid is None:
            if not valid_subject(subject, wildcards=False) or (
                self._accept is not None and not self._accept(subject)
            ):
                raise E.InvalidConfig(f"subject {subject!r} is not part of stream {self.name}")
            sid = self._intern(subject)
            st = self._sstate[sid] = [0, self._last_seq + 1, 0, True]
        else:
            st = self._sstate[sid]
        self.was_duplicate = False
        put = self._put
        guarded = self._guarded
        overhead = len(subject) + 16
        first = seq = self._last_seq + 1
        total = 0
        try:
            for payload in payloads:
                if payload.__class__ is not bytes:
                    payload = bytes(payload)
                if guarded:
                    self._check_writable()  # may roll to a new segment (reads _last_seq)
                now_ns = _time_ns()
                ts = now_ns if now_ns > self._last_ts else self._last_ts
                size = overhead + len(payload)
                put(seq, ts, sid, subject, None, payload, None, size)
                seqs.append(seq)
                self._last_seq = seq
                self._last_ts = ts
                total += size
                seq += 1
        finally:
            n = seq - first
            if n:
                st[0] += n
                st[2] = seq - 1
                st[3] = True
                if not self._msgs:
                    self._first = first
                self._msgs += n
                self._bytes += total
                self._store._used[self.storage_kind] += total
                self._touch()
            elif not st[0]:
                del self._sstate[sid]  # a new subject, and nothing was appended
                self._forget(sid)

    def _check_append(
        self,
        subject_len,
        sid,
        size,
        now_ns,
        msg_id,
        expected_last_seq,
        expected_last_subject_seq,
        expected_last_msg_id,
        rollup,
    ) -> None:
        """Expectations, duplicates and discard-new limits, in nats-server's order."""
        cfg = self.config
        self.was_duplicate = False
        if cfg.sealed:
            raise E.StreamSealed()
        if expected_last_subject_seq is not None:
            cur = self._subject_last(sid) if sid is not None else 0
            if cur != expected_last_subject_seq:
                raise E.WrongLastSequence(cur)
        if expected_last_seq is not None and expected_last_seq != self._last_seq:
            raise E.WrongLastSequence(self._last_seq)
        if msg_id:
            hit = self._ids.get(msg_id)
            if hit is not None and hit[1] >= now_ns - self._dup_window_ns:
                self.was_duplicate = True
                return
        if expected_last_msg_id is not None and expected_last_msg_id != (self._last_msg_id or ""):
            raise E.WrongLastMsgId(self._last_msg_id or "")
        if rollup:
            if not cfg.allow_rollup_hdrs or cfg.deny_purge:
                raise E.RollupError("rollup not permitted")
            if rollup not in ("sub", "all"):
                raise E.RollupError(f'rollup value invalid: "{rollup}"')
        if cfg.max_msg_size > 0 and size - 16 - subject_len > cfg.max_msg_size:
            raise E.MsgSizeExceeded()
        if cfg.discard == "new" and not rollup:
            if cfg.max_msgs > 0 and self._msgs >= cfg.max_msgs:
                raise E.LimitExceeded("maximum messages exceeded")
            if cfg.max_bytes > 0 and self._bytes + size > cfg.max_bytes:
                raise E.LimitExceeded("maximum bytes exceeded")
            if (
                cfg.discard_new_per_subject
                and cfg.max_msgs_per_subject > 0
                and sid is not None
                and self._sstate[sid][0] >= cfg.max_msgs_per_subject
            ):
                raise E.LimitExceeded("maximum messages per subject exceeded")

    def _interest_for(self, sid: int) -> tuple[ConsumerImpl, ...]:
        if len(self._interest) > _CACHE_TRIM:
            self._interest.clear()
        name = self._names[sid]
        t = tuple(c for c in self._consumers.values() if c.flt.matches(sid, name))
        self._interest[sid] = t
        return t

    # ---- removal -------------------------------------------------------------

    def _remove_seq(self, seq: int) -> bool:
        loc = self._locate(seq)
        if loc is None or loc[0].subj[loc[1]] == DEAD:
            return False
        self._remove_at(loc[0], loc[1], seq)
        return True

    def _remove_at(self, blk: Block, i: int, seq: int, advance: bool = True) -> None:
        """Kill one live slot. `advance=False`: the caller moves `_first` itself."""
        sid = blk.subj[i]
        size = blk.size[i]
        blk.subj[i] = DEAD
        blk.size[i] = 0
        blk.live -= 1
        self._msgs -= 1
        self._bytes -= size
        self._store._used[self.storage_kind] -= size
        interested = None
        if self._consumers:
            interested = self._interest.get(sid)
            if interested is None:
                interested = self._interest_for(sid)
        st = self._sstate[sid]
        st[0] -= 1
        if st[0] == 0:
            del self._sstate[sid]
            self._forget(sid)
        else:
            if st[1] == seq:
                st[1] = seq + 1
            if st[2] == seq:
                st[2] = seq - 1
                st[3] = False
        self._slot_removed(blk, i, seq)
        if interested:
            for c in interested:
                c._removed(seq)
        if advance and seq == self._first:
            self._advance_first()
        if blk.live == 0:
            self._block_emptied(blk)

    def _remove_run(self, a: int, b: int) -> int:
        """Remove the messages a..b when they are all live, in one block, on one
        subject, with no consumers to tell: as `_remove_at` for each (in ascending
        order, `_first` left to the caller), on slices. Returns how many were removed,
        or -1 when the run does not qualify (the caller goes one by one)."""
        loc = self._locate(a)
        if loc is None:
            return -1
        blk, i = loc
        k = i + (b - a) + 1
        subj = blk.subj
        if k > len(subj):
            return -1
        sid = subj[i]
        count = k - i
        if sid == DEAD or subj[i:k].count(sid) != count:
            return -1
        size = blk.size
        total = sum(size[i:k])
        subj[i:k] = array("I", [DEAD]) * count
        size[i:k] = array("I", bytes(4 * count))
        blk.live -= count
        self._msgs -= count
        self._bytes -= total
        self._store._used[self.storage_kind] -= total
        st = self._sstate[sid]
        st[0] -= count
        if st[0] == 0:
            del self._sstate[sid]
            self._forget(sid)
        else:
            if a <= st[1] <= b:
                st[1] = b + 1
            if a <= st[2] <= b:
                st[2] -= 1
                st[3] = False
        self._slots_removed(blk, i, k, a)
        if blk.live == 0:
            self._block_emptied(blk)
        return count

    def _slots_removed(self, blk: Block, i: int, k: int, first_seq: int) -> None:
        """Slots i..k-1 (seqs from first_seq) died; by default one `_slot_removed` each."""
        for x in range(k - i):
            self._slot_removed(blk, i + x, first_seq + x)

    def _advance_first(self) -> None:
        if self._msgs == 0:
            self._first = self._last_seq + 1
            return
        found = self._find_next_any(self._first)
        self._first = found if found else self._last_seq + 1

    def _find_next_any(self, start: int) -> int:
        blocks = self._blocks
        bi = max(0, bisect_right(self._firsts, start) - 1)
        while bi < len(blocks):
            blk = blocks[bi]
            bi += 1
            if not blk.live:
                continue
            subj = blk.subj
            j = start - blk.first if start > blk.first else 0
            n = len(subj)
            while j < n:
                if subj[j] != DEAD:
                    return blk.first + j
                j += 1
        return 0

    def _purge_prefix(self, upto: int) -> int:
        """Remove every message with seq < upto; whole blocks at a time."""
        upto = min(upto, self._last_seq + 1)  # never move consumers past the stream's end
        if self._msgs == 0 or upto <= self._first:
            if self._msgs == 0:
                self._first = max(self._first, upto)
            for c in self._consumers.values():
                c._purged(upto)
            return 0
        removed = 0
        a = self._first
        for blk in list(self._blocks):
            if blk.first >= upto:
                break
            if not blk.live:
                continue
            if blk.end <= upto:
                # the whole block goes: count subjects in C, then drop the slots in bulk
                n = blk.live
                for sid, cnt in Counter(blk.subj).items():
                    if sid == DEAD:
                        continue
                    st = self._sstate[sid]
                    st[0] -= cnt
                    if st[0] == 0:
                        del self._sstate[sid]
                        self._forget(sid)
                    elif st[1] < blk.end:
                        st[1] = blk.end
                b = sum(blk.size)
                self._msgs -= n
                self._bytes -= b
                self._store._used[self.storage_kind] -= b
                removed += n
                self._bulk_kill(blk)
            else:
                subj = blk.subj
                for j in range(0, upto - blk.first):
                    if subj[j] != DEAD:
                        self._remove_at(blk, j, blk.first + j)
                        removed += 1
        self._range_purged(a, upto - 1)
        if self._msgs == 0:
            self._first = self._last_seq + 1
        else:
            self._first = upto
            if not self._is_live(upto):
                self._advance_first()
        for c in self._consumers.values():
            c._purged(upto)
        return removed

    def _bulk_kill(self, blk: Block) -> None:
        n = len(blk.subj)
        blk.subj = array("I", [DEAD]) * n
        blk.size = array("I", bytes(4 * n))
        blk.live = 0
        self._block_emptied(blk)

    def _purge_filtered(
        self, flt: SubjectFilter | None, below: int | None, keep: int | None
    ) -> int:
        total = self._count_after(0, flt)
        if keep:
            if keep >= total:
                return 0
            budget = total - keep
        else:
            budget = total
        removed = 0
        start = self._first
        while removed < budget:
            found = self._find_next(start, flt)
            if found is None:
                break
            blk, j = found
            seq = blk.first + j
            if below is not None and seq >= below:
                break
            self._remove_at(blk, j, seq)
            removed += 1
            start = seq + 1
        return removed

    # ---- expiry --------------------------------------------------------------

    def _expire(self, now_ns: int | None = None) -> int:
        if not self._max_age_ns or self._msgs == 0:
            return 0
        cutoff = (now_ns or time.time_ns()) - self._max_age_ns
        removed = 0
        while self._msgs:
            loc = self._locate(self._first)
            if loc is None or loc[0].ts[loc[1]] > cutoff:
                break
            self._remove_at(loc[0], loc[1], self._first)
            removed += 1
        if removed:
            self._touch()
        return removed

    def _arm_expiry(self, ts: int) -> None:
        if self._expiry_handle is not None:
            return
        loop = self._store._get_loop()
        if loop is None:
            self._expire()
            return
        first_ts = ts
        loc = self._locate(self._first)
        if loc is not None:
            first_ts = loc[0].ts[loc[1]]
        delay = max(0.0, (first_ts + self._max_age_ns - time.time_ns()) / 1e9) + 0.001
        self._expiry_handle = loop.call_later(delay, self._expiry_tick)

    def _expiry_tick(self) -> None:
        self._expiry_handle = None
        if self._closed:
            return
        self._expire()
        if self._msgs and self._max_age_ns:
            self._arm_expiry(self._last_ts)

    # ---- public read API -----------------------------------------------------

    def get(self, seq: int) -> StoredMsg:
        msg = self._load(seq)
        if msg is None:
            raise E.MsgNotFound()
        return msg

    def last(self, subject: str) -> StoredMsg:
        flt = _as_filter(subject)
        seq = self._last_match(flt)
        msg = self._load(seq) if seq else None
        if msg is None:
            raise E.MsgNotFound()
        return msg

    def next_msg(self, seq: int, subject: str | None = None) -> StoredMsg:
        found = self._find_next(max(seq, 1), _as_filter(subject))
        if found is not None:
            blk, j = found
            msg = self._load_slot(blk, j, blk.first + j)
            if msg is not None:
                return msg
        raise E.MsgNotFound()

    def iter(self, start_seq: int = 0, subject: str | None = None) -> Iterator[StoredMsg]:
        flt = _as_filter(subject)
        seq = max(start_seq, 1)
        while True:
            found = self._find_next(seq, flt)
            if found is None:
                return
            blk, j = found
            seq = blk.first + j
            msg = self._load_slot(blk, j, seq)
            if msg is not None:
                yield msg
            seq += 1

    def state(self) -> StreamState:
        if self._max_age_ns and self._expiry_handle is None:
            self._expire()
        first_ts = 0
        if self._msgs:
            loc = self._locate(self._first)
            if loc is not None:
                first_ts = loc[0].ts[loc[1]]
        used = self._last_seq > 0 or self._msgs > 0
        first = self._first if used else 0
        return StreamState(
            messages=self._msgs,
            bytes=self._bytes,
            first_seq=first,
            first_ts_ns=first_ts,
            last_seq=self._last_seq,
            last_ts_ns=self._last_ts if self._last_seq else 0,
            num_subjects=len(self._sstate),
            num_deleted=(self._last_seq - self._first + 1 - self._msgs) if self._msgs else 0,
            consumer_count=len(self._consumers),
        )

    def subjects(self, filter: str | None = None) -> dict[str, int]:
        flt = _as_filter(filter)
        return {self._names[sid]: self._sstate[sid][0] for sid in self._matching_sids(flt)}

    def info(self, wire: bool = False) -> dict[str, Any]:
        return {
            "config": self.config.to_dict(wire=wire),
            "created": rfc3339(self.created_ns),
            "state": self.state().to_dict(),
        }

    # ---- public write API ----------------------------------------------------

    def _check_deletable(self) -> None:
        if self._closed:
            raise E.StoreClosed()
        if self.config.deny_delete:
            raise E.DeleteNotPermitted()
        if self.config.sealed:
            raise E.StreamSealed()

    def delete(self, seq: int) -> None:
        self._check_deletable()
        if not self._remove_seq(seq):
            raise E.SeqNotFound(seq)
        self._touch()

    def delete_many(self, seqs: list[int]) -> int:
        """Delete each live message among `seqs`; a seq already gone is skipped (no
        error, unlike `delete`). Returns how many were deleted. One call for a batch
        of acknowledged messages."""
        self._check_deletable()
        locate = self._locate
        remove_at = self._remove_at
        deleted = 0
        n = len(seqs)
        i = 0
        while i < n:
            seq = seqs[i]
            i += 1
            if i < n and seqs[i] == seq + 1 and not self._consumers:
                # A run of consecutive seqs (the records of one session's burst, acked
                # in order) goes in one step where it can.
                j = i + 1
                while j < n and seqs[j] == seqs[j - 1] + 1:
                    j += 1
                removed = self._remove_run(seq, seqs[j - 1])
                if removed < 0:  # not one slice: one by one, then past the run
                    removed = 0
                    for one in range(seq, seqs[j - 1] + 1):
                        loc = locate(one)
                        if loc is not None and loc[0].subj[loc[1]] != DEAD:
                            remove_at(loc[0], loc[1], one, False)
                            removed += 1
                deleted += removed
                i = j
                continue
            loc = locate(seq)
            if loc is None or loc[0].subj[loc[1]] == DEAD:
                continue
            # acks mostly come in order, each removing the first message: moving
            # `_first` past the dead ones is done once, after the loop
            remove_at(loc[0], loc[1], seq, False)
            deleted += 1
        if deleted:
            if not self._is_live(self._first):
                self._advance_first()
            self._touch()
        return deleted

    def purge(
        self, subject: str | None = None, seq: int | None = None, keep: int | None = None
    ) -> int:
        if self._closed:
            raise E.StoreClosed()
        if self.config.deny_purge:
            raise E.PurgeNotPermitted()
        if self.config.sealed:
            raise E.StreamSealed()
        if seq is not None and keep:
            raise E.InvalidConfig("sequence and keep can not both be set")
        flt = _as_filter(subject)
        if flt is None and not keep:
            upto = seq if seq else self._last_seq + 1
            n = self._purge_prefix(upto)
            if not seq:
                self._first = self._last_seq + 1
        elif flt is None:
            n = 0
            if self._msgs > keep:
                cut = self._nth_from_end(keep)
                n = self._purge_prefix(cut)
        else:
            n = self._purge_filtered(flt, seq, keep)
        self._touch()
        return n

    def compact(self) -> int:
        """Reclaim space held by deleted messages now (the file store rewrites segments)."""
        return 0

    def _nth_from_end(self, keep: int) -> int:
        """The seq of the keep-th newest live message (everything below it goes)."""
        seen = 0
        for blk in reversed(self._blocks):
            if not blk.live:
                continue
            if seen + blk.live < keep:
                seen += blk.live
                continue
            subj = blk.subj
            for j in range(len(subj) - 1, -1, -1):
                if subj[j] != DEAD:
                    seen += 1
                    if seen == keep:
                        return blk.first + j
        return self._first

    # ---- consumers -----------------------------------------------------------

    def add_consumer(self, config: ConsumerConfig) -> ConsumerImpl:
        if self._closed:
            raise E.StoreClosed()
        cfg = config.normalized()
        old = self._consumers.get(cfg.name)  # type: ignore[arg-type]
        if old is not None:
            self._update_consumer(old, cfg)
            return old
        scfg = self.config
        if scfg.max_consumers > 0 and len(self._consumers) >= scfg.max_consumers:
            raise E.MaxConsumers()
        for f in cfg.filters():
            if not any(filters_overlap(f, s) for s in scfg.subjects):
                raise E.ConsumerCreateError(
                    "consumer filter subject is not a valid subset of the interest subjects"
                )
        if self._retention_wq:
            self._check_wq_consumer(cfg, None)
        c = ConsumerImpl(self, cfg, secrets.randbits(62), time.time_ns())
        c._init_position()
        self._consumers[c.name] = c
        self._interest.clear()
        self._consumer_created(c, False)
        return c

    def _check_wq_consumer(self, cfg: ConsumerConfig, skip: ConsumerImpl | None) -> None:
        if cfg.ack_policy != "explicit":
            raise E.WQRequiresExplicitAck()
        if cfg.deliver_policy != "all":
            raise E.ConsumerCreateError("consumer must be deliver all on workqueue stream")
        mine = cfg.filters()
        for other in self._consumers.values():
            if other is skip:
                continue
            theirs = other.config.filters()
            if not mine or not theirs:
                raise E.WQMultipleUnfiltered()
            if any(filters_overlap(a, b) for a in mine for b in theirs):
                raise E.WQConsumerNotUnique()

    _IMMUTABLE = (
        "deliver_policy",
        "opt_start_seq",
        "opt_start_time",
        "ack_policy",
        "replay_policy",
    )

    def _update_consumer(self, c: ConsumerImpl, cfg: ConsumerConfig) -> None:
        old = c.config
        for attr in self._IMMUTABLE:
            if getattr(old, attr) != getattr(cfg, attr):
                raise E.ConsumerCreateError(f"{attr.replace('_', ' ')} can not be updated")
        if (old.durable_name or None) != (cfg.durable_name or None):
            raise E.ConsumerCreateError("consumer durable name can not be updated")
        if cfg == old:
            return
        if self._retention_wq:
            self._check_wq_consumer(cfg, c)
        refilter = old.filters() != cfg.filters()
        c._set_config(cfg)
        if refilter:
            self._interest.clear()
            c._recount()
        self._consumer_created(c, True)

    def consumer(self, name: str) -> ConsumerImpl:
        c = self._consumers.get(name)
        if c is None:
            raise E.ConsumerNotFound()
        return c

    def consumers(self) -> list[ConsumerImpl]:
        return list(self._consumers.values())

    def delete_consumer(self, name: str) -> None:
        c = self._consumers.pop(name, None)
        if c is None:
            raise E.ConsumerNotFound()
        self._interest.clear()
        self._consumer_deleted(c)
        if self._retention_interest:
            self._interest_sweep()
        self._touch()

    def _acked(self, seqs) -> None:
        if self._retention_wq:
            for seq in seqs:
                self._remove_seq(seq)
        elif self._retention_interest:
            for seq in seqs:
                self._check_interest(seq)

    def _check_interest(self, seq: int) -> None:
        loc = self._locate(seq)
        if loc is None:
            return
        blk, i = loc
        sid = blk.subj[i]
        if sid == DEAD:
            return
        interested = self._interest.get(sid)
        if interested is None:
            interested = self._interest_for(sid)
        for c in interested:
            if c._needs(seq):
                return
        self._remove_at(blk, i, seq)

    def _interest_sweep(self) -> None:
        """Interest retention after a consumer went away: drop what nobody needs now."""
        seq = self._first
        while True:
            found = self._find_next(seq, None)
            if found is None:
                return
            blk, j = found
            seq = blk.first + j
            self._check_interest(seq)
            seq += 1

    # ---- lifecycle -----------------------------------------------------------

    def _update(self, cfg: StreamConfig) -> None:
        old = self.config
        self._apply_config(cfg)
        if cfg.max_msgs_per_subject > 0 and cfg.max_msgs_per_subject != old.max_msgs_per_subject:
            for sid in list(self._sstate):
                st = self._sstate.get(sid)
                while st is not None and st[0] > cfg.max_msgs_per_subject:
                    self._remove_seq(self._subject_first(sid))
                    st = self._sstate.get(sid)
        if cfg.max_msgs > 0:
            while self._msgs > cfg.max_msgs:
                self._remove_seq(self._first)
        if cfg.max_bytes > 0:
            while self._bytes > cfg.max_bytes and self._msgs:
                self._remove_seq(self._first)
        self._expire()
        self._config_changed()
        self._touch()

    def _shutdown(self) -> None:
        self._closed = True
        if self._expiry_handle is not None:
            self._expiry_handle.cancel()
            self._expiry_handle = None

    def __repr__(self) -> str:
        return f"Stream({self.name}, msgs={self._msgs}, last={self._last_seq})"


class MemStream(BaseStream):
    """Bodies live in ``MemBlock.msgs``; nothing survives a restart."""

    BLOCK_SLOTS = 4096

    def _put(self, seq, ts, sid, subject, hdr, payload, msg_id, size):
        blk = self._tail
        if blk is None or len(blk.subj) >= self.BLOCK_SLOTS or blk.end != seq:
            blk = self._add_block(MemBlock(seq))
        blk.subj.append(sid)
        blk.size.append(size)
        blk.ts.append(ts)
        blk.msgs.append(StoredMsg(seq, subject, hdr, payload, ts))  # type: ignore[attr-defined]
        blk.live += 1

    def _load_slot(self, blk, i, seq):
        return blk.msgs[i]

    def _slot_removed(self, blk, i, seq):
        blk.msgs[i] = None

    def _bulk_kill(self, blk):
        blk.msgs = [None] * len(blk.subj)
        super()._bulk_kill(blk)

    def _block_emptied(self, blk):
        if blk is not self._tail:
            self._drop_block(blk)


# =========================================================================== store


class BaseStore:
    """Stream registry, store-wide limits, the loop handle and deferred callbacks."""

    directory: str | None = None

    def __init__(self, *, sync_interval: float, sync_always: bool, max_memory: int, max_file: int):
        self.sync_interval = sync_interval
        self.sync_always = sync_always
        self._limits = {"memory": max_memory, "file": max_file}
        self._used = {"memory": 0, "file": 0}
        self._streams: dict[str, BaseStream] = {}
        self._route: dict[str, BaseStream | None] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._deferred: list = []
        self._defer_scheduled = False
        self._closed = False
        self.recovery: dict[str, Any] = {}
        self.counters: dict[str, int] = {
            "corrupt_records": 0,
            "torn_tails": 0,
            "write_errors": 0,
            "fsyncs": 0,
            "writes": 0,
            "compactions": 0,
            "index_rebuilt": 0,
        }
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None

    # ---- loop and callbacks

    def _get_loop(self) -> asyncio.AbstractEventLoop | None:
        loop = self._loop
        if loop is not None and loop.is_running():
            return loop
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        self._loop = loop
        return loop

    def _defer(self, cb: OnDurable, seq: int, err: BaseException | None = None) -> None:
        self._deferred.append((cb, seq, err))
        if not self._defer_scheduled:
            loop = self._get_loop()
            if loop is None:
                self._run_deferred()
                return
            self._defer_scheduled = True
            loop.call_soon(self._run_deferred)

    def _run_deferred(self) -> None:
        self._defer_scheduled = False
        items = self._deferred
        self._deferred = []
        for cb, seq, err in items:
            _call(cb, seq, err)

    # ---- limits

    def _reserve(self, kind: str, growth: int) -> None:
        limit = self._limits[kind]
        if limit >= 0 and growth > 0 and self._used[kind] + growth > limit:
            raise E.MemoryFull() if kind == "memory" else E.StoreFull()

    # ---- streams

    def _new_stream(self, cfg: StreamConfig, created_ns: int) -> BaseStream:
        raise NotImplementedError

    def add_stream(self, config: StreamConfig) -> BaseStream:
        if self._closed:
            raise E.StoreClosed()
        cfg = config.normalized()
        old = self._streams.get(cfg.name)
        if old is not None:
            if old.config.to_dict() == cfg.to_dict():
                return old
            raise E.StreamNameInUse()
        self._check_overlap(cfg, None)
        st = self._new_stream(cfg, time.time_ns())
        self._streams[cfg.name] = st
        self._route.clear()
        return st

    def update_stream(self, config: StreamConfig) -> BaseStream:
        if self._closed:
            raise E.StoreClosed()
        cfg = config.normalized()
        st = self.stream(cfg.name)
        old = st.config
        if cfg.storage != old.storage:
            raise E.InvalidConfig("stream configuration update can not change storage type")
        if cfg.retention != old.retention:
            raise E.InvalidConfig("stream configuration update can not change retention policy")
        self._check_overlap(cfg, st)
        st._update(cfg)
        self._route.clear()
        return st

    def _check_overlap(self, cfg: StreamConfig, skip: BaseStream | None) -> None:
        for other in self._streams.values():
            if other is skip:
                continue
            for a in cfg.subjects:
                for b in other.config.subjects:
                    if filters_overlap(a, b):
                        raise E.SubjectsOverlap()

    def stream(self, name: str) -> BaseStream:
        st = self._streams.get(name)
        if st is None:
            raise E.StreamNotFound()
        return st

    def streams(self) -> list[BaseStream]:
        return list(self._streams.values())

    def delete_stream(self, name: str) -> None:
        st = self._streams.pop(name, None)
        if st is None:
            raise E.StreamNotFound()
        self._route.clear()
        self._used[st.storage_kind] -= st._bytes
        self._destroy_stream(st)

    def _destroy_stream(self, st: BaseStream) -> None:
        st._shutdown()

    def stream_for_subject(self, subject: str) -> BaseStream | None:
        try:
            return self._route[subject]
        except KeyError:
            pass
        found = None
        for st in self._streams.values():
            if st._accept is None or st._accept(subject):
                found = st
                break
        if len(self._route) > _CACHE_TRIM:
            self._route.clear()
        self._route[subject] = found
        return found

    def usage(self) -> dict[str, int]:
        return {
            "memory": self._used["memory"],
            "storage": self._used["file"],
            "streams": len(self._streams),
            "consumers": sum(len(s._consumers) for s in self._streams.values()),
        }

    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.counters)
        out.update(self.usage())
        out["recovery"] = dict(self.recovery)
        return out

    async def close(self) -> None:
        self.close_sync()

    def close_sync(self) -> None:
        if self._closed:
            return
        self._closed = True
        for st in self._streams.values():
            st._shutdown()
        self._run_deferred()


def _call(cb: OnDurable, seq: int, err: BaseException | None) -> None:
    try:
        cb(seq, err)
    except Exception:
        log.exception("on_durable callback for seq %d raised", seq)


def recovery_report() -> dict:
    """The store's recovery report (``store.recovery``, shown in /jsz), all zero: what
    a memory store always says, and what a file store's recovery counts up from."""
    return {
        "streams": 0,
        "consumers": 0,
        "records": 0,
        "msgs": 0,
        "corrupt_records": 0,
        "torn_tails": 0,
        "bytes_cut": 0,
        "index_rebuilt": 0,
        "damaged_files": 0,
        "time": 0.0,
    }


class MemStore(BaseStore):
    """Every stream in memory (``open_store(None)``), whatever its ``storage`` says."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.recovery = recovery_report()

    def _new_stream(self, cfg, created_ns):
        return MemStream(self, cfg, created_ns)
