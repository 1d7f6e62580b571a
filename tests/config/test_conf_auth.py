"""Config files to Options: the ``authorization`` block, users and permissions."""

from __future__ import annotations

import pytest

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
        "c.conf:1:0: authorization: expected a map ({ ... }), got integer 5"
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
        'c.conf:1:0: port: expected an integer, got string "x"'
    ]
