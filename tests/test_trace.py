"""`-V`/`--trace`: nats-server's [TRC] lines for both protocols, on a real process;
payloads only with `-VV`/`trace_verbose`; secrets never; and with tracing off the
connections are the plain classes (the message path never asks)."""

from __future__ import annotations

import re

from hybridbus.core.trace import go_quote_bytes, mqtt_text, nats_out_lines, traced_class
from hybridbus.mqtt.connection import MqttConnection
from hybridbus.nats.connection import NatsConnection
from tests.helpers import mqtt_packets as mp
from tests.helpers.wire import eventually, mqtt_connect, nats_connect

TRC = r"\[\d+\] [\d/]+ [\d:.]+ \[TRC\] 127\.0\.0\.1:\d+ - "


async def _traffic(ports: dict) -> None:
    """A NATS subscriber and publisher, and an MQTT client that logs in with a
    password, subscribes and publishes at QoS 1 with packet id 7."""
    sub = await nats_connect(ports["nats"])
    await sub.send(b"SUB a.b 1\r\nPING\r\n")
    await sub.expect(b"PONG\r\n")
    pub = await nats_connect(ports["nats"], b'{"verbose":false,"pedantic":false,"pass":"s3cr3t"}')
    await pub.send(b"PUB a.b 5\r\nhello\r\nPING\r\n")
    await pub.expect(b"PONG\r\n")
    await sub.expect(b"MSG a.b 1 5\r\nhello\r\n")
    dev = await mqtt_connect(ports["mqtt"], "dev-1", username="u", password=b"hunter2")
    await dev.send(mp.publish("a/b", b"world", qos=1, mid=7))
    await dev.expect(mp.puback(7))
    await sub.expect(b"MSG a.b 1 5\r\nworld\r\n")
    for wire in (sub, pub, dev):
        await wire.close()


async def test_trace_flag_prints_nats_server_trace_lines(server_process):
    server = server_process("-V").start()
    await _traffic(server.ports)
    await eventually(lambda: "PUBACK pid=7" in server.output())
    assert server.stop() == 0
    log = server.output()
    nats = TRC + r"cid:\d+ - "
    assert re.search(nats + r"<<- \[SUB a\.b 1\]$", log, re.M), log
    assert re.search(nats + r"<<- \[PUB a\.b 5\]$", log, re.M), log
    assert re.search(nats + r"->> \[MSG a\.b 1 5\]$", log, re.M), log
    assert re.search(nats + r"<<- \[PING\]$", log, re.M)
    assert re.search(nats + r"->> \[PONG\]$", log, re.M)
    assert re.search(nats + r"->> \[INFO \{.*\}\]$", log, re.M)
    mqtt = TRC + r"mid:\d+ - 'dev-1' - "
    assert re.search(
        TRC + r"mid:\d+ - <<- \[CONNECT client_id=dev-1 level=4 clean=1 keepalive=60 "
        r"username=u password=\[REDACTED\]\]$",
        log,
        re.M,
    ), log
    assert re.search(mqtt + r"->> \[CONNACK session_present=0 rc=0x00\]$", log, re.M), log
    assert re.search(mqtt + r"<<- \[PUBLISH topic=a/b qos=1 pid=7 len=5\]$", log, re.M), log
    assert re.search(mqtt + r"->> \[PUBACK pid=7\]$", log, re.M), log
    # no payloads without trace_verbose, and no secrets ever
    assert "MSG_PAYLOAD" not in log and "hello" not in log and "world" not in log
    assert "s3cr3t" not in log and "hunter2" not in log
    assert '"pass":"[REDACTED]"' in log


async def test_trace_verbose_adds_payloads(server_process):
    server = server_process("-VV").start()
    await _traffic(server.ports)
    await eventually(lambda: "PUBACK pid=7" in server.output())
    assert server.stop() == 0
    log = server.output()
    assert re.search(TRC + r"cid:\d+ - <<- MSG_PAYLOAD: \[\"hello\"\]$", log, re.M), log
    assert re.search(TRC + r"cid:\d+ - ->> MSG_PAYLOAD: \[\"world\"\]$", log, re.M), log
    assert re.search(
        TRC + r"mid:\d+ - 'dev-1' - <<- \[PUBLISH topic=a/b qos=1 pid=7 len=5 "
        r'payload="world"\]$',
        log,
        re.M,
    ), log
    assert "hunter2" not in log


async def test_trace_verbose_in_config_cuts_payloads_at_max_traced_msg_len(
    server_process, tmp_path
):
    conf = tmp_path / "trace.conf"
    conf.write_text("trace_verbose: true\nmax_traced_msg_len: 3\n")
    server = server_process(config=str(conf)).start()
    await _traffic(server.ports)
    await eventually(lambda: "PUBACK pid=7" in server.output())
    assert server.stop() == 0
    log = server.output()
    assert re.search(r'<<- MSG_PAYLOAD: \["hel\.\.\."\]$', log, re.M), log
    assert 'payload="wor..."' in log


async def test_no_trace_lines_and_plain_classes_without_trace(server_process, nats_server):
    server = server_process("-D").start()
    await _traffic(server.ports)
    assert server.stop() == 0
    assert "[TRC]" not in server.output()
    # In process: with trace off, a connection keeps its own class, so the message
    # path runs the untraced methods themselves (no check per message anywhere).
    wire = await nats_connect(nats_server.nats_port)
    dev = await mqtt_connect(nats_server.mqtt_port, "plain-1")
    classes = {type(c) for c in nats_server.clients.values()}
    assert classes == {NatsConnection, MqttConnection}
    await wire.close()
    await dev.close()


async def test_traced_classes_wrap_only_read_write_and_close(server_factory):
    traced = traced_class(NatsConnection)
    assert traced is traced_class(NatsConnection) and issubclass(traced, NatsConnection)
    assert traced.__slots__ == () and traced.deliver is NatsConnection.deliver
    assert traced._process is NatsConnection._process
    assert traced.data_received is not NatsConnection.data_received
    server = await server_factory(trace=True)
    wire = await nats_connect(server.nats_port)
    (client,) = server.clients.values()
    assert type(client) is traced
    await wire.close()


async def test_reload_turns_tracing_on_for_live_connections(server_factory, tmp_path, caplog):
    import logging

    conf = tmp_path / "r.conf"
    conf.write_text("trace: false\n")
    server = await server_factory(config_file=str(conf))
    wire = await nats_connect(server.nats_port)
    (client,) = server.clients.values()
    assert type(client) is NatsConnection
    root = logging.getLogger("hybridbus")
    try:
        conf.write_text("trace: true\n")
        assert server.reload()
        assert type(client) is traced_class(NatsConnection)
        # The reload gave the logger its own stderr handler; let caplog see it too.
        root.propagate = True
        caplog.set_level(5, logger="hybridbus")
        await wire.send(b"SUB x.y 9\r\nPING\r\n")
        await wire.expect(b"PONG\r\n")
        await eventually(lambda: "<<- [SUB x.y 9]" in caplog.text)
        conf.write_text("trace: false\n")
        assert server.reload()
        assert type(client) is NatsConnection
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        root.propagate = True
        root.setLevel(logging.NOTSET)
        await wire.close()


def test_trace_text_helpers():
    assert go_quote_bytes(b'a"b\\\n\x00\xff\xe2\x82\xac') == '"a\\"b\\\\\\n\\x00\\xff€"'
    lines = nats_out_lines(
        b"MSG a.b 1 5\r\nhello\r\n+OK\r\n-ERR 'Unknown Protocol Operation'\r\nPONG\r\n"
        b"HMSG a.b 2 12 14\r\nNATS/1.0\r\n\r\nhi\r\n",
        verbose=False,
        limit=0,
    )
    assert lines == [
        "->> [MSG a.b 1 5]",
        "->> [OK]",
        "->> [-ERR Unknown Protocol Operation]",
        "->> [PONG]",
        "->> [HMSG a.b 2 12 14]",
    ]
    from hybridbus.codec.mqtt.packets import Disconnect, Publish, Suback

    assert mqtt_text(Publish("a/b", b"xy", 0, True), False, 0) == (
        "[PUBLISH topic=a/b qos=0 len=2 retain=1]"
    )
    assert mqtt_text(Suback(3, [1, 0x80]), False, 0) == "[SUBACK pid=3 rc=0x01,0x80]"
    assert mqtt_text(Disconnect(0x9C, {"server_reference": "b:1883"}), False, 0) == (
        "[DISCONNECT rc=0x9c server_reference=b:1883]"
    )


async def test_websocket_connections_are_traced_too(server_factory, caplog):
    from tests.security.wsclient import WsClient

    server = await server_factory(
        trace=True, websocket__enabled=True, websocket__no_tls=True, websocket__host="127.0.0.1"
    )
    caplog.set_level(5, logger="hybridbus")
    ws = await WsClient.open(server.websocket_port, "/")
    assert (await ws.recv_until(b"\r\n")).startswith(b"INFO {")
    await ws.send(b'CONNECT {"verbose":false}\r\nSUB ws.t 1\r\nPUB ws.t 2\r\nhi\r\nPING\r\n')
    assert (await ws.recv_until(b"PONG\r\n")).endswith(b"PONG\r\n")
    await eventually(lambda: "->> [PONG]" in caplog.text)
    assert "<<- [PUB ws.t 2]" in caplog.text and "->> [MSG ws.t 1 2]" in caplog.text
    await ws.close()
