"""``/varz``: the server's identity, options, listeners, process facts (memory,
cores, CPU) and traffic counters, every always-present field even when zero.
Also the process CPU sampler (``CpuMeter``) the monitor keeps for it.
"""

from __future__ import annotations

import os
import platform
import time
from typing import TYPE_CHECKING, Any, Protocol

from hybridbus import NATS_COMPAT_VERSION, __version__
from hybridbus.monitor.common import (
    nanos,
    omitempty,
    rss_bytes,
    system_account_name,
    traffic_totals,
)
from hybridbus.monitor.gotypes import rfc3339, uptime
from hybridbus.monitor.jsz import js_config, js_stats
from hybridbus.monitor.leafz import links, varz_leaf

if TYPE_CHECKING:
    from hybridbus.server.server import Server


class MonitorContext(Protocol):
    """What the reports need from the monitor besides the server."""

    port: int
    http_req_stats: dict[str, int]

    def cpu_percent(self) -> float: ...


# =========================================================================== process facts


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


def go_version_string() -> str:
    """The free-text ``go`` field: what runs the server instead of a Go toolchain."""
    return (
        f"hybridbus {__version__} ({platform.python_implementation()} {platform.python_version()})"
    )


# =========================================================================== /varz sections
# Each helper appends its fields to the report in nats-server's Varz field order.


def _add_identity(v: dict[str, Any], server: Server) -> None:
    opts = server.options
    v["server_id"] = server.server_id
    v["server_name"] = server.server_name
    v["version"] = NATS_COMPAT_VERSION
    v["proto"] = 1
    v["go"] = go_version_string()
    v["host"] = opts.host
    v["port"] = int(server.nats_port or opts.port)


def _add_limits(v: dict[str, Any], server: Server, mon: MonitorContext) -> None:
    opts = server.options
    omitempty(v, "auth_required", bool(server.auth_required))
    if opts.tls is not None:
        v["tls_required"] = True
        omitempty(v, "tls_verify", bool(opts.tls.verify))
    v["max_connections"] = int(opts.max_connections)
    omitempty(v, "max_subscriptions", max(int(opts.max_subscriptions), 0))
    v["ping_interval"] = nanos(opts.ping_interval)
    v["ping_max"] = int(opts.ping_max)
    v["http_host"] = opts.http_host
    v["http_port"] = int(mon.port)
    v["http_base_path"] = opts.http_base_path or ""
    v["https_port"] = int(opts.https_port or 0)
    v["auth_timeout"] = float(opts.auth.timeout)
    v["max_control_line"] = int(opts.max_control_line)
    v["max_payload"] = int(opts.max_payload)
    v["max_pending"] = int(opts.max_pending)


def _add_blocks(v: dict[str, Any], server: Server) -> None:
    """The listener and JetStream blocks (struct-valued, so always present)."""
    opts = server.options
    v["cluster"] = {}
    v["gateway"] = {}
    v["leaf"] = varz_leaf(server)  # the configured remotes (monitor/leafz.py)
    v["mqtt"] = _varz_mqtt(server)
    v["websocket"] = _varz_websocket(server)
    # nats-server's JetStreamVarz: config and stats (API counters included) while
    # JetStream runs, an empty object when it is off.
    if server.jetstream is not None:
        v["jetstream"] = {"config": js_config(server), "stats": js_stats(server)}
    else:
        v["jetstream"] = {}
    v["tls_timeout"] = _tls_timeout(opts.tls)
    v["write_deadline"] = nanos(opts.write_deadline)


def _add_process(v: dict[str, Any], server: Server, mon: MonitorContext, now: float) -> None:
    v["start"] = rfc3339(server.start_time)
    v["now"] = rfc3339(now)
    v["uptime"] = uptime(now - server.start_time)
    v["mem"] = rss_bytes()
    v["cores"] = _cores()
    v["gomaxprocs"] = _usable_cores()
    v["cpu"] = float(mon.cpu_percent())


def _add_counters(v: dict[str, Any], server: Server, mon: MonitorContext) -> None:
    in_msgs, in_bytes, out_msgs, out_bytes = traffic_totals(server)
    # nats-server's in_/out_ totals count every connection kind, leaf links included;
    # the *_client_* ones count clients only. The links' share never goes down
    # (leafz.LeafTraffic keeps what closed links carried).
    traffic = getattr(mon, "leaf_traffic", None)
    leaf = traffic.totals(server) if traffic is not None else (0, 0, 0, 0)
    st = server.stats
    v["connections"] = len(server.clients)
    v["total_connections"] = int(st.total_connections)
    v["routes"] = 0
    v["remotes"] = 0
    v["leafnodes"] = len(links(server))  # connected links, not in "connections"
    v["in_msgs"] = in_msgs + leaf[0]
    v["in_bytes"] = in_bytes + leaf[1]
    v["out_msgs"] = out_msgs + leaf[2]
    v["out_bytes"] = out_bytes + leaf[3]
    v["in_client_msgs"] = in_msgs
    v["in_client_bytes"] = in_bytes
    v["out_client_msgs"] = out_msgs
    v["out_client_bytes"] = out_bytes
    v["slow_consumers"] = int(st.slow_consumers)
    v["stale_connections"] = int(st.stale_connections)
    v["stalled_clients"] = 0
    v["subscriptions"] = int(sum(a.sublist.count() for a in server.accounts.values()))


def _add_config_and_stats(v: dict[str, Any], server: Server, mon: MonitorContext) -> None:
    opts = server.options
    st = server.stats
    v["http_req_stats"] = dict(mon.http_req_stats)
    v["config_load_time"] = rfc3339(server.config_load_time)
    digest = opts.config_digest or ""
    if digest and not digest.startswith("sha256:"):
        digest = "sha256:" + digest
    v["config_digest"] = digest
    omitempty(v, "tags", list(opts.tags or []))
    omitempty(v, "metadata", {str(k): str(val) for k, val in (opts.metadata or {}).items()})
    omitempty(v, "system_account", system_account_name(server))
    v["slow_consumer_stats"] = _clients_only(int(st.slow_consumers))
    v["stale_connection_stats"] = _clients_only(int(st.stale_connections))
    v["disk_io_wait_stats"] = {"waiters": 0, "waits": 0, "wait_time": 0, "max_wait_time": 0}


def varz(server: Server, mon: MonitorContext) -> dict:
    """``/varz`` (nats-conventions §1.3): every always-present field, even when zero."""
    now = time.time()
    v: dict[str, Any] = {}
    _add_identity(v, server)
    _add_limits(v, server, mon)
    _add_blocks(v, server)
    _add_process(v, server, mon, now)
    _add_counters(v, server, mon)
    _add_config_and_stats(v, server, mon)
    return v


# =========================================================================== /varz blocks


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
    omitempty(d, "host", block.host)
    omitempty(d, "port", int(bound_port or block.port or 0))
    omitempty(d, "no_auth_user", block.no_auth_user or "")
    return d


def _varz_mqtt(server: Server) -> dict:
    m = server.options.mqtt
    if not m.enabled:
        return {}
    d = _varz_listener(m, server.mqtt_port)
    if m.auth is not None:
        omitempty(d, "auth_timeout", float(m.auth.timeout))
    d["tls_timeout"] = _tls_timeout(m.tls)
    omitempty(d, "ack_wait", nanos(m.ack_wait))
    # Go's field is a uint16: a larger number would break every Go-strict decoder.
    omitempty(d, "max_ack_pending", min(max(int(m.max_ack_pending or 0), 0), 65535))
    # hybridbus's own: QoS 1/2 messages an offline session's cap (max_session_messages)
    # dropped; never any for an online session (core/flow.py).
    brokers = [server.mqtt] + [a.mqtt for a in getattr(server, "_accounts_live", ())]
    d["dropped_messages"] = sum(b.stats_dropped for b in brokers if b is not None)
    return d


def _varz_websocket(server: Server) -> dict:
    w = server.options.websocket
    if not w.enabled:
        return {}
    d = _varz_listener(w, server.websocket_port)
    omitempty(d, "handshake_timeout", nanos(w.handshake_timeout))
    omitempty(d, "no_tls", bool(w.no_tls))
    omitempty(d, "same_origin", bool(w.same_origin))
    omitempty(d, "allowed_origins", list(w.allowed_origins or []))
    omitempty(d, "compression", bool(w.compression))
    return d
