"""What mirrors and sources need from the store (jetstream/mirror.py): streams with no
subjects of their own, copies that keep their origin's time, skipped sequences, and
internal ``direct`` consumers that no count shows."""

from __future__ import annotations

import time

import pytest

from hybridbus.store import ConsumerConfig, StreamConfig
from hybridbus.store import errors as E


def test_a_mirror_has_no_subjects_and_stores_any_subject(store):
    m = store.add_stream(StreamConfig(name="M", extra={"mirror": {"name": "O"}}))
    assert m.config.subjects == []
    assert m.append("o.a", b"1") == 1
    assert store.stream_for_subject("o.a") is None  # not a publish target
    src = store.add_stream(
        StreamConfig(name="S", subjects=["s.>"], extra={"sources": [{"name": "O"}]})
    )
    assert src.append("other.x", b"2") == 1  # a sourced subject
    assert store.stream_for_subject("s.1") is src
    plain = store.add_stream(StreamConfig(name="P", subjects=["p.>"]))
    with pytest.raises(E.InvalidConfig):
        plain.append("q.1", b"x")  # an ordinary stream still refuses foreign subjects
    assert store.add_stream(StreamConfig(name="N")).config.subjects == ["N"]


def test_a_copy_keeps_its_time_but_times_never_go_back(store):
    st = store.add_stream(StreamConfig(name="M", extra={"mirror": {"name": "O"}}))
    old = time.time_ns() - 3_000_000_000
    st.append("a", b"1", ts_ns=old)
    assert st.get(1).ts_ns == old
    st.append("a", b"2", ts_ns=old - 1000)
    assert st.get(2).ts_ns == old  # raised to the last time


def test_skip_to_keeps_sequences_aligned(store):
    st = store.add_stream(StreamConfig(name="M", extra={"mirror": {"name": "O"}}))
    st.skip_to(4)
    s = st.state()
    assert (s.messages, s.first_seq, s.last_seq) == (0, 5, 4)
    assert st.append("a", b"x") == 5
    st.skip_to(3)  # not past the end: nothing
    st.skip_to(9)
    assert st.append("a", b"y") == 10
    s = st.state()
    assert (s.messages, s.first_seq, s.last_seq, s.num_deleted) == (2, 5, 10, 4)
    assert [m.seq for m in st.iter()] == [5, 10]
    with pytest.raises(E.MsgNotFound):
        st.get(7)


def test_skip_to_survives_a_restart(reopen):
    s = reopen()
    st = s.add_stream(StreamConfig(name="M", extra={"mirror": {"name": "O"}}))
    st.skip_to(6)
    s = reopen()
    st = s.stream("M")
    assert st.state().last_seq == 6
    assert st.append("a", b"x") == 7
    st.skip_to(20)
    assert st.append("a", b"y") == 21
    s = reopen()
    st = s.stream("M")
    assert [m.seq for m in st.iter()] == [7, 21]
    assert st.state().last_seq == 21
    assert st.config.subjects == []


def test_direct_consumers_are_hidden_from_counts(store):
    st = store.add_stream(StreamConfig(name="O", subjects=["o.>"], max_consumers=1))
    hidden = st.add_consumer(
        ConsumerConfig(name="mirror-x", ack_policy="none", extra={"direct": True})
    )
    woke = []
    hidden.on_available = lambda: woke.append(1)
    st.append("o.a", b"1")
    assert woke == [1]
    assert st.consumers() == []
    assert st.state().consumer_count == 0
    assert store.usage()["consumers"] == 0
    assert st.consumer("mirror-x") is hidden
    st.add_consumer(ConsumerConfig(durable_name="d"))  # max_consumers counts public ones
    with pytest.raises(E.MaxConsumers):
        st.add_consumer(ConsumerConfig(durable_name="e"))
    assert [c.name for c in st.consumers()] == ["d"]
    st.delete_consumer("mirror-x")
    assert st.state().consumer_count == 1


def test_a_consumer_of_a_mirror_may_filter_on_the_origin_subjects(store):
    m = store.add_stream(StreamConfig(name="M", extra={"mirror": {"name": "O"}}))
    m.append("o.a", b"1")
    m.append("o.b", b"2")
    c = m.add_consumer(ConsumerConfig(durable_name="d", filter_subject="o.b"))
    assert [msg.payload for msg, _ in c.next_batch(5)] == [b"2"]
    plain = store.add_stream(StreamConfig(name="P", subjects=["p.>"]))
    with pytest.raises(E.ConsumerCreateError):
        plain.add_consumer(ConsumerConfig(durable_name="d", filter_subject="q.>"))


def test_a_direct_consumer_reads_along_a_work_queue(store):
    st = store.add_stream(StreamConfig(name="W", subjects=["w.>"], retention="workqueue"))
    cursor = st.add_consumer(
        ConsumerConfig(name="mirror-w", ack_policy="none", extra={"direct": True})
    )
    worker = st.add_consumer(ConsumerConfig(durable_name="worker"))  # not "multiple unfiltered"
    st.append("w.a", b"job")
    assert [m.payload for m, _ in cursor.next_batch(5)] == [b"job"]
    assert st.state().messages == 1  # reading along removes nothing
    ((msg, _),) = worker.next_batch(5)
    worker.ack(msg.seq)
    assert st.state().messages == 0  # the worker's ack does
    with pytest.raises(E.WorkQueueConsumerError):
        st.add_consumer(ConsumerConfig(durable_name="w2", ack_policy="none"))


def test_a_stream_with_a_subject_transform_stores_the_transformed_subjects(store):
    # jetstream/republish.py stores a publish on "in.x" as "out.in.x": the store must
    # take a subject outside the stream's own, and consumers may filter on it.
    extra = {"subject_transform": {"src": ">", "dest": "out.>"}}
    st = store.add_stream(StreamConfig(name="T", subjects=["in.>"], extra=extra))
    assert st.append("out.in.x", b"1") == 1
    c = st.add_consumer(ConsumerConfig(name="C", filter_subject="out.in.x", ack_policy="none"))
    assert c.num_pending == 1
    st = store.update_stream(StreamConfig(name="T", subjects=["in.>"]))
    with pytest.raises(E.InvalidConfig):
        st.append("out.in.y", b"2")  # without the transform: its subjects only
