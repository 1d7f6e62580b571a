"""Monitoring reports as plain dicts, with nats-server's field names and Go types.

Theory of operation
-------------------
Each endpoint is a function of the server's state at the moment of the call:
``varz``, ``connz``, ``subsz``, ``jsz``, ``healthz``, ``accountz``, ``routez``.
They run on the event loop thread, so they see one consistent state with no
locks, and they only read: nothing here is on the message hot path, and the
counters they report are the ones the connections keep anyway (``in_msgs`` ...
on each client, ``server.stats`` for the closed ones).

Parameters arrive as ``*Options`` objects. ``Options.from_query`` builds one from
the first value of each query parameter, in the order nats-server decodes them,
and raises ``BadRequest`` with nats-server's exact text; the HTTP layer
(``http.py``) turns that into a 400. A future ``$SYS`` request handler can build
the same objects from JSON.

Go types (nats-conventions §1.2): counters are Python ints, the few float64
fields are Python floats, times go through ``gotypes.rfc3339``, ``uptime``/
``idle``/``rtt`` through their dialects. ``omitempty`` fields are added only when
non-zero (``_opt``); struct-valued blocks are always present.

Abbreviations: *cid* connection id, *acc* account (``$G`` global, ``$SYS``
system; hybridbus has no other accounts), *fwc* the ``>`` wildcard.
"""

from __future__ import annotations

import os
import platform
import shutil
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from hybridbus import __version__
from hybridbus.monitor.gotypes import (
    ZERO_TIME,
    BadRequest,
    parse_bool,
    parse_int,
    parse_uint64,
    rfc3339,
    rfc3339_ns,
    rtt,
    uptime,
)
from hybridbus.store.api import parse_rfc3339
from hybridbus.store.errors import ConsumerNotFound, StreamNotFound
from hybridbus.subjects import is_valid_publish_subject, subject_matches

if TYPE_CHECKING:
    from hybridbus.server.server import Server

GLOBAL_ACCOUNT = "$G"
SYSTEM_ACCOUNT = "$SYS"
ACCOUNTS = (GLOBAL_ACCOUNT, SYSTEM_ACCOUNT)

# nats-server's DefaultConnListSize / DefaultSubListSize.
DEFAULT_LIST_SIZE = 1024

# A growing store write-error counter keeps /healthz failing this long after the
# last new error: the store retries with back-off, and a health check polled every
# few seconds must not flap between two failed writes.
WRITE_ERROR_HOLD = 30.0

Query = dict[str, str]


class MonitorContext(Protocol):
    """What the reports need from the monitor besides the server."""

    port: int
    http_req_stats: dict[str, int]

    def cpu_percent(self) -> float: ...


def _opt(d: dict, key: str, value: Any) -> None:
    """Go ``omitempty``: add the field only when it is not the zero value."""
    if value:
        d[key] = value


def _ns(seconds: float | None) -> int:
    """Float seconds to the integer nanoseconds Go's time.Duration marshals as."""
    return int(round((seconds or 0.0) * 1e9))


# =========================================================================== process facts


def rss_bytes() -> int:
    """Resident set size of this process (``/varz`` ``mem``)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class CpuMeter:
    """Process CPU % over the time since the previous reading (nats-server samples
    ``cpu`` periodically; here each ``/varz`` is a sample, at most one per
    ``min_interval`` seconds so that fast pollers see a steady value)."""

    __slots__ = ("_wall", "_cpu", "_value", "min_interval")

    def __init__(self, min_interval: float = 0.5) -> None:
        self._wall = time.monotonic()
        self._cpu = time.process_time()
        self._value = 0.0
        self.min_interval = min_interval

    def read(self) -> float:
        wall = time.monotonic()
        elapsed = wall - self._wall
        if elapsed >= self.min_interval:
            cpu = time.process_time()
            self._value = round(max(0.0, (cpu - self._cpu) / elapsed * 100.0), 2)
            self._wall = wall
            self._cpu = cpu
        return self._value


def _cores() -> int:
    return os.cpu_count() or 1


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return _cores()


# =========================================================================== totals


def traffic_totals(server: Server) -> tuple[int, int, int, int]:
    """(in_msgs, in_bytes, out_msgs, out_bytes): the closed clients' share kept in
    ``server.closed_by_protocol`` plus every live client's counters."""
    in_msgs = in_bytes = out_msgs = out_bytes = 0
    for t in server.closed_by_protocol.values():
        in_msgs += t[0]
        in_bytes += t[1]
        out_msgs += t[2]
        out_bytes += t[3]
    for c in server.clients.values():
        in_msgs += c.in_msgs
        in_bytes += c.in_bytes
        out_msgs += c.out_msgs
        out_bytes += c.out_bytes
    return in_msgs, in_bytes, out_msgs, out_bytes


def _js_limits(server: Server) -> tuple[int, int]:
    """(max_memory, max_storage) as nats-server reports them: a configured limit, or
    75% of RAM / of the store's disk when unlimited (what nats-server derives)."""
    js = server.options.jetstream
    mem = js.max_memory_store
    disk = js.max_file_store
    if mem is None or mem < 0:
        try:
            mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") * 3 // 4
        except (ValueError, OSError, AttributeError):
            mem = 0
    if disk is None or disk < 0:
        path = os.path.abspath(js.store_dir or ".")
        while not os.path.exists(path) and os.path.dirname(path) != path:
            path = os.path.dirname(path)
        try:
            disk = shutil.disk_usage(path).free * 3 // 4
        except OSError:
            disk = 0
    return int(mem), int(disk)


def _js_config(server: Server) -> dict:
    js = server.options.jetstream
    max_memory, max_storage = _js_limits(server)
    cfg: dict[str, Any] = {"max_memory": max_memory, "max_storage": max_storage}
    _opt(cfg, "store_dir", os.path.abspath(js.store_dir) if js.store_dir else "")
    _opt(cfg, "sync_interval", _ns(js.sync_interval))
    _opt(cfg, "sync_always", bool(js.sync_always))
    _opt(cfg, "domain", js.domain or "")
    _opt(cfg, "strict", bool(js.strict))
    return cfg


def _store_usage(server: Server) -> dict[str, int]:
    store = server.store
    if store is None:
        return {"memory": 0, "storage": 0, "streams": 0, "consumers": 0}
    return store.usage()


def _js_stats(usage: dict[str, int]) -> dict:
    """JetStreamStats. The JetStream API is not served yet, so its counters are 0."""
    return {
        "memory": int(usage.get("memory", 0)),
        "storage": int(usage.get("storage", 0)),
        "reserved_memory": 0,
        "reserved_storage": 0,
        "accounts": 1,
        "ha_assets": 0,
        "api": {"level": 0, "total": 0, "errors": 0},
    }


# =========================================================================== /varz


def go_version_string() -> str:
    """The free-text ``go`` field: what runs the server instead of a Go toolchain."""
    return (
        f"hybridbus {__version__} ({platform.python_implementation()} {platform.python_version()})"
    )


def varz(server: Server, mon: MonitorContext) -> dict:
    """``/varz`` (nats-conventions §1.3): every always-present field, even when zero."""
    # Imported here: server.py may import this package while it is still loading.
    from hybridbus.server.server import NATS_COMPAT_VERSION

    opts = server.options
    now = time.time()
    in_msgs, in_bytes, out_msgs, out_bytes = traffic_totals(server)
    st = server.stats
    v: dict[str, Any] = {
        "server_id": server.server_id,
        "server_name": server.server_name,
        "version": NATS_COMPAT_VERSION,
        "proto": 1,
        "go": go_version_string(),
        "host": opts.host,
        "port": int(server.nats_port or opts.port),
    }
    _opt(v, "auth_required", bool(server.auth_required))
    if opts.tls is not None:
        v["tls_required"] = True
        _opt(v, "tls_verify", bool(opts.tls.verify))
    v["max_connections"] = int(opts.max_connections)
    _opt(v, "max_subscriptions", max(int(opts.max_subscriptions), 0))
    v["ping_interval"] = _ns(opts.ping_interval)
    v["ping_max"] = int(opts.ping_max)
    v["http_host"] = opts.http_host
    v["http_port"] = int(mon.port)
    v["http_base_path"] = opts.http_base_path or ""
    v["https_port"] = int(opts.https_port or 0)
    v["auth_timeout"] = float(opts.auth.timeout)
    v["max_control_line"] = int(opts.max_control_line)
    v["max_payload"] = int(opts.max_payload)
    v["max_pending"] = int(opts.max_pending)
    v["cluster"] = {}
    v["gateway"] = {}
    v["leaf"] = {}
    v["mqtt"] = _varz_mqtt(server)
    v["websocket"] = _varz_websocket(server)
    if opts.jetstream.enabled:
        v["jetstream"] = {
            "config": _js_config(server),
            "stats": _js_stats(_store_usage(server)),
        }
    else:
        v["jetstream"] = {}
    v["tls_timeout"] = _tls_timeout(opts.tls)
    v["write_deadline"] = _ns(opts.write_deadline)
    v["start"] = rfc3339(server.start_time)
    v["now"] = rfc3339(now)
    v["uptime"] = uptime(now - server.start_time)
    v["mem"] = rss_bytes()
    v["cores"] = _cores()
    v["gomaxprocs"] = _usable_cores()
    v["cpu"] = float(mon.cpu_percent())
    v["connections"] = len(server.clients)
    v["total_connections"] = int(st.total_connections)
    v["routes"] = 0
    v["remotes"] = 0
    v["leafnodes"] = 0
    v["in_msgs"] = in_msgs
    v["in_bytes"] = in_bytes
    v["out_msgs"] = out_msgs
    v["out_bytes"] = out_bytes
    # Standalone: all traffic is client traffic.
    v["in_client_msgs"] = in_msgs
    v["in_client_bytes"] = in_bytes
    v["out_client_msgs"] = out_msgs
    v["out_client_bytes"] = out_bytes
    v["slow_consumers"] = int(st.slow_consumers)
    v["stale_connections"] = int(st.stale_connections)
    v["stalled_clients"] = 0
    v["subscriptions"] = int(server.sublist.count())
    v["http_req_stats"] = dict(mon.http_req_stats)
    v["config_load_time"] = rfc3339(server.config_load_time)
    digest = opts.config_digest or ""
    if digest and not digest.startswith("sha256:"):
        digest = "sha256:" + digest
    v["config_digest"] = digest
    _opt(v, "tags", list(opts.tags or []))
    _opt(v, "metadata", {str(k): str(val) for k, val in (opts.metadata or {}).items()})
    v["system_account"] = SYSTEM_ACCOUNT
    v["slow_consumer_stats"] = _clients_only(int(st.slow_consumers))
    v["stale_connection_stats"] = _clients_only(int(st.stale_connections))
    v["disk_io_wait_stats"] = {"waiters": 0, "waits": 0, "wait_time": 0, "max_wait_time": 0}
    return v


def _tls_timeout(tls: Any) -> float:
    """A listener's TLS handshake timeout; nats-server reports its default without TLS."""
    return float(tls.timeout) if tls is not None else 2.0


def _clients_only(count: int) -> dict[str, int]:
    """A count by connection kind (SlowConsumersStats, StaleConnectionStats): a
    standalone server has only clients."""
    return {"clients": count, "routes": 0, "gateways": 0, "leafs": 0}


def _varz_listener(block: Any, bound_port: int) -> dict[str, Any]:
    """The fields the ``mqtt`` and ``websocket`` blocks of ``/varz`` share."""
    d: dict[str, Any] = {}
    _opt(d, "host", block.host)
    _opt(d, "port", int(bound_port or block.port or 0))
    _opt(d, "no_auth_user", block.no_auth_user or "")
    return d


def _varz_mqtt(server: Server) -> dict:
    m = server.options.mqtt
    if not m.enabled:
        return {}
    d = _varz_listener(m, server.mqtt_port)
    if m.auth is not None:
        _opt(d, "auth_timeout", float(m.auth.timeout))
    d["tls_timeout"] = _tls_timeout(m.tls)
    _opt(d, "ack_wait", _ns(m.ack_wait))
    # Go's field is a uint16: a larger number would break every Go-strict decoder.
    _opt(d, "max_ack_pending", min(max(int(m.max_ack_pending or 0), 0), 65535))
    return d


def _varz_websocket(server: Server) -> dict:
    w = server.options.websocket
    if not w.enabled:
        return {}
    d = _varz_listener(w, server.websocket_port)
    _opt(d, "handshake_timeout", _ns(w.handshake_timeout))
    _opt(d, "no_tls", bool(w.no_tls))
    _opt(d, "same_origin", bool(w.same_origin))
    _opt(d, "allowed_origins", list(w.allowed_origins or []))
    _opt(d, "compression", bool(w.compression))
    return d


# =========================================================================== /connz

# sort key -> descending? (nats-server's monitor_sort_opts.go directions)
SORT_OPTIONS: dict[str, bool] = {
    "cid": False,
    "start": False,
    "subs": True,
    "pending": True,
    "msgs_to": True,
    "msgs_from": True,
    "bytes_to": True,
    "bytes_from": True,
    "last": True,
    "idle": True,
    "uptime": False,
    "stop": True,
    "reason": False,
    "rtt": True,
}

STATE_OPEN = "open"
STATE_CLOSED = "closed"
STATE_ALL = "all"


@dataclass
class ConnzOptions:
    sort: str = "cid"
    auth: bool = False
    subs: bool = False
    subs_detail: bool = False
    offset: int = 0
    limit: int = DEFAULT_LIST_SIZE
    cid: int = 0
    state: str = STATE_OPEN
    user: str = ""
    acc: str = ""
    mqtt_client: str = ""

    @classmethod
    def from_query(cls, q: Query) -> ConnzOptions:
        """Decode in nats-server's order, so the first bad parameter is the one reported."""
        o = cls()
        o.sort = q.get("sort", "") or "cid"
        o.auth = parse_bool("auth", q.get("auth"))
        subs = q.get("subs", "")
        if subs.lower() == "detail":
            o.subs_detail = True
        else:
            o.subs = parse_bool("subs", subs)
        o.offset = parse_int("offset", q.get("offset"))
        o.limit = parse_int("limit", q.get("limit"))
        o.cid = parse_uint64("cid", q.get("cid"))
        state = q.get("state", "")
        low = state.lower()
        if not state or low == "open":
            o.state = STATE_OPEN
        elif low == "closed":
            o.state = STATE_CLOSED
        elif low in ("any", "all"):
            o.state = STATE_ALL
        else:
            raise BadRequest(f"Error decoding state for {state}")
        o.user = q.get("user", "")
        o.acc = q.get("acc", "")
        o.mqtt_client = q.get("mqtt_client", "")
        return o

    def check(self) -> None:
        """The checks nats-server's Connz() makes after decoding."""
        if self.sort not in SORT_OPTIONS:
            raise BadRequest(f"invalid sorting option: {self.sort}")
        if self.sort in ("stop", "reason") and self.state != STATE_CLOSED:
            raise BadRequest(f"sort by {self.sort} only valid on closed connections")


class _Row:
    """One connection, open or closed, with raw values for sorting; rendered
    to Go types only when it lands on the requested page."""

    __slots__ = (
        "cid",
        "kind",
        "type",
        "ip",
        "port",
        "start",
        "last",
        "stop",
        "reason",
        "rtt",
        "pending",
        "in_msgs",
        "out_msgs",
        "in_bytes",
        "out_bytes",
        "nsubs",
        "name",
        "lang",
        "version",
        "tls_version",
        "tls_cipher",
        "user",
        "mqtt_client",
        "client",
        "closed_subs",
    )

    def end(self, now: float) -> float:
        return self.stop if self.stop else now


def _live_row(c: Any) -> _Row:
    r = _Row()
    r.cid = c.cid
    r.kind = c.kind
    r.type = c.conn_type
    r.ip = c.ip
    r.port = c.port
    r.start = c.start
    r.last = c.last_activity
    r.stop = 0.0
    r.reason = ""
    r.rtt = getattr(c, "rtt", None) or 0.0
    r.pending = c.pending_bytes()
    r.in_msgs = c.in_msgs
    r.out_msgs = c.out_msgs
    r.in_bytes = c.in_bytes
    r.out_bytes = c.out_bytes
    r.nsubs = c.subscription_count()
    r.name = getattr(c, "name", "") or ""
    r.lang = getattr(c, "lang", "") or ""
    r.version = getattr(c, "version", "") or ""
    r.tls_version = c.tls_version or ""
    r.tls_cipher = c.tls_cipher or ""
    r.user = c.user or ""
    r.mqtt_client = (getattr(c, "client_id", "") or "") if c.conn_type == "mqtt" else ""
    r.client = c
    r.closed_subs = None
    return r


def _closed_row(cc: Any) -> _Row:
    info = cc.info
    r = _Row()
    r.cid = info.get("cid", 0)
    r.kind = info.get("kind", "Client")
    r.type = info.get("type", "nats")
    r.ip = info.get("ip", "")
    r.port = info.get("port", 0)
    r.start = info.get("start", 0.0)
    r.last = info.get("last_activity", r.start)
    r.stop = cc.stop
    r.reason = cc.reason or ""
    r.rtt = info.get("rtt", 0.0) or 0.0
    r.pending = 0
    r.in_msgs = info.get("in_msgs", 0)
    r.out_msgs = info.get("out_msgs", 0)
    r.in_bytes = info.get("in_bytes", 0)
    r.out_bytes = info.get("out_bytes", 0)
    r.nsubs = info.get("subscriptions", 0)
    r.name = info.get("name", "") or ""
    r.lang = info.get("lang", "") or ""
    r.version = info.get("version", "") or ""
    r.tls_version = info.get("tls_version", "") or ""
    r.tls_cipher = info.get("tls_cipher", "") or ""
    r.user = info.get("user", "") or ""
    r.mqtt_client = (info.get("client_id", "") or "") if r.type == "mqtt" else ""
    r.client = None
    # Present only if Server.describe() keeps the subjects of a closing client.
    r.closed_subs = info.get("subscriptions_list")
    return r


def _sort_key(sort: str, now: float):
    if sort in ("cid", "start"):
        return lambda r: r.cid
    if sort == "subs":
        return lambda r: (r.nsubs, -r.cid)
    if sort == "pending":
        return lambda r: (r.pending, -r.cid)
    if sort == "msgs_to":
        return lambda r: (r.out_msgs, -r.cid)
    if sort == "msgs_from":
        return lambda r: (r.in_msgs, -r.cid)
    if sort == "bytes_to":
        return lambda r: (r.out_bytes, -r.cid)
    if sort == "bytes_from":
        return lambda r: (r.in_bytes, -r.cid)
    if sort == "last":
        return lambda r: (r.last, -r.cid)
    if sort == "idle":
        return lambda r: (r.end(now) - r.last, -r.cid)
    if sort == "uptime":
        return lambda r: (r.end(now) - r.start, r.cid)
    if sort == "stop":
        return lambda r: (r.stop, -r.cid)
    if sort == "reason":
        return lambda r: (r.reason, r.cid)
    return lambda r: (r.rtt, -r.cid)  # rtt


def mqtt_sid(sub: Any) -> str:
    """nats-server's sid for an MQTT subscription: the subject itself, and
    ``"<parent> fwc"`` for the extra parent-level subject of a ``#`` filter
    (nats-conventions §1.4, MQTT rows)."""
    topic_filter = sub.sid if isinstance(sub.sid, str) else ""
    if topic_filter.endswith("#") and not sub.subject.endswith(">"):
        return sub.subject + " fwc"
    return sub.subject


def client_subscriptions(c: Any) -> list:
    """The router subscriptions a live connection owns (an MQTT connection's are
    its session's)."""
    if c.conn_type == "mqtt":
        session = getattr(c, "session", None)
        return session.all_subscriptions() if session is not None else []
    subs = getattr(c, "subs", None)
    return list(subs.values()) if subs else []


def sub_detail(sub: Any, cid: int) -> dict:
    """A SubDetail without the account fields (nats-server's connz form)."""
    d: dict[str, Any] = {"subject": sub.subject}
    _opt(d, "qgroup", sub.queue or "")
    if hasattr(sub, "sid_bytes"):  # a NATS SUB: the client's own sid
        d["sid"] = str(sub.sid)
        d["msgs"] = int(sub.msgs)
        _opt(d, "max", int(sub.max_msgs or 0))
    else:
        d["sid"] = mqtt_sid(sub)
        # MQTT subscriptions keep no per-subscription delivery count (that would
        # cost a counter update per message on the hot path).
        d["msgs"] = 0
    d["cid"] = int(cid)
    return d


def _render(r: _Row, o: ConnzOptions, now: float) -> dict:
    end = r.end(now)
    d: dict[str, Any] = {
        "cid": int(r.cid),
        "kind": r.kind,
        "type": r.type,
        "ip": r.ip,
        "port": int(r.port),
        "start": rfc3339(r.start),
        "last_activity": rfc3339(r.last),
    }
    if r.stop:
        d["stop"] = rfc3339(r.stop)
        _opt(d, "reason", r.reason)
    d["rtt"] = rtt(r.rtt)
    d["uptime"] = uptime(end - r.start)
    d["idle"] = uptime(end - r.last)
    d["pending_bytes"] = int(r.pending)
    d["in_msgs"] = int(r.in_msgs)
    d["out_msgs"] = int(r.out_msgs)
    d["in_bytes"] = int(r.in_bytes)
    d["out_bytes"] = int(r.out_bytes)
    d["subscriptions"] = int(r.nsubs)
    if o.subs or o.subs_detail:
        subs = client_subscriptions(r.client) if r.client is not None else None
        if o.subs_detail:
            if subs is not None:
                _opt(d, "subscriptions_list_detail", [sub_detail(s, r.cid) for s in subs])
        elif subs is not None:
            _opt(d, "subscriptions_list", [s.subject for s in subs])
        elif r.closed_subs:
            d["subscriptions_list"] = list(r.closed_subs)
    _opt(d, "name", r.name)
    _opt(d, "lang", r.lang)
    _opt(d, "version", r.version)
    _opt(d, "tls_version", r.tls_version)
    _opt(d, "tls_cipher_suite", r.tls_cipher)
    if o.auth:
        _opt(d, "authorized_user", r.user)
        # `account` is omitted for the global account; name_tag names it.
        d["name_tag"] = GLOBAL_ACCOUNT
    _opt(d, "mqtt_client", r.mqtt_client)
    return d


def connz(server: Server, o: ConnzOptions) -> dict:
    """``/connz`` (nats-conventions §1.4): build the candidates (state, account), count
    them (``total``), filter by user and MQTT client id, sort all, cut the page."""
    o.check()
    now = time.time()
    if o.acc and o.acc not in ACCOUNTS:
        # nats-server answers an unknown account with an empty Connz struct.
        return {
            "server_id": "",
            "now": ZERO_TIME,
            "num_connections": 0,
            "total": 0,
            "offset": 0,
            "limit": 0,
            "connections": None,
        }
    offset = max(o.offset, 0)
    limit = o.limit if o.limit > 0 else DEFAULT_LIST_SIZE
    rows: list[_Row] = []
    if o.acc != SYSTEM_ACCOUNT:  # $SYS has no client connections here
        if o.cid:
            limit = 1
            c = server.clients.get(o.cid) if o.state != STATE_CLOSED else None
            if c is not None:
                rows.append(_live_row(c))
            elif o.state != STATE_OPEN:
                for cc in reversed(server.closed):
                    if cc.info.get("cid") == o.cid:
                        rows.append(_closed_row(cc))
                        break
        else:
            if o.state != STATE_CLOSED:
                rows.extend(_live_row(c) for c in server.clients.values())
            if o.state != STATE_OPEN:
                rows.extend(_closed_row(cc) for cc in server.closed)
    total = len(rows)
    if o.user:
        rows = [r for r in rows if r.user == o.user]
    if o.mqtt_client:
        rows = [r for r in rows if r.mqtt_client == o.mqtt_client]
    rows.sort(key=_sort_key(o.sort, now), reverse=SORT_OPTIONS[o.sort])
    page = rows[offset : offset + limit]
    conns = [_render(r, o, now) for r in page]
    return {
        "server_id": server.server_id,
        "now": rfc3339(now),
        "num_connections": len(conns),
        "total": total,
        "offset": offset,
        "limit": limit,
        "connections": conns,
    }


# =========================================================================== /subsz


@dataclass
class SubszOptions:
    subs: bool = False
    offset: int = 0
    limit: int = DEFAULT_LIST_SIZE
    test: str = ""
    acc: str = ""

    @classmethod
    def from_query(cls, q: Query) -> SubszOptions:
        o = cls()
        o.subs = parse_bool("subs", q.get("subs"))
        o.offset = parse_int("offset", q.get("offset"))
        o.limit = parse_int("limit", q.get("limit"))
        o.test = q.get("test", "")
        o.acc = q.get("acc", "")
        return o


# SublistStats: each field and its Go type (a float64 or an integer).
_SUBLIST_STATS: dict[str, type] = {
    "num_subscriptions": int,
    "num_cache": int,
    "num_inserts": int,
    "num_removes": int,
    "num_matches": int,
    "cache_hit_rate": float,
    "max_fanout": int,
    "avg_fanout": float,
}


def subscription_cid(sub: Any) -> int:
    """The connection holding a subscription; 0 for an offline MQTT session's."""
    owner = sub.client
    cid = getattr(owner, "cid", None)
    if cid is not None:
        return int(cid)
    conn = getattr(owner, "conn", None)  # an MQTT Session
    return int(conn.cid) if conn is not None else 0


def subsz(server: Server, o: SubszOptions) -> dict:
    """``/subsz`` (nats-conventions §1.5): the router's stats, and with ``subs=1`` the
    subscriptions themselves (filtered by ``test``), paged."""
    if o.test and not is_valid_publish_subject(o.test):
        raise BadRequest(f"invalid test subject, must be valid publish subject: {o.test}")
    offset = max(o.offset, 0)
    limit = o.limit if o.limit > 0 else DEFAULT_LIST_SIZE
    global_acc = o.acc in ("", GLOBAL_ACCOUNT)
    # Every other account has no subscriptions here: its statistics are all zero.
    stats = server.sublist.stats() if global_acc else {}
    out: dict[str, Any] = {"server_id": server.server_id, "now": rfc3339(time.time())}
    for key, go_type in _SUBLIST_STATS.items():
        out[key] = go_type(stats.get(key, 0))
    total = 0
    listing: list[dict] | None = None
    if o.subs:
        subs = list(server.sublist.subscriptions()) if global_acc else []
        if o.test:
            subs = [s for s in subs if subject_matches(s.subject, o.test)]
        total = len(subs)
        # The order is unspecified in nats-server; a stable one makes paging usable.
        keyed = sorted(
            ((subscription_cid(s), s.subject, str(s.sid), s) for s in subs),
            key=lambda t: t[:3],
        )
        listing = []
        for cid, _subject, _sid, s in keyed[offset : offset + limit]:
            d = {"account": GLOBAL_ACCOUNT, "account_tag": GLOBAL_ACCOUNT}
            d.update(sub_detail(s, cid))
            listing.append(d)
    out["total"] = total
    out["offset"] = offset
    out["limit"] = limit
    if listing is not None:
        # Go's omitempty drops an empty list.
        _opt(out, "subscriptions_list", listing)
    return out


# =========================================================================== /jsz


@dataclass
class JszOptions:
    acc: str = ""
    accounts: bool = False
    streams: bool = False
    consumers: bool = False
    config: bool = False
    offset: int = 0
    limit: int = DEFAULT_LIST_SIZE
    leader_only: bool = False
    raft: bool = False

    @classmethod
    def from_query(cls, q: Query) -> JszOptions:
        o = cls()
        o.acc = q.get("acc", "")
        o.accounts = parse_bool("accounts", q.get("accounts"))
        o.streams = parse_bool("streams", q.get("streams"))
        o.consumers = parse_bool("consumers", q.get("consumers"))
        o.config = parse_bool("config", q.get("config"))
        o.offset = parse_int("offset", q.get("offset"))
        o.limit = parse_int("limit", q.get("limit"))
        o.leader_only = parse_bool("leader-only", q.get("leader-only"))
        o.raft = parse_bool("raft", q.get("raft"))
        parse_bool("stream-leader-only", q.get("stream-leader-only"))
        parse_bool("direct-consumers", q.get("direct-consumers"))
        return o


def _stream_state(state: Any) -> dict:
    d: dict[str, Any] = {
        "messages": int(state.messages),
        "bytes": int(state.bytes),
        "first_seq": int(state.first_seq),
        "first_ts": rfc3339_ns(state.first_ts_ns) if state.first_ts_ns else ZERO_TIME,
        "last_seq": int(state.last_seq),
        "last_ts": rfc3339_ns(state.last_ts_ns) if state.last_ts_ns else ZERO_TIME,
    }
    _opt(d, "num_subjects", int(state.num_subjects))
    _opt(d, "num_deleted", int(state.num_deleted))
    d["consumer_count"] = int(state.consumer_count)
    return d


def _retime(value: Any) -> Any:
    """The store writes nine fraction digits; Go's RFC3339Nano trims trailing zeros."""
    if isinstance(value, str) and value.endswith("Z") and "T" in value:
        try:
            return rfc3339_ns(parse_rfc3339(value))
        except ValueError:
            return value
    return value


def _consumer_info(consumer: Any, server: Server, with_config: bool, now: str) -> dict:
    info = consumer.info(wire=True)
    d: dict[str, Any] = {
        "stream_name": info.get("stream_name", ""),
        "name": info.get("name", consumer.name),
        "created": _retime(info.get("created", ZERO_TIME)),
    }
    if with_config:
        d["config"] = info.get("config", {})
    delivered = dict(info.get("delivered") or {})
    ack_floor = dict(info.get("ack_floor") or {})
    for block in (delivered, ack_floor):
        if "last_active" in block:
            block["last_active"] = _retime(block["last_active"])
    d["delivered"] = delivered
    d["ack_floor"] = ack_floor
    d["num_ack_pending"] = int(info.get("num_ack_pending", 0))
    d["num_redelivered"] = int(info.get("num_redelivered", 0))
    d["num_waiting"] = int(info.get("num_waiting", 0))
    d["num_pending"] = int(info.get("num_pending", 0))
    d["cluster"] = {"leader": server.server_name}
    d["ts"] = now
    return d


def _stream_detail(stream: Any, server: Server, o: JszOptions, now: str) -> dict:
    d: dict[str, Any] = {
        "name": stream.name,
        "created": rfc3339_ns(stream.created_ns),
        "cluster": {"leader": server.server_name},
    }
    if o.config:
        d["config"] = stream.config.to_dict(wire=True)
    d["state"] = _stream_state(stream.state())
    if o.consumers:
        _opt(
            d,
            "consumer_detail",
            [_consumer_info(c, server, o.config, now) for c in stream.consumers()],
        )
    return d


def store_report(server: Server) -> dict:
    """hybridbus-specific: what the store found when it opened (torn tails, corrupt
    records, rebuilt indexes) and its write counters."""
    store = server.store
    if store is None:
        return {}
    stats = dict(store.stats())
    recovery = stats.pop("recovery", None)
    if recovery is None:
        recovery = dict(getattr(store, "recovery", {}) or {})
    return {
        "directory": getattr(store, "directory", None) or "",
        "recovery": recovery,
        "stats": stats,
    }


def jsz(server: Server, o: JszOptions) -> dict:
    """``/jsz`` (nats-conventions §1.6). Every stream of the store shows, the MQTT
    state streams (``$MQTT_*``) included; all of them live in account ``$G``."""
    now_s = rfc3339(time.time())
    js_on = bool(server.options.jetstream.enabled)
    usage = _store_usage(server)
    out: dict[str, Any] = {}
    out.update(_js_stats(usage) if js_on else _js_stats({}))
    if not js_on:
        out["accounts"] = 0
    out["server_id"] = server.server_id
    out["now"] = now_s
    if not js_on:
        out["disabled"] = True
        out["config"] = {"max_memory": 0, "max_storage": 0}
    else:
        out["config"] = _js_config(server)
    streams = server.store.streams() if (js_on and server.store is not None) else []
    states = [s.state() for s in streams]
    out["streams"] = len(streams)
    out["consumers"] = sum(st.consumer_count for st in states)
    out["messages"] = sum(st.messages for st in states)
    out["bytes"] = sum(st.bytes for st in states)
    if o.consumers:
        o.streams = True
    want_accounts = o.accounts or o.streams or o.acc
    if js_on and want_accounts:
        names = [GLOBAL_ACCOUNT]
        if o.acc:
            names = [n for n in names if n == o.acc]
        offset = max(o.offset, 0)
        limit = o.limit if o.limit > 0 else DEFAULT_LIST_SIZE
        details = []
        for name in sorted(names)[offset : offset + limit]:
            acc: dict[str, Any] = {"name": name, "id": name}
            acc.update(_js_stats(usage))
            if o.streams:
                _opt(
                    acc,
                    "stream_detail",
                    [_stream_detail(s, server, o, now_s) for s in streams],
                )
            details.append(acc)
        _opt(out, "account_details", details)
    out["total"] = 1 if js_on else 0
    out["hybridbus"] = {"store": store_report(server)}
    return out


# =========================================================================== /healthz


@dataclass
class HealthzOptions:
    js_enabled_only: bool = False
    js_server_only: bool = False
    js_meta_only: bool = False
    details: bool = False
    account: str = ""
    stream: str = ""
    consumer: str = ""

    @classmethod
    def from_query(cls, q: Query) -> HealthzOptions:
        o = cls()
        o.js_enabled_only = parse_bool("js-enabled-only", q.get("js-enabled-only"))
        o.js_server_only = parse_bool("js-server-only", q.get("js-server-only"))
        o.js_meta_only = parse_bool("js-meta-only", q.get("js-meta-only"))
        # Deprecated alias of js-enabled-only.
        if parse_bool("js-enabled", q.get("js-enabled")):
            o.js_enabled_only = True
        o.details = parse_bool("details", q.get("details"))
        o.account = q.get("account", "")
        o.stream = q.get("stream", "")
        o.consumer = q.get("consumer", "")
        return o


class WriteErrorWatch:
    """Turns the store's cumulative ``write_errors`` counter into "failing now".

    A counter that grew since the previous look starts (or extends) a hold of
    ``WRITE_ERROR_HOLD`` seconds during which ``/healthz`` reports the store as not
    writable. A store may also say so directly with a true ``write_failing`` (or a
    ``last_write_error`` text) in its ``stats()``; that wins."""

    __slots__ = ("seen", "failing_until", "hold")

    def __init__(self, hold: float = WRITE_ERROR_HOLD) -> None:
        self.seen: int | None = None
        self.failing_until = 0.0
        self.hold = hold

    def check(self, stats: dict) -> str | None:
        flag = stats.get("write_failing")
        last = stats.get("last_write_error")
        errors = int(stats.get("write_errors", 0) or 0)
        now = time.monotonic()
        if self.seen is not None and errors > self.seen:
            self.failing_until = now + self.hold
        # The first look has nothing to compare with: errors already on the clock
        # count as recent.
        if self.seen is None and errors:
            self.failing_until = now + self.hold
        self.seen = errors
        if flag:
            return f"store cannot write: {last or 'write error'}"
        if now < self.failing_until:
            detail = f" (last: {last})" if last else ""
            return f"store cannot write: {errors} write errors{detail}"
        return None


def healthz(server: Server, o: HealthzOptions, watch: WriteErrorWatch) -> tuple[int, dict]:
    """``/healthz`` (nats-conventions §1.7): (HTTP status, body). The body never
    holds the status code."""

    def result(code: int, status: str, error: str, kind: str = "JETSTREAM", **where) -> tuple:
        if o.details:
            item = {"type": kind}
            item.update({k: v for k, v in where.items() if v})
            item["error"] = error
            # details=true reports "error" for every failure kind.
            return code, {"status": "error", "errors": [item]}
        return code, {"status": status, "error": error}

    if o.stream and not o.account:
        return result(
            400,
            "error",
            '"account" must not be empty when checking stream health',
            "BAD_REQUEST",
        )
    if o.consumer and not o.stream:
        return result(
            400,
            "error",
            '"stream" must not be empty when checking consumer health',
            "BAD_REQUEST",
        )
    if server.store is None:
        return result(500, "error", "server is not ready for connections", "CONNECTION")
    js_on = bool(server.options.jetstream.enabled)
    if o.account and js_on:
        if o.account != GLOBAL_ACCOUNT:
            return result(
                404,
                "unavailable",
                f'JetStream account "{o.account}" not found',
                "ACCOUNT",
                account=o.account,
            )
        if o.stream:
            try:
                stream = server.store.stream(o.stream)
            except StreamNotFound:
                return result(
                    404,
                    "unavailable",
                    f'JetStream stream "{o.stream}" not found on account "{o.account}"',
                    "STREAM",
                    account=o.account,
                    stream=o.stream,
                )
            if o.consumer:
                try:
                    stream.consumer(o.consumer)
                except ConsumerNotFound:
                    return result(
                        404,
                        "unavailable",
                        f'JetStream consumer "{o.consumer}" not found for stream '
                        f'"{o.stream}" on account "{o.account}"',
                        "CONSUMER",
                        account=o.account,
                        stream=o.stream,
                        consumer=o.consumer,
                    )
    # The store holds MQTT state whether or not the JetStream API is on, so a store
    # that cannot write makes the server unhealthy in every flavour of the check.
    problem = watch.check(server.store.stats())
    if problem:
        return result(503, "unavailable", problem)
    return 200, {"status": "ok"}


# =========================================================================== /accountz, /routez


def accountz(server: Server, q: Query) -> dict:
    """``/accountz`` (nats-conventions §1.8): the two built-in accounts."""
    now = rfc3339(time.time())
    acc = q.get("acc", "")
    out: dict[str, Any] = {"server_id": server.server_id, "now": now}
    out["system_account"] = SYSTEM_ACCOUNT
    if not acc:
        out["accounts"] = list(ACCOUNTS)
        return out
    if acc not in ACCOUNTS:
        raise BadRequest(f"Account {acc} does not exist")
    is_global = acc == GLOBAL_ACCOUNT
    detail: dict[str, Any] = {
        "account_name": acc,
        "update_time": rfc3339(server.start_time),
    }
    _opt(detail, "is_system", not is_global)
    detail["expired"] = False
    detail["complete"] = True
    detail["jetstream_enabled"] = bool(is_global and server.options.jetstream.enabled)
    detail["leafnode_connections"] = 0
    detail["client_connections"] = len(server.clients) if is_global else 0
    detail["subscriptions"] = int(server.sublist.count()) if is_global else 0
    detail["name_tag"] = acc
    out["account_detail"] = detail
    return out


def routez(server: Server, q: Query) -> dict:
    """``/routez``: a standalone server has no routes."""
    subs = q.get("subs", "")
    if subs.lower() != "detail":
        parse_bool("subs", subs)
    return {
        "server_id": server.server_id,
        "server_name": server.server_name,
        "now": rfc3339(time.time()),
        "num_routes": 0,
        "routes": [],
    }
