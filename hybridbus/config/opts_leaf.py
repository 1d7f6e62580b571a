"""The ``leafnodes`` block: hybridbus as a spoke of a NATS cluster (hybridbus/leaf/).

nats-server's own option names, so a nats-server leaf config runs unchanged:
``leafnodes { reconnect: "1s", remotes [ { urls: [...], account, credentials, nkey,
tls { ca_file, cert_file, key_file, insecure, handshake_first }, deny_imports,
deny_exports, no_randomize } ] }``; user and password (or a token) ride in the URL
(``nats-leaf://user:pass@host:7422``), as with nats-server.

hybridbus dials hubs but accepts no leaf connections: a ``listen``/``port`` or an
``authorization`` block (the accepting side's) is an error, never a silent no-op,
and so is a remote that claims to be the hub, or a websocket URL.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

from ..options import LeafNodeOptions, LeafRemoteOptions, Options, TLSOptions
from .gotext import go_quote, go_type
from .parser import Node
from .readers import BAD, Loader

_UNSUPPORTED_LEAF = frozenset(
    {"advertise", "no_advertise", "min_version", "compression", "isolate_leafnode_interest"}
)
_ACCEPTING = frozenset({"listen", "port", "host", "net", "tls", "authorization", "users"})
_UNSUPPORTED_REMOTE = frozenset(
    {
        "compression",
        "first_info_timeout",
        "jetstream_cluster_migrate",
        "ws_compression",
        "ws_no_masking",
        "disabled",
        "local_is_hub",
    }
)
_SCHEMES = frozenset({"nats-leaf", "nats", "tls", "leafnode", ""})


def leafnodes(ld: Loader, node: Node, opts: Options) -> None:
    if (block := ld.map_(node, "leafnodes")) is BAD:
        return
    leaf: LeafNodeOptions = opts.leafnodes
    for key, sub in block.items():
        name = key.lower()
        if name == "remotes":
            remotes(ld, sub, leaf)
        elif name in ("reconnect", "reconnect_delay", "reconnect_interval"):
            secs = ld.duration(key, sub)
            if secs is not None:
                if secs <= 0:
                    ld.err(sub, "leafnodes reconnect must be positive")
                else:
                    leaf.reconnect = secs
        elif name in _ACCEPTING:
            ld.err(
                sub,
                f"leafnodes {go_quote(key)}: hybridbus does not accept leaf node "
                "connections (it is a spoke: use remotes)",
            )
        elif name in _UNSUPPORTED_LEAF:
            ld.unsupported(key, sub)
        else:
            ld.unknown(key, sub)


def remotes(ld: Loader, node: Node, leaf: LeafNodeOptions) -> None:
    items = node.value
    if not isinstance(items, list):
        ld.err(node, f"Expected remotes field to be an array, got {go_type(node)}")
        return
    for item in items:
        if (block := ld.map_(item, "remotes")) is BAD:
            continue
        remote = LeafRemoteOptions()
        if _remote(ld, block, remote):
            if not remote.urls:
                ld.err(item, "a leafnode remote needs url or urls")
                continue
            leaf.remotes.append(remote)


def _remote(ld: Loader, block: dict, remote: LeafRemoteOptions) -> bool:
    ok = True
    for key, sub in block.items():
        name = key.lower()
        if name in ("url", "urls"):
            urls = ld.string_list(sub, "url")
            if urls is None:
                return False
            for url in urls:
                problem = _check_url(url)
                if problem:
                    ld.err(sub, problem)
                    ok = False
            remote.urls.extend(urls)
        elif name in ("account", "local"):
            if (v := ld.str_(sub, key)) is not BAD:
                remote.account = v
        elif name in ("credentials", "creds"):
            if (v := ld.str_(sub, key)) is BAD:
                return False
            if not os.path.isfile(v):
                ld.err(sub, f"leafnode remote credentials file {v!r} not found")
                return False
            remote.credentials = v
        elif name in ("nkey", "seed"):
            if (v := ld.str_(sub, key)) is BAD:
                return False
            if not v.startswith("SU"):
                ld.err(sub, "leafnode remote nkey must be a user seed (SU...)")
                return False
            remote.nkey = v
        elif name == "tls":
            remote.tls = remote_tls(ld, sub)
            ok = ok and remote.tls is not None
        elif name in ("deny_imports", "deny_import", "deny_exports", "deny_export"):
            subjects = ld.string_list(sub, key)
            if subjects is None:
                return False
            target = remote.deny_imports if "import" in name else remote.deny_exports
            target.extend(subjects)
        elif name in ("no_randomize", "dont_randomize"):
            if (v := ld.bool_(sub, key)) is not BAD:
                remote.no_randomize = v
        elif name == "hub":
            if sub.value is True:
                ld.err(sub, "leafnode remote 'hub: true': hybridbus is always the spoke")
                return False
        elif name in _UNSUPPORTED_REMOTE:
            ld.unsupported(key, sub)
        else:
            ld.unknown(key, sub)
    return ok


def _check_url(url: str) -> str | None:
    try:
        parts = urlsplit(url if "://" in url else f"nats-leaf://{url}")
        port = parts.port
    except ValueError as exc:
        return f"invalid leafnode remote url {url!r}: {exc}"
    if parts.scheme in ("ws", "wss"):
        return f"leafnode remote url {url!r}: websocket leaf links are not supported"
    if parts.scheme not in _SCHEMES:
        return f"leafnode remote url {url!r}: unknown scheme {parts.scheme!r}"
    if not parts.hostname:
        return f"leafnode remote url {url!r} has no host"
    if port is None and parts.scheme != "":
        return None  # the default leaf port, 7422
    return None


def remote_tls(ld: Loader, node: Node) -> TLSOptions | None:
    """The client side of TLS: a CA to verify the hub (the system's without one), and
    a client certificate when the hub asks for it."""
    if (block := ld.map_(node, "tls")) is BAD:
        return None
    tls = TLSOptions()
    for key, sub in block.items():
        name = key.lower()
        v = sub.value
        if name in ("cert_file", "key_file", "ca_file"):
            if not isinstance(v, str) or not os.path.isfile(v):
                ld.err(sub, f"leafnode remote tls {name}: {v!r} is not a file")
                return None
            setattr(tls, name, v)
        elif name in ("insecure", "verify", "handshake_first", "first"):
            if not isinstance(v, bool):
                ld.err(sub, f"leafnode remote tls {name} must be a boolean")
                return None
            setattr(tls, "handshake_first" if name == "first" else name, v)
        elif name == "timeout":
            secs = ld.seconds(sub, "tls config")
            if secs is None:
                return None
            tls.timeout = secs
        else:
            ld.err(sub, f"error parsing leafnode remote tls config, unknown field {go_quote(key)}")
            return None
    if bool(tls.cert_file) != bool(tls.key_file):
        ld.err(node, "leafnode remote tls: cert_file and key_file go together")
        return None
    return tls


def check_leafnodes(ld: Loader, opts: Options, where: str) -> None:
    """What only the whole config can tell: a remote binds an account that exists, and
    ``mqtt { js_domain }`` can reach that domain (over a remote, or locally)."""
    names = {"$G"} | {a.name for a in opts.accounts}
    if opts.system_account:
        names.add(opts.system_account)
    if opts.operator is None:
        for remote in opts.leafnodes.remotes:
            if remote.account not in names:
                ld.errors.append(
                    f"{where}: cannot find local account {remote.account!r} specified in "
                    "leafnode remote"
                )
    domain = opts.mqtt.js_domain
    if domain:
        local = opts.jetstream.enabled and opts.jetstream.domain == domain
        if not local and not opts.leafnodes.remotes:
            ld.errors.append(
                f"{where}: mqtt js_domain {domain!r}: no leafnode remote to reach it and "
                "the local JetStream has another domain"
            )
        if local and opts.leafnodes.remotes:
            ld.errors.append(
                f"{where}: mqtt js_domain {domain!r} is the local JetStream's domain too: "
                "give the local JetStream another domain (or none)"
            )
