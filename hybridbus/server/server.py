"""The server: owns the options, the router, the listeners and every connection.

It is the one place that knows all clients, so it does the three jobs that
span them:

* ``route`` — match a subject in the router and hand the message to each
  receiver (one member per queue group). Receivers only append bytes.
* ``flush`` — write every receiver touched since the last flush, once. The
  protocol adapters call it at the end of each ``data_received``; anything
  else that delivers (timers, store callbacks) gets a flush scheduled.
* ``sweep`` — one periodic timer for every connection's pings, keep-alives
  and auth timeouts, instead of a timer per connection.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from collections import deque
from typing import Any

from hybridbus import NATS_COMPAT_VERSION, __version__
from hybridbus.core import account as acct
from hybridbus.core import client as reasons
from hybridbus.core.account import GLOBAL_ACCOUNT, Imports, build_accounts
from hybridbus.core.client import CONGESTED_OUTPUT, ClientBase
from hybridbus.core.flow import FANOUT_RUN, FANOUT_SLICE, RUN_WORK, STALL, TURN_BUDGET, WORK_CHECK
from hybridbus.core.operator import operator_mode
from hybridbus.core.trace import trace_connection
from hybridbus.jetstream.engine import JetStream
from hybridbus.monitor.http import start_monitor
from hybridbus.mqtt.broker import FLAP_DELAY, MqttBroker
from hybridbus.mqtt.connection import MqttConnection
from hybridbus.mqtt.persistence import Persistence
from hybridbus.nats.connection import NatsConnection, pick_member
from hybridbus.options import Options
from hybridbus.router.sublist import Sublist
from hybridbus.security import Security
from hybridbus.server import account_state
from hybridbus.server.busypoll import BusyPoll
from hybridbus.server.fanout import FanoutJob
from hybridbus.server.leafnodes import leaf_ready, start_leafnodes, stop_leafnodes
from hybridbus.server.route_each import route_acks, route_requests, route_tails, route_to_each
from hybridbus.server.startup import StartError, address, listen, listen_error, store_error
from hybridbus.server.state import (
    ClosedClient,
    ServerStats,
    describe_client,
    make_server_id,
    tune_gc,
)
from hybridbus.server.system import SystemAccount, system_account_for
from hybridbus.store import StoreError, open_store

log = logging.getLogger("hybridbus.server")

# "CPython 3.11.7", without importing `platform` (start-up time)
PYTHON = "{} {}.{}.{}".format(
    {"cpython": "CPython", "pypy": "PyPy"}.get(sys.implementation.name, sys.implementation.name),
    *sys.version_info[:3],
)


class Server:
    def __init__(self, options: Options) -> None:
        self.options = options
        self.server_id = make_server_id()
        self.server_name = options.server_name or self.server_id
        self.sublist = Sublist()
        # Accounts (core/account.py): $G owns self.sublist; a client routes in its own.
        self.accounts = build_accounts(options, self.sublist)
        self.global_account = self.accounts[GLOBAL_ACCOUNT]
        sys_acc = system_account_for(self)  # server/system.py: $SYS.> services, events
        self.system = SystemAccount(self, sys_acc) if sys_acc is not None else None
        self.imports = Imports(self)
        self.imports.wire(self.accounts)
        self._after_scheduled = False
        self.clients: dict[int, ClientBase] = {}
        self.lingering: set = set()  # closed with last words, still draining (core.client)
        self.stats = ServerStats()
        self.closed: deque[ClosedClient] = deque(maxlen=max(options.max_closed_clients, 0) or None)
        self.start_time = time.time()
        self.security = Security(options)
        if options.accounts:
            self.security.accounts = self.accounts
        # operator (JWT) mode: accounts from JWTs, logins that end, claims updates
        self.operator = operator_mode(self)
        # Both delivery paths (NatsConnection.deliver, Session.deliver) ask
        # perms.may_receive, so wildcard subscriptions overlapping a deny rule are allowed.
        self.security.filter_deliveries = True
        self.auth_required = self.security.auth_required
        # TLS for NATS clients: INFO goes out in clear text, then the client upgrades
        # (as with nats-server), unless tls.handshake_first asks for TLS from byte one.
        self.nats_tls = self.security.server_context(options.tls)
        self.nats_port = 0
        self._next_cid = 0
        self._dirty: list[ClientBase] = []
        self._flush_scheduled = False
        self._expired: list[Any] = []
        self._listeners: list[asyncio.base_events.Server] = []
        self._sweeper: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._busy = BusyPoll(None)  # its loop once started
        self._stopped = asyncio.Event()
        self._ready = asyncio.Event()  # set once start() has opened everything
        self._quit = asyncio.Event()  # set when shutdown() begins (ends lame duck mode)
        self._shutting_down = False
        self.ldm = False  # lame duck mode (lameduck.py): INFO says "ldm": true
        self.route_seq = 0
        self.route_sessions: list = []
        # Flow control (core/flow.py): deliveries since the current read started or
        # last looked at the clock, when it started, and whose read it is.
        self.work = 0
        self.read_started = 0.0
        self.reading: ClientBase | None = None
        self.mqtt_port = 0
        self.websocket_port = 0
        self.mqtt_flap_delay = FLAP_DELAY
        self.store: Any = None
        self.monitor: Any = None
        self.config_load_time = self.start_time
        # traffic of closed connections per protocol: [in_msgs, in_bytes, out_msgs, out_bytes]
        self.closed_by_protocol: dict[str, list[int]] = {"nats": [0] * 4, "mqtt": [0] * 4}
        self.mqtt: MqttBroker | None = None
        self._persistence: Any = None  # the MQTT broker's, once the store is open
        self.jetstream: JetStream | None = None  # with jetstream enabled (jetstream/)
        # Accounts other than $G with MQTT or JetStream state of their own (their broker,
        # engine and store: server/account_state.py); empty on a single-account server.
        self._accounts_live: list = []
        # leaf-node links (server/leafnodes.py): connected links (/leafz), their remotes
        self.leafnodes: list = []
        self.leaf_remotes: list = []

    # -- lifecycle --------------------------------------------------------------------

    async def start(self) -> None:
        """Open the store, then the listeners and monitoring. What stops the start is
        a StartError (startup.py) that names it; what was opened is closed again."""
        self._loop = asyncio.get_running_loop()
        self._busy = BusyPoll(self._loop)
        opts = self.options
        log.info("Starting hybridbus %s", __version__)
        log.info(
            "  Version:  %s (NATS protocol compatible with %s)", __version__, NATS_COMPAT_VERSION
        )
        log.info("  Python:   %s", PYTHON)
        log.info("  ID:       %s", self.server_id)
        if opts.config_file:
            log.info("Using configuration file: %s", opts.config_file)
        try:
            # The store first: a store directory in use stops us before any port opens.
            self._open_store()
            await self._open_listeners()
            if opts.leafnodes.remotes:
                start_leafnodes(self)
        except StartError:
            await self._close_after_failed_start()
            raise
        if self.system is not None:
            self.system.start()
        log.info("Server is ready")
        self._ready.set()
        self._schedule_sweep()

    async def _open_listeners(self) -> None:
        loop = self._loop
        opts = self.options
        tls_first = self.nats_tls is not None and opts.tls.handshake_first
        listener = await listen(
            loop,
            "nats",
            lambda: NatsConnection(self),
            opts.host,
            opts.port,
            backlog=1024,
            ssl=self.nats_tls if tls_first else None,
            ssl_handshake_timeout=opts.tls.timeout if tls_first else None,
        )
        self._listeners.append(listener)
        self.nats_port = listener.sockets[0].getsockname()[1]
        log.info("Listening for client connections on %s", address(opts.host, self.nats_port))
        if opts.mqtt.enabled:
            mqtt_tls = self.security.server_context(opts.mqtt.tls)
            listener = await listen(
                loop,
                "mqtt",
                lambda: MqttConnection(self),
                opts.mqtt.host,
                opts.mqtt.port,
                backlog=1024,
                ssl=mqtt_tls,
                ssl_handshake_timeout=opts.mqtt.tls.timeout if mqtt_tls else None,
            )
            self._listeners.append(listener)
            self.mqtt_port = listener.sockets[0].getsockname()[1]
            scheme = "mqtts" if mqtt_tls else "mqtt"
            where = address(opts.mqtt.host, self.mqtt_port)
            log.info("Listening for MQTT clients on %s://%s", scheme, where)
        if opts.websocket.enabled:
            from hybridbus.server.websocket import WebSocketConnection

            ws = opts.websocket
            ws_tls = None if ws.no_tls else self.security.server_context(ws.tls)
            listener = await listen(
                loop,
                "websocket",
                lambda: WebSocketConnection(self),
                ws.host,
                ws.port,
                backlog=1024,
                ssl=ws_tls,
                ssl_handshake_timeout=ws.tls.timeout if ws_tls else None,
            )
            self._listeners.append(listener)
            self.websocket_port = listener.sockets[0].getsockname()[1]
            scheme = "wss" if ws_tls else "ws"
            where = address(ws.host, self.websocket_port)
            log.info("Listening for websocket clients on %s://%s", scheme, where)
        try:
            self.monitor = await start_monitor(self)
        except OSError as err:
            name, port = ("https", opts.https_port) if opts.https_port else ("http", opts.http_port)
            raise listen_error(name, opts.http_host, port, err) from None

    async def _close_after_failed_start(self) -> None:
        for listener in self._listeners:
            listener.close()
        if self.monitor is not None:
            await self.monitor.close()
        if self.mqtt is not None:
            self.mqtt.shutdown()
        if self.jetstream is not None:
            self.jetstream.stop()
        await account_state.close_accounts(self)
        if self.store is not None:
            await self.store.close()

    async def lame_duck(self) -> None:
        """Lame duck mode (SIGUSR2): see lameduck.py. Returns once the server stopped."""
        from hybridbus.server.lameduck import lame_duck

        await lame_duck(self)

    def stop_accepting(self) -> None:
        """Close the client listeners (NATS, MQTT, WebSocket); monitoring stays."""
        for listener in self._listeners:
            listener.close()

    def is_shutting_down(self) -> bool:
        return self._shutting_down

    async def wait_ready(self) -> None:
        await self._ready.wait()

    async def leaf_ready(self, timeout: float) -> bool:  # every remote linked
        return await leaf_ready(self, timeout)

    async def quit_within(self, seconds: float) -> bool:
        """Wait `seconds`; True as soon as a shutdown starts instead."""
        try:
            await asyncio.wait_for(self._quit.wait(), seconds)
        except TimeoutError:
            return False
        return True

    async def shutdown(self) -> None:
        """Stop accepting, flush and close every client, then release the rest."""
        if self._shutting_down:
            await self._stopped.wait()
            return
        self._shutting_down = True
        self._quit.set()
        log.info("Initiating Shutdown...")
        for listener in self._listeners:
            listener.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self.system is not None:
            self.system.stop()
        await stop_leafnodes(self)
        for client in list(self.clients.values()):
            client.shutdown()
        # Give transports a moment to drain what was queued; a lingering one only
        # until its last words are with the kernel (not until its peer closes).
        deadline = time.monotonic() + 2.0
        while (self.clients or any(t.unsent() for t in self.lingering)) and (
            time.monotonic() < deadline
        ):
            await asyncio.sleep(0.01)
        for client in list(self.clients.values()):
            client.abort(reasons.SERVER_SHUTDOWN)
        for linger in list(self.lingering):
            linger.give_up()
        for listener in self._listeners:
            try:
                await asyncio.wait_for(listener.wait_closed(), 1.0)
            except TimeoutError:
                pass
        if self.monitor is not None:
            await self.monitor.close()
        if self.mqtt is not None:
            self.mqtt.shutdown()
        await account_state.close_accounts(self)
        if self.store is not None:
            try:
                await self.store.close()
            except Exception:
                log.exception("closing the store failed")
        log.info("Server Exiting..")
        self._stopped.set()

    def reload(self) -> bool:
        """Re-read the config file (SIGHUP); see reload.py for what may change."""
        from hybridbus.server.reload import reload

        return reload(self)

    def _open_store(self) -> None:
        """Open the stream store (recovering what is on disk) and the MQTT state in it."""
        js = self.options.jetstream
        store_dir = js.store_dir if js.enabled else None
        started = time.monotonic()
        try:
            self.store = open_store(
                store_dir,
                sync_interval=js.sync_interval,
                sync_always=js.sync_always,
                max_memory=js.max_memory_store,
                max_file=js.max_file_store,
            )
        except (StoreError, OSError) as err:
            raise store_error(os.path.abspath(store_dir or "."), err) from None
        if store_dir:
            log.info(
                "Store in %s (sync %s), opened in %.3fs",
                os.path.abspath(store_dir),
                "always" if js.sync_always else f"every {js.sync_interval:g}s",
                time.monotonic() - started,
            )
        rep = getattr(self.store, "recovery", None)
        if rep:
            log.debug(
                "Store recovery read %d records; %d bytes cut, %d indexes rebuilt",
                rep["records"],
                rep["bytes_cut"],
                rep["index_rebuilt"],
            )
        if self.options.mqtt.js_domain:
            # MQTT state in that JetStream domain, over the leaf link (or a local engine
            # of that domain): several nodes share the sessions (mqtt/jspersist.py).
            from hybridbus.mqtt.jspersist import JetStreamPersistence

            persistence = JetStreamPersistence(self, self.global_account)
        else:
            persistence = Persistence(self.store)
        self.mqtt = MqttBroker(self, self.options.mqtt, persistence)
        self._persistence = self.mqtt.persistence
        self.mqtt.restore()
        self.mqtt.start()
        gacc = self.global_account
        gacc.mqtt, gacc.store = self.mqtt, self.store
        if js.enabled:
            # The JetStream API ($JS.API.>, stream capture, consumers) over the same store,
            # in $G (an account's own: account_state.py).
            self.jetstream = gacc.jetstream = JetStream(self, self.store, gacc)
            self.jetstream.start()
        account_state.open_accounts(self)  # the other accounts' state on disk, JetStream
        tune_gc()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def schedule_flush(self) -> None:
        if not self._flush_scheduled and self._dirty:
            self._flush_scheduled = True
            self._loop.call_soon(self.flush)

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

    # -- clients ----------------------------------------------------------------------

    def register(self, client: ClientBase) -> None:
        self._next_cid += 1
        client.cid = self._next_cid
        self.clients[client.cid] = client
        self.stats.total_connections += 1
        client.account.nconns += 1
        client.account.total_conns += 1
        if self.options.trace:
            # Traced or not is decided here, once per connection: the message path
            # never asks (core/trace.py).
            trace_connection(client, True)

    def unregister(self, client: ClientBase) -> None:
        if self.clients.pop(client.cid, None) is None:
            return
        totals = self.closed_by_protocol.setdefault(client.conn_type, [0] * 4)
        totals[0] += client.in_msgs
        totals[1] += client.in_bytes
        totals[2] += client.out_msgs
        totals[3] += client.out_bytes
        account = client.account
        account.nconns -= 1
        traffic = account.closed_traffic
        traffic[0] += client.in_msgs
        traffic[1] += client.in_bytes
        traffic[2] += client.out_msgs
        traffic[3] += client.out_bytes
        if self.system is not None:
            self.system.client_closed(client)  # $SYS.ACCOUNT.<acc>.DISCONNECT
        if self.closed.maxlen != 0:
            self.closed.append(
                ClosedClient(self.describe(client), time.time(), client.close_reason or "")
            )

    def join_account(self, client: ClientBase) -> bool:  # core/account.py join_account
        return acct.join_account(client, self.global_account)

    def client_connected(self, client: ClientBase) -> None:  # its CONNECT was accepted
        if self.system is not None:
            self.system.client_connected(client)  # $SYS.ACCOUNT.<acc>.CONNECT

    def over_connection_limit(self) -> bool:
        limit = self.options.max_connections
        return limit <= 0 or len(self.clients) > limit

    def client_info(self, client: ClientBase) -> dict:
        """The INFO a NATS client receives (nats-conventions §4.2)."""
        opts = self.options
        info: dict[str, Any] = {
            "server_id": self.server_id,
            "server_name": self.server_name,
            "version": NATS_COMPAT_VERSION,
            "proto": 1,
            "go": f"hybridbus {__version__} ({PYTHON})",
            "host": opts.host,
            "port": self.nats_port,
            "headers": True,
            "max_payload": opts.max_payload,
            "client_id": client.cid,
            "client_ip": client.ip,
        }
        if self.auth_required:
            info["auth_required"] = True
            nonce = getattr(client, "nonce", None)
            if nonce and not getattr(client, "connected", False):
                info["nonce"] = nonce  # for an nkey user to sign (security/nkey.py)
        if self.ldm:
            info["ldm"] = True
        if self.nats_tls is not None and not client.ws:
            # A websocket's TLS is the listener's (wss://), never STARTTLS after INFO.
            info["tls_required"] = True
            if opts.tls.verify or opts.tls.verify_and_map:
                info["tls_verify"] = True
        return info

    @staticmethod
    def describe(client: ClientBase) -> dict:
        """A snapshot of a client for monitoring (kept for closed connections)."""
        return describe_client(client)

    # -- security hooks (filled in by the auth module) --------------------------------

    def authenticate(self, client: ClientBase, connect: dict) -> str | None:
        """NATS CONNECT credentials -> user name ("" anonymous), or None to refuse."""
        return self.security.authenticate_nats(client, connect)

    def authenticate_mqtt(
        self, client: ClientBase, username: str | None, password: bytes | None
    ) -> str | None:
        return self.security.authenticate_mqtt(client, username, password)

    def mqtt_broker(self, account: Any) -> Any:
        """The MQTT broker of an account other than $G, made on first use; None when
        its store cannot be opened (account_state.py)."""
        return account_state.mqtt_broker(self, account)

    def may_publish(self, client: ClientBase, subject: str, reply: str | None) -> bool:
        return self.security.may_publish(client, subject, reply)

    def may_subscribe(self, client: ClientBase, subject: str, queue: str | None) -> bool:
        return self.security.may_subscribe(client, subject, queue)

    # -- routing ----------------------------------------------------------------------

    def route(
        self,
        origin: ClientBase | None,
        subject: str,
        reply: str | None,
        headers: bytes | None,
        payload: bytes,
        mqtt_msg: Any = None,
    ) -> int:
        """Deliver one message to every matching receiver; returns how many got it.

        `mqtt_msg`: the MqttMessage of an MQTT publish (None for NATS); MQTT sessions send one
        copy after the loop (mqtt/session.py); past FANOUT_SLICE receivers, a slice per turn
        (core/flow.py). In the publisher's account, after its mappings (core/account.py)."""
        self.route_seq += 1
        acc = self.global_account if origin is None else origin.account
        if acc.mappings is not None:
            subject, mqtt_msg = acct.mapped(self, origin, subject, reply, mqtt_msg)
            if not subject:
                return 0  # dropped by a weighted mapping, or the mapped subject is denied
        result = acc.sublist.match(subject)
        plain = result.plain
        count = len(plain)
        self.work += count
        if count > FANOUT_SLICE:
            return self._route_sliced(origin, subject, reply, headers, payload, mqtt_msg, result)
        count = 0
        for sub in plain:
            client = sub.client
            if client is origin and not origin.echo:
                continue
            client.deliver(sub, subject, reply, headers, payload, mqtt_msg)
            count += 1
        if result.queues:
            count += self._route_queues(
                result.queues, origin, subject, reply, headers, payload, mqtt_msg
            )
        if self.route_sessions:
            sessions, self.route_sessions = self.route_sessions, []
            for session in sessions:
                session.deliver_matched(subject, reply, headers, payload, mqtt_msg)
        if self._expired:
            self._remove_expired()
        return count

    def route_to(
        self,
        origin: Any,
        inbox: str,
        subject: str,
        reply: str | None,
        headers: bytes | None,
        payload: bytes,
        queue_group: str | None = None,
    ) -> int:
        """Deliver to the receivers of ``inbox`` a message shown as ``subject`` (a
        JetStream consumer's delivery: matched on its deliver subject or pull inbox,
        seen with the stream's subject). With ``queue_group`` only one member of that
        group gets it; otherwise every plain receiver and one member per group."""
        self.route_seq += 1
        # in the sender's account (a JetStream engine's: its `account`)
        result = (self.sublist if origin is None else origin.account.sublist).match(inbox)
        count = 0
        if queue_group is None:
            for sub in result.plain:
                sub.client.deliver(sub, subject, reply, headers, payload, None)
                count += 1
        for group in result.queues:
            if queue_group is not None and group[0].queue != queue_group:
                continue
            sub = pick_member(group, origin)
            if sub is not None:
                sub.client.deliver(sub, subject, reply, headers, payload, None)
                count += 1
        if self.route_sessions:
            sessions, self.route_sessions = self.route_sessions, []
            for session in sessions:
                session.deliver_matched(subject, reply, headers, payload, None)
        if self._expired:
            self._remove_expired()
        return count

    route_to_each = route_to_each  # route_to for a batch (server/route_each.py)
    route_acks = route_acks  # route for a read's JetStream acks (server/route_each.py)
    route_requests = route_requests  # route for a run of requests (server/route_each.py)
    route_tails = route_tails  # route_to_each for encoded MSG tails (server/route_each.py)

    def _route_queues(self, queues, origin, subject, reply, headers, payload, mqtt_msg) -> int:
        count = 0
        if getattr(origin, "is_leaf", False):
            # From a hub: only the groups it names (nats-server processMsgResults).
            names = origin.msg_queues
            queues = [g for g in queues if g[0].queue in names] if names else ()
        for group in queues:
            sub = pick_member(group, origin)
            if sub is not None:
                sub.client.deliver(sub, subject, reply, headers, payload, mqtt_msg)
                count += 1
        return count

    def _route_sliced(self, origin, subject, reply, headers, payload, mqtt_msg, result) -> int:
        """A fan-out too big for one turn of the loop: queue groups now, then the
        plain receivers a slice at a time (FanoutJob)."""
        count = len(result.plain)
        if result.queues:
            count += self._route_queues(
                result.queues, origin, subject, reply, headers, payload, mqtt_msg
            )
        job = FanoutJob(self, origin, subject, reply, headers, payload, mqtt_msg)
        # A copy: the cached result may change (subscribe/unsubscribe) between slices.
        job.start(list(result.plain))
        if self._expired:
            self._remove_expired()
        return count

    def route_run(
        self, origin: Any, subject: str, payloads: list[bytes], msgs: list | None = None
    ) -> int:
        """Deliver a run of messages that one client published to one subject, with
        no reply and no headers, in order: the same result as `route` for each, with
        one match and one call per receiver. A busy publisher sends such runs (a read
        holds hundreds of messages to one subject). Routes at most RUN_WORK
        deliveries' worth of the run (at least one message) and returns how many
        messages it routed: the caller's read loop routes the rest after its check of
        the turn's budget (core/flow.py).

        `msgs` are the MqttMessages when an MQTT session published the run (at one
        QoS, none retained, none with properties: MqttBroker.publish_run); each MQTT
        session then collects its matching subscriptions once and sends every
        message (Session.deliver_matched_run). A NATS run reaches MQTT sessions one
        message at a time (each needs its own MqttMessage). A result with queue
        groups (a member is picked per message) or a NATS client with two matching
        subscriptions (its copies interleave per message) also takes the
        per-message path (SublistResult.runs)."""
        acc = self.global_account if origin is None else origin.account
        result = acc.sublist.match(subject)
        receivers = len(result.plain) + len(result.queues)
        batchable = (result.runs if msgs is not None else result.batchable) and acc.mappings is None
        if receivers > FANOUT_SLICE and batchable:
            # Thousands of receivers: a job serves a run of messages to each in one
            # write per receiver and slice (FanoutJob), instead of one message a job.
            take = min(len(payloads), FANOUT_RUN)
            self.route_seq += 1
            self.work += receivers
            job = FanoutJob(self, origin, subject, None, None, None, None)
            job.start_run(
                list(result.plain), payloads[:take], None if msgs is None else msgs[:take]
            )
            return take
        if receivers * len(payloads) > RUN_WORK:
            take = max(1, RUN_WORK // max(receivers, 1))
            payloads = payloads[:take]
            if msgs is not None:
                msgs = msgs[:take]
        if receivers > FANOUT_SLICE or not batchable:
            # One at a time; a fan-out job holding the reader ends the run here, so
            # that the next message waits for it (core/flow.py).
            route = self.route
            reader = self.reading
            routed = 0
            for payload in payloads:
                route(origin, subject, None, None, payload, None if msgs is None else msgs[routed])
                routed += 1
                if reader is not None and reader.holds:
                    break
            return routed
        self.route_seq += 1
        self.work += receivers * len(payloads)
        for sub in result.plain:
            client = sub.client
            if client is origin and not origin.echo:
                continue
            if sub.batchable:
                client.deliver_batch(sub, subject, payloads)
            else:
                # An MQTT session: this only notes the subscription (Session.deliver).
                client.deliver(sub, subject, None, None, payloads[0], msgs[0])
        if self.route_sessions:
            sessions, self.route_sessions = self.route_sessions, []
            for session in sessions:
                session.deliver_matched_run(msgs)
        if self._expired:
            self._remove_expired()
        return len(payloads)

    def must_yield(self, reader: ClientBase) -> bool:
        """Called by a read loop once `work` reaches WORK_CHECK: whether the rest of the
        read must wait for a later turn of the loop (core/flow.py)."""
        if reader.holds:
            return True  # a fan-out job or a congested receiver holds this reader
        if time.perf_counter() - self.read_started < TURN_BUDGET:
            self.work = 0
            return False
        reader.hold_input()
        self._loop.call_soon(reader.release_input)
        return True

    def note_congested(self, receiver: ClientBase, flag: int) -> None:
        """`receiver` owes too much: the connection whose read fed it stops reading
        until it drains (ClientBase.decongest). Unsent bytes hold it for STALL at
        most, as nats-server stalls a producer: a receiver that stops reading must
        not stop its publishers, and is cut once over max_pending. Queued MQTT QoS
        1/2 messages hold it until they drain, since they are never dropped while the
        session is online; a receiver stuck past write_deadline is cut (_sweep)."""
        reader = self.reading
        if reader is None or reader is receiver or reader.closing:
            return
        waiters = receiver.waiters
        if waiters is None:
            waiters = receiver.waiters = []
        elif reader in waiters:
            return
        waiters.append(reader)
        reader.hold_input()
        self.work = WORK_CHECK  # its read loop looks at once, and stops
        if flag == CONGESTED_OUTPUT:
            self._loop.call_later(STALL, self._unstall, receiver, reader)

    @staticmethod
    def _unstall(receiver: ClientBase, reader: ClientBase) -> None:
        waiters = receiver.waiters
        if waiters and reader in waiters:
            waiters.remove(reader)
            reader.release_input()

    def expire(self, sub: Any) -> None:
        """A subscription reached its auto-unsubscribe limit; removed after the route loop."""
        self._expired.append((sub.client._drop_sub, sub))

    def after_round(self, fn: Any, arg: Any) -> None:
        """Run ``fn(arg)`` after the delivery round (an import's hop, core/account.py);
        the call_soon covers deliveries outside a route (a fan-out job's slices)."""
        self._expired.append((fn, arg))
        if not self._after_scheduled:
            self._after_scheduled = True
            self._loop.call_soon(self._after_soon)

    def _after_soon(self) -> None:
        self._after_scheduled = False
        if self._expired:
            self._remove_expired()
            self.flush()

    def _remove_expired(self) -> None:  # auto-unsubscribes and after_round work
        expired, self._expired = self._expired, []
        for fn, arg in expired:
            fn(arg)

    # -- output -----------------------------------------------------------------------

    def mark_dirty(self, client: ClientBase) -> None:
        client.dirty = True
        self._dirty.append(client)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self.flush)

    def flush(self) -> None:
        """Write every client with queued bytes, once each. Called at the end of
        every read, so it also closes the MQTT store's per-read batch."""
        self._flush_scheduled = False
        js = self.jetstream
        if js is not None and js._work:
            # The read's JetStream work (API replies, deliveries) goes out with this
            # flush, not a loop turn later; flush never runs inside Server.route.
            js._run()
        if self._persistence is not None:
            self._persistence.end_of_read()
        if self._accounts_live:
            account_state.flush_accounts(self)  # the other accounts' engines and stores
        dirty = self._dirty
        if not dirty:
            return
        self._dirty = []
        for client in dirty:
            client.write_now()
        self._busy.after_write(self.options.busy_poll)  # server/busypoll.py

    # -- timers -----------------------------------------------------------------------

    def _sweep_period(self) -> float:
        return max(0.05, min(1.0, self.options.ping_interval / 4, self.options.auth.timeout / 4))

    def _schedule_sweep(self) -> None:
        self._sweeper = self._loop.call_later(self._sweep_period(), self._sweep)

    def _sweep(self) -> None:
        now = time.monotonic()
        deadline = now - self.options.write_deadline
        for client in list(self.clients.values()):
            try:
                if client.congested and client.congested_since < deadline:
                    # Owed more than it takes for write_deadline: stuck, not slow.
                    client.slow_consumer(
                        reasons.SLOW_CONSUMER_DEADLINE,
                        f"congested for over {self.options.write_deadline:g}s",
                    )
                    continue
                client.sweep(now)
            except Exception:  # one broken client must not stop the sweep for all
                log.exception("sweep failed for cid %d", client.cid)
        self.flush()
        self._schedule_sweep()
