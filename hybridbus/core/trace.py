"""Protocol traces (`-V`/`--trace`, `trace: true`): nats-server's [TRC] lines.

    [TRC] 127.0.0.1:5000 - cid:7 - <<- [PUB a.b 5]
    [TRC] 127.0.0.1:5000 - cid:7 - <<- MSG_PAYLOAD: ["hello"]           (trace_verbose)
    [TRC] 127.0.0.1:5001 - cid:8 - ->> [MSG a.b 1 5]
    [TRC] 127.0.0.1:5002 - mid:9 - 'dev-1' - <<- [PUBLISH topic=a/b qos=1 pid=7 len=5]
    [TRC] 127.0.0.1:5002 - mid:9 - 'dev-1' - ->> [PUBACK pid=7]

`<<-` is what a client sent, `->>` what it was sent, one line per NATS operation or
MQTT packet. Payloads appear only with `trace_verbose` (`-VV`), as Go's %q, cut at
`max_traced_msg_len` bytes when that is set; passwords and tokens never appear.

Theory of operation
-------------------
Tracing costs nothing when it is off because no code on the message path asks
whether it is on: the choice is made once per connection, when it registers with
the server (``Server.register``), by giving the connection a traced subclass of its
own class (``traced_class``). That subclass adds nothing to the object (``__slots__
= ()``) and overrides three methods around the untraced ones:

* ``data_received``: the same bytes go through a second decoder of the protocol's
  own codec (one per connection, kept here, not on the connection), and each
  operation or packet it completes is traced before the real read is handled;
* ``write_now``: the bytes about to be written are split into operations or packets
  (NATS by its lines and sizes, MQTT by a client-side decoder) and traced;
* ``on_closed``: the decoders are dropped.

The class is given in ``connection_made`` (``trace_connection``), before the first
read, and the transport is handed the protocol again, since uvloop keeps the bound
methods of the protocol it was given. Because the subclass has the same layout, a
config reload that turns tracing on or off swaps the class of every live connection
the same way (``retrace``); a decoder that starts mid-stream after such a swap may
miss the packet it joined in (it restarts on the next error). Connections that are
not ``ClientBase`` (the HTTP monitor) are never traced.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from hybridbus.codec.mqtt import MQTTParser, MQTTProtocolError
from hybridbus.codec.mqtt import packets as P
from hybridbus.codec.nats import (
    OP_CONNECT,
    OP_HPUB,
    OP_PING,
    OP_PONG,
    OP_PUB,
    OP_SUB,
    OP_UNSUB,
    Parser,
)
from hybridbus.log import TRACE

log = logging.getLogger("hybridbus.trace")

# CONNECT fields that must never reach a log (nats-server's removeSecretsFromTrace).
SECRETS = ("pass", "auth_token", "sig", "jwt")
REDACTED = "[REDACTED]"

_GO_ESCAPES = {
    7: "\\a",
    8: "\\b",
    9: "\\t",
    10: "\\n",
    11: "\\v",
    12: "\\f",
    13: "\\r",
    34: '\\"',
    92: "\\\\",
}


def go_quote_bytes(data: bytes) -> str:
    """Go's %q of a []byte: valid UTF-8 stays, control and invalid bytes are escaped."""
    out = ['"']
    for ch in data.decode("utf-8", "surrogateescape"):
        code = ord(ch)
        if code in _GO_ESCAPES:
            out.append(_GO_ESCAPES[code])
        elif 0xDC80 <= code <= 0xDCFF:  # an invalid byte, kept by surrogateescape
            out.append(f"\\x{code - 0xDC00:02x}")
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        elif not ch.isprintable():
            out.append(f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def payload_text(data: bytes, limit: int) -> str:
    """A payload as a trace shows it; `limit` > 0 cuts it, marked by "..."."""
    if limit > 0 and len(data) > limit:
        return go_quote_bytes(data[:limit])[:-1] + '..."'
    return go_quote_bytes(data)


# -- the traced subclasses ------------------------------------------------------------

# Per connection (by id): [inbound decoder, outbound decoder]; see the module docstring.
_DECODERS: dict[int, list[Any]] = {}
_TRACED: dict[type, type] = {}


class _Traced:
    """Mixed in before a connection class by ``traced_class``."""

    __slots__ = ()

    def data_received(self, data: bytes) -> None:
        try:
            trace_inbound(self, data)
        except Exception:  # a trace must never break the connection
            log.exception("tracing a read failed")
        super().data_received(data)

    def write_now(self) -> None:
        if self.out and not self.closing:
            try:
                trace_outbound(self, bytes(self.out))
            except Exception:
                log.exception("tracing a write failed")
        super().write_now()

    def on_closed(self) -> None:
        _DECODERS.pop(id(self), None)
        super().on_closed()


def traced_class(cls: type) -> type:
    """The traced subclass of a connection class (made once per class)."""
    if issubclass(cls, _Traced):
        return cls
    traced = _TRACED.get(cls)
    if traced is None:
        traced = type(f"Traced{cls.__name__}", (_Traced, cls), {"__slots__": ()})
        _TRACED[cls] = traced
    return traced


def untraced_class(cls: type) -> type:
    return cls.__mro__[2] if issubclass(cls, _Traced) else cls


def trace_connection(client: Any, on: bool) -> None:
    """Give a connection its traced (or untraced) class. Its transport is told again
    who its protocol is: uvloop keeps the protocol's bound methods (data_received)
    from the moment it was set, so the new class applies from the next read."""
    cls = type(client)
    new = traced_class(cls) if on else untraced_class(cls)
    if new is cls:
        return
    client.__class__ = new
    _DECODERS.pop(id(client), None)
    transport = client.transport
    if transport is not None and not client.closing and transport.get_protocol() is client:
        try:
            transport.set_protocol(client)
        except NotImplementedError:
            pass  # the websocket shim: it looks the protocol's methods up on every call


def retrace(clients: Any, on: bool) -> None:
    """Turn tracing on or off for live connections (a config reload)."""
    for client in clients:
        trace_connection(client, on)


# -- what is traced ----------------------------------------------------------------------


def _prefix(conn: Any) -> str:
    client_id = getattr(conn, "client_id", None)
    if client_id is None:
        return f"{conn.ip}:{conn.port} - cid:{conn.cid}"
    if client_id:
        return f"{conn.ip}:{conn.port} - mid:{conn.cid} - {client_id!r}"
    return f"{conn.ip}:{conn.port} - mid:{conn.cid}"


def _emit(conn: Any, lines: list[str]) -> None:
    if lines and log.isEnabledFor(TRACE):
        prefix = _prefix(conn)
        for line in lines:
            log.log(TRACE, "%s - %s", prefix, line)


def _decoders(conn: Any) -> list[Any]:
    state = _DECODERS.get(id(conn))
    if state is None:
        state = _DECODERS[id(conn)] = [None, None]
    return state


def _verbosity(conn: Any) -> tuple[bool, int]:
    opts = conn.server.options
    return opts.trace_verbose, opts.max_traced_msg_len


def trace_inbound(conn: Any, data: bytes) -> None:
    state = _decoders(conn)
    verbose, limit = _verbosity(conn)
    if hasattr(conn, "client_id"):
        if state[0] is None:
            state[0] = MQTTParser()
            if conn.session is not None:  # joined mid-stream (reload): the level is known
                state[0].protocol_level = conn.level
        try:
            packets = state[0].feed(data)
        except MQTTProtocolError as err:  # MQTTUnsupportedProtocol included
            packets = err.packets
            state[0] = None
        _emit(conn, ["<<- " + mqtt_text(p, verbose, limit) for p in packets])
        return
    if state[0] is None:
        opts = conn.server.options
        state[0] = Parser(opts.max_control_line, opts.max_payload)
    lines: list[str] = []
    for op in state[0].feed(data):
        nats_in_text(op, verbose, limit, lines)
    _emit(conn, lines)


def trace_outbound(conn: Any, data: bytes) -> None:
    verbose, limit = _verbosity(conn)
    if not hasattr(conn, "client_id"):
        _emit(conn, nats_out_lines(data, verbose, limit))
        return
    state = _decoders(conn)
    if state[1] is None:
        state[1] = MQTTParser(protocol_level=conn.level if conn.level in (3, 4, 5) else 4)
    try:
        packets = state[1].feed(data)
    except MQTTProtocolError as err:
        packets = err.packets
        state[1] = None
    _emit(conn, ["->> " + mqtt_text(p, verbose, limit) for p in packets])


# -- NATS ----------------------------------------------------------------------------------


def _connect_text(obj: Any) -> str:
    if isinstance(obj, dict):
        obj = {k: (REDACTED if k in SECRETS else v) for k, v in obj.items()}
    return json.dumps(obj, separators=(",", ":"))


def nats_in_text(op: tuple, verbose: bool, limit: int, lines: list[str]) -> None:
    """Append the trace lines of one parsed client operation."""
    kind = op[0]
    if kind == OP_PUB or kind == OP_HPUB:
        subject, reply = op[1], op[2]
        payload = op[-1]
        args = [subject] if reply is None else [subject, reply]
        if kind == OP_PUB:
            lines.append(f"<<- [PUB {' '.join(args)} {len(payload)}]")
        else:
            headers = op[3]
            size = len(headers) + len(payload)
            lines.append(f"<<- [HPUB {' '.join(args)} {len(headers)} {size}]")
            payload = headers + payload
        if verbose:
            lines.append(f"<<- MSG_PAYLOAD: [{payload_text(payload, limit)}]")
    elif kind == OP_SUB:
        subject, queue, sid = op[1], op[2], op[3]
        args = [subject, sid] if queue is None else [subject, queue, sid]
        lines.append(f"<<- [SUB {' '.join(args)}]")
    elif kind == OP_UNSUB:
        sid, max_msgs = op[1], op[2]
        lines.append(f"<<- [UNSUB {sid}]" if max_msgs is None else f"<<- [UNSUB {sid} {max_msgs}]")
    elif kind == OP_PING:
        lines.append("<<- [PING]")
    elif kind == OP_PONG:
        lines.append("<<- [PONG]")
    elif kind == OP_CONNECT:
        lines.append(f"<<- [CONNECT {_connect_text(op[1])}]")
    # OP_ERROR: the -ERR (if any) is traced on its way out


def nats_out_lines(data: bytes, verbose: bool, limit: int) -> list[str]:
    """The trace lines of bytes the server is writing to a NATS client."""
    lines = []
    pos, n = 0, len(data)
    while pos < n:
        end = data.find(b"\r\n", pos)
        if end < 0:
            lines.append(f"->> [{data[pos:].decode('utf-8', 'replace')}]")
            break
        line = data[pos:end]
        pos = end + 2
        verb, _, args = line.partition(b" ")
        text = args.decode("utf-8", "replace")
        if verb in (b"MSG", b"HMSG"):
            size = int(args.rsplit(None, 1)[-1])
            payload = data[pos : pos + size]
            pos += size + 2
            lines.append(f"->> [{verb.decode()} {text}]")
            if verbose:
                lines.append(f"->> MSG_PAYLOAD: [{payload_text(payload, limit)}]")
        elif verb == b"+OK":
            lines.append("->> [OK]")
        elif verb == b"-ERR":
            lines.append(f"->> [-ERR {text.strip(chr(39))}]")
        elif verb == b"INFO":
            lines.append(f"->> [INFO {text.strip()}]")
        else:
            lines.append(f"->> [{line.decode('utf-8', 'replace')}]")
    return lines


# -- MQTT ----------------------------------------------------------------------------------


def _rc(code: int) -> str:
    return f"rc=0x{code:02x}"


def _props(props: dict) -> str:
    return f" props={','.join(sorted(props))}" if props else ""


def mqtt_text(p: Any, verbose: bool, limit: int) -> str:
    """One MQTT packet as one trace line: `[PUBLISH topic=a/b qos=1 pid=7 len=5]`."""
    kind = p.packet_type
    if kind == P.PUBLISH:
        text = f"PUBLISH topic={p.topic} qos={p.qos}"
        if p.qos:
            text += f" pid={p.packet_id}"
        text += f" len={len(p.payload)}"
        if p.retain:
            text += " retain=1"
        if p.dup:
            text += " dup=1"
        text += _props(p.properties)
        if verbose:
            text += f" payload={payload_text(p.payload, limit)}"
        return f"[{text}]"
    if kind in (P.PUBACK, P.PUBREC, P.PUBREL, P.PUBCOMP):
        name = P.PacketType(kind).name
        rc = f" {_rc(p.reason_code)}" if p.reason_code else ""
        return f"[{name} pid={p.packet_id}{rc}]"
    if kind == P.CONNECT:
        return f"[{_connect(p, verbose, limit)}]"
    if kind == P.CONNACK:
        present = 1 if p.session_present else 0
        return f"[CONNACK session_present={present} {_rc(p.reason_code)}{_props(p.properties)}]"
    if kind == P.SUBSCRIBE:
        subs = " ".join(f"{s.topic_filter}(qos={s.qos})" for s in p.subscriptions)
        return f"[SUBSCRIBE pid={p.packet_id} {subs}]"
    if kind in (P.SUBACK, P.UNSUBACK):
        name = P.PacketType(kind).name
        codes = ",".join(f"0x{c:02x}" for c in p.reason_codes)
        return f"[{name} pid={p.packet_id}" + (f" rc={codes}]" if codes else "]")
    if kind == P.UNSUBSCRIBE:
        return f"[UNSUBSCRIBE pid={p.packet_id} {' '.join(p.topic_filters)}]"
    if kind == P.DISCONNECT or kind == P.AUTH:
        name = P.PacketType(kind).name
        ref = p.properties.get("server_reference")
        extra = f" server_reference={ref}" if ref else ""
        return f"[{name} {_rc(p.reason_code)}{extra}]"
    return f"[{P.PacketType(kind).name}]"  # PINGREQ, PINGRESP


def _connect(p: Any, verbose: bool, limit: int) -> str:
    text = (
        f"CONNECT client_id={p.client_id} level={p.protocol_level} "
        f"clean={1 if p.clean_start else 0} keepalive={p.keep_alive}"
    )
    if p.username is not None:
        text += f" username={p.username}"
    if p.password is not None:
        text += f" password={REDACTED}"
    if p.will_topic is not None:
        text += f" will_topic={p.will_topic} will_qos={p.will_qos}"
        if p.will_retain:
            text += " will_retain=1"
        if verbose:
            text += f" will_payload={payload_text(p.will_payload, limit)}"
    return text + _props(p.properties)
