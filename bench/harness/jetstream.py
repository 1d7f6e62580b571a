"""The JetStream scenarios (issue 15): acked publish, pull consume + ack, KV round trips.

Each runs on a fresh server with JetStream on and file storage (nats-server: a
``jetstream { store_dir }`` block in the temp dir; hybridbus: its store in the temp dir,
JetStream on by default), both with their default sync policy (written to the OS at once,
fsync every 2 minutes).

- ``js_publish``: stream ``BENCH`` on ``bench.js``; one ``JsPublisher`` with 1,000 PubAcks
  outstanding (slices of 100): msgs/s acked.
- ``js_pull``: stream ``BENCHP`` on ``bench.pull`` pre-filled with ``js_prefill`` messages
  (acked publishes, the same generator, timed: ``prefill_rate``), then a durable pull
  consumer fetching 500 at a time and acking every message: msgs/s consumed. The window
  closes early if the consumer drains the stream (``drained_in_window``); the ack floor
  and ack-pending count read from ConsumerInfo after the run show the acks were applied.
- ``kv_latency``: bucket ``bench`` (history 1, direct get on), 100 keys written once in
  setup, then put and get one after the other: round trips/s and each one's p50/p99.
"""

from __future__ import annotations

import time
from typing import Any

from . import servers
from .loadgen_js import JsPublisher, JsPuller, KvClient, stream_config
from .measure import collect, measure_flow
from .servers import RunningServer
from .workers import Fleet


def build_js_publish(srv: RunningServer, o: Any) -> list[Any]:
    from .scenarios import RoleSpec

    params = dict(
        host=srv.host,
        port=srv.nats_port,
        subject="bench.js",
        payload_size=o.payload,
        inflight=o.js_inflight,
        batch=o.js_batch,
        stream=stream_config("BENCH", ["bench.js"]),
    )
    return [RoleSpec("pub", "pub", JsPublisher, params)]


def build_kv_latency(srv: RunningServer, o: Any) -> list[Any]:
    from .scenarios import RoleSpec

    params = dict(host=srv.host, port=srv.nats_port, keys=o.kv_keys, payload_size=o.payload)
    return [RoleSpec("req", "kv", KvClient, params)]


def prefill(srv: RunningServer, o: Any, stream: str, subject: str) -> dict[str, Any]:
    """Publish ``o.js_prefill`` acked messages into a new stream; bounded by js_timeout."""
    with Fleet() as fleet:
        fleet.spawn(
            "prefill",
            "pub",
            JsPublisher,
            host=srv.host,
            port=srv.nats_port,
            subject=subject,
            payload_size=o.payload,
            inflight=o.js_inflight,
            batch=o.js_batch,
            stream=stream_config(stream, [subject]),
            total=o.js_prefill,
        )
        fleet.wait_ready(fleet.workers)
        _, _, t_stop = fleet.go(0.0, o.js_timeout, 0.0)
        collect(fleet, srv, t_stop + 30.0)
        r = fleet.workers[0].result or {}
    acked = r.get("acked", 0)
    secs = r.get("fill_s") or 0.0
    return {
        "prefill": acked,
        "prefill_s": secs,
        "prefill_rate": acked / secs if secs else None,
        "prefill_errors": r.get("errors", 0),
        "prefill_first_error": r.get("first_error") or None,
    }


def run_js_pull(scn: Any, server_name: str, o: Any) -> dict[str, Any]:
    from .scenarios import RoleSpec

    srv = servers.start(server_name, "jetstream")
    try:
        t = time.monotonic()
        fill = prefill(srv, o, "BENCHP", "bench.pull")
        if fill["prefill"] < o.js_prefill:
            fill["note"] = (
                f"pre-fill stopped at {fill['prefill']:,} of {o.js_prefill:,} messages "
                f"after {time.monotonic() - t:.0f} s"
            )
        params = dict(
            host=srv.host,
            port=srv.nats_port,
            stream="BENCHP",
            consumer="bench",
            batch=o.js_pull_batch,
        )
        out = measure_flow(
            srv, scn.metric, [RoleSpec("sub", "puller", JsPuller, params)], o.warmup, o.duration
        )
    finally:
        srv.stop()
    r = out["workers"].get("puller", {})
    for key in (
        "drained",
        "drained_in_window",
        "delivered_stream_seq",
        "ack_floor_stream_seq",
        "num_ack_pending",
        "num_redelivered",
        "statuses",
        "consumer_info_error",
    ):
        if key in r:
            out[key] = r[key]
    out["window_s"] = r.get("elapsed")
    out.update(fill)
    notes = [fill.get("note")] if fill.get("note") else []
    if r.get("drained") and not r.get("elapsed"):
        notes.append("the consumer drained the stream before the window: raise --js-prefill")
    elif r.get("drained_in_window"):
        notes.append(f"drained the stream after {r['elapsed']:.1f} s of the window")
    # Every message the puller received was acked; the ack floor shows the server applied
    # those acks (what it delivered after the puller stopped reading stays pending).
    out["received"] = r.get("total")
    if out.get("ack_floor_stream_seq") != r.get("total"):
        notes.append(
            f"ack floor {out.get('ack_floor_stream_seq')} after the run, "
            f"but {r.get('total')} messages received and acked"
        )
    if notes:
        out["note"] = "; ".join(notes)
    return out


def js_targets(doc: dict[str, Any], value: Any, ratio: Any) -> list[dict[str, Any]]:
    """Issue 15's targets: acked publish and pull consume + ack >= 1.0x nats-server; KV
    get latency no worse than nats-server's (p50 and p99 each at most nats-server's)."""
    out = []
    for label, scn in (
        ("JetStream acked publish >= 1.0x nats-server", "js_publish"),
        ("JetStream pull consume + ack >= 1.0x nats-server", "js_pull"),
    ):
        x = ratio(doc, scn, "nats-server")
        a, b = value(doc, scn, "hybridbus"), value(doc, scn, "nats-server")
        measured = (
            f"{x:.2f}x ({a:,.0f} vs {b:,.0f} msgs/s, `{scn}`)"
            if x is not None
            else f"n/a (`{scn}`)"
        )
        out.append(dict(target=label, measured=measured, ok=None if x is None else x >= 1.0))
    parts = []
    worse = []
    for key in ("get_p50_us", "get_p99_us"):
        a, b = (
            value(doc, "kv_latency", "hybridbus", key),
            value(doc, "kv_latency", "nats-server", key),
        )
        if a is not None and b is not None:
            parts.append(f"{key[4:7]} {a:,.0f} vs {b:,.0f} us ({a / b:.2f}x)")
            worse.append(a > b)
    out.append(
        dict(
            target="KV get latency p50/p99 no worse than nats-server's",
            measured=", ".join(parts) + " (`kv_latency`)" if parts else "n/a (`kv_latency`)",
            ok=None if len(worse) < 2 else not any(worse),
        )
    )
    return out
