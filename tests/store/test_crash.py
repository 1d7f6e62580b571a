"""Processes that die: SIGKILL mid-append under ``sync_always``, and a real write error."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from hybridbus.store import open_store

CHILD = os.path.join(os.path.dirname(__file__), "crash_child.py")


def _spawn(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, CHILD, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _kill_after(store_dir: str, n_durable: int, deadline: float) -> list[tuple[int, int]]:
    """Run the appender, SIGKILL it after ``n_durable`` reports; return every report."""
    p = _spawn("append", store_dir)
    reported: list[tuple[int, int]] = []
    try:
        ready = p.stdout.readline()  # type: ignore[union-attr]
        assert ready.startswith("ready"), ready + p.stderr.read()  # type: ignore[union-attr]
        while len(reported) < n_durable and time.monotonic() < deadline:
            line = p.stdout.readline()  # type: ignore[union-attr]
            if not line:
                break
            seq, ident = line.split()
            reported.append((int(seq), int(ident)))
    finally:
        os.kill(p.pid, signal.SIGKILL)
        # read through the same file objects: communicate() would skip their buffers
        rest = p.stdout.read()  # type: ignore[union-attr]
        err = p.stderr.read()  # type: ignore[union-attr]
        p.wait(timeout=10)
    assert p.returncode == -signal.SIGKILL, err
    # lines printed before the kill were reported durable too
    for line in rest.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0].isdigit():
            reported.append((int(parts[0]), int(parts[1])))
    return reported


def test_sigkill_mid_append_loses_nothing_reported_durable(store_dir):
    deadline = time.monotonic() + 40
    all_reported: dict[int, int] = {}
    for round_ in range(3):
        reported = _kill_after(store_dir, 1500 + 700 * round_, deadline)
        assert len(reported) >= 100, "the child made no progress"
        all_reported.update(reported)
        s = open_store(store_dir)
        try:
            st = s.stream("K")
            stored = [(m.seq, int(m.payload)) for m in st.iter()]
            rec = s.recovery
        finally:
            s.close_sync()
        seqs = [q for q, _ in stored]
        ids = [i for _, i in stored]
        # in order and exactly once: ids 0..n-1 at seqs 1..n, no gap, no repeat
        assert ids == list(range(len(ids)))
        assert seqs == list(range(1, len(seqs) + 1))
        by_seq = dict(stored)
        for seq, ident in all_reported.items():
            assert by_seq.get(seq) == ident, (seq, ident, rec)
        assert rec["corrupt_records"] == 0


def test_real_write_error_is_surfaced_and_the_process_keeps_going(store_dir):
    p = _spawn("fsize", store_dir, "20000")
    out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    lines = dict(line.split(" ", 1) for line in out.splitlines() if " " in line)
    assert lines["error"].startswith("StoreWriteError 27 10077"), out  # EFBIG
    assert lines["refused"] == "10077"
    assert lines["memory"] == "1"
    assert int(lines["write_errors"]) >= 1
    assert "write failed" in err  # the log line
    acked = int(lines["acked"])
    assert acked > 100
    s = open_store(store_dir)
    try:
        st = s.stream("F")
        stored = [int(m.payload) for m in st.iter()]
        assert stored[:acked] == list(range(acked))  # everything acknowledged is there
        assert s.recovery["corrupt_records"] == 0
    finally:
        s.close_sync()
