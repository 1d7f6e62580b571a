"""The lexer's ground floor: item kinds, character classes and cursor primitives.

Owns ``Item``, Go's ``unicode.IsSpace``/``IsDigit``, and ``Scanner``: the
position, line and byte-column bookkeeping that every state of the machine
(``lexer`` for keys and structure, ``scalars`` for values) reads through.
"""

from __future__ import annotations

# Item kinds.
ERROR = "error"
EOF = "eof"
KEY = "key"
STRING = "string"
BOOL = "bool"
INTEGER = "integer"
FLOAT = "float"
DATETIME = "datetime"
ARRAY_START = "array_start"
ARRAY_END = "array_end"
MAP_START = "map_start"
MAP_END = "map_end"
VARIABLE = "variable"
INCLUDE = "include"

_EOF = "\x00"  # what next() returns past the end; printed as a NUL, as nats-server does
_NL = "\n\r"
_WS = "\t "


def is_space(ch: str) -> bool:
    """Go's unicode.IsSpace (Python's str.isspace also admits U+001C..U+001F)."""
    if ch in "\t\n\v\f\r \x85\xa0":
        return True
    return ord(ch) > 0xFF and ch.isspace()


def is_digit(ch: str) -> bool:
    """Go's unicode.IsDigit."""
    if "0" <= ch <= "9":
        return True
    return ord(ch) > 0xFF and ch.isdecimal()


def _shown(ch: str) -> str:
    # nats-server prints a newline rune in lexer messages as the two characters \n.
    return "\\n" if ch == "\n" else ch


class Item:
    """One token: kind, text, line and nats-server's byte column."""

    __slots__ = ("kind", "val", "line", "col")

    def __init__(self, kind: str, val: str, line: int, col: int) -> None:
        self.kind = kind
        self.val = val
        self.line = line
        self.col = col

    def __repr__(self) -> str:
        return f"Item({self.kind}, {self.val!r}, {self.line}, {self.col})"


class Scanner:
    """Cursor and output of one document; the states live in subclasses."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.n = len(text)
        self.ascii = text.isascii()
        self.pos = 0
        self.start = 0
        self.width = 0
        self.line = 1
        self.lstart = 0
        self.ilstart = 0
        self.stack: list = []
        self.parts: list[str] = []  # decoded pieces of a string that had escapes
        self.items: list[Item] = []

    # -- primitives ---------------------------------------------------------

    def _next(self) -> str:
        if self.pos >= self.n:
            self.width = 0
            return _EOF
        ch = self.text[self.pos]
        if ch == "\n":
            self.line += 1
            self.lstart = self.pos
        self.width = 1
        self.pos += 1
        return ch

    def _backup(self) -> None:
        # Like nats-server, lstart is not restored: only the line count is.
        self.pos -= self.width
        if self.pos < self.n and self.text[self.pos] == "\n":
            self.line -= 1

    def _peek(self) -> str:
        ch = self._next()
        self._backup()
        return ch

    def _ignore(self) -> None:
        self.start = self.pos
        self.ilstart = self.lstart

    def _blen(self, a: int, b: int) -> int:
        return b - a if self.ascii else len(self.text[a:b].encode("utf-8", "surrogatepass"))

    def _push_item(self, kind: str, val: str) -> None:
        vlen = len(val) if val.isascii() else len(val.encode("utf-8", "surrogatepass"))
        col = self._blen(self.ilstart, self.pos) - vlen
        self.items.append(Item(kind, val, self.line, col))
        self.start = self.pos
        self.ilstart = self.lstart

    def _emit(self, kind: str) -> None:
        val = "".join(self.parts) + self.text[self.start : self.pos]
        self._push_item(kind, val)

    def _error(self, msg: str) -> None:
        self.items.append(Item(ERROR, msg, self.line, self.pos - self.lstart))
        return None

    def _pop(self):
        if not self.stack:
            return self._error("BUG in lexer: no states to pop.")
        return self.stack.pop()

    def _eof_here(self):
        """At the end of input: an error if a token was pending, else EOF."""
        if self.pos > self.start:
            return self._error("Unexpected EOF.")
        self._emit(EOF)
        return None
