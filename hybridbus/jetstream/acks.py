"""The ack protocol: publishes to ``$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>``.

The reply subject of every delivery (v1, nine tokens; the v2 form with a domain and an
account hash, eleven or more, is understood too). The body says what to do (nats-server
``processAck``):

- empty, ``+ACK``, ``+OK``: acknowledged (ack policy ``all``: with everything before it);
- ``-NAK``: redeliver now; ``-NAK {"delay": <ns>}`` or ``-NAK <Go duration>``: after that;
- ``+WPI``: still working, the ack wait starts again;
- ``+TERM [reason]``: never redeliver;
- ``+NXT [pull request]``: acknowledged, then a pull request with the ack's reply as its
  inbox (pull consumers);
- anything else: ignored.

An ack sent as a request (nats-py ``ack_sync``) gets an empty reply, whatever it was,
even a second ack of the same message; ``+NXT`` answers with messages instead. An ack
to a consumer that does not exist, that takes no acks (``ack_policy: none``) or to a
malformed subject reaches no subscriber on nats-server; here the engine answers such a
request with the same ``503`` no-responders status.

Acks are applied at once, inside ``Server.route`` (they change only the store, which is
safe there): a publisher's read of 500 acks is 500 cheap calls, no deferred work per
ack. What sends (replies, a pump freed by an ack) is deferred.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

from hybridbus.jetstream.runtime import no_responders, status

if TYPE_CHECKING:
    from hybridbus.jetstream.engine import JetStream

_GO_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


def go_duration(text: str) -> float | None:
    """Seconds of a Go duration string ("1.5s", "300ms", "1m30s"); None if it is not one."""
    text = text.strip()
    sign = 1.0
    if text[:1] in "+-" and text:
        sign = -1.0 if text[0] == "-" else 1.0
        text = text[1:]
    if text == "0":
        return 0.0
    pos, total = 0, 0.0
    for m in _GO_DURATION.finditer(text):
        if m.start() != pos:
            return None
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(text) or pos == 0:
        return None
    return sign * total


def nak_delay(arg: bytes) -> float:
    """The delay of ``-NAK <arg>`` in seconds; 0 (redeliver now) when absent or bad, as
    nats-server treats a bad value as a plain NAK."""
    arg = arg.strip()
    if not arg:
        return 0.0
    if arg[:1] == b"{":
        try:
            d = json.loads(arg).get("delay", 0)
            return float(d) / 1e9 if isinstance(d, (int, float)) else 0.0
        except (ValueError, AttributeError, UnicodeDecodeError):
            return 0.0
    try:
        d = go_duration(arg.decode())
    except UnicodeDecodeError:
        return 0.0
    return d if d and d > 0 else 0.0


def _nobody(js: JetStream, subject: str, reply: str | None) -> None:
    if reply:
        js.later(js.reply, reply, b"", no_responders(subject))


def ack_handler(js: JetStream):
    """The engine's handler of ``$JS.ACK.>`` (runs inside Server.route)."""
    by_key = js.consumers.by_key
    later = js.later

    def on_ack(subject: str, reply: str | None, headers, payload: bytes, _mqtt=None) -> None:
        # hot path: one split, one dict lookup, one store call per ack.
        parts = subject.split(".")
        n = len(parts)
        if n == 9:
            key = (parts[2], parts[3])
            seq_token = parts[5]
        elif n >= 11:
            key = (parts[4], parts[5])
            seq_token = parts[7]
        else:
            _nobody(js, subject, reply)
            return
        rt = by_key.get(key)
        if rt is not None:
            c = rt.c
            st = c.stream
            if st._closed or st._consumers.get(key[1]) is not c:
                rt = js.consumers.find(key[0], key[1])  # drops the stale runtime
        if rt is None or rt.ack_none:
            _nobody(js, subject, reply)
            return
        try:
            seq = int(seq_token)
        except ValueError:
            _nobody(js, subject, reply)
            return
        c = rt.c
        rt.last_activity = rt.loop.time()  # nats-server suppressDeletion
        if not payload or payload == b"+ACK" or payload == b"+OK":
            if seq <= c._sseq:  # nats-server ignores an ack past what it delivered
                c.ack(seq)
            if rt.ack_stalled:
                rt.after_ack()
            if reply:
                later(js.reply, reply, b"")
            return
        _other(js, rt, c, seq, subject, reply, payload)

    return on_ack


def ack_run_handler(js: JetStream):
    """The ``$JS.ACK.>`` subscription's ``on_acks``: ``on_ack(s, None, None, b"")`` for
    each subject of a read's run of plain acks without a reply (``Server.route_acks``).
    The consumer is looked up once per run of acks to it, its acks are applied in one
    call (``ConsumerImpl.ack_many``) and its runtime is told once; a malformed subject
    or an unknown consumer is skipped, as ``on_ack`` skips it when nobody asks for an
    answer."""
    by_key = js.consumers.by_key

    def on_acks(subjects: list[str]) -> None:
        # hot path: one split and one int() per ack, as on_ack.
        stream = name = None
        rt = None
        sseq = 0
        seqs: list[int] = []
        touched = False  # rt had an ack with a sequence (on_ack's last_activity)
        for subject in subjects:
            parts = subject.split(".")
            n = len(parts)
            if n == 9:
                st, cn, token = parts[2], parts[3], parts[5]
            elif n >= 11:
                st, cn, token = parts[4], parts[5], parts[7]
            else:
                continue
            if cn != name or st != stream:
                if touched:
                    _settle(rt, seqs)
                    seqs = []
                    touched = False
                stream, name = st, cn
                rt = _live(js, by_key, st, cn)
                if rt is not None:
                    sseq = rt.c._sseq  # acks do not move it
            if rt is None:
                continue
            try:
                seq = int(token)
            except ValueError:
                continue
            touched = True
            if seq <= sseq:  # nats-server ignores an ack past what it delivered
                seqs.append(seq)
        if touched:
            _settle(rt, seqs)

    return on_acks


def _live(js: JetStream, by_key: dict, stream: str, name: str):
    """The runtime acks to ``stream`` > ``name`` reach (as on_ack finds it), or None."""
    rt = by_key.get((stream, name))
    if rt is not None:
        c = rt.c
        st = c.stream
        if st._closed or st._consumers.get(name) is not c:
            rt = js.consumers.find(stream, name)  # drops the stale runtime
    if rt is None or rt.ack_none:
        return None
    return rt


def _settle(rt, seqs: list[int]) -> None:
    rt.last_activity = rt.loop.time()  # nats-server suppressDeletion
    if seqs:
        rt.c.ack_many(seqs)
    if rt.ack_stalled:
        rt.after_ack()


def _other(js: JetStream, rt, c, seq: int, subject: str, reply: str | None, payload: bytes) -> None:
    """Every body but a plain ack."""
    answered = False
    head = payload[:4]
    if head == b"-NAK":
        delay = nak_delay(payload[4:])
        if c.nak(seq, delay):
            if delay > 0:
                rt.wake_at(rt.loop.time() + delay + 0.001)
            elif rt.has_receiver():
                rt.kick()
    elif payload == b"+WPI":
        c.in_progress(seq)
    elif payload[:5] == b"+TERM":
        c.term(seq)
        rt.after_ack()
    elif head == b"+NXT":
        if seq <= c._sseq:
            c.ack(seq)
        rt.after_ack()
        if reply:
            answered = True
            if rt.pull:
                js.later(rt.request, reply, payload[4:])
            else:  # nats-server processNextMsgRequest on a push consumer
                js.later(js.reply, reply, b"", status(409, "Consumer is push based"))
    if reply and not answered:
        js.later(js.reply, reply, b"")


def on_flow_control(js: JetStream, subject: str) -> None:
    """A reply to a ``100 FlowControl Request``: ``$JS.FC.<stream>.<consumer>.<rand>``."""
    parts = subject.split(".")
    if len(parts) != 5:
        return
    rt = js.consumers.find(parts[2], parts[3])
    if rt is not None and not rt.pull:
        rt.flow_control_reply(subject)
