"""Mirrors and sources between streams of one server (jetstream/mirror.py), with a real
server, nats-py 2.16 publishing and reading, and restarts on the same store."""

from __future__ import annotations

import asyncio
import json
import time

import nats
import pytest
from nats.js import api
from nats.js.errors import BadRequestError, KeyNotFoundError

from hybridbus.jetstream import capture, mirror
from hybridbus.jetstream.api import ApiError
from hybridbus.server.server import Server
from hybridbus.store import StreamConfig
from hybridbus.store.errors import ConsumerNotFound
from tests.conftest import make_options
from tests.jetstream.test_kv import js  # noqa: F401  (the fixture: a server, a context)


def add(server, **cfg):
    """Create a stream the way the STREAM.CREATE handler does: the store, the capture
    subscriptions, then mirror.changed."""
    engine = server.jetstream
    config = StreamConfig.from_dict(cfg, wire=True)
    mirror.check(engine, config.normalized())
    st = engine.store.add_stream(config)
    capture.sync(engine, st)
    mirror.changed(engine, st)
    return st


def drop(server, name):
    engine = server.jetstream
    engine.store.delete_stream(name)
    capture.drop(engine, name)
    mirror.changed(engine, name)


async def until(cond, timeout=3.0):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


async def pub(nc, subject, data, headers=None):
    msg = await nc.request(subject, data, timeout=2, headers=headers)
    ack = json.loads(msg.data)
    assert "error" not in ack, ack
    return ack["seq"]


def msgs(st):
    return [(m.seq, m.subject, m.payload) for m in st.iter()]


async def test_a_mirror_copies_with_the_same_sequences_and_times(server_factory):
    server = await server_factory()
    nc = await nats.connect(f"nats://127.0.0.1:{server.nats_port}")
    try:
        origin = add(server, name="O", subjects=["o.>"])
        for i in range(3):
            await pub(nc, f"o.{i}", b"m%d" % i)
        origin.delete(2)  # a gap the mirror keeps
        m = add(server, name="M", mirror={"name": "O"})
        assert m.config.subjects == []
        await until(lambda: m.state().last_seq == 3)
        await pub(nc, "o.x", b"new", {"Nats-Expected-Last-Sequence": "3", "X-Keep": "1"})
        await until(lambda: m.state().last_seq == 4)
        assert msgs(m) == [(1, "o.0", b"m0"), (3, "o.2", b"m2"), (4, "o.x", b"new")]
        for seq in (1, 3, 4):
            assert m.get(seq).ts_ns == origin.get(seq).ts_ns
        # the expectation was checked by the origin; the copy does not carry it
        assert m.get(4).headers == b"NATS/1.0\r\nX-Keep: 1\r\n\r\n"
        info = mirror.info(server.jetstream, m)["mirror"]
        assert info["name"] == "O" and info["lag"] == 0 and 0 <= info["active"] < 5e9
        # nobody sees the mirror's cursor on the origin (as nats-server's Direct consumers)
        assert origin.consumers() == [] and origin.state().consumer_count == 0
        assert server.jetstream.store.usage()["consumers"] == 0
    finally:
        await nc.close()


async def test_a_filtered_mirror_keeps_the_origin_sequence_numbers(server_factory):
    server = await server_factory()
    nc = await nats.connect(f"nats://127.0.0.1:{server.nats_port}")
    try:
        add(server, name="O", subjects=["o.>"])
        m = add(server, name="M", mirror={"name": "O", "filter_subject": "o.a"})
        for subject in ("o.a", "o.b", "o.b", "o.a", "o.c"):
            await pub(nc, subject, subject.encode())
        await until(lambda: m.state().messages == 2)
        assert [(s, p) for s, _, p in msgs(m)] == [(1, b"o.a"), (4, b"o.a")]
        await pub(nc, "o.a", b"again")
        await until(lambda: m.state().last_seq == 6)
        state = m.state()
        assert (state.messages, state.first_seq, state.num_deleted) == (3, 1, 3)
    finally:
        await nc.close()


async def test_a_mirror_takes_no_publishes_and_starts_where_asked(server_factory):
    server = await server_factory()
    nc = await nats.connect(f"nats://127.0.0.1:{server.nats_port}")
    try:
        add(server, name="O", subjects=["o.>"])
        for i in range(5):
            await pub(nc, "o.a", b"%d" % i)
        m = add(server, name="M", mirror={"name": "O", "opt_start_seq": 4})
        await until(lambda: m.state().last_seq == 5)
        assert [s for s, _, _ in msgs(m)] == [4, 5]
        assert m.state().first_seq == 4
        # o.a belongs to O alone: one PubAck, from O, and nothing stored twice
        assert json.loads((await nc.request("o.a", b"x", timeout=2)).data)["stream"] == "O"
        await until(lambda: m.state().last_seq == 6)
        assert m.state().messages == 3
    finally:
        await nc.close()


async def test_sources_aggregate_origins_and_own_subjects(server_factory):
    server = await server_factory()
    nc = await nats.connect(f"nats://127.0.0.1:{server.nats_port}")
    try:
        add(server, name="A", subjects=["a.>"])
        add(server, name="B", subjects=["b.>"])
        await pub(nc, "a.1", b"a1", {"Nats-Msg-Id": "id-a1"})
        await pub(nc, "b.1", b"b1")
        agg = add(
            server,
            name="AGG",
            subjects=["agg.>"],
            sources=[{"name": "A"}, {"name": "B", "filter_subject": "b.2"}],
        )
        await until(lambda: agg.state().messages == 1)
        await pub(nc, "b.2", b"b2")
        await pub(nc, "agg.own", b"own")  # its own subjects are captured as usual
        await pub(nc, "a.2", b"a2")
        await until(lambda: agg.state().messages == 4)
        got = [(s, p) for _, s, p in msgs(agg)]
        assert got[0] == ("a.1", b"a1")
        assert sorted(got[1:]) == [("a.2", b"a2"), ("agg.own", b"own"), ("b.2", b"b2")]
        first = agg.get(1)
        hdr = first.headers.decode()
        assert "Nats-Msg-Id: id-a1\r\n" in hdr
        assert "Nats-Stream-Source: A 1 > > a.1\r\n" in hdr
        assert agg.last("b.2").headers.decode().count("Nats-Stream-Source: B 2 b.2 > b.2") == 1
        assert agg.last("agg.own").headers is None
        info = mirror.info(server.jetstream, agg)["sources"]
        assert [(i["name"], i["lag"], i.get("filter_subject"), i["seq"]) for i in info] == [
            ("A", 0, None, 2),
            ("B", 0, "b.2", 2),
        ]
    finally:
        await nc.close()


async def test_source_subject_transforms(server_factory):
    server = await server_factory()
    nc = await nats.connect(f"nats://127.0.0.1:{server.nats_port}")
    try:
        add(server, name="O", subjects=["o.>"])
        tr = [{"src": "o.*.evt", "dest": "x.{{wildcard(1)}}.e"}, {"src": "o.raw.>", "dest": "r.>"}]
        s = add(server, name="S", sources=[{"name": "O", "subject_transforms": tr}])
        for subject in ("o.1.evt", "o.raw.a.b", "o.2.other", "o.2.evt"):
            await pub(nc, subject, b".")
        await until(lambda: s.state().messages == 3)
        assert [subj for _, subj, _ in msgs(s)] == ["x.1.e", "r.a.b", "x.2.e"]
        assert "o.raw.a.b\r\n" in s.get(2).headers.decode()  # the original subject kept
    finally:
        await nc.close()


def test_transforms_map_wildcards():
    t = mirror.compile_transform("a.*.*.>", "b.$2.{{ Wildcard(1) }}.>")
    assert t("a.x.y.z.w") == "b.y.x.z.w"
    assert t("a.x.y") is None and t("c.x.y.z") is None
    assert mirror.compile_transform("", "")("q.r") == "q.r"
    assert mirror.compile_transform("a.b", "c")("a.b") == "c"
    assert mirror.compile_transform("$KV.a.>", "$KV.b.>")("$KV.a.k.x") == "$KV.b.k.x"
    for dest in ("b.{{wildcard(2)}}", "b.{{partition(3,1)}}", "b.>"):
        with pytest.raises(ValueError):
            mirror.compile_transform("a.*", dest)


async def test_check_refuses_what_nats_server_refuses(server_factory):
    server = await server_factory()
    engine = server.jetstream
    add(server, name="O", subjects=["o.>"], max_msg_size=1000)

    def refused(old=None, **cfg) -> tuple[int, int]:
        config = StreamConfig.from_dict({"name": "X", **cfg}, wire=True)
        with pytest.raises(ApiError) as ei:
            mirror.check(engine, config, old)
        return ei.value.code, ei.value.err_code

    assert refused(mirror={"name": "O"}, subjects=["x"]) == (400, 10034)
    assert refused(mirror={"name": "O"}, sources=[{"name": "O"}]) == (400, 10031)
    assert refused(mirror={}) == (400, 10142)
    assert refused(mirror={"name": "X"}) == (500, 10052)
    assert refused(sources=[{"name": "X"}]) == (500, 10052)
    assert refused(sources=[{"name": "O"}, {"name": "O"}]) == (400, 10140)
    bad = [{"src": "o.*", "dest": "p.{{wildcard(2)}}"}]
    assert refused(sources=[{"name": "O", "subject_transforms": bad}]) == (400, 10146)
    two = {"name": "O", "filter_subject": "o.a", "subject_transforms": [{"src": "o.>"}]}
    assert refused(mirror=two) == (400, 10150)
    assert refused(mirror={"name": "O"}, max_msg_size=10) == (400, 10030)
    old = StreamConfig.from_dict({"name": "X", "mirror": {"name": "O"}})
    assert refused(old, mirror={"name": "O", "filter_subject": "o.a"}) == (400, 10055)
    ok = {"name": "O", "filter_subject": "o.a"}
    mirror.check(engine, StreamConfig.from_dict({"name": "X", "sources": [ok, {"name": "O"}]}))
    mirror.check(engine, StreamConfig.from_dict({"name": "X"}), old)  # a mirror may be promoted
    add(server, name="M1", mirror={"name": "O"})
    assert refused(sources=[{"name": "M1"}], name="O") == (500, 10052)  # O -> M1 -> O


async def test_a_big_origin_is_copied_a_slice_per_turn(server_factory):
    server = await server_factory()
    nc = await nats.connect(f"nats://127.0.0.1:{server.nats_port}")
    try:
        origin = add(server, name="O", subjects=["o.>"])
        origin.append_many("o.bulk", [b"x" * 16] * 5000)
        m = add(server, name="M", mirror={"name": "O"})
        await nc.flush(timeout=2)  # the loop answers while the copy goes on
        assert 0 < m.state().messages < 5000
        await until(lambda: m.state().messages == 5000, timeout=4)
        assert mirror.info(server.jetstream, m)["mirror"]["lag"] == 0
    finally:
        await nc.close()


async def test_an_interest_origin_keeps_messages_until_the_mirror_has_them(server_factory):
    server = await server_factory()
    nc = await nats.connect(f"nats://127.0.0.1:{server.nats_port}")
    try:
        origin = add(server, name="O", subjects=["o.>"], retention="interest")
        m = add(server, name="M", mirror={"name": "O"})
        await pub(nc, "o.a", b"kept for the mirror")
        await until(lambda: m.state().messages == 1)
        assert m.get(1).payload == b"kept for the mirror"
        await until(lambda: origin.state().messages == 0)  # then nobody needs it
    finally:
        await nc.close()


async def test_deleting_and_recreating_streams(server_factory):
    server = await server_factory()
    nc = await nats.connect(f"nats://127.0.0.1:{server.nats_port}")
    try:
        origin = add(server, name="O", subjects=["o.>"])
        m = add(server, name="M", mirror={"name": "O"})
        s = add(server, name="S", sources=[{"name": "O"}])
        await pub(nc, "o.a", b"1")
        await until(lambda: m.state().messages == 1 and s.state().messages == 1)
        cursor = mirror._feeds(server.jetstream)["M"][0].consumer.name
        drop(server, "M")
        with pytest.raises(ConsumerNotFound):
            origin.consumer(cursor)  # the deleted mirror's cursor went with it
        assert "M" not in mirror._feeds(server.jetstream)
        drop(server, "O")
        assert mirror.info(server.jetstream, s)["sources"][0]["name"] == "O"
        add(server, name="O", subjects=["o.>"])  # a new origin, sequences from 1 again
        await pub(nc, "o.b", b"2")
        # the source remembers it copied origin seq 1: the new seq 1 is not taken again
        await pub(nc, "o.c", b"3")
        await until(lambda: s.state().messages == 2)
        assert [p for _, _, p in msgs(s)] == [b"1", b"3"]
    finally:
        await nc.close()


async def test_a_discard_new_target_retries_when_there_is_room(server_factory, monkeypatch):
    monkeypatch.setattr(mirror, "RETRY", 0.05)
    server = await server_factory()
    nc = await nats.connect(f"nats://127.0.0.1:{server.nats_port}")
    try:
        add(server, name="O", subjects=["o.>"])
        s = add(server, name="S", sources=[{"name": "O"}], max_msgs=2, discard="new")
        for i in range(3):
            await pub(nc, "o.a", b"%d" % i)
        await until(lambda: s.state().messages == 2)
        await asyncio.sleep(0.1)
        info = mirror.info(server.jetstream, s)["sources"][0]
        assert info["lag"] == 1 and info["error"]["err_code"] == 10077
        s.purge(seq=2)  # room for one more
        await until(lambda: s.state().last_seq == 3)
        assert [p for _, _, p in msgs(s)] == [b"1", b"2"]
        assert "error" not in mirror.info(server.jetstream, s)["sources"][0]
    finally:
        await nc.close()


async def test_restarts_neither_duplicate_nor_miss(tmp_path, monkeypatch):
    monkeypatch.setattr(mirror, "BATCH", 10)  # so the stop surely comes mid-copy
    server = Server(make_options(tmp_path))
    await server.start()
    origin = add(server, name="O", subjects=["o.>"])
    m = add(server, name="M", mirror={"name": "O"})
    s = add(server, name="S", subjects=["s.>"], sources=[{"name": "O"}])
    origin.append_many("o.a", [b"%d" % i for i in range(3000)])
    await asyncio.sleep(0.01)
    copied = (m.state().messages, s.state().messages)
    await server.shutdown()
    assert 0 < copied[0] < 3000 and 0 < copied[1] < 3000
    monkeypatch.setattr(mirror, "BATCH", 256)

    for round_ in range(2):
        server = Server(make_options(tmp_path))
        await server.start()
        try:
            nc = await nats.connect(f"nats://127.0.0.1:{server.nats_port}")
            await pub(nc, "o.b", b"after restart %d" % round_)
            await pub(nc, "s.own", b"own %d" % round_)
            store = server.jetstream.store
            m, s = store.stream("M"), store.stream("S")
            total = 3001 + round_
            await until(counts(m, total, s, total + 1 + round_))
            assert [seq for seq, _, _ in msgs(m)] == list(range(1, total + 1))
            sourced = [mirror._source_of(x.headers) for x in s.iter() if x.subject != "s.own"]
            assert [seq for _, seq in sourced] == list(range(1, total + 1))
            await nc.close()
        finally:
            await server.shutdown()


def counts(m, want_m, s, want_s):
    return lambda: m.state().messages == want_m and s.state().messages == want_s


# --------------------------------------------------------------------------- through the API


async def _wait_for(js, name, messages, timeout=3.0):  # noqa: F811
    deadline = time.monotonic() + timeout
    while True:
        info = await js.stream_info(name)
        if info.state.messages == messages:
            return info
        assert time.monotonic() < deadline, f"{name}: {info.state.messages} messages"
        await asyncio.sleep(0.05)


async def test_a_mirror_through_the_api(js):  # noqa: F811
    await js.add_stream(name="O", subjects=["o.>"])
    for i in range(3):
        await js.publish(f"o.{i}", b"%d" % i, headers={"X-N": str(i)})
    await js.delete_msg("O", 2)
    created = await js.add_stream(name="M", mirror=api.StreamSource(name="O"))
    assert created.config.mirror.name == "O" and not created.config.subjects
    assert created.mirror.name == "O"
    info = await _wait_for(js, "M", 2)
    assert (info.state.first_seq, info.state.last_seq) == (1, 3)
    assert info.mirror.name == "O" and info.mirror.lag == 0
    m3, o3 = await js.get_msg("M", 3), await js.get_msg("O", 3)
    assert (m3.subject, m3.data, m3.headers, m3.time) == (o3.subject, o3.data, o3.headers, o3.time)
    await js.publish("o.x", b"live")
    await _wait_for(js, "M", 3)
    assert (await js.get_msg("M", 4)).data == b"live"
    assert await js.consumers_info("O") == []  # the mirror's cursor is not listed
    assert (await js.stream_info("O")).state.consumer_count == 0
    # a consumer of the mirror reads the origin's subjects
    sub = await js.pull_subscribe("o.x", durable="d", stream="M")
    (msg,) = await sub.fetch(1, timeout=2)
    assert (msg.data, msg.metadata.sequence.stream) == (b"live", 4)
    with pytest.raises(BadRequestError) as ei:
        await js.update_stream(
            api.StreamConfig(name="M", mirror=api.StreamSource(name="O", filter_subject="o.1"))
        )
    assert ei.value.err_code == 10055
    with pytest.raises(BadRequestError) as ei:
        await js.add_stream(name="M2", subjects=["m2"], mirror=api.StreamSource(name="O"))
    assert ei.value.err_code == 10034


async def test_sources_through_the_api(js):  # noqa: F811
    await js.add_stream(name="A", subjects=["a.>"])
    await js.add_stream(name="B", subjects=["b.>"])
    await js.publish("a.1", b"a1")
    await js.publish("b.1", b"b1")
    await js.publish("b.2", b"b2")
    sources = [api.StreamSource(name="A"), api.StreamSource(name="B", filter_subject="b.2")]
    await js.add_stream(name="AGG", subjects=["agg.>"], sources=sources)
    await js.publish("agg.own", b"own")
    info = await _wait_for(js, "AGG", 3)
    assert sorted((s.name, s.lag) for s in info.sources) == [("A", 0), ("B", 0)]
    got = {}
    for seq in range(1, 4):
        msg = await js.get_msg("AGG", seq)
        got[msg.subject] = (
            msg.data,
            (msg.headers or {}).get("Nats-Stream-Source", "").split(" ")[:2],
        )
    assert got == {
        "a.1": (b"a1", ["A", "1"]),
        "b.2": (b"b2", ["B", "2"]),
        "agg.own": (b"own", [""]),
    }
    # sources may change on update: the new one is followed from its start
    sources.append(api.StreamSource(name="B", filter_subject="b.1"))
    await js.update_stream(api.StreamConfig(name="AGG", subjects=["agg.>"], sources=sources))
    await _wait_for(js, "AGG", 4)
    assert (await js.get_last_msg("AGG", "b.1")).data == b"b1"


async def test_a_bucket_sourced_into_another_through_a_transform(js):  # noqa: F811
    kv = await js.create_key_value(bucket="a", history=3)
    await kv.put("k", b"1")
    await kv.put("j", b"2")
    tr = [api.SubjectTransform(src="$KV.a.>", dest="$KV.agg.>")]
    await js.add_stream(
        name="KV_agg",
        subjects=["$KV.agg.>"],
        max_msgs_per_subject=3,
        allow_rollup_hdrs=True,
        deny_delete=True,
        sources=[api.StreamSource(name="KV_a", subject_transforms=tr)],
    )
    agg = await js.key_value("agg")
    await _wait_for(js, "KV_agg", 2)
    assert (await agg.get("k")).value == b"1"
    w = await agg.watch("k")
    assert (await w.updates(timeout=2)).value == b"1"
    assert await w.updates(timeout=2) is None
    await kv.put("k", b"3")
    e = await w.updates(timeout=2)
    assert (e.key, e.value) == ("k", b"3")
    await kv.delete("j")
    await _wait_for(js, "KV_agg", 4)
    with pytest.raises(KeyNotFoundError):
        await agg.get("j")
    await w.stop()


async def test_a_bucket_mirror_read_through_a_transform(js):  # noqa: F811
    kv = await js.create_key_value(bucket="a", history=3)
    await kv.put("k", b"1")
    await kv.put("k", b"2")
    await kv.purge("k")  # the origin drops k's older revisions (a rollup)
    await kv.put("x", b"9")
    tr = [api.SubjectTransform(src="$KV.a.>", dest="$KV.m.>")]
    await js.add_stream(
        name="KV_m",
        max_msgs_per_subject=3,
        mirror=api.StreamSource(name="KV_a", subject_transforms=tr),
    )
    await _wait_for(js, "KV_m", 2)
    m = await js.key_value("m")
    assert (await m.get("x")).value == b"9"
    with pytest.raises(KeyNotFoundError):
        await m.get("k")  # its last entry is the purge marker
    assert (await m.get("x", revision=4)).value == b"9"  # the origin's sequence


async def test_a_mirror_of_a_work_queue_records_every_job(js):  # noqa: F811
    await js.add_stream(name="WQ", subjects=["w.>"], retention="workqueue")
    await js.add_stream(name="MW", mirror=api.StreamSource(name="WQ"))
    worker = await js.pull_subscribe("w.>", durable="worker", stream="WQ")
    for i in range(3):
        await js.publish("w.a", b"%d" % i)
    await _wait_for(js, "MW", 3)
    for msg in await worker.fetch(3, timeout=2):
        await msg.ack_sync()
    await _wait_for(js, "WQ", 0)  # the worker's acks took the jobs out of the queue
    assert (await js.stream_info("MW")).state.messages == 3


async def test_a_mirror_promoted_to_a_stream_of_its_own(js):  # noqa: F811
    await js.add_stream(name="O", subjects=["o.>"])
    await js.publish("o.a", b"1")
    await js.add_stream(name="M", mirror=api.StreamSource(name="O"))
    await _wait_for(js, "M", 1)
    info = await js.update_stream(api.StreamConfig(name="M", subjects=["m.>"]))
    assert info.config.mirror is None and info.mirror is None
    await js.publish("o.a", b"2")  # no longer followed
    ack = await js.publish("m.x", b"mine")  # and takes publishes now
    assert (ack.stream, ack.seq) == ("M", 2)
    await asyncio.sleep(0.2)
    info = await js.stream_info("M")
    assert info.state.messages == 2 and (await js.get_msg("M", 2)).data == b"mine"
