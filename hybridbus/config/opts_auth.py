"""The ``authorization`` block: credentials, ``users`` (names with passwords, or nkey
public keys) and their permissions.

Owns the credentials table (also the whole ``authorization`` block of ``mqtt``
and ``websocket``, see ``simple_auth``), user entries, connection types, and
publish/subscribe/response permissions with nats-server's subject rules.
"""

from __future__ import annotations

from ..codec.nkey import PREFIX_USER, decode_public_key
from ..options import AuthOptions, Permissions, User
from .gotext import go_quote, go_type, go_value, parse_go_duration
from .parser import Node
from .readers import BAD, Handler, Loader, store

# Authentication settings hybridbus does not enforce: each one stops the load
# (``Loader.refused_auth``), since ignoring it would let in clients the config keeps out.
_REFUSED_AUTH = frozenset({"auth_callout", "auth_hook", "proxy_required"})
_REFUSED_USER = frozenset({"account", "proxy_required"})

CONNECTION_TYPES = frozenset(
    {"STANDARD", "WEBSOCKET", "MQTT", "MQTT_WS", "LEAFNODE", "LEAFNODE_WS", "IN_PROCESS"}
)
# allow_responses defaults (nats-server: one response within two minutes).
_DEFAULT_RESPONSE_MAX = 1
_DEFAULT_RESPONSE_EXPIRES = 120.0


def authorization(ld: Loader, node: Node) -> AuthOptions | None:
    if (block := ld.map_(node)) is BAD:
        return None
    auth = AuthOptions()
    users: list[User] | None = None
    for key, sub in block.items():
        name = key.lower()
        if (handler := _CREDENTIALS.get(name)) is not None:
            handler(ld, auth, sub, key)
        elif name == "users":
            users = user_entries(ld, sub)
        elif name in ("default_permission", "default_permissions", "permissions"):
            auth.default_permissions = permissions(ld, sub)
        elif name in _REFUSED_AUTH:
            ld.refused_auth(key, sub)
        else:
            ld.unknown(key, sub)
    if (auth.user or auth.password) and auth.token:
        ld.err(node, "Cannot have a user/pass and token")
        return None
    if users is not None:
        if auth.user:
            ld.err(node, "Can not have a single user/pass and a users array")
            return None
        if auth.token:
            ld.err(node, "Can not have a token and a users array")
            return None
        # Names and public keys share one namespace (nats-server checks the users
        # first, then the nkeys against both).
        seen: set[str] = set()
        for user in sorted(users, key=lambda u: u.nkey is not None):
            if user.name in seen:
                kind = "nkey" if user.nkey else "user"
                ld.err(node, f"Duplicate {kind} {go_quote(user.name)} detected")
                return None
            seen.add(user.name)
        auth.users = users
    return auth


def a_timeout(ld: Loader, auth: AuthOptions, node: Node, key: str) -> None:
    secs = ld.seconds(node, "authorization config")
    if secs is None:
        return  # the error is recorded; the default stays
    if secs > 60:
        ld.warn_field(
            node,
            key,
            f"timeout of {go_value(node)} ({secs:f} seconds) is high, consider keeping it "
            "under 60 seconds. possibly caused by unquoted duration; use '1m' instead of 1m, "
            "for example",
        )
    auth.timeout = secs


def simple_auth(ld: Loader, node: Node) -> AuthOptions | None:
    """The ``authorization`` block of ``mqtt`` and ``websocket``: one user or a token."""
    if (block := ld.map_(node)) is BAD:
        return None
    auth = AuthOptions()
    ld.dispatch(block, auth, _CREDENTIALS, frozenset())
    return auth


def user_entries(ld: Loader, node: Node) -> list[User]:
    if not isinstance(node.value, list):
        ld.err(node, f"Expected users field to be an array, got {go_value(node)}")
        return []
    users = []
    for entry in node.value:
        if not isinstance(entry.value, dict):
            ld.err(entry, f"Expected user entry to be a map/struct, got {go_value(entry)}")
            continue
        user = User(user="")
        last = entry  # nats-server reports a missing user at the last field it read
        errors = len(ld.errors)
        for key, sub in entry.value.items():
            last = sub
            name = key.lower()
            if name in ("user", "username"):
                if (v := ld.str_(sub, key)) is not BAD:
                    user.user = v
            elif name == "nkey":
                if (v := ld.str_(sub, key)) is not BAD:
                    user.nkey = v or None
            elif name in ("pass", "password"):
                if (v := ld.str_(sub, key)) is not BAD:
                    user.password = v
            elif name in ("permission", "permissions", "authorization"):
                user.permissions = permissions(ld, sub)
            elif name in ("allowed_connection_types", "connection_types", "clients"):
                user.allowed_connection_types = connection_types(ld, sub)
            elif name in _REFUSED_USER:
                ld.refused_auth(key, sub)
            else:
                ld.unknown(key, sub)
        if len(ld.errors) > errors:
            continue  # one line per problem entry
        if user.nkey is not None:
            if decode_public_key(user.nkey, PREFIX_USER) is None:
                ld.err(last, "Not a valid public nkey for a user")
                continue
            if user.user or user.password:
                ld.err(last, "Nkey users do not take usernames or passwords")
                continue
        elif not user.user:
            ld.err(last, "User entry requires a user")
            continue
        users.append(user)
    return users


def connection_types(ld: Loader, node: Node) -> list[str] | None:
    names = ld.string_list(node, "allowed connection types")
    if names is None:
        return None
    upper = [n.upper() for n in names]
    unknown = [n for n in upper if n not in CONNECTION_TYPES]
    if unknown:
        ld.err(node, "invalid connection types [" + " ".join(map(go_quote, unknown)) + "]")
        return None
    return list(dict.fromkeys(upper))


# -- permissions -------------------------------------------------------------


def permissions(ld: Loader, node: Node) -> Permissions | None:
    if not isinstance(node.value, dict):
        ld.err(node, f"Expected permissions to be a map/struct, got {go_value(node)}")
        return None
    perms = Permissions()
    for key, sub in node.value.items():
        name = key.lower()
        if name in ("pub", "publish", "import"):
            allow, deny = subject_permission(ld, sub, queue_ok=False)
            perms.publish_allow, perms.publish_deny = allow, deny
        elif name in ("sub", "subscribe", "export"):
            allow, deny = subject_permission(ld, sub, queue_ok=True)
            perms.subscribe_allow, perms.subscribe_deny = allow, deny
        elif name in ("publish_allow_responses", "allow_responses"):
            if isinstance(sub.value, bool):
                if sub.value:
                    perms.allow_responses = (_DEFAULT_RESPONSE_MAX, _DEFAULT_RESPONSE_EXPIRES)
            else:
                perms.allow_responses = allow_responses(ld, sub)
        elif not sub.used:
            ld.err(sub, f"Unknown field {go_quote(key)} parsing permissions")
    if perms.allow_responses is not None and perms.publish_allow is None:
        # Response permission means "publish only to reply subjects" unless
        # publish rules say more (nats-server sets an empty allow list).
        perms.publish_allow = []
    return perms


def subject_permission(
    ld: Loader, node: Node, queue_ok: bool
) -> tuple[list[str] | None, list[str] | None]:
    v = node.value
    if not isinstance(v, dict):
        return subject_list(ld, node, queue_ok), None  # old style: plain allow list
    allow = deny = None
    for key, sub in v.items():
        name = key.lower()
        if name == "allow":
            allow = subject_list(ld, sub, queue_ok)
        elif name == "deny":
            deny = subject_list(ld, sub, queue_ok)
        elif not sub.used:
            ld.err(
                sub,
                f"Unknown field name {go_quote(key)} parsing subject permissions, "
                "only 'allow' or 'deny' are permitted",
            )
    return allow, deny


def subject_list(ld: Loader, node: Node, queue_ok: bool) -> list[str] | None:
    v = node.value
    if isinstance(v, str):
        subjects = [v]
    elif isinstance(v, list):
        subjects = []
        for elem in v:
            if not isinstance(elem.value, str):
                ld.err(elem, "Subject in permissions array cannot be cast to string")
                return None
            subjects.append(elem.value)
    else:
        ld.err(
            node,
            f"Expected subject permissions to be a subject, or array of subjects, got {go_type(v)}",
        )
        return None
    for subject in subjects:
        problem = _subject_problem(subject, queue_ok)
        if problem:
            ld.err(node, problem)
            return None
    return subjects


def allow_responses(ld: Loader, node: Node) -> tuple[int, float] | None:
    if not isinstance(node.value, dict):
        ld.err(node, "error parsing response permissions, expected a boolean or a map")
        return None
    max_msgs, expires = _DEFAULT_RESPONSE_MAX, _DEFAULT_RESPONSE_EXPIRES
    for key, sub in node.value.items():
        name = key.lower()
        if name in ("max", "max_msgs", "max_messages", "max_responses"):
            if (v := ld.int_(sub, key)) is BAD:
                return None
            if v != 0:  # 0 keeps the default; negative means unlimited
                max_msgs = v
        elif name in ("expires", "expiration", "ttl"):
            if not isinstance(sub.value, str):
                ld.err(sub, "error parsing expires, not a duration string")
                return None
            try:
                ns = parse_go_duration(sub.value)
            except ValueError as exc:
                ld.err(sub, f"error parsing expires: {exc}")
                return None
            if ns != 0:
                expires = ns / 1e9
        elif not sub.used:
            ld.err(sub, f"Unknown field {go_quote(key)} parsing permissions")
    return max_msgs, expires


def _valid_subject(subject: str) -> bool:
    """nats-server's subject rule: dot-separated non-empty tokens, no blanks,
    and a '>' token only at the end."""
    if not subject:
        return False
    tokens = subject.split(".")
    for i, tok in enumerate(tokens):
        if not tok:
            return False
        if any(c in tok for c in " \t\n\r\f"):
            return False
        if tok == ">" and i != len(tokens) - 1:
            return False
    return True


def _subject_problem(subject: str, queue_ok: bool) -> str | None:
    if _valid_subject(subject):
        return None
    if queue_ok:
        # A subscribe permission may name a queue group: "subject queue".
        parts = subject.split()
        if len(parts) == 2:
            if not _valid_subject(parts[0]):
                return f"subject {go_quote(parts[0])} is not a valid subject"
            if not _valid_subject(parts[1]) or any(t in ("*", ">") for t in parts[1].split(".")):
                return f"queue {go_quote(parts[1])} is not a valid queue"
            return None
    return f"subject {go_quote(subject)} is not a valid subject"


# The user, password, token and timeout of an ``authorization`` block.
_CREDENTIALS: dict[str, Handler] = {
    "user": store("user", Loader.str_),
    "username": store("user", Loader.str_),
    "pass": store("password", Loader.str_),
    "password": store("password", Loader.str_),
    "token": store("token", Loader.str_),
    "timeout": a_timeout,
}
