"""Lexer for the NATS configuration file format.

Theory of operation
-------------------
The NATS format is loose: ``key: value``, ``key = value`` and ``key value`` all
work, values end at a newline, ``;`` or ``,``, maps and arrays nest, and an
unquoted run of characters is a string unless it looks like a number, a
boolean, a date or a ``$variable``.  Whether ``2m`` is the integer 2000000 or
``90s`` a string is decided character by character, and hybridbus must reach
the same verdict as nats-server 2.15.1 for every input, including the odd ones
(``[1]`` is a lexing error there, ``1kibi`` lexes as an integer whose suffix
the parser then drops).  So this lexer is a state machine whose states follow
the ones nats-server's lexer goes through: each state is a method that
consumes characters and returns the next state, and a small stack remembers
where to return after a value (top level, inside a map, inside an array).

The machine works on a Python ``str``; nats-server works on UTF-8 bytes.  The
only place where that shows is the column of a token, which nats-server counts
in bytes from the start of the line (0-based on line 1, 1-based afterwards,
because the newline itself is counted).  ``Item.col`` reproduces that count.

Items are plain data; ``parser.py`` turns them into nested maps.  Comments are
skipped here (the parser never needs them).

This module holds the states for structure (top level, blocks, keys,
``include``, arrays, maps, comments); ``scalars`` holds the states that scan
one value and ``scanner`` the cursor primitives both build on.

Abbreviations: ``pos`` is the index of the next character to read, ``start``
the index where the pending token began, ``lstart`` the index of the newline
that began the current line (0 on line 1) and ``ilstart`` the ``lstart`` in
force when the pending token began.
"""

from __future__ import annotations

from .scalars import Scalars
from .scanner import (
    _EOF,
    _NL,
    _WS,
    ARRAY_END,
    ARRAY_START,
    BOOL,
    DATETIME,
    EOF,
    ERROR,
    FLOAT,
    INCLUDE,
    INTEGER,
    KEY,
    MAP_END,
    MAP_START,
    STRING,
    VARIABLE,
    Item,
    _shown,
    is_digit,
    is_space,
)

__all__ = [
    "ARRAY_END",
    "ARRAY_START",
    "BOOL",
    "DATETIME",
    "EOF",
    "ERROR",
    "FLOAT",
    "INCLUDE",
    "INTEGER",
    "KEY",
    "MAP_END",
    "MAP_START",
    "STRING",
    "VARIABLE",
    "Item",
    "Lexer",
    "is_digit",
    "is_space",
    "lex",
]

_KEY_SEP = ":="


class Lexer(Scalars):
    """Turns one document into a list of Items, ending with EOF or ERROR."""

    def run(self) -> list[Item]:
        state = self._s_top
        while state is not None:
            state = state()
        return self.items

    # -- top level ----------------------------------------------------------

    def _s_top(self):
        ch = self._next()
        if is_space(ch):
            self._ignore()
            return self._s_top
        if ch == "{":
            # A top-level brace makes the file a "block" (JSON files parse).
            self.stack.append(self._s_top)
            self._ignore()
            return self._s_block_start
        if ch == "#":
            self.stack.append(self._s_top)
            return self._s_comment_start
        if ch == "/":
            if self._next() == "/":
                self.stack.append(self._s_top)
                return self._s_comment_start
            self._backup()
            return self._eof_here()
        if ch == _EOF:
            return self._eof_here()
        self._backup()
        self.stack.append(self._s_top_value_end)
        return self._s_key_start

    def _s_top_value_end(self):
        ch = self._next()
        if ch == "#":
            self.stack.append(self._s_top)
            return self._s_comment_start
        if ch == "/":
            if self._next() == "/":
                self.stack.append(self._s_top)
                return self._s_comment_start
            self._backup()
            return self._s_top_value_end  # a lone '/' is skipped like blank space
        if ch in _WS:
            return self._s_top_value_end
        if ch in _NL or ch == _EOF or ch in ";,}":
            self._ignore()
            return self._s_top
        return self._error(
            "Expected a top-level value to end with a new line, comment or EOF, "
            f"but got '{_shown(ch)}' instead."
        )

    def _s_block_start(self):
        ch = self._next()
        if is_space(ch):
            self._ignore()
            return self._s_block_start
        if ch == "{":
            self.stack.append(self._s_block_end)
            self._ignore()
            return self._s_block_start
        if ch == "}":
            self._ignore()
            return self._pop()
        if ch == "#":
            self.stack.append(self._s_block_start)
            return self._s_comment_start
        if ch == "/":
            if self._next() == "/":
                self.stack.append(self._s_block_start)
                return self._s_comment_start
            self._backup()
            return self._eof_here()
        if ch == _EOF:
            return self._eof_here()
        self._backup()
        self.stack.append(self._s_block_value_end)
        return self._s_key_start

    def _s_block_value_end(self):
        ch = self._next()
        if ch == "#":
            self.stack.append(self._s_block_value_end)
            return self._s_comment_start
        if ch == "/":
            if self._next() == "/":
                self.stack.append(self._s_block_value_end)
                return self._s_comment_start
            self._backup()
            return self._s_block_value_end
        if ch in _WS:
            return self._s_block_value_end
        if ch in _NL or ch in ";,":
            self._ignore()
            return self._s_block_start
        if ch == "}":
            self._backup()
            return self._s_block_end
        return self._error(
            "Expected a block-level value to end with a new line, comment or EOF, "
            f"but got '{_shown(ch)}' instead."
        )

    def _s_block_end(self):
        ch = self._next()
        if ch == "#":
            self.stack.append(self._s_block_start)
            return self._s_comment_start
        if ch == "/":
            if self._next() == "/":
                self.stack.append(self._s_block_start)
                return self._s_comment_start
            self._backup()
            return self._s_block_end
        if ch in _NL or ch in _WS:
            return self._s_block_end
        if ch in ";,":
            self._ignore()
            return self._s_block_start
        if ch == "}":
            self._ignore()
            return self._pop()
        return self._error(
            f"Expected a block-level to end with a '}}', but got '{_shown(ch)}' instead."
        )

    # -- keys ---------------------------------------------------------------

    def _s_key_start(self):
        ch = self._peek()
        if ch in _KEY_SEP:
            return self._error(f"Unexpected key separator '{ch}'")
        if ch != _EOF and is_space(ch):
            self._next()
            self._ignore()
            return self._s_key_start
        if ch == '"' or ch == "'":
            self._next()
            self._ignore()
            return self._s_dq_key if ch == '"' else self._s_sq_key
        self._ignore()
        self._next()
        return self._s_key

    def _s_dq_key(self):
        return self._quoted_key('"', self._s_dq_key)

    def _s_sq_key(self):
        return self._quoted_key("'", self._s_sq_key)

    def _quoted_key(self, quote: str, again):
        ch = self._peek()
        if ch == quote:
            self._emit(KEY)
            self._next()
            self._ignore()
            return self._s_key_end
        if ch == _EOF:
            return self._eof_here()
        self._next()
        return again

    def _s_key(self):
        ch = self._peek()
        if ch != _EOF and is_space(ch):
            return self._keyword_or_key(self._s_key_end, None)
        if ch in _KEY_SEP or ch == _EOF:
            self._emit(KEY)
            return self._s_key_end
        self._next()
        return self._s_key

    def _keyword_or_key(self, after_key, after_include):
        # "include" is only a keyword when a blank follows it ("include: x" is a key).
        if self.text[self.start : self.pos].lower() == "include":
            self._ignore()
            if after_include is not None:
                self.stack.append(after_include)
            return self._s_include_start
        self._emit(KEY)
        return after_key

    def _s_key_end(self):
        ch = self._next()
        if ch != _EOF and is_space(ch):
            self._ignore()
            return self._s_key_end
        if ch in _KEY_SEP:
            self._ignore()
            return self._s_value
        if ch == _EOF:
            self._emit(EOF)
            return None
        self._backup()
        return self._s_value

    # -- include ------------------------------------------------------------

    def _s_include_start(self):
        ch = self._next()
        if ch in _WS:
            self._ignore()
            return self._s_include_start
        self._backup()
        return self._s_include

    def _s_include(self):
        ch = self._next()
        if ch == "'":
            self._ignore()
            return self._s_include_sq
        if ch == '"':
            self._ignore()
            return self._s_include_dq
        what = None
        if ch == "[":
            what = "start of an array"
        elif ch == "{":
            what = "start of a map"
        elif ch == "(":
            what = "start of a block"
        elif ch == "-" or is_digit(ch):
            what = "start of a number"
        elif ch == "\\":
            what = "escape sequence"
        elif ch in _NL:
            what = "new line"
        if what is not None:
            return self._error(f"Expected include value but found {what}")
        self._backup()
        return self._s_include_bare

    def _s_include_sq(self):
        return self._include_quoted("'", self._s_include_sq, "Unexpected EOF in quoted include")

    def _s_include_dq(self):
        return self._include_quoted(
            '"', self._s_include_dq, "Unexpected EOF in double quoted include"
        )

    def _include_quoted(self, quote: str, again, eof_msg: str):
        ch = self._next()
        if ch == quote:
            self._backup()
            self._emit(INCLUDE)
            self._next()
            self._ignore()
            return self._pop()
        if ch == _EOF:
            return self._error(eof_msg)
        return again

    def _s_include_bare(self):
        ch = self._next()
        if ch in _NL or ch == _EOF or ch in ";}" or ch in _WS:
            self._backup()
            self._emit(INCLUDE)
            return self._pop()
        if ch == "'":
            self._backup()
            self._emit(INCLUDE)
            self._next()
            self._ignore()
            return self._pop()
        return self._s_include_bare

    # -- values -------------------------------------------------------------

    def _s_value(self):
        ch = self._next()
        if ch in _WS:
            self._ignore()
            return self._s_value
        if ch == "[":
            self._ignore()
            self._emit(ARRAY_START)
            return self._s_array_value
        if ch == "{":
            self._ignore()
            self._emit(MAP_START)
            return self._s_map_key_start
        if ch == "'":
            self._ignore()
            return self._s_sq_string
        if ch == '"':
            self._ignore()
            self.string_state = self._s_dq_string
            return self._s_dq_string
        if ch == "-":
            return self._s_neg_number_start
        if ch == "(":
            self._ignore()
            return self._s_block
        if ch != _EOF and is_digit(ch):
            self._backup()
            return self._s_number_start
        if ch == ".":
            return self._error("Floats must start with a digit")
        if ch in _NL:
            return self._error("Expected value but found new line")
        self._backup()
        self.string_state = self._s_string
        return self._s_string

    def _s_array_value(self):
        ch = self._next()
        if ch != _EOF and is_space(ch):
            self._ignore()
            return self._s_array_value
        if ch == "#":
            self.stack.append(self._s_array_value)
            return self._s_comment_start
        if ch == "/":
            if self._next() == "/":
                self.stack.append(self._s_array_value)
                return self._s_comment_start
            self._backup()
            return self._error("Unexpected array value terminator ','.")
        if ch == ",":
            return self._error("Unexpected array value terminator ','.")
        if ch == "]":
            return self._s_array_end
        self._backup()
        self.stack.append(self._s_array_value_end)
        return self._s_value

    def _s_array_value_end(self):
        ch = self._next()
        if ch in _WS:
            self._ignore()
            return self._s_array_value_end
        if ch == "#":
            self.stack.append(self._s_array_value_end)
            return self._s_comment_start
        if ch == "/":
            if self._next() == "/":
                self.stack.append(self._s_array_value_end)
                return self._s_comment_start
            self._backup()
            self._ignore()
            return self._s_array_value
        if ch == "," or ch in _NL:
            self._ignore()
            return self._s_array_value
        if ch == "]":
            return self._s_array_end
        return self._error(
            'Expected an array value terminator "," or an array terminator "]", '
            f"but got '{_shown(ch)}' instead."
        )

    def _s_array_end(self):
        self._ignore()
        self._emit(ARRAY_END)
        return self._pop()

    # -- maps ---------------------------------------------------------------

    def _s_map_key_start(self):
        ch = self._peek()
        if ch in _KEY_SEP:
            return self._error(f"Unexpected key separator '{ch}'.")
        if ch == "]":
            return self._error("Unexpected array end ']' processing map.")
        if ch != _EOF and is_space(ch):
            self._next()
            self._ignore()
            return self._s_map_key_start
        if ch == "}":
            self._next()
            self._ignore()
            return self._s_map_end
        if ch == "#":
            self._next()
            self.stack.append(self._s_map_key_start)
            return self._s_comment_start
        if ch == "/":
            self._next()
            if self._next() == "/":
                self.stack.append(self._s_map_key_start)
                return self._s_comment_start
            # A lone '/' is dropped: the key starts at the character after it.
            self._backup()
        elif ch == "'":
            self._next()
            self._ignore()
            return self._s_map_sq_key
        elif ch == '"':
            self._next()
            self._ignore()
            return self._s_map_dq_key
        elif ch == _EOF:
            return self._error("Unexpected EOF processing map.")
        self._ignore()
        self._next()
        return self._s_map_key

    def _s_map_sq_key(self):
        return self._map_quoted_key(
            "'", self._s_map_sq_key, "Unexpected EOF processing quoted map key."
        )

    def _s_map_dq_key(self):
        return self._map_quoted_key(
            '"', self._s_map_dq_key, "Unexpected EOF processing double quoted map key."
        )

    def _map_quoted_key(self, quote: str, again, eof_msg: str):
        ch = self._peek()
        if ch == _EOF:
            return self._error(eof_msg)
        if ch == quote:
            self._emit(KEY)
            self._next()
            self._ignore()
            return self._s_map_key_end
        self._next()
        return again

    def _s_map_key(self):
        ch = self._peek()
        if ch == _EOF:
            return self._error("Unexpected EOF processing map key.")
        if is_space(ch):
            return self._keyword_or_key(self._s_map_key_end, self._s_map_value_end)
        if ch in _KEY_SEP:
            self._emit(KEY)
            return self._s_map_key_end
        self._next()
        return self._s_map_key

    def _s_map_key_end(self):
        ch = self._next()
        if ch != _EOF and is_space(ch):
            self._ignore()
            return self._s_map_key_end
        if ch in _KEY_SEP:
            self._ignore()
            return self._s_map_value
        self._backup()
        return self._s_map_value

    def _s_map_value(self):
        ch = self._next()
        if ch != _EOF and is_space(ch):
            self._ignore()
            return self._s_map_value
        if ch == ",":
            return self._error('Unexpected map value terminator ",".')
        if ch == "}":
            self._ignore()
            return self._s_map_end
        self._backup()
        self.stack.append(self._s_map_value_end)
        return self._s_value

    def _s_map_value_end(self):
        ch = self._next()
        if ch in _WS:
            self._ignore()
            return self._s_map_value_end
        if ch == "#":
            self.stack.append(self._s_map_value_end)
            return self._s_comment_start
        if ch == "/":
            if self._next() == "/":
                self.stack.append(self._s_map_value_end)
                return self._s_comment_start
            self._backup()
            self._ignore()
            return self._s_map_key_start
        if ch in ";," or ch in _NL:
            self._ignore()
            return self._s_map_key_start
        if ch == "}":
            self._ignore()
            return self._s_map_end
        return self._error(
            'Expected a map value terminator "," or a map terminator "}", '
            f"but got '{_shown(ch)}' instead."
        )

    def _s_map_end(self):
        self._ignore()
        self._emit(MAP_END)
        return self._pop()

    # -- comments -----------------------------------------------------------

    def _s_comment_start(self):
        self._ignore()
        return self._s_comment

    def _s_comment(self):
        ch = self._peek()
        if ch in _NL or ch == _EOF:
            self._ignore()
            return self._pop()
        self._next()
        return self._s_comment


def lex(text: str) -> list[Item]:
    """All items of ``text``; the last one is EOF or ERROR."""
    return Lexer(text).run()
