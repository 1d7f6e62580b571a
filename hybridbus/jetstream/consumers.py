"""Consumer requests: ``CONSUMER.CREATE`` / ``DURABLE.CREATE``, ``INFO``, ``LIST``,
``NAMES`` and ``DELETE`` (pull requests and acks are in ``delivery.py``).

The create subject comes in four forms (nats-server ``jsConsumerCreateRequest``), each
with a body ``{"stream_name", "config", "action"?}``:

- ``CONSUMER.CREATE.<stream>``: the legacy ephemeral; the server picks an 8-character
  name unless the config has one; a ``durable_name`` is refused (10020);
- ``CONSUMER.CREATE.<stream>.<name>``: the name in the subject wins (the config's
  ``name`` is set from it); a ``durable_name`` must equal it (10017);
- ``CONSUMER.CREATE.<stream>.<name>.<filter...>``: and the filter (the rest of the
  subject, dots and wildcards kept) must equal ``filter_subject`` (10131);
- ``CONSUMER.DURABLE.CREATE.<stream>.<durable>``: ``durable_name`` is required (10018)
  and must match (10017).

Creating an existing consumer is an update when the new config only changes what may
change (``consumer_config.check_update``: 10012 otherwise), and a no-op when equal;
``action: "create"`` refuses any difference (10148), ``action: "update"`` a missing
consumer (10149). Consumers on the MQTT layer's internal ``$MQTT_*`` streams cannot be
created or deleted through the API (400, 10003): the MQTT layer owns those streams.

ConsumerInfo has nats-server's shape: ``stream_name, name, created, config`` (the
defaults filled in, durations in ns), ``delivered`` and ``ack_floor`` (consumer and
stream seqs, with ``last_active`` once there was any), ``num_ack_pending,
num_redelivered, num_waiting, num_pending``, ``push_bound`` only while the deliver
subject has interest, and ``ts``.
"""

from __future__ import annotations

import secrets
import string
import time
from typing import Any

from hybridbus.jetstream import consumer_config as cc
from hybridbus.jetstream import pause
from hybridbus.jetstream.api import ApiError, Request, route
from hybridbus.jetstream.engine import is_internal
from hybridbus.store.api import rfc3339
from hybridbus.store.errors import StoreError, StreamNotFound

NAMES_LIMIT = 1024
LIST_LIMIT = 256
_ALNUM = string.ascii_letters + string.digits


def _stream(req: Request, name: str) -> Any:
    if req.js.store.is_hidden(name):
        raise StreamNotFound()  # an $MQTT_ stream before MQTT is used (store.hide)
    try:
        return req.js.store.stream(name)
    except StoreError:
        raise StreamNotFound() from None


def _refuse_internal(name: str) -> None:
    if is_internal(name):
        raise ApiError(
            400, 10003, f"consumers of the internal stream {name} are managed by the MQTT layer"
        )


def info(js: Any, c: Any, rt: Any = None) -> dict:
    """ConsumerInfo of store consumer ``c`` (``rt``: its runtime, for the live parts)."""
    cfg = c.config
    fc, fs = c.ack_floor
    delivered: dict[str, Any] = {"consumer_seq": c._dseq, "stream_seq": c._sseq}
    if c._last_active_ns:
        delivered["last_active"] = rfc3339(c._last_active_ns)
    floor: dict[str, Any] = {"consumer_seq": fc, "stream_seq": fs}
    if c._last_ack_ns:
        floor["last_active"] = rfc3339(c._last_ack_ns)
    waiting = 0
    if rt is not None and rt.pull:
        rt.expire(rt.loop.time(), eos=False)
        waiting = len(rt.waiting)
    out: dict[str, Any] = {
        "stream_name": c.stream.name,
        "name": c.name,
        "created": rfc3339(c.created_ns),
        "config": cc.wire(cfg),
        "delivered": delivered,
        "ack_floor": floor,
        "num_ack_pending": c.num_ack_pending,
        # nats-server: with max_deliver 1 there are no redeliveries to report
        "num_redelivered": 0 if cfg.max_deliver == 1 else c.num_redelivered,
        "num_waiting": waiting,
        "num_pending": max(c.num_pending, 0),
    }
    if rt is not None and not rt.pull and rt.interest():
        out["push_bound"] = True
    pause.add_info(out, cfg)
    out["ts"] = rfc3339(time.time_ns())
    return out


def _consumer_info(req: Request, stream: Any, c: Any) -> dict:
    rt = req.js.consumers.find(stream.name, c.name) if req.js.consumers else None
    return info(req.js, c, rt)


# -- create ---------------------------------------------------------------------------


def _names_from_subject(req: Request, body: dict, config: dict, durable_form: bool) -> None:
    """Apply the subject's rules to ``config`` (nats-server jsConsumerCreateRequest)."""
    args = req.args
    stream = args[0]
    if body.get("stream_name") != stream:
        raise ApiError(400, 10056, "stream name in subject does not match request")
    durable = config.get("durable_name") or ""
    if durable_form:
        if len(args) != 2:
            raise ApiError(
                400, 10016, "consumer expected to be durable but no durable name set in subject"
            )
        if not durable:
            raise ApiError(
                400, 10018, "consumer expected to be durable but a durable name was not set"
            )
        if durable != args[1]:
            raise ApiError(
                400, 10017, "consumer name in subject does not match durable name in request"
            )
        return
    if len(args) == 1:
        if durable:
            raise ApiError(
                400,
                10020,
                "consumer expected to be ephemeral but a durable name was set in request",
            )
        return
    name = args[1]
    if durable and durable != name:
        raise ApiError(
            400, 10017, "consumer name in subject does not match durable name in request"
        )
    config["name"] = name
    if len(args) > 2:
        flt = ".".join(args[2:])
        if config.get("filter_subjects"):
            raise ApiError(
                400, 10137, "consumer with multiple subject filters cannot use subject based API"
            )
        if config.get("filter_subject") != flt:
            raise ApiError(
                400,
                10131,
                "Consumer create request did not match filtered subject from create subject",
            )


def _ephemeral_name(stream: Any) -> str:
    while True:
        name = "".join(secrets.choice(_ALNUM) for _ in range(8))
        if name not in stream._consumers:
            return name


def _check_consumer_limit(js: Any) -> None:
    """The account's ``max_consumers``, over all its streams (nats-server: 10026)."""
    limit = js.max_consumers
    if limit >= 0 and sum(s._public_count() for s in js.store.streams()) >= limit:
        raise ApiError(400, 10026, "maximum consumers limit reached")


def _account_ack_pending(js: Any, config: dict, cfg: Any) -> None:
    """The account's ``max_ack_pending`` (nats-server 2.15.1, checked against the
    binary): a consumer that sets none gets the smaller of the default and the
    account's (ack none has no default); one asking for more is 10121, whatever its
    ack policy (-1, no limit, passes)."""
    limit = js.max_ack_pending
    if limit <= 0:
        return
    if not config.get("max_ack_pending") and cfg.max_ack_pending > limit:
        cfg.max_ack_pending = limit
    if cfg.max_ack_pending > limit:
        raise ApiError(400, 10121, f"consumer max ack pending exceeds system limit of {limit}")


def create(req: Request, durable_form: bool) -> dict:
    body = req.body()
    config = body.get("config")
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise cc.bad_json()
    config = dict(config)
    _names_from_subject(req, body, config, durable_form)
    action = body.get("action", "")
    if action not in ("", "create", "update"):
        raise cc.bad_json(f'invalid JSON: unknown consumer action: "{action}"')
    stream = _stream(req, req.args[0])
    _refuse_internal(stream.name)
    cfg = cc.build(config, stream.config)
    _account_ack_pending(req.js, config, cfg)
    pause.normalize(cfg.extra)
    name = cfg.name or cfg.durable_name
    existing = stream._consumers.get(name) if name else None
    if existing is not None and existing.config.extra.get("direct"):
        existing = None  # an internal cursor (mirror.py) is not a client's consumer
    reg = req.js.consumers
    if existing is not None:
        if "pause_until" not in cfg.extra and "pause_until" in existing.config.extra:
            # an update that does not name a pause keeps the current one (nats-server)
            cfg.extra["pause_until"] = existing.config.extra["pause_until"]
        new = cfg.copy(name=name).normalized()
        old = existing.config
        if action == "create" and not cc.same(old, new):
            raise ApiError(400, 10148, "consumer already exists")
        rt = reg.find(stream.name, name)
        bound = rt is not None and not rt.pull and rt.interest()
        cc.check_update(old, new, bound)
    elif action == "update":
        raise ApiError(400, 10149, "consumer does not exist")
    else:
        _check_consumer_limit(req.js)
    if name is None:
        cfg = cfg.copy(name=_ephemeral_name(stream))
    c = stream.add_consumer(cfg)
    rt = reg.attach(c)
    if existing is not None:
        rt.apply_config()
        rt.kick()
    return info(req.js, c, rt)


@route("CONSUMER.CREATE", 1, None, kind="consumer_create_response")
def consumer_create(req: Request) -> dict:
    return create(req, durable_form=False)


@route("CONSUMER.DURABLE.CREATE", 1, None, kind="consumer_create_response")
def durable_create(req: Request) -> dict:
    return create(req, durable_form=True)


# -- info, list, names, delete ---------------------------------------------------------


def _consumer(stream: Any, name: str) -> Any:
    c = stream._consumers.get(name)
    if c is None or c.config.extra.get("direct"):
        raise ApiError(404, 10014, "consumer not found")
    return c


@route("CONSUMER.INFO", 2, 2, kind="consumer_info_response")
def consumer_info(req: Request) -> dict:
    stream = _stream(req, req.args[0])
    return _consumer_info(req, stream, _consumer(stream, req.args[1]))


@route("CONSUMER.DELETE", 2, 2, kind="consumer_delete_response")
def consumer_delete(req: Request) -> dict:
    stream = _stream(req, req.args[0])
    name = req.args[1]
    c = _consumer(stream, name)
    _refuse_internal(stream.name)
    stream.delete_consumer(name)
    reg = req.js.consumers
    rt = reg.by_key.get((stream.name, name)) if reg else None
    if rt is not None and rt.c is c:
        reg.drop(rt, deleted=True)
    return {"success": True}


def _offset(req: Request) -> int:
    off = req.body().get("offset", 0)
    if not isinstance(off, int) or isinstance(off, bool) or off < 0:
        return 0
    return off


@route("CONSUMER.NAMES", 1, 1, kind="consumer_names_response")
def consumer_names(req: Request) -> dict:
    off = _offset(req)
    stream = _stream(req, req.args[0])
    names = sorted(c.name for c in stream.consumers())
    return {
        "total": len(names),
        "offset": off,
        "limit": NAMES_LIMIT,
        "consumers": names[off : off + NAMES_LIMIT],
    }


@route("CONSUMER.LIST", 1, 1, kind="consumer_list_response")
def consumer_list(req: Request) -> dict:
    off = _offset(req)
    stream = _stream(req, req.args[0])
    cons = sorted(stream.consumers(), key=lambda c: c.name)
    page = cons[off : off + LIST_LIMIT]
    return {
        "total": len(cons),
        "offset": off,
        "limit": LIST_LIMIT,
        "consumers": [_consumer_info(req, stream, c) for c in page],
    }
