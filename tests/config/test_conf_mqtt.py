"""Config files to Options: the ``mqtt`` and ``websocket`` blocks."""

from __future__ import annotations

import pytest

from .conftest import DATA

CERT = str(DATA / "cert.pem")
KEY = str(DATA / "key.pem")


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


def test_mqtt_sys_interval(conf):
    assert conf.load("mqtt {}")[0].mqtt.sys_interval == 10.0  # the default
    for value, seconds in (('"30s"', 30.0), ('"500ms"', 0.5), ("60", 60.0), ("0", 0.0)):
        opts, warnings = conf.load(f"mqtt {{ sys_interval: {value} }}")
        assert (opts.mqtt.sys_interval, warnings) == (seconds, [])


@pytest.mark.parametrize(
    "body, msg",
    [
        ("sys_interval: -1", "c.conf:1:7: sys_interval must be 0 (off) or positive"),
        (
            'sys_interval: "soon"',
            'c.conf:1:7: error parsing sys_interval: time: invalid duration "soon"',
        ),
        ("max_ack_pending: 70000", "c.conf:1:7: invalid value 70000, should in [0..65535] range"),
        ("max_ack_pending: -1", "c.conf:1:7: invalid value -1, should in [0..65535] range"),
        (
            'max_ack_pending: "5"',
            'c.conf:1:7: max_ack_pending: expected an integer, got string "5"',
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
        ('port: "x"', 'c.conf:1:7: port: expected an integer, got string "x"'),
    ],
)
def test_mqtt_errors(conf, body, msg):
    assert conf.errors(f"mqtt {{ {body} }}") == [msg]
    assert conf.errors("mqtt: 5") == ["c.conf:1:0: Expected mqtt to be a map, got int64"]


def test_mqtt_cluster_options_load(conf):
    """nats-server's MQTT-in-a-JetStream-domain options (docs/clustering.md)."""
    opts, warnings = conf.load(
        'leafnodes { remotes [ { url: "nats-leaf://127.0.0.1:7422" } ] }\n'
        'mqtt { js_domain: hub, consumer_replicas: 3, stream_replicas: 3, js_api_timeout: "2s",'
        " consumer_memory_storage: true }"
    )
    assert warnings == []
    mq = opts.mqtt
    assert (mq.js_domain, mq.stream_replicas, mq.consumer_replicas) == ("hub", 3, 3)
    assert (mq.js_api_timeout, mq.consumer_memory_storage) == (2.0, True)


def test_mqtt_js_domain_needs_a_way_there(conf):
    errors = conf.errors("mqtt { js_domain: hub }")
    assert len(errors) == 1 and "no leafnode remote" in errors[0]


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
        ('no_tls: "yes"', 'c.conf:1:12: no_tls: expected a boolean (true/false), got string "yes"'),
    ],
)
def test_websocket_errors(conf, body, msg):
    assert conf.errors(f"websocket {{ {body} }}") == [msg]
    assert conf.errors("websocket: 5") == ["c.conf:1:0: Expected websocket to be a map, got int64"]
