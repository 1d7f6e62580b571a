"""A stream's ``subject_transform`` and ``republish``, as nats-server applies them in
``processJetStreamMsg``.

The subject transform maps a captured publish's subject (when it matches ``src``, an
empty ``src`` meaning ``>``) before anything else looks at it: the stored subject is
the transformed one, and the header checks and limits see it. Republish runs after a
message is stored (never for a duplicate): a stored subject matching the republish
``src`` is sent to the transformed ``dest`` with the stored headers plus
``Nats-Stream``, ``Nats-Subject`` (the stored subject), ``Nats-Sequence``,
``Nats-Time-Stamp``, ``Nats-Last-Sequence`` (the previous message on that subject, 0
without one) and, for ``headers_only``, ``Nats-Msg-Size`` with no payload; nats-server
2.15.1 writes them in that order. The send is deferred work (``js.later``): capture
runs inside ``Server.route``, which must never route.

Both use ``hybridbus.transform`` (nats-server's subject transforms); ``streamcfg``
refuses a config they cannot build, so building one here does not fail.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hybridbus.store.api import rfc3339
from hybridbus.store.errors import StoreError
from hybridbus.store.match import compile_filters
from hybridbus.transform import MappingError, Transform

if TYPE_CHECKING:
    from hybridbus.jetstream.engine import JetStream


def _matcher(src: str):
    """A predicate for subjects ``src`` matches (compile_filters gives None for ``>``)."""
    match = compile_filters([src])
    return match if match is not None else (lambda _subject: True)


class Rules:
    """One stream config's compiled transform and republish (``rules``)."""

    __slots__ = ("config", "tr", "tr_match", "rp", "rp_match", "headers_only")

    def __init__(self, config: Any) -> None:
        self.config = config
        self.tr = self.tr_match = self.rp = self.rp_match = None
        self.headers_only = False
        extra = config.extra
        tr = extra.get("subject_transform") or {}
        if tr.get("dest"):
            src = tr.get("src") or ">"
            try:
                self.tr = Transform(src, tr["dest"])
                self.tr_match = _matcher(src)
            except MappingError:
                self.tr = None
        rp = extra.get("republish") or {}
        if rp.get("dest"):
            src = rp.get("src") or ">"
            try:
                self.rp = Transform(src, rp["dest"])
                self.rp_match = _matcher(src)
            except MappingError:
                self.rp = None
            self.headers_only = bool(rp.get("headers_only"))

    def transform(self, subject: str) -> str:
        """The subject to store a publish on ``subject`` under."""
        if self.tr is not None and self.tr_match(subject):  # type: ignore[misc]
            return self.tr.apply(subject)
        return subject

    def republishes(self, subject: str) -> bool:
        return self.rp is not None and bool(self.rp_match(subject))  # type: ignore[misc]


def rules(js: JetStream, stream: Any) -> Rules | None:
    """The stream's rules, or None when it has neither (the common case: one dict
    lookup and an identity check per publish)."""
    cache = getattr(js, "stream_rules", None)
    if cache is None:
        cache = js.stream_rules = {}
    config = stream.config
    found = cache.get(stream.name)
    if found is None or found.config is not config:
        found = cache[stream.name] = Rules(config)
    return found if (found.tr is not None or found.rp is not None) else None


def last_seq(stream: Any, subject: str) -> int:
    """The sequence of the newest message on ``subject`` (0 without one), read before
    an append for ``Nats-Last-Sequence``."""
    try:
        return stream.last(subject).seq
    except StoreError:
        return 0


def republish(js: JetStream, stream: Any, r: Rules, seq: int, last: int) -> None:
    """Message ``seq`` was just stored (``last``: the one before it on its subject):
    queue its republish when its subject matches."""
    try:
        msg = stream.get(seq)
    except StoreError:
        return
    subject = msg.subject
    if not r.republishes(subject):
        return
    dest = r.rp.apply(subject)  # type: ignore[union-attr]
    payload = msg.payload
    lines = [
        f"Nats-Stream: {stream.name}\r\n",
        f"Nats-Subject: {subject}\r\n",
        f"Nats-Sequence: {seq}\r\n",
        f"Nats-Time-Stamp: {rfc3339(msg.ts_ns)}\r\n",
        f"Nats-Last-Sequence: {last}\r\n",
    ]
    if r.headers_only:
        lines.append(f"Nats-Msg-Size: {len(payload)}\r\n")
        payload = b""
    head = msg.headers[:-2] if msg.headers else b"NATS/1.0\r\n"
    headers = head + "".join(lines).encode() + b"\r\n"
    js.later(_send, js, dest, headers, payload)


def _send(js: JetStream, dest: str, headers: bytes, payload: bytes) -> None:
    js.hub.route(js, dest, None, headers, payload)
