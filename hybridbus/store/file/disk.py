"""Blocking file-system helpers of the file store, and how long its fsyncs take.

Owns ``_pwrite_all``, ``_fsync_dir``, ``_write_json_atomic``, ``_read_file``, ``_fdatasync``
(``fdatasync`` timed into ``FSYNC_TIMES``, the histogram /metrics shows). They block:
executor jobs call them, and the loop only where that is cheap or the point (a pwrite
into the page cache, creating and closing files, recovery).
"""

from __future__ import annotations

import bisect
import json
import os
import threading
import time
from typing import Any

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


def _write_json_atomic(path: str, doc: dict, sync: bool = True) -> None:
    """Replace ``path`` by ``doc`` through a rename (a crash leaves the old or the new
    file). ``sync=False`` leaves the fsyncs to the caller (a new stream under the
    interval policy: ``FileStore._sync_tick``)."""
    tmp = path + ".tmp"
    data = json.dumps(doc, sort_keys=True, indent=1).encode()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        _pwrite_all(fd, data, 0)
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    if sync:
        _fsync_dir(os.path.dirname(path))


def _fsync_file(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_file(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()
