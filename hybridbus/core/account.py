"""Accounts: each one its own subject space, with limits, exports and imports.

Theory of operation
-------------------
An ``Account`` owns a ``Sublist``. Every connection has ``client.account`` (the global
account ``$G`` until authentication names another, ``Server.join_account``), and the
server routes a message in its publisher's account: ``Server.route`` reads
``origin.account.sublist`` (one attribute chain; ``$G``'s sublist is
``server.sublist``, so the single-account server routes exactly as before).
Subscriptions go into the subscriber's account's sublist. A message never leaves its
account except through an import:

* a **stream import** (B imports A's ``a.>`` with ``prefix: p`` or ``to``): an
  ``ImportSub`` in A's sublist on the imported subject; what it matches is delivered in
  B on the mapped subject (``p.a.x``), to B's subscribers only;
* a **service import** (B imports A's ``svc.x`` ``to: local.x``): an ``ImportSub`` in
  B's sublist on ``local.x``; a request there is delivered in A on ``svc.x``. Its reply
  subject is replaced by a fresh ``_R_.<account tag>.<random>`` subject in A (as
  nats-server's service imports map replies), remembered in A's ``responses`` with
  the requester's account and real reply. A's one ``ResponseSub`` on
  ``_R_.<tag>.>`` carries a response back to B, on the requester's reply subject;
  a Singleton response ends the mapping, Stream and Chunked ones last until the
  export's response threshold. Nobody in B sees ``_R_`` subjects, nobody in A sees the
  requester's inbox, and an account without the import has no path at all.

Why deferred: ``Server.route`` is not re-entrant (MQTT sessions collect matches per
round), so an import's delivery only queues the hop (``Server.after_round``), which
the server runs once the round is over, still inside the publisher's read (so MQTT
durability tickets and flushes see it). Each hop carries the (account, subject) pairs
the message has been published as; a hop to one of them is not taken, so a cycle of
imports (A imports B's ``x`` and B imports A's) delivers once in each, never loops.

Limits (``limits { max_connections, max_subscriptions, max_payload }``) are checked
where nats-server checks them: connections at authentication (``join_account``),
subscriptions per connection at SUB, the payload by the connection's parser.
"""

from __future__ import annotations

import copy
import logging
import secrets
import time
from typing import TYPE_CHECKING, Any

from hybridbus.codec.nats import encode_err
from hybridbus.router.sublist import Sublist, Subscription
from hybridbus.subjects import subject_is_subset, subject_to_topic
from hybridbus.transform import Mappings

if TYPE_CHECKING:
    from hybridbus.core.hub import Hub
    from hybridbus.options import AccountExport, AccountImport, AccountOptions

log = logging.getLogger("hybridbus.server")

GLOBAL_ACCOUNT = "$G"
NO_LIMIT = -1
RESPONSE_PREFIX = "_R_."
# Response mappings kept per exporting account at most (oldest dropped first), so a
# requester that never gets answers cannot grow the table without bound.
MAX_RESPONSES = 100_000


class Account:
    """One account: its router, its limits, its imports and exports."""

    def __init__(self, name: str, sublist: Sublist | None = None) -> None:
        self.name = name
        self.sublist = sublist if sublist is not None else Sublist()
        self.options: AccountOptions | None = None
        self.max_connections = NO_LIMIT
        self.max_subscriptions = NO_LIMIT
        self.max_payload = NO_LIMIT
        self.nconns = 0  # live connections in the account (register/join_account)
        self.total_conns = 0
        # traffic of the account's closed connections: in_msgs, in_bytes, out_msgs, out_bytes
        self.closed_traffic = [0, 0, 0, 0]
        self.update_time = time.time()
        self.exports: list[AccountExport] = []
        self.imports: list[AccountImport] = []
        self.internal: list[Subscription] = []  # ImportSub/ResponseSub this account placed
        # service replies: "_R_.<tag>.<random>" -> [importer, reply, expires, singleton]
        self.responses: dict[str, list] = {}
        self.tag = secrets.token_hex(4)  # the _R_ subjects of this account's services
        # subject mappings (hybridbus.transform.Mappings), None without any: Server.route
        # reads this one attribute per message and maps only when it is set
        self.mappings: Mappings | None = None
        # The account's MQTT broker and JetStream engine (server/account_state.py): $G's
        # are the server's; another account's are made at its first MQTT CONNECT (or at
        # start when it has state on disk) and when its block enables JetStream.
        self.mqtt: Any = None
        self.jetstream: Any = None
        self.store: Any = None  # the store they keep their streams in
        # without JetStream, on a server with it: the 10039 responder (account_state.py)
        self.no_jetstream: Any = None

    def configure(self, opts: AccountOptions | None) -> None:
        self.options = opts
        if opts is None:
            return
        self.max_connections = opts.max_connections
        self.max_subscriptions = opts.max_subscriptions
        self.max_payload = opts.max_payload
        self.exports = list(opts.exports)
        self.imports = list(opts.imports)
        self.set_mappings(opts.mappings)
        self.update_time = time.time()

    def set_mappings(self, entries: list) -> None:
        """``[(src, [(dest, weight, cluster)])]`` as the config loader checked them."""
        table = Mappings()
        for src, dests in entries:
            table.add(src, dests)
        self.mappings = table or None

    def is_global(self) -> bool:
        return self.name == GLOBAL_ACCOUNT

    def __repr__(self) -> str:
        return f"<Account {self.name}>"


class Origin:
    """A publisher that is no connection, routed in ``account`` (an import's hop, an
    account's MQTT wills and $SYS topics, a system answer published in another
    account): never a receiver, so never skipped."""

    __slots__ = ("account",)
    echo = True
    closing = False
    cid = 0

    def __init__(self, account: Account) -> None:
        self.account = account


class ImportSub(Subscription):
    """An import's subscription: in the exporter's sublist for a stream import, in the
    importer's for a service import. ``client`` is the Imports manager."""

    __slots__ = ("imp", "source", "target", "from_toks", "to_toks", "export")

    batchable = True  # a run of messages is carried one by one (deliver_batch)

    def __init__(self, subject: str, manager: Imports, imp: Any, source: Account, target: Account):
        super().__init__(subject, None, manager, 0)
        self.imp = imp
        self.source = source  # the account whose sublist holds this subscription
        self.target = target  # the account the message is delivered in
        self.from_toks: list[str] = []
        self.to_toks: list[str] | None = None
        self.export: Any = None


class ResponseSub(Subscription):
    """An exporting account's subscription on its ``_R_.<tag>.>`` reply subjects."""

    __slots__ = ("account",)
    batchable = True

    def __init__(self, manager: Imports, account: Account) -> None:
        super().__init__(f"{RESPONSE_PREFIX}{account.tag}.>", None, manager, 0)
        self.account = account


def map_subject(subject: str, from_toks: list[str], to_toks: list[str] | None) -> str:
    """``subject`` (matched by ``from_toks``) on ``to_toks``: the tokens the wildcards
    of ``from_toks`` matched fill the wildcards of ``to_toks`` in order (``>`` takes the
    rest); a literal ``to`` is taken as it is."""
    if to_toks is None:
        return subject
    toks = subject.split(".")
    captured: list[str] = []
    for i, pat in enumerate(from_toks):
        if pat == "*":
            captured.append(toks[i])
        elif pat == ">":
            captured.append(".".join(toks[i:]))
            break
    out = []
    n = 0
    for tok in to_toks:
        if tok in ("*", ">") and n < len(captured):
            out.append(captured[n])
            n += 1
        else:
            out.append(tok)
    return ".".join(out)


class Imports:
    """Places the imports' subscriptions and carries their messages (module docstring).
    One per server; it is the ``client`` of every ImportSub and ResponseSub."""

    kind = "import"
    cid = 0  # not a connection: /subsz shows these subscriptions under cid 0
    echo = True
    closing = False

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        # (account, subject) pairs the message being routed now has been through
        self.chain: tuple = ()

    # -- wiring ------------------------------------------------------------------------

    def wire(self, accounts: dict[str, Account]) -> None:
        """Subscribe every account's imports and its service replies (after unwire)."""
        for acc in accounts.values():
            if any(e.service for e in acc.exports):
                sub = ResponseSub(self, acc)
                acc.sublist.insert(sub)
                acc.internal.append(sub)
        for acc in accounts.values():
            for imp in acc.imports:
                exporter = accounts.get(imp.account)
                if exporter is None:
                    continue  # the loader refuses this; a reload race leaves it unwired
                if imp.service:
                    local = imp.to or imp.subject
                    sub = ImportSub(local, self, imp, acc, exporter)
                    sub.from_toks = local.split(".")
                    sub.to_toks = imp.subject.split(".") if local != imp.subject else None
                    sub.export = _export_for(exporter, imp)
                    acc.sublist.insert(sub)
                    acc.internal.append(sub)
                else:
                    sub = ImportSub(imp.subject, self, imp, exporter, acc)
                    sub.from_toks = imp.subject.split(".")
                    if imp.prefix:
                        # a prefix keeps the whole subject: "a.x" is seen as "p.a.x"
                        sub.from_toks = [">"]
                        sub.to_toks = [*imp.prefix.split("."), ">"]
                    elif imp.to:
                        sub.to_toks = imp.to.split(".")
                    exporter.sublist.insert(sub)
                    exporter.internal.append(sub)

    def unwire(self, accounts: dict[str, Account]) -> None:
        for acc in accounts.values():
            for sub in acc.internal:
                acc.sublist.remove(sub)
            acc.internal.clear()

    # -- the router side ---------------------------------------------------------------

    def deliver(self, sub, subject, reply, headers, payload, mqtt_msg=None) -> None:
        if sub.__class__ is ResponseSub:
            self._response(sub.account, subject, headers, payload)
            return
        imp = sub.imp
        mapped = map_subject(subject, sub.from_toks, sub.to_toks)
        chain = self.chain or ((sub.source, subject),)
        hop = (sub.target, mapped)
        if hop in chain:
            return  # the message was there already: a cycle of imports
        if imp.service and reply is not None:
            reply = self._remember(sub, reply)
        elif imp.service:
            reply = None
        self.hub.after_round(
            self._hop, (sub.target, mapped, reply, headers, payload, chain + (hop,))
        )

    def deliver_batch(self, sub, subject: str, payloads: list[bytes]) -> None:
        for payload in payloads:
            self.deliver(sub, subject, None, None, payload)

    def _remember(self, sub: ImportSub, reply: str) -> str:
        """A fresh reply subject in the exporter that leads back to ``reply`` in the
        importer (module docstring)."""
        exporter = sub.target
        export = sub.export
        responses = exporter.responses
        now = time.monotonic()
        if len(responses) >= MAX_RESPONSES or (
            responses and next(iter(responses.values()))[2] < now
        ):
            self._expire(responses, now)
        mapped = f"{RESPONSE_PREFIX}{exporter.tag}.{secrets.token_hex(10)}"
        threshold = export.response_threshold if export is not None else 120.0
        singleton = export is None or export.response_type == "Singleton"
        responses[mapped] = [sub.source, reply, now + threshold, singleton]
        return mapped

    @staticmethod
    def _expire(responses: dict, now: float) -> None:
        for key in list(responses):
            entry = responses[key]
            if entry[2] < now or len(responses) >= MAX_RESPONSES:
                del responses[key]
            else:
                break

    def _response(self, exporter: Account, subject: str, headers, payload) -> None:
        entry = exporter.responses.get(subject)
        if entry is None:
            return
        if entry[2] < time.monotonic():
            del exporter.responses[subject]
            return
        if entry[3]:
            del exporter.responses[subject]  # Singleton: one response, then the path closes
        self.hub.after_round(self._hop, (entry[0], entry[1], None, headers, payload, self.chain))

    def _hop(self, item: tuple) -> None:
        """Deliver a carried message in its target account (after the round)."""
        target, subject, reply, headers, payload, chain = item
        saved, self.chain = self.chain, chain
        try:
            self.hub.route(Origin(target), subject, reply, headers, payload)
        finally:
            self.chain = saved


def _export_for(exporter: Account, imp: AccountImport) -> AccountExport | None:
    for exp in exporter.exports:
        if exp.service == imp.service and subject_is_subset(imp.subject, exp.subject):
            return exp
    return None


def join_account(client: Any, gacc: Account) -> bool:
    """After a login: move the client's connection count from $G (where the server's
    register counted it) to the account its user belongs to (``client.account``, set by
    Security). False when that account is at ``max_connections``: the client goes back
    to $G, to be closed (nats-server: 'maximum account active connections exceeded')."""
    account = client.account
    if account is gacc:
        return True
    limit = account.max_connections
    if limit >= 0 and account.nconns >= limit:
        client.account = gacc
        log.info(
            "%s:%d - cid:%d - maximum account active connections exceeded (account %s)",
            client.ip,
            client.port,
            client.cid,
            account.name,
        )
        return False
    gacc.nconns -= 1
    gacc.total_conns -= 1
    account.nconns += 1
    account.total_conns += 1
    return True


def leave_account(client: Any, gacc: Account) -> None:
    """Undo ``join_account``: the client's count goes back to $G, and so does the
    client (an MQTT CONNECT delayed for flapping is authenticated again, and joins
    again, when it resumes: mqtt/connection.py ``_resume_connect``)."""
    account = client.account
    if account is gacc:
        return
    account.nconns -= 1
    account.total_conns -= 1
    gacc.nconns += 1
    gacc.total_conns += 1
    client.account = gacc


# Publishers whose messages mappings leave alone: nats-server maps what CLIENT (and
# LEAF) connections publish in its parser, never its internal clients' messages.
_UNMAPPED = ("jetstream", "system")


def mapped(hub: Any, origin: Any, subject: str, reply: str | None, msg: Any) -> tuple:
    """(subject, MQTT message) after the publisher's account's mappings (Server.route
    calls this only when the account has some); subject '' drops the message. An MQTT
    message gets a copy on the mapped topic, so MQTT subscribers see the topic they
    subscribed to. Publish permissions apply to the mapped subject too: nats-server maps
    before it checks them (parser.go), so a user allowed ``a`` but not ``b`` cannot
    publish through a mapping ``a -> b``."""
    if getattr(origin, "kind", "") in _UNMAPPED:
        return subject, msg
    account = hub.global_account if origin is None else origin.account
    new = account.mappings.map(subject)
    if new == subject or not new:
        return new, msg
    if getattr(origin, "perms", None) is not None and not hub.security.may_publish(
        origin, new, reply
    ):
        log.info("publish to %r (mapped from %r) denied", new, subject)
        if getattr(origin, "conn_type", "") == "nats":
            origin.queue(encode_err(f'Permissions Violation for Publish to "{new}"'))
        return "", msg
    if msg is not None:
        msg = copy.copy(msg)
        msg.topic = subject_to_topic(new)
        msg._topic_bytes = None
    return new, msg


def build_accounts(options: Any, global_sublist: Sublist) -> dict[str, Account]:
    """``$G`` (around the server's sublist) and one Account per ``accounts`` entry."""
    accounts = {GLOBAL_ACCOUNT: Account(GLOBAL_ACCOUNT, global_sublist)}
    accounts[GLOBAL_ACCOUNT].set_mappings(options.mappings)  # top-level mappings: $G's
    for opts in options.accounts:
        acc = Account(opts.name)
        acc.configure(opts)
        accounts[opts.name] = acc
    return accounts
