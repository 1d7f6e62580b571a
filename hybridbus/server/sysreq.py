"""The ``$SYS.REQ`` services: nats-server's monitoring over NATS (server/events.go).

Every answer but IDZ and the account CONNS event is a ServerAPIResponse,
``{"server": ServerInfo, "data": ..., "error": {"code", "description"}}``; ``data``
is built by the same report functions as the HTTP endpoints (``hybridbus.monitor``),
so ``$SYS.REQ.SERVER.PING.VARZ`` and ``/varz`` agree. A request body may carry the
endpoint's options as JSON (``{"subscriptions": true}`` for CONNZ), with nats-server's
JSON names, plus the filter options every server checks (``server_name``, ``cluster``,
``host``, ``tags``, ``domain``): a server the filter leaves out stays silent. A body
that is not JSON is a 400, a report that fails a 500 (nats-server's zReq).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from hybridbus.jetstream.api import ApiError
from hybridbus.jetstream.gojson import List, Struct, decode
from hybridbus.monitor.common import GLOBAL_ACCOUNT, rss_bytes, traffic_totals
from hybridbus.monitor.gotypes import BadRequest, rfc3339

if TYPE_CHECKING:
    from hybridbus.server.system import SysRequest, SystemAccount

_FILTER = {
    "server_name": "string",
    "cluster": "string",
    "host": "string",
    "tags": List("string"),
    "domain": "string",
}


def _schema(name: str, **fields: Any) -> Struct:
    return Struct(f"server.{name}", {**fields, **_FILTER})


STATSZ = _schema("StatszEventOptions")
VARZ = _schema("VarzEventOptions")
CONNZ = _schema(
    "ConnzEventOptions",
    sort="string",
    auth="bool",
    subscriptions="bool",
    subscriptions_detail="bool",
    offset="int",
    limit="int",
    cid="uint64",
    mqtt_client="string",
    state="int",
    user="string",
    acc="string",
    filter_subject="string",
)
SUBSZ = _schema(
    "SubszEventOptions",
    offset="int",
    limit="int",
    subscriptions="bool",
    account="string",
    test="string",
)
JSZ = _schema(
    "JszEventOptions",
    account="string",
    accounts="bool",
    streams="bool",
    consumer="bool",
    config="bool",
    leader_only="bool",
    offset="int",
    limit="int",
    raft="bool",
    stream_leader_only="bool",
)
LEAFZ = _schema("LeafzEventOptions", subscriptions="bool", account="string")
HEALTHZ = _schema(
    "HealthzEventOptions",
    **{
        "js-enabled": "bool",
        "js-enabled-only": "bool",
        "js-server-only": "bool",
        "js-meta-only": "bool",
        "account": "string",
        "stream": "string",
        "consumer": "string",
        "details": "bool",
    },
)
ACCOUNTZ = _schema("AccountzEventOptions", account="string")
STATZ = _schema("AccountStatzEventOptions", accounts=List("string"), include_unused="bool")
INFO = _schema("AccInfoEventOptions")

# nats-server's ServerCapability bits: JetStreamEnabled (the others, binary snapshots
# and NRG in accounts, are clustering features hybridbus does not have)
FLAG_JETSTREAM = 1


class Skip(Exception):
    """This server does not answer (nats-server's errSkipZreq)."""


class _Failed(Exception):
    def __init__(self, code: int, text: str) -> None:
        super().__init__(text)
        self.code = code


# =========================================================================== the envelope


def server_info(system: SystemAccount) -> dict:
    """ServerInfo (events.go): who answers, with the next event sequence number."""
    server = system.server
    opts = server.options
    system.seq += 1
    js = server.jetstream is not None
    info: dict[str, Any] = {"name": server.server_name, "host": opts.host, "id": server.server_id}
    domain = opts.jetstream.domain if js else None
    if domain:
        info["domain"] = domain
    info["ver"] = system.version
    if opts.tags:
        info["tags"] = list(opts.tags)
    info["jetstream"] = js
    info["flags"] = FLAG_JETSTREAM if js else 0
    info["seq"] = system.seq
    info["time"] = rfc3339(time.time())
    return info


def filtered_out(system: SystemAccount, f: dict) -> bool:
    """nats-server's filterRequest: True when the request is not for this server."""
    server = system.server
    opts = server.options
    if f.get("server_name") and f["server_name"] not in server.server_name:
        return True
    if f.get("host") and f["host"] not in opts.host:
        return True
    if f.get("cluster"):
        return True  # a standalone server has no cluster name to contain it
    if any(t not in opts.tags for t in f.get("tags") or ()):
        return True
    domain = opts.jetstream.domain or ""
    return bool(f.get("domain")) and f["domain"] != domain


def zreq(
    system: SystemAccount, req: SysRequest, schema: Struct, build: Callable[[dict], Any]
) -> dict | None:
    """nats-server's zReq: decode the options, filter, build ``data`` or the error."""
    if not req.reply:
        return None
    status = 0
    error = ""
    data: Any = None
    try:
        opts = decode_options(req.payload, schema)
    except ApiError as err:
        status, error = 400, str(err)
    else:
        if opts and filtered_out(system, opts):
            return None
        try:
            data = build(opts)
        except Skip:
            return None
        except _Failed as err:
            status, error = err.code, str(err)
        except (BadRequest, ValueError) as err:
            status, error = 500, getattr(err, "text", None) or str(err)
    out: dict[str, Any] = {"server": server_info(system)}
    if status:
        if data is not None or status == 500:
            out["data"] = data  # Go keeps a typed nil: "data": null beside the error
        out["error"] = {"code": status, "description": error}
    else:
        out["data"] = data
    return out


def decode_options(payload: bytes, schema: Struct) -> dict:
    """A request's options (Go's json.Unmarshal: unknown fields ignored); an
    ApiError with the decoder's words when the body is not JSON of that shape."""
    if not payload.strip():
        return {}
    syntax = go_syntax_error(payload)
    if syntax:
        raise ApiError(400, 0, syntax)
    try:
        return decode(payload, schema, False)
    except ApiError as err:
        raise ApiError(400, 0, str(err).removeprefix("invalid JSON: ")) from None


_LITERALS = (b"null", b"true", b"false")


def go_syntax_error(payload: bytes) -> str:
    """Go's encoding/json words for a body that does not even start as JSON (the
    common case: plain text); "" when it starts well (the schema check reports the
    rest)."""
    data = payload.lstrip(b" \t\r\n")
    first = data[:1]
    if first in (b"{", b"[", b'"', b"-") or first.isdigit():
        return ""
    for word in _LITERALS:
        if first == word[:1]:
            for i, ch in enumerate(data[: len(word)]):
                if ch != word[i]:
                    return (
                        f"invalid character {_quote(ch)} in literal {word.decode()} "
                        f"(expecting {_quote(word[i])})"
                    )
            return ""
    return f"invalid character {_quote(first[0])} looking for beginning of value"


def _quote(ch: int) -> str:
    return repr(chr(ch)) if chr(ch) != "'" else "'\\''"


# =========================================================================== the reports


class _MonitorStandIn:
    """What /varz reads from the HTTP monitor, when there is none."""

    port = 0

    def __init__(self) -> None:
        self.http_req_stats: dict[str, int] = {}

    def cpu_percent(self) -> float:
        return 0.0


def _monitor(system: SystemAccount) -> Any:
    return system.server.monitor or _MonitorStandIn()


def statsz(system: SystemAccount) -> dict:
    """ServerStatsMsg: {server, statsz} (events.go sendStatsz)."""
    from hybridbus.monitor.jsz import js_config, js_stats

    server = system.server
    in_msgs, in_bytes, out_msgs, out_bytes = traffic_totals(server)
    mon = server.monitor
    stats: dict[str, Any] = {
        "start": rfc3339(server.start_time),
        "mem": rss_bytes(),
        "cores": _cores(),
        "cpu": float(mon.cpu_percent()) if mon is not None else 0.0,
        "connections": len(server.clients),
        "total_connections": server.stats.total_connections,
        "active_accounts": sum(1 for a in server.accounts.values() if a.nconns > 0),
        "subscriptions": sum(int(a.sublist.count()) for a in server.accounts.values()),
        "sent": {"msgs": out_msgs, "bytes": out_bytes},
        "sent_to_clients": {"msgs": out_msgs, "bytes": out_bytes},
        "received": {"msgs": in_msgs, "bytes": in_bytes},
        "received_from_clients": {"msgs": in_msgs, "bytes": in_bytes},
        "slow_consumers": server.stats.slow_consumers,
        "active_servers": 1,
    }
    if server.jetstream is not None:
        config = dict(js_config(server))
        config.pop("store_dir", None)  # nats-server leaves it out of STATSZ
        stats["jetstream"] = {"config": config, "stats": js_stats(server), "limits": {}}
    stats["gomaxprocs"] = _cores()
    return {"server": server_info(system), "statsz": stats}


def _cores() -> int:
    import os

    return os.cpu_count() or 1


def varz(system: SystemAccount, opts: dict) -> dict:
    from hybridbus.monitor.varz import varz as build

    return build(system.server, _monitor(system))


def connz(system: SystemAccount, opts: dict, account: str = "") -> dict:
    from hybridbus.monitor.connz import STATE_ALL, STATE_CLOSED, STATE_OPEN, ConnzOptions
    from hybridbus.monitor.connz import connz as build

    o = ConnzOptions()
    o.sort = opts.get("sort") or "cid"
    o.auth = bool(opts.get("auth"))
    o.subs = bool(opts.get("subscriptions"))
    o.subs_detail = bool(opts.get("subscriptions_detail"))
    o.offset = opts.get("offset") or 0
    o.limit = opts.get("limit") or 0
    o.cid = opts.get("cid") or 0
    o.mqtt_client = opts.get("mqtt_client") or ""
    o.state = {1: STATE_CLOSED, 2: STATE_ALL}.get(opts.get("state") or 0, STATE_OPEN)
    o.user = opts.get("user") or ""
    o.acc = account or opts.get("acc") or ""
    o.filter_subject = opts.get("filter_subject") or ""
    if o.filter_subject and o.filter_subject != ">" and not o.acc:
        raise _Failed(500, "filter by subject only valid with account filtering")
    return _checked(build, system.server, o)


def _checked(build: Callable, *args: Any) -> Any:
    """A report's BadRequest (a bad option) is the 500 nats-server's zReq answers."""
    try:
        return build(*args)
    except BadRequest as err:
        raise _Failed(500, err.text) from None


def subsz(system: SystemAccount, opts: dict, account: str = "") -> dict:
    from hybridbus.monitor.subsz import SubszOptions
    from hybridbus.monitor.subsz import subsz as build

    o = SubszOptions()
    o.subs = bool(opts.get("subscriptions")) or bool(account)
    o.offset = opts.get("offset") or 0
    o.limit = opts.get("limit") or 0
    o.test = opts.get("test") or ""
    o.acc = account or opts.get("account") or ""
    return _checked(build, system.server, o)


def jsz(system: SystemAccount, opts: dict, account: str = "") -> dict:
    from hybridbus.monitor.jsz import JszOptions
    from hybridbus.monitor.jsz import jsz as build

    server = system.server
    if account:
        # JszAccount: one account's usage; JetStream serves $G only here
        if server.jetstream is None or account != GLOBAL_ACCOUNT:
            raise _Failed(500, f'account "{account}" not jetstream enabled')
    o = JszOptions()
    o.acc = account or opts.get("account") or ""
    o.accounts = bool(opts.get("accounts"))
    o.streams = bool(opts.get("streams"))
    o.consumers = bool(opts.get("consumer"))
    o.config = bool(opts.get("config"))
    o.offset = opts.get("offset") or 0
    o.limit = opts.get("limit") or 0
    o.leader_only = bool(opts.get("leader_only"))
    o.raft = bool(opts.get("raft"))
    return _checked(build, server, o)


def leafz(system: SystemAccount, opts: dict) -> dict:
    from hybridbus.monitor.leafz import LeafzOptions
    from hybridbus.monitor.leafz import leafz as build

    o = LeafzOptions(bool(opts.get("subscriptions")), opts.get("account") or "")
    return _checked(build, system.server, o)


def healthz(system: SystemAccount, opts: dict) -> dict:
    from hybridbus.monitor.healthz import HealthzOptions, WriteErrorWatch
    from hybridbus.monitor.healthz import healthz as build

    o = HealthzOptions()
    o.js_enabled_only = bool(opts.get("js-enabled-only") or opts.get("js-enabled"))
    o.js_server_only = bool(opts.get("js-server-only"))
    o.js_meta_only = bool(opts.get("js-meta-only"))
    o.details = bool(opts.get("details"))
    o.account = opts.get("account") or ""
    o.stream = opts.get("stream") or ""
    o.consumer = opts.get("consumer") or ""
    mon = system.server.monitor
    watch = getattr(mon, "_health", None) or system.health_watch
    if watch is None:
        watch = system.health_watch = WriteErrorWatch()
    status, body = build(system.server, o, watch)
    if "status_code" not in body:
        body = {**body, "status_code": status}  # nats-server's healthz() fills it in
    return body


def accountz(system: SystemAccount, opts: dict) -> dict:
    from hybridbus.monitor.accountz import accountz as build

    acc = opts.get("account") or ""
    return _checked(build, system.server, {"acc": acc} if acc else {})


def account_info(system: SystemAccount, account: str) -> dict:
    """$SYS.REQ.ACCOUNT.<acc>.INFO: /accountz's account_detail."""
    from hybridbus.monitor.accountz import accountz as build

    if account not in system.server.accounts:
        raise _Failed(500, f"Account {account} does not exist")
    return _checked(build, system.server, {"acc": account})["account_detail"]


def account_statz(system: SystemAccount, opts: dict, accounts: list[str] | None = None) -> dict:
    """AccountStatz; no answer when no account is left and unused ones were not asked."""
    from hybridbus.monitor.accountz import accstatz

    unused = bool(opts.get("include_unused"))
    names = accounts if accounts is not None else list(opts.get("accounts") or ())
    q = {"unused": "true" if unused else "false"}
    if names:
        q["acc"] = ",".join(names)
    out = accstatz(system.server, q)
    if not out["account_statz"] and not unused:
        raise Skip
    return out


def user_info(system: SystemAccount, req: SysRequest) -> dict:
    """UserInfo of the requester: {user, account, account_name, permissions?}."""
    client = req.client
    account = req.account.name
    data: dict[str, Any] = {"user": (client.user or "") if client is not None else ""}
    data["account"] = account
    data["account_name"] = account
    perms = _permissions_of(system, client, account)
    if perms:
        data["permissions"] = perms
    return {"server": server_info(system), "data": data}


def _permissions_of(system: SystemAccount, client: Any, account: str) -> dict | None:
    """The requester's configured permissions, as nats-server's publicPermissions."""
    if client is None or client.perms is None or not client.user:
        return None
    opts = system.server.options
    users = list(opts.auth.users) if opts.auth else []
    for acc in opts.accounts:
        users.extend(acc.users)
    for u in users:
        if (u.user or u.nkey) == client.user and (u.account or GLOBAL_ACCOUNT) == account:
            p = u.permissions
            break
    else:
        return None
    if p is None:
        return None
    out: dict[str, Any] = {}
    for name, allow, deny in (
        ("publish", p.publish_allow, p.publish_deny),
        ("subscribe", p.subscribe_allow, p.subscribe_deny),
    ):
        side: dict[str, Any] = {}
        if allow:
            side["allow"] = list(allow)
        if deny:
            side["deny"] = list(deny)
        if side:
            out[name] = side
    if p.allow_responses is not None:
        out["responses"] = {"max": p.allow_responses[0], "ttl": int(p.allow_responses[1] * 1e9)}
    return out or None


def idz(system: SystemAccount) -> dict:
    server = system.server
    return {"name": server.server_name, "host": server.options.host, "id": server.server_id}
