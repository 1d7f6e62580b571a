"""NATS-format configuration: the file syntax (``lexer``, ``parser``) and the
mapping onto hybridbus ``Options`` (``load``)."""

from .parser import (
    ConfigError,
    Node,
    canonical_json,
    config_digest,
    parse,
    parse_file,
    parse_file_nodes,
    parse_nodes,
    to_plain,
)

__all__ = [
    "ConfigError",
    "Node",
    "canonical_json",
    "config_digest",
    "parse",
    "parse_file",
    "parse_file_nodes",
    "parse_nodes",
    "to_plain",
]
