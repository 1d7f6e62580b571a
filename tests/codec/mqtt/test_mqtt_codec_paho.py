"""Interop with paho-mqtt: a real paho client talks to a tiny threaded socket server
whose only MQTT code is this codec. The server decodes what paho sends (CONNECT with
will and properties, SUBSCRIBE, PUBLISH with properties, PUBACK, UNSUBSCRIBE, DISCONNECT)
and answers with our encoder, which paho in turn must accept (CONNACK, SUBACK, a PUBLISH
with properties, PUBACK, UNSUBACK). Every socket is on 127.0.0.1, every wait bounded."""

from __future__ import annotations

import socket
import threading

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from hybridbus.codec.mqtt import (
    PINGRESP_BYTES,
    Connect,
    Disconnect,
    MQTTParser,
    Pingreq,
    Puback,
    Publish,
    Subscribe,
    Unsubscribe,
    encode_connack,
    encode_properties,
    encode_puback,
    encode_publish,
    encode_suback,
    encode_unsuback,
)
from tests.codec.mqtt.mqtt_codec_cases import feed_bytewise

WAIT = 5.0
PAHO_PROTOCOL = {3: mqtt.MQTTv31, 4: mqtt.MQTTv311, 5: mqtt.MQTTv5}


class CodecServer(threading.Thread):
    """Accepts one connection, decodes with MQTTParser, replies with our encoders."""

    def __init__(self):
        super().__init__(daemon=True)
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(1)
        self.listener.settimeout(WAIT)
        self.port = self.listener.getsockname()[1]
        self.packets: list = []
        self.raw = bytearray()
        self.error: BaseException | None = None

    def run(self):
        try:
            conn, _ = self.listener.accept()
            with conn:
                conn.settimeout(WAIT)
                self.serve(conn)
        except BaseException as exc:  # reported by the test, not lost in the thread
            self.error = exc
        finally:
            self.listener.close()

    def serve(self, conn: socket.socket) -> None:
        parser = MQTTParser(max_packet_size=1 << 16)
        while True:
            data = conn.recv(65536)
            if not data:
                return
            self.raw += data
            for pkt in parser.feed(data):
                self.packets.append(pkt)
                level = parser.protocol_level
                if isinstance(pkt, Connect):
                    props = {"topic_alias_maximum": 0, "assigned_client_identifier": "x"}
                    conn.sendall(encode_connack(False, 0, props, level))
                elif isinstance(pkt, Subscribe):
                    codes = [s.qos for s in pkt.subscriptions]
                    conn.sendall(encode_suback(pkt.packet_id, codes, level=level))
                    props = encode_properties(
                        {
                            "content_type": "text/plain",
                            "user_property": [("from", "server")],
                            "subscription_identifier": [7],
                        },
                        3,
                    )
                    conn.sendall(
                        encode_publish(b"s/news", b"hello paho", 1, False, False, 42, props, level)
                    )
                elif isinstance(pkt, Publish) and pkt.qos == 1:
                    conn.sendall(encode_puback(pkt.packet_id, level=level))
                elif isinstance(pkt, Unsubscribe):
                    conn.sendall(
                        encode_unsuback(pkt.packet_id, [0] * len(pkt.topic_filters), level=level)
                    )
                elif isinstance(pkt, Pingreq):
                    conn.sendall(PINGRESP_BYTES)
                elif isinstance(pkt, Disconnect):
                    return


def run_paho_session(level: int) -> tuple[CodecServer, dict]:
    server = CodecServer()
    server.start()
    seen: dict = {"messages": []}
    events = {name: threading.Event() for name in ("connect", "subscribe", "message", "unsub")}
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id="paho-interop",
        protocol=PAHO_PROTOCOL[level],
        **({} if level == 5 else {"clean_session": False}),
    )
    client.username_pw_set("user", "secret")
    will_props = None
    if level == 5:
        will_props = Properties(PacketTypes.WILLMESSAGE)
        will_props.WillDelayInterval = 10
        will_props.UserProperty = [("w", "1")]
    client.will_set("paho/will", b"gone", qos=1, retain=True, properties=will_props)

    def on_connect(c, userdata, flags, reason_code, properties):
        seen["connack"] = (reason_code.value, flags.session_present)
        events["connect"].set()

    def on_subscribe(c, userdata, mid, reason_codes, properties):
        seen["suback"] = [rc.value for rc in reason_codes]
        events["subscribe"].set()

    def on_message(c, userdata, message):
        seen["messages"].append(message)
        events["message"].set()

    def on_unsubscribe(c, userdata, mid, reason_codes, properties):
        events["unsub"].set()

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.on_unsubscribe = on_unsubscribe
    connect_props = None
    if level == 5:
        connect_props = Properties(PacketTypes.CONNECT)
        connect_props.SessionExpiryInterval = 300
        connect_props.ReceiveMaximum = 50
        connect_props.UserProperty = [("client", "paho")]
    client.connect("127.0.0.1", server.port, keepalive=30, properties=connect_props)
    client.loop_start()
    try:
        assert events["connect"].wait(WAIT), "no CONNACK accepted by paho"
        if level == 5:
            client.subscribe("s/#", options=SubscribeOptions(qos=1, noLocal=True))
        else:
            client.subscribe("s/#", qos=1)
        assert events["subscribe"].wait(WAIT), "no SUBACK accepted by paho"
        assert events["message"].wait(WAIT), "our PUBLISH never reached on_message"
        pub_props = None
        if level == 5:
            pub_props = Properties(PacketTypes.PUBLISH)
            pub_props.ContentType = "application/json"
            pub_props.ResponseTopic = "reply/here"
            pub_props.CorrelationData = b"\x01\x02"
            pub_props.MessageExpiryInterval = 60
            pub_props.UserProperty = [("a", "1"), ("a", "2")]
        info = client.publish("t/1", b'{"x": 1}', qos=1, properties=pub_props)
        info.wait_for_publish(WAIT)
        assert info.is_published(), "our PUBACK was not accepted by paho"
        client.unsubscribe("s/#")
        assert events["unsub"].wait(WAIT), "no UNSUBACK accepted by paho"
        client.disconnect()
    finally:
        client.loop_stop()
        server.join(WAIT)
    assert server.error is None, server.error
    return server, seen


@pytest.mark.parametrize("level", [3, 4, 5])
def test_paho_session(level):
    server, seen = run_paho_session(level)
    kinds = [type(p).__name__ for p in server.packets]
    assert kinds[0] == "Connect" and kinds[-1] == "Disconnect"
    assert sorted(kinds[1:-1]) == ["Puback", "Publish", "Subscribe", "Unsubscribe"]

    connect = server.packets[0]
    assert connect.protocol_level == level
    assert connect.protocol_name == ("MQIsdp" if level == 3 else "MQTT")
    assert (connect.client_id, connect.username, connect.password) == (
        "paho-interop",
        "user",
        b"secret",
    )
    assert (connect.will_topic, connect.will_payload) == ("paho/will", b"gone")
    assert (connect.will_qos, connect.will_retain, connect.keep_alive) == (1, True, 30)
    if level == 5:
        assert connect.properties == {
            "session_expiry_interval": 300,
            "receive_maximum": 50,
            "user_property": [("client", "paho")],
        }
        assert connect.will_properties == {
            "will_delay_interval": 10,
            "user_property": [("w", "1")],
        }
    else:
        assert connect.clean_start is False
        assert connect.properties == {} and connect.will_properties == {}

    (sub,) = [p for p in server.packets if isinstance(p, Subscribe)]
    assert sub.subscriptions[0].topic_filter == "s/#"
    assert sub.subscriptions[0].qos == 1
    assert sub.subscriptions[0].no_local is (level == 5)

    (pub,) = [p for p in server.packets if isinstance(p, Publish)]
    assert (pub.topic, pub.payload, pub.qos, pub.retain) == ("t/1", b'{"x": 1}', 1, False)
    if level == 5:
        assert pub.properties == {
            "content_type": "application/json",
            "response_topic": "reply/here",
            "correlation_data": b"\x01\x02",
            "message_expiry_interval": 60,
            "user_property": [("a", "1"), ("a", "2")],
        }

    (ack,) = [p for p in server.packets if isinstance(p, Puback)]
    assert ack.packet_id == 42  # paho acknowledging the PUBLISH we encoded

    (unsub,) = [p for p in server.packets if isinstance(p, Unsubscribe)]
    assert unsub.topic_filters == ["s/#"]

    # What paho made of our side.
    assert seen["connack"] == (0, False)
    assert seen["suback"] == [1]
    (msg,) = seen["messages"]
    assert (msg.topic, msg.payload, msg.qos) == ("s/news", b"hello paho", 1)
    if level == 5:
        assert msg.properties.ContentType == "text/plain"
        assert msg.properties.UserProperty == [("from", "server")]
        assert msg.properties.SubscriptionIdentifier == [7]

    # The captured bytes decode the same when fed one byte at a time.
    assert feed_bytewise(MQTTParser(), bytes(server.raw)) == server.packets
