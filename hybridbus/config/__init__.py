"""NATS-format configuration: the file syntax (``lexer``, on ``scanner`` and
``scalars``; then ``parser``) and the mapping onto hybridbus ``Options``
(``load``, with one ``opts_*`` module per block on ``readers`` and ``gotext``).

``parse``/``parse_file`` give plain dicts; ``parse_nodes``/``parse_file_nodes``
keep each value's file, line and column.  ``load_options`` builds ``Options``,
``startup_errors`` runs the checks nats-server makes only at startup, and
``check_config`` is ``nats-server -t``."""

# The names below are imported on first use (PEP 562): `hybridbus serve` without a
# config file needs only `config.startup`, not the config language.
_EXPORTS = {
    "check_config": "load",
    "load_options": "load",
    "startup_errors": "startup",
    "ConfigError": "parser",
    "Node": "parser",
    "canonical_json": "parser",
    "config_digest": "parser",
    "parse": "parser",
    "parse_file": "parser",
    "parse_file_nodes": "parser",
    "parse_nodes": "parser",
    "to_plain": "parser",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
