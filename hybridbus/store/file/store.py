"""The file store: streams under ``<store_dir>/streams``, one process at a time.

Owns ``FileStore``: the store directory and its LOCK, recovery of every stream directory
at open, creating and deleting stream directories, the executor for blocking I/O, the
interval fsync timer and the cache of read-only segment fds.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import os
import shutil
import time
from collections import OrderedDict
from typing import Any

from .. import errors as E
from ..api import StreamConfig
from ..base import BaseStore, recovery_report, recovery_summary
from ..memstore import MemStream
from ..records import FORMAT_VERSION, segment_header
from ..stream import BaseStream
from .disk import (
    FSYNC_TIMES,
    _fsync_dir,
    _fsync_file,
    _pwrite_all,
    _read_file,
    _write_json_atomic,
)
from .segment import Seg
from .stream import FileStream
from .writer import _io_fsync

log = logging.getLogger("hybridbus.store")

DEFAULT_SEGMENT_SIZE = 8 * 1024 * 1024
MAX_READ_FDS = 256


def _sync_created(paths: list[str], dirs: bool = True) -> None:
    """New streams' files on disk: each one's stream.json (data, then the rename), its
    directory (stream.json, the first segment, consumers/; unless ``dirs`` is False:
    the close fsyncs those itself) and, once, the streams/ directory holding them."""
    for path in paths:
        try:
            _fsync_file(os.path.join(path, "stream.json"))
            if dirs:
                _fsync_dir(path)
        except FileNotFoundError:
            pass  # deleted meanwhile
    if paths:
        _fsync_dir(os.path.dirname(paths[0]))


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
            # The holder wrote its PID in the file when it took the lock.
            try:
                holder = os.pread(fd, 32, 0).decode().strip()
            except (OSError, UnicodeDecodeError):
                holder = ""
            os.close(fd)
            who = f"process {holder}" if holder.isdigit() else "another process"
            raise E.StoreError(f"store directory {self.directory} is in use by {who}") from e
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, b"%d\n" % os.getpid(), 0)
        except OSError:
            pass  # a read-only LOCK file still locks; only the PID goes unsaid
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
        created = []
        for st in self._dirty:
            tail = st._tail
            if st._closed or tail is None or tail.wfd is None:
                continue
            fds.append(tail.wfd)
            if st._dir_dirty:
                st._dir_dirty = False
                dirs.append(st.path)
            if st._created_unsynced:
                st._created_unsynced = False
                created.append(st.path)
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
            try:
                _sync_created(created)
            except OSError as e:
                log.error("fsync of new streams (%s) failed: %s", ", ".join(created), e)
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
            log.warning("%s", recovery_summary(rep))
        else:
            log.info("%s", recovery_summary(rep))

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
            # Under the interval policy a new stream's files are fsynced by the next
            # sync tick (or the close), as its messages are: five fsyncs per create
            # made 300 creates in a row take seconds (nats.py's
            # test_jsm_stream_management_with_offset; nats-server syncs its stream
            # meta only with sync_always too). A crash before the tick leaves the old
            # or no stream.json (rename), an empty or missing segment: recovery takes
            # those (no stream, or an empty one).
            always = self.sync_always
            _write_json_atomic(
                os.path.join(path, "stream.json"),
                {"version": FORMAT_VERSION, "created": created_ns, "config": cfg.to_dict()},
                sync=always,
            )
            st = FileStream(self, cfg, created_ns, path)
            seg = st._create_seg(1, st._last_seq + 1)
            st._add_block(seg)
            hdr = segment_header(st._last_seq + 1)
            _pwrite_all(seg.wfd, hdr, 0)  # type: ignore[arg-type]
            seg.written = seg.size_logical = seg.synced = len(hdr)
            if always:
                os.fsync(seg.wfd)  # type: ignore[arg-type]
                _fsync_dir(path)
                _fsync_dir(os.path.dirname(path))
            else:
                st._created_unsynced = True
                self._mark_dirty(st)
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
        created = []
        for st in self._streams.values():
            if getattr(st, "_created_unsynced", False):
                st._created_unsynced = False  # type: ignore[attr-defined]
                created.append(st.path)  # type: ignore[attr-defined]
        try:
            _sync_created(created, dirs=False)  # each stream's close fsyncs its directory
        except OSError as e:
            log.error("fsync of new streams failed: %s", e)
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
