"""Parser for the NATS configuration file format: text in, nested maps out.

Theory of operation
-------------------
``lexer.lex`` gives a flat list of items (keys, scalars, map and array
brackets, variables, includes).  The parser folds them into nested dicts and
lists with two stacks, the way nats-server's parser does, so that the odd
inputs end up the same: a stack of open containers (the innermost is where the
next value goes) and a stack of keys waiting for their value.  A value placed
into a map pops the newest waiting key; a value placed into an array pops no
key.  Inputs such as ``{ a: }`` leave a key waiting, and nats-server then
files the map under the wrong key; so do we.

Every value is wrapped in a ``Node`` that remembers the file, line and column
where it was written (for a value in a map: where its key was written), so the
option loader can report ``file:line:col: reason``.  ``to_plain`` strips the
nodes off for callers that only want the data.

Variables (``$NAME``) are looked up in the enclosing maps, innermost first,
then in the environment; an environment value is itself parsed as a config
value (``HB_SIZE=2MB`` gives the integer 2097152).  A variable must be defined
before it is used.  A definition that gets used is flagged (``Node.used``) so
the loader does not report it as an unknown option; one that is never used is
reported, as nats-server does.  ``include`` parses another file as a separate
document (it does not see our variables) and merges its keys in place.

This module knows nothing about the server: it imports only the stdlib.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import os
from typing import Any

from . import lexer as lx

__all__ = [
    "ConfigError",
    "Node",
    "parse",
    "parse_file",
    "parse_nodes",
    "parse_file_nodes",
    "to_plain",
    "canonical_json",
    "config_digest",
    "read_config_text",
]

# A quoted-or-not string starting with "$2a$" is a bcrypt hash, not a variable
# (Go's bcrypt writes that prefix).  Other variants must be quoted.
_BCRYPT_PREFIX = "2a$"
# Key under which an environment value is parsed (its text becomes "pk=<value>").
_ENV_KEY = "pk"
# Deeper include chains than this are refused (a file including itself would
# otherwise recurse without end).
MAX_INCLUDE_DEPTH = 32

_SIZE_MULT = {
    "": 1,
    "k": 1000,
    "kb": 1 << 10,
    "ki": 1 << 10,
    "kib": 1 << 10,
    "m": 1000**2,
    "mb": 1 << 20,
    "mi": 1 << 20,
    "mib": 1 << 20,
    "g": 1000**3,
    "gb": 1 << 30,
    "gi": 1 << 30,
    "gib": 1 << 30,
    "t": 1000**4,
    "tb": 1 << 40,
    "ti": 1 << 40,
    "tib": 1 << 40,
    "p": 1000**5,
    "pb": 1 << 50,
    "pi": 1 << 50,
    "pib": 1 << 50,
    "e": 1000**6,
    "eb": 1 << 60,
    "ei": 1 << 60,
    "eib": 1 << 60,
}
_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1


class ConfigError(Exception):
    """A configuration that cannot be used.

    ``lines`` holds one already formatted message per problem (usually
    ``file:line:col: reason``); ``warnings`` the warning lines that were found
    alongside (``nats-server -t`` prints them first).
    """

    def __init__(self, lines: list[str], warnings: list[str] | None = None) -> None:
        super().__init__("\n".join(lines))
        self.lines = list(lines)
        self.warnings = list(warnings or ())


class Node:
    """A parsed value plus where it was written.

    ``value`` is a str, bool, int, float, ``datetime`` (UTC), ``list[Node]`` or
    ``dict[str, Node]``.  ``used`` is set on a map entry that a ``$variable``
    referred to.
    """

    __slots__ = ("value", "file", "line", "col", "used")

    def __init__(self, value: Any, file: str, line: int, col: int) -> None:
        self.value = value
        self.file = file
        self.line = line
        self.col = col
        self.used = False

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"

    def __repr__(self) -> str:
        return f"Node({self.value!r} @ {self.where})"


def to_plain(value: Any) -> Any:
    """Strip Nodes: a Node, dict of Nodes or list of Nodes becomes plain data."""
    if isinstance(value, Node):
        value = value.value
    if isinstance(value, dict):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_plain(v) for v in value]
    return value


class _LookupError(Exception):
    """A variable whose value could not be produced (cycle, bad environment value)."""


def _wrap_int64(n: int) -> int:
    # nats-server multiplies size suffixes in int64 and lets them wrap.
    n &= (1 << 64) - 1
    return n - (1 << 64) if n > _INT64_MAX else n


def _go_dir(path: str) -> str:
    d = os.path.dirname(path)
    return _go_clean(d) if d else "."


def _go_clean(path: str) -> str:
    """Lexical path cleanup as Go's filepath.Clean does it (used for include paths)."""
    if not path:
        return "."
    rooted = path.startswith("/")
    out: list[str] = []
    for seg in path.split("/"):
        if seg in ("", "."):
            continue
        if seg == "..":
            if out and out[-1] != "..":
                out.pop()
            elif not rooted:
                out.append("..")
            continue
        out.append(seg)
    joined = "/".join(out)
    if rooted:
        return "/" + joined
    return joined or "."


def _go_join(base: str, name: str) -> str:
    # Go's filepath.Join: an absolute include path is still joined under the
    # including file's directory ("/etc/x" from "./a.conf" is "etc/x").
    if not name:
        return _go_clean(base)
    return _go_clean(base + "/" + name)


def _open_error(path: str, exc: OSError) -> str:
    """The Go-style text for a file that could not be read."""
    reason = (exc.strerror or str(exc)).lower()
    if isinstance(exc, IsADirectoryError):
        return f"read {path}: {reason}"
    return f"open {path}: {reason}"


def read_config_text(path: str) -> str:
    """Read a config file; raises ConfigError with a nats-server style message."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise ConfigError([_open_error(path, exc)]) from None
    return data.decode("utf-8", "replace")


class _Parser:
    __slots__ = ("file", "dir", "env_chain", "include_chain", "ctxs", "keys", "mapping")

    def __init__(
        self, file: str, env_chain: tuple[str, ...], include_chain: tuple[str, ...]
    ) -> None:
        self.file = file
        self.dir = _go_dir(file)
        self.env_chain = env_chain
        self.include_chain = include_chain
        self.mapping: dict[str, Node] = {}
        self.ctxs: list[dict | list] = [self.mapping]
        # (key text, line, col) of keys still waiting for their value.
        self.keys: list[tuple[str, int, int]] = []

    def run(self, text: str) -> dict[str, Node]:
        prev: lx.Item | None = None
        for item in lx.lex(text):
            kind = item.kind
            if kind == lx.EOF:
                # A key with no value at the very end is an error, except "}"
                # (the closing brace of a JSON-style file, lexed as a key).
                if prev is not None and prev.kind == lx.KEY and prev.val != "}":
                    raise ConfigError([f"config is invalid ({self.file}:{item.line}:{item.col})"])
                break
            prev = item
            self._item(item)
        return self.mapping

    def _item(self, item: lx.Item) -> None:
        kind = item.kind
        if kind == lx.KEY:
            self.keys.append((item.val, item.line, item.col))
        elif kind == lx.STRING:
            self._set(self._node(item.val, item))
        elif kind == lx.INTEGER:
            value = self._integer(item.val)
            if value is not None:
                self._set(self._node(value, item))
        elif kind == lx.MAP_START:
            self.ctxs.append({})
        elif kind == lx.MAP_END:
            self._set(self._node(self._pop_ctx(), item))
        elif kind == lx.ARRAY_START:
            self.ctxs.append([])
        elif kind == lx.ARRAY_END:
            self._set(self._node(self._pop_ctx(), item))
        elif kind == lx.BOOL:
            self._set(self._node(item.val.lower() in ("true", "yes", "on"), item))
        elif kind == lx.FLOAT:
            value = float(item.val)
            if math.isinf(value):
                raise ConfigError([f"float '{item.val}' is out of the range"])
            self._set(self._node(value, item))
        elif kind == lx.DATETIME:
            try:
                stamp = _dt.datetime.strptime(item.val, "%Y-%m-%dT%H:%M:%SZ")
            except ValueError:
                raise ConfigError(
                    [f"expected Zulu formatted DateTime, but got '{item.val}'"]
                ) from None
            self._set(self._node(stamp.replace(tzinfo=_dt.UTC), item))
        elif kind == lx.VARIABLE:
            self._variable(item)
        elif kind == lx.INCLUDE:
            self._include(item)
        elif kind == lx.ERROR:
            raise ConfigError([f"Parse error on line {item.line}: '{item.val}'"])

    def _node(self, value: Any, item: lx.Item) -> Node:
        return Node(value, self.file, item.line, item.col)

    def _pop_ctx(self) -> dict | list:
        if len(self.ctxs) < 2:
            raise ConfigError([f"{self.file}: unbalanced brackets"])
        return self.ctxs.pop()

    def _set(self, node: Node) -> None:
        ctx = self.ctxs[-1]
        if isinstance(ctx, list):
            ctx.append(node)
            return
        if not self.keys:
            raise ConfigError([f"{self.file}:{node.line}:{node.col}: value without a key"])
        key, line, col = self.keys.pop()
        # A value in a map is reported at its key: that is what people look for.
        node.line = line
        node.col = col
        ctx[key] = node  # duplicate keys: the last one wins

    @staticmethod
    def _integer(text: str) -> int | None:
        ndigits = 0
        for ch in text:
            if not (lx.is_digit(ch) or ch == "-"):
                break
            ndigits += 1
        digits = text[:ndigits]
        if not digits.isascii() or not digits.lstrip("-").isdigit() or digits.count("-") > 1:
            raise ConfigError([f"expected integer, but got '{text}'"])
        num = int(digits)
        if not _INT64_MIN <= num <= _INT64_MAX:
            raise ConfigError([f"integer '{text}' is out of the range"])
        mult = _SIZE_MULT.get(text[ndigits:].strip().lower())
        if mult is None:
            # nats-server drops a value with a suffix it does not know ("1kibi").
            return None
        return _wrap_int64(num * mult)

    # -- variables ----------------------------------------------------------

    def _variable(self, item: lx.Item) -> None:
        name = item.val
        try:
            found = self._lookup(name)
        except _LookupError as exc:
            raise ConfigError(
                [f"variable reference for '{name}' on line {item.line} could not be parsed: {exc}"]
            ) from None
        if found is None:
            raise ConfigError(
                [f"variable reference for '{name}' on line {item.line} can not be found"]
            )
        if isinstance(found, Node):
            found.used = True
            value = found.value
        else:
            value = found
        self._set(self._node(value, item))

    def _lookup(self, name: str) -> Any:
        if name.startswith(_BCRYPT_PREFIX):
            return "$" + name
        for ctx in reversed(self.ctxs):
            if isinstance(ctx, dict) and name in ctx:
                return ctx[name]
        raw = os.environ.get(name)
        if raw is None:
            return None
        if name in self.env_chain:
            raise _LookupError(f"variable reference cycle for '{name}'")
        sub = _Parser(self.file, self.env_chain + (name,), self.include_chain)
        # The environment value is read as the value of a one-line document.
        sub.dir = "."
        try:
            parsed = sub.run(f"{_ENV_KEY}={raw}")
        except ConfigError as exc:
            raise _LookupError(exc.lines[0]) from None
        node = parsed.get(_ENV_KEY)
        return None if node is None else node.value

    # -- include ------------------------------------------------------------

    def _include(self, item: lx.Item) -> None:
        path = _go_join(self.dir, item.val)
        try:
            if len(self.include_chain) >= MAX_INCLUDE_DEPTH:
                raise ConfigError([f"include depth exceeds {MAX_INCLUDE_DEPTH} (include cycle?)"])
            text = read_config_text(path)
            sub = _Parser(path, (), self.include_chain + (path,))
            included = sub.run(text)
        except ConfigError as exc:
            raise ConfigError(
                [f"error parsing include file '{item.val}', {exc.lines[0]}"]
            ) from None
        for key, node in included.items():
            self.keys.append((key, node.line, node.col))
            self._set(node)


def parse_nodes(text: str, filename: str = "") -> dict[str, Node]:
    """Parse a document into a map of Nodes (positions kept)."""
    return _Parser(filename, (), ()).run(text)


def parse_file_nodes(path: str) -> dict[str, Node]:
    """Read and parse a file into a map of Nodes; includes resolve next to it."""
    return _Parser(path, (), (path,)).run(read_config_text(path))


def parse(text: str, filename: str = "") -> dict:
    """Parse a document into plain dicts, lists and scalars."""
    return to_plain(parse_nodes(text, filename))


def parse_file(path: str) -> dict:
    """Read and parse a file into plain dicts, lists and scalars."""
    return to_plain(parse_file_nodes(path))


# -- canonical JSON and digest ------------------------------------------------
#
# nats-server prints "sha256:<hex>" over Go's encoding/json rendering of the
# parsed map (keys sorted, no spaces, HTML-safe escapes, trailing newline).  We
# render the same bytes so that one config file has one digest on both servers.

_HTML_ESCAPES = {
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}


def _json_str(s: str) -> str:
    out = json.dumps(s, ensure_ascii=False)
    if any(c in out for c in _HTML_ESCAPES):
        out = "".join(_HTML_ESCAPES.get(c, c) for c in out)
    return out


def _json_float(f: float) -> str:
    if f == 0 or 1e-6 <= abs(f) < 1e21:
        from decimal import Decimal

        text = format(Decimal(repr(f)), "f")
        if "." in text:
            text = text.rstrip("0").rstrip(".")
        return text
    text = repr(f)
    head, _, exp = text.partition("e")
    if exp.startswith("-0"):
        exp = "-" + exp[2:]
    return f"{head}e{exp}"


def _json(value: Any, out: list[str]) -> None:
    if isinstance(value, Node):
        value = value.value
    if value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif value is None:
        out.append("null")
    elif isinstance(value, int):
        out.append(str(value))
    elif isinstance(value, float):
        out.append(_json_float(value))
    elif isinstance(value, str):
        out.append(_json_str(value))
    elif isinstance(value, _dt.datetime):
        out.append(
            f'"{value.year:04d}-{value.month:02d}-{value.day:02d}T'
            f'{value.hour:02d}:{value.minute:02d}:{value.second:02d}Z"'
        )
    elif isinstance(value, dict):
        out.append("{")
        for i, key in enumerate(sorted(value)):
            if i:
                out.append(",")
            out.append(_json_str(key))
            out.append(":")
            _json(value[key], out)
        out.append("}")
    elif isinstance(value, (list, tuple)):
        out.append("[")
        for i, elem in enumerate(value):
            if i:
                out.append(",")
            _json(elem, out)
        out.append("]")
    else:
        raise TypeError(f"cannot encode {type(value).__name__} in a config digest")


def canonical_json(value: Any) -> str:
    """Go encoding/json rendering of a parsed map (Nodes or plain), with newline."""
    out: list[str] = []
    _json(value, out)
    out.append("\n")
    return "".join(out)


def config_digest(value: Any) -> str:
    """``sha256:<hex>`` over ``canonical_json(value)``, as nats-server reports it."""
    return "sha256:" + hashlib.sha256(canonical_json(value).encode("utf-8")).hexdigest()
