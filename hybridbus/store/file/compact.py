"""Compaction: rewriting segments that hold mostly deleted messages.

Owns ``FileCompaction``, mixed into ``FileStream`` (``stream.py``), and its executor jobs
``_compact_io`` and ``_unlink_io``. It runs in the executor, one segment at a time, oldest
first, never on the active or the newest sealed segment (see records.py for the rule that
keeps tombstones alive).
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import zlib
from array import array

from ..blocks import DEAD
from ..records import (
    NONE32,
    SEG_HEADER_SIZE,
    del_record,
    segment_header,
    to_ranges,
    valid_record_end,
)
from .disk import _fsync_dir, _pwrite_all, _read_file
from .segment import Seg, _index_body

log = logging.getLogger("hybridbus.store")

COMPACT_DELAY = 0.05


class _CompactPlan:
    __slots__ = ("seg", "unlink", "live", "dels", "snap", "fut", "result")

    def __init__(self, seg, unlink, live, dels, snap):
        self.seg = seg
        self.unlink = unlink
        self.live = live
        self.dels = dels
        self.snap = snap
        self.fut = None
        self.result = None


def _compact_io(seg_path: str, idx_path: str, base: int, plan_live, dels, snap) -> tuple:
    """Executor job: rewrite a segment with its live records (byte for byte) + tombstones."""
    data = _read_file(seg_path)
    out = bytearray(segment_header(base))
    mv = memoryview(data)
    new_offs: dict[int, int] = {}
    corrupt: list[int] = []
    moved: dict[int, int] = {}  # old offset -> new: a MSGS record is copied once
    for j, off in plan_live:
        to = moved.get(off)
        if to is None:
            if corrupt and corrupt[-1] == off:
                continue  # another member of a run found damaged
            end = valid_record_end(data, mv, off, len(data))
            if end < 0:
                corrupt.append(off)
                continue
            moved[off] = to = len(out)
            out += mv[off:end]
        new_offs[j] = to
    mv.release()
    if dels:
        out += del_record(dels)
    tmp = seg_path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        _pwrite_all(fd, out, 0)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.unlink(idx_path)
    except FileNotFoundError:
        pass
    os.replace(tmp, seg_path)
    _fsync_dir(os.path.dirname(seg_path))
    first, subj, size, ts, names, maxseq, mids = snap
    offs = array("I", [NONE32]) * len(subj)
    for j, o in new_offs.items():
        offs[j] = o
    body = _index_body(
        zlib.crc32(out), len(out), base, first, offs, subj, size, ts, names, dels, [], maxseq, mids
    )
    with open(idx_path + ".tmp", "wb") as f:
        f.write(body)
    os.replace(idx_path + ".tmp", idx_path)
    return new_offs, len(out), corrupt


def _unlink_io(seg_path: str, idx_path: str) -> tuple:
    for p in (idx_path, seg_path):
        try:
            os.unlink(p)
        except FileNotFoundError:
            pass
    _fsync_dir(os.path.dirname(seg_path))
    return None, 0, []


class FileCompaction:
    """Segment compaction of ``FileStream``; see the module docstring."""

    def _maybe_compact(self) -> None:
        if self._compact_scheduled or self._compacting is not None or self._closed:
            return
        loop = self._fstore._get_loop()
        if loop is None:
            return
        self._compact_scheduled = True
        loop.call_later(COMPACT_DELAY, self._compact_step)

    def _compact_candidate(self) -> Seg | None:
        blocks = self._blocks
        for k in range(len(blocks) - 2):  # never the active nor the newest sealed segment
            seg: Seg = blocks[k]  # type: ignore[assignment]
            if seg.clean or seg.wfd is not None or seg.num in self._finalizing:
                continue
            body = max(0, seg.written - SEG_HEADER_SIZE)
            if seg.live == 0 or (seg.dead_phys and sum(seg.size) * 2 < body):
                return seg
        return None

    def _plan(self, seg: Seg) -> _CompactPlan:
        subj = seg.subj
        offs = seg.offs
        live = [(j, offs[j]) for j in range(len(subj)) if subj[j] != DEAD and offs[j] != NONE32]
        # A dead member of a MSGS record that stays (records.py) keeps its tombstone.
        kept = {off for _j, off in live}
        dead: list[int] = [
            seg.first + j
            for j in range(len(subj))
            if subj[j] == DEAD and offs[j] != NONE32 and offs[j] in kept
        ]
        for older in self._blocks:
            if older is seg:
                break
            o: Seg = older  # type: ignore[assignment]
            if not o.dead_phys:
                continue
            for j in range(len(o.subj)):
                if o.subj[j] == DEAD and o.offs[j] != NONE32:
                    dead.append(o.first + j)
        dels = to_ranges(dead)
        args = self._index_args(seg)
        snap = (args[1], args[3], args[4], args[5], args[6], args[9], args[10])
        return _CompactPlan(seg, not live and not dels, live, dels, snap)

    def _compact_step(self) -> None:
        self._compact_scheduled = False
        if self._closed or self._compacting is not None:
            return
        seg = self._compact_candidate()
        if seg is None:
            return
        plan = self._plan(seg)
        self._compacting = plan
        if plan.unlink:
            fn, args = _unlink_io, (seg.path, seg.idx_path)
        else:
            fn, args = (
                _compact_io,
                (seg.path, seg.idx_path, seg.base, plan.live, plan.dels, plan.snap),
            )
        if self._fstore._get_loop() is None:
            f: concurrent.futures.Future = concurrent.futures.Future()
            try:
                f.set_result(fn(*args))
            except BaseException as e:
                f.set_exception(e)
            self._compact_done(plan, f)
            return
        plan.fut = self._fstore._submit(fn, args, self._compact_done, plan, self._jobs)

    def compact(self) -> int:
        """Compact every eligible segment now, blocking (tests and tools). Returns the count."""
        n = 0
        while True:
            if self._compacting is not None:
                self._wait_compaction()
            seg = self._compact_candidate()
            if seg is None:
                return n
            plan = self._plan(seg)
            self._compacting = plan
            f: concurrent.futures.Future = concurrent.futures.Future()
            try:
                if plan.unlink:
                    f.set_result(_unlink_io(seg.path, seg.idx_path))
                else:
                    f.set_result(
                        _compact_io(
                            seg.path, seg.idx_path, seg.base, plan.live, plan.dels, plan.snap
                        )
                    )
            except BaseException as e:
                f.set_exception(e)
            self._compact_done(plan, f, again=False)
            if f.exception() is not None:
                return n
            n += 1

    def _wait_compaction(self) -> None:
        plan = self._compacting
        if plan is None or plan.fut is None:
            return
        try:
            plan.fut.result()
        except BaseException:
            pass
        self._compact_done(plan, plan.fut, again=False)

    def _compact_done(self, plan: _CompactPlan, fut, again: bool = True) -> None:
        self._jobs.discard(fut)
        if self._compacting is not plan:
            return
        self._compacting = None
        seg = plan.seg
        exc = fut.exception()
        if exc is not None:
            seg.clean = True  # do not retry in a loop; a restart will try again
            log.error("stream %s: compacting segment %d failed: %s", self.name, seg.num, exc)
            return
        new_offs, new_size, corrupt = fut.result()
        fst = self._fstore
        fst.counters["compactions"] += 1
        fst._close_read_fd(seg)
        if corrupt:
            fst.counters["corrupt_records"] += len(corrupt)
            log.error(
                "stream %s: segment %d: %d unreadable records dropped while compacting",
                self.name,
                seg.num,
                len(corrupt),
            )
        if plan.unlink:
            self._drop_block(seg)
        else:
            offs = array("I", [NONE32]) * len(seg.offs)
            for j, o in new_offs.items():
                offs[j] = o
            seg.offs = offs
            seg.written = seg.size_logical = new_size
            seg.dels = list(plan.dels)
            seg.crecs = []
            seg.dead_phys = sum(1 for j in new_offs if seg.subj[j] == DEAD)  # died while we copied
            seg.clean = seg.dead_phys == 0
            for j in (j for j, _ in plan.live if j not in new_offs):
                if seg.subj[j] != DEAD:
                    self._remove_at(seg, j, seg.first + j)
        # tombstone-only segments may hold less now that an older segment shrank
        for blk in self._blocks:
            s: Seg = blk  # type: ignore[assignment]
            if s.num > seg.num and s.live == 0 and s is not self._tail:
                s.clean = False
        if again:
            self._maybe_compact()
