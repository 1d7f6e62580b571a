"""Every rejection in nats-conventions.md 3.5, with its exact position and message
(as nats-server 2.15.1 prints them under `-t`)."""

from __future__ import annotations

import pytest

from hybridbus.config.load import startup_errors

ESCAPE_MSG = (
    "Parse error on line 1: 'Invalid escape character 'q'. Only the following escape "
    "characters are allowed: \\xXX, \\t, \\n, \\r, \\\", \\\\.'"
)


@pytest.mark.parametrize(
    "text, lines",
    [
        ("foo_bar: 1", ['c.conf:1:0: unknown field "foo_bar"']),
        (
            'jetstream { store_dir: "/data/x", bogus: 1 }',
            ['c.conf:1:34: unknown field "bogus"'],
        ),
        ("mqtt { bogus: 1 }", ['c.conf:1:7: unknown field "bogus"']),
        ("websocket { bogus: 1 }", ['c.conf:1:12: unknown field "bogus"']),
        ("authorization { foo: 1 }", ['c.conf:1:16: unknown field "foo"']),
        ("authorization { users: [{user: a, foo: 1}] }", ['c.conf:1:34: unknown field "foo"']),
        ('port: "abc"', ['c.conf:1:0: port: expected an integer, got string "abc"']),
        (
            'websocket { no_tls: "yes" }',
            ['c.conf:1:12: no_tls: expected a boolean (true/false), got string "yes"'],
        ),
        (
            'ping_interval: "30x"',
            ['c.conf:1:0: error parsing ping_interval: time: unknown unit "x" in duration "30x"'],
        ),
        ("authorization { user: a\n", ["Parse error on line 2: 'Unexpected EOF processing map.'"]),
        ('server_name: "a\\qb"', [ESCAPE_MSG]),
        ("port: $NOPE", ["variable reference for 'NOPE' on line 1 can not be found"]),
        ("", ["c.conf: config has no values or is empty"]),
        ('server_name: "a b"', ["c.conf:1:0: server name cannot contain spaces"]),
        (
            "authorization { user: a, password: b, token: c }",
            ["c.conf:1:0: Cannot have a user/pass and token"],
        ),
        (
            "authorization { token: c, users: [{user: a}] }",
            ["c.conf:1:0: Can not have a token and a users array"],
        ),
        (
            "authorization { user: a, users: [{user: b}] }",
            ["c.conf:1:0: Can not have a single user/pass and a users array"],
        ),
        (
            "authorization { users: [ {user: a, password: b}, {user: a, password: c} ] }",
            ['c.conf:1:0: Duplicate user "a" detected'],
        ),
        ("authorization { users: [ {password: b} ] }", ["c.conf:1:26: User entry requires a user"]),
        ("authorization { users: [ {} ] }", ["c.conf:1:27: User entry requires a user"]),
        (
            "authorization { users: [{user: a, permissions: {publish: {allowx: a}}}] }",
            [
                'c.conf:1:58: Unknown field name "allowx" parsing subject permissions, '
                "only 'allow' or 'deny' are permitted"
            ],
        ),
        (
            "authorization { users: [{user: a, permissions: {publishx: a}}] }",
            ['c.conf:1:48: Unknown field "publishx" parsing permissions'],
        ),
        (
            'authorization { users: [{user: a, permissions: {publish: "foo..bar"}}] }',
            ['c.conf:1:48: subject "foo..bar" is not a valid subject'],
        ),
        (
            'authorization {\n users: [{user: a, allowed_connection_types: ["bogus"]}] }',
            ['c.conf:2:20: invalid connection types ["BOGUS"]'],
        ),
        (
            'authorization {\n users: [{user: a, allowed_connection_types: ["bogus", "mqtt", "x"]}] }',
            ['c.conf:2:20: invalid connection types ["BOGUS" "X"]'],
        ),
        ("max_payload: 3GB", ["c.conf:1:0: max_payload value is too big"]),
        ('listen: "nocolon"', ['c.conf:1:0: could not parse address string "nocolon"']),
        (
            'max_payload: "1MB"',
            ['c.conf:1:0: max_payload: expected an integer, got string "1MB"'],
        ),
    ],
)
def test_rejections(conf, text, lines):
    assert conf.errors(text) == lines


def test_missing_include(conf):
    assert conf.errors("include ./missing.conf") == [
        "error parsing include file './missing.conf', open missing.conf: no such file or directory"
    ]


@pytest.mark.parametrize(
    "text, warning",
    [
        (
            "ping_interval: 30",
            'c.conf:1:0: invalid use of field "ping_interval": ping_interval should be converted to a duration',
        ),
        (
            "ping_interval: 2m",
            'c.conf:1:0: invalid use of field "ping_interval": ping_interval should be converted to a duration',
        ),
        (
            "authorization { timeout: 120 }",
            'c.conf:1:16: invalid use of field "timeout": timeout of 120 (120.000000 seconds) is high, '
            "consider keeping it under 60 seconds. possibly caused by unquoted duration; use '1m' "
            "instead of 1m, for example",
        ),
    ],
)
def test_warnings(conf, text, warning):
    assert conf.warnings(text) == [warning]


def test_unquoted_2m_duration_means_two_million_seconds(conf):
    opts, warnings = conf.load("ping_interval: 2m")
    assert opts.ping_interval == 2_000_000.0
    assert len(warnings) == 1


def test_defined_but_unused_variable_is_an_unknown_field(conf):
    assert conf.errors("V: x\nV2: y\npid_file: $V") == ['c.conf:2:1: unknown field "V2"']
    assert conf.errors('jetstream { V: "/tmp/x", W: 1, store_dir: $V }') == [
        'c.conf:1:25: unknown field "W"'
    ]
    # Redefining a used variable leaves an unused one behind.
    assert conf.errors("V: x\npid_file: $V\nV: y") == ['c.conf:3:1: unknown field "V"']


def test_several_problems_are_reported_together(conf):
    assert conf.errors("foo: 1\nbar: 2\nport: x") == [
        'c.conf:1:0: unknown field "foo"',
        'c.conf:2:1: unknown field "bar"',
        'c.conf:3:1: port: expected an integer, got string "x"',
    ]


def test_check_config_prints_warnings_then_errors(conf):
    rc, lines = conf.check("ping_interval: 30\nfoo: 1\nwrite_deadline: 5")
    assert rc == 1
    assert lines == [
        'hybridbus: c.conf:1:0: invalid use of field "ping_interval": ping_interval should be converted to a duration',
        'hybridbus: c.conf:3:1: invalid use of field "write_deadline": write_deadline should be converted to a duration',
        'hybridbus: c.conf:2:1: unknown field "foo"',
    ]


def test_check_config_treats_warnings_as_fatal(conf):
    rc, lines = conf.check("ping_interval: 30")
    assert rc == 1
    assert lines == [
        'hybridbus: c.conf:1:0: invalid use of field "ping_interval": ping_interval should be converted to a duration'
    ]


def test_check_config_valid_prints_the_digest(conf):
    rc, lines = conf.check("port: 4222")
    assert rc == 0
    assert lines == [
        "hybridbus: configuration file c.conf is valid "
        "(sha256:797533ebd0dfba7d34a0f9337ecf147e442871f48ddfd07ed751575a5737267e)"
    ]


def test_check_config_does_not_run_startup_checks(conf):
    text = "websocket { port: 8080 }\nmax_payload: 100mb\nmax_pending: 10mb"
    assert conf.check(text)[0] == 0
    opts, _ = conf.load(text)
    assert startup_errors(opts) == [
        "max_payload (104857600) cannot be higher than max_pending (10485760)",
        "websocket requires TLS configuration",
    ]


@pytest.mark.parametrize(
    "text, problems",
    [
        ("no_auth_user: u", ['no_auth_user: "u" present, but users/nkeys are not defined']),
        (
            "no_auth_user: u\nauthorization { users: [{user: a}] }",
            [
                'no_auth_user: "u" not present as user or nkey in authorization block or account configuration'
            ],
        ),
        ("no_auth_user: a\nauthorization { users: [{user: a}] }", []),
        (
            "mqtt { no_auth_user: u }",
            ['no_auth_user: "u" present, but users/nkeys are not defined'],
        ),
        (
            "authorization { users: [{user: a}] }\nwebsocket { port: 1, no_tls: true, no_auth_user: u }",
            [
                'no_auth_user: "u" not present as user or nkey in authorization block or account configuration'
            ],
        ),
        (
            "no_auth_user: u\nauthorization { user: u, password: p }",
            ['no_auth_user: "u" present, but users/nkeys are not defined'],
        ),
        (
            "authorization { users: [{user: a}] }\nmqtt { authorization { user: u, password: p } }",
            ["mqtt authentication username not compatible with presence of users/nkeys"],
        ),
        (
            "authorization { users: [{user: a}] }\nwebsocket { no_tls: true, authorization { token: t } }",
            ["websocket authentication token not compatible with presence of users/nkeys"],
        ),
        ("websocket { port: 8080 }", ["websocket requires TLS configuration"]),
        ("websocket { port: 8080, no_tls: true }", []),
        ("websocket { no_tls: false }", []),  # no port: no listener, nothing to secure
        ('mqtt { ack_wait: "-5s" }', ["ack wait must be a positive value"]),
        ("max_payload: 1mb\nmax_pending: 1mb", []),
    ],
)
def test_startup_errors(conf, text, problems):
    opts, _ = conf.load(text)
    assert startup_errors(opts) == problems


def test_mqtt_does_not_need_jetstream(conf):
    # nats-server: "mqtt requires JetStream to be enabled if running in standalone mode".
    # hybridbus always runs its store, so there is no such check.
    opts, warnings = conf.load("mqtt { port: 1883 }\njetstream: false")
    assert warnings == []
    assert startup_errors(opts) == []
