"""The file-backed store: segment files, group commit, recovery and compaction.

Theory of operation
===================
The bytes are defined in ``records.py`` (read that first). This module decides when they
are written, fsynced, rewritten and read back.

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

Recovery (``FileStore.__init__``)
    Per stream: read ``stream.json``; for each segment read the file, verify it against its
    index (crc32 of the covered bytes) or scan it record by record; cut a torn tail
    (truncate), skip and report corrupt records in the middle, rebuild missing indexes;
    apply every DEL; rebuild subject state; rebuild the duplicate window from the msg ids
    of recent records; replay consumer state from the newest CSNAP onwards. Any damage is
    logged and counted, never fatal: an unreadable stream directory is moved to
    ``streams/.damaged`` and the store starts without it.

Compaction
    Runs in the executor, one segment at a time, oldest first, never on the active or the
    newest sealed segment (see records.py for the rule that keeps tombstones alive).
"""

from __future__ import annotations

import asyncio
import bisect
import concurrent.futures
import errno
import json
import os
import re
import shutil
import threading
import time
import zlib
from array import array
from collections import Counter, OrderedDict
from typing import Any

from . import errors as E
from .api import ConsumerConfig, StoredMsg, StreamConfig
from .records import (
    FORMAT_VERSION,
    NONE32,
    REC_VERSION,
    SEG_HEADER_SIZE,
    T_COPS,
    T_CSNAP,
    T_DEL,
    T_MSG,
    ScanResult,
    add_range,
    cops_record,
    csnap_record,
    decode_body,
    decode_index,
    del_record,
    encode_index,
    msg_record,
    pack_array,
    parse_segment_header,
    read_record_at,
    record_length,
    scan_records,
    segment_header,
    to_ranges,
    unpack_array,
    valid_record_end,
)
from .streams import (
    DEAD,
    BaseStore,
    BaseStream,
    Block,
    ConsumerImpl,
    MemStream,
    _call,
    log,
    recovery_report,
)

DEFAULT_SEGMENT_SIZE = 8 * 1024 * 1024
CACHE_MAX = 4096  # recently appended messages kept for consumers that read right behind
CACHE_TRIM_AT = 2 * CACHE_MAX
WRITE_RETRY_BACKOFF = 1.0
COMPACT_DELAY = 0.05
MAX_READ_FDS = 256
_SEG_RE = re.compile(r"^(\d{10})\.seg$")

_os_fdatasync = getattr(os, "fdatasync", os.fsync)

# Upper bounds (seconds) of the fsync latency histogram that /metrics shows.
FSYNC_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class FsyncTimes:
    """How long fsyncs took. Fsyncs run on executor threads, hence the lock; there is
    one fsync per batch, never one per message, so it costs nothing that matters."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = [0] * (len(FSYNC_BUCKETS) + 1)
        self._sum = 0.0

    def observe(self, seconds: float) -> None:
        i = bisect.bisect_left(FSYNC_BUCKETS, seconds)
        with self._lock:
            self._counts[i] += 1
            self._sum += seconds

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            counts, total = list(self._counts), self._sum
        cumulative, buckets = 0, []
        for upper, n in zip(FSYNC_BUCKETS, counts, strict=False):
            cumulative += n
            buckets.append((upper, cumulative))
        return {"buckets": buckets, "count": sum(counts), "sum": total}


FSYNC_TIMES = FsyncTimes()


def _fdatasync(fd: int) -> None:
    started = time.perf_counter()
    _os_fdatasync(fd)
    FSYNC_TIMES.observe(time.perf_counter() - started)


def _seg_name(num: int) -> str:
    return f"{num:010d}.seg"


def _pwrite_all(fd: int, data, pos: int) -> None:
    mv = memoryview(data)
    try:
        while mv:
            n = os.pwrite(fd, mv, pos)
            pos += n
            mv = mv[n:]
    finally:
        mv.release()


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_json_atomic(path: str, doc: dict) -> None:
    tmp = path + ".tmp"
    data = json.dumps(doc, sort_keys=True, indent=1).encode()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        _pwrite_all(fd, data, 0)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    _fsync_dir(os.path.dirname(path))


def _read_file(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


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


def _index_body(
    data_crc: int,
    seg_size: int,
    base: int,
    first: int,
    offs,
    subj,
    size,
    ts,
    names,
    dels,
    crecs,
    maxseq,
    mids=(),
) -> bytes:
    return encode_index(
        {
            "seg_size": seg_size,
            "seg_crc": data_crc,
            "base": base,
            "first": first,
            "n": len(subj),
            "offs": pack_array(offs),
            "subj": pack_array(subj),
            "size": pack_array(size),
            "ts": pack_array(ts),
            "subjects": names,
            "dels": dels,
            "crecs": crecs,
            "maxseq": maxseq,
            "mids": list(mids),
        }
    )


def _write_index(idx_path: str, seg_path: str, seg_size: int, args: tuple) -> None:
    """Executor job (also used inline): crc the covered bytes, write the index file."""
    with open(seg_path, "rb") as f:
        data = f.read(seg_size)
    if len(data) != seg_size:
        raise OSError(errno.EIO, f"segment {seg_path} is shorter than expected")
    body = _index_body(zlib.crc32(data), seg_size, *args)
    tmp = idx_path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(body)
    os.replace(tmp, idx_path)


class Seg(Block):
    """A segment file and its slots."""

    __slots__ = (
        "num",
        "path",
        "offs",
        "base",
        "size_logical",
        "written",
        "wfd",
        "rfd",
        "dels",
        "crecs",
        "dead_phys",
        "clean",
        "maxseq",
        "mids",
        "synced",
    )

    def __init__(self, num: int, path: str, base: int):
        super().__init__(base)
        self.num = num
        self.path = path
        self.base = base
        self.offs = array("I")
        self.size_logical = 0  # bytes assigned, pending ones included
        self.written = 0  # bytes known to be in the file
        self.synced = 0  # bytes known to be on disk (maintained under sync_always)
        self.wfd: int | None = None
        self.rfd: int | None = None
        self.dels: list[int] = []
        self.crecs: list[int] = []
        self.dead_phys = 0  # dead slots whose record is still in the file
        self.clean = False  # nothing to gain from compacting it again
        self.maxseq = 0
        self.mids: list = []  # [seq, ts, msg_id, ...] of records that carried a msg id

    @property
    def idx_path(self) -> str:
        return self.path[:-4] + ".idx"


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
    for j, off in plan_live:
        end = valid_record_end(data, mv, off, len(data))
        if end < 0:
            corrupt.append(off)
            continue
        new_offs[j] = len(out)
        out += mv[off:end]
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


# =========================================================================== stream


class FileStream(BaseStream):
    storage_kind = "file"
    _guarded = True

    def __init__(self, store: FileStore, config: StreamConfig, created_ns: int, path: str):
        super().__init__(store, config, created_ns)
        self._fstore = store
        self.path = path
        self._seg_limit = store.segment_size
        self._wq: list[tuple[Seg, bytearray]] = []
        self._cur: bytearray | None = None
        self._cur_seg: Seg | None = None
        self._wcbs: list = []
        self._dels: list[int] = []
        self._sent_dels: list[int] = []
        self._dirty: dict[int, ConsumerImpl] = {}
        self._resnap = False
        self._want_roll = False
        self._flush_scheduled = False
        self._syncing: _SyncJob | None = None
        self._awaiting: list = []  # callbacks written but not yet covered by an fsync
        self._unsynced_dels: list[int] = []  # tombstones in bytes not yet fsynced
        self._jobs: set[concurrent.futures.Future] = set()
        self._dir_dirty = False
        # recent messages, kept until written (and a while after): seq -> (subject,
        # headers, payload, ts), a tuple being far cheaper to make than a StoredMsg
        self._cache: dict[int, tuple] = {}
        self._written_seq = 0
        self._fail_until = 0.0
        self._fail_err: E.StoreWriteError | None = None
        self._compacting: _CompactPlan | None = None
        self._compact_scheduled = False
        self._finalizing: dict[int, concurrent.futures.Future] = {}

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
        if len(cache) > CACHE_TRIM_AT:
            self._trim_cache()

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
        self._cache = {k: v for k, v in self._cache.items() if k > cutoff}

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
        loop.call_soon(self._flush)

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
        args = self._index_args(seg)
        fd = seg.wfd

        def job() -> None:
            _fdatasync(fd)  # already synced under sync_always: then it is nearly free
            _write_index(seg.idx_path, seg.path, seg.written, args)

        loop = self._fstore._get_loop()
        if loop is None or self._closed:
            try:
                job()
            except OSError as e:
                log.error("stream %s: sealing segment %d failed: %s", self.name, seg.num, e)
            self._finalize_done(seg, None)
            return
        self._finalizing[seg.num] = self._fstore._submit(
            job, (), self._finalize_done, seg, self._jobs
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

    # ---- reads --------------------------------------------------------------

    def _load_slot(self, blk, i, seq):
        m = self._cache.get(seq)
        if m is not None:
            return StoredMsg(seq, m[0], m[1], m[2], m[3])
        seg: Seg = blk
        off = seg.offs[i]
        if off == NONE32:
            return None
        try:
            fd = seg.wfd if seg.wfd is not None else self._fstore._read_fd(seg)
            data = os.pread(fd, seg.size[i] + 96, off)
            if len(data) >= 12:
                need = record_length(data)
                if need > len(data):
                    data = os.pread(fd, need, off)
            rec = read_record_at(data, 0)
            if rec is None or rec[0] != T_MSG:
                raise ValueError("bad record")
            body = decode_body(rec[2])
            return StoredMsg(body[0], body[2], body[3], body[4], body[1])
        except (OSError, ValueError, TypeError, IndexError) as e:
            self._fstore.counters["corrupt_records"] += 1
            log.error(
                "stream %s: cannot read seq %d (segment %d offset %d): %s",
                self.name,
                seq,
                seg.num,
                off,
                e,
            )
            return None

    # ---- removal hooks ------------------------------------------------------

    def _slot_removed(self, blk, i, seq):
        add_range(self._dels, seq, seq)
        self._cache.pop(seq, None)
        seg: Seg = blk
        if seg.offs[i] != NONE32:
            seg.dead_phys += 1
            seg.clean = False

    def _slots_removed(self, blk, i, k, first_seq):
        add_range(self._dels, first_seq, first_seq + (k - i) - 1)
        cache = self._cache
        if cache:
            for seq in range(first_seq, first_seq + (k - i)):
                cache.pop(seq, None)
        seg: Seg = blk
        written = (k - i) - seg.offs[i:k].count(NONE32)
        if written:
            seg.dead_phys += written
            seg.clean = False

    def _bulk_kill(self, blk):
        seg: Seg = blk
        seg.dead_phys += len(seg.offs) - seg.offs.count(NONE32)
        seg.clean = False
        super()._bulk_kill(blk)

    def _range_purged(self, a, b):
        add_range(self._dels, a, b)
        for k in [k for k in self._cache if k <= b]:
            del self._cache[k]

    def _block_emptied(self, blk):
        seg: Seg = blk
        if seg is self._tail:
            if seg.size_logical > self._seg_limit // 4:
                self._want_roll = True
        else:
            self._maybe_compact()

    # ---- consumers ----------------------------------------------------------

    def _consumer_dirty(self, c):
        self._dirty[c.cid] = c
        self._touch()

    def _consumer_path(self, name: str) -> str:
        return os.path.join(self.path, "consumers", name + ".json")

    def _consumer_created(self, c, existed):
        if not c.config.durable_name:
            c._ops = None  # ephemeral: lives and dies with the process
            return
        doc = {
            "version": FORMAT_VERSION,
            "cid": c.cid,
            "created": c.created_ns,
            "config": c.config.to_dict(),
        }
        try:
            _write_json_atomic(self._consumer_path(c.name), doc)
        except OSError as e:
            self._note_write_error(e)
            raise E.StoreWriteError(f"consumer {c.name}: {e.strerror or e}", e.errno) from e
        if not existed:
            c._ops = []
            self._emit(csnap_record(c.cid, c.snapshot()), True)
            self._touch()

    def _consumer_deleted(self, c):
        self._dirty.pop(c.cid, None)
        if c._ops is None:
            return
        try:
            os.unlink(self._consumer_path(c.name))
            _fsync_dir(os.path.join(self.path, "consumers"))
        except OSError as e:
            log.error("stream %s: removing consumer %s: %s", self.name, c.name, e)

    def _config_changed(self):
        try:
            _write_json_atomic(
                os.path.join(self.path, "stream.json"),
                {
                    "version": FORMAT_VERSION,
                    "created": self.created_ns,
                    "config": self.config.to_dict(),
                },
            )
        except OSError as e:
            self._note_write_error(e)
            raise E.StoreWriteError(f"stream {self.name}: {e.strerror or e}", e.errno) from e

    # ---- compaction ---------------------------------------------------------

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
        dead: list[int] = []
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

    # ---- lifecycle ----------------------------------------------------------

    def _close_files(self) -> None:
        """Write, fsync and close everything (blocking; the close path)."""
        self._wait_sync()
        self._wait_compaction()
        tail: Seg = self._tail  # type: ignore[assignment]
        if tail is not None and tail.wfd is not None:
            self._flush(sync=True, closing=True)
            if not self._fail_until:
                try:
                    os.fsync(tail.wfd)
                    _fsync_dir(self.path)
                    self._fstore.counters["fsyncs"] += 1
                    _write_index(tail.idx_path, tail.path, tail.written, self._index_args(tail))
                except OSError as e:
                    log.error("stream %s: final sync failed: %s", self.name, e)
        for num, fut in list(self._finalizing.items()):
            try:
                fut.result()
            except BaseException:
                pass
            self._finalizing.pop(num, None)
        for blk in self._blocks:
            seg: Seg = blk  # type: ignore[assignment]
            if seg.wfd is not None:
                if seg is not self._tail:
                    try:
                        _write_index(seg.idx_path, seg.path, seg.written, self._index_args(seg))
                    except OSError:
                        pass
                try:
                    os.close(seg.wfd)
                except OSError:
                    pass
                seg.wfd = None
            self._fstore._close_read_fd(seg)

    def _shutdown(self) -> None:
        if self._closed:
            return
        super()._shutdown()
        self._close_files()

    # ---- recovery -----------------------------------------------------------

    def _recover(self, rep: dict) -> None:
        fst = self._fstore
        names = sorted(os.listdir(self.path))
        for n in names:
            if n.endswith(".tmp"):
                try:
                    os.unlink(os.path.join(self.path, n))
                except OSError:
                    pass
        segfiles = [(int(m.group(1)), n) for n in names if (m := _SEG_RE.match(n))]
        now_ns = time.time_ns()
        id_cutoff = now_ns - self._dup_window_ns
        ids: dict[str, tuple[int, int]] = {}
        all_dels: list[int] = []
        maxseq = 0
        last_msg_seq = 0
        tail_data = b""
        for k, (num, fname) in enumerate(segfiles):
            is_last = k == len(segfiles) - 1
            fpath = os.path.join(self.path, fname)
            try:
                data = _read_file(fpath)
            except OSError as e:
                log.error("stream %s: cannot read %s: %s", self.name, fname, e)
                rep["damaged_files"] += 1
                continue
            hdr = parse_segment_header(data)
            if hdr is None:
                if len(data) < SEG_HEADER_SIZE and is_last:
                    # created just before a crash; nothing was ever acknowledged in it
                    try:
                        os.unlink(fpath)
                    except OSError:
                        pass
                    if data:
                        rep["torn_tails"] += 1
                        rep["bytes_cut"] += len(data)
                    continue
                log.warning(
                    "stream %s: %s has a damaged header; scanning it anyway", self.name, fname
                )
                rep["damaged_files"] += 1
                base = maxseq + 1
            else:
                version, base = hdr
                if version != FORMAT_VERSION:
                    log.error(
                        "stream %s: %s has format version %d (this server reads %d); skipped",
                        self.name,
                        fname,
                        version,
                        FORMAT_VERSION,
                    )
                    rep["damaged_files"] += 1
                    continue
            seg = Seg(num, fpath, base)
            scan_from = SEG_HEADER_SIZE
            idx = self._load_index(seg, data)
            if idx is not None:
                if len(seg.subj) and seg.first <= last_msg_seq:
                    log.warning(
                        "stream %s: %s overlaps an earlier segment; rescanning", self.name, fname
                    )
                    seg = Seg(num, fpath, base)
                    idx = None
            if idx is not None:
                if len(seg.subj):
                    last_msg_seq = seg.end - 1
                scan_from = idx["seg_size"]
                maxseq = max(maxseq, idx.get("maxseq", 0))
                all_dels += idx["dels"]
                rep["records"] += len(seg.subj) - seg.subj.count(DEAD)
                self._ids_from_index(seg, id_cutoff, ids)
            res = ScanResult()
            mv = memoryview(data)
            prev_ts = seg.ts[-1] if len(seg.ts) else 0
            # the per-record loop of a full scan: locals only (1M records take ~2 s)
            offs_add, subj_add, size_add, ts_add = (
                seg.offs.append,
                seg.subj.append,
                seg.size.append,
                seg.ts.append,
            )
            sids = self._sids
            nxt = seg.first + len(seg.subj)  # the sequence the next slot stands for
            n_msgs = 0
            for off, ver, rtype, b0, end in scan_records(data, scan_from, res):
                if ver != REC_VERSION:
                    rep["skipped_records"] = rep.get("skipped_records", 0) + 1
                    continue
                if rtype == T_MSG:
                    try:
                        body = decode_body(mv[b0:end])
                        seq, ts, subject, hdrs, payload = body[:5]
                        size = len(subject) + len(payload) + 16
                        if hdrs:
                            size += len(hdrs)
                    except Exception:
                        res.corrupt.append((off, end))
                        continue
                    if seq <= last_msg_seq:  # out of order: not a record we wrote here
                        res.corrupt.append((off, end))
                        continue
                    last_msg_seq = seq
                    if seq != nxt:
                        if not seg.subj:
                            seg.first = seq
                        elif seq > nxt:
                            n = seq - nxt
                            seg.offs.extend(array("I", [NONE32]) * n)
                            seg.subj.extend(array("I", [DEAD]) * n)
                            seg.size.extend(array("I", bytes(4 * n)))
                            seg.ts.extend(array("q", [prev_ts]) * n)
                    nxt = seq + 1
                    sid = sids.get(subject)
                    if sid is None:
                        sid = self._intern(subject)
                    offs_add(off)
                    subj_add(sid)
                    size_add(size)
                    ts_add(ts)
                    prev_ts = ts
                    n_msgs += 1
                    if len(body) > 5 and body[5]:
                        seg.mids += (seq, ts, body[5])
                        if ts >= id_cutoff:
                            ids[body[5]] = (seq, ts)
                elif rtype == T_DEL:
                    try:
                        ranges = decode_body(mv[b0:end])
                        top = max(ranges[1::2], default=0)
                    except Exception:
                        res.corrupt.append((off, end))
                        continue
                    all_dels += ranges
                    seg.dels += ranges
                    if top > maxseq:
                        maxseq = top
                elif rtype in (T_CSNAP, T_COPS):
                    seg.crecs.append(off)
                else:
                    rep["skipped_records"] = rep.get("skipped_records", 0) + 1
            rep["records"] += n_msgs
            if last_msg_seq > maxseq:
                maxseq = last_msg_seq
            mv.release()
            for a, b in res.corrupt:
                rep["corrupt_records"] += 1
                fst.counters["corrupt_records"] += 1
                log.warning(
                    "stream %s: %s: corrupt record at offset %d (%d bytes) skipped",
                    self.name,
                    fname,
                    a,
                    b - a,
                )
            end_ok = res.valid_end if scan_from < len(data) else len(data)
            if res.torn_at >= 0:
                cut = len(data) - res.torn_at
                end_ok = res.torn_at
                rep["torn_tails"] += 1
                rep["bytes_cut"] += cut
                fst.counters["torn_tails"] += 1
                log.warning(
                    "stream %s: %s: torn tail of %d bytes at offset %d cut",
                    self.name,
                    fname,
                    cut,
                    res.torn_at,
                )
                try:
                    os.truncate(fpath, res.torn_at)
                except OSError as e:
                    log.error("stream %s: cannot truncate %s: %s", self.name, fname, e)
            seg.written = seg.size_logical = seg.synced = end_ok
            seg.maxseq = maxseq
            self._add_block(seg)
            if is_last:
                tail_data = data if end_ok == len(data) else data[:end_ok]
            elif idx is None or scan_from < end_ok or res.corrupt or res.torn_at >= 0:
                try:
                    _write_index(seg.idx_path, seg.path, seg.written, self._index_args(seg))
                    rep["index_rebuilt"] += 1
                    fst.counters["index_rebuilt"] += 1
                except OSError as e:
                    log.error("stream %s: cannot write index of %s: %s", self.name, fname, e)

        # tombstones, then counters and subject state
        for i in range(0, len(all_dels) - 1, 2):
            self._kill_range(all_dels[i], all_dels[i + 1])
        last_slot = 0
        for blk in self._blocks:
            seg: Seg = blk  # type: ignore[no-redef]
            seg.live = len(seg.subj) - seg.subj.count(DEAD)
            seg.dead_phys = len(seg.offs) - seg.offs.count(NONE32) - seg.live
            if not seg.subj:
                continue
            last_slot = seg.end - 1
            b = sum(seg.size)
            self._msgs += seg.live
            self._bytes += b
            for sid, n in Counter(seg.subj).items():
                if sid == DEAD:
                    continue
                st = self._sstate.get(sid)
                if st is None:
                    self._sstate[sid] = [n, seg.first, seg.end - 1, False]
                else:
                    st[0] += n
                    st[2] = seg.end - 1
                    st[3] = False
        for sid in [sid for sid in self._names if sid not in self._sstate]:
            self._forget(sid)
        base_last = self._blocks[-1].first - 1 if self._blocks else 0
        cfg_first = (self.config.first_seq or 1) - 1
        self._last_seq = max(maxseq, last_slot, base_last, cfg_first)
        for blk in reversed(self._blocks):
            if len(blk.ts):
                self._last_ts = blk.ts[-1]
                break
        self._first = self._last_seq + 1
        if self._msgs:
            self._first = self._find_next_any(0) or self._last_seq + 1
        self._ids = dict(sorted(ids.items(), key=lambda kv: kv[1][1]))
        if self._ids:
            self._last_msg_id = max(self._ids.items(), key=lambda kv: kv[1][0])[0]
        rep["msgs"] += self._msgs

        # the active segment
        tail: Seg | None = self._tail  # type: ignore[assignment]
        top = max((n for n, _ in segfiles), default=0)
        if tail is not None:
            try:
                tail.wfd = os.open(tail.path, os.O_RDWR)
                # what a killed process left in the page cache becomes durable before any
                # new append is reported on top of it
                _fdatasync(tail.wfd)
            except OSError as e:  # read-only: serve reads, refuse appends until it is writable
                log.error("stream %s: %s is not writable: %s", self.name, tail.path, e)
                self._note_write_error(e)
        if tail is None or (tail.num != top and tail.wfd is not None):
            # start fresh after the newest file on disk (never reuse a number we skipped)
            num = top + 1
            seg = self._create_seg(num, self._last_seq + 1)
            self._add_block(seg)
            hdr_bytes = segment_header(self._last_seq + 1)
            _pwrite_all(seg.wfd, hdr_bytes, 0)  # type: ignore[arg-type]
            seg.written = seg.size_logical = seg.synced = len(hdr_bytes)
            os.fsync(seg.wfd)  # type: ignore[arg-type]
            _fsync_dir(self.path)
            if tail is not None:
                self._finalize(tail)
            tail_data = b""
        self._written_seq = self._last_seq
        self._recover_consumers(rep, tail_data)
        if self._max_age_ns:
            self._expire()

    def _load_index(self, seg: Seg, data: bytes) -> dict | None:
        try:
            raw = _read_file(seg.idx_path)
        except FileNotFoundError:
            return None
        except OSError as e:
            log.warning("stream %s: cannot read %s: %s", self.name, seg.idx_path, e)
            return None
        idx = decode_index(raw)
        try:
            if idx is None:
                raise ValueError("damaged")
            size = idx["seg_size"]
            if size > len(data) or zlib.crc32(memoryview(data)[:size]) != idx["seg_crc"]:
                raise ValueError("does not match its segment")
            n = idx["n"]
            subj = unpack_array("I", idx["subj"])
            offs = unpack_array("I", idx["offs"])
            sizes = unpack_array("I", idx["size"])
            ts = unpack_array("q", idx["ts"])
            if not (len(subj) == len(offs) == len(sizes) == len(ts) == n):
                raise ValueError("inconsistent")
            lut = {DEAD: DEAD}
            for old, name in idx["subjects"].items():
                sid = self._sids.get(name)
                if sid is None:
                    sid = self._intern(name)
                lut[int(old)] = sid
            seg.subj = array("I", map(lut.__getitem__, subj))
            seg.offs = offs
            seg.size = sizes
            seg.ts = ts
            seg.first = idx["first"]
            seg.base = idx["base"]
            seg.dels = list(idx["dels"])
            seg.crecs = list(idx["crecs"])
            seg.mids = list(idx.get("mids", ()))
            return idx
        except (ValueError, KeyError, TypeError) as e:
            log.warning(
                "stream %s: index %s %s; rebuilding it",
                self.name,
                os.path.basename(seg.idx_path),
                e,
            )
            seg.subj, seg.offs, seg.size, seg.ts = array("I"), array("I"), array("I"), array("q")
            seg.dels, seg.crecs = [], []
            return None

    def _ids_from_index(self, seg: Seg, cutoff: int, ids: dict) -> None:
        """Msg ids of recent records (the duplicate window survives a restart)."""
        mids = seg.mids
        for i in range(0, len(mids) - 2, 3):
            if mids[i + 1] >= cutoff:
                ids[mids[i + 2]] = (mids[i], mids[i + 1])

    def _kill_range(self, a: int, b: int) -> None:
        bi = max(0, self._block_index(a))
        blocks = self._blocks
        while bi < len(blocks):
            blk = blocks[bi]
            bi += 1
            if blk.first > b:
                break
            lo = max(a, blk.first) - blk.first
            hi = min(b, blk.end - 1) - blk.first
            if lo > hi:
                continue
            n = hi - lo + 1
            blk.subj[lo : hi + 1] = array("I", [DEAD]) * n
            blk.size[lo : hi + 1] = array("I", bytes(4 * n))

    def _recover_consumers(self, rep: dict, tail_data: bytes) -> None:
        cdir = os.path.join(self.path, "consumers")
        if not os.path.isdir(cdir):
            try:
                os.makedirs(cdir)
            except OSError as e:
                log.error("stream %s: cannot create %s: %s", self.name, cdir, e)
                return
        by_cid: dict[int, ConsumerImpl] = {}
        for fn in sorted(os.listdir(cdir)):
            if not fn.endswith(".json"):
                if fn.endswith(".tmp"):
                    try:
                        os.unlink(os.path.join(cdir, fn))
                    except OSError:
                        pass
                continue
            p = os.path.join(cdir, fn)
            try:
                doc = json.loads(_read_file(p))
                cfg = ConsumerConfig.from_dict(doc["config"]).normalized()
                c = ConsumerImpl(self, cfg, int(doc["cid"]), int(doc["created"]))
            except Exception as e:
                log.error(
                    "stream %s: consumer file %s is unreadable (%s); set aside", self.name, fn, e
                )
                rep["damaged_files"] += 1
                try:
                    os.replace(p, p + ".damaged")
                except OSError:
                    pass
                continue
            c._ops = []
            self._consumers[c.name] = c
            by_cid[c.cid] = c
        rep["consumers"] += len(by_cid)
        if not by_cid:
            return
        chains: dict[int, list] = {cid: [] for cid in by_cid}
        has_snap: set[int] = set()
        tail: Seg = self._tail  # type: ignore[assignment]
        for rtype, cid, payload in self._crecs(tail, tail_data):
            if cid not in chains:
                continue
            if rtype == T_CSNAP:
                chains[cid] = [(rtype, payload)]
                has_snap.add(cid)
            else:
                chains[cid].append((rtype, payload))
        missing = set(by_cid) - has_snap
        for blk in reversed(self._blocks[:-1]):
            if not missing:
                break
            seg: Seg = blk  # type: ignore[assignment]
            if not seg.crecs:
                continue
            try:
                data = _read_file(seg.path)
            except OSError:
                continue
            per: dict[int, list] = {}
            for rtype, cid, payload in self._crecs(seg, data):
                if cid in missing:
                    if rtype == T_CSNAP:
                        per[cid] = [(rtype, payload)]
                    else:
                        per.setdefault(cid, []).append((rtype, payload))
            for cid, lst in per.items():
                chains[cid] = lst + chains[cid]
                if lst and lst[0][0] == T_CSNAP:
                    missing.discard(cid)
        for cid, c in by_cid.items():
            chain = chains[cid]
            if not chain or chain[0][0] != T_CSNAP:
                log.warning(
                    "stream %s: consumer %s: no saved state found; starting per its deliver policy",
                    self.name,
                    c.name,
                )
                c._init_position()
                continue
            c.restore(chain[0][1])
            for _rtype, ops in chain[1:]:
                for i in range(0, len(ops) - 2, 3):
                    c._apply(ops[i], ops[i + 1], ops[i + 2])
            c._after_recovery()

    def _crecs(self, seg: Seg, data: bytes):
        for off in seg.crecs:
            rec = read_record_at(data, off)
            if rec is None:
                continue
            rtype, _ver, body = rec
            try:
                cid, payload = decode_body(body)
            except Exception:
                continue
            yield rtype, cid, payload


# =========================================================================== store


class FileStore(BaseStore):
    """Streams under ``<store_dir>/streams``; see the module docstring."""

    def __init__(
        self,
        directory: str,
        *,
        sync_interval: float,
        sync_always: bool,
        max_memory: int,
        max_file: int,
        segment_size: int = DEFAULT_SEGMENT_SIZE,
    ):
        super().__init__(
            sync_interval=sync_interval,
            sync_always=sync_always,
            max_memory=max_memory,
            max_file=max_file,
        )
        self.directory = os.path.abspath(directory)
        self.segment_size = segment_size
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._dirty: set[FileStream] = set()
        self._sync_handle: asyncio.TimerHandle | None = None
        self._read_fds: OrderedDict[int, Seg] = OrderedDict()
        sdir = os.path.join(self.directory, "streams")
        if not os.path.isdir(sdir):
            os.makedirs(sdir)
        self._lock_fd = self._lock()
        try:
            self._recover()
        except BaseException:
            self._unlock()
            raise

    def _lock(self) -> int:
        import fcntl

        path = os.path.join(self.directory, "LOCK")
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            fd = os.open(path if os.path.exists(path) else self.directory, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            raise E.StoreError(
                f"store directory {self.directory} is in use by another process"
            ) from e
        return fd

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None  # type: ignore[assignment]

    # ---- executor and timers

    def _executor_(self) -> concurrent.futures.ThreadPoolExecutor:
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=4, thread_name_prefix="hybridbus-store"
            )
        return self._executor

    def _submit(self, fn, args: tuple, done, token, jobs: set) -> concurrent.futures.Future:
        """Run ``fn(*args)`` in the executor; ``done(token, fut)`` then runs on the loop."""
        loop = self._get_loop()
        fut = self._executor_().submit(fn, *args)
        jobs.add(fut)

        def _cb(f: concurrent.futures.Future) -> None:
            try:
                loop.call_soon_threadsafe(done, token, f)  # type: ignore[union-attr]
            except RuntimeError:
                pass  # the loop is gone; close() applies the result itself

        fut.add_done_callback(_cb)
        return fut

    def _mark_dirty(self, st: FileStream) -> None:
        self._dirty.add(st)
        if self._sync_handle is None:
            loop = self._get_loop()
            if loop is not None:
                self._sync_handle = loop.call_later(self.sync_interval, self._sync_tick)

    def _sync_tick(self) -> None:
        """Interval policy: one fsync per dirty stream per ``sync_interval``, off the loop."""
        self._sync_handle = None
        fds = []
        dirs = []
        for st in self._dirty:
            tail = st._tail
            if st._closed or tail is None or tail.wfd is None:
                continue
            fds.append(tail.wfd)
            if st._dir_dirty:
                st._dir_dirty = False
                dirs.append(st.path)
        self._dirty.clear()
        if not fds or self._closed:
            return
        loop = self._get_loop()

        def job() -> int:
            n = _io_fsync(fds)
            for d in dirs:
                try:
                    _fsync_dir(d)
                except OSError as e:
                    log.error("fsync of %s failed: %s", d, e)
            return n

        fut = self._executor_().submit(job)

        def _cb(f):
            if loop is not None and not f.exception():
                try:
                    loop.call_soon_threadsafe(self._count_fsyncs, f.result())
                except RuntimeError:
                    pass

        fut.add_done_callback(_cb)

    def _count_fsyncs(self, n: int) -> None:
        self.counters["fsyncs"] += n

    def _read_fd(self, seg: Seg) -> int:
        fd = seg.rfd
        if fd is not None:
            self._read_fds.move_to_end(id(seg))
            return fd
        fd = os.open(seg.path, os.O_RDONLY)
        seg.rfd = fd
        self._read_fds[id(seg)] = seg
        while len(self._read_fds) > MAX_READ_FDS:
            _, old = self._read_fds.popitem(last=False)
            self._close_read_fd(old)
        return fd

    def _close_read_fd(self, seg: Seg) -> None:
        if seg.rfd is not None:
            try:
                os.close(seg.rfd)
            except OSError:
                pass
            seg.rfd = None
            self._read_fds.pop(id(seg), None)

    # ---- recovery

    def _recover(self) -> None:
        t0 = time.perf_counter()
        rep = self.recovery = recovery_report()
        sdir = os.path.join(self.directory, "streams")
        for name in sorted(os.listdir(sdir)):
            path = os.path.join(sdir, name)
            if name.startswith(".") or not os.path.isdir(path):
                continue
            try:
                doc = json.loads(_read_file(os.path.join(path, "stream.json")))
                cfg = StreamConfig.from_dict(doc["config"]).normalized()
                if cfg.name != name:
                    raise ValueError(f"stream.json names {cfg.name!r}")
                created = int(doc.get("created", 0))
            except Exception as e:
                log.error(
                    "stream directory %s is unreadable (%s); moved to streams/.damaged", name, e
                )
                rep["damaged_files"] += 1
                self._set_aside(path, name)
                continue
            st = FileStream(self, cfg, created, path)
            try:
                st._recover(rep)
            except Exception:
                log.exception("stream %s could not be recovered; moved to streams/.damaged", name)
                rep["damaged_files"] += 1
                st._closed = True
                for blk in st._blocks:
                    seg: Seg = blk  # type: ignore[assignment]
                    for fd in (seg.wfd, seg.rfd):
                        if fd is not None:
                            os.close(fd)
                self._set_aside(path, name)
                continue
            self._streams[name] = st
            rep["streams"] += 1
        self._used["file"] = sum(st._bytes for st in self._streams.values())
        rep["time"] = round(time.perf_counter() - t0, 6)
        if rep["corrupt_records"] or rep["torn_tails"] or rep["damaged_files"]:
            log.warning("store recovery: %s", rep)
        else:
            log.info("store recovery: %s", rep)

    def _set_aside(self, path: str, name: str) -> None:
        dst_dir = os.path.join(self.directory, "streams", ".damaged")
        try:
            os.makedirs(dst_dir, exist_ok=True)
            os.replace(path, os.path.join(dst_dir, f"{name}-{time.time_ns()}"))
        except OSError as e:
            log.error("cannot move %s aside: %s", path, e)

    # ---- streams

    def _new_stream(self, cfg: StreamConfig, created_ns: int) -> BaseStream:
        if cfg.storage == "memory":
            return MemStream(self, cfg, created_ns)
        path = os.path.join(self.directory, "streams", cfg.name)
        try:
            if os.path.exists(path):
                self._set_aside(path, cfg.name)  # a leftover of a failed delete
            os.makedirs(os.path.join(path, "consumers"))
            _write_json_atomic(
                os.path.join(path, "stream.json"),
                {"version": FORMAT_VERSION, "created": created_ns, "config": cfg.to_dict()},
            )
            st = FileStream(self, cfg, created_ns, path)
            seg = st._create_seg(1, st._last_seq + 1)
            st._add_block(seg)
            hdr = segment_header(st._last_seq + 1)
            _pwrite_all(seg.wfd, hdr, 0)  # type: ignore[arg-type]
            seg.written = seg.size_logical = seg.synced = len(hdr)
            os.fsync(seg.wfd)  # type: ignore[arg-type]
            _fsync_dir(path)
            _fsync_dir(os.path.dirname(path))
        except OSError as e:
            self.counters["write_errors"] += 1
            log.error("cannot create stream %s: %s", cfg.name, e)
            shutil.rmtree(path, ignore_errors=True)
            raise E.StoreWriteError(
                f"cannot create stream {cfg.name}: {e.strerror or e}", e.errno
            ) from e
        return st

    def _destroy_stream(self, st: BaseStream) -> None:
        st._shutdown()
        if isinstance(st, FileStream):
            self._dirty.discard(st)
            tmp = os.path.join(self.directory, "streams", f".deleting-{st.name}-{time.time_ns()}")
            try:
                os.replace(st.path, tmp)
                _fsync_dir(os.path.dirname(tmp))
                shutil.rmtree(tmp)
            except OSError as e:
                log.error("stream %s: removing its files failed: %s", st.name, e)

    # ---- close

    async def close(self) -> None:
        for st in list(self._streams.values()):
            if isinstance(st, FileStream):
                for fut in list(st._jobs):
                    try:
                        await asyncio.wrap_future(fut)
                    except BaseException:
                        pass
        self.close_sync()

    def close_sync(self) -> None:
        if self._closed:
            return
        if self._sync_handle is not None:
            self._sync_handle.cancel()
            self._sync_handle = None
        super().close_sync()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        self._unlock()

    def stats(self) -> dict[str, Any]:
        out = super().stats()
        out["store_dir"] = self.directory
        out["sync_interval"] = self.sync_interval
        out["sync_always"] = self.sync_always
        out["fsync_latency"] = FSYNC_TIMES.snapshot()
        now = time.monotonic()
        failing = [st for st in self._streams.values() if getattr(st, "_fail_until", 0.0) > now]
        out["write_failing"] = bool(failing)
        if failing:
            out["last_write_error"] = str(failing[0]._fail_err)
        return out
