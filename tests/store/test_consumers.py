"""Consumers: deliver/ack policies, redelivery and pending counts, over both stores."""

from __future__ import annotations

import time

import pytest

from hybridbus.store import ConsumerConfig, StreamConfig
from hybridbus.store import errors as E


@pytest.fixture
def st(store):
    return store.add_stream(StreamConfig(name="S", subjects=["s.>"]))


def fill(st, subjects):
    return [st.append(s, s.encode()) for s in subjects]


def seqs(batch):
    return [m.seq for m, _ in batch]


def test_pull_roundtrip_metadata(st):
    fill(st, ["s.a", "s.b", "s.c"])
    c = st.add_consumer(ConsumerConfig(durable_name="d1", filter_subject="s.>"))
    assert c.num_pending == 3
    ((m, d),) = c.next_batch(1)
    assert (m.seq, m.subject, m.payload) == (1, "s.a", b"s.a")
    assert (d.stream_seq, d.consumer_seq, d.num_delivered, d.num_pending) == (1, 1, 1, 2)
    rest = c.next_batch(10)
    assert [d.num_pending for _, d in rest] == [1, 0]
    assert [d.consumer_seq for _, d in rest] == [2, 3]
    assert c.next_batch(5) == []
    info = c.info()
    assert info["delivered"]["consumer_seq"] == 3 and info["delivered"]["stream_seq"] == 3
    assert info["num_ack_pending"] == 3 and info["num_pending"] == 0
    assert info["stream_name"] == "S" and info["name"] == "d1" and info["created"].endswith("Z")
    assert info["config"]["ack_wait"] == 30.0 and info["config"]["max_ack_pending"] == 1000
    assert c.info(wire=True)["config"]["ack_wait"] == 30_000_000_000


def test_new_messages_update_pending_and_notify(st):
    c = st.add_consumer(ConsumerConfig(durable_name="d", filter_subject="s.a"))
    woke = []
    c.on_available = lambda: woke.append(1)
    fill(st, ["s.a", "s.b", "s.a"])
    assert c.num_pending == 2 and len(woke) == 2
    st.delete(3)  # an undelivered match goes
    assert c.num_pending == 1
    assert seqs(c.next_batch(10)) == [1]


def test_deliver_policies(st):
    fill(st, ["s.a", "s.b", "s.a", "s.c"])  # 1..4
    t_mid = time.time()
    time.sleep(0.01)
    fill(st, ["s.b", "s.a"])  # 5, 6
    cases = {
        "all": [1, 2, 3, 4, 5, 6],
        "last": [6],
        "new": [],
        "by_start_sequence": [4, 5, 6],
        "by_start_time": [5, 6],
    }
    for i, (dp, want) in enumerate(cases.items()):
        kw = {}
        if dp == "by_start_sequence":
            kw["opt_start_seq"] = 4
        if dp == "by_start_time":
            kw["opt_start_time"] = t_mid
        c = st.add_consumer(ConsumerConfig(durable_name=f"c{i}", deliver_policy=dp, **kw))
        assert c.num_pending == len(want), dp
        assert seqs(c.next_batch(10)) == want, dp
    new = st.consumer("c2")
    st.append("s.z", b"")
    assert seqs(new.next_batch(10)) == [7]
    last_a = st.add_consumer(
        ConsumerConfig(durable_name="la", deliver_policy="last", filter_subject="s.b")
    )
    assert seqs(last_a.next_batch(10)) == [5]
    with pytest.raises(E.ConsumerInvalidPolicy):
        st.add_consumer(ConsumerConfig(durable_name="bad", deliver_policy="by_start_sequence"))


def test_last_per_subject(st):
    fill(st, ["s.a", "s.b", "s.a", "s.c", "s.b"])  # heads: a=3, c=4, b=5
    c = st.add_consumer(
        ConsumerConfig(durable_name="kv", deliver_policy="last_per_subject", filter_subject="s.>")
    )
    assert c.num_pending == 3
    assert c.info()["delivered"]["stream_seq"] == 2  # first head - 1, as nats-server shows
    first = c.next_batch(2)
    assert seqs(first) == [3, 4] and [d.num_pending for _, d in first] == [2, 1]
    st.append("s.a", b"new")  # 6: after the heads, delivered as a live update
    assert c.num_pending == 2
    rest = c.next_batch(10)
    assert seqs(rest) == [5, 6] and rest[-1][1].num_pending == 0
    assert [d.consumer_seq for _, d in first + rest] == [1, 2, 3, 4]


def test_last_per_subject_empty_and_deleted_head(st):
    c = st.add_consumer(ConsumerConfig(durable_name="e", deliver_policy="last_per_subject"))
    assert c.num_pending == 0 and c.next_batch(5) == []
    fill(st, ["s.a", "s.b"])
    c2 = st.add_consumer(ConsumerConfig(durable_name="f", deliver_policy="last_per_subject"))
    st.delete(1)
    assert c2.num_pending == 1
    assert seqs(c2.next_batch(5)) == [2]


def test_explicit_ack_floor_and_pending(st):
    fill(st, ["s.a"] * 4)
    c = st.add_consumer(ConsumerConfig(durable_name="d"))
    c.next_batch(4)
    assert c.ack(2)
    assert not c.ack(2)  # already acked
    assert c.info()["ack_floor"] == {"consumer_seq": 0, "stream_seq": 0}
    assert c.ack(1)
    assert c.info()["ack_floor"] == {"consumer_seq": 2, "stream_seq": 2}
    assert c.num_ack_pending == 2
    c.ack(3)
    c.ack(4)
    assert c.info()["ack_floor"] == {"consumer_seq": 4, "stream_seq": 4}
    assert st.state().messages == 4  # limits retention keeps them


def test_ack_all_and_ack_none(st):
    fill(st, ["s.a"] * 4)
    c = st.add_consumer(ConsumerConfig(durable_name="all", ack_policy="all"))
    c.next_batch(4)
    assert c.ack(3)
    assert c.num_ack_pending == 1
    assert c.info()["ack_floor"]["stream_seq"] == 3
    n = st.add_consumer(ConsumerConfig(durable_name="none", ack_policy="none"))
    assert len(n.next_batch(10)) == 4
    assert n.num_ack_pending == 0 and not n.ack(1)
    assert n.info()["ack_floor"] == {"consumer_seq": 4, "stream_seq": 4}
    assert n.info()["config"]["max_ack_pending"] == -1


def test_nak_redelivers_first_with_new_consumer_seq(st):
    fill(st, ["s.a", "s.b", "s.c"])
    c = st.add_consumer(ConsumerConfig(durable_name="d"))
    c.next_batch(2)
    assert c.nak(1)
    batch = c.next_batch(2)
    assert seqs(batch) == [1, 3]
    m, d = batch[0]
    assert (d.num_delivered, d.consumer_seq) == (2, 3)
    assert c.num_redelivered == 1
    assert not c.nak(99)


def test_nak_with_delay(st):
    fill(st, ["s.a"])
    c = st.add_consumer(ConsumerConfig(durable_name="d"))
    c.next_batch(1)
    now = time.time()
    c.nak(1, delay=5.0)
    assert c.next_batch(1, now=now + 1) == []
    assert seqs(c.next_batch(1, now=now + 6)) == [1]


def test_term_is_never_redelivered(st):
    fill(st, ["s.a"])
    c = st.add_consumer(ConsumerConfig(durable_name="d", ack_wait=1.0))
    c.next_batch(1)
    assert c.term(1)
    assert c.next_batch(1, now=time.time() + 100) == []
    assert c.num_ack_pending == 0 and not c.term(1)


def test_ack_wait_redelivery_and_max_deliver(st):
    fill(st, ["s.a"])
    c = st.add_consumer(ConsumerConfig(durable_name="d", ack_wait=1.0, max_deliver=2))
    t0 = time.time()
    assert seqs(c.next_batch(1, now=t0)) == [1]
    assert c.redeliveries_due(now=t0 + 0.5) == []
    assert c.next_deadline() == pytest.approx(t0 + 1.0, abs=0.01)
    assert c.redeliveries_due(now=t0 + 1.1) == [1]
    ((m, d),) = c.next_batch(1, now=t0 + 1.1)
    assert (d.num_delivered, d.consumer_seq) == (2, 2)
    # max_deliver reached: not a third time, and the ack is no longer tracked
    assert c.next_batch(1, now=t0 + 5) == []
    info = c.info()
    assert (info["num_redelivered"], info["num_ack_pending"]) == (1, 0)


def test_in_progress_resets_the_timer(st):
    fill(st, ["s.a"])
    c = st.add_consumer(ConsumerConfig(durable_name="d", ack_wait=0.3))
    c.next_batch(1)
    time.sleep(0.2)
    assert c.in_progress(1)
    time.sleep(0.2)  # 0.4 s after delivery, 0.2 s after +WPI
    assert c.redeliveries_due() == []
    time.sleep(0.2)
    assert c.redeliveries_due() == [1]


def test_backoff_sets_redelivery_delays(st):
    fill(st, ["s.a"])
    c = st.add_consumer(ConsumerConfig(durable_name="d", backoff=[1.0, 5.0], max_deliver=4))
    t0 = time.time()
    c.next_batch(1, now=t0)
    assert c.redeliveries_due(now=t0 + 0.9) == []
    assert seqs(c.next_batch(1, now=t0 + 1.1)) == [1]  # delivery 2: the next wait is 5 s
    assert c.redeliveries_due(now=t0 + 5.0) == []
    assert c.redeliveries_due(now=t0 + 6.2) == [1]


def test_max_ack_pending_holds_new_messages(st):
    fill(st, ["s.a"] * 5)
    c = st.add_consumer(ConsumerConfig(durable_name="d", max_ack_pending=2))
    assert seqs(c.next_batch(10)) == [1, 2]
    assert c.next_batch(10) == []
    c.ack(1)
    assert seqs(c.next_batch(10)) == [3]
    assert c.num_pending == 2


def test_filters(st):
    fill(st, ["s.a.1", "s.b.1", "s.a.2", "s.c", "s.b.2"])
    w = st.add_consumer(ConsumerConfig(durable_name="w", filter_subject="s.*.2"))
    assert w.num_pending == 2 and seqs(w.next_batch(10)) == [3, 5]
    m = st.add_consumer(ConsumerConfig(durable_name="m", filter_subjects=["s.c", "s.a.>"]))
    assert m.num_pending == 3 and seqs(m.next_batch(10)) == [1, 3, 4]
    with pytest.raises(E.ConsumerCreateError):
        st.add_consumer(ConsumerConfig(durable_name="x", filter_subject="other.>"))
    with pytest.raises(E.ConsumerCreateError):
        st.add_consumer(
            ConsumerConfig(durable_name="y", filter_subject="s.a", filter_subjects=["s.b"])
        )


def test_consumer_update_and_lifecycle(store):
    st = store.add_stream(StreamConfig(name="S", subjects=["s.>"], max_consumers=2))
    c = st.add_consumer(ConsumerConfig(durable_name="d", ack_wait=5.0))
    assert st.add_consumer(ConsumerConfig(durable_name="d", ack_wait=9.0)) is c
    assert c.config.ack_wait == 9.0
    with pytest.raises(E.ConsumerCreateError) as ei:
        st.add_consumer(ConsumerConfig(durable_name="d", deliver_policy="new"))
    assert (ei.value.code, ei.value.err_code) == (500, 10012)
    st.add_consumer(ConsumerConfig(name="eph"))
    with pytest.raises(E.MaxConsumers) as ei:
        st.add_consumer(ConsumerConfig(durable_name="third"))
    assert ei.value.err_code == 10026
    assert sorted(x.name for x in st.consumers()) == ["d", "eph"]
    assert st.state().consumer_count == 2
    st.delete_consumer("d")
    with pytest.raises(E.ConsumerNotFound) as ei:
        st.consumer("d")
    assert ei.value.err_code == 10014
    with pytest.raises(E.ConsumerNotFound):
        st.delete_consumer("d")
    with pytest.raises(E.ConsumerCreateError):
        st.add_consumer(ConsumerConfig(name="a", durable_name="b"))


def test_purge_moves_consumers_forward(st):
    fill(st, ["s.a"] * 5)
    c = st.add_consumer(ConsumerConfig(durable_name="d"))
    c.next_batch(2)
    st.purge(seq=4)
    assert c.num_ack_pending == 0
    assert c.num_pending == 2
    assert seqs(c.next_batch(10)) == [4, 5]
    st.purge()
    assert c.num_pending == 0 and c.num_ack_pending == 0


STATE = ("delivered", "ack_floor", "num_ack_pending", "num_redelivered", "num_pending")


# a work queue takes explicit acks only
POLICIES = [(r, p) for r in ("limits", "interest") for p in ("explicit", "all", "none")]


@pytest.mark.parametrize("retention,policy", [*POLICIES, ("workqueue", "explicit")])
def test_ack_many_is_ack_one_by_one(store, retention, policy):
    """ConsumerImpl.ack_many (a client's read of acks) leaves what the same acks one by
    one leave: the consumer's state and the stream's messages (work queue and interest
    retention remove what is acked)."""
    cfgs = {"ack_policy": policy, "ack_wait": 30.0}
    twins = []
    for name in ("A", "B"):
        st = store.add_stream(StreamConfig(name=name, subjects=[f"{name}.>"], retention=retention))
        fill(st, [f"{name}.x"] * 12)
        c = st.add_consumer(ConsumerConfig(durable_name="d", **cfgs))
        t0 = time.time()
        c.next_batch(10, now=t0)
        c.nak(3)
        c.nak(5)
        c.next_batch(1, now=t0)  # 3 again: in the redelivery counts
        twins.append((st, c))
    acked = [7, 3, 9, 9, 1, 42, 5, 2, 11]  # a double ack, unknown and undelivered ones
    (sa, a), (sb, b) = twins
    n = sum(1 for seq in acked if a.ack(seq))
    assert b.ack_many(acked) == n
    ia, ib = a.info(), b.info()
    for k in STATE:
        if k == "delivered":
            assert {**ia[k], "last_active": 0} == {**ib[k], "last_active": 0}
        else:
            assert ia[k] == ib[k], k
    assert sa.state().messages == sb.state().messages
    assert [m.seq for m, _ in a.next_batch(20)] == [m.seq for m, _ in b.next_batch(20)]
    assert b.ack_many([]) == 0


def test_ack_many_survives_a_restart(reopen):
    s = reopen()
    st = s.add_stream(StreamConfig(name="S", subjects=["s.>"]))
    fill(st, ["s.a"] * 8)
    c = st.add_consumer(ConsumerConfig(durable_name="d"))
    c.next_batch(8)
    assert c.ack_many([2, 4, 1, 8]) == 4
    before = c.info()
    s = reopen()
    after = s.stream("S").consumer("d").info()
    assert after["num_ack_pending"] == before["num_ack_pending"] == 4
    assert after["ack_floor"] == before["ack_floor"] == {"consumer_seq": 2, "stream_seq": 2}
