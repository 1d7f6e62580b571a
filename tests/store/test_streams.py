"""Stream behaviour, run over the memory and the file store alike."""

from __future__ import annotations

import time

import pytest

from hybridbus.store import StreamConfig, decode_headers, encode_headers
from hybridbus.store import errors as E
from hybridbus.subjects import subject_matches


def cfg(name="S", subjects=("s.>",), **kw) -> StreamConfig:
    return StreamConfig(name=name, subjects=list(subjects), **kw)


def stored(st, subject: str, payload: bytes, headers: bytes = b"") -> int:
    """What stream ``st`` counts for a message: nats-server's memStoreMsgSize (subject +
    headers + payload + 16) or fileStoreMsgSize (subject + payload + 30, and headers
    + 4 with headers), by the stream's storage."""
    if st.storage_kind == "file":
        return len(subject) + len(payload) + 30 + (len(headers) + 4 if headers else 0)
    return len(subject) + len(headers) + len(payload) + 16


def test_append_assigns_sequences_and_keeps_every_field(store):
    st = store.add_stream(cfg())
    assert [st.append("s.a", b"1"), st.append("s.b", b"2", {"X-Y": "z"})] == [1, 2]
    m = st.get(2)
    assert (m.seq, m.subject, m.payload) == (2, "s.b", b"2")
    assert m.headers == b"NATS/1.0\r\nX-Y: z\r\n\r\n"
    assert decode_headers(m.headers) == {"X-Y": ["z"]}
    assert abs(m.ts_ns - time.time_ns()) < 5e9
    assert st.get(1).ts_ns <= m.ts_ns
    raw = b"NATS/1.0\r\nA: 1\r\nA: 2\r\n\r\n"
    seq = st.append("s.c", b"", raw)
    assert st.get(seq).headers == raw  # stored byte for byte
    assert decode_headers(raw) == {"A": ["1", "2"]}
    assert encode_headers({"A": ["1", "2"]}) == raw


def test_defaults_follow_jetstream(store):
    st = store.add_stream(StreamConfig(name="ORDERS"))
    c = st.config
    assert c.subjects == ["ORDERS"]
    assert (c.retention, c.storage, c.discard, c.num_replicas) == ("limits", "file", "old", 1)
    assert (c.max_msgs, c.max_bytes, c.max_msgs_per_subject, c.max_msg_size, c.max_consumers) == (
        -1,
        -1,
        -1,
        -1,
        -1,
    )
    assert c.duplicate_window == 120.0
    assert store.add_stream(cfg("A", max_age=30.0)).config.duplicate_window == 30.0
    s = st.state()
    assert (s.messages, s.bytes, s.first_seq, s.last_seq, s.consumer_count) == (0, 0, 0, 0, 0)


def test_stream_management_errors(store):
    st = store.add_stream(cfg("ORDERS", ["orders.>"]))
    assert store.add_stream(cfg("ORDERS", ["orders.>"])) is st  # identical: fine
    with pytest.raises(E.StreamNameInUse) as ei:
        store.add_stream(cfg("ORDERS", ["orders.>"], max_msgs=5))
    assert (ei.value.code, ei.value.err_code) == (400, 10058)
    with pytest.raises(E.SubjectsOverlap) as ei:
        store.add_stream(cfg("OTHER", ["orders.*.x"]))
    assert ei.value.err_code == 10065
    with pytest.raises(E.StreamNotFound) as ei:
        store.stream("nope")
    assert ei.value.to_error() == {
        "code": 404,
        "err_code": 10059,
        "description": "stream not found",
    }
    for bad in ("a.b", "a b", "a/b", "a*", ""):
        with pytest.raises(E.InvalidConfig):
            store.add_stream(cfg(bad, ["x"]))
    with pytest.raises(E.InvalidConfig):
        store.add_stream(cfg("BAD", ["a..b"]))
    assert [s.name for s in store.streams()] == ["ORDERS"]
    store.delete_stream("ORDERS")
    with pytest.raises(E.StreamNotFound):
        store.delete_stream("ORDERS")
    st2 = store.add_stream(cfg("ORDERS", ["orders.>"]))
    assert st2.state().last_seq == 0


def test_append_rejects_subjects_outside_the_stream(store):
    st = store.add_stream(cfg("S", ["s.*"]))
    with pytest.raises(E.StoreError):
        st.append("s.a.b", b"")
    with pytest.raises(E.StoreError):
        st.append("s..a", b"")
    with pytest.raises(E.StoreError):
        st.append("s.a b", b"")
    assert st.state().messages == 0
    # a `*` or `>` token is stored literally (nats-server's non-pedantic publish of
    # `s.*` is a normal publish), and matched token by token
    assert st.append("s.*", b"") == 1
    assert st.append("s.>", b"") == 2
    with pytest.raises(E.StoreError):
        st.append("s.>.b", b"")
    assert st.state().messages == 2
    assert store.stream_for_subject("s.a") is st
    assert store.stream_for_subject("t.a") is None


def test_last_next_and_filtered_iteration(store):
    st = store.add_stream(cfg("S", ["s.>"]))
    subjects = ["s.a.1", "s.b.1", "s.a.2", "s.b.2", "s.a.1", "s.c"]
    for i, s in enumerate(subjects):
        st.append(s, str(i).encode())
    assert st.last("s.a.1").seq == 5
    assert st.last("s.b.*").seq == 4
    assert st.last("s.>").seq == 6
    with pytest.raises(E.MsgNotFound) as ei:
        st.last("s.zzz")
    assert ei.value.err_code == 10037
    assert st.next_msg(2, "s.a.*").seq == 3
    assert st.next_msg(4).seq == 4
    with pytest.raises(E.MsgNotFound):
        st.next_msg(6, "s.a.>")
    assert [m.seq for m in st.iter(0, "s.a.*")] == [1, 3, 5]
    assert [m.seq for m in st.iter(2, "s.*.1")] == [2, 5]
    assert [m.seq for m in st.iter(0, "s.>")] == [1, 2, 3, 4, 5, 6]
    assert [m.seq for m in st.iter(4)] == [4, 5, 6]
    assert st.subjects() == {"s.a.1": 2, "s.b.1": 1, "s.a.2": 1, "s.b.2": 1, "s.c": 1}
    assert st.subjects("s.b.*") == {"s.b.1": 1, "s.b.2": 1}


def test_delete_many_skips_gone_seqs(store):
    st = store.add_stream(cfg())
    for i in range(8):
        st.append("s.x" if i % 2 else "s.y", b"%d" % i)
    st.delete(2)
    assert st.delete_many([1, 2, 3, 3, 8, 99]) == 3  # 2 was gone, 3 repeated, 99 never was
    s = st.state()
    assert (s.messages, s.first_seq, s.last_seq) == (4, 4, 8)
    assert [m.seq for m in st.iter()] == [4, 5, 6, 7]
    assert st.subjects() == {"s.x": 2, "s.y": 2}
    assert st.delete_many([]) == 0
    dd = store.add_stream(cfg("KV", ["kv.>"], deny_delete=True))
    dd.append("kv.a", b"1")
    with pytest.raises(E.DeleteNotPermitted):
        dd.delete_many([1])


@pytest.mark.parametrize("seed", range(6))
def test_delete_many_equals_one_by_one(store, seed):
    # Runs of consecutive seqs take a sliced path; whatever the mix (subjects
    # interleaved, seqs already gone, runs across block edges), the result must be
    # that of deleting each seq alone.
    import random

    rnd = random.Random(seed)
    a = store.add_stream(cfg("A", ["a.>"]))
    b = store.add_stream(cfg("B", ["b.>"]))
    t, left = "x", 0
    for i in range(5000):
        if not left:  # the subject changes every 1 to 700 messages
            t, left = rnd.choice("xy"), rnd.choice([1, 3, 100, 700])
        left -= 1
        a.append(f"a.{t}", b"%d" % i)
        b.append(f"b.{t}", b"%d" % i)
    gone = rnd.sample(range(1, 5001), 300)
    for seq in gone:
        a.delete(seq)
        b.delete(seq)
    seqs = []
    start = 1
    while start <= 5000:
        n = rnd.choice([1, 2, 7, 50, 300])
        seqs += range(start, min(start + n, 5001))
        start += n + rnd.choice([0, 0, 1, 40])
    assert a.delete_many(seqs) == sum(1 for s in seqs if s not in set(gone))
    for seq in seqs:
        if seq not in set(gone):
            b.delete(seq)
    sa, sb = a.state(), b.state()
    assert (sa.messages, sa.bytes, sa.first_seq, sa.last_seq, sa.num_deleted) == (
        sb.messages,
        sb.bytes,
        sb.first_seq,
        sb.last_seq,
        sb.num_deleted,
    )
    assert {k[2:]: v for k, v in a.subjects().items()} == {
        k[2:]: v for k, v in b.subjects().items()
    }
    assert [(m.seq, m.payload) for m in a.iter()] == [(m.seq, m.payload) for m in b.iter()]
    for t in "xy":
        la, lb = a.last(f"a.{t}"), b.last(f"b.{t}")
        assert la.seq == lb.seq
        assert a.next_msg(1, f"a.{t}").seq == b.next_msg(1, f"b.{t}").seq


def test_append_many_plain_and_checked(store):
    plain = store.add_stream(cfg("P", ["p.>"]))
    checked = store.add_stream(cfg("C", ["c.>"], max_msgs=3))  # limits: one by one
    seen = []
    assert plain.append_many("p.x", [b"a", b"b", b"c"], on_durable=lambda s, e: seen.append(s))
    assert plain.append("p.y", b"d") == 4
    assert seen == [3]  # one report for the batch, with its last seq (no loop: at once)
    assert [(m.seq, m.subject, m.payload) for m in plain.iter()] == [
        (1, "p.x", b"a"),
        (2, "p.x", b"b"),
        (3, "p.x", b"c"),
        (4, "p.y", b"d"),
    ]
    assert checked.append_many("c.x", [b"1", b"2", b"3", b"4"]) == [1, 2, 3, 4]
    assert [m.payload for m in checked.iter()] == [b"2", b"3", b"4"]  # max_msgs held
    with pytest.raises(E.InvalidConfig):
        plain.append_many("q.x", [b"no"])
    assert plain.state().messages == 4


def test_append_many_is_all_or_none_under_a_store_quota(make_store):
    store = make_store(max_memory=2000, max_file=2000)
    st = store.add_stream(cfg())
    st.append("s.a", b"x" * 100)
    before = st.state()
    with pytest.raises(E.StoreFull):
        st.append_many("s.b", [b"y" * 300 for _ in range(10)])  # the 6th does not fit
    after = st.state()
    assert (after.messages, after.bytes) == (before.messages, before.bytes)
    assert st.subjects() == {"s.a": 1}
    assert st.append_many("s.b", [b"z" * 300]) == [st.state().last_seq]  # room is back


def test_append_each_keeps_each_outcome(store):
    # A plain stream takes the burst in one commit; a checked one message by message,
    # a refusal refusing that message only (no sequence used), the rest stored.
    plain = store.add_stream(cfg("P", ["p.>"]))
    assert plain.append_each("p.x", [b"a", b"b", b"c"]) == [1, 2, 3]
    assert [(m.seq, m.subject, m.payload) for m in plain.iter()] == [
        (1, "p.x", b"a"),
        (2, "p.x", b"b"),
        (3, "p.x", b"c"),
    ]
    checked = store.add_stream(cfg("C", ["c.>"], max_msgs=2, discard="new"))
    out = checked.append_each("c.x", [b"1", b"2", b"3"])
    assert out[:2] == [1, 2] and isinstance(out[2], E.LimitExceeded)
    seen = []
    checked.when_durable(lambda s, e: seen.append((s, e)))
    assert seen == [(2, None)]  # one registration for the burst (no loop: at once)
    assert [m.payload for m in checked.iter()] == [b"1", b"2"]


def test_append_each_under_a_store_quota(make_store):
    store = make_store(max_memory=2100, max_file=2100)
    st = store.add_stream(cfg())
    assert st.append_each("s.x", [b"a", b"b"]) == [1, 2]
    out = st.append_each("s.x", [b"y" * 300 for _ in range(8)] + [b"z"])
    # 2 small ones stored, then 6 x 300 (+ overhead) fit in 2100, the next 2 do not;
    # b"z" does
    assert out[:6] == [3, 4, 5, 6, 7, 8]
    assert all(isinstance(r, E.StoreFull) for r in out[6:8])
    assert out[8] == 9
    assert st.state().last_seq == 9


def test_delete_many_tries_each_run_once(store, monkeypatch):
    # A run of consecutive seqs that cannot be removed as one slice (here it crosses
    # a block edge) is removed one by one, and then passed: it is not tried again
    # from each of its seqs (which made 10,000 acks take seconds).
    st = store.add_stream(cfg())
    seqs = st.append_many("s.x", [b"p"] * 10000)
    tries = 0
    real = type(st)._remove_run

    def counting(self, a, b):
        nonlocal tries
        tries += 1
        return real(self, a, b)

    monkeypatch.setattr(type(st), "_remove_run", counting)
    assert st.delete_many(seqs) == 10000
    assert tries == 1
    assert st.state().messages == 0


def test_plain_and_checked_appends_agree(store):
    # A stream with no limits takes the plain append path; one with limits the
    # checked path. Both must store the same thing.
    plain = store.add_stream(cfg("P", ["p.>"]))
    checked = store.add_stream(cfg("C", ["c.>"], max_msgs=100))
    for i in range(5):
        assert plain.append("p.x", b"%d" % i) == checked.append("c.x", b"%d" % i) == i + 1
    assert [m.payload for m in plain.iter()] == [m.payload for m in checked.iter()]
    with pytest.raises(E.InvalidConfig):
        plain.append("other", b"x")  # not one of the stream's subjects
    with pytest.raises(E.InvalidConfig):
        plain.append("p..x", b"x")  # an empty token is never a message subject


def test_delete_one(store):
    st = store.add_stream(cfg())
    for i in range(5):
        st.append("s.x", b"%d" % i)
    st.delete(3)
    with pytest.raises(E.MsgNotFound):
        st.get(3)
    with pytest.raises(E.SeqNotFound) as ei:
        st.delete(3)
    assert (ei.value.err_code, ei.value.description) == (10043, "sequence 3 not found")
    with pytest.raises(E.SeqNotFound):
        st.delete(99)
    st.delete(1)
    s = st.state()
    assert (s.messages, s.first_seq, s.last_seq, s.num_deleted) == (3, 2, 5, 1)
    assert [m.seq for m in st.iter()] == [2, 4, 5]
    st.delete(5)  # the last one: last_seq stays, the seq is never reused
    assert st.append("s.x", b"n") == 6
    dd = store.add_stream(cfg("KV", ["kv.>"], deny_delete=True))
    dd.append("kv.a", b"1")
    with pytest.raises(E.DeleteNotPermitted) as ei:
        dd.delete(1)
    assert (ei.value.code, ei.value.err_code) == (500, 10057)


def test_purge_variants(store):
    st = store.add_stream(cfg())

    def fill():
        for s in ["s.a", "s.b", "s.a", "s.c", "s.a", "s.b"]:
            st.append(s, b"x")

    fill()  # 1..6
    assert st.purge(subject="s.a") == 3
    assert [m.seq for m in st.iter()] == [2, 4, 6]
    assert st.purge(keep=1) == 2
    assert [m.seq for m in st.iter()] == [6]
    fill()  # 7..12
    assert st.purge(seq=9) == 3  # everything below 9
    assert st.state().first_seq == 9
    assert st.purge(subject="s.a", keep=1) == 1  # s.a at 9 and 11: keep the newest
    assert [m.seq for m in st.iter(0, "s.a")] == [11]
    assert st.purge(subject="s.*", seq=12) == 2  # s.c 10, s.a 11
    assert st.purge() == 1
    s = st.state()
    assert (s.messages, s.first_seq, s.last_seq, s.bytes, s.num_subjects) == (0, 13, 12, 0, 0)
    assert st.append("s.a", b"y") == 13
    np = store.add_stream(cfg("NP", ["np.>"], deny_purge=True))
    with pytest.raises(E.PurgeNotPermitted) as ei:
        np.purge()
    assert ei.value.err_code == 10110


def test_state_counts(store):
    st = store.add_stream(cfg())
    st.append("s.a", b"12345")
    st.append("s.b", b"", b"NATS/1.0\r\n\r\n")
    s = st.state()
    assert s.bytes == stored(st, "s.a", b"12345") + stored(st, "s.b", b"", b"NATS/1.0\r\n\r\n")
    assert (s.num_subjects, s.first_seq, s.last_seq, s.num_deleted) == (2, 1, 2, 0)
    d = s.to_dict()
    assert d["messages"] == 2 and d["first_ts"].endswith("Z") and "consumer_count" in d


def test_limits_discard_old(store):
    st = store.add_stream(cfg(max_msgs=3))
    for i in range(5):
        st.append("s.a", b"%d" % i)
    assert [m.seq for m in st.iter()] == [3, 4, 5]
    st2 = store.add_stream(cfg("B", ["b.>"], max_bytes=3 * (3 + 10 + 30)))
    if st2.storage_kind == "memory":
        st2 = store.update_stream(cfg("B", ["b.>"], max_bytes=3 * (3 + 10 + 16)))
    for _ in range(5):
        st2.append("b.a", b"0123456789")
    assert st2.state().messages == 3 and st2.state().first_seq == 3


def test_limits_discard_new(store):
    st = store.add_stream(cfg(max_msgs=2, discard="new"))
    st.append("s.a", b"1")
    st.append("s.a", b"2")
    with pytest.raises(E.LimitExceeded) as ei:
        st.append("s.a", b"3")
    assert (ei.value.code, ei.value.err_code, ei.value.description) == (
        503,
        10077,
        "maximum messages exceeded",
    )
    b = store.add_stream(cfg("B", ["b.>"], max_bytes=40, discard="new"))
    if b.storage_kind == "file":  # one message of 3 + 10 + 30 must fit, two not
        b = store.update_stream(cfg("B", ["b.>"], max_bytes=60, discard="new"))
    b.append("b.a", b"x" * 10)
    with pytest.raises(E.LimitExceeded, match="maximum bytes exceeded"):
        b.append("b.a", b"x" * 10)
    assert st.state().messages == 2 and b.state().messages == 1


def test_per_subject_limit_like_kv(store):
    # KV buckets: discard new, but history per key still drops the oldest revision
    kv = store.add_stream(
        cfg("KV_b", ["$KV.b.>"], discard="new", max_msgs_per_subject=2, allow_rollup_hdrs=True)
    )
    for i in range(4):
        kv.append("$KV.b.k", b"%d" % i)
    kv.append("$KV.b.j", b"j")
    assert [m.payload for m in kv.iter(0, "$KV.b.k")] == [b"2", b"3"]
    assert kv.state().messages == 3
    strict = store.add_stream(
        cfg("P", ["p.>"], discard="new", discard_new_per_subject=True, max_msgs_per_subject=1)
    )
    strict.append("p.a", b"1")
    with pytest.raises(E.LimitExceeded, match="per subject"):
        strict.append("p.a", b"2")
    strict.append("p.b", b"1")


def test_max_msg_size_counts_headers(store):
    st = store.add_stream(cfg(max_msg_size=8))
    st.append("s.a", b"12345678")
    with pytest.raises(E.MsgSizeExceeded) as ei:
        st.append("s.a", b"1", {"K": "v"})
    assert (ei.value.code, ei.value.err_code) == (400, 10054)


def test_max_age_expires_messages(store):
    st = store.add_stream(cfg(max_age=0.15))
    st.append("s.a", b"old")
    time.sleep(0.2)
    st.append("s.a", b"new")
    s = st.state()
    assert (s.messages, s.first_seq) == (1, 2)


def test_expectations(store):
    st = store.add_stream(cfg())
    st.append("s.a", b"1", expected_last_seq=0)  # 0: the stream is empty
    with pytest.raises(E.WrongLastSequence) as ei:
        st.append("s.a", b"2", expected_last_seq=0)
    assert (ei.value.err_code, ei.value.description) == (10071, "wrong last sequence: 1")
    assert st.append("s.a", b"2", expected_last_seq=1) == 2
    # per subject: 0 means "no message on this subject" (KV create)
    assert st.append("s.b", b"x", expected_last_subject_seq=0) == 3
    with pytest.raises(E.WrongLastSequence, match="wrong last sequence: 3"):
        st.append("s.b", b"y", expected_last_subject_seq=0)
    with pytest.raises(E.WrongLastSequence, match="wrong last sequence: 2"):
        st.append("s.a", b"y", expected_last_subject_seq=1)
    assert st.append("s.a", b"3", expected_last_subject_seq=2) == 4
    st.delete(4)  # the newest s.a goes: the expectation now sees 2
    assert st.append("s.a", b"4", expected_last_subject_seq=2) == 5
    st.append("s.c", b"1", msg_id="m1")
    with pytest.raises(E.WrongLastMsgId) as ei:
        st.append("s.c", b"2", expected_last_msg_id="nope")
    assert (ei.value.err_code, ei.value.description) == (10070, "wrong last msg ID: m1")
    st.append("s.c", b"2", expected_last_msg_id="m1")
    assert st.state().messages == 6  # 1, 2, 3, 5, 6, 7


def test_duplicate_window(store):
    st = store.add_stream(cfg(duplicate_window=0.2))
    assert st.append("s.a", b"1", msg_id="a") == 1
    assert not st.was_duplicate
    assert st.append("s.a", b"1", msg_id="a") == 1
    assert st.was_duplicate
    assert st.state().messages == 1
    assert st.append("s.a", b"2", msg_id="b") == 2 and not st.was_duplicate
    time.sleep(0.25)
    assert st.append("s.a", b"1", msg_id="a") == 3  # outside the window: stored again
    assert st.state().messages == 3


def test_rollup(store):
    st = store.add_stream(cfg(allow_rollup_hdrs=True))
    for s in ["s.a", "s.b", "s.a"]:
        st.append(s, b"x")
    st.append("s.a", b"purged", rollup="sub")
    assert [m.seq for m in st.iter()] == [2, 4]
    st.append("s.c", b"all", rollup="all")
    assert [m.seq for m in st.iter()] == [5]
    no = store.add_stream(cfg("N", ["n.>"]))
    with pytest.raises(E.RollupError) as ei:
        no.append("n.a", b"", rollup="sub")
    assert (ei.value.code, ei.value.err_code) == (500, 10111)
    with pytest.raises(E.RollupError, match="rollup value invalid"):
        st.append("s.a", b"", rollup="bogus")


def test_sealed_stream_refuses_writes(store):
    st = store.add_stream(cfg())
    st.append("s.a", b"1")
    store.update_stream(cfg(sealed=True))
    with pytest.raises(E.StreamSealed) as ei:
        st.append("s.a", b"2")
    assert ei.value.err_code == 10109
    with pytest.raises(E.StreamSealed):
        st.delete(1)


def test_update_stream(store):
    st = store.add_stream(cfg("S", ["s.>"]))
    for _ in range(5):
        st.append("s.a", b"x")
    store.update_stream(cfg("S", ["s.>", "t.>"], max_msgs=2))
    assert st.state().messages == 2
    st.append("t.a", b"y")
    assert store.stream_for_subject("t.a") is st
    with pytest.raises(E.InvalidConfig):
        store.update_stream(cfg("S", ["s.>"], storage="memory"))
    with pytest.raises(E.StreamNotFound):
        store.update_stream(cfg("Z", ["z"]))


def test_first_seq_option(store):
    st = store.add_stream(cfg(first_seq=100))
    assert st.append("s.a", b"x") == 100
    assert st.state().first_seq == 100


def test_store_full_is_an_error_not_a_crash(kind, make_store):
    store = make_store(max_memory=200, max_file=200)
    st = store.add_stream(cfg(storage="memory" if kind == "memory" else "file"))
    each = stored(st, "s.a", b"x" * 20)  # 39 (memory) or 53 (file) bytes
    for _ in range(200 // each - 1):
        st.append("s.a", b"x" * 20)
    with pytest.raises(E.StoreFull) as ei:
        for _ in range(10):
            st.append("s.a", b"x" * 20)
    assert ei.value.err_code in (10047, 10028)
    assert st.state().messages == 200 // each
    st.purge()
    st.append("s.a", b"x" * 20)  # room again
    u = store.usage()
    assert u["memory"] + u["storage"] == each


def test_config_roundtrip_and_wire_units():
    c = StreamConfig.from_dict(
        {
            "name": "KV_cfg",
            "subjects": ["$KV.cfg.>"],
            "max_age": 0,
            "duplicate_window": 120000000000,
            "allow_msg_ttl": True,
            "placement": {"tags": ["x"]},
        },
        wire=True,
    )
    assert c.duplicate_window == 120.0 and c.allow_msg_ttl
    assert c.extra == {"placement": {"tags": ["x"]}}
    n = c.normalized()
    d = n.to_dict(wire=True)
    assert d["duplicate_window"] == 120000000000 and d["max_age"] == 0
    assert d["placement"] == {"tags": ["x"]} and d["max_msgs"] == -1
    assert StreamConfig.from_dict(n.to_dict()) == n


def test_interest_retention(store):
    from hybridbus.store import ConsumerConfig

    st = store.add_stream(cfg(retention="interest"))
    st.append("s.a", b"nobody listens")
    assert st.state().messages == 0  # no interest: not kept
    a = st.add_consumer(ConsumerConfig(durable_name="a"))
    b = st.add_consumer(ConsumerConfig(durable_name="b", filter_subject="s.b"))
    st.append("s.a", b"1")  # only a wants it
    st.append("s.b", b"2")  # a and b want it
    for msg, _ in a.next_batch(10):
        a.ack(msg.seq)
    assert [m.seq for m in st.iter()] == [3]
    ((msg, _),) = b.next_batch(10)
    b.ack(msg.seq)
    assert st.state().messages == 0


def test_workqueue_retention(store):
    from hybridbus.store import ConsumerConfig

    st = store.add_stream(cfg(retention="workqueue"))
    w = st.add_consumer(ConsumerConfig(durable_name="w", filter_subject="s.a"))
    with pytest.raises(E.WQConsumerNotUnique) as ei:
        st.add_consumer(ConsumerConfig(durable_name="x", filter_subject="s.*"))
    assert ei.value.err_code == 10100
    with pytest.raises(E.WQMultipleUnfiltered) as ei:
        st.add_consumer(ConsumerConfig(durable_name="y"))
    assert ei.value.err_code == 10099
    with pytest.raises(E.WQRequiresExplicitAck) as ei:
        st.add_consumer(ConsumerConfig(durable_name="z", filter_subject="s.z", ack_policy="none"))
    assert ei.value.err_code == 10098
    st.append("s.a", b"job1")
    st.append("s.a", b"job2")
    batch = w.next_batch(2)
    w.ack(batch[0][0].seq)
    w.term(batch[1][0].seq)
    assert st.state().messages == 0


async def test_on_durable_runs_on_the_loop_after_append_returns(store):
    import asyncio
    import threading

    st = store.add_stream(cfg())
    seen = []
    ev = asyncio.Event()

    def cb(seq, err):
        seen.append((seq, err, threading.get_ident()))
        if len(seen) == 3:
            ev.set()

    seqs = [st.append("s.a", b"%d" % i, on_durable=cb) for i in range(3)]
    assert seen == []  # never inside append
    await asyncio.wait_for(ev.wait(), 5)
    assert [(q, e) for q, e, _ in seen] == [(q, None) for q in seqs]
    assert {t for _, _, t in seen} == {threading.get_ident()}
    # a duplicate reports the first sequence once that one is durable
    st.append("s.a", b"m", msg_id="x")
    dup = asyncio.Event()
    st.append("s.a", b"m", msg_id="x", on_durable=lambda q, e: dup.set() or seen.append((q, e, 0)))
    await asyncio.wait_for(dup.wait(), 5)
    assert seen[-1][:2] == (4, None)


async def test_closed_store_refuses_work(store):
    st = store.add_stream(cfg())
    st.append("s.a", b"1")
    await store.close()
    with pytest.raises(E.StoreClosed):
        st.append("s.a", b"2")
    with pytest.raises(E.StoreClosed):
        store.add_stream(cfg("T", ["t"]))
    await store.close()  # idempotent


def test_implementations_satisfy_the_interface(store):
    from hybridbus.store import Consumer, ConsumerConfig, Store, Stream

    st = store.add_stream(cfg())
    c = st.add_consumer(ConsumerConfig(durable_name="d"))
    assert isinstance(store, Store)
    assert isinstance(st, Stream)
    assert isinstance(c, Consumer)
    for name in ("streams", "consumers", "records", "corrupt_records", "torn_tails", "time"):
        assert name in store.recovery
    assert {"corrupt_records", "write_errors", "fsyncs"} <= set(store.stats())


def test_last_of_a_literal_subject_after_deletes_and_purges(store):
    # BaseStream.last looks a literal subject up in its per-subject state (a KV get);
    # the answer is the newest live message on it, as a scan finds it.
    st = store.add_stream(cfg("L", ["l.>"]))
    subjects = ["l.a", "l.b", "l.a*b", "l.c"]
    for i in range(40):
        st.append(subjects[i % 4], b"%d" % i)
    st.delete(40)  # the last l.c
    st.delete(37)  # the last l.a
    st.purge(subject="l.b")
    for subject in [*subjects, "l.none", "l.*", "l.>"]:
        live = [m.seq for m in st.iter() if subject_matches(subject, m.subject)]
        if live:
            assert st.last(subject).seq == max(live), subject
        else:
            with pytest.raises(E.MsgNotFound):
                st.last(subject)
    st.purge()
    with pytest.raises(E.MsgNotFound):
        st.last("l.a")
