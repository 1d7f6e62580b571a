"""The stream API with nats-py 2.16 and raw requests: create, update, info, lists,
delete, purge, message get/delete, the $MQTT_ streams, and a key-by-key comparison of
the answers with a real nats-server 2.15.1 (docs: jetstream-subset.md sections 1-3)."""

from __future__ import annotations

import asyncio
import json
import time

import nats
import pytest
from nats.js.errors import BadRequestError, NoStreamResponseError, NotFoundError, ServerError

from hybridbus.server.server import Server
from tests.conftest import make_options
from tests.jetstream import stream_env
from tests.jetstream.stream_env import start_nats_server, stop

senv = stream_env.senv  # the fixture

# --------------------------------------------------------------------------- create


async def test_add_stream_echoes_the_defaulted_config(senv):
    info = await senv.js.add_stream(name="ORDERS", subjects=["orders.>"])
    c = info.config
    assert (c.name, c.subjects, c.retention, c.storage, c.discard) == (
        "ORDERS",
        ["orders.>"],
        "limits",
        "file",
        "old",
    )
    assert (c.max_msgs, c.max_bytes, c.max_consumers, c.max_msgs_per_subject, c.max_msg_size) == (
        -1,
        -1,
        -1,
        -1,
        -1,
    )
    assert (c.duplicate_window, c.num_replicas, c.allow_direct, c.max_age) == (120.0, 1, False, 0)
    s = info.state
    assert (s.messages, s.bytes, s.first_seq, s.last_seq, s.consumer_count) == (0, 0, 0, 0, 0)
    raw = await senv.api(
        "$JS.API.STREAM.CREATE.ORDERS", {"name": "ORDERS", "subjects": ["orders.>"]}
    )
    assert list(raw) == ["config", "created", "state", "ts", "did_create"]
    assert raw["config"]["consumer_limits"] == {} and raw["config"]["compression"] == "none"
    assert raw["state"]["first_ts"] == "0001-01-01T00:00:00Z"


async def test_create_again_identical_after_defaults_is_a_success(senv):
    await senv.js.add_stream(name="S", subjects=["s.>"])
    again = await senv.api(
        "$JS.API.STREAM.CREATE.S",
        {"name": "S", "subjects": ["s.>"], "max_msgs": -1, "duplicate_window": 0, "discard": "old"},
    )
    assert again["did_create"] is True and "error" not in again
    with pytest.raises(BadRequestError) as ei:
        await senv.js.add_stream(name="S", subjects=["s.>"], max_msgs=5)
    assert (ei.value.code, ei.value.err_code) == (400, 10058)
    assert ei.value.description == "stream name already in use with a different configuration"


async def test_create_errors(senv):
    await senv.js.add_stream(name="S", subjects=["s.>"])
    with pytest.raises(BadRequestError) as ei:
        await senv.js.add_stream(name="T", subjects=["s.a.*"])
    assert (ei.value.err_code, ei.value.description) == (
        10065,
        "subjects overlap with an existing stream",
    )
    assert await senv.error("$JS.API.STREAM.CREATE.X", {"name": "Y"}) == (
        400,
        10056,
        "stream name in subject does not match request",
    )
    assert await senv.error(
        "$JS.API.STREAM.CREATE.X", {"name": "X", "subjects": ["a.*", "a.b"]}
    ) == (
        500,
        10052,
        'subject "a.*" overlaps with "a.b"',
    )
    assert await senv.error("$JS.API.STREAM.CREATE.X", {"name": "X", "sealed": True}) == (
        500,
        10052,
        "stream configuration for create can not be sealed",
    )
    assert await senv.error("$JS.API.STREAM.CREATE.X", {"name": "X", "num_replicas": 3}) == (
        500,
        10074,
        "replicas > 1 not supported in non-clustered mode",
    )
    assert await senv.error("$JS.API.STREAM.CREATE.X", {"name": "X", "max_age": 5}) == (
        500,
        10052,
        "max age needs to be >= 100ms",
    )
    code = await senv.error(
        "$JS.API.STREAM.CREATE.X", {"name": "X", "deny_purge": True, "allow_rollup_hdrs": True}
    )
    assert code == (500, 10052, "roll-ups require the purge permission")
    with pytest.raises(ServerError) as ei:  # 500: nats-py's ServerError
        await senv.js.add_stream(name="X", subjects=["$JS.API.>"])
    assert ei.value.err_code == 10052


async def test_mirror_and_sources_configs_are_accepted_and_echoed(senv):
    await senv.js.add_stream(name="O", subjects=["o.>"], allow_direct=True)
    m = await senv.api("$JS.API.STREAM.CREATE.M", {"name": "M", "mirror": {"name": "O"}})
    assert m["config"]["mirror"] == {"name": "O"}
    assert "subjects" not in m["config"] and "duplicate_window" not in m["config"]
    assert m["config"]["mirror_direct"] is True  # inherited from the origin's allow_direct
    assert m["mirror"]["name"] == "O"
    s = await senv.api(
        "$JS.API.STREAM.CREATE.SRC",
        {"name": "SRC", "sources": [{"name": "O", "filter_subject": "o.a"}]},
    )
    assert s["config"]["sources"] == [{"name": "O", "filter_subject": "o.a"}]
    assert [x["name"] for x in s["sources"]] == ["O"]
    assert await senv.error(
        "$JS.API.STREAM.CREATE.M2", {"name": "M2", "mirror": {"name": "O"}, "subjects": ["x"]}
    ) == (400, 10034, "stream mirrors can not contain subjects")
    assert await senv.error(
        "$JS.API.STREAM.UPDATE.M", {"name": "M", "mirror": {"name": "SRC"}}
    ) == (400, 10055, "stream mirror configuration can not be updated")
    # removing the mirror promotes the stream (nats-server 2.12+): it gets its own subject
    promoted = await senv.api("$JS.API.STREAM.UPDATE.M", {"name": "M"})
    assert promoted["config"]["subjects"] == ["M"] and "mirror" not in promoted["config"]


# --------------------------------------------------------------------------- update


async def test_update_stream_changes_what_may_change(senv):
    await senv.js.add_stream(name="S", subjects=["s.>"])
    info = await senv.js.update_stream(name="S", subjects=["s.>", "more.>"], max_msgs=10)
    assert info.config.subjects == ["s.>", "more.>"] and info.config.max_msgs == 10
    ack = await senv.js.publish("more.x", b"1")  # the new subject is captured at once
    assert (ack.stream, ack.seq) == ("S", 1)
    info = await senv.js.update_stream(name="S", subjects=["s.>"], max_msgs=10)
    with pytest.raises(NoStreamResponseError):
        await senv.js.publish("more.x", b"2")
    info = await senv.js.update_stream(name="S", subjects=["s.>"], retention="interest")
    assert info.config.retention == "interest"
    with pytest.raises(NotFoundError) as ei:
        await senv.js.update_stream(name="NOPE", subjects=["nope"])
    assert ei.value.err_code == 10059


@pytest.mark.parametrize(
    "first, then, text",
    [
        ({}, {"storage": "memory"}, "stream configuration update can not change storage type"),
        (
            {},
            {"retention": "workqueue"},
            "stream configuration update can not change retention policy to/from workqueue",
        ),
        (
            {"deny_delete": True},
            {},
            "stream configuration update can not cancel deny message deletes",
        ),
        ({"deny_purge": True}, {}, "stream configuration update can not cancel deny purge"),
        ({"allow_msg_ttl": True}, {}, "message TTL status can not be disabled"),
    ],
)
async def test_update_refuses_what_nats_server_refuses(senv, first, then, text):
    await senv.api("$JS.API.STREAM.CREATE.U", {"name": "U", **first})
    assert await senv.error("$JS.API.STREAM.UPDATE.U", {"name": "U", **then}) == (500, 10052, text)


async def test_sealing_forces_its_fields_and_cannot_be_undone(senv):
    await senv.js.add_stream(name="S", subjects=["s"], max_age=60, allow_rollup_hdrs=True)
    await senv.js.publish("s", b"1")
    sealed = await senv.api(
        "$JS.API.STREAM.UPDATE.S",
        {"name": "S", "subjects": ["s"], "max_age": 60_000_000_000, "sealed": True},
    )
    c = sealed["config"]
    assert (c["sealed"], c["deny_delete"], c["deny_purge"], c["discard"], c["max_age"]) == (
        True,
        True,
        True,
        "new",
        0,
    )
    assert c["allow_rollup_hdrs"] is False
    assert await senv.error("$JS.API.STREAM.UPDATE.S", {"name": "S", "subjects": ["s"]}) == (
        500,
        10052,
        "stream configuration update can not unseal a sealed stream",
    )
    ack = await senv.pub_ack("s", b"2")
    assert ack["error"] == {
        "code": 400,
        "err_code": 10109,
        "description": "invalid operation on sealed stream",
    }
    assert await senv.error("$JS.API.STREAM.PURGE.S", {}) == (
        400,
        10109,
        "invalid operation on sealed stream",
    )


# --------------------------------------------------------------------------- info / lists


async def test_stream_info_with_subjects_filter_and_paging(senv):
    await senv.js.add_stream(name="S", subjects=["s.>"])
    for subj in ("s.b", "s.a", "s.b", "s.c", "s.b"):
        await senv.js.publish(subj, b"x")
    info = await senv.js.stream_info("S", subjects_filter="s.b")
    assert info.state.subjects == {"s.b": 3}
    raw = await senv.api("$JS.API.STREAM.INFO.S", {"subjects_filter": ">", "offset": 1})
    assert (raw["total"], raw["offset"], raw["limit"]) == (3, 1, 100000)
    assert raw["state"]["subjects"] == {"s.b": 3, "s.c": 1}  # sorted, from the offset
    plain = await senv.api("$JS.API.STREAM.INFO.S")
    assert (plain["total"], plain["offset"], plain["limit"]) == (0, 0, 0)
    assert "subjects" not in plain["state"] and plain["state"]["num_subjects"] == 3
    await senv.js.delete_msg("S", 2)
    detail = await senv.api("$JS.API.STREAM.INFO.S", {"deleted_details": True})
    assert detail["state"]["deleted"] == [2] and detail["state"]["num_deleted"] == 1
    with pytest.raises(NotFoundError) as ei:
        await senv.js.stream_info("NOPE")
    assert (ei.value.code, ei.value.err_code) == (404, 10059)
    missing = await senv.api("$JS.API.STREAM.INFO.NOPE")
    assert {k: missing[k] for k in ("total", "offset", "limit")} == {
        "total": 0,
        "offset": 0,
        "limit": 0,
    }


async def test_names_list_and_find_stream_by_subject(senv):
    await senv.js.add_stream(name="B", subjects=["b.>"])
    await senv.js.add_stream(name="A", subjects=["a.*"])
    await senv.js.add_stream(name="OBJ", subjects=["$O.files.M.>"])
    assert await senv.js.find_stream_name_by_subject("a.x") == "A"
    assert await senv.js.find_stream_name_by_subject("b.zzz.y") == "B"
    assert await senv.js.find_stream_name_by_subject("$O.files.M.>") == "OBJ"
    with pytest.raises(NotFoundError):
        await senv.js.find_stream_name_by_subject("nothing.here")
    names = await senv.api("$JS.API.STREAM.NAMES", {"subject": "*.x"})
    assert names == {"total": 2, "offset": 0, "limit": 1024, "streams": ["A", "B"]}
    none = await senv.api("$JS.API.STREAM.NAMES", {"subject": "zz"})
    assert none["streams"] is None and none["total"] == 0
    infos = await senv.js.streams_info()
    mine = [i.config.name for i in infos if not i.config.name.startswith("$MQTT_")]
    assert mine == ["A", "B", "OBJ"]
    first = (await senv.api("$JS.API.STREAM.LIST", {"subject": "a.x"}))["streams"][0]
    assert list(first) == ["config", "created", "state", "ts"]  # no cluster here
    listing = await senv.api("$JS.API.STREAM.LIST", {"offset": 1000})
    assert listing["streams"] == [] and listing["offset"] == listing["total"]
    assert listing["limit"] == 256


# --------------------------------------------------------------------------- delete / purge


async def test_delete_stream(senv):
    await senv.js.add_stream(name="S", subjects=["s"])
    await senv.js.publish("s", b"1")
    assert await senv.js.delete_stream("S") is True
    with pytest.raises(NotFoundError) as ei:
        await senv.js.delete_stream("S")
    assert ei.value.err_code == 10059
    with pytest.raises(NoStreamResponseError):
        await senv.js.publish("s", b"2")
    await senv.js.add_stream(name="S", subjects=["s"])
    assert (await senv.js.publish("s", b"3")).seq == 1  # a new stream, from 1
    assert await senv.error("$JS.API.STREAM.DELETE.S", b'{"x":1}') == (
        400,
        10038,
        "expected an empty request payload",
    )


async def _purge_fixture(senv) -> None:
    await senv.js.add_stream(name="P", subjects=["p.>"])
    for i in range(6):
        await senv.js.publish(f"p.{i % 3}", b"m%d" % i)


async def test_purge_variants(senv):
    await _purge_fixture(senv)
    assert await senv.js.purge_stream("P", subject="p.0") is True
    s = (await senv.js.stream_info("P")).state
    assert (s.messages, s.first_seq) == (4, 2)
    raw = await senv.api("$JS.API.STREAM.PURGE.P", {"seq": 4})
    assert raw == {"success": True, "purged": 2}
    assert (await senv.js.stream_info("P")).state.first_seq == 5
    assert await senv.js.purge_stream("P", keep=1) is True
    s = (await senv.js.stream_info("P")).state
    assert (s.messages, s.first_seq, s.last_seq) == (1, 6, 6)
    assert await senv.js.purge_stream("P") is True
    s = (await senv.js.stream_info("P")).state
    assert (s.messages, s.first_seq, s.last_seq) == (0, 7, 6)
    bad = await senv.api("$JS.API.STREAM.PURGE.P", {"seq": 3, "keep": 1})
    assert bad == {
        "error": {"code": 400, "err_code": 10003, "description": "bad request"},
        "purged": 0,
    }
    gone = await senv.api("$JS.API.STREAM.PURGE.NOPE", {})
    assert gone["error"]["err_code"] == 10059 and gone["purged"] == 0


async def test_purge_by_seq_and_keep_with_a_filter(senv):
    await _purge_fixture(senv)
    assert (await senv.api("$JS.API.STREAM.PURGE.P", {"filter": "p.1", "seq": 5}))["purged"] == 1
    assert (await senv.api("$JS.API.STREAM.PURGE.P", {"filter": "p.>", "keep": 2}))["purged"] == 3
    left = await senv.js.stream_info("P", subjects_filter=">")
    assert left.state.subjects == {"p.1": 1, "p.2": 1}
    await senv.api("$JS.API.STREAM.CREATE.D", {"name": "D", "deny_purge": True})
    assert await senv.error("$JS.API.STREAM.PURGE.D", {}) == (
        500,
        10110,
        "stream purge not permitted",
    )


# --------------------------------------------------------------------------- messages


async def test_get_msg_forms(senv):
    await senv.js.add_stream(name="G", subjects=["g.>"])
    await senv.js.publish("g.a", b"1")
    await senv.js.publish("g.b", b"2", headers={"X-Y": "z"})
    await senv.js.publish("g.a", b"3")
    await senv.js.publish("g.b", b"")
    m = await senv.js.get_msg("G", 2)
    assert (m.subject, m.seq, m.data, m.headers) == ("g.b", 2, b"2", {"X-Y": "z"})
    assert m.time is not None
    last = await senv.js.get_last_msg("G", "g.a")
    assert (last.seq, last.data) == (3, b"3")
    nxt = await senv.js.get_msg("G", 2, subject="g.a", next=True)
    assert nxt.seq == 3
    wild = await senv.js.get_last_msg("G", "g.*")
    assert (wild.seq, wild.data) == (4, None)  # an empty payload: no "data"
    raw = await senv.api("$JS.API.STREAM.MSG.GET.G", {"seq": 4})
    assert list(raw["message"]) == ["subject", "seq", "time"]
    raw = await senv.api("$JS.API.STREAM.MSG.GET.G", {"seq": 2})
    assert raw["message"]["hdrs"] == "TkFUUy8xLjANClgtWTogeg0KDQo="  # NATS/1.0 X-Y: z
    with pytest.raises(NotFoundError) as ei:
        await senv.js.get_msg("G", 99)
    assert (ei.value.err_code, ei.value.description) == (10037, "no message found")
    for body in (
        {},
        {"seq": 1, "last_by_subj": "g.a"},
        {"last_by_subj": "g.a", "next_by_subj": "g.a"},
    ):
        assert await senv.error("$JS.API.STREAM.MSG.GET.G", body) == (400, 10003, "bad request")
    assert (await senv.error("$JS.API.STREAM.MSG.GET.NOPE", {"seq": 1}))[1] == 10059


async def test_delete_msg(senv):
    await senv.js.add_stream(name="D", subjects=["d"])
    for i in range(3):
        await senv.js.publish("d", b"%d" % i)
    assert await senv.js.delete_msg("D", 2) is True
    with pytest.raises(BadRequestError) as ei:
        await senv.js.delete_msg("D", 2)
    assert (ei.value.err_code, ei.value.description) == (10043, "sequence 2 not found")
    assert await senv.error("$JS.API.STREAM.MSG.DELETE.D", {"seq": 9}) == (
        500,
        10057,
        "stream store EOF",
    )
    assert await senv.error("$JS.API.STREAM.MSG.DELETE.D", {}) == (400, 10003, "bad request")
    ok = await senv.api("$JS.API.STREAM.MSG.DELETE.D", {"seq": 3, "no_erase": True})
    assert ok == {"success": True}
    await senv.js.add_stream(name="KV_x", subjects=["$KV.x.>"], deny_delete=True)
    await senv.js.publish("$KV.x.k", b"v")
    with pytest.raises(ServerError) as ei:
        await senv.js.delete_msg("KV_x", 1)
    assert (ei.value.code, ei.value.err_code) == (500, 10057)


# --------------------------------------------------------------------------- $MQTT_ streams


async def test_mqtt_streams_are_listed_readable_and_protected(senv):
    if senv.reference:
        pytest.skip("hybridbus's own streams")
    from tests.helpers.wire import mqtt_connect

    await (await mqtt_connect(senv.server.mqtt_port)).close()  # they show once MQTT is used
    names = (await senv.api("$JS.API.STREAM.NAMES"))["streams"]
    internal = ["$MQTT_out", "$MQTT_qos2in", "$MQTT_rmsgs", "$MQTT_sess"]
    assert [n for n in names if n.startswith("$MQTT_")] == internal
    info = await senv.js.stream_info("$MQTT_sess")
    assert info.config.subjects == ["$MQTT.sess.>"]
    with pytest.raises(NotFoundError):  # readable: an empty stream has no message 1
        await senv.js.get_msg("$MQTT_rmsgs", 1)
    for subject, body in (
        ("$JS.API.STREAM.UPDATE.$MQTT_sess", {"name": "$MQTT_sess", "subjects": ["x"]}),
        ("$JS.API.STREAM.DELETE.$MQTT_sess", b""),
        ("$JS.API.STREAM.PURGE.$MQTT_out", {}),
        ("$JS.API.STREAM.MSG.DELETE.$MQTT_qos2in", {"seq": 1}),
        ("$JS.API.STREAM.CREATE.$MQTT_new", {"name": "$MQTT_new"}),
    ):
        code, err_code, text = await senv.error(subject, body)
        assert (code, err_code) == (400, 10003)
        assert "internal to the MQTT layer" in text
    assert (await senv.js.stream_info("$MQTT_sess")).config.name == "$MQTT_sess"
    # never captured: a NATS publish on their subjects finds no stream
    with pytest.raises(nats.errors.NoRespondersError):
        await senv.nc.request("$MQTT.sess.x", b"y", timeout=1)
    with pytest.raises(BadRequestError) as ei:  # and a user stream may not overlap them
        await senv.js.add_stream(name="EVIL", subjects=["$MQTT.>"])
    assert ei.value.err_code == 10065


async def test_a_retained_mqtt_message_is_readable_in_its_stream(senv):
    if senv.reference:
        pytest.skip("hybridbus's own streams")
    from tests.helpers import mqtt_packets as mp
    from tests.helpers.wire import mqtt_connect

    w = await mqtt_connect(senv.server.mqtt_port, "ret")
    await w.send(mp.publish("news/today", b"sunny", qos=1, mid=1, retain=True))
    await w.expect(mp.puback(1))
    await w.close()
    deadline = time.monotonic() + 3
    while (info := await senv.js.stream_info("$MQTT_rmsgs")).state.messages < 1:
        assert time.monotonic() < deadline, "the retained message is not in its stream"
        await asyncio.sleep(0.02)
    msg = await senv.js.get_msg("$MQTT_rmsgs", info.state.last_seq)
    assert msg.subject.startswith("$MQTT.rmsgs.")


# --------------------------------------------------------------------------- restart


async def test_streams_and_their_answers_survive_a_restart(tmp_path):
    opts = make_options(tmp_path)
    server = Server(opts)
    await server.start()
    nc = await nats.connect(f"nats://127.0.0.1:{server.nats_port}")
    try:
        js = nc.jetstream(timeout=2)
        await js.add_stream(
            name="R",
            subjects=["r.>"],
            allow_direct=True,
            allow_msg_ttl=True,
            max_msgs_per_subject=3,
            description="kept",
            metadata={"k": "v"},
        )
        await js.publish("r.a", b"1")
        before = json.loads((await nc.request("$JS.API.STREAM.INFO.R", b"")).data)
    finally:
        await nc.close()
        await server.shutdown()
    server = Server(make_options(tmp_path))
    await server.start()
    nc = await nats.connect(f"nats://127.0.0.1:{server.nats_port}")
    try:
        after = json.loads((await nc.request("$JS.API.STREAM.INFO.R", b"")).data)
        assert after["config"] == before["config"]
        assert after["created"] == before["created"]
        assert after["state"]["messages"] == 1
        js = nc.jetstream(timeout=2)
        direct = await js.get_msg("R", 1, direct=True)  # responders are back too
        assert direct.data == b"1"
        assert (await js.publish("r.b", b"2")).seq == 2  # and the capture
    finally:
        await nc.close()
        await server.shutdown()


# --------------------------------------------------------------------------- vs nats-server

# Requests whose answers must equal nats-server 2.15.1's, key by key (after dropping
# what differs by nature: times, the server's name, its _nats.* metadata, and the bytes
# counts: hybridbus counts a message as nats-server's memory store does).
COMPARED = [
    ("$JS.API.STREAM.CREATE.C", {"name": "C", "subjects": ["c.>"], "allow_direct": True}),
    ("$JS.API.STREAM.CREATE.C", {"name": "C", "subjects": ["c.>"], "max_msgs": 3}),
    (
        "$JS.API.STREAM.CREATE.K",
        {
            "name": "K",
            "max_age": 2_000_000_000,
            "discard": "new",
            "max_msgs_per_subject": 5,
            "discard_new_per_subject": True,
            "allow_rollup_hdrs": True,
            "deny_delete": True,
            "allow_msg_ttl": True,
            "description": "d",
            "metadata": {"a": "b"},
            "first_seq": 3,
            "consumer_limits": {"max_ack_pending": 5},
        },
    ),
    ("$JS.API.STREAM.CREATE.Z", {"name": "Z", "subjects": ["z"], "max_msgs": 1.5}),
    ("$JS.API.STREAM.CREATE.Z", {"name": "Z", "subjects": ["z"], "bogus": 1}),
    ("$JS.API.STREAM.CREATE.Z", {"name": "Z", "retention": "bogus"}),
    ("$JS.API.STREAM.CREATE.Z", {"name": "Z", "subjects": [5]}),
    ("$JS.API.STREAM.CREATE.Z", {"name": "Z", "max_msg_size": 3_000_000_000}),
    ("$JS.API.STREAM.CREATE.Z", {"name": "Z", "compression": "zz"}),
    ("$JS.API.STREAM.CREATE.Z", {"name": "Z", "subject_delete_marker_ttl": 500}),
    ("$JS.API.STREAM.CREATE.Z", {"name": "Z", "mirror_direct": True}),
    ("$JS.API.STREAM.CREATE.Z", {"name": "Z", "pedantic": True, "max_msgs": -5}),
    ("$JS.API.STREAM.CREATE.Z", {"name": "Z", "num_replicas": -1}),
    ("$JS.API.STREAM.CREATE.Z", {"name": "Z", "sources": [{"name": "a.b"}]}),
    ("$JS.API.STREAM.UPDATE.C", {"name": "C", "subjects": ["c.>", "d"], "allow_direct": False}),
    ("$JS.API.STREAM.UPDATE.C", {"name": "C", "subjects": ["c.>"], "storage": "memory"}),
    ("$JS.API.STREAM.UPDATE.K", {"name": "K"}),
    ("$JS.API.STREAM.UPDATE.NOPE", {"name": "NOPE"}),
    ("$JS.API.STREAM.UPDATE.C", b""),
    ("c.a", b"one"),
    ("c.b", b"two"),
    ("$JS.API.STREAM.INFO.C", {"subjects_filter": "c.*"}),
    ("$JS.API.STREAM.INFO.C", {"bogus": 1}),
    ("$JS.API.STREAM.INFO.NOPE", b""),
    ("$JS.API.STREAM.NAMES", {"subject": "c.x"}),
    ("$JS.API.STREAM.LIST", {"subject": "c.x"}),
    ("$JS.API.STREAM.MSG.GET.C", {"seq": 1}),
    ("$JS.API.STREAM.MSG.GET.C", {"last_by_subj": "c.*"}),
    ("$JS.API.STREAM.MSG.GET.C", {"seq": 9}),
    ("$JS.API.STREAM.MSG.GET.C", {}),
    ("$JS.API.STREAM.MSG.DELETE.C", {"seq": 1}),
    ("$JS.API.STREAM.MSG.DELETE.C", {"seq": 1}),
    ("$JS.API.STREAM.MSG.DELETE.C", {"seq": 0}),
    ("$JS.API.STREAM.PURGE.C", {"seq": 1, "keep": 1}),
    ("$JS.API.STREAM.PURGE.C", {"filter": "c.b"}),
    ("$JS.API.STREAM.DELETE.C", b"x"),
    ("$JS.API.STREAM.DELETE.C", b""),
    ("$JS.API.STREAM.DELETE.C", b""),
]


def _comparable(doc):
    if isinstance(doc, dict):
        out = {}
        for k, v in doc.items():
            if k in ("created", "ts", "first_ts", "last_ts", "time", "bytes"):
                continue
            if k == "cluster":  # there or not as on nats-server; the name is its own
                v = {"leader": "?"}
            if k == "metadata":
                v = {a: b for a, b in v.items() if not a.startswith("_nats.")}
                if not v:
                    continue
            out[k] = _comparable(v)
        return out
    if isinstance(doc, list):
        return [_comparable(x) for x in doc]
    return doc


async def _answers(port: int) -> list:
    nc = await nats.connect(f"nats://127.0.0.1:{port}")
    out = []
    try:
        for subject, body in COMPARED:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            msg = await nc.request(subject, data, timeout=2)
            doc = json.loads(msg.data)
            if isinstance(doc.get("streams"), list):  # our own $MQTT_ streams aside
                doc["streams"] = [s for s in doc["streams"] if "$MQTT_" not in json.dumps(s)]
            out.append(_comparable(doc))
    finally:
        await nc.close()
    return out


async def test_answers_match_nats_server_key_by_key(server_factory, tmp_path):
    started = time.monotonic()
    proc, port = await start_nats_server(str(tmp_path / "ref"))
    try:
        theirs = await _answers(port)
    finally:
        stop(proc)
    server = await server_factory()
    ours = await _answers(server.nats_port)
    for (subject, body), a, b in zip(COMPARED, theirs, ours, strict=True):
        assert b == a, f"{subject} {body!r}"
    assert time.monotonic() - started < 10


async def test_direct_gets_are_not_counted_as_api_requests(senv):
    await senv.js.add_stream(name="D", subjects=["d"], allow_direct=True)
    await senv.js.publish("d", b"x")
    before = (await senv.js.account_info()).api.total
    for _ in range(5):
        await senv.js.get_msg("D", 1, direct=True)
    after = (await senv.js.account_info()).api.total
    assert after == before + 1  # the second INFO only, as nats-server counts


async def test_the_servers_own_metadata_keys_are_not_taken_from_a_client(senv):
    doc = await senv.api(
        "$JS.API.STREAM.CREATE.M", {"name": "M", "metadata": {"_nats.ver": "9.9.9", "k": "v"}}
    )
    meta = doc["config"]["metadata"]
    assert meta["k"] == "v" and meta.get("_nats.ver") != "9.9.9"
