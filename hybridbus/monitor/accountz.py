"""``/accountz``, ``/accstatz`` and ``/routez``: the accounts (``$G``, those of the
``accounts`` block, and the system account, ``$SYS`` unless another is named), their
statistics, and the empty route table of a standalone server.

Shapes as nats-server 2.15 answers (server/monitor.go Accountz, AccountStatz): an
account's detail lists its exports (``approved_accounts`` when restricted, services'
``response_type``) and imports (``local_subject`` is where the importer sees them),
and its router's ``sublist_stats``. Counters of an account are read from its live
connections plus what its closed ones left (``Account.closed_traffic``), so the
message path keeps no per-account counter.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from hybridbus.monitor.common import (
    GLOBAL_ACCOUNT,
    Query,
    nanos,
    omitempty,
    system_account_name,
)
from hybridbus.monitor.gotypes import BadRequest, parse_bool, rfc3339

if TYPE_CHECKING:
    from hybridbus.server.server import Server

_STATS = (
    "num_subscriptions",
    "num_cache",
    "num_inserts",
    "num_removes",
    "num_matches",
    "cache_hit_rate",
    "max_fanout",
    "avg_fanout",
)
_DEFAULT_THRESHOLD = 120.0


def account_names(server: Server) -> list[str]:
    """Every account /accountz lists ($G, the configured ones, the system account)."""
    return list(server.accounts)


def accountz(server: Server, q: Query) -> dict:
    """``/accountz`` (nats-conventions §1.8): the names, or one account's detail."""
    now = rfc3339(time.time())
    acc = q.get("acc", "")
    out: dict[str, Any] = {"server_id": server.server_id, "now": now}
    omitempty(out, "system_account", system_account_name(server))
    if not acc:
        out["accounts"] = account_names(server)
        return out
    if acc not in account_names(server):
        raise BadRequest(f"Account {acc} does not exist")
    account = server.accounts.get(acc)
    is_global = acc == GLOBAL_ACCOUNT
    detail: dict[str, Any] = {
        "account_name": acc,
        "update_time": rfc3339(account.update_time if account else server.start_time),
    }
    omitempty(detail, "is_system", bool(acc == system_account_name(server)))
    detail["expired"] = False
    detail["complete"] = True
    detail["jetstream_enabled"] = bool(is_global and server.options.jetstream.enabled)
    detail["leafnode_connections"] = 0
    detail["client_connections"] = account.nconns if account else 0
    detail["subscriptions"] = int(account.sublist.count()) if account else 0
    if account is not None:
        exports, imports = _system_links(acc, system_account_name(server))
        omitempty(detail, "exports", [_export(e) for e in account.exports] + exports)
        omitempty(detail, "imports", [_import(i) for i in account.imports] + imports)
    detail["name_tag"] = acc
    if account is not None:
        stats = account.sublist.stats()
        detail["sublist_stats"] = {k: stats.get(k, 0) for k in _STATS}
    out["account_detail"] = detail
    return out


# What nats-server's system account exports, and every other account imports from it
# (events.go addSystemAccountExports, registerSystemImports; server/system.py answers them)
_SYSTEM_EXPORTS = (
    ("$SYS.REQ.ACCOUNT.*.CONNZ", "Streamed"),
    ("$SYS.REQ.ACCOUNT.*.STATZ", "Streamed"),
    ("$SYS.DEBUG.SUBSCRIBERS", "Singleton"),
    ("$SYS.REQ.USER.*.INFO", "Singleton"),
)
_SYSTEM_IMPORTS = (
    ("$SYS.REQ.ACCOUNT.{}.CONNZ", "$SYS.REQ.ACCOUNT.PING.CONNZ", False),
    ("$SYS.REQ.ACCOUNT.{}.CONNZ", "$SYS.REQ.SERVER.PING.CONNZ", False),
    ("$SYS.REQ.ACCOUNT.{}.STATZ", "$SYS.REQ.ACCOUNT.PING.STATZ", False),
    ("$SYS.REQ.USER.{}.INFO", "$SYS.REQ.USER.INFO", True),
)


def _system_links(acc: str, system: str) -> tuple[list[dict], list[dict]]:
    """(exports, imports) an account has from the system account, as /accountz shows."""
    if not system:
        return [], []
    rows = _SYSTEM_IMPORTS
    exports: list[dict] = []
    if acc == system:
        exports = [
            {"subject": s, "type": "service", "response_type": r} for s, r in _SYSTEM_EXPORTS
        ]
        rows = rows[3:]  # the system account imports its own user info only
    imports = [
        {
            "subject": subject.format(acc),
            "account": system,
            "to": local,
            "local_subject": local,
            "type": "service",
            "invalid": False,
            "share": share,
            "tracking": False,
        }
        for subject, local, share in rows
    ]
    return exports, imports


def _export(e: Any) -> dict:
    d: dict[str, Any] = {"subject": e.subject, "type": "service" if e.service else "stream"}
    if e.service:
        d["response_type"] = e.response_type
        if e.response_threshold != _DEFAULT_THRESHOLD:
            d["response_threshold"] = nanos(e.response_threshold)
    omitempty(d, "approved_accounts", list(e.accounts or ()))
    return d


def _import(i: Any) -> dict:
    d: dict[str, Any] = {"subject": i.subject, "account": i.account}
    if i.service:
        local = i.to or i.subject
        omitempty(d, "to", i.to)
    elif i.prefix:
        local = f"{i.prefix}.{i.subject}"
    else:
        local = i.to or i.subject
        omitempty(d, "to", i.to)
    d["local_subject"] = local
    d["type"] = "service" if i.service else "stream"
    d["invalid"] = False
    d["share"] = bool(i.share)
    d["tracking"] = False
    return d


def _traffic(server: Server, account: Any) -> tuple[list[int], int]:
    """([in_msgs, in_bytes, out_msgs, out_bytes], slow consumers) of an account: its
    closed connections' totals plus its live ones (slow consumers are not kept per
    account)."""
    totals = list(account.closed_traffic)
    for c in server.clients.values():
        if c.account is account:
            totals[0] += c.in_msgs
            totals[1] += c.in_bytes
            totals[2] += c.out_msgs
            totals[3] += c.out_bytes
    return totals, 0


def _zero_link() -> dict:
    return {"msgs": 0, "bytes": 0}


def accstatz(server: Server, q: Query) -> dict:
    """``/accstatz``: per-account statistics; accounts without connections only with
    ``unused=true``; ``acc=A,B`` picks accounts."""
    unused = parse_bool("unused", q.get("unused", ""))
    wanted = [a for a in q.get("acc", "").split(",") if a]
    out: dict[str, Any] = {"server_id": server.server_id, "now": rfc3339(time.time())}
    rows = []
    for name, account in server.accounts.items():
        if wanted and name not in wanted:
            continue
        if not unused and account.nconns == 0:
            continue
        (in_msgs, in_bytes, out_msgs, out_bytes), slow = _traffic(server, account)
        rows.append(
            {
                "acc": name,
                "name": name,
                "conns": account.nconns,
                "leafnodes": 0,
                "total_conns": account.nconns,
                "num_subscriptions": int(account.sublist.count()),
                "sent": {
                    "msgs": out_msgs,
                    "bytes": out_bytes,
                    "gateways": _zero_link(),
                    "routes": _zero_link(),
                    "leafs": _zero_link(),
                },
                "received": {
                    "msgs": in_msgs,
                    "bytes": in_bytes,
                    "gateways": _zero_link(),
                    "routes": _zero_link(),
                    "leafs": _zero_link(),
                },
                "slow_consumers": slow,
            }
        )
    out["account_statz"] = rows
    return out


def routez(server: Server, q: Query) -> dict:
    """``/routez``: a standalone server has no routes."""
    subs = q.get("subs", "")
    if subs.lower() != "detail":
        parse_bool("subs", subs)
    return {
        "server_id": server.server_id,
        "server_name": server.server_name,
        "now": rfc3339(time.time()),
        "num_routes": 0,
        "routes": [],
    }
