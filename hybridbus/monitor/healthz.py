"""``/healthz``: the readiness check, with nats-server's account/stream/consumer
targets, plus ``WriteErrorWatch``, which turns the store's cumulative write-error
counter into a "the store cannot write now" verdict.

Leaf-node links: as nats-server's ``healthz`` (server/monitor.go), a link to a hub
that is down (or never came up) does not fail the check. The node still serves its
own clients, and local traffic flows, while it redials; nats-server only checks its
own listeners and JetStream. Watch the link with ``/leafz`` (``leafnodes``), ``/varz``
(``leafnodes`` against ``leaf.remotes``) or the ``hybridbus_leafnode_links`` and
``hybridbus_leafnode_remotes`` gauges of ``/metrics``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hybridbus.monitor.common import GLOBAL_ACCOUNT, Query
from hybridbus.monitor.gotypes import parse_bool
from hybridbus.store.errors import ConsumerNotFound, StreamNotFound

if TYPE_CHECKING:
    from hybridbus.server.server import Server

# A growing store write-error counter keeps /healthz failing this long after the
# last new error: the store retries with back-off, and a health check polled every
# few seconds must not flap between two failed writes.
WRITE_ERROR_HOLD = 30.0

Health = tuple[int, dict]


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


# =========================================================================== /healthz


def _result(
    o: HealthzOptions, code: int, status: str, error: str, kind: str = "JETSTREAM", **where
) -> Health:
    """A failure in the form the request asked for (plain, or ``details=true``)."""
    if o.details:
        item = {"type": kind}
        item.update({k: v for k, v in where.items() if v})
        item["error"] = error
        # details=true reports "error" for every failure kind.
        return code, {"status": "error", "errors": [item]}
    return code, {"status": status, "error": error}


def _check_request(o: HealthzOptions) -> Health | None:
    """A stream target needs its account, a consumer target its stream."""
    if o.stream and not o.account:
        return _result(
            o,
            400,
            "error",
            '"account" must not be empty when checking stream health',
            "BAD_REQUEST",
        )
    if o.consumer and not o.stream:
        return _result(
            o,
            400,
            "error",
            '"stream" must not be empty when checking consumer health',
            "BAD_REQUEST",
        )
    return None


def _check_target(server: Server, o: HealthzOptions) -> Health | None:
    """The account, stream and consumer named in the request must exist."""
    if o.account != GLOBAL_ACCOUNT:
        return _result(
            o,
            404,
            "unavailable",
            f'JetStream account "{o.account}" not found',
            "ACCOUNT",
            account=o.account,
        )
    if not o.stream:
        return None
    try:
        stream = server.store.stream(o.stream)
    except StreamNotFound:
        return _result(
            o,
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
            return _result(
                o,
                404,
                "unavailable",
                f'JetStream consumer "{o.consumer}" not found for stream '
                f'"{o.stream}" on account "{o.account}"',
                "CONSUMER",
                account=o.account,
                stream=o.stream,
                consumer=o.consumer,
            )
    return None


def healthz(server: Server, o: HealthzOptions, watch: WriteErrorWatch) -> Health:
    """``/healthz`` (nats-conventions §1.7): (HTTP status, body). The body never
    holds the status code."""
    bad = _check_request(o)
    if bad is not None:
        return bad
    if server.store is None:
        return _result(o, 500, "error", "server is not ready for connections", "CONNECTION")
    if o.account and server.options.jetstream.enabled:
        missing = _check_target(server, o)
        if missing is not None:
            return missing
    # The store holds MQTT state whether or not the JetStream API is on, so a store
    # that cannot write makes the server unhealthy in every flavour of the check.
    problem = watch.check(server.store.stats())
    if problem:
        return _result(o, 503, "unavailable", problem)
    return 200, {"status": "ok"}
