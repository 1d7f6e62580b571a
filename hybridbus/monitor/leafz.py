"""``/leafz`` and the rest of the leaf-node link's monitoring: the ``/varz`` ``leaf``
block, the link traffic for ``/varz`` and ``/metrics``.

hybridbus joins a NATS cluster as a leaf-node spoke (hybridbus/leaf/); it dials hubs
and accepts no leaf connections. What the monitor reads (and nothing else):
``server.leafnodes``, the connected links (each a ``LeafConnection`` with ``cid``,
``ip``/``port`` of the hub, ``account``, ``remote_name``, ``rtt``, ``in_msgs``,
``out_msgs``, ``in_bytes``, ``out_bytes``, ``remote_subs``, ``compression``), and
``server.leaf_remotes``, the configured remotes (``urls``, ``connection``,
``connects``, ``last_error``). A server without the link has neither; every reader
here takes that as "no links".

``/leafz`` is nats-server's Leafz (server/monitor.go; the field set and order of
2.15.1, checked against the binary): ``server_id``, ``now``, ``leafnodes`` (the
count), ``leafs`` [{``id``, ``name`` (the hub's server name), ``is_spoke`` (always
true here: every link is one we dialled, as a nats-server spoke reports its own),
``account``, ``ip``, ``port`` (the hub's address), ``rtt``, ``in_msgs``,
``out_msgs``, ``in_bytes``, ``out_bytes``, ``subscriptions`` (the hub's interest
this link holds), ``subscriptions_list`` (with ``?subs=true``; the subjects, as
nats-server lists them, sorted here), ``compression``}]. ``?acc=<name>`` keeps the
links of one account. Messages and bytes are the link's own: in = from the hub.

The ``/varz`` ``leaf`` block is nats-server's LeafNodeOptsVarz: with no accepting
side, only ``remotes`` [{``local_account``, ``urls`` (host:port, never the
credentials of a URL), ``deny`` {``imports``, ``exports``}}], omitted when no remote
is configured, so a server without remotes still shows ``"leaf": {}``.

``LeafTraffic`` turns the links' counters into totals that never go down: a link
that closes takes its counters with it, so the last values seen of every link are
carried over. (Traffic of a link after the previous look and before it closed is
not seen; a link lives far longer than a scrape interval.)
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hybridbus.monitor.common import Query, omitempty
from hybridbus.monitor.gotypes import parse_bool, rfc3339, rtt

if TYPE_CHECKING:
    from hybridbus.server.server import Server


def links(server: Server) -> list[Any]:
    """The connected leaf links (none on a server without the link)."""
    return list(getattr(server, "leafnodes", None) or ())


def remotes(server: Server) -> list[Any]:
    """The configured leaf remotes (none on a server without the link)."""
    return list(getattr(server, "leaf_remotes", None) or ())


# =========================================================================== /leafz


@dataclass
class LeafzOptions:
    subscriptions: bool = False
    account: str = ""

    @classmethod
    def from_query(cls, q: Query) -> LeafzOptions:
        return cls(parse_bool("subs", q.get("subs")), q.get("acc", ""))


def _account_name(conn: Any) -> str:
    account = getattr(conn, "account", None)
    return getattr(account, "name", account) or ""


def leaf_info(conn: Any, subscriptions: bool = False) -> dict[str, Any]:
    """One link as nats-server's LeafInfo."""
    subs = conn.remote_subs
    info: dict[str, Any] = {
        "id": int(conn.cid),
        "name": conn.remote_name or "",
        # We dialled every link: the spoke's side, as a nats-server spoke shows it.
        "is_spoke": True,
        "account": _account_name(conn),
        "ip": conn.ip or "",
        "port": int(conn.port or 0),
        # nats-server always fills rtt (getRTT().String()), "0s" before the first PONG
        "rtt": rtt(conn.rtt),
        "in_msgs": int(conn.in_msgs),
        "out_msgs": int(conn.out_msgs),
        "in_bytes": int(conn.in_bytes),
        "out_bytes": int(conn.out_bytes),
        "subscriptions": len(subs),
    }
    if subscriptions and subs:
        # The map is keyed (subject, queue): one subject per entry, as nats-server's
        # list of ln.subs (a queue group's subject shows once per group).
        info["subscriptions_list"] = sorted(subject for subject, _queue in subs)
    omitempty(info, "compression", conn.compression or "")
    return info


def leafz(server: Server, opts: LeafzOptions) -> dict[str, Any]:
    """``/leafz``: see the module docstring."""
    leafs = [
        leaf_info(conn, opts.subscriptions)
        for conn in links(server)
        if not opts.account or _account_name(conn) == opts.account
    ]
    return {
        "server_id": server.server_id,
        "now": rfc3339(time.time()),
        "leafnodes": len(leafs),
        "leafs": leafs,
    }


# =========================================================================== /varz


def _host_port(url: str) -> str:
    """A remote URL as nats-server's urlsToStrings shows it: host:port only."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url if "//" in url else "nats-leaf://" + url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return ""
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{port}" if port else host


def varz_leaf(server: Server) -> dict[str, Any]:
    """The ``/varz`` ``leaf`` block (LeafNodeOptsVarz): the configured remotes."""
    out: list[dict[str, Any]] = []
    for r in server.options.leafnodes.remotes:
        item: dict[str, Any] = {}
        omitempty(item, "local_account", r.account or "$G")
        if r.tls is not None:
            item["tls_timeout"] = float(r.tls.timeout)
        omitempty(item, "urls", [_host_port(u) for u in r.urls])
        if r.deny_imports or r.deny_exports:
            deny: dict[str, Any] = {}
            omitempty(deny, "exports", list(r.deny_exports))
            omitempty(deny, "imports", list(r.deny_imports))
            item["deny"] = deny
        out.append(item)
    block: dict[str, Any] = {}
    omitempty(block, "remotes", out)
    return block


# =========================================================================== traffic


class LeafTraffic:
    """Totals of every link's counters since the first look, never decreasing
    (module docstring)."""

    __slots__ = ("_seen", "_closed")

    def __init__(self) -> None:
        self._seen: dict[int, tuple[Any, tuple[int, int, int, int]]] = {}
        self._closed = [0, 0, 0, 0]

    def totals(self, server: Server) -> tuple[int, int, int, int]:
        """(in_msgs, in_bytes, out_msgs, out_bytes) over every link, past and present."""
        now: dict[int, tuple[Any, tuple[int, int, int, int]]] = {}
        live = [0, 0, 0, 0]
        for conn in links(server):
            values = (
                int(conn.in_msgs),
                int(conn.in_bytes),
                int(conn.out_msgs),
                int(conn.out_bytes),
            )
            now[id(conn)] = (conn, values)
            for k in range(4):
                live[k] += values[k]
        for key, (conn, values) in self._seen.items():
            # A link gone since the last look (or replaced by a new object at the same
            # address: the conn identity check keeps that apart).
            if key not in now or now[key][0] is not conn:
                for k in range(4):
                    self._closed[k] += values[k]
        self._seen = now
        t = [self._closed[k] + live[k] for k in range(4)]
        return t[0], t[1], t[2], t[3]


def link_counts(server: Server) -> tuple[int, int]:
    """(connected links, configured remotes)."""
    return len(links(server)), len(server.options.leafnodes.remotes)
