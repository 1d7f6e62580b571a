"""Fleet-scale delivery with a real `hybridbus serve` process (core/flow.py): a big
fan-out does not hold the loop, a publisher faster than its subscriber is slowed
instead of its acknowledged messages being dropped, and 1 MB QoS 1 messages flow
without cutting the subscriber as a slow consumer.

The assertions are about order and counts (what was answered before what, what
arrived, what was dropped), never about how fast something ran."""

from __future__ import annotations

import asyncio
import json
import struct
import urllib.request

import pytest

from tests.helpers import mqtt_packets as mp
from tests.helpers.wire import mqtt_connect

PUBACK, PUBLISH, PINGRESP = 4, 3, 13


async def read_packet(reader: asyncio.StreamReader, timeout: float = 10.0) -> tuple[int, bytes]:
    """(packet type, first byte + body) of the next MQTT packet."""
    b0 = (await asyncio.wait_for(reader.readexactly(1), timeout))[0]
    length, mult = 0, 1
    while True:
        byte = (await asyncio.wait_for(reader.readexactly(1), timeout))[0]
        length += (byte & 0x7F) * mult
        mult *= 128
        if not byte & 0x80:
            break
    body = await asyncio.wait_for(reader.readexactly(length), timeout) if length else b""
    return b0 >> 4, bytes([b0]) + body


def publish_pid(packet: bytes) -> int:
    (tlen,) = struct.unpack_from("!H", packet, 1)
    return struct.unpack_from("!H", packet, 3 + tlen)[0]


def varz(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/varz", timeout=5) as r:
        return json.loads(r.read())


@pytest.mark.timeout(120)
async def test_broadcast_to_many_offline_sessions_answers_pingreq_while_it_runs(
    server_process,
):
    # 4,000 persistent sessions subscribed to one topic, all offline: one QoS 1
    # PUBLISH there owes each a stored record. The fan-out is served a slice per
    # turn of the loop, so PINGREQs sent meanwhile are answered before its PUBACK
    # (done in one go, the loop answered at most one of them first).
    proc = server_process().start()
    port = proc.ports["mqtt"]
    n = 4000

    async def make_sessions(first: int, count: int) -> None:
        for i in range(first, first + count):
            dev = await mqtt_connect(port, f"dev-{i}", clean=False)
            await dev.send(mp.subscribe(1, ("fleet/all", 1)))
            await dev.expect(mp.suback(1, 1))
            await dev.send(mp.DISCONNECT)
            await dev.expect_closed()

    await asyncio.gather(*(make_sessions(k * 500, 500) for k in range(n // 500)))
    pub = await mqtt_connect(port, "broadcaster")
    kinds: list[int] = []

    async def read_until_puback() -> None:
        while not kinds or kinds[-1] != PUBACK:
            kinds.append((await read_packet(pub.reader, 60))[0])

    reader = asyncio.create_task(read_until_puback())
    await pub.send(mp.publish("fleet/all", b"config v2", qos=1, mid=1))
    while not reader.done():
        await pub.send(mp.PINGREQ)
        await asyncio.sleep(0.002)
    await reader
    pings_first = kinds.count(PINGRESP)
    assert pings_first >= 3, pings_first
    # every session got its record: one reconnecting device finds the message
    dev = await mqtt_connect(port, "dev-1234", clean=False, expect_present=1)
    await dev.expect(mp.publish("fleet/all", b"config v2", qos=1, mid=1))
    assert proc.stop() == 0


@pytest.mark.timeout(90)
async def test_publisher_faster_than_its_subscriber_is_slowed_and_loses_nothing(
    server_process, tmp_path
):
    # An online QoS 1 subscriber that acknowledges slowly, a publisher that keeps
    # 1,000 messages unacknowledged, a session cap of 100 messages and a window of
    # 10: every message arrives (the cap is for offline sessions), and the
    # publisher's PUBACKs never run far ahead of what the subscriber has taken,
    # because its reading is held while the subscriber's queue is over its limit.
    conf = tmp_path / "flow.conf"
    conf.write_text("mqtt {\n  max_session_messages: 100\n  max_ack_pending: 10\n}\n")
    proc = server_process(config=str(conf)).start()
    port = proc.ports["mqtt"]
    total = 6000
    sub = await mqtt_connect(port, "slow-sub")
    await sub.send(mp.subscribe(1, ("flow/t", 1)))
    await sub.expect(mp.suback(1, 1))
    pub = await mqtt_connect(port, "fast-pub")
    received = 0
    acked = 0
    lead = 0  # the most PUBACKs the publisher held beyond what the subscriber got

    async def subscriber() -> None:
        nonlocal received
        while received < total:
            kind, packet = await read_packet(sub.reader)
            if kind == PUBLISH:
                received += 1
                await sub.send(mp.puback(publish_pid(packet)))
                if received % 20 == 0:
                    await asyncio.sleep(0.005)  # slower than the publisher

    async def publisher() -> None:
        nonlocal acked, lead
        sent = 0
        pid = 0
        while acked < total:
            burst = b""
            while sent < total and sent - acked < 1000 and len(burst) < 32768:
                pid = pid % 65535 + 1
                burst += mp.publish("flow/t", b"m%d" % sent, qos=1, mid=pid)
                sent += 1
            if burst:
                await pub.send(burst)
            kind, _ = await read_packet(pub.reader, 30)
            if kind == PUBACK:
                acked += 1
                lead = max(lead, acked - received)

    await asyncio.wait_for(asyncio.gather(subscriber(), publisher()), 60)
    assert received == total
    # queue limit (1,000) + window (10) + what was in the sockets and one read
    assert lead < 2500, lead
    v = varz(proc.ports["http"])
    assert v["mqtt"]["dropped_messages"] == 0
    assert v["slow_consumers"] == 0
    assert proc.stop() == 0


@pytest.mark.timeout(90)
async def test_one_megabyte_qos1_messages_flow_without_a_slow_consumer_cut(
    server_process, tmp_path
):
    # 1 MB QoS 1 messages, a publisher window of 8, max_pending 8 MB: in flight to
    # the subscriber is bounded in bytes as well as messages, so its socket never
    # owes more than max_pending and it is never cut; every message arrives.
    conf = tmp_path / "big.conf"
    conf.write_text("max_pending: 8MB\nmax_payload: 2MB\n")
    proc = server_process(config=str(conf)).start()
    port = proc.ports["mqtt"]
    total = 40
    payload = b"x" * (1 << 20)
    sub = await mqtt_connect(port, "big-sub")
    await sub.send(mp.subscribe(1, ("big/t", 1)))
    await sub.expect(mp.suback(1, 1))
    pub = await mqtt_connect(port, "big-pub")
    received = 0

    async def subscriber() -> None:
        nonlocal received
        while received < total:
            kind, packet = await read_packet(sub.reader, 20)
            if kind == PUBLISH:
                assert packet.endswith(payload)
                received += 1
                await sub.send(mp.puback(publish_pid(packet)))
                await asyncio.sleep(0.01)  # a device on a slower link

    async def publisher() -> None:
        sent = acked = 0
        while acked < total:
            while sent < total and sent - acked < 8:
                sent += 1
                await pub.send(mp.publish("big/t", payload, qos=1, mid=sent))
            kind, _ = await read_packet(pub.reader, 30)
            if kind == PUBACK:
                acked += 1

    await asyncio.wait_for(asyncio.gather(subscriber(), publisher()), 60)
    assert received == total
    v = varz(proc.ports["http"])
    assert v["slow_consumers"] == 0
    assert proc.stop() == 0
