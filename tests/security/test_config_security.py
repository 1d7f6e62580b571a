"""Security configured the way operators do it: a nats-server style config file,
parsed by hybridbus.config.load.load_options, then enforced by a live server."""

from __future__ import annotations

import bcrypt
import nats

from hybridbus.config.load import load_options, startup_errors
from hybridbus.server.server import Server
from tests.helpers import mqtt_packets as mp
from tests.helpers.wire import Wire, mqtt_packets, nats_connect

CONF = """
host: 127.0.0.1
port: -1
jetstream { store_dir: "%(store)s" }
mqtt { host: 127.0.0.1, port: -1 }
authorization {
  timeout: 1
  default_permissions { subscribe { deny: "private.>" } }
  users: [
    {
      user: alice
      password: %(hash)s
      permissions: {
        publish: { allow: ["alice.>"], deny: "alice.secret" }
        subscribe: ["alice.>", "jobs.* workers"]
        allow_responses: { max: 1, expires: "1m" }
      }
    }
    { user: bob, password: "bob-pw", allowed_connection_types: ["MQTT"] }
    { user: carol, password: "carol-pw" }
  ]
}
"""


async def started(tmp_path, text: str) -> Server:
    path = tmp_path / "server.conf"
    path.write_text(text)
    opts, warnings = load_options(str(path))
    assert not startup_errors(opts)
    server = Server(opts)
    await server.start()
    return server


async def test_config_file_users_permissions_and_types(tmp_path):
    # nats-server tooling writes $2a$ hashes, unquoted (nats-conventions §3.6)
    h = bcrypt.hashpw(b"alice-pw", bcrypt.gensalt(4)).decode()
    server = await started(tmp_path, CONF % {"store": tmp_path / "js", "hash": "$2a$" + h[4:]})
    try:
        alice = await nats_connect(
            server.nats_port, b'{"verbose":false,"user":"alice","pass":"alice-pw"}'
        )
        await alice.send(b"PUB alice.x 1\r\n1\r\nPUB alice.secret 1\r\n2\r\nPUB bob.x 1\r\n3\r\n")
        await alice.send(b"SUB jobs.a workers 1\r\nSUB jobs.a other 2\r\nPING\r\n")
        await alice.expect(
            b"-ERR 'Permissions Violation for Publish to \"alice.secret\"'\r\n"
            b"-ERR 'Permissions Violation for Publish to \"bob.x\"'\r\n"
            b'-ERR \'Permissions Violation for Subscription to "jobs.a" using queue "other"\''
            b"\r\nPONG\r\n"
        )
        # carol has no permissions of her own: default_permissions apply
        carol = await nats_connect(
            server.nats_port, b'{"verbose":false,"user":"carol","pass":"carol-pw"}'
        )
        await carol.send(b"SUB private.x 1\r\nSUB public.x 2\r\nPING\r\n")
        await carol.expect(
            b"-ERR 'Permissions Violation for Subscription to \"private.x\"'\r\nPONG\r\n"
        )
        # bob is MQTT-only
        nc_err = None
        try:
            await nats.connect(
                f"nats://127.0.0.1:{server.nats_port}",
                user="bob",
                password="bob-pw",
                allow_reconnect=False,
                max_reconnect_attempts=0,
            )
        except Exception as err:
            nc_err = err
        assert nc_err is not None and "authorization violation" in str(nc_err).lower()
        mq = await Wire.open(server.mqtt_port)
        await mq.send(mp.connect("bob", username="bob", password=b"bob-pw", level=5))
        (ack,) = await mqtt_packets(mq, 1)
        assert ack.reason_code == 0
        # alice over MQTT: the same rules on the mapped subjects
        am = await Wire.open(server.mqtt_port)
        await am.send(mp.connect("alice", username="alice", password=b"alice-pw"))
        await am.expect(mp.connack(0, 0))
        await am.send(mp.subscribe(1, ("alice/+/x", 0), ("bob/#", 0)))
        await am.expect(mp.suback(1, 0, 0x80))
    finally:
        await server.shutdown()


async def test_config_file_tls_verify_and_map(tmp_path, pki):
    conf = f"""
host: 127.0.0.1
port: -1
jetstream {{ store_dir: "{tmp_path / "js"}" }}
mqtt {{ host: 127.0.0.1, port: -1 }}
tls {{
  cert_file: "{pki.server_cert}"
  key_file: "{pki.server_key}"
  ca_file: "{pki.ca_file}"
  verify_and_map: true
  timeout: 2
}}
authorization {{
  users: [ {{ user: "alice@example.com", permissions: {{ publish: "ok.>" }} }} ]
}}
"""
    server = await started(tmp_path, conf)
    try:
        errors = []

        async def on_error(e):
            errors.append(str(e))

        nc = await nats.connect(
            f"tls://127.0.0.1:{server.nats_port}",
            tls=pki.client_context("alice"),
            error_cb=on_error,
        )
        await nc.publish("ok.1", b"x")
        await nc.publish("no.1", b"x")
        await nc.flush()
        (client,) = server.clients.values()
        assert client.user == "alice@example.com"
        assert errors and "permissions violation" in errors[0].lower()
        await nc.close()
    finally:
        await server.shutdown()
