"""The link and the security boundaries around it, against a real nats-server hub: a
remote binds ONE account (another account's traffic never crosses, either way), and
a user's publish permissions hold for what would cross the link."""

from __future__ import annotations

import asyncio

import nats

from tests.security.accounts_env import login, start

from .conftest import eventually

ACCOUNTS = """
authorization { users: [{user: g, password: g}] }
accounts {
  A: { users: [{user: a, password: a},
               {user: a2, password: a2, permissions: { publish: { deny: ["up.secret"] } }}] }
  B: { users: [{user: b, password: b}] }
}
"""


def collector(bucket: list):
    async def cb(msg):
        bucket.append((msg.subject, msg.data))

    return cb


async def test_a_link_carries_its_account_only_and_permissions_hold(hub_factory, tmp_path):
    hub = hub_factory()
    remote = (
        f'leafnodes {{ reconnect: "0.2s", remotes [ {{ urls: ["{hub.leaf_url}"], account: A }} ] }}'
    )
    server = await start(tmp_path, ACCOUNTS + remote)
    try:
        assert await server.leaf_ready(10)
        assert server.leafnodes[0].account.name == "A"
        up = await nats.connect(hub.client_url, allow_reconnect=False)
        a, a2, b = [await login(server, u) for u in ("a", "a2", "b")]
        on_hub: list = []
        in_a: list = []
        in_b: list = []
        await up.subscribe("up.>", cb=collector(on_hub))
        await a.subscribe("down.>", cb=collector(in_a))
        await b.subscribe("down.>", cb=collector(in_b))
        await b.subscribe("up.>", cb=collector(in_b))  # B's interest must not reach the hub
        for nc in (up, a, a2, b):
            await nc.flush()

        def hub_interest() -> set:
            leafs = hub.monitor("/leafz?subs=true")["leafs"]
            return set(leafs[0].get("subscriptions_list") or []) if leafs else set()

        await eventually(lambda: "down.>" in hub_interest())
        await eventually(lambda: any(k[0] == "up.>" for k in server.leafnodes[0].subs))
        assert "up.>" not in hub_interest()  # only A's interest was announced

        await b.publish("up.from-b", b"account B")  # another account: stays here
        await a2.publish("up.secret", b"denied")  # the user may not publish it
        await a2.publish("up.ok", b"a2")
        await a.publish("up.from-a", b"account A")
        await up.publish("down.x", b"from the hub")
        for nc in (up, a, a2, b):
            await nc.flush()
        await eventually(lambda: len(on_hub) >= 2 and in_a)
        await asyncio.sleep(0.3)  # and nothing else comes
        assert sorted(on_hub) == [("up.from-a", b"account A"), ("up.ok", b"a2")]
        assert in_a == [("down.x", b"from the hub")]
        assert in_b == [("up.from-b", b"account B")]  # its own publish; nothing from the hub
        for nc in (up, a, a2, b):
            await nc.close()
    finally:
        await server.shutdown()
