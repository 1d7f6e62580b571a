"""Operator (JWT) mode options: ``operator``, ``resolver``, ``resolver_preload``,
``resolver_pinned_accounts`` (and the top-level ``system_account``, read by load.py).

nats-server's rules (server/opts.go, server/jwt.go validateTrustedOperators), with its
messages: an operator JWT is a file (nsc-decorated or plain) or the JWT inline; it is
decoded and its signature checked while the config loads. Operator mode needs a
resolver, and allows no ``accounts`` block and no configured users (``authorization``
users, user/password or token, MQTT/websocket overrides): every client logs in with a
user JWT. A full directory resolver needs the system account (from the config or the
operator JWT). The system account's name is its public key; it joins
``opts.accounts`` as an empty entry so the system account machinery finds it.

Refused (fail closed): URL resolvers and ``type: cache`` (they fetch accounts from
elsewhere), ``resolver_tls``, ``trusted``/``trusted_keys`` without an operator JWT.
"""

from __future__ import annotations

import os

from ..codec import jwt as J
from ..codec.nkey import PREFIX_ACCOUNT, decode_public_key
from ..options import AccountOptions, OperatorOptions, Options
from .gotext import go_type
from .parser import Node
from .readers import AUTH_REFUSAL, BAD, Loader

__all__ = ["t_operator", "t_resolver", "t_resolver_preload", "t_pinned", "check_operator"]


def _op(opts: Options) -> OperatorOptions:
    if opts.operator is None:
        opts.operator = OperatorOptions()
    return opts.operator


def _read_operator(ld: Loader, node: Node, text: str) -> str | None:
    try:
        with open(text, encoding="utf-8") as f:
            contents = f.read()
    except OSError as err:
        if not text.startswith("eyJ"):  # nats-server: an inline JWT starts so
            ld.err(node, f"error parsing operator JWT: {err}")
            return None
        contents = text
    token = J.parse_decorated(contents)
    try:
        claims = J.decode(token, "operator")
    except J.JwtError as err:
        ld.err(node, f"error parsing operator JWT: {err}")
        return None
    signing = claims["nats"].get("signing_keys") or []
    if claims["iss"] != claims["sub"] and claims["iss"] not in signing:
        ld.err(node, "error parsing operator JWT: not self-signed nor by its signing keys")
        return None
    return token


def t_operator(ld: Loader, opts: Options, node: Node, key: str) -> None:
    paths = ld.string_list(node, "operators")
    if paths is None:
        return
    op = _op(opts)
    for text in paths:
        token = _read_operator(ld, node, text)
        if token is not None:
            op.jwts.append(token)


def t_resolver(ld: Loader, opts: Options, node: Node, key: str) -> None:
    op = _op(opts)
    v = node.value
    if isinstance(v, str):
        if v.upper() == "MEMORY":
            op.resolver = "MEMORY"
        elif v.upper().startswith("URL("):
            ld.refused(key, node, f"URL resolvers: {AUTH_REFUSAL}")
        else:
            ld.err(node, f"resolver preload {v!r} not understood (MEMORY or a resolver block)")
        return
    if not isinstance(v, dict):
        ld.err(node, f"resolver: expected a string or a map, got {go_type(node)}")
        return
    kind = ""
    for name, sub in v.items():
        low = name.lower()
        if low == "type":
            if (kind := ld.str_(sub, name)) is BAD:
                return
            kind = kind.lower()
        elif low == "dir":
            if (d := ld.str_(sub, name)) is not BAD:
                op.resolver_dir = d
        elif low == "allow_delete":
            if (b := ld.bool_(sub, name)) is not BAD:
                op.allow_delete = b
        elif low in ("interval", "timeout"):
            if (secs := ld.duration(f"resolver {low}", sub)) is not None:
                setattr(op, low, secs)
        elif low == "limit":
            ld.int_(sub, name)  # how many JWTs the directory may hold: no bound here
        elif low in ("sync", "ttl"):
            pass  # the cache resolver's and cluster syncing's: nothing to do alone
        else:
            ld.unknown(name, sub)
    if kind == "full":
        op.resolver = "full"
    elif kind == "cache":
        ld.refused(key, node, f"type cache: {AUTH_REFUSAL}")
    else:
        ld.err(node, f"resolver type {kind!r} not supported (full or cache)")
    if kind == "full" and not op.resolver_dir:
        op.resolver_dir = "."


def t_resolver_preload(ld: Loader, opts: Options, node: Node, key: str) -> None:
    if not isinstance(node.value, dict):
        ld.err(node, f"resolver_preload: expected a map, got {go_type(node)}")
        return
    op = _op(opts)
    for name, sub in node.value.items():
        if (token := ld.str_(sub, name)) is BAD:
            continue
        op.preload[name] = token.strip()
        _preload_nodes(ld)[name] = sub


def t_pinned(ld: Loader, opts: Options, node: Node, key: str) -> None:
    keys = ld.string_list(node, "resolver_pinned_accounts")
    if keys is None:
        return
    for k in keys:
        if decode_public_key(k, PREFIX_ACCOUNT) is None:
            ld.err(node, f"pinned account key {k!r} is not a valid public account nkey")
            return
    _op(opts).pinned_accounts = keys


def _preload_nodes(ld: Loader) -> dict[str, Node]:
    """Where each preload was written (for its error line), kept on the load."""
    nodes = getattr(ld, "operator_preload_nodes", None)
    if nodes is None:
        nodes = {}
        ld.operator_preload_nodes = nodes  # type: ignore[attr-defined]
    return nodes


def check_operator(ld: Loader, opts: Options, where: str) -> None:
    """What nats-server checks once the whole config is read (module docstring)."""
    op = opts.operator
    if op is None:
        return
    here = Node(None, *_split_where(where))
    if not op.jwts:
        ld.err(here, "resolver and resolver_preload need operator mode (an operator JWT)")
        return
    if not op.resolver:
        ld.err(here, "operators require an account resolver to be configured")
    if opts.accounts:
        ld.err(here, "operators do not allow Accounts to be configured directly")
    auth = opts.auth
    overrides = [b.auth for b in (opts.mqtt, opts.websocket) if b.auth is not None]
    if (
        auth.users
        or auth.user
        or auth.token
        or any(a.user or a.token or a.users for a in overrides)
    ):
        ld.err(here, "operators do not allow users to be configured directly")
    in_jwts = [J.decode(t, "operator")["nats"].get("system_account") for t in op.jwts]
    configured = getattr(opts, "system_account", "")  # the top-level system_account
    sys_acc = configured or next((s for s in in_jwts if s), None)
    if configured and any(in_jwts) and configured not in in_jwts:
        ld.err(here, "system_account in config and operator JWT must be identical")
    if sys_acc and decode_public_key(sys_acc, PREFIX_ACCOUNT) is None:
        ld.err(here, f"system_account {sys_acc!r} is not a valid public account nkey")
        return
    if op.resolver == "full" and not sys_acc:
        ld.err(
            here,
            "using nats based account resolver - the system account needs to be specified "
            "in configuration or the operator jwt",
        )
    for key, token in op.preload.items():
        node = _preload_nodes(ld).get(key, here)
        try:
            claims = J.decode(token, "account")
        except J.JwtError as err:
            ld.err(node, f"preload account error for {key!r}: {err}")
            continue
        if claims["sub"] != key:
            ld.err(node, f"preload account error for {key!r}: subject does not match jwt content")
    if sys_acc and not ld.errors:
        op.system_account = sys_acc
        opts.system_account = sys_acc
        # the system account machinery finds it among the accounts (module docstring)
        opts.accounts.append(AccountOptions(sys_acc))
    if op.resolver == "full" and op.resolver_dir and not os.path.isabs(op.resolver_dir):
        op.resolver_dir = os.path.abspath(op.resolver_dir)


def _split_where(where: str) -> tuple[str, int, int]:
    path, _, rest = where.rpartition(":")
    path2, _, line = path.rpartition(":")
    try:
        return path2, int(line), int(rest)
    except ValueError:
        return where, 1, 0
