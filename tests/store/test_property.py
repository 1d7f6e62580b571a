"""Property tests: append/delete/purge/compact/restart and a consumer against a plain model."""

from __future__ import annotations

import shutil
import tempfile

import hypothesis.strategies as hs
import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from hybridbus.store import ConsumerConfig, StreamConfig, open_store
from hybridbus.store import errors as E
from hybridbus.store.match import subject_matches

SUBJECTS = ["p.a", "p.b", "p.c.d", "p.c.e"]
FILTERS = ["p.a", "p.*", "p.c.>", ">"]
CONSUMER_FILTER = "p.c.>"


def size_of(subject: str, payload: bytes, kind: str = "memory") -> int:
    """nats-server's memStoreMsgSize / fileStoreMsgSize (no headers here)."""
    return len(subject) + len(payload) + (30 if kind == "file" else 16)


class StoreModel(RuleBasedStateMachine):
    kind = "memory"

    def __init__(self):
        super().__init__()
        self.dir = tempfile.mkdtemp() if self.kind == "file" else None
        self.open()
        self.st = self.store.add_stream(StreamConfig(name="P", subjects=["p.>"]))
        self.c = self.st.add_consumer(
            ConsumerConfig(durable_name="c", filter_subject=CONSUMER_FILTER)
        )
        self.msgs: dict[int, tuple[str, bytes]] = {}
        self.last = 0
        self.cursor = 0  # the consumer's delivered stream seq
        self.pending: set[int] = set()

    def open(self):
        self.store = open_store(self.dir, segment_size=700)

    def teardown(self):
        self.store.close_sync()
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    # ---- rules

    @rule(subject=hs.sampled_from(SUBJECTS), payload=hs.binary(max_size=40))
    def append(self, subject, payload):
        seq = self.st.append(subject, payload)
        assert seq == self.last + 1
        self.last = seq
        self.msgs[seq] = (subject, payload)

    @rule(subject=hs.sampled_from(SUBJECTS), wrong=hs.booleans())
    def append_expecting(self, subject, wrong):
        last_on = max((q for q, (s, _) in self.msgs.items() if s == subject), default=0)
        if wrong:
            with pytest.raises(E.WrongLastSequence):
                self.st.append(subject, b"x", expected_last_subject_seq=last_on + 1)
        else:
            self.append(subject, b"")  # keeps the model in step
            self.st.delete(self.last)
            del self.msgs[self.last]
            self.forget(self.last)

    @rule(data=hs.data())
    def delete(self, data):
        if self.msgs and data.draw(hs.booleans()):
            seq = data.draw(hs.sampled_from(sorted(self.msgs)))
            self.st.delete(seq)
            del self.msgs[seq]
            self.forget(seq)
        else:
            seq = data.draw(hs.integers(min_value=1, max_value=self.last + 3))
            if seq in self.msgs:
                return
            with pytest.raises(E.SeqNotFound):
                self.st.delete(seq)

    @rule()
    def purge_all(self):
        n = self.st.purge()
        assert n == len(self.msgs)
        self.msgs.clear()
        self.pending.clear()
        self.cursor = max(self.cursor, self.last)

    @rule(data=hs.data())
    def purge_below(self, data):
        seq = data.draw(hs.integers(min_value=1, max_value=self.last + 2))
        gone = [q for q in self.msgs if q < seq]
        assert self.st.purge(seq=seq) == len(gone)
        for q in gone:
            del self.msgs[q]
        self.pending = {q for q in self.pending if q >= seq}
        self.cursor = max(self.cursor, min(seq, self.last + 1) - 1)

    @rule(flt=hs.sampled_from(FILTERS), keep=hs.sampled_from([None, 1, 2]))
    def purge_filtered(self, flt, keep):
        match = sorted(q for q, (s, _) in self.msgs.items() if subject_matches(flt, s))
        gone = match[: len(match) - keep] if keep else match
        if keep and keep >= len(match):
            gone = []
        n = self.st.purge(subject=flt, keep=keep)
        assert n == len(gone)
        for q in gone:
            del self.msgs[q]
            self.forget(q)
        if flt == ">" and not keep:
            self.cursor = max(self.cursor, self.last)

    @rule(n=hs.integers(min_value=1, max_value=4))
    def deliver(self, n):
        want = sorted(
            q
            for q, (s, _) in self.msgs.items()
            if q > self.cursor and subject_matches(CONSUMER_FILTER, s)
        )[:n]
        got = self.c.next_batch(n)
        assert [m.seq for m, _ in got] == want
        for m, d in got:
            assert (m.subject, m.payload) == self.msgs[m.seq]
            assert d.num_delivered == 1
        if want:
            self.cursor = want[-1]
        self.pending.update(want)

    @rule(data=hs.data())
    def ack(self, data):
        if not self.pending:
            return
        seq = data.draw(hs.sampled_from(sorted(self.pending)))
        assert self.c.ack(seq)
        self.pending.discard(seq)

    @precondition(lambda self: self.kind == "file")
    @rule()
    def compact(self):
        self.st.compact()

    @precondition(lambda self: self.kind == "file")
    @rule()
    def restart(self):
        self.store.close_sync()
        self.open()
        assert self.store.recovery["corrupt_records"] == 0
        self.st = self.store.stream("P")
        self.c = self.st.consumer("c")

    def forget(self, seq):
        self.pending.discard(seq)

    # ---- invariants

    @invariant()
    def state_matches(self):
        s = self.st.state()
        assert s.messages == len(self.msgs)
        assert s.last_seq == self.last
        if self.msgs:
            assert s.first_seq == min(self.msgs)
        else:
            assert s.first_seq == (self.last + 1 if self.last else 0)
        assert s.bytes == sum(size_of(sub, p, self.kind) for sub, p in self.msgs.values())
        counts: dict[str, int] = {}
        for sub, _ in self.msgs.values():
            counts[sub] = counts.get(sub, 0) + 1
        assert self.st.subjects() == counts
        assert s.num_subjects == len(counts)

    @invariant()
    def contents_match(self):
        assert [(m.seq, m.subject, m.payload) for m in self.st.iter()] == [
            (q, *self.msgs[q]) for q in sorted(self.msgs)
        ]
        for sub in SUBJECTS:
            seqs = [q for q, (s, _) in self.msgs.items() if s == sub]
            if seqs:
                assert self.st.last(sub).seq == max(seqs)

    @invariant()
    def consumer_matches(self):
        left = sum(
            1
            for q, (s, _) in self.msgs.items()
            if q > self.cursor and subject_matches(CONSUMER_FILTER, s)
        )
        assert self.c.num_pending == left
        assert self.c.num_ack_pending == len(self.pending)
        assert self.c.info()["delivered"]["stream_seq"] >= self.cursor


class FileStoreModel(StoreModel):
    kind = "file"


_settings = settings(
    max_examples=60,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestMemoryStoreModel = StoreModel.TestCase
TestMemoryStoreModel.settings = _settings
TestFileStoreModel = FileStoreModel.TestCase
TestFileStoreModel.settings = _settings
