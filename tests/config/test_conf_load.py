"""Config files to Options: names, aliases, types, defaults, and the blocks."""

from __future__ import annotations

import pytest

from hybridbus.config import ConfigError
from hybridbus.config.load import (
    UNSUPPORTED_TOP_LEVEL,
    load_options,
    parse_go_duration,
    startup_errors,
)
from hybridbus.options import Options

from .conftest import DATA

CERT = str(DATA / "cert.pem")
KEY = str(DATA / "key.pem")
OTHER_KEY = str(DATA / "other-key.pem")


def test_no_config_gives_defaults():
    opts, warnings = load_options(None)
    assert warnings == []
    assert (opts.port, opts.mqtt.port, opts.http_port) == (4222, 1883, 8222)
    assert opts.jetstream.store_dir == "./hybridbus-data"
    assert opts.config_digest == "" and opts.raw == {}
    assert startup_errors(opts) == []


def test_option_names_are_case_insensitive(conf):
    opts, _ = conf.load(
        "PORT: 1234\nMax_Payload: 1k\nJetStream { Store_Dir: /tmp/js }\nMQTT { PORT: 1999 }"
    )
    assert (opts.port, opts.max_payload) == (1234, 1000)
    assert opts.jetstream.store_dir == "/tmp/js"
    assert opts.mqtt.port == 1999
    assert conf.errors("Foo: 1") == ['c.conf:1:0: unknown field "Foo"']


@pytest.mark.parametrize(
    "text, attr, value",
    [
        ("net: 10.0.0.1", "host", "10.0.0.1"),
        ("host: 10.0.0.1", "host", "10.0.0.1"),
        ("monitor_port: 9000", "http_port", 9000),
        ("http_port: 9000", "http_port", 9000),
        ("https_port: 9443", "https_port", 9443),
        ("max_conn: 5", "max_connections", 5),
        ("max_connections: 0", "max_connections", 0),
        ("max_subs: 7", "max_subscriptions", 7),
        ("max_subscriptions: 7", "max_subscriptions", 7),
        ("logfile: /tmp/x.log", "log_file", "/tmp/x.log"),
        ("log_file: /tmp/x.log", "log_file", "/tmp/x.log"),
        ("pidfile: /tmp/x.pid", "pid_file", "/tmp/x.pid"),
        ("pid_file: /tmp/x.pid", "pid_file", "/tmp/x.pid"),
        ("max_control_line: 1kb", "max_control_line", 1024),
        ("max_pending: 1MB", "max_pending", 1 << 20),
        ("max_closed_clients: 5", "max_closed_clients", 5),
        ("ping_max: 5", "ping_max", 5),
        ("debug: true", "debug", True),
        ("trace: yes", "trace", True),
        ("logtime: off", "logtime", False),
        ("server_name: edge-1", "server_name", "edge-1"),
        ("http_base_path: /nats", "http_base_path", "/nats"),
        ("no_auth_user: a", "no_auth_user", "a"),
        ("port: -1", "port", -1),
    ],
)
def test_top_level_options_and_aliases(conf, text, attr, value):
    opts, warnings = conf.load(text)
    assert warnings == []
    assert getattr(opts, attr) == value


@pytest.mark.parametrize(
    "value, host, port",
    [
        ("4333", "0.0.0.0", 4333),
        ("127.0.0.1:4333", "127.0.0.1", 4333),
        ('":4333"', "0.0.0.0", 4333),
        ('"[::1]:4333"', "::1", 4333),
        ('"localhost:4333"', "localhost", 4333),
    ],
)
def test_listen_forms(conf, value, host, port):
    opts, _ = conf.load(f"listen: {value}")
    assert (opts.host, opts.port) == (host, port)
    opts, _ = conf.load(f"http: {value}")
    assert (opts.http_host, opts.http_port) == (host, port)


@pytest.mark.parametrize(
    "value, msg",
    [
        ('"::1:4222"', 'could not parse address string "::1:4222"'),
        ("localhost", 'could not parse address string "localhost"'),
        ('"1.2.3.4:abc"', 'could not parse port "abc"'),
        ('"1.2.3.4:"', 'could not parse port ""'),
        ("1.5", "expected port or host:port, got float64"),
        ("true", "expected port or host:port, got bool"),
    ],
)
def test_listen_errors(conf, value, msg):
    assert conf.errors(f"listen: {value}") == [f"c.conf:1:0: {msg}"]
    assert conf.errors(f"mqtt {{ listen: {value} }}") == [f"c.conf:1:7: {msg}"]


def test_https_sets_host_and_https_port(conf):
    opts, _ = conf.load('https: "127.0.0.1:8443"')
    assert (opts.http_host, opts.https_port) == ("127.0.0.1", 8443)


def test_later_key_wins_between_listen_and_port(conf):
    assert conf.load('listen: "1.2.3.4:5000"\nport: 4000')[0].port == 4000
    assert conf.load('port: 4000\nlisten: "1.2.3.4:5000"')[0].port == 5000


def test_max_payload_limits(conf):
    assert conf.load("max_payload: 2147483647")[0].max_payload == 2147483647
    assert conf.errors("max_payload: 2147483648") == ["c.conf:1:0: max_payload value is too big"]
    assert conf.errors("MAX_PAYLOAD: 3GB") == ["c.conf:1:0: MAX_PAYLOAD value is too big"]
    assert conf.errors("max_control_line: 3GB") == ["c.conf:1:0: max_control_line value is too big"]


@pytest.mark.parametrize(
    "text, seconds",
    [
        ('"30s"', 30.0),
        ('"2m"', 120.0),
        ('"1h30m"', 5400.0),
        ('"300ms"', 0.3),
        ('"1.5h"', 5400.0),
        ('".5s"', 0.5),
        ('"0"', 0.0),
        ("90s", 90.0),  # unquoted, but lexes as a string
        ("1m30s", 90.0),
    ],
)
def test_durations(conf, text, seconds):
    opts, warnings = conf.load(f"ping_interval: {text}\nwrite_deadline: {text}")
    assert warnings == []
    assert opts.ping_interval == pytest.approx(seconds)
    assert opts.write_deadline == pytest.approx(seconds)


def test_duration_errors_and_number_forms(conf):
    assert conf.errors('ping_interval: "30"') == [
        'c.conf:1:0: error parsing ping_interval: time: missing unit in duration "30"'
    ]
    assert conf.errors('ping_interval: ""') == [
        'c.conf:1:0: error parsing ping_interval: time: invalid duration ""'
    ]
    with pytest.raises(ConfigError) as info:
        load_options(conf.write("ping_interval: 1.5"))
    assert info.value.warnings == [
        'c.conf:1:0: invalid use of field "ping_interval": ping_interval should be converted to a duration'
    ]
    assert info.value.lines == [
        "c.conf:1:0: interface conversion: interface {} is float64, not int64"
    ]
    opts, warnings = conf.load("write_deadline: 5")
    assert opts.write_deadline == 5.0 and len(warnings) == 1


@pytest.mark.parametrize(
    "text, ns",
    [
        ("1ns", 1),
        ("1us", 1_000),
        ("1\u00b5s", 1_000),
        ("1\u03bcs", 1_000),
        ("-1.5s", -1_500_000_000),
        ("+2h", 7_200_000_000_000),
        ("1h1m1s1ms1us1ns", 3_661_001_001_001),
        ("0.000000001s", 1),
        ("2562047h", 2562047 * 3_600_000_000_000),
    ],
)
def test_go_duration_parser(text, ns):
    assert parse_go_duration(text) == ns


@pytest.mark.parametrize(
    "text, msg",
    [
        ("", 'time: invalid duration ""'),
        ("1", 'time: missing unit in duration "1"'),
        ("1h1", 'time: missing unit in duration "1h1"'),
        ("x", 'time: invalid duration "x"'),
        (".s", 'time: invalid duration ".s"'),
        ("1x", 'time: unknown unit "x" in duration "1x"'),
        ("2mx", 'time: unknown unit "mx" in duration "2mx"'),
        ("1\u00e9", 'time: unknown unit "\\xc3\\xa9" in duration "1\\xc3\\xa9"'),
        ("9999999999h", 'time: invalid duration "9999999999h"'),
    ],
)
def test_go_duration_parser_errors(text, msg):
    with pytest.raises(ValueError) as info:
        parse_go_duration(text)
    assert str(info.value) == msg


def test_server_tags_and_metadata(conf):
    opts, _ = conf.load('server_tags: ["az:1", b]\nserver_metadata { owner: ops, "team name": x }')
    assert opts.tags == ["az:1", "b"]
    assert opts.metadata == {"owner": "ops", "team name": "x"}
    assert conf.load("server_tags: solo")[0].tags == ["solo"]
    assert conf.errors("server_tags: 5") == [
        "c.conf:1:0: error parsing tags: unsupported type int64"
    ]
    assert conf.errors("server_metadata: 5") == [
        "c.conf:1:0: error parsing metadata: unsupported type int64"
    ]
    assert conf.errors("server_metadata: {a: [b]}") == [
        "c.conf:1:18: interface conversion: interface {} is []interface {}, not string"
    ]


# -- authorization ------------------------------------------------------------------


def test_single_user_and_token(conf):
    opts, _ = conf.load("authorization { username: a, pass: b, timeout: 3 }")
    assert (opts.auth.user, opts.auth.password, opts.auth.timeout) == ("a", "b", 3.0)
    opts, _ = conf.load('authorization { token: "s3cret", timeout: "1.5s" }')
    assert (opts.auth.token, opts.auth.timeout) == ("s3cret", 1.5)
    assert conf.load("authorization { timeout: 1.5 }")[0].auth.timeout == 1.5


def test_authorization_timeout_errors(conf):
    assert conf.errors('authorization { timeout: "3x" }') == [
        'c.conf:1:16: error parsing authorization config, \'timeout\' time: unknown unit "x" in duration "3x"'
    ]
    assert conf.errors("authorization { timeout: true }") == [
        "c.conf:1:16: error parsing authorization config, 'timeout' wrong type"
    ]
    assert conf.warnings('authorization { timeout: "2m" }') == [
        'c.conf:1:16: invalid use of field "timeout": timeout of 2m (120.000000 seconds) is high, '
        "consider keeping it under 60 seconds. possibly caused by unquoted duration; use '1m' "
        "instead of 1m, for example"
    ]
    assert conf.warnings("authorization { timeout: 60 }") == []
    # Go prints the value with %v: large floats in exponent form.
    assert conf.warnings("authorization { timeout: 100000000.5 }")[0].startswith(
        'c.conf:1:16: invalid use of field "timeout": timeout of 1.000000005e+08 '
        "(100000000.500000 seconds) is high"
    )


def test_users_with_permissions(conf):
    text = """
authorization {
  default_permissions { publish: "public.>" }
  users: [
    {user: a, password: "$2a$11$abc", permissions: {pub: a, sub: [b, "c q"]}}
    {username: b, pass: x, permission: {import: {allow: "x.*", deny: ["x.y"]}, export: {deny: ">"}}}
    {user: c, authorization: {publish: {allow: a}, allow_responses: true}}
    {user: d, permissions: {allow_responses: {max: 5, expires: "1m"}}}
    {user: e, permissions: {publish_allow_responses: {max: 0, ttl: "0s"}}}
    {user: f, connection_types: [mqtt, websocket], clients: standard}
    {user: g, allowed_connection_types: ["MQTT_WS", "leafnode", "LEAFNODE_WS", "in_process"]}
  ]
}
"""
    opts, warnings = conf.load(text)
    assert warnings == []
    auth = opts.auth
    assert auth.default_permissions.publish_allow == ["public.>"]
    users = {u.user: u for u in auth.users}
    assert list(users) == ["a", "b", "c", "d", "e", "f", "g"]
    assert users["a"].password == "$2a$11$abc"
    assert users["a"].permissions.publish_allow == ["a"]
    assert users["a"].permissions.subscribe_allow == ["b", "c q"]
    assert users["b"].permissions.publish_allow == ["x.*"]
    assert users["b"].permissions.publish_deny == ["x.y"]
    assert users["b"].permissions.subscribe_deny == [">"]
    assert users["b"].permissions.subscribe_allow is None
    assert users["c"].permissions.allow_responses == (1, 120.0)
    assert users["d"].permissions.allow_responses == (5, 60.0)
    # A response permission alone means "publish to reply subjects only".
    assert users["d"].permissions.publish_allow == []
    assert users["e"].permissions.allow_responses == (1, 120.0)  # zeros keep the defaults
    assert users["f"].allowed_connection_types == ["STANDARD"]  # the later alias wins
    assert users["g"].allowed_connection_types == [
        "MQTT_WS",
        "LEAFNODE",
        "LEAFNODE_WS",
        "IN_PROCESS",
    ]
    assert users["a"].allowed_connection_types is None


@pytest.mark.parametrize(
    "perms, msg",
    [
        ("5", "c.conf:1:34: Expected permissions to be a map/struct, got 5"),
        (
            "{publish: 5}",
            "c.conf:1:48: Expected subject permissions to be a subject, or array of subjects, got int64",
        ),
        (
            "{publish: {allow: 5}}",
            "c.conf:1:58: Expected subject permissions to be a subject, or array of subjects, got int64",
        ),
        (
            "{publish: [a, 5 ]}",
            "c.conf:1:61: Subject in permissions array cannot be cast to string",
        ),
        ('{publish: "foo bar"}', 'c.conf:1:48: subject "foo bar" is not a valid subject'),
        ('{subscribe: "foo bar baz"}', 'c.conf:1:48: subject "foo bar baz" is not a valid subject'),
        ('{subscribe: "foo..x q"}', 'c.conf:1:48: subject "foo..x" is not a valid subject'),
        ('{subscribe: "foo q.*"}', 'c.conf:1:48: queue "q.*" is not a valid queue'),
        ('{publish: ">.a"}', 'c.conf:1:48: subject ">.a" is not a valid subject'),
        ('{publish: ""}', 'c.conf:1:48: subject "" is not a valid subject'),
        ('{publish: "a."}', 'c.conf:1:48: subject "a." is not a valid subject'),
        ("{allow_responses: {maxx: 5}}", 'c.conf:1:66: Unknown field "maxx" parsing permissions'),
        (
            "{allow_responses: {expires: 3}}",
            "c.conf:1:66: error parsing expires, not a duration string",
        ),
        (
            '{allow_responses: {expires: "3x"}}',
            'c.conf:1:66: error parsing expires: time: unknown unit "x" in duration "3x"',
        ),
        (
            "{allow_responses: 5}",
            "c.conf:1:48: error parsing response permissions, expected a boolean or a map",
        ),
    ],
)
def test_permission_errors(conf, perms, msg):
    assert conf.errors(f"authorization {{ users: [{{user: a, permissions: {perms}}}] }}") == [msg]


def test_valid_subject_forms(conf):
    text = 'authorization { users: [{user: a, permissions: {publish: ["a.*.b", "a.>", ">", "*", "a*b.c>"], subscribe: "a.* grp.1"}}] }'
    perms = conf.load(text)[0].auth.users[0].permissions
    assert perms.publish_allow == ["a.*.b", "a.>", ">", "*", "a*b.c>"]
    assert perms.subscribe_allow == ["a.* grp.1"]


def test_users_errors(conf):
    assert conf.errors("authorization { users: 5 }") == [
        "c.conf:1:16: Expected users field to be an array, got 5"
    ]
    assert conf.errors("authorization { users: [ a ] }") == [
        "c.conf:1:25: Expected user entry to be a map/struct, got a"
    ]
    assert conf.errors('authorization { users: [{user: ""}] }') == [
        "c.conf:1:25: User entry requires a user"
    ]
    assert conf.errors("authorization: 5") == [
        "c.conf:1:0: interface conversion: interface {} is int64, not map[string]interface {}"
    ]


def test_empty_users_array_still_conflicts(conf):
    assert conf.errors("authorization { user: a, users: [] }") == [
        "c.conf:1:0: Can not have a single user/pass and a users array"
    ]
    assert conf.errors("authorization { password: a, token: b }") == [
        "c.conf:1:0: Cannot have a user/pass and token"
    ]
    assert conf.load("authorization { users: [] }")[0].auth.users == []


def test_used_variables_are_not_unknown_fields(conf):
    opts, warnings = conf.load(
        "authorization { users: [{V: a, user: $V}] }\nmqtt { N: 3, max_ack_pending: $N }"
    )
    assert warnings == []
    assert opts.auth.users[0].user == "a"
    assert opts.mqtt.max_ack_pending == 3
    # A variable named like an option is still that option.
    assert conf.errors('port: "x"\nserver_name: $port') == [
        "c.conf:1:0: interface conversion: interface {} is string, not int64"
    ]


# -- tls --------------------------------------------------------------------------------


def test_tls_block(conf):
    text = f"""tls {{
  cert_file: "{CERT}"
  key_file: "{KEY}"
  ca_file: "{CERT}"
  verify: true
  verify_and_map: true
  insecure: false
  timeout: "3s"
  min_version: "1.3"
  handshake_first: true
}}"""
    opts, warnings = conf.load(text)
    assert warnings == []
    tls = opts.tls
    assert (tls.cert_file, tls.key_file, tls.ca_file) == (CERT, KEY, CERT)
    assert (tls.verify, tls.verify_and_map, tls.insecure) == (True, True, False)
    assert (tls.timeout, tls.min_version, tls.handshake_first) == (3.0, "1.3", True)
    assert conf.load("tls { timeout: 5, first: false }")[0].tls.timeout == 5.0


@pytest.mark.parametrize(
    "body, msg",
    [
        ("foo: 1", 'c.conf:1:6: error parsing tls config, unknown field "foo"'),
        ("cert_file: /x.pem", "c.conf:1:0: missing 'key_file' in TLS configuration"),
        ("key_file: /x.pem", "c.conf:1:0: missing 'cert_file' in TLS configuration"),
        (
            f'cert_file: /nope.pem, key_file: "{KEY}"',
            "c.conf:1:0: error parsing X509 certificate/key pair: open /nope.pem: no such file or directory",
        ),
        (
            f'cert_file: "{CERT}", key_file: /nokey.pem',
            "c.conf:1:0: error parsing X509 certificate/key pair: open /nokey.pem: no such file or directory",
        ),
        (
            f'cert_file: "{CERT}", key_file: "{OTHER_KEY}"',
            "c.conf:1:0: error parsing X509 certificate/key pair: tls: private key does not match public key",
        ),
        (
            f'cert_file: "{KEY}", key_file: "{KEY}"',
            "c.conf:1:0: error parsing X509 certificate/key pair: tls: failed to find certificate PEM "
            "data in certificate input, but did find a private key; PEM inputs may have been switched",
        ),
        ("ca_file: /noca.pem", "c.conf:1:0: open /noca.pem: no such file or directory"),
        ('min_version: "1.9"', "c.conf:1:6: error parsing tls config: unknown version: 1.9"),
        ("timeout: true", "c.conf:1:6: error parsing tls config, 'timeout' wrong type"),
        ("verify: 1", "c.conf:1:6: error parsing tls config, expected 'verify' to be a boolean"),
        (
            "cert_file: 1",
            "c.conf:1:6: error parsing tls config, expected 'cert_file' to be filename",
        ),
        ("pinned_certs: [abc]", 'c.conf:1:6: field "pinned_certs" is not supported by hybridbus'),
    ],
)
def test_tls_errors(conf, body, msg):
    assert conf.errors(f"tls {{ {body} }}") == [msg]


def test_tls_bad_pem_files(conf, tmp_path):
    (tmp_path / "junk.pem").write_text("junk\n")
    assert conf.errors(f'tls {{ cert_file: junk.pem, key_file: "{KEY}" }}') == [
        "c.conf:1:0: error parsing X509 certificate/key pair: tls: failed to find any PEM data in certificate input"
    ]
    assert conf.errors(f'tls {{ cert_file: "{CERT}", key_file: junk.pem }}') == [
        "c.conf:1:0: error parsing X509 certificate/key pair: tls: failed to find any PEM data in key input"
    ]
    assert conf.errors("tls { ca_file: junk.pem }") == [
        "c.conf:1:0: failed to parse root ca certificate"
    ]


def test_tls_unsupported_fields_warn(conf):
    assert conf.warnings(
        'tls { cipher_suites: ["TLS_AES_128_GCM_SHA256"], handshake_first: "auto" }'
    ) == [
        'c.conf:1:6: field "cipher_suites" is not supported by hybridbus and is ignored',
        'c.conf:1:49: field "handshake_first" is not supported by hybridbus and is ignored',
    ]


# -- jetstream ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, enabled",
    [
        ("jetstream: true", True),
        ("jetstream: false", False),
        ("jetstream: enabled", True),
        ('jetstream: "disabled"', False),
        ("jetstream {}", True),
        ("jetstream { enabled: false }", False),
        ("jetstream { enable: false }", False),
    ],
)
def test_jetstream_forms(conf, text, enabled):
    assert conf.load(text)[0].jetstream.enabled is enabled


def test_jetstream_block(conf):
    text = 'jetstream { store: /data/js, max_mem: 1G, max_file: "2T", sync: "5s", strict: false, domain: hub }'
    js = conf.load(text)[0].jetstream
    assert js.store_dir == "/data/js"  # as given: no "/jetstream" suffix
    assert js.max_memory_store == 10**9
    assert js.max_file_store == 2 << 40
    assert (js.sync_interval, js.sync_always, js.strict, js.domain) == (5.0, False, False, "hub")
    for text in ("jetstream { sync_interval: always }", 'jetstream { sync: "ALWAYS" }'):
        js = conf.load(text)[0].jetstream
        assert (js.sync_always, js.sync_interval) == (True, 0.0)
    assert conf.load("jetstream { storedir: /a }")[0].jetstream.store_dir == "/a"
    assert conf.load("store_dir: /b")[0].jetstream.store_dir == "/b"
    assert conf.load("storedir: /c\njetstream {}")[0].jetstream.store_dir == "/c"


@pytest.mark.parametrize(
    "value, size",
    [
        ('"1K"', 1 << 10),
        ('"1M"', 1 << 20),
        ('"1G"', 1 << 30),
        ('"1T"', 1 << 40),
        ("1G", 10**9),
        ("-1", -1),
        ('""', 0),
    ],
)
def test_jetstream_sizes(conf, value, size):
    js = conf.load(f"jetstream {{ max_file_store: {value}, max_memory_store: {value} }}")[
        0
    ].jetstream
    assert js.max_file_store == size
    assert js.max_memory_store == size


@pytest.mark.parametrize(
    "text, msg",
    [
        (
            "jetstream: foo",
            "c.conf:1:0: Expected 'enabled' or 'disabled' for string value, got 'foo'",
        ),
        ("jetstream: 5", "c.conf:1:0: Expected map, bool or string to define JetStream, got int64"),
        (
            'jetstream { max_file_store: "1GB" }',
            'c.conf:1:12: max_file_store strconv.ParseInt: parsing "1G": invalid syntax',
        ),
        (
            'jetstream { max_file_store: "1g" }',
            "c.conf:1:12: max_file_store sizes defined as strings must end in K, M, G, T",
        ),
        (
            'jetstream { max_file_store: "1024" }',
            "c.conf:1:12: max_file_store sizes defined as strings must end in K, M, G, T",
        ),
        (
            'jetstream { max_memory_store: "x" }',
            'c.conf:1:12: max_mem_store strconv.ParseInt: parsing "": invalid syntax',
        ),
        (
            "jetstream { max_memory_store: 1.5 }",
            "c.conf:1:12: max_mem_store must be int64 or string",
        ),
        (
            'jetstream { sync_interval: "5x" }',
            'c.conf:1:12: error parsing sync_interval: time: unknown unit "x" in duration "5x"',
        ),
        (
            "store_dir: /tmp/x\njetstream { store_dir: /tmp/y }",
            "c.conf:2:13: Duplicate 'store_dir' configuration",
        ),
        (
            "jetstream { store_dir: /tmp/y }\nstore_dir: /tmp/x",
            "c.conf:2:1: Duplicate 'store_dir' configuration",
        ),
        ("jetstream { key: s3cret }", 'c.conf:1:12: field "key" is not supported by hybridbus'),
    ],
)
def test_jetstream_errors(conf, text, msg):
    assert conf.errors(text) == [msg]


def test_jetstream_sync_interval_integer_warns(conf):
    opts, warnings = conf.load("jetstream { sync_interval: 5 }")
    assert opts.jetstream.sync_interval == 5.0
    assert warnings == [
        'c.conf:1:12: invalid use of field "sync_interval": sync_interval should be converted to a duration'
    ]


# -- mqtt ------------------------------------------------------------------------------------


def test_mqtt_block(conf):
    text = f"""mqtt {{
  host: 127.0.0.1
  port: 1884
  ackwait: "45s"
  max_inflight: 100
  no_auth_user: dev
  reject_qos2_publish: true
  downgrade_qos2_subscribe: true
  receive_maximum: 20
  max_keepalive: 60
  max_packet_size: 1MB
  max_session_messages: 500
  connect_timeout: "3s"
  authentication {{ user: u, password: p, timeout: 4 }}
  tls {{ cert_file: "{CERT}", key_file: "{KEY}" }}
}}"""
    opts, warnings = conf.load(text)
    assert warnings == []
    mq = opts.mqtt
    assert (mq.host, mq.port, mq.ack_wait, mq.max_ack_pending) == ("127.0.0.1", 1884, 45.0, 100)
    assert (mq.no_auth_user, mq.reject_qos2_publish, mq.downgrade_qos2_subscribe) == (
        "dev",
        True,
        True,
    )
    assert (mq.receive_maximum, mq.max_keepalive, mq.max_packet_size) == (20, 60, 1 << 20)
    assert (mq.max_session_messages, mq.connect_timeout) == (500, 3.0)
    assert (mq.auth.user, mq.auth.password, mq.auth.timeout) == ("u", "p", 4.0)
    assert mq.tls.cert_file == CERT
    assert conf.load('mqtt { listen: "127.0.0.1:1999" }')[0].mqtt.port == 1999
    assert conf.load("mqtt { max_pending: 7 }")[0].mqtt.max_ack_pending == 7
    assert conf.load('mqtt { ack_wait: "0s" }')[0].mqtt.ack_wait == 30.0  # 0 = the default


@pytest.mark.parametrize(
    "body, msg",
    [
        ("max_ack_pending: 70000", "c.conf:1:7: invalid value 70000, should in [0..65535] range"),
        ("max_ack_pending: -1", "c.conf:1:7: invalid value -1, should in [0..65535] range"),
        (
            'max_ack_pending: "5"',
            "c.conf:1:7: interface conversion: interface {} is string, not int64",
        ),
        ("receive_maximum: 0", "c.conf:1:7: invalid value 0, should in [1..65535] range"),
        ("max_keepalive: 70000", "c.conf:1:7: invalid value 70000, should in [0..65535] range"),
        (
            "max_packet_size: 1GB",
            "c.conf:1:7: invalid value 1073741824, should in [0..268435460] range",
        ),
        (
            "max_session_messages: -1",
            "c.conf:1:7: invalid value -1, should in [0..9223372036854775807] range",
        ),
        ('connect_timeout: "0s"', "c.conf:1:7: connect_timeout must be positive"),
        (
            'ack_wait: "5x"',
            'c.conf:1:7: error parsing ack_wait: time: unknown unit "x" in duration "5x"',
        ),
        ("tls { foo: 1 }", 'c.conf:1:13: error parsing tls config, unknown field "foo"'),
        ("authorization { users: [{user: a}] }", 'c.conf:1:23: unknown field "users"'),
        ('port: "x"', "c.conf:1:7: interface conversion: interface {} is string, not int64"),
    ],
)
def test_mqtt_errors(conf, body, msg):
    assert conf.errors(f"mqtt {{ {body} }}") == [msg]
    assert conf.errors("mqtt: 5") == ["c.conf:1:0: Expected mqtt to be a map, got int64"]


def test_mqtt_nats_only_options_warn(conf):
    opts, warnings = conf.load(
        'mqtt { js_domain: hub, consumer_replicas: 3, stream_replicas: 1, js_api_timeout: "5s" }'
    )
    assert warnings == [
        'c.conf:1:7: field "js_domain" is not supported by hybridbus and is ignored',
        'c.conf:1:23: field "consumer_replicas" is not supported by hybridbus and is ignored',
        'c.conf:1:45: field "stream_replicas" is not supported by hybridbus and is ignored',
        'c.conf:1:65: field "js_api_timeout" is not supported by hybridbus and is ignored',
    ]


# -- websocket -------------------------------------------------------------------------------


def test_websocket_block(conf):
    text = f"""ws {{
  listen: "127.0.0.1:8080"
  tls {{ cert_file: "{CERT}", key_file: "{KEY}" }}
  handshake_timeout: "3s"
  same_origin: true
  allowed_origins: ["https://a.example", "https://b.example"]
  compress: true
  no_auth_user: dev
  authorization {{ token: t }}
}}"""
    opts, warnings = conf.load(text)
    assert warnings == []
    ws = opts.websocket
    assert (ws.enabled, ws.host, ws.port, ws.no_tls) == (True, "127.0.0.1", 8080, False)
    assert (ws.handshake_timeout, ws.same_origin, ws.compression) == (3.0, True, True)
    assert ws.allowed_origins == ["https://a.example", "https://b.example"]
    assert (ws.no_auth_user, ws.auth.token, ws.tls.key_file) == ("dev", "t", KEY)
    for alias in ("allowed_origin", "allow_origins", "allow_origin", "origins", "origin"):
        assert conf.load(f'websocket {{ {alias}: "http://x" }}')[0].websocket.allowed_origins == [
            "http://x"
        ]
    ws = conf.load("websocket { host: h, port: 1, no_tls: true, handshake_timeout: 4 }")[
        0
    ].websocket
    assert (ws.host, ws.port, ws.no_tls, ws.handshake_timeout) == ("h", 1, True, 4.0)
    assert conf.load("websocket { no_tls: true }")[0].websocket.enabled is False


@pytest.mark.parametrize(
    "body, msg",
    [
        (
            "handshake_timeout: 1.5",
            "c.conf:1:12: error parsing handshake timeout: unsupported type float64",
        ),
        ('handshake_timeout: "3x"', 'c.conf:1:12: time: unknown unit "x" in duration "3x"'),
        ("tls { cert_file: /nope }", "c.conf:1:12: missing 'key_file' in TLS configuration"),
        ("authorization { users: [{user: a}] }", 'c.conf:1:28: unknown field "users"'),
        ('no_tls: "yes"', "c.conf:1:12: interface conversion: interface {} is string, not bool"),
    ],
)
def test_websocket_errors(conf, body, msg):
    assert conf.errors(f"websocket {{ {body} }}") == [msg]
    assert conf.errors("websocket: 5") == ["c.conf:1:0: Expected websocket to be a map, got int64"]


# -- unsupported nats-server options ------------------------------------------------------


@pytest.mark.parametrize(
    "text, key",
    [
        ("cluster { port: -1 }", "cluster"),
        ("gateway { name: a, port: -1 }", "gateway"),
        ("leafnodes { port: -1 }", "leafnodes"),
        ("leaf { port: -1 }", "leaf"),
        ("accounts { A { users: [{user: x}] } }", "accounts"),
        ('lame_duck_duration: "40s"', "lame_duck_duration"),
        ("system_account: SYS", "system_account"),
        ("write_timeout: close", "write_timeout"),
        ("Trace_Verbose: true", "Trace_Verbose"),
    ],
)
def test_unsupported_options_warn_and_are_ignored(conf, text, key):
    opts, warnings = conf.load(text)
    assert warnings == [f'c.conf:1:0: field "{key}" is not supported by hybridbus and is ignored']
    assert opts.port == Options().port
    rc, lines = conf.check(text)
    assert rc == 1 and lines == ["hybridbus: " + warnings[0]]


def test_unsupported_list_is_explicit_and_disjoint_from_supported(conf):
    assert "cluster" in UNSUPPORTED_TOP_LEVEL and "lame_duck_duration" in UNSUPPORTED_TOP_LEVEL
    for supported in ("port", "listen", "authorization", "mqtt", "websocket", "jetstream", "tls"):
        assert supported not in UNSUPPORTED_TOP_LEVEL


def test_user_entry_unsupported_fields(conf):
    assert conf.load("authorization { users: [{user: a, proxy_required: true}] }")[1] == [
        'c.conf:1:34: field "proxy_required" is not supported by hybridbus and is ignored'
    ]
    # An nkey-only user cannot log in here: it has no user name.
    assert conf.errors("authorization { users: [{nkey: UABC}] }") == [
        "c.conf:1:25: User entry requires a user"
    ]


# -- raw map and digest ----------------------------------------------------------------------


def test_raw_map_and_digest(conf):
    opts, _ = conf.load("port: 4222")
    assert opts.raw == {"port": 4222}
    assert (
        opts.config_digest
        == "sha256:797533ebd0dfba7d34a0f9337ecf147e442871f48ddfd07ed751575a5737267e"
    )
    assert opts.config_file == "c.conf"


def test_a_plain_nats_server_config_loads_unchanged(conf):
    text = f"""
# a typical nats-server.conf using only options hybridbus supports
server_name: nats-edge-1
listen: 0.0.0.0:4222
http_port: 8222
max_payload: 8MB
max_pending: 64MB
max_connections: 1000
ping_interval: "1m"
write_deadline: "5s"
debug: false
trace: false
logtime: true
server_tags: ["az:eu-1"]

authorization {{
  timeout: 2
  users = [
    {{user: admin, password: "$2a$11$W2zko751KUvVy59mUTWmpOdWjpEm5qhcCZRd05GjI/sSOT.xtiHyG"}}
    {{user: device, password: devpass, permissions: {{publish: "devices.>", subscribe: "cmd.>"}}}}
  ]
}}

tls {{
  cert_file: "{CERT}"
  key_file: "{KEY}"
  timeout: 2
}}

jetstream {{
  store_dir: /var/lib/nats
  max_mem: 1G
  max_file: 10G
}}

mqtt {{
  port: 1883
  ack_wait: "1m"
  max_ack_pending: 100
}}

websocket {{
  port: 8443
  tls {{ cert_file: "{CERT}", key_file: "{KEY}" }}
  compression: true
}}
"""
    opts, warnings = conf.load(text)
    assert warnings == []
    assert startup_errors(opts) == []
    assert opts.server_name == "nats-edge-1"
    assert (opts.max_payload, opts.ping_interval, opts.auth.timeout) == (8 << 20, 60.0, 2.0)
    assert [u.user for u in opts.auth.users] == ["admin", "device"]
    assert opts.jetstream.store_dir == "/var/lib/nats"
    assert (opts.mqtt.ack_wait, opts.websocket.port, opts.websocket.compression) == (
        60.0,
        8443,
        True,
    )
