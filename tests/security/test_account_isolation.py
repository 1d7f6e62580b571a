"""Accounts are separate subject spaces: every path that could carry a message from
one account to another is tried, and nothing crosses (real server, nats-py, paho and
raw MQTT). $G's MQTT traffic (publishes, retained messages, wills) never reaches
another account's NATS clients, nor theirs MQTT devices; MQTT inside the accounts
(each its own sessions, retained messages, wills, stores) is test_account_mqtt.py's."""

from __future__ import annotations

import asyncio

import nats
import paho.mqtt.client as mqtt
import pytest

from tests.helpers import mqtt_packets as mp
from tests.helpers.wire import Wire

from .accounts_env import PLAIN, login, settle, start, sub


@pytest.fixture
async def server(tmp_path):
    server = await start(tmp_path, PLAIN)
    yield server
    await server.shutdown()


async def test_publish_and_wildcards_stay_in_the_account(server):
    a, a2, b, g = [await login(server, u) for u in ("a", "a2", "b", "g")]
    boxes = {name: await sub(nc, ">") for name, nc in (("a2", a2), ("b", b), ("g", g))}
    star = await sub(b, "x.*")
    await a.publish("x.y", b"from-a")
    await b.publish("x.y", b"from-b")
    await g.publish("x.y", b"from-g")
    await settle(a, a2, b, g)
    assert boxes["a2"].got == [("x.y", b"from-a")]  # its own account's only
    assert boxes["b"].got == [("x.y", b"from-b")]
    assert star.got == [("x.y", b"from-b")]
    assert boxes["g"].got == [("x.y", b"from-g")]
    for nc in (a, a2, b, g):
        await nc.close()


async def test_queue_groups_are_per_account(server):
    a, b = await login(server, "a"), await login(server, "b")
    qa = await sub(a, "work", queue="q")
    qb = await sub(b, "work", queue="q")
    for i in range(20):
        await a.publish("work", b"%d" % i)
    await settle(a, b)
    assert len(qa.got) == 20 and qb.got == []
    await a.close()
    await b.close()


async def test_request_reply_does_not_cross(server):
    a, b = await login(server, "a"), await login(server, "b")

    async def answer(msg):
        await msg.respond(b"from-b")

    await b.subscribe("svc", cb=answer)
    await b.flush(1)
    # the same subject in another account has no responder there
    with pytest.raises(nats.errors.NoRespondersError):
        await a.request("svc", b"?", timeout=1)
    # a reply subject of A is not a subject in B: B publishing to it reaches nobody
    inbox = await sub(a, "_INBOX.>")
    await b.publish("_INBOX.x", b"forged")
    await settle(a, b)
    assert inbox.got == []
    await a.close()
    await b.close()


async def test_a_full_wildcard_in_g_sees_no_account(server):
    g = await login(server, "g")
    everything = await sub(g, ">")
    a = await login(server, "a")
    await sub(a, "x")
    await a.publish("x", b"1")
    await a.publish("$SYS.x", b"2")
    await settle(a, g)
    assert everything.got == []
    await a.close()
    await g.close()


def _paho(port: int, client_id: str, user: str, clean: bool = True) -> mqtt.Client:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean)
    c.username_pw_set(user, user)
    c.connect("127.0.0.1", port, keepalive=10)
    c.loop_start()
    return c


async def test_mqtt_traffic_of_g_never_reaches_an_account(server):
    a = await login(server, "a")
    seen = await sub(a, ">")
    got: list = []
    dev = await asyncio.to_thread(_paho, server.mqtt_port, "d1", "g")
    listener = await asyncio.to_thread(_paho, server.mqtt_port, "d2", "g")
    listener.on_message = lambda c, u, m: got.append((m.topic, m.payload))
    listener.subscribe("#", qos=1)
    await asyncio.sleep(0.3)
    dev.will_set("dev/will", b"bye")
    for qos in (0, 1, 2):
        dev.publish("dev/t", b"q%d" % qos, qos=qos)
    dev.publish("dev/retained", b"kept", qos=1, retain=True)
    await asyncio.sleep(0.3)
    # A's NATS publish on the same subject as the device's topic: not for $G's devices
    await a.publish("dev.t", b"from-a")
    await settle(a)
    await asyncio.sleep(0.3)
    # a new subscriber in A asks for retained messages it can never get: plain NATS
    assert seen.got == [("dev.t", b"from-a")]
    assert sorted(got) == sorted(
        [("dev/t", b"q0"), ("dev/t", b"q1"), ("dev/t", b"q2"), ("dev/retained", b"kept")]
    )
    for c in (dev, listener):
        c.loop_stop()
        c.disconnect()
    await a.close()


async def test_will_of_g_device_stays_in_g(server):
    a, g = await login(server, "a"), await login(server, "g")
    in_a, in_g = await sub(a, ">"), await sub(g, ">")
    wire = await Wire.open(server.mqtt_port)
    await wire.send(
        mp.connect("willer", username="g", password=b"g", will=("w/t", b"gone", 0, False))
    )
    await wire.expect(mp.connack(0, 0))
    wire.writer.transport.abort()  # no DISCONNECT: the will goes out
    await in_g.wait(1)
    await settle(a, g)
    assert in_g.got == [("w.t", b"gone")]
    assert in_a.got == []
    await a.close()
    await g.close()
