"""Sublist behaviour, case by case. Every test using ``sl`` runs with the cache on and off."""

from __future__ import annotations

import gc
import weakref

import pytest

from hybridbus.router import Sublist, SublistResult, Subscription


def sub(subject: str, queue: str | None = None, sid: object = None) -> Subscription:
    return Subscription(subject, queue, None, sid if sid is not None else subject)


def match(sl: Sublist, subject: str) -> SublistResult:
    """Match twice (miss then, with the cache on, hit) and check both agree."""
    first = sl.match(subject)
    second = sl.match(subject)
    assert shape(first) == shape(second)
    return second


def shape(r: SublistResult) -> tuple[frozenset, frozenset]:
    """Order-free view of a result: plain sub ids, and the set of groups as id sets."""
    assert len(r.plain) == len({id(s) for s in r.plain}), "duplicate plain sub"
    groups = [frozenset(id(s) for s in g) for g in r.queues]
    assert all(groups), "empty queue group"
    return frozenset(id(s) for s in r.plain), frozenset(groups)


def plain_ids(*subs: Subscription) -> frozenset:
    return frozenset(id(s) for s in subs)


def insert_all(sl: Sublist, *subs: Subscription) -> None:
    for s in subs:
        sl.insert(s)


# -- matching --------------------------------------------------------------


def test_literal_match(sl):
    a, b = sub("foo.bar"), sub("foo.baz")
    insert_all(sl, a, b)
    assert shape(match(sl, "foo.bar")) == (plain_ids(a), frozenset())
    assert shape(match(sl, "foo.baz")) == (plain_ids(b), frozenset())
    assert shape(match(sl, "foo")) == (frozenset(), frozenset())
    assert shape(match(sl, "foo.bar.baz")) == (frozenset(), frozenset())


def test_pwc_matches_exactly_one_token(sl):
    s = sub("foo.*.baz")
    sl.insert(s)
    assert shape(match(sl, "foo.bar.baz"))[0] == plain_ids(s)
    assert shape(match(sl, "foo.x.baz"))[0] == plain_ids(s)
    assert not match(sl, "foo.baz").plain
    assert not match(sl, "foo.a.b.baz").plain
    assert not match(sl, "foo.bar.baz.x").plain


def test_fwc_matches_one_or_more_trailing_tokens(sl):
    s = sub("foo.>")
    sl.insert(s)
    assert shape(match(sl, "foo.bar"))[0] == plain_ids(s)
    assert shape(match(sl, "foo.bar.baz.qux"))[0] == plain_ids(s)
    # '>' needs at least one token after 'foo'.
    assert not match(sl, "foo").plain
    assert not match(sl, "bar.foo").plain


def test_lone_fwc_and_pwc(sl):
    everything, one = sub(">"), sub("*")
    insert_all(sl, everything, one)
    assert shape(match(sl, "a"))[0] == plain_ids(everything, one)
    assert shape(match(sl, "a.b.c"))[0] == plain_ids(everything)


def test_wildcards_inside_a_token_are_literal(sl):
    # Only a whole token '*' or '>' is a wildcard, as in nats-server.
    star, gt = sub("foo.b*"), sub("foo.b>")
    insert_all(sl, star, gt)
    assert shape(match(sl, "foo.b*"))[0] == plain_ids(star)
    assert shape(match(sl, "foo.b>"))[0] == plain_ids(gt)
    assert not match(sl, "foo.bar").plain
    assert not match(sl, "foo.b").plain


def test_overlapping_filters_all_match(sl):
    subs = [sub(s) for s in ("a.b.c", "a.*.c", "a.b.*", "*.b.c", "a.>", ">", "a.*.>", "*.*.*")]
    insert_all(sl, *subs)
    others = [sub(s) for s in ("a.b", "a.b.c.d", "b.>", "a.*", "x.*.c")]
    insert_all(sl, *others)
    assert shape(match(sl, "a.b.c"))[0] == plain_ids(*subs)


def test_publish_subject_with_wildcard_token_is_taken_literally(sl):
    # A non-pedantic NATS client may publish to "a.*": '*' is then an ordinary token
    # that only wildcards (and no literal filter) match.
    lit, pwc, fwc = sub("a.b"), sub("a.*"), sub("a.>")
    insert_all(sl, lit, pwc, fwc)
    assert shape(match(sl, "a.*"))[0] == plain_ids(pwc, fwc)
    assert shape(match(sl, "a.>"))[0] == plain_ids(pwc, fwc)


@pytest.mark.parametrize("subject", ["", ".", "a..b", ".a", "a.", "..", "a.b."])
def test_subject_with_empty_token_matches_nothing(sl, subject):
    insert_all(sl, sub(">"), sub("*"), sub("a.*.b"), sub("a.>"), sub("a.b"))
    assert shape(match(sl, subject)) == (frozenset(), frozenset())


def test_empty_token_subject_stays_unmatched_after_wildcard_insert(sl):
    # With only literal filters a miss does not split the subject; a cached "a..b"
    # must not pick up a later '>' subscription.
    sl.insert(sub("a.b"))
    assert not match(sl, "a..b").plain
    sl.insert(sub(">"))
    sl.insert(sub("a.>"))
    assert not match(sl, "a..b").plain


def test_same_subject_several_subscriptions(sl):
    a, b, c = sub("x.y", sid=1), sub("x.y", sid=2), sub("x.*", sid=3)
    insert_all(sl, a, b, c)
    assert shape(match(sl, "x.y"))[0] == plain_ids(a, b, c)


def test_non_ascii_and_odd_tokens(sl):
    s = sub("é.%2E.日本.a*b.%")
    sl.insert(s)
    assert shape(match(sl, "é.%2E.日本.a*b.%"))[0] == plain_ids(s)
    assert not match(sl, "é.%2e.日本.a*b.%").plain


# -- insert / remove ---------------------------------------------------------


@pytest.mark.parametrize(
    "subject",
    ["", "a..b", ".a", "a.", "a.>.b", ">.a", "a b", "a\tb", "a\nb", "a\rb", "a\fb", " ", "a.b "],
)
def test_insert_invalid_subject_raises(sl, subject):
    with pytest.raises(ValueError):
        sl.insert(sub(subject))
    assert sl.count() == 0
    assert sl.genid == 0


@pytest.mark.parametrize("queue", ["", "q 1", "q\t", "\n"])
def test_insert_invalid_queue_raises(sl, queue):
    with pytest.raises(ValueError):
        sl.insert(sub("a.b", queue))
    assert sl.count() == 0


def test_insert_non_string_subject_raises(sl):
    with pytest.raises(ValueError):
        sl.insert(Subscription(b"a.b", None, None, 1))  # type: ignore[arg-type]


def test_remove(sl):
    a, b = sub("a.b"), sub("a.*")
    insert_all(sl, a, b)
    assert shape(match(sl, "a.b"))[0] == plain_ids(a, b)
    assert sl.remove(a) is True
    assert shape(match(sl, "a.b"))[0] == plain_ids(b)
    assert sl.remove(b) is True
    assert shape(match(sl, "a.b")) == (frozenset(), frozenset())
    assert sl.count() == 0


def test_remove_unknown_returns_false(sl):
    a = sub("a.b")
    sl.insert(a)
    genid = sl.genid
    # Never inserted, equal-looking but another object, wrong queue, unknown path.
    assert sl.remove(sub("a.b")) is False
    assert sl.remove(sub("a.b", "q")) is False
    assert sl.remove(sub("a.*")) is False
    assert sl.remove(sub("x.y.z")) is False
    assert sl.remove(Subscription(None, None, None, 1)) is False  # type: ignore[arg-type]
    assert sl.genid == genid
    assert sl.count() == 1
    assert sl.remove(a) is True
    assert sl.remove(a) is False
    assert sl.count() == 0


def test_duplicate_insert_is_a_noop(sl):
    a, q = sub("a.b"), sub("a.*", "g")
    insert_all(sl, a, q)
    genid = sl.genid
    insert_all(sl, a, q)
    assert sl.genid == genid
    assert sl.count() == 2
    r = match(sl, "a.b")
    assert r.plain == [a]
    assert r.queues == [[q]]
    assert sl.remove(a) and sl.remove(q)
    assert sl.count() == 0


def test_remove_prunes_empty_nodes(sl):
    subs = [sub(f"p.{i}.{s}") for i in range(50) for s in ("*", ">", "x", "y.z")]
    subs += [sub(f"q.{i}", "g") for i in range(20)]
    insert_all(sl, *subs)
    for s in subs:
        match(sl, s.subject.replace("*", "w").replace(">", "w"))
    for s in subs:
        assert sl.remove(s)
    assert sl._root.is_empty()
    assert not sl._lit
    assert list(sl.subscriptions()) == []


def test_subscriptions_lists_every_sub_and_is_a_snapshot(sl):
    subs = [sub("a.b"), sub("a.*"), sub(">"), sub("a.b", "q"), sub("a.b", "q"), sub("c.>", "r")]
    insert_all(sl, *subs)
    seen = []
    for s in sl.subscriptions():
        seen.append(s)
        sl.remove(s)  # mutating while iterating is allowed
    assert sorted(map(id, seen)) == sorted(map(id, subs))
    assert sl.count() == 0


def test_subclass_with_own_slots_and_weakref(sl):
    class MqttSub(Subscription):
        __slots__ = ("qos",)

        def __init__(self, subject, qos):
            super().__init__(subject, None, None, subject)
            self.qos = qos

    s = MqttSub("t.*", 1)
    sl.insert(s)
    assert match(sl, "t.x").plain == [s]
    assert match(sl, "t.x").plain[0].qos == 1
    ref = weakref.ref(s)
    assert sl.remove(s)
    sl.clear_cache()
    del s
    gc.collect()
    assert ref() is None, "the sublist kept a removed subscription alive"


# -- queue groups --------------------------------------------------------------


def test_same_queue_same_subject_is_one_group(sl):
    q1, q2, p = sub("foo.*", "q", 1), sub("foo.*", "q", 2), sub("foo.bar", None, 3)
    insert_all(sl, q1, q2, p)
    assert shape(match(sl, "foo.bar")) == (plain_ids(p), frozenset([plain_ids(q1, q2)]))


def test_different_queue_names_are_different_groups(sl):
    a1, a2, b1 = sub("foo", "a", 1), sub("foo", "a", 2), sub("foo", "b", 3)
    insert_all(sl, a1, a2, b1)
    assert shape(match(sl, "foo")) == (frozenset(), frozenset([plain_ids(a1, a2), plain_ids(b1)]))


def test_same_queue_name_on_different_filters_are_different_groups(sl):
    # Grouping is per filter subject (per trie node), as MQTT shared subscriptions are.
    w, l1, l2 = sub("foo.*", "q", 1), sub("foo.bar", "q", 2), sub("foo.bar", "q", 3)
    insert_all(sl, w, l1, l2)
    assert shape(match(sl, "foo.bar"))[1] == frozenset([plain_ids(w), plain_ids(l1, l2)])
    assert shape(match(sl, "foo.baz"))[1] == frozenset([plain_ids(w)])


def test_queue_member_removal(sl):
    q1, q2 = sub("foo", "q", 1), sub("foo", "q", 2)
    insert_all(sl, q1, q2)
    assert shape(match(sl, "foo"))[1] == frozenset([plain_ids(q1, q2)])
    sl.remove(q1)
    assert shape(match(sl, "foo"))[1] == frozenset([plain_ids(q2)])
    sl.remove(q2)
    assert match(sl, "foo").queues == []


def test_queue_and_plain_on_the_same_subject(sl):
    p, q = sub("foo.>"), sub("foo.>", "workers")
    insert_all(sl, p, q)
    r = match(sl, "foo.x.y")
    assert r.plain == [p]
    assert r.queues == [[q]]
    assert len(r) == 2


# -- the cache -------------------------------------------------------------------


def test_cache_is_patched_on_insert_and_old_results_stay_as_they_were(sl):
    a, q1 = sub("a.b"), sub("a.b", "q")
    insert_all(sl, a, q1)
    before = sl.match("a.b")
    q2 = sub("a.b", "q")
    for new in (sub("a.b"), sub("a.*"), sub(">"), q2, sub("*.b", "q"), sub("a.b", "r")):
        sl.insert(new)
    after = match(sl, "a.b")
    assert len(after.plain) == 4
    assert sorted(len(g) for g in after.queues) == [1, 1, 2]
    assert plain_ids(q1, q2) in shape(after)[1]
    # A result handed out earlier is never mutated.
    assert before.plain == [a]
    assert before.queues == [[q1]]


@pytest.mark.parametrize(
    ("filter_subject", "matching"),
    [
        ("a.*", {"a.b", "a.c", "a.*"}),
        ("a.>", {"a.b", "a.c", "a.b.c", "a.b.c.d", "a.*"}),
        ("*.b", {"a.b", "x.b", "ab.b"}),
        ("*.*.c", {"a.b.c"}),
        ("a.*.>", {"a.b.c", "a.b.c.d"}),
        (">", {"a", "a.b", "a.c", "a.b.c", "a.b.c.d", "x.b", "a.*", "b.a.b", "ab.b"}),
        ("a", {"a"}),
        ("a.b.c", {"a.b.c"}),
    ],
)
def test_cache_patch_touches_exactly_the_matching_entries(sl, filter_subject, matching):
    # "a..b" has an empty token: nothing matches it, '>' included.
    subjects = ["a", "a.b", "a.c", "a.b.c", "a.b.c.d", "x.b", "a.*", "b.a.b", "a..b", "ab.b"]
    for s in subjects:
        match(sl, s)
    new = sub(filter_subject)
    sl.insert(new)
    got = {s for s in subjects if new in sl.match(s).plain}
    assert got == matching
    assert sl.remove(new)
    assert not any(sl.match(s).plain for s in subjects)


def test_cache_drops_entries_on_remove(sl):
    w, lit, q = sub("a.*"), sub("a.b"), sub("a.>", "q")
    insert_all(sl, w, lit, q)
    for s in ("a.b", "a.c", "a.b.c", "x"):
        match(sl, s)
    sl.remove(w)
    assert shape(match(sl, "a.b")) == (plain_ids(lit), frozenset([plain_ids(q)]))
    assert shape(match(sl, "a.c")) == (frozenset(), frozenset([plain_ids(q)]))
    sl.remove(q)
    assert shape(match(sl, "a.b.c")) == (frozenset(), frozenset())
    sl.remove(lit)
    assert shape(match(sl, "a.b")) == (frozenset(), frozenset())


def test_cache_hit_returns_the_same_object():
    sl = Sublist()
    sl.insert(sub("a.*"))
    assert sl.match("a.b") is sl.match("a.b")


def test_cache_is_bounded():
    sl = Sublist(cache_max=8, cache_sweep=4)
    s = sub("a.*")
    sl.insert(s)
    for i in range(100):
        assert sl.match(f"a.{i}").plain == [s]
        assert sl.stats()["num_cache"] <= 8
    # Recent subjects survive a trim; the oldest are gone.
    assert sl.stats()["num_cache"] >= 4
    assert "a.99" in sl._cache
    assert "a.0" not in sl._cache


def test_jetstream_acks_are_matched_but_not_cached():
    # One subject per delivery: caching them would only evict the hot subjects.
    sl = Sublist()
    acks, hot = sub("$JS.ACK.>"), sub("hot")
    sl.insert(acks)
    sl.insert(hot)
    sl.match("hot")
    for i in range(2000):
        assert sl.match(f"$JS.ACK.S.C.1.{i}.{i}.0.0").plain == [acks]
    assert set(sl._cache) == {"hot"}
    assert sl.match("hot").plain == [hot]


def test_cache_off_keeps_nothing():
    sl = Sublist(cache=False)
    sl.insert(sub("a.b"))
    for _ in range(3):
        sl.match("a.b")
    st = sl.stats()
    assert st["num_cache"] == 0
    assert st["cache_hit_rate"] == 0.0
    assert st["num_matches"] == 3


def test_set_cache_toggles():
    sl = Sublist()
    s = sub("a.b")
    sl.insert(s)
    sl.match("a.b")
    assert sl.stats()["num_cache"] == 1
    sl.set_cache(False)
    assert not sl.cache_enabled
    assert sl.stats()["num_cache"] == 0
    assert sl.match("a.b").plain == [s]
    assert sl.stats()["num_cache"] == 0
    sl.set_cache(True)
    sl.match("a.b")
    assert sl.stats()["num_cache"] == 1


def test_bad_cache_max():
    with pytest.raises(ValueError):
        Sublist(cache_max=0)


# -- genid, count, stats ---------------------------------------------------------


def test_genid_moves_on_every_change(sl):
    seen = [sl.genid]
    a, b = sub("a.b"), sub("a.*", "q")
    for op in (lambda: sl.insert(a), lambda: sl.insert(b), lambda: sl.remove(a)):
        op()
        assert sl.genid > seen[-1]
        seen.append(sl.genid)
    sl.match("a.b")
    sl.remove(a)  # already gone
    assert sl.genid == seen[-1]
    sl.remove(b)
    assert sl.genid > seen[-1]


def test_count(sl):
    subs = [sub("a"), sub("a"), sub("a.*", "q"), sub(">")]
    for i, s in enumerate(subs, 1):
        sl.insert(s)
        assert sl.count() == i == len(sl)
    for i, s in enumerate(subs, 1):
        sl.remove(s)
        assert sl.count() == len(subs) - i


def test_stats_fields_and_types(sl):
    st = sl.stats()
    assert list(st) == [
        "num_subscriptions",
        "num_cache",
        "num_inserts",
        "num_removes",
        "num_matches",
        "cache_hit_rate",
        "max_fanout",
        "avg_fanout",
    ]
    assert all(type(st[k]) is int for k in st if k not in ("cache_hit_rate", "avg_fanout"))
    assert type(st["cache_hit_rate"]) is float
    assert type(st["avg_fanout"]) is float
    assert st["num_subscriptions"] == st["num_matches"] == 0


def test_stats_counts(sl):
    a, b, c = sub("a.b"), sub("a.*"), sub("a.*", "q")
    insert_all(sl, a, b, c)
    sl.remove(a)
    for _ in range(4):
        sl.match("a.b")
    sl.match("z")
    st = sl.stats()
    assert st["num_subscriptions"] == 2
    assert st["num_inserts"] == 3
    assert st["num_removes"] == 1
    assert st["num_matches"] == 5
    if sl.cache_enabled:
        # Misses: the first "a.b" and "z"; hits: the other three.
        assert st["cache_hit_rate"] == pytest.approx(3 / 5)
        assert st["num_cache"] == 2
        # Fanout over cached results: "a.b" -> 1 plain + 1 group = 2, "z" -> 0.
        assert st["max_fanout"] == 2
        assert st["avg_fanout"] == pytest.approx(1.0)
    else:
        assert st["cache_hit_rate"] == 0.0
        assert st["num_cache"] == 0
        assert st["max_fanout"] == 0
        assert st["avg_fanout"] == 0.0


@pytest.mark.parametrize("n", [5, 200])
def test_cache_patch_with_many_cached_subjects(sl, n):
    # 200 candidates take the regex path, 5 the token-by-token path.
    subjects = [f"a.{i}" for i in range(n)] + [f"a.{i}.x" for i in range(n)] + ["b.1", "ab.1"]
    for s in subjects:
        match(sl, s)
    one, many, lead = sub("a.*"), sub("a.>"), sub("*.1")
    insert_all(sl, one, many, lead)
    for s in subjects:
        want = {one, many} if s.count(".") == 1 and s.startswith("a.") else set()
        if s.startswith("a.") and s.count(".") == 2:
            want = {many}
        if s.split(".")[1] == "1" and s.count(".") == 1:
            want = want | {lead}
        assert set(sl.match(s).plain) == want, s
    sl.remove(many)
    assert set(sl.match("a.3.x").plain) == set()
    assert set(sl.match("a.3").plain) == {one}


def test_cached_subject_with_a_newline_is_patched_too(sl):
    # Not a valid subject, but match() does not check: the cache must still agree
    # with the walk, which lets '*' take the token "b\nc".
    odd = "a.b\nc"
    sl.insert(sub("a.x"))
    assert not match(sl, odd).plain
    s = sub("a.*")
    sl.insert(s)
    assert match(sl, odd).plain == [s]
    sl.remove(s)
    assert not match(sl, odd).plain


def test_very_deep_wildcard_subjects_do_not_recurse(sl):
    # Thousands of "*" tokens (a SUB line of about 6 KB) must not hit the recursion
    # limit in match, insert, remove or the cache patch.
    depth = 3000
    deep_pwc = sub(".".join(["*"] * depth))
    deep_fwc = sub(".".join(["a"] * (depth - 1) + [">"]))
    subject = ".".join(["a"] * depth)
    match(sl, subject)
    insert_all(sl, deep_pwc, deep_fwc)
    assert shape(match(sl, subject))[0] == plain_ids(deep_pwc, deep_fwc)
    assert sl.remove(deep_pwc) and sl.remove(deep_fwc)
    assert not match(sl, subject).plain
