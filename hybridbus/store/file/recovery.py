"""Recovery: rebuilding a file stream from its segment, index and consumer files.

Owns ``FileRecovery``, mixed into ``FileStream`` (``stream.py``); ``FileStore`` runs it
for each stream directory when the store opens.

Per stream: read ``stream.json``; for each segment read the file, verify it against its
index (crc32 of the covered bytes) or scan it record by record; cut a torn tail
(truncate), skip and report corrupt records in the middle, rebuild missing indexes;
apply every DEL; rebuild subject state; rebuild the duplicate window from the msg ids
of recent records; replay consumer state from the newest CSNAP onwards. Any damage is
logged and counted, never fatal: an unreadable stream directory is moved to
``streams/.damaged`` and the store starts without it.
"""

from __future__ import annotations

import json
import logging
import os
import time
import zlib
from array import array
from collections import Counter

from ..api import ConsumerConfig
from ..blocks import DEAD
from ..consumer import ConsumerImpl
from ..records import (
    FORMAT_VERSION,
    MSG_SIZES,
    NONE32,
    REC_VERSION,
    SEG_HEADER_SIZE,
    T_COPS,
    T_CSNAP,
    T_DEL,
    T_MSG,
    T_MSGS,
    ScanResult,
    decode_body,
    decode_index,
    parse_segment_header,
    read_record_at,
    scan_records,
    segment_header,
    unpack_array,
)
from .disk import _fdatasync, _fsync_dir, _pwrite_all, _read_file
from .segment import _SEG_RE, Seg, _write_index

log = logging.getLogger("hybridbus.store")


def _pad_slots(seg: Seg, nxt: int, seq: int, prev_ts: int) -> None:
    """A scan found ``seq`` where slot ``nxt`` was next: start the segment there, or
    fill the gap with slots not in this file (sequences deleted before compaction)."""
    if not seg.subj:
        seg.first = seq
    elif seq > nxt:
        n = seq - nxt
        seg.offs.extend(array("I", [NONE32]) * n)
        seg.subj.extend(array("I", [DEAD]) * n)
        seg.size.extend(array("I", bytes(4 * n)))
        seg.ts.extend(array("q", [prev_ts]) * n)


class _Scan:
    """What recovery carries from one segment of a stream to the next."""

    __slots__ = ("id_cutoff", "ids", "all_dels", "maxseq", "last_msg_seq")

    def __init__(self, id_cutoff: int):
        self.id_cutoff = id_cutoff  # msg ids older than this are out of the window
        self.ids: dict[str, tuple[int, int]] = {}
        self.all_dels: list[int] = []
        self.maxseq = 0
        self.last_msg_seq = 0


class FileRecovery:
    """Start-up recovery of ``FileStream``; see the module docstring."""

    def _recover(self, rep: dict) -> None:
        names = sorted(os.listdir(self.path))
        for n in names:
            if n.endswith(".tmp"):
                try:
                    os.unlink(os.path.join(self.path, n))
                except OSError:
                    pass
        segfiles = [(int(m.group(1)), n) for n in names if (m := _SEG_RE.match(n))]
        now_ns = time.time_ns()
        acc = _Scan(now_ns - self._dup_window_ns)
        tail_data = b""
        for k, (num, fname) in enumerate(segfiles):
            data = self._recover_segment(rep, acc, num, fname, k == len(segfiles) - 1)
            if data is not None:
                tail_data = data
        self._rebuild_state(rep, acc)
        tail_data = self._open_active(max((n for n, _ in segfiles), default=0), tail_data)
        self._written_seq = self._last_seq
        self._recover_consumers(rep, tail_data)
        if self.config.allow_msg_ttl:
            self._rebuild_ttls()  # before max_age: "never" messages outlive it
            self._expire_ttls()
            self._arm_ttl()
        if self._max_age_ns:
            self._expire()

    def _recover_segment(
        self, rep: dict, acc: _Scan, num: int, fname: str, is_last: bool
    ) -> bytes | None:
        """Recover one segment file into a block. Returns the valid bytes of the last
        segment (its consumer records are read from them), None for the others."""
        fst = self._fstore
        fpath = os.path.join(self.path, fname)
        opened = self._read_segment(rep, fpath, fname, is_last, acc.maxseq)
        if opened is None:
            return None
        data, base = opened
        seg = Seg(num, fpath, base)
        scan_from = SEG_HEADER_SIZE
        idx = self._load_index(seg, data)
        if idx is not None:
            if len(seg.subj) and seg.first <= acc.last_msg_seq:
                log.warning(
                    "stream %s: %s overlaps an earlier segment; rescanning", self.name, fname
                )
                seg = Seg(num, fpath, base)
                idx = None
        if idx is not None:
            if len(seg.subj):
                acc.last_msg_seq = seg.end - 1
            scan_from = idx["seg_size"]
            acc.maxseq = max(acc.maxseq, idx.get("maxseq", 0))
            acc.all_dels += idx["dels"]
            rep["records"] += len(seg.subj) - seg.subj.count(DEAD)
            self._ids_from_index(seg, acc.id_cutoff, acc.ids)
        res = self._scan_segment(rep, acc, seg, data, scan_from)
        end_ok = self._handle_damage(rep, res, fpath, fname, len(data), scan_from)
        seg.written = seg.size_logical = seg.synced = end_ok
        seg.maxseq = acc.maxseq
        self._add_block(seg)
        if is_last:
            return data if end_ok == len(data) else data[:end_ok]
        if idx is None or scan_from < end_ok or res.corrupt or res.torn_at >= 0:
            try:
                _write_index(seg.idx_path, seg.path, seg.written, self._index_args(seg))
                rep["index_rebuilt"] += 1
                fst.counters["index_rebuilt"] += 1
            except OSError as e:
                log.error("stream %s: cannot write index of %s: %s", self.name, fname, e)
        return None

    def _read_segment(
        self, rep: dict, fpath: str, fname: str, is_last: bool, maxseq: int
    ) -> tuple[bytes, int] | None:
        """A segment file's bytes and base sequence, or None when it is to be skipped."""
        try:
            data = _read_file(fpath)
        except OSError as e:
            log.error("stream %s: cannot read %s: %s", self.name, fname, e)
            rep["damaged_files"] += 1
            return None
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
                return None
            log.warning("stream %s: %s has a damaged header; scanning it anyway", self.name, fname)
            rep["damaged_files"] += 1
            return data, maxseq + 1
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
            return None
        return data, base

    # hot path: kept whole, one pass per record of a segment at start-up (see the
    # recovery runs of bench/bench_store.py)
    def _scan_segment(
        self, rep: dict, acc: _Scan, seg: Seg, data: bytes, scan_from: int
    ) -> ScanResult:
        """Add the records from ``scan_from`` on (those no index covers) to ``seg``."""
        last_msg_seq = acc.last_msg_seq
        maxseq = acc.maxseq
        ids = acc.ids
        all_dels = acc.all_dels
        id_cutoff = acc.id_cutoff
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
                    size = len(subject) + len(payload) + self._msg_overhead
                    if hdrs:
                        size += len(hdrs) + self._hdr_overhead
                except Exception:
                    res.corrupt.append((off, end))
                    continue
                if seq <= last_msg_seq:  # out of order: not a record we wrote here
                    res.corrupt.append((off, end))
                    continue
                last_msg_seq = seq
                if seq != nxt:
                    _pad_slots(seg, nxt, seq, prev_ts)
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
            elif rtype == T_MSGS:  # a run: [first_seq, ts, subject, [payload, ...]]
                try:
                    seq, ts, subject, payloads = decode_body(mv[b0:end])
                    k = len(payloads)
                    sizes = array(
                        "I", [len(p) + len(subject) + self._msg_overhead for p in payloads]
                    )
                    if not k or seq <= last_msg_seq:  # out of order: not a record we wrote here
                        raise ValueError("run out of order")
                except Exception:
                    res.corrupt.append((off, end))
                    continue
                if seq != nxt:
                    _pad_slots(seg, nxt, seq, prev_ts)
                last_msg_seq = seq + k - 1
                nxt = seq + k
                sid = sids.get(subject)
                if sid is None:
                    sid = self._intern(subject)
                seg.offs.extend(array("I", (off,)) * k)
                seg.subj.extend(array("I", (sid,)) * k)
                seg.size.extend(sizes)
                seg.ts.extend(array("q", (ts,)) * k)
                prev_ts = ts
                n_msgs += k
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
        acc.last_msg_seq = last_msg_seq
        acc.maxseq = maxseq
        return res

    def _handle_damage(
        self, rep: dict, res: ScanResult, fpath: str, fname: str, size: int, scan_from: int
    ) -> int:
        """Count and log the corrupt records of a scan, cut a torn tail; returns where
        the segment's valid bytes end."""
        fst = self._fstore
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
        end_ok = res.valid_end if scan_from < size else size
        if res.torn_at >= 0:
            cut = size - res.torn_at
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
        return end_ok

    def _rebuild_state(self, rep: dict, acc: _Scan) -> None:
        """With every block in: apply the tombstones, then count messages and bytes and
        rebuild the subject state, the sequence bounds and the duplicate window."""
        all_dels = acc.all_dels
        for i in range(0, len(all_dels) - 1, 2):
            self._kill_range(all_dels[i], all_dels[i + 1])
        last_slot = 0
        for blk in self._blocks:
            seg: Seg = blk  # type: ignore[assignment]
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
        self._last_seq = max(acc.maxseq, last_slot, base_last, cfg_first)
        for blk in reversed(self._blocks):
            if len(blk.ts):
                self._last_ts = blk.ts[-1]
                break
        self._first = self._last_seq + 1
        if self._msgs:
            self._first = self._find_next_any(0) or self._last_seq + 1
        self._ids = dict(sorted(acc.ids.items(), key=lambda kv: kv[1][1]))
        if self._ids:
            self._last_msg_id = max(self._ids.items(), key=lambda kv: kv[1][0])[0]
        rep["msgs"] += self._msgs

    def _open_active(self, top: int, tail_data: bytes) -> bytes:
        """Open the newest segment for appends, or start a new one after the newest file
        on disk (``top``); returns the bytes whose consumer records are still to be read."""
        tail: Seg | None = self._tail  # type: ignore[assignment]
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
        return tail_data

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
            if idx.get("msg_sizes") != MSG_SIZES:
                raise ValueError("counts message sizes by an older rule")
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
        by_cid = self._load_consumers(rep)
        if not by_cid:
            return
        chains = self._consumer_chains(by_cid, tail_data)
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

    def _load_consumers(self, rep: dict) -> dict[int, ConsumerImpl]:
        """The consumers of the files in ``consumers/``, by cid; an unreadable file is
        set aside."""
        cdir = os.path.join(self.path, "consumers")
        if not os.path.isdir(cdir):
            try:
                os.makedirs(cdir)
            except OSError as e:
                log.error("stream %s: cannot create %s: %s", self.name, cdir, e)
                return {}
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
        return by_cid

    def _consumer_chains(self, by_cid: dict[int, ConsumerImpl], tail_data: bytes) -> dict:
        """Per cid, its newest CSNAP and the COPS after it: from the active segment
        (``tail_data``), then from older segments for consumers with no CSNAP yet."""
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
        return chains

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
