"""From a parsed NATS config file to hybridbus ``Options``.

Theory of operation
-------------------
``parser.parse_file_nodes`` gives a map of ``Node`` values that remember where
they were written.  ``load_options`` walks that map block by block.  Option
names are matched case-insensitively, with nats-server's aliases, and each
option is checked the way nats-server checks it, with the same message text,
so a nats-server config that uses only options hybridbus supports loads
unchanged and a broken one fails with the message its author already knows.

Problems are collected, not raised one at a time: every error and warning
becomes one line ``file:line:col: reason``, and ``ConfigError`` carries them
all.  Three kinds of keys are told apart:

* supported options fill ``Options``;
* options nats-server knows but hybridbus does not implement (clustering,
  accounts, ...) are listed explicitly below; they earn a warning
  ``field "x" is not supported by hybridbus and is ignored`` and are skipped.
  A few whose silent absence would weaken security (encryption at rest,
  certificate pinning, OCSP) are errors instead;
* anything else is ``unknown field "x"``, an error, except a map entry that a
  ``$variable`` used (nats-server's rule).

Values that nats-server only checks when it starts (not under ``-t``) are
checked by ``startup_errors``.  ``check_config`` gives the ``-t`` verdict.

This module imports only the stdlib and ``hybridbus.options`` (plain dataclasses).
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable
from typing import Any

from ..options import (
    AuthOptions,
    JetStreamOptions,
    MQTTOptions,
    Options,
    Permissions,
    TLSOptions,
    User,
    WebSocketOptions,
)
from .parser import ConfigError, Node, config_digest, parse_file_nodes, to_plain

__all__ = [
    "load_options",
    "startup_errors",
    "check_config",
    "parse_go_duration",
    "go_quote",
    "UNSUPPORTED_TOP_LEVEL",
]

# -- Go formatting helpers -----------------------------------------------------


def go_quote(s: str) -> str:
    """Go's %q for a string (strconv.Quote)."""
    out = ['"']
    for ch in s:
        code = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch in _GO_SHORT_ESCAPES:
            out.append(_GO_SHORT_ESCAPES[ch])
        elif ch.isprintable():
            out.append(ch)
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


_GO_SHORT_ESCAPES = {
    "\a": "\\a",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
}


def _go_float(f: float) -> str:
    """Go's %v for a float64 (shortest digits; exponent form from 1e6 up or below 1e-4)."""
    from decimal import Decimal

    if f == 0:
        return "-0" if str(f).startswith("-") else "0"
    sign, digits, exp = Decimal(repr(f)).as_tuple()
    ds = "".join(map(str, digits)).rstrip("0") or "0"
    point = len(digits) + exp  # position of the decimal point relative to the digits
    exp10 = point - 1
    neg = "-" if sign else ""
    if exp10 < -4 or exp10 >= 6:
        mant = ds[0] + ("." + ds[1:] if len(ds) > 1 else "")
        return f"{neg}{mant}e{'-' if exp10 < 0 else '+'}{abs(exp10):02d}"
    text = format(Decimal(repr(f)), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def go_value(v: Any) -> str:
    """Go's %v for a config value (close enough for messages)."""
    if isinstance(v, Node):
        v = v.value
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return _go_float(v)
    if isinstance(v, _dt.datetime):
        return v.strftime("%Y-%m-%d %H:%M:%S +0000 UTC")
    if isinstance(v, list):
        return "[" + " ".join(go_value(e) for e in v) + "]"
    if isinstance(v, dict):
        return "map[" + " ".join(f"{k}:{go_value(v[k])}" for k in sorted(v)) + "]"
    return str(v)


def go_type(v: Any) -> str:
    """The Go type nats-server's parser would hold for this value."""
    if isinstance(v, Node):
        v = v.value
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int64"
    if isinstance(v, float):
        return "float64"
    if isinstance(v, str):
        return "string"
    if isinstance(v, _dt.datetime):
        return "time.Time"
    if isinstance(v, list):
        return "[]interface {}"
    if isinstance(v, dict):
        return "map[string]interface {}"
    return type(v).__name__


# -- Go duration syntax --------------------------------------------------------

_NS_PER_UNIT = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,  # micro sign
    "\u03bcs": 1_000,  # Greek mu
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
_MAX_NS = 1 << 63


def _duration_quote(s: str) -> str:
    # Go's time package quotes with non-ASCII bytes as \xNN escapes.
    out = ['"']
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) >= 0x80:
            out.extend(f"\\x{b:02x}" for b in ch.encode("utf-8", "surrogatepass"))
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def parse_go_duration(text: str) -> int:
    """Nanoseconds for a Go ``time.ParseDuration`` string ("1h30m", "300ms", "-1.5s").

    Raises ValueError with Go's message ("time: unknown unit ...").
    """
    orig = text
    s = text
    neg = False
    if s and s[0] in "+-":
        neg = s[0] == "-"
        s = s[1:]
    if s == "0":
        return 0
    invalid = ValueError("time: invalid duration " + _duration_quote(orig))
    if not s:
        raise invalid
    total = 0
    while s:
        if not (s[0] == "." or "0" <= s[0] <= "9"):
            raise invalid
        i = 0
        while i < len(s) and "0" <= s[i] <= "9":
            i += 1
        whole_digits, s = s[:i], s[i:]
        whole = int(whole_digits) if whole_digits else 0
        if whole >= _MAX_NS:
            raise invalid
        frac_digits = ""
        if s and s[0] == ".":
            s = s[1:]
            j = 0
            while j < len(s) and "0" <= s[j] <= "9":
                j += 1
            frac_digits, s = s[:j], s[j:]
        if not whole_digits and not frac_digits:
            raise invalid  # "." or ".s": no digits at all
        j = 0
        while j < len(s) and not (s[j] == "." or "0" <= s[j] <= "9"):
            j += 1
        if j == 0:
            raise ValueError("time: missing unit in duration " + _duration_quote(orig))
        unit, s = s[:j], s[j:]
        per = _NS_PER_UNIT.get(unit)
        if per is None:
            raise ValueError(
                f"time: unknown unit {_duration_quote(unit)} in duration {_duration_quote(orig)}"
            )
        if whole > _MAX_NS // per:
            raise invalid
        value = whole * per
        if frac_digits:
            # Go keeps at most the digits that fit; the float product truncates.
            value += int(int(frac_digits) * (per / 10 ** len(frac_digits)))
            if value > _MAX_NS:
                raise invalid
        total += value
        if total > _MAX_NS:
            raise invalid
    if neg:
        return -total
    if total > _MAX_NS - 1:
        raise invalid
    return total


# -- option tables -------------------------------------------------------------

# nats-server options that hybridbus knows but does not implement.  They load
# with a warning (so a nats-server config keeps working) and are ignored.
UNSUPPORTED_TOP_LEVEL = frozenset(
    {
        "client_advertise",
        "cluster",
        "gateway",
        "leafnodes",
        "leaf",
        "accounts",
        "system_account",
        "system",
        "no_system_account",
        "no_system",
        "no_sys_acc",
        "operator",
        "operators",
        "root",
        "roots",
        "root_operator",
        "root_operators",
        "trusted",
        "trusted_keys",
        "resolver",
        "account_resolver",
        "accounts_resolver",
        "resolver_tls",
        "resolver_preload",
        "resolver_pinned_accounts",
        "lame_duck_duration",
        "lame_duck_grace_period",
        "write_timeout",
        "trace_verbose",
        "trace_headers",
        "logtime_utc",
        "syslog",
        "remote_syslog",
        "logfile_size_limit",
        "log_size_limit",
        "logfile_max_num",
        "log_max_num",
        "ports_file_dir",
        "prof_port",
        "prof_block_rate",
        "connect_error_reports",
        "reconnect_error_reports",
        "disable_sublist_cache",
        "no_sublist_cache",
        "no_header_support",
        "max_traced_msg_len",
        "max_sub_tokens",
        "max_subscription_tokens",
        "mappings",
        "maps",
        "default_js_domain",
        "ocsp",
        "ocsp_cache",
        "allow_non_tls",
    }
)
_UNSUPPORTED_TLS = frozenset(
    {
        "verify_cert_and_check_known_urls",
        "allow_insecure_cipher_suites",
        "cipher_suites",
        "curve_preferences",
        "connection_rate_limit",
        "cert_store",
        "cert_match_by",
        "cert_match",
        "ca_certs_match",
        "cert_match_skip_invalid",
        "certs",
        "certificates",
    }
)
# Ignoring these would accept peers the operator meant to refuse.
_REFUSED_TLS = frozenset({"pinned_certs", "ocsp_peer"})
_UNSUPPORTED_JETSTREAM = frozenset(
    {
        "unique_tag",
        "limits",
        "max_outstanding_catchup",
        "max_buffered_size",
        "max_buffered_msgs",
        "request_queue_limit",
        "info_queue_limit",
        "meta_compact",
        "meta_compact_size",
        "meta_compact_sync",
        "max_concurrent_io",
        "extension_hint",
        "tpm",
        "max_catchup",
        "max_ha_assets",
    }
)
# Ignoring these would store data in the clear that the operator meant to encrypt.
_REFUSED_JETSTREAM = frozenset({"key", "ek", "cipher", "prev_key", "prev_ek"})
_UNSUPPORTED_MQTT = frozenset(
    {
        "js_api_timeout",
        "api_timeout",
        "js_domain",
        "stream_replicas",
        "consumer_replicas",
        "consumer_memory_storage",
        "consumer_inactive_threshold",
        "consumer_auto_cleanup",
    }
)
_UNSUPPORTED_WEBSOCKET = frozenset(
    {
        "advertise",
        "jwt_cookie",
        "user_cookie",
        "pass_cookie",
        "token_cookie",
        "headers",
        "ping_interval",
    }
)
_UNSUPPORTED_AUTH = frozenset({"auth_callout", "auth_hook", "proxy_required"})
_UNSUPPORTED_USER = frozenset({"nkey", "account", "proxy_required"})

CONNECTION_TYPES = frozenset(
    {"STANDARD", "WEBSOCKET", "MQTT", "MQTT_WS", "LEAFNODE", "LEAFNODE_WS", "IN_PROCESS"}
)
_TLS_VERSIONS = frozenset({"1.0", "1.1", "1.2", "1.3"})
# allow_responses defaults (nats-server: one response within two minutes).
_DEFAULT_RESPONSE_MAX = 1
_DEFAULT_RESPONSE_EXPIRES = 120.0
_MAX_INT32 = (1 << 31) - 1
_MQTT_MAX_PACKET = 268_435_455 + 5  # largest remaining length plus the fixed header


# -- the loader ----------------------------------------------------------------


class _Bad:
    """Marks a value that failed its type check (an error was recorded)."""


_BAD = _Bad()


class _Loader:
    def __init__(self) -> None:
        self.errors: list[str] = []
        self.warnings: list[str] = []
        self.store_dir_set = False

    # reporting

    def err(self, node: Node, reason: str) -> None:
        self.errors.append(f"{node.where}: {reason}")

    def warn_field(self, node: Node, field: str, reason: str) -> None:
        self.warnings.append(f"{node.where}: invalid use of field {go_quote(field)}: {reason}")

    def unknown(self, key: str, node: Node) -> None:
        if node.used:
            return  # a variable definition that something referred to
        self.errors.append(f"{node.where}: unknown field {go_quote(key)}")

    def unsupported(self, key: str, node: Node) -> None:
        self.warnings.append(
            f"{node.where}: field {go_quote(key)} is not supported by hybridbus and is ignored"
        )

    def refused(self, key: str, node: Node) -> None:
        self.errors.append(f"{node.where}: field {go_quote(key)} is not supported by hybridbus")

    # typed access; each returns _BAD after recording the Go type assertion error

    def _typed(self, node: Node, ok: bool, want: str) -> Any:
        if ok:
            return node.value
        self.err(node, f"interface conversion: interface {{}} is {go_type(node)}, not {want}")
        return _BAD

    def int_(self, node: Node) -> Any:
        v = node.value
        return self._typed(node, isinstance(v, int) and not isinstance(v, bool), "int64")

    def str_(self, node: Node) -> Any:
        return self._typed(node, isinstance(node.value, str), "string")

    def bool_(self, node: Node) -> Any:
        return self._typed(node, isinstance(node.value, bool), "bool")

    def map_(self, node: Node) -> Any:
        return self._typed(node, isinstance(node.value, dict), "map[string]interface {}")

    def int_in(self, node: Node, lo: int, hi: int) -> Any:
        """An integer in [lo, hi], with nats-server's message for MQTT limits."""
        if (v := self.int_(node)) is _BAD:
            return _BAD
        if not lo <= v <= hi:
            self.err(node, f"invalid value {v}, should in [{lo}..{hi}] range")
            return _BAD
        return v

    def duration(self, field: str, node: Node) -> float | None:
        """A Go duration string in seconds; a bare integer is seconds with a warning."""
        v = node.value
        if isinstance(v, str):
            try:
                return parse_go_duration(v) / 1e9
            except ValueError as exc:
                self.err(node, f"error parsing {field}: {exc}")
                return None
        self.warn_field(node, field, f"{field} should be converted to a duration")
        if self.int_(node) is _BAD:
            return None
        return float(v)

    def seconds(self, node: Node, what: str) -> float | None:
        """A timeout given as int or float seconds, or as a duration string."""
        v = node.value
        if isinstance(v, bool):
            self.err(node, f"error parsing {what}, 'timeout' wrong type")
            return None
        if isinstance(v, (int, float)):
            return float(v)
        if isinstance(v, str):
            try:
                return parse_go_duration(v) / 1e9
            except ValueError as exc:
                self.err(node, f"error parsing {what}, 'timeout' {exc}")
                return None
        self.err(node, f"error parsing {what}, 'timeout' wrong type")
        return None

    def listen(self, node: Node) -> tuple[str, int] | None:
        """``listen``-style value: a port, or "host:port"; None after an error."""
        v = node.value
        if isinstance(v, int) and not isinstance(v, bool):
            return "", v
        if not isinstance(v, str):
            self.err(node, f"expected port or host:port, got {go_type(v)}")
            return None
        hostport = _split_host_port(v)
        if hostport is None:
            self.err(node, f"could not parse address string {go_quote(v)}")
            return None
        host, port_text = hostport
        if not _is_go_parse_int(port_text):  # Go's strconv.Atoi
            self.err(node, f"could not parse port {go_quote(port_text)}")
            return None
        return host, int(port_text)

    def string_list(self, node: Node, what: str) -> list[str] | None:
        v = node.value
        if isinstance(v, str):
            return [v]
        if isinstance(v, list):
            out = []
            for elem in v:
                if not isinstance(elem.value, str):
                    self.err(
                        elem,
                        f"error parsing {what}: unsupported type {go_type(elem)} where string is expected",
                    )
                    return None
                out.append(elem.value)
            return out
        self.err(node, f"error parsing {what}: unsupported type {go_type(v)}")
        return None

    # -- top level -----------------------------------------------------------

    def dispatch(self, nodes: dict[str, Node], target: Any, table: dict, unsupported) -> None:
        """Hand each key of a block to its handler (keys are case-insensitive); a key
        nats-server knows but we do not implement is a warning, any other an error."""
        for key, node in nodes.items():
            name = key.lower()
            handler = table.get(name)
            if handler is not None:
                handler(self, target, node, key)
            elif name in unsupported:
                self.unsupported(key, node)
            else:
                self.unknown(key, node)

    def top(self, nodes: dict[str, Node], opts: Options) -> None:
        self.dispatch(nodes, opts, _TOP, UNSUPPORTED_TOP_LEVEL)

    def t_server_name(self, opts: Options, node: Node, key: str) -> None:
        if (v := self.str_(node)) is _BAD:
            return
        if " " in v:
            self.err(node, "server name cannot contain spaces")
            return
        opts.server_name = v or None

    def _int32_option(self, node: Node, key: str) -> Any:
        v = self.int_(node)
        if v is not _BAD and v > _MAX_INT32:
            self.err(node, f"{key} value is too big")
            return _BAD
        return v

    def t_max_payload(self, opts: Options, node: Node, key: str) -> None:
        if (v := self._int32_option(node, key)) is not _BAD:
            opts.max_payload = v

    def t_max_control_line(self, opts: Options, node: Node, key: str) -> None:
        if (v := self._int32_option(node, key)) is not _BAD:
            opts.max_control_line = v

    def t_ping_interval(self, opts: Options, node: Node, key: str) -> None:
        if (v := self.duration("ping_interval", node)) is not None:
            opts.ping_interval = v

    def t_write_deadline(self, opts: Options, node: Node, key: str) -> None:
        if (v := self.duration("write_deadline", node)) is not None:
            opts.write_deadline = v

    def t_server_tags(self, opts: Options, node: Node, key: str) -> None:
        tags = self.string_list(node, "tags")
        if tags is not None:
            opts.tags = tags

    def t_server_metadata(self, opts: Options, node: Node, key: str) -> None:
        if not isinstance(node.value, dict):
            self.err(node, f"error parsing metadata: unsupported type {go_type(node)}")
            return
        meta = {}
        for k, v in node.value.items():
            if (s := self.str_(v)) is not _BAD:
                meta[k] = s
        opts.metadata = meta

    def t_store_dir(self, opts: Options, node: Node, key: str) -> None:
        if self.store_dir_set:
            self.err(node, "Duplicate 'store_dir' configuration")
            return
        if (v := self.str_(node)) is not _BAD:
            self.store_dir_set = True
            opts.jetstream.store_dir = v

    def t_authorization(self, opts: Options, node: Node, key: str) -> None:
        auth = self.authorization(node)
        if auth is not None:
            opts.auth = auth

    def t_tls(self, opts: Options, node: Node, key: str) -> None:
        opts.tls = self.tls(node)

    def t_jetstream(self, opts: Options, node: Node, key: str) -> None:
        self.jetstream(node, opts)

    def t_mqtt(self, opts: Options, node: Node, key: str) -> None:
        self.mqtt(node, opts.mqtt)

    def t_websocket(self, opts: Options, node: Node, key: str) -> None:
        self.websocket(node, opts.websocket)

    # -- authorization ---------------------------------------------------------

    def authorization(self, node: Node) -> AuthOptions | None:
        if (block := self.map_(node)) is _BAD:
            return None
        auth = AuthOptions()
        users: list[User] | None = None
        for key, sub in block.items():
            name = key.lower()
            if (handler := _CREDENTIALS.get(name)) is not None:
                handler(self, auth, sub, key)
            elif name == "users":
                users = self.users(sub)
            elif name in ("default_permission", "default_permissions", "permissions"):
                auth.default_permissions = self.permissions(sub)
            elif name in _UNSUPPORTED_AUTH:
                self.unsupported(key, sub)
            else:
                self.unknown(key, sub)
        if (auth.user or auth.password) and auth.token:
            self.err(node, "Cannot have a user/pass and token")
            return None
        if users is not None:
            if auth.user:
                self.err(node, "Can not have a single user/pass and a users array")
                return None
            if auth.token:
                self.err(node, "Can not have a token and a users array")
                return None
            seen: set[str] = set()
            for user in users:
                if user.user in seen:
                    self.err(node, f"Duplicate user {go_quote(user.user)} detected")
                    return None
                seen.add(user.user)
            auth.users = users
        return auth

    def a_timeout(self, auth: AuthOptions, node: Node, key: str) -> None:
        secs = self.seconds(node, "authorization config")
        if secs is None:
            return  # the error is recorded; the default stays
        if secs > 60:
            self.warn_field(
                node,
                key,
                f"timeout of {go_value(node)} ({secs:f} seconds) is high, consider keeping it "
                "under 60 seconds. possibly caused by unquoted duration; use '1m' instead of 1m, "
                "for example",
            )
        auth.timeout = secs

    def simple_auth(self, node: Node) -> AuthOptions | None:
        """The ``authorization`` block of ``mqtt`` and ``websocket``: one user or a token."""
        if (block := self.map_(node)) is _BAD:
            return None
        auth = AuthOptions()
        self.dispatch(block, auth, _CREDENTIALS, frozenset())
        return auth

    def users(self, node: Node) -> list[User]:
        if not isinstance(node.value, list):
            self.err(node, f"Expected users field to be an array, got {go_value(node)}")
            return []
        users = []
        for entry in node.value:
            if not isinstance(entry.value, dict):
                self.err(entry, f"Expected user entry to be a map/struct, got {go_value(entry)}")
                continue
            user = User(user="")
            last = entry  # nats-server reports a missing user at the last field it read
            for key, sub in entry.value.items():
                last = sub
                name = key.lower()
                if name in ("user", "username"):
                    if (v := self.str_(sub)) is not _BAD:
                        user.user = v
                elif name in ("pass", "password"):
                    if (v := self.str_(sub)) is not _BAD:
                        user.password = v
                elif name in ("permission", "permissions", "authorization"):
                    user.permissions = self.permissions(sub)
                elif name in ("allowed_connection_types", "connection_types", "clients"):
                    user.allowed_connection_types = self.connection_types(sub)
                elif name in _UNSUPPORTED_USER:
                    self.unsupported(key, sub)
                else:
                    self.unknown(key, sub)
            if not user.user:
                self.err(last, "User entry requires a user")
                continue
            users.append(user)
        return users

    def connection_types(self, node: Node) -> list[str] | None:
        names = self.string_list(node, "allowed connection types")
        if names is None:
            return None
        upper = [n.upper() for n in names]
        unknown = [n for n in upper if n not in CONNECTION_TYPES]
        if unknown:
            self.err(node, "invalid connection types [" + " ".join(map(go_quote, unknown)) + "]")
            return None
        return list(dict.fromkeys(upper))

    # -- permissions -------------------------------------------------------------

    def permissions(self, node: Node) -> Permissions | None:
        if not isinstance(node.value, dict):
            self.err(node, f"Expected permissions to be a map/struct, got {go_value(node)}")
            return None
        perms = Permissions()
        for key, sub in node.value.items():
            name = key.lower()
            if name in ("pub", "publish", "import"):
                allow, deny = self.subject_permission(sub, queue_ok=False)
                perms.publish_allow, perms.publish_deny = allow, deny
            elif name in ("sub", "subscribe", "export"):
                allow, deny = self.subject_permission(sub, queue_ok=True)
                perms.subscribe_allow, perms.subscribe_deny = allow, deny
            elif name in ("publish_allow_responses", "allow_responses"):
                if isinstance(sub.value, bool):
                    if sub.value:
                        perms.allow_responses = (_DEFAULT_RESPONSE_MAX, _DEFAULT_RESPONSE_EXPIRES)
                else:
                    perms.allow_responses = self.allow_responses(sub)
            elif not sub.used:
                self.err(sub, f"Unknown field {go_quote(key)} parsing permissions")
        if perms.allow_responses is not None and perms.publish_allow is None:
            # Response permission means "publish only to reply subjects" unless
            # publish rules say more (nats-server sets an empty allow list).
            perms.publish_allow = []
        return perms

    def subject_permission(
        self, node: Node, queue_ok: bool
    ) -> tuple[list[str] | None, list[str] | None]:
        v = node.value
        if not isinstance(v, dict):
            return self.subjects(node, queue_ok), None  # old style: plain allow list
        allow = deny = None
        for key, sub in v.items():
            name = key.lower()
            if name == "allow":
                allow = self.subjects(sub, queue_ok)
            elif name == "deny":
                deny = self.subjects(sub, queue_ok)
            elif not sub.used:
                self.err(
                    sub,
                    f"Unknown field name {go_quote(key)} parsing subject permissions, "
                    "only 'allow' or 'deny' are permitted",
                )
        return allow, deny

    def subjects(self, node: Node, queue_ok: bool) -> list[str] | None:
        v = node.value
        if isinstance(v, str):
            subjects = [v]
        elif isinstance(v, list):
            subjects = []
            for elem in v:
                if not isinstance(elem.value, str):
                    self.err(elem, "Subject in permissions array cannot be cast to string")
                    return None
                subjects.append(elem.value)
        else:
            self.err(
                node,
                "Expected subject permissions to be a subject, or array of subjects, "
                f"got {go_type(v)}",
            )
            return None
        for subject in subjects:
            problem = _subject_problem(subject, queue_ok)
            if problem:
                self.err(node, problem)
                return None
        return subjects

    def allow_responses(self, node: Node) -> tuple[int, float] | None:
        if not isinstance(node.value, dict):
            self.err(node, "error parsing response permissions, expected a boolean or a map")
            return None
        max_msgs, expires = _DEFAULT_RESPONSE_MAX, _DEFAULT_RESPONSE_EXPIRES
        for key, sub in node.value.items():
            name = key.lower()
            if name in ("max", "max_msgs", "max_messages", "max_responses"):
                if (v := self.int_(sub)) is _BAD:
                    return None
                if v != 0:  # 0 keeps the default; negative means unlimited
                    max_msgs = v
            elif name in ("expires", "expiration", "ttl"):
                if not isinstance(sub.value, str):
                    self.err(sub, "error parsing expires, not a duration string")
                    return None
                try:
                    ns = parse_go_duration(sub.value)
                except ValueError as exc:
                    self.err(sub, f"error parsing expires: {exc}")
                    return None
                if ns != 0:
                    expires = ns / 1e9
            elif not sub.used:
                self.err(sub, f"Unknown field {go_quote(key)} parsing permissions")
        return max_msgs, expires

    # -- tls -----------------------------------------------------------------------

    def tls(self, node: Node) -> TLSOptions | None:
        if (block := self.map_(node)) is _BAD:
            return None
        tls = TLSOptions()
        for key, sub in block.items():
            name = key.lower()
            v = sub.value
            if name in ("cert_file", "key_file", "ca_file"):
                if not isinstance(v, str):
                    self.err(sub, f"error parsing tls config, expected '{name}' to be filename")
                    return None
                setattr(tls, name, v)
            elif name in ("verify", "verify_and_map", "insecure"):
                if not isinstance(v, bool):
                    self.err(sub, f"error parsing tls config, expected '{name}' to be a boolean")
                    return None
                setattr(tls, name, v)
            elif name == "timeout":
                secs = self.seconds(sub, "tls config")
                if secs is None:
                    return None
                tls.timeout = secs
            elif name == "min_version":
                if not isinstance(v, str) or v not in _TLS_VERSIONS:
                    self.err(sub, f"error parsing tls config: unknown version: {go_value(sub)}")
                    return None
                tls.min_version = v
            elif name in ("handshake_first", "first", "immediate"):
                if isinstance(v, bool):
                    tls.handshake_first = v
                    continue
                if isinstance(v, str) and v.lower() != "auto":
                    try:
                        parse_go_duration(v)
                    except ValueError as exc:
                        self.err(sub, f"error parsing tls config, 'handshake_first' {exc}")
                        return None
                elif not isinstance(v, str):
                    self.err(sub, "error parsing tls config, 'handshake_first' wrong type")
                    return None
                # "auto" / a delay: TLS-first with fallback to INFO-first; not implemented.
                self.unsupported(key, sub)
            elif name in _REFUSED_TLS:
                self.refused(key, sub)
                return None
            elif name in _UNSUPPORTED_TLS:
                self.unsupported(key, sub)
            elif not sub.used:
                self.err(sub, f"error parsing tls config, unknown field {go_quote(key)}")
                return None
        problem = _check_tls_files(tls)
        if problem:
            self.err(node, problem)
            return None
        return tls

    # -- jetstream -------------------------------------------------------------------

    def jetstream(self, node: Node, opts: Options) -> None:
        js: JetStreamOptions = opts.jetstream
        v = node.value
        if isinstance(v, bool):
            js.enabled = v
            return
        if isinstance(v, str):
            word = v.lower()
            if word in ("enabled", "enable"):
                js.enabled = True
            elif word in ("disabled", "disable"):
                js.enabled = False
            else:
                self.err(node, f"Expected 'enabled' or 'disabled' for string value, got '{v}'")
            return
        if not isinstance(v, dict):
            self.err(node, f"Expected map, bool or string to define JetStream, got {go_type(v)}")
            return
        enabled = True
        for key, sub in v.items():
            name = key.lower()
            if name in ("store", "store_dir", "storedir"):
                self.t_store_dir(opts, sub, key)
            elif name in ("sync", "sync_interval"):
                if isinstance(sub.value, str) and sub.value.lower() == "always":
                    js.sync_always = True
                    js.sync_interval = 0.0
                elif (secs := self.duration("sync_interval", sub)) is not None:
                    js.sync_always = False
                    js.sync_interval = secs
            elif name in ("max_memory_store", "max_mem_store", "max_mem"):
                if (size := self.storage_size(sub, "max_mem_store")) is not None:
                    js.max_memory_store = size
            elif name in ("max_file_store", "max_file"):
                if (size := self.storage_size(sub, "max_file_store")) is not None:
                    js.max_file_store = size
            elif name == "strict":
                if (b := self.bool_(sub)) is not _BAD:
                    js.strict = b
            elif name == "domain":
                if (s := self.str_(sub)) is not _BAD:
                    js.domain = s
            elif name in ("enable", "enabled"):
                if (b := self.bool_(sub)) is not _BAD:
                    enabled = b
            elif name in _REFUSED_JETSTREAM:
                self.refused(key, sub)
            elif name in _UNSUPPORTED_JETSTREAM:
                self.unsupported(key, sub)
            else:
                self.unknown(key, sub)
        js.enabled = enabled

    def storage_size(self, node: Node, what: str) -> int | None:
        v = node.value
        if isinstance(v, int) and not isinstance(v, bool):
            return v
        if not isinstance(v, str):
            self.err(node, f"{what} must be int64 or string")
            return None
        if v == "":
            return 0
        # A quoted size takes one binary suffix: "1G" is 2**30 (nats-server's rule).
        num_text, suffix = v[:-1], v[-1:]
        if not _is_go_parse_int(num_text):
            reason = "value out of range" if _looks_int(num_text) else "invalid syntax"
            self.err(node, f"{what} strconv.ParseInt: parsing {go_quote(num_text)}: {reason}")
            return None
        shift = {"K": 10, "M": 20, "G": 30, "T": 40}.get(suffix)
        if shift is None:
            self.err(node, f"{what} sizes defined as strings must end in K, M, G, T")
            return None
        return int(num_text) << shift

    # -- mqtt --------------------------------------------------------------------------

    def mqtt(self, node: Node, mq: MQTTOptions) -> None:
        if not isinstance(node.value, dict):
            self.err(node, f"Expected mqtt to be a map, got {go_type(node)}")
            return
        self.dispatch(node.value, mq, _MQTT, _UNSUPPORTED_MQTT)

    def m_tls(self, mq: Any, node: Node, key: str) -> None:
        mq.tls = self.tls(node)

    def m_auth(self, mq: Any, node: Node, key: str) -> None:
        mq.auth = self.simple_auth(node)

    def m_ack_wait(self, mq: MQTTOptions, node: Node, key: str) -> None:
        secs = self.duration("ack_wait", node)
        if secs is not None:
            # 0 means "the default" to nats-server; negative fails at startup.
            mq.ack_wait = secs if secs != 0 else MQTTOptions.ack_wait

    def m_connect_timeout(self, mq: MQTTOptions, node: Node, key: str) -> None:
        secs = self.duration("connect_timeout", node)
        if secs is None:
            return
        if secs <= 0:
            self.err(node, "connect_timeout must be positive")
            return
        mq.connect_timeout = secs

    # -- websocket ---------------------------------------------------------------------

    def websocket(self, node: Node, ws: WebSocketOptions) -> None:
        if not isinstance(node.value, dict):
            self.err(node, f"Expected websocket to be a map, got {go_type(node)}")
            return
        self.dispatch(node.value, ws, _WEBSOCKET, _UNSUPPORTED_WEBSOCKET)
        # Like nats-server, a websocket listener runs when it has a port.
        ws.enabled = ws.port != 0

    def w_allowed_origins(self, ws: WebSocketOptions, node: Node, key: str) -> None:
        origins = self.string_list(node, "allowed origins")
        if origins is not None:
            ws.allowed_origins = origins

    def w_handshake_timeout(self, ws: WebSocketOptions, node: Node, key: str) -> None:
        v = node.value
        if isinstance(v, int) and not isinstance(v, bool):
            ws.handshake_timeout = float(v)
        elif isinstance(v, str):
            try:
                ws.handshake_timeout = parse_go_duration(v) / 1e9
            except ValueError as exc:
                self.err(node, str(exc))
        else:
            self.err(node, f"error parsing handshake timeout: unsupported type {go_type(v)}")


_Handler = Callable[[_Loader, Any, Node, str], None]


def _store(attr: str, read: Callable[..., Any], *args: Any) -> _Handler:
    """The handler of an option that only needs its type (and range) checked: it
    sets ``attr`` to ``read(loader, node, *args)`` unless ``read`` recorded an error."""

    def handler(loader: _Loader, target: Any, node: Node, key: str) -> None:
        if (v := read(loader, node, *args)) is not _BAD:
            setattr(target, attr, v)

    return handler


def _store_listen(host_attr: str, port_attr: str) -> _Handler:
    """The handler of a ``listen``-style option; no host means every interface."""

    def handler(loader: _Loader, target: Any, node: Node, key: str) -> None:
        hp = loader.listen(node)
        if hp is not None:
            setattr(target, host_attr, hp[0] or "0.0.0.0")
            setattr(target, port_attr, hp[1])

    return handler


_TOP: dict[str, _Handler] = {
    "listen": _store_listen("host", "port"),
    "port": _store("port", _Loader.int_),
    "host": _store("host", _Loader.str_),
    "net": _store("host", _Loader.str_),
    "server_name": _Loader.t_server_name,
    "http": _store_listen("http_host", "http_port"),
    "https": _store_listen("http_host", "https_port"),
    "http_port": _store("http_port", _Loader.int_),
    "monitor_port": _store("http_port", _Loader.int_),
    "https_port": _store("https_port", _Loader.int_),
    "http_base_path": _store("http_base_path", _Loader.str_),
    "max_payload": _Loader.t_max_payload,
    "max_control_line": _Loader.t_max_control_line,
    "max_pending": _store("max_pending", _Loader.int_),
    "max_connections": _store("max_connections", _Loader.int_),
    "max_conn": _store("max_connections", _Loader.int_),
    "max_subscriptions": _store("max_subscriptions", _Loader.int_),
    "max_subs": _store("max_subscriptions", _Loader.int_),
    "max_closed_clients": _store("max_closed_clients", _Loader.int_),
    "ping_interval": _Loader.t_ping_interval,
    "ping_max": _store("ping_max", _Loader.int_),
    "write_deadline": _Loader.t_write_deadline,
    "debug": _store("debug", _Loader.bool_),
    "trace": _store("trace", _Loader.bool_),
    "logtime": _store("logtime", _Loader.bool_),
    "log_file": _store("log_file", _Loader.str_),
    "logfile": _store("log_file", _Loader.str_),
    "pid_file": _store("pid_file", _Loader.str_),
    "pidfile": _store("pid_file", _Loader.str_),
    "no_auth_user": _store("no_auth_user", _Loader.str_),
    "server_tags": _Loader.t_server_tags,
    "server_metadata": _Loader.t_server_metadata,
    "store_dir": _Loader.t_store_dir,
    "storedir": _Loader.t_store_dir,
    "authorization": _Loader.t_authorization,
    "tls": _Loader.t_tls,
    "jetstream": _Loader.t_jetstream,
    "mqtt": _Loader.t_mqtt,
    "websocket": _Loader.t_websocket,
    "ws": _Loader.t_websocket,
}

# The user, password, token and timeout of an ``authorization`` block.
_CREDENTIALS: dict[str, _Handler] = {
    "user": _store("user", _Loader.str_),
    "username": _store("user", _Loader.str_),
    "pass": _store("password", _Loader.str_),
    "password": _store("password", _Loader.str_),
    "token": _store("token", _Loader.str_),
    "timeout": _Loader.a_timeout,
}

# What the ``mqtt`` and ``websocket`` blocks share: a listener and its own auth.
_LISTENER: dict[str, _Handler] = {
    "listen": _store_listen("host", "port"),
    "port": _store("port", _Loader.int_),
    "host": _store("host", _Loader.str_),
    "net": _store("host", _Loader.str_),
    "tls": _Loader.m_tls,
    "authorization": _Loader.m_auth,
    "authentication": _Loader.m_auth,
    "no_auth_user": _store("no_auth_user", _Loader.str_),
}

_MQTT: dict[str, _Handler] = {
    **_LISTENER,
    "ack_wait": _Loader.m_ack_wait,
    "ackwait": _Loader.m_ack_wait,
    "max_ack_pending": _store("max_ack_pending", _Loader.int_in, 0, 0xFFFF),
    "max_pending": _store("max_ack_pending", _Loader.int_in, 0, 0xFFFF),
    "max_inflight": _store("max_ack_pending", _Loader.int_in, 0, 0xFFFF),
    "reject_qos2_publish": _store("reject_qos2_publish", _Loader.bool_),
    "downgrade_qos2_subscribe": _store("downgrade_qos2_subscribe", _Loader.bool_),
    # hybridbus extensions (see conf/server.conf)
    # MQTT 5 Receive Maximum is 1..65535; 0 is a protocol error [MQTT-3.2.2.3.3].
    "receive_maximum": _store("receive_maximum", _Loader.int_in, 1, 0xFFFF),
    # Server Keep Alive is a two byte integer; 0 means "no cap".
    "max_keepalive": _store("max_keepalive", _Loader.int_in, 0, 0xFFFF),
    # 0 means the protocol maximum (a 268,435,455 byte body plus its header).
    "max_packet_size": _store("max_packet_size", _Loader.int_in, 0, _MQTT_MAX_PACKET),
    "max_session_messages": _store("max_session_messages", _Loader.int_in, 0, (1 << 63) - 1),
    "connect_timeout": _Loader.m_connect_timeout,
}

_WEBSOCKET: dict[str, _Handler] = {
    **_LISTENER,
    "no_tls": _store("no_tls", _Loader.bool_),
    "same_origin": _store("same_origin", _Loader.bool_),
    "allowed_origins": _Loader.w_allowed_origins,
    "allowed_origin": _Loader.w_allowed_origins,
    "allow_origins": _Loader.w_allowed_origins,
    "allow_origin": _Loader.w_allowed_origins,
    "origins": _Loader.w_allowed_origins,
    "origin": _Loader.w_allowed_origins,
    "handshake_timeout": _Loader.w_handshake_timeout,
    "compression": _store("compression", _Loader.bool_),
    "compress": _store("compression", _Loader.bool_),
}


# -- small checks ------------------------------------------------------------------


def _split_host_port(hostport: str) -> tuple[str, str] | None:
    """Go's net.SplitHostPort; None where Go returns an error."""
    i = hostport.rfind(":")
    if i < 0:
        return None
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0 or end + 1 != i:
            return None
        host = hostport[1:end]
        if "[" in hostport[1:] or "]" in hostport[end + 1 :]:
            return None
    else:
        host = hostport[:i]
        if ":" in host or "[" in hostport or "]" in hostport:
            return None
    return host, hostport[i + 1 :]


def _looks_int(text: str) -> bool:
    body = text[1:] if text[:1] in "+-" else text
    return body.isascii() and body.isdigit()


def _is_go_parse_int(text: str) -> bool:
    """strconv.ParseInt(text, 10, 64) would succeed."""
    if not _looks_int(text):
        return False
    return -(1 << 63) <= int(text) <= (1 << 63) - 1


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


def _read_for_tls(path: str) -> tuple[bytes | None, str | None]:
    try:
        with open(path, "rb") as f:
            return f.read(), None
    except IsADirectoryError:
        return None, f"read {path}: is a directory"
    except OSError as exc:
        return None, f"open {path}: {(exc.strerror or str(exc)).lower()}"


def _no_password() -> bytes:
    # Never let OpenSSL prompt on a terminal for an encrypted key.
    return b""


def _check_tls_files(tls: TLSOptions) -> str | None:
    """nats-server loads certificates while parsing, so ``-t`` catches bad files."""
    if tls.cert_file and not tls.key_file:
        return "missing 'key_file' in TLS configuration"
    if tls.key_file and not tls.cert_file:
        return "missing 'cert_file' in TLS configuration"
    pair = "error parsing X509 certificate/key pair: "
    if tls.cert_file and tls.key_file:
        cert, problem = _read_for_tls(tls.cert_file)
        if problem:
            return pair + problem
        key, problem = _read_for_tls(tls.key_file)
        if problem:
            return pair + problem
        assert cert is not None and key is not None
        if b"-----BEGIN" not in cert:
            return pair + "tls: failed to find any PEM data in certificate input"
        if b"CERTIFICATE-----" not in cert:
            if b"PRIVATE KEY-----" in cert:
                return pair + (
                    "tls: failed to find certificate PEM data in certificate input, but did "
                    "find a private key; PEM inputs may have been switched"
                )
            return pair + "tls: failed to find certificate PEM data in certificate input"
        if b"-----BEGIN" not in key:
            return pair + "tls: failed to find any PEM data in key input"
        import ssl

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            ctx.load_cert_chain(tls.cert_file, tls.key_file, password=_no_password)
        except ssl.SSLError as exc:
            if "KEY_VALUES_MISMATCH" in str(exc):
                return pair + "tls: private key does not match public key"
            return pair + f"tls: {exc.reason or exc}"
        except OSError as exc:
            return pair + str(exc)
    if tls.ca_file:
        data, problem = _read_for_tls(tls.ca_file)
        if problem:
            return problem
        import ssl

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            ctx.load_verify_locations(cafile=tls.ca_file)
        except (ssl.SSLError, OSError):
            return "failed to parse root ca certificate"
    return None


# -- public API --------------------------------------------------------------------


def load_options(path: str | None) -> tuple[Options, list[str]]:
    """Build Options from a config file (defaults when ``path`` is None).

    Returns the options and the warning lines.  Raises ``ConfigError`` whose
    ``lines`` are the error lines (and ``warnings`` the warnings seen so far).
    """
    if path is None:
        return Options(), []
    nodes = parse_file_nodes(path)
    if not nodes:
        raise ConfigError([f"{path}: config has no values or is empty"])
    loader = _Loader()
    opts = Options(config_file=path)
    loader.top(nodes, opts)
    if loader.errors:
        raise ConfigError(loader.errors, loader.warnings)
    opts.raw = to_plain(nodes)
    opts.config_digest = config_digest(opts.raw)
    return opts, loader.warnings


def _no_auth_user_problem(name: str, users: list[User]) -> str | None:
    if not users:
        return f"no_auth_user: {go_quote(name)} present, but users/nkeys are not defined"
    if not any(u.user == name for u in users):
        return (
            f"no_auth_user: {go_quote(name)} not present as user or nkey in authorization "
            "block or account configuration"
        )
    return None


def startup_errors(options: Options) -> list[str]:
    """Checks nats-server makes only when it starts (``-t`` does not run them)."""
    problems: list[str] = []
    if options.max_payload > options.max_pending:
        problems.append(
            f"max_payload ({options.max_payload}) cannot be higher than "
            f"max_pending ({options.max_pending})"
        )
    users = options.auth.users if options.auth else []
    for name in (options.no_auth_user, options.mqtt.no_auth_user, options.websocket.no_auth_user):
        if name:
            problem = _no_auth_user_problem(name, users)
            if problem:
                problems.append(problem)
    for proto, block in (("mqtt", options.mqtt), ("websocket", options.websocket)):
        if block.auth is not None and users:
            if block.auth.user:
                problems.append(
                    f"{proto} authentication username not compatible with presence of users/nkeys"
                )
            if block.auth.token:
                problems.append(
                    f"{proto} authentication token not compatible with presence of users/nkeys"
                )
    ws = options.websocket
    if ws.enabled and ws.tls is None and not ws.no_tls:
        problems.append("websocket requires TLS configuration")
    if options.mqtt.ack_wait < 0:
        problems.append("ack wait must be a positive value")
    return problems


def check_config(path: str) -> tuple[int, list[str]]:
    """``nats-server -t`` for hybridbus: (exit code, stderr lines).

    Warnings come first, then errors, each line prefixed ``hybridbus: ``.
    Warnings are fatal here (exit 1) even though a normal start only prints
    them.  Startup-only checks are not run, as with nats-server.
    """
    try:
        opts, warnings = load_options(path)
    except ConfigError as exc:
        return 1, [f"hybridbus: {line}" for line in exc.warnings + exc.lines]
    if warnings:
        return 1, [f"hybridbus: {line}" for line in warnings]
    return 0, [f"hybridbus: configuration file {path} is valid ({opts.config_digest})"]
