"""A stream's subject_transform and republish (jetstream/republish.py), with a real
server and nats-py 2.16. Expectations checked against nats-server 2.15.1 (HB_REFERENCE=1
runs them there)."""

from __future__ import annotations

import asyncio
import json
import re

import pytest
from nats.js import api
from nats.js.errors import NotFoundError

from tests.jetstream.test_kv import js  # noqa: F401  (the fixture: a server, a context)

REPUBLISHED = ["Nats-Stream", "Nats-Subject", "Nats-Sequence", "Nats-Time-Stamp"]


async def _next(sub, timeout: float = 2.0):
    return await asyncio.wait_for(sub.next_msg(timeout), timeout + 0.5)


async def test_a_transformed_stream_stores_the_transformed_subject(js):  # noqa: F811
    # nats.py's test_subject_transforms: the stored subject is the transformed one.
    await js.add_stream(
        name="TRANSFORMS",
        subjects=["test", "foo"],
        subject_transform=api.SubjectTransform(src=">", dest="transformed.>"),
    )
    for i in range(10):
        ack = await js.publish("test", f"{i}".encode())
        assert ack.seq == i + 1
    psub = await js.pull_subscribe("test")
    assert (await psub.consumer_info()).num_pending == 0
    with pytest.raises(NotFoundError):
        await js.pull_subscribe("transformed.>")  # no stream captures that subject
    psub = await js.pull_subscribe("transformed.test", stream="TRANSFORMS")
    assert (await psub.consumer_info()).num_pending == 10
    msgs = await psub.fetch(10, timeout=1)
    assert [m.subject for m in msgs] == ["transformed.test"] * 10
    assert [m.data for m in msgs] == [f"{i}".encode() for i in range(10)]
    got = await js.get_last_msg("TRANSFORMS", "transformed.test")
    assert got.seq == 10


async def test_a_transform_maps_only_what_its_source_matches(js):  # noqa: F811
    await js.add_stream(
        name="T2",
        subjects=["in.>"],
        subject_transform=api.SubjectTransform(src="in.*.*", dest="out.$2.{{wildcard(1)}}"),
    )
    await js.publish("in.a.b", b"1")
    await js.publish("in.a.b.c", b"2")  # not matched by in.*.*: stored as published
    await js.publish("in.x.y", b"3", headers={"Nats-Expected-Last-Subject-Sequence": "0"})
    assert (await js.get_msg("T2", 1)).subject == "out.b.a"
    assert (await js.get_msg("T2", 2)).subject == "in.a.b.c"
    assert (await js.get_msg("T2", 3)).subject == "out.y.x"
    # the expected last subject sequence is about the transformed subject
    with pytest.raises(Exception) as err:
        await js.publish("in.a.b", b"4", headers={"Nats-Expected-Last-Subject-Sequence": "0"})
    assert getattr(err.value, "err_code", None) == 10071
    ack = await js.publish("in.a.b", b"4", headers={"Nats-Expected-Last-Subject-Sequence": "1"})
    assert ack.seq == 4


async def test_republish_sends_the_stored_message_with_its_headers(js):  # noqa: F811
    nc = js._nc
    sub = await nc.subscribe("zz.>")
    await js.add_stream(name="R", subjects=["r.>"], republish=api.RePublish(src="r.>", dest="zz.>"))
    await js.publish("r.a", b"hi")
    await js.publish("r.b", b"x", headers={"Foo": "bar"})
    await js.publish("r.a", b"yo")
    await js.publish("r.a", b"yo", headers={"Nats-Msg-Id": "d"})
    await js.publish("r.a", b"dup", headers={"Nats-Msg-Id": "d"})  # a duplicate: not sent
    msgs = [await _next(sub) for _ in range(4)]
    assert [m.subject for m in msgs] == ["zz.a", "zz.b", "zz.a", "zz.a"]
    assert [m.data for m in msgs] == [b"hi", b"x", b"yo", b"yo"]
    assert list(msgs[0].headers) == REPUBLISHED + ["Nats-Last-Sequence"]
    assert list(msgs[1].headers) == ["Foo"] + REPUBLISHED + ["Nats-Last-Sequence"]
    assert msgs[1].headers["Foo"] == "bar"
    assert [m.headers["Nats-Sequence"] for m in msgs] == ["1", "2", "3", "4"]
    assert [m.headers["Nats-Last-Sequence"] for m in msgs] == ["0", "0", "1", "3"]
    assert {m.headers["Nats-Stream"] for m in msgs} == {"R"}
    assert msgs[2].headers["Nats-Subject"] == "r.a"
    stamp = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z"  # Go's RFC3339Nano, UTC
    assert all(re.fullmatch(stamp, m.headers["Nats-Time-Stamp"]) for m in msgs)
    with pytest.raises(asyncio.TimeoutError):
        await _next(sub, 0.3)


async def test_republish_headers_only_after_a_transform(js):  # noqa: F811
    nc = js._nc
    sub = await nc.subscribe("zz.>")
    await js.add_stream(
        name="R2",
        subjects=["s.>"],
        subject_transform=api.SubjectTransform(src="s.>", dest="t.>"),
        republish=api.RePublish(src="t.*", dest="zz.$1", headers_only=True),
    )
    await js.publish("s.a", b"hello")
    await js.publish("s.a.b", b"not republished")  # t.a.b does not match t.*
    await js.publish("s.c", b"")
    m1, m2 = await _next(sub), await _next(sub)
    assert (m1.subject, m1.data) == ("zz.a", b"")
    assert list(m1.headers) == REPUBLISHED + ["Nats-Last-Sequence", "Nats-Msg-Size"]
    assert m1.headers["Nats-Subject"] == "t.a"
    assert m1.headers["Nats-Msg-Size"] == "5"
    assert (m2.subject, m2.headers["Nats-Sequence"], m2.headers["Nats-Msg-Size"]) == (
        "zz.c",
        "3",
        "0",
    )
    with pytest.raises(asyncio.TimeoutError):
        await _next(sub, 0.3)


async def test_plain_publishes_in_one_read_are_transformed_and_republished(js):  # noqa: F811
    # Publishes with no headers take the batched append (capture._append_batch).
    nc = js._nc
    sub = await nc.subscribe("copy.>")
    await js.add_stream(
        name="B",
        subjects=["b.*"],
        subject_transform=api.SubjectTransform(src="b.*", dest="kept.$1"),
        republish=api.RePublish(src="kept.*", dest="copy.$1"),
    )
    for i in range(6):
        await nc.publish(f"b.{i % 2}", b"%d" % i)
    inbox = nc.new_inbox()
    acks = await nc.subscribe(inbox)
    await nc.publish("b.1", b"6", reply=inbox)
    ack = json.loads((await _next(acks)).data)
    assert ack == {"stream": "B", "seq": 7}
    msgs = [await _next(sub) for _ in range(7)]
    assert [m.subject for m in msgs] == ["copy.0", "copy.1"] * 3 + ["copy.1"]
    assert [m.headers["Nats-Subject"] for m in msgs[:2]] == ["kept.0", "kept.1"]
    assert [m.headers["Nats-Last-Sequence"] for m in msgs] == ["0", "0", "1", "2", "3", "4", "6"]
    assert (await js.get_msg("B", 7)).subject == "kept.1"


async def test_kv_republish(js):  # noqa: F811
    # nats.py's test_kv_republish
    nc = js._nc
    kv = await js.create_key_value(bucket="RP", republish=api.RePublish(src=">", dest="bar.>"))
    assert (await js.stream_info("KV_RP")).config.republish is not None
    sub = await nc.subscribe("bar.>")
    await kv.put("hello.world", b"Hello World!")
    msg = await _next(sub)
    assert (msg.subject, msg.data) == ("bar.$KV.RP.hello.world", b"Hello World!")
    assert msg.headers.get("Nats-Msg-Size") is None
    kv = await js.create_key_value(
        bucket="RPH", republish=api.RePublish(src=">", dest="quux.>", headers_only=True)
    )
    sub = await nc.subscribe("quux.>")
    await kv.put("hello.world", b"Hello World!")
    msg = await _next(sub)
    assert msg.data == b""
    assert msg.headers["Nats-Sequence"] == "1"
    assert msg.headers["Nats-Msg-Size"] == "12"
    assert msg.headers["Nats-Stream"] == "KV_RPH"


@pytest.mark.parametrize(
    ("cfg", "error"),
    [
        (
            {"subjects": ["e.>"], "subject_transform": {"src": "q.*", "dest": "$2"}},
            (
                400,
                10156,
                "stream transform: invalid mapping destination: "
                "wildcard index out of range in $2: [2]",
            ),
        ),
        (
            {"subjects": ["f.>"], "subject_transform": {"src": "f.*", "dest": "g.{{nope(1)}}"}},
            (
                400,
                10156,
                "stream transform: invalid mapping destination: unknown function in {{nope(1)}}",
            ),
        ),
        (
            {"subjects": ["g.>"], "republish": {"src": "g.*", "dest": "h.$3"}},
            (
                500,
                10052,
                "stream configuration for republish with transform from 'g.*' to 'h.$3' not valid",
            ),
        ),
        (
            {"subjects": ["c1"], "republish": {"src": ">", "dest": "c1.x"}},
            (
                500,
                10052,
                "stream configuration for republish with transform from '>' to 'c1.x' not valid",
            ),
        ),
        (
            {"subjects": ["d.>"], "republish": {"src": ">", "dest": "d.x.>"}},
            (500, 10052, "stream configuration for republish destination forms a cycle"),
        ),
    ],
)
async def test_bad_transform_and_republish_configs(js, cfg, error):  # noqa: F811
    body = json.dumps({"name": "BAD", **cfg}).encode()
    reply = await js._nc.request("$JS.API.STREAM.CREATE.BAD", body, timeout=2)
    err = json.loads(reply.data)["error"]
    assert (err["code"], err["err_code"], err["description"]) == error
