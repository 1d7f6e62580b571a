"""Load-generator processes, their start/stop handshake, and the measurement window.

Theory of operation: each publisher, subscriber, responder or requester is a *role* object
that runs in its own forked process. The parent and the child talk over a Pipe:

    child:  role.setup()            connect, subscribe, wait for CONNACK/SUBACK/PONG
    child:  -> ("ready", info)
    parent: <- ("go", t_go, t0, t1, t_stop)   absolute time.monotonic() values
    child:  role.run(t_go, t0, t1, t_stop)
    child:  -> ("result", dict)  or  ("error", traceback text)
    child:  if role.hold: wait for ("release",) (or HOLD_MAX s), keeping its connections
    child:  role.close()

CLOCK_MONOTONIC is one clock for every process on the machine, so all roles measure the
same window [t0, t1): publishers send from t_go to t_stop (a little past t1, so the
window's end is still under load), receivers snapshot their counters and CPU time the
first time they see the clock pass t0 and t1, and rate = counted / elapsed between the two
snapshots. ``Fleet`` owns the processes and kills every one by PID when it closes, on
error too.

A role with ``hold = True`` (idle connections, subscription holders) keeps its
connections open after reporting, so the parent can measure the server with them in
place; ``Fleet.release`` lets those roles close their connections themselves.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
import time
import traceback
from typing import Any

_CTX = mp.get_context("fork")
HOLD_MAX = 600.0  # a holding role gives up waiting for "release" after this long


class Window:
    """Counter snapshots at the first observation past t0 and past t1."""

    __slots__ = ("t0", "t1", "start", "end")

    def __init__(self, t0: float, t1: float) -> None:
        self.t0 = t0
        self.t1 = t1
        self.start: tuple[float, int, float] | None = None
        self.end: tuple[float, int, float] | None = None

    def due(self, now: float) -> bool:
        if self.start is None:
            return now >= self.t0
        return self.end is None and now >= self.t1

    def snap(self, now: float, count: int) -> None:
        s = (now, count, time.process_time())
        if self.start is None:
            self.start = s
        elif self.end is None:
            self.end = s

    @property
    def closed(self) -> bool:
        return self.end is not None

    def finish(self, count: int) -> None:
        """Close the window now if the loop ended before observing t0 or t1."""
        now = time.monotonic()
        if self.start is None:
            self.snap(now, count)
        if self.end is None:
            self.snap(now, count)

    def result(self) -> dict[str, float]:
        assert self.start is not None and self.end is not None
        elapsed = self.end[0] - self.start[0]
        count = self.end[1] - self.start[1]
        cpu = self.end[2] - self.start[2]
        return {
            "count": count,
            "elapsed": elapsed,
            "rate": count / elapsed if elapsed > 0 else 0.0,
            "cpu": cpu / elapsed if elapsed > 0 else 0.0,
        }


def _child(role_cls: type, params: dict[str, Any], conn: Any) -> None:
    # The parent may have installed handlers (SIGTERM -> SystemExit); a worker just dies.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    role = None
    try:
        role = role_cls(**params)
        role.setup()
        conn.send(("ready", {"pid": os.getpid()}))
        if not conn.poll(120):
            return
        msg = conn.recv()
        if msg[0] != "go":
            return
        _, t_go, t0, t1, t_stop = msg
        res = role.run(t_go, t0, t1, t_stop)
        res["pid"] = os.getpid()
        conn.send(("result", res))
        if getattr(role, "hold", False):
            conn.poll(HOLD_MAX)
    except BaseException:
        with contextlib.suppress(Exception):
            conn.send(("error", traceback.format_exc()))
    finally:
        if role is not None:
            with contextlib.suppress(Exception):
                role.close()
        conn.close()


class WorkerError(Exception):
    pass


class Worker:
    __slots__ = ("name", "kind", "proc", "conn", "info", "result")

    def __init__(self, name: str, kind: str, role_cls: type, params: dict[str, Any]) -> None:
        self.name = name
        self.kind = kind  # "pub", "sub", or another label the scenario reads
        parent, child = _CTX.Pipe()
        self.conn = parent
        self.proc = _CTX.Process(
            target=_child, args=(role_cls, params, child), name=name, daemon=True
        )
        self.proc.start()
        child.close()
        self.info: dict[str, Any] | None = None
        self.result: dict[str, Any] | None = None

    def expect(self, what: str, deadline: float) -> Any:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise WorkerError(f"{self.name}: no {what!r} before the deadline")
            if self.conn.poll(min(left, 0.2)):
                try:
                    msg = self.conn.recv()
                except EOFError:
                    raise WorkerError(
                        f"{self.name}: exited (code {self.proc.exitcode}) before {what!r}"
                    ) from None
                if msg[0] == "error":
                    raise WorkerError(f"{self.name} failed:\n{msg[1]}")
                if msg[0] != what:
                    raise WorkerError(f"{self.name}: expected {what!r}, got {msg[0]!r}")
                return msg[1]
            if not self.proc.is_alive() and not self.conn.poll(0):
                raise WorkerError(
                    f"{self.name}: exited (code {self.proc.exitcode}) before {what!r}"
                )

    def kill(self) -> None:
        p = self.proc
        if p.pid is None:
            return
        if p.is_alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(p.pid, signal.SIGTERM)
            p.join(2.0)
        if p.is_alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(p.pid, signal.SIGKILL)
            p.join(2.0)
        with contextlib.suppress(Exception):
            self.conn.close()


class Fleet:
    """The worker processes of one scenario run; ``close()`` (or ``with``) kills them all."""

    def __init__(self) -> None:
        self.workers: list[Worker] = []

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def spawn(self, name: str, kind: str, role_cls: type, **params: Any) -> Worker:
        w = Worker(name, kind, role_cls, params)
        self.workers.append(w)
        return w

    def wait_ready(self, workers: list[Worker], timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        for w in workers:
            w.info = w.expect("ready", deadline)

    def go(self, warmup: float, duration: float, tail: float) -> tuple[float, float, float]:
        """Start every worker; return (t0, t1, t_stop)."""
        t_go = time.monotonic() + 0.05
        t0 = t_go + warmup
        t1 = t0 + duration
        t_stop = t1 + tail
        for w in self.workers:
            w.conn.send(("go", t_go, t0, t1, t_stop))
        return t0, t1, t_stop

    def collect(self, deadline: float) -> None:
        for w in self.workers:
            w.result = w.expect("result", deadline)

    def release(self, timeout: float = 10.0) -> None:
        """Let holding roles close their own connections and exit (bounded), then kill."""
        for w in self.workers:
            with contextlib.suppress(Exception):
                w.conn.send(("release",))
        deadline = time.monotonic() + timeout
        for w in self.workers:
            w.proc.join(max(0.0, deadline - time.monotonic()))
        self.close()

    def close(self) -> None:
        for w in self.workers:
            w.kill()
        self.workers.clear()
