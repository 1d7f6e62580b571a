"""MQTT retained messages as a NATS Key/Value bucket (``mqtt { retained_kv: "devices" }``).

What it gives. ``kv = await js.key_value("devices")`` in nats-py sees the retained
messages of MQTT as keys: ``kv.get("plant.k1.status")`` is the retained payload of topic
``plant/k1/status``; ``kv.put`` from a NATS service sets that topic's retained message
and is delivered live to its subscribers (a back end pushing configuration to devices);
``kv.delete``/``kv.purge`` clear it; ``kv.watch``, ``kv.keys()`` and ``kv.history()``
see the devices' updates.

One source of truth. The bucket is a real stream, ``KV_<bucket>`` with subjects
``$KV.<bucket>.>``, created at start if missing with the configuration nats-py's
``create_key_value(bucket=..., direct=True)`` sends (history 1, discard new, rollups,
deny delete, direct get), so every nats-py call (STREAM.INFO, DIRECT.GET, publishes,
ordered consumers) works on it unchanged. A bucket topic's retained message lives
there and nowhere else:

- an MQTT retained PUBLISH on a bucket topic is appended straight to the stream
  (``put``/``delete``, called by ``MqttBroker.set_retained``), joined to the
  publisher's durability ticket like the MQTT records: its PUBACK waits for it. It
  is not routed on ``$KV...``: nothing captures it again, so it reaches MQTT
  subscribers once, by the broker's own route of the PUBLISH;
- the retained replay of a SUBSCRIBE reads the stream (``match``): the last entry of
  each matching key, a delete or purge marker meaning "none". No copy is kept in
  memory, so a change made any other way (a STREAM.PURGE, a bucket TTL, the stream
  deleted) is what MQTT sees at once, and a restart has nothing to rebuild;
- a publish a stream capture stores in the bucket (nats-py ``put``/``create``/
  ``update``/``delete``/``purge``, or an MQTT client publishing on ``$KV/<bucket>/...``)
  calls ``stored``, which hands it to the broker as deferred work (``JetStream.later``:
  captures run inside ``Server.route``): a retained PUBLISH of the topic, routed live
  with RETAIN set (``MqttBroker.retained_changed``). That route is on the topic's
  subject, never ``$KV...``, so it does not come back here.

Which topics. A topic belongs to the bucket when its NATS subject is a key whose
tokens are ``[-_=A-Za-z0-9]+`` joined by single dots (``KEY_TOKENS``): the topic's
levels are non-empty and made of those characters, and ``/`` maps to ``.``
(``plant/k1/status`` <-> ``plant.k1.status``). Every other topic (a ``.``, a space,
``%``, ``$``, a non-ASCII letter, an empty level) keeps its retained message in
MQTT's own ``$MQTT_rmsgs`` and is MQTT-only. nats-py also allows ``/`` inside a key;
such keys (``a/b``) are NATS-only, since a ``/`` in a subject token reaches MQTT as
``%2F`` and the topic ``a%2Fb`` would come back as a different subject, giving one
topic two homes.

What a value carries. The payload, the MQTT 5 Content Type and User Properties as
headers (as for any MQTT message entering NATS), and ``Mqtt-Qos`` when the retained
QoS is not 1 (a value written by NATS is QoS 1, as every NATS message reaching MQTT
is). Other MQTT 5 properties of a retained message (Message Expiry, Payload Format,
Response Topic, Correlation Data) are not kept. An empty MQTT retained payload, which
clears [MQTT-3.3.1-10], is written as a ``KV-Operation: DEL`` marker; an empty value
put from NATS clears the topic's retained message too.

At start, retained messages of bucket topics that ``$MQTT_rmsgs`` holds (from before the
option was set) move into the bucket, unless the bucket has that key already.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from hybridbus.store.api import StreamConfig, decode_headers, encode_headers
from hybridbus.store.errors import MsgNotFound, StoreError, StreamNotFound
from hybridbus.subjects import filter_to_subjects, subject_to_topic, topic_to_subject

if TYPE_CHECKING:
    from hybridbus.jetstream.engine import JetStream

log = logging.getLogger("hybridbus.jetstream")

# A bucket name, as nats-py checks it (VALID_BUCKET_RE).
BUCKET_NAME = re.compile(r"[a-zA-Z0-9_-]+")
# A key shared by MQTT and NATS (module docstring): tokens of these characters.
KEY_TOKENS = re.compile(r"[-_=A-Za-z0-9]+(?:\.[-_=A-Za-z0-9]+)*")
DELETE_HEADERS = encode_headers({"KV-Operation": "DEL"})


def bucket_config(bucket: str) -> StreamConfig:
    """The stream nats-py's create_key_value(bucket=bucket, direct=True) asks for."""
    return StreamConfig(
        name=f"KV_{bucket}",
        subjects=[f"$KV.{bucket}.>"],
        max_msgs_per_subject=1,
        discard="new",
        duplicate_window=120.0,
        deny_delete=True,
        allow_rollup_hdrs=True,
        allow_direct=True,
        allow_msg_ttl=True,
    )


def is_marker(headers: dict[str, list[str]]) -> bool:
    """A delete or purge marker (nats-py KV-Operation, or a server's TTL marker)."""
    op = headers.get("KV-Operation")
    return bool(op and op[-1] in ("DEL", "PURGE")) or "Nats-Marker-Reason" in headers


class RetainedKV:
    """The bucket of ``mqtt.retained_kv``; see the module docstring."""

    def __init__(self, js: JetStream, bucket: str) -> None:
        self.js = js
        self.bucket = bucket
        self.stream_name = f"KV_{bucket}"
        self.prefix = f"$KV.{bucket}."

    # -- the stream --------------------------------------------------------------------

    def stream(self) -> Any:
        """The bucket's stream, made again (as at start) if it was deleted: a retained
        PUBLISH must have somewhere to go."""
        store = self.js.store
        try:
            return store.stream(self.stream_name)
        except StreamNotFound:
            stream = store.add_stream(bucket_config(self.bucket))
            from hybridbus.jetstream import capture

            capture.sync(self.js, stream)  # nats-py's puts are stored from now on
            log.info("Created the KV bucket %r for MQTT retained messages", self.bucket)
            return stream

    # -- the MQTT side: topics, writes, the retained replay ------------------------------

    def subject_for(self, topic: str) -> str | None:
        """``$KV.<bucket>.<key>`` for a topic of the bucket, else None (MQTT-only)."""
        subject = topic_to_subject(topic)
        if KEY_TOKENS.fullmatch(subject) is None:
            return None
        return self.prefix + subject

    def put(self, subject: str, payload: bytes, headers: bytes | None, on_durable: Any) -> int:
        """A retained MQTT message; raises the StoreError of a refusal."""
        return self.stream().append(subject, payload, headers, on_durable=on_durable)

    def delete(self, subject: str, on_durable: Any) -> int:
        """An MQTT retained message cleared: a delete marker, as nats-py's kv.delete."""
        return self.stream().append(subject, b"", DELETE_HEADERS, on_durable=on_durable)

    def has_value(self, subject: str) -> bool:
        entry = self._last(subject)
        return entry is not None and entry[0] is not None

    def match(self, topic_filter: str) -> Iterator[Any]:
        """The retained messages (MqttMessages, made by the broker) of the bucket topics
        matching an MQTT filter: each key's last entry, unless a marker or empty."""
        try:
            stream = self.js.store.stream(self.stream_name)
        except StreamNotFound:
            return
        seen: set[str] = set()
        make = self.js.account.mqtt.message_from_kv
        for flt in filter_to_subjects(topic_filter):
            for subject in stream.subjects(self.prefix + flt):
                key = subject[len(self.prefix) :]
                if subject in seen or KEY_TOKENS.fullmatch(key) is None:
                    continue
                seen.add(subject)
                entry = self._last(subject, stream)
                if entry is not None and entry[0]:
                    yield make(subject_to_topic(key), entry[0], entry[1])

    def count(self) -> int:
        """Keys in the bucket (markers included until purged): for monitoring."""
        try:
            return self.js.store.stream(self.stream_name).state().num_subjects
        except StoreError:
            return 0

    def _last(self, subject: str, stream: Any = None) -> tuple[bytes | None, bytes | None] | None:
        """(payload, headers) of the key's last entry, payload None for a marker; None
        when the key has no entry."""
        try:
            stream = stream or self.js.store.stream(self.stream_name)
            msg = stream.last(subject)
        except (MsgNotFound, StreamNotFound):
            return None
        if msg.headers and is_marker(decode_headers(msg.headers)):
            return None, msg.headers
        return msg.payload, msg.headers

    # -- the NATS side: what a capture stored --------------------------------------------

    def stored(self, subject: str, headers: bytes | None, payload: bytes) -> None:
        """A publish was stored in the bucket (capture.py, inside Server.route): the
        topic's retained message changed; MQTT subscribers get it as deferred work."""
        key = subject[len(self.prefix) :]
        if not subject.startswith(self.prefix) or KEY_TOKENS.fullmatch(key) is None:
            return  # a NATS-only key
        if headers and is_marker(decode_headers(headers)):
            payload = b""  # cleared: delivered as MQTT delivers a cleared retained topic
        mqtt = self.js.account.mqtt
        if mqtt is not None:
            self.js.later(mqtt.retained_changed, subject_to_topic(key), key, headers, payload)


def start(js: JetStream) -> None:
    """With ``mqtt.retained_kv`` set: the bucket (made if missing), joined to the broker."""
    bucket = js.hub.options.mqtt.retained_kv
    if not bucket or js.account.mqtt is None:
        return
    kv = RetainedKV(js, bucket)
    kv.stream()
    js.retained_kv = kv
    js.account.mqtt.attach_retained_kv(kv)
