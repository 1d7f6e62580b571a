"""Operator (JWT) mode on the running server: accounts from JWTs, logins that end,
account updates applied to connected clients, and the ``$SYS`` claims services.

Theory of operation
-------------------
``security/operator.py`` (``Trust``) verifies JWTs and logins; this module makes them
act on the server (nats-server's accounts.go updateAccountClaims, events.go):

* **Accounts.** Every usable account JWT of the resolver is an ``Account`` named by
  its public key in ``server.accounts``, with the JWT's ``conn``/``subs``/``payload``
  limits (A1's ``Account.configure`` from an ``AccountOptions``), its mappings, its
  JetStream and its limits (started, changed or stopped through ``on_account``), its
  exports, and those imports whose exporter exports the subject to it (an import of
  something not exported, or exported only with an activation token, is logged and
  not wired).
  ``sync`` rebuilds the import wiring whenever the set of JWTs changes.
* **Logins.** ``Security`` calls ``note_login`` after each JWT login: the user's
  ``payload`` limit goes to the connection's parser, and a timer closes the client
  when its JWT expires or its ``times`` window ends (``-ERR 'User Authentication
  Expired'``, as nats-server's authExpired).
* **Updates** (``$SYS.REQ.CLAIMS.UPDATE`` and ``$SYS.REQ.ACCOUNT.<key>.CLAIMS.UPDATE``,
  what ``nsc push`` sends, from a client of the system account; and reloads): the
  account's limits and imports change, users it revokes are closed (``-ERR 'User
  Authentication Revoked'``), and when its connection limit went down the newest
  clients over it are closed. An account whose JWT is gone or expired closes its
  clients. Answers are nats-server's (accounts.go respondToUpdate):
  ``{"server": {...}, "data": {"account": key, "code": 200, "message": "jwt updated"}}``,
  or ``"error": {"account", "code": 500, "description": "<message> - <reason>"}``.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from hybridbus.codec import jwt as J
from hybridbus.codec.nats import encode_err
from hybridbus.core import client as reasons
from hybridbus.core.account import Account
from hybridbus.options import AccountOptions
from hybridbus.subjects import subject_is_subset

if TYPE_CHECKING:
    from hybridbus.security.operator import AccountJwt, Trust, UserLogin

log = logging.getLogger("hybridbus.server")

CLAIMS_UPDATE = "$SYS.REQ.CLAIMS.UPDATE"
ACCOUNT_CLAIMS_UPDATE = "$SYS.REQ.ACCOUNT.*.CLAIMS.UPDATE"
ACCOUNT_CLAIMS_UPDATE_OLD = "$SYS.ACCOUNT.*.CLAIMS.UPDATE"  # nats-server's accUpdateEventSubjOld
REVOKED = "Credentials Revoked"  # nats-server's ClosedState strings
EXPIRED = "Authentication Expired"


def operator_mode(server: Any) -> OperatorMode | None:
    """The server's OperatorMode, attached, when its Security trusts an operator."""
    if server.security.trust is None:
        return None
    mode = OperatorMode(server)
    mode.attach()
    return mode


class OperatorMode:
    """The server side of operator mode (module docstring). One per server."""

    def __init__(self, server: Any) -> None:
        self.server = server
        # cid -> (client, the login): who logged in with which JWT, for revocations
        self.logins: dict[int, tuple[Any, UserLogin]] = {}
        self.timers: dict[int, Any] = {}
        self.sys_subs: list = []
        # on_account(account) after each sync, for every JWT account: the server
        # starts, changes or stops its JetStream (server/account_state.py sets it once
        # the accounts' stores are open; before that, the start makes them)
        self.on_account: Any = None

    @property
    def trust(self) -> Trust:
        return self.server.security.trust

    # -- wiring -------------------------------------------------------------------------

    def attach(self) -> None:
        """After the server (or a reload) built its Security: hook the logins, make the
        accounts, and answer claims updates in the system account."""
        security = self.server.security
        security.on_login = self.note_login
        security.accounts = self.server.accounts
        self.sync()
        self._register_services()

    def sync(self) -> None:
        """Make server.accounts match the trusted account JWTs; wire imports again."""
        server = self.server
        accounts = server.accounts
        server.imports.unwire(accounts)
        for pubkey, acc_jwt in self.trust.accounts.items():
            acc = accounts.get(pubkey)
            if acc is None:
                acc = accounts[pubkey] = Account(pubkey)
            acc.configure(self._account_options(acc_jwt))
        for pubkey in list(accounts):
            acc = accounts[pubkey]
            if pubkey not in self.trust.accounts and J_is_account(pubkey):
                acc.configure(AccountOptions(pubkey, max_connections=0))
                self._close_clients(acc, EXPIRED, "Account Authentication Expired")
        server.imports.wire(accounts)
        system = getattr(server, "system", None)
        if system is not None and hasattr(system, "wire_accounts"):
            system.wire_accounts()  # new accounts get the system services' imports
        if self.on_account is not None:
            for pubkey in list(accounts):
                if J_is_account(pubkey):
                    self.on_account(accounts[pubkey])

    def _account_options(self, acc_jwt: AccountJwt) -> AccountOptions:
        imports = []
        for imp in acc_jwt.imports:
            exporter = self.trust.accounts.get(imp.account)
            if exporter is not None and any(
                e.service == imp.service
                and subject_is_subset(imp.subject, e.subject)
                and (e.accounts is None or acc_jwt.pubkey in e.accounts)
                for e in exporter.exports
            ):
                imports.append(imp)
            else:
                log.warning(
                    "Account %s: import %r of %s is not exported to it; not wired",
                    acc_jwt.pubkey,
                    imp.subject,
                    imp.account,
                )
        return AccountOptions(
            acc_jwt.pubkey,
            max_connections=acc_jwt.max_connections,
            max_subscriptions=acc_jwt.max_subscriptions,
            max_payload=acc_jwt.max_payload,
            exports=list(acc_jwt.exports),
            imports=imports,
            mappings=list(acc_jwt.mappings),
            jetstream=acc_jwt.jetstream,
            js_max_memory=acc_jwt.js_max_memory,
            js_max_file=acc_jwt.js_max_file,
            js_max_streams=acc_jwt.js_max_streams,
            js_max_consumers=acc_jwt.js_max_consumers,
            js_max_ack_pending=acc_jwt.js_max_ack_pending,
            js_max_bytes_required=acc_jwt.js_max_bytes_required,
            js_mem_max_stream_bytes=acc_jwt.js_mem_max_stream_bytes,
            js_disk_max_stream_bytes=acc_jwt.js_disk_max_stream_bytes,
        )

    def _register_services(self) -> None:
        system = getattr(self.server, "system", None)
        if system is None or system.account.name != self.trust.system_account:
            return  # no system account: nothing to update through (reloads still work)
        for sub in self.sys_subs:
            system.unregister(sub)
        self.sys_subs = []
        if self.trust.options.resolver == "full":
            self.sys_subs.append(system.register(CLAIMS_UPDATE, self.claims_update))
        for subject in (ACCOUNT_CLAIMS_UPDATE, ACCOUNT_CLAIMS_UPDATE_OLD):
            self.sys_subs.append(system.register(subject, self.account_claims_update))

    # -- logins -------------------------------------------------------------------------

    def note_login(self, client: Any, login: UserLogin) -> None:
        self._forget(client.cid)
        self.logins[client.cid] = (client, login)
        parser = getattr(client, "parser", None)
        if parser is not None and 0 <= login.max_payload < parser.max_payload:
            parser.max_payload = login.max_payload  # the user JWT's payload limit
        if login.ends is not None:
            delay = max(0.0, login.ends - time.time())
            self.timers[client.cid] = self.server.loop.call_later(delay, self._expire, client)

    def _expire(self, client: Any) -> None:
        self.timers.pop(client.cid, None)
        self.logins.pop(client.cid, None)
        if client.closing:
            return
        log.info("%s:%s - cid:%s - User Authentication Expired", client.ip, client.port, client.cid)
        self._close(client, EXPIRED, "User Authentication Expired")
        self.server.flush()

    def _forget(self, cid: int) -> None:
        self.logins.pop(cid, None)
        timer = self.timers.pop(cid, None)
        if timer is not None:
            timer.cancel()

    def _prune(self) -> None:
        live = self.server.clients
        for cid in [c for c in self.logins if c not in live]:
            self._forget(cid)

    # -- updates ------------------------------------------------------------------------

    def applied(self, acc_jwt: AccountJwt) -> None:
        """An account's JWT changed: limits, imports, revocations, connection cap."""
        self.sync()
        self._prune()
        acc = self.server.accounts.get(acc_jwt.pubkey)
        if acc is None:
            return
        members = sorted(
            (c for c in self.server.clients.values() if c.account is acc and not c.closing),
            key=lambda c: c.cid,
        )
        for client in members:
            entry = self.logins.get(client.cid)
            if entry is not None and acc_jwt.revoked(entry[1].user, entry[1].issued_at):
                log.info(
                    "%s:%s - cid:%s - User Authentication Revoked",
                    client.ip,
                    client.port,
                    client.cid,
                )
                self._close(client, REVOKED, "User Authentication Revoked")
        limit = acc_jwt.max_connections
        alive = [c for c in members if not c.closing]
        if limit >= 0 and len(alive) > limit:
            for client in alive[limit:]:  # the newest go, as nats-server's updateAccountClaims
                self._close(
                    client, reasons.MAX_CONNECTIONS, "maximum account active connections exceeded"
                )
        for client in alive:
            parser = getattr(client, "parser", None)
            if parser is None:
                continue
            entry = self.logins.get(client.cid)
            for limit in (acc_jwt.max_payload, entry[1].max_payload if entry else -1):
                if 0 <= limit < parser.max_payload:
                    parser.max_payload = limit
        self.server.flush()

    def reloaded(self, old_accounts: dict) -> None:
        """After a reload (a new Security, so a new Trust: operator JWTs, preloads, the
        directory read again): the JWT accounts keep their Account objects (connected
        clients hold them), then every account is applied as an update."""
        accounts = self.server.accounts
        for name, acc in old_accounts.items():
            if name not in accounts and J_is_account(name):
                accounts[name] = acc
        self.attach()
        for acc_jwt in list(self.trust.accounts.values()):
            self.applied(acc_jwt)

    def _close_clients(self, acc: Account, reason: str, text: str) -> None:
        for client in list(self.server.clients.values()):
            if client.account is acc and not client.closing:
                self._close(client, reason, text)

    def _close(self, client: Any, reason: str, text: str) -> None:
        self._forget(client.cid)
        final = encode_err(text) if client.conn_type == "nats" else client.auth_revoked_notice()
        client.close(reason, final)

    # -- $SYS services ------------------------------------------------------------------

    def claims_update(self, req: Any) -> dict:
        """``$SYS.REQ.CLAIMS.UPDATE``: the body is an account JWT (full resolver)."""
        return self._update(req.payload, None, "jwt update resulted in error")

    def account_claims_update(self, req: Any) -> dict | None:
        """``$SYS.REQ.ACCOUNT.<key>.CLAIMS.UPDATE`` (and the old form)."""
        tokens = req.tokens
        key = tokens[3] if tokens[1] == "REQ" else tokens[2]
        if not req.payload.strip():
            return self._answer(key, "jwt update error", "request body is empty")
        return self._update(req.payload, key, "jwt update error")

    def _update(self, payload: bytes, key: str | None, failure: str) -> dict:
        text = _body(payload)
        try:
            claims = J.decode(text, "account")
        except J.JwtError as err:
            return self._answer(key or "n/a", failure, str(err))
        subject = claims["sub"]
        if key is not None and subject != key:
            return self._answer(key, failure, "subject does not match jwt content")
        try:
            acc_jwt = self.trust.update(text, subject)
        except J.JwtError as err:
            return self._answer(subject, "jwt validation failed", str(err))
        except OSError as err:
            return self._answer(subject, failure, str(err))
        if acc_jwt is not None:
            log.info("Account %s updated from its JWT", subject)
            self.applied(acc_jwt)
        return self._answer(subject, "jwt updated", None)

    def _answer(self, account: str, message: str, error: str | None) -> dict:
        server = self.server
        info = {
            "name": server.server_name,
            "host": server.options.host,
            "id": server.server_id,
            "ver": getattr(server, "version", ""),
            "seq": 0,
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        if error is None:
            log.debug("%s - %s", message, account)
            return {"server": info, "data": {"account": account, "code": 200, "message": message}}
        log.error("%s - %s - %s", message, account, error)
        return {
            "server": info,
            "error": {"account": account, "code": 500, "description": f"{message} - {error}"},
        }


def _body(payload: bytes) -> str:
    try:
        return payload.decode("ascii").strip()
    except UnicodeDecodeError:
        return ""


def J_is_account(name: str) -> bool:
    """An account named by a public account key (made from a JWT), not $G."""
    from hybridbus.codec.nkey import PREFIX_ACCOUNT, decode_public_key

    return decode_public_key(name, PREFIX_ACCOUNT) is not None
