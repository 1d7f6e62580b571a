"""Authorization on the wire, NATS and MQTT: -ERR texts, SUBACK/PUBACK codes, routing."""

from __future__ import annotations

import pytest

from hybridbus.options import AuthOptions, Permissions, User
from tests.helpers import mqtt_packets as mp
from tests.helpers.wire import Wire, mqtt_packets, nats_connect

PERMS = Permissions(
    publish_allow=["sensors.>", "reply.*"],
    publish_deny=["sensors.secret"],
    subscribe_allow=["cmd.>", "jobs.* grp"],
    subscribe_deny=["cmd.secret.>"],
)


def auth() -> AuthOptions:
    return AuthOptions(
        users=[
            User("dev", "pw", PERMS),
            User("observer", "pw"),
            User(
                "responder",
                "pw",
                Permissions(publish_allow=[], subscribe_allow=["svc.>"], allow_responses=(2, 60.0)),
            ),
        ]
    )


def creds(user: str) -> bytes:
    return b'{"verbose":false,"pedantic":false,"user":"%s","pass":"pw"}' % user.encode()


async def observer(server) -> Wire:
    wire = await nats_connect(server.nats_port, creds("observer"))
    await wire.send(b"SUB > 99\r\nPING\r\n")
    await wire.expect(b"PONG\r\n")
    return wire


async def test_nats_publish_denied_keeps_connection(server_factory):
    server = await server_factory(auth=auth())
    obs = await observer(server)
    dev = await nats_connect(server.nats_port, creds("dev"))
    await dev.send(b"PUB other 2\r\nhi\r\nPUB sensors.secret 1\r\nx\r\nPING\r\n")
    await dev.expect(b"-ERR 'Permissions Violation for Publish to \"other\"'\r\n")
    await dev.expect(b"-ERR 'Permissions Violation for Publish to \"sensors.secret\"'\r\n")
    await dev.expect(b"PONG\r\n")  # still open
    await dev.send(b"PUB sensors.t1 2\r\nok\r\n")
    await obs.expect(b"MSG sensors.t1 99 2\r\nok\r\n")
    await obs.expect_nothing(0.1)  # the denied ones were never routed


async def test_nats_subscribe_denied_texts(server_factory):
    server = await server_factory(auth=auth())
    dev = await nats_connect(server.nats_port, creds("dev"))
    await dev.send(
        b"SUB other 1\r\nSUB jobs.a wrong 2\r\nSUB jobs.a 3\r\nSUB cmd.secret.x 4\r\nPING\r\n"
    )
    await dev.expect(b"-ERR 'Permissions Violation for Subscription to \"other\"'\r\n")
    await dev.expect(
        b'-ERR \'Permissions Violation for Subscription to "jobs.a" using queue "wrong"\'\r\n'
    )
    await dev.expect(b"-ERR 'Permissions Violation for Subscription to \"jobs.a\"'\r\n")
    await dev.expect(b"-ERR 'Permissions Violation for Subscription to \"cmd.secret.x\"'\r\n")
    await dev.expect(b"PONG\r\n")
    await dev.send(b"SUB jobs.a grp 5\r\nSUB cmd.x 6\r\nPING\r\n")
    await dev.expect(b"PONG\r\n")
    (client,) = [c for c in server.clients.values() if c.user == "dev"]
    assert sorted(client.subs) == ["5", "6"]


async def test_nats_wildcard_overlapping_deny_refused_until_delivery_filters(server_factory):
    server = await server_factory(auth=auth())
    server.security.filter_deliveries = False
    dev = await nats_connect(server.nats_port, creds("dev"))
    # cmd.> overlaps the deny rule cmd.secret.> without being inside it
    await dev.send(b"SUB cmd.> 1\r\nPING\r\n")
    await dev.expect(b"-ERR 'Permissions Violation for Subscription to \"cmd.>\"'\r\n")
    await dev.expect(b"PONG\r\n")
    server.security.filter_deliveries = True
    await dev.send(b"SUB cmd.> 1\r\nPING\r\n")
    await dev.expect(b"PONG\r\n")
    assert dev_perms(server).may_receive("cmd.x")
    assert not dev_perms(server).may_receive("cmd.secret.key")


def dev_perms(server):
    (client,) = [c for c in server.clients.values() if c.user == "dev"]
    return client.perms


async def test_nats_allow_responses(server_factory):
    server = await server_factory(auth=auth())
    resp = await nats_connect(server.nats_port, creds("responder"))
    await resp.send(b"SUB svc.echo 1\r\nPING\r\n")
    await resp.expect(b"PONG\r\n")
    req = await nats_connect(server.nats_port, creds("observer"))
    await req.send(b"SUB _INBOX.abc 7\r\nPUB svc.echo _INBOX.abc 4\r\nping\r\n")
    await resp.expect(b"MSG svc.echo 1 _INBOX.abc 4\r\nping\r\n")
    # never-seen subject: denied; the reply subject: allowed max=2 times
    await resp.send(b"PUB _INBOX.zzz 1\r\nx\r\nPING\r\n")
    await resp.expect(b"-ERR 'Permissions Violation for Publish to \"_INBOX.zzz\"'\r\nPONG\r\n")
    await resp.send(b"PUB _INBOX.abc 4\r\npong\r\nPUB _INBOX.abc 5\r\npong2\r\nPING\r\n")
    await resp.expect(b"PONG\r\n")
    await req.expect(b"MSG _INBOX.abc 7 4\r\npong\r\nMSG _INBOX.abc 7 5\r\npong2\r\n")
    await resp.send(b"PUB _INBOX.abc 1\r\n3\r\nPING\r\n")
    await resp.expect(b"-ERR 'Permissions Violation for Publish to \"_INBOX.abc\"'\r\nPONG\r\n")
    await req.expect_nothing(0.1)


async def test_default_permissions_for_anonymous_nats_clients(server_factory):
    server = await server_factory(
        auth=AuthOptions(default_permissions=Permissions(subscribe_deny=["private.>"]))
    )
    wire = await nats_connect(server.nats_port)  # no credentials at all
    await wire.send(b"SUB private.x 1\r\nSUB public.x 2\r\nPING\r\n")
    await wire.expect(b"-ERR 'Permissions Violation for Subscription to \"private.x\"'\r\nPONG\r\n")


# -- MQTT -----------------------------------------------------------------------------


async def mqtt_dev(server, level: int) -> Wire:
    wire = await Wire.open(server.mqtt_port)
    await wire.send(mp.connect(f"dev{level}", username="dev", password=b"pw", level=level))
    (ack,) = await mqtt_packets(wire, 1, level=level)
    assert ack.reason_code == 0
    return wire


@pytest.mark.parametrize("level, denied", [(4, 0x80), (5, 0x87)])
async def test_mqtt_subscribe_denied_suback(server_factory, level, denied):
    server = await server_factory(auth=auth())
    wire = await mqtt_dev(server, level)
    await wire.send(
        mp.subscribe(
            1,
            ("cmd/x", 1),
            ("other/x", 1),
            ("$share/grp/jobs/+", 0),
            ("$share/bad/jobs/+", 0),
            ("cmd/secret/#", 0),
            level=level,
        )
    )
    (suback,) = await mqtt_packets(wire, 1, level=level)
    assert list(suback.reason_codes) == [1, denied, 0, denied, denied]


async def test_mqtt_filter_with_hash_needs_both_subjects(server_factory):
    # `a/#` is the subjects `a` and `a.>`: allowing only `a.>` is not enough.
    server = await server_factory(
        auth=AuthOptions(users=[User("u", "p", Permissions(subscribe_allow=["a.>"]))])
    )
    wire = await Wire.open(server.mqtt_port)
    await wire.send(mp.connect("c", username="u", password=b"p"))
    await wire.expect(mp.connack(0, 0))
    await wire.send(mp.subscribe(1, ("a/#", 0), ("a/+", 0)))
    await wire.expect(mp.suback(1, 0x80, 0))


@pytest.mark.parametrize("level", [4, 5])
async def test_mqtt_publish_denied_not_routed(server_factory, level):
    server = await server_factory(auth=auth())
    obs = await observer(server)
    wire = await mqtt_dev(server, level)
    await wire.send(mp.publish("other/x", b"q0", qos=0, level=level))
    await wire.send(mp.publish("other/y", b"q1", qos=1, mid=5, level=level))
    (ack,) = await mqtt_packets(wire, 1, level=level)
    assert ack.packet_id == 5
    # 5.0: PUBACK 0x87 Not authorized; 3.1.1 has no negative ack
    assert ack.reason_code == (0x87 if level == 5 else 0)
    await wire.send(mp.publish("sensors/ok", b"yes", qos=1, mid=6, level=level))
    (ack,) = await mqtt_packets(wire, 1, level=level)
    assert ack.packet_id == 6 and ack.reason_code == 0
    m = await obs.expect_re(rb"(H?MSG) sensors.ok 99 ")
    assert m.group(1) in (b"MSG", b"HMSG")
    assert b"other" not in obs.buffer


async def test_same_user_same_verdicts_on_both_protocols(server_factory):
    """One user table: every subject gets the same answer over NATS and MQTT."""
    server = await server_factory(auth=auth())
    obs = await observer(server)
    nats_dev = await nats_connect(server.nats_port, creds("dev"))
    mqtt_dev5 = await mqtt_dev(server, 5)
    cases = [  # (mqtt topic, nats subject)
        ("sensors/a", "sensors.a"),
        ("sensors/secret", "sensors.secret"),
        ("cmd/a", "cmd.a"),
        ("cmd/secret/k", "cmd.secret.k"),
        ("reply/x", "reply.x"),
        ("other", "other"),
    ]
    nats_pub, mqtt_pub, nats_sub, mqtt_sub = {}, {}, {}, {}
    for i, (topic, subject) in enumerate(cases, start=1):
        await nats_dev.send(b"PUB %s 1\r\nn\r\nPING\r\n" % subject.encode())
        line = await nats_dev.read_line()
        nats_pub[subject] = line == b"PONG\r\n"
        if not nats_pub[subject]:
            await nats_dev.expect(b"PONG\r\n")
        else:
            await obs.expect(b"MSG %s 99 1\r\nn\r\n" % subject.encode())
        await mqtt_dev5.send(mp.publish(topic, b"m", qos=1, mid=i, level=5))
        (ack,) = await mqtt_packets(mqtt_dev5, 1)
        mqtt_pub[subject] = ack.reason_code == 0
        if mqtt_pub[subject]:
            await obs.expect_re(rb"H?MSG %s 99 " % subject.encode())
            await obs.read_line()
            await obs.read_line()
        await nats_dev.send(b"SUB %s s%d\r\nPING\r\n" % (subject.encode(), i))
        nats_sub[subject] = (await nats_dev.read_line()) == b"PONG\r\n"
        if not nats_sub[subject]:
            await nats_dev.expect(b"PONG\r\n")
        await mqtt_dev5.send(mp.subscribe(100 + i, (topic, 0), level=5))
        (suback,) = await mqtt_packets(mqtt_dev5, 1)
        mqtt_sub[subject] = suback.reason_codes[0] < 0x80
    assert (
        nats_pub
        == mqtt_pub
        == {
            "sensors.a": True,
            "sensors.secret": False,
            "cmd.a": False,
            "cmd.secret.k": False,
            "reply.x": True,
            "other": False,
        }
    )
    assert (
        nats_sub
        == mqtt_sub
        == {
            "sensors.a": False,
            "sensors.secret": False,
            "cmd.a": True,
            "cmd.secret.k": False,
            "reply.x": False,
            "other": False,
        }
    )


async def test_denied_subjects_never_delivered_through_wildcards(server_factory):
    """Whichever way the server handles a wildcard that overlaps a deny rule (refuse it,
    or accept it and filter at delivery, as nats-server does), a denied subject never
    reaches the client, on either protocol."""
    server = await server_factory(auth=auth())
    filtering = server.security.filter_deliveries
    pub = await nats_connect(server.nats_port, creds("observer"))
    dev = await nats_connect(server.nats_port, creds("dev"))
    await dev.send(b"SUB cmd.> 1\r\nPING\r\n")
    if filtering:
        await dev.expect(b"PONG\r\n")
    else:
        await dev.expect(b"-ERR 'Permissions Violation for Subscription to \"cmd.>\"'\r\nPONG\r\n")
    mq = await mqtt_dev(server, 5)
    await mq.send(mp.subscribe(1, ("cmd/+/#", 0), level=5))
    (suback,) = await mqtt_packets(mq, 1)
    assert suback.reason_codes == ([0] if filtering else [0x87])
    await pub.send(b"PUB cmd.secret.key 1\r\nS\r\nPUB cmd.open 1\r\nO\r\nPING\r\n")
    await pub.expect(b"PONG\r\n")
    await dev.send(b"PING\r\n")
    if filtering:
        await dev.expect(b"MSG cmd.open 1 1\r\nO\r\nPONG\r\n")
        (publish,) = await mqtt_packets(mq, 1)
        assert publish.topic == "cmd/open"
    else:
        await dev.expect(b"PONG\r\n")
    await mq.send(b"\xc0\x00")  # PINGREQ: everything sent before it has arrived
    (last,) = await mqtt_packets(mq, 1)
    assert type(last).__name__ == "Pingresp"
