"""Segments: ``Seg``, the slots of one segment file, and the segment's index file.

Owns ``Seg`` (a ``Block`` that knows its file, its record offsets and its write/sync
marks), the segment file names and the index file (``_index_body``, ``_write_index``;
the bytes are defined in ``records.py``).
"""

from __future__ import annotations

import errno
import os
import re
import zlib
from array import array

from ..blocks import Block
from ..records import MSG_SIZES, encode_index, pack_array

_SEG_RE = re.compile(r"^(\d{10})\.seg$")


def _seg_name(num: int) -> str:
    return f"{num:010d}.seg"


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
            "msg_sizes": MSG_SIZES,
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
