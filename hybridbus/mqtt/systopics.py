"""``$SYS/broker/...``: the broker's health as retained MQTT messages (Mosquitto's set).

Dashboards built for Mosquitto (MQTT Explorer, mosquitto_sub scripts, Home Assistant
sensors) read these topics; the names and payload formats are Mosquitto's
(``src/sys_tree.c``): plain decimal text, ``"N seconds"`` for the uptime, two decimals
for the load averages.

Theory of operation
-------------------
One timer for the whole broker (``loop.call_later``, re-armed after each round; no
task) publishes every topic once per ``mqtt.sys_interval`` (default 10 s; 0 turns
$SYS off), and once at start. A round costs one pass over the sessions (the
connected ones carry the live traffic counters) and one ``Server.route`` per topic;
nothing is counted on the message hot path. Every topic is sent every round,
changed or not (Mosquitto sends changes only), so a subscriber that gets no
retained replay (a shared subscription, Retain Handling 2) still sees each value
within one interval.

Each message is retained, QoS 0 and kept in memory only, in this publisher's own
map (``retained``, replayed on subscribe to filters that start with ``$SYS``): a
round never writes to the store nor touches the retained index of the clients'
messages, and an offline persistent session is not sent QoS 0 messages, so $SYS
never grows anybody's queue. Filters starting with a wildcard (``#``, ``+/...``)
never match them [MQTT-4.7.2-1]; a client may not publish under ``$SYS``
(handle_publish).

NATS subjects: a $SYS topic maps like any other topic, ``$SYS/broker/uptime`` ->
``$SYS.broker.uptime`` (``retained messages/count`` -> ``$SYS.broker.retained%20messages.count``),
so subscribe permissions on ``$SYS.broker.>`` (or ``$SYS.>``) govern ``$SYS/#``. In
nats-server, ``$SYS.>`` belongs to the system account (``$SYS.ACCOUNT.>``,
``$SYS.SERVER.>``, ``$SYS.REQ.>``, all upper case); hybridbus has one account and
no system events, and ``$SYS.broker.>`` (lower case) stays clear of those names.
NATS has no ``$`` rule: a NATS ``>`` subscriber sees these messages.

Values (MQTT side of the broker; "messages" are PUBLISH packets, "bytes" their
payloads; Mosquitto counts every packet and every byte):

* ``clients/connected``: MQTT sessions with a connection; ``clients/disconnected``:
  persistent sessions without one; ``clients/total``: both; ``clients/maximum``:
  the most connected seen at a round.
* ``messages/received|sent``, ``bytes/received|sent``: totals since start, closed
  connections included.
* ``load/{messages,bytes}/{received,sent}/{1,5,15}min``: Mosquitto's load averages,
  per minute: each round's rate (per minute) folded into an exponentially weighted
  average over 1, 5 and 15 minutes.
* ``subscriptions/count``: MQTT topic filters; ``retained messages/count``: retained
  topics of client messages (Mosquitto also counts its own $SYS ones).
* ``store/messages/count|bytes`` (and the older alias ``messages/stored``): records
  and bytes of MQTT state in the store (retained messages, messages queued for
  persistent sessions, session records).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from hybridbus import __version__
from hybridbus.mqtt.message import MqttMessage
from hybridbus.mqtt.retained import filter_matcher
from hybridbus.subjects import topic_to_subject

if TYPE_CHECKING:
    from hybridbus.mqtt.broker import MqttBroker

log = logging.getLogger("hybridbus.mqtt")

PREFIX = "$SYS/broker/"

# The counters the load averages follow, by their topic stem.
LOADS = ("messages/received", "messages/sent", "bytes/received", "bytes/sent")
# Averaging windows: topic suffix and seconds.
WINDOWS = (("1min", 60.0), ("5min", 300.0), ("15min", 900.0))


def is_sys_topic(topic: str) -> bool:
    """A topic in the broker's own $SYS tree, which clients may not publish to."""
    return topic == "$SYS" or topic.startswith("$SYS/")


class SysTopics:
    """The $SYS publisher of one broker: start() at server start, stop() at shutdown."""

    __slots__ = (
        "broker",
        "handle",
        "maximum",
        "last_counts",
        "last_time",
        "loads",
        "subjects",
        "retained",
    )

    def __init__(self, broker: MqttBroker) -> None:
        self.broker = broker
        self.handle = None
        self.maximum = 0
        self.last_counts: tuple[int, ...] | None = None
        self.last_time = 0.0
        self.loads = {(stem, window): 0.0 for stem in LOADS for window, _ in WINDOWS}
        self.subjects: dict[str, str] = {}
        self.retained: dict[str, MqttMessage] = {}  # topic -> its latest value

    def start(self) -> None:
        if self.broker.options.sys_interval > 0:
            self._round()

    def stop(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None

    def reconfigure(self) -> None:
        """After a config reload changed sys_interval: the new interval starts now
        (with a round), and 0 ends $SYS, its retained values included."""
        self.stop()
        options = self.broker.options
        if options.enabled and options.sys_interval > 0:
            self._round()
        else:
            self.retained.clear()

    def _round(self) -> None:
        self.handle = None
        try:
            self.publish(self.values(time.monotonic()))
        except Exception:  # a broken round must not end $SYS for good
            log.exception("$SYS round failed")
        interval = self.broker.options.sys_interval  # a reload may change it
        if interval > 0:
            self.handle = self.broker.server.loop.call_later(interval, self._round)

    # -- the values -------------------------------------------------------------------

    def counts(self) -> tuple[dict[str, int], tuple[int, ...]]:
        """Gauges, and the four traffic totals (messages/bytes received/sent)."""
        broker = self.broker
        if broker.origin is None:  # $G: the server's MQTT totals less other accounts'
            totals = list(broker.server.closed_by_protocol.get("mqtt") or (0, 0, 0, 0))
            for other in broker.server.accounts.values():
                if other.mqtt is not None and other.mqtt is not broker:
                    gone = other.mqtt.closed_traffic
                    totals = [max(0, totals[i] - gone[i]) for i in range(4)]
        else:
            totals = list(broker.closed_traffic)
        connected = subscriptions = 0
        for session in broker.sessions.values():
            subscriptions += len(session.subs)
            conn = session.conn
            if conn is not None:
                connected += 1
                totals[0] += conn.in_msgs
                totals[1] += conn.in_bytes
                totals[2] += conn.out_msgs
                totals[3] += conn.out_bytes
        self.maximum = max(self.maximum, connected)
        stored = stored_bytes = 0
        if broker.persistence is not None:
            # a JetStream domain's streams are the hub's, not counted here
            for stream in getattr(broker.persistence, "streams", {}).values():
                state = stream.state()
                stored += state.messages
                stored_bytes += state.bytes
        gauges = {
            "clients/connected": connected,
            "clients/disconnected": len(broker.sessions) - connected,
            "clients/total": len(broker.sessions),
            "clients/maximum": self.maximum,
            "subscriptions/count": subscriptions,
            "retained messages/count": len(broker.retained),
            "store/messages/count": stored,
            "messages/stored": stored,
            "store/messages/bytes": stored_bytes,
        }
        # totals are (in_msgs, in_bytes, out_msgs, out_bytes); LOADS order follows
        return gauges, (totals[0], totals[2], totals[1], totals[3])

    def values(self, now: float) -> list[tuple[str, str]]:
        """Every (topic, payload) of one round."""
        server = self.broker.server
        gauges, traffic = self.counts()
        out = [
            (PREFIX + "version", f"hybridbus version {__version__}"),
            (PREFIX + "uptime", f"{int(time.time() - server.start_time)} seconds"),
        ]
        out += [(PREFIX + name, str(value)) for name, value in gauges.items()]
        out += [(PREFIX + stem, str(value)) for stem, value in zip(LOADS, traffic, strict=True)]
        self._fold_loads(now, traffic)
        out += [
            (f"{PREFIX}load/{stem}/{window}", f"{self.loads[stem, window]:.2f}")
            for stem in LOADS
            for window, _ in WINDOWS
        ]
        return out

    def _fold_loads(self, now: float, traffic: tuple[int, ...]) -> None:
        """Mosquitto's load average: this round's per-minute rate `rate`, folded in
        as average = rate + e^(-elapsed/window) * (average - rate)."""
        last, self.last_counts = self.last_counts, traffic
        elapsed, self.last_time = now - self.last_time, now
        if last is None or elapsed <= 0:
            return  # the first round publishes 0.00, as Mosquitto does
        for stem, count, before in zip(LOADS, traffic, last, strict=True):
            rate = (count - before) * 60.0 / elapsed
            for window, seconds in WINDOWS:
                decay = math.exp(-elapsed / seconds)
                current = self.loads[stem, window]
                self.loads[stem, window] = rate + decay * (current - rate)

    # -- publishing -------------------------------------------------------------------

    def publish(self, values: list[tuple[str, str]]) -> None:
        """Retain (in memory) and route each value, QoS 0, from no client."""
        route = self.broker.server.route
        origin = self.broker.origin  # in the broker's account
        subjects = self.subjects
        for topic, text in values:
            subject = subjects.get(topic)
            if subject is None:
                subject = subjects[topic] = topic_to_subject(topic)
            payload = text.encode()
            msg = self.retained[topic] = MqttMessage(topic, payload, 0, True)
            route(origin, subject, None, None, payload, msg)

    def match(self, topic_filter: str) -> Iterator[MqttMessage]:
        """The retained $SYS values a new subscription to `topic_filter` replays: none
        unless its first level is `$SYS` (a wildcard first level skips `$` topics
        [MQTT-4.7.2-1])."""
        if not self.retained or not topic_filter.startswith("$SYS"):
            return
        if "+" not in topic_filter and "#" not in topic_filter:
            msg = self.retained.get(topic_filter)
            if msg is not None:
                yield msg
            return
        matches = filter_matcher(topic_filter)
        for topic, msg in list(self.retained.items()):
            if matches(topic):
                yield msg
