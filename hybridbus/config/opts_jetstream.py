"""The ``jetstream`` block (a bool, "enabled"/"disabled", or a map) and ``store_dir``.

Owns the JetStream options: storage directory (also a top-level option, and
settable once only), sync policy and the storage size limits with
nats-server's size syntax.  Encryption keys are refused, not ignored.
"""

from __future__ import annotations

from ..options import JetStreamOptions, Options
from .gotext import go_quote, go_type
from .parser import Node
from .readers import BAD, Loader, is_go_parse_int, looks_int

_UNSUPPORTED_JETSTREAM = frozenset(
    {
        "unique_tag",
        "limits",
        "max_outstanding_catchup",
        "max_buffered_size",
        "max_buffered_msgs",
        "request_queue_limit",
        "info_queue_limit",
        "meta_compact",
        "meta_compact_size",
        "meta_compact_sync",
        "max_concurrent_io",
        "extension_hint",
        "tpm",
        "max_catchup",
        "max_ha_assets",
    }
)
# Ignoring these would store data in the clear that the operator meant to encrypt.
_REFUSED_JETSTREAM = frozenset({"key", "ek", "cipher", "prev_key", "prev_ek"})


def j_store_dir(ld: Loader, opts: Options, node: Node, key: str) -> None:
    if ld.store_dir_set:
        ld.err(node, "Duplicate 'store_dir' configuration")
        return
    if (v := ld.str_(node, key)) is not BAD:
        ld.store_dir_set = True
        opts.jetstream.store_dir = v


def jetstream(ld: Loader, node: Node, opts: Options) -> None:
    js: JetStreamOptions = opts.jetstream
    v = node.value
    if isinstance(v, bool):
        js.enabled = v
        return
    if isinstance(v, str):
        word = v.lower()
        if word in ("enabled", "enable"):
            js.enabled = True
        elif word in ("disabled", "disable"):
            js.enabled = False
        else:
            ld.err(node, f"Expected 'enabled' or 'disabled' for string value, got '{v}'")
        return
    if not isinstance(v, dict):
        ld.err(node, f"Expected map, bool or string to define JetStream, got {go_type(v)}")
        return
    enabled = True
    for key, sub in v.items():
        name = key.lower()
        if name in ("store", "store_dir", "storedir"):
            j_store_dir(ld, opts, sub, key)
        elif name in ("sync", "sync_interval"):
            if isinstance(sub.value, str) and sub.value.lower() == "always":
                js.sync_always = True
                js.sync_interval = 0.0
            elif (secs := ld.duration("sync_interval", sub)) is not None:
                js.sync_always = False
                js.sync_interval = secs
        elif name in ("max_memory_store", "max_mem_store", "max_mem"):
            if (size := storage_size(ld, sub, "max_mem_store")) is not None:
                js.max_memory_store = size
        elif name in ("max_file_store", "max_file"):
            if (size := storage_size(ld, sub, "max_file_store")) is not None:
                js.max_file_store = size
        elif name == "strict":
            if (b := ld.bool_(sub, key)) is not BAD:
                js.strict = b
        elif name == "domain":
            if (s := ld.str_(sub, key)) is not BAD:
                js.domain = s
        elif name in ("enable", "enabled"):
            if (b := ld.bool_(sub, key)) is not BAD:
                enabled = b
        elif name in _REFUSED_JETSTREAM:
            ld.refused(key, sub)
        elif name in _UNSUPPORTED_JETSTREAM:
            ld.unsupported(key, sub)
        else:
            ld.unknown(key, sub)
    js.enabled = enabled


def storage_size(ld: Loader, node: Node, what: str) -> int | None:
    v = node.value
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    if not isinstance(v, str):
        ld.err(node, f"{what} must be int64 or string")
        return None
    if v == "":
        return 0
    # A quoted size takes one binary suffix: "1G" is 2**30 (nats-server's rule).
    num_text, suffix = v[:-1], v[-1:]
    if not is_go_parse_int(num_text):
        reason = "value out of range" if looks_int(num_text) else "invalid syntax"
        ld.err(node, f"{what} strconv.ParseInt: parsing {go_quote(num_text)}: {reason}")
        return None
    shift = {"K": 10, "M": 20, "G": 30, "T": 40}.get(suffix)
    if shift is None:
        ld.err(node, f"{what} sizes defined as strings must end in K, M, G, T")
        return None
    return int(num_text) << shift
