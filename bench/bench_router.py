#!/usr/bin/env python
"""Router micro-benchmark: match and insert rates of hybridbus.router.Sublist.

Standalone (no pytest). For each size N (default 10, 1,000 and 100,000) it inserts N
plain subscriptions on distinct literal subjects ``bench.<i>.temp`` and measures:

* insert     -- inserting all N subscriptions into an empty sublist (inserts/s);
* match hit  -- matching subscribed subjects that are all in the cache;
* match miss -- matching distinct subjects that are never in the cache. The pool
  is ``bench.<i>.temp`` for i < max(N, 4 * cache size), walked in order, so every
  lookup misses (the FIFO cache forgets a subject long before it comes round again);
  with N smaller than the pool most of those subjects reach no subscription;
* walk       -- the trie walk alone: subscribed subjects with the cache off.

Optionally (``--wildcards``) a share of the subscriptions use ``*``/``>``.

Usage: python bench/bench_router.py [--sizes 10,1000,100000] [--seconds 0.5] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import pstats
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hybridbus.router import DEFAULT_CACHE_MAX, Sublist, Subscription  # noqa: E402


def _subjects(n: int, wildcards: bool) -> list[str]:
    if not wildcards:
        return [f"bench.{i}.temp" for i in range(n)]
    out = []
    for i in range(n):
        k = i % 10
        if k == 0:
            out.append(f"bench.{i}.*")
        elif k == 1:
            out.append(f"bench.{i}.>")
        else:
            out.append(f"bench.{i}.temp")
    return out


def _rate(fn, seconds: float) -> float:
    """Calls of ``fn`` (which does ``fn.ops`` operations) per second, best of 3."""
    best = 0.0
    for _ in range(3):
        loops = 0
        start = time.perf_counter()
        deadline = start + seconds / 3
        while True:
            fn()
            loops += 1
            now = time.perf_counter()
            if now >= deadline:
                break
        best = max(best, loops * fn.ops / (now - start))
    return best


def _match_loop(sl: Sublist, subjects: list[str]):
    match = sl.match

    def run() -> None:
        for s in subjects:
            match(s)

    run.ops = len(subjects)
    return run


def bench_size(n: int, seconds: float, wildcards: bool) -> dict[str, float]:
    subjects = _subjects(n, wildcards)
    subs = [Subscription(s, None, None, i) for i, s in enumerate(subjects)]
    publish = [f"bench.{i}.temp" for i in range(n)]

    # Insert: a fresh sublist each round, timed over whole batches.
    gc.collect()
    best_insert = 0.0
    for _ in range(3):
        sl = Sublist()
        ins = sl.insert
        start = time.perf_counter()
        for sub in subs:
            ins(sub)
        best_insert = max(best_insert, n / (time.perf_counter() - start))

    sl = Sublist()
    for sub in subs:
        sl.insert(sub)

    # Hits: at most half the cache, warmed first.
    hot = publish[: DEFAULT_CACHE_MAX // 2]
    for s in hot:
        sl.match(s)
    hit = _rate(_match_loop(sl, hot), seconds)
    hits_before = sl.stats()

    pool = [f"bench.{i}.temp" for i in range(max(n, 4 * DEFAULT_CACHE_MAX))]
    sl.clear_cache()
    miss = _rate(_match_loop(sl, pool), seconds)
    st = sl.stats()
    miss_calls = st["num_matches"] - hits_before["num_matches"]
    hit_calls_after = st["cache_hit_rate"] * st["num_matches"]
    hit_calls_before = hits_before["cache_hit_rate"] * hits_before["num_matches"]
    miss_share = 1.0 - (hit_calls_after - hit_calls_before) / miss_calls

    walk_sl = Sublist(cache=False)
    for sub in subs:
        walk_sl.insert(sub)
    walk = _rate(_match_loop(walk_sl, publish[:100_000]), seconds)
    return {
        "insert": best_insert,
        "hit": hit,
        "miss": miss,
        "miss_share": miss_share,
        "walk": walk,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="10,1000,100000", help="comma-separated N values")
    ap.add_argument("--seconds", type=float, default=0.6, help="time per measurement")
    ap.add_argument("--wildcards", action="store_true", help="20%% of subs use * or >")
    ap.add_argument("--profile", action="store_true", help="profile the miss loop at max N")
    args = ap.parse_args(argv)
    sizes = [int(x) for x in args.sizes.split(",") if x]

    print(f"python {sys.version.split()[0]}, cache_max={DEFAULT_CACHE_MAX}")
    header = (
        f"{'subs':>8} {'insert/s':>12} {'hit/s':>12} {'miss/s':>12} {'miss%':>6} {'walk/s':>12}"
    )
    print(header)
    for n in sizes:
        r = bench_size(n, args.seconds, args.wildcards)
        print(
            f"{n:>8} {r['insert']:>12,.0f} {r['hit']:>12,.0f} {r['miss']:>12,.0f}"
            f" {100 * r['miss_share']:>5.0f}% {r['walk']:>12,.0f}"
        )

    if args.profile:
        n = max(sizes)
        sl = Sublist()
        for i, s in enumerate(_subjects(n, args.wildcards)):
            sl.insert(Subscription(s, None, None, i))
        pool = [f"bench.{i}.temp" for i in range(max(n, 4 * DEFAULT_CACHE_MAX))]
        run = _match_loop(sl, pool)
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(3):
            run()
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(8)
    return 0


if __name__ == "__main__":
    sys.exit(main())
