"""The system account: the home of every ``$SYS.>`` service and event.

Theory of operation
-------------------
nats-server runs its system services as an internal client of the system account
(``system_account``; ``$SYS``, made on the spot, when none is named and
``no_system_account`` is not set): its subscriptions live in that account's sublist,
so only the system account's users reach them, and its events are published there,
seen only by the system account's subscribers. ``SystemAccount`` is that internal
client here. Another account publishing on ``$SYS.REQ.SERVER.PING`` publishes in its
own subject space, where nobody answers (no responders), and its ``$SYS.>``
subscriptions see nothing of the server's events.

What every other account gets (nats-server's registerSystemImports): four service
imports from the system account, answered about the requester's own account only:
``$SYS.REQ.SERVER.PING.CONNZ`` and ``$SYS.REQ.ACCOUNT.PING.CONNZ`` (its connections),
``$SYS.REQ.ACCOUNT.PING.STATZ`` (its statistics) and ``$SYS.REQ.USER.INFO`` (the
requester's user, account and permissions). Here they are subscriptions of the
internal client in each account's sublist (``AccSub``), answered in that account.

Registration API (for every module that answers ``$SYS`` requests)::

    server.system.register("$SYS.REQ.CLAIMS.UPDATE", handler)

``handler(req: SysRequest)`` returns a dict (sent as JSON), bytes (sent as they
are) or None (no answer); it runs after the delivery round that brought the request
(``Server.after_round``), never inside ``Server.route``, so it may publish. An
exception is logged and answered with nothing. ``unregister(sub)`` removes one;
``publish(subject, body)`` sends an event in the system account.

Events (events.go): ``$SYS.ACCOUNT.<acc>.CONNECT`` / ``.DISCONNECT`` for NATS, MQTT
and WebSocket clients, ``$SYS.ACCOUNT.<acc>.SERVER.CONNS`` (and the old
``$SYS.SERVER.ACCOUNT.<acc>.CONNS``) when an account's connection count changes, and
``$SYS.SERVER.<id>.STATSZ`` every ``STATSZ_INTERVAL`` (first after a quarter second,
doubling up to it, as nats-server starts). Each is built only when somebody in the
system account subscribes to its subject (one cached sublist match), so a server
nobody watches pays nothing; nothing here runs per message: events come from
connects and closes, requests are messages to the internal client's own
subscriptions.

As nats-server, the global account ``$G`` has no CONNECT/DISCONNECT or CONNS events
(``EVENTS_FOR_GLOBAL``): its clients are the ones no account claims.
"""

from __future__ import annotations

import json
import logging
import secrets
import string
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from hybridbus import NATS_COMPAT_VERSION
from hybridbus.core.account import GLOBAL_ACCOUNT, Account, Origin
from hybridbus.router.sublist import Subscription

if TYPE_CHECKING:
    from hybridbus.server.server import Server

log = logging.getLogger("hybridbus.server")

DEFAULT_SYSTEM_ACCOUNT = "$SYS"
STATSZ_INTERVAL = 10.0  # nats-server's statsHBInterval
STATSZ_FIRST = 0.25
EVENTS_FOR_GLOBAL = False  # nats-server: "Ignore global account activity"


class _LazySysreq:
    """``sysreq`` on first use: it pulls in the monitor's report builders (and the
    config language through them), which start-up must not import (test_startup_time)."""

    def __getattr__(self, name: str) -> Any:
        from hybridbus.server import sysreq as module

        globals()["sysreq"] = module
        return getattr(module, name)


sysreq: Any = _LazySysreq()

# the monitoring requests of $SYS.REQ.SERVER.PING.<X> and $SYS.REQ.SERVER.<id>.<X>:
# name -> (options schema, builder), both looked up in sysreq when first asked
SERVER_SERVICES: dict[str, tuple[str, str]] = {
    "VARZ": ("VARZ", "varz"),
    "CONNZ": ("CONNZ", "connz"),
    "SUBSZ": ("SUBSZ", "subsz"),
    "JSZ": ("JSZ", "jsz"),
    "HEALTHZ": ("HEALTHZ", "healthz"),
    "LEAFZ": ("LEAFZ", "leafz"),
    "ACCOUNTZ": ("ACCOUNTZ", "accountz"),
}


def _service(name: str) -> tuple[Any, Callable]:
    schema, build = SERVER_SERVICES[name]
    return getattr(sysreq, schema), getattr(sysreq, build)


_EVENT_ID_CHARS = string.ascii_letters + string.digits


def event_id() -> str:
    """A 22-character id, shaped like the NUIDs nats-server gives its events."""
    return "".join(secrets.choice(_EVENT_ID_CHARS) for _ in range(22))


class SysRequest:
    """One request to a system service: what arrived, where, and who sent it."""

    __slots__ = ("subject", "reply", "headers", "payload", "tokens", "account", "client")

    def __init__(
        self,
        subject: str,
        reply: str | None,
        headers: bytes | None,
        payload: bytes,
        account: Account,
        client: Any = None,
    ) -> None:
        self.subject = subject
        self.reply = reply
        self.headers = headers
        self.payload = payload
        self.tokens = subject.split(".")
        self.account = account  # the account it was published in (answers go there)
        self.client = client  # the connection whose read brought it, when known

    def json(self) -> Any:
        """The body as JSON; an empty body is None. Raises ValueError when not JSON."""
        if not self.payload or not self.payload.strip():
            return None
        return json.loads(self.payload)


Handler = Callable[[SysRequest], "dict | bytes | None"]


class SysSub(Subscription):
    """A subscription of the system's internal client, with its handler; ``account``
    is the account whose sublist holds it (answers are routed there)."""

    __slots__ = ("handler", "account")

    def __init__(self, subject: str, client: SystemAccount, handler: Handler, account: Account):
        super().__init__(subject, None, client, 0)
        self.handler = handler
        self.account = account


def system_account_for(server: Server) -> Account | None:
    """The system account of ``server``'s options (module docstring), made and added
    to ``server.accounts`` when it is the implicit ``$SYS``."""
    opts = server.options
    name = opts.system_account
    if not name:
        if opts.no_system_account:
            return None
        name = DEFAULT_SYSTEM_ACCOUNT
    account = server.accounts.get(name)
    if account is None:
        # the implicit $SYS (a named one the start-up checks found missing never gets here)
        account = Account(name)
        server.accounts[name] = account
    return account


class SystemAccount:
    """The internal client of the system account (module docstring)."""

    kind = "system"
    conn_type = "system"
    echo = False  # its own events never come back to it
    closing = False
    cid = 0  # not a connection: /subsz shows its subscriptions under cid 0
    version = NATS_COMPAT_VERSION

    def __init__(self, server: Server, account: Account) -> None:
        self.server = server
        self.account = account  # Server.route routes what it sends in this account
        self.subs: list[SysSub] = []
        self.seq = 0  # ServerInfo.seq of the next answer or event
        self.announced: set[int] = set()  # cids whose CONNECT went out
        self.health_watch: Any = None
        self._wired: dict[str, list[SysSub]] = {}  # account name -> its AccSubs
        self._timer: Any = None
        self._interval = STATSZ_FIRST

    # -- registration ---------------------------------------------------------------

    def register(self, subject: str, handler: Handler, account: Account | None = None) -> SysSub:
        """Answer requests on ``subject`` (wildcards allowed) with ``handler``, in the
        system account (or in ``account``)."""
        acc = account or self.account
        sub = SysSub(subject, self, handler, acc)
        acc.sublist.insert(sub)
        self.subs.append(sub)
        return sub

    def unregister(self, sub: SysSub) -> None:
        sub.account.sublist.remove(sub)
        if sub in self.subs:
            self.subs.remove(sub)

    # -- life cycle -----------------------------------------------------------------

    def start(self) -> None:
        self._register_services()
        self.wire_accounts()
        self._timer = self.server.loop.call_later(self._interval, self._statsz_tick)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for sub in self.subs:
            sub.account.sublist.remove(sub)
        self.subs.clear()
        self._wired.clear()

    def wire_accounts(self) -> None:
        """Give every other account its imports of the system services (module
        docstring); accounts gone since the last call lose theirs. Idempotent (start,
        and after a reload)."""
        accounts = self.server.accounts
        for name in list(self._wired):
            if accounts.get(name) is None or accounts[name] is self.account:
                for sub in self._wired.pop(name):
                    self.unregister(sub)
        for name, acc in accounts.items():
            if acc is self.account:
                continue
            old = self._wired.get(name)
            if old and old[0].account is acc:
                continue
            for sub in old or ():
                self.unregister(sub)
            self._wired[name] = [
                self.register("$SYS.REQ.SERVER.PING.CONNZ", self._own_connz, acc),
                self.register("$SYS.REQ.ACCOUNT.PING.CONNZ", self._own_connz, acc),
                self.register("$SYS.REQ.ACCOUNT.PING.STATZ", self._own_statz, acc),
                self.register("$SYS.REQ.USER.INFO", self._user_info, acc),
            ]

    def _register_services(self) -> None:
        sid = self.server.server_id
        self.register("$SYS.REQ.SERVER.PING", self._statsz)
        for name in ("STATSZ", "IDZ", *SERVER_SERVICES):
            handler = self._server_handler(name)
            self.register(f"$SYS.REQ.SERVER.PING.{name}", handler)
            self.register(f"$SYS.REQ.SERVER.{sid}.{name}", handler)
        for name in ("CONNZ", "SUBSZ", "JSZ", "INFO", "STATZ", "CONNS"):
            self.register(f"$SYS.REQ.ACCOUNT.*.{name}", self._account_handler(name))
        self.register("$SYS.REQ.ACCOUNT.PING.STATZ", self._all_statz)
        self.register("$SYS.REQ.USER.INFO", self._user_info)

    # -- the router side ------------------------------------------------------------

    def deliver(self, sub, subject, reply, headers, payload, mqtt_msg=None) -> None:
        # Never route inside Server.route: the handler runs after the round.
        req = SysRequest(subject, reply, headers, payload, sub.account, self.server.reading)
        self.server.after_round(self._serve, (sub.handler, req))

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
            self.publish(req.reply, answer, account=req.account)

    # -- sending --------------------------------------------------------------------

    def publish(
        self,
        subject: str,
        body: dict | bytes,
        headers: bytes | None = None,
        account: Account | None = None,
    ) -> None:
        """Send ``body`` (JSON for a dict) on ``subject`` in the system account (or in
        ``account``). Not from inside Server.route (handlers run after the round)."""
        if isinstance(body, dict):
            body = json.dumps(body, separators=(",", ":")).encode()
        origin = self if account is None or account is self.account else Origin(account)
        self.server.route(origin, subject, None, headers, body)
        self.server.schedule_flush()

    def interested(self, subject: str) -> bool:
        result = self.account.sublist.match(subject)
        return bool(result.plain or result.queues)

    # -- the services ---------------------------------------------------------------

    def _statsz(self, req: SysRequest) -> dict | None:
        """STATSZ and the bare PING: every server answers; with no reply the stats
        go to the broadcast subject (events.go statszReq)."""
        if req.payload.strip():
            try:
                opts = sysreq.decode_options(req.payload, sysreq.STATSZ)
            except sysreq.ApiError as err:
                return {
                    "server": sysreq.server_info(self),
                    "error": {"code": 400, "description": str(err)},
                }
            if opts and sysreq.filtered_out(self, opts):
                return None
        if not req.reply:
            self.publish(f"$SYS.SERVER.{self.server.server_id}.STATSZ", sysreq.statsz(self))
            return None
        return sysreq.statsz(self)

    def _server_handler(self, name: str) -> Handler:
        if name == "STATSZ":
            return self._statsz
        if name == "IDZ":
            return lambda req: sysreq.idz(self) if req.reply else None

        def handle(req: SysRequest) -> Any:
            schema, build = _service(name)
            return sysreq.zreq(self, req, schema, lambda o: build(self, o))

        return handle

    def _account_handler(self, name: str) -> Handler:
        def handle(req: SysRequest) -> dict | None:
            acc = req.tokens[3] if len(req.tokens) == 5 else ""
            if name == "CONNS":
                return self._conns(req, acc)
            if name == "STATZ":
                if acc == "PING":  # the PING subject has its own handler
                    return None
                return sysreq.zreq(
                    self, req, sysreq.STATZ, lambda o: sysreq.account_statz(self, o, [acc])
                )
            if name == "INFO":
                return sysreq.zreq(self, req, sysreq.INFO, lambda o: sysreq.account_info(self, acc))
            schema, build = _service(name)
            return sysreq.zreq(self, req, schema, lambda o: build(self, o, acc))

        return handle

    def _all_statz(self, req: SysRequest) -> dict | None:
        return sysreq.zreq(self, req, sysreq.STATZ, lambda o: sysreq.account_statz(self, o))

    def _own_connz(self, req: SysRequest) -> dict | None:
        name = req.account.name
        return sysreq.zreq(self, req, sysreq.CONNZ, lambda o: sysreq.connz(self, o, name))

    def _own_statz(self, req: SysRequest) -> dict | None:
        name = req.account.name
        return sysreq.zreq(self, req, sysreq.STATZ, lambda o: sysreq.account_statz(self, o, [name]))

    def _user_info(self, req: SysRequest) -> dict | None:
        return sysreq.user_info(self, req) if req.reply else None

    def _conns(self, req: SysRequest, acc: str) -> dict | None:
        """$SYS.REQ.ACCOUNT.<acc>.CONNS: the AccountNumConns event, to the reply, when
        the account has connections here (events.go connsRequest)."""
        account = self.server.accounts.get(acc)
        if account is None or account.nconns == 0 or not req.reply:
            return None
        return self._account_conns(account)

    # -- events ---------------------------------------------------------------------

    def _account_conns(self, account: Account) -> dict:
        """AccountNumConns: TypedEvent, server, then AccountStat (events.go)."""
        row = sysreq.account_statz(self, {"include_unused": True}, [account.name])
        stat = row["account_statz"][0]
        out = {
            "type": "io.nats.server.advisory.v1.account_connections",
            "id": event_id(),
            "timestamp": sysreq.rfc3339(time.time()),
            "server": sysreq.server_info(self),
        }
        out.update(stat)
        return out

    def _statsz_tick(self) -> None:
        """The periodic STATSZ (events.go heartbeatStatsz): sent only when somebody in
        the system account listens."""
        self._interval = min(self._interval * 2, STATSZ_INTERVAL)
        self._timer = self.server.loop.call_later(self._interval, self._statsz_tick)
        subject = f"$SYS.SERVER.{self.server.server_id}.STATSZ"
        if self.interested(subject):
            try:
                self.publish(subject, sysreq.statsz(self))
            except Exception:
                log.exception("STATSZ event failed")

    def client_connected(self, client: Any) -> None:
        """A client passed its CONNECT: $SYS.ACCOUNT.<acc>.CONNECT and the account's
        connection count."""
        account = client.account
        if account.name == GLOBAL_ACCOUNT and not EVENTS_FOR_GLOBAL:
            return
        self.announced.add(client.cid)
        subject = f"$SYS.ACCOUNT.{account.name}.CONNECT"
        if self.interested(subject):
            self.server.loop.call_soon(self._send_client_event, subject, client, None)
        self._conns_changed(account)

    def client_closed(self, client: Any) -> None:
        """An announced client is gone: $SYS.ACCOUNT.<acc>.DISCONNECT with its traffic
        and the reason, and the account's connection count."""
        if client.cid not in self.announced:
            return
        self.announced.discard(client.cid)
        account = client.account
        subject = f"$SYS.ACCOUNT.{account.name}.DISCONNECT"
        if self.interested(subject):
            stop = time.time()
            event = self._client_event(client, "client_disconnect", stop)
            event["sent"] = {"msgs": client.in_msgs, "bytes": client.in_bytes}
            event["received"] = {"msgs": client.out_msgs, "bytes": client.out_bytes}
            event["reason"] = client.close_reason or "Client Closed"
            self.server.loop.call_soon(self.publish, subject, event)
        self._conns_changed(account)

    def _send_client_event(self, subject: str, client: Any, stop: float | None) -> None:
        self.publish(subject, self._client_event(client, "client_connect", stop))

    def _client_event(self, client: Any, kind: str, stop: float | None) -> dict:
        """ConnectEventMsg / DisconnectEventMsg up to ``client`` (events.go)."""
        now = stop if stop is not None else time.time()
        return {
            "type": f"io.nats.server.advisory.v1.{kind}",
            "id": event_id(),
            "timestamp": sysreq.rfc3339(now),
            "server": sysreq.server_info(self),
            "client": client_info(client, stop),
        }

    def _conns_changed(self, account: Account) -> None:
        """AccountNumConns on both subjects (never for $G, as nats-server)."""
        if account.name == GLOBAL_ACCOUNT:
            return
        new = f"$SYS.ACCOUNT.{account.name}.SERVER.CONNS"
        old = f"$SYS.SERVER.ACCOUNT.{account.name}.CONNS"
        subjects = [s for s in (old, new) if self.interested(s)]
        if subjects:
            self.server.loop.call_soon(self._send_conns, account, subjects)

    def _send_conns(self, account: Account, subjects: list[str]) -> None:
        for subject in subjects:
            self.publish(subject, self._account_conns(account))


def client_info(client: Any, stop: float | None) -> dict:
    """ClientInfo (events.go), in nats-server's field order."""
    info: dict[str, Any] = {
        "start": sysreq.rfc3339(client.start),
        "host": client.ip,
        "id": client.cid,
        "acc": client.account.name,
    }
    for key, attr in (("user", "user"), ("name", "name"), ("lang", "lang"), ("ver", "version")):
        value = getattr(client, attr, None)
        if value:
            info[key] = value
    if stop is not None:
        rtt = getattr(client, "rtt", 0.0)
        if rtt:
            info["rtt"] = int(rtt * 1e9)
        info["stop"] = sysreq.rfc3339(stop)
    info["name_tag"] = client.account.name
    info["kind"] = "Client"
    info["client_type"] = "websocket" if getattr(client, "ws", False) else client.conn_type
    mqtt_id = getattr(client, "client_id", None) if client.conn_type == "mqtt" else None
    if mqtt_id:
        info["client_id"] = mqtt_id
    return info
