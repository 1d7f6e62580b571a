"""A consumer config from a CONSUMER.CREATE request: checks, defaults, and the echo.

``build`` takes the request's ``config`` object (wire units: ns durations, RFC 3339
times) and returns a ``ConsumerConfig`` with JetStream's defaults filled in, or raises
an ``ApiError`` with nats-server's number and text. The checks run in nats-server's
order (``setConsumerConfigDefaults``, then ``checkConsumerCfg``, then the stream-side
checks of ``addConsumerWithAssignment``), as seen on a live nats-server 2.15.1: a JSON
object without ``ack_policy`` is ``none`` (Go's zero value), not ``explicit``.
``check_update`` is ``checkNewConsumerConfig``: what an existing consumer may not change.
``wire`` is the config as ConsumerInfo shows it (Go's ``omitempty`` fields left out when
zero).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from hybridbus.jetstream.api import ApiError
from hybridbus.store.api import DEFAULT_ACK_WAIT, ConsumerConfig, valid_name
from hybridbus.store.match import filters_overlap, valid_subject

DELIVER_POLICIES = ("all", "last", "new", "by_start_sequence", "by_start_time", "last_per_subject")
ACK_POLICIES = ("none", "all", "explicit")
REPLAY_POLICIES = ("instant", "original")

DEFAULT_INACTIVE = 5.0  # JsDeleteWaitTimeDefault: ephemerals go 5 s after losing interest
DEFAULT_MAX_WAITING = 512
DEFAULT_MAX_ACK_PENDING = 1000
MAX_DESCRIPTION = 4096
MIN_HEARTBEAT_NS = 100_000_000

_INTS = (
    "ack_wait",
    "idle_heartbeat",
    "inactive_threshold",
    "max_deliver",
    "max_waiting",
    "max_ack_pending",
    "rate_limit_bps",
    "opt_start_seq",
    "max_batch",
    "max_expires",
    "max_bytes",
    "num_replicas",
)
_BOOLS = ("flow_control", "headers_only", "mem_storage")
_STRS = (
    "name",
    "durable_name",
    "description",
    "filter_subject",
    "deliver_subject",
    "deliver_group",
    "sample_freq",
)
# Fields a client may not set: a mirror's internal cursor is marked "direct" (store/api.py).
_INTERNAL = ("direct", "sourcing")
_NAME_TEXT = "can not contain '.', '*', '>', '\\', '/'"


def bad_json(text: str = "invalid JSON") -> ApiError:
    return ApiError(400, 10025, text)


def _err(code: int, err_code: int, text: str) -> ApiError:
    return ApiError(code, err_code, text)


def _typed(raw: dict) -> dict:
    """A copy with JSON types checked, as Go's decoder would refuse them."""
    c = {k: v for k, v in raw.items() if k not in _INTERNAL}
    for key in _INTS:
        v = c.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int)):
            if isinstance(v, float) and v.is_integer():
                c[key] = int(v)
            else:
                raise bad_json(f"invalid JSON: {key} must be an integer")
    for key in _BOOLS:
        v = c.get(key)
        if v is not None and not isinstance(v, bool):
            raise bad_json(f"invalid JSON: {key} must be a boolean")
    for key in _STRS:
        v = c.get(key)
        if v is not None and not isinstance(v, str):
            raise bad_json(f"invalid JSON: {key} must be a string")
    for key, allowed in (
        ("deliver_policy", DELIVER_POLICIES),
        ("ack_policy", ACK_POLICIES),
        ("replay_policy", REPLAY_POLICIES),
    ):
        v = c.get(key)
        if v is not None and v not in allowed and not (key == "ack_policy" and v == "flow_control"):
            raise bad_json(f'invalid JSON: can not unmarshal "\\"{v}\\""')
    backoff = c.get("backoff")
    if backoff is not None:
        if not isinstance(backoff, list) or not all(
            isinstance(b, int) and not isinstance(b, bool) for b in backoff
        ):
            raise bad_json("invalid JSON: backoff must be a list of durations")
    fs = c.get("filter_subjects")
    if fs is not None and (not isinstance(fs, list) or not all(isinstance(f, str) for f in fs)):
        raise bad_json("invalid JSON: filter_subjects must be a list of subjects")
    md = c.get("metadata")
    if md is not None and not isinstance(md, dict):
        raise bad_json("invalid JSON: metadata must be an object")
    return c


def _defaults(c: dict, ephemeral: bool) -> None:
    """nats-server setConsumerConfigDefaults (the non-pedantic path)."""
    c.setdefault("deliver_policy", "all")
    c.setdefault("ack_policy", "none")
    c.setdefault("replay_policy", "instant")
    if not c.get("max_deliver") or c["max_deliver"] < -1:
        c["max_deliver"] = -1
    for key in ("max_waiting", "max_batch", "max_expires", "max_bytes"):
        if (c.get(key) or 0) < 0:
            c[key] = 0
    for key in ("idle_heartbeat", "inactive_threshold"):
        if (c.get(key) or 0) < 0:
            c[key] = 0
    if (c.get("max_ack_pending") or 0) < -1:
        c["max_ack_pending"] = -1
    push = bool(c.get("deliver_subject"))
    if not push and not c.get("max_waiting"):
        c["max_waiting"] = DEFAULT_MAX_WAITING
    ap = c["ack_policy"]
    if not c.get("ack_wait") and ap in ("explicit", "all"):
        c["ack_wait"] = int(DEFAULT_ACK_WAIT * 1e9)
    if c.get("backoff"):
        c["ack_wait"] = c["backoff"][0]
    if not c.get("max_ack_pending") and ap != "none":
        c["max_ack_pending"] = DEFAULT_MAX_ACK_PENDING
    if ephemeral and not c.get("inactive_threshold"):
        c["inactive_threshold"] = int(DEFAULT_INACTIVE * 1e9)


def _check_names_and_limits(c: dict) -> None:
    name, durable = c.get("name"), c.get("durable_name")
    if name and not valid_name(name):
        raise _err(500, 10052, f"consumer name {_NAME_TEXT}")
    if durable and not valid_name(durable):
        raise _err(500, 10052, f"consumer durable name {_NAME_TEXT}")
    replicas = c.get("num_replicas") or 0
    if replicas > 1:
        raise _err(500, 10074, "replicas > 1 not supported in non-clustered mode")
    if replicas < 0:
        raise _err(400, 10133, "replicas count cannot be negative")
    if any(b < 0 for b in c.get("backoff") or ()):
        raise _err(400, 10184, "consumer backoff needs to be positive")
    if (c.get("ack_wait") or 0) < 0:
        raise _err(400, 10183, "consumer ack wait needs to be positive")
    if c["ack_policy"] == "flow_control":
        raise _err(400, 10218, "flow control ack policy requires a push based consumer")
    backoff, md = c.get("backoff") or (), c["max_deliver"]
    if backoff and md != -1 and len(backoff) > md:
        raise _err(400, 10116, "max deliver is required to be > length of backoff values")
    if len(c.get("description") or "") > MAX_DESCRIPTION:
        raise _err(
            400, 10107, f"consumer description is too long, maximum allowed is {MAX_DESCRIPTION}"
        )


def _check_push_pull(c: dict, stream_cfg: Any) -> None:
    dsubj = c.get("deliver_subject")
    if dsubj:
        if "*" in dsubj.split(".") or ">" in dsubj.split("."):
            raise _err(400, 10079, "consumer deliver subject has wildcards")
        if not valid_subject(dsubj, wildcards=False):
            raise _err(400, 10112, "invalid push consumer deliver subject")
        if any(filters_overlap(dsubj, s) for s in stream_cfg.subjects):
            raise _err(400, 10081, "consumer deliver subject forms a cycle")
        if c.get("max_waiting"):
            raise _err(400, 10080, "consumer in push mode can not set max waiting")
        if (c.get("max_ack_pending") or 0) > 0 and c["ack_policy"] == "none":
            raise _err(400, 10082, "consumer requires ack policy for max ack pending")
        hb = c.get("idle_heartbeat") or 0
        if 0 < hb < MIN_HEARTBEAT_NS:
            raise _err(400, 10083, "consumer idle heartbeat needs to be >= 100ms")
        return
    if c["ack_policy"] == "none" and stream_cfg.retention == "workqueue":
        raise _err(
            400, 10084, "consumer in pull mode requires explicit ack policy on workqueue stream"
        )
    if c.get("rate_limit_bps"):
        raise _err(400, 10086, "consumer in pull mode can not have rate limit set")
    if c.get("idle_heartbeat"):
        raise _err(400, 10088, "consumer idle heartbeat requires a push based consumer")
    if c.get("flow_control"):
        raise _err(400, 10089, "consumer flow control requires a push based consumer")
    exp = c.get("max_expires") or 0
    if exp and exp < 1_000_000:
        raise _err(400, 10115, "consumer max request expires needs to be >= 1ms")


def _check_filters(c: dict) -> None:
    fs, fss = c.get("filter_subject"), c.get("filter_subjects")
    if fs and fss:
        raise _err(
            400, 10136, "consumer cannot have both FilterSubject and FilterSubjects specified"
        )
    if fs and not valid_subject(fs):
        raise _err(500, 10052, "invalid subject")
    for f in fss or ():
        if not f:
            raise _err(400, 10139, "consumer filter in FilterSubjects cannot be empty")
    filters = [fs] if fs else list(fss or ())
    for f in filters:
        if not valid_subject(f):
            raise _err(500, 10052, "invalid subject")
    for i, a in enumerate(filters):
        for b in filters[i + 1 :]:
            if filters_overlap(a, b):
                raise _err(400, 10138, "consumer subject filters cannot overlap")


def _check_start(c: dict) -> None:
    dp = c["deliver_policy"]
    seq, tm = c.get("opt_start_seq"), c.get("opt_start_time")
    words = {
        "all": "all",
        "last": "last",
        "last_per_subject": "last per subject",
        "new": "new",
    }

    def bad(text: str) -> ApiError:
        return _err(400, 10094, text)

    if dp in words:
        if seq:
            raise bad(
                f"consumer delivery policy is deliver {words[dp]}, but optional start sequence is also set"
            )
        if tm is not None:
            raise bad(
                f"consumer delivery policy is deliver {words[dp]}, but optional start time is also set"
            )
        if dp == "last_per_subject" and not (c.get("filter_subject") or c.get("filter_subjects")):
            raise bad(
                "consumer delivery policy is deliver last per subject, but optional filter subject is not set"
            )
    elif dp == "by_start_sequence":
        if not seq:
            raise bad(
                "consumer delivery policy is deliver by start sequence, but optional start sequence is not set"
            )
        if tm is not None:
            raise bad(
                "consumer delivery policy is deliver by start sequence, but optional start time is also set"
            )
    elif dp == "by_start_time":
        if tm is None:
            raise bad(
                "consumer delivery policy is deliver by start time, but optional start time is not set"
            )
        if seq:
            raise bad(
                "consumer delivery policy is deliver by start time, but optional start sequence is also set"
            )


def _check_misc(c: dict, stream_cfg: Any) -> None:
    sf = c.get("sample_freq")
    if sf:
        digits = sf[:-1] if sf.endswith("%") else sf
        if not digits.isdigit():
            raise _err(
                400,
                10095,
                f'failed to parse consumer sampling configuration: strconv.Atoi: parsing "{digits}": invalid syntax',
            )
    if c.get("flow_control") and not c.get("idle_heartbeat"):
        raise _err(400, 10108, "consumer with flow control also needs heartbeats")
    name, durable = c.get("name"), c.get("durable_name")
    if name and durable and name != durable:
        raise _err(400, 10132, "Consumer Durable and Name have to be equal if both are provided")
    if stream_cfg.retention == "workqueue":
        if c["ack_policy"] != "explicit":
            raise _err(400, 10098, "workqueue stream requires explicit ack")
        if c["deliver_policy"] != "all":
            raise _err(400, 10101, "consumer must be deliver all on workqueue stream")


def build(raw: dict, stream_cfg: Any) -> ConsumerConfig:
    """The ConsumerConfig a create request asks for, checked, with defaults."""
    c = _typed(raw)
    _defaults(c, ephemeral=not c.get("durable_name"))
    _check_names_and_limits(c)
    _check_push_pull(c, stream_cfg)
    _check_filters(c)
    _check_start(c)
    _check_misc(c, stream_cfg)
    for key in ("num_replicas",):
        c.setdefault(key, 0)
    try:
        cfg = ConsumerConfig.from_dict(c, wire=True)
    except (TypeError, ValueError) as e:
        raise bad_json(f"invalid JSON: {e}") from None
    return cfg


_IMMUTABLE = (
    ("deliver_policy", "deliver policy can not be updated"),
    ("mem_storage", "storage type can not be updated"),
    ("opt_start_seq", "start sequence can not be updated"),
    ("opt_start_time", "start time can not be updated"),
    ("ack_policy", "ack policy can not be updated"),
    ("replay_policy", "replay policy can not be updated"),
    ("idle_heartbeat", "heart beats can not be updated"),
    ("flow_control", "flow control can not be updated"),
)


def check_update(old: ConsumerConfig, new: ConsumerConfig, bound: bool) -> None:
    """nats-server checkNewConsumerConfig: ``bound`` is whether the old deliver subject
    has interest now (a bound push consumer keeps its deliver subject)."""
    if old == new:
        return
    for attr, text in _IMMUTABLE:
        if (getattr(old, attr) or None) != (getattr(new, attr) or None):
            raise _err(500, 10012, text)
    od, nd = old.deliver_subject or "", new.deliver_subject or ""
    if od != nd:
        if not od:
            raise _err(500, 10012, "can not update pull consumer to push based")
        if not nd:
            raise _err(500, 10012, "can not update push consumer to pull based")
        if bound:
            raise _err(400, 10013, "consumer name already in use")
    if (old.max_waiting or 0) != (new.max_waiting or 0):
        raise _err(500, 10012, "max waiting can not be updated")
    if (old.durable_name or None) != (new.durable_name or None):
        raise _err(500, 10012, "consumer durable name can not be updated")


# Go omitempty fields: left out of the echo when zero, false or empty.
_OMIT_ZERO = (
    "opt_start_seq",
    "ack_wait",
    "rate_limit_bps",
    "max_waiting",
    "max_ack_pending",
    "idle_heartbeat",
    "inactive_threshold",
    "max_batch",
    "max_expires",
    "max_bytes",
)
_OMIT_EMPTY = (
    "name",
    "durable_name",
    "description",
    "filter_subject",
    "filter_subjects",
    "deliver_subject",
    "deliver_group",
    "sample_freq",
    "backoff",
    "metadata",
    "flow_control",
    "headers_only",
    "mem_storage",
)


def wire(cfg: ConsumerConfig) -> dict[str, Any]:
    """The config as ConsumerInfo shows it (durations ns, times RFC 3339)."""
    out = cfg.to_dict(wire=True)
    for key in _OMIT_ZERO:
        if out.get(key) == 0:
            del out[key]
    for key in _OMIT_EMPTY:
        if key in out and not out[key]:
            del out[key]
    if cfg.ack_policy == "none":
        # The store fills these in for every policy; nats-server only for acked ones.
        if out.get("max_ack_pending") == -1:
            del out["max_ack_pending"]
        if out.get("ack_wait") == int(DEFAULT_ACK_WAIT * 1e9):
            del out["ack_wait"]
    out["num_replicas"] = cfg.num_replicas or 0
    return out


def same(a: ConsumerConfig, b: ConsumerConfig) -> bool:
    return dataclasses.asdict(a) == dataclasses.asdict(b)
