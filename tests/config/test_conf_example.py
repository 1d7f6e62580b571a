"""conf/server.conf: the documented example must load cleanly, with and without
its optional (`#>`) parts."""

from __future__ import annotations

from pathlib import Path

from hybridbus.config.load import check_config, load_options, startup_errors

from .conftest import DATA

EXAMPLE = Path(__file__).resolve().parents[2] / "conf" / "server.conf"


def test_example_loads_without_errors_or_warnings():
    opts, warnings = load_options(str(EXAMPLE))
    assert warnings == []
    assert startup_errors(opts) == []
    assert opts.server_name == "hybridbus-1"
    assert opts.jetstream.store_dir == "./hybridbus-data"  # through the $DATA_DIR variable
    assert opts.mqtt.port == 1883
    assert opts.websocket.enabled and opts.websocket.host == "127.0.0.1"
    rc, lines = check_config(str(EXAMPLE))
    assert rc == 0 and lines[0].endswith(f"is valid ({opts.config_digest})")


def test_example_optional_parts_load_when_enabled(tmp_path):
    text = EXAMPLE.read_text()
    text = "\n".join(
        line.replace("#> ", "", 1).replace("#>", "", 1) if line.lstrip().startswith("#>") else line
        for line in text.splitlines()
    )
    text = text.replace("./certs/server-cert.pem", str(DATA / "cert.pem"))
    text = text.replace("./certs/server-key.pem", str(DATA / "key.pem"))
    text = text.replace("./certs/ca.pem", str(DATA / "cert.pem"))
    assert not any(line.lstrip().startswith("#>") for line in text.splitlines())
    path = tmp_path / "full.conf"
    path.write_text(text)
    opts, warnings = load_options(str(path))
    assert warnings == []
    assert startup_errors(opts) == []
    assert [u.user for u in opts.auth.users] == ["dev", "sensor"]
    assert opts.auth.users[1].permissions.subscribe_allow == ["commands.sensor.>", "jobs.* workers"]
    assert opts.tls.verify and opts.tls.min_version == "1.2"
    assert opts.mqtt.tls.cert_file == str(DATA / "cert.pem")
    assert opts.no_auth_user == opts.mqtt.no_auth_user == opts.websocket.no_auth_user == "dev"
