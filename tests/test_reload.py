"""Config reload on SIGHUP / `hybridbus reload`: permissions change for connected
clients, a bad config is refused and the running one stays."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import nats

from tests.helpers.wire import eventually

CONFIG = """
pid_file: "{pid_file}"
authorization {{
  users: [
    {{user: admin, password: adminpw}}
    {{user: alice, password: secret, permissions: {{publish: {{allow: {alice_pub}}}, subscribe: ">"}}}}
  ]
}}
"""


def write_config(path, pid_file, alice_pub='["public.>"]', extra=""):
    path.write_text(CONFIG.format(pid_file=pid_file, alice_pub=alice_pub) + extra)


def hybridbus_reload(pid_file) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "hybridbus", "reload", "--pid-file", str(pid_file)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


async def test_reload_changes_permissions_of_connected_clients(server_process, tmp_path):
    conf = tmp_path / "server.conf"
    pid_file = tmp_path / "hb.pid"
    write_config(conf, pid_file)
    proc = server_process(config=str(conf)).start()
    url = f"nats://127.0.0.1:{proc.ports['nats']}"
    errors = []

    async def on_error(err):
        errors.append(str(err))

    admin = await nats.connect(url, user="admin", password="adminpw")
    watch = await admin.subscribe("private.>")
    await admin.flush()
    alice = await nats.connect(url, user="alice", password="secret", error_cb=on_error)
    await alice.publish("private.x", b"before")
    await alice.flush()
    await eventually(lambda: any("permissions violation" in e.lower() for e in errors))
    assert watch.pending_msgs == 0

    write_config(conf, pid_file, alice_pub='["public.>", "private.>"]')
    hybridbus_reload(pid_file)
    await eventually(lambda: "Reloaded server configuration: " in proc.output(), timeout=5)
    assert "auth.users" in proc.output().split("Reloaded server configuration: ")[-1]
    await alice.publish("private.x", b"after")
    await alice.flush()
    assert (await watch.next_msg(2)).data == b"after"

    # a config that does not load is refused, and the running one stays
    conf.write_text("this is { not valid\n")
    hybridbus_reload(pid_file)
    await eventually(lambda: "Config reload failed" in proc.output(), timeout=5)
    await alice.publish("private.y", b"still allowed")
    assert (await watch.next_msg(2)).data == b"still allowed"

    # a user removed by reload is disconnected
    conf.write_text(
        f'pid_file: "{pid_file}"\nauthorization {{ users: [ {{user: admin, password: adminpw}} ] }}\n'
    )
    hybridbus_reload(pid_file)
    await eventually(
        lambda: alice.is_closed or alice.is_reconnecting or not alice.is_connected, timeout=5
    )
    await alice.close()
    await admin.close()
    assert proc.stop() == 0


async def test_reload_without_config_file_is_refused(server_process):
    proc = server_process().start()
    proc.proc.send_signal(__import__("signal").SIGHUP)
    await eventually(lambda: "started without a configuration file" in proc.output(), timeout=5)
    assert proc.proc.poll() is None
    assert proc.stop() == 0


def test_find_servers_ignores_other_processes():
    from hybridbus.cli import _find_servers

    assert all(isinstance(pid, int) for pid in _find_servers())


async def test_reload_keeps_listeners(server_process, tmp_path):
    conf = tmp_path / "server.conf"
    conf.write_text("max_payload: 2048\n")
    proc = server_process(config=str(conf)).start()
    conf.write_text('max_payload: 4096\nserver_name: "renamed"\n')
    proc.proc.send_signal(__import__("signal").SIGHUP)
    await eventually(
        lambda: "Reloaded server configuration: max_payload" in proc.output(), timeout=5
    )
    assert "server_name cannot change while running" in proc.output()
    nc = await nats.connect(f"nats://127.0.0.1:{proc.ports['nats']}")
    assert nc.max_payload == 4096
    await nc.close()
    await asyncio.sleep(0)
    assert proc.stop() == 0


def test_leaf_links_and_js_domain_need_a_restart():
    """A reload never re-dials hubs nor moves MQTT state: those are restart-only."""
    from hybridbus.options import LeafRemoteOptions, Options
    from hybridbus.server.reload import _keep_fixed, diff_options

    old, new = Options(), Options()
    new.leafnodes.remotes = [LeafRemoteOptions(urls=["nats-leaf://127.0.0.1:7422"])]
    new.mqtt.js_domain = "hub"
    new.mqtt.stream_replicas = 3
    changed, fixed = diff_options(old, new)
    assert changed == []
    assert fixed == ["leafnodes.remotes", "mqtt.js_domain", "mqtt.stream_replicas"]
    _keep_fixed(old, new)
    assert diff_options(old, new) == ([], [])
