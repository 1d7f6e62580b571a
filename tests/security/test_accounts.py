"""The accounts block as a whole: users of every kind in accounts (password, bcrypt,
nkey, permissions), $G for authorization's users, no_auth_user naming an account's
user, the config checks nats-server makes, and SIGHUP reload of account users."""

from __future__ import annotations

import os
import signal

import bcrypt
import nats
import nkeys
import pytest

from hybridbus.config import ConfigError
from hybridbus.config.load import load_options, startup_errors
from tests.helpers.wire import Wire, eventually

from .accounts_env import login, settle, start, sub, write_conf

NKEY = nkeys.from_seed(nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER))
HASH = bcrypt.hashpw(b"secret", bcrypt.gensalt(4)).decode()

USERS = f"""
authorization {{ users: [{{user: g, password: g}}] }}
accounts {{
  A: {{
    users: [
      {{user: a, password: a}}
      {{user: hashed, password: "{HASH}"}}
      {{nkey: {NKEY.public_key.decode()}}}
      {{user: limited, password: limited, permissions: {{publish: "ok.>", subscribe: "ok.>"}}}}
      {{user: d, password: d}}
    ]
    default_permissions: {{publish: {{deny: "forbidden.>"}}}}
  }}
  B: {{ users: [{{user: b, password: b}}] }}
}}
no_auth_user: b
"""


@pytest.fixture
async def server(tmp_path):
    server = await start(tmp_path, USERS)
    yield server
    await server.shutdown()


def account_of(server, nc_user: str) -> str:
    names = {c.account.name for c in server.clients.values() if c.user == nc_user}
    assert len(names) == 1, names
    return names.pop()


async def test_every_kind_of_user_lands_in_its_account(server):
    url = f"nats://127.0.0.1:{server.nats_port}"
    a = await login(server, "a")
    hashed = await nats.connect(url, user="hashed", password="secret", allow_reconnect=False)
    keyed = await nats.connect(url, nkeys_seed_str=NKEY.seed.decode(), allow_reconnect=False)
    g = await login(server, "g")
    anonymous = await nats.connect(url, allow_reconnect=False)  # no_auth_user b
    await settle(a, hashed, keyed, g, anonymous)
    assert account_of(server, "a") == "A"
    assert account_of(server, "hashed") == "A"
    assert account_of(server, NKEY.public_key.decode()) == "A"
    assert account_of(server, "g") == "$G"
    assert account_of(server, "b") == "B"
    # the three A users share one subject space; g and the anonymous b do not
    box = await sub(a, "t")
    for nc in (hashed, keyed, g, anonymous):
        await nc.publish("t", b"x")
    await settle(a, hashed, keyed, g, anonymous)
    assert len(box.got) == 2
    for nc in (a, hashed, keyed, g, anonymous):
        await nc.close()


async def test_bad_password_in_an_account_is_refused(server):
    wire = await Wire.open(server.nats_port)
    await wire.expect_re(rb"INFO \{.*?\} \r\n")
    await wire.send(b'CONNECT {"verbose":false,"user":"hashed","pass":"wrong"}\r\nPING\r\n')
    assert await wire.expect_closed() == b"-ERR 'Authorization Violation'\r\n"


async def test_permissions_and_account_default_permissions(server):
    port = server.nats_port
    for user, denied in (("limited", b"other"), ("d", b"forbidden.x")):
        wire = await Wire.open(port)
        await wire.expect_re(rb"INFO \{.*?\} \r\n")
        await wire.send(
            b'CONNECT {"verbose":false,"user":"%s","pass":"%s"}\r\n'
            % (user.encode(), user.encode())
        )
        await wire.send(b"PUB %s 1\r\nx\r\nPING\r\n" % denied)
        await wire.expect(
            b"-ERR 'Permissions Violation for Publish to \"%s\"'\r\nPONG\r\n" % denied
        )
        await wire.close()
    # authorization's users keep no account default: g publishes forbidden.x freely
    g = await login(server, "g")
    await g.publish("forbidden.x", b"")
    await g.flush(1)
    await g.close()


async def test_connz_and_info_name_the_account(server):
    a = await login(server, "a")
    await a.flush(1)
    client = next(c for c in server.clients.values() if c.user == "a")
    assert server.describe(client)["account"] == "A"
    await a.close()
    await eventually(lambda: any(cc.info.get("account") == "A" for cc in server.closed))


CONFIG_ERRORS = [
    (
        "authorization { users: [{user: a, password: a}] }\naccounts { A: { users: [{user: a, password: b}] } }",
        'Duplicate user "a" detected',
    ),
    (
        "accounts { A: { users: [{user: a, password: a}] }, B: { users: [{user: a, password: b}] } }",
        'Duplicate user "a" detected',
    ),
    (
        "authorization { user: x, password: y }\naccounts { A: { users: [{user: a, password: b}] } }",
        "Can not have a single user/pass and accounts",
    ),
    (
        "authorization { token: t }\naccounts { A: { users: [{user: a, password: b}] } }",
        "Can not have a token and accounts",
    ),
    ("accounts { A: { users: [{user: a, token: b}] } }", 'unknown field "token"'),
    (
        "accounts { A: { limits: { max_conns: 1 } } }",
        'Unknown field "max_conns" parsing account limits',
    ),
    ("accounts { A: 1 }", "Expected map entries for accounts"),
    ("accounts { A: { bogus: 1 } }", 'unknown field "bogus"'),
    ("accounts: [A, A]", "Duplicate Account Entry: A"),
]


@pytest.mark.parametrize("text, line", CONFIG_ERRORS)
def test_config_errors(tmp_path, text, line):
    with pytest.raises(ConfigError) as err:
        load_options(write_conf(tmp_path, text))
    assert any(line in e for e in err.value.lines), err.value.lines


def test_no_auth_user_must_exist_in_some_account(tmp_path):
    opts, _ = load_options(
        write_conf(tmp_path, "accounts { A: { users: [{user: a, password: a}] } }\nno_auth_user: x")
    )
    assert startup_errors(opts) == [
        'no_auth_user: "x" not present as user or nkey in authorization block or account configuration'
    ]
    opts, _ = load_options(
        write_conf(tmp_path, "accounts { A: { users: [{user: a, password: a}] } }\nno_auth_user: a")
    )
    assert startup_errors(opts) == []


def test_account_list_form_and_jetstream_disabled(tmp_path):
    opts, _ = load_options(write_conf(tmp_path, "accounts: [A, B]\n"))
    assert [a.name for a in opts.accounts] == ["A", "B"]
    opts, _ = load_options(write_conf(tmp_path, "accounts { A: { jetstream: disabled } }\n"))
    assert [a.name for a in opts.accounts] == ["A"]


RELOAD_BEFORE = """
accounts {
  A: { users: [{user: a, password: a}, {user: d, password: d}] }
  B: { users: [{user: b, password: b}] }
}
"""
RELOAD_AFTER = """
accounts {
  A: { users: [] }
  B: { users: [{user: b, password: b}, {user: d, password: d}] }
}
"""


async def test_sighup_disconnects_removed_and_moved_users(server_process, tmp_path):
    """SIGHUP to a real `hybridbus serve`: a removed user (a) and a user moved to
    another account (d: A -> B) are disconnected; b stays; d logs in again into B."""
    conf = tmp_path / "server.conf"
    conf.write_text(RELOAD_BEFORE)
    proc = server_process(config=str(conf)).start()
    url = f"nats://127.0.0.1:{proc.ports['nats']}"
    opts = {"allow_reconnect": False, "max_reconnect_attempts": 0, "connect_timeout": 2}
    a = await nats.connect(url, user="a", password="a", **opts)
    d = await nats.connect(url, user="d", password="d", **opts)
    b = await nats.connect(url, user="b", password="b", **opts)
    b_box = await sub(b, "t")
    await d.publish("t", b"from-d-in-A")  # not B's
    await settle(d, b)
    conf.write_text(RELOAD_AFTER)
    os.kill(proc.proc.pid, signal.SIGHUP)
    await eventually(lambda: "Reloaded server configuration" in proc.output(), timeout=5)
    await eventually(lambda: not a.is_connected and not d.is_connected, timeout=5)
    assert "removed by reload; disconnecting" in proc.output()
    assert "moved to account B by reload; disconnecting" in proc.output()
    await b.flush(1)
    assert b.is_connected
    d2 = await nats.connect(url, user="d", password="d", **opts)
    await d2.publish("t", b"from-d-in-B")
    await settle(d2, b)
    assert b_box.got == [("t", b"from-d-in-B")]
    with pytest.raises(nats.errors.Error):
        await nats.connect(url, user="a", password="a", **opts)
    for nc in (a, d, b, d2):
        await nc.close()
