"""Operator mode over MQTT: a bearer user JWT as the password (any non-empty user
name), as nats-server takes it. A refused login gets CONNACK 0x05 Not authorized in
3.1.1 (as nats-server's MQTT answers any failed login); in 5.0 (MQTT 5 3.2.2.2) 0x86
Bad User Name or Password when the password is no JWT this server can trust
(garbage, a bad signature, an unknown account or issuer, none at all) and 0x87 Not
authorized when a valid JWT may not log in (not a bearer token, expired or not yet
valid, revoked, its src, times or connection types, disallow_bearer)."""

from __future__ import annotations

import json
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


# CONNACK codes of refused JWT logins: 3.1.1 0x05 Not authorized for all (as
# nats-server's MQTT, auth.go authViolation); 5.0 (MQTT 5 3.2.2.2) 0x86 Bad User Name
# or Password when the password is no usable JWT, 0x87 Not authorized when a valid
# JWT may not log in.
NOT_AUTHORIZED_311 = 0x05
BAD_CREDENTIALS_5 = 0x86
NOT_AUTHORIZED_5 = 0x87


def tampered(token: str) -> str:
    """The same JWT with one claim changed after signing: a bad signature."""
    head, claims, sig = token.split(".")
    body = json.loads(T.base64.urlsafe_b64decode(claims + "=="))
    body["name"] = "mallory"
    raw = json.dumps(body, separators=(",", ":")).encode()
    return ".".join((head, T.base64.urlsafe_b64encode(raw).rstrip(b"=").decode(), sig))


def bad_credentials(op: Op) -> dict[str, bytes | None]:
    """Passwords that are no JWT this server can trust."""
    user = T.user_key()
    _, bearer = op.user("A", bearer_token=True)
    return {
        "garbage": b"garbage",
        "no password": None,
        "bad signature": tampered(bearer).encode(),
        # issued by an account nobody here knows
        "unknown account": T.user_jwt(user, T.account_key(), bearer_token=True).encode(),
        # claims A as its account, signed by a key A never named
        "untrusted issuer": T.user_jwt(
            user, T.account_key(), bearer_token=True, issuer_account=op.key("A")
        ).encode(),
    }


def refused_jwts(op: Op) -> dict[str, bytes]:
    """Valid JWTs of account A that may not log in over MQTT, here, now."""
    now = int(time.time())
    user = T.user_key()
    other = (time.gmtime().tm_hour + 12) % 24
    away = {"start": f"{other:02d}:00:00", "end": f"{other:02d}:30:00"}
    jwts = {
        "not a bearer token": op.user("A")[1],  # MQTT has no nonce to sign
        "expired": T.user_jwt(user, op.accounts["A"], top={"exp": now - 5}, bearer_token=True),
        "not yet valid": T.user_jwt(
            user, op.accounts["A"], top={"nbf": now + 60}, bearer_token=True
        ),
        "NATS only": op.user("A", bearer_token=True, allowed_connection_types=["STANDARD"])[1],
        "src": op.user("A", bearer_token=True, src=["10.0.0.0/8"])[1],
        "times": op.user("A", bearer_token=True, times=[away], times_location="UTC")[1],
    }
    return {name: token.encode() for name, token in jwts.items()}


async def test_bad_credentials_are_0x86_and_valid_refused_jwts_0x87(env):
    op, server = env
    port = server.mqtt_port
    for name, password in bad_credentials(op).items():
        assert await rc(port, password, 4) == NOT_AUTHORIZED_311, name
        assert await rc(port, password, 5) == BAD_CREDENTIALS_5, name
    for name, password in refused_jwts(op).items():
        assert await rc(port, password, 4) == NOT_AUTHORIZED_311, name
        assert await rc(port, password, 5) == NOT_AUTHORIZED_5, name
    # a NATS client of the same account still works meanwhile
    nc = await connect(server, op.creds("A"))
    await nc.flush(1)
    await nc.close()


async def _push(op: Op, server, account: str) -> None:
    sys_client = await connect(server, op.creds("SYS"))
    await sys_client.request(
        f"$SYS.REQ.ACCOUNT.{op.key(account)}.CLAIMS.UPDATE",
        op.account_jwts[account].encode(),
        timeout=2,
    )
    await sys_client.close()


async def test_revoked_jwt_is_not_authorized(env):
    op, server = env
    user, bearer = op.user("A", bearer_token=True)
    assert await rc(server.mqtt_port, bearer.encode(), level=5) == 0
    iat = json.loads(T.base64.urlsafe_b64decode(bearer.split(".")[1] + "=="))["iat"]
    op.set_account("A", revocations={T.pub(user): iat})
    await _push(op, server, "A")
    assert await rc(server.mqtt_port, bearer.encode()) == NOT_AUTHORIZED_311
    assert await rc(server.mqtt_port, bearer.encode(), level=5) == NOT_AUTHORIZED_5


async def test_bearer_jwt_logs_in_to_its_account(env):
    op, server = env
    _, bearer = op.user("A", bearer_token=True, pub={"allow": ["ok.>"]})
    assert await rc(server.mqtt_port, bearer.encode()) == 0
    assert await rc(server.mqtt_port, bearer.encode(), level=5) == 0
    # the account says no bearer tokens: refused
    op.set_account("A", limits={"disallow_bearer": True})
    await _push(op, server, "A")
    assert await rc(server.mqtt_port, bearer.encode()) == NOT_AUTHORIZED_311
    assert await rc(server.mqtt_port, bearer.encode(), level=5) == NOT_AUTHORIZED_5
