"""File store only: MSGS records, a run of plain appends stored as one record (records.py).

Each test writes runs the way a read of JetStream publishes does (``append_each`` /
``append_many`` on a plain stream), then reads them back the ways the server does: the
read cache, one slot from disk, a batch read from disk, a restart with and without index
files, after compaction, after damage.
"""

from __future__ import annotations

import os

from hybridbus.store import ConsumerConfig, StreamConfig
from hybridbus.store.records import (
    RUN_MAX_MSGS,
    SEG_HEADER_SIZE,
    T_MSG,
    T_MSGS,
    ScanResult,
    scan_records,
)


def sdir(store_dir: str) -> str:
    return os.path.join(store_dir, "streams", "S")


def segs(store_dir: str, ext: str = ".seg") -> list[str]:
    d = sdir(store_dir)
    return sorted(os.path.join(d, f) for f in os.listdir(d) if f.endswith(ext))


def record_types(path: str) -> list[tuple[int, int, int]]:
    """(offset, type, end) of every record in a segment file."""
    data = open(path, "rb").read()
    return [
        (off, rtype, end)
        for off, _v, rtype, _b, end in scan_records(data, SEG_HEADER_SIZE, ScanResult())
    ]


def payloads(n: int, start: int = 0) -> list[bytes]:
    return [b"m%05d" % i * (1 + i % 5) for i in range(start, start + n)]


def listing(st) -> list[tuple[int, str, bytes]]:
    return [(m.seq, m.subject, m.payload) for m in st.iter()]


def drop_indexes(store_dir: str) -> None:
    for p in segs(store_dir, ".idx"):
        os.unlink(p)


def test_a_run_is_one_record_and_comes_back_whole_after_a_restart(reopen, store_dir):
    s = reopen()
    st = s.add_stream(StreamConfig(name="S", subjects=["s.>"]))
    st.append("s.one", b"single")  # a MSG record
    got = st.append_each("s.x", payloads(RUN_MAX_MSGS + 44))
    assert got == list(range(2, RUN_MAX_MSGS + 46))
    assert st.append_each("s.y", [b"alone"]) == [RUN_MAX_MSGS + 46]  # a run of one: MSG
    want = listing(st)
    state = st.state()
    s.close_sync()
    types = [t for _o, t, _e in record_types(segs(store_dir)[0])]
    assert types == [T_MSG, T_MSGS, T_MSGS, T_MSG]  # 300 messages in two runs
    for indexes in (True, False):
        if not indexes:
            drop_indexes(store_dir)
        s = reopen()
        st = s.stream("S")
        assert listing(st) == want
        assert st.state() == state
        # every member of a run carries the run's timestamp
        assert len({st.get(seq).ts_ns for seq in range(2, RUN_MAX_MSGS + 2)}) == 1
        assert s.recovery["corrupt_records"] == 0


def test_members_read_from_disk_one_by_one_and_in_batches(reopen, store_dir):
    s = reopen()
    st = s.add_stream(StreamConfig(name="S", subjects=["s.>"]))
    want = payloads(700)
    for i in range(0, 700, 100):
        st.append_each("s.x", want[i : i + 100])
    s = reopen()  # the read cache starts empty
    st = s.stream("S")
    assert st.get(1).payload == want[0]
    assert st.get(350).payload == want[349]  # the middle of a run, alone
    assert st.get(700).payload == want[699]
    # a batch read that ends inside a run reads the rest of that record too
    assert [m.payload for m in st.iter()] == want
    c = st.add_consumer(ConsumerConfig(durable_name="c"))
    got = []
    while len(got) < 700:
        batch = c.next_batch(170)
        assert batch
        got += [m.payload for m, _d in batch]
    assert got == want
    assert s.stats()["corrupt_records"] == 0


def test_a_deleted_member_stays_deleted_across_restarts_and_compaction(reopen, store_dir):
    s = reopen(segment_size=4096)
    st = s.add_stream(StreamConfig(name="S", subjects=["s.>"]))
    for i in range(0, 2000, 200):
        st.append_each("s.x", payloads(200, i))
    assert len(segs(store_dir)) >= 4
    first_seg = [seq for seq in range(1, 2001) if st.get(seq) is not None][:40]
    dead = first_seg[::2] + [1500, 1501]
    for seq in dead:
        st.delete(seq)
    for _ in range(3):  # roll so that the first segments may be compacted
        st.append_each("s.z", payloads(200))
    want = listing(st)
    assert not {seq for seq, _s, _p in want} & set(dead)
    assert st.compact() >= 0
    assert listing(st) == want
    for indexes in (True, False):
        if not indexes:
            drop_indexes(store_dir)  # a full scan: only tombstones keep members dead
        s = reopen(segment_size=4096)
        st = s.stream("S")
        assert listing(st) == want
        assert s.recovery["corrupt_records"] == 0


def test_compacting_keeps_runs_with_dead_members_and_their_tombstones(reopen, store_dir):
    s = reopen(segment_size=4096)
    st = s.add_stream(StreamConfig(name="S", subjects=["s.>"]))
    while len(st._blocks) < 2:  # segment 1: runs of 100
        st.append_each("s.x", [b"x" * 30 for _ in range(100)])
    seg1 = st._blocks[0]
    members = [seg1.first + j for j in range(len(seg1.subj))]
    seg2 = st._tail  # holds the end of the last run (a run is cut at the segment size)
    # Most of segment 1 dies (whole runs and parts of runs) while segment 2 is active:
    # the tombstones land in segment 2, which then dies whole, so compaction rewrites
    # segment 1 and drops segment 2 (its tombstones live on only where they must).
    dead = [seq for seq in members if seq % 10 != 3]
    for seq in dead + [seg2.first + j for j in range(len(seg2.subj))]:
        st.delete(seq)
    assert seg2.dels and seg2.live == 0
    while len(st._blocks) < 5:  # three more segments, so that 1 and 2 are old enough
        st.append_each("s.z", payloads(150))
    size_before = os.path.getsize(segs(store_dir)[0])
    assert st.compact() >= 2 and s.stats()["compactions"] >= 2
    assert os.path.getsize(segs(store_dir)[0]) < size_before
    want = listing(st)
    live1 = [seq for seq in members if seq % 10 == 3]
    assert [seq for seq, _s, _p in want if seq <= members[-1]] == live1
    drop_indexes(store_dir)
    s = reopen(segment_size=4096)
    st = s.stream("S")
    assert listing(st) == want  # the dead members of kept runs did not come back
    assert s.recovery["corrupt_records"] == 0


def closed_runs(reopen, store_dir: str, n: int) -> tuple[list, str, list[tuple[int, int]]]:
    """A closed store holding ``n`` runs of 100: the listing, the segment file and the
    (start, end) offsets of its MSGS records."""
    s = reopen()
    st = s.add_stream(StreamConfig(name="S", subjects=["s.>"]))
    for i in range(0, 100 * n, 100):
        st.append_each("s.x", payloads(100, i))
    want = listing(st)
    s.close_sync()
    path = segs(store_dir)[0]
    return want, path, [(o, e) for o, t, e in record_types(path) if t == T_MSGS]


def test_a_damaged_run_is_lost_whole_and_the_rest_survives(reopen, store_dir):
    want, path, runs = closed_runs(reopen, store_dir, 3)
    assert len(runs) == 3
    off, end = runs[1]
    with open(path, "r+b") as f:  # one bit in the middle run's payloads
        f.seek((off + end) // 2)
        b = f.read(1)
        f.seek((off + end) // 2)
        f.write(bytes([b[0] ^ 0x10]))
    drop_indexes(store_dir)
    s = reopen()
    st = s.stream("S")
    assert s.recovery["corrupt_records"] == 1
    assert listing(st) == want[:100] + want[200:]
    assert st.append("s.x", b"next") == 301  # its sequences are not handed out again


def test_a_run_torn_by_a_crash_is_cut_and_earlier_runs_survive(reopen, store_dir):
    want, path, runs = closed_runs(reopen, store_dir, 2)
    off, end = runs[-1]
    os.truncate(path, (off + end) // 2)
    drop_indexes(store_dir)
    s = reopen()
    st = s.stream("S")
    assert s.recovery["torn_tails"] == 1
    assert listing(st) == want[:100]


def test_a_stream_with_consumers_takes_runs_and_wakes_each_consumer_once(reopen, store_dir):
    s = reopen()
    st = s.add_stream(StreamConfig(name="S", subjects=["s.>"]))
    every = st.add_consumer(ConsumerConfig(durable_name="all"))
    only_y = st.add_consumer(ConsumerConfig(durable_name="y", filter_subject="s.y"))
    woken = {"all": 0, "y": 0}
    every.on_available = lambda: woken.__setitem__("all", woken["all"] + 1)
    only_y.on_available = lambda: woken.__setitem__("y", woken["y"] + 1)
    st.append_each("s.x", payloads(300))
    st.append_each("s.y", payloads(50))
    assert woken == {"all": 2, "y": 1}
    assert (every.num_pending, only_y.num_pending) == (350, 50)
    s.close_sync()
    assert T_MSGS in [t for _o, t, _e in record_types(segs(store_dir)[0])]
    s = reopen()
    st = s.stream("S")
    got = [m.seq for m, _d in st.consumer("y").next_batch(100)]
    assert got == list(range(301, 351))
    assert st.consumer("all").num_pending == 350


def test_a_batch_read_skips_deleted_members_of_a_run(reopen, store_dir):
    s = reopen()
    st = s.add_stream(StreamConfig(name="S", subjects=["s.>"]))
    want = payloads(600)
    for i in range(0, 600, 200):
        st.append_each("s.x", want[i : i + 200])
    s = reopen()  # from disk: members picked out of each record, some not consecutive
    st = s.stream("S")
    gone = {5, 6, 150, 201, 599}
    for seq in gone:
        st.delete(seq)
    c = st.add_consumer(ConsumerConfig(durable_name="c"))
    got = []
    while True:
        batch = c.next_batch(250)
        if not batch:
            break
        got += [(m.seq, m.payload) for m, _d in batch]
    assert got == [(i + 1, p) for i, p in enumerate(want) if i + 1 not in gone]
    assert s.stats()["corrupt_records"] == 0
