"""The link's credentials and TLS against a real nats-server hub: every way nats-server
lets a leaf in (user and password, nkey, .creds in operator mode, TLS with a
client certificate), and the same hub refusing wrong ones while our clients are
served."""

from __future__ import annotations

import nats

from hybridbus.options import TLSOptions
from tests.helpers import jwts

from .conftest import eventually


async def _served(server) -> None:
    nc = await nats.connect(f"nats://127.0.0.1:{server.nats_port}", allow_reconnect=False)
    await nc.flush()
    await nc.close()


async def test_user_and_password_in_the_url(hub_factory, spoke):
    hub = hub_factory("authorization { user: leaf, password: s3cret }")
    url = hub.leaf_url.replace("://", "://leaf:s3cret@")
    server = await spoke([url])
    assert server.leafnodes
    # URLs the hub lists later carry the same credentials
    assert all("leaf:s3cret@" in u for u in server.leaf_remotes[0].urls)


async def test_wrong_password_is_refused_and_clients_still_served(hub_factory, spoke):
    hub = hub_factory("authorization { user: leaf, password: s3cret }")
    url = hub.leaf_url.replace("://", "://leaf:wrong@")
    server = await spoke([url], wait=False)
    await eventually(lambda: "Authorization" in server.leaf_remotes[0].last_error, timeout=10)
    assert not server.leafnodes
    await _served(server)


async def test_nkey_signs_the_nonce(hub_factory, spoke):
    user = jwts.user_key()
    public = user.public_key.decode()
    # leafnodes without an authorization block of their own: the hub checks the link
    # against its client users, where nkeys live
    hub = hub_factory(top=f"authorization {{ users = [ {{ nkey: {public} }} ] }}")
    server = await spoke(hub, nkey=user.seed.decode())
    assert server.leafnodes
    other = jwts.user_key()
    refused = await spoke(hub, wait=False, nkey=other.seed.decode())
    await eventually(lambda: refused.leaf_remotes[0].last_error, timeout=10)
    assert not refused.leafnodes


async def test_creds_file_in_operator_mode(hub_factory, spoke, tmp_path):
    op = jwts.operator_key()
    acc = jwts.account_key()
    user = jwts.user_key()
    op_jwt = jwts.operator_jwt(op)
    acc_jwt = jwts.account_jwt(
        acc, op, limits={"leaf": -1, "conn": -1, "subs": -1, "data": -1, "payload": -1}
    )
    acc_pub = jwts.pub(acc)
    sys_acc = jwts.account_key()  # nats-server's JetStream needs a system account
    sys_pub = jwts.pub(sys_acc)
    sys_jwt = jwts.account_jwt(sys_acc, op)
    creds = jwts.write_creds(tmp_path / "leaf.creds", jwts.user_jwt(user, acc), user)
    top = (
        f"operator: {op_jwt}\nresolver: MEMORY\nsystem_account: {sys_pub}\n"
        f"resolver_preload: {{ {acc_pub}: {acc_jwt}, {sys_pub}: {sys_jwt} }}\n"
    )
    hub = hub_factory(top=top)
    server = await spoke(hub, credentials=str(creds))
    assert server.leafnodes and not server.leaf_remotes[0].last_error
    # the hub bound the link to the user's account
    leafz = hub.monitor("/leafz")["leafs"]
    assert leafz and leafz[0]["account"] == acc_pub


async def test_tls_with_a_client_certificate(hub_factory, spoke, pki):
    cert, key = pki.clients["alice"]
    hub = hub_factory(
        f'tls {{ cert_file: "{pki.server_cert}", key_file: "{pki.server_key}", '
        f'ca_file: "{pki.ca_file}", verify: true }}'
    )
    tls = TLSOptions(ca_file=pki.ca_file, cert_file=cert, key_file=key)
    server = await spoke(hub, tls=tls)
    assert server.leafnodes[0].tls_version
    nc = await nats.connect(hub.client_url, allow_reconnect=False)
    got = []

    async def cb(msg):
        got.append(msg.data)

    await nc.subscribe("over.tls", cb=cb)
    await nc.flush()
    mine = await nats.connect(f"nats://127.0.0.1:{server.nats_port}", allow_reconnect=False)
    await eventually(lambda: any(k[0] == "over.tls" for k in server.leafnodes[0].subs))
    await mine.publish("over.tls", b"secret")
    await mine.flush()
    await eventually(lambda: got == [b"secret"])
    await nc.close()
    await mine.close()


async def test_tls_refused_when_the_hub_is_not_trusted(hub_factory, spoke, pki):
    hub = hub_factory(f'tls {{ cert_file: "{pki.server_cert}", key_file: "{pki.server_key}" }}')
    server = await spoke(hub, wait=False, tls=TLSOptions(ca_file=pki.other_ca_file))
    await eventually(
        lambda: (
            "TLS" in server.leaf_remotes[0].last_error
            or "certificate" in server.leaf_remotes[0].last_error
        ),
        timeout=10,
    )
    assert not server.leafnodes
    await _served(server)


async def test_hub_requires_tls_and_we_have_no_ca_for_it(hub_factory, spoke, pki):
    """The hub says tls_required; the system trust store does not know the test CA:
    no link, never a fallback to clear text."""
    hub = hub_factory(f'tls {{ cert_file: "{pki.server_cert}", key_file: "{pki.server_key}" }}')
    server = await spoke(hub, wait=False)
    await eventually(lambda: server.leaf_remotes[0].last_error, timeout=10)
    assert not server.leafnodes
