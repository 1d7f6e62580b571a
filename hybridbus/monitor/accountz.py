"""``/accountz`` and ``/routez``: the two built-in accounts (``$G``, ``$SYS``; hybridbus
has no others) and the empty route table of a standalone server.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from hybridbus.monitor.common import (
    ACCOUNTS,
    GLOBAL_ACCOUNT,
    SYSTEM_ACCOUNT,
    Query,
    omitempty,
)
from hybridbus.monitor.gotypes import BadRequest, parse_bool, rfc3339

if TYPE_CHECKING:
    from hybridbus.server.server import Server


def accountz(server: Server, q: Query) -> dict:
    """``/accountz`` (nats-conventions §1.8): the two built-in accounts."""
    now = rfc3339(time.time())
    acc = q.get("acc", "")
    out: dict[str, Any] = {"server_id": server.server_id, "now": now}
    out["system_account"] = SYSTEM_ACCOUNT
    if not acc:
        out["accounts"] = list(ACCOUNTS)
        return out
    if acc not in ACCOUNTS:
        raise BadRequest(f"Account {acc} does not exist")
    is_global = acc == GLOBAL_ACCOUNT
    detail: dict[str, Any] = {
        "account_name": acc,
        "update_time": rfc3339(server.start_time),
    }
    omitempty(detail, "is_system", not is_global)
    detail["expired"] = False
    detail["complete"] = True
    detail["jetstream_enabled"] = bool(is_global and server.options.jetstream.enabled)
    detail["leafnode_connections"] = 0
    detail["client_connections"] = len(server.clients) if is_global else 0
    detail["subscriptions"] = int(server.sublist.count()) if is_global else 0
    detail["name_tag"] = acc
    out["account_detail"] = detail
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
