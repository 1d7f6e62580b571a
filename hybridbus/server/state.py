"""Server bookkeeping kept apart from ``server.py``: the server id, the garbage
collector's tuning, the server-wide counters and what /connz keeps of a closed
connection."""

from __future__ import annotations

import base64
import gc
import os


def tune_gc() -> None:
    """Keep the cyclic garbage collector from stopping the loop for long.

    A full collection walks every tracked object: with 100,000 sessions (their
    subscriptions, queued messages) that is a pause of several hundred milliseconds,
    and Python runs one whenever the long-lived set has grown by a quarter. What was
    restored from the store is frozen (never walked again), and the thresholds make
    the young collections rarer and the full ones rarer still; the server's own
    objects rarely form cycles, and those that do are mostly young when they die."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_THRESHOLDS[0], GC_THRESHOLDS[1], GC_THRESHOLDS[2])


GC_THRESHOLDS = (10_000, 10, 100)


def make_server_id() -> str:
    """A 56-character, N-prefixed id shaped like nats-server's."""
    raw = base64.b32encode(os.urandom(35)).decode().rstrip("=")
    return ("N" + raw)[:56]


class ServerStats:
    """Counters of the server as a whole; per-client counters live on the clients."""

    __slots__ = (
        "total_connections",
        "slow_consumers",
        "stale_connections",
        "auth_failures",
    )

    def __init__(self) -> None:
        for name in self.__slots__:
            setattr(self, name, 0)


class ClosedClient:
    """What /connz?state=closed shows of a connection that has gone."""

    __slots__ = ("info", "stop", "reason")

    def __init__(self, info: dict, stop: float, reason: str) -> None:
        self.info = info
        self.stop = stop
        self.reason = reason


def describe_client(client) -> dict:
    """A snapshot of a client for monitoring (kept for closed connections)."""
    info = {
        "cid": client.cid,
        "kind": client.kind,
        "type": client.conn_type,
        "ip": client.ip,
        "port": client.port,
        "start": client.start,
        "last_activity": client.last_activity,
        "in_msgs": client.in_msgs,
        "in_bytes": client.in_bytes,
        "out_msgs": client.out_msgs,
        "out_bytes": client.out_bytes,
        "subscriptions": client.subscription_count(),
    }
    rtt = getattr(client, "rtt", 0.0)
    if rtt:
        info["rtt"] = rtt
    if client.tls_version:
        info["tls_version"] = client.tls_version
        info["tls_cipher_suite"] = client.tls_cipher
    for attr in ("name", "lang", "version", "client_id"):
        value = getattr(client, attr, None)
        if value:
            info[attr] = value
    if client.user:
        info["user"] = client.user
    info["account"] = client.account.name
    return info
