"""Operator mode over NATS: user JWT logins (nats-py .creds files and raw CONNECTs),
what the JWTs grant and refuse, and account updates through $SYS.REQ.CLAIMS.UPDATE."""

from __future__ import annotations

import nats.errors
import pytest

from .operator_env import Op, connect, start


async def test_creds_login_and_isolation(tmp_path):
    op = Op(tmp_path)
    server = await start(op)
    try:
        a = await connect(server, op.creds("A"))
        b = await connect(server, op.creds("B"))
        sub = await a.subscribe("x")
        bsub = await b.subscribe("x")
        await a.flush()
        await b.flush()
        await a.publish("x", b"hi")
        msg = await sub.next_msg(timeout=1)
        assert msg.data == b"hi"
        with pytest.raises(nats.errors.TimeoutError):
            await bsub.next_msg(timeout=0.3)
        assert server.clients[max(server.clients)].account.name == op.key("B")
        await a.close()
        await b.close()
    finally:
        await server.shutdown()
