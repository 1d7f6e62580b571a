"""The server's leaf-node remotes (hybridbus/leaf/): started after the listeners,
stopped first at shutdown."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from hybridbus.leaf.interest import LeafInterest
from hybridbus.leaf.remote import LeafRemote
from hybridbus.mqtt.nodewatch import NodeWatch
from hybridbus.server.startup import StartError

if TYPE_CHECKING:
    from hybridbus.server.server import Server


def start_leafnodes(server: Server) -> None:
    interests: dict[str, LeafInterest] = {}
    for opts in server.options.leafnodes.remotes:
        account = server.accounts.get(opts.account)
        if account is None:
            raise StartError(f"leafnode remote: no account {opts.account!r}")
        interest = interests.get(account.name)
        if interest is None:
            interest = interests[account.name] = LeafInterest(account.sublist)
        remote = LeafRemote(server, opts, interest)
        server.leaf_remotes.append(remote)
        remote.start()
    server.leaf_interests = list(interests.values())
    broker = server.mqtt
    persistence = getattr(broker, "persistence", None)
    if broker is not None and getattr(persistence, "js", None) is not None:
        # MQTT state in the hub's JetStream: wills outlive this node (mqtt/nodewatch.py)
        broker.nodewatch = NodeWatch(broker, persistence)
        broker.nodewatch.start()


async def stop_leafnodes(server: Server) -> None:
    if server.mqtt is not None and server.mqtt.nodewatch is not None:
        server.mqtt.nodewatch.stop()
    for remote in server.leaf_remotes:
        await remote.stop()
    for interest in getattr(server, "leaf_interests", ()):
        interest.close()


async def leaf_ready(server: Server, timeout: float) -> bool:
    """True once every remote has a link (within `timeout` seconds)."""
    deadline = time.monotonic() + timeout
    for remote in server.leaf_remotes:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        try:
            await asyncio.wait_for(remote.ready.wait(), left)
        except TimeoutError:
            return False
    return True
