"""Publishing into streams (jetstream-subset.md section 2.8): PubAcks, duplicates, the
expectation headers in nats-server's order, rollups, limits, per-message TTL, no_ack,
publishes without a reply, PUB and HPUB on raw wires."""

from __future__ import annotations

import asyncio
import json
import time

import nats
import pytest
from nats.js.errors import APIError, BadRequestError, NoStreamResponseError, ServerError

from tests.jetstream import stream_env

senv = stream_env.senv  # the fixture


def _err(ack: dict) -> tuple[int, int, str]:
    assert set(ack) == {"error", "stream", "seq"} and ack["seq"] == 0, ack
    e = ack["error"]
    return e["code"], e["err_code"], e["description"]


async def test_pub_acks_count_up_and_carry_only_stream_and_seq(senv):
    await senv.js.add_stream(name="P", subjects=["p.>"])
    assert [(await senv.js.publish("p.a", b"%d" % i)).seq for i in range(3)] == [1, 2, 3]
    assert await senv.pub_ack("p.b", b"x") == {"stream": "P", "seq": 4}
    with pytest.raises(NoStreamResponseError):
        await senv.js.publish("nobody.here", b"x")


async def test_raw_pub_and_hpub_transcripts(senv):
    await senv.js.add_stream(name="W", subjects=["w.>"])
    w = await senv.wire()
    await w.send(b"SUB ack.> 1\r\nPUB w.a ack.1 5\r\nhello\r\n")
    await w.expect(b'MSG ack.1 1 22\r\n{"stream":"W","seq":1}\r\n')
    hdr = b"NATS/1.0\r\nNats-Msg-Id: m1\r\nX-A: b\r\n\r\n"
    hpub = b"HPUB w.b ack.2 %d %d\r\n%s%s\r\n" % (len(hdr), len(hdr) + 2, hdr, b"hi")
    await w.send(hpub)
    await w.expect(b'MSG ack.2 1 22\r\n{"stream":"W","seq":2}\r\n')
    await w.send(hpub.replace(b"ack.2", b"ack.3"))  # the same Nats-Msg-Id again
    await w.expect(b'MSG ack.3 1 40\r\n{"stream":"W","seq":2,"duplicate": true}\r\n')
    await w.expect_nothing(0.3)  # one PubAck per publish, duplicates included
    raw = await senv.api("$JS.API.STREAM.MSG.GET.W", {"seq": 2})
    import base64

    assert base64.b64decode(raw["message"]["hdrs"]) == hdr  # stored byte for byte


async def test_one_write_of_publishes_keeps_order_and_each_outcome(senv):
    # Plain PUBs, an HPUB with an expectation and PUBs past a discard-new limit, all in
    # one write: one PubAck each, in publish order, the HPUB seeing the PUBs before it
    # stored, the refused ones an error each (the store batches a read's plain ones).
    await senv.js.add_stream(name="B", subjects=["b.>"], max_msgs=3, discard="new")
    w = await senv.wire()
    hdr = b"NATS/1.0\r\nNats-Expected-Last-Sequence: 2\r\n\r\n"
    await w.send(
        b"SUB r.> 1\r\nPUB b.a r.1 1\r\n1\r\nPUB b.a r.2 1\r\n2\r\n"
        + b"HPUB b.b r.3 %d %d\r\n%s3\r\n" % (len(hdr), len(hdr) + 1, hdr)
        + b"PUB b.a r.4 1\r\n4\r\nPUB b.c r.5 1\r\n5\r\n"
    )
    acks = []
    for _ in range(5):
        m = await w.expect_re(rb"MSG (r\.\d) 1 \d+\r\n(\{.*?\})\r\n")
        acks.append((m.group(1).decode(), json.loads(m.group(2))))
    assert [r for r, _ in acks] == ["r.1", "r.2", "r.3", "r.4", "r.5"]
    assert [a for _, a in acks[:3]] == [{"stream": "B", "seq": n} for n in (1, 2, 3)]
    for _, ack in acks[3:]:
        assert _err(ack) == (503, 10077, "maximum messages exceeded")
    await w.expect_nothing(0.2)


async def test_pub_acks_of_one_read_to_many_reply_subjects(senv):
    # A read's PubAcks, each to its own reply under one inbox: every receiver gets what
    # routing each one alone gives (capture._route_acks delivers runs to one inbox
    # subscription at once): a literal subscription on one reply too, an auto-
    # unsubscribe limit stops after its count, a queue group gets one copy each.
    await senv.js.add_stream(name="M", subjects=["m.>"])
    w, other = await senv.wire(), await senv.wire()
    await w.send(b"SUB r.* 1\r\nSUB r.3 2\r\nPING\r\n")
    await w.expect(b"PONG\r\n")
    frame = rb"MSG r\.\d+ \d \d+\r\n.*?\r\n"

    def ack(reply: int, sid: int) -> bytes:
        body = b'{"stream":"M","seq":%d}' % reply
        return b"MSG r.%d %d %d\r\n%s\r\n" % (reply, sid, len(body), body)

    def of(frames: list[bytes], sid: int) -> list[bytes]:
        return [f for f in frames if f.split(b" ")[2] == b"%d" % sid]

    await w.send(b"".join(b"PUB m.a r.%d 1\r\nx\r\n" % i for i in range(1, 7)))
    got = [(await w.expect_re(frame)).group(0) for _ in range(7)]
    assert of(got, 1) == [ack(i, 1) for i in range(1, 7)]
    assert of(got, 2) == [ack(3, 2)] and got.index(ack(3, 2)) in (2, 3)
    await w.expect_nothing(0.2)

    await other.send(b"SUB r.* 5\r\nUNSUB 5 2\r\nSUB r.* q 6\r\nPING\r\n")
    await other.expect(b"PONG\r\n")
    await w.send(b"".join(b"PUB m.a r.%d 1\r\nx\r\n" % i for i in range(7, 13)))
    got = [(await w.expect_re(frame)).group(0) for _ in range(6)]
    assert got == [ack(i, 1) for i in range(7, 13)]
    got = [(await other.expect_re(frame)).group(0) for _ in range(8)]
    assert of(got, 5) == [ack(7, 5), ack(8, 5)]
    assert of(got, 6) == [ack(i, 6) for i in range(7, 13)]
    await w.expect_nothing(0.2)
    await other.expect_nothing(0.2)


async def test_duplicates_within_the_window(senv):
    await senv.js.add_stream(name="D", subjects=["d"], duplicate_window=0.5)
    first = await senv.js.publish("d", b"1", headers={"Nats-Msg-Id": "a"})
    dup = await senv.js.publish("d", b"1", headers={"Nats-Msg-Id": "a"})
    assert (first.seq, first.duplicate) == (1, None)
    assert (dup.seq, dup.duplicate) == (1, True)
    assert (await senv.js.stream_info("D")).state.messages == 1
    await asyncio.sleep(0.6)  # past the window the same id is a new message
    again = await senv.js.publish("d", b"1", headers={"Nats-Msg-Id": "a"})
    assert (again.seq, again.duplicate) == (2, None)


async def test_a_publish_without_reply_is_stored_silently(senv):
    await senv.js.add_stream(name="Q", subjects=["q"])
    w = await senv.wire()
    await w.send(b"SUB _INBOX.> 1\r\nPUB q 3\r\none\r\nPUB q 3\r\ntwo\r\nPING\r\n")
    await w.expect(b"PONG\r\n")
    await w.expect_nothing(0.2)
    deadline = time.monotonic() + 2
    while (await senv.js.stream_info("Q")).state.messages < 2:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)


async def test_no_ack_stream_stores_without_answering(senv):
    await senv.js.add_stream(name="N", subjects=["n"], no_ack=True)
    with pytest.raises(nats.errors.TimeoutError):
        await senv.nc.request("n", b"x", timeout=0.5)
    assert (await senv.js.stream_info("N")).state.messages == 1


# --------------------------------------------------------------------------- expectations


async def test_expectation_headers_in_nats_server_order(senv):
    await senv.js.add_stream(name="E", subjects=["e.>"])
    # expected stream comes before the TTL check
    ack = await senv.pub_ack("e.a", b"1", {"Nats-Expected-Stream": "X", "Nats-TTL": "1"})
    assert _err(ack) == (400, 10060, "expected stream does not match")
    ack = await senv.pub_ack("e.a", b"1", {"Nats-TTL": "5s", "Nats-Expected-Last-Sequence": "9"})
    assert _err(ack) == (400, 10166, "per-message TTL is disabled")
    ack = await senv.pub_ack(
        "e.a",
        b"1",
        {"Nats-Expected-Last-Subject-Sequence": "7", "Nats-Expected-Last-Sequence": "5"},
    )
    assert _err(ack) == (400, 10071, "wrong last sequence: 0")
    assert (await senv.js.publish("e.a", b"1", stream="E")).seq == 1
    ack = await senv.pub_ack("e.a", b"2", {"Nats-Expected-Last-Sequence": "bogus"})
    assert _err(ack) == (400, 10071, "wrong last sequence: 1")  # never matches
    assert (
        await senv.js.publish("e.a", b"2", headers={"Nats-Expected-Last-Sequence": "1"})
    ).seq == 2
    with pytest.raises(BadRequestError) as ei:
        await senv.js.publish("e.a", b"3", headers={"Nats-Expected-Last-Sequence": "1"})
    assert (ei.value.err_code, ei.value.description) == (10071, "wrong last sequence: 2")


async def test_expected_last_subject_sequence(senv):
    await senv.js.add_stream(name="E", subjects=["e.>"])
    hdr = {"Nats-Expected-Last-Subject-Sequence": "0"}
    assert (await senv.js.publish("e.a", b"1", headers=hdr)).seq == 1
    assert _err(await senv.pub_ack("e.a", b"2", hdr)) == (400, 10071, "wrong last sequence: 1")
    assert (await senv.js.publish("e.b", b"1", headers=hdr)).seq == 2
    # ...-Subject: the check is about another subject, wildcards allowed
    on_a = {
        "Nats-Expected-Last-Subject-Sequence": "1",
        "Nats-Expected-Last-Subject-Sequence-Subject": "e.a",
    }
    assert (await senv.js.publish("e.c", b"1", headers=on_a)).seq == 3
    on_all = {
        "Nats-Expected-Last-Subject-Sequence": "2",
        "Nats-Expected-Last-Subject-Sequence-Subject": "e.*",
    }
    assert _err(await senv.pub_ack("e.c", b"2", on_all)) == (400, 10071, "wrong last sequence: 3")
    alone = {"Nats-Expected-Last-Subject-Sequence-Subject": "e.*"}
    assert _err(await senv.pub_ack("e.c", b"2", alone)) == (
        400,
        10193,
        "missing sequence for expected last sequence per subject",
    )


async def test_msg_id_duplicate_comes_before_expected_last_msg_id(senv):
    await senv.js.add_stream(name="M", subjects=["m"])
    await senv.js.publish("m", b"1", headers={"Nats-Msg-Id": "A"})
    # a duplicate is answered as a duplicate even with a failing expectation after it
    dup = await senv.pub_ack("m", b"1", {"Nats-Msg-Id": "A", "Nats-Expected-Last-Msg-Id": "Q"})
    assert dup == {"stream": "M", "seq": 1, "duplicate": True}
    ack = await senv.pub_ack("m", b"2", {"Nats-Expected-Last-Msg-Id": "Q"})
    assert _err(ack) == (400, 10070, "wrong last msg ID: A")
    assert (await senv.js.publish("m", b"2", headers={"Nats-Expected-Last-Msg-Id": "A"})).seq == 2


async def test_rollups(senv):
    await senv.js.add_stream(name="NR", subjects=["nr"])
    with pytest.raises(ServerError) as ei:
        await senv.js.publish("nr", b"x", headers={"Nats-Rollup": "sub"})
    assert (ei.value.code, ei.value.err_code, ei.value.description) == (
        500,
        10111,
        "rollup not permitted",
    )
    await senv.js.add_stream(name="R", subjects=["r.>"], allow_rollup_hdrs=True)
    ack = await senv.pub_ack("r.a", b"x", {"Nats-Rollup": "bad"})
    assert _err(ack) == (500, 10111, 'rollup value invalid: "bad"')
    for i in range(3):
        await senv.js.publish("r.a", b"a%d" % i)
        await senv.js.publish("r.b", b"b%d" % i)
    await senv.js.publish("r.a", b"sum", headers={"Nats-Rollup": "SUB"})  # any case
    info = await senv.js.stream_info("R", subjects_filter=">")
    assert info.state.subjects == {"r.a": 1, "r.b": 3}
    await senv.js.publish("r.c", b"all", headers={"Nats-Rollup": "all"})
    s = (await senv.js.stream_info("R")).state
    assert (s.messages, s.first_seq, s.last_seq) == (1, 8, 8)


# --------------------------------------------------------------------------- limits


async def test_size_and_discard_new_limits(senv):
    await senv.js.add_stream(name="L", subjects=["l.>"], max_msg_size=10, discard="new", max_msgs=2)
    with pytest.raises(BadRequestError) as ei:
        await senv.js.publish("l.a", b"x" * 11)
    assert (ei.value.err_code, ei.value.description) == (
        10054,
        "message size exceeds maximum allowed",
    )
    # headers count: an 8-byte value with headers goes past 10 bytes
    with pytest.raises(BadRequestError):
        await senv.js.publish("l.a", b"12345678", headers={"H": "v"})
    await senv.js.publish("l.a", b"1")
    await senv.js.publish("l.a", b"2")
    with pytest.raises(APIError) as ei:  # a 503: ServiceUnavailableError
        await senv.js.publish("l.a", b"3")
    assert (ei.value.code, ei.value.err_code, ei.value.description) == (
        503,
        10077,
        "maximum messages exceeded",
    )
    await senv.js.add_stream(
        name="K",
        subjects=["k.>"],
        discard="new",
        max_msgs_per_subject=1,
        discard_new_per_subject=True,
    )
    await senv.js.publish("k.a", b"1")
    ack = await senv.pub_ack("k.a", b"2")
    assert _err(ack) == (503, 10077, "maximum messages per subject exceeded")
    await senv.js.publish("k.b", b"1")  # another subject still fits


# --------------------------------------------------------------------------- TTL


async def test_per_message_ttl_values(senv):
    await senv.js.add_stream(name="T", subjects=["t"], allow_msg_ttl=True)
    for good in ("2s", "2", "1m", "never", "1h30m"):
        assert "error" not in await senv.pub_ack("t", b"x", {"Nats-TTL": good}), good
    for bad in ("bogus", "0", "500ms", "-1"):
        ack = await senv.pub_ack("t", b"x", {"Nats-TTL": bad})
        assert _err(ack) == (400, 10165, "invalid per-message TTL"), bad


async def test_per_message_ttl_expires_the_message(senv):
    await senv.js.add_stream(name="T", subjects=["t.>"], allow_msg_ttl=True)
    await senv.js.publish("t.short", b"x", msg_ttl=1)  # nats-py sends Nats-TTL: 1
    await senv.js.publish("t.long", b"y", msg_ttl=60)
    assert (await senv.js.stream_info("T")).state.messages == 2
    deadline = time.monotonic() + 3.5  # nats-server expires on a 1 s wheel
    while (await senv.js.stream_info("T")).state.messages > 1:
        assert time.monotonic() < deadline, "the message did not expire"
        await asyncio.sleep(0.1)
    assert (await senv.js.get_last_msg("T", "t.long")).data == b"y"


async def test_never_outlives_max_age(senv):
    await senv.js.add_stream(name="A", subjects=["a.>"], allow_msg_ttl=True, max_age=0.5)
    await senv.js.publish("a.keep", b"k", headers={"Nats-TTL": "never"})
    await senv.js.publish("a.go", b"g")
    deadline = time.monotonic() + 3.5
    while (await senv.js.stream_info("A")).state.messages > 1:
        assert time.monotonic() < deadline, "max_age did not remove the other message"
        await asyncio.sleep(0.1)
    assert (await senv.js.get_msg("A", 1)).data == b"k"


# --------------------------------------------------------------------------- who answers


async def test_pub_ack_domain(server_factory):
    server = await server_factory(jetstream__domain="hub")
    nc = await nats.connect(f"nats://127.0.0.1:{server.nats_port}")
    try:
        js = nc.jetstream(timeout=2)
        await js.add_stream(name="S", subjects=["s"])
        msg = await nc.request("s", b"x", timeout=2)
        assert msg.data == b'{"stream":"S","domain":"hub","seq":1}'  # nats-server's bytes
    finally:
        await nc.close()


async def test_an_mqtt_publish_into_a_stream_gets_no_pub_ack_but_is_stored(senv):
    if senv.reference:
        pytest.skip("an MQTT publisher")
    from tests.helpers import mqtt_packets as mp
    from tests.helpers.wire import mqtt_connect

    await senv.js.add_stream(name="MQ", subjects=["sensors.>"])
    w = await mqtt_connect(senv.server.mqtt_port, "pub")
    await w.send(mp.publish("sensors/t1", b"21.5", qos=1, mid=7))
    await w.expect(mp.puback(7))
    await w.close()
    msg = await senv.js.get_last_msg("MQ", "sensors.t1")
    assert msg.data == b"21.5"
