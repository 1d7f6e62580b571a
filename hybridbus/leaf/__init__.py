"""The leaf-node link: hybridbus as a spoke of a NATS cluster (docs/clustering.md).

``remote.py`` dials a hub and keeps the link; ``connection.py`` is the link as a
router client; ``interest.py`` announces an account's interest to its hubs. The wire
format is ``hybridbus/codec/leaf.py``.
"""
