"""Removing messages from a stream: one, a run, a prefix, by filter, by age.

Owns ``StreamRemoval``, mixed into ``BaseStream`` (``stream.py``): the public ``delete``,
``delete_many`` and ``purge``, and expiry by ``max_age``. Every removal goes through
``_remove_at`` (or its bulk forms ``_remove_run`` and ``_purge_prefix``), which keeps the
counters, the subject state, the consumers' pending counts and the backend's tombstones
in step.
"""

from __future__ import annotations

import time
from array import array
from collections import Counter

from . import errors as E
from .blocks import DEAD, Block
from .filters import SubjectFilter, _as_filter


class StreamRemoval:
    """The removal paths of ``BaseStream``; see the module docstring."""

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
        if self._ttl_never:  # per-message TTL "never" (ttl.py) outlives max_age
            removed = self._expire_age_skipping_never(cutoff)
        else:
            removed = 0
            while self._msgs:
                loc = self._locate(self._first)
                if loc is None or loc[0].ts[loc[1]] > cutoff:
                    break
                self._age_out(loc[0], loc[1], self._first)  # ttl.py: delete markers
                removed += 1
        if removed:
            self._flush_markers()
            self._touch()
        return removed

    def _arm_expiry(self, ts: int) -> None:
        if self._expiry_handle is not None:
            return
        loop = self._store._get_loop()
        if loop is None:
            self._expire()
            return
        first_ts = self._oldest_expirable_ts() or ts
        delay = max(0.0, (first_ts + self._max_age_ns - time.time_ns()) / 1e9) + 0.001
        self._expiry_handle = loop.call_later(delay, self._expiry_tick)

    def _expiry_tick(self) -> None:
        self._expiry_handle = None
        if self._closed:
            return
        self._expire()
        if self._msgs and self._max_age_ns:
            oldest = self._oldest_expirable_ts()
            if oldest:  # 0: only "never" messages left (ttl.py), nothing to wait for
                self._arm_expiry(oldest)

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

    def skip_to(self, seq: int) -> None:
        """Move the last sequence up to ``seq`` storing nothing (api.py): nats-server's
        ``SkipMsgs``, with which a mirror keeps its origin's sequences. The skipped
        range is one tombstone range, which is what carries the last sequence over a
        restart (recovery takes the highest tombstone as a lower bound)."""
        if self._closed:
            raise E.StoreClosed()
        if seq <= self._last_seq:
            return
        a = self._last_seq + 1
        self._last_seq = seq
        if self._msgs == 0:
            self._first = seq + 1
        self._range_purged(a, seq)
        self._touch()

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
