"""MQTT state across server restarts: a real `hybridbus serve` process, stopped with
SIGTERM or killed with SIGKILL, and started again on the same store directory."""

from __future__ import annotations

import re
import signal

import pytest

from tests.helpers import mqtt_packets as mp
from tests.helpers.wire import mqtt_connect


def restart(server_process, proc, sig=signal.SIGTERM, config=None):
    code = proc.stop(sig)
    if sig == signal.SIGTERM:
        assert code == 0, proc.output()
    return server_process(config=config, ports=proc.ports).start()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
async def test_persistent_session_and_queued_messages_survive(server_process, sig):
    proc = server_process().start()
    port = proc.ports["mqtt"]
    dev = await mqtt_connect(port, "dev", clean=False)
    await dev.send(mp.subscribe(1, ("cmd/dev", 1), ("cfg/#", 2)))
    await dev.expect(mp.suback(1, 1, 2))
    await dev.send(mp.DISCONNECT)
    await dev.expect_closed()
    pub = await mqtt_connect(port, "pub")
    await pub.send(mp.publish("cmd/dev", b"a", qos=1, mid=1))
    await pub.expect(mp.puback(1))
    await pub.send(mp.publish("cfg/x", b"b", qos=2, mid=2))
    await pub.expect(mp.pubrec(2))
    await pub.send(mp.pubrel(2))
    await pub.expect(mp.pubcomp(2))
    proc = restart(server_process, proc, sig)
    dev = await mqtt_connect(port, "dev", clean=False, expect_present=1)
    # queued before the restart: re-sent with DUP=1, since we cannot know they were not sent
    await dev.expect(
        mp.publish("cmd/dev", b"a", qos=1, dup=True, mid=1)
        + mp.publish("cfg/x", b"b", qos=2, dup=True, mid=2)
    )
    await dev.send(mp.puback(1) + mp.pubrec(2))
    await dev.expect(mp.pubrel(2))
    await dev.send(mp.pubcomp(2))
    # the subscriptions came back too
    pub = await mqtt_connect(port, "pub")
    await pub.send(mp.publish("cfg/y", b"live", qos=1, mid=3))
    await pub.expect(mp.puback(3))
    await dev.expect(mp.publish("cfg/y", b"live", qos=1, mid=3))
    await dev.send(mp.puback(3))
    await dev.close()
    await pub.close()
    assert proc.stop() == 0


async def test_retained_messages_survive(server_process):
    proc = server_process().start()
    port = proc.ports["mqtt"]
    pub = await mqtt_connect(port, "pub")
    await pub.send(mp.publish("state/a", b"1", qos=1, retain=True, mid=1))
    await pub.send(mp.publish("state/b", b"2", qos=1, retain=True, mid=2))
    await pub.send(mp.publish("state/b", b"", qos=1, retain=True, mid=3))  # cleared
    await pub.send(mp.publish("state/a", b"3", qos=1, retain=True, mid=4))  # replaced
    await pub.expect(mp.puback(1) + mp.puback(2) + mp.puback(3) + mp.puback(4))
    proc = restart(server_process, proc, signal.SIGKILL)
    sub = await mqtt_connect(port, "sub")
    await sub.send(mp.subscribe(1, ("state/#", 1)))
    await sub.expect(mp.suback(1, 1) + mp.publish("state/a", b"3", qos=1, retain=True, mid=1))
    await sub.expect_nothing()
    await sub.close()
    assert proc.stop() == 0


async def test_in_flight_qos1_and_qos2_resent_after_restart(server_process):
    proc = server_process().start()
    port = proc.ports["mqtt"]
    dev = await mqtt_connect(port, "dev", clean=False)
    await dev.send(mp.subscribe(1, ("t", 2)))
    await dev.expect(mp.suback(1, 2))
    pub = await mqtt_connect(port, "pub")
    await pub.send(mp.publish("t", b"one", qos=1, mid=1) + mp.publish("t", b"two", qos=2, mid=2))
    await pub.expect(mp.puback(1) + mp.pubrec(2))
    await dev.expect(mp.publish("t", b"one", qos=1, mid=1) + mp.publish("t", b"two", qos=2, mid=2))
    await dev.send(mp.pubrec(2))  # QoS 2 moves on to PUBREL; QoS 1 stays unacknowledged
    await dev.expect(mp.pubrel(2))
    await dev.send(mp.PINGREQ)
    await dev.expect(mp.PINGRESP)
    proc = restart(server_process, proc, signal.SIGKILL)
    dev = await mqtt_connect(port, "dev", clean=False, expect_present=1)
    # [MQTT-4.4.0-1] same packet ids: the unacked PUBLISH with DUP=1 and the PUBREL of
    # the QoS 2 message. The spec orders PUBLISHes among themselves and PUBRELs among
    # themselves [MQTT-4.6.0-1] [MQTT-4.6.0-3], not one kind against the other.
    publish, pubrel = mp.publish("t", b"one", qos=1, dup=True, mid=1), mp.pubrel(2)
    m = await dev.expect_re(re.escape(publish + pubrel) + b"|" + re.escape(pubrel + publish))
    assert len(m.group(0)) == len(publish + pubrel)
    await dev.send(mp.puback(1) + mp.pubcomp(2))
    await dev.expect_nothing()
    await dev.close()
    await pub.close()
    assert proc.stop() == 0


async def test_qos2_inbound_dedup_survives_restart(server_process):
    proc = server_process().start()
    port = proc.ports["mqtt"]
    # a QoS 0 subscription, so that nothing is queued for `sub` itself: any copy it
    # receives after the restart can only come from routing the publish again
    sub = await mqtt_connect(port, "sub", clean=False)
    await sub.send(mp.subscribe(1, ("once", 0)))
    await sub.expect(mp.suback(1, 0))
    pub = await mqtt_connect(port, "pub", clean=False)
    await pub.send(mp.publish("once", b"x", qos=2, mid=9))
    await pub.expect(mp.pubrec(9))
    # kept until PUBREL (4.3.3 "Method A"): stored, not yet delivered
    await sub.expect_nothing(0.2)
    proc = restart(server_process, proc, signal.SIGKILL)
    sub = await mqtt_connect(port, "sub", clean=False, expect_present=1)
    pub = await mqtt_connect(port, "pub", clean=False, expect_present=1)
    # the publisher never saw PUBREC's effect committed on its side: it re-sends
    await pub.send(mp.publish("once", b"x", qos=2, dup=True, mid=9))
    await pub.expect(mp.pubrec(9))
    await pub.send(mp.pubrel(9))
    await pub.expect(mp.pubcomp(9))
    await sub.expect(mp.publish("once", b"x"))  # the kept copy, delivered once
    await sub.expect_nothing(0.5)  # the re-sent PUBLISH was not kept twice [MQTT-4.3.3-9]
    await sub.close()
    await pub.close()
    assert proc.stop() == 0


async def test_sync_always_config_and_sigkill(server_process, tmp_path):
    conf = tmp_path / "server.conf"
    conf.write_text("jetstream {\n  sync_interval: always\n}\n")
    proc = server_process(config=str(conf)).start()
    port = proc.ports["mqtt"]
    dev = await mqtt_connect(port, "dev", clean=False)
    await dev.send(mp.subscribe(1, ("k", 1)))
    await dev.expect(mp.suback(1, 1))
    await dev.close()
    pub = await mqtt_connect(port, "pub")
    frames = b"".join(mp.publish("k", b"%03d" % i, qos=1, mid=i + 1) for i in range(50))
    await pub.send(frames)
    await pub.expect(b"".join(mp.puback(i + 1) for i in range(50)), timeout=10)
    proc = restart(server_process, proc, signal.SIGKILL, config=str(conf))
    dev = await mqtt_connect(port, "dev", clean=False, expect_present=1)
    expected = b"".join(mp.publish("k", b"%03d" % i, qos=1, dup=True, mid=i + 1) for i in range(50))
    await dev.expect(expected, timeout=10)
    await dev.close()
    assert proc.stop() == 0


async def test_sigkill_after_runs_keeps_exactly_the_unacked(server_process):
    # One write of 200 QoS 1 PUBLISHes (a run: one store call, one ticket), then the
    # subscriber acknowledges the first 120 in one write (a run of deletes). After
    # SIGKILL nothing acknowledged to the publisher is lost, and what the subscriber
    # acknowledged (once the server had a loop turn to write it) is not sent again.
    from tests.helpers.wire import mqtt_packets

    proc = server_process().start()
    port = proc.ports["mqtt"]
    dev = await mqtt_connect(port, "dev", clean=False)
    await dev.send(mp.subscribe(1, ("k/#", 1)))
    await dev.expect(mp.suback(1, 1))
    pub = await mqtt_connect(port, "pub")
    payloads = [b"m%03d" % i for i in range(200)]
    await pub.send(mp.publish("k/t", b"first", qos=1, mid=500))  # the topic is now known
    await pub.expect(mp.puback(500))
    await dev.expect(mp.publish("k/t", b"first", qos=1, mid=1))
    await pub.send(b"".join(mp.publish("k/t", p, qos=1, mid=i + 1) for i, p in enumerate(payloads)))
    await pub.expect(b"".join(mp.puback(i + 1) for i in range(200)))
    got = await mqtt_packets(dev, 200, level=4)
    assert [(p.packet_id, p.payload) for p in got] == [(i + 2, p) for i, p in enumerate(payloads)]
    await dev.send(b"".join(mp.puback(i) for i in range(1, 122)) + mp.PINGREQ)
    await dev.expect(mp.PINGRESP)
    await dev.send(mp.PINGREQ)  # a second turn: the deletes are written by now
    await dev.expect(mp.PINGRESP)
    proc = restart(server_process, proc, signal.SIGKILL)
    dev = await mqtt_connect(port, "dev", clean=False, expect_present=1)
    again = await mqtt_packets(dev, 80, level=4)
    assert [p.payload for p in again] == payloads[120:]
    assert all(p.dup for p in again)
    await dev.expect_nothing(0.2)
    assert not dev.mqtt_backlog  # nor parsed already, beyond the 80
    await dev.close()
    assert proc.stop() == 0
