"""Finding slots in a stream's blocks: by sequence, by subject, by time; counts.

Owns ``StreamSearch``, mixed into ``BaseStream`` (``stream.py``), whose state it reads:
``_blocks``/``_firsts`` (the blocks and their first sequences), ``_sstate``, ``_sids`` and
``_names`` (see ``stream.py``). Nothing here changes a stream.
"""

from __future__ import annotations

from array import array
from bisect import bisect_right

from .api import StoredMsg
from .blocks import DEAD, Block
from .filters import SubjectFilter


class StreamSearch:
    """Slot lookups and searches of ``BaseStream``; see the module docstring."""

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
