"""An internal JetStream client: API requests and publishes with PubAcks, over the router.

``JsClient`` sits in an account's ``Sublist`` like the JetStream engine does
(``jetstream/engine.py``): its subscriptions are ``JsSub``s whose ``handler`` runs
inside ``Server.route``. It reaches a JetStream *domain* by publishing its requests
into our own router on ``$JS.<domain>.API.>``: a local engine with that domain answers
them itself, and otherwise the leaf-node link carries them to the hub that announced
the interest (nats-server's domain-prefixed API, the same API). With no domain it
talks to ``$JS.API.>``.

Every reply comes back on ONE wildcard subscription, ``_INBOX.<unique>.*`` (unique
per server: the leaf link announces it to the hub, so two nodes must not share it);
the last token says which request it answers.

Rules, as for the engine:

- a handler never routes (``Server.route`` is not re-entrant): every send goes on
  ``_work``, run by ``Server.flush`` (``run``) or one ``call_soon`` per batch;
- callbacks (``on_ack`` of a publish, a subscription's handler) never run inside the
  route that delivered the reply either: they are queued and run with the sends;
- no task per message, and futures only for API requests (``request``); a publish's
  PubAck calls its ``on_ack`` (the hot path of a QoS 1 PUBLISH).

A request or publish that nobody can receive (no engine here, no link to the hub)
fails at once with ``NO_RESPONDERS``; one unanswered for ``timeout`` seconds fails
with ``TIMEOUT`` (one timer for all of them, not one per message).
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from hybridbus.codec.nats import parse_headers
from hybridbus.router.sublist import Subscription

if TYPE_CHECKING:
    from hybridbus.core.hub import Hub

log = logging.getLogger("hybridbus.jsclient")

# err_code values of our own (nats-server's are positive): no one to ask, no answer.
NO_RESPONDERS = -503
TIMEOUT = -408

# handler(subject, reply, headers, payload)
Handler = Callable[[str, "str | None", "bytes | None", bytes], None]
# on_ack(answer or None, error or None)
OnAck = Callable[["dict | None", "JsError | None"], None]


class JsError(Exception):
    """A JetStream API error (``{"error": {code, err_code, description}}``), or one of
    ours: NO_RESPONDERS, TIMEOUT."""

    def __init__(self, code: int, err_code: int, description: str) -> None:
        super().__init__(f"{description} ({code}/{err_code})")
        self.code = code
        self.err_code = err_code
        self.description = description


def _error_of(answer: dict) -> JsError | None:
    err = answer.get("error")
    if not err:
        return None
    return JsError(err.get("code", 500), err.get("err_code", 0), err.get("description", ""))


class JsSub(Subscription):
    __slots__ = ("handler",)

    def __init__(self, subject: str, client: JsClient, handler: Handler) -> None:
        super().__init__(subject, None, client, 0)
        self.handler = handler


class JsClient:
    """See the module docstring."""

    kind = "internal"
    echo = False  # its own publishes never come back to it
    closing = False
    cid = 0  # not a connection: /subsz shows its subscriptions under cid 0

    def __init__(self, hub: Hub, account: Any, domain: str | None, timeout: float) -> None:
        self.hub = hub
        self.account = account
        self.sublist = account.sublist
        self.domain = domain
        self.api_prefix = f"$JS.{domain}.API." if domain else "$JS.API."
        self.timeout = timeout
        self.inbox = f"_INBOX.{secrets.token_hex(11)}."
        self._next = 0
        # reply token -> [future or on_ack, deadline]; insertion order = deadline order
        self._pending: dict[str, list] = {}
        self._work: deque[tuple] = deque()
        self._scheduled = False
        self._timer: asyncio.TimerHandle | None = None
        self._subs: list[JsSub] = []
        self._inbox_sub: JsSub | None = None
        self.timeouts = 0

    # -- life cycle -------------------------------------------------------------------

    def start(self) -> None:
        self._inbox_sub = self.subscribe(self.inbox + "*", self._on_reply, direct=True)

    def stop(self) -> None:
        for sub in self._subs:
            self.sublist.remove(sub)
        self._subs.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        pending, self._pending = self._pending, {}
        err = JsError(503, NO_RESPONDERS, "JetStream client stopped")
        for entry in pending.values():
            self._fail(entry[0], err)
        self.closing = True

    # -- the router side ---------------------------------------------------------------

    def subscribe(self, subject: str, handler: Handler, direct: bool = False) -> JsSub:
        """``handler(subject, reply, headers, payload)`` for each message on ``subject``,
        run after the route that delivered it (``direct``: inside it; ours only)."""
        if not direct:
            inner = handler

            def handler(s, r, h, p, inner=inner):
                self._queue(inner, s, r, h, p)

        sub = JsSub(subject, self, handler)
        self.sublist.insert(sub)
        self._subs.append(sub)
        return sub

    def unsubscribe(self, sub: JsSub) -> None:
        self.sublist.remove(sub)
        try:
            self._subs.remove(sub)
        except ValueError:
            pass

    def deliver(self, sub, subject, reply, headers, payload, mqtt_msg=None) -> None:
        try:
            sub.handler(subject, reply, headers, payload)
        except Exception:  # one bad message must not break the publisher's read
            log.exception("JetStream client handler failed for %r", subject)

    def deliver_batch(self, sub, subject: str, payloads: list[bytes]) -> None:
        for payload in payloads:
            self.deliver(sub, subject, None, None, payload)

    def _on_reply(self, subject: str, reply, headers: bytes | None, payload: bytes) -> None:
        entry = self._pending.pop(subject[len(self.inbox) :], None)
        if entry is None:
            return  # timed out already, or not ours
        if headers:
            status, description, _pairs = parse_headers(headers)
            if status is not None and status >= 300 and not payload:
                # 503 no responders (the hub has no JetStream leader yet), 408 ...
                err = JsError(status, NO_RESPONDERS if status == 503 else -status, description)
                self._queue(self._fail, entry[0], err)
                return
        try:
            answer = json.loads(payload)
        except ValueError:
            self._queue(self._fail, entry[0], JsError(500, 0, "unreadable JetStream answer"))
            return
        self._queue(self._answer, entry[0], answer)

    def _answer(self, waiter: Any, answer: dict) -> None:
        err = _error_of(answer) if isinstance(answer, dict) else None
        if isinstance(waiter, asyncio.Future):
            if waiter.done():
                return
            if err is not None:
                waiter.set_exception(err)
            else:
                waiter.set_result(answer)
        else:
            waiter(None if err else answer, err)

    def _fail(self, waiter: Any, err: JsError) -> None:
        if isinstance(waiter, asyncio.Future):
            if not waiter.done():
                waiter.set_exception(err)
        else:
            waiter(None, err)

    # -- requests and publishes --------------------------------------------------------

    def request(self, api: str, body: dict | bytes | None = None) -> asyncio.Future:
        """``$JS[.<domain>].API.<api>`` with ``body`` (JSON for a dict); a Future of the
        answer (a dict), or of a JsError (the API's error, NO_RESPONDERS, TIMEOUT)."""
        fut = self.hub.loop.create_future()
        if isinstance(body, dict):
            body = json.dumps(body, separators=(",", ":")).encode()
        self._expect(self.api_prefix + api, None, body or b"", fut)
        return fut

    def publish(
        self,
        subject: str,
        payload: bytes,
        headers: bytes | None = None,
        on_ack: OnAck | None = None,
    ) -> None:
        """Publish into the domain's streams; ``on_ack(puback, None)`` once a stream
        stored it (``{"stream", "seq", "duplicate"?}``), ``on_ack(None, JsError)`` if it
        refused it or nobody answered. Without ``on_ack``: fire and forget."""
        if on_ack is None:
            self.send(subject, payload, headers)
        else:
            self._expect(subject, headers, payload, on_ack)

    def send(self, subject: str, payload: bytes, headers: bytes | None = None, reply=None) -> None:
        """A plain publish (an ack to ``$JS.ACK...``, a notification): no answer."""
        self._work.append((subject, reply, headers, payload, None))
        self._schedule()

    def _expect(self, subject: str, headers: bytes | None, payload: bytes, waiter: Any) -> None:
        self._next += 1
        token = str(self._next)
        self._pending[token] = [waiter, time.monotonic() + self.timeout]
        self._work.append((subject, self.inbox + token, headers, payload, token))
        self._schedule()
        if self._timer is None:
            self._timer = self.hub.loop.call_later(self.timeout / 4, self._expire)

    # -- deferred work -----------------------------------------------------------------

    def _queue(self, fn: Callable, *args: Any) -> None:
        self._work.append((fn, args))
        self._schedule()

    def _schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            self.hub.loop.call_soon(self._run_soon)

    def _run_soon(self) -> None:
        self.run()
        self.hub.flush()

    def run(self) -> None:
        """Send what was queued and run the callbacks (Server.flush; never in a route)."""
        self._scheduled = False
        work = self._work
        route = self.hub.route
        pending = self._pending
        for _ in range(len(work)):
            item = work.popleft()
            try:
                if len(item) == 2:
                    item[0](*item[1])
                    continue
                subject, reply, headers, payload, token = item
                if not route(self, subject, reply, headers, payload) and token is not None:
                    entry = pending.pop(token, None)
                    if entry is not None:
                        err = JsError(503, NO_RESPONDERS, f"no responders on {subject}")
                        self._fail(entry[0], err)
            except Exception:
                log.exception("JetStream client work item failed")

    def _expire(self) -> None:
        """Fail what waited past its deadline; one timer while anything waits."""
        self._timer = None
        pending = self._pending
        now = time.monotonic()
        late = []
        for token, entry in pending.items():
            if entry[1] > now:
                break
            late.append(token)
        for token in late:
            entry = pending.pop(token)
            self.timeouts += 1
            self._fail(entry[0], JsError(408, TIMEOUT, "JetStream request timed out"))
        if late:
            self.hub.flush()
        if pending and not self.closing:
            self._timer = self.hub.loop.call_later(self.timeout / 4, self._expire)
