"""The memory store (``open_store(None)``) and memory streams.

Owns ``MemBlock`` (a block that keeps its ``StoredMsg`` objects), ``MemStream`` (a stream
of them; also what a file store uses for ``storage="memory"``) and ``MemStore``.
Nothing in it survives a restart.
"""

from __future__ import annotations

from .api import StoredMsg
from .base import BaseStore, recovery_report
from .blocks import Block
from .stream import BaseStream


class MemBlock(Block):
    __slots__ = ("msgs",)

    def __init__(self, first: int):
        super().__init__(first)
        self.msgs: list[StoredMsg | None] = []


class MemStream(BaseStream):
    """Bodies live in ``MemBlock.msgs``; nothing survives a restart."""

    BLOCK_SLOTS = 4096

    def _put(self, seq, ts, sid, subject, hdr, payload, msg_id, size):
        blk = self._tail
        if blk is None or len(blk.subj) >= self.BLOCK_SLOTS or blk.end != seq:
            blk = self._add_block(MemBlock(seq))
        blk.subj.append(sid)
        blk.size.append(size)
        blk.ts.append(ts)
        blk.msgs.append(StoredMsg(seq, subject, hdr, payload, ts))  # type: ignore[attr-defined]
        blk.live += 1

    def _load_slot(self, blk, i, seq):
        return blk.msgs[i]

    def _slot_removed(self, blk, i, seq):
        blk.msgs[i] = None

    def _bulk_kill(self, blk):
        blk.msgs = [None] * len(blk.subj)
        super()._bulk_kill(blk)

    def _block_emptied(self, blk):
        if blk is not self._tail:
            self._drop_block(blk)


class MemStore(BaseStore):
    """Every stream in memory (``open_store(None)``), whatever its ``storage`` says."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.recovery = recovery_report()

    def _new_stream(self, cfg, created_ns):
        return MemStream(self, cfg, created_ns)
