"""Stream store benchmarks (standalone: ``python bench/bench_store.py``).

1. Appends per second for 64-byte records under ``sync_interval: always``, ``1s`` and the
   default (120 s), on uvloop:
   * pipelined: append in bursts of 256 per loop turn, stop the clock when the last
     ``on_durable`` fires (what a fast publisher with a deep in-flight window sees);
   * closed loop: 64 producers, each appending its next record only once the previous
     one was reported durable (64 MQTT clients with one QoS 1 message in flight each).
2. Recovery time for 1,000,000 records: after a clean close (index files present), and
   with every index deleted (a full record-by-record scan with CRC checks, as after a
   crash that lost the indexes). The page cache is warm in both.
3. Bytes on disk per record (segments, and segments plus indexes).

Options: ``--records`` (default 1,000,000), ``--appends`` (default 200,000),
``--repeat`` (best of N append runs, default 3; a shared machine is noisy),
``--dir`` (default: a temporary directory, removed afterwards).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))

from hybridbus.store import Stream, StreamConfig, open_store  # noqa: E402

PAYLOAD = b"x" * 64
SUBJECT = "bench.records"

try:
    import uvloop

    _run = uvloop.run
    LOOP = "uvloop"
except ImportError:  # pragma: no cover
    _run = asyncio.run
    LOOP = "asyncio"


def _policy_kw(policy: str) -> dict:
    if policy == "always":
        return {"sync_always": True}
    if policy == "default":
        return {}
    return {"sync_interval": float(policy.rstrip("s"))}


async def _append_durable(st: Stream, n: int, burst: int) -> None:
    """Append ``n`` records, yielding to the loop after every ``burst``; return once the
    last ``on_durable`` has fired."""
    done = asyncio.get_running_loop().create_future()
    count = 0

    def durable(seq: int, err: BaseException | None) -> None:
        nonlocal count
        count += 1
        if count == n:
            done.set_result(None)

    append = st.append
    for i in range(n):
        append(SUBJECT, PAYLOAD, on_durable=durable)
        if i % burst == burst - 1:
            await asyncio.sleep(0)
    await done


async def pipelined(directory: str, policy: str, n: int, burst: int = 256) -> tuple[float, int]:
    store = open_store(directory, **_policy_kw(policy))
    st = store.add_stream(StreamConfig(name="B", subjects=["bench.>"]))
    t0 = time.perf_counter()
    await _append_durable(st, n, burst)
    elapsed = time.perf_counter() - t0
    fsyncs = store.stats()["fsyncs"]
    await store.close()
    return n / elapsed, fsyncs


async def closed_loop(
    directory: str, policy: str, producers: int = 64, seconds: float = 2.0
) -> tuple[float, float]:
    store = open_store(directory, **_policy_kw(policy))
    st = store.add_stream(StreamConfig(name="B", subjects=["bench.>"]))
    loop = asyncio.get_running_loop()
    end = time.perf_counter() + seconds
    completed = 0
    latency = 0.0
    active = producers
    finished = loop.create_future()

    def start() -> None:
        t = time.perf_counter()

        def durable(seq: int, err: BaseException | None) -> None:
            nonlocal completed, latency, active
            now = time.perf_counter()
            completed += 1
            latency += now - t
            if now < end:
                start()
            else:
                active -= 1
                if active == 0:
                    finished.set_result(None)

        st.append(SUBJECT, PAYLOAD, on_durable=durable)

    t0 = time.perf_counter()
    for _ in range(producers):
        start()
    await finished
    elapsed = time.perf_counter() - t0
    await store.close()
    return completed / elapsed, latency / completed * 1000


async def fill(directory: str, n: int) -> None:
    store = open_store(directory)
    st = store.add_stream(StreamConfig(name="R", subjects=["bench.>"]))
    await _append_durable(st, n, 1024)
    await store.close()


def disk_usage(directory: str) -> tuple[int, int]:
    seg = idx = 0
    for root, _dirs, files in os.walk(directory):
        for f in files:
            size = os.path.getsize(os.path.join(root, f))
            if f.endswith(".seg"):
                seg += size
            elif f.endswith(".idx"):
                idx += size
    return seg, idx


def timed_open(directory: str) -> tuple[float, dict]:
    t0 = time.perf_counter()
    store = open_store(directory)
    elapsed = time.perf_counter() - t0
    rep = dict(store.recovery)
    msgs = store.stream("R").state().messages
    store.close_sync()
    rep["msgs_after"] = msgs
    return elapsed, rep


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--appends", type=int, default=200_000)
    ap.add_argument("--dir", default=None)
    ap.add_argument("--repeat", type=int, default=3, help="best of N for the append runs")
    args = ap.parse_args()
    base = args.dir or tempfile.mkdtemp(prefix="hb-bench-")
    os.makedirs(base, exist_ok=True)
    print(
        f"hybridbus store benchmark ({LOOP}, Python {sys.version.split()[0]}, {os.cpu_count()} cpus)"
    )
    print(f"directory: {base}\n")
    try:
        print(f"appends of 64-byte records, {args.appends:,} pipelined in bursts of 256:")
        for policy in ("always", "1s", "default"):
            runs = []
            for r in range(args.repeat):
                d = os.path.join(base, f"append-{policy}-{r}")
                runs.append(_run(pipelined(d, policy, args.appends)))
                shutil.rmtree(d, ignore_errors=True)
            rate, fsyncs = max(runs)
            print(f"  sync {policy:>8}: {rate:>10,.0f} appends/s   ({fsyncs} fsyncs)")
        print("\nclosed loop, 64 producers, one record in flight each (2 s):")
        for policy in ("always", "1s", "default"):
            runs = []
            for r in range(args.repeat):
                d = os.path.join(base, f"closed-{policy}-{r}")
                runs.append(_run(closed_loop(d, policy)))
                shutil.rmtree(d, ignore_errors=True)
            rate, lat = max(runs)
            print(f"  sync {policy:>8}: {rate:>10,.0f} appends/s   mean latency {lat:.3f} ms")

        n = args.records
        d = os.path.join(base, "recovery")
        print(f"\nrecovery of {n:,} records of 64 bytes:")
        t0 = time.perf_counter()
        _run(fill(d, n))
        print(f"  written in {time.perf_counter() - t0:.1f} s")
        seg, idx = disk_usage(d)
        print(
            f"  on disk: {seg / n:.1f} bytes/record in segments, {(seg + idx) / n:.1f} with indexes"
        )
        t, rep = timed_open(d)
        assert rep["msgs_after"] == n, rep
        print(f"  with index files:    {t:6.2f} s  (records {rep['records']:,})")
        for root, _dirs, files in os.walk(d):
            for f in files:
                if f.endswith(".idx"):
                    os.unlink(os.path.join(root, f))
        t, rep = timed_open(d)
        assert rep["msgs_after"] == n, rep
        print(
            f"  without index files: {t:6.2f} s  (full scan, CRC of every record; "
            f"{rep['index_rebuilt']} indexes rebuilt)"
        )
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(f"  peak RSS of this process: {rss / 1024:.0f} MiB")
    finally:
        if args.dir is None:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
