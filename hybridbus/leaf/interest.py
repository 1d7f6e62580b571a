"""An account's interest as its hubs see it: ``LS+``/``LS-`` from ``Sublist`` changes.

Every subscription in the bound account that is not the hub's own (NATS clients, MQTT
sessions, internal clients) counts. A plain subject is announced when its first
subscription arrives and withdrawn with its last; a queue group is announced with its
member count as the weight, again on every change of the count (nats-server sends
``LS+ <subject> <queue> <weight>`` the same way, ``updateLeafNodesEx``). A subject a
link may not import (its ``deny_imports``, the JetStream API when JetStream is local)
is never announced on that link.

The hub's interest itself is not passed on to other hubs: hybridbus is a spoke, not a
bridge between clusters.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hybridbus.leaf.connection import LeafConnection


class LeafInterest:
    __slots__ = ("sublist", "counts", "links", "loop_subject")

    def __init__(self, sublist: Any) -> None:
        self.sublist = sublist
        self.loop_subject = "$LDS." + secrets.token_hex(11)
        self.counts: dict[tuple, int] = {}
        self.links: list[LeafConnection] = []
        for sub in sublist.subscriptions():
            self.changed(sub, 1)
        sublist.watchers.append(self.changed)

    def close(self) -> None:
        if self.changed in self.sublist.watchers:
            self.sublist.watchers.remove(self.changed)

    def changed(self, sub: Any, delta: int) -> None:
        if getattr(sub.client, "is_leaf", False):
            return
        key = (sub.subject, sub.queue)
        counts = self.counts
        n = counts.get(key, 0) + delta
        if n > 0:
            counts[key] = n
        else:
            counts.pop(key, None)
            n = 0
        if not self.links:
            return
        if sub.queue is None and not (n == 1 and delta > 0) and n != 0:
            return  # a plain subject's 2nd, 3rd, ... subscriber changes nothing upstream
        for link in self.links:
            if not link.remote.blocks(sub.subject):
                link.announce(sub.subject, sub.queue, n)

    def snapshot(self, link: LeafConnection) -> None:
        """Everything the account wants, for a link that just connected."""
        blocks = link.remote.blocks
        for (subject, queue), n in self.counts.items():
            if not blocks(subject):
                link.announce(subject, queue, n)
