"""The consumers' live side: one runtime per consumer, and the subjects they answer.

``Consumers`` (``JetStream.consumers``) keeps a ``PullRuntime`` (``pull.py``) or a
``PushRuntime`` (``push.py``) per store consumer of a user stream, made when the API
creates one (``consumers.py``) or when the server starts with durable ones on disk. It
subscribes, as the engine:

- ``$JS.API.CONSUMER.MSG.NEXT.*.*``: pull requests. nats-server subscribes this per
  consumer, so a request to a consumer that does not exist has no responder; here the
  engine answers it with the same ``503`` status (``Nats-Subject`` included). The
  engine's ``$JS.API.>`` sees these too and ignores them: they are not API calls and
  are not counted as such (nats-server does not count them either).
- ``$JS.ACK.>``: acks (``acks.py``), applied inside ``Server.route``.
- ``$JS.FC.>``: flow-control replies of push consumers.

A runtime goes when its consumer is deleted (the API, the inactivity threshold) or its
stream is (``drop_stream``, or noticed on the next use: the store marks a deleted
stream closed). A SUB or UNSUB in the account (the router's watchers) makes the push
consumers whose deliver subject it matches look at their interest again at once, as
nats-server's interest notifications do: a durable push consumer whose subscriber comes
back (a client bound to it again, an MQTT session resumed on its node) delivers without
waiting. One shared poll stays as a backstop: while there are push consumers it watches
the router's generation number and, when it moved, lets each one look again; after a
push consumer is made (or loses interest) it starts at 1 ms and doubles up to ``POLL``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from hybridbus.jetstream import acks
from hybridbus.jetstream.engine import is_internal
from hybridbus.jetstream.pull import PullRuntime
from hybridbus.jetstream.push import PushRuntime
from hybridbus.jetstream.runtime import Runtime, no_responders, status
from hybridbus.store.errors import StoreError
from hybridbus.subjects import subject_matches

if TYPE_CHECKING:
    from hybridbus.jetstream.engine import JetStream

log = logging.getLogger("hybridbus.jetstream")

POLL = 0.05  # seconds between looks at the router's generation, while push consumers exist
POLL_FIRST = 0.001


class Consumers:
    """Every consumer runtime of the engine; see the module docstring."""

    def __init__(self, js: JetStream) -> None:
        self.js = js
        self.by_key: dict[tuple[str, str], Runtime] = {}
        self.push: dict[PushRuntime, None] = {}
        self._by_dsubj: dict[str, list[PushRuntime]] | None = None  # rebuilt when None
        self._due: dict[PushRuntime, None] = {}  # to look at their interest, soon
        self._genid = -1
        self._poll: Any = None
        self._poll_every = POLL

    def start(self) -> None:
        js = self.js
        js.subscribe("$JS.API.CONSUMER.MSG.NEXT.*.*", self._on_next)
        on_ack = acks.ack_handler(js)
        js.subscribe("$JS.ACK.>", on_ack).on_acks = acks.ack_run_handler(js)
        js.subscribe("$JS.FC.>", lambda s, r, h, p, m: acks.on_flow_control(js, s))
        for stream in js.store.streams():
            if is_internal(stream.name):
                continue
            for c in stream.consumers():
                self.attach(c)
        js.sublist.watchers.append(self._interest_moved)

    def stop(self) -> None:
        if self._interest_moved in self.js.sublist.watchers:
            self.js.sublist.watchers.remove(self._interest_moved)
        if self._poll is not None:
            self._poll.cancel()
            self._poll = None
        for rt in list(self.by_key.values()):
            rt.close()
        self.by_key.clear()
        self.push.clear()

    # -- runtimes ------------------------------------------------------------------------

    def attach(self, c: Any) -> Runtime:
        """The runtime of store consumer ``c`` (made if new); after a config update the
        caller asks it to ``apply_config``."""
        key = (c.stream.name, c.name)
        rt = self.by_key.get(key)
        if rt is not None:
            if rt.c is c and not rt.closed:
                return rt
            self.drop(rt, deleted=False)
        if c.config.deliver_subject:
            rt = PushRuntime(self, c)
            self.push[rt] = None
            self._by_dsubj = None
            self.hurry()
        else:
            rt = PullRuntime(self, c)
        self.by_key[key] = rt
        rt.kick()
        return rt

    def find(self, stream: str, name: str) -> Runtime | None:
        """The live runtime of a consumer, or None (also for one whose stream went)."""
        rt = self.by_key.get((stream, name))
        if rt is None:
            return None
        c = rt.c
        st = c.stream
        if st._closed or st._consumers.get(name) is not c:
            self.drop(rt, deleted=True)
            return None
        return rt

    def drop(self, rt: Runtime, deleted: bool) -> None:
        """Forget a runtime; ``deleted``: its consumer is gone (waiting pulls are told)."""
        if self.by_key.get(rt.key) is rt:
            del self.by_key[rt.key]
        if self.push.pop(rt, 0) is None:  # type: ignore[call-overload]
            self._by_dsubj = None
        if rt.closed:
            return
        if deleted:
            try:
                rt.on_delete()
            except Exception:
                log.exception("consumer %s > %s: on delete", rt.stream_name, rt.name)
        rt.close()

    def delete(self, rt: Runtime, why: str) -> None:
        """Remove the consumer from the store too (the inactivity threshold)."""
        log.debug("consumer %s > %s removed: %s", rt.stream_name, rt.name, why)
        st = rt.c.stream
        if not st._closed and st._consumers.get(rt.name) is rt.c:
            try:
                st.delete_consumer(rt.name)
            except StoreError as e:
                log.warning("consumer %s > %s: removing: %s", rt.stream_name, rt.name, e)
        self.drop(rt, deleted=True)

    def drop_stream(self, name: str) -> None:
        """The stream ``name`` was deleted: its consumers' runtimes go (call after the
        store delete; waiting pull requests get ``409 Consumer Deleted``)."""
        for rt in [rt for key, rt in self.by_key.items() if key[0] == name]:
            self.drop(rt, deleted=True)

    stream_deleted = drop_stream  # the name streams.py calls (before or after the store delete)

    def count(self) -> int:
        return len(self.by_key)

    # -- pull requests -------------------------------------------------------------------

    def _on_next(self, subject: str, reply: str | None, headers, payload: bytes, _m) -> None:
        if reply:
            self.js.later(self.next_request, subject, reply, payload)

    def next_request(self, subject: str, reply: str, payload: bytes) -> None:
        parts = subject.split(".")
        rt = self.find(parts[5], parts[6]) if len(parts) == 7 else None
        if rt is None:
            self.js.reply(reply, b"", no_responders(subject))
        elif not rt.pull:
            self.js.reply(reply, b"", status(409, "Consumer is push based"))
        else:
            rt.touched()
            rt.request(reply, payload)  # type: ignore[attr-defined]

    # -- push interest -------------------------------------------------------------------

    def deliver_subject_changed(self) -> None:
        """A push consumer's deliver subject changed (a config update)."""
        self._by_dsubj = None

    def _interest_moved(self, sub: Any, delta: int) -> None:
        """The router's watcher (every SUB and UNSUB of the account): the push consumers
        whose deliver subject ``sub`` matches look again, after the change is done."""
        if not self.push:
            return
        index = self._by_dsubj
        if index is None:
            index = self._by_dsubj = {}
            for rt in self.push:
                index.setdefault(rt.dsubj, []).append(rt)
        subject = sub.subject
        if "*" in subject or ">" in subject:
            hits = [rt for d, rts in index.items() if subject_matches(subject, d) for rt in rts]
        else:
            hits = index.get(subject) or ()
        if not hits:
            return
        if not self._due:
            self.js.hub.loop.call_soon(self._look_due)
        for rt in hits:
            self._due[rt] = None

    def _look_due(self) -> None:
        due, self._due = self._due, {}
        for rt in due:
            if not rt.closed:
                rt.check_interest()

    def hurry(self) -> None:
        """Interest may come (or go) any moment: look soon, then less and less often."""
        self._poll_every = POLL_FIRST
        if self._poll is not None:
            self._poll.cancel()
        self._poll = self.js.hub.loop.call_later(POLL_FIRST, self._look)

    def _look(self) -> None:
        self._poll = None
        if not self.push:
            return
        genid = self.js.sublist.genid
        if genid != self._genid:
            self._genid = genid
            for rt in list(self.push):
                if not rt.closed:
                    rt.check_interest()
        self._poll_every = min(self._poll_every * 2, POLL)
        self._poll = self.js.hub.loop.call_later(self._poll_every, self._look)


def start(js: JetStream) -> None:
    js.consumers = Consumers(js)
    js.consumers.start()
