"""The loader's shared machinery: how a block is read, not what it means.

Owns ``Loader`` (the error and warning lines, the typed value readers and
their type errors, the table ``dispatch`` of a block) and the handler builders
``store``/``store_listen`` that most option tables use.

Type errors name the option and the type it wants, after nats-server's
``file:line:col:`` position (``c.conf:3:1: debug: expected a boolean
(true/false), got string "yes"``); nats-server prints Go's panic text there
(``interface conversion: interface {} is string, not bool``), which tells a
user neither.  Every other message keeps nats-server's words.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..options import MAX_PORT, MIN_PORT
from .gotext import go_quote, go_type, go_value, parse_go_duration
from .parser import Node

# -- the loader -------------------------------------------------------------------


class _Bad:
    """Marks a value that failed its type check (an error was recorded)."""


BAD = _Bad()

# Why an authentication or authorization option stops the load (``Loader.refused_auth``).
AUTH_REFUSAL = "an authentication setting: refusing to start rather than ignore it"

# What a type error says the option wants, by the Go type nats-server asserts.
_WANTED = {
    "int64": "an integer",
    "string": "a string",
    "bool": "a boolean (true/false)",
    "map[string]interface {}": "a map ({ ... })",
}


def describe_value(node: Node) -> str:
    """A config value as a type error shows it: ``string "yes"``, ``integer 5``."""
    v = node.value
    if isinstance(v, bool):
        return f"boolean {go_value(v)}"
    if isinstance(v, int):
        return f"integer {v}"
    if isinstance(v, float):
        return f"number {go_value(v)}"
    if isinstance(v, str):
        return f"string {go_quote(v)}"
    if isinstance(v, list):
        return "an array"
    if isinstance(v, dict):
        return "a map"
    return f"date {go_value(v)}"


class Loader:
    """The state of one load: its error and warning lines, and ``store_dir_set``.

    A table maps each option name to a handler ``(loader, target, node, key)``;
    handler functions carry their block's prefix: ``t_`` top level,
    ``a_`` authorization, ``l_`` listener, ``m_`` mqtt, ``w_`` websocket and
    ``j_`` jetstream."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.warnings: list[str] = []
        self.store_dir_set = False
        # the option being read (set by ``dispatch``), named by type errors
        self.key = ""
        # (id(target), attribute) of every value ``store``/``store_listen`` set
        self.assigned: set[tuple[int, str]] = set()

    # reporting

    def err(self, node: Node, reason: str) -> None:
        self.errors.append(f"{node.where}: {reason}")

    def warn_field(self, node: Node, field: str, reason: str) -> None:
        self.warnings.append(f"{node.where}: invalid use of field {go_quote(field)}: {reason}")

    def unknown(self, key: str, node: Node) -> None:
        if node.used:
            return  # a variable definition that something referred to
        self.errors.append(f"{node.where}: unknown field {go_quote(key)}")

    def unsupported(self, key: str, node: Node) -> None:
        self.warnings.append(
            f"{node.where}: field {go_quote(key)} is not supported by hybridbus and is ignored"
        )

    def refused(self, key: str, node: Node, why: str = "") -> None:
        reason = f" ({why})" if why else ""
        self.errors.append(
            f"{node.where}: field {go_quote(key)} is not supported by hybridbus{reason}"
        )

    def refused_auth(self, key: str, node: Node) -> None:
        """An authentication or authorization option hybridbus does not enforce: ignoring
        it could let in clients the operator meant to keep out, so the load fails."""
        self.refused(key, node, AUTH_REFUSAL)

    # typed access; each returns BAD after recording a type error that names the
    # option (`key`, else the one ``dispatch`` is reading) and the type it wants

    def _typed(self, node: Node, ok: bool, want: str, key: str | None) -> Any:
        if ok:
            return node.value
        name = key or self.key
        prefix = f"{name}: " if name else ""
        self.err(node, f"{prefix}expected {_WANTED[want]}, got {describe_value(node)}")
        return BAD

    def int_(self, node: Node, key: str | None = None) -> Any:
        v = node.value
        return self._typed(node, isinstance(v, int) and not isinstance(v, bool), "int64", key)

    def str_(self, node: Node, key: str | None = None) -> Any:
        return self._typed(node, isinstance(node.value, str), "string", key)

    def bool_(self, node: Node, key: str | None = None) -> Any:
        return self._typed(node, isinstance(node.value, bool), "bool", key)

    def map_(self, node: Node, key: str | None = None) -> Any:
        return self._typed(node, isinstance(node.value, dict), "map[string]interface {}", key)

    def port(self, node: Node) -> Any:
        """A listener port: 0..65535, or nats-server's -1 (any free port)."""
        if (v := self.int_(node)) is BAD:
            return BAD
        return self.port_in_range(node, v)

    def port_in_range(self, node: Node, port: int) -> Any:
        if MIN_PORT <= port <= MAX_PORT:
            return port
        self.err(node, f"{self.key}: port {port} is outside 0..65535")
        return BAD

    def int_in(self, node: Node, lo: int, hi: int) -> Any:
        """An integer in [lo, hi], with nats-server's message for MQTT limits."""
        if (v := self.int_(node)) is BAD:
            return BAD
        if not lo <= v <= hi:
            self.err(node, f"invalid value {v}, should in [{lo}..{hi}] range")
            return BAD
        return v

    def duration(self, field: str, node: Node) -> float | None:
        """A Go duration string in seconds; a bare integer is seconds with a warning."""
        v = node.value
        if isinstance(v, str):
            try:
                return parse_go_duration(v) / 1e9
            except ValueError as exc:
                self.err(node, f"error parsing {field}: {exc}")
                return None
        self.warn_field(node, field, f"{field} should be converted to a duration")
        if not isinstance(v, int) or isinstance(v, bool):
            self.err(
                node, f'{field}: expected a duration ("30s", "2m"), got {describe_value(node)}'
            )
            return None
        return float(v)

    def seconds(self, node: Node, what: str) -> float | None:
        """A timeout given as int or float seconds, or as a duration string."""
        v = node.value
        if isinstance(v, bool):
            self.err(node, f"error parsing {what}, 'timeout' wrong type")
            return None
        if isinstance(v, (int, float)):
            return float(v)
        if isinstance(v, str):
            try:
                return parse_go_duration(v) / 1e9
            except ValueError as exc:
                self.err(node, f"error parsing {what}, 'timeout' {exc}")
                return None
        self.err(node, f"error parsing {what}, 'timeout' wrong type")
        return None

    def listen(self, node: Node) -> tuple[str, int] | None:
        """``listen``-style value: a port, or "host:port"; None after an error."""
        v = node.value
        if isinstance(v, int) and not isinstance(v, bool):
            return "", v
        if not isinstance(v, str):
            self.err(node, f"expected port or host:port, got {go_type(v)}")
            return None
        hostport = split_host_port(v)
        if hostport is None:
            self.err(node, f"could not parse address string {go_quote(v)}")
            return None
        host, port_text = hostport
        if not is_go_parse_int(port_text):  # Go's strconv.Atoi
            self.err(node, f"could not parse port {go_quote(port_text)}")
            return None
        return host, int(port_text)

    def listen_port(self, node: Node) -> tuple[str, int] | None:
        """``listen`` with its port checked: 0..65535 (or -1)."""
        hp = self.listen(node)
        if hp is None or self.port_in_range(node, hp[1]) is BAD:
            return None
        return hp

    def string_list(self, node: Node, what: str) -> list[str] | None:
        v = node.value
        if isinstance(v, str):
            return [v]
        if isinstance(v, list):
            out = []
            for elem in v:
                if not isinstance(elem.value, str):
                    self.err(
                        elem,
                        f"error parsing {what}: unsupported type {go_type(elem)} where string is expected",
                    )
                    return None
                out.append(elem.value)
            return out
        self.err(node, f"error parsing {what}: unsupported type {go_type(v)}")
        return None

    # -- blocks --------------------------------------------------------------

    def dispatch(
        self,
        nodes: dict[str, Node],
        target: Any,
        table: dict,
        unsupported,
        refused: frozenset[str] = frozenset(),
    ) -> None:
        """Hand each key of a block to its handler (keys are case-insensitive); a key
        nats-server knows but we do not implement is a warning, or an error when it is
        in ``refused`` (authentication settings), and any other key an error."""
        for key, node in nodes.items():
            name = key.lower()
            handler = table.get(name)
            if handler is not None:
                self.key = key
                handler(self, target, node, key)
            elif name in refused:
                self.refused_auth(key, node)
            elif name in unsupported:
                self.unsupported(key, node)
            else:
                self.unknown(key, node)


Handler = Callable[[Loader, Any, Node, str], None]


def store(attr: str, read: Callable[..., Any], *args: Any) -> Handler:
    """The handler of an option that only needs its type (and range) checked: it
    sets ``attr`` to ``read(loader, node, *args)`` unless ``read`` recorded an error."""

    def handler(loader: Loader, target: Any, node: Node, key: str) -> None:
        if (v := read(loader, node, *args)) is not BAD:
            setattr(target, attr, v)
            loader.assigned.add((id(target), attr))

    return handler


def store_listen(host_attr: str, port_attr: str) -> Handler:
    """The handler of a ``listen``-style option; no host means every interface. The
    port must be 0..65535 (or -1: any free port)."""

    def handler(loader: Loader, target: Any, node: Node, key: str) -> None:
        hp = loader.listen_port(node)
        if hp is not None:
            setattr(target, host_attr, hp[0] or "0.0.0.0")
            setattr(target, port_attr, hp[1])
            loader.assigned.add((id(target), host_attr))
            loader.assigned.add((id(target), port_attr))

    return handler


# -- small checks ------------------------------------------------------------------


def split_host_port(hostport: str) -> tuple[str, str] | None:
    """Go's net.SplitHostPort; None where Go returns an error."""
    i = hostport.rfind(":")
    if i < 0:
        return None
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0 or end + 1 != i:
            return None
        host = hostport[1:end]
        if "[" in hostport[1:] or "]" in hostport[end + 1 :]:
            return None
    else:
        host = hostport[:i]
        if ":" in host or "[" in hostport or "]" in hostport:
            return None
    return host, hostport[i + 1 :]


def looks_int(text: str) -> bool:
    body = text[1:] if text[:1] in "+-" else text
    return body.isascii() and body.isdigit()


def is_go_parse_int(text: str) -> bool:
    """strconv.ParseInt(text, 10, 64) would succeed."""
    if not looks_int(text):
        return False
    return -(1 << 63) <= int(text) <= (1 << 63) - 1
