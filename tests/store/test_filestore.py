"""File store only: restarts, segments and indexes, compaction, group commit, write errors."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import threading
import time

import pytest

from hybridbus.store import ConsumerConfig, StoreWriteError, StreamConfig, open_store
from hybridbus.store import errors as E
from hybridbus.store.file import writer


def sdir(store_dir, name="S"):
    return os.path.join(store_dir, "streams", name)


def files(store_dir, ext, name="S"):
    return sorted(f for f in os.listdir(sdir(store_dir, name)) if f.endswith(ext))


def test_restart_keeps_messages_subjects_and_dedup(reopen):
    s = reopen()
    st = s.add_stream(StreamConfig(name="S", subjects=["s.>"], max_msgs_per_subject=2))
    st.append("s.a", b"1", {"H": "v"}, msg_id="id-1")
    st.append("s.b", b"2")
    st.append("s.a", b"3")
    st.append("s.a", b"4")  # drops seq 1 (per-subject limit)
    st.delete(2)
    before = st.state()
    s = reopen()
    st = s.stream("S")
    after = st.state()
    assert after == before
    assert [(m.seq, m.payload) for m in st.iter()] == [(3, b"3"), (4, b"4")]
    assert st.subjects() == {"s.a": 2}
    assert st.last("s.a").seq == 4
    assert st.append("s.a", b"5", expected_last_subject_seq=4) == 5
    assert st.append("s.b", b"6", expected_last_subject_seq=0) == 6
    assert s.recovery["streams"] == 1 and s.recovery["corrupt_records"] == 0
    assert s.usage()["storage"] == st.state().bytes


def test_restart_keeps_the_duplicate_window(reopen):
    s = reopen()
    st = s.add_stream(StreamConfig(name="S", subjects=["s.>"]))
    st.append("s.a", b"1", msg_id="m-1")
    st.append("s.a", b"2", msg_id="m-2")
    s = reopen()
    st = s.stream("S")
    assert st.append("s.a", b"again", msg_id="m-1") == 1 and st.was_duplicate
    assert st.append("s.a", b"3", expected_last_msg_id="m-2") == 3


def test_sequences_are_never_reused_after_restart(reopen):
    s = reopen()
    st = s.add_stream(StreamConfig(name="S", subjects=["s.>"]))
    for _ in range(3):
        st.append("s.a", b"x")
    st.delete(3)
    st.delete(2)
    s = reopen()
    st = s.stream("S")
    assert st.append("s.a", b"y") == 4
    st.purge()
    s = reopen()
    st = s.stream("S")
    state = st.state()
    assert (state.messages, state.first_seq, state.last_seq) == (0, 5, 4)
    assert st.append("s.a", b"z") == 5


def test_restart_resumes_consumers(reopen):
    s = reopen()
    st = s.add_stream(StreamConfig(name="S", subjects=["s.>"]))
    for i in range(6):
        st.append("s.a" if i % 2 else "s.b", b"%d" % i)
    c = st.add_consumer(ConsumerConfig(durable_name="d", ack_wait=10.0, max_deliver=3))
    t0 = time.time()
    c.next_batch(4, now=t0)
    c.ack(1)
    c.nak(2)
    assert [m.seq for m, _ in c.next_batch(1, now=t0)] == [2]  # redelivered: dc=2, cseq=5
    st.add_consumer(ConsumerConfig(name="ephemeral"))
    gone = st.add_consumer(ConsumerConfig(durable_name="gone"))
    st.delete_consumer("gone")
    del gone
    before = c.info()
    s = reopen()
    st = s.stream("S")
    assert [x.name for x in st.consumers()] == ["d"]
    c = st.consumer("d")
    after = c.info()
    for k in ("delivered", "ack_floor", "num_ack_pending", "num_redelivered", "num_pending"):
        if k == "delivered":
            assert {**after[k], "last_active": 0} == {**before[k], "last_active": 0}
        else:
            assert after[k] == before[k], k
    # deliveries continue where they were: 5 and 6 are new, 2..4 wait for their ack timer
    batch = c.next_batch(10, now=t0 + 1)
    assert [(m.seq, d.consumer_seq) for m, d in batch] == [(5, 6), (6, 7)]
    due = c.next_batch(10, now=t0 + 10.5)
    assert sorted((m.seq, d.num_delivered) for m, d in due) == [(2, 3), (3, 2), (4, 2)]


def test_restart_mid_last_per_subject(reopen):
    s = reopen()
    st = s.add_stream(StreamConfig(name="KV", subjects=["kv.>"]))
    for k in ["kv.a", "kv.b", "kv.a", "kv.c"]:
        st.append(k, k.encode())
    c = st.add_consumer(ConsumerConfig(durable_name="w", deliver_policy="last_per_subject"))
    assert [m.seq for m, _ in c.next_batch(1)] == [2]
    st.append("kv.d", b"new")  # 5
    s = reopen()
    c = s.stream("KV").consumer("w")
    assert c.num_pending == 3
    assert [m.seq for m, _ in c.next_batch(10)] == [3, 4, 5]


def test_memory_streams_in_a_file_store_do_not_survive(reopen):
    s = reopen()
    s.add_stream(StreamConfig(name="M", subjects=["m.>"], storage="memory")).append("m.a", b"1")
    s.add_stream(StreamConfig(name="F", subjects=["f.>"])).append("f.a", b"1")
    assert s.usage()["memory"] > 0 and s.usage()["storage"] > 0
    s = reopen()
    assert [x.name for x in s.streams()] == ["F"]


def test_deleted_stream_is_gone_from_disk(reopen, store_dir):
    s = reopen()
    s.add_stream(StreamConfig(name="S", subjects=["s.>"])).append("s.a", b"1")
    s.delete_stream("S")
    assert not os.path.exists(sdir(store_dir))
    s = reopen()
    assert s.streams() == []


def test_the_directory_is_locked(reopen, store_dir):
    reopen()
    with pytest.raises(E.StoreError, match="in use"):
        open_store(store_dir)


def test_segments_roll_and_indexes_speed_up_recovery(reopen, store_dir):
    s = reopen(segment_size=4096)
    st = s.add_stream(StreamConfig(name="S", subjects=["s.>"]))
    for i in range(500):
        st.append(f"s.{i % 7}", b"%05d" % i)
    for seq in range(1, 500, 3):
        st.delete(seq)
    want = [(m.seq, m.subject, m.payload) for m in st.iter()]
    state = st.state()
    nsegs = len(files(store_dir, ".seg"))
    assert nsegs >= 5
    s = reopen(segment_size=4096)
    assert len(files(store_dir, ".idx")) == nsegs  # every segment has an index after close
    assert s.recovery["index_rebuilt"] == 0
    st = s.stream("S")
    assert st.state() == state
    assert [(m.seq, m.subject, m.payload) for m in st.iter()] == want
    # lose some indexes of sealed segments and damage another: rebuilt, same content
    s.close_sync()
    idx = files(store_dir, ".idx")
    os.unlink(os.path.join(sdir(store_dir), idx[0]))
    os.unlink(os.path.join(sdir(store_dir), idx[3]))
    with open(os.path.join(sdir(store_dir), idx[2]), "r+b") as f:
        f.seek(40)
        b = f.read(1)
        f.seek(40)
        f.write(bytes([b[0] ^ 0xFF]))
    s = reopen(segment_size=4096)
    assert s.recovery["index_rebuilt"] == 3
    st = s.stream("S")
    assert st.state() == state
    assert [(m.seq, m.subject, m.payload) for m in st.iter()] == want


def test_a_run_of_plain_appends_rolls_segments_at_the_segment_size(reopen, store_dir):
    # append_many on a file stream writes the run as MSGS records (_put_plain_run): a
    # segment still rolls once it reaches the segment size (by at most one message),
    # the run takes fewer bytes than one record each, and all survive.
    s = reopen(segment_size=4096)
    one = s.add_stream(StreamConfig(name="A", subjects=["a.>"]))
    run = s.add_stream(StreamConfig(name="S", subjects=["s.>"]))
    payloads = [b"p%03d" % i * (1 + i % 7) for i in range(400)]
    for p in payloads[:5]:
        one.append("a.x", p)
        run.append("s.x", p)
    for p in payloads[5:]:
        one.append("a.x", p)
    assert run.append_many("s.x", payloads[5:]) == list(range(6, 401))
    assert run.append_many("s.y", [bytearray(b"ba"), b"z"]) == [401, 402]
    segs = files(store_dir, ".seg")  # named by their first sequence
    sizes = [os.path.getsize(os.path.join(sdir(store_dir), f)) for f in segs]
    singles = [
        os.path.getsize(os.path.join(sdir(store_dir, "A"), f))
        for f in files(store_dir, ".seg", "A")
    ]
    assert len(segs) >= 2 and all(4096 <= n < 4096 + 64 for n in sizes[:-1]), sizes
    assert sum(sizes) < sum(singles) * 0.6, (sizes, singles)
    want = [(i + 1, "s.x", p) for i, p in enumerate(payloads)] + [
        (401, "s.y", b"ba"),
        (402, "s.y", b"z"),
    ]
    assert [(m.seq, m.subject, m.payload) for m in run.iter()] == want
    before = run.state()
    s = reopen(segment_size=4096)
    run = s.stream("S")
    assert run.state() == before
    assert [(m.seq, m.subject, m.payload) for m in run.iter()] == want


def test_an_index_that_disagrees_with_its_segment_is_ignored(reopen, store_dir):
    s = reopen(segment_size=2048)
    st = s.add_stream(StreamConfig(name="S", subjects=["s.>"]))
    for i in range(100):
        st.append("s.a", b"%04d" % i)
    s.close_sync()
    assert len(files(store_dir, ".idx")) >= 2
    seg = os.path.join(sdir(store_dir), files(store_dir, ".seg")[0])
    with open(seg, "r+b") as f:  # change one payload byte: the index CRC check must notice
        data = f.read()
        pos = data.rfind(b"0030")
        assert pos > 0
        f.seek(pos)
        f.write(b"0031")
    s = reopen(segment_size=2048)
    assert s.recovery["corrupt_records"] == 1
    st = s.stream("S")
    assert st.state().messages == 99
    with pytest.raises(E.MsgNotFound):
        st.get(31)


def test_compaction_shrinks_and_keeps_tombstones_alive(reopen, store_dir):
    s = reopen(segment_size=1024)
    st = s.add_stream(StreamConfig(name="S", subjects=["s.>"]))
    first = [st.append("s.a", b"a" * 40) for _ in range(15)]  # fills segment 1
    middle = [st.append("s.b", b"b" * 40)]  # opens segment 2
    seg2 = st._tail
    # seq 1 dies now: its tombstone lands in segment 2, whose messages all die below, so
    # segment 2 is compacted while segment 1 (1 of 15 dead) is not
    st.delete(first[0])
    while len(st._blocks) < 4:
        middle.append(st.append("s.b", b"b" * 40))
    assert seg2.dels == [first[0], first[0]]
    for _ in range(60):
        st.append("s.c", b"c" * 40)
    for seq in middle:
        st.delete(seq)
    size_before = sum(
        os.path.getsize(os.path.join(sdir(store_dir), f)) for f in files(store_dir, ".seg")
    )
    n = st.compact()
    assert n >= 1 and s.stats()["compactions"] >= 1
    size_after = sum(
        os.path.getsize(os.path.join(sdir(store_dir), f)) for f in files(store_dir, ".seg")
    )
    assert size_after < size_before
    want = [m.seq for m in st.iter()]
    s = reopen(segment_size=1024)
    st = s.stream("S")
    assert [m.seq for m in st.iter()] == want
    assert first[0] not in want  # the tombstone survived compaction of its segment
    assert s.recovery["corrupt_records"] == 0


def test_whole_dead_segments_are_unlinked(reopen, store_dir):
    s = reopen(segment_size=1024)
    st = s.add_stream(StreamConfig(name="S", subjects=["s.>"]))
    for _ in range(100):
        st.append("s.a", b"x" * 40)
    st.purge()
    for _ in range(60):  # roll twice more so the purged segments are old enough
        st.append("s.b", b"y" * 40)
    st.compact()
    nums = [int(f[:10]) for f in files(store_dir, ".seg")]
    assert min(nums) > 1 and len(nums) <= 5
    s = reopen(segment_size=1024)
    state = s.stream("S").state()
    assert (state.messages, state.first_seq, state.last_seq) == (60, 101, 160)


async def test_group_commit_with_sync_always(store_dir):
    s = open_store(store_dir, sync_always=True)
    try:
        st = s.add_stream(StreamConfig(name="S", subjects=["s.>"]))
        loop_thread = threading.get_ident()
        done: list[tuple[int, object]] = []
        all_done = asyncio.get_running_loop().create_future()

        def cb(seq, err):
            assert threading.get_ident() == loop_thread
            done.append((seq, err))
            if len(done) == 300:
                all_done.set_result(None)

        fsyncs0 = s.stats()["fsyncs"]
        for i in range(300):
            st.append("s.a", b"%d" % i, on_durable=cb)
            assert len(done) == 0 or i >= 1  # never called inside append
            if i % 50 == 49:
                await asyncio.sleep(0)
        assert len(done) < 300
        await asyncio.wait_for(all_done, 10)
        assert [x[0] for x in done] == list(range(1, 301))
        assert all(err is None for _, err in done)
        fsyncs = s.stats()["fsyncs"] - fsyncs0
        assert 1 <= fsyncs < 50  # batches, not one fsync per append
    finally:
        await s.close()


async def test_interval_policy_reports_after_the_write(store_dir):
    s = open_store(store_dir, sync_interval=0.05)
    try:
        st = s.add_stream(StreamConfig(name="S", subjects=["s.>"]))
        seg = os.path.join(sdir(store_dir), files(store_dir, ".seg")[0])
        size0 = os.path.getsize(seg)
        seen = []
        ev = asyncio.Event()

        def cb(seq, err):
            seen.append((seq, err, os.path.getsize(seg)))
            ev.set()

        st.append("s.a", b"payload", on_durable=cb)
        assert seen == []
        await asyncio.wait_for(ev.wait(), 5)
        seq, err, size = seen[0]
        assert (seq, err) == (1, None) and size > size0  # in the file before the callback
        await asyncio.sleep(0.15)
        assert s.stats()["fsyncs"] >= 1  # the interval timer synced it
    finally:
        await s.close()


async def test_write_now_writes_and_reports_before_it_returns(store_dir):
    # Deferred work that answers in the same turn (capture._append_batch): the flush
    # the append scheduled runs at once, its callbacks first; nothing runs twice.
    s = open_store(store_dir, sync_interval=60)
    try:
        st = s.add_stream(StreamConfig(name="S", subjects=["s.>"]))
        seg = os.path.join(sdir(store_dir), files(store_dir, ".seg")[0])
        seen = []
        assert not st.durable_pending()
        st.append("s.a", b"one", on_durable=lambda seq, err: seen.append((seq, err)))
        assert st.durable_pending() and seen == []
        size = os.path.getsize(seg)
        st.append_each("s.a", [b"two", b"three"])
        st.when_durable(lambda seq, err: seen.append((seq, err)))
        st.write_now()
        assert seen == [(1, None), (3, None)] and os.path.getsize(seg) > size
        assert not st.durable_pending()
        writes = s.stats()["writes"]
        await asyncio.sleep(0.05)  # the cancelled turn does not write again
        assert s.stats()["writes"] == writes and seen == [(1, None), (3, None)]
        st.write_now()  # nothing pending: nothing happens
        assert seen == [(1, None), (3, None)]
    finally:
        await s.close()
    s = open_store(store_dir, sync_always=True)
    try:
        st = s.stream("S")
        done = asyncio.Event()
        st.append("s.a", b"four", on_durable=lambda seq, err: done.set())
        st.write_now()  # the fsync job starts; its callback still comes from the loop
        assert st.durable_pending() and not done.is_set()
        await asyncio.wait_for(done.wait(), 5)
        assert not st.durable_pending()
    finally:
        await s.close()


def test_without_a_loop_callbacks_run_inline(store_dir):
    s = open_store(store_dir, sync_always=True)
    try:
        st = s.add_stream(StreamConfig(name="S", subjects=["s.>"]))
        seen = []
        st.append("s.a", b"1", on_durable=lambda seq, err: seen.append((seq, err)))
        assert seen == [(1, None)]
        assert st.append("s.a", b"1") == 2
    finally:
        s.close_sync()


async def test_write_error_is_reported_and_the_stream_recovers(store_dir, monkeypatch, caplog):
    s = open_store(store_dir)
    st = s.add_stream(StreamConfig(name="S", subjects=["s.>"]))
    mem = s.add_stream(StreamConfig(name="M", subjects=["m.>"], storage="memory"))
    ok = asyncio.Event()
    st.append("s.a", b"good", on_durable=lambda seq, err: ok.set())
    await asyncio.wait_for(ok.wait(), 5)
    c = st.add_consumer(ConsumerConfig(durable_name="d"))

    real = writer._pwrite_all

    def full(fd, data, pos):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(writer, "_pwrite_all", full)
    results = []
    failed = asyncio.Event()

    def cb(seq, err):
        results.append((seq, err))
        failed.set()

    with caplog.at_level(logging.ERROR, logger="hybridbus.store"):
        seq = st.append("s.a", b"lost", on_durable=cb)
        await asyncio.wait_for(failed.wait(), 5)
    assert results[0][0] == seq
    err = results[0][1]
    assert isinstance(err, StoreWriteError) and err.errno == errno.ENOSPC
    assert err.err_code == 10077
    assert any("write failed" in r.getMessage() for r in caplog.records)
    assert s.stats()["write_errors"] >= 1
    with pytest.raises(StoreWriteError):  # fail fast during the back-off
        st.append("s.a", b"refused")
    assert mem.append("m.a", b"still fine") == 1  # the rest of the store keeps working
    with pytest.raises(E.MsgNotFound):
        st.get(seq)  # the lost message is not served
    assert c.num_pending == 1

    monkeypatch.setattr(writer, "_pwrite_all", real)
    monkeypatch.setattr(writer, "WRITE_RETRY_BACKOFF", 0.0)
    st._fail_until = time.monotonic()  # end the back-off now
    done = asyncio.Event()
    seq2 = st.append("s.a", b"after", on_durable=lambda q, e: done.set())
    await asyncio.wait_for(done.wait(), 5)
    await s.close()

    s = open_store(store_dir)
    try:
        st = s.stream("S")
        assert [(m.seq, m.payload) for m in st.iter()] == [(1, b"good"), (seq2, b"after")]
        assert s.recovery["corrupt_records"] == 0
    finally:
        s.close_sync()


def test_damaged_config_files_never_stop_the_start(reopen, store_dir, caplog):
    s = reopen()
    a = s.add_stream(StreamConfig(name="A", subjects=["a.>"]))
    a.append("a.x", b"1")
    a.add_consumer(ConsumerConfig(durable_name="c1"))
    a.add_consumer(ConsumerConfig(durable_name="c2"))
    s.add_stream(StreamConfig(name="B", subjects=["b.>"])).append("b.x", b"1")
    s.close_sync()
    with open(os.path.join(sdir(store_dir, "B"), "stream.json"), "w") as f:
        f.write("{not json")
    with open(os.path.join(sdir(store_dir, "A"), "consumers", "c2.json"), "w") as f:
        f.write("garbage")
    with caplog.at_level(logging.WARNING, logger="hybridbus.store"):
        s = reopen()
    assert [x.name for x in s.streams()] == ["A"]
    assert [c.name for c in s.stream("A").consumers()] == ["c1"]
    assert s.recovery["damaged_files"] == 2
    assert os.listdir(os.path.join(store_dir, "streams", ".damaged"))
    assert any("unreadable" in r.getMessage() for r in caplog.records)
    s.add_stream(StreamConfig(name="B", subjects=["b.>"]))  # the name is free again


@pytest.mark.parametrize("always", [True, False])
async def test_random_workload_on_the_loop_survives_restart(store_dir, always):
    """Executor paths (group commit, sealing, background compaction) against a model."""
    import random

    rnd = random.Random(7 if always else 11)
    s = open_store(store_dir, sync_always=always, segment_size=2048)
    st = s.add_stream(StreamConfig(name="S", subjects=["s.>"], max_msgs_per_subject=40))
    model: dict[int, tuple[str, bytes]] = {}
    durable: list[int] = []
    subjects = [f"s.{i}" for i in range(5)]
    for step in range(3000):
        op = rnd.random()
        if op < 0.7:
            subj = rnd.choice(subjects)
            payload = rnd.randbytes(rnd.randint(0, 60))
            seq = st.append(subj, payload, on_durable=lambda q, e: durable.append(q))
            model[seq] = (subj, payload)
            same = sorted(q for q, (x, _) in model.items() if x == subj)
            for q in same[:-40]:  # the per-subject limit drops the oldest
                del model[q]
        elif op < 0.95 and model:
            seq = rnd.choice(list(model))
            st.delete(seq)
            del model[seq]
        elif op < 0.97:
            subj = rnd.choice(subjects)
            st.purge(subject=subj, keep=2)
            same = sorted(q for q, (x, _) in model.items() if x == subj)
            for q in same[:-2]:
                del model[q]
        if step % 50 == 0:
            await asyncio.sleep(0.005)  # let writes, seals and compactions finish
        elif step % 7 == 0:
            await asyncio.sleep(0)
    await asyncio.sleep(0.2)
    assert s.stats()["compactions"] > 0
    assert sorted(durable) == sorted(set(durable)) and len(durable) == st.state().last_seq
    want = [(q, *model[q]) for q in sorted(model)]
    assert [(m.seq, m.subject, m.payload) for m in st.iter()] == want
    await s.close()
    s = open_store(store_dir)
    try:
        assert s.recovery["corrupt_records"] == 0
        assert [(m.seq, m.subject, m.payload) for m in s.stream("S").iter()] == want
    finally:
        s.close_sync()


def test_stream_updates_survive_restart(reopen):
    s = reopen()
    s.add_stream(StreamConfig(name="S", subjects=["s.>"]))
    s.update_stream(StreamConfig(name="S", subjects=["s.>", "t.>"], max_msgs=10, description="d"))
    s = reopen()
    c = s.stream("S").config
    assert (c.subjects, c.max_msgs, c.description) == (["s.>", "t.>"], 10, "d")
    assert s.stream_for_subject("t.x").name == "S"


def test_read_only_segments_serve_reads_and_refuse_appends(reopen, monkeypatch, caplog):
    s = reopen()
    s.add_stream(StreamConfig(name="S", subjects=["s.>"])).append("s.a", b"kept")
    s.close_sync()
    real_open = os.open

    def ro_open(path, flags, *a):
        if str(path).endswith(".seg") and flags & os.O_RDWR:
            raise OSError(errno.EROFS, "Read-only file system")
        return real_open(path, flags, *a)

    monkeypatch.setattr(os, "open", ro_open)
    with caplog.at_level(logging.ERROR, logger="hybridbus.store"):
        s = reopen()
    st = s.stream("S")
    assert st.get(1).payload == b"kept"
    with pytest.raises(StoreWriteError) as ei:
        st.append("s.a", b"no")
    assert ei.value.errno == errno.EROFS
    assert any("not writable" in r.getMessage() for r in caplog.records)
    monkeypatch.setattr(os, "open", real_open)
    st._fail_until = time.monotonic()  # the back-off is over: the next append retries
    assert st.append("s.a", b"yes") == 2
    s = reopen()
    assert [m.payload for m in s.stream("S").iter()] == [b"kept", b"yes"]


async def test_fsync_failure_under_sync_always_rolls_back(store_dir, monkeypatch):
    s = open_store(store_dir, sync_always=True)
    st = s.add_stream(StreamConfig(name="S", subjects=["s.>"]))
    first = asyncio.Event()
    st.append("s.a", b"synced", on_durable=lambda q, e: first.set())
    await asyncio.wait_for(first.wait(), 5)

    def eio(fd):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(writer, "_fdatasync", eio)
    results = []
    done = asyncio.Event()

    def cb(seq, err):
        results.append((seq, err))
        if len(results) == 3:
            done.set()

    seqs = [st.append("s.a", b"lost %d" % i, on_durable=cb) for i in range(3)]
    await asyncio.wait_for(done.wait(), 5)
    assert [q for q, _ in results] == seqs
    assert all(isinstance(e, StoreWriteError) and e.errno == errno.EIO for _, e in results)
    assert [m.payload for m in st.iter()] == [b"synced"]  # nothing unsynced is served
    monkeypatch.undo()
    st._fail_until = time.monotonic()
    ok = asyncio.Event()
    seq = st.append("s.a", b"again", on_durable=lambda q, e: ok.set())
    await asyncio.wait_for(ok.wait(), 5)
    await s.close()
    s = open_store(store_dir)
    try:
        assert [(m.seq, m.payload) for m in s.stream("S").iter()] == [
            (1, b"synced"),
            (seq, b"again"),
        ]
        assert seq > seqs[-1]  # the failed sequences are never handed out again
    finally:
        s.close_sync()


def test_delete_many_runs_survive_reopen(reopen):
    st = reopen()
    s = st.add_stream(StreamConfig(name="R", subjects=["r.>"]))
    seqs = s.append_many("r.a", [b"%d" % i for i in range(1000)])
    assert s.delete_many(seqs[100:900]) == 800  # one run
    assert s.delete_many(seqs[50:120]) == 50  # overlaps what is gone: one by one
    st = reopen()
    s = st.stream("R")
    assert [m.seq for m in s.iter()] == seqs[:50] + seqs[900:]
    state = s.state()
    assert (state.messages, state.first_seq, state.last_seq) == (150, 1, 1000)


def test_a_consumer_reads_runs_from_disk_as_stored(reopen, store_dir):
    # After a restart nothing is in the read cache: a consumer's batch is read in runs
    # (store/file/stream.py _load_slots). Headers, long msg ids (a record longer than
    # the size guess), a payload past READ_RUN_MAX, deleted slots, consumer records
    # between the messages, and a record damaged on disk after the start (skipped,
    # counted) must all come out as they went in.
    from hybridbus.store.file import stream as file_stream

    s = reopen()
    st = s.add_stream(StreamConfig(name="S", subjects=["s.>"]))
    mover = st.add_consumer(ConsumerConfig(durable_name="mover"))  # COPS records in between
    want = {}
    for i in range(1, 401):
        kw = {}
        payload = b"p%d" % i
        if i % 7 == 0:
            kw["msg_id"] = f"id-{i}-" + "x" * 300
        if i % 11 == 0:
            kw["headers"] = {"H": str(i)}
        if i == 200:
            payload = b"B" * (file_stream.READ_RUN_MAX + 1000)
        seq = st.append(f"s.{i % 3}", payload, **kw)
        want[seq] = (f"s.{i % 3}", payload, "H" in str(kw.get("headers")))
        if i % 50 == 0:
            mover.ack(mover.next_batch(5)[-1][0].seq)
    for seq in (5, 6, 7, 100, 399):
        st.delete(seq)
        del want[seq]
    s = reopen()
    st = s.stream("S")
    assert not st._cache
    got = st.add_consumer(ConsumerConfig(durable_name="c")).next_batch(1000)
    assert [m.seq for m, _ in got] == sorted(want)
    for m, _ in got:
        subject, payload, has_hdr = want[m.seq]
        assert (m.subject, m.payload, m.headers is not None) == (subject, payload, has_hdr)
        assert m == st.get(m.seq)
    # Damage the record of seq 50 in the file the store has open: that one is skipped
    # and reported, the others of its run are read.
    seg = os.path.join(sdir(store_dir), files(store_dir, ".seg")[0])
    with open(seg, "r+b") as f:
        data = f.read()
        pos = data.find(b"p50")
        f.seek(pos)
        f.write(b"q50")
    before = s.counters["corrupt_records"]
    got = st.add_consumer(ConsumerConfig(durable_name="d")).next_batch(100)
    seqs = [m.seq for m, _ in got]
    assert 50 not in seqs and 49 in seqs and 51 in seqs
    assert s.counters["corrupt_records"] == before + 1


def _spy_fsyncs(monkeypatch) -> list[str]:
    """The paths os.fsync is called on (on any thread), in order."""
    seen: list[str] = []
    real = os.fsync

    def fsync(fd):
        seen.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return seen


async def test_a_new_stream_is_synced_by_the_interval_tick(store_dir, monkeypatch):
    """Interval policy: a create does no fsync on the loop (five per create made 300
    creates take seconds); the next tick fsyncs stream.json and the directories, as it
    does the stream's messages. sync_always keeps syncing at the create."""
    s = open_store(store_dir, sync_interval=0.05)
    try:
        seen = _spy_fsyncs(monkeypatch)
        s.add_stream(StreamConfig(name="S", subjects=["s.>"]))
        assert seen == []
        await asyncio.sleep(0.3)
        path = os.path.realpath(sdir(store_dir))
        for want in (os.path.join(path, "stream.json"), path, os.path.dirname(path)):
            assert want in seen
    finally:
        await s.close()
    monkeypatch.undo()
    s = open_store(store_dir, sync_always=True)
    try:
        seen = _spy_fsyncs(monkeypatch)
        s.add_stream(StreamConfig(name="T", subjects=["t.>"]))
        path = os.path.realpath(sdir(store_dir, "T"))
        assert os.path.join(path, "stream.json.tmp") in seen
        assert path in seen and os.path.dirname(path) in seen
    finally:
        await s.close()


def test_a_new_stream_cut_short_by_a_power_loss_recovers(reopen, store_dir):
    """What a power loss before the first sync may leave of a new stream: an empty or
    missing segment (an empty stream that works), no stream.json (set aside)."""
    s = reopen()
    for name in ("A", "B", "C"):
        s.add_stream(StreamConfig(name=name, subjects=[f"{name.lower()}.>"]))
    s.close_sync()
    for seg in files(store_dir, ".seg", "A"):
        open(os.path.join(sdir(store_dir, "A"), seg), "w").close()
    for seg in files(store_dir, ".seg", "B") + files(store_dir, ".idx", "B"):
        os.remove(os.path.join(sdir(store_dir, "B"), seg))
    os.remove(os.path.join(sdir(store_dir, "C"), "stream.json"))
    s = reopen()
    assert sorted(x.name for x in s.streams()) == ["A", "B"]
    assert s.recovery["damaged_files"] == 1
    assert s.stream("A").append("a.x", b"1") == 1
    assert s.stream("B").append("b.x", b"1") == 1
    s = reopen()
    assert [(x.name, x.state().messages) for x in s.streams()] == [("A", 1), ("B", 1)]


def test_an_index_with_sizes_by_the_older_rule_is_rebuilt(reopen, store_dir):
    """Sizes follow nats-server's fileStoreMsgSize (subject + payload + 30, headers + 4
    more); an index written when they were counted as in memory is rebuilt."""
    from array import array

    from hybridbus.store import records

    s = reopen()
    st = s.add_stream(StreamConfig(name="S", subjects=["s.>"]))
    st.append("s.a", b"12345")
    st.append("s.b", b"", b"NATS/1.0\r\nA: b\r\n\r\n")
    want = (3 + 5 + 30) + (3 + 18 + 34)
    assert st.state().bytes == want
    s.close_sync()
    (idx,) = files(store_dir, ".idx")
    path = os.path.join(sdir(store_dir), idx)
    with open(path, "rb") as f:
        body = records.decode_index(f.read())
    del body["msg_sizes"]  # as written before: sizes as a memory stream counts them
    body["size"] = records.pack_array(array("I", [3 + 5 + 16, 3 + 18 + 16]))
    with open(path, "wb") as f:
        f.write(records.encode_index(body))
    s = reopen()
    assert s.stream("S").state().bytes == want
    assert s.usage()["storage"] == want


def test_a_clean_run_is_one_read(reopen, store_dir, monkeypatch):
    # A run with nothing deleted or cached (a consumer catching up after a restart) is
    # read with one pread and decoded at once (_load_slots' first case); a record that
    # does not check out there is read again alone, as any other (skipped, counted).
    s = reopen()
    st = s.add_stream(StreamConfig(name="S", subjects=["s.>"]))
    for i in range(1, 301):
        st.append(f"s.{i % 2}", b"p%03d" % i, headers={"H": "1"} if i % 9 == 0 else None)
    s = reopen()
    st = s.stream("S")
    reads = []
    real = os.pread

    def pread(fd, n, off):
        reads.append(n)
        return real(fd, n, off)

    monkeypatch.setattr(os, "pread", pread)
    c = st.add_consumer(ConsumerConfig(durable_name="c"))
    got = c.next_batch(100)
    assert len(reads) == 1 and [m.seq for m, _ in got] == list(range(1, 101))
    assert all(m == st.get(m.seq) for m, _ in got)
    assert [d.num_pending for _, d in got[-2:]] == [201, 200]
    seg = os.path.join(sdir(store_dir), files(store_dir, ".seg")[0])
    with open(seg, "r+b") as f:
        data = f.read()
        f.seek(data.find(b"p150"))
        f.write(b"q150")
    before = s.counters["corrupt_records"]
    reads.clear()
    got = c.next_batch(100)
    # 150 is handed out as nothing, and 201 fills the batch
    assert [m.seq for m, _ in got] == [q for q in range(101, 202) if q != 150]
    assert len(reads) == 3  # the run, 150 alone, then 201
    assert s.counters["corrupt_records"] == before + 1
    assert c.num_pending == 99 and c.delivered == (200, 201)
    # the newest messages are in the read cache: read from there, as before
    for i in range(3):
        st.append("s.0", b"new%d" % i)
    rest = c.next_batch(500)
    assert [m.seq for m, _ in rest] == list(range(202, 304)) and c.num_pending == 0
