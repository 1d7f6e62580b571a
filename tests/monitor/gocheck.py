"""A Go-type checker for monitoring JSON: would nats-server's structs decode this?

A schema is a dict ``field -> spec``. A spec is a type tag, a nested schema (a
JSON object), or ``[spec]`` (an array of it). A field name ending in ``?`` is
optional (Go ``omitempty``); every other field must be present. Fields the schema
does not name fail the check unless the schema has ``"*": True`` (strictness here
catches misspelt names; Go itself would just ignore them).

Type tags, and what Go would accept for them:

* ``int``/``uint``: a JSON integer (``5``, never ``5.0`` or ``"5"``), ``uint`` >= 0
* ``ns``: an integer count of nanoseconds (time.Duration)
* ``float``: any JSON number (float64)
* ``str``, ``bool``
* ``time``: RFC 3339 as Go's RFC3339Nano writes it in UTC (``Z``, 0-9 fraction
  digits, no trailing zero in the fraction)
* ``uptime``: nats-server's uptime dialect (``1y10d3h4m5s``, leading zeros dropped)
* ``rtt``: the canonical text of Go's time.Duration.String()
* ``{str:int}``/``{str:str}``/``{str:bool}``/``[str]``/``any``

The checks are written from the formats' definitions, independently of
``hybridbus.monitor.gotypes`` (which produces the values).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

_TIME = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?Z$")
_UPTIME = re.compile(
    r"^(?:(?P<y>\d+)y(?P<yd>\d+)d(?P<yh>\d+)h(?P<ym>\d+)m"
    r"|(?P<d>\d+)d(?P<dh>\d+)h(?P<dm>\d+)m"
    r"|(?P<h>\d+)h(?P<hm>\d+)m"
    r"|(?P<m>\d+)m)?(?P<s>\d+)s$"
)
_RTT = re.compile(
    r"^(?:0s"
    r"|-?[1-9]\d{0,2}ns"
    r"|-?[1-9]\d{0,2}(?:\.\d*[1-9])?\u00b5s"
    r"|-?[1-9]\d{0,2}(?:\.\d*[1-9])?ms"
    r"|-?(?:[1-9]\d*h(?:[0-9]|[1-5]\d)m|[1-9]\d?m)?(?:[0-9]|[1-5]\d)(?:\.\d*[1-9])?s)$"
)


class GoTypeError(AssertionError):
    pass


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def is_go_time(v: Any) -> bool:
    if not isinstance(v, str):
        return False
    m = _TIME.match(v)
    if not m:
        return False
    frac = m.group(7)
    if frac is not None and frac.endswith("0"):
        return False  # RFC3339Nano trims trailing zeros
    if v == "0001-01-01T00:00:00Z":
        return True
    try:
        datetime(*(int(m.group(i)) for i in range(1, 7)))
    except ValueError:
        return False
    return True


def is_uptime(v: Any) -> bool:
    if not isinstance(v, str):
        return False
    m = _UPTIME.match(v)
    if not m:
        return False
    g = {k: int(x) for k, x in m.groupdict().items() if x is not None}
    lead = next((k for k in ("y", "d", "h", "m") if k in g), None)
    if lead is not None and g[lead] == 0:
        return False  # a leading zero unit is dropped
    limits = {"yd": 365, "yh": 24, "ym": 60, "dh": 24, "dm": 60, "hm": 60}
    if any(g[k] >= lim for k, lim in limits.items() if k in g):
        return False
    return not (lead is not None and g["s"] >= 60)


def is_rtt(v: Any) -> bool:
    return isinstance(v, str) and bool(_RTT.match(v))


def _type_ok(tag: str, v: Any) -> bool:
    if tag in ("int", "ns"):
        return is_int(v)
    if tag == "uint":
        return is_int(v) and v >= 0
    if tag == "float":
        return (is_int(v) or isinstance(v, float)) and not isinstance(v, bool)
    if tag == "str":
        return isinstance(v, str)
    if tag == "bool":
        return isinstance(v, bool)
    if tag == "time":
        return is_go_time(v)
    if tag == "uptime":
        return is_uptime(v)
    if tag == "rtt":
        return is_rtt(v)
    if tag == "{str:int}":
        return isinstance(v, dict) and all(is_int(x) and x >= 0 for x in v.values())
    if tag == "{str:str}":
        return isinstance(v, dict) and all(isinstance(x, str) for x in v.values())
    if tag == "{str:bool}":
        return isinstance(v, dict) and all(isinstance(x, bool) for x in v.values())
    if tag == "[str]":
        return isinstance(v, list) and all(isinstance(x, str) for x in v)
    if tag == "any":
        return True
    raise ValueError(f"unknown type tag {tag!r}")


def check(doc: Any, spec: Any, path: str = "$") -> None:
    """Raise GoTypeError at the first value Go would refuse (or a missing field)."""
    if isinstance(spec, str):
        if not _type_ok(spec, doc):
            raise GoTypeError(f"{path}: {doc!r} is not a Go {spec}")
        return
    if isinstance(spec, list):
        if not isinstance(doc, list):
            raise GoTypeError(f"{path}: expected an array, got {doc!r}")
        for i, item in enumerate(doc):
            check(item, spec[0], f"{path}[{i}]")
        return
    if not isinstance(doc, dict):
        raise GoTypeError(f"{path}: expected an object, got {doc!r}")
    names = set()
    for key, sub in spec.items():
        if key == "*":
            continue
        optional = key.endswith("?")
        name = key[:-1] if optional else key
        names.add(name)
        if name not in doc:
            if not optional:
                raise GoTypeError(f"{path}.{name}: missing")
            continue
        check(doc[name], sub, f"{path}.{name}")
    if not spec.get("*"):
        extra = set(doc) - names
        if extra:
            raise GoTypeError(f"{path}: fields the schema does not know: {sorted(extra)}")


# --------------------------------------------------------------------------- schemas
# From nats-conventions §1.3-1.8 (nats-server v2.15.1).

_STATS4 = {"clients": "uint", "routes": "uint", "gateways": "uint", "leafs": "uint"}
_API = {"level": "int", "total": "uint", "errors": "uint", "inflight?": "uint"}
JS_STATS = {
    "memory": "uint",
    "storage": "uint",
    "reserved_memory": "uint",
    "reserved_storage": "uint",
    "accounts": "int",
    "ha_assets": "int",
    "api": _API,
}
JS_CONFIG = {
    "max_memory": "int",
    "max_storage": "int",
    "store_dir?": "str",
    "sync_interval?": "ns",
    "sync_always?": "bool",
    "domain?": "str",
    "compress_ok?": "bool",
    "unique_tag?": "str",
    "strict?": "bool",
}

VARZ = {
    "server_id": "str",
    "server_name": "str",
    "version": "str",
    "proto": "int",
    "git_commit?": "str",
    "go": "str",
    "host": "str",
    "port": "int",
    "auth_required?": "bool",
    "tls_required?": "bool",
    "tls_verify?": "bool",
    "tls_ocsp_peer_verify?": "bool",
    "ip?": "str",
    "connect_urls?": "[str]",
    "ws_connect_urls?": "[str]",
    "max_connections": "int",
    "max_subscriptions?": "int",
    "ping_interval": "ns",
    "ping_max": "int",
    "http_host": "str",
    "http_port": "int",
    "http_base_path": "str",
    "https_port": "int",
    "auth_timeout": "float",
    "max_control_line": "int",
    "max_payload": "int",
    "max_pending": "int",
    "cluster": {"*": True},
    "gateway": {"*": True},
    "leaf": {"*": True},
    "mqtt": {
        "host?": "str",
        "port?": "int",
        "no_auth_user?": "str",
        "auth_timeout?": "float",
        "tls_map?": "bool",
        "tls_timeout?": "float",
        "tls_pinned_certs?": "[str]",
        "js_domain?": "str",
        "ack_wait?": "ns",
        "max_ack_pending?": "uint",
        "tls_ocsp_peer_verify?": "bool",
        "tls_cert_not_after?": "time",
        # hybridbus's own (Go's decoder skips fields its struct lacks): QoS 1/2
        # messages dropped by an offline session's cap
        "dropped_messages?": "uint",
    },
    "websocket": {
        "host?": "str",
        "port?": "int",
        "advertise?": "str",
        "no_auth_user?": "str",
        "jwt_cookie?": "str",
        "handshake_timeout?": "ns",
        "auth_timeout?": "float",
        "no_tls?": "bool",
        "tls_map?": "bool",
        "tls_pinned_certs?": "[str]",
        "same_origin?": "bool",
        "allowed_origins?": "[str]",
        "compression?": "bool",
        "tls_ocsp_peer_verify?": "bool",
        "tls_cert_not_after?": "time",
    },
    "jetstream": {"config?": JS_CONFIG, "stats?": JS_STATS, "limits?": {"*": True}},
    "tls_timeout": "float",
    "write_deadline": "ns",
    "write_timeout?": "str",
    "start": "time",
    "now": "time",
    "uptime": "uptime",
    "mem": "int",
    "cores": "int",
    "gomaxprocs": "int",
    "gomemlimit?": "int",
    "cpu": "float",
    "connections": "int",
    "total_connections": "uint",
    "routes": "int",
    "remotes": "int",
    "leafnodes": "int",
    "in_msgs": "int",
    "out_msgs": "int",
    "in_bytes": "int",
    "out_bytes": "int",
    "in_client_msgs": "int",
    "in_client_bytes": "int",
    "out_client_msgs": "int",
    "out_client_bytes": "int",
    "slow_consumers": "int",
    "stale_connections": "int",
    "stalled_clients": "int",
    "subscriptions": "uint",
    "http_req_stats": "{str:int}",
    "config_load_time": "time",
    "config_digest": "str",
    "tags?": "[str]",
    "metadata?": "{str:str}",
    "feature_flags?": "{str:bool}",
    "system_account?": "str",
    "pinned_account_fails?": "uint",
    "slow_consumer_stats": _STATS4,
    "stale_connection_stats?": _STATS4,
    "disk_io_wait_stats": {
        "waiters": "int",
        "waits": "int",
        "wait_time": "int",
        "max_wait_time": "int",
    },
    "tls_cert_not_after?": "time",
}

SUB_DETAIL = {
    "account?": "str",
    "account_tag?": "str",
    "subject": "str",
    "qgroup?": "str",
    "sid": "str",
    "msgs": "int",
    "max?": "int",
    "cid": "uint",
}

CONN_INFO = {
    "cid": "uint",
    "kind": "str",
    "type": "str",
    "ip": "str",
    "port": "int",
    "start": "time",
    "last_activity": "time",
    "stop?": "time",
    "reason?": "str",
    "rtt": "rtt",
    "uptime": "uptime",
    "idle": "uptime",
    "pending_bytes": "int",
    "in_msgs": "int",
    "out_msgs": "int",
    "in_bytes": "int",
    "out_bytes": "int",
    "stalls?": "int",
    "subscriptions": "uint",
    "subscriptions_list?": "[str]",
    "subscriptions_list_detail?": [SUB_DETAIL],
    "name?": "str",
    "lang?": "str",
    "version?": "str",
    "tls_version?": "str",
    "tls_cipher_suite?": "str",
    "tls_first?": "bool",
    "authorized_user?": "str",
    "account?": "str",
    "jwt?": "str",
    "issuer_key?": "str",
    "name_tag?": "str",
    "tags?": "[str]",
    "mqtt_client?": "str",
}

CONNZ = {
    "server_id": "str",
    "now": "time",
    "num_connections": "int",
    "total": "int",
    "offset": "int",
    "limit": "int",
    "connections": [CONN_INFO],
}

SUBSZ = {
    "server_id": "str",
    "now": "time",
    "num_subscriptions": "uint",
    "num_cache": "uint",
    "num_inserts": "uint",
    "num_removes": "uint",
    "num_matches": "uint",
    "cache_hit_rate": "float",
    "max_fanout": "uint",
    "avg_fanout": "float",
    "total": "int",
    "offset": "int",
    "limit": "int",
    "subscriptions_list?": [SUB_DETAIL],
}

STREAM_STATE = {
    "messages": "uint",
    "bytes": "uint",
    "first_seq": "uint",
    "first_ts": "time",
    "last_seq": "uint",
    "last_ts": "time",
    "num_subjects?": "int",
    "num_deleted?": "int",
    "consumer_count": "int",
}

STREAM_CONFIG = {
    "name": "str",
    "subjects?": "[str]",
    "retention": "str",
    "max_consumers": "int",
    "max_msgs": "int",
    "max_bytes": "int",
    "max_age": "ns",
    "max_msgs_per_subject": "int",
    "max_msg_size?": "int",
    "storage": "str",
    "discard": "str",
    "num_replicas": "int",
    "duplicate_window?": "ns",
    "description?": "str",
    "discard_new_per_subject?": "bool",
    "no_ack?": "bool",
    "sealed": "bool",
    "deny_delete": "bool",
    "deny_purge": "bool",
    "allow_rollup_hdrs": "bool",
    "allow_direct": "bool",
    "mirror_direct": "bool",
    "compression?": "str",
    "allow_msg_ttl?": "bool",
    "subject_delete_marker_ttl?": "ns",
    "first_seq?": "uint",
    "metadata?": "{str:str}",
    "mirror?": {"*": True, "name": "str"},
    "sources?": [{"*": True, "name": "str"}],
    "subject_transform?": {"*": True},
    "republish?": {"*": True},
    "consumer_limits?": {"*": True},
    "placement?": {"*": True},
}

# StreamSourceInfo: a mirror's or a source's progress
SOURCE_INFO = {
    "name": "str",
    "external?": {"*": True},
    "lag": "uint",
    "active": "ns",
    "error?": {"code": "int", "err_code?": "int", "description?": "str"},
    "filter_subject?": "str",
    "subject_transforms?": [{"*": True}],
    "seq?": "uint",
}

SEQ_INFO = {"consumer_seq": "uint", "stream_seq": "uint", "last_active?": "time"}
CONSUMER_INFO = {
    "stream_name": "str",
    "name": "str",
    "created": "time",
    "config?": {"*": True, "ack_wait?": "ns", "max_deliver?": "int", "durable_name?": "str"},
    "delivered": SEQ_INFO,
    "ack_floor": SEQ_INFO,
    "num_ack_pending": "int",
    "num_redelivered": "int",
    "num_waiting": "int",
    "num_pending": "uint",
    "push_bound?": "bool",
    "cluster?": {"leader?": "str", "name?": "str"},
    "ts?": "time",
}

STREAM_DETAIL = {
    "name": "str",
    "created": "time",
    "cluster?": {"leader?": "str", "name?": "str"},
    "config?": STREAM_CONFIG,
    "state": STREAM_STATE,
    "consumer_detail?": [CONSUMER_INFO],
    "mirror?": SOURCE_INFO,
    "sources?": [SOURCE_INFO],
}

ACCOUNT_DETAIL = dict(JS_STATS, name="str", id="str", **{"stream_detail?": [STREAM_DETAIL]})

JSZ = dict(
    JS_STATS,
    server_id="str",
    now="time",
    config=JS_CONFIG,
    streams="int",
    consumers="int",
    messages="uint",
    bytes="uint",
    total="int",
    **{
        "disabled?": "bool",
        "limits?": {"*": True},
        "account_details?": [ACCOUNT_DETAIL],
        # hybridbus-specific, ignored by Go decoders
        "hybridbus": {"*": True},
    },
)

ACCOUNTZ = {"server_id": "str", "now": "time", "system_account?": "str", "accounts": "[str]"}
ACCOUNTZ_DETAIL = {
    "server_id": "str",
    "now": "time",
    "system_account?": "str",
    "account_detail": {
        "account_name": "str",
        "update_time": "time",
        "is_system?": "bool",
        "expired": "bool",
        "complete": "bool",
        "jetstream_enabled": "bool",
        "leafnode_connections": "int",
        "client_connections": "int",
        "subscriptions": "uint",
        "exports?": [
            {
                "subject": "str",
                "type": "str",
                "response_type?": "str",
                "response_threshold?": "int",
                "approved_accounts?": "[str]",
            }
        ],
        "imports?": [
            {
                "subject": "str",
                "account": "str",
                "to?": "str",
                "local_subject": "str",
                "type": "str",
                "invalid": "bool",
                "share": "bool",
                "tracking": "bool",
            }
        ],
        "name_tag?": "str",
        "sublist_stats?": {
            "num_subscriptions": "uint",
            "num_cache": "uint",
            "num_inserts": "uint",
            "num_removes": "uint",
            "num_matches": "uint",
            "cache_hit_rate": "float",
            "max_fanout": "uint",
            "avg_fanout": "float",
        },
    },
}

_LINK_STATS = {"msgs": "int", "bytes": "int"}
ACCSTATZ = {
    "server_id": "str",
    "now": "time",
    "account_statz": [
        {
            "acc": "str",
            "name?": "str",
            "conns": "int",
            "leafnodes": "int",
            "total_conns": "int",
            "num_subscriptions": "uint",
            "sent": dict(_LINK_STATS, gateways=_LINK_STATS, routes=_LINK_STATS, leafs=_LINK_STATS),
            "received": dict(
                _LINK_STATS, gateways=_LINK_STATS, routes=_LINK_STATS, leafs=_LINK_STATS
            ),
            "slow_consumers": "int",
        }
    ],
}

ROUTEZ = {
    "server_id": "str",
    "server_name": "str",
    "now": "time",
    "num_routes": "int",
    "routes": ["any"],
}
