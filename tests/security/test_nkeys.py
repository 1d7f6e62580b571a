"""NKey users (nats-server's nkey authentication): the INFO nonce, the signed CONNECT,
every way a login fails, replay, MQTT, no_auth_user, a flood of bad signatures, and
config reload (SIGHUP) adding and removing nkey users.

Keys are made here with the nkeys package (the NATS team's); clients are nats-py
(`nkeys_seed` / `nkeys_seed_str`) and raw sockets for exact wire bytes.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import subprocess
import sys
import time

import nats
import nkeys
import pytest

from hybridbus.codec.nkey import PREFIX_ACCOUNT, PREFIX_USER, decode_public_key
from hybridbus.config.load import load_options, startup_errors
from hybridbus.options import AuthOptions, Permissions, User
from hybridbus.security.nkey import decode_signature, new_nonce
from hybridbus.server.server import Server
from tests.helpers import mqtt_packets as mp
from tests.helpers.wire import Wire, eventually

from .wsclient import WsClient

VIOLATION = b"-ERR 'Authorization Violation'\r\n"


class Key:
    """A user key pair made with the nkeys package."""

    def __init__(self) -> None:
        self.seed = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER).decode()
        self.pair = nkeys.from_seed(bytearray(self.seed.encode()))
        self.public = self.pair.public_key.decode()

    def sign(self, nonce: str, encoding=base64.urlsafe_b64encode) -> str:
        sig = encoding(self.pair.sign(nonce.encode()))
        return sig.rstrip(b"=").decode() if encoding is base64.urlsafe_b64encode else sig.decode()


@pytest.fixture
def keys() -> list[Key]:
    return [Key() for _ in range(3)]


async def nkey_server(server_factory, *users: User, **overrides) -> Server:
    return await server_factory(auth=AuthOptions(users=list(users)), **overrides)


async def open_info(port: int) -> tuple[Wire, dict]:
    wire = await Wire.open(port)
    m = await wire.expect_re(rb"INFO (\{.*?\}) \r\n")
    return wire, json.loads(m.group(1))


def connect_line(**fields) -> bytes:
    return b"CONNECT " + json.dumps({"verbose": False, **fields}).encode() + b"\r\nPING\r\n"


async def refused(port: int, make_connect) -> None:
    """A raw client whose CONNECT (made from the INFO) gets Authorization Violation and
    the close, as nats-server answers."""
    wire, info = await open_info(port)
    await wire.send(make_connect(info))
    assert await wire.expect_closed() == VIOLATION


# -- the key's text form --------------------------------------------------------------------


def test_public_key_decoding_agrees_with_the_nkeys_package():
    for _ in range(200):
        pair = nkeys.from_seed(nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER))
        text = pair.public_key.decode()
        assert decode_public_key(text, PREFIX_USER) == bytes(pair._keys.verify_key)
        assert decode_public_key(text, PREFIX_ACCOUNT) is None  # another role
        flipped = text[:-1] + ("A" if text[-1] != "A" else "B")  # checksum broken
        assert decode_public_key(flipped, PREFIX_USER) is None
        assert decode_public_key(text.lower(), PREFIX_USER) is None
        assert decode_public_key(text[:-1], PREFIX_USER) is None
    account = nkeys.from_seed(nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_ACCOUNT))
    assert decode_public_key(account.public_key.decode(), PREFIX_ACCOUNT) is not None
    assert decode_public_key(None, PREFIX_USER) is None


def test_nonce_and_signature_encodings():
    nonces = {new_nonce() for _ in range(100)}
    assert len(nonces) == 100
    assert all(len(n) == 15 and "=" not in n for n in nonces)  # 11 bytes, base64url
    raw = os.urandom(64)
    assert decode_signature(base64.urlsafe_b64encode(raw).rstrip(b"=").decode()) == raw
    assert decode_signature(base64.b64encode(raw).decode()) == raw  # nats-py's form
    for bad in ("", "!!!", base64.b64encode(raw[:63]).decode(), None, 5, "é" * 86):
        assert decode_signature(bad) is None


# -- logging in ----------------------------------------------------------------------------


async def test_info_carries_a_fresh_nonce_only_with_nkey_users(server_factory, keys):
    server = await nkey_server(server_factory, User("", nkey=keys[0].public))
    nonces = set()
    for _ in range(3):
        wire, info = await open_info(server.nats_port)
        assert info["auth_required"] is True
        nonces.add(info["nonce"])
        await wire.close()
    assert len(nonces) == 3 and all(len(n) == 15 for n in nonces)
    plain = await server_factory(auth=AuthOptions(users=[User("u", "p")]))
    wire, info = await open_info(plain.nats_port)
    assert "nonce" not in info
    await wire.close()


async def test_nats_py_logs_in_with_a_seed_and_gets_its_permissions(server_factory, keys, tmp_path):
    perms = Permissions(publish_allow=["ok.>"], subscribe_allow=["ok.>", "_INBOX.>"])
    server = await nkey_server(
        server_factory,
        User("", nkey=keys[0].public, permissions=perms),
        User("", nkey=keys[1].public),
        User("alice", "pw"),  # password users and nkey users side by side
    )
    url = f"nats://127.0.0.1:{server.nats_port}"
    errors = []

    async def on_error(e):
        errors.append(str(e))

    nc = await nats.connect(url, nkeys_seed_str=keys[0].seed, error_cb=on_error)
    seed_file = tmp_path / "user.nk"
    seed_file.write_text(keys[1].seed + "\n")
    other = await nats.connect(url, nkeys_seed=str(seed_file))
    alice = await nats.connect(url, user="alice", password="pw")
    assert sorted(c.user for c in server.clients.values()) == sorted(
        [keys[0].public, keys[1].public, "alice"]
    )
    sub = await other.subscribe(">")
    await other.flush()
    await nc.publish("ok.1", b"yes")
    await nc.publish("no.1", b"no")
    await nc.flush()
    assert (await sub.next_msg(2)).subject == "ok.1"
    await eventually(lambda: any("permissions violation" in e.lower() for e in errors))
    for c in (nc, other, alice):
        await c.close()


async def test_wrong_seed_is_refused(server_factory, keys):
    server = await nkey_server(server_factory, User("", nkey=keys[0].public))
    with pytest.raises(nats.errors.Error) as info:
        await nats.connect(
            f"nats://127.0.0.1:{server.nats_port}",
            nkeys_seed_str=keys[1].seed,  # a key the server does not know
            allow_reconnect=False,
            max_reconnect_attempts=0,
        )
    assert "authorization violation" in str(info.value).lower()
    assert server.security.failures["unknown nkey"] == 1


async def test_each_bad_connect_gets_authorization_violation(server_factory, keys):
    key, stranger = keys[0], keys[1]
    server = await nkey_server(server_factory, User("", nkey=key.public))
    port = server.nats_port
    cases = {
        "signature missing": lambda i: connect_line(nkey=key.public),
        "signature not valid base64": lambda i: connect_line(nkey=key.public, sig="%%%"),
        # signed by another key
        "signature not verified": lambda i: connect_line(
            nkey=key.public, sig=stranger.sign(i["nonce"])
        ),
        "unknown nkey": lambda i: connect_line(nkey=stranger.public, sig=stranger.sign(i["nonce"])),
    }
    for reason, make in cases.items():
        await refused(port, make)
        assert server.security.failures[reason] == 1, reason
    # the right key over another text than this connection's nonce
    await refused(port, lambda i: connect_line(nkey=key.public, sig=key.sign(i["nonce"] + "x")))
    # a signature cut short, and a user name instead of the key: no password opens it
    await refused(port, lambda i: connect_line(nkey=key.public, sig=key.sign(i["nonce"])[:-4]))
    await refused(port, lambda i: connect_line(user=key.public, **{"pass": "x"}))
    assert server.stats.auth_failures == 7
    # both signature encodings nats-server reads are accepted
    for encoding in (base64.urlsafe_b64encode, base64.b64encode):
        wire, info = await open_info(port)
        await wire.send(connect_line(nkey=key.public, sig=key.sign(info["nonce"], encoding)))
        await wire.expect(b"PONG\r\n")
        await wire.close()


async def test_a_captured_connect_cannot_be_replayed(server_factory, keys):
    key = keys[0]
    server = await nkey_server(server_factory, User("", nkey=key.public))
    first, info = await open_info(server.nats_port)
    captured = connect_line(nkey=key.public, sig=key.sign(info["nonce"]))
    await first.send(captured)
    await first.expect(b"PONG\r\n")
    # the same bytes on a new connection: its nonce is another one
    second, info2 = await open_info(server.nats_port)
    assert info2["nonce"] != info["nonce"]
    await second.send(captured)
    assert await second.expect_closed() == VIOLATION
    await first.send(b"PING\r\n")  # the first one is untouched
    await first.expect(b"PONG\r\n")
    await first.close()


async def test_allowed_connection_types_apply_to_nkey_users(server_factory, keys):
    server = await nkey_server(
        server_factory, User("", nkey=keys[0].public, allowed_connection_types=["MQTT"])
    )
    await refused(
        server.nats_port,
        lambda i: connect_line(nkey=keys[0].public, sig=keys[0].sign(i["nonce"])),
    )
    assert server.security.failures["connection type not allowed"] == 1


async def test_nkey_users_cannot_log_in_over_mqtt(server_factory, keys):
    # MQTT has no nonce to sign: the public key as user name opens nothing
    server = await nkey_server(server_factory, User("", nkey=keys[0].public))
    for password in (b"", b"anything", keys[0].seed.encode()):
        wire = await Wire.open(server.mqtt_port)
        await wire.send(mp.connect("dev", username=keys[0].public, password=password))
        await wire.expect(mp.connack(0, 4))  # bad user name or password
        await wire.expect_closed()
    assert server.security.failures["nkey users log in only by signing a nonce"] == 3


async def test_no_auth_user_may_name_an_nkey_user(server_factory, keys):
    perms = Permissions(publish_deny=["no.>"])
    server = await nkey_server(
        server_factory,
        User("", nkey=keys[0].public, permissions=perms),
        no_auth_user=keys[0].public,
    )
    wire, _ = await open_info(server.nats_port)
    await wire.send(connect_line() + b"PUB no.x 1\r\nx\r\nPING\r\n")
    await wire.expect(b"PONG\r\n-ERR 'Permissions Violation for Publish to \"no.x\"'\r\nPONG\r\n")
    (client,) = server.clients.values()
    assert client.user == keys[0].public


async def test_nkey_login_over_websocket(server_factory, keys):
    server = await nkey_server(
        server_factory,
        User("", nkey=keys[0].public),
        websocket__enabled=True,
        websocket__no_tls=True,
        websocket__host="127.0.0.1",
    )
    for key, answer in ((keys[0], b"PONG\r\n"), (keys[1], VIOLATION)):
        ws = await WsClient.open(server.websocket_port, "/")
        info = json.loads((await ws.recv_until(b"\r\n"))[5:])
        await ws.send(connect_line(nkey=key.public, sig=key.sign(info["nonce"])))
        assert await ws.recv_until(b"\r\n") == answer
        await ws.close()


# -- a flood of bad signatures -------------------------------------------------------------

FLOOD = """
import asyncio, base64, json, os, sys

async def one(port, key):
    r, w = await asyncio.open_connection("127.0.0.1", port)
    info = json.loads((await r.readline())[5:])
    assert "nonce" in info
    sig = base64.urlsafe_b64encode(os.urandom(64)).rstrip(b"=").decode()
    w.write(b"CONNECT " + json.dumps({"nkey": key, "sig": sig}).encode() + b"\\r\\nPING\\r\\n")
    got = await r.read()
    w.close()
    return got == b"-ERR 'Authorization Violation'\\r\\n"

async def main(port, key, n):
    done = await asyncio.gather(*[one(port, key) for _ in range(n)])
    print(sum(done))

asyncio.run(main(int(sys.argv[1]), sys.argv[2], int(sys.argv[3])))
"""


async def test_a_flood_of_bad_signatures_does_not_starve_other_clients(server_factory, keys):
    """200 concurrent connects with bad signatures (from another process) while a
    client keeps doing request/reply: every login is refused, and the requests keep
    being answered promptly (each check is one ed25519 verify, about 60 us)."""
    server = await nkey_server(server_factory, User("", nkey=keys[0].public))
    url = f"nats://127.0.0.1:{server.nats_port}"
    responder = await nats.connect(url, nkeys_seed_str=keys[0].seed)

    async def echo(msg):
        await msg.respond(msg.data)

    await responder.subscribe("echo", cb=echo)
    await responder.flush()
    requester = await nats.connect(url, nkeys_seed_str=keys[0].seed)
    latencies: list[float] = []
    flooding = asyncio.Event()
    done = False

    async def request_loop():
        while not done:
            started = time.perf_counter()
            assert (await requester.request("echo", b"ping", timeout=2)).data == b"ping"
            if flooding.is_set():
                latencies.append(time.perf_counter() - started)

    loop_task = asyncio.create_task(request_loop())
    await asyncio.sleep(0.05)
    flooding.set()
    started = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        FLOOD,
        str(server.nats_port),
        keys[0].public,
        "200",
        stdout=subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 20)
    elapsed = time.perf_counter() - started
    done = True
    await asyncio.wait_for(loop_task, 5)
    assert int(out) == 200
    assert server.security.failures["signature not verified"] == 200
    assert latencies, "no request completed during the flood"
    worst = max(latencies)
    print(
        f"\n200 bad nkey logins (with the flooder's start) in {elapsed:.3f} s; "
        f"{len(latencies)} requests during it, "
        f"median {sorted(latencies)[len(latencies) // 2] * 1e3:.2f} ms, worst {worst * 1e3:.2f} ms"
    )
    assert worst < 0.5
    await requester.close()
    await responder.close()


# -- config and reload ---------------------------------------------------------------------

CONF = """
pid_file: "{pid}"
authorization {{
  users: [
    {users}
  ]
}}
"""


def write_conf(path, pid, *entries: str) -> None:
    path.write_text(CONF.format(pid=pid, users="\n    ".join(entries)))


def test_config_file_nkey_users(tmp_path, keys):
    conf = tmp_path / "c.conf"
    write_conf(
        conf,
        tmp_path / "pid",
        f'{{ nkey: {keys[0].public}, permissions: {{ publish: "a.>" }} }}',
        f"{{ nkey: {keys[1].public}, allowed_connection_types: [STANDARD] }}",
        "{ user: alice, password: pw }",
    )
    opts, warnings = load_options(str(conf))
    assert warnings == [] and startup_errors(opts) == []
    assert [(u.name, u.nkey) for u in opts.auth.users] == [
        (keys[0].public, keys[0].public),
        (keys[1].public, keys[1].public),
        ("alice", None),
    ]
    assert opts.auth.users[0].permissions.publish_allow == ["a.>"]
    assert opts.auth.users[1].allowed_connection_types == ["STANDARD"]


async def test_reload_adds_and_removes_nkey_users(server_process, tmp_path, keys):
    conf, pid = tmp_path / "server.conf", tmp_path / "hb.pid"
    write_conf(conf, pid, f"{{ nkey: {keys[0].public} }}")
    proc = server_process(config=str(conf)).start()
    url = f"nats://127.0.0.1:{proc.ports['nats']}"
    opts = {"allow_reconnect": False, "max_reconnect_attempts": 0, "connect_timeout": 2}
    first = await nats.connect(url, nkeys_seed_str=keys[0].seed, **opts)
    with pytest.raises(nats.errors.Error):
        await nats.connect(url, nkeys_seed_str=keys[1].seed, **opts)

    def sighup_and_wait(count: int):
        os.kill(proc.proc.pid, signal.SIGHUP)
        return eventually(
            lambda: proc.output().count("Reloaded server configuration") == count, timeout=5
        )

    # added: the new key logs in
    write_conf(conf, pid, f"{{ nkey: {keys[0].public} }}", f"{{ nkey: {keys[1].public} }}")
    await sighup_and_wait(1)
    second = await nats.connect(url, nkeys_seed_str=keys[1].seed, **opts)
    await second.flush(1)

    # removed: its connected client is disconnected, new logins are refused, the
    # other key's client stays
    write_conf(conf, pid, f"{{ nkey: {keys[1].public} }}")
    await sighup_and_wait(2)
    await eventually(lambda: not first.is_connected, timeout=5)
    assert "removed by reload; disconnecting" in proc.output()
    with pytest.raises(nats.errors.Error):
        await nats.connect(url, nkeys_seed_str=keys[0].seed, **opts)
    await second.flush(1)
    assert second.is_connected
    await first.close()
    await second.close()
    assert proc.stop() == 0
