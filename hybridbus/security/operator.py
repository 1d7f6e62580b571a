"""Operator (JWT) mode: who is trusted, which accounts exist, and user JWT logins.

Theory of operation (nats-server's server/jwt.go, accounts.go, auth.go)
----------------------------------------------------------------------
* **Trust.** The config names one or more operator JWTs (``operator``). Each is
  self-signed, or signed by one of its own signing keys. The trusted keys are every
  operator's subject (unless ``strict_signing_key_usage``) plus its ``signing_keys``:
  an account JWT counts only when one of them issued it.
* **Accounts.** The resolver holds account JWTs by account public key:
  ``MEMORY`` with ``resolver_preload``, or the full directory resolver (one
  ``<pubkey>.jwt`` file per account in ``dir``). ``Trust`` reads them all at start
  (both are complete, local sets) and keeps each one it can use as an ``AccountJwt``;
  the server makes one ``Account`` per entry, named by its public key
  (``core/operator.py``). An update (``$SYS.REQ.CLAIMS.UPDATE``, a reload) goes
  through ``Trust.update``: a JWT older than the one held is ignored, as nats-server's
  directory store does.
* **User logins** (``Trust.login``): CONNECT's ``jwt`` is a user JWT issued by an
  account (or by one of its signing keys, naming the account in ``issuer_account``).
  Checked in nats-server's order: the JWT itself (format, signature, ``exp``/``nbf``),
  connection types, pinned accounts, the account (known, trusted issuer, not expired,
  the user's issuer one of its keys), bearer tokens (no signature needed unless the
  account says ``disallow_bearer``) or else ``sig``, the user's ed25519 signature of
  this connection's nonce, the account's revocations, ``src`` CIDRs, ``times``.
  The user's permissions are the JWT's, else the account's ``default_permissions``.
  The login ends at the JWT's ``exp`` or at the end of its time window.

Fail closed: what is not implemented is refused, never ignored. An account JWT
with an auth callout (``authorization``), a ``data`` limit, or a ``nats`` field or
limit not listed in ``_ACCOUNT_FIELDS``/``_ACCOUNT_LIMITS``, a JetStream tier other
than R1, or a mapping
``hybridbus.transform`` refuses cannot be used: its users are refused. A user signed by a scoped signing key (``kind: user_scope``), or whose
JWT sets a ``subs`` or ``data`` limit, or a field not in ``_USER_FIELDS``, is
refused. Imports that need an activation token, and so exports that require one
(``token_req``), are not wired (no path rather than an open one).
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any

from hybridbus.codec import jwt as J
from hybridbus.codec.nkey import PREFIX_ACCOUNT, decode_public_key
from hybridbus.options import AccountExport, AccountImport, OperatorOptions, Permissions
from hybridbus.security import nkey as N
from hybridbus.security import permissions as P
from hybridbus.transform import MappingError, Mappings

log = logging.getLogger("hybridbus.security")

NO_LIMIT = -1
ALL_USERS = "*"  # jwt.All: a revocation of every user issued up to then
# nats-server's DEFAULT_ALLOW_RESPONSE_MAX_MSGS / _EXPIRATION
_RESP_MAX = 1
_RESP_EXPIRES = 120.0
# connection types a user JWT may name and hybridbus serves (others are dropped; a
# list left empty refuses, nats-server's convertAllowedConnectionTypes)
_KNOWN_TYPES = frozenset({"STANDARD", "WEBSOCKET", "MQTT", "MQTT_WS"})
_OTHER_TYPES = frozenset({"LEAFNODE", "LEAFNODE_WS", "IN_PROCESS"})
_USER_FIELDS = frozenset(
    {
        "type",
        "version",
        "pub",
        "sub",
        "resp",
        "src",
        "times",
        "times_location",
        "subs",
        "data",
        "payload",
        "bearer_token",
        "allowed_connection_types",
        "issuer_account",
        "tags",
    }
)
_ACCOUNT_FIELDS = frozenset(
    {
        "type",
        "version",
        "imports",
        "exports",
        "limits",
        "signing_keys",
        "revocations",
        "default_permissions",
        "mappings",
        "description",
        "info_url",
        "tags",
        "cluster_traffic",
        "trace",
        "authorization",
    }
)
# limits of an account JWT (jwt v2 OperatorLimits): the connection limits and
# JetStream's mem_storage, disk_storage, streams and consumer are enforced (the
# account's own JetStream, server/account_state.py, all enforced)
_ACCOUNT_LIMITS = frozenset(
    {
        "subs",
        "conn",
        "payload",
        "leaf",
        "imports",
        "exports",
        "wildcards",
        "disallow_bearer",
        "data",
        "mem_storage",
        "disk_storage",
        "streams",
        "consumer",
        "max_ack_pending",
        "mem_max_stream_bytes",
        "disk_max_stream_bytes",
        "max_bytes_required",
        "tiered_limits",
    }
)
# the only tier a single server has (nats-server's selectLimits: "R<replicas>")
_R1 = "R1"


class LoginRefused(Exception):
    """A user JWT login refused; ``str()`` is the reason (nats-server's debug text).
    A valid JWT that may not log in (here, now, from there, ...)."""

    credentials = False


class BadCredentials(LoginRefused):
    """Refused for what the token is: not a JWT, badly signed, or issued by a key
    nobody trusts (MQTT 5: 0x86 Bad User Name or Password, not 0x87)."""

    credentials = True


@dataclass
class AccountJwt:
    """One account JWT the server can use."""

    pubkey: str
    jwt: str
    name: str
    issuer: str
    issued_at: int
    expires: int
    max_connections: int = NO_LIMIT
    max_subscriptions: int = NO_LIMIT
    max_payload: int = NO_LIMIT
    disallow_bearer: bool = False
    signing_keys: set[str] = field(default_factory=set)
    scoped_keys: set[str] = field(default_factory=set)
    revocations: dict[str, int] = field(default_factory=dict)
    default_permissions: Permissions | None = None
    exports: list[AccountExport] = field(default_factory=list)
    imports: list[AccountImport] = field(default_factory=list)
    # JetStream (nats-server's IsJSEnabled: mem_storage or disk_storage not 0) and its
    # limits, -1 none; mappings as the config's: [(src, [(dest, weight, cluster)])]
    jetstream: bool = False
    js_max_memory: int = NO_LIMIT
    js_max_file: int = NO_LIMIT
    js_max_streams: int = NO_LIMIT
    js_max_consumers: int = NO_LIMIT
    js_max_ack_pending: int = NO_LIMIT
    js_max_bytes_required: bool = False
    js_mem_max_stream_bytes: int = NO_LIMIT
    js_disk_max_stream_bytes: int = NO_LIMIT
    mappings: list = field(default_factory=list)

    def revoked(self, user: str, issued_at: int) -> bool:
        """nats-server's isRevoked: a revocation at t covers JWTs issued at or before t."""
        for key in (user, ALL_USERS):
            t = self.revocations.get(key)
            if t is not None and issued_at <= t:
                return True
        return False


@dataclass
class UserLogin:
    """What a verified user JWT grants."""

    user: str  # the user's public key
    account: str  # the account's public key
    issued_at: int
    perms: Permissions | None
    allowed_types: frozenset[str] | None
    max_payload: int
    ends: float | None  # Unix time the login ends (exp, end of its time window)


# -- reading JWT claims ------------------------------------------------------------------


def _int(value: Any, default: int = NO_LIMIT) -> int:
    if value is None:
        return default
    if not isinstance(value, int) or isinstance(value, bool):
        raise J.JwtError(f"limit {value!r} is not an integer")
    return value


def _str_list(value: Any, what: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise J.JwtError(f"{what} is not a list of strings")
    return value


def jwt_permissions(section: Any) -> Permissions | None:
    """nats-server's buildPermissionsFromJwt: pub/sub allow/deny and resp."""
    if not section:
        return None
    if not isinstance(section, dict):
        raise J.JwtError("permissions are not an object")
    perms = Permissions()
    found = False
    for key, attr in (("pub", "publish"), ("sub", "subscribe")):
        rules = section.get(key) or {}
        if not isinstance(rules, dict):
            raise J.JwtError(f"{key} permissions are not an object")
        allow = _str_list(rules.get("allow"), f"{key}.allow") or None
        deny = _str_list(rules.get("deny"), f"{key}.deny") or None
        if allow or deny:
            found = True
            setattr(perms, f"{attr}_allow", allow)
            setattr(perms, f"{attr}_deny", deny)
    resp = section.get("resp")
    if resp is not None:
        if not isinstance(resp, dict):
            raise J.JwtError("resp is not an object")
        max_msgs = _int(resp.get("max"), 0) or _RESP_MAX
        ttl_ns = _int(resp.get("ttl"), 0)
        perms.allow_responses = (max_msgs, ttl_ns / 1e9 if ttl_ns else _RESP_EXPIRES)
        if perms.publish_allow is None:
            perms.publish_allow = []  # responses only, unless pub rules allow more
        found = True
    return perms if found else None


def _signing_keys(entries: Any) -> tuple[set[str], set[str]]:
    plain: set[str] = set()
    scoped: set[str] = set()
    if entries is None:
        return plain, scoped
    if not isinstance(entries, list):
        raise J.JwtError("signing_keys is not a list")
    for entry in entries:
        if isinstance(entry, str):
            key, target = entry, plain
        elif isinstance(entry, dict) and entry.get("kind") == "user_scope":
            key, target = entry.get("key"), scoped
        else:
            raise J.JwtError(f"signing key {entry!r} is of an unknown kind")
        if decode_public_key(key, PREFIX_ACCOUNT) is None:
            raise J.JwtError(f"signing key {key!r} is not an account key")
        target.add(key)
    return plain, scoped


def _exports(entries: Any, wildcards: bool) -> list[AccountExport]:
    out = []
    for exp in entries or []:
        if not isinstance(exp, dict) or not isinstance(exp.get("subject"), str):
            raise J.JwtError("an export has no subject")
        subject = exp["subject"]
        if not wildcards and any(t in ("*", ">") for t in subject.split(".")):
            raise J.JwtError(f"export {subject!r}: wildcards are not allowed by the limits")
        service = exp.get("type") == "service"
        # token_req: only importers with an activation token, which hybridbus does not
        # read: exported to nobody (accounts=[]), never to everyone
        accounts = [] if exp.get("token_req") else None
        rtype = {"Stream": "Streamed", "Chunked": "Chunked"}.get(exp.get("response_type"))
        threshold = _int(exp.get("response_threshold"), 0)
        out.append(
            AccountExport(
                subject,
                service,
                accounts,
                rtype or "Singleton",
                threshold / 1e9 if threshold > 0 else 120.0,
            )
        )
    return out


def _imports(entries: Any, pubkey: str) -> list[AccountImport]:
    out = []
    for imp in entries or []:
        if not isinstance(imp, dict) or not isinstance(imp.get("subject"), str):
            raise J.JwtError("an import has no subject")
        account = imp.get("account")
        if decode_public_key(account, PREFIX_ACCOUNT) is None:
            raise J.JwtError(f"import {imp['subject']!r} names no valid account")
        if imp.get("token"):
            log.warning(
                "Account %s: import %r needs an activation token, which hybridbus does not "
                "support; not wired",
                pubkey,
                imp["subject"],
            )
            continue
        service = imp.get("type") == "service"
        local = imp.get("local_subject") or None
        to = imp.get("to") or None  # deprecated: the prefix of a stream import
        if service:
            out.append(AccountImport(account, imp["subject"], True, to=local or to))
        elif local:
            out.append(AccountImport(account, imp["subject"], False, to=local))
        else:
            out.append(AccountImport(account, imp["subject"], False, prefix=to))
    return out


def parse_account(claims: dict, token: str) -> AccountJwt:
    """An AccountJwt from verified account claims; JwtError for what is unsupported."""
    nats = claims["nats"]
    unknown = set(nats) - _ACCOUNT_FIELDS
    if unknown:
        raise J.JwtError(f"unsupported account fields {sorted(unknown)}")
    if nats.get("authorization"):
        raise J.JwtError("auth callout (authorization) is not supported")
    limits = nats.get("limits") or {}
    if not isinstance(limits, dict) or set(limits) - _ACCOUNT_LIMITS:
        raise J.JwtError(f"unsupported account limits {sorted(set(limits) - _ACCOUNT_LIMITS)}")
    if _int(limits.get("data")) != NO_LIMIT:
        raise J.JwtError("a data limit is not supported")
    plain, scoped = _signing_keys(nats.get("signing_keys"))
    revocations = nats.get("revocations") or {}
    if not isinstance(revocations, dict) or not all(
        isinstance(v, int) for v in revocations.values()
    ):
        raise J.JwtError("revocations are not a map of key to time")
    exports = _exports(nats.get("exports"), limits.get("wildcards", True) is not False)
    imports = _imports(nats.get("imports"), claims["sub"])
    for what, entries in (("imports", imports), ("exports", exports)):
        cap = _int(limits.get(what))
        if 0 <= cap < len(entries):
            raise J.JwtError(f"more {what} than the limits allow")
    js = _jetstream_limits(limits)
    return AccountJwt(
        pubkey=claims["sub"],
        jwt=token,
        name=str(claims.get("name") or ""),
        issuer=claims["iss"],
        issued_at=claims.get("iat") or 0,
        expires=claims.get("exp") or 0,
        max_connections=_int(limits.get("conn")),
        max_subscriptions=_int(limits.get("subs")),
        max_payload=_int(limits.get("payload")),
        disallow_bearer=bool(limits.get("disallow_bearer")),
        signing_keys=plain,
        scoped_keys=scoped,
        revocations=dict(revocations),
        default_permissions=jwt_permissions(nats.get("default_permissions")),
        exports=exports,
        imports=imports,
        jetstream=js is not None,
        js_max_memory=js[0] if js else NO_LIMIT,
        js_max_file=js[1] if js else NO_LIMIT,
        js_max_streams=js[2] if js else NO_LIMIT,
        js_max_consumers=js[3] if js else NO_LIMIT,
        js_max_ack_pending=js[4] if js else NO_LIMIT,
        js_max_bytes_required=bool(js and js[5]),
        js_mem_max_stream_bytes=js[6] if js else NO_LIMIT,
        js_disk_max_stream_bytes=js[7] if js else NO_LIMIT,
        mappings=_mappings(nats.get("mappings")),
    )


def _jetstream_limits(limits: dict) -> tuple | None:
    """(memory, file, streams, consumers, max_ack_pending, max_bytes_required,
    mem_max_stream_bytes, disk_max_stream_bytes) of an account JWT's JetStream, -1
    (False) for none, or None when it has no JetStream. nats-server (accounts.go updateAccountClaims,
    jwt v2 IsJSEnabled): enabled when mem_storage or disk_storage is not 0, -1 being
    unlimited; 0 streams or consumers is no limit (its checks are 'MaxStreams > 0').
    A tiered limit is read only for R1, the one tier of a single server."""
    tiers = limits.get("tiered_limits") or {}
    if not isinstance(tiers, dict):
        raise J.JwtError("tiered_limits is not a map")
    if tiers:
        if set(tiers) != {_R1} or any(limits.get(k) for k in ("mem_storage", "disk_storage")):
            raise J.JwtError(f"tiered JetStream limits other than {_R1} are not supported")
        limits = tiers[_R1]
        if not isinstance(limits, dict):
            raise J.JwtError(f"tiered limit {_R1} is not an object")
    mem, disk = _int(limits.get("mem_storage"), 0), _int(limits.get("disk_storage"), 0)
    if mem == 0 and disk == 0:
        return None
    streams, consumers = _int(limits.get("streams"), 0), _int(limits.get("consumer"), 0)
    return (
        mem if mem > 0 else (0 if mem == 0 else NO_LIMIT),
        disk if disk > 0 else (0 if disk == 0 else NO_LIMIT),
        streams if streams > 0 else NO_LIMIT,
        consumers if consumers > 0 else NO_LIMIT,
        _positive(limits, "max_ack_pending"),
        limits.get("max_bytes_required") is True,
        _positive(limits, "mem_max_stream_bytes"),
        _positive(limits, "disk_max_stream_bytes"),
    )


def _positive(limits: dict, key: str) -> int:
    """A cap that limits only when positive (nats-server's '> 0' checks), else -1."""
    v = _int(limits.get(key), 0)
    return v if v > 0 else NO_LIMIT


def _mappings(section: Any) -> list:
    """An account JWT's ``mappings`` (jwt v2 Mapping: subject -> [{subject, weight,
    cluster}], a weight of 0 meaning 100) in the config's shape, each checked as the
    config's are (hybridbus.transform). nats-server logs a bad one and goes on without
    it; here the JWT is not used (a claim that cannot be honoured is refused)."""
    if not section:
        return []
    if not isinstance(section, dict):
        raise J.JwtError("mappings are not a map")
    check = Mappings()
    out = []
    for src, entries in section.items():
        if not isinstance(entries, list) or not entries:
            raise J.JwtError(f"mapping {src!r} has no destinations")
        dests = []
        for entry in entries:
            if not isinstance(entry, dict) or not isinstance(entry.get("subject"), str):
                raise J.JwtError(f"mapping {src!r}: a destination has no subject")
            weight = _int(entry.get("weight"), 0) or 100
            cluster = entry.get("cluster") or ""
            if not 0 < weight <= 100 or not isinstance(cluster, str):
                raise J.JwtError(f"mapping {src!r}: bad weight or cluster")
            dests.append((entry["subject"], weight, cluster))
        try:
            check.add(src, dests)
        except MappingError as err:
            raise J.JwtError(f"mapping {src!r}: {err}") from None
        out.append((src, dests))
    return out


# -- resolvers -------------------------------------------------------------------------


class MemoryResolver:
    """``resolver: MEMORY``: the ``resolver_preload`` JWTs, updates kept in memory."""

    def __init__(self, preload: dict[str, str]) -> None:
        self.jwts = dict(preload)

    def all(self) -> dict[str, str]:
        return dict(self.jwts)

    def store(self, pubkey: str, token: str) -> None:
        self.jwts[pubkey] = token

    def delete(self, pubkey: str) -> None:
        self.jwts.pop(pubkey, None)


class DirResolver:
    """``resolver { type: full, dir }``: one ``<pubkey>.jwt`` file per account (the
    layout of nats-server's DirJWTStore without sharding); preloads are written there."""

    def __init__(self, directory: str, preload: dict[str, str]) -> None:
        self.dir = directory
        os.makedirs(directory, exist_ok=True)
        for pubkey, token in preload.items():
            if pubkey not in self.all():
                self.store(pubkey, token)

    def all(self) -> dict[str, str]:
        out = {}
        for entry in sorted(os.listdir(self.dir)):
            key, ext = os.path.splitext(entry)
            if ext != ".jwt" or decode_public_key(key, PREFIX_ACCOUNT) is None:
                continue
            try:
                with open(os.path.join(self.dir, entry), encoding="ascii") as f:
                    out[key] = f.read().strip()
            except (OSError, UnicodeDecodeError) as err:
                log.error("Account JWT %s could not be read: %s", entry, err)
        return out

    def store(self, pubkey: str, token: str) -> None:
        path = os.path.join(self.dir, pubkey + ".jwt")
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="ascii") as f:
            f.write(token)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    def delete(self, pubkey: str) -> None:
        try:
            os.remove(os.path.join(self.dir, pubkey + ".jwt"))
        except FileNotFoundError:
            pass


# -- trust -----------------------------------------------------------------------------


class Trust:
    """The operators, the resolver and the usable accounts (module docstring)."""

    def __init__(self, opts: OperatorOptions) -> None:
        self.options = opts
        self.operators = [J.decode(token, "operator") for token in opts.jwts]
        self.keys: set[str] = set()
        self.strict = False
        for op in self.operators:
            nats = op["nats"]
            if nats.get("strict_signing_key_usage"):
                self.strict = True
            else:
                self.keys.add(op["sub"])
            self.keys.update(_str_list(nats.get("signing_keys"), "signing_keys"))
        self.system_account = opts.system_account or next(
            (
                op["nats"].get("system_account")
                for op in self.operators
                if op["nats"].get("system_account")
            ),
            None,
        )
        self.pinned = set(opts.pinned_accounts) if opts.pinned_accounts else None
        if self.pinned is not None and self.system_account:
            self.pinned.add(self.system_account)
        if opts.resolver == "full":
            self.resolver: Any = DirResolver(opts.resolver_dir or ".", opts.preload)
        else:
            self.resolver = MemoryResolver(opts.preload)
        self.accounts: dict[str, AccountJwt] = {}
        for pubkey, token in self.resolver.all().items():
            try:
                self.accounts[pubkey] = self.account_jwt(token, pubkey)
            except J.JwtError as err:
                log.error("Account JWT %s not used: %s", pubkey, err)

    def account_jwt(self, token: str, pubkey: str | None = None) -> AccountJwt:
        """A usable account from its JWT text, or JwtError with the reason."""
        claims = J.decode(token, "account")
        if pubkey is not None and claims["sub"] != pubkey:
            raise J.JwtError("subject does not match jwt content")
        if claims["iss"] not in self.keys:
            raise J.JwtError("not trusted")
        if self.strict and any(claims["iss"] == op["sub"] for op in self.operators):
            raise J.JwtError("operator requires issuer to be a signing key")
        return parse_account(claims, token)

    def update(self, token: str, pubkey: str | None = None) -> AccountJwt | None:
        """Store and use an updated account JWT; None when it is older than the one
        held (ignored, as nats-server's DirJWTStore saveIfNewer). JwtError: refused."""
        acc = self.account_jwt(token, pubkey)
        held = self.accounts.get(acc.pubkey)
        if held is not None and (held.jwt == token or held.issued_at > acc.issued_at):
            return None
        self.resolver.store(acc.pubkey, token)
        self.accounts[acc.pubkey] = acc
        return acc

    # -- user logins ---------------------------------------------------------------------

    def login(self, token: Any, sig: Any, nonce: str | None, kind: str, ip: str) -> UserLogin:
        """A user JWT login (module docstring); LoginRefused says why not."""
        now = time.time()
        try:
            claims = J.decode(token, "user")
        except J.JwtError as err:
            raise BadCredentials(f"User JWT not valid: {err}") from None
        problem = J.time_problem(claims, now)
        if problem:
            raise LoginRefused(f"User JWT no longer valid: {problem}")
        nats = claims["nats"]
        try:
            user = _user_fields(nats)
        except J.JwtError as err:
            raise LoginRefused(f"User JWT not valid: {err}") from None
        types = user["types"]
        if types is not None and kind not in types:
            raise LoginRefused("Connection type not allowed")
        issuer = claims["iss"]
        account_key = nats.get("issuer_account") or issuer
        acc = self._user_account(account_key, issuer, now)
        if nats.get("bearer_token"):
            if acc.disallow_bearer:
                raise LoginRefused("Account does not allow bearer tokens")
        else:
            _check_nonce_signature(claims["sub"], sig, nonce)
        if acc.revoked(claims["sub"], claims.get("iat") or 0):
            raise LoginRefused("User authentication revoked")
        if not _src_ok(user["src"], ip):
            raise LoginRefused(f"Bad src Ip {ip}")
        window_end = _time_window_end(user["times"], user["zone"], now)
        if window_end is None:
            raise LoginRefused("Outside connect times")
        ends = [t for t in (claims.get("exp"), window_end) if t and t is not True]
        perms = user["perms"] if user["perms"] is not None else acc.default_permissions
        return UserLogin(
            user=claims["sub"],
            account=acc.pubkey,
            issued_at=claims.get("iat") or 0,
            perms=perms,
            allowed_types=types,
            max_payload=user["payload"],
            ends=min(ends) if ends else None,
        )

    def _user_account(self, account_key: str, issuer: str, now: float) -> AccountJwt:
        if self.pinned is not None and account_key not in self.pinned:
            raise LoginRefused(f"Account {account_key} not listed as operator pinned account")
        acc = self.accounts.get(account_key)
        if acc is None:
            # the chain ends at an account nobody here vouches for: an untrusted issuer
            raise BadCredentials(f"Account JWT lookup error: no account {account_key}")
        if acc.expires and acc.expires < int(now):
            raise LoginRefused("Account JWT has expired")
        if issuer in acc.scoped_keys:
            raise LoginRefused("User JWT signed by a scoped signing key: not supported")
        if issuer != acc.pubkey and issuer not in acc.signing_keys:
            raise BadCredentials("User JWT issuer is not known")
        return acc


def _user_fields(nats: dict) -> dict:
    unknown = set(nats) - _USER_FIELDS
    if unknown:
        raise J.JwtError(f"unsupported user fields {sorted(unknown)}")
    for limit in ("subs", "data"):
        if _int(nats.get(limit)) != NO_LIMIT:
            raise J.JwtError(f"a user {limit} limit is not supported")
    types = None
    named = _str_list(nats.get("allowed_connection_types"), "allowed_connection_types")
    if named:
        upper = {t.upper() for t in named}
        types = frozenset(upper & _KNOWN_TYPES)
        if not types:
            # only types hybridbus has no listener for (or unknown ones): nobody
            raise J.JwtError(f"no allowed connection type is served: {sorted(upper)}")
    src = nats.get("src") or []
    if isinstance(src, str):
        src = [s for s in src.split(",") if s.strip()]
    nets = []
    for cidr in _str_list(src, "src"):
        try:
            nets.append(ipaddress.ip_network(cidr.strip(), strict=False))
        except ValueError:
            raise J.JwtError(f"src {cidr!r} is not a CIDR") from None
    times = nats.get("times") or []
    if not isinstance(times, list):
        raise J.JwtError("times is not a list")
    ranges = []
    for entry in times:
        if not isinstance(entry, dict):
            raise J.JwtError("a time range is not an object")
        ranges.append((_clock(entry.get("start")), _clock(entry.get("end"))))
    zone = None
    if nats.get("times_location"):
        try:
            from zoneinfo import ZoneInfo

            zone = ZoneInfo(str(nats["times_location"]))
        except (ValueError, KeyError, OSError):
            raise J.JwtError(f"unknown times_location {nats['times_location']!r}") from None
    return {
        "types": types,
        "src": nets,
        "times": ranges,
        "zone": zone,
        "perms": jwt_permissions(nats),
        "payload": _int(nats.get("payload")),
    }


def _clock(text: Any) -> int:
    """Seconds after midnight of a "15:04:05" time of day."""
    try:
        h, m, s = (int(p) for p in str(text).split(":"))
    except ValueError:
        raise J.JwtError(f"time {text!r} is not HH:MM:SS") from None
    if not (0 <= h < 24 and 0 <= m < 60 and 0 <= s < 60):
        raise J.JwtError(f"time {text!r} is not HH:MM:SS")
    return h * 3600 + m * 60 + s


def _time_window_end(ranges: list, zone: Any, now: float) -> float | bool | None:
    """True without time ranges; else the Unix time the current range ends, or None
    outside every range. Local time of ``times_location`` (the server's without).
    A range whose end is before its start runs past midnight (nats-server's rule);
    unlike nats-server, the part after midnight counts too (01:00 is inside 22:00-02:00)."""
    if not ranges:
        return True
    local = (
        datetime.datetime.fromtimestamp(now, zone)
        if zone
        else datetime.datetime.fromtimestamp(now).astimezone()
    )
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    into_day = (local - midnight).total_seconds()
    best = None
    for start, end in ranges:
        if start <= end:
            spans = [(start, end)]
        else:
            spans = [(start, end + 86400), (start - 86400, end)]
        for lo, hi in spans:
            if lo < into_day < hi:
                left = now + (hi - into_day)
                best = left if best is None else max(best, left)
    return best


def _src_ok(nets: list, ip: str) -> bool:
    if not nets:
        return True
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(addr in net for net in nets if net.version == addr.version)


def _check_nonce_signature(user: str, sig: Any, nonce: str | None) -> None:
    if not nonce:
        raise LoginRefused("no nonce to sign")
    if not sig:
        raise BadCredentials("Signature missing")
    raw = N.decode_signature(sig)
    if raw is None:
        raise BadCredentials("Signature not valid base64")
    if not N.signature_ok(N.verify_key(user), nonce, raw):
        raise BadCredentials("Signature not verified")


def compile_login(login: UserLogin) -> P.UserPermissions | None:
    return P.compile_permissions(login.perms)
