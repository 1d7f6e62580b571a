"""Publishing into streams: a publish whose subject a stream captures is stored.

Each user stream's subjects are subscriptions of the engine (``sync``); internal
``$MQTT_*`` streams are written by the MQTT layer directly and never captured. The
append happens inside ``Server.route`` (so an MQTT publisher's ack can wait for it,
see ``_store_mqtt``); the PubAck goes to the publish's reply once the store calls
``on_durable``, as deferred work. Headers drive the checks in nats-server's order
(``processJetStreamMsg``): the store's ``append`` does the expectations, dedup and
rollups and raises the error the PubAck carries.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from hybridbus.jetstream.engine import is_internal
from hybridbus.router.sublist import Sublist
from hybridbus.store.api import decode_headers
from hybridbus.store.errors import StoreError

if TYPE_CHECKING:
    from hybridbus.jetstream.engine import InternalSub, JetStream

log = logging.getLogger("hybridbus.jetstream")


def start(js: JetStream) -> None:
    for stream in js.store.streams():
        sync(js, stream)


def sync(js: JetStream, stream: Any) -> None:
    """(Re)subscribe ``stream``'s subjects after a create, update or start-up."""
    drop(js, stream.config.name)
    if is_internal(stream.config.name) or stream.config.extra.get("mirror"):
        return  # a mirror takes no publishes (mirror.py fills it)
    name = stream.config.name
    subs: list[InternalSub] = []
    index = _index(js)
    for subject in stream.config.subjects:
        sub = js.subscribe(subject, _handler(js, name))
        index.sublist.insert(sub)
        subs.append(sub)
    js.captures[name] = subs


def drop(js: JetStream, name: str) -> None:
    index = _index(js)
    for sub in js.captures.pop(name, ()):
        js.unsubscribe(sub)
        index.sublist.remove(sub)


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


def pub_ack(stream: str, seq: int, duplicate: bool = False, domain: str | None = None) -> dict:
    ack: dict[str, Any] = {"stream": stream, "seq": seq}
    if domain:
        ack["domain"] = domain
    if duplicate:
        ack["duplicate"] = True
    return ack


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
    try:
        stream = js.store.stream(name)
    except StoreError:
        return
    domain = js.hub.options.jetstream.domain
    kw: dict[str, Any] = {}
    if headers:
        hdrs = decode_headers(headers)
        expected = _one(hdrs, "Nats-Expected-Stream")
        if expected is not None and expected != name:
            _refuse(js, reply, name, "expected stream does not match", 400, 10060)
            return
        kw = _expectations(hdrs)
    if mqtt_msg is not None and js.hub.mqtt is not None:
        _store_mqtt(js, stream, subject, headers, payload, mqtt_msg, kw)
        return
    try:
        if reply is None:
            stream.append(subject, payload, headers, **kw)
            if not stream.was_duplicate:
                _stored(js, name, subject, headers, payload)
            return
        seq_box: list[int] = []

        def durable(seq: int, err: BaseException | None) -> None:
            if err is not None:
                js.later(js.reply, reply, pub_error(name, _as_store_error(err)))
            else:
                js.later(js.reply, reply, pub_ack(name, seq_box[0] if seq_box else seq, False, domain))

        seq = stream.append(subject, payload, headers, on_durable=durable, **kw)
        if stream.was_duplicate:
            js.later(js.reply, reply, pub_ack(name, seq, True, domain))
        else:
            _stored(js, name, subject, headers, payload)
        seq_box.append(seq)
    except StoreError as err:
        if reply is not None:
            js.later(js.reply, reply, pub_error(name, err))


def _store_mqtt(js: JetStream, stream, subject, headers, payload, mqtt_msg, kw) -> None:
    """An MQTT PUBLISH: its PUBACK/PUBREC is its ack. The broker joins the append to
    the publisher's durability ticket (MqttBroker.capture): the ack waits until the
    message is durable here, and a refusal becomes its MQTT 5 reason code. No PubAck
    goes to the reply, which is the Response Topic of an MQTT 5 request."""

    def append(on_durable, msg_id: str | None) -> int:
        if msg_id is not None and "msg_id" not in kw:
            kw["msg_id"] = msg_id  # a QoS 2 message routed again after a crash
        return stream.append(subject, payload, headers, on_durable=on_durable, **kw)

    try:
        js.hub.mqtt.capture(mqtt_msg, append)
    except StoreError as err:
        log.info("stream %s refused an MQTT message on %r: %s", stream.name, subject, err)
        return
    if not stream.was_duplicate:
        _stored(js, stream.name, subject, headers, payload)


def _stored(js: JetStream, name: str, subject: str, headers, payload: bytes) -> None:
    """A publish is in stream `name`: the MQTT retained_kv bucket turns it into a
    retained message (retained_kv.py)."""
    kv = getattr(js, "retained_kv", None)
    if kv is not None and kv.stream_name == name:
        kv.stored(subject, headers, payload)


def _refuse(js: JetStream, reply: str | None, name: str, text: str, code: int, err_code: int):
    if reply is not None:
        from hybridbus.jetstream.api import ApiError

        js.later(js.reply, reply, pub_error(name, ApiError(code, err_code, text)))


def _as_store_error(err: BaseException) -> StoreError:
    if isinstance(err, StoreError):
        return err
    return StoreError(str(err) or "stream store failed")


def _one(hdrs: dict[str, list[str]], key: str) -> str | None:
    values = hdrs.get(key)
    return values[-1] if values else None


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None


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
        kw["rollup"] = rollup
    return kw
