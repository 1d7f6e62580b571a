"""``$JS.API.>`` requests: the dispatcher, the request object and the envelope.

A request's subject picks its handler from ``ROUTES`` (filled in by ``streams.py``
and ``consumers.py`` with the ``route`` decorator): the tokens after ``$JS.API`` are
matched against each route's fixed words, and what follows them becomes
``Request.args`` (a stream name, a consumer name, a filter subject...). An unknown
API subject gets no reply at all, as from nats-server (the client times out).

A handler returns the response object (the dispatcher adds ``type``) or ``None``
when it answered on its own (MSG.NEXT, DIRECT.GET), and raises an ``ApiError`` or a
``StoreError`` for the error envelope ``{"type", "error": {code, err_code,
description}}`` (only those keys: nats-py builds its exception from them). Handlers
run as deferred work (``JetStream.later``), never inside ``Server.route``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from hybridbus.store.errors import StoreError

if TYPE_CHECKING:
    from hybridbus.jetstream.engine import JetStream

log = logging.getLogger("hybridbus.jetstream")

API_PREFIX = "$JS.API."
TYPE_PREFIX = "io.nats.jetstream.api.v1."


class ApiError(StoreError):
    """An API error with nats-server's numbers: ``ApiError(code, err_code, text)``."""

    def __init__(self, code: int, err_code: int, description: str):
        self.code = code
        self.err_code = err_code
        super().__init__(description)


def bad_request(text: str = "bad request") -> ApiError:
    return ApiError(400, 10003, text)  # JSBadRequestErr


def not_enabled() -> ApiError:
    return ApiError(503, 10039, "JetStream not enabled for account")  # nats-server's words


# Response types that carry ApiPaged (and their list, null) even in an error answer
_PAGED = {
    "stream_names_response": "streams",
    "stream_list_response": "streams",
    "consumer_names_response": "consumers",
    "consumer_list_response": "consumers",
    "stream_info_response": None,
}


def not_enabled_answer(subject: str) -> dict | None:
    """What nats-server answers an API request of an account without JetStream (on a
    server with JetStream): 503 10039 in the request's response type; None for a
    subject that is no API request (no answer)."""
    _load_handlers()
    found = find(subject[len(API_PREFIX) :].split("."))
    if found is None:
        return None
    kind = found[0][2]
    out: dict = {"type": TYPE_PREFIX + kind, "error": not_enabled().to_error()}
    if kind in _PAGED:
        out.update(total=0, offset=0, limit=0)
        if _PAGED[kind]:
            out[_PAGED[kind]] = None
    return out


class Request:
    """One API request. ``args`` are the subject tokens after the route's words."""

    __slots__ = ("js", "subject", "reply", "headers", "payload", "args")

    def __init__(
        self,
        js: JetStream,
        subject: str,
        reply: str | None,
        headers: bytes | None,
        payload: bytes,
        args: list[str],
    ):
        self.js = js
        self.subject = subject
        self.reply = reply
        self.headers = headers
        self.payload = payload
        self.args = args

    def body(self) -> dict:
        """The JSON body as an object ({} when empty); a bad body is a 400 (10025)."""
        data = self.payload.strip()
        if not data:
            return {}
        try:
            obj = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            raise ApiError(400, 10025, "invalid JSON") from None
        if not isinstance(obj, dict):
            raise ApiError(400, 10025, "invalid JSON")
        return obj

    def respond(self, body: bytes | dict, headers: bytes | None = None) -> None:
        if self.reply:
            self.js.reply(self.reply, body, headers)


# words (after $JS.API.) -> (min args, max args or None, response type, handler)
Route = tuple[int, "int | None", str, Callable[[Request], "dict | None"]]
ROUTES: dict[tuple[str, ...], Route] = {}


def route(words: str, min_args: int = 0, max_args: int | None = 0, kind: str = ""):
    """Register a handler for ``$JS.API.<words>.<args...>``; ``kind`` names the
    response type (``io.nats.jetstream.api.v1.<kind>``)."""

    def add(fn: Callable[[Request], dict | None]) -> Callable[[Request], dict | None]:
        ROUTES[tuple(words.split("."))] = (min_args, max_args, kind, fn)
        return fn

    return add


def find(tokens: list[str]) -> tuple[Route, list[str]] | None:
    # Longest words first: CONSUMER.DURABLE.CREATE before CONSUMER.* routes.
    for n in (3, 2, 1):
        key = tuple(tokens[:n])
        found = ROUTES.get(key)
        if found is not None:
            args = tokens[n:]
            lo, hi, _kind, _fn = found
            if len(args) < lo or (hi is not None and len(args) > hi):
                return None
            return found, args
    return None


def on_request(js: JetStream, subject: str, reply: str | None, headers, payload) -> None:
    """Inside Server.route: count it and defer the work."""
    js.later(handle, js, subject, reply, headers, payload)


def handle(js: JetStream, subject: str, reply: str | None, headers, payload: bytes) -> None:
    _load_handlers()
    tokens = subject[len(API_PREFIX) :].split(".")
    found = find(tokens)
    if found is None:
        return  # unknown API subject: no reply, as nats-server
    (_lo, _hi, kind, fn), args = found
    js.api_total += 1
    req = Request(js, subject, reply, headers, payload, args)
    try:
        resp = fn(req)
    except StoreError as err:
        js.api_errors += 1
        req.respond({"type": TYPE_PREFIX + kind, "error": err.to_error()})
        return
    except Exception:
        log.exception("JetStream API %s failed", subject)
        js.api_errors += 1
        err = ApiError(500, 10051, "internal error")
        req.respond({"type": TYPE_PREFIX + kind, "error": err.to_error()})
        return
    if resp is not None:
        out = {"type": TYPE_PREFIX + kind}
        out.update(resp)
        req.respond(out)


_loaded = False


def _load_handlers() -> None:
    global _loaded
    if not _loaded:
        from hybridbus.jetstream import account, consumers, streams  # noqa: F401

        _loaded = True
