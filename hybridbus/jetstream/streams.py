"""Stream requests: ``STREAM.*``, ``STREAM.MSG.*`` and ``DIRECT.GET``.

Each handler follows its nats-server counterpart in ``jetstream_api.go`` (the order of
the checks included: a bad body is answered before a missing stream, and so on) and
answers in the shapes nats-server 2.15 sends (``StreamInfo``, the paged lists, the
error envelopes with the extra keys some of them carry). Configs are read and echoed by
``streamcfg.py``; the stream's subscriptions (capture, direct get) follow it through
``capture.sync``/``capture.drop``; a mirror or sources stream is handed to ``mirror.py``.

The MQTT layer's own streams (``$MQTT_*``, ``engine.is_internal``) are listed and
readable like any other once MQTT has been used (nats-server creates its ``$MQTT_``
streams at the first MQTT CONNECT; before that the store keeps ours hidden), but every
request that would change one is refused: their records belong to the MQTT sessions.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from hybridbus.jetstream import api, capture, streamcfg
from hybridbus.jetstream.api import ApiError, Request, bad_request, route
from hybridbus.jetstream.engine import is_internal
from hybridbus.jetstream.gojson import List, Struct, decode, decode_object, is_empty_request
from hybridbus.store.api import parse_rfc3339, rfc3339
from hybridbus.store.errors import MemoryFull, MsgNotFound, StoreError, StoreFull, StreamNotFound
from hybridbus.store.match import filters_overlap

if TYPE_CHECKING:
    from hybridbus.jetstream.engine import JetStream

NAMES_LIMIT = 1024  # nats-server's JSApiNamesLimit
LIST_LIMIT = 256  # JSApiListLimit
SUBJECTS_LIMIT = 100_000  # JSMaxSubjectDetails: subjects in one STREAM.INFO page
ZERO_TIME = "0001-01-01T00:00:00Z"
DELETED_LIMIT = 100_000  # deleted_details: a hybridbus bound (the reply must fit a message)

_INFO_REQ = Struct(
    "server.JSApiStreamInfoRequest",
    {"deleted_details": "bool", "subjects_filter": "string", "offset": "int"},
)
_NAMES_REQ = Struct("server.JSApiStreamNamesRequest", {"offset": "int", "subject": "string"})
_LIST_REQ = Struct("server.JSApiStreamListRequest", {"offset": "int", "subject": "string"})
_PURGE_REQ = Struct(
    "server.JSApiStreamPurgeRequest", {"seq": "uint64", "filter": "string", "keep": "uint64"}
)
_DELETE_REQ = Struct("server.JSApiMsgDeleteRequest", {"seq": "uint64", "no_erase": "bool"})
GET_REQ = Struct(
    "server.JSApiMsgGetRequest",
    {
        "seq": "uint64",
        "last_by_subj": "string",
        "next_by_subj": "string",
        "batch": "int",
        "max_bytes": "int",
        "start_time": "time",
        "multi_last": List("string"),
        "up_to_seq": "uint64",
        "up_to_time": "time",
        "no_hdr": "bool",
    },
)


# --------------------------------------------------------------------------- helpers


def _strict(js: JetStream) -> bool:
    return bool(js.hub.options.jetstream.strict)


def _stream(js: JetStream, name: str) -> Any:
    if js.store.is_hidden(name):
        raise StreamNotFound()  # an $MQTT_ stream before MQTT is used (store.hide)
    return js.store.stream(name)  # StreamNotFound: 404/10059


def _lookup(js: JetStream) -> Callable[[str], Any]:
    def find(name: str) -> Any:
        try:
            return js.store.stream(name).config
        except StoreError:
            return None

    return find


def internal_refusal(name: str) -> ApiError:
    """A change to one of the MQTT layer's streams (a hybridbus rule: nats-server would
    let a client break its own $MQTT_ streams)."""
    return ApiError(
        400, 10003, f"stream {name} is internal to the MQTT layer and can not be changed"
    )


def _no_path_separators(name: str) -> None:
    """A create refuses these before checking the config (names are file names);
    the other requests just find no such stream, as on nats-server."""
    if "/" in name or "\\" in name:
        raise ApiError(400, 10128, "Stream name can not contain path separators")


def _not_internal(name: str) -> None:
    if is_internal(name):
        raise internal_refusal(name)


def _mirror_module() -> Any:
    """jetstream/mirror.py when it is there (mirrors and sources), else None."""
    try:
        from hybridbus.jetstream import mirror
    except ImportError:
        return None
    return mirror


def _changed(js: JetStream, stream_or_name: Any) -> None:
    mirror = _mirror_module()
    if mirror is not None:
        mirror.changed(js, stream_or_name)


def _failing(**extra: Any):
    """Error envelopes that carry more than ``error`` (nats-server answers STREAM.INFO
    errors with the paging keys, PURGE errors with ``purged``): the handler's errors
    become such a body here, counted as API errors like the dispatcher counts them."""

    def wrap(fn: Callable[[Request], dict | None]) -> Callable[[Request], dict | None]:
        def handler(req: Request) -> dict | None:
            try:
                return fn(req)
            except StoreError as err:
                req.js.api_errors += 1
                out: dict[str, Any] = {"error": err.to_error()}
                out.update(extra)
                return out

        handler.__name__ = fn.__name__
        handler.__doc__ = fn.__doc__
        return handler

    return wrap


def _body_object(req: Request, schema: Struct) -> dict:
    return decode_object(req.payload, schema, _strict(req.js))


# --------------------------------------------------------------------------- StreamInfo


def state_body(st: Any, subjects: dict | None = None, deleted: list | None = None) -> dict:
    """StreamState as nats-server writes it (``omitempty`` fields left out when empty)."""
    s = st.state()
    out: dict[str, Any] = {
        "messages": s.messages,
        "bytes": s.bytes,
        "first_seq": s.first_seq,
        "first_ts": rfc3339(s.first_ts_ns) if s.first_ts_ns else ZERO_TIME,
        "last_seq": s.last_seq,
        "last_ts": rfc3339(s.last_ts_ns) if s.last_ts_ns else ZERO_TIME,
    }
    if s.num_subjects:
        out["num_subjects"] = s.num_subjects
    if subjects:
        out["subjects"] = subjects
    if s.num_deleted:
        out["num_deleted"] = s.num_deleted
    if deleted:
        out["deleted"] = deleted
    out["consumer_count"] = s.consumer_count
    return out


def info_body(js: JetStream, st: Any, *, cluster: bool = True, **state: Any) -> dict:
    """A StreamInfo: config, created, state, cluster, mirror/sources, ts. nats-server
    names the leader (``cluster``) in STREAM.INFO only, not in CREATE, UPDATE or LIST."""
    out: dict[str, Any] = {
        "config": streamcfg.to_wire(st.config),
        "created": rfc3339(st.created_ns),
        "state": state_body(st, **state),
    }
    domain = js.hub.options.jetstream.domain
    if domain:
        out["domain"] = domain
    name = getattr(js.hub, "server_name", None)
    if cluster and name:
        out["cluster"] = {"leader": name}
    mirror = _mirror_module()
    if mirror is not None:
        out.update(mirror.info(js, st))
    out["ts"] = rfc3339(time.time_ns())
    return out


def _deleted_seqs(st: Any) -> list[int]:
    """The sequences between first and last that are gone (``deleted_details``), at
    most ``DELETED_LIMIT`` of them (a stream with a gap of billions must not make a
    reply, or a list, of that size)."""
    s = st.state()
    if not s.num_deleted:
        return []
    out: list[int] = []
    expect = s.first_seq
    for msg in st.iter(s.first_seq):
        out.extend(range(expect, min(msg.seq, expect + DELETED_LIMIT - len(out))))
        if len(out) >= DELETED_LIMIT:
            return out
        expect = msg.seq + 1
    out.extend(range(expect, min(s.last_seq + 1, expect + DELETED_LIMIT - len(out))))
    return out


# --------------------------------------------------------------------------- create / update


def _read_config(req: Request) -> tuple[dict, bool]:
    return streamcfg.read_request(req.payload, _strict(req.js))


def _check_mirror(js: JetStream, config: Any, old: Any = None) -> None:
    mirror = _mirror_module()
    if mirror is not None and (
        config.extra.get("mirror") or config.extra.get("sources") or old is not None
    ):
        mirror.check(js, config, old)


def _check_stream_limit(js: JetStream, name: str) -> None:
    """The account's ``max_streams`` (nats-server: 10027 for a new stream; the MQTT
    layer's own $MQTT_ streams are not counted here)."""
    limit = js.max_streams
    if limit < 0:
        return
    names = [s.name for s in js.store.streams()]
    if name not in names and sum(1 for n in names if not is_internal(n)) >= limit:
        raise ApiError(400, 10027, "maximum number of streams reached")


def _check_bytes_limit(js: JetStream, config: Any) -> None:
    """An account's stream asking for more bytes than the account may hold
    (``max_mem`` / ``max_file``): nats-server's 10028 / 10047 at create."""
    if js.account is js.hub.global_account or config.max_bytes < 0:
        return
    kind = "memory" if config.storage == "memory" else "file"
    limit = (getattr(js.store, "_limits", None) or {}).get(kind, -1)
    if 0 <= limit < config.max_bytes:
        raise MemoryFull() if kind == "memory" else StoreFull()


def _check_stream_bytes(js: JetStream, config: Any) -> None:
    """The account's per-stream byte limits, at create and update (nats-server 2.15.1,
    checked against the binary): with ``max_bytes_required`` a stream must set
    max_bytes (> 0; 0 reads as unset) or 10113; a max_bytes over the storage's
    ``mem_max_stream_bytes`` / ``disk_max_stream_bytes`` is 10122. An unset max_bytes
    without the requirement passes (the cap is not applied to it)."""
    if js.max_bytes_required and config.max_bytes <= 0:
        raise ApiError(400, 10113, "account requires a stream config to have max bytes set")
    memory = config.storage == "memory"
    cap = js.mem_max_stream_bytes if memory else js.disk_max_stream_bytes
    if 0 < cap < config.max_bytes:
        raise ApiError(400, 10122, "stream max bytes exceeds account limit max stream bytes")


@route("STREAM.CREATE", 1, 1, kind="stream_create_response")
def create(req: Request) -> dict:
    js = req.js
    name = req.args[0]
    raw, pedantic = _read_config(req)
    if raw["name"] != name:
        raise ApiError(400, 10056, "stream name in subject does not match request")
    _no_path_separators(name)
    _not_internal(name)
    cfg = streamcfg.check(raw, _lookup(js), pedantic)
    streamcfg.check_create(cfg)
    config = streamcfg.to_store(cfg)
    _check_mirror(js, config)
    _check_stream_limit(js, name)
    _check_stream_bytes(js, config)
    _check_bytes_limit(js, config)
    st = js.store.add_stream(config)
    capture.sync(js, st)
    _changed(js, st)
    out = info_body(js, st, cluster=False)
    out["did_create"] = True
    return out


@route("STREAM.UPDATE", 1, 1, kind="stream_update_response")
def update(req: Request) -> dict:
    js = req.js
    name = req.args[0]
    raw, pedantic = _read_config(req)
    _not_internal(name)
    cfg = streamcfg.check(raw, _lookup(js), pedantic)
    if cfg["name"] != name:
        raise ApiError(400, 10056, "stream name in subject does not match request")
    st = _stream(js, name)
    cfg = streamcfg.check_update(st.config, cfg)
    config = streamcfg.to_store(cfg)
    _check_mirror(js, config, st.config)
    _check_stream_bytes(js, config)
    st = js.store.update_stream(config)
    capture.sync(js, st)
    _changed(js, st)
    return info_body(js, st, cluster=False)


# --------------------------------------------------------------------------- info / lists


@route("STREAM.INFO", 1, 1, kind="stream_info_response")
@_failing(total=0, offset=0, limit=0)
def info(req: Request) -> dict:
    js = req.js
    body = _body_object(req, _INFO_REQ)
    st = _stream(js, req.args[0])
    out: dict[str, Any] = {"total": 0, "offset": 0, "limit": 0}
    state: dict[str, Any] = {}
    flt = body.get("subjects_filter") or ""
    if flt:
        subjects = st.subjects(None if flt == ">" else flt)
        names = sorted(subjects)
        offset = max(0, body.get("offset") or 0)
        page = names[offset : offset + SUBJECTS_LIMIT]
        if names:
            out.update(total=len(names), offset=offset, limit=SUBJECTS_LIMIT)
        state["subjects"] = {n: subjects[n] for n in page}
    if body.get("deleted_details"):
        state["deleted"] = _deleted_seqs(st)
    out.update(info_body(js, st, **state))
    return out


def _matching(js: JetStream, subject: str) -> list[Any]:
    streams = sorted(js.store.listed_streams(), key=lambda s: s.config.name)
    if not subject:
        return streams
    return [s for s in streams if any(filters_overlap(subject, x) for x in s.config.subjects)]


@route("STREAM.NAMES", 0, 0, kind="stream_names_response")
@_failing(total=0, offset=0, limit=0, streams=None)
def names(req: Request) -> dict:
    body = _body_object(req, _NAMES_REQ)
    found = _matching(req.js, body.get("subject") or "")
    offset = min(max(0, body.get("offset") or 0), len(found))
    page = [s.config.name for s in found[offset : offset + NAMES_LIMIT]]
    return {"total": len(found), "offset": offset, "limit": NAMES_LIMIT, "streams": page or None}


@route("STREAM.LIST", 0, 0, kind="stream_list_response")
@_failing(total=0, offset=0, limit=0, streams=[])
def listing(req: Request) -> dict:
    js = req.js
    body = _body_object(req, _LIST_REQ)
    found = _matching(js, body.get("subject") or "")
    offset = min(max(0, body.get("offset") or 0), len(found))
    page = [info_body(js, s, cluster=False) for s in found[offset : offset + LIST_LIMIT]]
    return {"total": len(found), "offset": offset, "limit": LIST_LIMIT, "streams": page}


# --------------------------------------------------------------------------- delete / purge


@route("STREAM.DELETE", 1, 1, kind="stream_delete_response")
def delete(req: Request) -> dict:
    js = req.js
    name = req.args[0]
    if not is_empty_request(req.payload):
        raise ApiError(400, 10038, "expected an empty request payload")
    _not_internal(name)
    _stream(js, name)
    forget = getattr(js.consumers, "stream_deleted", None)
    if forget is not None:
        forget(name)  # the consumers' runtimes (timers, waiting pulls) go with it
    js.store.delete_stream(name)
    capture.drop(js, name)
    _changed(js, name)
    return {"success": True}


@route("STREAM.PURGE", 1, 1, kind="stream_purge_response")
@_failing(purged=0)
def purge(req: Request) -> dict:
    js = req.js
    name = req.args[0]
    body = _body_object(req, _PURGE_REQ)
    if body.get("seq") and body.get("keep"):
        raise bad_request()
    _not_internal(name)
    st = _stream(js, name)
    if st.config.sealed:
        raise ApiError(400, 10109, "invalid operation on sealed stream")
    n = st.purge(
        subject=body.get("filter") or None,
        seq=body.get("seq") or None,
        keep=body.get("keep") or None,
    )
    return {"success": True, "purged": n}


# --------------------------------------------------------------------------- messages


@route("STREAM.MSG.DELETE", 1, 1, kind="stream_msg_delete_response")
def msg_delete(req: Request) -> dict:
    js = req.js
    name = req.args[0]
    if is_empty_request(req.payload):
        raise bad_request()
    body = decode(req.payload, _DELETE_REQ, _strict(js))
    _not_internal(name)
    st = _stream(js, name)
    cfg = st.config
    if cfg.sealed:
        raise ApiError(400, 10109, "invalid operation on sealed stream")
    if cfg.deny_delete:
        raise ApiError(500, 10057, "message delete not permitted")
    seq = body.get("seq") or 0
    state = st.state()
    if seq > state.last_seq:
        raise ApiError(500, 10057, "stream store EOF")
    if seq < max(state.first_seq, 1):  # 0, or before the first message
        raise ApiError(500, 10057, "no message found")
    st.delete(seq)  # a gap between first and last: SeqNotFound, 400/10043
    return {"success": True}


def _find_msg(st: Any, body: dict) -> Any:
    """The message a MSG.GET/DIRECT.GET body names (MsgNotFound when none)."""
    seq = body.get("seq") or 0
    nxt = body.get("next_by_subj") or ""
    last = body.get("last_by_subj") or ""
    start = body.get("start_time")
    if start:
        when = parse_rfc3339(start)
        for msg in st.iter(seq, nxt or None):
            if msg.ts_ns >= when:
                return msg
        raise MsgNotFound()
    if nxt:
        return st.next_msg(seq, nxt)
    if seq:
        return st.get(seq)
    return st.last(last)


@route("STREAM.MSG.GET", 1, 1, kind="stream_msg_get_response")
def msg_get(req: Request) -> dict:
    js = req.js
    if is_empty_request(req.payload):
        raise bad_request()
    body = decode(req.payload, GET_REQ, _strict(js))
    seq = body.get("seq") or 0
    last = body.get("last_by_subj") or ""
    nxt = body.get("next_by_subj") or ""
    start = body.get("start_time")
    if (seq and last) or (not seq and not last and not nxt and not start) or (last and nxt):
        raise bad_request()
    if body.get("batch") or body.get("multi_last") or (start and (seq or last)):
        raise bad_request()  # batches are DIRECT.GET's, not MSG.GET's
    st = _stream(js, req.args[0])
    msg = _find_msg(st, body)
    out: dict[str, Any] = {"subject": msg.subject, "seq": msg.seq}
    if msg.headers:
        out["hdrs"] = base64.b64encode(msg.headers).decode()
    if msg.payload:
        out["data"] = base64.b64encode(msg.payload).decode()
    out["time"] = rfc3339(msg.ts_ns)
    return {"message": out}


def _status(code: int, text: str) -> bytes:
    return f"NATS/1.0 {code} {text}\r\n\r\n".encode()


def direct_headers(name: str, msg: Any, *extra: tuple[str, Any]) -> bytes:
    """The stored headers, then Nats-Stream/-Subject/-Sequence/-Time-Stamp (the order
    nats-server writes them in a direct get reply), then ``extra`` (a batch's)."""
    lines = b""
    if msg.headers:
        block = msg.headers
        start = block.find(b"\r\n")
        end = block.rfind(b"\r\n\r\n")
        if 0 <= start < end:
            lines = block[start + 2 : end + 2]
    more = "".join(f"{k}: {v}\r\n" for k, v in extra)
    return (
        b"NATS/1.0\r\n"
        + lines
        + (
            f"Nats-Stream: {name}\r\nNats-Subject: {msg.subject}\r\n"
            f"Nats-Sequence: {msg.seq}\r\nNats-Time-Stamp: {rfc3339(msg.ts_ns)}\r\n{more}\r\n"
        ).encode()
    )


@route("DIRECT.GET", 1, None, kind="direct_get")
def direct_get(req: Request) -> None:
    """``$JS.API.DIRECT.GET.<stream>`` (a body) and ``...<stream>.<subject>`` (the last
    message on that subject, no body): the raw message, or a 404/408 status; with
    ``batch`` or ``multi_last``, several messages and a ``204 EOB``. Only streams with
    ``allow_direct`` have responders (``capture.sync``)."""
    js = req.js
    # Not an API request to nats-server (a stream answers it, not the API handler):
    # $JS.API.INFO's "total" leaves direct gets out, so take back the dispatcher's count.
    js.api_total -= 1
    name = req.args[0]
    try:
        st = _stream(js, name)
    except StreamNotFound:
        return None
    if not st.config.allow_direct:
        return None  # no responder of its own (the engine's old catch-all delivered it)
    for headers, payload in _direct_answer(st, req):
        req.respond(payload, headers)
    return None


Reply = list[tuple[bytes, bytes]]


def direct_get_last(js: JetStream, name: str, subject: str, reply: str | None, hdrs, payload):
    """``$JS.API.DIRECT.GET.<name>.<subject>`` (a KV get) from its own subscription
    (``capture.sync``), as deferred work: what ``direct_get`` answers, without the
    dispatcher's subject split, route lookup and request object (a KV get's latency is
    mostly this path's Python). Anything unexpected goes through ``api.handle``."""
    try:
        st = _stream(js, name)
    except StreamNotFound:
        return  # as direct_get: no answer
    try:
        if not st.config.allow_direct:
            return
        if payload.strip():
            answer: tuple[bytes, bytes] = (_status(408, "Bad Request"), b"")
        else:
            last = subject[len("$JS.API.DIRECT.GET.") + len(name) + 1 :]
            try:
                msg = st.last(last)
            except StoreError:
                answer = (_status(404, "Message Not Found"), b"")
            else:
                answer = (direct_headers(st.config.name, msg), msg.payload)
    except Exception:
        api.handle(js, subject, reply, hdrs, payload)  # its error envelope and log
        return
    if reply:
        js.reply(reply, answer[1], answer[0])


def _direct_answer(st: Any, req: Request) -> Reply:
    """The (headers, payload) replies of a direct get, in order."""
    data = req.payload.strip()
    if len(req.args) > 1:
        if data:
            return [(_status(408, "Bad Request"), b"")]
        body = {"last_by_subj": ".".join(req.args[1:])}
    else:
        if not data:
            return [(_status(408, "Empty Request"), b"")]
        try:
            body = decode(data, GET_REQ, False)
        except ApiError:
            return [(_status(408, "Malformed Request"), b"")]
        seq = body.get("seq") or 0
        last = body.get("last_by_subj") or ""
        nxt = body.get("next_by_subj") or ""
        if (seq and last) or (last and nxt) or (last and body.get("batch")):
            return [(_status(408, "Bad Request"), b"")]
        if body.get("multi_last"):
            return _direct_multi_last(st, body)
        if not seq and not last and not nxt and not body.get("start_time"):
            return [(_status(408, "Empty Request"), b"")]
        if body.get("batch"):
            return _direct_batch(st, body)
    try:
        msg = _find_msg(st, body)
    except StoreError:
        return [(_status(404, "Message Not Found"), b"")]
    return [(direct_headers(st.config.name, msg), msg.payload)]


def _batch_replies(st: Any, msgs: list, pending: Callable[[int, Any], int]) -> Reply:
    out: Reply = []
    prev = 0
    for i, msg in enumerate(msgs):
        extra = (("Nats-Num-Pending", pending(i, msg)), ("Nats-Last-Sequence", prev))
        out.append((direct_headers(st.config.name, msg, *extra), msg.payload))
        prev = msg.seq
    return out


def _direct_batch(st: Any, body: dict) -> Reply:
    """``batch``: up to that many messages from ``seq`` (or ``start_time``) matching
    ``next_by_subj``, each with ``Nats-Num-Pending`` (what matches after it) and
    ``Nats-Last-Sequence`` (the one sent before it), then ``204 EOB``. ``max_bytes``
    ends the batch once the messages sent reach it (subject, headers and payload
    counted, as a live nats-server 2.15 does)."""
    flt = body.get("next_by_subj") or None
    try:
        first = _find_msg(st, body)
    except StoreError:
        return [(_status(404, "Message Not Found"), b"")]
    limit, max_bytes = body["batch"], body.get("max_bytes") or 0
    msgs, size = [first], _size(first)
    for msg in st.iter(first.seq + 1, flt):
        if len(msgs) >= limit or (max_bytes and size >= max_bytes):
            break
        msgs.append(msg)
        size += _size(msg)
    out = _batch_replies(st, msgs, lambda _i, m: st.count_after(m.seq, flt))
    left = st.count_after(msgs[-1].seq, flt)
    eob = f"NATS/1.0 204 EOB\r\nNats-Num-Pending: {left}\r\nNats-Last-Sequence: {msgs[-1].seq}\r\n\r\n"
    out.append((eob.encode(), b""))
    return out


def _size(msg: Any) -> int:
    return len(msg.subject) + len(msg.headers or b"") + len(msg.payload)


def _direct_multi_last(st: Any, body: dict) -> Reply:
    """``multi_last``: the last message of every subject the filters match (at or before
    ``up_to_seq``/``up_to_time``), in stream order, then ``204 EOB`` with
    ``Nats-UpTo-Sequence``; ``404 No Results`` when there is none."""
    up_to = body.get("up_to_seq") or st.state().last_seq
    up_to_ns = parse_rfc3339(body["up_to_time"]) if body.get("up_to_time") else None
    found: dict[int, Any] = {}
    for flt in body["multi_last"]:
        for subject in st.subjects(flt or None):
            msg = _last_before(st, subject, up_to, up_to_ns)
            if msg is not None:
                found[msg.seq] = msg
    msgs = [found[seq] for seq in sorted(found)][: body.get("batch") or None]
    if not msgs:
        return [(_status(404, "No Results"), b"")]
    out = _batch_replies(st, msgs, lambda i, _m: len(msgs) - i - 1)
    eob = (
        f"NATS/1.0 204 EOB\r\nNats-Num-Pending: 0\r\nNats-Last-Sequence: {msgs[-1].seq}\r\n"
        f"Nats-UpTo-Sequence: {up_to}\r\n\r\n"
    )
    out.append((eob.encode(), b""))
    return out


def _last_before(st: Any, subject: str, up_to: int, up_to_ns: int | None) -> Any:
    """The newest message on ``subject`` at or before ``up_to`` (and ``up_to_ns``)."""
    msg = st.last(subject)
    if msg.seq <= up_to and (up_to_ns is None or msg.ts_ns <= up_to_ns):
        return msg
    best = None
    for m in st.iter(0, subject):
        if m.seq > up_to or (up_to_ns is not None and m.ts_ns > up_to_ns):
            break
        best = m
    return best
