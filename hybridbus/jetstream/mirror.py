"""Mirrors and sources: streams of this server fed by other streams of this server.

A stream with ``mirror: {name, opt_start_seq?, opt_start_time?, filter_subject?,
subject_transforms?}`` is a copy of its origin that keeps the origin's sequences and
times (nats-server ``processInboundMirrorMsg``: a gap in the origin, or a message the
filter leaves out, is skipped with ``skip_to`` so sequence N of the mirror is sequence N
of the origin). It has no subjects and takes no publishes (``capture.py`` never
subscribes it). A stream with ``sources: [{name, filter_subject?, opt_start_seq?, ...}]``
appends what its origins store, each copy stamped with a ``Nats-Stream-Source:
<origin> <origin seq> <filter> <dest> <subject>`` header, as nats-server 2.10+ writes it,
and with new sequences and times; it keeps its own subjects too.

How a copy is driven. Each feed (``Link``: one origin into one target) holds a cursor
on the origin: an ephemeral store consumer with ``ack_policy none`` and ``direct: true``
in its config (left out of every list and count, like nats-server's internal ``Direct``
consumers, see ``store/api.py``). The store calls its ``on_available`` on each append to
the origin that matches the filter; that only schedules ``Link.pump`` with
``JetStream.later`` (appends happen inside ``Server.route``, which must not re-enter).
A pump copies at most ``BATCH`` messages, then schedules itself again, so a big origin
is copied a slice per turn of the loop. As a consumer, the cursor also holds messages of
an interest-retention origin until they are copied.

Restarts neither duplicate nor miss a message. The position is never kept apart from
the copies: a mirror resumes at its own last sequence + 1; a source at the origin
sequence in the newest ``Nats-Stream-Source`` header of that source found scanning the
target backwards (nats-server ``startingSequenceForSources``), then remembers it in
memory (so a purge of the target does not rewind it). Both are written in the same
records as the messages.

The copies leave out ``Nats-Expected-*`` headers and apply no ``Nats-Rollup`` (seen on a
live nats-server 2.15: a mirror of a KV bucket keeps the revisions the origin's purge
removed). A message the target refuses with a discard-new limit is held and tried again
after ``RETRY`` seconds; one refused for any other reason is skipped and the error shown
in the feed's info.

``changed(js, stream_or_name)`` is called by the stream handlers after a create, update
or delete; ``start(js)`` once by the engine. ``check`` is the create/update validation
with nats-server's error numbers; ``info`` gives StreamInfo's ``mirror``/``sources``.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from hybridbus.jetstream.api import ApiError
from hybridbus.store.api import ConsumerConfig, StoredMsg, decode_headers
from hybridbus.store.errors import (
    LimitExceeded,
    StoreClosed,
    StoreError,
    StoreWriteError,
    StreamNotFound,
)
from hybridbus.store.match import valid_subject
from hybridbus.subjects import subject_matches
from hybridbus.transform import Transform

if TYPE_CHECKING:
    from hybridbus.jetstream.engine import JetStream

log = logging.getLogger("hybridbus.jetstream")

HEADER = "Nats-Stream-Source"
BATCH = 256  # messages one feed copies per turn of the loop
RETRY = 1.0  # seconds before a copy refused by a discard-new limit is tried again


# --------------------------------------------------------------------------- transforms


_REF = re.compile(r"^(?:\$(\d+)|\{\{\s*wildcard\s*\(\s*(\d+)\s*\)\s*\}\})$", re.IGNORECASE)


def compile_transform(src: str, dest: str) -> Callable[[str], str | None]:
    """A mirror's or source's subject transform: ``hybridbus.transform.Transform``
    (nats-server's ``NewSubjectTransform``) limited to the wildcard subset, ``$N`` /
    ``{{wildcard(N)}}`` and a last ``>``. Returns a function giving the new subject, or
    None when the subject does not match ``src``. Raises ValueError for a destination
    this server does not map here (a mapping function, or an invalid one)."""
    src = src or ">"
    dest = dest or src
    for tok in dest.split("."):
        if "{{" in tok and not _REF.match(tok):  # partition(), split()...
            raise ValueError(f"mapping function not supported: {tok}")
    transform = Transform(src, dest)

    def apply(subject: str) -> str | None:
        return transform.apply(subject) if subject_matches(src, subject) else None

    return apply


def _transforms(spec: dict) -> list[tuple[str, Callable[[str], str | None]]]:
    return [
        (tr.get("src") or ">", compile_transform(tr.get("src") or ">", tr.get("dest") or ""))
        for tr in spec.get("subject_transforms") or ()
    ]


def _filters(spec: dict) -> list[str]:
    trs = spec.get("subject_transforms") or ()
    if trs:
        return [tr.get("src") or ">" for tr in trs]
    f = spec.get("filter_subject")
    return [f] if f and f != ">" else []


def index_name(spec: dict) -> str:
    """nats-server's source index name: ``<origin> <filter> <dest>`` (``>`` for none;
    several transforms joined by form feeds). Two sources of one origin differ by it."""
    trs = spec.get("subject_transforms") or ()
    if trs:
        src = "\f".join(tr.get("src") or ">" for tr in trs)
        dest = "\f".join(tr.get("dest") or ">" for tr in trs)
    else:
        src, dest = spec.get("filter_subject") or ">", ">"
    return f"{spec.get('name', '')} {src} {dest}"


# --------------------------------------------------------------------------- headers


def _copy_headers(raw: bytes | None, source_value: str | None) -> bytes | None:
    """The stored headers without ``Nats-Expected-*`` (and an older
    ``Nats-Stream-Source``), plus ours for a source."""
    if not raw and source_value is None:
        return raw
    lines = raw.decode("utf-8", "surrogateescape").split("\r\n") if raw else ["NATS/1.0"]
    kept = [lines[0]]
    changed = False
    for line in lines[1:]:
        if not line:
            continue
        key = line.partition(":")[0].strip().lower()
        if key.startswith("nats-expected-") or (source_value is not None and key == HEADER.lower()):
            changed = True
            continue
        kept.append(line)
    if source_value is not None:
        kept.append(f"{HEADER}: {source_value}")
    elif not changed:
        return raw
    if len(kept) == 1 and source_value is None:
        return None
    return ("\r\n".join(kept) + "\r\n\r\n").encode("utf-8", "surrogateescape")


def _source_of(headers: bytes | None) -> tuple[str, int] | None:
    """(index name, origin seq) from a stored ``Nats-Stream-Source`` header."""
    if not headers or HEADER.encode() not in headers:
        return None
    values = decode_headers(headers).get(HEADER)
    if not values:
        return None
    fields = values[-1].split(" ")
    if len(fields) < 2 or not fields[1].isdigit():
        return None
    if len(fields) >= 4:
        return f"{fields[0]} {fields[2]} {fields[3]}", int(fields[1])
    return f"{fields[0]} > >", int(fields[1])


# --------------------------------------------------------------------------- feeds


class Link:
    """One feed: ``spec`` (a ``mirror`` or one ``sources`` entry) copied into the
    stream named ``target``; see the module docstring."""

    __slots__ = (
        "js",
        "target",
        "spec",
        "mirror",
        "iname",
        "transforms",
        "origin",
        "consumer",
        "seq",
        "lag",
        "active_ns",
        "error",
        "held",
        "scheduled",
        "timer",
    )

    def __init__(self, js: JetStream, target: str, spec: dict, mirror: bool):
        self.js = js
        self.target = target
        self.spec = spec
        self.mirror = mirror
        self.iname = index_name(spec)
        self.transforms = _transforms(spec)
        self.origin: Any = None  # the origin stream object the cursor lives on
        self.consumer: Any = None
        self.seq: int | None = None  # last origin seq copied; None until known
        self.lag = 0
        self.active_ns = 0  # when the feed last did something; 0: never attached
        self.error: StoreError | None = None
        self.held: deque[tuple[StoredMsg, Any]] = deque()
        self.scheduled = False
        self.timer: Any = None

    @property
    def origin_name(self) -> str:
        return self.spec.get("name", "")

    # -- the cursor ------------------------------------------------------------------

    def attach(self) -> None:
        """(Re)place the cursor on the origin, at the first origin seq not copied."""
        self.detach()
        origin = _find(self.js, self.origin_name)
        target = _find(self.js, self.target)
        if origin is None or target is None:
            return  # the origin may come later: changed() attaches it then
        try:
            cfg = self._cursor_config(target)
            consumer = origin.add_consumer(cfg)
        except StoreError as err:
            self.error = err
            log.warning("stream %s: cannot follow %s: %s", self.target, self.origin_name, err)
            return
        self.error = None
        self.origin = origin
        self.consumer = consumer
        consumer.on_available = self.wake
        self.active_ns = time.time_ns()
        self.lag = consumer.num_pending
        self.wake()

    def detach(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        c, origin = self.consumer, self.origin
        self.consumer = self.origin = None
        self.held.clear()
        if c is None:
            return
        c.on_available = None
        if _find(self.js, self.origin_name) is origin:
            try:
                origin.delete_consumer(c.name)
            except StoreError:
                pass

    def _cursor_config(self, target: Any) -> ConsumerConfig:
        """Where to start: nats-server ``setupMirrorConsumer`` / ``trySetupSourceConsumer``."""
        spec = self.spec
        kw: dict[str, Any] = {}
        if self.mirror:
            state = target.state()
            start = state.last_seq + 1 if (state.last_seq or state.first_seq) else 0
        else:
            if self.seq is None:
                self.seq = _scan_sources(target, [self.iname]).get(self.iname, 0)
            start = self.seq + 1 if self.seq else 0
        if not start:
            if spec.get("opt_start_seq"):
                start = int(spec["opt_start_seq"])
            elif spec.get("opt_start_time"):
                kw["deliver_policy"] = "by_start_time"
                kw["opt_start_time"] = spec["opt_start_time"]
            elif not self.mirror:
                state = target.state()
                if state.first_seq > 1 and state.last_ts_ns:
                    # nats-server: no record of this source in a used stream: new ones
                    # from the stream's last time on
                    kw["deliver_policy"] = "by_start_time"
                    kw["opt_start_time"] = state.last_ts_ns / 1e9
        if start:
            kw["deliver_policy"] = "by_start_sequence"
            kw["opt_start_seq"] = start
        filters = _filters(spec)
        if len(filters) == 1:
            kw["filter_subject"] = filters[0]
        elif filters:
            kw["filter_subjects"] = filters
        prefix = "mirror" if self.mirror else "src"
        cfg = ConsumerConfig(
            name=f"{prefix}-{secrets.token_hex(4)}",
            ack_policy="none",
            max_deliver=1,
            extra={"direct": True},
            **kw,
        )
        if isinstance(cfg.opt_start_time, str):
            cfg = ConsumerConfig.from_dict(cfg.to_dict())  # RFC 3339 -> epoch seconds
        return cfg

    # -- copying ---------------------------------------------------------------------

    def wake(self) -> None:
        """The origin has news (inside ``Server.route`` possibly): schedule a pump."""
        if not self.scheduled:
            self.scheduled = True
            self.js.later(self.pump)

    def pump(self) -> None:
        """Copy up to ``BATCH`` messages; reschedule while more are waiting."""
        self.scheduled = False
        c = self.consumer
        target = _find(self.js, self.target)
        if c is None or target is None or self.timer is not None:
            return
        budget = BATCH
        try:
            while budget:
                if not self.held:
                    self.held.extend(c.next_batch(min(budget, 64)))
                    if not self.held:
                        break
                while self.held and budget:
                    msg, _info = self.held[0]
                    if not self._copy(target, msg):
                        self._retry_later()
                        return
                    self.held.popleft()
                    self.seq = msg.seq
                    budget -= 1
        except StoreError as err:  # the target or the origin went away under us
            self.error = err
            return
        finally:
            self.lag = (c.num_pending + len(self.held)) if self.consumer is c else self.lag
            self.active_ns = time.time_ns()
        if not budget:
            self.wake()  # more may be waiting: the next slice in the next turn

    def _copy(self, target: Any, msg: StoredMsg) -> bool:
        """Store one copy; False when a discard-new limit (or a write error) refused it:
        the same message is tried again later."""
        subject = msg.subject
        for _src, tr in self.transforms:
            new = tr(subject)
            if new is not None:
                subject = new
                break
        try:
            if self.mirror:
                if msg.seq <= target.state().last_seq:
                    return True  # already there (a re-attached cursor)
                target.skip_to(msg.seq - 1)
                target.append(
                    subject, msg.payload, _copy_headers(msg.headers, None), ts_ns=msg.ts_ns
                )
            else:
                # <origin> <seq> <filter> <dest> <subject>, as nats-server 2.10+ writes it
                name, _sp, rest = self.iname.partition(" ")
                value = f"{name} {msg.seq} {rest} {msg.subject}"
                headers = _copy_headers(msg.headers, value)
                msg_id = decode_headers(msg.headers).get("Nats-Msg-Id") if msg.headers else None
                target.append(subject, msg.payload, headers, msg_id=msg_id[-1] if msg_id else None)
        except StoreClosed:
            raise  # shutting down: the pump stops, the copies say where to resume
        except (LimitExceeded, StoreWriteError) as err:
            self.error = err  # room or the disk may come back: the same message later
            return False
        except StoreError as err:
            # nats-server logs and drops such a message; the feed goes on
            self.error = err
            log.warning(
                "stream %s: copy of %s seq %d refused: %s",
                self.target,
                self.origin_name,
                msg.seq,
                err,
            )
        else:
            self.error = None
        return True

    def _retry_later(self) -> None:
        def again() -> None:
            self.timer = None
            self.wake()

        self.timer = self.js.hub.loop.call_later(RETRY, again)

    def info(self) -> dict:
        """StreamInfo's ``mirror`` / ``sources[]`` entry (nats-server StreamSourceInfo)."""
        out: dict[str, Any] = {"name": self.origin_name, "lag": self.lag}
        out["active"] = (time.time_ns() - self.active_ns) if self.active_ns else -1
        if self.spec.get("filter_subject"):
            out["filter_subject"] = self.spec["filter_subject"]
        if self.spec.get("subject_transforms"):
            out["subject_transforms"] = list(self.spec["subject_transforms"])
        if not self.mirror and self.seq:
            out["seq"] = self.seq
        if self.error is not None:
            out["error"] = self.error.to_error()
        return out


def _scan_sources(target: Any, inames: list[str]) -> dict[str, int]:
    """The newest origin seq of each source in ``inames`` found in the target's
    headers, walking back from its end (nats-server ``startingSequenceForSources``;
    slow only for a big stream holding nothing of a source)."""
    want = set(inames)
    found: dict[str, int] = {}
    state = target.state()
    seq = state.last_seq
    while want and state.messages and seq >= state.first_seq:
        try:
            msg = target.get(seq)
        except StoreError:
            seq -= 1
            continue
        seq -= 1
        got = _source_of(msg.headers)
        if got is None:
            continue
        iname, oseq = got
        if iname in want:
            found[iname] = oseq
            want.discard(iname)
    return found


# --------------------------------------------------------------------------- registry


def _find(js: JetStream, name: str) -> Any:
    try:
        return js.store.stream(name)
    except StreamNotFound:
        return None


def _feeds(js: JetStream) -> dict[str, list[Link]]:
    """Target stream name -> its feeds, kept on the engine."""
    feeds = getattr(js, "feeds", None)
    if feeds is None:
        feeds = js.feeds = {}  # type: ignore[attr-defined]
    return feeds


def _specs(config: Any) -> list[tuple[dict, bool]]:
    extra = config.extra
    mirror = extra.get("mirror")
    if mirror:
        return [(mirror, True)]
    return [(s, False) for s in extra.get("sources") or () if isinstance(s, dict)]


def start(js: JetStream) -> None:
    """At start-up: follow every origin from where the copies end."""
    for stream in js.store.streams():
        if _specs(stream.config):
            changed(js, stream)


def changed(js: JetStream, stream_or_name: Any) -> None:
    """After a create, update or delete of a stream: its own feeds follow its config
    (a feed whose spec did not change keeps its cursor and position), and every feed
    reading from it is re-attached if the origin object is new or gone."""
    name = stream_or_name if isinstance(stream_or_name, str) else stream_or_name.config.name
    feeds = _feeds(js)
    stream = _find(js, name)
    old = {(link.iname, link.mirror): link for link in feeds.pop(name, ())}
    links: list[Link] = []
    for spec, is_mirror in _specs(stream.config) if stream is not None else ():
        link = old.pop((index_name(spec), is_mirror), None)
        if link is not None and link.spec == spec:
            if link.consumer is None or _find(js, link.origin_name) is not link.origin:
                link.attach()
        else:
            if link is not None:
                link.detach()
            try:
                link = Link(js, name, spec, is_mirror)
            except ValueError as err:  # a transform check() would have refused
                log.warning("stream %s: bad feed %r: %s", name, spec, err)
                continue
            link.attach()
        links.append(link)
    for link in old.values():
        link.detach()
    if links:
        feeds[name] = links
    for tname, tlinks in feeds.items():
        if tname == name:
            continue
        for link in tlinks:
            if link.origin_name == name and (stream is None or stream is not link.origin):
                link.attach()


def info(js: JetStream, stream: Any) -> dict:
    """``{"mirror": {...}}`` or ``{"sources": [...]}`` for a fed stream's StreamInfo
    (an empty dict for any other stream)."""
    specs = _specs(stream.config)
    if not specs:
        return {}
    links = {(link.iname, link.mirror): link for link in _feeds(js).get(stream.config.name, ())}
    out = []
    for spec, is_mirror in specs:
        link = links.get((index_name(spec), is_mirror))
        if link is None:
            out.append({"name": spec.get("name", ""), "lag": 0, "active": -1})
        else:
            out.append(link.info())
    return {"mirror": out[0]} if specs[0][1] else {"sources": out}


# --------------------------------------------------------------------------- validation


def check(js: JetStream, config: Any, old: Any = None) -> None:
    """Refuse a create (``old`` None) or update of ``config`` (a StreamConfig, mirror and
    sources in its ``extra``) as nats-server does (``checkStreamCfg``; the numbers and
    texts as a live 2.15 server answered). Raises ApiError."""
    extra = config.extra
    mirror = extra.get("mirror")
    sources = extra.get("sources")
    if old is not None and mirror and mirror != old.extra.get("mirror"):
        raise ApiError(400, 10055, "stream mirror configuration can not be updated")
    if mirror is not None:
        _check_mirror(js, config, mirror, sources)
    if sources:
        if not isinstance(sources, list):
            raise ApiError(400, 10025, "invalid JSON: sources must be a list")
        seen = set()
        for spec in sources:
            if not isinstance(spec, dict) or not _valid_name(spec.get("name")):
                raise ApiError(400, 10141, "sourced stream name is invalid")
            iname = index_name(spec)
            if iname in seen:
                raise ApiError(400, 10140, "duplicate source configuration detected")
            seen.add(iname)
            _check_transforms(spec, "source")
    if mirror or sources:
        _check_cycle(js, config)


def _valid_name(name: Any) -> bool:
    return isinstance(name, str) and bool(name) and not set(name) & set(" \t\r\n.*>/\\")


def _check_mirror(js: JetStream, config: Any, mirror: Any, sources: Any) -> None:
    if not isinstance(mirror, dict) or not _valid_name(mirror.get("name")):
        raise ApiError(400, 10142, "mirrored stream name is invalid")
    if config.subjects:
        raise ApiError(400, 10034, "stream mirrors can not contain subjects")
    if sources:
        raise ApiError(400, 10031, "stream mirrors can not also contain other sources")
    if mirror.get("filter_subject") and mirror.get("subject_transforms"):
        raise ApiError(
            400,
            10150,
            "mirror with multiple subject transforms cannot also have a single subject filter",
        )
    f = mirror.get("filter_subject")
    if f and not valid_subject(f):
        raise ApiError(400, 10145, f"mirror filter subject {f!r} is not valid")
    _check_transforms(mirror, "mirror")
    origin = _find(js, mirror["name"])
    mine = config.max_msg_size or -1
    if origin is not None and 0 < mine < origin.config.max_msg_size:
        raise ApiError(400, 10030, "stream mirror must have max message size >= source")


def _check_transforms(spec: dict, what: str) -> None:
    for tr in spec.get("subject_transforms") or ():
        src = (tr or {}).get("src") or ">"
        if not valid_subject(src):
            raise ApiError(400, 10146, f"{what} transform source {src!r} is not valid")
        try:
            compile_transform(src, (tr or {}).get("dest") or "")
        except ValueError as err:
            raise ApiError(
                400, 10146, f"{what} transform: invalid mapping destination: {err}"
            ) from None


def _check_cycle(js: JetStream, config: Any) -> None:
    """No stream may end up fed, through mirrors and sources, by itself."""
    graph: dict[str, list[str]] = {}
    for st in js.store.streams():
        graph[st.config.name] = [s.get("name", "") for s, _m in _specs(st.config)]
    graph[config.name] = [s.get("name", "") for s, _m in _specs(config)]
    todo = list(graph[config.name])
    seen: set[str] = set()
    while todo:
        n = todo.pop()
        if n == config.name:
            raise ApiError(500, 10052, "detected cycle")
        if n in seen:
            continue
        seen.add(n)
        todo.extend(graph.get(n, ()))
