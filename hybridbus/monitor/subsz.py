"""``/subsz`` (alias ``/subscriptionsz``): the router's statistics and, on request,
its subscriptions, paged. Also the SubDetail rendering of one subscription (NATS
or MQTT) that ``/connz?subs=detail`` shares.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hybridbus.monitor.common import (
    DEFAULT_LIST_SIZE,
    Query,
    omitempty,
    page_window,
)
from hybridbus.monitor.gotypes import BadRequest, parse_bool, parse_int, rfc3339
from hybridbus.subjects import is_valid_publish_subject, subject_matches

if TYPE_CHECKING:
    from hybridbus.server.server import Server


@dataclass
class SubszOptions:
    subs: bool = False
    offset: int = 0
    limit: int = DEFAULT_LIST_SIZE
    test: str = ""
    acc: str = ""

    @classmethod
    def from_query(cls, q: Query) -> SubszOptions:
        o = cls()
        o.subs = parse_bool("subs", q.get("subs"))
        o.offset = parse_int("offset", q.get("offset"))
        o.limit = parse_int("limit", q.get("limit"))
        o.test = q.get("test", "")
        o.acc = q.get("acc", "")
        return o


# SublistStats: each field and its Go type (a float64 or an integer).
_SUBLIST_STATS: dict[str, type] = {
    "num_subscriptions": int,
    "num_cache": int,
    "num_inserts": int,
    "num_removes": int,
    "num_matches": int,
    "cache_hit_rate": float,
    "max_fanout": int,
    "avg_fanout": float,
}


# =========================================================================== one subscription


def mqtt_sid(sub: Any) -> str:
    """nats-server's sid for an MQTT subscription: the subject itself, and
    ``"<parent> fwc"`` for the extra parent-level subject of a ``#`` filter
    (nats-conventions §1.4, MQTT rows)."""
    topic_filter = sub.sid if isinstance(sub.sid, str) else ""
    if topic_filter.endswith("#") and not sub.subject.endswith(">"):
        return sub.subject + " fwc"
    return sub.subject


def sub_detail(sub: Any, cid: int) -> dict:
    """A SubDetail without the account fields (nats-server's connz form)."""
    d: dict[str, Any] = {"subject": sub.subject}
    omitempty(d, "qgroup", sub.queue or "")
    if hasattr(sub, "sid_bytes"):  # a NATS SUB: the client's own sid
        d["sid"] = str(sub.sid)
        d["msgs"] = int(sub.msgs)
        omitempty(d, "max", int(sub.max_msgs or 0))
    else:
        d["sid"] = mqtt_sid(sub)
        # MQTT subscriptions keep no per-subscription delivery count (that would
        # cost a counter update per message on the hot path).
        d["msgs"] = 0
    d["cid"] = int(cid)
    return d


def subscription_cid(sub: Any) -> int:
    """The connection holding a subscription; 0 for an offline MQTT session's."""
    owner = sub.client
    cid = getattr(owner, "cid", None)
    if cid is not None:
        return int(cid)
    conn = getattr(owner, "conn", None)  # an MQTT Session
    return int(conn.cid) if conn is not None else 0


# =========================================================================== /subsz


def _accounts(server: Server, acc: str) -> list[Any]:
    """The accounts a request is about: ``acc=`` one (none for an unknown one),
    else every account."""
    if not acc:
        return list(server.accounts.values())
    account = server.accounts.get(acc)
    return [account] if account is not None else []


def _stats(accounts: list[Any]) -> dict:
    """The routers' statistics, summed over ``accounts`` (rates weighted by matches)."""
    if len(accounts) == 1:
        return accounts[0].sublist.stats()
    out: dict[str, Any] = {k: 0 for k in _SUBLIST_STATS}
    hits = fanout = 0.0
    for account in accounts:
        st = account.sublist.stats()
        for key in ("num_subscriptions", "num_cache", "num_inserts", "num_removes"):
            out[key] += st.get(key, 0)
        matches = st.get("num_matches", 0)
        out["num_matches"] += matches
        out["max_fanout"] = max(out["max_fanout"], st.get("max_fanout", 0))
        hits += st.get("cache_hit_rate", 0.0) * matches
        fanout += st.get("avg_fanout", 0.0) * matches
    if out["num_matches"]:
        out["cache_hit_rate"] = hits / out["num_matches"]
        out["avg_fanout"] = fanout / out["num_matches"]
    return out


def _listing(server: Server, o: SubszOptions, accounts: list[Any]) -> tuple[int, list[dict]]:
    """(total, page): the subscriptions matching ``test``, in a stable order."""
    offset, limit = page_window(o.offset, o.limit)
    subs = [(a.name, s) for a in accounts for s in a.sublist.subscriptions()]
    if o.test:
        subs = [(a, s) for a, s in subs if subject_matches(s.subject, o.test)]
    # The order is unspecified in nats-server; a stable one makes paging usable.
    keyed = sorted(
        ((subscription_cid(s), s.subject, str(s.sid), a, s) for a, s in subs),
        key=lambda t: t[:4],
    )
    listing = []
    for cid, _subject, _sid, name, s in keyed[offset : offset + limit]:
        d = {"account": name, "account_tag": name}
        d.update(sub_detail(s, cid))
        listing.append(d)
    return len(subs), listing


def subsz(server: Server, o: SubszOptions) -> dict:
    """``/subsz`` (nats-conventions §1.5): the router's stats, and with ``subs=1`` the
    subscriptions themselves (filtered by ``test``), paged."""
    if o.test and not is_valid_publish_subject(o.test):
        raise BadRequest(f"invalid test subject, must be valid publish subject: {o.test}")
    offset, limit = page_window(o.offset, o.limit)
    accounts = _accounts(server, o.acc)
    # An unknown account has no subscriptions: its statistics are zero.
    stats = _stats(accounts) if accounts else {}
    out: dict[str, Any] = {"server_id": server.server_id, "now": rfc3339(time.time())}
    for key, go_type in _SUBLIST_STATS.items():
        out[key] = go_type(stats.get(key, 0))
    total = 0
    listing: list[dict] | None = None
    if o.subs:
        total, listing = _listing(server, o, accounts)
    out["total"] = total
    out["offset"] = offset
    out["limit"] = limit
    if listing is not None:
        # Go's omitempty drops an empty list.
        omitempty(out, "subscriptions_list", listing)
    return out
