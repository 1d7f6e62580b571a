"""``/overviewz``: hybridbus's own summary, what the dashboard shows besides /varz.

Not a nats-server endpoint (nats-server has no MQTT sessions to count): the server's
name and hybridbus's own version, then what an MQTT operator looks at first —
sessions online and offline, retained messages, QoS 1/2 messages in flight and
queued — and the store: its size, messages, streams and consumers, and how long its
fsyncs take.

    {"server_id": "N...", "server_name": "edge-1", "version": "0.1.0",
     "nats_version": "2.11.0", "lame_duck_mode": false,
     "mqtt": {"sessions_online": 3, "sessions_offline": 1, "retained_messages": 2,
              "inflight_messages": 0, "queued_messages": 5, "dropped_messages": 0},
     "store": {"bytes": 81920, "file_bytes": 81920, "memory_bytes": 0, "messages": 12,
               "streams": 4, "consumers": 0, "sync_always": false,
               "fsyncs": 9, "fsync_seconds_sum": 0.0123,
               "fsync_seconds_max_bucket": 0.005},
     "jetstream": {"enabled": true, "api": {"level": 1, "total": 7, "errors": 1},
                   "streams_total": 5,
                   "streams": [{"name": "ORDERS", "subjects": ["orders.>"],
                                "messages": 3, "bytes": 141, "consumers": 1,
                                "internal": false}, ...]}}

The fsync figures are the store's histogram (the one /metrics exports): the count and
the sum let a poller compute the mean latency over its own interval;
``fsync_seconds_max_bucket`` is the upper bound of the highest non-empty bucket (-1
when some fsync took longer than the largest bound).
Counting sessions walks them once per request, as /metrics does.

``jetstream`` is the dashboard's JetStream panel: the API counters of ``/jsz`` and
the streams by name (at most ``DEFAULT_LIST_SIZE``; ``streams_total`` counts all),
the MQTT state streams included and marked ``internal``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hybridbus import NATS_COMPAT_VERSION, __version__
from hybridbus.monitor.common import DEFAULT_LIST_SIZE, mqtt_counts
from hybridbus.monitor.jsz import api_counters

if TYPE_CHECKING:
    from hybridbus.server.server import Server


def overview(server: Server) -> dict[str, Any]:
    return {
        "server_id": server.server_id,
        "server_name": server.server_name,
        "version": __version__,
        "nats_version": NATS_COMPAT_VERSION,
        "lame_duck_mode": bool(getattr(server, "ldm", False)),
        "mqtt": mqtt_counts(server),
        "store": _store(server),
        "jetstream": _jetstream(server),
    }


def _jetstream(server: Server) -> dict[str, Any]:
    level, total, errors = api_counters(server)
    enabled = server.jetstream is not None and server.store is not None
    streams = sorted(server.store.listed_streams(), key=lambda s: s.name) if enabled else []
    rows = []
    for stream in streams[:DEFAULT_LIST_SIZE]:
        state = stream.state()
        rows.append(
            {
                "name": stream.name,
                "subjects": list(stream.config.subjects or []),
                "messages": int(state.messages),
                "bytes": int(state.bytes),
                "consumers": int(state.consumer_count),
                # the MQTT layer's own streams (nats-server shows its $MQTT_ ones too)
                "internal": stream.name.startswith("$MQTT_"),
            }
        )
    return {
        "enabled": enabled,
        "api": {"level": level, "total": total, "errors": errors},
        "streams_total": len(streams),
        "streams": rows,
    }


def _store(server: Server) -> dict[str, Any]:
    store = server.store
    out: dict[str, Any] = {
        "bytes": 0,
        "file_bytes": 0,
        "memory_bytes": 0,
        "messages": 0,
        "streams": 0,
        "consumers": 0,
        "sync_always": bool(server.options.jetstream.sync_always),
        "fsyncs": 0,
        "fsync_seconds_sum": 0.0,
        "fsync_seconds_max_bucket": 0.0,
    }
    if store is None:
        return out
    usage = store.usage()
    streams = store.listed_streams()
    out["file_bytes"] = int(usage.get("storage", 0))
    out["memory_bytes"] = int(usage.get("memory", 0))
    out["bytes"] = out["file_bytes"] + out["memory_bytes"]
    out["messages"] = sum(int(s.state().messages) for s in streams)
    out["streams"] = len(streams)
    out["consumers"] = int(usage.get("consumers", 0))
    latency = store.stats().get("fsync_latency") or {}
    out["fsyncs"] = int(latency.get("count", 0))
    out["fsync_seconds_sum"] = float(latency.get("sum", 0.0))
    previous = 0
    for upper, cumulative in latency.get("buckets", ()):
        if cumulative > previous:
            out["fsync_seconds_max_bucket"] = float(upper)
        previous = cumulative
    if out["fsyncs"] > previous:  # some took longer than the largest bound
        out["fsync_seconds_max_bucket"] = -1.0
    return out
