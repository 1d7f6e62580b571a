"""The server as the protocols see it: the one named interface they may use.

The protocol packages (``hybridbus.mqtt``, ``hybridbus.nats``) never import
``hybridbus.server``; ``Server`` builds their connections and hands itself in
as a ``Hub``. Everything a connection or the MQTT broker asks of the server is
listed here, so a change to the server's internals that keeps this list keeps
the protocols working, and a new protocol (the leaf-node link, the JetStream
API) knows exactly what it can lean on.

It is a ``typing.Protocol``: nothing inherits from it and it costs nothing at
run time; it exists for readers and type checkers.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from collections.abc import Sequence

    from hybridbus.core.client import ClientBase
    from hybridbus.options import Options
    from hybridbus.router.sublist import Sublist
    from hybridbus.security import Security


class Hub(Protocol):
    # -- what the server owns, read by the protocols ---------------------------------
    options: Options
    sublist: Sublist  # the global account's ($G) subject router (insert/remove/match)
    # Accounts (core/account.py): a client routes and subscribes in
    # client.account.sublist; $G's sublist is `sublist`.
    global_account: Any
    accounts: dict[str, Any]
    security: Security  # authentication and permissions for both protocols
    stats: Any  # ServerStats: server-wide counters the protocols bump
    auth_required: bool
    nats_tls: ssl.SSLContext | None  # TLS a NATS client upgrades to after INFO
    # $G's MqttBroker (sessions, retained, wills) and JetStream engine (None when
    # disabled). Another account's are account.mqtt / account.jetstream
    # (server/account_state.py): an MQTT connection uses its session's broker
    # (session.broker), and a JetStream engine routes in its `account`.
    mqtt: Any
    jetstream: Any
    mqtt_flap_delay: float  # how long a refused MQTT CONNECT waits before its answer
    # Transports of closed connections still draining after their last words
    # (ClientBase.close, _Linger); shutdown waits for their output, then drops them.
    lingering: set
    start_time: float  # time.time() at start ($SYS/broker/uptime)
    # Lame duck mode (server/lameduck.py): the server is closing its clients one by
    # one; MQTT 5 clients are then pointed at mqtt.server_reference (0x9C) if set.
    ldm: bool
    # Traffic of closed connections per conn_type: [in_msgs, in_bytes, out_msgs,
    # out_bytes] ($SYS/broker/messages/..., bytes/...).
    closed_by_protocol: dict[str, list[int]]
    # The leaf-node remotes (leaf/remote.py LeafRemote: urls, connection, connects);
    # MQTT in a JetStream domain re-checks its sessions after a relink (connects moves).
    leaf_remotes: list

    # Delivery rounds: Server.route bumps route_seq once per message; an MQTT
    # session that matched appends itself to route_sessions once per round.
    route_seq: int
    route_sessions: list

    # Flow control (core/flow.py): deliveries since the current read started (or the
    # clock was last read), when it started, and whose read it is. A read loop sets
    # them, asks must_yield once `work` reaches WORK_CHECK, and clears `reading`.
    work: int
    read_started: float
    reading: ClientBase | None

    @property
    def loop(self) -> asyncio.AbstractEventLoop: ...

    # -- connections -----------------------------------------------------------------
    def register(self, client: ClientBase) -> None: ...
    def unregister(self, client: ClientBase) -> None: ...
    def over_connection_limit(self) -> bool: ...
    def join_account(self, client: ClientBase) -> bool: ...
    # An account's MQTT broker, made on first use (None: its store cannot be opened)
    def mqtt_broker(self, account: Any) -> Any: ...
    # A client's CONNECT was accepted (the system account announces it, server/system.py)
    def client_connected(self, client: ClientBase) -> None: ...
    def client_info(self, client: ClientBase) -> dict: ...

    # -- security --------------------------------------------------------------------
    def authenticate(self, client: ClientBase, connect: dict) -> str | None: ...
    def authenticate_mqtt(
        self, client: ClientBase, username: str | None, password: bytes | None
    ) -> str | None: ...
    def may_publish(self, client: ClientBase, subject: str, reply: str | None) -> bool: ...
    def may_subscribe(self, client: ClientBase, subject: str, queue: str | None) -> bool: ...

    # -- routing and output ----------------------------------------------------------
    def route(
        self,
        origin: ClientBase | None,
        subject: str,
        reply: str | None,
        headers: bytes | None,
        payload: bytes,
        mqtt_msg: Any = None,
    ) -> int: ...
    def route_run(
        self, origin: Any, subject: str, payloads: list[bytes], msgs: list | None = None
    ) -> int: ...
    def route_to(
        self,
        origin: Any,
        inbox: str,
        subject: str,
        reply: str | None,
        headers: bytes | None,
        payload: bytes,
        queue_group: str | None = None,
    ) -> int: ...
    # route_to for each (subject, reply, headers, payload); the indices that reached nobody
    def route_to_each(self, origin: Any, inbox: str, msgs: list[tuple]) -> list[int]: ...
    # route(origin, s, None, None, b"") for each subject of a read's run of JetStream acks
    def route_acks(self, origin: Any, subjects: list[str]) -> None: ...
    # route(origin, subject, r, None, p) for a run of requests to a stream; how many
    def route_requests(
        self, origin: Any, subject: str, replies: Sequence[str], payloads: Sequence[bytes]
    ) -> int: ...
    # route_to_each for a pull batch on one subject as encoded MSG tails; False: not sent
    def route_tails(
        self, origin: Any, inbox: str, subject: str, tails: list[bytes], nbytes: int
    ) -> bool: ...
    def expire(self, sub: Any) -> None: ...
    def after_round(self, fn: Any, arg: Any) -> None: ...
    def must_yield(self, reader: ClientBase) -> bool: ...
    def note_congested(self, receiver: ClientBase, flag: int) -> None: ...
    def mark_dirty(self, client: ClientBase) -> None: ...
    def flush(self) -> None: ...
    def schedule_flush(self) -> None: ...
