"""Behaviours nats.py's own JetStream tests rely on, checked against nats-server 2.15.1
(HB_REFERENCE=1 runs the ``senv`` tests on a real nats-server): literal wildcard
tokens in stored subjects, the $MQTT_ streams' visibility, no_wait pulls at
max_ack_pending, consumer pause, subject transforms and republish, stored byte counts.
"""

from __future__ import annotations

import asyncio
import json

import nats
import pytest
from nats.js.errors import NotFoundError

from tests.helpers.wire import mqtt_connect
from tests.jetstream import stream_env

senv = stream_env.senv  # the fixture


# -- 1. a `*` or `>` token in a published subject is an ordinary character --------------


async def test_wildcard_tokens_are_stored_literally(senv):
    """nats-server's non-pedantic publish takes `k.*` as a normal subject: a stream on
    `k.>` stores it under that literal subject, and filters match it token by token."""
    await senv.js.add_stream(name="LIT", subjects=["k.>"])
    assert await senv.pub_ack("k.*", b"star") == {"stream": "LIT", "seq": 1}
    assert await senv.pub_ack("k.>", b"gt") == {"stream": "LIT", "seq": 2}
    assert await senv.pub_ack("k.a", b"a") == {"stream": "LIT", "seq": 3}
    assert await senv.pub_ack("k.>.x", b"mid") == {"stream": "LIT", "seq": 4}
    info = await senv.api("$JS.API.STREAM.INFO.LIT", {"subjects_filter": ">"})
    assert info["state"]["subjects"] == {"k.*": 1, "k.>": 1, "k.a": 1, "k.>.x": 1}
    # a literal filter `k.a` does not match the stored `k.*`; the filter `k.*` matches
    # every one-token subject, the stored `k.*` among them
    got = await senv.api("$JS.API.STREAM.MSG.GET.LIT", {"last_by_subj": "k.a"})
    assert got["message"]["seq"] == 3
    c = await senv.js.add_consumer("LIT", durable_name="lit", filter_subject="k.a")
    assert c.num_pending == 1
    c = await senv.js.add_consumer("LIT", durable_name="star", filter_subject="k.*")
    assert c.num_pending == 3
    sub = await senv.js.pull_subscribe("k.a", "lit", stream="LIT")
    msgs = await sub.fetch(1, timeout=2)
    assert [(m.subject, m.data) for m in msgs] == [("k.a", b"a")]
    # (nats-server 2.15.1 counts the stored `k.>` for the filter `k.*` but its pull
    # then skips it; hybridbus delivers what it counts)


async def test_kv_purge_with_wildcard_key_rolls_up_the_matching_keys(senv):
    """nats.py's test_kv_simple: kv.purge("hello.*") publishes a purge marker to
    $KV.TEST.hello.* with Nats-Rollup: sub, which purges every key the marker's subject
    matches as a filter and keeps the marker itself."""
    kv = await senv.js.create_key_value(bucket="TEST", history=5)
    await kv.put("hello", b"world")
    for i in range(5):
        await kv.put(f"hello.{i}", b"v")
    await kv.purge("hello.*")
    with pytest.raises(NotFoundError):
        await kv.get("hello.3")
    assert (await kv.status()).values == 2
    assert (await kv.get("hello")).value == b"world"
    seq = await kv.put("x.>", b"v", validate_keys=False)
    assert seq == 8


# -- 2. the $MQTT_ streams show once MQTT has been used ------------------------------------


async def test_mqtt_streams_show_only_once_mqtt_is_used(senv):
    """nats-server creates its $MQTT_ streams at the first MQTT CONNECT: before that a
    fresh server lists no stream at all (nats.py's js.pull_subscribe("", "all") takes
    the first stream STREAM.NAMES gives)."""
    assert (await senv.api("$JS.API.STREAM.NAMES"))["streams"] is None
    assert (await senv.api("$JS.API.STREAM.LIST"))["total"] == 0
    assert (await senv.js.account_info()).streams == 0
    with pytest.raises(NotFoundError):
        await senv.js.stream_info("$MQTT_sess")
    await senv.js.add_stream(name="ALL", subjects=["all.>"])
    names = await senv.api("$JS.API.STREAM.NAMES", {"subject": ""})
    assert names["streams"] == ["ALL"]
    if senv.reference:
        return  # (the reference runs without MQTT)
    await (await mqtt_connect(senv.server.mqtt_port)).close()
    internal = ["$MQTT_out", "$MQTT_qos2in", "$MQTT_rmsgs", "$MQTT_sess"]
    assert (await senv.api("$JS.API.STREAM.NAMES"))["streams"] == [*internal, "ALL"]
    assert (await senv.js.account_info()).streams == 5
    assert (await senv.js.stream_info("$MQTT_sess")).config.subjects == ["$MQTT.sess.>"]


# -- 3. stream creates are cheap ----------------------------------------------------------


async def test_300_stream_creates_and_two_list_pages_in_time(senv):
    """nats.py's test_jsm_stream_management_with_offset: 300 STREAM.CREATE in a row
    and two STREAM.LIST pages within its 5 s (nats-server: a few ms per create)."""

    async def run() -> None:
        for i in range(300):
            await senv.js.add_stream(name=f"stream_{i}")
        assert len(await senv.js.streams_info(offset=0)) == 256
        assert len(await senv.js.streams_info(offset=256)) == 44

    await asyncio.wait_for(run(), 5)


# -- 4. a no_wait pull held at max_ack_pending ---------------------------------------------


async def _pull_at_max_ack_pending(senv, body: dict, wait: float) -> list[tuple[float, str]]:
    """9 messages, a consumer with max_ack_pending 5, one pull request: what arrives
    (time, "msg" or the status line) within ``wait`` seconds."""
    await senv.js.add_stream(name="EV", subjects=["ev.>"])
    await senv.js.add_consumer("EV", durable_name="a", max_ack_pending=5, ack_wait=30)
    for i in range(9):
        await senv.js.publish(f"ev.{i}", b"x")
    inbox = senv.nc.new_inbox()
    sub = await senv.nc.subscribe(inbox)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await senv.nc.publish("$JS.API.CONSUMER.MSG.NEXT.EV.a", json.dumps(body).encode(), inbox)
    got = []
    deadline = t0 + wait
    while (left := deadline - loop.time()) > 0:
        try:
            m = await sub.next_msg(timeout=left)
        except nats.errors.TimeoutError:
            break
        status = m.headers and m.headers.get("Status")
        what = f"{status} {m.headers.get('Description', '')}" if status else "msg"
        got.append((loop.time() - t0, what))
    return got


async def test_no_wait_pull_at_max_ack_pending_ends_at_its_first_heartbeat(senv):
    """nats.py's fetch(n, heartbeat=0.1): the no_wait request that hit max_ack_pending
    ends with 404 at its first heartbeat time (nats-server's wait timer runs
    processWaiting(eos=true)), not at its expiry."""
    body = {"batch": 20, "expires": 2_000_000_000, "idle_heartbeat": 100_000_000, "no_wait": True}
    got = await _pull_at_max_ack_pending(senv, body, 1.0)
    assert [w for _, w in got] == ["msg"] * 5 + ["404 No Messages"]
    assert 0.05 <= got[-1][0] < 0.6


async def test_no_wait_pull_at_max_ack_pending_without_heartbeat_expires(senv):
    body = {"batch": 20, "expires": 500_000_000, "no_wait": True}
    got = await _pull_at_max_ack_pending(senv, body, 1.5)
    assert [w for _, w in got] == ["msg"] * 5 + ["408 Request Timeout"]
    assert got[-1][0] >= 0.45


# -- 7. what a stored message counts, per storage ------------------------------------------


@pytest.mark.parametrize("storage", ["file", "memory"])
async def test_state_bytes_follow_each_storage_rule(senv, storage):
    """nats-server's fileStoreMsgSize (subject + payload + 30, + headers + 4 with
    headers) and memStoreMsgSize (subject + headers + payload + 16); max_bytes counts
    the same (nats.py's test_stream_management: "foo" + 14 bytes is 47 in a file
    stream)."""
    kind = nats.js.api.StorageType(storage)
    await senv.js.add_stream(name="B", subjects=["foo", "bar"], storage=kind)
    await senv.js.publish("foo", b"Hello World!!!")
    state = (await senv.js.stream_info("B")).state
    plain = 47 if storage == "file" else 33
    assert state.bytes == plain
    await senv.js.publish("bar", b"xy", headers={"A": "b"})
    hdr = len(b"NATS/1.0\r\nA: b\r\n\r\n")
    with_hdr = 3 + 2 + hdr + (34 if storage == "file" else 16)
    assert (await senv.js.stream_info("B")).state.bytes == plain + with_hdr
    # max_bytes room for exactly two of these (discard old): a third drops the first
    each = 1 + 13 + (30 if storage == "file" else 16)
    await senv.js.add_stream(
        name="L", subjects=["l"], storage=kind, max_bytes=2 * each, discard="old"
    )
    for _ in range(3):
        await senv.js.publish("l", b"Hello World!!")
    state = (await senv.js.stream_info("L")).state
    assert (state.messages, state.first_seq, state.bytes) == (2, 2, 2 * each)


# -- 5. consumer pause -----------------------------------------------------------------------


def _rfc3339_in(seconds: float) -> str:
    import datetime

    at = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=seconds)
    return at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


async def test_pause_and_resume_a_pull_consumer(senv):
    """nats-py's pause_consumer / resume_consumer: paused, ConsumerInfo says so, a pull
    waits (no_wait: 404 at once); resumed, it delivers."""
    await senv.js.add_stream(name="PZ", subjects=["pz"])
    await senv.js.publish("pz", b"m")
    await senv.js.add_consumer("PZ", durable_name="c", ack_policy="explicit")
    resp = await senv.js.pause_consumer("PZ", "c", _rfc3339_in(3600))
    assert resp.paused is True and resp.pause_remaining
    info = await senv.js.consumer_info("PZ", "c")
    assert info.paused is True and info.config.pause_until
    inbox = senv.nc.new_inbox()
    sub = await senv.nc.subscribe(inbox)
    await senv.nc.publish("$JS.API.CONSUMER.MSG.NEXT.PZ.c", b'{"no_wait":true}', inbox)
    msg = await sub.next_msg(timeout=2)
    assert msg.headers["Status"] == "404"
    body = b'{"batch":1,"expires":300000000}'
    await senv.nc.publish("$JS.API.CONSUMER.MSG.NEXT.PZ.c", body, inbox)
    msg = await sub.next_msg(timeout=2)
    assert (msg.headers["Status"], msg.headers["Nats-Pending-Messages"]) == ("408", "1")
    resp = await senv.js.resume_consumer("PZ", "c")
    assert resp.paused is False
    assert (await senv.js.consumer_info("PZ", "c")).paused is None
    psub = await senv.js.pull_subscribe_bind("c", "PZ")
    assert [m.data for m in await psub.fetch(1, timeout=2)] == [b"m"]


async def test_a_pause_ends_by_itself(senv):
    """A pull request waiting on a paused consumer gets its message when the pause
    ends; a push consumer created paused starts delivering then."""
    await senv.js.add_stream(name="PT", subjects=["pt"])
    await senv.js.publish("pt", b"m")
    loop = asyncio.get_running_loop()
    until = _rfc3339_in(0.6)
    await senv.js.add_consumer("PT", durable_name="pull", pause_until=until)
    inbox = senv.nc.new_inbox()
    psub = await senv.nc.subscribe(inbox)
    push = await senv.nc.subscribe("pt.push")
    await senv.js.add_consumer(
        "PT", durable_name="push", deliver_subject="pt.push", pause_until=until
    )
    t0 = loop.time()
    body = b'{"batch":1,"expires":3000000000}'
    await senv.nc.publish("$JS.API.CONSUMER.MSG.NEXT.PT.pull", body, inbox)
    msg = await psub.next_msg(timeout=3)
    assert msg.data == b"m" and loop.time() - t0 > 0.3
    msg = await push.next_msg(timeout=3)
    assert msg.data == b"m" and loop.time() - t0 > 0.3
    assert (await senv.js.consumer_info("PT", "pull")).paused is None


async def test_pause_answers_and_errors(senv):
    await senv.js.add_stream(name="PE", subjects=["pe"])
    await senv.js.add_consumer("PE", durable_name="c")
    zero = "0001-01-01T00:00:00Z"
    assert await senv.api("$JS.API.CONSUMER.PAUSE.PE.c") == {"paused": False, "pause_until": zero}
    past = {"pause_until": "1970-01-01T00:00:00Z"}
    assert await senv.api("$JS.API.CONSUMER.PAUSE.PE.c", past) == {"paused": False, **past}
    for subject, code in (("PE.nope", 10014), ("NOPE.c", 10059)):
        doc = await senv.api(f"$JS.API.CONSUMER.PAUSE.{subject}", {"pause_until": _rfc3339_in(9)})
        assert doc["error"]["err_code"] == code
        assert (doc["paused"], doc["pause_until"]) == (False, zero)
    doc = await senv.api("$JS.API.CONSUMER.PAUSE.PE.c", {"pause_until": "tomorrow"})
    assert doc["error"]["err_code"] == 10025
    assert doc["error"]["description"].startswith('invalid JSON: parsing time "tomorrow"')
