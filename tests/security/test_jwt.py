"""Operator mode over NATS: user JWT logins (nats-py .creds files and raw CONNECTs),
what the JWTs grant and refuse, bad input, and account updates through
$SYS.REQ.CLAIMS.UPDATE and reloads."""

from __future__ import annotations

import asyncio
import json
import time

import nats.errors
import pytest

from tests.helpers import jwts as T
from tests.helpers.wire import Wire, eventually

from .operator_env import Op, connect, start

VIOLATION = b"-ERR 'Authorization Violation'\r\n"


async def login(server, token: str | None, key=None, sig: str | None = None, **extra) -> Wire:
    """A raw session: INFO, CONNECT with `token` signed by `user` (or `sig`), PING."""
    wire = await Wire.open(server.nats_port)
    info = json.loads((await wire.expect_re(rb"INFO (\{.*?\}) \r\n")).group(1))
    body = {"verbose": False, "pedantic": False, "headers": True, "no_responders": True}
    if token is not None:
        body["jwt"] = token
    if key is not None:
        body["sig"] = T.sign_nonce(key, info["nonce"])
    elif sig is not None:
        body["sig"] = sig
    body.update(extra)
    await wire.send(b"CONNECT " + json.dumps(body).encode() + b"\r\nPING\r\n")
    return wire


async def accepted(server, token, key=None, **extra) -> Wire:
    wire = await login(server, token, key, **extra)
    await wire.expect(b"PONG\r\n")
    return wire


async def refused(server, token, key=None, **extra) -> None:
    wire = await login(server, token, key, **extra)
    assert await wire.expect_closed() == VIOLATION


@pytest.fixture
async def env(tmp_path):
    op = Op(tmp_path)
    op.set_account("A", exports=[{"subject": "pub.>", "type": "stream"}])
    op.set_account("B", imports=[{"subject": "pub.>", "account": op.key("A"), "type": "stream"}])
    server = await start(op)
    yield op, server
    await server.shutdown()


async def test_creds_login_isolation_and_imports(env):
    op, server = env
    a = await connect(server, op.creds("A"))
    b = await connect(server, op.creds("B"))
    sub = await a.subscribe("x")
    bsub = await b.subscribe("x")
    bimp = await b.subscribe("pub.>")
    await b.flush()
    await a.publish("x", b"hi")
    await a.publish("pub.1", b"exported")
    assert (await sub.next_msg(timeout=1)).data == b"hi"
    assert (await bimp.next_msg(timeout=1)).data == b"exported"
    with pytest.raises(nats.errors.TimeoutError):
        await bsub.next_msg(timeout=0.3)
    names = {c.account.name for c in server.clients.values()}
    assert names == {op.key("A"), op.key("B")}
    await a.close()
    await b.close()


async def test_info_carries_a_nonce_and_jwt_is_required(env):
    op, server = env
    wire = await Wire.open(server.nats_port)
    info = json.loads((await wire.expect_re(rb"INFO (\{.*?\}) \r\n")).group(1))
    assert info["auth_required"] is True and len(info["nonce"]) == 15
    await refused(server, None)
    await refused(server, None, **{"user": "a", "pass": "b"})  # passwords are not enough
    assert server.security.failures["Authentication requires a user JWT"] == 2


async def test_permissions_from_the_user_jwt(env):
    op, server = env
    user, token = op.user(
        "A",
        pub={"allow": ["ok.>", "_INBOX.>", "svc"], "deny": ["ok.secret"]},
        sub={"deny": ["hidden.>"]},
    )
    wire = await accepted(server, token, user)
    await wire.send(
        b"PUB no 1\r\nx\r\nPUB ok.secret 1\r\nx\r\nSUB hidden.x 1\r\nPUB ok.y 1\r\nx\r\nPING\r\n"
    )
    await wire.expect(
        b"-ERR 'Permissions Violation for Publish to \"no\"'\r\n"
        b"-ERR 'Permissions Violation for Publish to \"ok.secret\"'\r\n"
        b"-ERR 'Permissions Violation for Subscription to \"hidden.x\"'\r\nPONG\r\n"
    )
    # resp: publish only to reply subjects of requests received
    user2, token2 = op.user("A", resp={"max": 1, "ttl": 0})
    responder = await accepted(server, token2, user2)
    await responder.send(b"SUB svc 1\r\nPUB other 1\r\nx\r\nPING\r\n")
    await responder.expect(b"-ERR 'Permissions Violation for Publish to \"other\"'\r\nPONG\r\n")
    await wire.send(b"SUB _INBOX.r 2\r\nPUB svc _INBOX.r 1\r\nq\r\nPING\r\n")
    await wire.expect(b"PONG\r\n")
    await responder.expect(b"MSG svc 1 _INBOX.r 1\r\nq\r\n")
    await responder.send(b"PUB _INBOX.r 1\r\na\r\nPING\r\n")
    await responder.expect(b"PONG\r\n")
    await wire.expect(b"MSG _INBOX.r 2 1\r\na\r\n")


async def test_account_default_permissions(tmp_path):
    op = Op(tmp_path)
    op.set_account("A", default_permissions={"pub": {"deny": ["no.>"]}})
    server = await start(op)
    try:
        user, token = op.user("A")
        wire = await accepted(server, token, user)
        await wire.send(b"PUB no.x 1\r\nx\r\nPING\r\n")
        await wire.expect(b"-ERR 'Permissions Violation for Publish to \"no.x\"'\r\nPONG\r\n")
    finally:
        await server.shutdown()


async def test_bearer_tokens(tmp_path):
    op = Op(tmp_path)
    op.set_account("B", limits={"disallow_bearer": True})
    server = await start(op)
    try:
        _, bearer = op.user("A", bearer_token=True)
        await accepted(server, bearer)  # no signature needed
        _, plain = op.user("A")
        await refused(server, plain)  # not bearer: the nonce must be signed
        _, b_bearer = op.user("B", bearer_token=True)
        await refused(server, b_bearer)  # the account disallows bearer tokens
        assert server.security.failures["Account does not allow bearer tokens"] == 1
    finally:
        await server.shutdown()


async def test_expiry_and_not_before(env):
    op, server = env
    now = int(time.time())
    user, old = op.user("A")
    user, expired = T.user_key(), T.user_jwt(user, op.accounts["A"], top={"exp": now - 5})
    await refused(server, expired, user)
    future = T.user_jwt(user, op.accounts["A"], top={"nbf": now + 60})
    await refused(server, future, user)
    short = T.user_jwt(user, op.accounts["A"], top={"exp": now + 2})
    wire = await accepted(server, short, user)
    got = await wire.expect_closed(timeout=4.0)
    assert got == b"-ERR 'User Authentication Expired'\r\n"


async def test_src_and_times(env):
    op, server = env
    user, token = op.user("A", src=["10.0.0.0/8"])
    await refused(server, token, user)
    user, token = op.user("A", src=["192.168.0.0/16", "127.0.0.0/8"])
    await accepted(server, token, user)
    now = time.gmtime()
    hour = now.tm_hour
    other = (hour + 12) % 24
    away = {"start": f"{other:02d}:00:00", "end": f"{other:02d}:30:00"}
    user, token = op.user("A", times=[away], times_location="UTC")
    await refused(server, token, user)
    here = {"start": f"{hour:02d}:00:00", "end": f"{hour:02d}:59:59"}
    user, token = op.user("A", times=[away, here], times_location="UTC")
    if now.tm_min == 59 and now.tm_sec > 55:
        return  # the window is about to close: nothing stable to check
    await accepted(server, token, user)
    user, token = op.user("A", times=[here], times_location="Nowhere/Atlantis")
    await refused(server, token, user)


async def test_signing_keys(env):
    op, server = env
    signer = T.account_key()
    scoped = T.account_key()
    op.set_account(
        "A",
        signing_keys=[T.pub(signer), {"kind": "user_scope", "key": T.pub(scoped), "role": "r"}],
    )
    await _push(op, server, "A")
    user, token = op.user("A", signer=signer)
    await accepted(server, token, user)
    user, token = op.user("A", signer=scoped)
    await refused(server, token, user)  # scoped signing keys: not supported, refused
    user, token = op.user("A", signer=T.account_key())  # a key the account never named
    await refused(server, token, user)
    stranger = T.account_key()
    user = T.user_key()
    await refused(server, T.user_jwt(user, stranger), user)  # an account nobody trusts


async def test_malformed_jwts_are_refused_and_the_server_keeps_serving(env):
    op, server = env
    user, good = op.user("A")
    head, body, sig = good.split(".")
    claims = json.loads(T.base64.urlsafe_b64decode(body + "=="))
    claims["nats"]["pub"] = {"allow": [">"]}
    tampered = f"{head}.{T.b64(json.dumps(claims).encode())}.{sig}"
    v1 = T.encode(claims, op.accounts["A"], header={"typ": "JWT", "alg": "ed25519"})
    hs = T.encode(claims, op.accounts["A"], header={"typ": "JWT", "alg": "HS256"})
    bad = [
        "garbage",
        "a.b",
        "!!!.***.###",
        f"{head}.{T.b64(b'not json')}.{sig}",
        f"{head}.{T.b64(b'[1,2]')}.{sig}",
        tampered,
        v1,
        hs,
        op.account_jwts["A"],  # an account JWT is no user JWT
        T.user_jwt(user, op.signer),  # a user issued by the operator's key
        "e" * 3000,
    ]
    keeper = await connect(server, op.creds("A"))

    async def pong(m):
        await keeper.publish(m.reply, b"pong")

    await keeper.subscribe("svc", cb=pong)
    for token in bad:
        await refused(server, token, user)
        assert (await keeper.request("svc", b"ping", timeout=1)).data == b"pong"
    await accepted(server, good, user)
    await keeper.close()


async def test_nonce_replay(env):
    op, server = env
    user, token = op.user("A")
    first = await Wire.open(server.nats_port)
    info = json.loads((await first.expect_re(rb"INFO (\{.*?\}) \r\n")).group(1))
    connect = {"verbose": False, "jwt": token, "sig": T.sign_nonce(user, info["nonce"])}
    line = b"CONNECT " + json.dumps(connect).encode() + b"\r\nPING\r\n"
    await first.send(line)
    await first.expect(b"PONG\r\n")
    second = await Wire.open(server.nats_port)  # the same CONNECT on another connection
    await second.expect_re(rb"INFO \{.*?\} \r\n")
    await second.send(line)
    assert await second.expect_closed() == VIOLATION
    assert server.security.failures["Signature not verified"] == 1


async def test_flood_of_failed_logins_while_a_client_works(env):
    op, server = env
    keeper = await connect(server, op.creds("A"))

    async def ok(m):
        await keeper.publish(m.reply, b"ok")

    await keeper.subscribe("svc", cb=ok)
    user, token = op.user("A")

    async def bad_login() -> None:
        wire = await Wire.open(server.nats_port)
        await wire.expect_re(rb"INFO \{.*?\} \r\n")
        await wire.send(b'CONNECT {"jwt":"%s","sig":"AAAA"}\r\nPING\r\n' % token.encode())
        await wire.expect_closed()

    async def flood() -> None:
        for _ in range(10):
            await asyncio.gather(*(bad_login() for _ in range(20)))

    task = asyncio.create_task(flood())
    worst = 0.0
    while not task.done():
        t0 = time.perf_counter()
        assert (await keeper.request("svc", b"x", timeout=2)).data == b"ok"
        worst = max(worst, time.perf_counter() - t0)
    await task
    assert worst < 1.0, worst
    assert server.security.failures["Signature not valid base64"] >= 200 or (
        server.security.failures["Signature not verified"] >= 200
    )
    await keeper.close()


async def test_account_limits(tmp_path):
    op = Op(tmp_path)
    op.set_account("A", limits={"conn": 1, "subs": 1, "payload": 8, "data": -1})
    server = await start(op)
    try:
        user, token = op.user("A")
        wire = await accepted(server, token, user)
        second = await login(server, token, user)
        got = await second.expect_closed()
        assert got == b"-ERR 'maximum account active connections exceeded'\r\n"
        await wire.send(b"SUB a 1\r\nSUB b 2\r\nPING\r\n")
        await wire.expect(b"-ERR 'maximum subscriptions exceeded'\r\nPONG\r\n")
        await wire.send(b"PUB a 9\r\n123456789\r\n")
        assert await wire.expect_closed() == b"-ERR 'Maximum Payload Violation'\r\n"
        # limits hybridbus does not enforce make the account unusable (fail closed)
        op.set_account("B", limits={"data": 1024})
        await _push(op, server, "B", code=500)
    finally:
        await server.shutdown()


async def test_user_payload_limit(env):
    op, server = env
    user, token = op.user("A", payload=4)
    wire = await accepted(server, token, user)
    await wire.send(b"PUB a 5\r\n12345\r\n")
    assert await wire.expect_closed() == b"-ERR 'Maximum Payload Violation'\r\n"
    user, token = op.user("A", subs=5)  # a user subs limit: not supported, refused
    await refused(server, token, user)


# -- updates ------------------------------------------------------------------------------


async def _push(op: Op, server, name: str, code: int = 200, subject: str | None = None):
    """Send the account's JWT as the system account's user would (nsc push)."""
    sys_client = await connect(server, op.creds("SYS"))
    try:
        subject = subject or f"$SYS.REQ.ACCOUNT.{op.key(name)}.CLAIMS.UPDATE"
        msg = await sys_client.request(subject, op.account_jwts[name].encode(), timeout=2)
        answer = json.loads(msg.data)
        got = answer.get("data", answer.get("error"))
        assert got["code"] == code, answer
        return answer
    finally:
        await sys_client.close()


async def test_revocation_refuses_and_disconnects(env):
    op, server = env
    user, token = op.user("A")
    wire = await accepted(server, token, user)
    other_user, other = op.user("A")
    keep = await accepted(server, other, other_user)
    iat = json.loads(T.base64.urlsafe_b64decode(token.split(".")[1] + "=="))["iat"]
    op.set_account("A", revocations={T.pub(user): iat})
    answer = await _push(op, server, "A")
    assert answer["data"] == {"account": op.key("A"), "code": 200, "message": "jwt updated"}
    assert await wire.expect_closed() == b"-ERR 'User Authentication Revoked'\r\n"
    await keep.send(b"PING\r\n")
    await keep.expect(b"PONG\r\n")
    await refused(server, token, user)
    # a JWT issued after the revocation time logs in again
    fresh = T.user_jwt(user, op.accounts["A"], top={"iat": iat + 1})
    await accepted(server, fresh, user)
    # "*" revokes every user issued up to then
    op.set_account("A", revocations={"*": int(time.time()) + 5})
    await _push(op, server, "A")
    assert await keep.expect_closed() == b"-ERR 'User Authentication Revoked'\r\n"


async def test_claims_update_answers(env):
    op, server = env
    sys_client = await connect(server, op.creds("SYS"))
    try:
        # MEMORY resolver: the account subjects only, as nats-server (no CLAIMS.UPDATE)
        with pytest.raises(nats.errors.NoRespondersError):
            await sys_client.request("$SYS.REQ.CLAIMS.UPDATE", b"x", timeout=1)
        subject = f"$SYS.REQ.ACCOUNT.{op.key('A')}.CLAIMS.UPDATE"
        bad = json.loads((await sys_client.request(subject, b"garbage", timeout=1)).data)
        assert bad["error"]["code"] == 500
        assert bad["error"]["description"].startswith("jwt update error - ")
        wrong = json.loads(
            (await sys_client.request(subject, op.account_jwts["B"].encode(), timeout=1)).data
        )
        assert wrong["error"]["description"] == (
            "jwt update error - subject does not match jwt content"
        )
        untrusted = T.account_jwt(op.accounts["A"], T.operator_key())
        got = json.loads((await sys_client.request(subject, untrusted.encode(), timeout=1)).data)
        assert got["error"]["description"] == "jwt validation failed - not trusted"
    finally:
        await sys_client.close()
    # another account's $SYS.REQ subjects are its own: nobody answers there
    a = await connect(server, op.creds("A"))
    with pytest.raises(nats.errors.NoRespondersError):
        await a.request(subject, op.account_jwts["A"].encode(), timeout=1)
    await a.close()


async def test_full_resolver_writes_updates_to_its_directory(tmp_path):
    op = Op(tmp_path)
    jdir = tmp_path / "jwt"
    text = op.config(
        resolver=f'{{ type: full, dir: "{jdir}", allow_delete: false, interval: "2m" }}',
        preload={"SYS": op.account_jwts["SYS"], "A": op.account_jwts["A"]},
    )
    server = await start(op, text)
    try:
        assert sorted(p.name for p in jdir.iterdir()) == sorted(
            [f"{op.key('SYS')}.jwt", f"{op.key('A')}.jwt"]
        )
        user, token = op.user("B")
        await refused(server, token, user)  # B is not in the directory yet
        answer = await _push(op, server, "B", subject="$SYS.REQ.CLAIMS.UPDATE")
        assert answer["data"]["message"] == "jwt updated"
        assert (jdir / f"{op.key('B')}.jwt").read_text() == op.account_jwts["B"]
        b = await connect(server, op.creds("B"))  # the new account serves at once
        await b.flush(1)
        await b.close()
    finally:
        await server.shutdown()
    # and after a restart the directory still has it
    server = await start(op, text)
    try:
        b = await connect(server, op.creds("B"))
        await b.close()
    finally:
        await server.shutdown()


# -- reload -------------------------------------------------------------------------------


async def test_reload_removed_account_and_revocation(tmp_path):
    op = Op(tmp_path)
    server = await start(op)
    try:
        ua, ta = op.user("A")
        ub, tb = op.user("B")
        wa = await accepted(server, ta, ua)
        wb = await accepted(server, tb, ub)
        iat = json.loads(T.base64.urlsafe_b64decode(tb.split(".")[1] + "=="))["iat"]
        op.set_account("B", revocations={T.pub(ub): iat})
        preload = {"SYS": op.account_jwts["SYS"], "B": op.account_jwts["B"]}  # A removed
        op.write(op.config(preload=preload))
        assert server.reload()
        assert await wb.expect_closed() == b"-ERR 'User Authentication Revoked'\r\n"
        got = await wa.expect_closed()
        assert got == b"-ERR 'Account Authentication Expired'\r\n"
        await refused(server, ta, ua)
        await eventually(lambda: not server.clients)
        # a reload that would turn operator mode off is refused
        op.write("port: -1\n")
        assert not server.reload()
    finally:
        await server.shutdown()
