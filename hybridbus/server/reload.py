"""Configuration reload (SIGHUP, `hybridbus reload`): what may change while running.

Users, passwords, permissions, limits, accounts and log levels take effect at once,
for connected clients too: each client's permissions are recomputed, and a client
whose user is gone, or now belongs to another account, is disconnected. Accounts
keep their subject space across a reload (an account still configured keeps its
Account and its subscriptions); their limits, exports and imports are replaced. Listeners, TLS and the store stay as they
were started; a change there is reported and waits for a restart. A config that
does not load leaves the running one in force.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import TYPE_CHECKING, Any

from hybridbus import log as hblog
from hybridbus.core import client as reasons
from hybridbus.core.account import GLOBAL_ACCOUNT, Account
from hybridbus.core.trace import retrace
from hybridbus.security import Security
from hybridbus.server import account_state

if TYPE_CHECKING:
    from hybridbus.options import Options
    from hybridbus.server.server import Server

log = logging.getLogger("hybridbus.server")

# Option paths that only a restart can change.
FIXED = (
    "host",
    "port",
    "http_host",
    "http_port",
    "https_port",
    "http_base_path",
    "tls",
    "jetstream",
    "mqtt.enabled",
    "mqtt.host",
    "mqtt.port",
    "mqtt.tls",
    # the leaf-node links and where MQTT state lives: a restart (docs/clustering.md)
    "leafnodes",
    "mqtt.js_domain",
    "mqtt.stream_replicas",
    "mqtt.consumer_replicas",
    "mqtt.consumer_memory_storage",
    "websocket",
    "server_name",
    "config_file",
    "system_account",
    "no_system_account",
)
# Bookkeeping, not settings.
IGNORED = ("raw", "config_digest", "overrides", "hosts_from_config")


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out: dict[str, Any] = {}
        for f in dataclasses.fields(value):
            out.update(_flatten(getattr(value, f.name), f"{prefix}{f.name}."))
        return out
    return {prefix[:-1]: value}


def _is_fixed(path: str) -> bool:
    return any(path == p or path.startswith(p + ".") for p in FIXED)


def diff_options(old: Options, new: Options) -> tuple[list[str], list[str]]:
    """(changed paths that apply now, changed paths that need a restart)."""
    a, b = _flatten(old), _flatten(new)
    changed, fixed = [], []
    for path in sorted(set(a) | set(b)):
        if path.split(".")[0] in IGNORED or a.get(path) == b.get(path):
            continue
        (fixed if _is_fixed(path) else changed).append(path)
    return changed, fixed


def _keep_fixed(old: Options, new: Options) -> None:
    """Copy every restart-only setting from the running options into `new`."""
    for name in ("host", "port", "http_host", "http_port", "https_port", "http_base_path"):
        setattr(new, name, getattr(old, name))
    new.tls = old.tls
    new.jetstream = old.jetstream
    new.websocket = old.websocket
    new.server_name = old.server_name
    new.config_file = old.config_file
    new.mqtt.enabled = old.mqtt.enabled
    new.mqtt.host = old.mqtt.host
    new.mqtt.port = old.mqtt.port
    new.mqtt.tls = old.mqtt.tls
    new.leafnodes = old.leafnodes
    for name in ("js_domain", "stream_replicas", "consumer_replicas", "consumer_memory_storage"):
        setattr(new.mqtt, name, getattr(old.mqtt, name))


def reload(server: Server) -> bool:
    """Load the config file again and apply it; False (and a log line) when refused."""
    from hybridbus.config import ConfigError
    from hybridbus.config.load import load_options, startup_errors

    old = server.options
    path = old.config_file
    if not path:
        log.error("Config reload failed: the server was started without a configuration file")
        return False
    try:
        new, warnings = load_options(path)
    except ConfigError as err:
        log.error(
            "Config reload failed, keeping the running configuration: %s", "; ".join(err.lines)
        )
        return False
    except OSError as err:
        log.error("Config reload failed, keeping the running configuration: %s", err)
        return False
    for warning in warnings:
        log.warning("%s", warning)
    for name, value in old.overrides.items():
        # command-line flags win over the file, on reload as at start
        target = new
        parts = name.split(".")
        for part in parts[:-1]:
            target = getattr(target, part)
        setattr(target, parts[-1], value)
    errors = startup_errors(new)
    if errors:
        log.error("Config reload failed, keeping the running configuration: %s", "; ".join(errors))
        return False
    changed, fixed = diff_options(old, new)
    for path_ in fixed:
        log.warning("Config reload: %s cannot change while running; restart to apply it", path_)
    _keep_fixed(old, new)
    new.overrides = dict(old.overrides)
    try:
        security = Security(new)
    except Exception as err:  # a bad certificate or hash must not take the server down
        log.error("Config reload failed, keeping the running configuration: %s", err)
        return False
    if (old.operator is None) != (new.operator is None):
        log.error("Config reload failed: operator (JWT) mode cannot be turned on or off; restart")
        return False
    server.options = new
    old_accounts = server.accounts  # operator mode keeps its JWT accounts (core/operator.py)
    _reload_accounts(server, new)
    if new.accounts:
        security.accounts = server.accounts
    server.security = security
    server.auth_required = security.auth_required
    for broker in account_state.brokers(server):  # $G's and every account's
        broker.options = new.mqtt
        if new.mqtt.sys_interval != old.mqtt.sys_interval:
            broker.sys_topics.reconfigure()
    hblog.configure(debug=new.debug, trace=new.trace, logtime=new.logtime, log_file=new.log_file)
    if new.trace != old.trace:
        retrace(list(server.clients.values()), new.trace)  # new connections: Server.register
    _apply_to_clients(server)
    if getattr(server, "operator", None) is not None:
        server.operator.reloaded(old_accounts)  # revocations, removed accounts, limits
    server.config_load_time = time.time()
    if changed:
        log.info("Reloaded server configuration: %s", ", ".join(changed))
    else:
        log.info("Reloaded server configuration: no changes")
    return True


def _reload_accounts(server: Server, new: Options) -> None:
    """The accounts of `new`, keeping the Account (sublist, connections) of each one
    still configured; imports are placed again from scratch (core/account.py)."""
    old = server.accounts
    server.imports.unwire(old)
    accounts = {GLOBAL_ACCOUNT: old[GLOBAL_ACCOUNT]}
    accounts[GLOBAL_ACCOUNT].set_mappings(new.mappings)  # the top-level mappings
    for opts in new.accounts:
        acc = old.get(opts.name) or Account(opts.name)
        acc.configure(opts)
        accounts[opts.name] = acc
    system = server.system
    if system is not None:  # the system account stays (an implicit $SYS too)
        accounts.setdefault(system.account.name, system.account)
    server.accounts = accounts
    server.imports.wire(accounts)
    if system is not None:
        system.wire_accounts()  # the new accounts' imports of the system services


def _apply_to_clients(server: Server) -> None:
    opts = server.options
    sec = server.security
    for client in list(server.clients.values()):
        parser = getattr(client, "parser", None)
        if client.conn_type == "nats" and parser is not None:
            parser.max_payload = opts.max_payload
            if 0 <= client.account.max_payload < opts.max_payload:
                parser.max_payload = client.account.max_payload
            parser.max_control_line = opts.max_control_line
        if sec.trust is not None:
            continue  # JWT logins: OperatorMode.reloaded checks them
        realm = sec.mqtt if client.conn_type == "mqtt" else sec.nats
        if getattr(client, "ws", False):
            realm = sec.mqtt_ws if client.conn_type == "mqtt" else sec.websocket
        name = client.user
        if name:
            entry = sec.users.get(name) or realm.lookup(name)
            if entry is None:
                log.info(
                    "%s:%d - cid:%d - user %r removed by reload; disconnecting",
                    client.ip,
                    client.port,
                    client.cid,
                    name,
                )
                client.close(reasons.AUTH_FAILURE, client.auth_revoked_notice())
                continue
            account = getattr(entry, "account", None) or GLOBAL_ACCOUNT
            if account != client.account.name:
                log.info(
                    "%s:%d - cid:%d - user %r moved to account %s by reload; disconnecting",
                    client.ip,
                    client.port,
                    client.cid,
                    name,
                    account,
                )
                client.close(reasons.AUTH_FAILURE, client.auth_revoked_notice())
                continue
            client.perms = entry.perms.for_client() if entry.perms is not None else None
        elif realm.required and not realm.no_auth_user:
            log.info(
                "%s:%d - cid:%d - anonymous client no longer allowed; disconnecting",
                client.ip,
                client.port,
                client.cid,
            )
            client.close(reasons.AUTH_FAILURE, client.auth_revoked_notice())
        else:
            perms = realm.default_perms
            client.perms = perms.for_client() if perms is not None else None
    server.flush()
