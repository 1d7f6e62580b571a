"""Property tests: Sublist.match against a naive matcher, under random inserts and removes.

Run with the cache on, off, and tiny (so that trimming happens all the time).
"""

from __future__ import annotations

from collections import Counter
from unittest.mock import patch

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hybridbus.router import Sublist, Subscription, sublist


def naive_match(filter_subject: str, subject: str) -> bool:
    """NATS semantics written out plainly: '*' one token, a last '>' one or more."""
    f = filter_subject.split(".")
    s = subject.split(".")
    if "" in s:
        return False
    for i, ft in enumerate(f):
        if ft == ">":
            return len(s) > i
        if i >= len(s):
            return False
        if ft != "*" and ft != s[i]:
            return False
    return len(f) == len(s)


def expected(live: list[Subscription], subject: str) -> tuple[Counter, set]:
    plain: Counter = Counter()
    groups: dict[tuple[str, str], set] = {}
    for s in live:
        if naive_match(s.subject, subject):
            if s.queue is None:
                plain[id(s)] += 1
            else:
                groups.setdefault((s.subject, s.queue), set()).add(id(s))
    return plain, {frozenset(g) for g in groups.values()}


def actual(r) -> tuple[Counter, set]:
    groups = [frozenset(id(s) for s in g) for g in r.queues]
    assert len(groups) == len(set(groups)), "a group is listed twice"
    for g in r.queues:
        assert len({(s.subject, s.queue) for s in g}) == 1, "group mixes filters or names"
    return Counter(id(s) for s in r.plain), set(groups)


# Few distinct tokens, so that filters and subjects overlap a lot.
TOKENS = st.sampled_from(["a", "b"])
PUB_TOKEN = st.one_of(TOKENS, TOKENS, st.sampled_from(["*", "", "c"]))
FILTER_TOKEN = st.one_of(TOKENS, TOKENS, st.just("*"))


@st.composite
def filter_subjects(draw) -> str:
    toks = draw(st.lists(FILTER_TOKEN, min_size=1, max_size=3))
    if draw(st.integers(0, 3)) == 0:
        toks[-1] = ">"
    return ".".join(toks)


publish_subjects = st.lists(PUB_TOKEN, min_size=1, max_size=5).map(".".join)
queues = st.one_of(st.none(), st.none(), st.sampled_from(["q1", "q2"]))

OPS = st.lists(
    st.one_of(
        st.tuples(st.just("insert"), filter_subjects(), queues),
        st.tuples(st.just("remove"), st.integers(0, 1000)),
        st.tuples(st.just("reinsert"), st.integers(0, 1000)),
        st.tuples(st.just("remove_unknown"), filter_subjects(), queues),
        st.tuples(st.just("match"), publish_subjects),
        st.tuples(st.just("match"), publish_subjects),
    ),
    max_size=60,
)

CONFIGS = {
    "cache": dict(cache=True),
    "nocache": dict(cache=False),
    "tinycache": dict(cache=True, cache_max=3, cache_sweep=1),
}


@pytest.mark.parametrize("config", list(CONFIGS))
@settings(max_examples=200, deadline=None)
@given(ops=OPS)
def test_match_agrees_with_naive_matcher(config, ops):
    sl = Sublist(**CONFIGS[config])
    history: list[Subscription] = []
    live: list[Subscription] = []
    handed_out = []
    genid = sl.genid
    for op in ops:
        kind = op[0]
        if kind == "insert":
            s = Subscription(op[1], op[2], None, len(history))
            sl.insert(s)
            history.append(s)
            live.append(s)
            assert sl.genid > genid
        elif kind in ("remove", "reinsert") and history:
            s = history[op[1] % len(history)]
            was_live = any(x is s for x in live)
            if kind == "remove":
                assert sl.remove(s) is was_live
                if was_live:
                    live.remove(s)
                    assert sl.genid > genid
            else:
                sl.insert(s)
                if not was_live:
                    live.append(s)
                    assert sl.genid > genid
        elif kind == "remove_unknown":
            assert sl.remove(Subscription(op[1], op[2], None, "x")) is False
        elif kind == "match":
            r = sl.match(op[1])
            assert actual(r) == expected(live, op[1])
            handed_out.append((r, list(r.plain), [list(g) for g in r.queues]))
        if kind != "match":
            assert sl.genid >= genid
        genid = sl.genid
        assert sl.count() == len(live)
    # Results handed out earlier never changed under later inserts and removes.
    for r, plain, groups in handed_out:
        assert r.plain == plain
        assert r.queues == groups
    assert sorted(map(id, sl.subscriptions())) == sorted(map(id, live))
    stats = sl.stats()
    assert stats["num_inserts"] - stats["num_removes"] == len(live)
    if not sl.cache_enabled:
        assert stats["num_cache"] == 0
    # Removing everything leaves empty indexes behind.
    for s in live:
        assert sl.remove(s)
    assert sl._root.is_empty()
    assert not sl._lit


cache_keys = st.lists(
    st.lists(st.sampled_from(["a", "b", "ab", "*", ""]), min_size=1, max_size=4).map(".".join),
    max_size=80,
    unique=True,
)
wild_filters = filter_subjects().filter(lambda f: "*" in f.split(".") or f.endswith(">"))


KEY_TOKEN = st.sampled_from(["a", "b", "ab", "*"])


@st.composite
def instances(draw, filter_subject: str) -> list[str]:
    """Subjects the filter matches (so that matching keys are plentiful and adjacent)."""
    out = []
    for _ in range(draw(st.integers(0, 40))):
        toks = []
        for t in filter_subject.split("."):
            if t == "*":
                toks.append(draw(KEY_TOKEN))
            elif t == ">":
                toks.extend(draw(st.lists(KEY_TOKEN, min_size=1, max_size=2)))
            else:
                toks.append(t)
        out.append(".".join(toks))
    return out


@settings(max_examples=200, deadline=None)
@given(
    data=st.data(),
    keys=cache_keys,
    odd=st.sampled_from([[], ["a.x\ny"], ["a.b\n"]]),
    filter_subject=wild_filters,
    few=st.sampled_from([0, sublist._FEW_CANDIDATES, 10**9]),
)
def test_cached_key_search_agrees_with_naive_matcher(data, keys, odd, filter_subject, few):
    # The search has three ways: find() over the joined keys unless a key holds a
    # newline, then a token-by-token check for few candidates or a regex for many.
    # ``few`` forces each of the last two.
    hits = data.draw(instances(filter_subject))
    mixed = data.draw(st.permutations(keys + hits))
    cache = dict.fromkeys(mixed + odd)
    with patch.object(sublist, "_FEW_CANDIDATES", few):
        got = sublist._cached_matches(cache, filter_subject.split("."))
    assert sorted(got) == sorted(k for k in cache if naive_match(filter_subject, k))
