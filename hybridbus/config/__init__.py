"""NATS-format configuration: the file syntax (``lexer``, on ``scanner`` and
``scalars``; then ``parser``) and the mapping onto hybridbus ``Options``
(``load``, with one ``opts_*`` module per block on ``readers`` and ``gotext``).

``parse``/``parse_file`` give plain dicts; ``parse_nodes``/``parse_file_nodes``
keep each value's file, line and column.  ``load_options`` builds ``Options``,
``startup_errors`` runs the checks nats-server makes only at startup, and
``check_config`` is ``nats-server -t``."""

from .load import check_config, load_options, startup_errors
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
    "check_config",
    "config_digest",
    "load_options",
    "parse",
    "parse_file",
    "parse_file_nodes",
    "parse_nodes",
    "startup_errors",
    "to_plain",
]
