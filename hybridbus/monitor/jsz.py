"""``/jsz``: JetStream limits, usage and the store's streams and consumers, plus the
JetStream blocks ``/varz`` embeds (``js_config``, ``js_stats``) and hybridbus's own
store report (recovery findings and write counters).
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hybridbus.monitor.common import (
    DEFAULT_LIST_SIZE,
    GLOBAL_ACCOUNT,
    Query,
    nanos,
    omitempty,
    page_window,
)
from hybridbus.monitor.gotypes import ZERO_TIME, parse_bool, parse_int, rfc3339, rfc3339_ns
from hybridbus.store.api import parse_rfc3339

if TYPE_CHECKING:
    from hybridbus.server.server import Server


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


# =========================================================================== limits and usage


def js_limits(server: Server) -> tuple[int, int]:
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


def js_config(server: Server) -> dict:
    js = server.options.jetstream
    max_memory, max_storage = js_limits(server)
    cfg: dict[str, Any] = {"max_memory": max_memory, "max_storage": max_storage}
    omitempty(cfg, "store_dir", os.path.abspath(js.store_dir) if js.store_dir else "")
    omitempty(cfg, "sync_interval", nanos(js.sync_interval))
    omitempty(cfg, "sync_always", bool(js.sync_always))
    omitempty(cfg, "domain", js.domain or "")
    omitempty(cfg, "strict", bool(js.strict))
    return cfg


def store_usage(server: Server) -> dict[str, int]:
    store = server.store
    if store is None:
        return {"memory": 0, "storage": 0, "streams": 0, "consumers": 0}
    return store.usage()


def api_counters(server: Server) -> tuple[int, int, int]:
    """(level, total, errors) of the JetStream API, from the engine: every request
    that reached a handler counts, an error reply counts once more in ``errors``
    (nats-server counts the same way; publishes and monitoring reads never count)."""
    js = server.jetstream
    if js is None:
        return 0, 0, 0
    return int(js.api_level), int(js.api_total), int(js.api_errors)


def js_stats(server: Server) -> dict:
    """The server's JetStreamStats (``/jsz`` inlines it, ``/varz`` has it as
    ``jetstream.stats``); all zero with JetStream off, as nats-server reports it."""
    enabled = server.jetstream is not None
    usage = store_usage(server) if enabled else {}
    level, total, errors = api_counters(server)
    return {
        "memory": int(usage.get("memory", 0)),
        "storage": int(usage.get("storage", 0)),
        "reserved_memory": 0,
        "reserved_storage": 0,
        "accounts": 1 if enabled else 0,
        "ha_assets": 0,
        "api": {"level": level, "total": total, "errors": errors},
    }


# An account without reservations (dynamic limits): nats-server shows uint64's max.
UNRESERVED = (1 << 64) - 1


def account_stats(server: Server) -> dict:
    """One account's JetStreamStats in ``account_details``: its usage and API counts;
    nats-server leaves ``accounts`` and the API ``level`` at 0 there."""
    usage = store_usage(server)
    _level, total, errors = api_counters(server)
    return {
        "memory": int(usage.get("memory", 0)),
        "storage": int(usage.get("storage", 0)),
        "reserved_memory": UNRESERVED,
        "reserved_storage": UNRESERVED,
        "accounts": 0,
        "ha_assets": 0,
        "api": {"level": 0, "total": total, "errors": errors},
    }


# =========================================================================== streams and consumers


def _stream_state(state: Any) -> dict:
    d: dict[str, Any] = {
        "messages": int(state.messages),
        "bytes": int(state.bytes),
        "first_seq": int(state.first_seq),
        "first_ts": rfc3339_ns(state.first_ts_ns) if state.first_ts_ns else ZERO_TIME,
        "last_seq": int(state.last_seq),
        "last_ts": rfc3339_ns(state.last_ts_ns) if state.last_ts_ns else ZERO_TIME,
    }
    omitempty(d, "num_subjects", int(state.num_subjects))
    omitempty(d, "num_deleted", int(state.num_deleted))
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


def consumer_info(server: Server, consumer: Any) -> dict:
    """A consumer's ConsumerInfo in wire units, as ``CONSUMER.INFO`` answers it (the
    engine adds the live parts: pull requests waiting, a bound push consumer);
    ``/jsz`` and ``/metrics`` read it."""
    js = server.jetstream
    if js is not None:
        return js.consumer_info(consumer)
    return consumer.info(wire=True)


def _consumer_info(consumer: Any, server: Server, with_config: bool, now: str) -> dict:
    info = consumer_info(server, consumer)
    d: dict[str, Any] = {
        "stream_name": info.get("stream_name", ""),
        "name": info.get("name", consumer.name),
        "created": _retime(info.get("created", ZERO_TIME)),
    }
    if with_config:
        config = dict(info.get("config", {}))
        if "opt_start_time" in config:
            config["opt_start_time"] = _retime(config["opt_start_time"])
        d["config"] = config
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
    omitempty(d, "push_bound", bool(info.get("push_bound")))
    # Standalone nats-server (2.15.1) gives its consumers no "cluster" block in /jsz,
    # only its streams.
    d["ts"] = now
    return d


def _stream_detail(stream: Any, server: Server, o: JszOptions, now: str) -> dict:
    """nats-server's StreamDetail. The config and a mirror's ``mirror`` block or a
    sourcing stream's ``sources`` come from the engine's StreamInfo (what
    ``STREAM.INFO`` answers), so both show the same defaults."""
    js = server.jetstream
    info = js.stream_info(stream) if js is not None else {}
    d: dict[str, Any] = {
        "name": stream.name,
        "created": rfc3339_ns(stream.created_ns),
        "cluster": {"leader": server.server_name},
    }
    if o.config:
        d["config"] = info.get("config") or stream.config.to_dict(wire=True)
    d["state"] = _stream_state(stream.state())
    if o.consumers:
        omitempty(
            d,
            "consumer_detail",
            [_consumer_info(c, server, o.config, now) for c in stream.consumers()],
        )
    for key in ("mirror", "sources"):
        if key in info:
            d[key] = info[key]
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


# =========================================================================== /jsz


def _account_details(server: Server, o: JszOptions, streams: list, now: str) -> list[dict]:
    """The ``account_details`` listing: only ``$G`` holds streams here."""
    names = [GLOBAL_ACCOUNT]
    if o.acc:
        names = [n for n in names if n == o.acc]  # an unknown account: silently none
    offset, limit = page_window(o.offset, o.limit)
    details = []
    for name in sorted(names)[offset : offset + limit]:
        acc: dict[str, Any] = {"name": name, "id": name}
        acc.update(account_stats(server))
        if o.streams:
            omitempty(
                acc,
                "stream_detail",
                [_stream_detail(s, server, o, now) for s in streams],
            )
        details.append(acc)
    return details


def jsz(server: Server, o: JszOptions) -> dict:
    """``/jsz`` (nats-conventions §1.6). Every listed stream of the store shows, the
    MQTT state streams (``$MQTT_*``) once MQTT has been used, as nats-server shows its
    own ``$MQTT_`` streams from the first MQTT CONNECT; all of them live in account
    ``$G``. ``leader-only`` changes nothing: a
    standalone server is always the meta leader. With JetStream off (no engine) the
    report is nats-server's: ``disabled``, zero counters and limits, no details."""
    now_s = rfc3339(time.time())
    js_on = server.jetstream is not None
    out: dict[str, Any] = js_stats(server)
    out["server_id"] = server.server_id
    out["now"] = now_s
    if js_on:
        out["config"] = js_config(server)
    else:
        out["disabled"] = True
        out["config"] = {"max_memory": 0, "max_storage": 0}
    streams = server.store.listed_streams() if (js_on and server.store is not None) else []
    streams.sort(key=lambda s: s.name)
    states = [s.state() for s in streams]
    out["streams"] = len(streams)
    out["consumers"] = sum(st.consumer_count for st in states)
    out["messages"] = sum(st.messages for st in states)
    out["bytes"] = sum(st.bytes for st in states)
    if o.consumers:
        o.streams = True
    if js_on and (o.accounts or o.streams or o.acc):
        omitempty(out, "account_details", _account_details(server, o, streams, now_s))
    out["total"] = 1 if js_on else 0
    out["hybridbus"] = {"store": store_report(server)}
    return out
