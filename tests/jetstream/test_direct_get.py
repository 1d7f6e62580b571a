"""Direct get (jetstream-subset.md section 2.14): ``$JS.API.DIRECT.GET.<stream>`` with a
body and ``...<stream>.<subject>`` without one, answered with the raw message and the
Nats-* headers, or a 404/408 status; responders only for ``allow_direct`` streams (a
503 no-responders otherwise)."""

from __future__ import annotations

import re

import nats
import pytest
from nats.js.errors import APIError, NotFoundError

from tests.jetstream import stream_env

senv = stream_env.senv  # the fixture

TS = rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{0,8}[1-9])?Z"  # Go's RFC3339Nano


async def _stream(senv, allow_direct: bool = True) -> None:
    await senv.js.add_stream(name="D", subjects=["d.>"], allow_direct=allow_direct)
    await senv.js.publish("d.a", b"one")
    await senv.js.publish("d.b", b"two", headers={"X-Y": "z"})
    await senv.js.publish("d.a", b"three")


async def test_get_msg_direct_with_nats_py(senv):
    await _stream(senv)
    m = await senv.js.get_msg("D", 2, direct=True)
    assert (m.subject, m.seq, m.data) == ("d.b", 2, b"two")
    assert m.headers["X-Y"] == "z" and m.headers["Nats-Stream"] == "D"
    last = await senv.js.get_msg("D", subject="d.a", direct=True)
    assert (last.seq, last.data) == (3, b"three")
    nxt = await senv.js.get_msg("D", 2, subject="d.a", direct=True, next=True)
    assert nxt.seq == 3
    with pytest.raises(NotFoundError):
        await senv.js.get_msg("D", 9, direct=True)
    with pytest.raises(NotFoundError):
        await senv.js.get_msg("D", subject="d.zz", direct=True)


async def test_direct_get_transcripts(senv):
    await _stream(senv)
    w = await senv.wire()
    await w.send(b"SUB r.> 1\r\n")
    await w.send(b'PUB $JS.API.DIRECT.GET.D r.1 9\r\n{"seq":2}\r\n')
    hdr = (
        rb"NATS/1.0\r\nX-Y: z\r\nNats-Stream: D\r\nNats-Subject: d.b\r\nNats-Sequence: 2\r\n"
        rb"Nats-Time-Stamp: " + TS + rb"\r\n\r\n"
    )
    m = await w.expect_re(rb"HMSG r\.1 1 (\d+) (\d+)\r\n(" + hdr + rb")two\r\n")
    assert int(m.group(1)) == len(m.group(3)) and int(m.group(2)) == len(m.group(3)) + 3
    # last by subject, a wildcard: the newest message on any matching subject
    await w.send(b"PUB $JS.API.DIRECT.GET.D.d.* r.2 0\r\n\r\n")
    await w.expect_re(
        rb"HMSG r\.2 1 \d+ \d+\r\nNATS/1\.0\r\nNats-Stream: D\r\nNats-Subject: d\.a\r\n"
    )
    await w.expect_re(rb"Nats-Sequence: 3\r\nNats-Time-Stamp: " + TS + rb"\r\n\r\nthree\r\n")
    statuses = [
        (b'{"seq":9}', b"NATS/1.0 404 Message Not Found\r\n\r\n"),
        (b"", b"NATS/1.0 408 Empty Request\r\n\r\n"),
        (b"{}", b"NATS/1.0 408 Empty Request\r\n\r\n"),
        (b'{"seq":0}', b"NATS/1.0 408 Empty Request\r\n\r\n"),
        (b"{bad", b"NATS/1.0 408 Malformed Request\r\n\r\n"),
        (b'{"seq":1,"last_by_subj":"d.a"}', b"NATS/1.0 408 Bad Request\r\n\r\n"),
        (b'{"last_by_subj":"d.a","next_by_subj":"d.a"}', b"NATS/1.0 408 Bad Request\r\n\r\n"),
    ]
    for i, (body, status) in enumerate(statuses):
        reply = b"r.s%d" % i
        await w.send(b"PUB $JS.API.DIRECT.GET.D %s %d\r\n%s\r\n" % (reply, len(body), body))
        await w.expect(b"HMSG %s 1 %d %d\r\n%s\r\n" % (reply, len(status), len(status), status))
    # the subject form takes no body
    await w.send(b'PUB $JS.API.DIRECT.GET.D.d.a r.x 9\r\n{"seq":1}\r\n')
    await w.expect(b"HMSG r.x 1 28 28\r\nNATS/1.0 408 Bad Request\r\n\r\n\r\n")
    # ... and a subject without messages is not found
    await w.send(b"PUB $JS.API.DIRECT.GET.D.d.zz r.z 0\r\n\r\n")
    await w.expect(b"HMSG r.z 1 34 34\r\nNATS/1.0 404 Message Not Found\r\n\r\n\r\n")
    # unknown fields are ignored here (not strict): an empty request then
    await w.send(b'PUB $JS.API.DIRECT.GET.D r.y 11\r\n{"bogus":1}\r\n')
    await w.expect(b"HMSG r.y 1 30 30\r\nNATS/1.0 408 Empty Request\r\n\r\n\r\n")


async def test_status_replies_reach_nats_py_as_errors(senv):
    await _stream(senv)
    msg = await senv.nc.request("$JS.API.DIRECT.GET.D", b"", timeout=2)
    assert (msg.headers["Status"], msg.headers["Description"]) == ("408", "Empty Request")
    with pytest.raises(APIError) as ei:
        await senv.js.get_msg("D", direct=True)  # nats-py sends "{}" when nothing is asked
    assert ei.value.code == 408


async def test_only_allow_direct_streams_have_responders(senv):
    await _stream(senv, allow_direct=False)
    with pytest.raises(nats.errors.NoRespondersError):
        await senv.js.get_msg("D", 1, direct=True)
    w = await senv.wire()
    await w.send(b'SUB r.> 1\r\nPUB $JS.API.DIRECT.GET.D r.1 9\r\n{"seq":1}\r\n')
    await w.expect(
        b"HMSG r.1 1 52 52\r\nNATS/1.0 503\r\nNats-Subject: $JS.API.DIRECT.GET.D\r\n\r\n\r\n"
    )
    with pytest.raises(nats.errors.NoRespondersError):  # and no stream at all
        await senv.js.get_msg("NOPE", 1, direct=True)
    # responders follow the config: on with an update, off with the next, gone on delete
    await senv.js.update_stream(name="D", subjects=["d.>"], allow_direct=True)
    assert (await senv.js.get_msg("D", 1, direct=True)).data == b"one"
    assert (await senv.js.get_msg("D", subject="d.b", direct=True)).seq == 2
    await senv.js.update_stream(name="D", subjects=["d.>"], allow_direct=False)
    with pytest.raises(nats.errors.NoRespondersError):
        await senv.js.get_msg("D", 1, direct=True)
    await senv.js.update_stream(name="D", subjects=["d.>"], allow_direct=True)
    await senv.js.delete_stream("D")
    with pytest.raises(nats.errors.NoRespondersError):
        await senv.js.get_msg("D", 1, direct=True)


async def test_a_kv_bucket_with_direct_reads_through_direct_get(senv):
    kv = await senv.js.create_key_value(bucket="dkv", direct=True, history=3)
    await kv.put("k", b"v1")
    await kv.put("k", b"v2")
    assert (await kv.get("k")).value == b"v2"
    assert (await kv.get("k", revision=1)).value == b"v1"
    await kv.delete("k")
    with pytest.raises(nats.js.errors.KeyNotFoundError):
        await kv.get("k")
    w = await senv.wire()
    await w.send(b"SUB r 1\r\nPUB $JS.API.DIRECT.GET.KV_dkv.$KV.dkv.k r 0\r\n\r\n")
    m = await w.expect_re(rb"HMSG r 1 \d+ \d+\r\nNATS/1\.0\r\nKV-Operation: DEL\r\n")
    assert re.match(rb"HMSG", m.group(0))


async def test_batch_and_multi_last(senv):
    """The batch forms nats-py 2.16 does not use, checked against nats-server 2.15.1."""
    await _stream(senv)
    w = await senv.wire()
    await w.send(b"SUB r.> 1\r\n")

    async def replies(body: bytes, reply: bytes) -> list[bytes]:
        await w.send(b"PUB $JS.API.DIRECT.GET.D %s %d\r\n%s\r\n" % (reply, len(body), body))
        out = []
        while True:
            m = await w.expect_re(
                rb"(?:PING\r\n)*HMSG " + re.escape(reply) + rb" 1 (\d+) (\d+)\r\n"
            )
            hlen, total = int(m.group(1)), int(m.group(2))
            data = (await w.expect_re(rb"(.{%d})\r\n" % total, 3)).group(1)
            hdr = re.sub(rb"Nats-Time-Stamp: [^\r]+", b"Nats-Time-Stamp: T", data[:hlen])
            out.append(hdr + data[hlen:])
            if hdr.startswith((b"NATS/1.0 204", b"NATS/1.0 404", b"NATS/1.0 408")):
                return out

    def msg(subject: str, seq: int, pending: int, last: int, data: bytes, extra=b"") -> bytes:
        return (
            b"NATS/1.0\r\n%sNats-Stream: D\r\nNats-Subject: %s\r\nNats-Sequence: %d\r\n"
            b"Nats-Time-Stamp: T\r\nNats-Num-Pending: %d\r\nNats-Last-Sequence: %d\r\n\r\n%s"
        ) % (extra, subject.encode(), seq, pending, last, data)

    assert await replies(b'{"seq":1,"batch":2}', b"r.1") == [
        msg("d.a", 1, 2, 0, b"one"),
        msg("d.b", 2, 1, 1, b"two", b"X-Y: z\r\n"),
        b"NATS/1.0 204 EOB\r\nNats-Num-Pending: 1\r\nNats-Last-Sequence: 2\r\n\r\n",
    ]
    assert await replies(b'{"seq":1,"batch":9,"next_by_subj":"d.a"}', b"r.2") == [
        msg("d.a", 1, 1, 0, b"one"),
        msg("d.a", 3, 0, 1, b"three"),
        b"NATS/1.0 204 EOB\r\nNats-Num-Pending: 0\r\nNats-Last-Sequence: 3\r\n\r\n",
    ]
    # max_bytes: the batch ends once what was sent (subject, headers, payload) reaches it
    got = await replies(b'{"seq":1,"batch":9,"max_bytes":7}', b"r.3")
    assert len(got) == 3 and got[-1].startswith(b"NATS/1.0 204 EOB")  # 2 messages
    assert await replies(b'{"multi_last":["d.*"]}', b"r.4") == [
        msg("d.b", 2, 1, 0, b"two", b"X-Y: z\r\n"),
        msg("d.a", 3, 0, 2, b"three"),
        b"NATS/1.0 204 EOB\r\nNats-Num-Pending: 0\r\nNats-Last-Sequence: 3\r\n"
        b"Nats-UpTo-Sequence: 3\r\n\r\n",
    ]
    assert await replies(b'{"multi_last":["d.a"],"up_to_seq":2}', b"r.5") == [
        msg("d.a", 1, 0, 0, b"one"),
        b"NATS/1.0 204 EOB\r\nNats-Num-Pending: 0\r\nNats-Last-Sequence: 1\r\n"
        b"Nats-UpTo-Sequence: 2\r\n\r\n",
    ]
    assert await replies(b'{"multi_last":["zz"]}', b"r.6") == [b"NATS/1.0 404 No Results\r\n\r\n"]
    assert await replies(b'{"seq":9,"batch":2}', b"r.7") == [
        b"NATS/1.0 404 Message Not Found\r\n\r\n"
    ]
    assert await replies(b'{"batch":2,"last_by_subj":"d.a"}', b"r.8") == [
        b"NATS/1.0 408 Bad Request\r\n\r\n"
    ]
