"""The on-disk format of the file store (format version 1).

This module is the single definition of the bytes; the file store (``file/``) only calls it.
docs/store-format.md repeats the layout for readers who do not read code.

Directory layout
================
::

    <store_dir>/LOCK                      flock()ed while a process has the store open
    <store_dir>/streams/<name>/stream.json   {"version": 1, "created": ns, "config": {...}}
    <store_dir>/streams/<name>/consumers/<consumer>.json
                                          {"version": 1, "cid": int, "created": ns, "config": {...}}
    <store_dir>/streams/<name>/0000000001.seg   segment files, numbered in log order
    <store_dir>/streams/<name>/0000000001.idx   index of a segment (optional, rebuilt when missing)
    <store_dir>/streams/.damaged/...      stream directories that could not be read, set aside

JSON files are written to ``*.tmp``, fsynced and renamed, so they are either old or new.
Stream and consumer names cannot hold ``/``, ``\\``, ``.``, ``*``, ``>`` or whitespace,
so they are safe as file names.

Segments
========
A stream's log is the concatenation of its segments in number order. A segment starts
with a 16-byte header, then holds records back to back::

    offset 0   4s  magic  b"HBSG"
           4   u8  format version (1)
           5   u8  flags (0)
           6   u16 reserved (0)
           8   u64 base_seq: the stream's last sequence + 1 when the segment was created

All integers are little-endian. The active (last) segment is appended to; when it reaches
the segment size (default 8 MiB) it is fsynced, sealed, and a new one is started. A sealed
segment is only ever replaced as a whole (compaction writes ``N.seg.tmp``, fsyncs it and
renames it over ``N.seg``) or unlinked.

Records
=======
Every record is framed as::

    0   2s  magic b"\\x7e\\xb5"      lets recovery find the next record after damage
    2   u32 crc32 of bytes [6, 12 + len)   (version, type, length and body)
    6   u8  record format version (1)
    7   u8  record type
    8   u32 len: body length
    12  body: msgpack

The CRC covers the length, so a flipped length field is caught too. Record types:

``1 MSG``    ``[seq, ts_ns, subject, headers|nil, payload]`` plus ``msg_id`` as a sixth
             element when the message carried one (it rebuilds the duplicate window).
``2 DEL``    ``[a1, b1, a2, b2, ...]``: the inclusive sequence ranges deleted (explicit
             deletes, purges, limits, acks on interest/work-queue streams). A DEL always
             follows the messages it names in log order. Recovery also treats its largest
             sequence as "was assigned", so a sequence is never handed out twice.
``3 CSNAP``  ``[cid, state]``: a full consumer state (see ``streams.Consumer.snapshot``).
             Written when a consumer is created and, for every consumer, at the start of
             each new segment; so consumer records in a sealed segment are always superseded.
``4 COPS``   ``[cid, [code, seq, t, code, seq, t, ...]]``: consumer state changes since the
             last record (deliveries, acks, naks, terms), applied in order after the latest
             CSNAP. One record per consumer per write batch.
``5 MSGS``   ``[first_seq, ts_ns, subject, [payload, ...]]``: a run of messages on one
             subject without headers or msg ids, stored together (a read's worth of
             publishes, at most ``RUN_MAX_MSGS`` / about ``RUN_MAX_BYTES``), sequences
             ``first_seq`` on, all with the one timestamp. Each message is MSG
             ``[first_seq + k, ts_ns, subject, nil, payload_k]``; every slot of the run
             points at the record's offset. Why: one frame, CRC and msgpack call per run
             instead of per message was the largest cost of a stored publish and of a
             consumer's read (bench js_publish, js_pull). A member deleted while the rest
             live stays in the bytes until the whole run is gone; compaction then writes
             a DEL for it in the same segment, so a scan never brings it back.

Records of an unknown type or version are skipped (and counted) so an old server can
start on a newer store.

Index files
===========
``N.idx`` lets a start skip decoding every record of segment N::

    0   4s  magic b"HBIX"
    4   u8  version (1), then 3 reserved bytes
    8   u32 crc32 of the body
    12  u32 body length
    16  body: msgpack map
        seg_size  bytes of N.seg the index covers (a prefix: the active segment keeps growing)
        seg_crc   crc32 of those bytes; the start recomputes it, so a flipped bit anywhere in
                  the covered bytes sends the segment to a full record-by-record scan
        base, first, n   the segment's base_seq, the sequence of slot 0, the slot count
        offs, subj, size, ts   packed arrays (u32, u32, u32, i64; little-endian), one entry
                  per sequence first..first+n-1: record offset (0xFFFFFFFF = not in this
                  file), index into ``subjects`` (0xFFFFFFFF = deleted when the index was
                  written), stored size, timestamp
        subjects  the subjects used by the slots
        dels      the DEL ranges found in the covered bytes, flattened as in a DEL record
        crecs     offsets of CSNAP/COPS records in the covered bytes
        maxseq    the largest sequence named by any MSG or DEL record
        mids      ``[seq, ts, msg_id, ...]`` of the MSG records that carried a msg id

Compaction
==========
A sealed segment whose live bytes fall under half its size is rewritten holding its live
MSG and MSGS records (copied byte for byte, CRC and all, a MSGS record once for all its
members) plus one DEL record naming every deleted sequence that is still physically
present: in an older segment, or as a dead member of a MSGS record this one keeps. Those
tombstones must survive because the records still exist. Consumer records are dropped: the next
segment starts with a CSNAP for every consumer. Segments are compacted oldest first and
only when they are not the newest sealed segment, so the CSNAPs that supersede them are
already fsynced. A segment that would come out empty is unlinked instead.

Stored size
===========
What ``state().bytes``, ``max_bytes`` and ``max_file_store`` count, nats-server's rule
for each storage: a memory stream ``len(subject) + len(headers) + len(payload) + 16``
(memStoreMsgSize), a file stream ``len(subject) + len(payload) + 30``, plus
``len(headers) + 4`` with headers (fileStoreMsgSize: its record framing). Indexes say
which rule their sizes follow (``MSG_SIZES``); one written before this rule is rebuilt.
"""

from __future__ import annotations

import struct
import sys
import zlib
from array import array
from bisect import bisect_right
from collections.abc import Iterable
from itertools import repeat

import msgpack

FORMAT_VERSION = 1

SEG_MAGIC = b"HBSG"
SEG_HEADER = struct.Struct("<4sBBHQ")
SEG_HEADER_SIZE = SEG_HEADER.size  # 16

REC_MAGIC = b"\x7e\xb5"
REC_VERSION = 1
REC_HEADER = struct.Struct("<2sIBBI")
REC_HEADER_SIZE = REC_HEADER.size  # 12
_CRC_AT = 6  # the CRC covers [6, end)
_VTL = struct.Struct("<BBI")
_MC = struct.Struct("<2sI")

T_MSG = 1
T_DEL = 2
T_CSNAP = 3
T_COPS = 4
T_MSGS = 5

# A MSGS record holds at most this many messages, and stops taking more once its
# payloads reach RUN_MAX_BYTES: a read of one member reads and decodes the whole record.
RUN_MAX_MSGS = 256
RUN_MAX_BYTES = 64 * 1024

IDX_MAGIC = b"HBIX"
IDX_HEADER = struct.Struct("<4sB3xII")
IDX_HEADER_SIZE = IDX_HEADER.size  # 16
MSG_SIZES = 2  # the index's "msg_sizes": sizes by each storage's nats-server rule

NONE32 = 0xFFFFFFFF
# A record larger than this is not believed during recovery (guards resync against a
# corrupt length that points far ahead).
MAX_RECORD = 256 * 1024 * 1024

_packb = msgpack.Packer(use_bin_type=True).pack
_unpackb = msgpack.unpackb
_crc32 = zlib.crc32
_BIG_ENDIAN = sys.byteorder == "big"


def msg_size(subject: str, headers: bytes | None, payload: bytes, file: bool = False) -> int:
    """The stored size of a message (see the module docstring)."""
    if file:
        return len(subject) + len(payload) + 30 + (len(headers) + 4 if headers else 0)
    return len(subject) + (len(headers) if headers else 0) + len(payload) + 16


def segment_header(base_seq: int) -> bytes:
    return SEG_HEADER.pack(SEG_MAGIC, FORMAT_VERSION, 0, 0, base_seq)


def parse_segment_header(buf: bytes) -> tuple[int, int] | None:
    """(version, base_seq), or None when the bytes are not a segment header."""
    if len(buf) < SEG_HEADER_SIZE:
        return None
    magic, version, _flags, _res, base = SEG_HEADER.unpack_from(buf, 0)
    if magic != SEG_MAGIC:
        return None
    return version, base


def frame(rtype: int, body: bytes) -> bytes:
    """Frame a msgpack body as a record of type ``rtype``."""
    tail = _VTL.pack(REC_VERSION, rtype, len(body))
    crc = _crc32(body, _crc32(tail))
    return _MC.pack(REC_MAGIC, crc) + tail + body


def msg_record(
    seq: int,
    ts_ns: int,
    subject: str,
    headers: bytes | None,
    payload: bytes,
    msg_id: str | None = None,
) -> bytes:
    """The framed MSG record (hot path: one packb, two crc32 calls, two concatenations)."""
    if msg_id is None:
        body = _packb([seq, ts_ns, subject, headers, payload])
    else:
        body = _packb([seq, ts_ns, subject, headers, payload, msg_id])
    tail = _VTL.pack(REC_VERSION, T_MSG, len(body))
    return _MC.pack(REC_MAGIC, _crc32(body, _crc32(tail))) + tail + body


def msgs_record(first_seq: int, ts_ns: int, subject: str, payloads: list[bytes]) -> bytes:
    """The framed MSGS record of a run (see the module docstring)."""
    return frame(T_MSGS, _packb([first_seq, ts_ns, subject, payloads]))


def run_member(body: list, seq: int, make):
    """``make(seq, subject, None, payload, ts)`` for member ``seq`` of a decoded MSGS
    body, or None when the run does not hold it."""
    k = seq - body[0]
    payloads = body[3]
    if 0 <= k < len(payloads):
        return make(seq, body[2], None, payloads[k], body[1])
    return None


def decode_msgs(buf: bytes, positions: list[int], seqs: list[int], make) -> tuple[list, int]:
    """``make(seq, subject, headers, payload, ts)`` for the MSG record (or MSGS member) of
    each of ``seqs`` at the matching one of ``positions`` in ``buf`` (one read holding a
    run of them, ``positions`` ascending, ``seqs`` ascending); None for one out of
    ``buf`` or cut short by its end, that fails its CRC, is not a MSG or MSGS, does not
    decode or holds another sequence. Also returns how many are None (the caller need
    not look for them)."""
    # hot path: a consumer's batch read from disk (store/file/stream.py _load_slots).
    # The members of a MSGS record share its position: it is decoded once, and they are
    # made in one map over its payloads.
    if len(positions) != len(seqs):
        raise ValueError("positions and seqs differ in length")
    n = len(buf)
    last = n - REC_HEADER_SIZE
    mv = memoryview(buf)
    unpack, crc32, unpackb = REC_HEADER.unpack_from, _crc32, _unpackb
    out: list = []
    append = out.append
    bad = 0
    i, total = 0, len(positions)
    while i < total:
        pos = positions[i]
        seq = seqs[i]
        msg = None
        if 0 <= pos <= last:
            magic, crc, _ver, rtype, ln = unpack(buf, pos)
            end = pos + REC_HEADER_SIZE + ln
            if end <= n and magic == REC_MAGIC and crc32(mv[pos + _CRC_AT : end]) == crc:
                try:
                    body = unpackb(mv[pos + REC_HEADER_SIZE : end], raw=False)
                    if rtype == T_MSGS:
                        j = bisect_right(positions, pos, i)  # its members in this read
                        members = _run_members(body, seqs[i:j], make)
                        if members is not None and positions[j - 1] == pos:
                            out += members
                            i = j
                            continue
                    elif rtype == T_MSG and body[0] == seq:
                        msg = make(seq, body[2], body[3], body[4], body[1])
                except (ValueError, TypeError, IndexError, KeyError, msgpack.UnpackException):
                    msg = None
        if msg is None:
            bad += 1
        append(msg)
        i += 1
    return out, bad


def _run_members(body: list, seqs: list[int], make) -> list | None:
    """``make(...)`` for each of ``seqs`` (ascending), members of the decoded MSGS
    ``body``; None when the run does not hold them all."""
    base, ts, subject, payloads = body[0], body[1], body[2], body[3]
    k0 = seqs[0] - base
    k1 = seqs[-1] - base + 1
    if k0 < 0 or k1 > len(payloads):
        return None
    if k1 - k0 == len(seqs):  # consecutive: a slice
        picked = payloads[k0:k1]
    else:
        picked = list(map(payloads.__getitem__, map((-base).__add__, seqs)))
    return list(map(make, seqs, repeat(subject), repeat(None), picked, repeat(ts)))


def del_record(ranges: list[int]) -> bytes:
    return frame(T_DEL, _packb(ranges))


def csnap_record(cid: int, state: dict) -> bytes:
    return frame(T_CSNAP, _packb([cid, state]))


def cops_record(cid: int, ops: list[int]) -> bytes:
    return frame(T_COPS, _packb([cid, ops]))


def decode_body(body) -> object:
    return _unpackb(body, raw=False, strict_map_key=False)


def to_ranges(seqs: Iterable[int]) -> list[int]:
    """Sorted, merged inclusive ranges of ``seqs``, flattened ``[a1, b1, a2, b2, ...]``."""
    out: list[int] = []
    for s in sorted(set(seqs)):
        if out and s == out[-1] + 1:
            out[-1] = s
        else:
            out.append(s)
            out.append(s)
    return out


def add_range(out: list[int], a: int, b: int) -> None:
    """Append the inclusive range a..b to a flattened list, merging with the last range."""
    if out and out[-1] + 1 >= a and out[-2] <= a:
        if b > out[-1]:
            out[-1] = b
    else:
        out.append(a)
        out.append(b)


class ScanResult:
    """What a scan of a segment's bytes found (besides the records it yielded)."""

    __slots__ = ("valid_end", "corrupt", "torn_at", "records")

    def __init__(self) -> None:
        self.valid_end = 0
        self.corrupt: list[tuple[int, int]] = []  # skipped byte ranges in the middle
        self.torn_at = -1  # offset where a torn tail starts, -1 if none
        self.records = 0


def valid_record_end(buf, mv, pos: int, n: int) -> int:
    """End offset of a valid record at ``pos``, or -1."""
    if n - pos < REC_HEADER_SIZE:
        return -1
    magic, crc, _ver, _rtype, ln = REC_HEADER.unpack_from(buf, pos)
    if magic != REC_MAGIC or ln > MAX_RECORD:
        return -1
    end = pos + REC_HEADER_SIZE + ln
    if end > n or _crc32(mv[pos + _CRC_AT : end]) != crc:
        return -1
    return end


def scan_records(buf: bytes, start: int, result: ScanResult):
    """Yield ``(offset, version, rtype, body_start, end)`` for each valid record.

    Damage handling: at a record that fails its CRC (or is cut short) the scan looks for
    the next valid record. If there is one, the bytes in between are a corrupt region
    (``result.corrupt``) and scanning continues; if not, the rest is a torn tail
    (``result.torn_at``). ``result.valid_end`` ends the last valid record.
    """
    n = len(buf)
    mv = memoryview(buf)
    unpack = REC_HEADER.unpack_from
    pos = start
    result.valid_end = start
    try:
        while pos < n:
            if n - pos >= REC_HEADER_SIZE:
                magic, crc, ver, rtype, ln = unpack(buf, pos)
                end = pos + REC_HEADER_SIZE + ln
                if magic == REC_MAGIC and end <= n and _crc32(mv[pos + _CRC_AT : end]) == crc:
                    result.records += 1
                    yield pos, ver, rtype, pos + REC_HEADER_SIZE, end
                    pos = end
                    result.valid_end = end
                    continue
            nxt = pos + 1
            while True:
                nxt = buf.find(REC_MAGIC, nxt)
                if nxt < 0 or valid_record_end(buf, mv, nxt, n) >= 0:
                    break
                nxt += 1
            if nxt < 0:
                result.torn_at = pos
                return
            result.corrupt.append((pos, nxt))
            pos = nxt
    finally:
        mv.release()


def read_record_at(buf: bytes, pos: int) -> tuple[int, int, memoryview] | None:
    """(rtype, version, body) of a valid record at ``pos`` in ``buf``, or None."""
    n = len(buf)
    mv = memoryview(buf)
    end = valid_record_end(buf, mv, pos, n)
    if end < 0:
        return None
    _m, _c, ver, rtype, _ln = REC_HEADER.unpack_from(buf, pos)
    return rtype, ver, mv[pos + REC_HEADER_SIZE : end]


def record_length(buf: bytes, pos: int = 0) -> int:
    """Total framed length announced by the header at ``pos`` (no validation)."""
    return REC_HEADER_SIZE + REC_HEADER.unpack_from(buf, pos)[4]


# ---- packed arrays ----


def pack_array(a: array) -> bytes:
    if _BIG_ENDIAN:
        a = array(a.typecode, a)
        a.byteswap()
    return a.tobytes()


def unpack_array(typecode: str, data: bytes) -> array:
    a = array(typecode)
    a.frombytes(data)
    if _BIG_ENDIAN:
        a.byteswap()
    return a


def encode_index(body: dict) -> bytes:
    raw = _packb(body)
    return IDX_HEADER.pack(IDX_MAGIC, FORMAT_VERSION, _crc32(raw), len(raw)) + raw


def decode_index(data: bytes) -> dict | None:
    """The index body, or None if the file is damaged or of another version."""
    if len(data) < IDX_HEADER_SIZE:
        return None
    magic, version, crc, ln = IDX_HEADER.unpack_from(data, 0)
    raw = data[IDX_HEADER_SIZE : IDX_HEADER_SIZE + ln]
    if magic != IDX_MAGIC or version != FORMAT_VERSION or len(raw) != ln or _crc32(raw) != crc:
        return None
    try:
        body = decode_body(raw)
    except Exception:
        return None
    return body if isinstance(body, dict) else None
