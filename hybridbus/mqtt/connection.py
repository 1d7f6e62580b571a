"""The MQTT front end: an asyncio.Protocol over the sans-IO MQTT codec.

Bytes in, packets out of ``MQTTParser``, one ``handle_*`` function per packet
type (``hybridbus.mqtt.handle_*``), bytes queued on the connection and written
once per read. The connection owns what lives and dies with the socket (the
parser, keep-alive, the will, topic aliases, the order of outgoing acks); the
session owns everything that may outlive it.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from hybridbus.codec.mqtt import (
    PINGRESP_BYTES,
    MQTTParser,
    MQTTProtocolError,
    MQTTUnsupportedProtocol,
    encode_connack,
    encode_disconnect,
    encode_properties,
    encode_puback,
    encode_pubacks,
    encode_pubcomp,
    encode_publish,
    encode_pubrec,
    encode_pubrel,
)
from hybridbus.codec.mqtt.packets import (
    AUTH,
    CONNACK,
    CONNECT,
    DISCONNECT,
    PINGREQ,
    PUBACK,
    PUBCOMP,
    PUBLISH,
    PUBLISH_RUN,
    PUBREC,
    PUBREL,
    SUBSCRIBE,
    UNSUBSCRIBE,
    PublishRun,
)
from hybridbus.codec.mqtt.wire import encode_varint
from hybridbus.core import client as reasons
from hybridbus.core.account import leave_account
from hybridbus.core.client import ClientBase
from hybridbus.core.flow import READ_AHEAD, WORK_CHECK
from hybridbus.mqtt.handle_connect import handle_connect, handle_disconnect
from hybridbus.mqtt.handle_publish import (
    PUBCOMP_ACK,
    handle_puback,
    handle_puback_run,
    handle_pubcomp,
    handle_publish,
    handle_publish_run,
    handle_pubrec,
    handle_pubrel,
    like_publishes,
)
from hybridbus.mqtt.handle_subscribe import handle_subscribe, handle_unsubscribe

if TYPE_CHECKING:
    from hybridbus.core.hub import Hub
    from hybridbus.mqtt.message import MqttMessage
    from hybridbus.mqtt.session import Session

log = logging.getLogger("hybridbus.mqtt")

PUBLISH_PROPERTY_NAMES = (
    "payload_format_indicator",
    "content_type",
    "response_topic",
    "correlation_data",
    "user_property",
    "message_expiry_interval",
)

# 5.0 DISCONNECT reason codes the server sends
KEEP_ALIVE_TIMEOUT = 0x8D
SESSION_TAKEN_OVER = 0x8E
SERVER_SHUTTING_DOWN = 0x8B
USE_ANOTHER_SERVER = 0x9C
RECEIVE_MAXIMUM_EXCEEDED = 0x93
TOPIC_ALIAS_INVALID = 0x94
PROTOCOL_ERROR = 0x82
UNSPECIFIED_ERROR = 0x80
PACKET_TOO_LARGE = 0x95

# Response Information handed to a 5.0 client that asks for it (4.10.2).
RESPONSE_PREFIX = "hybridbus/response"

# Room for the fixed header, topic and properties on top of max_payload.
PACKET_HEADROOM = 65536 + 5


def _handle_pingreq(conn: MqttConnection, p: Any) -> None:
    conn.queue(PINGRESP_BYTES)


def _handle_auth(conn: MqttConnection, p: Any) -> None:
    # No enhanced authentication method is configured, so any AUTH is a protocol
    # error: a CONNECT with an Authentication Method already got 0x8C.
    conn.protocol_error("AUTH without an authentication method [MQTT-4.12.0-?]", PROTOCOL_ERROR)


def _unexpected(conn: MqttConnection, p: Any) -> None:
    conn.protocol_error(f"unexpected {type(p).__name__} from a client", PROTOCOL_ERROR)


HANDLERS: dict[int, Any] = {
    CONNECT: handle_connect,
    PUBLISH: handle_publish,
    PUBACK: handle_puback,
    PUBREC: handle_pubrec,
    PUBREL: handle_pubrel,
    PUBCOMP: handle_pubcomp,
    SUBSCRIBE: handle_subscribe,
    UNSUBSCRIBE: handle_unsubscribe,
    PINGREQ: _handle_pingreq,
    DISCONNECT: handle_disconnect,
    AUTH: _handle_auth,
}


class MqttConnection(ClientBase):
    __slots__ = (
        "parser",
        "session",
        "level",
        "client_id",
        "keep_alive",
        "last_packet",
        "connect_deadline",
        "will",
        "will_delay",
        "clean_disconnect",
        "acks",
        "flap_delayed",
        "client_receive_max",
        "client_max_packet",
        "client_alias_max",
        "aliases_in",
        "receive_maximum",
        "problem_info",
        "topics",
        "aliases_out",
        "wants_response_info",
        "head",
        "head_size",
        "head_b0",
        "head_topic",
        "over_limit",
        "checked_connect",
        "backlog",
        "backlog_bytes",
        "backlog_error",
        "attaching",
        "attach_rest",
    )

    conn_type = "mqtt"
    reads_ahead = True  # a held input keeps reading, up to READ_AHEAD (_read_ahead)

    def __init__(self, server: Hub) -> None:
        super().__init__(server)
        mopts = server.options.mqtt
        # Without a configured limit, a packet may carry max_payload plus room for
        # the topic and properties: what a NATS subscriber could accept anyway.
        # runs: a publisher's stream to one topic comes as PublishRuns (one slice per
        # packet, handle_publish_run), not a Publish object per packet.
        self.parser = MQTTParser(max_packet_size=self.max_packet_size(), runs=True)
        self.session: Session | None = None
        self.level = 4
        self.client_id = ""
        self.keep_alive = 0
        self.last_packet = time.monotonic()
        self.connect_deadline = self.last_packet + mopts.connect_timeout
        self.will: MqttMessage | None = None
        self.will_delay = 0
        self.clean_disconnect = False
        # An empty deque costs ~600 bytes; most connections never wait on the store,
        # so the queue of pending acks is made on first use.
        self.acks: deque[list] | tuple = ()
        self.flap_delayed = False
        self.client_receive_max = 65535
        self.client_max_packet = 0
        self.client_alias_max = 0
        self.aliases_in: dict[int, str] | None = None
        self.receive_maximum = mopts.receive_maximum or 65535
        self.problem_info = True
        self.topics: dict[str, str] = {}
        self.aliases_out: dict[str, int] = {}
        self.wants_response_info = False
        self.head = b""
        self.head_size = -1
        self.head_b0 = 0
        self.head_topic = ""
        self.over_limit = False
        self.checked_connect = -1  # index of a CONNECT whose bcrypt check already ran
        # Packets read while the input is held (_read_ahead), their bytes, and a parse
        # error among them, handled when the hold ends (input_released).
        self.backlog: list = []
        self.backlog_bytes = 0
        self.backlog_error: Any = None
        # CONNECT waits for the session's state in a JetStream domain (wait_for_state):
        # the packets read after it wait in attach_rest.
        self.attaching = False
        self.attach_rest: Any = None

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        server = self.server
        auth = server.options.mqtt.auth or server.options.auth
        if server.security.mqtt.required and auth.timeout > 0:
            # A client that must authenticate gets the auth timeout to send CONNECT.
            self.connect_deadline = min(self.connect_deadline, time.monotonic() + auth.timeout)
        if server.over_connection_limit():
            # Nothing can be said before CONNECT: its CONNACK carries the refusal
            # (see handle_connect), and the connect timer bounds a silent client.
            self.over_limit = True

    def max_packet_size(self) -> int:
        opts = self.server.options
        return opts.mqtt.max_packet_size or opts.max_payload + PACKET_HEADROOM

    def describe(self) -> str:
        return f"{self.ip}:{self.port} - mid:{self.cid} - {self.client_id!r}"

    # -- input ------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self.last_activity = time.time()
        self.last_packet = time.monotonic()
        if self.holds and self.session is not None:
            self._read_ahead(data)
            return
        server = self.server
        server.reading = self
        server.read_started = time.perf_counter()
        server.work = 0
        try:
            packets = self.parser.feed(data)
        except MQTTUnsupportedProtocol as err:
            for p in err.packets:
                self._dispatch(p)
            log.info("%s - %s", self.describe(), err.message)
            # [MQTT-3.1.2-2] unsupported level: CONNACK 0x01 (5.0: 0x84), then close.
            if err.protocol_level == 5:
                self.close(reasons.BAD_CLIENT_PROTOCOL, encode_connack(False, 0x84, None, 5))
            else:
                self.close(reasons.BAD_CLIENT_PROTOCOL, bytes((CONNACK << 4, 2, 0, 1)))
            self.server.flush()
            return
        except MQTTProtocolError as err:
            for p in err.packets:
                self._dispatch(p)
            self.protocol_error(err.message, err.reason_code)
            self.server.flush()
            return
        if len(packets) > 1 and self.session is not None:
            packets = self._answer_pings(packets)
        self._process(packets, 0)

    def _read_ahead(self, data: bytes) -> None:
        """Input while a fan-out job or a congested receiver holds this connection
        (core/flow.py): parsed and kept, in order, for when the hold ends, with its
        PINGREQs answered now; past READ_AHEAD bytes reading stops, so TCP slows the
        client. A publisher pacing itself by PINGREQs thus goes on sending, and what
        it sent meanwhile reaches the router as one run."""
        try:
            packets = self.parser.feed(data)
        except MQTTProtocolError as err:
            packets = err.packets
            self.backlog_error = err
        if packets:
            packets = self._answer_pings(packets)
            if self.backlog:
                self.backlog.extend(packets)
            else:
                self.backlog = packets
        self.backlog_bytes += len(data)
        if self.backlog_bytes > READ_AHEAD or self.backlog_error is not None:
            self.transport.pause_reading()
        server = self.server
        reading, server.reading = server.reading, None
        server.flush()
        server.reading = reading

    def input_released(self) -> None:
        """The hold ended: what was read meanwhile is handled now, in order."""
        server = self.server
        while self.backlog and not self.holds and not self.closing:
            packets, self.backlog = self.backlog, []
            self.backlog_bytes = 0
            server.reading = self
            server.read_started = time.perf_counter()
            server.work = 0
            self._process(packets, 0)
        if not self.holds and not self.closing and self.backlog_error is not None:
            err, self.backlog_error = self.backlog_error, None
            self.protocol_error(err.message, err.reason_code)
            server.flush()

    def _answer_pings(self, packets: list) -> list:
        """Answer a read's PINGREQs first and drop them from it. A PINGRESP says only
        that the connection lives, so it need not wait for the PUBLISHes before it: a
        publisher that paces itself by PINGREQs (a read holds PUBLISH, PINGREQ,
        PUBLISH, ...) keeps going while a big fan-out holds its input, and its
        PUBLISHes then form runs (core/flow.py). Not across a DISCONNECT or AUTH,
        whose order matters."""
        pings = 0
        for p in packets:
            kind = p.packet_type
            if kind == PINGREQ:
                pings += 1
            elif kind == DISCONNECT or kind == AUTH or kind == CONNECT:
                return packets
        if not pings:
            return packets
        self.queue(PINGRESP_BYTES * pings)
        return [p for p in packets if p.packet_type != PINGREQ]

    def _process(self, packets: list, start: int) -> None:
        """Dispatch packets[start:]; a CONNECT whose password needs bcrypt waits for
        the check to run off the loop, then dispatching resumes with it."""
        server = self.server
        i = start
        n = len(packets)
        while i < n:
            if self.closing:
                break
            if server.work >= WORK_CHECK and server.must_yield(self):
                # The turn's budget is spent, or a receiver holds us (core/flow.py).
                self.resume_input = lambda i=i: self._process(packets, i)
                break
            p = packets[i]
            i += 1
            kind = p.packet_type
            if kind == PUBLISH_RUN and self.session is not None:
                # A publisher's stream to one topic (the parser's runs), routed as one.
                handled = handle_publish_run(self, p)
                if handled < len(p):
                    packets[i - 1] = p.tail(handled)  # the rest waits (core/flow.py)
                    i -= 1
                continue
            if kind == PUBLISH and i < n and p.qos < 2 and not p.retain and not p.properties:
                # Like PUBLISHes the parser did not join (payloads of several sizes, or
                # DUP flags that differ): one run too.
                j = like_publishes(packets, i)
                if j > i and self.session is not None:
                    i += handle_publish_run(self, PublishRun.of(packets[i - 1 : j])) - 1
                    continue
            if (
                kind == PUBACK
                and i < n
                and packets[i].packet_type == PUBACK
                and self.session is not None
            ):
                # A subscriber acknowledging a window of QoS 1 messages: one call.
                j = i + 1
                while j < n and packets[j].packet_type == PUBACK:
                    j += 1
                handle_puback_run(self, packets[i - 1 : j])
                i = j
                continue
            if kind == CONNECT and i - 1 != self.checked_connect and self.session is None:
                work = self._pending_bcrypt(p)
                if work is not None:
                    self.checked_connect = i - 1
                    self.server.flush()
                    self.verify_off_loop(work, lambda i=i - 1: self._process(packets, i))
                    return
            self._dispatch(p)
            if kind == CONNECT and self.attaching:
                self.attach_rest = lambda i=i: self._process(packets, i)
                break
        self.checked_connect = -1
        server.flush()
        server.reading = None

    def _pending_bcrypt(self, p: Any) -> tuple | None:
        security = self.server.security
        if not security.mqtt.required and not security.mqtt_ws.required:
            return None
        return security.pending_mqtt(self, p.username, p.password)

    def _dispatch(self, p: Any) -> None:
        if self.closing:
            return
        if self.session is None and p.packet_type != CONNECT:
            self.protocol_error("first packet is not CONNECT [MQTT-3.1.0-1]", PROTOCOL_ERROR)
            return
        if p.packet_type == PUBLISH_RUN:  # (the packets before a parse error)
            for q in p.expand():
                self._dispatch(q)
            return
        HANDLERS.get(p.packet_type, _unexpected)(self, p)

    # -- connect helpers --------------------------------------------------------------

    def refuse(self, code: int, why: str, reason: str | None = None) -> None:
        """CONNACK with a failure code, then close [MQTT-3.2.2-5]."""
        log.info("%s - connection refused: %s", self.describe(), why)
        if reason is None:
            reason = reasons.AUTH_FAILURE if code in (0x86, 0x87) else reasons.PROTOCOL_VIOLATION
        self.close(reason, encode_connack(False, code, None, self.level))

    def delay_connect(self, p: Any) -> None:
        log.warning(
            "%s - client id %r is flapping; delaying its CONNECT", self.describe(), self.client_id
        )
        self.flap_delayed = True
        self.transport.pause_reading()
        self.server.loop.call_later(self.server.mqtt_flap_delay, self._resume_connect, p)

    def _resume_connect(self, p: Any) -> None:
        if self.closing:
            return
        # handle_connect authenticates again and joins the account again: give back
        # the slot the first pass took (a reload may have moved the user meanwhile)
        leave_account(self, self.server.global_account)
        handle_connect(self, p)
        self.server.flush()
        if not self.closing:
            self.transport.resume_reading()

    def wait_for_state(self, task: Any, then: Any) -> None:
        """CONNECT waits for `task` (its session's state from a JetStream domain,
        mqtt/jspersist.py) with reading paused; `then(task)` answers it, and the
        packets read after the CONNECT are handled after that, in order."""
        self.transport.pause_reading()
        self.attaching = True

        def done(_task: Any) -> None:
            self.attaching = False
            if self.closing:
                return
            then(_task)
            rest, self.attach_rest = self.attach_rest, None
            if rest is not None and self.session is not None and not self.closing:
                rest()
            self.server.flush()
            if not self.closing:
                self.transport.resume_reading()

        task.add_done_callback(done)

    def apply_client_limits(self, props: dict) -> None:
        self.client_receive_max = props.get("receive_maximum", 65535)
        self.client_max_packet = props.get("maximum_packet_size", 0)
        self.client_alias_max = props.get("topic_alias_maximum", 0)
        # [MQTT-3.1.2-29] with 0, no Reason String / User Property except on PUBLISH,
        # CONNACK and DISCONNECT.
        self.problem_info = props.get("request_problem_information", 1) == 1
        self.wants_response_info = props.get("request_response_information", 0) == 1

    def connack_properties(self, assigned: bool, server_keep_alive: int | None) -> dict:
        mopts = self.server.options.mqtt
        props: dict[str, Any] = {
            "receive_maximum": mopts.receive_maximum,
            "topic_alias_maximum": 65535,
            "retain_available": 1,
            "wildcard_subscription_available": 1,
            "subscription_identifier_available": 1,
            "shared_subscription_available": 1,
        }
        props["maximum_packet_size"] = self.max_packet_size()
        if assigned:
            props["assigned_client_identifier"] = self.client_id
        if self.wants_response_info:
            # 4.10.2: a topic prefix this client may use for its Response Topics.
            props["response_information"] = f"{RESPONSE_PREFIX}/{self.client_id}"
        if server_keep_alive is not None:
            props["server_keep_alive"] = server_keep_alive
        return props

    def on_connected(self) -> None:
        log.debug("%s - Client connection created (mqtt, level %d)", self.describe(), self.level)
        self.server.client_connected(self)  # the system account's CONNECT event

    def resolve_topic_alias(self, topic: str, props: dict) -> str | None:
        """Apply a 5.0 Topic Alias (3.3.2.3.4); None after a protocol error."""
        alias = props.get("topic_alias")
        if alias is None:
            return topic
        if alias == 0 or alias > 65535:
            self.protocol_error("topic alias out of range [MQTT-3.3.2-8]", TOPIC_ALIAS_INVALID)
            return None
        aliases = self.aliases_in
        if aliases is None:
            aliases = self.aliases_in = {}
        if topic:
            aliases[alias] = topic
            return topic
        known = aliases.get(alias)
        if known is None:
            self.protocol_error("unknown topic alias [MQTT-3.3.4-?]", PROTOCOL_ERROR)
            return None
        return known

    def forwardable_properties(self, props: dict | None) -> dict | None:
        if not props or self.level != 5:
            return None
        kept = {k: props[k] for k in PUBLISH_PROPERTY_NAMES if k in props}
        return kept or None

    # -- output -----------------------------------------------------------------------

    def send_publish(
        self, msg: MqttMessage, qos: int, retain: bool, dup: bool, packet_id: int, sub_ids
    ) -> bool:
        """Queue one PUBLISH; False when the client's Maximum Packet Size forbids it."""
        # hot path: called once per delivered message; kept whole to avoid a call per
        # message for the property and size checks (bench/bench_mqtt_server.py).
        if self.closing:
            return True
        level = self.level
        new_alias = 0
        if level == 5 and (msg.properties or sub_ids or self.client_alias_max):
            props = dict(msg.properties) if msg.properties else {}
            if msg.expires_at:
                # [MQTT-3.3.2-6] the received interval minus the whole seconds the
                # message waited: what is left, rounded up (4 sent at once stays 4).
                left = msg.expires_at - time.monotonic()
                whole = int(left)
                props["message_expiry_interval"] = whole + 1 if whole < left else max(whole, 1)
            if sub_ids:
                props["subscription_identifier"] = sub_ids
            topic_bytes = msg.topic_bytes()
            if self.client_alias_max:
                # Outbound Topic Aliases (3.3.2.3.4): the first PUBLISH on a topic
                # carries topic and alias, later ones the alias alone.
                aliases = self.aliases_out
                alias = aliases.get(msg.topic)
                if alias is not None:
                    props["topic_alias"] = alias
                    topic_bytes = b""
                elif len(aliases) < self.client_alias_max:
                    new_alias = len(aliases) + 1
                    props["topic_alias"] = new_alias
            frame = encode_publish(
                topic_bytes,
                msg.payload,
                qos,
                retain,
                dup,
                packet_id,
                encode_properties(props, PUBLISH),
                5,
            )
        else:
            # No properties to write: the packet is a cached head (fixed header and
            # topic, the same for every message of that topic, size and flags), the
            # packet id, and the payload, appended without building the frame.
            payload = msg.payload
            size = len(payload)
            b0 = 0x30 | (qos << 1) | (8 if dup else 0) | (1 if retain else 0)
            if self.head_size != size or self.head_b0 != b0 or self.head_topic != msg.topic:
                topic_bytes = msg.topic_bytes()
                tl = len(topic_bytes)
                rl = 2 + tl + (2 if qos else 0) + (1 if level == 5 else 0) + size
                if (
                    self.client_max_packet
                    and 1 + len(encode_varint(rl)) + rl > self.client_max_packet
                ):
                    return False  # [MQTT-3.1.2-25]
                self.head = (
                    bytes((b0,)) + encode_varint(rl) + bytes((tl >> 8, tl & 0xFF)) + topic_bytes
                )
                self.head_size = size
                self.head_b0 = b0
                self.head_topic = msg.topic
            out = self.out
            out += self.head
            if qos:
                out += packet_id.to_bytes(2, "big")
            if level == 5:
                out += b"\x00"  # property length 0
            out += payload
            self.out_msgs += 1
            self.out_bytes += size
            if not self.dirty:
                self.server.mark_dirty(self)
            return True
        if self.client_max_packet and len(frame) > self.client_max_packet:
            # [MQTT-3.1.2-25] never send a packet larger than the client accepts.
            return False
        if new_alias:
            self.aliases_out[msg.topic] = new_alias
        self.out_msgs += 1
        self.out_bytes += len(msg.payload)
        self.out += frame
        if not self.dirty:
            self.server.mark_dirty(self)
        return True

    def takes_shared_frames(self) -> bool:
        """Whether a plain QoS 0 PUBLISH to this client is the same bytes as to any other
        client of its level: no outbound topic aliases, no Maximum Packet Size to check."""
        return not self.client_alias_max and not self.client_max_packet and not self.closing

    def queue_frames(self, frames: bytes, count: int, nbytes: int) -> None:
        """Queue PUBLISHes encoded for every receiver alike (MqttBroker.run_frames)."""
        self.out += frames
        self.out_msgs += count
        self.out_bytes += nbytes
        if not self.dirty:
            self.server.mark_dirty(self)

    def send_pubrel(self, packet_id: int, reason: int = 0) -> None:
        self.queue(encode_pubrel(packet_id, reason if self.level == 5 else 0, None, self.level))

    def send_pubcomp(self, packet_id: int, reason: int = 0) -> None:
        self.queue(encode_pubcomp(packet_id, reason if self.level == 5 else 0, None, self.level))

    def ack_inbound(self, packet_id: int, qos: int, ticket: Any, reason: int) -> None:
        """PUBACK/PUBREC (or PUBCOMP, qos PUBCOMP_ACK), sent once what it answers is
        durable (`ticket` done) and in arrival order [MQTT-4.6.0-2]."""
        if ticket is None and not self.acks:
            self._send_ack(packet_id, qos, reason)
            return
        if not self.acks:
            self.acks = deque()
        self.acks.append([packet_id, qos, ticket, reason])
        if ticket is not None:
            ticket.on_done(self._flush_acks)

    def ack_inbound_run(self, packet_ids: list[int], ticket: Any) -> None:
        """ack_inbound(pid, 1, ticket, 0) for each of a run of QoS 1 PUBLISHes."""
        if ticket is None and not self.acks:
            self.queue(encode_pubacks(packet_ids))
            return
        if not self.acks:
            self.acks = deque()
        self.acks.extend([[packet_id, 1, ticket, 0] for packet_id in packet_ids])
        if ticket is not None:
            ticket.on_done(self._flush_acks)

    def _flush_acks(self) -> None:
        acks = self.acks
        plain: list[int] = []  # ids of plain PUBACKs (QoS 1, success), queued together
        while acks:
            packet_id, qos, ticket, reason = acks[0]
            if ticket is not None and not ticket.done:
                break
            acks.popleft()
            failed = ticket is not None and ticket.failed
            if qos == 1 and not reason and not failed:
                plain.append(packet_id)
                continue
            if plain:
                self.queue(encode_pubacks(plain))
                plain = []
            if failed:
                if self.level == 5 and qos != PUBCOMP_ACK:
                    # The write failed (0x80), or a stream refused the message: the
                    # reason code its refusal maps to (persistence.refusal_reason).
                    reason = ticket.reason or UNSPECIFIED_ERROR
                else:
                    # 3.1.1 has no negative ack, and PUBCOMP none in either version: close,
                    # so the client re-sends after reconnecting. A stream's refusal too:
                    # acknowledging would drop a message the client believes stored.
                    log.error(
                        "%s - %s; closing so the client re-sends",
                        self.describe(),
                        "a stream refused the message" if ticket.reason else "store write failed",
                    )
                    self.close(reasons.WRITE_ERROR)
                    return
            self._send_ack(packet_id, qos, reason)
        if plain:
            self.queue(encode_pubacks(plain))
        self.server.schedule_flush()

    def _send_ack(self, packet_id: int, qos: int, reason: int) -> None:
        level = self.level
        if level != 5:
            reason = 0
        elif qos == 2 and reason >= 0x80 and self.session is not None:
            # A failing PUBREC ends the flow (5.0 section 4.3.3): the client may reuse
            # the id for a new message at once, so it is no longer awaiting PUBREL.
            entry = self.session.incoming.pop(packet_id, None)
            if entry is not None and entry[0]:
                self.session.broker.release_incoming(self.session, entry[0])
        if qos == 1:
            self.queue(encode_puback(packet_id, reason, None, level))
        elif qos == 2:
            self.queue(encode_pubrec(packet_id, reason, None, level))
        else:
            self.send_pubcomp(packet_id, reason)

    # -- closing ----------------------------------------------------------------------

    def protocol_error(self, why: str, reason_code: int) -> None:
        """Close for a broken rule; 5.0 clients get DISCONNECT with the reason first."""
        log.info("%s - closing: %s", self.describe(), why)
        final = b""
        if self.level == 5 and self.session is not None:
            # DISCONNECT may always carry a Reason String (3.14.2.2.3), unless it would
            # exceed the client's Maximum Packet Size [MQTT-3.14.2-3] [MQTT-3.1.2-24].
            final = encode_disconnect(reason_code, {"reason_string": why}, 5)
            limit = self.client_max_packet
            if limit and len(final) > limit:
                final = encode_disconnect(reason_code, None, 5)
                if len(final) > limit:
                    final = b""
        self.close(reasons.PROTOCOL_VIOLATION, final)

    def shutdown(self) -> None:
        """The server is stopping: 5.0 clients are told so (0x8B) before the close; in
        lame duck mode with mqtt.server_reference set, to use that server (0x9C)."""
        final = b""
        if self.level == 5 and self.session is not None:
            reference = self.server.options.mqtt.server_reference
            if self.server.ldm and reference:
                props = {"server_reference": reference}
                final = encode_disconnect(USE_ANOTHER_SERVER, props, 5)
            limit = self.client_max_packet
            if not final or (limit and len(final) > limit):
                final = encode_disconnect(SERVER_SHUTTING_DOWN, None, 5)
        self.close(reasons.SERVER_SHUTDOWN, final)

    def taken_over(self) -> None:
        """Another connection claimed this client id [MQTT-3.1.4-3]."""
        final = encode_disconnect(SESSION_TAKEN_OVER, None, 5) if self.level == 5 else b""
        self._finish_session()
        self.close(reasons.DUPLICATE_CLIENT_ID, final)

    def close_normally(self, publish_will: bool) -> None:
        if not publish_will:
            self.will = None
        self.clean_disconnect = True
        self._finish_session()
        self.close(reasons.CLIENT_CLOSED)

    def _finish_session(self) -> None:
        """Publish the will if owed and hand the session back to the broker, once."""
        session = self.session
        if session is None:
            return
        self.session = None
        broker = session.broker  # its account's
        will = self.will
        self.will = None
        try:
            if will is not None:
                broker.send_will(session, will, self.will_delay)
        finally:
            # Even if publishing the will failed, the session is let go (else it stays
            # "online" on a dead connection); ClientBase._release logs the error.
            broker.detach(session, self)

    def on_closed(self) -> None:
        # Network loss, keep-alive timeout, protocol error: the will is published [MQTT-3.1.2-8].
        self._finish_session()
        log.debug("%s - Client connection closed (mqtt): %s", self.describe(), self.close_reason)

    def auth_revoked_notice(self) -> bytes:
        # 5.0 DISCONNECT 0x87 Not authorized; 3.1.1 has no way to say it.
        return encode_disconnect(0x87, None, 5) if self.level == 5 and self.session else b""

    def subscription_count(self) -> int:
        session = self.session
        return sum(len(s) for s in session.subs.values()) if session is not None else 0

    # -- timers -----------------------------------------------------------------------

    def sweep(self, now: float) -> None:
        if self.closing:
            return
        if self.session is None:
            if (
                not self.flap_delayed
                and not self.verifying
                and not self.attaching
                and now >= self.connect_deadline
            ):
                log.info("%s - no CONNECT in time; closing", self.describe())
                self.close(reasons.AUTH_TIMEOUT)
            return
        keep_alive = self.keep_alive
        if keep_alive and now - self.last_packet > keep_alive * 1.5:
            # [MQTT-3.1.2-24] nothing for 1.5x the keep alive: disconnect, will included.
            log.info("%s - keep alive timeout", self.describe())
            final = encode_disconnect(KEEP_ALIVE_TIMEOUT, None, 5) if self.level == 5 else b""
            self.close(reasons.STALE_CONNECTION, final)
