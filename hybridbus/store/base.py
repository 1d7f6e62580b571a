"""What every store shares: the stream registry and the store-wide state around it.

Owns ``BaseStore`` (streams by name, routing a subject to its stream, the
``max_memory_store``/``max_file_store`` limits, the loop handle and deferred
``on_durable`` callbacks), ``_call`` (runs one callback) and ``recovery_report``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from . import errors as E
from .api import OnDurable, StreamConfig
from .filters import _CACHE_TRIM
from .match import FilterTrie

if TYPE_CHECKING:
    from .stream import BaseStream

log = logging.getLogger("hybridbus.store")


class BaseStore:
    """Stream registry, store-wide limits, the loop handle and deferred callbacks."""

    directory: str | None = None

    def __init__(self, *, sync_interval: float, sync_always: bool, max_memory: int, max_file: int):
        self.sync_interval = sync_interval
        self.sync_always = sync_always
        self._limits = {"memory": max_memory, "file": max_file}
        self._used = {"memory": 0, "file": 0}
        self._streams: dict[str, BaseStream] = {}
        self._route: dict[str, BaseStream | None] = {}
        # Streams that exist but are left out of listings and counts (`hide`/`show`):
        # the MQTT layer's state streams until MQTT is first used, as nats-server
        # creates its own $MQTT_ streams at the first MQTT CONNECT.
        self._hidden: set[str] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._deferred: list = []
        self._defer_scheduled = False
        self._closed = False
        self.recovery: dict[str, Any] = {}
        self.counters: dict[str, int] = {
            "corrupt_records": 0,
            "torn_tails": 0,
            "write_errors": 0,
            "fsyncs": 0,
            "writes": 0,
            "compactions": 0,
            "index_rebuilt": 0,
        }
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None

    # ---- loop and callbacks

    def _get_loop(self) -> asyncio.AbstractEventLoop | None:
        loop = self._loop
        if loop is not None and loop.is_running():
            return loop
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        self._loop = loop
        return loop

    def _defer(self, cb: OnDurable, seq: int, err: BaseException | None = None) -> None:
        self._deferred.append((cb, seq, err))
        if not self._defer_scheduled:
            loop = self._get_loop()
            if loop is None:
                self._run_deferred()
                return
            self._defer_scheduled = True
            loop.call_soon(self._run_deferred)

    def _run_deferred(self) -> None:
        self._defer_scheduled = False
        items = self._deferred
        self._deferred = []
        for cb, seq, err in items:
            _call(cb, seq, err)

    # ---- limits

    def _reserve(self, kind: str, growth: int) -> None:
        limit = self._limits[kind]
        if limit >= 0 and growth > 0 and self._used[kind] + growth > limit:
            raise E.MemoryFull() if kind == "memory" else E.StoreFull()

    # ---- streams

    def _new_stream(self, cfg: StreamConfig, created_ns: int) -> BaseStream:
        raise NotImplementedError

    def add_stream(self, config: StreamConfig) -> BaseStream:
        if self._closed:
            raise E.StoreClosed()
        cfg = config.normalized()
        old = self._streams.get(cfg.name)
        if old is not None:
            if old.config.to_dict() == cfg.to_dict():
                return old
            raise E.StreamNameInUse()
        self._check_overlap(cfg, None)
        st = self._new_stream(cfg, time.time_ns())
        self._streams[cfg.name] = st
        self._route.clear()
        return st

    def update_stream(self, config: StreamConfig) -> BaseStream:
        if self._closed:
            raise E.StoreClosed()
        cfg = config.normalized()
        st = self.stream(cfg.name)
        old = st.config
        if cfg.storage != old.storage:
            raise E.InvalidConfig("stream configuration update can not change storage type")
        if cfg.retention != old.retention and "workqueue" in (cfg.retention, old.retention):
            # limits <-> interest may change (nats-server's configUpdateCheck)
            raise E.InvalidConfig(
                "stream configuration update can not change retention policy to/from workqueue"
            )
        self._check_overlap(cfg, st)
        st._update(cfg)
        self._route.clear()
        return st

    def _check_overlap(self, cfg: StreamConfig, skip: BaseStream | None) -> None:
        # A trie of the other streams' subjects: linear in their number, where a
        # pairwise check of two streams with thousands of subjects would take seconds.
        trie = FilterTrie()
        for other in self._streams.values():
            if other is not skip:
                for b in other.config.subjects:
                    trie.add(b, other.name)
        for a in cfg.subjects:
            if trie.colliding(a):
                raise E.SubjectsOverlap()

    def stream(self, name: str) -> BaseStream:
        st = self._streams.get(name)
        if st is None:
            raise E.StreamNotFound()
        return st

    def streams(self) -> list[BaseStream]:
        """Every stream, hidden ones included (the store's own and internal users)."""
        return list(self._streams.values())

    def listed_streams(self) -> list[BaseStream]:
        """The streams a client or the monitor sees: all but the hidden ones."""
        if not self._hidden:
            return list(self._streams.values())
        return [st for name, st in self._streams.items() if name not in self._hidden]

    def hide(self, name: str) -> None:
        """Leave stream `name` out of `listed_streams` and `usage` (it keeps working)."""
        if name in self._streams:
            self._hidden.add(name)

    def show(self, name: str) -> None:
        self._hidden.discard(name)

    def is_hidden(self, name: str) -> bool:
        return name in self._hidden

    def delete_stream(self, name: str) -> None:
        st = self._streams.pop(name, None)
        if st is None:
            raise E.StreamNotFound()
        self._hidden.discard(name)
        self._route.clear()
        self._used[st.storage_kind] -= st._bytes
        self._destroy_stream(st)

    def _destroy_stream(self, st: BaseStream) -> None:
        st._shutdown()

    def stream_for_subject(self, subject: str) -> BaseStream | None:
        try:
            return self._route[subject]
        except KeyError:
            pass
        found = None
        for st in self._streams.values():
            if st.config.subjects and (st._own is None or st._own(subject)):
                found = st
                break
        if len(self._route) > _CACHE_TRIM:
            self._route.clear()
        self._route[subject] = found
        return found

    def usage(self) -> dict[str, int]:
        return {
            "memory": self._used["memory"],
            "storage": self._used["file"],
            "streams": len(self._streams) - len(self._hidden),
            "consumers": sum(s._public_count() for s in self.listed_streams()),
        }

    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.counters)
        out.update(self.usage())
        out["recovery"] = dict(self.recovery)
        return out

    async def close(self) -> None:
        self.close_sync()

    def close_sync(self) -> None:
        if self._closed:
            return
        self._closed = True
        for st in self._streams.values():
            st._shutdown()
        self._run_deferred()


def _call(cb: OnDurable, seq: int, err: BaseException | None) -> None:
    try:
        cb(seq, err)
    except Exception:
        log.exception("on_durable callback for seq %d raised", seq)


def recovery_summary(rep: dict) -> str:
    """The recovery report as one line for the log: what was found, what was repaired.

    ``Store recovered 2 streams, 1 consumer, 100000 messages in 0.412s``, plus
    ``; repaired: 1 corrupt record, 1 torn tail (312 bytes cut), ...`` when it had to."""

    def count(n: int, word: str) -> str:
        return f"{n} {word}" if n == 1 else f"{n} {word}s"

    line = (
        f"Store recovered {count(rep['streams'], 'stream')}, "
        f"{count(rep['consumers'], 'consumer')}, {count(rep['msgs'], 'message')} "
        f"in {rep['time']:.3f}s"
    )
    repairs = []
    if rep["corrupt_records"]:
        repairs.append(count(rep["corrupt_records"], "corrupt record"))
    if rep["torn_tails"]:
        repairs.append(f"{count(rep['torn_tails'], 'torn tail')} ({rep['bytes_cut']} bytes cut)")
    if rep["index_rebuilt"]:
        n = rep["index_rebuilt"]
        repairs.append(f"{n} {'index' if n == 1 else 'indexes'} rebuilt")
    if rep["damaged_files"]:
        repairs.append(count(rep["damaged_files"], "damaged stream") + " set aside")
    if repairs:
        line += "; repaired: " + ", ".join(repairs)
    return line


def recovery_report() -> dict:
    """The store's recovery report (``store.recovery``, shown in /jsz), all zero: what
    a memory store always says, and what a file store's recovery counts up from."""
    return {
        "streams": 0,
        "consumers": 0,
        "records": 0,
        "msgs": 0,
        "corrupt_records": 0,
        "torn_tails": 0,
        "bytes_cut": 0,
        "index_rebuilt": 0,
        "damaged_files": 0,
        "time": 0.0,
    }
