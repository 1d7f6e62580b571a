"""The benchmark scenarios: which roles run, against which ports, with what parameters.

A scenario's ``build`` returns ``RoleSpec``s; the runner starts every receiver first
(subscribers, responders) and waits until each is subscribed, then the senders, then
starts them all on one clock. ``kind`` says how the runner aggregates a role's result:
"sub" rates are summed into msgs/s received, "pub" rates into msgs/s sent, "req" carries
the latency figures, "resp" is only reported.

The scale scenarios (idle_connections, many_subscriptions, retained_replay) run in phases
instead: their ``runner`` (in ``scale``) takes over the whole run on one server. So do the
fleet scenarios (``fleet``: fleet_sessions, fleet_broadcast, fleet_commands, big_qos1,
fanout_10k, fanout_10k_slow).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .cluster import run_cluster_rate, run_cluster_relink
from .cluster_sessions import run_cluster_failover, run_cluster_takeover
from .fleet import run_big_qos1, run_fanout, run_fleet_scenario
from .jetstream import build_js_publish, build_kv_latency, run_js_pull
from .loadgen_mqtt import MqttPublisher, MqttSubscriber
from .loadgen_nats import NatsPublisher, NatsRequester, NatsResponder, NatsSubscriber
from .scale import run_idle_connections, run_many_subscriptions, run_retained_replay
from .servers import RunningServer


@dataclass
class Options:
    payload: int = 64
    duration: float = 5.0
    warmup: float = 1.0
    fanout: int = 50
    fanout_procs: int = 2
    fanin: int = 4
    # NATS publisher: messages per PING, PINGs outstanding.
    nats_batch: int = 2000
    nats_window: int = 16
    # MQTT QoS 0 publisher: messages per PINGREQ, PINGREQs outstanding.
    mqtt_batch: int = 500
    mqtt_window: int = 8
    # MQTT QoS 1 publisher: unacknowledged PUBLISHes allowed, PUBLISHes per send.
    qos1_inflight: int = 1000
    qos1_batch: int = 100
    # SO_RCVLOWAT for QoS 0 / NATS subscribers (bytes); 0 = wake on every segment.
    lowat: int = 16384
    # idle_connections: how many, over how many generator processes, handshakes under way
    # per process (Mosquitto's listen backlog is 100, so 4 x 24 stays below it).
    idle_conns: int = 20000
    idle_procs: int = 4
    idle_inflight: int = 24
    # many_subscriptions: filters, connections holding them, processes, filters per SUBSCRIBE.
    subs: int = 100000
    subs_conns: int = 10
    subs_procs: int = 2
    subs_per_packet: int = 100
    # retained_replay: retained messages stored, then replayed to one `#` subscriber.
    retained: int = 100000
    # Bound on each phase of a scale scenario (seconds).
    scale_timeout: float = 120.0
    # Fleet scenarios (``fleet``): persistent sessions, generator processes creating them,
    # handshakes under way per process, the commands' window of unacknowledged PUBLISHes,
    # the bound on every phase (seconds), and which fleet session scenarios this run
    # selected (they share one server run; set by the runner).
    fleet_sessions: int = 100000
    fleet_procs: int = 4
    fleet_inflight: int = 24
    fleet_window: int = 1000
    fleet_timeout: float = 300.0
    fleet_group: tuple[str, ...] = ()
    # big_qos1: payload bytes and the publisher's window.
    big_payload: int = 1_000_000
    big_window: int = 8
    # fanout_10k: subscribers, their processes, how often each process reads its sockets
    # (seconds), the flat-out publisher's PUBLISHes per PINGREQ and PINGREQs outstanding;
    # fanout_10k_slow: the publish rate and every how many subscribers one is timed.
    fanout_subs: int = 10000
    fanout_subs_procs: int = 4
    fanout_sweep: float = 0.25
    fanout_batch: int = 1
    fanout_window: int = 2
    slow_rate: float = 10.0
    lag_every: int = 100
    # JetStream (``jetstream``): PubAcks outstanding and PUBs per send, the pull batch,
    # messages pre-filled for js_pull and the bound on that (seconds), KV keys.
    js_inflight: int = 1000
    js_batch: int = 100
    js_pull_batch: int = 500
    js_prefill: int = 1000000
    js_timeout: float = 120.0
    kv_keys: int = 100
    # Cluster scenarios (``cluster``): runs per server (each on a fresh hub), kill rounds
    # per run (cluster_relink, cluster_failover), QoS 1 messages queued for the offline
    # session (cluster_failover), takeover rounds (cluster_takeover).
    cluster_runs: int = 2
    cluster_rounds: int = 3
    failover_msgs: int = 100
    takeover_rounds: int = 20


@dataclass
class RoleSpec:
    kind: str  # "pub", "sub", "req", "resp"
    name: str
    role_cls: type
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def receiver(self) -> bool:
        return self.kind in ("sub", "resp")


@dataclass
class Scenario:
    name: str
    title: str
    mode: str  # the server capability needed: "nats", "mqtt", "bridge" or "jetstream"
    # "throughput", "latency", "connections", "subscriptions", "replay", for the fleet
    # scenarios "sessions", "broadcast", "commands", "big", "fanout", for the JetStream
    # ones "js_publish", "js_pull", "kv"
    metric: str
    build: Callable[[RunningServer, Options], list[RoleSpec]] | None = None
    # A scale scenario's own runner: (scenario, server name, options) -> result dict.
    runner: Callable[[Scenario, str, Options], dict[str, Any]] | None = None
    # Ask the server for message persistence where that is a setting (Mosquitto).
    persistent: bool = False


def _nats_pub(srv: RunningServer, o: Options, subject: str, name: str = "pub") -> RoleSpec:
    return RoleSpec(
        "pub",
        name,
        NatsPublisher,
        dict(
            host=srv.host,
            port=srv.nats_port,
            subject=subject,
            payload_size=o.payload,
            batch=o.nats_batch,
            window=o.nats_window,
        ),
    )


def _mqtt_pub(
    srv: RunningServer, o: Options, topic: str, qos: int = 0, name: str = "pub"
) -> RoleSpec:
    return RoleSpec(
        "pub",
        name,
        MqttPublisher,
        dict(
            host=srv.host,
            port=srv.mqtt_port,
            topic=topic,
            qos=qos,
            payload_size=o.payload,
            batch=o.mqtt_batch if qos == 0 else o.qos1_batch,
            window=o.mqtt_window,
            inflight=o.qos1_inflight,
            client_id=f"bench-{name}",
        ),
    )


def _mqtt_sub(
    srv: RunningServer,
    o: Options,
    topic: str,
    qos: int = 0,
    conns: int = 1,
    name: str = "sub",
    persistent: bool = False,
) -> RoleSpec:
    params: dict[str, Any] = dict(
        host=srv.host,
        port=srv.mqtt_port,
        topic=topic,
        qos=qos,
        conns=conns,
        client_prefix=f"bench-{name}",
        lowat=o.lowat if qos == 0 else 0,
    )
    if persistent:
        # Clean session 0 and a fixed client id: a persistent session [MQTT-3.1.2-4].
        params.update(clean=False, client_id=f"bench-persistent-{name}")
    return RoleSpec("sub", name, MqttSubscriber, params)


def _nats_sub(srv: RunningServer, o: Options, subject: str, name: str = "sub") -> RoleSpec:
    p = dict(host=srv.host, port=srv.nats_port, subject=subject, lowat=o.lowat)
    return RoleSpec("sub", name, NatsSubscriber, p)


def build_nats_pubsub(srv: RunningServer, o: Options) -> list[RoleSpec]:
    return [_nats_sub(srv, o, "bench.core"), _nats_pub(srv, o, "bench.core")]


def build_nats_reqrep(srv: RunningServer, o: Options) -> list[RoleSpec]:
    p = dict(host=srv.host, port=srv.nats_port, subject="bench.req")
    return [
        RoleSpec("resp", "responder", NatsResponder, dict(p)),
        RoleSpec("req", "requester", NatsRequester, dict(p, payload_size=o.payload)),
    ]


def build_mqtt_qos0(srv: RunningServer, o: Options) -> list[RoleSpec]:
    return [_mqtt_sub(srv, o, "bench/q0"), _mqtt_pub(srv, o, "bench/q0")]


def build_mqtt_fanin(srv: RunningServer, o: Options) -> list[RoleSpec]:
    pubs = [_mqtt_pub(srv, o, "bench/in", name=f"pub{i}") for i in range(o.fanin)]
    return [_mqtt_sub(srv, o, "bench/in"), *pubs]


def build_mqtt_fanout(srv: RunningServer, o: Options) -> list[RoleSpec]:
    procs = max(1, min(o.fanout_procs, o.fanout))
    subs = []
    for i in range(procs):
        n = o.fanout // procs + (1 if i < o.fanout % procs else 0)
        subs.append(_mqtt_sub(srv, o, "bench/out", conns=n, name=f"sub{i}"))
    return [*subs, _mqtt_pub(srv, o, "bench/out")]


def build_mqtt_qos1(srv: RunningServer, o: Options) -> list[RoleSpec]:
    return [_mqtt_sub(srv, o, "bench/q1", qos=1), _mqtt_pub(srv, o, "bench/q1", qos=1)]


def build_mqtt_qos2(srv: RunningServer, o: Options) -> list[RoleSpec]:
    return [_mqtt_sub(srv, o, "bench/q2", qos=2), _mqtt_pub(srv, o, "bench/q2", qos=2)]


def build_mqtt_qos1_persistent(srv: RunningServer, o: Options) -> list[RoleSpec]:
    return [
        _mqtt_sub(srv, o, "bench/q1p", qos=1, persistent=True),
        _mqtt_pub(srv, o, "bench/q1p", qos=1),
    ]


def build_mqtt_to_nats(srv: RunningServer, o: Options) -> list[RoleSpec]:
    # MQTT topic bench/bridge is NATS subject bench.bridge on both bridging servers.
    return [_nats_sub(srv, o, "bench.bridge"), _mqtt_pub(srv, o, "bench/bridge")]


def build_nats_to_mqtt(srv: RunningServer, o: Options) -> list[RoleSpec]:
    return [_mqtt_sub(srv, o, "bench/bridge"), _nats_pub(srv, o, "bench.bridge")]


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in [
        Scenario(
            "nats_pubsub", "NATS core pub/sub, 1 -> 1", "nats", "throughput", build_nats_pubsub
        ),
        Scenario(
            "nats_reqrep",
            "NATS request/reply, 1 requester (1 outstanding) -> 1 responder",
            "nats",
            "latency",
            build_nats_reqrep,
        ),
        Scenario("mqtt_qos0", "MQTT QoS 0, 1 -> 1", "mqtt", "throughput", build_mqtt_qos0),
        Scenario(
            "mqtt_fanin", "MQTT QoS 0, fan-in {fanin} -> 1", "mqtt", "throughput", build_mqtt_fanin
        ),
        Scenario(
            "mqtt_fanout",
            "MQTT QoS 0, fan-out 1 -> {fanout} (msgs/s summed over subscribers)",
            "mqtt",
            "throughput",
            build_mqtt_fanout,
        ),
        Scenario(
            "mqtt_qos1", "MQTT QoS 1 both legs, 1 -> 1", "mqtt", "throughput", build_mqtt_qos1
        ),
        Scenario(
            "mqtt_qos2", "MQTT QoS 2 both legs, 1 -> 1", "mqtt", "throughput", build_mqtt_qos2
        ),
        Scenario(
            "mqtt_qos1_persistent",
            "MQTT QoS 1 both legs, 1 -> 1, subscriber a persistent session (messages persisted)",
            "mqtt",
            "throughput",
            build_mqtt_qos1_persistent,
            persistent=True,
        ),
        Scenario(
            "mqtt_to_nats",
            "MQTT QoS 0 publisher -> NATS subscriber",
            "bridge",
            "throughput",
            build_mqtt_to_nats,
        ),
        Scenario(
            "nats_to_mqtt",
            "NATS publisher -> MQTT QoS 0 subscriber",
            "bridge",
            "throughput",
            build_nats_to_mqtt,
        ),
        Scenario(
            "idle_connections",
            "{idle_conns:,} idle MQTT connections: connect rate and RSS per connection",
            "mqtt",
            "connections",
            runner=run_idle_connections,
        ),
        Scenario(
            "many_subscriptions",
            "MQTT QoS 0 1 -> 1 publish rate without and with {subs:,} subscriptions "
            "(distinct topics, {subs_conns} clients)",
            "mqtt",
            "subscriptions",
            runner=run_many_subscriptions,
        ),
        Scenario(
            "retained_replay",
            "{retained:,} retained messages (distinct topics) replayed to one `#` subscriber",
            "mqtt",
            "replay",
            runner=run_retained_replay,
        ),
        Scenario(
            "fleet_sessions",
            "{fleet_sessions:,} persistent MQTT sessions (clean session 0, 2 QoS 1 filters "
            "each) created and left offline: RSS per session, restart to session present",
            "mqtt",
            "sessions",
            runner=run_fleet_scenario,
        ),
        Scenario(
            "fleet_broadcast",
            "one QoS 1 PUBLISH to `fleet/all` with {fleet_sessions:,} offline sessions "
            "subscribed: send to PUBACK, ping latency",
            "mqtt",
            "broadcast",
            runner=run_fleet_scenario,
        ),
        Scenario(
            "fleet_commands",
            "{fleet_sessions:,} QoS 1 PUBLISHes, one per offline device (`fleet/dev/<i>`), "
            "window {fleet_window:,}: msgs/s to the last PUBACK, ping latency",
            "mqtt",
            "commands",
            runner=run_fleet_scenario,
        ),
        Scenario(
            "big_qos1",
            "{big_payload:,} B payloads, QoS 1 both legs, 1 -> 1, publisher window {big_window}",
            "mqtt",
            "big",
            runner=run_big_qos1,
        ),
        Scenario(
            "fanout_10k",
            "MQTT QoS 0 fan-out 1 -> {fanout_subs:,} subscribers, publisher flat out: "
            "deliveries/s, RSS peak, ping latency, SIGTERM time",
            "mqtt",
            "fanout",
            runner=run_fanout,
        ),
        Scenario(
            "fanout_10k_slow",
            "MQTT QoS 0 fan-out 1 -> {fanout_subs:,} subscribers, publisher at {slow_rate:g} "
            "msgs/s: deliveries/s, lag (1 subscriber in {lag_every} timed)",
            "mqtt",
            "fanout",
            runner=run_fanout,
        ),
        Scenario(
            "js_publish",
            "JetStream acked publish, file storage, {js_inflight:,} PubAcks outstanding",
            "jetstream",
            "js_publish",
            build_js_publish,
        ),
        Scenario(
            "js_pull",
            "JetStream pull consumer, fetch {js_pull_batch} and ack each, file storage, "
            "stream pre-filled with {js_prefill:,}",
            "jetstream",
            "js_pull",
            runner=run_js_pull,
        ),
        Scenario(
            "kv_latency",
            "JetStream KV put and direct get, one at a time, {kv_keys} keys, file storage",
            "jetstream",
            "kv",
            build_kv_latency,
        ),
        Scenario(
            "cluster_qos0",
            "MQTT 3.1.1 QoS 0, 1 publisher on leaf A -> 1 subscriber on leaf B of a "
            "3-member nats-server hub; also A -> A with the link up and a single node",
            "cluster",
            "cluster",
            runner=run_cluster_rate,
        ),
        Scenario(
            "cluster_qos1",
            "MQTT 3.1.1 QoS 1 both legs, leaf A -> leaf B of a 3-member nats-server hub; "
            "also A -> A with the link up and a single node",
            "cluster",
            "cluster",
            runner=run_cluster_rate,
        ),
        Scenario(
            "cluster_relink",
            "kill -9 the hub member leaf A is linked to: time to A's relink and to the "
            "first QoS 0 / QoS 1 message A -> B sent after the kill ({cluster_rounds} "
            "rounds per run)",
            "cluster",
            "relink",
            runner=run_cluster_relink,
        ),
        Scenario(
            "cluster_failover",
            "persistent session (clean 0, QoS 1) on leaf A offline, {failover_msgs} QoS 1 "
            "published on B, kill -9 A, reconnect to B: time to CONNACK with session "
            "present and to every message",
            "cluster",
            "failover",
            runner=run_cluster_failover,
        ),
        Scenario(
            "cluster_takeover",
            "takeover across nodes, {takeover_rounds} rounds: a fresh client id (clean 0) "
            "on leaf A, then on B (or B, then A): time until the first node closes it",
            "cluster",
            "takeover",
            runner=run_cluster_takeover,
        ),
    ]
}
