"""Consumer pause (nats-server 2.11+): ``pause_until`` in the consumer config and
``$JS.API.CONSUMER.PAUSE.<stream>.<consumer>``.

A paused consumer delivers nothing until its ``pause_until`` (RFC 3339, kept in the
config's ``extra`` and so persisted with it): pull requests wait (their expiry still
gives 408, a ``no_wait`` one gets 404 at once, as nats-server's loop goes to
processWaiting(eos) while paused), push delivery stops; at the time the runtime's
timer (``Runtime.apply_config``) kicks delivery again. ConsumerInfo says ``paused`` and
``pause_remaining`` (ns) while it lasts.

PAUSE takes ``{"pause_until": <time>}``, or an empty body to resume; it answers
``{"paused", "pause_until", "pause_remaining"}`` as nats-server 2.15.1: a time in the
past (nats.py's resume_consumer sends 1970-01-01) resumes and is echoed, an empty body
echoes Go's zero time, and errors carry ``paused: false`` and the zero time too.
"""

from __future__ import annotations

import json
import time
from typing import Any

from hybridbus.jetstream.api import ApiError, Request, route
from hybridbus.store.api import parse_rfc3339, rfc3339
from hybridbus.store.errors import StoreError

ZERO_TIME = "0001-01-01T00:00:00Z"


def until_ns(cfg: Any) -> int:
    """Epoch ns of the config's ``pause_until`` (0: none, unreadable or 1970)."""
    text = cfg.extra.get("pause_until")
    if not text or not isinstance(text, str):
        return 0
    try:
        return parse_rfc3339(text)
    except (ValueError, OverflowError):
        return 0


def normalize(extra: dict) -> None:
    """``pause_until`` as nats-server echoes it (UTC, Go's RFC3339Nano); refuses a
    value that is no time, as Go's JSON decoding does (10025)."""
    text = extra.get("pause_until")
    if text is None:
        return
    extra["pause_until"] = rfc3339(_parse(text))


def _parse(text: Any) -> int:
    if not isinstance(text, str):
        raise ApiError(400, 10025, "invalid JSON: pause_until must be a time")
    try:
        return parse_rfc3339(text)
    except (ValueError, OverflowError):
        raise ApiError(
            400,
            10025,
            f'invalid JSON: parsing time "{text}" as "2006-01-02T15:04:05Z07:00": '
            f'cannot parse "{text}" as "2006"',
        ) from None


def add_info(out: dict, cfg: Any) -> None:
    """ConsumerInfo's ``paused`` / ``pause_remaining`` (left out when not paused)."""
    until = until_ns(cfg)
    if until:
        left = until - time.time_ns()
        if left > 0:
            out["paused"] = True
            out["pause_remaining"] = left


@route("CONSUMER.PAUSE", 2, 2, kind="consumer_pause_response")
def consumer_pause(req: Request) -> dict:
    try:
        return _pause(req)
    except StoreError as err:
        req.js.api_errors += 1
        return {"error": err.to_error(), "paused": False, "pause_until": ZERO_TIME}


def _pause(req: Request) -> dict:
    from hybridbus.jetstream import consumers

    data = req.payload.strip()
    until: int | None = None
    if data:
        try:
            body = json.loads(data)
        except ValueError as e:
            raise ApiError(400, 10025, f"invalid JSON: {e}") from None
        if not isinstance(body, dict):
            raise ApiError(400, 10025, "invalid JSON: the request must be an object")
        if body.get("pause_until") is not None:
            until = _parse(body["pause_until"])
    stream = consumers._stream(req, req.args[0])
    c = consumers._consumer(stream, req.args[1])
    consumers._refuse_internal(stream.name)
    extra = dict(c.config.extra)
    if until is not None:
        extra["pause_until"] = rfc3339(until)
    else:
        extra.pop("pause_until", None)
    c = stream.add_consumer(c.config.copy(extra=extra))
    reg = req.js.consumers
    if reg is not None:
        rt = reg.attach(c)
        rt.apply_config()
        rt.kick()
    text = rfc3339(until) if until is not None else ZERO_TIME
    out: dict[str, Any] = {"paused": False, "pause_until": text}
    left = until - time.time_ns() if until is not None else 0
    if left > 0:
        out["paused"] = True
        out["pause_remaining"] = left
    return out
