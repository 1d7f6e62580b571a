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

Abbreviations: ``pos`` is the index of the next character to read, ``start``
the index where the pending token began, ``lstart`` the index of the newline
that began the current line (0 on line 1) and ``ilstart`` the ``lstart`` in
force when the pending token began.
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
_KEY_SEP = ":="
_SIZE_SUFFIX = "kKmMgGtTpPeE"
_BOOLS = frozenset(("true", "false", "yes", "no", "on", "off"))
# Characters that end a number (anything else turns it into an unquoted string).
_NUM_END = _NL + _WS + "};,"
# Characters that end an unquoted string.
_STR_END = _NL + _WS + ";,]}"
_ESCAPES = {"t": "\t", "n": "\n", "r": "\r", '"': '"', "\\": "\\"}
_HEX = frozenset("0123456789abcdefABCDEF")
# The ISO 8601 Zulu layout after "YYYY-": '0' is any digit, anything else is literal.
_DATE_TAIL = "00-00T00:00:00Z"


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


class Lexer:
    """Turns one document into a list of Items, ending with EOF or ERROR."""

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
        self.string_state = self._s_string
        self.items: list[Item] = []

    # -- primitives ---------------------------------------------------------

    def run(self) -> list[Item]:
        state = self._s_top
        while state is not None:
            state = state()
        return self.items

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

    def _emit_string(self) -> None:
        val = self.text[self.start : self.pos]
        if self.parts:
            val = _join_parts(self.parts, val)
            self.parts = []
        self._push_item(STRING, val)

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

    # -- strings ------------------------------------------------------------

    def _s_sq_string(self):
        ch = self._next()
        if ch == "'":
            self._backup()
            self._emit(STRING)
            self._next()
            self._ignore()
            return self._pop()
        if ch == _EOF:
            return self._eof_here()
        return self._s_sq_string

    def _s_dq_string(self):
        ch = self._next()
        if ch == "\\":
            self._add_current_part()
            return self._s_escape
        if ch == '"':
            self._backup()
            self._emit_string()
            self._next()
            self._ignore()
            return self._pop()
        if ch == _EOF:
            return self._eof_here()
        return self._s_dq_string

    def _s_string(self):
        ch = self._next()
        if ch == "\\":
            self._add_current_part()
            return self._s_escape
        if ch in _STR_END or ch == _EOF:
            self._backup()
            raw = self.text[self.start : self.pos]
            if self.parts:
                self._emit_string()
            elif raw.lower() in _BOOLS:
                self._emit(BOOL)
            elif raw.startswith("$"):
                self.start += 1
                self._emit(VARIABLE)
            else:
                self._emit_string()
            return self._pop()
        if ch == "'":
            self._backup()
            self._emit_string()
            self._next()
            self._ignore()
            return self._pop()
        return self._s_string

    def _add_current_part(self) -> None:
        # The backslash itself (just consumed) is left out.
        self.parts.append(self.text[self.start : self.pos - 1])
        self.start = self.pos

    def _s_escape(self):
        ch = self._next()
        if ch == "x":
            return self._s_hex_escape
        decoded = _ESCAPES.get(ch)
        if decoded is None:
            return self._error(
                f"Invalid escape character '{_shown(ch)}'. Only the following escape "
                'characters are allowed: \\xXX, \\t, \\n, \\r, \\", \\\\.'
            )
        self.parts.append(decoded)
        self.start = self.pos
        return self.string_state

    def _s_hex_escape(self):
        for _ in range(2):
            if self._next() in _NL:
                return self._error(
                    "Expected two hexadecimal digits after '\\x', but hit end of line"
                )
        # nats-server looks at the last two *bytes* read (so "\x4é" reports 'é').
        pair = self.text[max(self.pos - 2, 0) : self.pos]
        if not pair.isascii():
            pair = pair.encode("utf-8", "surrogatepass")[-2:].decode("utf-8", "replace")
        if len(pair) != 2 or pair[0] not in _HEX or pair[1] not in _HEX:
            return self._error(f"Expected two hexadecimal digits after '\\x', but got '{pair}'")
        byte = int(pair, 16)
        # Bytes >= 0x80 are kept as surrogate escapes so that a run such as
        # \xc3\xa9 reassembles into one UTF-8 character when the string ends.
        self.parts.append(chr(byte) if byte < 0x80 else chr(0xDC00 + byte))
        self.start = self.pos
        return self.string_state

    def _s_block(self):
        ch = self._next()
        if ch == ")":
            # A block ends at a ')' alone on its line: newline before, newline or EOF after.
            self._backup()
            self._backup()
            if self._next() != "\n":
                self._next()
                return self._s_block
            self._next()
            after = self._next()
            if after == "\n" or after == _EOF:
                self._backup()
                self._backup()
                self._emit(STRING)
                self._next()
                self._ignore()
                return self._pop()
            self._backup()
            return self._s_block
        if ch == _EOF:
            return self._error("Unexpected EOF processing block.")
        return self._s_block

    # -- numbers and dates --------------------------------------------------

    def _s_number_start(self):
        ch = self._next()
        if ch == _EOF or not is_digit(ch):
            if ch == ".":
                return self._error("Floats must start with a digit, not '.'.")
            return self._error(f"Expected a digit but got '{_shown(ch)}'.")
        return self._s_number

    def _s_number(self):
        ch = self._next()
        if ch == "-":
            if self._blen(self.start, self.pos) != 5:
                return self._error("All ISO8601 dates must be in full Zulu form.")
            return self._s_date
        if ch != _EOF and is_digit(ch):
            return self._s_number
        if ch == ".":
            return self._s_float_start
        if ch != _EOF and ch in _SIZE_SUFFIX:
            return self._s_size_suffix
        if ch not in _NUM_END and ch != _EOF:
            # "12:30", "1h30m", "90s": not a number after all.  The character just
            # read stays in the string even if it would end one (so "1]" is a string).
            self.string_state = self._s_string
            return self._s_string
        self._backup()
        self._emit(INTEGER)
        return self._pop()

    def _s_size_suffix(self):
        ch = self._next()
        if ch in "bBiI" and ch != _EOF:
            return self._s_size_suffix
        self._backup()
        if ch in _NUM_END or ch == _EOF:
            self._emit(INTEGER)
            return self._pop()
        self.string_state = self._s_string
        return self._s_string

    def _s_date(self):
        for want in _DATE_TAIL:
            ch = self._next()
            if want == "0":
                if ch == _EOF or not is_digit(ch):
                    return self._error(
                        f"Expected digit in ISO8601 datetime, but found '{_shown(ch)}' instead."
                    )
            elif ch != want:
                return self._error(
                    f"Expected '{want}' in ISO8601 datetime, but found '{_shown(ch)}' instead."
                )
        self._emit(DATETIME)
        return self._pop()

    def _s_neg_number_start(self):
        ch = self._next()
        if ch == _EOF or not is_digit(ch):
            if ch == ".":
                return self._error("Floats must start with a digit, not '.'.")
            return self._error(f"Expected a digit but got '{_shown(ch)}'.")
        return self._s_neg_number

    def _s_neg_number(self):
        ch = self._next()
        if ch != _EOF and is_digit(ch):
            return self._s_neg_number
        if ch == ".":
            return self._s_float_start
        if ch != _EOF and ch in _SIZE_SUFFIX:
            return self._s_size_suffix
        self._backup()
        self._emit(INTEGER)
        return self._pop()

    def _s_float_start(self):
        ch = self._next()
        if ch == _EOF or not is_digit(ch):
            return self._error(
                f"Floats must have a digit after the '.', but got '{_shown(ch)}' instead."
            )
        return self._s_float

    def _s_float(self):
        ch = self._next()
        if ch != _EOF and is_digit(ch):
            return self._s_float
        if ch == ".":
            return self._s_ip  # a second dot: an address such as 127.0.0.1:4222
        self._backup()
        self._emit(FLOAT)
        return self._pop()

    def _s_ip(self):
        ch = self._next()
        if ch != _EOF and (is_digit(ch) or ch in ".:-"):
            return self._s_ip
        self._backup()
        self._emit(STRING)
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


def _join_parts(parts: list[str], tail: str) -> str:
    val = "".join(parts) + tail
    if any("\udc80" <= c <= "\udcff" for c in val):
        val = val.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return val


def lex(text: str) -> list[Item]:
    """All items of ``text``; the last one is EOF or ERROR."""
    return Lexer(text).run()
