"""What the endpoint modules share: the account names, the list-size default, the
Go ``omitempty``/duration helpers, and the process and traffic totals that both
``/varz`` and ``/metrics`` report.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hybridbus.server.server import Server

GLOBAL_ACCOUNT = "$G"
SYSTEM_ACCOUNT = "$SYS"  # the system account's name unless system_account names another


def system_account_name(server: Server) -> str:
    """The system account's name ("" with no_system_account): server/system.py."""
    system = getattr(server, "system", None)
    return system.account.name if system is not None else ""

# nats-server's DefaultConnListSize / DefaultSubListSize.
DEFAULT_LIST_SIZE = 1024

Query = dict[str, str]


def omitempty(d: dict, key: str, value: Any) -> None:
    """Go ``omitempty``: add the field only when it is not the zero value."""
    if value:
        d[key] = value


def nanos(seconds: float | None) -> int:
    """Float seconds to the integer nanoseconds Go's time.Duration marshals as."""
    return int(round((seconds or 0.0) * 1e9))


def page_window(offset: int, limit: int) -> tuple[int, int]:
    """(offset, limit) of a listing as nats-server applies them: a negative offset
    is 0, a limit <= 0 is the default list size."""
    return max(offset, 0), (limit if limit > 0 else DEFAULT_LIST_SIZE)


def rss_bytes() -> int:
    """Resident set size of this process (``/varz`` ``mem``)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


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


def mqtt_counts(server: Server) -> dict[str, int]:
    """MQTT sessions online/offline, retained, in-flight, queued and dropped messages
    (/overviewz, /metrics and the dashboard read the same figures)."""
    online = offline = inflight = queued = retained = dropped = 0
    # $G's broker and every account's (server/account_state.py)
    brokers = [server.mqtt] if server.mqtt is not None else []
    brokers += [a.mqtt for a in getattr(server, "_accounts_live", ()) if a.mqtt is not None]
    for broker in brokers:
        for session in broker.sessions.values():
            inflight += len(session.inflight)
            queued += len(session.queued)
            if session.conn is not None:
                online += 1
            else:
                offline += 1
        retained += len(broker.retained)
        dropped += broker.stats_dropped
    return {
        "sessions_online": online,
        "sessions_offline": offline,
        "retained_messages": retained,
        "inflight_messages": inflight,
        "queued_messages": queued,
        "dropped_messages": dropped,
    }
