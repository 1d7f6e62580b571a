"""Sublist's reply-subject shortcut ("Reply subjects" in router/sublist.py): results kept
per head must always equal a fresh walk, whatever is inserted or removed meanwhile."""

from __future__ import annotations

from collections import Counter

from hybridbus.router import Sublist, Subscription


def sub(subject: str, queue: str | None = None) -> Subscription:
    return Subscription(subject, queue, object(), 1)


def same(a, b) -> bool:
    """Same receivers (the order may differ: an insert patches a cached result)."""
    return Counter(map(id, a.plain)) == Counter(map(id, b.plain)) and {
        frozenset(map(id, g)) for g in a.queues
    } == {frozenset(map(id, g)) for g in b.queues}


def check(sl: Sublist, ref: Sublist, subjects: list[str]) -> None:
    for subject in subjects:
        assert same(sl.match(subject), ref.match(subject)), subject


def both(*subs: Subscription) -> tuple[Sublist, Sublist]:
    sl, ref = Sublist(), Sublist(cache=False)
    for s in subs:
        sl.insert(s)
        ref.insert(s)
    return sl, ref


def test_inbox_replies_share_one_result_and_stay_exact():
    inbox = sub("_INBOX.abc.*")
    catch_all = sub(">")
    sl, ref = both(inbox, catch_all)
    replies = [f"_INBOX.abc.{i}" for i in range(50)]
    check(sl, ref, replies)
    assert sl._tails  # the head was seen twice and is open
    assert set(sl.match("_INBOX.abc.999").plain) == {inbox, catch_all}
    # a literal subscription on one reply: that subject gets it, the others do not
    lit = sub("_INBOX.abc.7")
    sl.insert(lit)
    ref.insert(lit)
    check(sl, ref, [*replies, "_INBOX.abc.7", "_INBOX.abc.x"])
    # a wildcard with a literal token after the head: the head is no longer open
    special = sub("_INBOX.*.special")
    sl.insert(special)
    ref.insert(special)
    check(sl, ref, [*replies, "_INBOX.abc.special", "_INBOX.abc.other", "_INBOX.abc.special"])
    for s in (special, lit, catch_all):
        sl.remove(s)
        ref.remove(s)
        check(sl, ref, [*replies, "_INBOX.abc.special", "_INBOX.abc.7"])


def test_token_counts_and_empty_tokens():
    a, b = sub("r.*"), sub("r.*.*")
    sl, ref = both(a, b, sub("r.>"))
    check(sl, ref, ["r.1", "r.2", "r.3", "r.1.1", "r.1.2", "r.1.3", "r.", "r..", "r.1.", ".r.1"])
    check(sl, ref, ["r.4", "r.", "r.1.", "r.1.4"])


def test_acks_share_one_result_and_stay_uncached():
    engine = sub("$JS.ACK.>")
    sl, ref = both(engine)
    acks = [f"$JS.ACK.S.C.1.{i}.{i}.1700000000.{100 - i}" for i in range(1, 40)]
    check(sl, ref, acks)
    assert sl.stats()["num_cache"] == 0  # acks stay out of the match cache
    check(sl, ref, ["$JS.ACK.S.C.1..2.3.4", "$JS.ACK.S.C.1.2.3.4.", "$JS.ACK.S.C.1.2.3.4.5.6.7"])
    spy = sub("$JS.ACK.S.>")
    sl.insert(spy)
    ref.insert(spy)
    check(sl, ref, [*acks, "$JS.ACK.T.C.1.1.1.1.1"])
    q = sub("$JS.ACK.*.*.*.*.*.*.*", queue="q")
    sl.insert(q)
    ref.insert(q)
    sl.remove(spy)
    ref.remove(spy)
    check(sl, ref, [*acks, *acks, "$JS.ACK.T.C.1.1.1.1.1"])


def test_cache_off_keeps_nothing():
    sl = Sublist(cache=False)
    sl.insert(sub("_INBOX.x.*"))
    for i in range(10):
        sl.match(f"_INBOX.x.{i}")
    assert not sl._tails
    sl2 = Sublist()
    sl2.insert(sub("_INBOX.x.*"))
    for i in range(10):
        sl2.match(f"_INBOX.x.{i}")
    sl2.set_cache(False)
    assert not sl2._tails


def test_match_each_equals_match_one_by_one():
    inbox, special = sub("_INBOX.a.*"), sub("_INBOX.*.special")
    sl, ref = both(inbox, sub("_INBOX.a.5"))
    subjects = [f"_INBOX.a.{i}" for i in range(10)]
    subjects += ["_INBOX.a.", "_INBOX.b.1", "_INBOX.a.x", "x", "_INBOX.a.special", "_INBOX.a.6"]
    for _ in range(3):
        got = sl.match_each(subjects)
        assert all(same(g, ref.match(s)) for g, s in zip(got, subjects, strict=True))
    sl.insert(special)
    ref.insert(special)
    got = sl.match_each(subjects)
    assert all(same(g, ref.match(s)) for g, s in zip(got, subjects, strict=True))


def test_match_acks_equals_match_one_by_one():
    engine = sub("$JS.ACK.>")
    sl, ref = both(engine)
    acks = [f"$JS.ACK.S.C.1.{i}.{i}.1700.{9 - i}" for i in range(10)]
    odd = ["$JS.ACK.S.C.1.2.3.4", "$JS.ACK.S.C.1..3.4.5", "$JS.ACK.S.C.1.2.3.4.", *acks]
    # after an ack whose result is reused: subjects with as many dots that are no acks,
    # or that a literal filter names
    subjects = [*acks, "x.y.z.a.b.c.d.e.f", *acks, "$JSXACK.S.C.1.5.5.1700.4", *odd]
    subjects += [*acks, "$JS.ACK.S.C.1.5.5.1700.4", "$JS.ACK.S.C.1.5.5.1700.5"]

    def check_run() -> None:
        for _ in range(3):  # the first runs open the tail, the next reuse it
            got = sl.match_acks(subjects)
            assert [same(g, ref.match(s)) for g, s in zip(got, subjects, strict=True)] == [
                True
            ] * len(subjects)

    check_run()
    changes = [
        sub("$JS.ACK.S.C.1.5.5.1700.4"),  # a literal filter on one ack
        sub("$JS.ACK.S.C.1.7.>"),  # a literal token below $JS.ACK: the tail closes
        sub("$JS.ACK.*.*.*.*.*.*.*", queue="q"),
        sub("x.y.z.a.b.c.d.e.f"),
        sub(">"),
    ]
    for s in changes:
        sl.insert(s)
        ref.insert(s)
        check_run()
    for s in changes:
        sl.remove(s)
        ref.remove(s)
        check_run()
