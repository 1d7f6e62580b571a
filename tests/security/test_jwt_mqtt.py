"""Operator mode over MQTT: a bearer user JWT as the password (any non-empty user
name), as nats-server takes it; everything else is refused with the CONNACK code the
project uses for bad credentials (3.1.1 0x04 / 5.0 0x86, "the data in the password is
not right", MQTT 5.0 §3.2.2.2.2), whatever is wrong with the JWT."""

from __future__ import annotations

import time

import pytest

from tests.helpers import jwts as T
from tests.helpers import mqtt_packets as mp
from tests.helpers.wire import Wire

from .operator_env import Op, connect, start


async def rc(port: int, password: bytes | None, level: int = 4, username: str = "any") -> int:
    wire = await Wire.open(port)
    try:
        await wire.send(mp.connect("jc", username=username, password=password, level=level))
        if level == 5:
            match = await wire.expect_re(rb"\x20[\x00-\x7f]\x00([\x00-\xff])")
        else:
            match = await wire.expect_re(rb"\x20\x02\x00([\x00-\xff])")
        return match.group(1)[0]
    finally:
        await wire.close()


@pytest.fixture
async def env(tmp_path):
    op = Op(tmp_path)
    server = await start(op)
    yield op, server
    await server.shutdown()


@pytest.mark.parametrize("level, bad", [(4, 0x04), (5, 0x86)])
async def test_bad_jwts_are_refused(env, level, bad):
    op, server = env
    port = server.mqtt_port
    _, plain = op.user("A")  # not a bearer token: MQTT has no nonce to sign
    now = int(time.time())
    user = T.user_key()
    expired = T.user_jwt(user, op.accounts["A"], top={"exp": now - 5}, bearer_token=True)
    stranger = T.user_jwt(user, T.account_key(), bearer_token=True)
    mqtt_only_not = T.user_jwt(
        user, op.accounts["A"], bearer_token=True, allowed_connection_types=["STANDARD"]
    )
    passwords = [b"garbage", plain.encode(), expired.encode(), stranger.encode(), None]
    for password in [*passwords, mqtt_only_not.encode()]:
        assert await rc(port, password, level) == bad, password
    # a NATS client of the same account still works meanwhile
    nc = await connect(server, op.creds("A"))
    await nc.flush(1)
    await nc.close()


async def test_bearer_jwt_logs_in_to_its_account(env):
    op, server = env
    _, bearer = op.user("A", bearer_token=True, pub={"allow": ["ok.>"]})
    assert await rc(server.mqtt_port, bearer.encode()) == 0
    assert await rc(server.mqtt_port, bearer.encode(), level=5) == 0
    # the account says no bearer tokens: refused
    op.set_account("A", limits={"disallow_bearer": True})
    sys_client = await connect(server, op.creds("SYS"))
    await sys_client.request(
        f"$SYS.REQ.ACCOUNT.{op.key('A')}.CLAIMS.UPDATE", op.account_jwts["A"].encode(), timeout=2
    )
    await sys_client.close()
    assert await rc(server.mqtt_port, bearer.encode()) == 0x04
