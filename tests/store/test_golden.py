"""Golden segment files: format stability, and recovery from truncation and bit flips."""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil

import pytest

from hybridbus.store import open_store, records
from hybridbus.store.records import ScanResult, decode_body, scan_records

GOLDEN = os.path.join(os.path.dirname(__file__), "golden")


def _builder():
    spec = importlib.util.spec_from_file_location(
        "make_golden", os.path.join(GOLDEN, "make_golden.py")
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def golden(name: str) -> bytes:
    with open(os.path.join(GOLDEN, name), "rb") as f:
        return f.read()


def install(store_dir: str, seg: str, idx: str | None = None) -> str:
    """Lay out stream G with one golden segment (and optionally its index)."""
    d = os.path.join(store_dir, "streams", "G")
    os.makedirs(os.path.join(d, "consumers"))
    shutil.copy(os.path.join(GOLDEN, "stream.json"), os.path.join(d, "stream.json"))
    shutil.copy(os.path.join(GOLDEN, "consumer-c.json"), os.path.join(d, "consumers", "c.json"))
    shutil.copy(os.path.join(GOLDEN, seg), os.path.join(d, "0000000001.seg"))
    if idx:
        shutil.copy(os.path.join(GOLDEN, idx), os.path.join(d, "0000000001.idx"))
    return os.path.join(d, "0000000001.seg")


def test_committed_files_match_the_encoder():
    built = _builder().build()
    for name, data in built.items():
        assert golden(name) == data, f"{name}: the on-disk format changed (see make_golden.py)"


def test_basic_segment_decodes_record_by_record():
    data = golden("v1-basic.seg")
    assert records.parse_segment_header(data) == (1, 1)
    res = ScanResult()
    recs = [
        (rtype, decode_body(data[b0:end])) for _o, _v, rtype, b0, end in scan_records(data, 16, res)
    ]
    assert [r[0] for r in recs] == [1, 1, 1, 2, 3, 4, 1]
    seq, ts, subject, hdrs, payload = recs[0][1]
    assert (seq, subject, hdrs, payload) == (1, "g.a", b"NATS/1.0\r\nX-K: v\r\n\r\n", b"one")
    assert recs[1][1][5] == "m-2"
    assert recs[3][1] == [2, 2]
    assert (res.valid_end, res.corrupt, res.torn_at) == (len(data), [], -1)


def test_index_file_decodes():
    idx = records.decode_index(golden("v1-basic.idx"))
    assert idx is not None
    assert (idx["seg_size"], idx["first"], idx["n"], idx["dels"]) == (264, 1, 4, [2, 2])
    assert records.decode_index(golden("v1-basic.idx")[:-1]) is None


@pytest.mark.parametrize("with_index", [False, True])
def test_recover_basic(store_dir, with_index):
    install(store_dir, "v1-basic.seg", "v1-basic.idx" if with_index else None)
    s = open_store(store_dir)
    try:
        rep = s.recovery
        assert (rep["corrupt_records"], rep["torn_tails"], rep["damaged_files"]) == (0, 0, 0)
        st = s.stream("G")
        assert [(m.seq, m.subject, m.payload) for m in st.iter()] == [
            (1, "g.a", b"one"),
            (3, "g.a", b"three"),
            (4, "g.c", b"four"),
        ]
        assert st.get(1).headers == b"NATS/1.0\r\nX-K: v\r\n\r\n"
        assert st.get(4).ts_ns == 1_700_000_000_000_003_000
        assert st.state().num_deleted == 1
        c = st.consumer("c")
        info = c.info()
        assert info["delivered"] == {"consumer_seq": 2, "stream_seq": 3}
        assert info["ack_floor"] == {"consumer_seq": 1, "stream_seq": 2}
        assert (c.num_ack_pending, c.num_pending) == (1, 1)
        assert st.append("g.b", b"dup", msg_id="m-2") == 2 and st.was_duplicate
        assert st.append("g.b", b"five") == 5
    finally:
        s.close_sync()


def test_recover_truncated_tail(store_dir, caplog):
    seg = install(store_dir, "v1-truncated.seg")
    with caplog.at_level(logging.WARNING, logger="hybridbus.store"):
        s = open_store(store_dir)
    try:
        rep = s.recovery
        assert (rep["torn_tails"], rep["corrupt_records"]) == (1, 0)
        assert rep["bytes_cut"] == 9
        assert os.path.getsize(seg) == 239 - 9  # the torn record is gone from the file
        assert any("torn tail" in r.getMessage() for r in caplog.records)
        st = s.stream("G")
        assert [m.seq for m in st.iter()] == [1, 3]
        assert st.append("g.c", b"again") == 4  # 4 was never complete on disk
        assert s.stats()["torn_tails"] == 1
    finally:
        s.close_sync()


@pytest.mark.parametrize("with_index", [False, True])
def test_recover_bit_flip_in_a_payload(store_dir, caplog, with_index):
    install(store_dir, "v1-bitflip.seg", "v1-basic.idx" if with_index else None)
    with caplog.at_level(logging.WARNING, logger="hybridbus.store"):
        s = open_store(store_dir)
    try:
        assert s.recovery["corrupt_records"] == 1 and s.recovery["torn_tails"] == 0
        assert s.stats()["corrupt_records"] == 1  # the counter monitoring reads
        msgs = [r.getMessage() for r in caplog.records]
        assert any("corrupt record at offset 107" in m for m in msgs), msgs
        st = s.stream("G")
        assert [m.seq for m in st.iter()] == [1, 4]
        c = st.consumer("c")
        assert c.num_ack_pending == 0  # its pending message is gone
        assert [m.seq for m, _ in c.next_batch(5)] == [4]
    finally:
        s.close_sync()


def test_recover_bit_flip_in_a_length_field(store_dir):
    install(store_dir, "v1-bitflip-length.seg")
    s = open_store(store_dir)
    try:
        assert s.recovery["corrupt_records"] == 1
        st = s.stream("G")
        assert [m.seq for m in st.iter()] == [3, 4]
        assert st.state().last_seq == 4
    finally:
        s.close_sync()


def test_unknown_versions_and_garbage_do_not_stop_the_start(store_dir):
    d = os.path.dirname(install(store_dir, "v1-basic.seg"))
    future = bytearray(golden("v1-basic.seg"))
    future[4] = 2  # a newer format version
    with open(os.path.join(d, "0000000002.seg"), "wb") as f:
        f.write(future)
    with open(os.path.join(d, "0000000003.seg"), "wb") as f:
        f.write(os.urandom(300))
    os.makedirs(os.path.join(store_dir, "streams", "JUNK"))
    s = open_store(store_dir)
    try:
        rep = s.recovery
        assert rep["damaged_files"] >= 3  # v2 segment, random segment, stream without config
        st = s.stream("G")
        assert [m.seq for m in st.iter()] == [1, 3, 4]
        seq = st.append("g.a", b"new")
        assert seq == 5
        assert [x.name for x in s.streams()] == ["G"]
    finally:
        s.close_sync()
    # the skipped files are kept for inspection, and the new data went to a new segment
    assert os.path.exists(os.path.join(d, "0000000002.seg"))
    s = open_store(store_dir)
    try:
        assert s.stream("G").get(5).payload == b"new"
    finally:
        s.close_sync()
