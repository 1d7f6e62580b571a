"""Config files to Options: top-level names, aliases, types, defaults, durations,
unsupported options and the raw map (each block has its own test module)."""

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
        'c.conf:1:0: ping_interval: expected a duration ("30s", "2m"), got number 1.5'
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
        "c.conf:1:18: a: expected a string, got an array"
    ]


# -- unsupported nats-server options ------------------------------------------------------


@pytest.mark.parametrize(
    "text, key",
    [
        ("cluster { port: -1 }", "cluster"),
        ("gateway { name: a, port: -1 }", "gateway"),
        ("logtime_utc: true", "logtime_utc"),
        ("max_sub_tokens: 5", "max_sub_tokens"),
        ("write_timeout: close", "write_timeout"),
        ("Trace_Headers: true", "Trace_Headers"),
    ],
)
def test_unsupported_options_warn_and_are_ignored(conf, text, key):
    opts, warnings = conf.load(text)
    assert warnings == [f'c.conf:1:0: field "{key}" is not supported by hybridbus and is ignored']
    assert opts.port == Options().port
    rc, lines = conf.check(text)
    assert rc == 1 and lines == ["hybridbus: " + warnings[0]]


def test_unsupported_list_is_explicit_and_disjoint_from_supported(conf):
    assert "cluster" in UNSUPPORTED_TOP_LEVEL and "write_timeout" in UNSUPPORTED_TOP_LEVEL
    for supported in ("port", "listen", "authorization", "mqtt", "websocket", "jetstream", "tls"):
        assert supported not in UNSUPPORTED_TOP_LEVEL


def test_user_entry_refused_fields(conf):
    # Authentication settings are never ignored (tests/security/test_fail_closed.py).
    assert conf.errors("authorization { users: [{user: a, proxy_required: true}] }") == [
        'c.conf:1:34: field "proxy_required" is not supported by hybridbus '
        "(an authentication setting: refusing to start rather than ignore it)"
    ]
    # nkey users are supported (tests/security/test_nkeys.py); a bad key is refused
    assert conf.errors("authorization { users: [{nkey: UABC}] }") == [
        "c.conf:1:25: Not a valid public nkey for a user"
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
