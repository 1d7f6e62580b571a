"""The ``mqtt`` and ``websocket`` blocks: each is ``LISTENER`` plus its own options.

Owns the two option tables, the protocol limits they check (MQTT packet and
flow-control sizes, websocket origins and handshake timeout) and the rule
that a websocket listener runs when it has a port.
"""

from __future__ import annotations

import re

from ..options import MQTTOptions, WebSocketOptions
from .gotext import go_type, parse_go_duration
from .opts_listeners import LISTENER
from .parser import Node
from .readers import BAD, Handler, Loader, store

_UNSUPPORTED_MQTT = frozenset(
    {
        "consumer_inactive_threshold",
        "consumer_auto_cleanup",
    }
)
_UNSUPPORTED_WEBSOCKET = frozenset({"advertise", "headers", "ping_interval"})
# Credentials taken from cookies of the HTTP upgrade: not implemented, and an
# authentication setting is never ignored (``Loader.refused_auth``).
_REFUSED_WEBSOCKET = frozenset({"jwt_cookie", "user_cookie", "pass_cookie", "token_cookie"})
_MQTT_MAX_PACKET = 268_435_455 + 5  # largest remaining length plus the fixed header
_BUCKET_NAME = re.compile(r"[a-zA-Z0-9_-]+")  # nats-py's VALID_BUCKET_RE


# -- mqtt --------------------------------------------------------------------------


def mqtt(ld: Loader, node: Node, mq: MQTTOptions) -> None:
    if not isinstance(node.value, dict):
        ld.err(node, f"Expected mqtt to be a map, got {go_type(node)}")
        return
    ld.dispatch(node.value, mq, _MQTT, _UNSUPPORTED_MQTT)


def m_ack_wait(ld: Loader, mq: MQTTOptions, node: Node, key: str) -> None:
    secs = ld.duration("ack_wait", node)
    if secs is not None:
        # 0 means "the default" to nats-server; negative fails at startup.
        mq.ack_wait = secs if secs != 0 else MQTTOptions.ack_wait


def m_sys_interval(ld: Loader, mq: MQTTOptions, node: Node, key: str) -> None:
    """Seconds between $SYS rounds: a duration, or bare seconds as in Mosquitto's
    sys_interval; 0 turns $SYS off."""
    v = node.value
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        secs = float(v)
    elif isinstance(v, str):
        try:
            secs = parse_go_duration(v) / 1e9
        except ValueError as exc:
            ld.err(node, f"error parsing sys_interval: {exc}")
            return
    else:
        ld.err(node, f"error parsing sys_interval: unsupported type {go_type(v)}")
        return
    if secs < 0:
        ld.err(node, "sys_interval must be 0 (off) or positive")
        return
    mq.sys_interval = secs


def m_connect_timeout(ld: Loader, mq: MQTTOptions, node: Node, key: str) -> None:
    secs = ld.duration("connect_timeout", node)
    if secs is None:
        return
    if secs <= 0:
        ld.err(node, "connect_timeout must be positive")
        return
    mq.connect_timeout = secs


def m_retained_kv(ld: Loader, mq: MQTTOptions, node: Node, key: str) -> None:
    """The KV bucket that holds retained messages (hybridbus.jetstream.retained_kv): a
    name nats-py accepts for a bucket, [a-zA-Z0-9_-]+."""
    name = ld.str_(node, key)
    if name is BAD:
        return
    if not _BUCKET_NAME.fullmatch(name):
        ld.err(node, f"invalid retained_kv bucket name {name!r}: use letters, digits, - and _")
        return
    mq.retained_kv = name


# -- websocket ---------------------------------------------------------------------


def websocket(ld: Loader, node: Node, ws: WebSocketOptions) -> None:
    if not isinstance(node.value, dict):
        ld.err(node, f"Expected websocket to be a map, got {go_type(node)}")
        return
    ld.dispatch(node.value, ws, _WEBSOCKET, _UNSUPPORTED_WEBSOCKET, _REFUSED_WEBSOCKET)
    # Like nats-server, a websocket listener runs when it has a port.
    ws.enabled = ws.port != 0


def w_allowed_origins(ld: Loader, ws: WebSocketOptions, node: Node, key: str) -> None:
    origins = ld.string_list(node, "allowed origins")
    if origins is not None:
        ws.allowed_origins = origins


def w_handshake_timeout(ld: Loader, ws: WebSocketOptions, node: Node, key: str) -> None:
    v = node.value
    if isinstance(v, int) and not isinstance(v, bool):
        ws.handshake_timeout = float(v)
    elif isinstance(v, str):
        try:
            ws.handshake_timeout = parse_go_duration(v) / 1e9
        except ValueError as exc:
            ld.err(node, str(exc))
    else:
        ld.err(node, f"error parsing handshake timeout: unsupported type {go_type(v)}")


def m_js_api_timeout(ld: Loader, mq: MQTTOptions, node: Node, key: str) -> None:
    secs = ld.duration(key, node)
    if secs is not None:
        if secs <= 0:
            ld.err(node, "js_api_timeout must be positive")
        else:
            mq.js_api_timeout = secs


_MQTT: dict[str, Handler] = {
    **LISTENER,
    # MQTT state in a JetStream domain over the leaf link (docs/clustering.md)
    "js_domain": store("js_domain", Loader.str_),
    "stream_replicas": store("stream_replicas", Loader.int_in, 0, 5),
    "consumer_replicas": store("consumer_replicas", Loader.int_in, 0, 5),
    "consumer_memory_storage": store("consumer_memory_storage", Loader.bool_),
    "js_api_timeout": m_js_api_timeout,
    "api_timeout": m_js_api_timeout,
    "ack_wait": m_ack_wait,
    "ackwait": m_ack_wait,
    "max_ack_pending": store("max_ack_pending", Loader.int_in, 0, 0xFFFF),
    "max_pending": store("max_ack_pending", Loader.int_in, 0, 0xFFFF),
    "max_inflight": store("max_ack_pending", Loader.int_in, 0, 0xFFFF),
    "reject_qos2_publish": store("reject_qos2_publish", Loader.bool_),
    "downgrade_qos2_subscribe": store("downgrade_qos2_subscribe", Loader.bool_),
    # hybridbus extensions (see conf/server.conf)
    # MQTT 5 Receive Maximum is 1..65535; 0 is a protocol error [MQTT-3.2.2.3.3].
    "receive_maximum": store("receive_maximum", Loader.int_in, 1, 0xFFFF),
    # Server Keep Alive is a two byte integer; 0 means "no cap".
    "max_keepalive": store("max_keepalive", Loader.int_in, 0, 0xFFFF),
    # 0 means the protocol maximum (a 268,435,455 byte body plus its header).
    "max_packet_size": store("max_packet_size", Loader.int_in, 0, _MQTT_MAX_PACKET),
    "max_session_messages": store("max_session_messages", Loader.int_in, 0, (1 << 63) - 1),
    "connect_timeout": m_connect_timeout,
    # Lame duck mode sends MQTT 5 clients here: DISCONNECT 0x9C with a Server Reference.
    "server_reference": store("server_reference", Loader.str_),
    "sys_interval": m_sys_interval,  # $SYS/broker/... (hybridbus.mqtt.systopics)
    "retained_kv": m_retained_kv,  # retained messages as a KV bucket
}

_WEBSOCKET: dict[str, Handler] = {
    **LISTENER,
    "no_tls": store("no_tls", Loader.bool_),
    "same_origin": store("same_origin", Loader.bool_),
    "allowed_origins": w_allowed_origins,
    "allowed_origin": w_allowed_origins,
    "allow_origins": w_allowed_origins,
    "allow_origin": w_allowed_origins,
    "origins": w_allowed_origins,
    "origin": w_allowed_origins,
    "handshake_timeout": w_handshake_timeout,
    "compression": store("compression", Loader.bool_),
    "compress": store("compression", Loader.bool_),
}
