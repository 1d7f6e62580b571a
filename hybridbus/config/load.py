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
  logging extras, ...) are listed explicitly (``UNSUPPORTED_TOP_LEVEL`` here, one
  set per block in its module); they earn a warning
  ``field "x" is not supported by hybridbus and is ignored`` and are skipped.
  Those whose silent absence would weaken security are errors instead: every
  authentication or authorization option not enforced (auth callout, trusted
  keys, URL resolvers, account JetStream limits hybridbus does not apply: see
  ``REFUSED_TOP_LEVEL`` and the ``_REFUSED_*`` sets of each block), and
  encryption at rest, certificate pinning and OCSP peer checks. Fail closed:
  hybridbus never runs more open than its config says;
* anything else is ``unknown field "x"``, an error, except a map entry that a
  ``$variable`` used (nats-server's rule).

Values that nats-server only checks when it starts (not under ``-t``) are
checked by ``startup_errors``.  ``check_config`` gives the ``-t`` verdict.

This module holds the entry points and the top-level table; each block has
its own module (``opts_auth``, ``opts_listeners``, ``opts_mqtt``,
``opts_jetstream``) built on ``readers.Loader``.  The package imports only the
stdlib, ``hybridbus.options`` (plain dataclasses) and ``hybridbus.codec.nkey`` (the
text form of nkey public keys).
"""

from __future__ import annotations

from typing import Any

from ..options import Options
from .gotext import (  # parse_go_duration is re-exported
    format_go_duration,
    go_quote,
    go_type,
    parse_go_duration,
)
from .opts_accounts import accounts, check_accounts, mappings
from .opts_auth import authorization
from .opts_jetstream import j_store_dir, jetstream
from .opts_leaf import check_leafnodes, leafnodes
from .opts_listeners import tls
from .opts_mqtt import mqtt, websocket
from .opts_operator import check_operator, t_operator, t_pinned, t_resolver, t_resolver_preload
from .parser import ConfigError, Node, config_digest, parse_file_nodes, to_plain
from .readers import BAD, Handler, Loader, store, store_listen
from .startup import startup_errors  # re-exported: it lives apart to load fast

__all__ = [
    "load_options",
    "startup_errors",
    "check_config",
    "parse_go_duration",
    "go_quote",
    "UNSUPPORTED_TOP_LEVEL",
    "REFUSED_TOP_LEVEL",
]

# -- top level -----------------------------------------------------------------

# nats-server options that hybridbus knows but does not implement.  They load
# with a warning (so a nats-server config keeps working) and are ignored.
UNSUPPORTED_TOP_LEVEL = frozenset(
    {
        "client_advertise",
        "cluster",
        "gateway",
        "write_timeout",
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
        "max_sub_tokens",
        "max_subscription_tokens",
        "default_js_domain",
        "ocsp",
        "ocsp_cache",
        "allow_non_tls",
    }
)
# nats-server options that decide who may connect and what they may do, which hybridbus
# does not implement (yet): trusted keys without an operator JWT, resolvers that fetch
# accounts over TLS, auth callout, trusted proxies. (Operator mode: opts_operator.py.)
# Ignoring one would run the server more open than its config says, so each one stops
# the load with a one-line error (``Loader.refused_auth``); never a warning.
REFUSED_TOP_LEVEL = frozenset(
    {
        "root",
        "roots",
        "trusted",
        "trusted_keys",
        "resolver_tls",
        # a JWT given to clients that bring no credentials (auth callout)
        "default_sentinel",
        # trusted proxies, for users with proxy_required
        "proxies",
    }
)
_MAX_INT32 = (1 << 31) - 1


def t_server_name(ld: Loader, opts: Options, node: Node, key: str) -> None:
    if (v := ld.str_(node, key)) is BAD:
        return
    if " " in v:
        ld.err(node, "server name cannot contain spaces")
        return
    opts.server_name = v or None


def _int32(ld: Loader, node: Node, key: str) -> Any:
    v = ld.int_(node, key)
    if v is not BAD and v > _MAX_INT32:
        ld.err(node, f"{key} value is too big")
        return BAD
    return v


def t_max_payload(ld: Loader, opts: Options, node: Node, key: str) -> None:
    if (v := _int32(ld, node, key)) is not BAD:
        opts.max_payload = v


def t_max_control_line(ld: Loader, opts: Options, node: Node, key: str) -> None:
    if (v := _int32(ld, node, key)) is not BAD:
        opts.max_control_line = v


def t_ping_interval(ld: Loader, opts: Options, node: Node, key: str) -> None:
    if (v := ld.duration("ping_interval", node)) is not None:
        opts.ping_interval = v


def t_write_deadline(ld: Loader, opts: Options, node: Node, key: str) -> None:
    if (v := ld.duration("write_deadline", node)) is not None:
        opts.write_deadline = v


def t_busy_poll(ld: Loader, opts: Options, node: Node, key: str) -> None:
    """A duration ("200us", "1ms"; "0s" or 0 turns it off), at most a second."""
    if node.value == 0 and not isinstance(node.value, bool):
        opts.busy_poll = 0.0
        return
    secs = _duration_string(ld, node, "busy_poll")
    if secs is None:
        return
    if not 0 <= secs <= 1:
        ld.err(node, f"invalid busy_poll of {format_go_duration(round(secs * 1e9))}, 0s to 1s")
        return
    opts.busy_poll = secs


def t_lame_duck_duration(ld: Loader, opts: Options, node: Node, key: str) -> None:
    secs = _duration_string(ld, node, "lame_duck_duration")
    if secs is None:
        return
    if secs < 30:
        text = format_go_duration(round(secs * 1e9))
        ld.err(node, f"invalid lame_duck_duration of {text}, minimum is 30 seconds")
        return
    opts.lame_duck_duration = secs


def t_lame_duck_grace_period(ld: Loader, opts: Options, node: Node, key: str) -> None:
    secs = _duration_string(ld, node, "lame_duck_grace_period")
    if secs is None:
        return
    if secs < 0:
        ld.err(node, "invalid lame_duck_grace_period, needs to be positive")
        return
    opts.lame_duck_grace_period = secs


def _duration_string(ld: Loader, node: Node, field: str) -> float | None:
    """A duration nats-server reads with ``time.ParseDuration(v.(string))``."""
    if (v := ld.str_(node)) is BAD:
        return None
    try:
        return parse_go_duration(v) / 1e9
    except ValueError as exc:
        ld.err(node, f"error parsing {field}: {exc}")
        return None


def t_trace_verbose(ld: Loader, opts: Options, node: Node, key: str) -> None:
    # As in nats-server, trace_verbose sets trace too.
    if (v := ld.bool_(node)) is not BAD:
        opts.trace_verbose = opts.trace = v


def t_server_tags(ld: Loader, opts: Options, node: Node, key: str) -> None:
    tags = ld.string_list(node, "tags")
    if tags is not None:
        opts.tags = tags


def t_server_metadata(ld: Loader, opts: Options, node: Node, key: str) -> None:
    if not isinstance(node.value, dict):
        ld.err(node, f"error parsing metadata: unsupported type {go_type(node)}")
        return
    meta = {}
    for k, v in node.value.items():
        if (s := ld.str_(v, k)) is not BAD:
            meta[k] = s
    opts.metadata = meta


def t_no_system_account(ld: Loader, opts: Options, node: Node, key: str) -> None:
    if (v := ld.bool_(node)) is not BAD:
        opts.no_system_account = v


def t_system_account(ld: Loader, opts: Options, node: Node, key: str) -> None:
    # which account it names is checked at start (startup.py), as nats-server does
    if not isinstance(node.value, str):
        ld.err(node, "system account name must be a string")
        return
    opts.system_account = node.value


def t_authorization(ld: Loader, opts: Options, node: Node, key: str) -> None:
    auth = authorization(ld, node)
    if auth is not None:
        opts.auth = auth


def t_accounts(ld: Loader, opts: Options, node: Node, key: str) -> None:
    accounts(ld, node, opts)


def t_mappings(ld: Loader, opts: Options, node: Node, key: str) -> None:
    opts.mappings = mappings(ld, node)  # the global account's, as nats-server's


def t_tls(ld: Loader, opts: Options, node: Node, key: str) -> None:
    opts.tls = tls(ld, node)


def t_jetstream(ld: Loader, opts: Options, node: Node, key: str) -> None:
    jetstream(ld, node, opts)


def t_mqtt(ld: Loader, opts: Options, node: Node, key: str) -> None:
    mqtt(ld, node, opts.mqtt)


def t_websocket(ld: Loader, opts: Options, node: Node, key: str) -> None:
    websocket(ld, node, opts.websocket)


def t_leafnodes(ld: Loader, opts: Options, node: Node, key: str) -> None:
    leafnodes(ld, node, opts)


_TOP: dict[str, Handler] = {
    "listen": store_listen("host", "port"),
    "port": store("port", Loader.port),
    "host": store("host", Loader.str_),
    "net": store("host", Loader.str_),
    "server_name": t_server_name,
    "http": store_listen("http_host", "http_port"),
    "https": store_listen("http_host", "https_port"),
    "http_port": store("http_port", Loader.port),
    "monitor_port": store("http_port", Loader.port),
    "https_port": store("https_port", Loader.port),
    "http_base_path": store("http_base_path", Loader.str_),
    "max_payload": t_max_payload,
    "max_control_line": t_max_control_line,
    "max_pending": store("max_pending", Loader.int_),
    "max_connections": store("max_connections", Loader.int_),
    "max_conn": store("max_connections", Loader.int_),
    "max_subscriptions": store("max_subscriptions", Loader.int_),
    "max_subs": store("max_subscriptions", Loader.int_),
    "max_closed_clients": store("max_closed_clients", Loader.int_),
    "ping_interval": t_ping_interval,
    "ping_max": store("ping_max", Loader.int_),
    "write_deadline": t_write_deadline,
    "busy_poll": t_busy_poll,
    "debug": store("debug", Loader.bool_),
    "trace": store("trace", Loader.bool_),
    "trace_verbose": t_trace_verbose,
    "max_traced_msg_len": store("max_traced_msg_len", Loader.int_),
    "lame_duck_duration": t_lame_duck_duration,
    "lame_duck_grace_period": t_lame_duck_grace_period,
    "logtime": store("logtime", Loader.bool_),
    "log_file": store("log_file", Loader.str_),
    "logfile": store("log_file", Loader.str_),
    "pid_file": store("pid_file", Loader.str_),
    "pidfile": store("pid_file", Loader.str_),
    "no_auth_user": store("no_auth_user", Loader.str_),
    # the system account (hybridbus.server.system): "$SYS" unless no_system_account
    "system_account": t_system_account,
    "system": t_system_account,
    "no_system_account": t_no_system_account,
    "no_system": t_no_system_account,
    "no_sys_acc": t_no_system_account,
    "server_tags": t_server_tags,
    "server_metadata": t_server_metadata,
    "store_dir": j_store_dir,
    "storedir": j_store_dir,
    # operator (JWT) mode (opts_operator.py)
    "operator": t_operator,
    "operators": t_operator,
    "root_operator": t_operator,
    "root_operators": t_operator,
    "resolver": t_resolver,
    "account_resolver": t_resolver,
    "accounts_resolver": t_resolver,
    "resolver_preload": t_resolver_preload,
    "resolver_pinned_accounts": t_pinned,
    "authorization": t_authorization,
    "accounts": t_accounts,
    "mappings": t_mappings,
    "maps": t_mappings,
    "tls": t_tls,
    "jetstream": t_jetstream,
    "mqtt": t_mqtt,
    "websocket": t_websocket,
    "ws": t_websocket,
    "leafnodes": t_leafnodes,
    "leaf": t_leafnodes,
}


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
    loader = Loader()
    opts = Options(config_file=path)
    loader.dispatch(nodes, opts, _TOP, UNSUPPORTED_TOP_LEVEL, REFUSED_TOP_LEVEL)
    if not loader.errors:
        check_operator(loader, opts, f"{path}:1:0")
    if not loader.errors:
        check_accounts(loader, opts, f"{path}:1:0")
    if not loader.errors:
        check_leafnodes(loader, opts, f"{path}:1:0")
    if loader.errors:
        raise ConfigError(loader.errors, loader.warnings)
    for name, target in (
        ("http_host", opts),
        ("mqtt.host", opts.mqtt),
        ("websocket.host", opts.websocket),
    ):
        if (id(target), name.rpartition(".")[2]) in loader.assigned:
            opts.hosts_from_config.add(name)
    opts.raw = to_plain(nodes)
    opts.config_digest = config_digest(opts.raw)
    return opts, loader.warnings


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
