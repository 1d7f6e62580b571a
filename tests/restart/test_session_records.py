"""Session records in the store: one shared subject (a fleet's memory), and a store
written by the version that kept one subject per session still loads."""

from __future__ import annotations

import msgpack

from hybridbus.mqtt.broker import session_key
from hybridbus.mqtt.persistence import SESSIONS, STREAMS
from hybridbus.store import StreamConfig, open_store
from tests.helpers import mqtt_packets as mp
from tests.helpers.wire import mqtt_connect


def _old_format_store(path) -> None:
    """What an earlier version left: `$MQTT_sess` capped at one record per subject,
    a subject per session, and a session whose record was written twice."""
    store = open_store(str(path))
    for config in STREAMS:
        if config.name == SESSIONS:
            config = StreamConfig(name=SESSIONS, subjects=["$MQTT.sess.>"], max_msgs_per_subject=1)
        store.add_stream(config)
    sessions = store.stream(SESSIONS)
    for client_id, filters in (("old-a", {"a/t": 1}), ("old-b", {"b/t": 0}), ("old-b", {"b/u": 1})):
        subs = {f: [qos, False, False, 0, 0, None] for f, qos in filters.items()}
        record = msgpack.packb({"id": client_id, "subs": subs, "exp": None}, use_bin_type=True)
        sessions.append(f"$MQTT.sess.{session_key(client_id)}", record)
    store.close_sync()


async def test_a_store_with_a_subject_per_session_loads_and_moves_on(server_process, tmp_path):
    _old_format_store(tmp_path / "store")
    proc = server_process().start()
    port = proc.ports["mqtt"]
    a = await mqtt_connect(port, "old-a", clean=False, expect_present=1)
    b = await mqtt_connect(port, "old-b", clean=False, expect_present=1)
    pub = await mqtt_connect(port, "pub")
    await pub.send(
        mp.publish("a/t", b"to a", qos=1, mid=1) + mp.publish("b/u", b"to b", qos=1, mid=2)
    )
    await pub.expect(mp.puback(1) + mp.puback(2))
    await a.expect(mp.publish("a/t", b"to a", qos=1, mid=1))
    # old-b's later record (b/u) won; its first (b/t) is gone
    await b.expect(mp.publish("b/u", b"to b", qos=1, mid=1))
    await b.send(mp.subscribe(5, ("b/v", 1)))  # saved anew, under the shared subject
    await b.expect(mp.suback(5, 1))
    for wire in (a, b, pub):
        await wire.close()
    assert proc.stop() == 0
    store = open_store(str(tmp_path / "store"))
    try:
        stream = store.stream(SESSIONS)
        assert stream.config.max_msgs_per_subject == -1
        records = [msgpack.unpackb(m.payload) for m in stream.iter(1)]
        by_id = {}
        for rec in records:
            assert rec["id"] not in by_id, "one record per session"
            by_id[rec["id"]] = rec
        assert set(by_id) == {"old-a", "old-b"}
        assert set(by_id["old-b"]["subs"]) == {"b/u", "b/v"}
        assert set(stream.subjects()) <= {"$MQTT.sess.all", f"$MQTT.sess.{session_key('old-a')}"}
    finally:
        store.close_sync()
