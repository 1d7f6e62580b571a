"""The write path of a file stream: records into chunks, group commit, write errors.

Owns ``FileWriter``, mixed into ``FileStream`` (``stream.py``): the ``_put`` and
``_check_writable`` hooks of an append, segment rolls, ``_flush`` (one batch per loop
turn), the fsync jobs, the rollback after a failed write or fsync, and sealing a segment.

Write path (one writer per stream, no thread hop per record)
    ``append`` encodes the MSG record on the caller's thread (the event loop), appends it
    to the stream's pending *chunk* (a bytearray per segment), records the offset in the
    segment's slot arrays and puts the message in a small read cache. The first append
    of a batch schedules ``_flush`` with one ``loop.call_soon``; every append until the
    loop gets there joins the batch. ``_flush`` first adds one DEL record for the batch's
    deletes and one COPS record per consumer with state changes, then:

    * interval policy: ``pwrite`` on the loop (a copy into the page cache), then every
      ``on_durable`` of the batch is called. A store-wide timer fsyncs dirty streams in
      the executor at most once per ``sync_interval``.
    * ``sync_always``: one executor job does ``pwrite`` + ``fdatasync`` (and a directory
      fsync after a new segment); its completion calls the batch's ``on_durable`` on the
      loop. While it runs the next batch accumulates, so a stream has at most one write
      in flight and every fsync covers everything queued before it (group commit).

    Without a running loop the flush happens inline before ``append`` returns.

Segments
    A segment is rolled when it reaches ``segment_size`` at the next append (before the
    message is committed, so a failure to create the file leaves the stream untouched).
    The new segment starts with its header and a CSNAP of every persisted consumer. The
    old one is *finalized* once its last bytes are written: fsync, close the write fd,
    write its index file. Reads use the read cache, then ``pread`` with one cached
    read-only fd per segment.

Errors
    A failed write or fsync (ENOSPC, EROFS, EIO) fails every ``on_durable`` of the lost
    bytes with a StoreWriteError, truncates the files back to what was written, removes the
    lost messages from the index (their sequences stay used), re-queues the batch's
    tombstones, asks for fresh consumer snapshots, logs once, and counts
    ``write_errors``. For ``WRITE_RETRY_BACKOFF`` seconds appends raise StoreWriteError
    at once; after that the next append tries again. Nothing else in the server is
    disturbed.
"""

from __future__ import annotations

import concurrent.futures
import errno
import logging
import os
import time
from array import array
from itertools import repeat

from .. import errors as E
from ..base import _call
from ..blocks import DEAD
from ..records import (
    NONE32,
    RUN_MAX_BYTES,
    RUN_MAX_MSGS,
    cops_record,
    csnap_record,
    del_record,
    msg_record,
    msgs_record,
    segment_header,
)
from .disk import _fdatasync, _fsync_dir, _pwrite_all
from .segment import Seg, _seg_name, _write_index

log = logging.getLogger("hybridbus.store")

CACHE_MAX = 4096  # recently appended messages kept for consumers that read right behind
CACHE_TRIM_AT = 2 * CACHE_MAX
WRITE_RETRY_BACKOFF = 1.0
_time_ns = time.time_ns
_BYTES_ONLY = {bytes}


def _run_cut(sizes: list[int], budget: int) -> int:
    """How many of ``sizes`` fit in ``budget`` bytes, counted in order; at least one."""
    total = 0
    for k, size in enumerate(sizes):
        total += size
        if total > budget:
            return max(k, 1)
    return len(sizes)


def _io_write(items: list, sync_fds: list[int], dir_path: str | None) -> None:
    """Executor job: write chunks at their offsets, then fsync (group commit)."""
    for fd, data, pos in items:
        _pwrite_all(fd, data, pos)
    for fd in sync_fds:
        _fdatasync(fd)
    if dir_path:
        _fsync_dir(dir_path)


def _io_fsync(fds: list[int]) -> int:
    done = 0
    for fd in fds:
        try:
            _fdatasync(fd)
            done += 1
        except OSError as e:  # a fd closed by a roll meanwhile is harmless
            if e.errno != errno.EBADF:
                log.error("fsync failed: %s", e)
    return done


def _seal_io(fd: int, seg: Seg, args: tuple) -> None:
    """Executor job (also run inline): seal a segment, i.e. fsync it and write its index."""
    _fdatasync(fd)  # already synced under sync_always: then it is nearly free
    _write_index(seg.idx_path, seg.path, seg.written, args)


class _Job:
    """One write batch: chunks per segment and the callbacks they satisfy."""

    __slots__ = ("chunks", "cbs", "upto", "dels")

    def __init__(self, chunks, cbs, upto, dels):
        self.chunks = chunks
        self.cbs = cbs
        self.upto = upto
        self.dels = dels


class _SyncJob:
    """One fsync (sync_always): the offsets it covers and the callbacks it releases."""

    __slots__ = ("marks", "cbs", "dels", "dir_path", "fut")

    def __init__(self, marks, cbs, dels, dir_path):
        self.marks = marks
        self.cbs = cbs
        self.dels = dels
        self.dir_path = dir_path
        self.fut: concurrent.futures.Future | None = None


class FileWriter:
    """The write path of ``FileStream``; see the module docstring."""

    # ---- segment files ------------------------------------------------------

    def _create_seg(self, num: int, base: int) -> Seg:
        seg = Seg(num, os.path.join(self.path, _seg_name(num)), base)
        seg.wfd = os.open(seg.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        return seg

    def _roll(self, base: int) -> Seg:
        """Start a new segment (the old one is finalized once its bytes are written)."""
        old = self._tail
        self._emit_meta()
        num = old.num + 1 if old is not None else 1  # type: ignore[union-attr]
        try:
            seg = self._create_seg(num, base)
        except OSError as e:
            self._note_write_error(e)
            raise E.StoreWriteError(self._fail_err.description, e.errno) from e  # type: ignore[union-attr]
        self._add_block(seg)
        self._emit(segment_header(base), None)
        self._dir_dirty = True
        self._want_roll = False
        for c in self._consumers.values():
            if c._ops is not None:
                c._ops = []
                self._emit(csnap_record(c.cid, c.snapshot()), True)
        self._dirty.clear()
        return seg

    def _new_chunk(self, seg: Seg) -> bytearray:
        b = bytearray()
        self._wq.append((seg, b))
        self._cur = b
        self._cur_seg = seg
        return b

    def _emit(self, rec: bytes, crec: bool | None) -> None:
        """Queue a non-MSG record (header, DEL, CSNAP, COPS) on the active segment."""
        seg: Seg = self._tail  # type: ignore[assignment]
        cur = self._cur if self._cur_seg is seg else self._new_chunk(seg)
        if crec:
            seg.crecs.append(seg.size_logical)
        cur += rec  # type: ignore[operator]
        seg.size_logical += len(rec)

    def _emit_meta(self, closing: bool = False) -> None:
        if self._tail is None:
            return
        if self._dels:
            self._emit(del_record(self._dels), False)
            seg: Seg = self._tail  # type: ignore[assignment]
            seg.dels.extend(self._dels)
            self._sent_dels.extend(self._dels)
            self._dels = []
        if self._resnap:
            self._resnap = False
            for c in self._consumers.values():
                if c._ops is not None:
                    c._ops = []
                    self._emit(csnap_record(c.cid, c.snapshot()), True)
            self._dirty.clear()
        elif self._dirty or closing:
            for c in self._consumers.values() if closing else self._dirty.values():
                if c._ops:
                    self._emit(cops_record(c.cid, c._ops), True)
                    c._ops = []
            self._dirty.clear()

    # ---- hot path -----------------------------------------------------------

    def _check_writable(self) -> None:
        if self._fail_until:
            if time.monotonic() < self._fail_until:
                err = self._fail_err
                raise E.StoreWriteError(err.description, err.errno)  # type: ignore[union-attr]
            self._fail_until = 0.0
        tail: Seg = self._tail  # type: ignore[assignment]
        if tail.wfd is None:
            try:  # the directory was not writable at start-up; it may be now
                tail.wfd = os.open(tail.path, os.O_RDWR)
            except OSError as e:
                self._note_write_error(e)
                raise E.StoreWriteError(self._fail_err.description, e.errno) from e  # type: ignore[union-attr]
        if tail.size_logical >= self._seg_limit:
            self._roll(self._last_seq + 1)

    def _put(self, seq, ts, sid, subject, hdr, payload, msg_id, size):
        seg: Seg = self._tail  # type: ignore[assignment]
        if seg.first + len(seg.subj) != seq:
            self._pad(seg, seq)
        rec = msg_record(seq, ts, subject, hdr, payload, msg_id)
        cur = self._cur
        if self._cur_seg is not seg:
            cur = self._new_chunk(seg)
        off = seg.size_logical
        cur += rec  # type: ignore[operator]
        seg.size_logical = off + len(rec)
        seg.offs.append(off)
        seg.subj.append(sid)
        seg.size.append(size)
        seg.ts.append(ts)
        seg.live += 1
        if msg_id:
            seg.mids += (seq, ts, msg_id)
        cache = self._cache
        cache[seq] = (subject, hdr, payload, ts)
        if len(cache) > self._cache_trim_at:
            self._trim_cache()

    def _put_plain_run(self, subject: str, sid: int, payloads: list, overhead: int, seqs: list):
        """``_check_writable`` + ``_put`` for each payload of a run on one subject, no
        headers (``StreamAppend._append_many_plain``), written as MSGS records (records.py:
        one frame per ``RUN_MAX_MSGS`` messages or about ``RUN_MAX_BYTES`` of payload,
        all with one timestamp); a run of one is a MSG record. The slots, sizes and
        cache entries are those of ``_put``, added per record rather than per message.
        ``_last_seq``, ``_last_ts`` and ``seqs`` follow every record, so a failed roll
        keeps what was put. Returns the bytes counted."""
        # hot path: every message of a js_publish read goes through here; the loop is
        # per record, the work per message is in C (array, dict and list builtins).
        if set(map(type, payloads)) != _BYTES_ONLY:
            payloads = [p if p.__class__ is bytes else bytes(p) for p in payloads]
        cache = self._cache
        total = 0
        i, n = 0, len(payloads)
        while i < n:
            self._check_writable()  # may roll to a new segment
            seg: Seg = self._tail  # type: ignore[assignment]
            seq = self._last_seq + 1
            if seg.first + len(seg.subj) != seq:
                self._pad(seg, seq)
            cur = self._cur if self._cur_seg is seg else self._new_chunk(seg)
            j = min(n, i + RUN_MAX_MSGS)
            run = payloads[i:j]
            sizes = [overhead + ln for ln in map(len, run)]
            nbytes = sum(sizes)
            # the segment rolls where single records would roll it, give or take one
            room = min(RUN_MAX_BYTES, self._seg_limit - seg.size_logical)
            if nbytes > room and j - i > 1:
                j = i + _run_cut(sizes, room)
                run = payloads[i:j]
                del sizes[j - i :]
                nbytes = sum(sizes)
            k = j - i
            now_ns = _time_ns()
            last_ts = self._last_ts
            ts = now_ns if now_ns > last_ts else last_ts
            if k == 1:
                rec = msg_record(seq, ts, subject, None, run[0])
            else:
                rec = msgs_record(seq, ts, subject, run)
            off = seg.size_logical
            cur += rec
            seg.size_logical = off + len(rec)
            seg.offs.extend(array("I", (off,)) * k)  # every member points at the record
            seg.subj.extend(array("I", (sid,)) * k)
            seg.size.extend(array("I", sizes))
            seg.ts.extend(array("q", (ts,)) * k)
            seg.live += k
            upto = seq + k
            entries = zip(repeat(subject), repeat(None), run, repeat(ts))  # as _put's
            cache.update(zip(range(seq, upto), entries, strict=True))
            seqs.extend(range(seq, upto))
            self._last_seq = upto - 1
            self._last_ts = ts
            total += nbytes
            i = j
        if len(cache) > self._cache_trim_at:
            self._trim_cache()
        return total

    def _pad(self, seg: Seg, seq: int) -> None:
        if not seg.subj:
            seg.first = seq
            self._firsts[-1] = seq
            return
        n = seq - (seg.first + len(seg.subj))
        seg.offs.extend(array("I", [NONE32]) * n)
        seg.subj.extend(array("I", [DEAD]) * n)
        seg.size.extend(array("I", bytes(4 * n)))
        seg.ts.extend(array("q", [seg.ts[-1]]) * n)

    def _trim_cache(self) -> None:
        # Rebuild rather than pop from the front: deleting a dict's oldest keys one by one
        # leaves tombstones that every next(iter()) walks again. Unwritten entries stay.
        cutoff = min(self._written_seq, self._last_seq - CACHE_MAX)
        self._cache = cache = {k: v for k, v in self._cache.items() if k > cutoff}
        # Unwritten entries cannot go, and within one long synchronous burst (a fan-out
        # to many sessions) nothing gets written: the next rebuild waits until the cache
        # has doubled, so a burst costs amortised O(1) per append, not O(n).
        self._cache_trim_at = max(CACHE_TRIM_AT, 2 * len(cache))

    def _durable(self, cb, seq) -> None:
        self._wcbs.append(cb)
        self._wcbs.append(seq)

    def _touch(self) -> None:
        if self._flush_scheduled or self._closed:
            return
        loop = self._store._get_loop()
        if loop is None:
            self._flush(sync=True)
            return
        self._flush_scheduled = True
        self._flush_handle = loop.call_soon(self._flush)

    def write_now(self) -> None:
        """BaseStream.write_now: the flush ``_touch`` scheduled, now."""
        if self._flush_scheduled and not self._closed:
            self._flush_handle.cancel()
            self._flush()

    def durable_pending(self) -> bool:
        """BaseStream.durable_pending: callbacks waiting for a write or an fsync."""
        return bool(self._wcbs or self._awaiting or self._syncing is not None)

    # ---- flush / group commit -----------------------------------------------

    def _flush(self, sync: bool = False, closing: bool = False) -> None:
        """Write the pending batch; see the module docstring for the two policies."""
        self._flush_scheduled = False
        if (self._closed and not closing) or self._tail is None:
            return
        if not closing and (self._want_roll or self._tail.size_logical >= self._seg_limit):  # type: ignore[union-attr]
            try:
                self._roll(self._last_seq + 1)
            except E.StoreWriteError:
                pass
        self._emit_meta(closing)
        fst = self._fstore
        wrote = bool(self._wq)
        if wrote:
            job = _Job(self._wq, self._wcbs, self._last_seq, self._sent_dels)
            self._wq = []
            self._wcbs = []
            self._sent_dels = []
            self._cur = None
            self._cur_seg = None
            try:
                for seg, chunk in job.chunks:
                    _pwrite_all(seg.wfd, chunk, seg.written)  # a copy into the page cache
                    seg.written += len(chunk)
            except OSError as e:
                self._write_failed(job.cbs, job.dels, e)
                return
            self._written_seq = job.upto
            fst.counters["writes"] += 1
            if len(self._cache) > CACHE_TRIM_AT:
                self._trim_cache()
            cbs, dels = job.cbs, job.dels
        else:
            cbs, dels = self._wcbs, []
            self._wcbs = []
        if not fst.sync_always:
            if wrote:
                fst._mark_dirty(self)
                self._finalize_sealed()
            if cbs:
                self._call_cbs(cbs, None)
            return
        # sync_always: a callback waits for an fsync that started after its write
        self._awaiting += cbs
        self._unsynced_dels += dels
        if sync or fst._get_loop() is None:
            self._wait_sync()
            self._sync_now()
        else:
            self._start_sync()

    def _unsynced(self) -> list[Seg]:
        out = []
        for blk in reversed(self._blocks):
            seg: Seg = blk  # type: ignore[assignment]
            if seg.wfd is None:
                break  # sealed and closed: synced long ago
            if seg.written > seg.synced:
                out.append(seg)
        return out

    def _start_sync(self) -> None:
        """Start the one fsync job of this stream (group commit), if none is running."""
        if self._syncing is not None:
            return  # its completion starts the next one
        segs = self._unsynced()
        dir_path = self.path if self._dir_dirty else None
        if not segs and not dir_path:
            self._synced(_SyncJob([], self._take_awaiting(), [], None), counted=False)
            return
        self._dir_dirty = False
        job = _SyncJob([(s, s.written) for s in segs], self._take_awaiting(), [], dir_path)
        job.dels, self._unsynced_dels = self._unsynced_dels, []
        self._syncing = job
        job.fut = self._fstore._submit(
            _io_write, ([], [s.wfd for s in segs], dir_path), self._sync_done, job, self._jobs
        )

    def _take_awaiting(self) -> list:
        cbs, self._awaiting = self._awaiting, []
        return cbs

    def _sync_now(self) -> None:
        """The same, inline (no loop, or closing)."""
        segs = self._unsynced()
        dir_path = self.path if self._dir_dirty else None
        self._dir_dirty = False
        job = _SyncJob([(s, s.written) for s in segs], self._take_awaiting(), [], dir_path)
        job.dels, self._unsynced_dels = self._unsynced_dels, []
        if segs or dir_path:
            try:
                _io_write([], [s.wfd for s in segs], dir_path)
            except OSError as e:
                self._sync_failed(job, e)
                return
        self._synced(job, counted=bool(segs))

    def _sync_done(self, job: _SyncJob, fut: concurrent.futures.Future) -> None:
        self._jobs.discard(fut)
        if self._syncing is not job:
            return
        self._syncing = None
        exc = fut.exception()
        if exc is not None:
            self._sync_failed(job, exc)
            return
        self._synced(job)
        if self._awaiting and not self._closed:
            self._start_sync()

    def _synced(self, job: _SyncJob, counted: bool = True) -> None:
        for seg, mark in job.marks:
            if mark > seg.synced:
                seg.synced = mark
        if counted:
            self._fstore.counters["fsyncs"] += 1
        if job.cbs:
            self._call_cbs(job.cbs, None)
        self._finalize_sealed()

    def _wait_sync(self) -> None:
        """Block until the running fsync job ends and apply its result (close path)."""
        job = self._syncing
        if job is None or job.fut is None:
            return
        try:
            job.fut.result()
        except BaseException:
            pass
        self._sync_done(job, job.fut)

    def _sync_failed(self, job: _SyncJob, exc: BaseException) -> None:
        # After a failed fsync nothing written since the last good one can be trusted
        # (the kernel may have dropped those pages): roll all of it back.
        for blk in self._blocks:
            seg: Seg = blk  # type: ignore[assignment]
            if seg.wfd is not None and seg.written > seg.synced:
                seg.written = seg.synced
        cbs = job.cbs + self._take_awaiting()
        dels = job.dels + self._unsynced_dels
        self._unsynced_dels = []
        self._write_failed(cbs, dels, exc)

    def _finalize_sealed(self) -> None:
        """Seal every older segment whose bytes are all written (and synced, if always)."""
        always = self._fstore.sync_always
        for blk in reversed(self._blocks[:-1]):
            seg: Seg = blk  # type: ignore[assignment]
            if seg.wfd is None:
                break  # segments are sealed in order: older ones are done
            if (seg.synced if always else seg.written) == seg.size_logical:
                self._finalize(seg)

    def _call_cbs(self, cbs: list, err) -> None:
        for i in range(0, len(cbs), 2):
            _call(cbs[i], cbs[i + 1], err)

    def _note_write_error(self, exc: BaseException) -> None:
        code = getattr(exc, "errno", None)
        text = getattr(exc, "strerror", None) or str(exc)
        self._fail_err = E.StoreWriteError(f"stream {self.name}: write failed: {text}", code)
        self._fail_until = time.monotonic() + WRITE_RETRY_BACKOFF
        self._fstore.counters["write_errors"] += 1
        log.error(
            "stream %s: write failed (%s); appends are refused for %.1fs, then retried",
            self.name,
            text,
            WRITE_RETRY_BACKOFF,
        )

    def _write_failed(self, cbs: list, dels: list, exc: BaseException) -> None:
        """Everything not in the file (at ``seg.written``) is lost: undo it and tell the callers."""
        self._note_write_error(exc)
        err = self._fail_err
        cbs = cbs + self._wcbs
        segs = [
            b
            for b in self._blocks
            if b.wfd is not None and b.size_logical > b.written  # type: ignore[attr-defined]
        ]
        self._wq = []
        self._wcbs = []
        self._cur = None
        self._cur_seg = None
        self._dels = dels + self._sent_dels + self._dels
        self._sent_dels = []
        self._resnap = True
        for seg in segs:  # type: ignore[assignment]
            if seg.wfd is not None:
                try:
                    os.ftruncate(seg.wfd, seg.written)
                except OSError:
                    pass
            offs = seg.offs
            for j in range(len(offs) - 1, -1, -1):
                off = offs[j]
                if off == NONE32:
                    continue
                if off < seg.written:
                    break
                seq = seg.first + j
                if seg.subj[j] != DEAD:
                    self._remove_at(seg, j, seq)
                    seg.dead_phys -= 1
                offs[j] = NONE32
            seg.size_logical = seg.written
            seg.crecs = [o for o in seg.crecs if o < seg.written]
            if seg.written == 0:
                if seg is self._tail:
                    self._emit(segment_header(seg.base), None)
                else:  # a segment rolled in the lost batch: nothing of it reached the disk
                    if seg.wfd is not None:
                        os.close(seg.wfd)
                        seg.wfd = None
                    try:
                        os.unlink(seg.path)
                    except OSError:
                        pass
                    self._drop_block(seg)
        self._call_cbs(cbs, err)

    # ---- finalize (seal) ----------------------------------------------------

    def _index_args(self, seg: Seg) -> tuple:
        subj = array("I", seg.subj)
        names = {sid: self._names[sid] for sid in set(subj) if sid != DEAD}
        maxseq = max(seg.maxseq, seg.end - 1, max(seg.dels[1::2], default=0))
        return (
            seg.base,
            seg.first,
            array("I", seg.offs),
            subj,
            array("I", seg.size),
            array("q", seg.ts),
            names,
            list(seg.dels),
            list(seg.crecs),
            maxseq,
            list(seg.mids),
        )

    def _finalize(self, seg: Seg) -> None:
        """Seal a segment that is no longer active: fsync, close, write its index."""
        if seg.num in self._finalizing:
            return
        args = (seg.wfd, seg, self._index_args(seg))
        loop = self._fstore._get_loop()
        if loop is None or self._closed:
            try:
                _seal_io(*args)
            except OSError as e:
                log.error("stream %s: sealing segment %d failed: %s", self.name, seg.num, e)
            self._finalize_done(seg, None)
            return
        self._finalizing[seg.num] = self._fstore._submit(
            _seal_io, args, self._finalize_done, seg, self._jobs
        )

    def _finalize_done(self, seg: Seg, fut) -> None:
        if fut is not None:
            self._jobs.discard(fut)
            if self._finalizing.get(seg.num) is not fut:
                return
            exc = fut.exception()
            if exc is not None:
                log.error("stream %s: sealing segment %d failed: %s", self.name, seg.num, exc)
        self._finalizing.pop(seg.num, None)
        if seg.wfd is not None and seg is not self._tail:
            os.close(seg.wfd)
            seg.wfd = None
        self._maybe_compact()
