"""The internal JetStream client (hybridbus/core/jsclient.py) against our own engine in
local-domain mode (jetstream { domain: hub }: $JS.hub.API.> is the same API)."""

from __future__ import annotations

import asyncio

import nats
import pytest

from hybridbus.codec.nats import encode_headers
from hybridbus.core.jsclient import NO_RESPONDERS, TIMEOUT, JsClient, JsError


async def _client(server, domain="hub", timeout=2.0) -> JsClient:
    js = JsClient(server, server.global_account, domain, timeout)
    js.start()
    return js


async def test_request_publish_ack_and_errors(server_factory):
    server = await server_factory(jetstream__domain="hub", mqtt__enabled=False)
    js = await _client(server)
    info = await asyncio.wait_for(
        js.request(
            "STREAM.CREATE.T",
            {
                "name": "T",
                "subjects": ["t.>"],
                "max_msgs_per_subject": 1,
                "discard": "new",
                "discard_new_per_subject": True,
            },
        ),
        3,
    )
    assert info["config"]["name"] == "T"
    acks: list = []
    loop = asyncio.get_running_loop()
    done = loop.create_future()

    def on_ack(answer, err):
        acks.append((answer, err))
        if len(acks) == 3 and not done.done():
            done.set_result(None)

    js.publish("t.a", b"one", None, on_ack)
    js.publish("t.a", b"two", None, on_ack)  # discard new per subject: refused
    hdr = encode_headers([("Nats-Expected-Last-Subject-Sequence", "0")])
    js.publish("t.b", b"three", hdr, on_ack)
    server.flush()
    await asyncio.wait_for(done, 3)
    assert acks[0][0]["seq"] == 1 and acks[0][1] is None
    assert acks[1][0] is None and acks[1][1].err_code == 10077
    assert acks[2][0]["seq"] == 2
    # the domain-prefixed API is the same API: nats-py sees the messages
    nc = await nats.connect(f"nats://127.0.0.1:{server.nats_port}")
    try:
        msg = await nc.jetstream(domain="hub").get_last_msg("T", "t.a")
        assert msg.data == b"one"
    finally:
        await nc.close()
    with pytest.raises(JsError) as err:
        await asyncio.wait_for(js.request("STREAM.INFO.NOPE"), 3)
    assert err.value.err_code == 10059
    js.stop()


async def test_no_responders_and_timeout(server_factory):
    server = await server_factory(jetstream__domain="hub", mqtt__enabled=False)
    js = await _client(server, domain="elsewhere", timeout=0.4)
    with pytest.raises(JsError) as err:
        await asyncio.wait_for(js.request("INFO"), 3)
    assert err.value.err_code == NO_RESPONDERS
    # someone listens but never answers: the request times out
    nc = await nats.connect(f"nats://127.0.0.1:{server.nats_port}")
    try:

        async def ignore(msg):
            pass

        await nc.subscribe("$JS.elsewhere.API.>", cb=ignore)
        await nc.flush()
        await asyncio.sleep(0.05)
        started = asyncio.get_running_loop().time()
        with pytest.raises(JsError) as err:
            await asyncio.wait_for(js.request("INFO"), 3)
        assert err.value.err_code == TIMEOUT
        assert 0.35 < asyncio.get_running_loop().time() - started < 1.5
    finally:
        await nc.close()
    js.stop()
