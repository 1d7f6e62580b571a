"""`/overviewz`: the MQTT and store figures the dashboard shows, as JSON."""

from __future__ import annotations

from hybridbus import NATS_COMPAT_VERSION, __version__
from tests.helpers import mqtt_packets as mp
from tests.helpers.wire import mqtt_connect


async def test_overviewz_counts_sessions_retained_inflight_queued_and_store(monitored_factory):
    mon = await monitored_factory(server_name="edge-9", jetstream__sync_always=True)
    port = mon.server.mqtt_port
    ov = await mon.json("/overviewz")
    assert (ov["server_name"], ov["version"], ov["nats_version"]) == (
        "edge-9",
        __version__,
        NATS_COMPAT_VERSION,
    )
    assert ov["lame_duck_mode"] is False
    assert ov["mqtt"] == {
        "sessions_online": 0,
        "sessions_offline": 0,
        "retained_messages": 0,
        "inflight_messages": 0,
        "queued_messages": 0,
        "dropped_messages": 0,
    }
    # an offline persistent session subscribed at QoS 1
    away = await mqtt_connect(port, "ov-away", clean=False)
    await away.send(mp.subscribe(1, ("ov/#", 1)))
    await away.expect(mp.suback(1, 1))
    await away.send(mp.DISCONNECT)
    await away.expect_closed()
    # an online subscriber that never acknowledges
    slow = await mqtt_connect(port, "ov-slow")
    await slow.send(mp.subscribe(1, ("ov/#", 1)))
    await slow.expect(mp.suback(1, 1))
    pub = await mqtt_connect(port, "ov-pub")
    await pub.send(mp.publish("ov/a", b"x", qos=1, mid=1, retain=True))
    await pub.expect(mp.puback(1))
    await pub.send(mp.publish("ov/b", b"y", qos=1, mid=2))
    await pub.expect(mp.puback(2))
    ov = await mon.json("/overviewz")
    m, s = ov["mqtt"], ov["store"]
    assert (m["sessions_online"], m["sessions_offline"]) == (2, 1)
    assert m["retained_messages"] == 1
    assert m["inflight_messages"] == 2  # both messages, to ov-slow
    assert m["queued_messages"] == 2  # both, for ov-away
    assert s["bytes"] == s["file_bytes"] > 0 and s["memory_bytes"] == 0
    assert s["messages"] >= 3 and s["streams"] >= 4 and s["consumers"] == 0
    assert s["sync_always"] is True
    assert s["fsyncs"] >= 2 and s["fsync_seconds_sum"] > 0
    assert s["fsync_seconds_max_bucket"] > 0
    for wire in (slow, pub):
        await wire.close()
