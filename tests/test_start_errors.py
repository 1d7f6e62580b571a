"""Errors that tell the user what to do, from a real `hybridbus` process: ports out
of range, a store directory in use, an address in use, config type errors, the
start-up log, and one name for `check`."""

from __future__ import annotations

import re
import socket
import subprocess
import sys

import pytest
from click.testing import CliRunner

from hybridbus.cli import main
from tests.conftest import free_port


def hybridbus(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "hybridbus", *args], capture_output=True, timeout=30, cwd=cwd
    )


def serve_args(tmp_path, **ports: int) -> list[str]:
    p = {"nats": free_port(), "mqtt": free_port(), "http": free_port(), **ports}
    return [
        "serve",
        "-a",
        "127.0.0.1",
        "-p",
        str(p["nats"]),
        "--mqtt-port",
        str(p["mqtt"]),
        "--http-port",
        str(p["http"]),
        "--store-dir",
        str(tmp_path / "store"),
    ]


# -- ports ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, line",
    [
        ('listen: "127.0.0.1:99999"', "c.conf:1:0: listen: port 99999 is outside 0..65535"),
        ("port: 70000", "c.conf:1:0: port: port 70000 is outside 0..65535"),
        ("http_port: -2", "c.conf:1:0: http_port: port -2 is outside 0..65535"),
        ("mqtt { port: 65536 }", "c.conf:1:7: port: port 65536 is outside 0..65535"),
        (
            'websocket { listen: "127.0.0.1:100000", no_tls: true }',
            "c.conf:1:12: listen: port 100000 is outside 0..65535",
        ),
    ],
)
def test_ports_out_of_range_are_refused_by_check_and_serve(tmp_path, text, line):
    (tmp_path / "c.conf").write_text(text + "\n")
    checked = hybridbus("check", "-c", "c.conf", cwd=tmp_path)
    assert checked.returncode == 1
    assert checked.stderr.decode().strip() == f"hybridbus: {line}"
    served = hybridbus(*serve_args(tmp_path), "-c", "c.conf", cwd=tmp_path)
    assert served.returncode == 1
    assert served.stderr.decode().strip() == f"hybridbus: {line}"


@pytest.mark.parametrize("flag", ["-p", "--mqtt-port", "--http-port", "-m"])
def test_port_flags_out_of_range_are_refused(tmp_path, flag):
    proc = hybridbus("serve", "--store-dir", str(tmp_path / "s"), flag, "99999")
    assert proc.returncode == 2
    err = proc.stderr.decode()
    assert "port 99999 is outside 0..65535" in err and flag in err, err
    assert "Listening" not in err and not (tmp_path / "s").exists()


def test_port_minus_one_means_any_free_port(tmp_path):
    # nats-server's RANDOM_PORT: accepted by check, as in nats-server configs
    (tmp_path / "c.conf").write_text("port: -1\nhttp_port: -1\nmqtt { port: -1 }\n")
    assert hybridbus("check", "-c", "c.conf", cwd=tmp_path).returncode == 0


# -- the store lock ---------------------------------------------------------------------------


def test_store_dir_in_use_is_one_line_before_any_listener(server_process, tmp_path):
    first = server_process().start()
    args = serve_args(tmp_path)  # same store directory, other ports
    second = hybridbus(*args)
    err = second.stderr.decode()
    assert second.returncode == 1, err
    assert "Traceback" not in err
    assert "Listening" not in err and "monitor" not in err  # no port was opened
    fatal = [line for line in err.splitlines() if "[FTL]" in line]
    assert len(fatal) == 1, err
    store = tmp_path / "store"
    assert fatal[0].endswith(
        f"[FTL] store directory {store} is in use by process {first.proc.pid}; "
        "stop it or use another store_dir (--store-dir)"
    ), fatal[0]
    # and those ports are still free: nothing listened on them even for a moment
    for port in (args[4], args[6], args[8]):
        with socket.socket() as s:
            s.bind(("127.0.0.1", int(port)))


# -- address in use ---------------------------------------------------------------------------


@pytest.mark.parametrize("listener", ["nats", "mqtt", "http", "websocket"])
def test_address_in_use_names_the_listener_and_address(tmp_path, listener):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    try:
        args = serve_args(tmp_path, **({listener: port} if listener != "websocket" else {}))
        if listener == "websocket":
            (tmp_path / "ws.conf").write_text(
                f'websocket {{ listen: "127.0.0.1:{port}", no_tls: true }}\n'
            )
            args += ["-c", str(tmp_path / "ws.conf")]
        proc = hybridbus(*args)
    finally:
        busy.close()
    err = proc.stderr.decode()
    assert proc.returncode == 1, err
    assert "Traceback" not in err
    assert re.search(
        rf"\[FTL\] {listener} listener: cannot listen on 127\.0\.0\.1:{port}: "
        r"address already in use$",
        err,
        re.M,
    ), err
    assert "Server is ready" not in err


# -- config type errors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, line",
    [
        ('debug: "yes"', 'c.conf:1:0: debug: expected a boolean (true/false), got string "yes"'),
        ("server_name: 42", "c.conf:1:0: server_name: expected a string, got integer 42"),
        (
            'max_connections: "lots"',
            'c.conf:1:0: max_connections: expected an integer, got string "lots"',
        ),
        (
            "mqtt { reject_qos2_publish: 1 }",
            "c.conf:1:7: reject_qos2_publish: expected a boolean (true/false), got integer 1",
        ),
        (
            "authorization: true",
            "c.conf:1:0: authorization: expected a map ({ ... }), got boolean true",
        ),
    ],
)
def test_config_type_errors_name_the_option_and_type(tmp_path, text, line):
    (tmp_path / "c.conf").write_text(text + "\n")
    proc = hybridbus(*serve_args(tmp_path), "-c", "c.conf", cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.decode().strip() == f"hybridbus: {line}"
    assert "interface conversion" not in proc.stderr.decode()


# -- the start-up log, `check` ----------------------------------------------------------------------


def test_startup_log_reports_store_recovery_in_one_readable_line(server_process):
    server = server_process("-D").start()
    assert server.stop() == 0
    log = server.output()
    assert re.search(
        r"\[INF\] Store recovered 0 streams, 0 consumers, 0 messages in \d+\.\d{3}s$", log, re.M
    ), log
    assert "{'" not in log and "'streams':" not in log


def test_help_lists_check_once_and_check_config_still_works(tmp_path):
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    assert re.search(r"^\s+check\s", result.output, re.M)
    assert "check-config" not in result.output
    assert re.search(r"^\s+ldm\s", result.output, re.M)
    conf = tmp_path / "ok.conf"
    conf.write_text("port: 4222\n")
    alias = CliRunner().invoke(main, ["check-config", "-c", str(conf)])
    assert alias.exit_code == 0 and "is valid" in alias.output
