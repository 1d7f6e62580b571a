"""``/metrics``: a prometheus-client Collector that reads the server at scrape time.

Nothing here runs on the message path. The connections already count their
messages and bytes (for /connz), ``server.stats`` keeps the closed ones' share
and the event counters, the MQTT broker knows its sessions, the store its usage;
``ServerCollector.collect`` reads all of that when Prometheus scrapes and turns it
into metric families. Each monitor has its own ``CollectorRegistry``, so several
servers in one process (the tests) do not collide.

Traffic by protocol: ``server.closed_by_protocol`` holds what closed connections
carried (``{"nats": [in_msgs, in_bytes, out_msgs, out_bytes], "mqtt": [...]}``),
and the live connections add their own counters at scrape time.

Store fsync latency is exported as a histogram when ``store.stats()`` carries
``fsync_latency = {"buckets": [(upper_bound_seconds, cumulative_count), ...],
"count": n, "sum": seconds}``; without it the family is left out.

JetStream: the figures of ``/jsz`` under the names the prometheus-nats-exporter's
``-jsz`` collector gives them, prefixed ``hybridbus_`` like every family here (a
Grafana dashboard built for the exporter needs only the prefix), labelled
``stream`` per stream and ``stream``, ``consumer`` per consumer. Every stream
shows, the MQTT state streams (``$MQTT_*``) included, as in ``/jsz``; with
JetStream off, ``hybridbus_jetstream_enabled`` is 0 and the totals are 0.

Gauges, server-wide: ``hybridbus_jetstream_enabled`` (1 or 0),
``hybridbus_jetstream_server_total_streams``, ``..._server_total_consumers``,
``..._server_total_messages``, ``..._server_total_message_bytes``,
``..._server_max_memory``, ``..._server_max_storage``.
Counters: ``hybridbus_jetstream_api_requests_total``,
``hybridbus_jetstream_api_errors_total``.
Gauges by ``stream``: ``hybridbus_jetstream_stream_total_messages``,
``..._stream_total_bytes``, ``..._stream_first_seq``, ``..._stream_last_seq``,
``..._stream_consumer_count``.
Gauges by ``stream`` and ``consumer``: ``hybridbus_jetstream_consumer_num_pending``,
``..._consumer_num_ack_pending``, ``..._consumer_num_redelivered``,
``..._consumer_num_waiting``, ``..._consumer_delivered_stream_seq``,
``..._consumer_delivered_consumer_seq``, ``..._consumer_ack_floor_stream_seq``,
``..._consumer_ack_floor_consumer_seq``.

The API counters count requests that reached a handler and the error replies among
them (``/jsz`` ``api.total``/``api.errors``).

Leaf-node links to NATS hubs (``leafz.py``): gauges ``hybridbus_leafnode_links``
(connected) and ``hybridbus_leafnode_remotes`` (configured; alert when links <
remotes), ``hybridbus_leafnode_rtt_seconds`` by ``hub`` (the hub server's name) and
``account``; counters ``hybridbus_leafnode_messages_total`` and
``hybridbus_leafnode_bytes_total`` by ``direction`` (``in`` = from the hub), which
keep what closed links carried. Link traffic is not in the client traffic families.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from prometheus_client.core import (
    CollectorRegistry,
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.exposition import choose_encoder

from hybridbus import __version__
from hybridbus.monitor.common import mqtt_counts, rss_bytes, traffic_totals
from hybridbus.monitor.jsz import api_counters, consumer_info, js_limits
from hybridbus.monitor.leafz import LeafTraffic, link_counts, links

if TYPE_CHECKING:
    from hybridbus.server.server import Server

PROTOCOLS = ("nats", "mqtt")
_IN_MSGS, _IN_BYTES, _OUT_MSGS, _OUT_BYTES = range(4)


class ServerCollector:
    """Every hybridbus metric, read from the server when collected."""

    def __init__(self, server: Server, http_req_stats: dict[str, int] | None = None) -> None:
        self.server = server
        self.http_req_stats = http_req_stats if http_req_stats is not None else {}
        self.leaf_traffic = LeafTraffic()

    def describe(self) -> list:
        # An empty describe() keeps registration from running collect() early.
        return []

    # -- helpers ------------------------------------------------------------------------

    def _protocol_totals(self) -> dict[str, list[int]]:
        server = self.server
        base = {p: list(v) for p, v in server.closed_by_protocol.items()}
        for c in server.clients.values():
            t = base.get(c.conn_type)
            if t is None:
                t = base[c.conn_type] = [0, 0, 0, 0]
            t[0] += c.in_msgs
            t[1] += c.in_bytes
            t[2] += c.out_msgs
            t[3] += c.out_bytes
        for p in PROTOCOLS:
            base.setdefault(p, [0, 0, 0, 0])
        return base

    # -- the scrape ---------------------------------------------------------------------

    def collect(self):
        yield from self._identity()
        yield from self._connections()
        yield from self._traffic()
        yield from self._events()
        yield from self._mqtt()
        yield from self._store()
        yield from self._jetstream()
        yield from self._leafnodes()
        yield from self._http()

    def _identity(self):
        """Who is serving, since when, with how much memory."""
        server = self.server
        info = GaugeMetricFamily(
            "hybridbus_info",
            "Server identity; the value is always 1.",
            labels=["version", "server_id", "server_name"],
        )
        info.add_metric([__version__, server.server_id, server.server_name], 1)
        yield info
        yield GaugeMetricFamily(
            "hybridbus_start_time_seconds",
            "When the server started, in seconds since the epoch.",
            value=server.start_time,
        )
        yield GaugeMetricFamily(
            "hybridbus_process_resident_memory_bytes",
            "Resident memory of the server process.",
            value=rss_bytes(),
        )

    def _connections(self):
        """Open connections by protocol, accepted ones, and queued output."""
        server = self.server
        by_proto = dict.fromkeys(PROTOCOLS, 0)
        pending = 0
        for c in server.clients.values():
            by_proto[c.conn_type] = by_proto.get(c.conn_type, 0) + 1
            pending += c.pending_bytes()
        conns = GaugeMetricFamily(
            "hybridbus_connections", "Open client connections.", labels=["protocol"]
        )
        for proto, n in sorted(by_proto.items()):
            conns.add_metric([proto], n)
        yield conns
        yield CounterMetricFamily(
            "hybridbus_accepted_connections",
            "Client connections accepted since start, all protocols.",
            value=server.stats.total_connections,
        )
        yield GaugeMetricFamily(
            "hybridbus_pending_bytes",
            "Outbound bytes queued for all clients and not yet written.",
            value=pending,
        )

    def _traffic(self):
        # Traffic by protocol (client point of view: received = published by clients).
        totals = self._protocol_totals()
        families = (
            ("hybridbus_received_messages", "Messages published by clients.", _IN_MSGS),
            ("hybridbus_received_bytes", "Payload bytes published by clients.", _IN_BYTES),
            ("hybridbus_sent_messages", "Messages delivered to clients.", _OUT_MSGS),
            ("hybridbus_sent_bytes", "Payload bytes delivered to clients.", _OUT_BYTES),
        )
        for name, doc, idx in families:
            fam = CounterMetricFamily(name, doc, labels=["protocol"])
            for proto in sorted(totals):
                fam.add_metric([proto], totals[proto][idx])
            yield fam
        # The exact server-wide sums, whatever the per-protocol split could recover.
        in_msgs, in_bytes, out_msgs, out_bytes = traffic_totals(self.server)
        for name, doc, value in (
            ("hybridbus_server_received_messages", "Messages published, all clients.", in_msgs),
            ("hybridbus_server_received_bytes", "Bytes published, all clients.", in_bytes),
            ("hybridbus_server_sent_messages", "Messages delivered, all clients.", out_msgs),
            ("hybridbus_server_sent_bytes", "Bytes delivered, all clients.", out_bytes),
        ):
            yield CounterMetricFamily(name, doc, value=value)

    def _events(self):
        """Event counters, and the router's subscription count."""
        server = self.server
        st = server.stats
        yield CounterMetricFamily(
            "hybridbus_slow_consumers",
            "Connections cut because their outbound data piled up.",
            value=st.slow_consumers,
        )
        yield CounterMetricFamily(
            "hybridbus_stale_connections",
            "Connections closed for not answering pings / keep-alive.",
            value=st.stale_connections,
        )
        yield CounterMetricFamily(
            "hybridbus_auth_failures",
            "Failed authentications, all protocols.",
            value=getattr(st, "auth_failures", 0),
        )
        yield GaugeMetricFamily(
            "hybridbus_subscriptions",
            "Subscriptions in the routers of every account (NATS subscriptions and MQTT "
            "filters' subjects).",
            value=sum(a.sublist.count() for a in server.accounts.values()),
        )

    def _leafnodes(self):
        """The leaf-node links (module docstring)."""
        connected, configured = link_counts(self.server)
        yield GaugeMetricFamily(
            "hybridbus_leafnode_links", "Leaf-node links to NATS hubs that are up.", connected
        )
        yield GaugeMetricFamily(
            "hybridbus_leafnode_remotes", "Leaf-node remotes configured.", configured
        )
        rtt = GaugeMetricFamily(
            "hybridbus_leafnode_rtt_seconds",
            "Round-trip time to the hub of a leaf-node link.",
            labels=["hub", "account"],
        )
        for conn in links(self.server):
            account = getattr(conn.account, "name", conn.account)
            rtt.add_metric([conn.remote_name or "", account or ""], float(conn.rtt or 0.0))
        yield rtt
        in_msgs, in_bytes, out_msgs, out_bytes = self.leaf_traffic.totals(self.server)
        for name, doc, values in (
            ("hybridbus_leafnode_messages", "Messages over leaf-node links.", (in_msgs, out_msgs)),
            ("hybridbus_leafnode_bytes", "Bytes over leaf-node links.", (in_bytes, out_bytes)),
        ):
            fam = CounterMetricFamily(name, doc + " in = from the hub.", labels=["direction"])
            fam.add_metric(["in"], values[0])
            fam.add_metric(["out"], values[1])
            yield fam

    def _http(self):
        """This monitor's own requests, by path."""
        http = CounterMetricFamily(
            "hybridbus_http_requests", "Monitoring HTTP requests served, by path.", labels=["path"]
        )
        for path, n in sorted(self.http_req_stats.items()):
            http.add_metric([path], n)
        yield http

    def _mqtt(self):
        counts = mqtt_counts(self.server)
        inflight, queued = counts["inflight_messages"], counts["queued_messages"]
        online, offline = counts["sessions_online"], counts["sessions_offline"]
        retained, dropped = counts["retained_messages"], counts["dropped_messages"]
        yield GaugeMetricFamily(
            "hybridbus_mqtt_inflight_messages",
            "QoS 1/2 messages sent to MQTT clients and not yet acknowledged.",
            value=inflight,
        )
        yield GaugeMetricFamily(
            "hybridbus_mqtt_queued_messages",
            "QoS 1/2 messages waiting for room in a session's in-flight window "
            "(or for an offline session to return).",
            value=queued,
        )
        sessions = GaugeMetricFamily(
            "hybridbus_mqtt_sessions", "MQTT sessions, by connection state.", labels=["state"]
        )
        sessions.add_metric(["online"], online)
        sessions.add_metric(["offline"], offline)
        yield sessions
        yield GaugeMetricFamily(
            "hybridbus_mqtt_retained_messages", "Retained MQTT messages.", value=retained
        )
        yield CounterMetricFamily(
            "hybridbus_mqtt_dropped_messages",
            "QoS 1/2 messages dropped because an offline session's queue was full "
            "(max_session_messages); an online session never drops.",
            value=dropped,
        )

    def _store(self):
        store = self.server.store
        if store is None:
            return
        stats = store.stats()
        usage = store.usage()
        messages = 0
        streams = store.listed_streams()
        for s in streams:
            messages += s.state().messages
        size = GaugeMetricFamily(
            "hybridbus_store_bytes", "Bytes held by the stream store.", labels=["storage"]
        )
        size.add_metric(["memory"], usage.get("memory", 0))
        size.add_metric(["file"], usage.get("storage", 0))
        yield size
        yield GaugeMetricFamily(
            "hybridbus_store_messages", "Messages held in all streams.", value=messages
        )
        yield GaugeMetricFamily(
            "hybridbus_store_streams",
            "Streams, the MQTT state streams included.",
            value=len(streams),
        )
        yield GaugeMetricFamily(
            "hybridbus_store_consumers", "Stream consumers.", value=usage.get("consumers", 0)
        )
        for key, doc in (
            ("writes", "Batched store writes."),
            ("fsyncs", "Store fsync calls."),
            ("write_errors", "Store writes that failed."),
            ("corrupt_records", "Corrupt records skipped (at recovery and since)."),
            ("torn_tails", "Torn record tails cut at recovery."),
            ("compactions", "Store file compactions."),
        ):
            if key in stats:
                yield CounterMetricFamily(f"hybridbus_store_{key}", doc, value=stats[key])
        latency = stats.get("fsync_latency")
        if latency:
            buckets = [(_le(le), int(n)) for le, n in latency.get("buckets", ())]
            if not buckets or buckets[-1][0] != "+Inf":
                buckets.append(("+Inf", int(latency.get("count", 0))))
            yield HistogramMetricFamily(
                "hybridbus_store_fsync_seconds",
                "Time an fsync of the store took.",
                buckets=buckets,
                sum_value=float(latency.get("sum", 0.0)),
            )

    # -- JetStream (module docstring) -------------------------------------------------

    def _jetstream(self):
        server = self.server
        enabled = server.jetstream is not None and server.store is not None
        streams = sorted(server.store.listed_streams(), key=lambda s: s.name) if enabled else []
        states = [s.state() for s in streams]
        max_memory, max_storage = js_limits(server) if enabled else (0, 0)
        _level, api_total, api_errors = api_counters(server)
        prefix = "hybridbus_jetstream_"
        for name, doc, value in (
            ("enabled", "1 when JetStream runs, else 0.", int(enabled)),
            ("server_total_streams", "Streams (the MQTT state streams included).", len(streams)),
            (
                "server_total_consumers",
                "Consumers of all streams.",
                sum(st.consumer_count for st in states),
            ),
            (
                "server_total_messages",
                "Messages stored in all streams.",
                sum(st.messages for st in states),
            ),
            (
                "server_total_message_bytes",
                "Bytes stored in all streams.",
                sum(st.bytes for st in states),
            ),
            ("server_max_memory", "JetStream's memory limit in bytes.", max_memory),
            ("server_max_storage", "JetStream's file storage limit in bytes.", max_storage),
        ):
            yield GaugeMetricFamily(prefix + name, doc, value=value)
        yield CounterMetricFamily(
            prefix + "api_requests", "JetStream API requests handled.", value=api_total
        )
        yield CounterMetricFamily(
            prefix + "api_errors",
            "JetStream API requests answered with an error.",
            value=api_errors,
        )
        yield from _stream_families(prefix, streams, states)
        yield from _consumer_families(prefix, streams, server)


_STREAM_GAUGES = (
    ("stream_total_messages", "Messages stored in a stream.", "messages"),
    ("stream_total_bytes", "Bytes stored in a stream.", "bytes"),
    ("stream_first_seq", "First sequence in a stream.", "first_seq"),
    ("stream_last_seq", "Last sequence in a stream.", "last_seq"),
    ("stream_consumer_count", "Consumers of a stream.", "consumer_count"),
)

_CONSUMER_GAUGES = (
    ("consumer_num_pending", "Messages of the stream the consumer has yet to deliver."),
    ("consumer_num_ack_pending", "Messages delivered and not yet acknowledged."),
    ("consumer_num_redelivered", "Messages delivered more than once and not yet acknowledged."),
    ("consumer_num_waiting", "Pull requests waiting for messages."),
    ("consumer_delivered_stream_seq", "Stream sequence of the last delivered message."),
    ("consumer_delivered_consumer_seq", "Consumer sequence of the last delivered message."),
    ("consumer_ack_floor_stream_seq", "Stream sequence below which all is acknowledged."),
    ("consumer_ack_floor_consumer_seq", "Consumer sequence below which all is acknowledged."),
)


def _stream_families(prefix: str, streams: list, states: list):
    for name, doc, attr in _STREAM_GAUGES:
        fam = GaugeMetricFamily(prefix + name, doc, labels=["stream"])
        for stream, state in zip(streams, states, strict=True):
            fam.add_metric([stream.name], getattr(state, attr))
        yield fam


def _consumer_families(prefix: str, streams: list, server: Server):
    fams = {
        name: GaugeMetricFamily(prefix + name, doc, labels=["stream", "consumer"])
        for name, doc in _CONSUMER_GAUGES
    }
    for stream in streams:
        for consumer in sorted(stream.consumers(), key=lambda c: c.name):
            info = consumer_info(server, consumer)
            delivered = info.get("delivered") or {}
            floor = info.get("ack_floor") or {}
            values = {
                "consumer_num_pending": info.get("num_pending", 0),
                "consumer_num_ack_pending": info.get("num_ack_pending", 0),
                "consumer_num_redelivered": info.get("num_redelivered", 0),
                "consumer_num_waiting": info.get("num_waiting", 0),
                "consumer_delivered_stream_seq": delivered.get("stream_seq", 0),
                "consumer_delivered_consumer_seq": delivered.get("consumer_seq", 0),
                "consumer_ack_floor_stream_seq": floor.get("stream_seq", 0),
                "consumer_ack_floor_consumer_seq": floor.get("consumer_seq", 0),
            }
            labels = [stream.name, info.get("name", consumer.name)]
            for name, value in values.items():
                fams[name].add_metric(labels, value)
    yield from fams.values()


def _le(bound: Any) -> str:
    if isinstance(bound, str):
        return bound
    if bound == float("inf"):
        return "+Inf"
    return repr(float(bound))


class Metrics:
    """The registry of one monitor and its text rendering."""

    def __init__(self, server: Server, http_req_stats: dict[str, int]) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.collector = ServerCollector(server, http_req_stats)
        self.registry.register(self.collector)

    def render(self, accept: str | None) -> tuple[bytes, str]:
        """(body, content type), OpenMetrics when the scraper asks for it."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type
