"""Per-message TTL: the ``Nats-TTL`` header (nats-server ADR-43) on ``allow_msg_ttl`` streams.

Owns ``parse_ttl`` (a header value to seconds, as nats-server reads it) and ``StreamTTL``,
mixed into ``BaseStream`` (``stream.py``). A message appended with a ``Nats-TTL`` header
to a stream whose config has ``allow_msg_ttl`` is removed once its TTL has passed, like
one past ``max_age``; ``never`` exempts it from ``max_age`` as well.

Nothing extra is written to disk: the header is stored with the message, so a restart
rebuilds the expiry times from the stored headers (``_rebuild_ttls``, called by the
file store's recovery before it applies ``max_age``). This reads every message of an
``allow_msg_ttl`` stream once at start-up; nats-server keeps a persisted timer wheel
(``thw.db``) instead.

Subject delete markers (``subject_delete_marker_ttl``): when ``max_age`` or a TTL
removes the last message of a subject, a marker takes its place, an empty message on
that subject with ``Nats-Marker-Reason: MaxAge``, ``Nats-TTL: <the marker TTL>`` and
``Nats-Rollup: sub`` (the headers a live nats-server 2.15 writes), so a KV watcher sees
the key go. The marker expires by its own TTL and leaves no marker behind.

State: ``_ttl_heap`` holds ``(expires_ns, seq)`` of messages with a TTL, ``_ttl_never``
the seqs of ``never`` messages. Entries of messages removed otherwise (deletes, purges,
limits) stay until they come up (a removed seq is never reused, so they are skipped then)
or until the structure is rebuilt when it grows past twice the stream's message count.
"""

from __future__ import annotations

import heapq
import logging
import re
import time

from .blocks import DEAD
from .errors import StoreError

TTL_HEADER = "Nats-TTL"
_TTL_KEY = b"\r\nNats-TTL:"
_MARKER_KEY = b"\r\nNats-Marker-Reason:"
NEVER = -1

log = logging.getLogger("hybridbus.store")

# Go's time.ParseDuration: an optional sign, then one or more <number><unit>.
_UNIT_NS = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,
    "\u03bcs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
_GO_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)")


def _go_duration_ns(text: str) -> int | None:
    """Nanoseconds from a Go duration string ("1m30s", "2h", "1.5s"), None if not one."""
    sign = 1
    if text and text[0] in "+-":
        sign = -1 if text[0] == "-" else 1
        text = text[1:]
    if text == "0":
        return 0
    if not text:
        return None
    total = 0.0
    pos = 0
    while pos < len(text):
        m = _GO_PART.match(text, pos)
        if m is None:
            return None
        total += float(m.group(1)) * _UNIT_NS[m.group(2)]
        pos = m.end()
    return sign * int(total)


def parse_ttl(value: str) -> int | None:
    """Seconds from a ``Nats-TTL`` value, or None when invalid: ``never`` (any case) is
    ``NEVER`` (-1); a Go duration of at least one second is cut to whole seconds; else
    a whole number of seconds, at least 1 (nats-server answers 10165 "invalid
    per-message TTL" for "0", "500ms", "-1" or "soon")."""
    value = value.strip()
    if value.lower() == "never":
        return NEVER
    ns = _go_duration_ns(value)
    if ns is not None:
        return ns // 1_000_000_000 if ns >= 1_000_000_000 else None
    if value.isdigit():
        secs = int(value)
        return secs if secs >= 1 else None
    return None


def go_duration(ns: int) -> str:
    """Go's time.Duration.String for a positive duration of whole milliseconds or more
    ("2s", "1m30s", "1h0m0s", "1.5s"): how nats-server writes a marker's Nats-TTL."""
    h, rest = divmod(ns, 3_600_000_000_000)
    m, rest = divmod(rest, 60_000_000_000)
    secs = f"{rest / 1e9:.9f}".rstrip("0").rstrip(".")
    if h:
        return f"{h}h{m}m{secs}s"
    if m:
        return f"{m}m{secs}s"
    return f"{secs}s"


def ttl_of(headers: bytes) -> int | None:
    """The TTL a stored header block asks for (None: none, or not a valid one)."""
    pos = headers.find(_TTL_KEY)
    if pos < 0:
        return None
    start = pos + len(_TTL_KEY)
    end = headers.find(b"\r\n", start)
    try:
        raw = headers[start : end if end >= 0 else len(headers)].decode()
    except UnicodeDecodeError:
        return None
    return parse_ttl(raw)


class StreamTTL:
    """The per-message TTL state of ``BaseStream``; see the module docstring."""

    def _init_ttl(self) -> None:
        self._ttl_heap: list[tuple[int, int]] = []
        self._ttl_never: set[int] = set()
        self._ttl_handle = None
        self._pending_markers: list[str] = []

    def _note_ttl(self, seq: int, ts: int, headers: bytes) -> None:
        """After an append to an ``allow_msg_ttl`` stream whose headers name a TTL."""
        ttl = ttl_of(headers)
        if ttl is None:
            return
        if ttl == NEVER:
            never = self._ttl_never
            never.add(seq)
            if len(never) > 1024 and len(never) > 2 * self._msgs:
                self._ttl_never = {s for s in never if self._is_live(s)}
            return
        heap = self._ttl_heap
        if len(heap) > 1024 and len(heap) > 2 * self._msgs:
            heap = self._ttl_heap = [e for e in heap if self._is_live(e[1])]
            heapq.heapify(heap)
        heapq.heappush(heap, (ts + ttl * 1_000_000_000, seq))
        if self._ttl_handle is None or heap[0][1] == seq:
            self._arm_ttl()  # the first TTL, or one due before the timer's

    def _arm_ttl(self) -> None:
        if self._ttl_handle is not None:
            self._ttl_handle.cancel()
            self._ttl_handle = None
        if not self._ttl_heap or self._closed:
            return
        loop = self._store._get_loop()
        if loop is None:
            return  # no loop: state() expires what is due when asked
        delay = max(0.0, (self._ttl_heap[0][0] - time.time_ns()) / 1e9) + 0.001
        self._ttl_handle = loop.call_later(delay, self._ttl_tick)

    def _ttl_tick(self) -> None:
        self._ttl_handle = None
        if self._closed:
            return
        self._expire_ttls()
        self._arm_ttl()

    def _expire_ttls(self, now_ns: int | None = None) -> int:
        """Remove every message whose TTL has passed; returns how many."""
        heap = self._ttl_heap
        now = now_ns or time.time_ns()
        removed = 0
        while heap and heap[0][0] <= now:
            _due, seq = heapq.heappop(heap)
            loc = self._locate(seq)
            if loc is not None and loc[0].subj[loc[1]] != DEAD:
                self._age_out(loc[0], loc[1], seq)
                removed += 1
        if removed:
            self._flush_markers()
            self._touch()
        return removed

    # ---- subject delete markers ------------------------------------------------

    def _age_out(self, blk, i: int, seq: int) -> None:
        """Remove a message for ``max_age`` or its TTL; if it was the last of its
        subject and the stream wants markers, one is due (``_flush_markers``)."""
        subject = self._marker_subject(blk, i, seq) if self._sdm_ns else None
        self._remove_at(blk, i, seq)
        if subject is not None and subject not in self._sids:
            self._pending_markers.append(subject)

    def _marker_subject(self, blk, i: int, seq: int) -> str | None:
        msg = self._load_slot(blk, i, seq)
        if msg is None or (msg.headers and _MARKER_KEY in msg.headers):
            return None  # a marker going leaves no marker
        return msg.subject

    def _flush_markers(self) -> None:
        subjects, self._pending_markers = self._pending_markers, []
        if not subjects or self._closed:
            return
        hdr = (
            "NATS/1.0\r\nNats-Marker-Reason: MaxAge\r\n"
            f"Nats-TTL: {go_duration(self._sdm_ns)}\r\nNats-Rollup: sub\r\n\r\n"
        ).encode()
        for subject in subjects:
            if subject in self._sids:
                continue  # a new message came first
            try:
                self.append(subject, b"", hdr)
            except StoreError as err:
                log.warning("stream %s: no delete marker for %r: %s", self.name, subject, err)

    def _rebuild_ttls(self) -> None:
        """Recovery: the TTLs of the stored messages, from their headers."""
        self._ttl_heap = []
        self._ttl_never = set()
        for msg in self.iter():
            if msg.headers and _TTL_KEY in msg.headers:
                self._note_ttl_quiet(msg.seq, msg.ts_ns, msg.headers)
        heapq.heapify(self._ttl_heap)

    def _note_ttl_quiet(self, seq: int, ts: int, headers: bytes) -> None:
        ttl = ttl_of(headers)
        if ttl == NEVER:
            self._ttl_never.add(seq)
        elif ttl is not None:
            self._ttl_heap.append((ts + ttl * 1_000_000_000, seq))

    def _expire_age_skipping_never(self, cutoff: int) -> int:
        """``max_age`` expiry when some messages are ``never``: they stay, the ones
        after them still go once old enough (nats-server's expireMsgs skips them)."""
        never = self._ttl_never
        removed = 0
        seq = self._first
        while self._msgs:
            found = self._find_next(seq, None)
            if found is None:
                break
            blk, j = found
            seq = blk.first + j
            if blk.ts[j] > cutoff:
                break
            if seq not in never and blk.subj[j] != DEAD:
                self._age_out(blk, j, seq)
                removed += 1
            seq += 1
        return removed

    def _oldest_expirable_ts(self) -> int:
        """The time of the oldest message ``max_age`` may remove (0: none)."""
        if not self._ttl_never:
            loc = self._locate(self._first)
            return loc[0].ts[loc[1]] if loc is not None else 0
        seq = self._first
        while True:
            found = self._find_next(seq, None)
            if found is None:
                return 0
            blk, j = found
            seq = blk.first + j
            if seq not in self._ttl_never:
                return blk.ts[j]
            seq += 1
