"""The stream: config, subject state, the backend hooks, reads and consumers.

Owns ``BaseStream``, the logic both stores share; they differ only in where message
bodies live (``memstore.MemStream``, ``file.stream.FileStream``). Appends (``append.py``),
removals (``removal.py``) and searches (``search.py``) are mixed in from their modules.

Subjects are interned to ids. ``_sstate[sid] = [count, first, last, last_exact]``:
``first`` is a lower bound (advancing it eagerly would cost a search per delete; it is
resolved when needed), ``last`` is exact unless ``last_exact`` is False, in which case it is
an upper bound resolved by a backward search. Ids are never reused, so caches keyed by id
never go stale; they are only trimmed.

Retention: on an interest stream a message goes once no consumer whose filter matches it
still needs it; on a work-queue stream it goes on ack or term. These removals are ordinary
deletes (and tombstones).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from . import errors as E
from .api import ConsumerConfig, OnDurable, StoredMsg, StreamConfig, StreamState, rfc3339
from .append import StreamAppend
from .blocks import DEAD, Block
from .consumer import ConsumerImpl
from .filters import _as_filter
from .match import compile_filters, filters_overlap
from .removal import StreamRemoval
from .search import StreamSearch
from .ttl import StreamTTL

if TYPE_CHECKING:
    from .base import BaseStore


class BaseStream(StreamAppend, StreamRemoval, StreamSearch, StreamTTL):
    """Everything about a stream except where message bodies live."""

    storage_kind = "memory"
    # What a message counts in ``bytes`` (and ``max_bytes``, the store quotas): subject
    # + headers + payload + these (nats-server's memStoreMsgSize: 16 for seq and time).
    _msg_overhead = 16
    _hdr_overhead = 0  # extra for a message with headers
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
        self._init_ttl()
        self._apply_config(config)
        if config.first_seq and config.first_seq > 1:
            self._last_seq = config.first_seq - 1
            self._first = config.first_seq

    def _apply_config(self, config: StreamConfig) -> None:
        self.config = config
        self._own = compile_filters(config.subjects)
        # A stream fed by a mirror or sources stores its origins' subjects as well, and
        # one with a subject_transform stores the transformed subjects (nats-server
        # checks a publish against the stream's subjects before it transforms it).
        extra = config.extra
        fed = bool(extra.get("mirror") or extra.get("sources") or extra.get("subject_transform"))
        self._accept = None if fed else self._own
        # appends take a slower, fully checked path only when a limit or policy needs it
        self._checks = config.sealed or config.max_msg_size > 0 or config.discard == "new"
        self._retention_interest = config.retention == "interest"
        self._retention_wq = config.retention == "workqueue"
        self._dup_window_ns = int(config.duplicate_window * 1e9)
        self._max_age_ns = int(config.max_age * 1e9)
        self._ttl_on = config.allow_msg_ttl  # honour Nats-TTL headers (ttl.py)
        self._sdm_ns = int((config.subject_delete_marker_ttl or 0) * 1e9)  # markers (ttl.py)
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

    def _load_slots(self, blk: Block, i: int, k: int) -> list[StoredMsg | None]:
        """The messages of slots ``i..k-1`` of ``blk`` (None for a dead or unreadable
        one): a consumer's run of new messages (the file store reads it at once)."""
        subj, first = blk.subj, blk.first
        return [
            None if subj[x] == DEAD else self._load_slot(blk, x, first + x) for x in range(i, k)
        ]

    def _slot_removed(self, blk: Block, i: int, seq: int) -> None:
        """A live slot died (tombstone it)."""

    def _block_emptied(self, blk: Block) -> None:
        """The last live slot of a block died."""

    def _range_purged(self, a: int, b: int) -> None:
        """Whole-prefix removal of a..b (one tombstone range)."""

    def _durable(self, cb: OnDurable, seq: int) -> None:
        self._store._defer(cb, seq)

    def when_durable(self, cb: OnDurable) -> None:
        """A barrier: ``cb(last_seq, err)`` runs once every append, delete and purge made
        on this stream so far is durable under the sync policy (deletes go out in the
        same batch as the appends before them). For an answer that must not precede a
        delete, such as MQTT's PUBCOMP after the QoS 2 dedup record is removed."""
        self._durable(cb, self._last_seq)
        self._touch()

    def _touch(self) -> None:
        """Called after each write-side operation (the file store schedules a flush)."""

    def write_now(self) -> None:
        """Write what is pending now, not at the turn the store scheduled for it (the
        file store's group commit): under the interval policy the ``on_durable``
        callbacks of what was written run before this returns. For deferred work that
        answers in the same turn (the PubAcks of a read's publishes). Call it outside
        ``Server.route`` only: the callbacks may send. A memory stream's callbacks keep
        their turn."""

    def durable_pending(self) -> bool:
        """Whether an ``on_durable`` callback registered earlier has not run yet (an
        answer sent from a later one at once would overtake it). True when unknown."""
        return True

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

    # ---- public read API -----------------------------------------------------

    def get(self, seq: int) -> StoredMsg:
        msg = self._load(seq)
        if msg is None:
            raise E.MsgNotFound()
        return msg

    def last(self, subject: str) -> StoredMsg:
        if subject and "*" not in subject and ">" not in subject:
            # A literal subject (a KV get): its per-subject state, which _last_match
            # would reach through a filter compiled for this one call.
            sid = self._sids.get(subject)
            ok = sid is not None and self._msgs and sid in self._sstate
            seq = self._subject_last(sid) if ok else 0  # type: ignore[arg-type]
        else:
            seq = self._last_match(_as_filter(subject))
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
        if self._ttl_heap and self._ttl_handle is None:
            self._expire_ttls()  # no loop to run the timer (ttl.py)
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
            consumer_count=self._public_count(),
        )

    def count_after(self, seq: int, subject: str | None = None) -> int:
        """Live messages with a sequence past ``seq`` matching ``subject``."""
        return self._count_after(seq, _as_filter(subject))

    def subjects(self, filter: str | None = None) -> dict[str, int]:
        flt = _as_filter(filter)
        return {self._names[sid]: self._sstate[sid][0] for sid in self._matching_sids(flt)}

    def info(self, wire: bool = False) -> dict[str, Any]:
        return {
            "config": self.config.to_dict(wire=wire),
            "created": rfc3339(self.created_ns),
            "state": self.state().to_dict(),
        }

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
        if (
            scfg.max_consumers > 0
            and not cfg.extra.get("direct")
            and self._public_count() >= scfg.max_consumers
        ):
            raise E.MaxConsumers()
        for f in cfg.filters():
            if self._accept is None:
                break  # any subject (">", or a mirror's or sources' foreign ones)
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
        # A direct consumer (a mirror's cursor, ack none) only reads along: the work
        # queue's rules are for the workers, and the workers' acks remove messages.
        if cfg.extra.get("direct"):
            return
        if cfg.ack_policy != "explicit":
            raise E.WQRequiresExplicitAck()
        if cfg.deliver_policy != "all":
            raise E.ConsumerCreateError("consumer must be deliver all on workqueue stream")
        mine = cfg.filters()
        for other in self._consumers.values():
            if other is skip or other.config.extra.get("direct"):
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
        return [c for c in self._consumers.values() if not c.config.extra.get("direct")]

    def _public_count(self) -> int:
        """Consumers but the internal ``direct`` ones (a mirror's cursor, see api.py)."""
        return sum(1 for c in self._consumers.values() if not c.config.extra.get("direct"))

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
        if cfg.retention == "interest" and old.retention != "interest":
            self._interest_sweep()  # what no consumer needs goes now, as on nats-server
        self._expire()
        self._config_changed()
        self._touch()

    def _shutdown(self) -> None:
        self._closed = True
        if self._expiry_handle is not None:
            self._expiry_handle.cancel()
            self._expiry_handle = None
        if self._ttl_handle is not None:
            self._ttl_handle.cancel()
            self._ttl_handle = None

    def __repr__(self) -> str:
        return f"Stream({self.name}, msgs={self._msgs}, last={self._last_seq})"
