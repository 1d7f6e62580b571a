"""``$JS.API.INFO``: the account's JetStream usage, limits and API counters."""

from __future__ import annotations

from typing import Any

from hybridbus.jetstream.api import Request, route
from hybridbus.jetstream.engine import API_LEVEL


def account_info(js: Any) -> dict:
    """The account_info body (also /jsz's account detail): every key nats-py requires."""
    usage = js.store.usage()
    opts = js.hub.options.jetstream
    # its store's limits: the server's for $G, the account's for an account's engine
    limits = getattr(js.store, "_limits", None) or {}
    out = {
        "memory": usage["memory"],
        "storage": usage["storage"],
        "reserved_memory": 0,
        "reserved_storage": 0,
        "streams": usage["streams"],
        "consumers": usage["consumers"],
        "limits": {
            "max_memory": limits.get("memory", opts.max_memory_store),
            "max_storage": limits.get("file", opts.max_file_store),
            "max_streams": js.max_streams,
            "max_consumers": js.max_consumers,
            "max_ack_pending": js.max_ack_pending,
            "memory_max_stream_bytes": js.mem_max_stream_bytes,
            "storage_max_stream_bytes": js.disk_max_stream_bytes,
            "max_bytes_required": js.max_bytes_required,
        },
        "api": {"level": API_LEVEL, "total": js.api_total, "errors": js.api_errors},
    }
    if opts.domain:
        out["domain"] = opts.domain
    return out


@route("INFO", kind="account_info_response")
def info(req: Request) -> dict:
    out = account_info(req.js)
    # nats-server 2.15.1 counts an INFO request after answering it (a first INFO
    # shows total 0, checked against the binary): leave this one out of its own answer
    out["api"]["total"] -= 1
    return out
