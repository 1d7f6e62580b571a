"""The file stream: a stream whose message bodies live in segment files.

Owns ``FileStream``: its state, reads (read cache, then ``pread``), the removal hooks
that queue tombstones, the consumer and config files, and closing. The write path, compaction
and recovery are mixed in from ``writer.py``, ``compact.py`` and ``recovery.py``.
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
from typing import TYPE_CHECKING

from .. import errors as E
from ..api import StoredMsg, StreamConfig
from ..blocks import DEAD
from ..consumer import ConsumerImpl
from ..records import (
    FORMAT_VERSION,
    MAX_RECORD,
    NONE32,
    REC_HEADER_SIZE,
    T_MSG,
    T_MSGS,
    add_range,
    csnap_record,
    decode_body,
    decode_msgs,
    read_record_at,
    record_length,
    run_member,
)
from ..stream import BaseStream
from .compact import FileCompaction, _CompactPlan
from .disk import _fsync_dir, _write_json_atomic
from .recovery import FileRecovery
from .segment import Seg, _write_index
from .writer import CACHE_TRIM_AT, FileWriter, _SyncJob

if TYPE_CHECKING:
    import asyncio

    from .store import FileStore

log = logging.getLogger("hybridbus.store")

READ_RUN_MAX = 256 * 1024  # bytes read at once for a consumer's run of messages


class FileStream(FileWriter, FileCompaction, FileRecovery, BaseStream):
    """A stream in ``<store_dir>/streams/<name>``; see the module docstring. The mixins
    override BaseStream's write hooks (``_put``, ``_check_writable``, ``_durable``,
    ``_touch``) and ``compact``."""

    storage_kind = "file"
    # nats-server's fileStoreMsgSize: its record's length, seq, time, subject length and
    # hash (4 + 8 + 8 + 2 + 8), and a 4-byte header length when there are headers.
    _msg_overhead = 30
    _hdr_overhead = 4
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
        self._flush_handle: asyncio.Handle | None = None  # the call_soon of _flush
        self._syncing: _SyncJob | None = None
        self._awaiting: list = []  # callbacks written but not yet covered by an fsync
        self._unsynced_dels: list[int] = []  # tombstones in bytes not yet fsynced
        self._jobs: set[concurrent.futures.Future] = set()
        self._dir_dirty = False
        self._created_unsynced = False  # FileStore._new_stream: its files await a sync
        # recent messages, kept until written (and a while after): seq -> (subject,
        # headers, payload, ts), a tuple being far cheaper to make than a StoredMsg
        self._cache: dict[int, tuple] = {}
        self._cache_trim_at = CACHE_TRIM_AT  # the cache size that triggers _trim_cache
        self._written_seq = 0
        self._fail_until = 0.0
        self._fail_err: E.StoreWriteError | None = None
        self._compacting: _CompactPlan | None = None
        self._compact_scheduled = False
        self._finalizing: dict[int, concurrent.futures.Future] = {}

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
            if rec is None or rec[0] not in (T_MSG, T_MSGS):
                raise ValueError("bad record")
            body = decode_body(rec[2])
            if rec[0] == T_MSGS:
                msg = run_member(body, seq, StoredMsg)
                if msg is None:
                    raise ValueError(f"run record of seq {body[0]} does not hold it")
                return msg
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

    def _load_slots(self, blk, i, k):
        """The run ``i..k-1`` of one segment: the slots still in the read cache from it,
        the others read with one ``pread`` per ``READ_RUN_MAX`` bytes instead of one
        each (a consumer catching up reads its batch this way), each record's CRC
        checked as in ``_load_slot``. A record the read did not cover whole, or that
        does not check out, goes through ``_load_slot`` (which re-reads or reports it)."""
        # hot path: a pull of 500 from a stream on disk reads its messages here.
        seg: Seg = blk
        first = seg.first
        subj, offs, size = seg.subj, seg.offs, seg.size
        cache = self._cache
        if k - i > 1 and (not cache or next(iter(cache)) >= first + k):
            # The usual run: no slot deleted, cached or elsewhere, one read for all
            # (the cache holds the latest messages, in order; one it did hold comes
            # back as None below and goes through _load_slot, which looks there first).
            run = offs[i:k]
            lo = run[0]
            hi = run[-1] + size[k - 1] + 96
            if 0 < hi - lo <= READ_RUN_MAX and NONE32 not in run and DEAD not in subj[i:k]:
                return self._read_run(seg, range(i, k), lo, hi)
        out: list = [None] * (k - i)
        todo: list[int] = []  # slots to read from the file, in offset order
        lo = hi = prev = 0
        for x in range(i, k):
            if subj[x] == DEAD:
                continue
            m = cache.get(first + x)
            if m is not None:
                out[x - i] = StoredMsg(first + x, m[0], m[1], m[2], m[3])
                continue
            off = offs[x]
            if off == NONE32:
                continue
            if todo and (off < prev or off + size[x] + 96 - lo > READ_RUN_MAX):
                # not in order, or enough bytes
                for x2, m in zip(todo, self._read_run(seg, todo, lo, hi), strict=True):
                    out[x2 - i] = m
                todo = []
            if not todo:
                lo = off
            todo.append(x)
            prev = off
            hi = off + size[x] + 96  # as _load_slot: the record's size with room to spare
        if todo:
            for x2, m in zip(todo, self._read_run(seg, todo, lo, hi), strict=True):
                out[x2 - i] = m
        return out

    def _read_run(self, seg: Seg, xs: range | list[int], lo: int, hi: int) -> list:
        """The messages of slots ``xs`` (records between offsets ``lo`` and about
        ``hi``), from one read; one cut short by the read, or damaged, goes through
        ``_load_slot`` (which re-reads or reports it)."""
        offs, first = seg.offs, seg.first
        try:
            fd = seg.wfd if seg.wfd is not None else self._fstore._read_fd(seg)
            buf = os.pread(fd, hi - lo, lo)
            # ``hi`` counts one message past the last record's offset; a MSGS record
            # there (records.py) is longer: read the rest of it too.
            at = offs[xs[-1]] - lo
            if 0 <= at <= len(buf) - REC_HEADER_SIZE:
                need = at + record_length(buf, at) - len(buf)
                if 0 < need <= MAX_RECORD:
                    buf += os.pread(fd, need, lo + len(buf))
        except OSError:
            buf = b""
        got, bad = decode_msgs(buf, [offs[x] - lo for x in xs], [first + x for x in xs], StoredMsg)
        if bad:
            for n, m in enumerate(got):
                if m is None:
                    got[n] = self._load_slot(seg, xs[n], first + xs[n])
        return got

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
