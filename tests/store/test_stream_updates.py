"""Stream config updates the JetStream API relies on (nats-server's configUpdateCheck)."""

from __future__ import annotations

import pytest

from hybridbus.store import StreamConfig
from hybridbus.store import errors as E


def test_retention_limits_to_interest_and_back(store):
    st = store.add_stream(StreamConfig(name="R", subjects=["r.>"]))
    st.append("r.a", b"1")
    st.append("r.b", b"2")
    # to interest: nothing needs the stored messages (no consumer), so they go
    store.update_stream(StreamConfig(name="R", subjects=["r.>"], retention="interest"))
    assert st.state().messages == 0
    assert st.config.retention == "interest"
    store.update_stream(StreamConfig(name="R", subjects=["r.>"], retention="limits"))
    st.append("r.a", b"3")
    assert st.state().messages == 1


@pytest.mark.parametrize("old, new", [("limits", "workqueue"), ("workqueue", "interest")])
def test_retention_to_or_from_workqueue_is_refused(store, old, new):
    store.add_stream(StreamConfig(name="W", subjects=["w"], retention=old))
    with pytest.raises(E.InvalidConfig) as ei:
        store.update_stream(StreamConfig(name="W", subjects=["w"], retention=new))
    assert ei.value.description == (
        "stream configuration update can not change retention policy to/from workqueue"
    )


def test_a_fed_stream_keeps_no_duplicate_window(store):
    # nats-server leaves duplicate_window unset for a mirror or a sourcing stream
    st = store.add_stream(StreamConfig(name="M", extra={"mirror": {"name": "O"}}))
    assert st.config.duplicate_window == 0.0
    assert st.config.subjects == []
    own = store.add_stream(StreamConfig(name="O", subjects=["o"]))
    assert own.config.duplicate_window == 120.0


def test_filter_trie_finds_the_colliding_filters():
    import random

    from hybridbus.store.match import FilterTrie, filters_overlap

    rnd = random.Random(7)

    def one() -> str:
        toks = [rnd.choice(["a", "b", "*"]) for _ in range(rnd.randint(1, 4))]
        if rnd.random() < 0.3:
            toks[-1] = ">"
        return ".".join(toks)

    for _ in range(2000):
        stored = [one() for _ in range(6)]
        query = one()
        trie = FilterTrie()
        for i, f in enumerate(stored):
            trie.add(f, i)
        expect = [i for i, f in enumerate(stored) if filters_overlap(query, f)]
        assert sorted(trie.colliding(query)) == expect, (query, stored)


def test_overlap_checks_stay_fast_with_many_subjects(store):
    import time

    big = [f"big.{i}" for i in range(20000)]
    started = time.monotonic()
    store.add_stream(StreamConfig(name="BIG", subjects=big))
    store.add_stream(StreamConfig(name="OTHER", subjects=[f"other.{i}" for i in range(20000)]))
    with pytest.raises(E.SubjectsOverlap):
        store.add_stream(StreamConfig(name="X", subjects=["x", "big.19999"]))
    assert time.monotonic() - started < 3


def test_rfc3339_is_gos_rfc3339nano():
    from hybridbus.store.api import parse_rfc3339, rfc3339

    assert rfc3339(1_795_313_256_658_128_180) == "2026-11-22T02:07:36.65812818Z"
    assert rfc3339(1_795_313_256_000_000_000) == "2026-11-22T02:07:36Z"
    assert rfc3339(1_795_313_256_000_000_001) == "2026-11-22T02:07:36.000000001Z"
    for ns in (1_795_313_256_658_128_180, 1_795_313_256_000_000_000, 1):
        assert parse_rfc3339(rfc3339(ns)) == ns


def test_count_after(store):
    st = store.add_stream(StreamConfig(name="C", subjects=["c.>"]))
    for subject in ("c.a", "c.b", "c.a", "c.c"):
        st.append(subject, b"x")
    assert [st.count_after(n) for n in (0, 1, 3, 4)] == [4, 3, 1, 0]
    assert st.count_after(1, "c.a") == 1 and st.count_after(0, "c.*") == 4
