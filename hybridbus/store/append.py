"""Appending to a stream: checks, commit, limits with discard old, consumer wake-ups.

Owns ``StreamAppend``, mixed into ``BaseStream`` (``stream.py``). ``append`` is the
checked path for one message, ``append_many`` the plain path for a burst on one subject.

Appends check expectations, duplicates and limits in nats-server's order
(``processJetStreamMsg``), assign ``last_seq + 1``, then enforce discard-old limits and
rollups by removing the oldest messages (``removal.py``).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from . import errors as E
from .api import OnDurable, encode_headers
from .filters import _CACHE_TRIM, SubjectFilter
from .match import valid_stored_subject

if TYPE_CHECKING:
    from .consumer import ConsumerImpl

_time_ns = time.time_ns


class StreamAppend:
    """The append path of ``BaseStream``; see the module docstring."""

    # hot path: kept whole, one call per message (see bench/bench_store.py)
    def append(
        self,
        subject: str,
        payload: bytes,
        headers: bytes | dict | None = None,
        *,
        msg_id: str | None = None,
        expected_last_seq: int | None = None,
        expected_last_subject_seq: int | None = None,
        expected_last_msg_id: str | None = None,
        rollup: str | None = None,
        on_durable: OnDurable | None = None,
        ts_ns: int | None = None,
    ) -> int:
        if (
            headers is None
            and msg_id is None
            and rollup is None
            and expected_last_seq is None
            and expected_last_subject_seq is None
            and expected_last_msg_id is None
            and ts_ns is None
            and self._takes_plain()
        ):
            # Nothing for the checks below to look at (the common case: the MQTT
            # outbox, retained messages, sessions).
            return self.append_many(subject, [payload], on_durable=on_durable)[0]
        if self._closed:
            raise E.StoreClosed()
        if headers is not None and headers.__class__ is not bytes:
            headers = encode_headers(headers) if isinstance(headers, dict) else bytes(headers)
        if not headers:
            headers = None
        if payload.__class__ is not bytes:
            payload = bytes(payload)
        sid = self._sids.get(subject)
        if sid is None:
            if not valid_stored_subject(subject) or (
                self._accept is not None and not self._accept(subject)
            ):
                raise E.InvalidConfig(f"subject {subject!r} is not part of stream {self.name}")
        size = len(subject) + len(payload) + self._msg_overhead
        if headers is not None:
            size += len(headers) + self._hdr_overhead
        now_ns = _time_ns()
        if (
            self._checks
            or msg_id
            or rollup
            or expected_last_seq is not None
            or expected_last_msg_id is not None
        ):
            self._check_append(
                len(payload) + (len(headers) if headers is not None else 0),
                sid,
                size,
                now_ns,
                msg_id,
                expected_last_seq,
                expected_last_subject_seq,
                expected_last_msg_id,
                rollup,
            )
            if self.was_duplicate:
                seq = self._ids[msg_id][0]  # type: ignore[index]
                if on_durable is not None:
                    self._durable(on_durable, seq)
                    self._touch()
                return seq
        else:
            self.was_duplicate = False
            if expected_last_subject_seq is not None:
                cur = self._subject_last(sid) if sid is not None else 0
                if cur != expected_last_subject_seq:
                    raise E.WrongLastSequence(cur)
        store = self._store
        kind = self.storage_kind
        if store._limits[kind] >= 0:
            growth = size
            cfg = self.config
            if cfg.discard == "old" and cfg.max_bytes > 0 and self._bytes + size > cfg.max_bytes:
                growth = cfg.max_bytes - self._bytes
            store._reserve(kind, growth)
        if self._guarded:
            self._check_writable()
        cfg = self.config
        if ts_ns is not None:
            now_ns = ts_ns  # a mirror's copy keeps its origin's time

        # ---- commit
        seq = self._last_seq + 1
        ts = now_ns if now_ns > self._last_ts else self._last_ts
        if sid is None:
            sid = self._intern(subject)
            st = self._sstate[sid] = [1, seq, seq, True]
        else:
            st = self._sstate[sid]
            st[0] += 1
            st[2] = seq
            st[3] = True
        self._last_seq = seq
        self._last_ts = ts
        self._put(seq, ts, sid, subject, headers, payload, msg_id, size)
        self._msgs += 1
        self._bytes += size
        self._store._used[self.storage_kind] += size
        if self._msgs == 1:
            self._first = seq
        if msg_id:
            ids = self._ids
            ids.pop(msg_id, None)  # keep the map in time order
            ids[msg_id] = (seq, ts)
            self._last_msg_id = msg_id
            # drop at most two expired ids per append: bounded work, bounded map
            for _ in range(2):
                k = next(iter(ids))
                if ids[k][1] >= ts - self._dup_window_ns:
                    break
                del ids[k]
        if on_durable is not None:
            self._durable(on_durable, seq)

        # ---- limits with discard old (and per subject, which drops old even with discard new)
        if cfg.max_msgs_per_subject > 0 and st[0] > cfg.max_msgs_per_subject:
            while st[0] > cfg.max_msgs_per_subject:
                self._remove_seq(self._subject_first(sid))
        if cfg.discard == "old":
            if cfg.max_msgs > 0:
                while self._msgs > cfg.max_msgs:
                    self._remove_seq(self._first)
            if cfg.max_bytes > 0:
                while self._bytes > cfg.max_bytes and self._msgs > 1:
                    self._remove_seq(self._first)
        if self._max_age_ns:
            self._arm_expiry(ts)
        if self._ttl_on and headers is not None and b"Nats-TTL:" in headers:
            self._note_ttl(seq, ts, headers)
        if rollup == "sub":
            self._purge_filtered(SubjectFilter([subject]), seq, None)
        elif rollup == "all":
            self._purge_prefix(seq)

        # ---- consumers
        if self._consumers:
            interested = self._interest.get(sid)
            if interested is None:
                interested = self._interest_for(sid)
            for c in interested:
                c._num_pending += 1
                cb = c.on_available
                if cb is not None:
                    cb()
            if self._retention_interest and not interested:
                self._remove_seq(seq)
        elif self._retention_interest:
            self._remove_seq(seq)
        self._touch()
        return seq

    def append_many(
        self, subject: str, payloads: list[bytes], *, on_durable: OnDurable | None = None
    ) -> list[int]:
        """Append each payload to `subject` (no headers, no options), in order; returns
        their sequences. `on_durable(seq, err)` is called once, with the last seq, when
        all of them are durable (they are written together). As `append` for each,
        with the subject checked once; a stream with limits or consumers takes
        `append` one by one. All or none: if an append fails, the ones this call made
        are removed again and the error is raised."""
        if not payloads:
            return []
        seqs: list[int] = []
        try:
            if self._takes_plain():
                self._append_many_plain(subject, payloads, seqs)
            else:
                for payload in payloads:
                    seqs.append(self.append(subject, payload))
        except E.StoreError:
            for seq in seqs:  # no caller will ever know these seqs: take them back
                self._remove_seq(seq)
            if seqs:
                self._touch()
            raise
        if on_durable is not None:
            # One registration covers them all: nothing is flushed between the appends
            # of one call, so every record is in the same write (and fsync) as the last.
            self._durable(on_durable, seqs[-1])
            self._touch()
        return seqs

    def append_each(self, subject: str, payloads: list[bytes]) -> list[int | E.StoreError]:
        """`append(subject, p)` for each payload, in order, each on its own: returns each
        one's sequence or the StoreError that refused it (the others are stored). For
        a burst of separate publishes (JetStream's captures of one read), where one
        refusal must not undo the rest as in `append_many`. A plain stream takes them in
        one commit step; register durability once afterwards (`when_durable`)."""
        out: list = []
        if self._takes_plain():
            try:
                self._append_many_plain(subject, payloads, out)
                return out
            except E.StoreError:
                pass  # those in `out` are stored; the rest go one by one, for their errors
        for payload in payloads[len(out) :]:
            try:
                out.append(self.append(subject, payload))
            except E.StoreError as err:
                out.append(err)
        return out

    def _takes_plain(self) -> bool:
        """No policy, limit or store-wide quota for an append to consult (consumers are
        told of a run once, in ``_append_many_plain``)."""
        return self._plain and self._store._limits[self.storage_kind] < 0

    def _append_many_plain(self, subject: str, payloads: list[bytes], seqs: list[int]) -> None:
        """The commit step of `append`, for several messages on one subject: the
        per-subject state and the counters are brought up to date once, after the loop
        (nothing in between reads them). Each seq goes into `seqs` as soon as its record
        is in."""
        if self._closed:
            raise E.StoreClosed()
        sid = self._sids.get(subject)
        if sid is None:
            if not valid_stored_subject(subject) or (
                self._accept is not None and not self._accept(subject)
            ):
                raise E.InvalidConfig(f"subject {subject!r} is not part of stream {self.name}")
            sid = self._intern(subject)
            st = self._sstate[sid] = [0, self._last_seq + 1, 0, True]
        else:
            st = self._sstate[sid]
        self.was_duplicate = False
        put = self._put
        guarded = self._guarded
        overhead = len(subject) + self._msg_overhead
        first = seq = self._last_seq + 1
        total = 0
        try:
            if guarded:
                # a file stream: the same loop with the segment looked up once
                try:
                    total = self._put_plain_run(subject, sid, payloads, overhead, seqs)
                except BaseException:
                    seq = self._last_seq + 1  # what was put before a failed roll counts
                    total = sum(overhead + len(p) for p in payloads[: seq - first])
                    raise
                seq = self._last_seq + 1
                payloads = ()
            for payload in payloads:
                if payload.__class__ is not bytes:
                    payload = bytes(payload)
                if guarded:
                    self._check_writable()  # may roll to a new segment (reads _last_seq)
                now_ns = _time_ns()
                ts = now_ns if now_ns > self._last_ts else self._last_ts
                size = overhead + len(payload)
                put(seq, ts, sid, subject, None, payload, None, size)
                seqs.append(seq)
                self._last_seq = seq
                self._last_ts = ts
                total += size
                seq += 1
        finally:
            n = seq - first
            if n:
                st[0] += n
                st[2] = seq - 1
                st[3] = True
                if not self._msgs:
                    self._first = first
                self._msgs += n
                self._bytes += total
                self._store._used[self.storage_kind] += total
                if self._consumers:  # as append's wake-up, once for the run
                    interested = self._interest.get(sid)
                    if interested is None:
                        interested = self._interest_for(sid)
                    for c in interested:
                        c._num_pending += n
                        cb = c.on_available
                        if cb is not None:
                            cb()
                self._touch()
            elif not st[0]:
                del self._sstate[sid]  # a new subject, and nothing was appended
                self._forget(sid)

    def _check_append(
        self,
        data_len,
        sid,
        size,
        now_ns,
        msg_id,
        expected_last_seq,
        expected_last_subject_seq,
        expected_last_msg_id,
        rollup,
    ) -> None:
        """Expectations, duplicates and discard-new limits, in nats-server's order."""
        cfg = self.config
        self.was_duplicate = False
        if cfg.sealed:
            raise E.StreamSealed()
        if expected_last_subject_seq is not None:
            cur = self._subject_last(sid) if sid is not None else 0
            if cur != expected_last_subject_seq:
                raise E.WrongLastSequence(cur)
        if expected_last_seq is not None and expected_last_seq != self._last_seq:
            raise E.WrongLastSequence(self._last_seq)
        if msg_id:
            hit = self._ids.get(msg_id)
            if hit is not None and hit[1] >= now_ns - self._dup_window_ns:
                self.was_duplicate = True
                return
        if expected_last_msg_id is not None and expected_last_msg_id != (self._last_msg_id or ""):
            raise E.WrongLastMsgId(self._last_msg_id or "")
        if rollup:
            if not cfg.allow_rollup_hdrs or cfg.deny_purge:
                raise E.RollupError("rollup not permitted")
            if rollup not in ("sub", "all"):
                raise E.RollupError(f'rollup value invalid: "{rollup}"')
        if cfg.max_msg_size > 0 and data_len > cfg.max_msg_size:
            raise E.MsgSizeExceeded()
        if cfg.discard == "new" and not rollup:
            if cfg.max_msgs > 0 and self._msgs >= cfg.max_msgs:
                raise E.LimitExceeded("maximum messages exceeded")
            if cfg.max_bytes > 0 and self._bytes + size > cfg.max_bytes:
                raise E.LimitExceeded("maximum bytes exceeded")
            if (
                cfg.discard_new_per_subject
                and cfg.max_msgs_per_subject > 0
                and sid is not None
                and self._sstate[sid][0] >= cfg.max_msgs_per_subject
            ):
                raise E.LimitExceeded("maximum messages per subject exceeded")

    def _interest_for(self, sid: int) -> tuple[ConsumerImpl, ...]:
        if len(self._interest) > _CACHE_TRIM:
            self._interest.clear()
        name = self._names[sid]
        t = tuple(c for c in self._consumers.values() if c.flt.matches(sid, name))
        self._interest[sid] = t
        return t
