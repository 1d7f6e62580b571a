"""Per-account MQTT and JetStream state: each account its own broker, engine and store.

Theory of operation
-------------------
An account is its own subject space for NATS (core/account.py) and MQTT alike, so its
MQTT state (sessions by client id, retained messages, wills, QoS 1/2 stores) and its
JetStream (streams, consumers, KV buckets) are its own too:

* ``$G`` keeps what a server without accounts has: ``server.mqtt``, ``server.jetstream``
  and ``server.store`` (``store_dir``'s streams, unchanged, so existing stores keep
  working). They are also ``global_account.mqtt`` / ``.jetstream`` / ``.store``.
* Another account's state lives in a store of its own, ``<store_dir>/accounts/<name>/``
  (a memory store when the server has no store directory), as nats-server keeps each
  account's JetStream in a directory of its own: its ``$MQTT_*`` streams and its user
  streams sit together, and stream names never collide across accounts.
* The account's ``MqttBroker`` is made at its first MQTT CONNECT (``mqtt_broker``), or
  at start when its store directory exists (its sessions come back, offline, with their
  queues and subscriptions); its ``JetStream`` engine at start when its block enables
  JetStream (``jetstream: enabled`` or ``jetstream { max_mem ... }``).

Cost: a server with only ``$G`` pays one attribute read per read (``Server.flush``
checks ``_accounts_live``, empty) and one per MQTT CONNECT (``account.mqtt``); the
message path reads the session's own broker (``session.broker``) as before it read
``server.mqtt``.
"""

from __future__ import annotations

import json
import logging
import os
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from hybridbus.jetstream.api import API_PREFIX, not_enabled_answer
from hybridbus.jetstream.engine import JetStream
from hybridbus.mqtt.broker import MqttBroker
from hybridbus.mqtt.persistence import Persistence
from hybridbus.router.sublist import Subscription
from hybridbus.server.startup import StartError
from hybridbus.store import StoreError, open_store

if TYPE_CHECKING:
    from hybridbus.core.account import Account
    from hybridbus.options import AccountOptions
    from hybridbus.server.server import Server

log = logging.getLogger("hybridbus.server")

ACCOUNTS_DIR = "accounts"


def account_dir(server: Server, account: Account) -> str | None:
    """``<store_dir>/accounts/<name>``, or None without a store directory. A name that
    is no plain file name (``/``, a leading dot, ...) is percent-encoded."""
    js = server.options.jetstream
    if not js.enabled or not js.store_dir:
        return None
    name = quote(account.name, safe="")
    if name.startswith("."):
        name = "%2E" + name[1:]
    return os.path.join(js.store_dir, ACCOUNTS_DIR, name)


def _limits(server: Server, account: Account) -> tuple[int, int]:
    """The account store's memory and file limits: the account's JetStream limits when
    set, else the server's."""
    js = server.options.jetstream
    opts = account.options
    mem = opts.js_max_memory if opts is not None else -1
    disk = opts.js_max_file if opts is not None else -1
    return (mem if mem >= 0 else js.max_memory_store, disk if disk >= 0 else js.max_file_store)


def account_store(server: Server, account: Account) -> Any:
    """The account's store, opened (and recovered) on first use; raises StoreError or
    OSError when it cannot be opened (its directory in use, a disk error)."""
    if account.store is not None:
        return account.store
    js = server.options.jetstream
    directory = account_dir(server, account)
    max_mem, max_file = _limits(server, account)
    if directory is not None:
        os.makedirs(directory, exist_ok=True)
    account.store = open_store(
        directory,
        sync_interval=js.sync_interval,
        sync_always=js.sync_always,
        max_memory=max_mem,
        max_file=max_file,
    )
    if directory is not None:
        log.info("Store of account %s in %s", account.name, os.path.abspath(directory))
    _live(server, account)
    return account.store


def mqtt_broker(server: Server, account: Account) -> MqttBroker | None:
    """The account's MQTT broker, made (and its state restored) on first use; None
    when its store cannot be opened (the CONNECT is refused, logged here)."""
    if account.mqtt is not None:
        return account.mqtt
    try:
        store = account_store(server, account)
        broker = MqttBroker(server, server.options.mqtt, Persistence(store), account)
        broker.restore()
    except (StoreError, OSError) as err:
        log.error("MQTT state of account %s cannot be opened: %s", account.name, err)
        return None
    account.mqtt = broker
    broker.start()
    js = account.jetstream
    if js is not None and js.started:
        from hybridbus.jetstream import retained_kv

        retained_kv.start(js)  # mqtt.retained_kv in this account's JetStream
    return broker


def jetstream_enabled(account: Account) -> bool:
    opts = account.options
    return bool(opts is not None and opts.jetstream)


def open_accounts(server: Server) -> None:
    """At start: the JetStream of every account whose block enables it, and the MQTT
    state of every account whose store directory holds some (its sessions restored).
    A store that cannot be opened stops the start (as ``$G``'s does)."""
    for account in list(server.accounts.values()):
        if account is server.global_account:
            continue
        directory = account_dir(server, account)
        on_disk = directory is not None and os.path.isdir(directory)
        # nats-server: an account's JetStream needs the server's; without it the
        # account's API requests get no responders
        wants_js = jetstream_enabled(account) and server.options.jetstream.enabled
        try:
            if wants_js or on_disk:
                store = account_store(server, account)
            if on_disk and any(s.name.startswith("$MQTT_") for s in store.streams()):
                if mqtt_broker(server, account) is None:
                    raise StoreError(f"MQTT state of account {account.name} unreadable")
            if wants_js:
                start_jetstream(server, account)
            elif server.jetstream is not None and not _is_system(server, account):
                account.no_jetstream = NoJetStream(server, account)
        except (StoreError, OSError) as err:
            raise StartError(
                f"Could not open the store of account {account.name} "
                f"({os.path.abspath(directory or '.')}): {err}"
            ) from None
    operator = getattr(server, "operator", None)
    if operator is not None:
        # from now on, a claims update (or a reload) applies JWT accounts' JetStream
        operator.on_account = lambda account: apply_jetstream(server, account)


def apply_jetstream(server: Server, account: Account) -> None:
    """Operator mode: make a JWT account's JetStream what its (new) JWT says, at once.
    Enabled: an engine (started, or its limits changed: the store's memory and file
    limits, max_streams, max_consumers and the rest; lowered below what is used, new streams and
    writes are refused, nothing is removed, as nats-server). Disabled (or the account
    gone): the engine stops, its streams stay in its store, and its API requests get
    10039 again (nats-server's DisableJetStream keeps the data too). A store that
    cannot be opened leaves the account without JetStream (logged)."""
    if server.jetstream is None or _is_system(server, account):
        return  # no JetStream on this server; the system account has none
    js = account.jetstream
    if not jetstream_enabled(account):
        if js is not None:
            js.stop()
            account.jetstream = None
            log.info("JetStream of account %s disabled", account.name)
        if account.no_jetstream is None:
            account.no_jetstream = NoJetStream(server, account)
        return
    if js is not None:
        set_engine_limits(js, account.options)
        account.store._limits["memory"], account.store._limits["file"] = _limits(server, account)
        return
    try:
        store = account_store(server, account)
    except (StoreError, OSError) as err:
        log.error("JetStream of account %s cannot start: %s", account.name, err)
        return
    store._limits["memory"], store._limits["file"] = _limits(server, account)
    if account.no_jetstream is not None:
        account.no_jetstream.stop()
        account.no_jetstream = None
    start_jetstream(server, account)
    log.info("JetStream of account %s enabled", account.name)


def set_engine_limits(js: JetStream, opts: AccountOptions) -> None:
    """The account's JetStream limits its engine checks (the store holds memory/file)."""
    js.max_streams = opts.js_max_streams
    js.max_consumers = opts.js_max_consumers
    js.max_ack_pending = opts.js_max_ack_pending
    js.max_bytes_required = opts.js_max_bytes_required
    js.mem_max_stream_bytes = opts.js_mem_max_stream_bytes
    js.disk_max_stream_bytes = opts.js_disk_max_stream_bytes


def start_jetstream(server: Server, account: Account) -> JetStream:
    """The account's own engine over its store, subscribed in its sublist."""
    js = JetStream(server, account_store(server, account), account)
    set_engine_limits(js, account.options)
    account.jetstream = js
    js.start()
    _live(server, account)
    return js


class NoJetStream:
    """The answer of a server with JetStream to an account without it: each API
    request gets 503 10039 'JetStream not enabled for account' in its response type
    (as nats-server 2.15.1 answers), instead of no responders."""

    kind = "jetstream"  # an internal client (mappings leave its replies alone)
    echo = False
    closing = False
    cid = 0

    def __init__(self, server: Server, account: Account) -> None:
        self.server = server
        self.account = account
        self.sub = Subscription(API_PREFIX + ">", None, self, 0)
        account.sublist.insert(self.sub)

    def deliver(self, sub, subject, reply, headers, payload, mqtt_msg=None) -> None:
        if reply:  # routed after the round: Server.route is not re-entrant
            self.server.after_round(self._answer, (subject, reply))

    def deliver_batch(self, sub, subject: str, payloads: list) -> None:
        pass  # a run has no replies

    def stop(self) -> None:
        self.account.sublist.remove(self.sub)

    def _answer(self, item: tuple) -> None:
        subject, reply = item
        body = not_enabled_answer(subject)
        if body is not None:
            data = json.dumps(body, separators=(",", ":")).encode()
            self.server.route(self, reply, None, None, data)


def _is_system(server: Server, account: Account) -> bool:
    """The system account ($SYS services, server/system.py): no JetStream answers."""
    system = getattr(server, "system", None)
    return system is not None and system.account is account


def _live(server: Server, account: Account) -> None:
    if account not in server._accounts_live:
        server._accounts_live.append(account)


def flush_accounts(server: Server) -> None:
    """Server.flush for the accounts with state: each engine's work of the read, then
    each MQTT store's end of read (a new ticket for the next PUBLISH)."""
    for account in server._accounts_live:
        js = account.jetstream
        if js is not None and js._work:
            js._run()
        broker = account.mqtt
        if broker is not None:
            broker.persistence.end_of_read()


def brokers(server: Server) -> list[MqttBroker]:
    """Every MQTT broker: $G's, then the accounts'."""
    out = [server.mqtt] if server.mqtt is not None else []
    out += [a.mqtt for a in server._accounts_live if a.mqtt is not None]
    return out


async def close_accounts(server: Server) -> None:
    """Shutdown: timers off, sessions and streams stay in the stores, which close."""
    for account in server._accounts_live:
        if account.mqtt is not None:
            account.mqtt.shutdown()
        if account.jetstream is not None:
            account.jetstream.stop()
        if account.store is not None:
            try:
                await account.store.close()
            except Exception:
                log.exception("closing the store of account %s failed", account.name)
