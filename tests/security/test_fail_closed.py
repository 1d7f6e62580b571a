"""Fail closed: every authentication or authorization option a nats-server config can
hold is either enforced by hybridbus or stops the start with a one-line error (exit 1).
None is warned about and ignored, which would run the server more open than its
config says.

Each option is loaded alone (on top of listeners on loopback). ``REFUSED`` lists the
options that stop the start, with the line the operator reads; ``ENFORCED`` lists the
options hybridbus implements, each with a probe that starts a real server from the
config and shows a client without the right credentials being refused. The key list
comes from nats-server's server/opts.go (v2.15: top level, ``authorization``, user
entries, ``mqtt``/``websocket``, ``tls``); ``test_every_refused_key_is_tested`` keeps
it in step with the loader's own refusal sets. The ``cluster``, ``gateway`` and
blocks stay warned about and ignored as a whole: no listener opens for them, which the
last tests show, so their auth settings guard nothing; a ``leafnodes`` block that would
accept leaf connections (a listener, its authorization) stops the load, since hybridbus
only dials hubs (``remotes``).
"""

from __future__ import annotations

import asyncio
import os
import ssl
import subprocess
import sys

import nats
import nkeys
import pytest

from hybridbus.config import ConfigError, opts_auth, opts_listeners, opts_mqtt
from hybridbus.config import load as config_load
from hybridbus.config.load import load_options, startup_errors
from hybridbus.server.server import Server
from tests.conftest import free_port
from tests.helpers import jwts
from tests.helpers import mqtt_packets as mp
from tests.helpers.wire import Wire, eventually

from .wsclient import WsClient

AUTH = "(an authentication setting: refusing to start rather than ignore it)"
# the nkey user of the enforced cases (`{nkey}` in a config)
NKEY = nkeys.from_seed(nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER))
NO_CERT = "a tls block needs cert_file and key_file"
# operator mode (`{opjwt}`, `{opconf}` in a config): an operator, account A, a user of A
OPERATOR = jwts.operator_key()
OP_ACCOUNT = jwts.account_key()
OP_USER = jwts.user_key()
OP_JWT = jwts.operator_jwt(OPERATOR)
OP_CONF = (
    f'operator: "{OP_JWT}"\nresolver: MEMORY\n'
    f'resolver_preload {{ {jwts.pub(OP_ACCOUNT)}: "{jwts.account_jwt(OP_ACCOUNT, OPERATOR)}" }}'
)
CERT_PAIR = 'cert_file: "{cert}", key_file: "{key}"'


def refused(key: str) -> str:
    return f'field "{key}" is not supported by hybridbus {AUTH}'


# (id, config text, what the one error line must contain). `{cert}`, `{key}` and
# `{ca}` are the test PKI's files.
REFUSED = [
    # JetStream per account is enforced with all its limits (ENFORCED below)
    # operator (JWT) mode: the lead implements it later in issue 16
    # a system account that is not configured (nats-server's start-up error)
    ("system_account", "system_account: SYS", "error resolving system account: account missing"),
    ("system", "system: SYS", "error resolving system account: account missing"),
    # operator (JWT) mode is enforced (ENFORCED below); what it does not implement
    # stops the start: resolvers that fetch accounts, trusted keys without an operator
    ("resolver.url", 'operator: "{opjwt}"\nresolver: URL("http://x/jwt/v1/accounts/")', "URL"),
    ("resolver.cache", 'operator: "{opjwt}"\nresolver: { type: cache, dir: "./j" }', "type cache"),
    (
        "operator.users",
        'operator: "{opjwt}"\nresolver: MEMORY\nauthorization { user: a, password: b }',
        "operators do not allow users to be configured directly",
    ),
    (
        "operator.accounts",
        'operator: "{opjwt}"\nresolver: MEMORY\naccounts { A { users: [{user: a, password: b}] } }',
        "operators do not allow Accounts to be configured directly",
    ),
    (
        "operator.mqtt_override",
        'operator: "{opjwt}"\nresolver: MEMORY\nmqtt { authorization { token: t } }',
        "operators do not allow users to be configured directly",
    ),
    ("operator.no_resolver", 'operator: "{opjwt}"', "operators require an account resolver"),
    ("operator.missing_file", 'operator: "/etc/nats/op.jwt"', "error parsing operator JWT"),
    ("resolver.alone", "resolver: MEMORY", "need operator mode"),
    ("root", 'root: "/etc/nats/op.jwt"', refused("root")),
    ("roots", 'roots: ["/etc/nats/op.jwt"]', refused("roots")),
    ("trusted", 'trusted: "OABC"', refused("trusted")),
    ("trusted_keys", 'trusted_keys: ["OABC"]', refused("trusted_keys")),
    ("resolver_tls", 'resolver_tls { ca_file: "{ca}" }', refused("resolver_tls")),
    (
        "resolver_preload.bad",
        'operator: "{opjwt}"\nresolver: MEMORY\nresolver_preload { AABC: "eyJhbGciOi" }',
        "preload account error",
    ),
    (
        "resolver_pinned_accounts.bad",
        'operator: "{opjwt}"\nresolver: MEMORY\nresolver_pinned_accounts: ["AABC"]',
        "not a valid public account nkey",
    ),
    ("default_sentinel", 'default_sentinel: "eyJhbGciOi"', refused("default_sentinel")),
    ("proxies", 'proxies { trusted: [{ key: "UABC" }] }', refused("proxies")),
    # the authorization block and its users
    (
        "authorization.auth_callout",
        "authorization { users: [{user: auth, password: pw}], "
        'auth_callout { issuer: "AABC", auth_users: [auth] } }',
        refused("auth_callout"),
    ),
    (
        "authorization.auth_hook",
        'authorization { users: [{user: auth, password: pw}], auth_hook { issuer: "AABC" } }',
        refused("auth_hook"),
    ),
    (
        "authorization.proxy_required",
        "authorization { user: a, password: b, proxy_required: true }",
        refused("proxy_required"),
    ),
    (
        "user.account",
        "authorization { users: [{user: a, password: b, account: A}] }",
        refused("account"),
    ),
    (
        "user.proxy_required",
        "authorization { users: [{user: a, password: b, proxy_required: true}] }",
        refused("proxy_required"),
    ),
    ("user.nkey.invalid", 'authorization { users: [{nkey: "UABC"}] }', "Not a valid public nkey"),
    # websocket credentials from cookies of the HTTP upgrade
    *[
        (
            f"websocket.{key}",
            f'websocket {{ port: -1, host: 127.0.0.1, no_tls: true, {key}: "c" }}',
            refused(key),
        )
        for key in ("jwt_cookie", "user_cookie", "pass_cookie", "token_cookie")
    ],
    # certificate checks and certificate sources, in every tls block
    *[
        (f"tls.{key}", f"tls {{ {CERT_PAIR}, {key}: {value} }}", refused(key))
        for key, value in (
            ("verify_cert_and_check_known_urls", "true"),
            ("cert_store", "WindowsCurrentUser"),
            ("cert_match_by", "Subject"),
            ("cert_match", '"example.com"'),
            ("ca_certs_match", '["CA"]'),
            ("cert_match_skip_invalid", "true"),
            ("certs", '[{ cert_file: "{cert}", key_file: "{key}" }]'),
            ("certificates", '[{ cert_file: "{cert}", key_file: "{key}" }]'),
        )
    ],
    (
        "mqtt.tls.cert_store",
        f"mqtt {{ tls {{ {CERT_PAIR}, cert_store: WindowsLocalMachine }} }}",
        refused("cert_store"),
    ),
    (
        "tls.pinned_certs",
        f'tls {{ {CERT_PAIR}, pinned_certs: ["{"a" * 64}"] }}',
        'field "pinned_certs" is not supported by hybridbus',
    ),
    (
        "tls.ocsp_peer",
        f"tls {{ {CERT_PAIR}, ocsp_peer: true }}",
        'field "ocsp_peer" is not supported by hybridbus',
    ),
    # a tls block without a certificate: nats-server requires TLS then, hybridbus
    # would listen in clear text and check no client certificate
    ("tls.no_cert.verify", "tls { verify: true }", NO_CERT),
    ("tls.no_cert.verify_and_map", 'tls { ca_file: "{ca}", verify_and_map: true }', NO_CERT),
    ("mqtt.tls.no_cert", "mqtt { tls { verify_and_map: true } }", NO_CERT),
    (
        "websocket.tls.no_cert",
        "websocket { port: -1, host: 127.0.0.1, tls { verify: true } }",
        NO_CERT,
    ),
    # no_auth_user needs a user to stand for (nats-server's start-up check)
    ("no_auth_user", "no_auth_user: guest", 'no_auth_user: "guest" present, but users/nkeys'),
    (
        "mqtt.no_auth_user",
        "mqtt { no_auth_user: guest }",
        'no_auth_user: "guest" present, but users/nkeys',
    ),
    (
        "websocket.no_auth_user",
        "websocket { port: -1, host: 127.0.0.1, no_tls: true, no_auth_user: guest }",
        'no_auth_user: "guest" present, but users/nkeys',
    ),
    # the mqtt/websocket authorization block holds one user or a token, never a table
    ("mqtt.authorization.users", "mqtt { authorization { users: [] } }", 'unknown field "users"'),
    (
        "websocket.authorization.nkey",
        'websocket { port: -1, no_tls: true, authorization { nkey: "UABC" } }',
        'unknown field "nkey"',
    ),
]


def _write(tmp_path, text: str, pki) -> str:
    text = text.replace("{cert}", pki.server_cert).replace("{key}", pki.server_key)
    text = text.replace("{nkey}", NKEY.public_key.decode())
    text = text.replace("{ca}", pki.ca_file)
    text = text.replace("{opjwt}", OP_JWT)
    path = tmp_path / "c.conf"
    path.write_text(text + "\n")
    return str(path)


def start_refusal(path: str) -> list[str]:
    """The error lines `hybridbus serve -c path` prints before it exits 1 (empty when
    it would start): the loader's, else the start-up checks'."""
    try:
        opts, _ = load_options(path)
    except ConfigError as err:
        return err.lines
    return startup_errors(opts)


@pytest.mark.parametrize("text, line", [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_refused_options_stop_the_start(tmp_path, pki, text, line):
    lines = start_refusal(_write(tmp_path, text, pki))
    assert len(lines) == 1, lines
    assert line in lines[0]


def test_refusal_is_one_line_and_exit_1_from_the_command_line(tmp_path):
    (tmp_path / "c.conf").write_text('port: -1\ntrusted: "OABC"\n')
    proc = subprocess.run(
        [sys.executable, "-m", "hybridbus", "serve", "-c", "c.conf", "--store-dir", "s"],
        capture_output=True,
        timeout=30,
        cwd=tmp_path,
    )
    assert proc.returncode == 1
    assert proc.stderr.decode().strip() == (f"hybridbus: c.conf:2:1: {refused('trusted')}")
    assert not (tmp_path / "s").exists()  # refused before anything was opened


def test_every_refused_key_is_tested():
    tested = {case[0].rsplit(".", 1)[-1] for case in REFUSED}
    in_code = (
        config_load.REFUSED_TOP_LEVEL
        | opts_auth._REFUSED_AUTH
        | opts_auth._REFUSED_USER
        | opts_listeners._REFUSED_TLS
        | opts_listeners._REFUSED_TLS_AUTH
        | opts_mqtt._REFUSED_WEBSOCKET
    )
    assert in_code <= tested, sorted(in_code - tested)


# nats-server options that decide who may connect or what they may do (opts.go).
AUTH_KEYS = {
    "authorization",
    "accounts",
    "no_auth_user",
    "system_account",
    "system",
    "operator",
    "operators",
    "root",
    "roots",
    "root_operator",
    "root_operators",
    "trusted",
    "trusted_keys",
    "resolver",
    "account_resolver",
    "accounts_resolver",
    "resolver_tls",
    "resolver_preload",
    "resolver_pinned_accounts",
    "default_sentinel",
    "proxies",
    "auth_callout",
    "auth_hook",
    "proxy_required",
    "nkey",
    "account",
    "allowed_connection_types",
    "jwt_cookie",
    "user_cookie",
    "pass_cookie",
    "token_cookie",
    "verify",
    "verify_and_map",
    "verify_cert_and_check_known_urls",
    "pinned_certs",
    "ocsp_peer",
    "cert_store",
}


def test_no_auth_option_is_only_warned_about():
    warned = (
        config_load.UNSUPPORTED_TOP_LEVEL
        | opts_listeners._UNSUPPORTED_TLS
        | opts_mqtt._UNSUPPORTED_MQTT
        | opts_mqtt._UNSUPPORTED_WEBSOCKET
    )
    assert not AUTH_KEYS & warned, sorted(AUTH_KEYS & warned)


# -- enforced options: a live server from the config, a client without credentials ---------

BASE = """
host: 127.0.0.1
port: -1
http: "127.0.0.1:-1"
jetstream {{ store_dir: "{store}" }}
mqtt {{ host: 127.0.0.1, port: -1 }}
"""


async def start(tmp_path, text: str, pki) -> Server:
    path = _write(tmp_path, BASE.format(store=tmp_path / "js") + text, pki)
    opts, warnings = load_options(path)
    assert warnings == [] and startup_errors(opts) == []
    server = Server(opts)
    await server.start()
    return server


async def nats_refused(port: int, connect: bytes) -> None:
    wire = await Wire.open(port)
    await wire.expect_re(rb"INFO \{.*?\} \r\n")
    await wire.send(b"CONNECT " + connect + b"\r\nPING\r\n")
    got = await wire.expect_closed()
    assert got == b"-ERR 'Authorization Violation'\r\n", got


async def nats_accepted(port: int, connect: bytes) -> Wire:
    wire = await Wire.open(port)
    await wire.expect_re(rb"INFO \{.*?\} \r\n")
    await wire.send(b"CONNECT " + connect + b"\r\nPING\r\n")
    await wire.expect(b"PONG\r\n")
    return wire


async def probe_user_password(server: Server, pki) -> None:
    port = server.nats_port
    await nats_refused(port, b'{"verbose":false}')
    await nats_refused(port, b'{"verbose":false,"user":"u","pass":"wrong"}')
    await nats_accepted(port, b'{"verbose":false,"user":"u","pass":"p"}')


async def probe_nkey(server: Server, pki) -> None:
    port, public = server.nats_port, NKEY.public_key.decode()
    await nats_refused(port, b'{"verbose":false}')
    await nats_refused(port, b'{"verbose":false,"nkey":"%s"}' % public.encode())  # no sig
    nc = await nats.connect(f"nats://127.0.0.1:{port}", nkeys_seed_str=NKEY.seed.decode())
    await nc.flush(1)
    await nc.close()


async def probe_token(server: Server, pki) -> None:
    port = server.nats_port
    await nats_refused(port, b'{"verbose":false}')
    await nats_refused(port, b'{"verbose":false,"auth_token":"nope"}')
    await nats_accepted(port, b'{"verbose":false,"auth_token":"t0k"}')


async def probe_permissions(server: Server, pki) -> None:
    wire = await nats_accepted(server.nats_port, b'{"verbose":false,"user":"u","pass":"p"}')
    await wire.send(b"PUB no.x 1\r\nx\r\nSUB no.y 1\r\nPUB ok.x 1\r\nx\r\nPING\r\n")
    await wire.expect(
        b"-ERR 'Permissions Violation for Publish to \"no.x\"'\r\n"
        b"-ERR 'Permissions Violation for Subscription to \"no.y\"'\r\nPONG\r\n"
    )


async def probe_default_permissions(server: Server, pki) -> None:
    wire = await nats_accepted(server.nats_port, b'{"verbose":false}')
    await wire.send(b"PUB no.x 1\r\nx\r\nPING\r\n")
    await wire.expect(b"-ERR 'Permissions Violation for Publish to \"no.x\"'\r\nPONG\r\n")


async def probe_allow_responses(server: Server, pki) -> None:
    # a responder may publish only to the reply subject of a request it received
    wire = await nats_accepted(server.nats_port, b'{"verbose":false,"user":"u","pass":"p"}')
    await wire.send(b"PUB anything 1\r\nx\r\nPING\r\n")
    await wire.expect(b"-ERR 'Permissions Violation for Publish to \"anything\"'\r\nPONG\r\n")


async def probe_connection_types(server: Server, pki) -> None:
    port = server.nats_port
    await nats_refused(port, b'{"verbose":false,"user":"u","pass":"p"}')
    wire = await Wire.open(server.mqtt_port)
    await wire.send(mp.connect("fc", username="u", password=b"p"))
    await wire.expect(mp.connack(0, 0))


async def probe_operator(server: Server, pki) -> None:
    # only a user JWT of a trusted account, signing this connection's nonce, logs in
    port = server.nats_port
    await nats_refused(port, b'{"verbose":false}')
    await nats_refused(port, b'{"verbose":false,"user":"u","pass":"p"}')
    stranger = jwts.account_key()  # an account no operator signed
    for issuer in (stranger, OP_ACCOUNT):
        token = jwts.user_jwt(OP_USER, issuer)
        await nats_refused(port, b'{"verbose":false,"jwt":"%s"}' % token.encode())  # no sig
    path = pki.ca_file + ".op.creds"
    jwts.write_creds(path, jwts.user_jwt(OP_USER, OP_ACCOUNT), OP_USER)
    nc = await nats.connect(f"nats://127.0.0.1:{port}", user_credentials=path)
    await nc.flush(1)
    await nc.close()
    # MQTT: no JWT as the password, refused (3.1.1 0x05 Not authorized, as nats-server)
    assert await mqtt_rc(server.mqtt_port, username="x", password=b"p") == 5


async def probe_auth_timeout(server: Server, pki) -> None:
    wire = await Wire.open(server.nats_port)
    await wire.expect_re(rb"INFO \{.*?\} \r\n")
    got = await wire.expect_closed(timeout=4.0)  # no CONNECT: closed after the timeout
    assert got == b"-ERR 'Authentication Timeout'\r\n", got


async def probe_accounts(server: Server, pki) -> None:
    # an account's user logs in with its password only, and lives in its own subject
    # space: a $G subscriber (the no_auth_user) never sees its publishes
    port = server.nats_port
    await nats_refused(port, b'{"verbose":false,"user":"a","pass":"wrong"}')
    g = await nats_accepted(port, b'{"verbose":false}')
    await g.send(b"SUB > 1\r\nPING\r\n")
    await g.expect(b"PONG\r\n")
    a = await nats_accepted(port, b'{"verbose":false,"user":"a","pass":"b"}')
    await a.send(b"SUB x 1\r\nPUB x 2\r\nhi\r\nPING\r\n")
    await a.expect(b"MSG x 1 2\r\nhi\r\nPONG\r\n")
    await g.send(b"PING\r\n")
    await g.expect(b"PONG\r\n")  # and nothing before it


async def probe_account_jetstream(server: Server, pki) -> None:
    # the account's own JetStream with its limits; $G's (the no_auth_user) is another
    port = server.nats_port
    a = await nats_accepted(port, b'{"verbose":false,"user":"a","pass":"b"}')
    await a.send(b"SUB in 1\r\nPUB $JS.API.INFO in 0\r\n\r\n")
    msg = rb"(?:PING\r\n)*MSG in 1 \d+\r\n[^\r]*"
    limits = (
        rb'"limits":\{"max_memory":1000000,"max_storage":-1,"max_streams":1,"max_consumers":-1,'
        rb'"max_ack_pending":10,"memory_max_stream_bytes":1024,"storage_max_stream_bytes":-1,'
        rb'"max_bytes_required":true\}'
    )
    await a.expect_re(msg + rb"[^\r]*" + limits + rb"[^\r]*\r\n")
    create = b'{"name":"S%d","subjects":["s%d"],"storage":"memory"%s}'
    for i, extra, answer in (
        (0, b"", rb'"err_code":10113'),  # max_bytes_required
        (0, b',"max_bytes":1025', rb'"err_code":10122'),  # over memory_max_stream_bytes
        (0, b',"max_bytes":1024', rb'"did_create":true'),
        (1, b',"max_bytes":1024', rb'"err_code":10027'),
    ):
        body = create % (i, i, extra)
        await a.send(b"PUB $JS.API.STREAM.CREATE.S%d in %d\r\n%s\r\n" % (i, len(body), body))
        await a.expect_re(msg + answer + rb"[^\r]*\r\n")
    body = b'{"stream_name":"S0","config":{"durable_name":"D","max_ack_pending":11}}'
    await a.send(b"PUB $JS.API.CONSUMER.CREATE.S0.D in %d\r\n%s\r\n" % (len(body), body))
    await a.expect_re(msg + rb'[^\r]*"err_code":10121[^\r]*\r\n')
    g = await nats_accepted(port, b'{"verbose":false}')
    await g.send(b"SUB in 1\r\nPUB $JS.API.STREAM.NAMES in 0\r\n\r\n")
    # A's stream is not $G's (whose list may hold its $MQTT_ streams only)
    await g.expect_re(rb"(?:PING\r\n)*MSG in 1 \d+\r\n(?![^\r]*S0)[^\r]*stream_names_response")


async def probe_system_account(server: Server, pki) -> None:
    # the $SYS services answer the system account's users only: a user of another
    # account (and $G) publishes in its own subject space, where nobody answers
    port = server.nats_port
    await nats_refused(port, b'{"verbose":false,"user":"s","pass":"wrong"}')
    for user in (b"a", b"g"):
        other = await nats_accepted(
            port,
            b'{"verbose":false,"headers":true,"no_responders":true,'
            b'"user":"' + user + b'","pass":"' + user + b'"}',
        )
        await other.send(b"SUB in 1\r\nPUB $SYS.REQ.SERVER.PING.VARZ in 0\r\n\r\n")
        await other.expect_re(rb"HMSG in 1 \d+ \d+\r\nNATS/1.0 503\r\n")
    s = await nats_accepted(port, b'{"verbose":false,"user":"s","pass":"s"}')
    await s.send(b"SUB in 1\r\nPUB $SYS.REQ.SERVER.PING.VARZ in 0\r\n\r\n")
    await s.expect_re(rb"MSG in 1 \d+\r\n\{\"server\":")


async def probe_no_auth_user(server: Server, pki) -> None:
    # an anonymous client is the no_auth_user, with its permissions; bad credentials
    # are still refused
    wire = await nats_accepted(server.nats_port, b'{"verbose":false}')
    await wire.send(b"PUB no.x 1\r\nx\r\nPING\r\n")
    await wire.expect(b"-ERR 'Permissions Violation for Publish to \"no.x\"'\r\nPONG\r\n")
    await nats_refused(server.nats_port, b'{"verbose":false,"user":"u","pass":"wrong"}')


async def _tls_refused(port: int, ctx: ssl.SSLContext) -> None:
    """The client does not get a working connection. With TLS 1.3 the server's refusal
    of a client certificate reaches the client after its side of the handshake, so
    nats.connect may return first: the flush (a PING) is what fails then."""

    async def quiet(e):
        pass

    try:
        nc = await nats.connect(
            f"tls://127.0.0.1:{port}",
            tls=ctx,
            allow_reconnect=False,
            max_reconnect_attempts=0,
            connect_timeout=2,
            error_cb=quiet,
        )
    except Exception:
        return
    try:
        with pytest.raises(Exception):  # noqa: B017 - the connection is gone
            await nc.flush(1)
            assert nc.is_connected
    finally:
        await nc.close()


async def probe_tls_verify(server: Server, pki) -> None:
    await _tls_refused(server.nats_port, pki.client_context())  # no certificate
    await _tls_refused(server.nats_port, pki.client_context("stranger"))  # unknown CA
    nc = await nats.connect(f"tls://127.0.0.1:{server.nats_port}", tls=pki.client_context("bob"))
    await nc.close()


async def probe_tls_verify_and_map(server: Server, pki) -> None:
    await _tls_refused(server.nats_port, pki.client_context())
    await _tls_refused(server.nats_port, pki.client_context("mallory"))  # names no user
    nc = await nats.connect(f"tls://127.0.0.1:{server.nats_port}", tls=pki.client_context("bob"))
    assert [c.user for c in server.clients.values()] == ["bob"]
    await nc.close()


async def mqtt_rc(port: int, **credentials) -> int:
    """The CONNACK return code an MQTT 3.1.1 CONNECT gets."""
    wire = await Wire.open(port)
    await wire.send(mp.connect("fc", **credentials))
    match = await wire.expect_re(rb"\x20\x02([\x00\x01])([\x00-\x05])")
    await wire.close()
    return match.group(2)[0]


async def probe_mqtt_user_password(server: Server, pki) -> None:
    port = server.mqtt_port
    assert await mqtt_rc(port) == 5  # not authorized
    assert await mqtt_rc(port, username="mu", password=b"wrong") == 4  # bad user name or password
    assert await mqtt_rc(port, username="mu", password=b"mp") == 0


async def probe_mqtt_token(server: Server, pki) -> None:
    port = server.mqtt_port
    assert await mqtt_rc(port) == 5
    assert await mqtt_rc(port, username="x", password=b"nope") == 4
    assert await mqtt_rc(port, username="x", password=b"mt0k") == 0


async def probe_mqtt_no_auth_user(server: Server, pki) -> None:
    port = server.mqtt_port
    assert await mqtt_rc(port) == 0  # anonymous: the no_auth_user
    assert await mqtt_rc(port, username="u", password=b"wrong") == 4
    # and the NATS port still wants credentials: the override is MQTT's own
    await nats_refused(server.nats_port, b'{"verbose":false}')


async def probe_mqtt_tls_verify_and_map(server: Server, pki) -> None:
    for who in (None, "mallory"):
        reader = writer = None
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", server.mqtt_port, ssl=pki.client_context(who)),
                3,
            )
            writer.write(mp.connect("fc"))
            await writer.drain()
            data = await asyncio.wait_for(reader.read(4), 3)
        except (ssl.SSLError, ConnectionError, OSError):
            data = b""  # refused by the handshake
        finally:
            if writer is not None:
                writer.close()
        assert data in (b"", b"\x20\x02\x00\x05"), (who, data)
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", server.mqtt_port, ssl=pki.client_context("bob")
    )
    writer.write(mp.connect("fc"))
    assert await asyncio.wait_for(reader.readexactly(4), 3) == b"\x20\x02\x00\x00"
    writer.close()


async def _ws_nats(server: Server, connect: bytes) -> bytes:
    ws = await WsClient.open(server.websocket_port, "/")
    await ws.recv_until(b"\r\n")  # INFO
    await ws.send(b"CONNECT " + connect + b"\r\nPING\r\n")
    try:
        return await ws.recv_until(b"\r\n")
    finally:
        await ws.close()


async def probe_websocket_user_password(server: Server, pki) -> None:
    violation = b"-ERR 'Authorization Violation'\r\n"
    assert await _ws_nats(server, b'{"verbose":false}') == violation
    assert await _ws_nats(server, b'{"verbose":false,"user":"wu","pass":"no"}') == violation
    assert await _ws_nats(server, b'{"verbose":false,"user":"wu","pass":"wp"}') == b"PONG\r\n"


async def probe_websocket_token(server: Server, pki) -> None:
    violation = b"-ERR 'Authorization Violation'\r\n"
    assert await _ws_nats(server, b'{"verbose":false}') == violation
    assert await _ws_nats(server, b'{"verbose":false,"auth_token":"wt0k"}') == b"PONG\r\n"


async def probe_websocket_no_auth_user(server: Server, pki) -> None:
    assert await _ws_nats(server, b'{"verbose":false}') == b"PONG\r\n"
    violation = b"-ERR 'Authorization Violation'\r\n"
    assert await _ws_nats(server, b'{"verbose":false,"user":"u","pass":"no"}') == violation
    await nats_refused(server.nats_port, b'{"verbose":false}')


USERS = "authorization {{ users: [{{ user: u, password: p{extra} }}] }}"
WS = "websocket {{ port: -1, host: 127.0.0.1, no_tls: true {body} }}"
TLS_BLOCK = 'tls {{ cert_file: "{{cert}}", key_file: "{{key}}", ca_file: "{{ca}}", {what}: true }}'

# (id, config text, probe)
ENFORCED = [
    ("authorization.user", "authorization { user: u, password: p }", probe_user_password),
    ("authorization.token", "authorization { token: t0k }", probe_token),
    ("authorization.users", USERS.format(extra=""), probe_user_password),
    ("user.nkey", "authorization { users: [{ nkey: {nkey} }] }", probe_nkey),
    (
        "user.permissions",
        USERS.format(extra=', permissions: { publish: "ok.>", subscribe: "ok.>" }'),
        probe_permissions,
    ),
    (
        "authorization.default_permissions",
        'authorization { default_permissions: { publish: { deny: "no.>" } } }',
        probe_default_permissions,
    ),
    (
        "permissions.allow_responses",
        USERS.format(extra=", permissions: { allow_responses: true }"),
        probe_allow_responses,
    ),
    (
        "user.allowed_connection_types",
        USERS.format(extra=", allowed_connection_types: [MQTT]"),
        probe_connection_types,
    ),
    ("authorization.timeout", "authorization { token: t0k, timeout: 0.5 }", probe_auth_timeout),
    ("operator", OP_CONF, probe_operator),
    (
        "no_auth_user",
        "no_auth_user: u\n" + USERS.format(extra=', permissions: { publish: { deny: "no.>" } }'),
        probe_no_auth_user,
    ),
    (
        "accounts",
        "accounts { A { users: [{user: a, password: b}] } }\n"
        "no_auth_user: g\nauthorization { users: [{user: g, password: h}] }",
        probe_accounts,
    ),
    (
        "accounts.jetstream",
        "accounts { A { users: [{user: a, password: b}], jetstream { max_mem: 1M, max_streams: 1,"
        " max_ack_pending: 10, mem_max_stream_bytes: 1024, max_bytes_required: true }"
        " } }\nno_auth_user: g\nauthorization { users: [{user: g, password: h}] }",
        probe_account_jetstream,
    ),
    (
        "system_account",
        "accounts { S { users: [{user: s, password: s}] }, A { users: [{user: a, password: a}] } }"
        "\nsystem_account: S\nauthorization { users: [{user: g, password: g}] }",
        probe_system_account,
    ),
    ("tls.verify", TLS_BLOCK.format(what="verify"), probe_tls_verify),
    (
        "tls.verify_and_map",
        TLS_BLOCK.format(what="verify_and_map") + "\nauthorization { users: [{ user: bob }] }",
        probe_tls_verify_and_map,
    ),
    (
        "mqtt.authorization.user",
        "mqtt { authorization { user: mu, password: mp } }",
        probe_mqtt_user_password,
    ),
    ("mqtt.authorization.token", "mqtt { authorization { token: mt0k } }", probe_mqtt_token),
    (
        "mqtt.no_auth_user",
        "mqtt { no_auth_user: u }\n" + USERS.format(extra=""),
        probe_mqtt_no_auth_user,
    ),
    (
        "mqtt.tls.verify_and_map",
        'mqtt { tls { cert_file: "{cert}", key_file: "{key}", ca_file: "{ca}", '
        "verify_and_map: true } }\nauthorization { users: [{ user: bob }] }",
        probe_mqtt_tls_verify_and_map,
    ),
    (
        "websocket.authorization.user",
        WS.format(body=", authorization { user: wu, password: wp }"),
        probe_websocket_user_password,
    ),
    (
        "websocket.authorization.token",
        WS.format(body=", authorization { token: wt0k }"),
        probe_websocket_token,
    ),
    (
        "websocket.no_auth_user",
        WS.format(body=", no_auth_user: u") + "\n" + USERS.format(extra=""),
        probe_websocket_no_auth_user,
    ),
]


@pytest.mark.parametrize("text, probe", [c[1:] for c in ENFORCED], ids=[c[0] for c in ENFORCED])
async def test_enforced_options_refuse_clients_without_credentials(tmp_path, pki, text, probe):
    server = await start(tmp_path, text, pki)
    try:
        await asyncio.wait_for(probe(server, pki), 10)
    finally:
        await server.shutdown()
    await eventually(lambda: not server.clients)


# -- blocks ignored whole: no listener, so their auth settings guard nothing -------------


@pytest.mark.parametrize("block", ["cluster", "gateway"])
async def test_ignored_server_links_open_no_port(tmp_path, pki, block):
    """cluster and gateway are warned about and ignored as a whole: hybridbus opens no
    listener for them and dials nobody, so their authorization cannot let anyone in."""
    port = free_port()
    name = 'name: "g", ' if block == "gateway" else ""
    text = (
        f'{block} {{ {name}listen: "127.0.0.1:{port}", authorization {{ user: a, password: b }} }}'
    )
    path = _write(tmp_path, BASE.format(store=tmp_path / "js") + text, pki)
    opts, warnings = load_options(path)
    assert [w.split(": ", 1)[1] for w in warnings] == [
        f'field "{block}" is not supported by hybridbus and is ignored'
    ]
    server = Server(opts)
    await server.start()
    try:
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection("127.0.0.1", port)
    finally:
        await server.shutdown()


@pytest.mark.parametrize("key", ["listen", "authorization"])
def test_leafnode_accepting_side_is_refused(tmp_path, pki, key):
    """hybridbus is a leaf spoke only: the accepting side's listener or authorization
    would guard nothing, so they stop the load."""
    value = '"127.0.0.1:7422"' if key == "listen" else "{ user: a, password: b }"
    path = _write(
        tmp_path, BASE.format(store=tmp_path / "js") + f"leafnodes {{ {key}: {value} }}", pki
    )
    with pytest.raises(ConfigError) as info:
        load_options(path)
    assert "does not accept leaf node connections" in str(info.value.lines)
