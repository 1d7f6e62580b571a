"""Stream configurations on the wire: nats-server's request type, defaults, checks and echo.

``read_request`` decodes a ``STREAM.CREATE``/``STREAM.UPDATE`` body (``gojson``: the
field types of nats-server 2.15's ``StreamConfigRequest``, unknown fields refused in
strict mode); ``check`` applies ``checkStreamCfg`` (stream.go: the defaults, the limits,
the subject rules, mirrors and sources) and returns the store's ``StreamConfig``;
``check_create`` and ``check_update`` add what only a create or an update refuses
(``configUpdateCheck``: what an update may not change, what sealing forces); ``to_wire``
is the ``config`` object of a StreamInfo, field for field in nats-server's order and with
its ``omitempty`` rules.

Fields the store does not model (placement, mirror, sources, subject_transform,
republish, consumer_limits, the counter/atomic/batch/schedule switches, persist_mode)
travel in ``StreamConfig.extra`` as their wire values and are echoed back; a mirror or
sources stream is filled by ``mirror.py``, ``subject_transform`` and ``republish`` act
in ``republish.py``, the others are accepted and not acted on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hybridbus.jetstream.api import ApiError
from hybridbus.jetstream.gojson import Enum, List, Map, Struct, decode
from hybridbus.store.api import StreamConfig
from hybridbus.store.match import FilterTrie, filter_is_subset, filters_overlap, valid_subject
from hybridbus.transform import MappingError, Transform

JS_MAX_NAME_LEN = 255
JS_MAX_DESCRIPTION_LEN = 4096
JS_MAX_METADATA_LEN = 128 * 1024
STREAM_MAX_REPLICAS = 5
DEFAULT_DUPLICATES_NS = 120_000_000_000
_100MS = 100_000_000
_SECOND = 1_000_000_000

_TRANSFORM = Struct("server.SubjectTransformConfig", {"src": "string", "dest": "string"})
_SOURCE = Struct(
    "server.StreamSource",
    {
        "name": "string",
        "opt_start_seq": "uint64",
        "opt_start_time": "time",
        "filter_subject": "string",
        "subject_transforms": List(_TRANSFORM),
        "external": Struct("server.ExternalStream", {"api": "string", "deliver": "string"}),
        "consumer": Struct(
            "server.StreamConsumerSource", {"name": "string", "deliver_subject": "string"}
        ),
    },
)
_POLICY = Enum(("limits", "interest", "workqueue"))
REQUEST = Struct(
    "server.StreamConfigRequest",
    {
        "name": "string",
        "description": "string",
        "subjects": List("string"),
        "retention": _POLICY,
        "max_consumers": "int",
        "max_msgs": "int64",
        "max_bytes": "int64",
        "max_age": "duration",
        "max_msgs_per_subject": "int64",
        "max_msg_size": "int32",
        "discard": Enum(("old", "new")),
        "storage": Enum(("file", "memory")),
        "num_replicas": "int",
        "no_ack": "bool",
        "duplicate_window": "duration",
        "placement": Struct(
            "server.Placement",
            {"cluster": "string", "tags": List("string"), "preferred": "string"},
        ),
        "mirror": _SOURCE,
        "sources": List(_SOURCE),
        "compression": Enum(("none", "s2"), "unknown compression algorithm"),
        "first_seq": "uint64",
        "subject_transform": _TRANSFORM,
        "republish": Struct(
            "server.RePublish", {"src": "string", "dest": "string", "headers_only": "bool"}
        ),
        "allow_direct": "bool",
        "mirror_direct": "bool",
        "discard_new_per_subject": "bool",
        "sealed": "bool",
        "deny_delete": "bool",
        "deny_purge": "bool",
        "allow_rollup_hdrs": "bool",
        "consumer_limits": Struct(
            "server.StreamConsumerLimits",
            {"inactive_threshold": "duration", "max_ack_pending": "int"},
        ),
        "allow_msg_ttl": "bool",
        "subject_delete_marker_ttl": "duration",
        "allow_msg_counter": "bool",
        "allow_atomic": "bool",
        "allow_msg_schedules": "bool",
        "persist_mode": Enum(("default", "async", "")),
        "allow_batched": "bool",
        "metadata": Map("string"),
        "pedantic": "bool",
    },
)

# Go's zero values: what a field the request left out (or sent as null) means.
_ZERO: dict[str, Any] = {
    "name": "",
    "description": "",
    "subjects": [],
    "retention": "limits",
    "max_consumers": 0,
    "max_msgs": 0,
    "max_bytes": 0,
    "max_age": 0,
    "max_msgs_per_subject": 0,
    "max_msg_size": 0,
    "discard": "old",
    "storage": "file",
    "num_replicas": 0,
    "no_ack": False,
    "duplicate_window": 0,
    "placement": None,
    "mirror": None,
    "sources": [],
    "compression": "none",
    "first_seq": 0,
    "subject_transform": None,
    "republish": None,
    "allow_direct": False,
    "mirror_direct": False,
    "discard_new_per_subject": False,
    "sealed": False,
    "deny_delete": False,
    "deny_purge": False,
    "allow_rollup_hdrs": False,
    "consumer_limits": {},
    "allow_msg_ttl": False,
    "subject_delete_marker_ttl": 0,
    "allow_msg_counter": False,
    "allow_atomic": False,
    "allow_msg_schedules": False,
    "persist_mode": "",
    "allow_batched": False,
    "metadata": None,
}
# Kept in StreamConfig.extra (wire values) when set: the store does not model them.
EXTRA_KEYS = (
    "placement",
    "mirror",
    "sources",
    "subject_transform",
    "republish",
    "consumer_limits",
    "allow_msg_counter",
    "allow_atomic",
    "allow_msg_schedules",
    "persist_mode",
    "allow_batched",
)
_NAME_BAD = set(" \t\r\n\f.*>/\\")


def invalid(text: str) -> ApiError:
    """JSStreamInvalidConfigF: a 500 with err_code 10052, as nats-server sends it."""
    return ApiError(500, 10052, text)


def pedantic_error(text: str) -> ApiError:
    return ApiError(400, 10157, f"pedantic mode: {text}")


def valid_asset_name(name: str) -> bool:
    return bool(name) and not (set(name) & _NAME_BAD)


def read_request(payload: bytes, strict: bool) -> tuple[dict, bool]:
    """(the config fields the body had, pedantic) or a 10025 ApiError."""
    body = decode(payload, REQUEST, strict)
    pedantic = bool(body.pop("pedantic", False))
    cfg = dict(_ZERO)
    for key, value in body.items():
        if value is not None:
            cfg[key] = value
    if cfg["persist_mode"] == "default":
        cfg["persist_mode"] = ""
    if cfg["metadata"]:  # the server's own keys: nats-server drops what a client sends
        meta = {k: v for k, v in cfg["metadata"].items() if not k.startswith("_nats.")}
        cfg["metadata"] = meta or None
    cfg["sources"] = [s for s in cfg["sources"] if s is not None] if cfg["sources"] else []
    return cfg, pedantic


Lookup = Callable[[str], "StreamConfig | None"]


def check(cfg: dict, lookup: Lookup, pedantic: bool = False) -> dict:
    """nats-server's checkStreamCfg on a request's fields: the defaulted copy, or the
    ApiError it answers. ``lookup(name)`` finds another stream's config."""
    c = dict(cfg)
    name = c["name"]
    if not valid_asset_name(name):
        raise invalid("stream name is required and can not contain '.', '*', '>', '\\', '/'")
    if len(name) > JS_MAX_NAME_LEN:
        raise invalid(f"stream name is too long, maximum allowed is {JS_MAX_NAME_LEN}")
    if len(c["description"]) > JS_MAX_DESCRIPTION_LEN:
        raise invalid(
            f"stream description is too long, maximum allowed is {JS_MAX_DESCRIPTION_LEN}"
        )
    meta = c["metadata"] or {}
    if sum(len(k) + len(v or "") for k, v in meta.items()) > JS_MAX_METADATA_LEN:
        raise invalid(f"stream metadata exceeds maximum size of {JS_MAX_METADATA_LEN} bytes")
    _check_limits(c, pedantic)
    _check_features(c, pedantic)
    _check_mirror(c, lookup, pedantic)
    _check_sources(c, lookup)
    _check_cycles(c, lookup)
    _check_subjects(c)
    _check_transforms(c, pedantic)
    if c["placement"] is not None:
        if not any(c["placement"].values()):
            c["placement"] = None
        elif c["placement"].get("preferred"):
            raise invalid("preferred server not permitted in placement")
    return c


def _check_limits(c: dict, pedantic: bool) -> None:
    if c["num_replicas"] == 0:
        c["num_replicas"] = 1
    if c["num_replicas"] > STREAM_MAX_REPLICAS:
        raise invalid(f"maximum replicas is {STREAM_MAX_REPLICAS}")
    if c["num_replicas"] < 0:
        raise ApiError(400, 10133, "replicas count cannot be negative")
    for key in ("max_msgs", "max_msgs_per_subject", "max_bytes", "max_msg_size", "max_consumers"):
        if c[key] == 0 or c[key] < -1:
            if pedantic and c[key] < -1:
                raise pedantic_error(f"{key} must be set to -1")
            c[key] = -1
    max_age = c["max_age"]
    if max_age < 0:
        raise invalid("max age can not be negative")
    if 0 < max_age < _100MS:
        raise invalid("max age needs to be >= 100ms")
    if c["duplicate_window"] == 0 and c["mirror"] is None and not c["sources"]:
        window = DEFAULT_DUPLICATES_NS
        if max_age and max_age < window:
            if pedantic:
                raise pedantic_error("duplicate window cannot be bigger than max age")
            window = max_age
        c["duplicate_window"] = window
    dup = c["duplicate_window"]
    if dup < 0:
        raise invalid("duplicates window can not be negative")
    if max_age and dup > max_age:
        raise invalid("duplicates window can not be larger then max age")
    if 0 < dup < _100MS:
        raise invalid("duplicates window needs to be >= 100ms")


def _check_features(c: dict, pedantic: bool) -> None:
    if c["deny_purge"] and c["allow_rollup_hdrs"]:
        raise invalid("roll-ups require the purge permission")
    if c["allow_msg_counter"]:
        if c["discard"] == "new":
            raise invalid("counter stream cannot use discard new")
        if c["allow_msg_ttl"]:
            raise invalid("counter stream cannot use message TTLs")
        if c["allow_msg_schedules"]:
            raise invalid("counter stream cannot use message schedules")
        if c["retention"] != "limits":
            raise invalid("counter stream can only use limits retention")
    if c["discard_new_per_subject"]:
        if c["discard"] != "new":
            raise invalid("discard new per subject requires discard new policy to be set")
        if c["max_msgs_per_subject"] <= 0:
            raise invalid("discard new per subject requires max msgs per subject > 0")
    sdm = c["subject_delete_marker_ttl"]
    if sdm > 0:
        if sdm < _SECOND:
            raise invalid("subject delete marker TTL must be at least 1 second")
        if not c["allow_msg_ttl"]:
            if pedantic:
                raise invalid("subject delete marker cannot be set if message TTLs are disabled")
            c["allow_msg_ttl"] = True
        if not c["allow_rollup_hdrs"]:
            if pedantic:
                raise invalid("subject delete marker cannot be set if roll-ups are disabled")
            c["allow_rollup_hdrs"], c["deny_purge"] = True, False
    elif sdm < 0:
        raise invalid("subject delete marker TTL must not be negative")
    if c["allow_msg_schedules"]:
        if c["discard"] == "new":
            raise invalid("message scheduling cannot use discard new")
        if not c["allow_rollup_hdrs"]:
            if pedantic:
                raise invalid("message scheduling cannot be set if roll-ups are disabled")
            c["allow_rollup_hdrs"], c["deny_purge"] = True, False
    if c["persist_mode"] == "async":
        if c["storage"] != "file":
            raise invalid("async persist mode is only supported on file storage")
        if c["num_replicas"] > 1:
            raise invalid("async persist mode is not supported on replicated streams")
        if c["allow_atomic"]:
            raise invalid("async persist mode is not supported with atomic batch publish")


def _check_mirror(c: dict, lookup: Lookup, pedantic: bool) -> None:
    m = c["mirror"]
    if m is None:
        if c["mirror_direct"]:
            raise invalid("stream has no mirror but does have mirror direct")
        return
    if c["first_seq"] > 0:
        raise ApiError(400, 10143, "stream mirrors can not have first sequence configured")
    if c["subjects"]:
        raise ApiError(400, 10034, "stream mirrors can not contain subjects")
    if c["sources"]:
        raise ApiError(400, 10031, "stream mirrors can not also contain other sources")
    for key, code, text in (
        ("allow_msg_counter", 10173, "stream mirrors can not also calculate counters"),
        ("allow_atomic", 10198, "stream mirrors can not also use atomic publishing"),
        ("allow_batched", 10209, "stream mirrors can not also use batch publishing"),
        ("allow_msg_schedules", 10186, "stream mirrors can not also schedule messages"),
    ):
        if c[key]:
            raise ApiError(400, code, text)
    if m.get("opt_start_seq") and m.get("opt_start_time"):
        raise ApiError(
            400, 10032, "stream mirrors can not have both start seq and start time configured"
        )
    if m.get("filter_subject") and m.get("subject_transforms"):
        raise ApiError(
            400,
            10150,
            "mirror with multiple subject transforms cannot also have a single subject filter",
        )
    if c["subject_delete_marker_ttl"] > 0:
        raise invalid("subject delete markers forbidden on mirrors")
    transforms = m.get("subject_transforms") or []
    for i, tr in enumerate(transforms):
        src = (tr or {}).get("src") or ""
        if src and not valid_subject(src):
            raise ApiError(400, 10151, f"mirror transform source: invalid subject {src}")
        for j, other in enumerate(transforms):
            if i != j and filters_overlap(src or ">", (other or {}).get("src") or ">"):
                raise ApiError(400, 10152, "mirror subject filters can not overlap")
    if m.get("external") is None:
        if not valid_asset_name(m.get("name") or ""):
            raise ApiError(400, 10142, "mirrored stream name is invalid")
        origin = lookup(m["name"])
        if origin is not None:
            if 0 < c["max_msg_size"] < origin.max_msg_size:
                raise ApiError(400, 10030, "stream mirror must have max message size >= source")
            if pedantic and c["mirror_direct"] != origin.allow_direct:
                raise pedantic_error("origin stream has direct get set, mirror has it disabled")
            c["mirror_direct"] = origin.allow_direct  # a mirror inherits direct gets


def _source_key(src: dict) -> str:
    ext = src.get("external") or {}
    transforms = ",".join(
        f"{t.get('src')}>{t.get('dest')}" for t in src.get("subject_transforms") or []
    )
    return f"{src.get('name')}|{ext.get('api')}|{src.get('filter_subject') or ''}|{transforms}"


def _check_sources(c: dict, lookup: Lookup) -> None:
    if c["sources"] and c["allow_msg_schedules"]:
        raise ApiError(400, 10187, "stream source can not also schedule messages")
    seen: set[str] = set()
    for src in c["sources"]:
        if not valid_asset_name(src.get("name") or ""):
            raise ApiError(400, 10141, "sourced stream name is invalid")
        key = _source_key(src)
        if key in seen:
            raise ApiError(400, 10140, "duplicate source configuration detected")
        seen.add(key)
        if src.get("filter_subject") and src.get("subject_transforms"):
            raise ApiError(
                400,
                10144,
                "source with multiple subject transforms cannot also have a single subject filter",
            )
        transforms = src.get("subject_transforms") or []
        for tr in transforms:
            s = (tr or {}).get("src") or ""
            if s and not valid_subject(s):
                raise ApiError(400, 10145, f"source transform source: invalid subject {s}")
        for i, tr in enumerate(transforms):
            for j, other in enumerate(transforms):
                a, b = (tr or {}).get("src") or ">", (other or {}).get("src") or ">"
                if i != j and filter_is_subset(a, b):
                    raise ApiError(400, 10147, "source filters can not overlap")
        if src.get("external") is None:
            origin = lookup(src["name"])
            if origin is not None and 0 < c["max_msg_size"] < origin.max_msg_size:
                raise ApiError(400, 10046, "stream source must have max message size >= target")


def _check_cycles(c: dict, lookup: Lookup) -> None:
    """A chain of sources (or a mirror) that leads back to a stream already on it, with
    subjects that would feed it again, is refused ("detected cycle")."""
    visit: list[tuple[str, list[str], dict | None, list[dict]]] = [
        (c["name"], c["subjects"], c["mirror"], c["sources"])
    ]
    visited: set[str] = set()
    steps = 0
    while visit and steps < 10_000:
        steps += 1
        name, subjects, mirror, sources = visit.pop(0)
        visited.add(name)
        for src in sources or []:
            if src.get("external") is not None:
                continue
            flt = src.get("filter_subject") or ""
            if src["name"] in visited:
                if not flt or any(filters_overlap(s, flt) for s in subjects):
                    raise invalid("detected cycle")
            else:
                other = lookup(src["name"])
                if other is not None:
                    visit.append(_node(other))
        if mirror is not None and mirror.get("external") is None:
            if mirror.get("name") in visited:
                raise invalid("detected cycle")
            other = lookup(mirror.get("name") or "")
            if other is not None:
                visit.append(_node(other))


def _node(cfg: StreamConfig) -> tuple[str, list[str], dict | None, list[dict]]:
    return cfg.name, list(cfg.subjects), cfg.extra.get("mirror"), cfg.extra.get("sources") or []


def _check_subjects(c: dict) -> None:
    subjects = c["subjects"]
    if not subjects:
        if c["mirror"] is None and not c["sources"]:
            c["subjects"] = [c["name"]]
        return
    if c["mirror"] is not None:
        raise ApiError(400, 10034, "stream mirrors can not contain subjects")
    later = FilterTrie()  # for "overlaps with" in linear time, not pairwise
    for j, subj in enumerate(subjects):
        later.add(subj, j)
    seen: set[str] = set()
    for i, subj in enumerate(subjects):
        if not valid_subject(subj):
            raise invalid("invalid subject")
        if subj in seen:
            raise invalid("duplicate subjects detected")
        if subj == ">":
            if not c["no_ack"]:
                raise invalid("capturing all subjects requires no-ack to be true")
            if c["num_replicas"] != 1:
                raise invalid("capturing all subjects requires replicas of 1")
        if not c["no_ack"]:
            for space in ("$JS.>", "$JSC.>", "$NRG.>"):
                if filters_overlap(subj, space) and not filter_is_subset(subj, "$JS.EVENT.>"):
                    raise invalid(
                        "subjects that overlap with jetstream api require no-ack to be true"
                    )
            if filters_overlap(subj, "$SYS.>") and not filter_is_subset(subj, "$SYS.ACCOUNT.>"):
                raise invalid("subjects that overlap with system api require no-ack to be true")
        hits = [j for j in later.colliding(subj) if j > i]
        if hits:
            other = subjects[min(hits)]
            raise invalid(f"subject {_goq(subj)} overlaps with {_goq(other)}")
        seen.add(subj)


def _goq(text: str) -> str:
    """Go's %q for the subjects we quote (they hold no quotes or escapes)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _check_transforms(c: dict, pedantic: bool) -> None:
    tr = c["subject_transform"]
    if tr is not None:
        src = tr.get("src") or ""
        if src and not valid_subject(src):
            raise ApiError(400, 10155, f"stream transform source: invalid subject {src}")
        if not valid_subject(tr.get("dest") or ">"):
            raise ApiError(400, 10156, "stream transform: invalid subject")
        if tr.get("dest"):
            try:  # nats-server builds it (NewSubjectTransform) and quotes its error
                Transform(src or ">", tr["dest"])
            except MappingError as err:
                raise ApiError(400, 10156, f"stream transform: {err}") from None
    rp = c["republish"]
    if rp is not None:
        rp = c["republish"] = dict(rp)
        if not rp.get("src"):
            if pedantic:
                raise pedantic_error("republish source can not be empty")
            rp["src"] = ">"
        dest = rp.get("dest") or ""
        if any(filters_overlap(dest, s) for s in c["subjects"] if dest):
            raise invalid("stream configuration for republish destination forms a cycle")
        if not dest or not valid_subject(dest) or not _transformable(rp["src"], dest):
            raise invalid(
                f"stream configuration for republish with transform from '{rp['src']}' "
                f"to '{dest}' not valid"
            )


def _transformable(src: str, dest: str) -> bool:
    """nats-server refuses a republish whose src -> dest is not a valid transform."""
    if not valid_subject(src):
        return False
    try:
        Transform(src, dest)
    except MappingError:
        return False
    return True


def check_create(cfg: dict) -> None:
    """What only a create refuses (after ``check``)."""
    if cfg["sealed"]:
        raise invalid("stream configuration for create can not be sealed")
    if cfg["num_replicas"] > 1:
        raise ApiError(500, 10074, "replicas > 1 not supported in non-clustered mode")


def check_update(old: StreamConfig, cfg: dict) -> dict:
    """nats-server's configUpdateCheck after ``check``: the refusals of an update and
    the adjustments sealing forces. Returns the config to apply."""
    prev = wire_fields(old)
    if cfg["name"] != prev["name"]:
        raise invalid("stream configuration name must match original")
    if cfg["num_replicas"] > 1:
        raise ApiError(500, 10074, "replicas > 1 not supported in non-clustered mode")
    if cfg["storage"] != prev["storage"]:
        raise invalid("stream configuration update can not change storage type")
    if cfg["retention"] != prev["retention"] and "workqueue" in (
        cfg["retention"],
        prev["retention"],
    ):
        raise invalid(
            "stream configuration update can not change retention policy to/from workqueue"
        )
    for key, text in (
        ("sealed", "stream configuration update can not unseal a sealed stream"),
        ("deny_delete", "stream configuration update can not cancel deny message deletes"),
        ("deny_purge", "stream configuration update can not cancel deny purge"),
    ):
        if prev[key] and not cfg[key]:
            raise invalid(text)
    # Removing the mirror promotes the mirror to a normal stream (nats-server 2.12+).
    if cfg["mirror"] is not None and cfg["mirror"] != prev["mirror"]:
        raise ApiError(400, 10055, "stream mirror configuration can not be updated")
    if prev["allow_msg_ttl"] and not cfg["allow_msg_ttl"]:
        raise invalid("message TTL status can not be disabled")
    if cfg["allow_msg_counter"] != prev["allow_msg_counter"]:
        raise invalid("stream configuration update can not change message counter setting")
    if prev["allow_msg_schedules"] and not cfg["allow_msg_schedules"]:
        raise invalid("message schedules can not be disabled")
    if cfg["persist_mode"] != prev["persist_mode"]:
        raise invalid("stream configuration update can not change persist mode")
    if cfg["sealed"]:
        cfg["max_age"] = 0
        cfg["discard"] = "new"
        cfg["deny_delete"] = cfg["deny_purge"] = True
        cfg["allow_rollup_hdrs"] = False
    return cfg


# ----------------------------------------------------------------------- conversions


def _ns_to_s(ns: int) -> float:
    return ns / 1e9


def _s_to_ns(s: float | None) -> int:
    return int(round((s or 0.0) * 1e9))


def to_store(c: dict) -> StreamConfig:
    """The store's StreamConfig for a checked config (wire units to seconds)."""
    extra: dict[str, Any] = {}
    for key in EXTRA_KEYS:
        value = c.get(key)
        if value:  # only what is set: the zero values are the defaults on the way back
            extra[key] = value
    return StreamConfig(
        name=c["name"],
        subjects=list(c["subjects"]),
        retention=c["retention"],
        max_consumers=c["max_consumers"],
        max_msgs=c["max_msgs"],
        max_bytes=c["max_bytes"],
        max_age=_ns_to_s(c["max_age"]),
        max_msgs_per_subject=c["max_msgs_per_subject"],
        max_msg_size=c["max_msg_size"],
        storage=c["storage"],
        discard=c["discard"],
        num_replicas=c["num_replicas"],
        duplicate_window=_ns_to_s(c["duplicate_window"]),
        description=c["description"] or None,
        discard_new_per_subject=c["discard_new_per_subject"],
        no_ack=c["no_ack"],
        sealed=c["sealed"],
        deny_delete=c["deny_delete"],
        deny_purge=c["deny_purge"],
        allow_rollup_hdrs=c["allow_rollup_hdrs"],
        allow_direct=c["allow_direct"],
        mirror_direct=c["mirror_direct"],
        compression=c["compression"],
        allow_msg_ttl=c["allow_msg_ttl"],
        subject_delete_marker_ttl=_ns_to_s(c["subject_delete_marker_ttl"]) or None,
        first_seq=c["first_seq"] or None,
        metadata=dict(c["metadata"]) if c["metadata"] else None,
        extra=extra,
    )


def wire_fields(cfg: StreamConfig) -> dict:
    """Every field of a stored config in wire units, defaults included (for checks)."""
    extra = cfg.extra
    out = dict(_ZERO)
    out.update(
        name=cfg.name,
        description=cfg.description or "",
        subjects=list(cfg.subjects),
        retention=cfg.retention,
        max_consumers=cfg.max_consumers,
        max_msgs=cfg.max_msgs,
        max_bytes=cfg.max_bytes,
        max_age=_s_to_ns(cfg.max_age),
        max_msgs_per_subject=cfg.max_msgs_per_subject,
        max_msg_size=cfg.max_msg_size,
        discard=cfg.discard,
        storage=cfg.storage,
        num_replicas=cfg.num_replicas,
        no_ack=cfg.no_ack,
        duplicate_window=_s_to_ns(cfg.duplicate_window),
        compression=cfg.compression,
        first_seq=cfg.first_seq or 0,
        allow_direct=cfg.allow_direct,
        mirror_direct=cfg.mirror_direct,
        discard_new_per_subject=cfg.discard_new_per_subject,
        sealed=cfg.sealed,
        deny_delete=cfg.deny_delete,
        deny_purge=cfg.deny_purge,
        allow_rollup_hdrs=cfg.allow_rollup_hdrs,
        allow_msg_ttl=cfg.allow_msg_ttl,
        subject_delete_marker_ttl=_s_to_ns(cfg.subject_delete_marker_ttl),
        metadata=dict(cfg.metadata) if cfg.metadata else None,
    )
    for key in EXTRA_KEYS:
        if extra.get(key):
            out[key] = extra[key]
    return out


def to_wire(cfg: StreamConfig) -> dict:
    """The ``config`` object of a StreamInfo, in nats-server's field order; the fields
    Go marks ``omitempty`` are left out when empty."""
    f = wire_fields(cfg)
    out: dict[str, Any] = {"name": f["name"]}
    if f["description"]:
        out["description"] = f["description"]
    if f["subjects"]:
        out["subjects"] = f["subjects"]
    for key in (
        "retention",
        "max_consumers",
        "max_msgs",
        "max_bytes",
        "max_age",
        "max_msgs_per_subject",
    ):
        out[key] = f[key]
    if f["max_msg_size"]:
        out["max_msg_size"] = f["max_msg_size"]
    out["discard"] = f["discard"]
    out["storage"] = f["storage"]
    out["num_replicas"] = f["num_replicas"]
    for key in ("no_ack", "duplicate_window", "placement", "mirror", "sources"):
        if f[key]:
            out[key] = f[key]
    out["compression"] = f["compression"]
    for key in ("first_seq", "subject_transform", "republish"):
        if f[key]:
            out[key] = f[key]
    out["allow_direct"] = f["allow_direct"]
    out["mirror_direct"] = f["mirror_direct"]
    if f["discard_new_per_subject"]:
        out["discard_new_per_subject"] = True
    for key in ("sealed", "deny_delete", "deny_purge", "allow_rollup_hdrs", "consumer_limits"):
        out[key] = f[key]
    out["allow_msg_ttl"] = f["allow_msg_ttl"]
    for key in (
        "subject_delete_marker_ttl",
        "allow_msg_counter",
        "allow_atomic",
        "allow_msg_schedules",
        "persist_mode",
        "allow_batched",
        "metadata",
    ):
        if f[key]:
            out[key] = f[key]
    return out
