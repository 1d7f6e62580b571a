"""MQTT CONNECT rules on a raw socket, named after their spec IDs (3.1.1 unless noted)."""

from __future__ import annotations

import asyncio

from tests.helpers import mqtt_packets as mp
from tests.helpers.wire import Wire, mqtt_connect


async def test_connect_accepted_3_1_1(nats_server):
    wire = await Wire.open(nats_server.mqtt_port)
    await wire.send(mp.connect("dev-1"))
    await wire.expect(b"\x20\x02\x00\x00")
    await wire.send(mp.PINGREQ)
    await wire.expect(mp.PINGRESP)
    await wire.close()


async def test_connect_accepted_3_1_mqisdp(nats_server):
    wire = await Wire.open(nats_server.mqtt_port)
    await wire.send(mp.connect("old-device", level=3))
    await wire.expect(b"\x20\x02\x00\x00")
    await wire.close()


async def test_MQTT_3_1_2_2_unsupported_level_gets_0x01(nats_server):
    wire = await Wire.open(nats_server.mqtt_port)
    await wire.send(mp.connect("x", level=6))
    assert await wire.expect_closed() == b"\x20\x02\x00\x01"


async def test_MQTT_3_1_3_8_empty_id_without_clean_session_gets_0x02(nats_server):
    wire = await Wire.open(nats_server.mqtt_port)
    await wire.send(mp.connect("", clean=False))
    assert await wire.expect_closed() == b"\x20\x02\x00\x02"


async def test_MQTT_3_1_3_6_empty_id_with_clean_session_is_assigned(nats_server):
    wire = await mqtt_connect(nats_server.mqtt_port, "")
    ids = [s.client_id for s in nats_server.mqtt.sessions.values()]
    assert len(ids) == 1 and ids[0]
    await wire.close()


async def test_mqtt31_client_id_over_23_chars_rejected(nats_server):
    wire = await Wire.open(nats_server.mqtt_port)
    await wire.send(mp.connect("x" * 24, level=3))
    assert await wire.expect_closed() == b"\x20\x02\x00\x02"


async def test_MQTT_3_1_0_1_first_packet_must_be_connect(nats_server):
    wire = await Wire.open(nats_server.mqtt_port)
    await wire.send(mp.PINGREQ)
    assert await wire.expect_closed() == b""


async def test_MQTT_3_1_0_2_second_connect_closes(nats_server):
    wire = await mqtt_connect(nats_server.mqtt_port, "twice")
    await wire.send(mp.connect("twice"))
    assert await wire.expect_closed() == b""


async def test_MQTT_3_1_2_3_reserved_flag_closes(nats_server):
    wire = await Wire.open(nats_server.mqtt_port)
    raw = bytearray(mp.connect("r"))
    raw[9] |= 0x01  # the reserved bit of the connect flags
    await wire.send(bytes(raw))
    assert await wire.expect_closed() == b""


async def test_client_id_with_spaces_and_dots_is_accepted(nats_server):
    # nats-server rejects these; the spec does not [MQTT-3.1.3-5 allows more than the minimum].
    wire = await mqtt_connect(nats_server.mqtt_port, "plant 7.line/3 ✓")
    assert "plant 7.line/3 ✓" in nats_server.mqtt.sessions
    await wire.close()


async def test_MQTT_3_1_2_24_keep_alive_enforced_at_one_and_a_half(server_factory):
    server = await server_factory()
    wire = await mqtt_connect(server.mqtt_port, "sleepy", keepalive=1)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await wire.expect_closed(timeout=5)
    elapsed = loop.time() - started
    assert 1.4 <= elapsed <= 3.0, elapsed


async def test_keep_alive_kept_by_pings(server_factory):
    server = await server_factory()
    wire = await mqtt_connect(server.mqtt_port, "awake", keepalive=1)
    for _ in range(4):
        await asyncio.sleep(0.6)
        await wire.send(mp.PINGREQ)
        await wire.expect(mp.PINGRESP)
    await wire.close()


async def test_connect_timeout_closes_silent_socket(server_factory):
    server = await server_factory(mqtt__connect_timeout=0.3)
    wire = await Wire.open(server.mqtt_port)
    assert await wire.expect_closed(timeout=5) == b""


async def test_MQTT_3_1_4_2_takeover_closes_old_connection(nats_server):
    first = await mqtt_connect(nats_server.mqtt_port, "dup")
    second = await mqtt_connect(nats_server.mqtt_port, "dup")
    assert await first.expect_closed() == b""
    await second.send(mp.PINGREQ)
    await second.expect(mp.PINGRESP)
    reasons = [c.reason for c in nats_server.closed]
    assert "Duplicate Client ID" in reasons
    await second.close()


async def test_takeover_storm_is_slowed_down(server_factory):
    server = await server_factory()
    server.mqtt_flap_delay = 0.5
    loop = asyncio.get_running_loop()
    wires = []
    started = loop.time()
    for _ in range(6):
        wires.append(await mqtt_connect(server.mqtt_port, "flapper"))
    elapsed = loop.time() - started
    # after 3 quick takeovers each further CONNECT waits the flap delay
    assert elapsed >= 1.0
    for w in wires:
        await w.close()


async def test_bad_packet_closes_only_the_offender(nats_server):
    watcher = await mqtt_connect(nats_server.mqtt_port, "watcher")
    await watcher.send(mp.subscribe(1, ("w/#", 0)))
    await watcher.expect(mp.suback(1, 0))
    bad = await mqtt_connect(nats_server.mqtt_port, "bad")
    await bad.send(b"\x30\xff\xff\xff\xff\x7f")  # remaining length over 4 bytes [MQTT-1.5.5-1]
    assert await bad.expect_closed() == b""
    pub = await mqtt_connect(nats_server.mqtt_port, "pub")
    await pub.send(mp.publish("w/x", b"still here"))
    await watcher.expect(mp.publish("w/x", b"still here"))
    for w in (watcher, pub):
        await w.close()
