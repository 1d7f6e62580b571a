"""Server options, named as nats-server names them.

The CLI and the config loader (``hybridbus.config.load``) build an ``Options``;
nothing else in the server reads the config file. Durations are float seconds
here; the monitoring layer turns them into the integer nanoseconds nats-server
reports.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

DEFAULT_PORT = 4222
DEFAULT_MQTT_PORT = 1883
DEFAULT_HTTP_PORT = 8222
DEFAULT_STORE_DIR = "./hybridbus-data"
# nats-server's DEFAULT_LAME_DUCK_DURATION and DEFAULT_LAME_DUCK_GRACE_PERIOD
DEFAULT_LAME_DUCK_DURATION = 120.0
DEFAULT_LAME_DUCK_GRACE_PERIOD = 10.0
# Ports a listener may be given: 0..65535, and nats-server's -1 for "any free port".
MIN_PORT, MAX_PORT = -1, 65535


@dataclass
class TLSOptions:
    cert_file: str | None = None
    key_file: str | None = None
    ca_file: str | None = None
    verify: bool = False
    verify_and_map: bool = False
    insecure: bool = False
    timeout: float = 2.0
    min_version: str | None = None
    handshake_first: bool = False


@dataclass
class Permissions:
    publish_allow: list[str] | None = None
    publish_deny: list[str] | None = None
    subscribe_allow: list[str] | None = None
    subscribe_deny: list[str] | None = None
    # None: no response permission; otherwise (max messages, expires seconds)
    allow_responses: tuple[int, float] | None = None


@dataclass
class User:
    user: str  # "" for an nkey user
    password: str | None = None
    permissions: Permissions | None = None
    allowed_connection_types: list[str] | None = None
    # an nkey user ("U..." public key) logs in by signing the server's nonce, with no
    # user name or password (hybridbus.security.nkey)
    nkey: str | None = None
    # the account the user belongs to (accounts { A: { users: [...] } }); None: $G
    account: str | None = None

    @property
    def name(self) -> str:
        """What identifies the user: the public key of an nkey user, else the name."""
        return self.nkey or self.user


@dataclass
class AuthOptions:
    user: str | None = None
    password: str | None = None
    token: str | None = None
    timeout: float = 2.0
    users: list[User] = field(default_factory=list)
    default_permissions: Permissions | None = None


@dataclass
class AccountExport:
    """``exports: [{stream: "a.>"}, {service: "svc.>", accounts: [B]}]``."""

    subject: str
    service: bool  # False: a stream export
    accounts: list[str] | None = None  # who may import it; None: every account
    response_type: str = "Singleton"  # services: Singleton, Streamed or Chunked
    response_threshold: float = 120.0  # services: how long a reply may come back


@dataclass
class AccountImport:
    """``imports: [{stream: {account: A, subject: "a.>"}, prefix: "p"}]`` or a service."""

    account: str
    subject: str
    service: bool
    to: str | None = None  # services: the local subject; streams: the subject seen
    prefix: str | None = None  # streams only
    share: bool = False


@dataclass
class AccountOptions:
    """One entry of the ``accounts`` block (hybridbus.core.account builds the Account)."""

    name: str
    users: list[User] = field(default_factory=list)
    default_permissions: Permissions | None = None
    # limits { ... }: -1 is no limit (nats-server's jwt.NoLimit)
    max_connections: int = -1
    max_subscriptions: int = -1
    max_payload: int = -1
    max_leafnodes: int = -1
    exports: list[AccountExport] = field(default_factory=list)
    imports: list[AccountImport] = field(default_factory=list)
    nkey: str | None = None
    # subject mappings (hybridbus.transform): [(src, [(dest, weight, cluster)])]
    mappings: list = field(default_factory=list)
    # jetstream: enabled | { max_mem, max_file, max_streams, max_consumers }: the
    # account's own JetStream (server/account_state.py); -1 is no limit
    jetstream: bool = False
    js_max_memory: int = -1
    js_max_file: int = -1
    js_max_streams: int = -1
    js_max_consumers: int = -1
    # enforced at stream and consumer create/update (jetstream/streams.py, consumers.py):
    # max_ack_pending caps (and defaults) a consumer's; the per-stream byte caps and
    # max_bytes_required bound a stream's max_bytes (-1 / False: none)
    js_max_ack_pending: int = -1
    js_max_bytes_required: bool = False
    js_mem_max_stream_bytes: int = -1
    js_disk_max_stream_bytes: int = -1


@dataclass
class JetStreamOptions:
    enabled: bool = True
    store_dir: str = DEFAULT_STORE_DIR
    max_memory_store: int = -1
    max_file_store: int = -1
    # None = the default interval (see store docs); 0.0 with sync_always = fsync every append
    sync_interval: float = 120.0
    sync_always: bool = False
    strict: bool = True
    domain: str | None = None


@dataclass
class MQTTOptions:
    enabled: bool = True
    host: str = "0.0.0.0"
    port: int = DEFAULT_MQTT_PORT
    tls: TLSOptions | None = None
    no_auth_user: str | None = None
    auth: AuthOptions | None = None
    ack_wait: float = 30.0
    max_ack_pending: int = 1024
    # hybridbus extensions (documented in conf/server.conf)
    receive_maximum: int = 1024
    max_keepalive: int = 0
    max_packet_size: int = 0
    max_session_messages: int = 10000
    connect_timeout: float = 10.0
    reject_qos2_publish: bool = False
    downgrade_qos2_subscribe: bool = False
    # seconds between $SYS/broker/... rounds; 0 turns them off (hybridbus.mqtt.systopics)
    sys_interval: float = 10.0
    # Where lame duck mode sends MQTT 5 clients: DISCONNECT 0x9C (Use another server)
    # with this Server Reference instead of 0x8B (Server shutting down).
    server_reference: str | None = None
    # A KV bucket name: retained messages readable and writable as that nats-py bucket
    # (hybridbus.jetstream.retained_kv); needs JetStream.
    retained_kv: str | None = None
    # MQTT state in the JetStream of this domain, reached over the leaf-node link
    # ($JS.<domain>.API): nats-server's options of the same names (docs/clustering.md)
    js_domain: str | None = None
    stream_replicas: int = 1
    consumer_replicas: int = 0  # 0: as the stream
    consumer_memory_storage: bool = False
    js_api_timeout: float = 5.0


@dataclass
class LeafRemoteOptions:
    """One ``leafnodes { remotes [...] }`` entry: the hub hybridbus dials as a spoke."""

    urls: list[str] = field(default_factory=list)
    account: str = "$G"  # the local account the link binds
    credentials: str | None = None  # a .creds file: user JWT + seed (nonce signed)
    nkey: str | None = None  # a user seed (nonce signed)
    tls: TLSOptions | None = None
    deny_imports: list[str] = field(default_factory=list)
    deny_exports: list[str] = field(default_factory=list)
    no_randomize: bool = False


@dataclass
class LeafNodeOptions:
    remotes: list[LeafRemoteOptions] = field(default_factory=list)
    reconnect: float = 1.0  # seconds between attempts (nats-server's default)


@dataclass
class OperatorOptions:
    """Operator (JWT) mode (hybridbus.security.operator, config/opts_operator.py)."""

    jwts: list[str] = field(default_factory=list)  # the operator JWTs, as text
    system_account: str | None = None  # its public key (config or operator JWT)
    resolver: str = ""  # "MEMORY" or "full" (the directory resolver)
    resolver_dir: str | None = None
    allow_delete: bool = False
    interval: float = 120.0
    timeout: float = 1.9
    preload: dict[str, str] = field(default_factory=dict)  # account pubkey -> JWT
    pinned_accounts: list[str] | None = None


@dataclass
class WebSocketOptions:
    enabled: bool = False
    host: str = "0.0.0.0"
    port: int = 0
    no_tls: bool = False
    tls: TLSOptions | None = None
    handshake_timeout: float = 2.0
    same_origin: bool = False
    allowed_origins: list[str] = field(default_factory=list)
    compression: bool = False
    no_auth_user: str | None = None
    auth: AuthOptions | None = None


@dataclass
class Options:
    config_file: str | None = None
    server_name: str | None = None
    host: str = "0.0.0.0"
    port: int = DEFAULT_PORT
    http_host: str = "0.0.0.0"
    http_port: int = DEFAULT_HTTP_PORT
    https_port: int = 0
    http_base_path: str = ""
    max_payload: int = 1024 * 1024
    max_connections: int = 65536
    max_subscriptions: int = 0
    max_control_line: int = 4096
    max_pending: int = 64 * 1024 * 1024
    max_closed_clients: int = 10000
    ping_interval: float = 120.0
    ping_max: int = 2
    write_deadline: float = 10.0
    # seconds the loop keeps polling after a write (server/busypoll.py); 0: off
    busy_poll: float = 0.0002
    debug: bool = False
    trace: bool = False
    # with trace: payloads too (NATS MSG_PAYLOAD lines, MQTT PUBLISH payloads), each
    # cut at max_traced_msg_len bytes when that is > 0 (hybridbus.core.trace)
    trace_verbose: bool = False
    max_traced_msg_len: int = 0
    logtime: bool = True
    log_file: str | None = None
    pid_file: str | None = None
    # SIGUSR2 / `hybridbus ldm` (hybridbus.server.lameduck): wait grace_period, then
    # close the clients spread over what is left of duration
    lame_duck_duration: float = DEFAULT_LAME_DUCK_DURATION
    lame_duck_grace_period: float = DEFAULT_LAME_DUCK_GRACE_PERIOD
    no_auth_user: str | None = None
    # top-level mappings, the global account's: [(src, [(dest, weight, cluster)])]
    mappings: list = field(default_factory=list)
    auth: AuthOptions = field(default_factory=AuthOptions)
    # the accounts block (hybridbus.core.account); $G, the global account, is implicit
    accounts: list[AccountOptions] = field(default_factory=list)
    # the system account (hybridbus.server.system): system_account names one of the
    # accounts; without it "$SYS" is made, unless no_system_account
    system_account: str = ""
    no_system_account: bool = False
    # operator (JWT) mode: None unless the config names an operator or a resolver
    operator: OperatorOptions | None = None
    tls: TLSOptions | None = None
    jetstream: JetStreamOptions = field(default_factory=JetStreamOptions)
    mqtt: MQTTOptions = field(default_factory=MQTTOptions)
    websocket: WebSocketOptions = field(default_factory=WebSocketOptions)
    leafnodes: LeafNodeOptions = field(default_factory=LeafNodeOptions)
    tags: list[str] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)
    # the parsed config map and its sha256 digest, for /varz
    config_digest: str = ""
    raw: dict[str, Any] = field(default_factory=dict)
    # settings given on the command line ("mqtt.port": 1884, ...): they win over
    # the config file, at start and on reload
    overrides: dict[str, Any] = field(default_factory=dict)
    # listener hosts the config file sets itself ("http_host", "mqtt.host",
    # "websocket.host"); `-a HOST` moves the others along with the NATS listener
    hosts_from_config: set[str] = field(default_factory=set)
