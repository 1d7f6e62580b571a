"""``/connz``: open and closed connections (NATS and MQTT alike), filtered, sorted
and paged as nats-server does, with their subscriptions on request. Reads live
connections by duck typing (``conn_type``, ``kind`` ...), never by their class.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hybridbus.monitor.common import (
    DEFAULT_LIST_SIZE,
    GLOBAL_ACCOUNT,
    Query,
    omitempty,
    page_window,
)
from hybridbus.monitor.gotypes import (
    ZERO_TIME,
    BadRequest,
    parse_bool,
    parse_int,
    parse_uint64,
    rfc3339,
    rtt,
    uptime,
)
from hybridbus.monitor.subsz import sub_detail
from hybridbus.security.permissions import intersects

if TYPE_CHECKING:
    from hybridbus.server.server import Server

# sort key -> descending? (nats-server's monitor_sort_opts.go directions)
SORT_OPTIONS: dict[str, bool] = {
    "cid": False,
    "start": False,
    "subs": True,
    "pending": True,
    "msgs_to": True,
    "msgs_from": True,
    "bytes_to": True,
    "bytes_from": True,
    "last": True,
    "idle": True,
    "uptime": False,
    "stop": True,
    "reason": False,
    "rtt": True,
}

STATE_OPEN = "open"
STATE_CLOSED = "closed"
STATE_ALL = "all"


@dataclass
class ConnzOptions:
    sort: str = "cid"
    auth: bool = False
    subs: bool = False
    subs_detail: bool = False
    offset: int = 0
    limit: int = DEFAULT_LIST_SIZE
    cid: int = 0
    state: str = STATE_OPEN
    user: str = ""
    acc: str = ""
    mqtt_client: str = ""
    # only from $SYS.REQ...CONNZ (ConnzOptions.FilterSubject; /connz has no parameter)
    filter_subject: str = ""

    @classmethod
    def from_query(cls, q: Query) -> ConnzOptions:
        """Decode in nats-server's order, so the first bad parameter is the one reported."""
        o = cls()
        o.sort = q.get("sort", "") or "cid"
        o.auth = parse_bool("auth", q.get("auth"))
        subs = q.get("subs", "")
        if subs.lower() == "detail":
            o.subs_detail = True
        else:
            o.subs = parse_bool("subs", subs)
        o.offset = parse_int("offset", q.get("offset"))
        o.limit = parse_int("limit", q.get("limit"))
        o.cid = parse_uint64("cid", q.get("cid"))
        state = q.get("state", "")
        low = state.lower()
        if not state or low == "open":
            o.state = STATE_OPEN
        elif low == "closed":
            o.state = STATE_CLOSED
        elif low in ("any", "all"):
            o.state = STATE_ALL
        else:
            raise BadRequest(f"Error decoding state for {state}")
        o.user = q.get("user", "")
        o.acc = q.get("acc", "")
        o.mqtt_client = q.get("mqtt_client", "")
        return o

    def check(self) -> None:
        """The checks nats-server's Connz() makes after decoding."""
        if self.sort not in SORT_OPTIONS:
            raise BadRequest(f"invalid sorting option: {self.sort}")
        if self.sort in ("stop", "reason") and self.state != STATE_CLOSED:
            raise BadRequest(f"sort by {self.sort} only valid on closed connections")


class _Row:
    """One connection, open or closed, with raw values for sorting; rendered
    to Go types only when it lands on the requested page."""

    __slots__ = (
        "cid",
        "kind",
        "type",
        "ip",
        "port",
        "start",
        "last",
        "stop",
        "reason",
        "rtt",
        "pending",
        "in_msgs",
        "out_msgs",
        "in_bytes",
        "out_bytes",
        "nsubs",
        "name",
        "lang",
        "version",
        "tls_version",
        "tls_cipher",
        "user",
        "mqtt_client",
        "client",
        "closed_subs",
        "account",
    )

    def end(self, now: float) -> float:
        return self.stop if self.stop else now


def _live_row(c: Any) -> _Row:
    r = _Row()
    r.cid = c.cid
    r.kind = c.kind
    r.type = c.conn_type
    r.ip = c.ip
    r.port = c.port
    r.start = c.start
    r.last = c.last_activity
    r.stop = 0.0
    r.reason = ""
    r.rtt = getattr(c, "rtt", None) or 0.0
    r.pending = c.pending_bytes()
    r.in_msgs = c.in_msgs
    r.out_msgs = c.out_msgs
    r.in_bytes = c.in_bytes
    r.out_bytes = c.out_bytes
    r.nsubs = c.subscription_count()
    r.name = getattr(c, "name", "") or ""
    r.lang = getattr(c, "lang", "") or ""
    r.version = getattr(c, "version", "") or ""
    r.tls_version = c.tls_version or ""
    r.tls_cipher = c.tls_cipher or ""
    r.user = c.user or ""
    r.mqtt_client = (getattr(c, "client_id", "") or "") if c.conn_type == "mqtt" else ""
    r.client = c
    r.closed_subs = None
    r.account = c.account.name
    return r


def _closed_row(cc: Any) -> _Row:
    info = cc.info
    r = _Row()
    r.cid = info.get("cid", 0)
    r.kind = info.get("kind", "Client")
    r.type = info.get("type", "nats")
    r.ip = info.get("ip", "")
    r.port = info.get("port", 0)
    r.start = info.get("start", 0.0)
    r.last = info.get("last_activity", r.start)
    r.stop = cc.stop
    r.reason = cc.reason or ""
    r.rtt = info.get("rtt", 0.0) or 0.0
    r.pending = 0
    r.in_msgs = info.get("in_msgs", 0)
    r.out_msgs = info.get("out_msgs", 0)
    r.in_bytes = info.get("in_bytes", 0)
    r.out_bytes = info.get("out_bytes", 0)
    r.nsubs = info.get("subscriptions", 0)
    r.name = info.get("name", "") or ""
    r.lang = info.get("lang", "") or ""
    r.version = info.get("version", "") or ""
    r.tls_version = info.get("tls_version", "") or ""
    r.tls_cipher = info.get("tls_cipher", "") or ""
    r.user = info.get("user", "") or ""
    r.account = info.get("account", GLOBAL_ACCOUNT)
    r.mqtt_client = (info.get("client_id", "") or "") if r.type == "mqtt" else ""
    r.client = None
    # Present only if Server.describe() keeps the subjects of a closing client.
    r.closed_subs = info.get("subscriptions_list")
    return r


def _sort_key(sort: str, now: float):
    if sort in ("cid", "start"):
        return lambda r: r.cid
    if sort == "subs":
        return lambda r: (r.nsubs, -r.cid)
    if sort == "pending":
        return lambda r: (r.pending, -r.cid)
    if sort == "msgs_to":
        return lambda r: (r.out_msgs, -r.cid)
    if sort == "msgs_from":
        return lambda r: (r.in_msgs, -r.cid)
    if sort == "bytes_to":
        return lambda r: (r.out_bytes, -r.cid)
    if sort == "bytes_from":
        return lambda r: (r.in_bytes, -r.cid)
    if sort == "last":
        return lambda r: (r.last, -r.cid)
    if sort == "idle":
        return lambda r: (r.end(now) - r.last, -r.cid)
    if sort == "uptime":
        return lambda r: (r.end(now) - r.start, r.cid)
    if sort == "stop":
        return lambda r: (r.stop, -r.cid)
    if sort == "reason":
        return lambda r: (r.reason, r.cid)
    return lambda r: (r.rtt, -r.cid)  # rtt


def client_subscriptions(c: Any) -> list:
    """The router subscriptions a live connection owns (an MQTT connection's are
    its session's)."""
    if c.conn_type == "mqtt":
        session = getattr(c, "session", None)
        return session.all_subscriptions() if session is not None else []
    subs = getattr(c, "subs", None)
    return list(subs.values()) if subs else []


def _interested(r: _Row, filter_subject: str) -> bool:
    """nats-server's subject filter: an open connection stays when one of its
    subscriptions collides with the filter (SubjectsCollide), a closed one always
    (the filter only walks the open clients); ``total`` counts before it."""
    if r.client is None:
        return True
    want = filter_subject.split(".")
    return any(intersects(want, s.subject.split(".")) for s in client_subscriptions(r.client))


def _render(r: _Row, o: ConnzOptions, now: float) -> dict:
    end = r.end(now)
    d: dict[str, Any] = {
        "cid": int(r.cid),
        "kind": r.kind,
        "type": r.type,
        "ip": r.ip,
        "port": int(r.port),
        "start": rfc3339(r.start),
        "last_activity": rfc3339(r.last),
    }
    if r.stop:
        d["stop"] = rfc3339(r.stop)
        omitempty(d, "reason", r.reason)
    d["rtt"] = rtt(r.rtt)
    d["uptime"] = uptime(end - r.start)
    d["idle"] = uptime(end - r.last)
    d["pending_bytes"] = int(r.pending)
    d["in_msgs"] = int(r.in_msgs)
    d["out_msgs"] = int(r.out_msgs)
    d["in_bytes"] = int(r.in_bytes)
    d["out_bytes"] = int(r.out_bytes)
    d["subscriptions"] = int(r.nsubs)
    if o.subs or o.subs_detail:
        subs = client_subscriptions(r.client) if r.client is not None else None
        if o.subs_detail:
            if subs is not None:
                omitempty(d, "subscriptions_list_detail", [sub_detail(s, r.cid) for s in subs])
        elif subs is not None:
            omitempty(d, "subscriptions_list", [s.subject for s in subs])
        elif r.closed_subs:
            d["subscriptions_list"] = list(r.closed_subs)
    omitempty(d, "name", r.name)
    omitempty(d, "lang", r.lang)
    omitempty(d, "version", r.version)
    omitempty(d, "tls_version", r.tls_version)
    omitempty(d, "tls_cipher_suite", r.tls_cipher)
    if o.auth:
        omitempty(d, "authorized_user", r.user)
        # `account` is omitted for the global account; name_tag names it.
        if r.account != GLOBAL_ACCOUNT:
            d["account"] = r.account
        d["name_tag"] = r.account
    omitempty(d, "mqtt_client", r.mqtt_client)
    return d


def _candidates(server: Server, o: ConnzOptions) -> list[_Row]:
    """The rows of the requested state (and cid), before any filter."""
    rows: list[_Row] = []
    if o.cid:
        c = server.clients.get(o.cid) if o.state != STATE_CLOSED else None
        if c is not None:
            rows.append(_live_row(c))
        elif o.state != STATE_OPEN:
            for cc in reversed(server.closed):
                if cc.info.get("cid") == o.cid:
                    rows.append(_closed_row(cc))
                    break
    else:
        if o.state != STATE_CLOSED:
            rows.extend(_live_row(c) for c in server.clients.values())
        if o.state != STATE_OPEN:
            rows.extend(_closed_row(cc) for cc in server.closed)
    return rows


def connz(server: Server, o: ConnzOptions) -> dict:
    """``/connz`` (nats-conventions §1.4): build the candidates (state, account), count
    them (``total``), filter by user and MQTT client id, sort all, cut the page."""
    o.check()
    now = time.time()
    if o.acc and o.acc not in server.accounts:
        # nats-server answers an unknown account with an empty Connz struct.
        return {
            "server_id": "",
            "now": ZERO_TIME,
            "num_connections": 0,
            "total": 0,
            "offset": 0,
            "limit": 0,
            "connections": None,
        }
    offset, limit = page_window(o.offset, o.limit)
    if o.cid:
        limit = 1
    rows = _candidates(server, o)
    if o.acc:
        rows = [r for r in rows if r.account == o.acc]
    total = len(rows)
    if o.user:
        rows = [r for r in rows if r.user == o.user]
    if o.mqtt_client:
        rows = [r for r in rows if r.mqtt_client == o.mqtt_client]
    if o.filter_subject and o.filter_subject != ">":
        rows = [r for r in rows if _interested(r, o.filter_subject)]
    rows.sort(key=_sort_key(o.sort, now), reverse=SORT_OPTIONS[o.sort])
    page = rows[offset : offset + limit]
    conns = [_render(r, o, now) for r in page]
    return {
        "server_id": server.server_id,
        "now": rfc3339(now),
        "num_connections": len(conns),
        "total": total,
        "offset": offset,
        "limit": limit,
        "connections": conns,
    }
