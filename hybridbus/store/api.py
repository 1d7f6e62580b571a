"""The stream store interface: what the MQTT front end and the JetStream API layer may use.

Theory of operation
===================
A :class:`Store` holds named streams. A stream is an append-only log of messages
(sequence, subject, headers, payload, timestamp) with JetStream's limits and retention; a
consumer is a durable cursor over one stream with JetStream's delivery and ack rules. The
store knows nothing of MQTT; the MQTT layer keeps its sessions, QoS 1/2 messages, QoS 2
dedup state and retained messages in streams of its own.

Two implementations exist, chosen by :func:`hybridbus.store.open_store`: memory only
(``store_dir=None``, ``memstore.py``) and file backed (``file/``). Both share the stream and
consumer logic in ``stream.py`` and ``consumer.py`` and differ only in where message bodies
live. A third backend (a real NATS JetStream cluster) can implement the same three protocols
below; nothing in them assumes a local log.

Threading and the event loop: every method is synchronous and must be called from the
thread that runs the asyncio loop (or from a program with no loop at all). Nothing in the
hot path creates a task, a future or a lock. Durability is reported through
``on_durable(seq, err)`` callbacks that run on the loop, batched per write: with
``sync_always`` after the batch's fsync, otherwise right after the batch's write().
Without a running loop the store writes (and, with ``sync_always``, fsyncs) before
``append`` returns and calls ``on_durable`` inline.

Units: durations are float seconds and times are epoch seconds (``ts_ns`` on messages is
epoch nanoseconds). ``to_dict(wire=True)``/``from_dict(..., wire=True)`` convert to and from
the JetStream wire units (integer nanoseconds, RFC 3339 times).

Errors are :class:`hybridbus.store.errors.StoreError` subclasses with JetStream's
``code``/``err_code``/``description``.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from .errors import (  # noqa: F401  (re-exported: the API surface)
    ConsumerCreateError,
    ConsumerInvalidPolicy,
    ConsumerNotFound,
    DeleteNotPermitted,
    InvalidConfig,
    LimitExceeded,
    MaxConsumers,
    MemoryFull,
    MsgNotFound,
    MsgSizeExceeded,
    PurgeNotPermitted,
    RollupError,
    SeqNotFound,
    StoreClosed,
    StoreError,
    StoreFull,
    StoreWriteError,
    StreamNameInUse,
    StreamNotFound,
    StreamSealed,
    SubjectsOverlap,
    WrongLastMsgId,
    WrongLastSequence,
)
from .match import valid_subject

OnDurable = Callable[[int, "BaseException | None"], None]

DEFAULT_SYNC_INTERVAL = 120.0
"""nats-server's default ``sync_interval`` (2 minutes). Every append is written to the OS
before ``on_durable`` fires, so a killed process loses nothing acknowledged; an OS crash or
power loss can lose up to this much acknowledged data. ``sync_always`` closes that gap."""

DEFAULT_DUPLICATE_WINDOW = 120.0
DEFAULT_ACK_WAIT = 30.0
DEFAULT_MAX_ACK_PENDING = 1000
DEFAULT_MAX_WAITING = 512


# --------------------------------------------------------------------------- messages


class StoredMsg:
    """One stored message. ``headers`` is the raw NATS header block (``NATS/1.0\\r\\n...``)."""

    __slots__ = ("seq", "subject", "headers", "payload", "ts_ns")

    def __init__(self, seq: int, subject: str, headers: bytes | None, payload: bytes, ts_ns: int):
        self.seq = seq
        self.subject = subject
        self.headers = headers
        self.payload = payload
        self.ts_ns = ts_ns

    def __repr__(self) -> str:
        return f"StoredMsg(seq={self.seq}, subject={self.subject!r}, {len(self.payload)}B)"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, StoredMsg):
            return NotImplemented
        return (self.seq, self.subject, self.headers, self.payload, self.ts_ns) == (
            other.seq,
            other.subject,
            other.headers,
            other.payload,
            other.ts_ns,
        )

    __hash__ = None  # type: ignore[assignment]


class DeliveryInfo:
    """Per-delivery facts, as the ``$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>``
    reply subject carries them."""

    __slots__ = ("stream_seq", "consumer_seq", "num_delivered", "num_pending")

    def __init__(self, stream_seq: int, consumer_seq: int, num_delivered: int, num_pending: int):
        self.stream_seq = stream_seq
        self.consumer_seq = consumer_seq
        self.num_delivered = num_delivered
        self.num_pending = num_pending

    def __repr__(self) -> str:
        return (
            f"DeliveryInfo(sseq={self.stream_seq}, cseq={self.consumer_seq}, "
            f"delivered={self.num_delivered}, pending={self.num_pending})"
        )


# --------------------------------------------------------------------------- helpers


def encode_headers(headers: dict[str, Any]) -> bytes:
    """A NATS header block from a dict; list values give repeated keys."""
    parts = ["NATS/1.0\r\n"]
    for k, v in headers.items():
        if isinstance(v, (list, tuple)):
            for item in v:
                parts.append(f"{k}: {item}\r\n")
        else:
            parts.append(f"{k}: {v}\r\n")
    parts.append("\r\n")
    return "".join(parts).encode()


def decode_headers(block: bytes | None) -> dict[str, list[str]]:
    """Parse a NATS header block into ``{key: [values]}`` (the status line is dropped)."""
    out: dict[str, list[str]] = {}
    if not block:
        return out
    lines = block.decode("utf-8", "replace").split("\r\n")
    for line in lines[1:]:
        if not line:
            continue
        k, sep, v = line.partition(":")
        if sep:
            out.setdefault(k.strip(), []).append(v.strip())
    return out


def rfc3339(ts_ns: int) -> str:
    """UTC RFC 3339 with a ``Z``, as Go's ``RFC3339Nano`` writes it (nats-server's JSON
    times and ``Nats-Time-Stamp``): up to nine fraction digits, trailing zeros dropped,
    no fraction at all on a whole second. nats-py parses every such form."""
    secs, frac = divmod(ts_ns, 1_000_000_000)
    base = _whole_seconds(secs)
    if not frac:
        return base + "Z"
    return f"{base}.{frac:09d}".rstrip("0") + "Z"


@functools.lru_cache(maxsize=1024)
def _whole_seconds(secs: int) -> str:
    """``rfc3339`` up to the seconds: datetime and strftime cost more than the rest of
    a direct get's headers, and the messages of one second share it (kv_latency)."""
    return _dt.datetime.fromtimestamp(secs, _dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")


def parse_rfc3339(text: str) -> int:
    """Epoch ns from an RFC 3339 string (nanosecond fractions kept)."""
    text = text.strip()
    frac_ns = 0
    if text.endswith("Z") or text.endswith("z"):
        text = text[:-1] + "+00:00"
    # split the fraction off by hand: datetime only keeps microseconds
    tpos = text.find("T")
    dot = text.find(".", tpos if tpos >= 0 else 0)
    if dot >= 0:
        end = dot + 1
        while end < len(text) and text[end].isdigit():
            end += 1
        digits = text[dot + 1 : end]
        frac_ns = int((digits + "000000000")[:9]) if digits else 0
        text = text[:dot] + text[end:]
    when = _dt.datetime.fromisoformat(text)
    if when.tzinfo is None:
        when = when.replace(tzinfo=_dt.UTC)
    return int(when.timestamp()) * 1_000_000_000 + frac_ns


def _sec_to_ns(v: float | None) -> int:
    return int(round((v or 0.0) * 1e9))


def _ns_to_sec(v: Any) -> float:
    return (v or 0) / 1e9


_NAME_BAD = set(" \t\r\n\x00./\\*>")


def valid_name(name: str) -> bool:
    """Stream and consumer names double as file names; JetStream forbids the same characters."""
    return bool(name) and len(name.encode()) <= 255 and not (set(name) & _NAME_BAD)


# --------------------------------------------------------------------------- configs


class _Config:
    """to_dict/from_dict shared by the two config dataclasses."""

    _DURATIONS: tuple[str, ...] = ()
    _TIMES: tuple[str, ...] = ()

    def to_dict(self, wire: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            if f.name == "extra":
                continue
            v = getattr(self, f.name)
            if v is None:
                continue
            if wire and f.name in self._DURATIONS:
                v = [_sec_to_ns(x) for x in v] if isinstance(v, list) else _sec_to_ns(v)
            elif wire and f.name in self._TIMES:
                v = rfc3339(int(v * 1e9))
            elif isinstance(v, list):
                v = list(v)
            elif isinstance(v, dict):
                v = dict(v)
            out[f.name] = v
        for k, v in self.extra.items():  # type: ignore[attr-defined]
            out.setdefault(k, v)
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any], wire: bool = False):
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        kw: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for k, v in d.items():
            if k not in names or k == "extra":
                extra[k] = v
                continue
            if v is not None and wire and k in cls._DURATIONS:
                v = [_ns_to_sec(x) for x in v] if isinstance(v, list) else _ns_to_sec(v)
            elif v is not None and k in cls._TIMES and isinstance(v, str):
                v = parse_rfc3339(v) / 1e9
            kw[k] = v
        kw["extra"] = extra
        return cls(**kw)

    def copy(self, **changes):
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]


@dataclass
class StreamConfig(_Config):
    """JetStream's StreamConfig, field for field. 0 in a ``max_*`` field means unlimited (-1);
    ``max_age``/``duplicate_window`` are seconds (0 = unlimited / the default)."""

    name: str
    subjects: list[str] = field(default_factory=list)
    retention: str = "limits"  # limits | interest | workqueue
    max_consumers: int = -1
    max_msgs: int = -1
    max_bytes: int = -1
    max_age: float = 0.0
    max_msgs_per_subject: int = -1
    max_msg_size: int = -1
    storage: str = "file"  # file | memory
    discard: str = "old"  # old | new
    num_replicas: int = 1
    duplicate_window: float = 0.0
    description: str | None = None
    discard_new_per_subject: bool = False
    no_ack: bool = False
    sealed: bool = False
    deny_delete: bool = False
    deny_purge: bool = False
    allow_rollup_hdrs: bool = False
    allow_direct: bool = False
    mirror_direct: bool = False
    compression: str = "none"
    allow_msg_ttl: bool = False
    subject_delete_marker_ttl: float | None = None
    first_seq: int | None = None
    metadata: dict[str, str] | None = None
    # Fields this version does not model (placement, republish, ...) are kept and echoed.
    extra: dict[str, Any] = field(default_factory=dict)

    _DURATIONS = ("max_age", "duplicate_window", "subject_delete_marker_ttl")

    def normalized(self) -> StreamConfig:
        """A validated copy with JetStream's defaults filled in (what info echoes)."""
        if not valid_name(self.name):
            raise InvalidConfig("invalid stream name")
        # A stream fed by a mirror or sources may have no subjects of its own
        # (nats-server's checkStreamCfg defaults them to the name only otherwise).
        fed = bool(self.extra.get("mirror") or self.extra.get("sources"))
        own = self.subjects or ([] if fed else [self.name])
        c = dataclasses.replace(self, subjects=list(own))
        for s in c.subjects:
            if not valid_subject(s):
                raise InvalidConfig(f"invalid subject: {s!r}")
        for attr in (
            "max_consumers",
            "max_msgs",
            "max_bytes",
            "max_msgs_per_subject",
            "max_msg_size",
        ):
            v = getattr(c, attr)
            if v is None or v == 0:
                setattr(c, attr, -1)
            elif v < -1:
                raise InvalidConfig(f"{attr} must be -1 or positive")
        if c.retention not in ("limits", "interest", "workqueue"):
            raise InvalidConfig(f"invalid retention: {c.retention!r}")
        if c.storage not in ("file", "memory"):
            raise InvalidConfig(f"invalid storage: {c.storage!r}")
        if c.discard not in ("old", "new"):
            raise InvalidConfig(f"invalid discard policy: {c.discard!r}")
        c.max_age = float(c.max_age or 0.0)
        if c.max_age < 0:
            raise InvalidConfig("max age needs to be >= 0")
        dw = float(c.duplicate_window or 0.0)
        if dw <= 0 and fed:
            dw = 0.0  # nats-server leaves a mirror's or sourcing stream's window unset
        elif dw <= 0:
            dw = min(DEFAULT_DUPLICATE_WINDOW, c.max_age) if c.max_age else DEFAULT_DUPLICATE_WINDOW
        elif c.max_age and dw > c.max_age:
            raise InvalidConfig("duplicates window can not be larger then max age")
        c.duplicate_window = dw
        if not c.num_replicas:
            c.num_replicas = 1
        return c


@dataclass
class ConsumerConfig(_Config):
    """JetStream's ConsumerConfig. Durations are seconds, ``opt_start_time`` epoch seconds."""

    name: str | None = None
    durable_name: str | None = None
    description: str | None = None
    deliver_policy: str = "all"  # all|last|new|by_start_sequence|by_start_time|last_per_subject
    opt_start_seq: int | None = None
    opt_start_time: float | None = None
    ack_policy: str = "explicit"  # none | all | explicit
    ack_wait: float = 0.0
    max_deliver: int = -1
    backoff: list[float] | None = None
    filter_subject: str | None = None
    filter_subjects: list[str] | None = None
    replay_policy: str = "instant"
    rate_limit_bps: int | None = None
    sample_freq: str | None = None
    max_waiting: int | None = None
    max_ack_pending: int = 0
    headers_only: bool | None = None
    deliver_subject: str | None = None
    deliver_group: str | None = None
    flow_control: bool | None = None
    idle_heartbeat: float | None = None
    inactive_threshold: float | None = None
    num_replicas: int | None = None
    mem_storage: bool | None = None
    metadata: dict[str, str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    _DURATIONS = ("ack_wait", "backoff", "idle_heartbeat", "inactive_threshold")
    _TIMES = ("opt_start_time",)

    @property
    def durable(self) -> bool:
        return bool(self.durable_name)

    def filters(self) -> list[str]:
        if self.filter_subjects:
            return list(self.filter_subjects)
        if self.filter_subject:
            return [self.filter_subject]
        return []

    def normalized(self) -> ConsumerConfig:
        c = dataclasses.replace(self)
        if c.durable_name and c.name and c.durable_name != c.name:
            raise ConsumerCreateError(
                "Consumer Durable and Name have to be equal if both are provided"
            )
        c.name = c.name or c.durable_name
        if not c.name or not valid_name(c.name):
            raise ConsumerCreateError("consumer name is invalid")
        if c.filter_subject and c.filter_subjects:
            raise ConsumerCreateError(
                "consumer cannot have both FilterSubject and FilterSubjects specified"
            )
        for f in c.filters():
            if not valid_subject(f):
                raise ConsumerCreateError(f"invalid filter subject: {f!r}")
        if c.ack_policy not in ("none", "all", "explicit"):
            raise ConsumerInvalidPolicy(f"invalid ack policy: {c.ack_policy!r}")
        dp = c.deliver_policy
        if dp not in (
            "all",
            "last",
            "new",
            "by_start_sequence",
            "by_start_time",
            "last_per_subject",
        ):
            raise ConsumerInvalidPolicy(f"invalid deliver policy: {dp!r}")
        if dp == "by_start_sequence" and not c.opt_start_seq:
            raise ConsumerInvalidPolicy(
                "consumer delivery policy is deliver by start sequence, but optional start sequence is not set"
            )
        if dp != "by_start_sequence" and c.opt_start_seq:
            raise ConsumerInvalidPolicy(
                "consumer delivery policy is not deliver by start sequence, but optional start sequence is set"
            )
        if dp == "by_start_time" and c.opt_start_time is None:
            raise ConsumerInvalidPolicy(
                "consumer delivery policy is deliver by start time, but optional start time is not set"
            )
        if dp != "by_start_time" and c.opt_start_time is not None:
            raise ConsumerInvalidPolicy(
                "consumer delivery policy is not deliver by start time, but optional start time is set"
            )
        if not c.ack_wait or c.ack_wait <= 0:
            c.ack_wait = DEFAULT_ACK_WAIT
        if not c.max_deliver:
            c.max_deliver = -1
        if c.backoff and c.max_deliver != -1 and c.max_deliver <= len(c.backoff):
            raise ConsumerCreateError("max deliver is required to be > length of backoff values")
        if c.ack_policy == "none":
            c.max_ack_pending = -1 if not c.max_ack_pending else c.max_ack_pending
        elif not c.max_ack_pending:
            c.max_ack_pending = DEFAULT_MAX_ACK_PENDING
        if c.deliver_subject is None and not c.max_waiting:
            c.max_waiting = DEFAULT_MAX_WAITING
        return c


@dataclass
class StreamState:
    messages: int
    bytes: int
    first_seq: int
    first_ts_ns: int
    last_seq: int
    last_ts_ns: int
    num_subjects: int
    num_deleted: int
    consumer_count: int

    def to_dict(self) -> dict[str, Any]:
        """JetStream's state object (timestamps RFC 3339; zero time when empty)."""
        return {
            "messages": self.messages,
            "bytes": self.bytes,
            "first_seq": self.first_seq,
            "first_ts": rfc3339(self.first_ts_ns) if self.first_ts_ns else "0001-01-01T00:00:00Z",
            "last_seq": self.last_seq,
            "last_ts": rfc3339(self.last_ts_ns) if self.last_ts_ns else "0001-01-01T00:00:00Z",
            "num_subjects": self.num_subjects,
            "num_deleted": self.num_deleted,
            "consumer_count": self.consumer_count,
        }


# --------------------------------------------------------------------------- protocols


@runtime_checkable
class Consumer(Protocol):
    """A durable cursor over one stream (pull model; push delivery is built on top).

    Delivery order: due redeliveries first (naked, or unacked past ``ack_wait``), then new
    messages in stream order. Every delivery, redeliveries included, takes the next
    consumer sequence.
    """

    name: str
    config: ConsumerConfig
    on_available: Callable[[], None] | None
    """Called (synchronously, on append) when a new message matches the filter."""

    def next_batch(self, n: int, now: float | None = None) -> list[tuple[StoredMsg, DeliveryInfo]]:
        """Up to ``n`` deliveries, respecting ``max_ack_pending`` and ``max_deliver``."""

    def ack(self, stream_seq: int) -> bool:
        """Ack (ack policy ``all``: this and every earlier pending one). True if it was pending."""

    def nak(self, stream_seq: int, delay: float = 0.0) -> bool:
        """Redeliver now, or after ``delay`` seconds."""

    def term(self, stream_seq: int) -> bool:
        """Never redeliver this message."""

    def in_progress(self, stream_seq: int) -> bool:
        """Reset the ack timer (``+WPI``)."""

    def redeliveries_due(self, now: float | None = None) -> list[int]:
        """Stream seqs whose ack deadline passed (they go first in the next batch)."""

    def next_deadline(self) -> float | None:
        """Epoch seconds of the earliest ack deadline, for one timer per consumer."""

    @property
    def num_pending(self) -> int: ...

    @property
    def num_ack_pending(self) -> int: ...

    def info(self, wire: bool = False) -> dict[str, Any]:
        """ConsumerInfo with JetStream field names."""


@runtime_checkable
class Stream(Protocol):
    name: str
    config: StreamConfig
    created_ns: int
    was_duplicate: bool
    """True when the last ``append`` hit the duplicate window (it returned the first seq)."""

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
        """Store a message and return its sequence.

        ``expected_last_seq``/``expected_last_subject_seq``: None = no check; 0 = "there is no
        message (in the stream / on this subject)". A ``msg_id`` seen within
        ``duplicate_window`` stores nothing, returns the first sequence and sets
        ``was_duplicate``. ``rollup`` ``"sub"``/``"all"`` needs ``allow_rollup_hdrs``.
        ``on_durable(seq, err)`` runs on the loop once the record is durable under the
        sync policy (``err`` is a StoreWriteError when the write failed). ``ts_ns``: the
        message's time instead of now (a mirror keeps its origin's times), raised to the
        stream's last time if older so times never decrease along the stream.

        A stream fed by a ``mirror`` or ``sources`` (in ``config.extra``) stores any
        subject: its origins' subjects are not its own.

        On an ``allow_msg_ttl`` stream a ``Nats-TTL`` header (``ttl.py``: seconds, a
        Go duration or ``never``) removes the message once that time has passed; a
        ``never`` one outlives ``max_age``. Kept across restarts (read back from the
        stored headers). The API layer refuses bad values before calling this.
        """

    def skip_to(self, seq: int) -> None:
        """Move the last sequence up to ``seq`` storing nothing (the skipped ones read
        as deleted): a mirror keeps its origin's sequences across the origin's gaps
        (nats-server's ``SkipMsgs``). Survives a restart. Nothing when ``seq`` is not
        past the last sequence."""

    def append_many(
        self, subject: str, payloads: list[bytes], *, on_durable: OnDurable | None = None
    ) -> list[int]:
        """``append(subject, p)`` for each payload, in order, in one call; returns the
        sequences. ``on_durable(last_seq, err)`` runs once, when all are durable."""

    def append_each(self, subject: str, payloads: list[bytes]) -> list[int | StoreError]:
        """``append(subject, p)`` for each payload, in order, each with its own outcome:
        its sequence, or the StoreError that refused it (the others are stored). For
        durability, ``when_durable`` once afterwards."""

    def get(self, seq: int) -> StoredMsg:
        """Raises MsgNotFound."""

    def last(self, subject: str) -> StoredMsg:
        """Newest message matching ``subject`` (wildcards allowed). Raises MsgNotFound."""

    def next_msg(self, seq: int, subject: str | None = None) -> StoredMsg:
        """First message with sequence >= ``seq`` matching ``subject``. Raises MsgNotFound."""

    def iter(self, start_seq: int = 0, subject: str | None = None) -> Iterator[StoredMsg]: ...

    def when_durable(self, cb: OnDurable) -> None:
        """``cb(last_seq, err)`` once everything written to the stream so far (appends,
        deletes, purges) is durable under the sync policy."""

    def delete(self, seq: int) -> None:
        """Raises SeqNotFound / DeleteNotPermitted."""

    def delete_many(self, seqs: list[int]) -> int:
        """Delete the live ones among ``seqs`` (gone ones are skipped); returns the count.
        Raises DeleteNotPermitted."""

    def purge(
        self, subject: str | None = None, seq: int | None = None, keep: int | None = None
    ) -> int:
        """Remove messages (all, matching ``subject``, below ``seq``, all but the newest ``keep``)."""

    def state(self) -> StreamState: ...

    def compact(self) -> int:
        """Rewrite mostly-dead segments now (also done in the background); returns a count."""

    def count_after(self, seq: int, subject: str | None = None) -> int:
        """Live messages with a sequence past ``seq`` matching ``subject`` (wildcards
        allowed): a direct get batch's ``Nats-Num-Pending``."""

    def subjects(self, filter: str | None = None) -> dict[str, int]: ...

    def info(self, wire: bool = False) -> dict[str, Any]: ...

    def add_consumer(self, config: ConsumerConfig) -> Consumer:
        """Create, or update a compatible existing consumer of the same name."""

    def consumer(self, name: str) -> Consumer: ...

    def consumers(self) -> list[Consumer]:
        """The public consumers: a consumer whose config has ``direct: true`` in its
        ``extra`` (a mirror's or source's cursor, as nats-server's internal ``Direct``
        consumers) is left out here, in ``consumer_count``, ``usage`` and the
        ``max_consumers`` check; ``consumer(name)`` still finds it."""

    def delete_consumer(self, name: str) -> None: ...


@runtime_checkable
class Store(Protocol):
    directory: str | None
    recovery: dict[str, Any]
    """Startup report: streams, consumers, records, msgs, corrupt_records, torn_tails,
    bytes_cut, index_rebuilt, damaged_files, time (seconds)."""

    def add_stream(self, config: StreamConfig) -> Stream:
        """Create; an identical config returns the existing stream (10058 if it differs)."""

    def update_stream(self, config: StreamConfig) -> Stream: ...

    def stream(self, name: str) -> Stream:
        """Raises StreamNotFound."""

    def streams(self) -> list[Stream]: ...

    def delete_stream(self, name: str) -> None: ...

    def stream_for_subject(self, subject: str) -> Stream | None:
        """The stream whose subjects match a literal subject (what a publish is stored in)."""

    def usage(self) -> dict[str, int]:
        """{"memory": bytes, "storage": bytes, "streams": n, "consumers": n}."""

    def stats(self) -> dict[str, Any]:
        """Counters for monitoring (corrupt_records, write_errors, fsyncs, ...)."""

    async def close(self) -> None:
        """Write and fsync everything, write index files, release the directory."""

    def close_sync(self) -> None:
        """The same, for programs without a running loop."""
