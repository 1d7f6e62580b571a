"""The ``accounts`` block: accounts with their users, limits, exports and imports.

nats-server's shapes (server/opts.go parseAccounts): either a list of names
(``accounts: [A, B]``) or a map of account name to a block with ``users``,
``default_permissions``, ``limits { max_connections, max_subscriptions, max_payload,
max_leafnodes }``, ``exports``, ``imports``, ``nkey`` (the account's public key),
``mappings`` and ``jetstream``. ``$G`` is reserved (the global account that
``authorization`` users and anonymous clients belong to).

``jetstream: enabled`` (or true, or a block of limits: ``max_mem``, ``max_file``,
``max_streams``, ``max_consumers`` with nats-server's aliases) gives the account its own
JetStream (server/account_state.py); the limits hybridbus does not enforce
(``max_ack_pending``, ``max_bytes_required``, the per-stream byte caps) stop the load
rather than be shown and ignored.
``mappings`` (here and at the top level, where they are ``$G``'s) are read by
``mappings``: each source with its weighted destinations, checked with
``router/transform.py`` so a mapping nats-server refuses stops the load with its words.

Exports and imports are checked once every account is read (``check_accounts``, which
also checks users across ``authorization`` and the accounts), with nats-server's
messages; an import of something the exporter does not export to the importer is an
error, never a silently dead import.
"""

from __future__ import annotations

from ..codec.nkey import PREFIX_ACCOUNT, decode_public_key
from ..options import AccountExport, AccountImport, AccountOptions, Options
from ..subjects import subject_is_subset
from ..transform import MappingError, Mappings
from .gotext import go_quote, go_type, parse_go_duration
from .opts_auth import permissions, user_entries
from .opts_jetstream import storage_size
from .parser import Node
from .readers import BAD, Loader

GLOBAL_ACCOUNT = "$G"
_RESPONSE_TYPES = {
    "single": "Singleton",
    "singleton": "Singleton",
    "stream": "Streamed",
    "chunk": "Chunked",
    "chunked": "Chunked",
}
_LIMITS = {
    "max_connections": "max_connections",
    "max_conn": "max_connections",
    "max_subscriptions": "max_subscriptions",
    "max_subs": "max_subscriptions",
    "max_payload": "max_payload",
    "max_pay": "max_payload",
    "max_leafnodes": "max_leafnodes",
    "max_leafs": "max_leafnodes",
}
# nats-server's parseJetStreamForAccount names (and aliases) -> AccountOptions field
_JS_LIMITS = {
    "max_memory": "js_max_memory",
    "max_mem": "js_max_memory",
    "mem": "js_max_memory",
    "memory": "js_max_memory",
    "max_store": "js_max_file",
    "max_file": "js_max_file",
    "max_disk": "js_max_file",
    "store": "js_max_file",
    "disk": "js_max_file",
    "max_streams": "js_max_streams",
    "streams": "js_max_streams",
    "max_consumers": "js_max_consumers",
    "consumers": "js_max_consumers",
    "max_ack_pending": "js_max_ack_pending",
    "mem_max_stream_bytes": "js_mem_max_stream_bytes",
    "memory_max_stream_bytes": "js_mem_max_stream_bytes",
    "disk_max_stream_bytes": "js_disk_max_stream_bytes",
    "store_max_stream_bytes": "js_disk_max_stream_bytes",
    "max_bytes_required": "js_max_bytes_required",
    "max_stream_bytes": "js_max_bytes_required",
    "max_bytes": "js_max_bytes_required",
}
_JS_SIZES = ("js_max_memory", "js_max_file")


def accounts(ld: Loader, node: Node, opts: Options) -> None:
    """Read the block into ``opts.accounts`` (imports and exports checked later)."""
    value = node.value
    if isinstance(value, list):
        seen: set[str] = set()
        for elem in value:
            name = elem.value
            if not isinstance(name, str):
                ld.err(elem, f"Expected account name to be a string, got {go_type(name)}")
            elif name == GLOBAL_ACCOUNT:
                ld.err(elem, f"{go_quote(name)} is a Reserved Account")
            elif name in seen:
                ld.err(elem, f"Duplicate Account Entry: {name}")
            else:
                seen.add(name)
                opts.accounts.append(AccountOptions(name))
        return
    if not isinstance(value, dict):
        ld.err(node, "Expected map entries for accounts")
        return
    for name, sub in value.items():
        if sub.used:
            continue  # a variable defined inside the block
        if not isinstance(sub.value, dict):
            ld.err(sub, "Expected map entries for accounts")
            continue
        if name == GLOBAL_ACCOUNT:
            ld.err(sub, f"{go_quote(name)} is a Reserved Account")
            continue
        acc = AccountOptions(name)
        _account(ld, sub, acc)
        opts.accounts.append(acc)


def _account(ld: Loader, node: Node, acc: AccountOptions) -> None:
    for key, sub in node.value.items():
        name = key.lower()
        if name == "users":
            users = user_entries(ld, sub)
            for user in users:
                user.account = acc.name
            acc.users = users
            acc.users_node = sub  # type: ignore[attr-defined]  (where errors point)
        elif name == "default_permissions":
            acc.default_permissions = permissions(ld, sub)
        elif name == "limits":
            _limits(ld, sub, acc)
        elif name == "exports":
            _exports(ld, sub, acc)
        elif name == "imports":
            _imports(ld, sub, acc)
        elif name == "nkey":
            if decode_public_key(sub.value, PREFIX_ACCOUNT) is None:
                ld.err(sub, f"Not a valid public nkey for an account: {go_quote(str(sub.value))}")
            else:
                acc.nkey = sub.value
        elif name in ("mappings", "maps"):
            acc.mappings = mappings(ld, sub)
        elif name == "jetstream":
            _jetstream(ld, sub, acc)
        else:
            ld.unknown(key, sub)
    for user in acc.users:
        if acc.default_permissions is not None and user.permissions is None:
            user.permissions = acc.default_permissions


def mappings(ld: Loader, node: Node) -> list:
    """``mappings { src: dest, src: {destination, weight}, src: [{...}, ...] }`` as
    ``[(src, [(dest, weight, cluster), ...]), ...]`` in the file's order, each checked
    as nats-server's parseAccountMappings / AddWeightedMappings check it."""
    out: list = []
    if not isinstance(node.value, dict):
        ld.err(node, f"Expected mappings to be a map, got {go_type(node.value)}")
        return out
    check = Mappings()
    for src, sub in node.value.items():
        if not _valid_subject(src):
            ld.err(node, f"Subject {go_quote(src)} is not a valid subject")
            continue
        value = sub.value
        if isinstance(value, str):
            if value == "":
                # nats-server 2.15.1 takes this and dies on the first publish to src
                ld.err(sub, f'Error adding mapping for {go_quote(src)} to "" : empty destination')
                continue
            dests = [(value, 100, "")]
        else:
            entries = value if isinstance(value, list) else [sub]
            dests = [d for e in entries if (d := _map_dest(ld, e)) is not None]
            if len(dests) < len(entries):
                continue
        try:
            check.add(src, dests)
        except MappingError as exc:
            to = f" to {go_quote(value)}" if isinstance(value, str) else ""
            ld.err(sub, f"Error adding mapping for {go_quote(src)}{to} : {exc}")
            continue
        out.append((src, dests))
    return out


def _map_dest(ld: Loader, entry: Node) -> tuple[str, int, str] | None:
    """One ``{destination, weight, cluster}`` (nats-server parseAccountMapDest)."""
    if not isinstance(entry.value, dict):
        ld.err(entry, "Expected an entry for the mapping destination")
        return None
    dest = cluster = ""
    weight = None
    for key, sub in entry.value.items():
        name, v = key.lower(), sub.value
        if name in ("dest", "destination", "cluster"):
            if not isinstance(v, str):
                ld.err(sub, f"Expected {name} to be a string, got {go_type(v)}")
                return None
            dest, cluster = (v, cluster) if name != "cluster" else (dest, v)
        elif name == "weight":
            if isinstance(v, str):
                text = v.removesuffix("%")
                n = int(text) if text.lstrip("+-").isdigit() and text.isascii() else None
                if n is None:
                    ld.err(sub, f"Invalid weight {go_quote(text)} for mapping destination")
                    return None
                v = n
            elif not isinstance(v, int) or isinstance(v, bool):
                ld.err(sub, f"Unknown entry type for weight of {v}")
                return None
            if not 0 <= v <= 100:
                ld.err(sub, f"Invalid weight {v} for mapping destination")
                return None
            weight = v
        else:
            ld.err(sub, f"Unknown field {go_quote(key)} for mapping destination")
            return None
    if weight is None:
        ld.err(entry, f"Missing weight for mapping destination {go_quote(dest)}")
        return None
    return dest, weight, cluster


def _jetstream(ld: Loader, node: Node, acc: AccountOptions) -> None:
    """nats-server's shapes: a bool, ``enabled``/``disabled``, or a map of limits
    (which enables it); its messages for anything else."""
    v = node.value
    if isinstance(v, bool):
        acc.jetstream = v
    elif isinstance(v, str):
        if v.lower() in ("enabled", "enable"):
            acc.jetstream = True
        elif v.lower() in ("disabled", "disable"):
            acc.jetstream = False
        else:
            ld.err(node, f"Expected 'enabled' or 'disabled' for string value, got '{v}'")
    elif isinstance(v, dict):
        acc.jetstream = True
        for key, sub in v.items():
            attr = _JS_LIMITS.get(key.lower())
            if attr is None:
                ld.unknown(key, sub)
                continue
            if attr == "js_max_bytes_required":
                # nats-server takes a bool only (max_stream_bytes and max_bytes are its
                # aliases for this flag, not sizes)
                if isinstance(sub.value, bool):
                    acc.js_max_bytes_required = sub.value
                else:
                    ld.err(sub, f"Expected a parseable bool for {go_quote(key)}, got {sub.value}")
                continue
            if attr in _JS_SIZES:
                size = storage_size(ld, sub, key)
            elif isinstance(sub.value, int) and not isinstance(sub.value, bool):
                size = sub.value
            else:
                ld.err(sub, f"Expected a parseable size for {go_quote(key)}, got {sub.value}")
                continue
            if size is not None:
                setattr(acc, attr, size)
    else:
        ld.err(node, f"Expected map, bool or string to define JetStream, got {go_type(v)}")


def _limits(ld: Loader, node: Node, acc: AccountOptions) -> None:
    if not isinstance(node.value, dict):
        ld.err(node, f"Expected account limits to be a map/struct, got {go_type(node.value)}")
        return
    for key, sub in node.value.items():
        attr = _LIMITS.get(key.lower())
        if attr is None:
            if not sub.used:
                ld.err(sub, f"Unknown field {go_quote(key)} parsing account limits")
            continue
        if (v := ld.int_(sub, key)) is not BAD:
            setattr(acc, attr, v)


def _exports(ld: Loader, node: Node, acc: AccountOptions) -> None:
    if not isinstance(node.value, list):
        ld.err(node, f"Exports should be an array, got {go_type(node.value)}")
        return
    for entry in node.value:
        if not isinstance(entry.value, dict):
            ld.err(
                entry,
                f"Export Items should be a map with type entry, got {go_type(entry.value)}",
            )
            continue
        export = _export(ld, entry)
        if export is not None:
            acc.exports.append(export)


def _export(ld: Loader, entry: Node) -> AccountExport | None:
    subject = None
    service = None
    names = None
    rtype = "Singleton"
    threshold = 120.0
    for key, sub in entry.value.items():
        name = key.lower()
        if name in ("stream", "service"):
            if subject is not None:
                other = "a service" if service else "a stream"
                ld.err(sub, f"Detected {name} {go_quote(str(sub.value))} but already saw {other}")
                return None
            if not isinstance(sub.value, str):
                ld.err(sub, f"Expected {name} name to be string, got {go_type(sub.value)}")
                return None
            subject, service = sub.value, name == "service"
        elif name in ("response", "response_type"):
            if not isinstance(sub.value, str) or sub.value.lower() not in _RESPONSE_TYPES:
                ld.err(sub, f"Unknown response type: {go_quote(str(sub.value))}")
                return None
            rtype = _RESPONSE_TYPES[sub.value.lower()]
        elif name in ("threshold", "response_threshold", "response_max_time", "response_time"):
            try:
                threshold = parse_go_duration(str(sub.value)) / 1e9
            except ValueError:
                ld.err(
                    sub,
                    "Expected response threshold to be a parseable time duration, "
                    f"got {go_quote(str(sub.value))}",
                )
                return None
        elif name == "accounts":
            names = ld.string_list(sub, "accounts")
            if names is None:
                return None
        elif name in ("latency", "account_token_position"):
            # service latency tracking and account token positions are not implemented:
            # neither loosens who may import, so they are warned about and ignored
            ld.unsupported(key, sub)
        else:
            ld.unknown(key, sub)
    if subject is None:
        return None
    if not service and (rtype != "Singleton" or threshold != 120.0):
        ld.err(entry, "Detected response directive on non-service")
        return None
    return AccountExport(subject, bool(service), names, rtype, threshold)


def _imports(ld: Loader, node: Node, acc: AccountOptions) -> None:
    if not isinstance(node.value, list):
        ld.err(node, f"Imports should be an array, got {go_type(node.value)}")
        return
    services: dict[str, AccountImport] = {}
    for entry in node.value:
        if not isinstance(entry.value, dict):
            ld.err(
                entry,
                f"Import Items should be a map with type entry, got {go_type(entry.value)}",
            )
            continue
        imp = _import(ld, entry)
        if imp is None:
            continue
        if imp.service:
            local = imp.to or imp.subject
            dup = services.get(local)
            if dup is not None:
                ld.err(
                    entry,
                    f"Duplicate service import subject {go_quote(local)}, previously used in "
                    f"import for account {go_quote(dup.account)}, subject {go_quote(dup.subject)}",
                )
                continue
            services[local] = imp
        acc.imports.append(imp)


def _import(ld: Loader, entry: Node) -> AccountImport | None:
    imp: AccountImport | None = None
    to = prefix = None
    share = False
    for key, sub in entry.value.items():
        name = key.lower()
        if name in ("stream", "service"):
            if imp is not None:
                other = "service" if imp.service else "stream"
                ld.err(sub, f"Detected {name} but already saw a {other}")
                return None
            if not isinstance(sub.value, dict):
                kind = name.capitalize()
                ld.err(sub, f"{kind} entry should be an account map, got {go_type(sub.value)}")
                return None
            account = subject = ""
            for k, v in sub.value.items():
                if k.lower() == "account" and isinstance(v.value, str):
                    account = v.value
                elif k.lower() == "subject" and isinstance(v.value, str):
                    subject = v.value
                elif not v.used:
                    ld.unknown(k, v)
            if not account or not subject:
                ld.err(sub, "Expect an account name and a subject")
                return None
            imp = AccountImport(account, subject, name == "service")
        elif name == "prefix":
            if (v := ld.str_(sub, key)) is BAD:
                return None
            prefix = v
        elif name == "to":
            if (v := ld.str_(sub, key)) is BAD:
                return None
            to = v
            if prefix:
                ld.err(sub, "Stream import can not have a 'prefix' and a 'to' property")
                return None
        elif name == "share":
            if (v := ld.bool_(sub, key)) is BAD:
                return None
            share = v
        else:
            ld.unknown(key, sub)
    if imp is None:
        return None
    if imp.service:
        imp.to = to or None
    else:
        if prefix and to:
            ld.err(entry, "Stream import can not have a 'prefix' and a 'to' property")
            return None
        imp.prefix, imp.to = prefix or None, to or None
    imp.share = share
    return imp


# -- after the whole file is read ----------------------------------------------------


def check_accounts(ld: Loader, opts: Options, where: str) -> None:
    """Users across ``authorization`` and the accounts, then exports and imports
    (nats-server reports these at the file's first line: ``where``)."""
    if not opts.accounts:
        return
    auth = opts.auth
    seen = {u.name for u in auth.users}
    for acc in opts.accounts:
        node = getattr(acc, "users_node", None)
        if acc.users and node is not None:
            if auth.user:
                ld.err(node, "Can not have a single user/pass and accounts")
                continue
            if auth.token:
                ld.err(node, "Can not have a token and accounts")
                continue
        for user in acc.users:
            if user.name in seen:
                kind = "nkey" if user.nkey else "user"
                ld.err(node, f"Duplicate {kind} {go_quote(user.name)} detected")
            seen.add(user.name)
    if ld.errors:
        return
    by_name = {a.name: a for a in opts.accounts}
    for acc in opts.accounts:
        for exp in acc.exports:
            kind = "service" if exp.service else "stream"
            for other in exp.accounts or ():
                if other not in by_name:
                    ld.errors.append(
                        f"{where}: {go_quote(other)} account not defined for {kind} export"
                    )
            if not _valid_subject(exp.subject):
                ld.errors.append(
                    f"{where}: Error adding {kind} export {go_quote(exp.subject)}: invalid subject"
                )
    for acc in opts.accounts:
        for imp in acc.imports:
            kind = "service" if imp.service else "stream"
            exporter = by_name.get(imp.account)
            if exporter is None:
                ld.errors.append(
                    f"{where}: {go_quote(imp.account)} account not defined for {kind} import"
                )
                continue
            if not import_allowed(exporter, acc.name, imp):
                ld.errors.append(
                    f"{where}: Error adding {kind} import {go_quote(imp.subject)}: "
                    f"{kind} import not authorized"
                )
                continue
            problem = _mapping_problem(imp)
            if problem:
                ld.errors.append(
                    f"{where}: Error adding {kind} import {go_quote(imp.subject)}: {problem}"
                )


def import_allowed(exporter: AccountOptions, importer: str, imp: AccountImport) -> bool:
    """An export of ``exporter`` of the import's kind covers the imported subject (every
    subject it matches) and is open to ``importer``."""
    for exp in exporter.exports:
        if exp.service != imp.service:
            continue
        if exp.accounts is not None and importer not in exp.accounts:
            continue
        if subject_is_subset(imp.subject, exp.subject):
            return True
    return False


def _mapping_problem(imp: AccountImport) -> str | None:
    """A ``to`` must have the wildcards of the subject it maps (positional mapping);
    a ``prefix`` must be a valid literal subject."""
    if imp.prefix is not None:
        if not _valid_subject(imp.prefix) or any(t in ("*", ">") for t in imp.prefix.split(".")):
            return "invalid prefix"
    if imp.to is not None:
        if not _valid_subject(imp.to):
            return "invalid subject mapping"
        src = [t for t in imp.subject.split(".") if t in ("*", ">")]
        dst = [t for t in imp.to.split(".") if t in ("*", ">")]
        if dst and dst != src:
            return "invalid subject mapping"
        if imp.service and not dst and src:
            return "invalid subject mapping"
    return None


def _valid_subject(subject: str) -> bool:
    if not subject:
        return False
    tokens = subject.split(".")
    for i, tok in enumerate(tokens):
        if not tok or any(c in tok for c in " \t\r\n"):
            return False
        if tok == ">" and i != len(tokens) - 1:
            return False
    return True
