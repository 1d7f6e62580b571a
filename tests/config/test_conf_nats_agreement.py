"""Our `-t` verdict against the real `nats-server -t` (v2.15.1 from the venv) on a
handful of files that use only options both servers implement.

Each case runs `nats-server -t -c FILE` in a temporary directory with a 20 s cap;
no server is started and no port is opened."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from hybridbus.config.load import check_config

from .conftest import DATA

NATS = Path(sys.executable).parent / "nats-server"
if not NATS.exists():
    NATS = Path(shutil.which("nats-server") or "/nonexistent")

pytestmark = pytest.mark.skipif(not NATS.exists(), reason="nats-server binary not installed")

NKEY = "UB7MWKE6ZBVDWTLTM4YYOMG5DG45T4OFX2M4YURTZKXSTZ46KUOM4NDW"

CASES = {
    "plain": 'port: 4222\nhttp_port: 8222\nmax_payload: 1MB\nping_interval: "2m"\n',
    "json": '{"port": 4222, "debug": true, "jetstream": {"store_dir": "/tmp/js"}}',
    "suffix_trap": "ping_interval: 2m\n",  # warning: fatal under -t
    "unknown": "foo_bar: 1\n",
    "unused_var": "V: x\nV2: y\npid_file: $V\n",
    "vars": "SIZE = 4MB\nmax_payload: $SIZE\nm { x = 3 }\nserver_metadata { owner: $SIZE_NAME }\n",
    "parse_error": 'server_name: "a\\qb"\n',
    "bracket_quirk": "server_tags: [1]\n",
    "auth": 'authorization {\n users: [{user: a, password: b, permissions: {publish: {allow: "a.>"}}}]\n}\n',
    "dup_user": "authorization { users: [{user: a}, {user: a}] }\n",
    "nkey_users": "authorization {\n users: [\n  {nkey: NKEY, permissions: {publish: a}}\n"
    "  {user: b, password: c}\n ]\n}\nno_auth_user: NKEY\n",
    "nkey_bad": "authorization { users: [{nkey: UABC}] }\n",
    "nkey_checksum": "authorization { users: [{nkey: BADNKEY}] }\n",
    "nkey_dup": "authorization { users: [{nkey: NKEY}, {user: NKEY, password: x}] }\n",
    "tls": 'tls { cert_file: "CERT", key_file: "KEY", timeout: "2s" }\n',
    "tls_missing": 'tls { cert_file: "/nope.pem", key_file: "KEY" }\n',
    "mqtt_ws": 'mqtt { port: 1883, ack_wait: "30s", max_ack_pending: 100 }\nwebsocket { port: 8080, no_tls: true }\n',
    "mqtt_range": "mqtt { max_ack_pending: 70000 }\n",
    "js_sizes": 'jetstream { max_file_store: "1G", max_mem: 1G, sync: always }\n',
    "js_bad_size": 'jetstream { max_file_store: "1GB" }\n',
    "include": "include inc.conf\nport: 4333\n",
    "empty": "# nothing\n",
}


def _prepare(root: Path, name: str, text: str) -> Path:
    d = root / name
    d.mkdir()
    # a user public nkey, and the same with its checksum broken (before KEY below)
    text = text.replace("BADNKEY", NKEY[:-1] + ("A" if NKEY[-1] != "A" else "B"))
    text = text.replace("NKEY", NKEY)
    text = text.replace("CERT", str(DATA / "cert.pem")).replace("KEY", str(DATA / "key.pem"))
    (d / "c.conf").write_text(text)
    (d / "inc.conf").write_text("server_name: from-include\n")
    return d


def _nats_verdict(d: Path) -> tuple[int, str]:
    env = dict(os.environ, SIZE_NAME="team-a")
    proc = subprocess.run(
        [str(NATS), "-t", "-c", "c.conf"], cwd=d, capture_output=True, timeout=20, env=env
    )
    return proc.returncode, (proc.stdout + proc.stderr).decode("utf-8", "replace")


def test_check_config_agrees_with_nats_server(tmp_path, monkeypatch):
    dirs = {name: _prepare(tmp_path, name, text) for name, text in CASES.items()}
    with ThreadPoolExecutor(4) as pool:
        nats = dict(zip(dirs, pool.map(_nats_verdict, dirs.values()), strict=True))
    monkeypatch.setenv("SIZE_NAME", "team-a")
    disagreements = []
    for name, d in dirs.items():
        monkeypatch.chdir(d)
        rc, lines = check_config("c.conf")
        nats_rc, nats_out = nats[name]
        if rc != nats_rc:
            disagreements.append(f"{name}: ours {rc} {lines} / nats {nats_rc} {nats_out!r}")
            continue
        if rc == 0:
            # Same parsed map, same digest.
            digest = re.search(r"\(sha256:[0-9a-f]+\)", nats_out).group(0)
            assert lines[0].endswith(digest), name
        else:
            # Same first complaint (nats prints its lines in map order; compare the set).
            theirs = {ln.removeprefix("nats-server: ") for ln in nats_out.strip().splitlines()}
            ours = {ln.removeprefix("hybridbus: ") for ln in lines}
            assert ours == theirs, name
    assert not disagreements, "\n".join(disagreements)
