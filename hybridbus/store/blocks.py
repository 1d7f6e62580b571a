"""Blocks: a stream's messages as runs of parallel per-sequence slot arrays.

Owns ``Block`` (the slots of one contiguous range of sequences) and ``DEAD``, the subject
id of a slot whose message is gone. The stores subclass ``Block`` for where the message
bodies live (``memstore.MemBlock``, ``file.segment.Seg``).

A stream is a run of *blocks*. A block covers a contiguous range of sequences
``first .. first + len(subj) - 1`` and keeps one slot per sequence in parallel arrays:

``subj``  subject id (``DEAD`` once the message is gone)
``size``  stored size (0 once gone), so ``sum(size)`` is the block's live bytes
``ts``    timestamp in ns; never decreases along the stream, so start-time lookups bisect

The memory store keeps the message objects in a list beside the arrays; the file store
keeps record offsets and reads bodies on demand (``file/``). Searches run in C:
"next message on subject X" is ``array.index(sid, i)``, counts are ``array.count``
(``search.py``).
"""

from __future__ import annotations

from array import array

DEAD = 0xFFFFFFFF
assert array("I").itemsize == 4, "the store needs 32-bit unsigned arrays"


class Block:
    """Slots for sequences ``first .. first + len(subj) - 1`` (see the module docstring)."""

    __slots__ = ("first", "subj", "size", "ts", "live")

    def __init__(self, first: int):
        self.first = first
        self.subj = array("I")
        self.size = array("I")
        self.ts = array("q")
        self.live = 0

    @property
    def end(self) -> int:
        return self.first + len(self.subj)
