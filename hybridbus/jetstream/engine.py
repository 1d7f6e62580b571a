"""The JetStream engine: an internal client of the router that serves ``$JS.>``.

``JetStream`` sits in the ``Sublist`` like any connection, with ``InternalSub``
subscriptions whose ``handler`` says what a message means to it:

- ``$JS.API.INFO``, ``$JS.API.STREAM.>``, ``$JS.API.CONSUMER.>`` (``API_FAMILIES``)
  and each ``allow_direct`` stream's ``$JS.API.DIRECT.GET.<stream>[.>]``: API requests
  (``api.py`` dispatches them to ``streams.py`` and ``consumers.py``);
- each user stream's subjects: a publish to be stored (``capture.py``);
- ``$JS.ACK.>`` and ``$JS.FC.>``: acks and flow-control replies of consumers.

Why work is deferred. ``Server.route`` is not re-entrant: MQTT sessions collect their
matches during one round (``route_sessions``) and a nested ``route`` from inside a
``deliver`` would hand them the wrong message. So ``deliver`` never routes: what must
be stored is stored at once (a capture's durability must join the publisher's read,
see ``capture.py``), and everything that sends (API replies, PubAcks, deliveries to
consumers) goes on ``_work``, run by one ``call_soon`` per batch, not per message.

Sends use ``reply`` (a JSON or raw reply to an inbox, routed like any publish) and
``send_to`` (a consumer delivery: matched on the inbox or deliver subject, shown to
the receiver with the stream's subject and the ``$JS.ACK`` reply, as nats-server does).
"""

from __future__ import annotations

import json
import logging
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from hybridbus.router.sublist import Subscription

if TYPE_CHECKING:
    from hybridbus.core.hub import Hub

log = logging.getLogger("hybridbus.jetstream")

API_LEVEL = 1
# Internal streams of the MQTT layer (nats-server shows its own $MQTT_* streams too):
# listed and readable, never captured from the router, never changed by a client.
INTERNAL_PREFIX = "$MQTT_"
API_FAMILIES = ("$JS.API.INFO", "$JS.API.STREAM.>", "$JS.API.CONSUMER.>")

Handler = Callable[[str, "str | None", "bytes | None", bytes, Any], None]


def is_internal(stream_name: str) -> bool:
    return stream_name.startswith(INTERNAL_PREFIX)


class InternalSub(Subscription):
    """A subscription of the engine; ``handler(subject, reply, headers, payload,
    mqtt_msg)`` runs inside ``Server.route`` and must not route (module docstring).
    ``on_acks(subjects)``, when set (the ``$JS.ACK.>`` subscription), is ``handler(s,
    None, None, b"", None)`` for each subject, one call for a read's run of acks
    (``Server.route_acks``). ``on_requests(subject, replies, payloads)``, when set (a
    stream's capture subscription), is ``handler(subject, r, None, p, None)`` for each
    reply and payload, one call for a read's run of requests to one subject
    (``Server.route_requests``)."""

    __slots__ = ("handler", "on_acks", "on_requests")

    def __init__(self, subject: str, queue: str | None, client: JetStream, handler: Handler):
        super().__init__(subject, queue, client, 0)
        self.handler = handler
        self.on_acks: Callable[[list[str]], None] | None = None
        self.on_requests: Callable[[str, Sequence[str], Sequence[bytes]], None] | None = None


class JetStream:
    """The internal client; see the module docstring."""

    kind = "jetstream"
    echo = False  # its own replies never come back to it
    closing = False
    cid = 0  # not a connection: /subsz shows its subscriptions under cid 0
    api_level = API_LEVEL  # for the monitor (/jsz, /varz), which cannot import this package

    def __init__(self, hub: Hub, store: Any, account: Any = None) -> None:
        self.hub = hub
        self.store = store
        # The account it serves (server/account_state.py): it subscribes in that
        # account's sublist, and what it sends (Server.route / route_to read
        # origin.account) is routed there. $G's engine is the server's.
        self.account = account if account is not None else hub.global_account
        self.sublist = self.account.sublist
        # the account's JetStream limits (max_streams, max_consumers: -1 no limit;
        # memory and storage are its store's limits), $JS.API.INFO's "limits"
        self.max_streams = -1
        self.max_consumers = -1
        # enforced at create/update (streams.py, consumers.py), as nats-server's
        # jsa limits: -1 / False none
        self.max_ack_pending = -1
        self.max_bytes_required = False
        self.mem_max_stream_bytes = -1
        self.disk_max_stream_bytes = -1
        self._work: deque[tuple[Callable, tuple]] = deque()
        self._scheduled = False
        self._turn: Any = None  # the call_soon handle of _run, while one is pending
        self._subs: list[InternalSub] = []
        # stream name -> its capture subscriptions (capture.py keeps them in step)
        self.captures: dict[str, list[InternalSub]] = {}
        # API counters (INFO's "api", /jsz, /varz, /metrics)
        self.api_total = 0
        self.api_errors = 0
        self.started = False
        # which subjects streams capture (capture.py CaptureIndex, asked by MQTT)
        self.capture_index: Any = None
        # mqtt.retained_kv: the KV bucket of MQTT retained messages (retained_kv.py)
        self.retained_kv: Any = None
        # consumer runtimes: pull requests, push delivery, acks, timers (delivery.py)
        self.consumers: Any = None

    # -- life cycle -------------------------------------------------------------------

    def start(self) -> None:
        from hybridbus.jetstream import api, capture, delivery

        # The API families this engine answers, not $JS.API.>: a direct get is answered
        # only by a stream with allow_direct (capture.sync subscribes it), so that one on
        # any other stream gets no responders (503), as from nats-server.
        for family in API_FAMILIES:
            self.subscribe(family, lambda s, r, h, p, m: api.on_request(self, s, r, h, p))
        domain = self.hub.options.jetstream.domain
        if domain:
            # nats-server maps $JS.<domain>.API.> to $JS.API.> in every account with
            # JetStream: the domain-prefixed API is the same API (and MSG.NEXT, DIRECT.GET).
            self.subscribe(f"$JS.{domain}.API.>", self._domain_request)
        capture.start(self)  # stream subjects and direct-get responders
        delivery.start(self)  # $JS.ACK.>, $JS.FC.>, MSG.NEXT and the stored consumers
        from hybridbus.jetstream import mirror

        mirror.start(self)  # mirrors and sources follow their origins again
        from hybridbus.jetstream import retained_kv

        retained_kv.start(self)  # mqtt.retained_kv: MQTT retained messages as a KV bucket
        self.started = True

    def stop(self) -> None:
        if self.consumers is not None:
            self.consumers.stop()
        for sub in self._subs:
            self.sublist.remove(sub)
        self._subs.clear()
        self.started = False

    # -- the router side ---------------------------------------------------------------

    def subscribe(self, subject: str, handler: Handler, queue: str | None = None) -> InternalSub:
        sub = InternalSub(subject, queue, self, handler)
        self.sublist.insert(sub)
        self._subs.append(sub)
        return sub

    def _domain_request(self, subject: str, reply, headers, payload: bytes, mqtt_msg) -> None:
        """``$JS.<domain>.API.<rest>``: handled as ``$JS.API.<rest>`` by whichever of our
        own subscriptions that subject reaches (runs inside Server.route, as they do)."""
        local = "$JS.API." + subject.split(".", 3)[3]
        for sub in self.sublist.match(local).plain:
            if sub.client is self and isinstance(sub, InternalSub):
                sub.handler(local, reply, headers, payload, mqtt_msg)

    def unsubscribe(self, sub: InternalSub) -> None:
        self.sublist.remove(sub)
        try:
            self._subs.remove(sub)
        except ValueError:
            pass

    def deliver(
        self,
        sub: InternalSub,
        subject: str,
        reply: str | None,
        headers: bytes | None,
        payload: bytes,
        mqtt_msg: Any = None,
    ) -> None:
        try:
            sub.handler(subject, reply, headers, payload, mqtt_msg)
        except Exception:  # one bad message must not break the publisher's read
            log.exception("JetStream handler failed for %r", subject)

    def deliver_batch(self, sub: InternalSub, subject: str, payloads: list[bytes]) -> None:
        for payload in payloads:
            self.deliver(sub, subject, None, None, payload)

    def deliver_acks(self, sub: InternalSub, subjects: list[str]) -> None:
        """A run of reply-less, empty publishes to ``subjects`` that reach ``sub`` alone
        (``Server.route_acks``): its ``on_acks`` takes them in one call."""
        try:
            sub.on_acks(subjects)  # type: ignore[misc]
        except Exception:  # as deliver: the publisher's read goes on
            log.exception("JetStream ack run failed at %r", subjects[0])

    def deliver_requests(
        self, sub: InternalSub, subject: str, replies: Sequence[str], payloads: Sequence[bytes]
    ) -> None:
        """A run of publishes to ``subject``, each with its reply, no headers, that reach
        ``sub`` alone (``Server.route_requests``): its ``on_requests`` takes them in one
        call."""
        try:
            sub.on_requests(subject, replies, payloads)  # type: ignore[misc]
        except Exception:  # as deliver: the publisher's read goes on
            log.exception("JetStream request run failed for %r", subject)

    # -- deferred work -----------------------------------------------------------------

    def later(self, fn: Callable, *args: Any) -> None:
        """Run ``fn(*args)`` soon, outside any ``Server.route`` (module docstring)."""
        self._work.append((fn, args))
        if not self._scheduled:
            self._scheduled = True
            self._turn = self.hub.loop.call_soon(self._run_turn)

    def _run_turn(self) -> None:
        self._turn = None
        self._run()

    def _run(self) -> None:
        # Server.flush runs the read's work before the turn later() asked for: that
        # turn would find nothing to do (a loop turn per request for nothing).
        if self._turn is not None:
            self._turn.cancel()
            self._turn = None
        self._scheduled = False
        work = self._work
        # Only what is queued now: work queued while running waits for the next turn.
        for _ in range(len(work)):
            fn, args = work.popleft()
            try:
                fn(*args)
            except Exception:
                log.exception("JetStream work item %r failed", fn)

    # -- sending -----------------------------------------------------------------------

    def reply(self, subject: str, body: bytes | dict, headers: bytes | None = None) -> None:
        """Publish an answer (JSON for a dict) to ``subject``, routed like any publish.
        Call from deferred work only."""
        if isinstance(body, dict):
            body = json.dumps(body, separators=(",", ":")).encode()
        self.hub.route(self, subject, None, headers, body)

    def send_to(
        self,
        inbox: str,
        subject: str,
        reply: str | None,
        headers: bytes | None,
        payload: bytes,
        queue_group: str | None = None,
    ) -> int:
        """Deliver to the subscribers of ``inbox`` showing ``subject`` (a consumer's
        delivery: the stream subject with the ack reply). Queue subscribers get one copy
        per group; with ``queue_group`` only that group's members (a push consumer's
        ``deliver_group``). Returns how many got it. Call from deferred work only."""
        return self.hub.route_to(self, inbox, subject, reply, headers, payload, queue_group)

    def send_each(self, inbox: str, msgs: list[tuple]) -> list[int]:
        """``send_to`` for each ``(subject, reply, headers, payload)`` of ``msgs`` (a pull
        batch: the inbox matched once); returns the indices that reached nobody. Call
        from deferred work only."""
        return self.hub.route_to_each(self, inbox, msgs)

    def send_tails(self, inbox: str, subject: str, tails: list[bytes], nbytes: int) -> bool:
        """``send_each`` for a batch on one subject without headers, each message given as
        the tail of its MSG frame (``Server.route_tails``); False: nothing sent, use
        ``send_each``. Call from deferred work only."""
        return self.hub.route_tails(self, inbox, subject, tails, nbytes)

    def has_interest(self, inbox: str) -> bool:
        result = self.sublist.match(inbox)
        return bool(result.plain or result.queues)

    # -- what the monitor reads (monitor/ may not import this package) ------------------

    def stream_info(self, stream: Any) -> dict:
        """A store stream's StreamInfo as STREAM.INFO gives it (/jsz's stream detail)."""
        from hybridbus.jetstream import streams

        return streams.info_body(self, stream)

    def consumer_info(self, consumer: Any) -> dict:
        """A store consumer's ConsumerInfo as CONSUMER.INFO gives it, the live parts
        (num_waiting, push_bound) included (/jsz's consumer detail, /metrics)."""
        from hybridbus.jetstream import consumers

        rt = self.consumers.find(consumer.stream.name, consumer.name) if self.consumers else None
        return consumers.info(self, consumer, rt)
