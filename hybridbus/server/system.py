"""The system account: the home of every ``$SYS.>`` service and event.

Theory of operation
-------------------
nats-server runs its system services as an internal client of the system account
(``system_account``, ``$SYS`` when none is named): its subscriptions live in that
account's sublist, so only users of the system account (and accounts that import
from it) can reach them, and its events are published there, seen only by the
system account's subscribers. ``SystemAccount`` is that internal client here.

Registration API (for every module that answers ``$SYS`` requests)::

    server.system.register("$SYS.REQ.CLAIMS.UPDATE", handler)

``handler(req: SysRequest)`` returns a dict (sent as JSON), bytes (sent as they
are) or None (no answer); it runs after the delivery round that brought the
request (``Hub.after_round``), never inside ``Server.route``, so it may publish.
An exception is logged and answered with nothing. ``unregister(sub)`` removes one.
``publish(subject, body)`` sends an event (or any message) in the system account.

Nothing here is on the message path: requests are messages to the internal
client's own subscriptions, and events come from connects and closes, never from
a message.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from hybridbus.router.sublist import Subscription

if TYPE_CHECKING:
    from hybridbus.core.account import Account
    from hybridbus.server.server import Server

log = logging.getLogger("hybridbus.server")

DEFAULT_SYSTEM_ACCOUNT = "$SYS"


class SysRequest:
    """One request to a system service: what arrived, and who sent it."""

    __slots__ = ("subject", "reply", "headers", "payload", "tokens")

    def __init__(self, subject: str, reply: str | None, headers: bytes | None, payload: bytes):
        self.subject = subject
        self.reply = reply
        self.headers = headers
        self.payload = payload
        self.tokens = subject.split(".")

    def json(self) -> Any:
        """The body as JSON; an empty body is None. Raises ValueError when not JSON."""
        if not self.payload or not self.payload.strip():
            return None
        return json.loads(self.payload)


Handler = Callable[[SysRequest], "dict | bytes | None"]


class SysSub(Subscription):
    """A subscription of the system's internal client, with its handler."""

    __slots__ = ("handler",)

    def __init__(self, subject: str, client: SystemAccount, handler: Handler) -> None:
        super().__init__(subject, None, client, 0)
        self.handler = handler


class SystemAccount:
    """The internal client of the system account (module docstring)."""

    kind = "system"
    conn_type = "system"
    echo = False  # its own events never come back to it
    closing = False
    cid = 0  # not a connection: /subsz shows its subscriptions under cid 0

    def __init__(self, server: Server, account: Account) -> None:
        self.server = server
        self.account = account  # Server.route routes what it sends in this account
        self.subs: list[SysSub] = []

    # -- registration ---------------------------------------------------------------

    def register(self, subject: str, handler: Handler) -> SysSub:
        """Answer requests on ``subject`` (wildcards allowed) with ``handler``."""
        sub = SysSub(subject, self, handler)
        self.account.sublist.insert(sub)
        self.subs.append(sub)
        return sub

    def unregister(self, sub: SysSub) -> None:
        self.account.sublist.remove(sub)
        if sub in self.subs:
            self.subs.remove(sub)

    def stop(self) -> None:
        for sub in self.subs:
            self.account.sublist.remove(sub)
        self.subs.clear()

    # -- the router side ------------------------------------------------------------

    def deliver(self, sub, subject, reply, headers, payload, mqtt_msg=None) -> None:
        # Never route inside Server.route: the handler runs after the round.
        self.server.after_round(
            self._serve, (sub.handler, SysRequest(subject, reply, headers, payload))
        )

    def deliver_batch(self, sub, subject: str, payloads: list[bytes]) -> None:
        for payload in payloads:
            self.deliver(sub, subject, None, None, payload)

    def _serve(self, item: tuple) -> None:
        handler, req = item
        try:
            answer = handler(req)
        except Exception:  # one bad request must not break the publisher's read
            log.exception("system service failed for %r", req.subject)
            return
        if answer is not None and req.reply:
            self.publish(req.reply, answer)

    # -- sending --------------------------------------------------------------------

    def publish(self, subject: str, body: dict | bytes, headers: bytes | None = None) -> None:
        """Send ``body`` (JSON for a dict) on ``subject`` in the system account. Not
        from inside Server.route (handlers are called after the round)."""
        if isinstance(body, dict):
            body = json.dumps(body, separators=(",", ":")).encode()
        self.server.route(self, subject, None, headers, body)
