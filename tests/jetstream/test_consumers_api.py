"""CONSUMER.CREATE / DURABLE.CREATE / INFO / LIST / NAMES / DELETE: the subject forms,
their rules, create-or-update, the checks and their numbers, and ConsumerInfo's shape
(/work/shared/docs/jetstream-subset.md sections 1, 2.9 and 3).

Run with HB_REFERENCE=1 to check the same assertions against nats-server 2.15.1
(see consumer_env.py)."""

from __future__ import annotations

import asyncio
import re

import nats
import pytest
from nats.js.errors import NotFoundError

from tests.jetstream import consumer_env

env = consumer_env.env  # the fixture

C = "$JS.API.CONSUMER."


def err(doc: dict) -> tuple[int, int]:
    assert "error" in doc, doc
    return doc["error"]["code"], doc["error"]["err_code"]


async def test_the_four_create_forms(env):
    await env.add_stream("S", ["s.>"])
    # legacy ephemeral: the server names it (8 characters) and gives it 5 s of inactivity
    doc = await env.api(C + "CREATE.S", {"stream_name": "S", "config": {}})
    assert re.fullmatch(r"[A-Za-z0-9]{8}", doc["name"]), doc
    cfg = doc["config"]
    assert cfg["inactive_threshold"] == 5_000_000_000 and cfg["ack_policy"] == "none"
    assert cfg["max_waiting"] == 512 and cfg["num_replicas"] == 0 and cfg["max_deliver"] == -1
    assert "ack_wait" not in cfg and "max_ack_pending" not in cfg and "durable_name" not in cfg
    # named: the name in the subject wins
    doc = await env.api(C + "CREATE.S.n1", {"stream_name": "S", "config": {"name": "other"}})
    assert doc["name"] == "n1" and doc["config"]["name"] == "n1"
    # named with the filter in the subject (dots and wildcards kept)
    doc = await env.api(
        C + "CREATE.S.n2.s.*.x",
        {"stream_name": "S", "config": {"filter_subject": "s.*.x", "ack_policy": "explicit"}},
    )
    assert doc["name"] == "n2" and doc["config"]["filter_subject"] == "s.*.x"
    assert doc["config"]["ack_wait"] == 30_000_000_000
    assert doc["config"]["max_ack_pending"] == 1000
    # the durable form
    doc = await env.api(
        C + "DURABLE.CREATE.S.d1", {"stream_name": "S", "config": {"durable_name": "d1"}}
    )
    assert doc["name"] == "d1" and doc["config"]["durable_name"] == "d1"
    assert "inactive_threshold" not in doc["config"]  # durables never expire by default
    # what nats-py's pull_subscribe sends: zeros for the unset durations
    doc = await env.create(
        "S",
        {
            "name": "d2",
            "durable_name": "d2",
            "deliver_policy": "all",
            "ack_policy": "explicit",
            "replay_policy": "instant",
            "ack_wait": 0,
            "idle_heartbeat": 0,
            "inactive_threshold": 0,
        },
    )
    assert doc["config"]["ack_wait"] == 30_000_000_000
    assert "idle_heartbeat" not in doc["config"] and "inactive_threshold" not in doc["config"]
    names = await env.api(C + "NAMES.S")
    assert names["total"] == 5 and set(names["consumers"]) >= {"n1", "n2", "d1", "d2"}


async def test_create_subject_rules(env):
    await env.add_stream("S", ["s.>"])
    bad = {
        # stream in the body must match the subject (an empty body has none)
        (C + "CREATE.S.x", b""): (400, 10056),
        (C + "CREATE.S.x", b'{"stream_name":"T","config":{}}'): (400, 10056),
        (C + "CREATE.S.x", b"{bad"): (400, 10025),
        (C + "CREATE.S.x", b'{"stream_name":"S","config":{"durable_name":"y"}}'): (400, 10017),
        (C + "CREATE.S", b'{"stream_name":"S","config":{"durable_name":"y"}}'): (400, 10020),
        (C + "DURABLE.CREATE.S.d", b'{"stream_name":"S","config":{}}'): (400, 10018),
        (C + "DURABLE.CREATE.S.d", b'{"stream_name":"S","config":{"durable_name":"e"}}'): (
            400,
            10017,
        ),
        (C + "CREATE.S.x.s.a", b'{"stream_name":"S","config":{}}'): (400, 10131),
        (C + "CREATE.S.x.s.a", b'{"stream_name":"S","config":{"filter_subject":"s.b"}}'): (
            400,
            10131,
        ),
        (C + "CREATE.S.x.s.a", b'{"stream_name":"S","config":{"filter_subjects":["s.a"]}}'): (
            400,
            10137,
        ),
        (C + "CREATE.NOPE.x", b'{"stream_name":"NOPE","config":{}}'): (404, 10059),
        (C + "CREATE.S.x", b'{"stream_name":"S","config":{"ack_policy":"bogus"}}'): (400, 10025),
    }
    for (subject, body), expected in bad.items():
        assert err(await env.api(subject, body)) == expected, (subject, body)
    assert (await env.api(C + "NAMES.S"))["total"] == 0


async def test_config_checks_have_nats_server_numbers(env):
    await env.add_stream("S", ["s.>"])
    await env.add_stream("W", ["w.>"], retention="workqueue")
    cases = [
        ({"deliver_subject": "d", "flow_control": True}, (400, 10108)),
        ({"deliver_subject": "d", "idle_heartbeat": 50_000_000}, (400, 10083)),
        ({"idle_heartbeat": 500_000_000}, (400, 10088)),
        ({"flow_control": True, "idle_heartbeat": 500_000_000}, (400, 10088)),
        ({"deliver_subject": "d.*"}, (400, 10079)),
        ({"deliver_subject": "s.x"}, (400, 10081)),  # deliveries would be stored again
        ({"rate_limit_bps": 1000}, (400, 10086)),
        ({"deliver_subject": "d", "max_waiting": 5}, (400, 10080)),
        ({"deliver_subject": "d", "max_ack_pending": 5}, (400, 10082)),
        ({"backoff": [1_000_000_000, 2_000_000_000], "max_deliver": 1}, (400, 10116)),
        ({"backoff": [-1]}, (400, 10184)),
        ({"ack_wait": -5}, (400, 10183)),
        ({"deliver_policy": "last_per_subject"}, (400, 10094)),
        ({"deliver_policy": "by_start_sequence"}, (400, 10094)),
        ({"deliver_policy": "all", "opt_start_seq": 3}, (400, 10094)),
        ({"filter_subject": "s.a", "filter_subjects": ["s.b"]}, (400, 10136)),
        ({"filter_subjects": ["s.a", "s.*"]}, (400, 10138)),
        ({"filter_subjects": [""]}, (400, 10139)),
        ({"description": "x" * 5000}, (400, 10107)),
        ({"num_replicas": 3}, (500, 10074)),
        ({"sample_freq": "abc"}, (400, 10095)),
    ]
    for cfg, expected in cases:
        body = {"stream_name": "S", "config": dict(cfg, name="c")}
        assert err(await env.api(C + "CREATE.S.c", body)) == expected, cfg
    for cfg, expected in [
        ({"ack_policy": "none"}, (400, 10084)),
        ({"ack_policy": "explicit", "deliver_policy": "new"}, (400, 10101)),
    ]:
        body = {"stream_name": "W", "config": dict(cfg, name="w")}
        assert err(await env.api(C + "CREATE.W.w", body)) == expected, cfg
    ok = await env.create("W", {"name": "w1", "ack_policy": "explicit"})
    assert ok["name"] == "w1"
    assert err(await env.create("W", {"name": "w2", "ack_policy": "explicit"})) == (400, 10099)
    assert (await env.api(C + "NAMES.S"))["total"] == 0


async def test_create_or_update(env):
    await env.add_stream("S", ["s.>"])
    base = {"durable_name": "d", "ack_policy": "explicit", "deliver_policy": "all"}
    doc = await env.create("S", base)
    created = doc["created"]
    doc = await env.create("S", dict(base, ack_wait=5_000_000_000, description="hi"))
    assert doc["config"]["ack_wait"] == 5_000_000_000 and doc["config"]["description"] == "hi"
    assert doc["created"] == created
    for change, text in [
        ({"deliver_policy": "new"}, "deliver policy can not be updated"),
        ({"ack_policy": "all"}, "ack policy can not be updated"),
        ({"replay_policy": "original"}, "replay policy can not be updated"),
        ({"deliver_subject": "dd"}, "can not update pull consumer to push based"),
        ({"max_waiting": 10}, "max waiting can not be updated"),
        ({"mem_storage": True}, "storage type can not be updated"),
    ]:
        doc = await env.create("S", dict(base, ack_wait=5_000_000_000, description="hi", **change))
        assert err(doc) == (500, 10012) and doc["error"]["description"] == text, change
    # the action field (nats-py never sends it, other clients do)
    same = {"name": "d", **base, "ack_wait": 5_000_000_000, "description": "hi"}
    subj = C + "CREATE.S.d"
    doc = await env.api(subj, {"stream_name": "S", "config": same, "action": "create"})
    assert doc["name"] == "d"
    doc = await env.api(
        subj, {"stream_name": "S", "config": dict(same, description="x"), "action": "create"}
    )
    assert err(doc) == (400, 10148)
    doc = await env.api(
        C + "CREATE.S.zz", {"stream_name": "S", "config": {"name": "zz"}, "action": "update"}
    )
    assert err(doc) == (400, 10149)
    info = await env.info("S", "d")
    assert info["config"]["ack_wait"] == 5_000_000_000


async def test_info_list_names_delete(env):
    await env.add_stream("S", ["s.>"])
    assert err(await env.info("S", "nope")) == (404, 10014)
    assert err(await env.info("NOPE", "nope")) == (404, 10059)
    assert err(await env.api(C + "DELETE.S.nope")) == (404, 10014)
    assert err(await env.api(C + "DELETE.NOPE.nope")) == (404, 10059)
    assert err(await env.api(C + "NAMES.NOPE")) == (404, 10059)
    assert err(await env.api(C + "LIST.NOPE")) == (404, 10059)
    empty = await env.api(C + "NAMES.S")
    assert empty["total"] == 0 and empty["consumers"] == [] and empty["limit"] == 1024
    for name in ("c", "a", "b"):
        await env.create("S", {"durable_name": name, "ack_policy": "explicit"})
    names = await env.api(C + "NAMES.S")
    assert names["consumers"] == ["a", "b", "c"] and names["total"] == 3
    page = await env.api(C + "NAMES.S", {"offset": 1})
    assert page["consumers"] == ["b", "c"] and page["offset"] == 1
    listed = await env.api(C + "LIST.S")
    assert listed["limit"] == 256 and [c["name"] for c in listed["consumers"]] == ["a", "b", "c"]
    beyond = await env.api(C + "LIST.S", {"offset": 10})
    assert beyond["consumers"] == [] and beyond["total"] == 3
    assert (await env.api(C + "DELETE.S.b")) == {"success": True}
    assert err(await env.api(C + "DELETE.S.b")) == (404, 10014)
    # nats-py's own calls
    assert await env.js.delete_consumer("S", "a") is True
    with pytest.raises(NotFoundError):
        await env.js.consumer_info("S", "a")
    infos = await env.js.consumers_info("S")
    assert [i.name for i in infos] == ["c"]
    si = await env.js.stream_info("S")
    assert si.state.consumer_count == 1


async def test_consumer_info_shape_and_numbers(env):
    await env.add_stream("S", ["s.>"])
    await env.publish("s.a", 5)
    await env.create("S", {"durable_name": "d", "ack_policy": "explicit"})
    info = await env.info("S", "d")
    for key in (
        "stream_name",
        "name",
        "created",
        "config",
        "delivered",
        "ack_floor",
        "num_ack_pending",
        "num_redelivered",
        "num_waiting",
        "num_pending",
        "ts",
    ):
        assert key in info, key
    assert info["delivered"] == {"consumer_seq": 0, "stream_seq": 0}
    assert info["num_pending"] == 5 and "push_bound" not in info
    assert info["created"].endswith("Z")
    sub = await env.js.pull_subscribe("s.a", durable="d", stream="S")
    msgs = await sub.fetch(3, timeout=1)
    info = await env.info("S", "d")
    assert info["delivered"]["consumer_seq"] == 3 and info["delivered"]["stream_seq"] == 3
    assert "last_active" in info["delivered"]
    assert (info["num_ack_pending"], info["num_pending"]) == (3, 2)
    assert info["ack_floor"] == {"consumer_seq": 0, "stream_seq": 0}
    await msgs[0].ack()
    await msgs[1].ack()
    await msgs[2].nak()
    await asyncio.sleep(0.1)
    info = await env.info("S", "d")
    assert info["ack_floor"]["consumer_seq"] == 2 and info["ack_floor"]["stream_seq"] == 2
    assert "last_active" in info["ack_floor"]
    again = await sub.fetch(1, timeout=1)
    assert again[0].metadata.sequence.stream == 3 and again[0].metadata.num_delivered == 2
    info = await env.info("S", "d")
    assert info["num_redelivered"] == 1 and info["num_ack_pending"] == 1
    # the floor counts from the first delivery of the message still pending
    assert info["ack_floor"] == {
        "consumer_seq": 2,
        "stream_seq": 2,
        "last_active": info["ack_floor"]["last_active"],
    }
    assert info["delivered"]["consumer_seq"] == 4 and info["delivered"]["stream_seq"] == 3
    await again[0].ack()
    await asyncio.sleep(0.1)
    info = await env.info("S", "d")
    assert info["ack_floor"]["consumer_seq"] == 4 and info["ack_floor"]["stream_seq"] == 3
    assert info["num_ack_pending"] == 0 and info["num_redelivered"] == 0


async def test_push_bound_only_while_subscribed(env):
    await env.add_stream("S", ["s.>"])
    nc2 = await env.connect()
    sub = await nc2.subscribe("deliver.here")
    doc = await env.create(
        "S", {"durable_name": "p", "deliver_subject": "deliver.here", "ack_policy": "explicit"}
    )
    assert doc.get("push_bound") is True
    assert "max_waiting" not in doc["config"]
    # a bound push consumer keeps its deliver subject
    moved = await env.create(
        "S", {"durable_name": "p", "deliver_subject": "elsewhere", "ack_policy": "explicit"}
    )
    assert err(moved) == (400, 10013)
    # nats-py refuses a second subscriber to a bound durable
    with pytest.raises(nats.js.errors.Error, match="already bound"):
        await env.js.subscribe("s.>", durable="p", stream="S")
    await sub.unsubscribe()
    await nc2.flush()
    await asyncio.sleep(0.2)
    info = await env.info("S", "p")
    assert "push_bound" not in info
    moved = await env.create(
        "S", {"durable_name": "p", "deliver_subject": "elsewhere", "ack_policy": "explicit"}
    )
    assert moved["config"]["deliver_subject"] == "elsewhere"


async def test_internal_mqtt_streams_refuse_consumers(server_factory):
    """hybridbus only: the MQTT layer's $MQTT_* streams are not for clients' consumers."""
    server = await server_factory()
    from tests.helpers.wire import mqtt_connect

    await (await mqtt_connect(server.mqtt_port)).close()  # they show once MQTT is used
    nc = await nats.connect(f"nats://127.0.0.1:{server.nats_port}")
    try:
        internal = [s.name for s in server.store.streams() if s.name.startswith("$MQTT_")]
        assert internal
        name = internal[0]
        body = b'{"stream_name":"%s","config":{"durable_name":"x"}}' % name.encode()
        msg = await nc.request(f"$JS.API.CONSUMER.DURABLE.CREATE.{name}.x", body, timeout=2)
        assert b'"err_code":10003' in msg.data and b'"code":400' in msg.data
    finally:
        await nc.close()
