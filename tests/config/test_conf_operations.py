"""The operations options: lame duck mode (nats-server's names, defaults and
messages), tracing, `mqtt { server_reference }`, listener ports 0..65535, and which
listener hosts the file places itself (what `-a` may move)."""

from __future__ import annotations

import pytest

from hybridbus.config.load import startup_errors
from hybridbus.options import Options


def test_lame_duck_defaults_are_nats_servers():
    opts = Options()
    assert (opts.lame_duck_duration, opts.lame_duck_grace_period) == (120.0, 10.0)
    assert opts.mqtt.server_reference is None


def test_lame_duck_options_load(conf):
    opts, warnings = conf.load('lame_duck_duration: "45s"\nlame_duck_grace_period: "1.5s"\n')
    assert warnings == []
    assert (opts.lame_duck_duration, opts.lame_duck_grace_period) == (45.0, 1.5)
    assert startup_errors(opts) == []


@pytest.mark.parametrize(
    "text, line",
    [
        (
            'lame_duck_duration: "5s"',
            "c.conf:1:0: invalid lame_duck_duration of 5s, minimum is 30 seconds",
        ),
        (
            'lame_duck_duration: "abc"',
            'c.conf:1:0: error parsing lame_duck_duration: time: invalid duration "abc"',
        ),
        (
            'lame_duck_grace_period: "-5s"',
            "c.conf:1:0: invalid lame_duck_grace_period, needs to be positive",
        ),
        (
            "lame_duck_grace_period: 10",
            "c.conf:1:0: lame_duck_grace_period: expected a string, got integer 10",
        ),
    ],
)
def test_lame_duck_option_errors_are_nats_servers(conf, text, line):
    assert conf.errors(text) == [line]


def test_grace_period_not_below_duration_fails_at_start_only(conf):
    opts, _ = conf.load('lame_duck_duration: "30s"\nlame_duck_grace_period: "1m"\n')
    assert conf.check('lame_duck_duration: "30s"\nlame_duck_grace_period: "1m"\n')[0] == 0
    assert startup_errors(opts) == [
        "lame duck grace period (1m0s) should be strictly lower than lame duck duration (30s)"
    ]


def test_trace_verbose_turns_trace_on_and_traced_length(conf):
    opts, warnings = conf.load("trace_verbose: true\nmax_traced_msg_len: 64\n")
    assert warnings == []
    assert (opts.trace, opts.trace_verbose, opts.max_traced_msg_len) == (True, True, 64)
    opts, _ = conf.load("trace: true\n")
    assert (opts.trace, opts.trace_verbose) == (True, False)


def test_mqtt_server_reference(conf):
    opts, _ = conf.load('mqtt { server_reference: "mqtt://b.example:1883" }\n')
    assert opts.mqtt.server_reference == "mqtt://b.example:1883"
    assert conf.errors("mqtt { server_reference: 5 }") == [
        "c.conf:1:7: server_reference: expected a string, got integer 5"
    ]


@pytest.mark.parametrize(
    "text", ["port: -1", "port: 0", "port: 65535", 'listen: "127.0.0.1:65535"', "http: 8222"]
)
def test_ports_in_range_load(conf, text):
    conf.load(text)


def test_startup_errors_check_ports_given_by_flags():
    opts = Options(port=70000)
    opts.mqtt.port = -7
    assert startup_errors(opts) == [
        "port: port 70000 is outside 0..65535",
        "mqtt.port: port -7 is outside 0..65535",
    ]


def test_hosts_the_file_places(conf):
    opts, _ = conf.load(
        "mqtt { port: 1884 }\nhttp_port: 8223\nwebsocket { port: 8080, no_tls: true }\n"
    )
    assert opts.hosts_from_config == set()  # ports only: `-a` may move them
    opts, _ = conf.load('http: "127.0.0.1:8222"\nmqtt { host: "0.0.0.0" }\n')
    assert opts.hosts_from_config == {"http_host", "mqtt.host"}
    opts, _ = conf.load('websocket { listen: "10.0.0.1:8080", no_tls: true }\n')
    assert opts.hosts_from_config == {"websocket.host"}
