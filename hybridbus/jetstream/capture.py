"""Publishing into streams: a publish whose subject a stream captures is stored.

Each user stream's subjects are subscriptions of the engine (``sync``); internal
``$MQTT_*`` streams are written by the MQTT layer directly and never captured, and a
mirror takes no publishes. ``sync`` also keeps a stream's direct-get responders
(``$JS.API.DIRECT.GET.<stream>`` and ``.<stream>.>``): they exist only while the
stream has ``allow_direct``, so a direct get on any other stream finds no responders
(the 503 nats-server gives).

The append happens inside ``Server.route`` (so an MQTT publisher's ack can wait for it,
see ``_store_mqtt``); the PubAck goes to the publish's reply once the store calls
``on_durable``, as deferred work, and only then, duplicates included (their PubAck
names the original sequence). Headers drive the checks in nats-server's order
(``processJetStreamMsg``): ``Nats-Expected-Stream`` (10060) and ``Nats-TTL`` (10166
without ``allow_msg_ttl``, 10165 for a bad value) here, then the store's ``append``:
sealed (10109), expected last subject sequence and last sequence (10071), the msg-id
duplicate window, expected last msg id (10070), rollups (10111), size (10054),
discard-new limits (10077). A publish without a reply is stored silently; a stream with
``no_ack`` never answers.
"""

from __future__ import annotations

import functools
import json
import logging
from itertools import repeat
from typing import TYPE_CHECKING, Any

from hybridbus.jetstream import api, republish
from hybridbus.jetstream.api import ApiError
from hybridbus.jetstream.engine import is_internal
from hybridbus.router.sublist import Sublist
from hybridbus.store.api import decode_headers
from hybridbus.store.errors import StoreError, WrongLastSequence
from hybridbus.store.ttl import TTL_HEADER, parse_ttl

if TYPE_CHECKING:
    from collections.abc import Sequence

    from hybridbus.jetstream.engine import InternalSub, JetStream

log = logging.getLogger("hybridbus.jetstream")


def start(js: JetStream) -> None:
    for stream in js.store.streams():
        sync(js, stream)


def sync(js: JetStream, stream: Any) -> None:
    """(Re)subscribe ``stream``'s subjects and direct-get responders after a create,
    update or start-up."""
    name = stream.config.name
    drop(js, name)
    if stream.config.allow_direct:
        on_direct = _direct_handler(js)
        _directs(js)[name] = [
            js.subscribe(f"$JS.API.DIRECT.GET.{name}", on_direct),
            js.subscribe(f"$JS.API.DIRECT.GET.{name}.>", _direct_last_handler(js, name)),
        ]
    if is_internal(name) or stream.config.extra.get("mirror"):
        return  # a mirror takes no publishes (mirror.py fills it)
    subs: list[InternalSub] = []
    index = _index(js)
    on_requests = _requests_handler(js, name)
    for subject in stream.config.subjects:
        sub = js.subscribe(subject, _handler(js, name))
        sub.on_requests = on_requests
        index.sublist.insert(sub)
        subs.append(sub)
    js.captures[name] = subs


def drop(js: JetStream, name: str) -> None:
    index = _index(js)
    for sub in js.captures.pop(name, ()):
        js.unsubscribe(sub)
        index.sublist.remove(sub)
    for sub in _directs(js).pop(name, ()):
        js.unsubscribe(sub)


def _directs(js: JetStream) -> dict[str, list[InternalSub]]:
    """Stream name -> its two direct-get subscriptions (allow_direct streams only)."""
    directs = getattr(js, "direct_subs", None)
    if directs is None:
        directs = js.direct_subs = {}
    return directs


def _direct_handler(js: JetStream):
    def on_direct(subject, reply, headers, payload, _mqtt_msg) -> None:
        api.on_request(js, subject, reply, headers, payload)

    return on_direct


def _direct_last_handler(js: JetStream, name: str):
    """A direct get by subject (KV get) skips the API dispatcher: streams.direct_get_last."""
    from hybridbus.jetstream import streams

    get_last = streams.direct_get_last

    def on_direct_last(subject, reply, headers, payload, _mqtt_msg) -> None:
        js.later(get_last, js, name, subject, reply, headers, payload)

    return on_direct_last


class CaptureIndex:
    """The subjects streams capture, for ``covers``: the MQTT layer asks it before it
    routes a run of QoS 0/1 PUBLISHes in one go (handle_publish_run). A captured
    message needs an append and an ack of its own (a stream may refuse the third of
    a run and take the rest), so such a run is handled one PUBLISH at a time."""

    def __init__(self) -> None:
        self.sublist = Sublist()

    def covers(self, subject: str) -> bool:
        return bool(self.sublist.match(subject).plain)


def _index(js: JetStream) -> CaptureIndex:
    index = getattr(js, "capture_index", None)
    if index is None:
        index = js.capture_index = CaptureIndex()
    return index


def _handler(js: JetStream, name: str):
    def on_publish(subject, reply, headers, payload, mqtt_msg) -> None:
        store_publish(js, name, subject, reply, headers, payload, mqtt_msg)

    return on_publish


def _requests_handler(js: JetStream, name: str):
    """``on_requests``: a read's run of plain requests to one subject
    (``Server.route_requests``) joins the read's batch for the stream as
    ``store_publish`` adds each plain publish, in one call."""

    def on_requests(subject: str, replies: Sequence[str], payloads: Sequence[bytes]) -> None:
        _batch(js, name).extend(zip(repeat(subject), replies, payloads))

    return on_requests


def pub_ack(stream: str, seq: int, duplicate: bool = False, domain: str | None = None) -> bytes:
    """The PubAck, byte for byte as nats-server writes it (its template, then the
    sequence; ``"duplicate": true`` with the space)."""
    name = json.dumps(stream)
    head = f'{{"stream":{name},"domain":{json.dumps(domain)},' if domain else f'{{"stream":{name},'
    tail = ',"duplicate": true}' if duplicate else "}"
    return f'{head}"seq":{seq}{tail}'.encode()


def pub_error(stream: str, err: StoreError) -> dict:
    return {"error": err.to_error(), "stream": stream, "seq": 0}


def store_publish(
    js: JetStream,
    name: str,
    subject: str,
    reply: str | None,
    headers: bytes | None,
    payload: bytes,
    mqtt_msg: Any,
) -> None:
    """Append one captured publish; answer ``reply`` with the PubAck once durable."""
    if headers is None and mqtt_msg is None:
        _batch(js, name).append((subject, reply, payload))
        return
    _append_batch(js, name)  # the read's earlier publishes to this stream go first
    try:
        stream = js.store.stream(name)
    except StoreError:
        return
    if stream.config.no_ack:
        reply = None  # nats-server sends no PubAck for a no_ack stream
    rp = _rules_for(stream, subject, js)
    if rp is not None:
        subject = rp[2]  # the subject transform comes first (processJetStreamMsg)
    kw: dict[str, Any] = {}
    if headers:
        try:
            kw = _header_checks(stream, subject, decode_headers(headers), mqtt_msg is None)
        except StoreError as err:
            if mqtt_msg is not None and js.account.mqtt is not None:
                _refuse_mqtt(js, mqtt_msg, err)
            elif reply is not None:
                _refuse(js, stream, reply, pub_error(name, err))
            return
    if mqtt_msg is not None and js.account.mqtt is not None:
        _store_mqtt(js, stream, subject, headers, payload, mqtt_msg, kw, rp)
        return
    if reply is None:
        try:
            seq = stream.append(subject, payload, headers, **kw)
        except StoreError:
            return
        if not stream.was_duplicate:
            _stored(js, name, subject, headers, payload)
            if rp is not None and rp[0].rp is not None:
                republish.republish(js, stream, rp[0], seq, rp[1])
        return
    _append_with_ack(js, stream, subject, reply, headers, payload, kw, rp)


def _rules_for(stream: Any, subject: str, js: JetStream) -> tuple | None:
    """``(rules, last sequence on the stored subject, stored subject)`` for a stream
    with a subject transform or republish (republish.py), None for any other. The last
    sequence is read before the append, for the republish's Nats-Last-Sequence."""
    r = republish.rules(js, stream)
    if r is None:
        return None
    subject = r.transform(subject)
    last = republish.last_seq(stream, subject) if r.republishes(subject) else 0
    return r, last, subject


def _batches(js: JetStream) -> dict[str, list]:
    """Stream name -> the plain publishes (``(subject, reply, payload)``) captured in
    the current read and not appended yet (``_append_batch``)."""
    batches = getattr(js, "pub_batches", None)
    if batches is None:
        batches = js.pub_batches = {}
    return batches


def _batch(js: JetStream, name: str) -> list:
    """The read's batch of plain publishes to stream ``name``; the first one of a read
    also queues the batch's append (``_append_batch``, deferred work)."""
    batches = _batches(js)
    batch = batches.get(name)
    if batch is None:
        batches[name] = batch = []
        js.later(_append_batch, js, name, True)
    return batch


def _append_batch(js: JetStream, name: str, deferred: bool = False) -> None:
    """Append the read's plain publishes to stream ``name`` (no headers, not MQTT), in
    order, and send their PubAcks once all are durable.

    As deferred work (``deferred``: not inside ``Server.route``, where a header or MQTT
    publish appends the batch before its own) the stream is written at once
    (``write_now``) and, under the interval policy, the PubAcks go out in the same
    flush as the read: a KV put's round trip had waited three turns of the loop (the
    store's flush, the PubAck's deferred work, the client's flush).

    Why batched: per publish, a checked append, two closures, a durability callback
    and a deferred call cost more than the append itself (the js_publish profile). A
    read's plain publishes are kept (``store_publish``) and appended together by
    deferred work at the end of the read (``Server.flush`` runs it), with one
    durability registration; the PubAcks share one prefix. Order is kept: any other
    publish to the stream (headers, MQTT) appends the batch first, and everything else
    that reads or changes streams (API requests, pulls) is deferred work queued after
    this. Each publish keeps its own outcome: a refused one gets its error PubAck."""
    items = _batches(js).pop(name, None)
    if not items:
        return
    try:
        stream = js.store.stream(name)
    except StoreError:
        return
    r = republish.rules(js, stream)
    if r is not None and r.tr is not None:  # store under the transformed subjects
        items = [(r.transform(subject), reply, payload) for subject, reply, payload in items]
    results: list = []
    i, n = 0, len(items)
    while i < n:  # runs of one subject (usually the whole batch)
        subject = items[i][0]
        j = i + 1
        while j < n and items[j][0] == subject:
            j += 1
        if r is not None and r.republishes(subject):
            results += _append_republished(js, stream, r, subject, items[i:j])
        else:
            results += stream.append_each(subject, [item[2] for item in items[i:j]])
        i = j
    kv = getattr(js, "retained_kv", None)
    if kv is not None and kv.stream_name == name:
        for (subject, _reply, payload), res in zip(items, results, strict=True):
            if res.__class__ is int:
                kv.stored(subject, None, payload)
    if stream.config.no_ack:
        return  # nats-server sends no PubAck for a no_ack stream
    domain = js.hub.options.jetstream.domain
    # While write_now runs durable() may send at once, unless an earlier publish's ack
    # still waits for the store (this one must not overtake it).
    inline = deferred and not stream.durable_pending()

    def durable(_seq: int, err: BaseException | None) -> None:
        if inline:
            _send_acks(js, name, domain, items, results, err)
        else:
            js.later(_send_acks, js, name, domain, items, results, err)

    stream.when_durable(durable)
    if inline:
        stream.write_now()
        inline = False


def _append_republished(js: JetStream, stream: Any, r: Any, subject: str, run: list) -> list:
    """``append_each`` for a run of one subject the stream republishes: each stored
    message is republished with the previous one on the subject as its last sequence."""
    last = republish.last_seq(stream, subject)
    results = stream.append_each(subject, [item[2] for item in run])
    for res in results:
        if res.__class__ is int:
            republish.republish(js, stream, r, res, last)
            last = res
    return results


@functools.lru_cache(maxsize=256)
def _ack_head(name: str, domain: str | None) -> bytes:
    """A PubAck up to its sequence (json.dumps of the names once per stream, not per
    batch: a KV put is a batch of one)."""
    return pub_ack(name, 0, False, domain)[: -len(b'"seq":0}')]


def _send_acks(js: JetStream, name: str, domain, items: list, results: list, err) -> None:
    """A batch is durable (or its write failed: ``err``): one PubAck per publish with a
    reply, in order."""
    head = _ack_head(name, domain)
    acks: list[tuple[str, bytes]] = []
    for (_subject, reply, _payload), res in zip(items, results, strict=True):
        if reply is None:
            continue
        if err is None and res.__class__ is int:
            acks.append((reply, b'%s"seq":%d}' % (head, res)))
        else:
            if acks:
                _route_acks(js, acks)
                acks = []
            js.reply(reply, pub_error(name, _as_store_error(err or res)))
    if acks:
        _route_acks(js, acks)


def _route_acks(js: JetStream, acks: list[tuple[str, bytes]]) -> None:
    """``route(js, reply, None, None, body)`` for each PubAck, in order.

    Why not one route each: a publisher's PubAcks go to one inbox subscription, each to
    its own reply subject, which the router's cache misses every time, and routing
    them one by one was the largest part of an acked publish (js_publish profile). The
    replies are matched together (``Sublist.match_each``: one lookup each under one
    open head) and a run that reaches one NATS subscription alone goes to it in one
    ``deliver_each``, the same frames and counters as ``deliver``. Anything else
    (several receivers, queue groups, MQTT, mappings) is routed as before."""
    hub = js.hub
    route = hub.route
    if js.account.mappings is not None:
        for reply, body in acks:
            route(js, reply, None, None, body)
        return
    sl = js.sublist
    genid = sl.genid
    results = sl.match_each([reply for reply, _body in acks])
    i, n = 0, len(acks)
    while i < n:
        r = results[i]
        plain = r.plain
        each = getattr(plain[0].client, "deliver_each", None) if len(plain) == 1 else None
        if each is None or r.queues or sl.genid != genid or plain[0].max_msgs:
            # as before: the router matches again (exact); an auto-unsubscribe limit
            # is removed by the route's round
            route(js, acks[i][0], None, None, acks[i][1])
            i += 1
            continue
        sub = plain[0]
        j = i + 1
        while j < n:
            rj = results[j]
            if rj is not r and (rj.queues or len(rj.plain) != 1 or rj.plain[0] is not sub):
                break
            j += 1
        each(sub, acks[i:j])
        hub.route_seq += j - i  # one delivery round per message, as route
        hub.work += j - i
        i = j


def _append_with_ack(js: JetStream, stream: Any, subject, reply: str, headers, payload, kw, rp):
    """Append, and send one PubAck when the store says the message is durable: the
    duplicate flag is read then (the store may call ``on_durable`` before ``append``
    returns when no loop runs), so a duplicate gets exactly one PubAck, with the
    original sequence."""
    name = stream.config.name
    domain = js.hub.options.jetstream.domain
    outcome: list[bool] = []  # [was_duplicate], set once append returns

    def durable(seq: int, err: BaseException | None) -> None:
        js.later(_ack, seq, err)

    def _ack(seq: int, err: BaseException | None) -> None:
        if err is not None:
            js.reply(reply, pub_error(name, _as_store_error(err)))
        else:
            js.reply(reply, pub_ack(name, seq, bool(outcome and outcome[0]), domain))

    try:
        seq = stream.append(subject, payload, headers, on_durable=durable, **kw)
    except StoreError as err:
        _refuse(js, stream, reply, pub_error(name, err))
        return
    outcome.append(stream.was_duplicate)
    if not stream.was_duplicate:
        _stored(js, name, subject, headers, payload)
        if rp is not None and rp[0].rp is not None:
            republish.republish(js, stream, rp[0], seq, rp[1])


def _refuse(js: JetStream, stream: Any, reply: str, body: dict) -> None:
    """A refused publish's error PubAck, after the PubAcks of the stream's earlier
    publishes: those wait for the store (``when_durable``), and nats-server answers a
    stream's publishes in order (a refusal among a read's publishes is answered in its
    place, checked against nats-server 2.15.1)."""
    if stream.durable_pending():
        stream.when_durable(lambda _seq, _err: js.later(js.reply, reply, body))
    else:
        js.later(js.reply, reply, body)


def _header_checks(stream: Any, subject: str, hdrs: dict[str, list[str]], nats: bool) -> dict:
    """The checks nats-server makes on a publish's headers before storing it (its order:
    expected stream, TTL, then the expectations the store checks); returns the
    store's keyword arguments. Raises the StoreError the PubAck carries."""
    name = stream.config.name
    expected = _one(hdrs, "Nats-Expected-Stream")
    if expected is not None and expected != name:
        raise ApiError(400, 10060, "expected stream does not match")
    ttl = _one(hdrs, TTL_HEADER)
    if ttl is not None and nats:
        if not stream.config.allow_msg_ttl:
            raise ApiError(400, 10166, "per-message TTL is disabled")
        if parse_ttl(ttl) is None:
            raise ApiError(400, 10165, "invalid per-message TTL")
    kw = _expectations(hdrs)
    # Nats-Expected-Last-Subject-Sequence-Subject: the subject (wildcards allowed) the
    # expected last subject sequence is about, instead of the publish's own subject.
    on = _one(hdrs, "Nats-Expected-Last-Subject-Sequence-Subject")
    if on and "expected_last_subject_seq" not in kw:
        raise ApiError(400, 10193, "missing sequence for expected last sequence per subject")
    if on:
        expected_seq = kw.pop("expected_last_subject_seq")
        try:
            last = stream.last(on).seq
        except StoreError:
            last = 0
        if stream.config.sealed:
            raise ApiError(400, 10109, "invalid operation on sealed stream")
        if last != expected_seq:
            raise WrongLastSequence(last)
    return kw


def _store_mqtt(js: JetStream, stream, subject, headers, payload, mqtt_msg, kw, rp) -> None:
    """An MQTT PUBLISH: its PUBACK/PUBREC is its ack. The broker joins the append to
    the publisher's durability ticket (MqttBroker.capture): the ack waits until the
    message is durable here, and a refusal becomes its MQTT 5 reason code. No PubAck
    goes to the reply, which is the Response Topic of an MQTT 5 request."""

    def append(on_durable, msg_id: str | None) -> int:
        if msg_id is not None and "msg_id" not in kw:
            kw["msg_id"] = msg_id  # a QoS 2 message routed again after a crash
        return stream.append(subject, payload, headers, on_durable=on_durable, **kw)

    try:
        seq = js.account.mqtt.capture(mqtt_msg, append)
    except StoreError as err:
        log.info("stream %s refused an MQTT message on %r: %s", stream.name, subject, err)
        return
    if not stream.was_duplicate:
        _stored(js, stream.name, subject, headers, payload)
        if rp is not None and rp[0].rp is not None:
            republish.republish(js, stream, rp[0], seq, rp[1])


def _refuse_mqtt(js: JetStream, mqtt_msg: Any, err: StoreError) -> None:
    """A header check refused an MQTT PUBLISH (a user property such as
    Nats-Expected-Stream): its ack fails as for a refusal by the store."""

    def append(_on_durable, _msg_id) -> int:
        raise err

    try:
        js.account.mqtt.capture(mqtt_msg, append)
    except StoreError:
        pass


def _stored(js: JetStream, name: str, subject: str, headers, payload: bytes) -> None:
    """A publish is in stream `name`: the MQTT retained_kv bucket turns it into a
    retained message (retained_kv.py)."""
    kv = getattr(js, "retained_kv", None)
    if kv is not None and kv.stream_name == name:
        kv.stored(subject, headers, payload)


def _as_store_error(err: BaseException) -> StoreError:
    if isinstance(err, StoreError):
        return err
    return StoreError(str(err) or "stream store failed")


def _one(hdrs: dict[str, list[str]], key: str) -> str | None:
    values = hdrs.get(key)
    return values[-1] if values else None


def _int(value: str | None) -> int | None:
    """A sequence header's value; one that is not a number can match no sequence
    (nats-server parses it to -1 and refuses the publish with 10071)."""
    if value is None:
        return None
    try:
        n = int(value)
    except ValueError:
        return -1
    return n if n >= 0 else -1


def _expectations(hdrs: dict[str, list[str]]) -> dict[str, Any]:
    kw: dict[str, Any] = {}
    msg_id = _one(hdrs, "Nats-Msg-Id")
    if msg_id:
        kw["msg_id"] = msg_id
    v = _int(_one(hdrs, "Nats-Expected-Last-Sequence"))
    if v is not None:
        kw["expected_last_seq"] = v
    v = _int(_one(hdrs, "Nats-Expected-Last-Subject-Sequence"))
    if v is not None:
        kw["expected_last_subject_seq"] = v
    last_id = _one(hdrs, "Nats-Expected-Last-Msg-Id")
    if last_id is not None:
        kw["expected_last_msg_id"] = last_id
    rollup = _one(hdrs, "Nats-Rollup")
    if rollup is not None:
        kw["rollup"] = rollup.lower()  # nats-server takes "SUB" as "sub"
    return kw
