"""What the runner reads about processes and the machine: /proc CPU times, RSS, busy CPU.

All figures come from /proc, so they work for every server (Go, C, Python) the same way.
"""

from __future__ import annotations

import json
import os
import time
import urllib.request

_CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_cpu(pid: int) -> float | None:
    """utime + stime of ``pid`` in seconds, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    # Field 2 (comm) may contain spaces; the fields after the last ')' are fixed.
    fields = raw[raw.rindex(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def system_busy() -> float:
    """CPU seconds the whole machine spent busy so far (all cores; /proc/stat)."""
    with open("/proc/stat") as f:
        parts = f.readline().split()[1:]
    vals = [int(x) for x in parts]
    # user nice system idle iowait irq softirq steal [guest guest_nice: already in user]
    busy = vals[0] + vals[1] + vals[2] + vals[5] + vals[6] + (vals[7] if len(vals) > 7 else 0)
    return busy / _CLK_TCK


def proc_rss_kb(pid: int) -> int | None:
    """VmRSS of ``pid`` in KiB (None if it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def proc_write_bytes(pid: int) -> int | None:
    """Bytes ``pid`` has sent towards storage (/proc/PID/io write_bytes; counted when page
    cache pages are dirtied, so a write() without fsync counts too)."""
    try:
        with open(f"/proc/{pid}/io") as f:
            for line in f:
                if line.startswith("write_bytes:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def proc_fds(pid: int) -> int | None:
    """How many file descriptors ``pid`` has open."""
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def settled_rss_kb(pid: int, max_wait: float = 5.0, step: float = 0.25) -> int | None:
    """RSS once two readings ``step`` apart differ by under 0.5% (or after ``max_wait``).

    A server may still be finishing connection setup (or a Go GC cycle) right after the
    last client got its CONNACK; this waits for the figure to stop moving.
    """
    deadline = time.monotonic() + max_wait
    last = proc_rss_kb(pid)
    while time.monotonic() < deadline:
        time.sleep(step)
        cur = proc_rss_kb(pid)
        if cur is None or last is None:
            return cur
        if abs(cur - last) <= 0.005 * last:
            return cur
        last = cur
    return last


def varz_mem(http_port: int | None, host: str = "127.0.0.1") -> int | None:
    """The "mem" field of /varz (RSS bytes on hybridbus and nats-server), or None."""
    if not http_port:
        return None
    try:
        with urllib.request.urlopen(f"http://{host}:{http_port}/varz", timeout=2.0) as r:
            return int(json.load(r).get("mem"))
    except (OSError, ValueError, TypeError):
        return None


def sleep_until(t: float) -> None:
    while True:
        left = t - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(left, 0.2))
