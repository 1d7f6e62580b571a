"""MQTT per account: each account its own MQTT world (server/account_state.py).

Devices of accounts A and B on the same topic never meet (QoS 0/1/2, MQTT and NATS
alike); retained messages, client ids (sessions, takeover), wills and $SYS topics are
per account; persistent sessions with queued messages come back per account after a
restart of a real `hybridbus serve`, from `<store_dir>/accounts/<name>/`."""

from __future__ import annotations

import asyncio

import pytest

from tests.helpers import mqtt_packets as mp
from tests.helpers.wire import Wire, eventually, mqtt_packets

from .accounts_env import login, settle, start, sub

USERS = """
authorization { users: [{user: g, password: g}] }
accounts {
  A: { users: [{user: a, password: a}, {user: ma, password: ma}] }
  B: { users: [{user: b, password: b}, {user: mb, password: mb}] }
}
"""


@pytest.fixture
async def server(tmp_path):
    server = await start(tmp_path, USERS)
    yield server
    await server.shutdown()


async def dev(server, client_id: str, user: str, clean: bool = True, present: int = 0, **kw):
    wire = await Wire.open(server.mqtt_port if hasattr(server, "mqtt_port") else server)
    await wire.send(mp.connect(client_id, clean=clean, username=user, password=user.encode(), **kw))
    await wire.expect(mp.connack(present, 0))
    return wire


async def subscribe(wire: Wire, topic_filter: str, qos: int, mid: int = 1) -> None:
    await wire.send(mp.subscribe(mid, (topic_filter, qos)))
    await wire.expect(mp.suback(mid, qos))


def seen(packets: list) -> list[tuple[str, bytes, int]]:
    return [(p.topic, p.payload, p.qos) for p in packets]


async def test_same_topic_in_two_accounts_never_meets(server):
    pub_a, pub_b = await dev(server, "pa", "ma"), await dev(server, "pb", "mb")
    sub_a, sub_b = await dev(server, "sa", "ma"), await dev(server, "sb", "mb")
    sub_g = await dev(server, "sg", "g")
    for wire in (sub_a, sub_b, sub_g):
        await subscribe(wire, "t/#", 2)
    nats_a, nats_b = await login(server, "a"), await login(server, "b")
    box_a, box_b = await sub(nats_a, "t.>"), await sub(nats_b, "t.>")
    for qos in (0, 1, 2):
        await pub_a.send(mp.publish("t/x", b"a%d" % qos, qos=qos, mid=qos + 1))
    await pub_a.expect(mp.puback(2) + mp.pubrec(3))
    await pub_a.send(mp.pubrel(3))
    await pub_a.expect(mp.pubcomp(3))
    await pub_b.send(mp.publish("t/x", b"b1", qos=1, mid=7))
    await pub_b.expect(mp.puback(7))
    await nats_a.publish("t.n", b"nats-a")  # NATS and MQTT meet inside an account
    await settle(nats_a, nats_b)
    got_a = seen(await mqtt_packets(sub_a, 4, level=4))
    assert got_a == [("t/x", b"a0", 0), ("t/x", b"a1", 1), ("t/x", b"a2", 2), ("t/n", b"nats-a", 1)]
    assert seen(await mqtt_packets(sub_b, 1, level=4)) == [("t/x", b"b1", 1)]
    await sub_b.expect_nothing(0.2)
    await sub_g.expect_nothing(0.1)
    assert box_a.got == [("t.x", b"a0"), ("t.x", b"a1"), ("t.x", b"a2"), ("t.n", b"nats-a")]
    assert box_b.got == [("t.x", b"b1")]
    for nc in (nats_a, nats_b):
        await nc.close()


async def test_retained_messages_are_per_account(server):
    pub_a, pub_b, pub_g = [
        await dev(server, c, u) for c, u in (("1", "ma"), ("2", "mb"), ("3", "g"))
    ]
    await pub_a.send(mp.publish("r/t", b"of-a", qos=1, retain=True, mid=1))
    await pub_a.expect(mp.puback(1))
    await pub_b.send(mp.publish("r/t", b"of-b", qos=1, retain=True, mid=1))
    await pub_b.expect(mp.puback(1))
    await pub_g.send(mp.publish("r/only-g", b"of-g", qos=1, retain=True, mid=1))
    await pub_g.expect(mp.puback(1))
    for user, want in (("ma", [("r/t", b"of-a")]), ("mb", [("r/t", b"of-b")])):
        wire = await dev(server, "late-" + user, user)
        await subscribe(wire, "r/#", 1)
        got = await mqtt_packets(wire, 1, level=4)
        assert [(p.topic, p.payload) for p in got] == want and got[0].retain
        await wire.expect_nothing(0.2)
    assert server.accounts["A"].mqtt.retained.by_topic.keys() == {"r/t"}
    assert set(server.mqtt.retained.by_topic) == {"r/only-g"}


async def test_same_client_id_in_two_accounts_is_two_sessions(server):
    a1 = await dev(server, "dev", "ma", clean=False)
    b1 = await dev(server, "dev", "mb", clean=False)  # no takeover across accounts
    await subscribe(a1, "q/t", 1)
    await subscribe(b1, "q/t", 1)
    await a1.expect_nothing(0.1)
    assert (
        server.accounts["A"].mqtt.sessions["dev"] is not server.accounts["B"].mqtt.sessions["dev"]
    )
    assert "dev" not in server.mqtt.sessions
    for wire in (a1, b1):
        await wire.send(b"\xe0\x00")  # DISCONNECT: the sessions stay, offline
        await wire.expect_closed()
    pub_a, pub_b = await dev(server, "pa", "ma"), await dev(server, "pb", "mb")
    await pub_a.send(mp.publish("q/t", b"for-a", qos=1, mid=1))
    await pub_b.send(mp.publish("q/t", b"for-b", qos=1, mid=1))
    await pub_a.expect(mp.puback(1))
    await pub_b.expect(mp.puback(1))
    a2 = await dev(server, "dev", "ma", clean=False, present=1)
    assert [(p.topic, p.payload) for p in await mqtt_packets(a2, 1, level=4)] == [("q/t", b"for-a")]
    # a takeover stays inside the account: A's second "dev" ends A's first only
    b2 = await dev(server, "dev", "mb", clean=False, present=1)
    assert [(p.topic, p.payload) for p in await mqtt_packets(b2, 1, level=4)] == [("q/t", b"for-b")]
    a3 = await dev(server, "dev", "ma", clean=False, present=1)
    await a2.expect_closed()
    await b2.send(b"\xc0\x00")  # PINGREQ: B's connection is still there
    await b2.expect(b"\xd0\x00")
    await a3.close()


async def test_wills_are_per_account(server):
    in_b = await dev(server, "wb", "mb")
    await subscribe(in_b, "w/#", 1)
    in_a = await dev(server, "wa", "ma")
    await subscribe(in_a, "w/#", 1)
    nats_a, nats_b, nats_g = [await login(server, u) for u in ("a", "b", "g")]
    box_a, box_b, box_g = [await sub(nc, "w.>") for nc in (nats_a, nats_b, nats_g)]
    dying = await dev(server, "dying", "ma", will=("w/t", b"gone", 1, False))
    dying.writer.transport.abort()  # no DISCONNECT: the will goes out, in A
    assert [(p.topic, p.payload) for p in await mqtt_packets(in_a, 1, level=4)] == [
        ("w/t", b"gone")
    ]
    await box_a.wait(1)
    await settle(nats_a, nats_b, nats_g)
    await in_b.expect_nothing(0.2)
    assert box_a.got == [("w.t", b"gone")] and box_b.got == [] and box_g.got == []
    for nc in (nats_a, nats_b, nats_g):
        await nc.close()


async def test_sys_topics_count_per_account(tmp_path):
    server = await start(tmp_path, USERS + "\nmqtt { sys_interval: 0.1 }\n")
    try:
        a_devs = [await dev(server, f"a{i}", "ma") for i in range(3)]
        watcher = await dev(server, "watch", "mb")
        await asyncio.sleep(0.25)  # a round after the connects
        await subscribe(watcher, "$SYS/broker/clients/connected", 0)
        (first,) = await mqtt_packets(watcher, 1, level=4)
        assert first.payload == b"1"  # B's own connection only, not A's three
        broker_a = server.accounts["A"].mqtt
        await eventually(
            lambda: broker_a.sys_topics.retained["$SYS/broker/clients/connected"].payload == b"3"
        )
        for wire in a_devs:
            await wire.close()
    finally:
        await server.shutdown()


async def test_account_state_lives_in_its_own_store(server, tmp_path):
    wire = await dev(server, "keep", "ma", clean=False)
    await subscribe(wire, "k/t", 1)
    store_a = server.accounts["A"].store
    assert store_a is not server.store and store_a.directory == str(
        tmp_path / "store" / "accounts" / "A"
    )
    assert "$MQTT_sess" in {s.name for s in store_a.streams()}
    assert server.accounts["B"].mqtt is None  # made at B's first MQTT CONNECT only


async def test_sessions_and_queues_survive_a_restart_per_account(server_process, tmp_path):
    conf = tmp_path / "accounts.conf"
    conf.write_text(USERS)
    proc = server_process(config=str(conf)).start()
    port = proc.ports["mqtt"]
    for user in ("ma", "mb"):
        wire = await dev(port, "dev", user, clean=False)
        await subscribe(wire, "q/t", 1)
        await wire.send(b"\xe0\x00")
        await wire.expect_closed()
    for user, text in (("ma", b"queued-a"), ("mb", b"queued-b")):
        wire = await dev(port, "pub", user)
        await wire.send(mp.publish("q/t", text, qos=1, mid=1))
        await wire.expect(mp.puback(1))
        await wire.close()
    assert proc.stop() == 0
    assert (tmp_path / "store" / "accounts" / "A").is_dir()
    proc = server_process(config=str(conf), ports=proc.ports).start()
    for user, text in (("mb", b"queued-b"), ("ma", b"queued-a")):
        wire = await dev(port, "dev", user, clean=False, present=1)
        got = await mqtt_packets(wire, 1, level=4)
        assert [(p.topic, p.payload) for p in got] == [("q/t", text)]
        await wire.expect_nothing(0.2)
        await wire.close()
    assert "Restored 1 MQTT sessions" in proc.output()
    proc.stop()
