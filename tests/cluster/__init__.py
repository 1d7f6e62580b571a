"""Tests against a real NATS cluster (3 nats-server processes) with hybridbus nodes
linked to it as leaf-node spokes. The fixtures are in conftest.py (read its
docstring first)."""
