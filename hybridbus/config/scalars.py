"""The lexer's value scanners: strings, escapes, ``(...)`` blocks, numbers, dates.

Owns ``Scalars``, the states entered once ``lexer`` has seen how a value
starts; each emits one item and pops back to the structure that wanted the
value.  Whether ``2m`` is an integer and ``90s`` a string is decided here.
"""

from __future__ import annotations

from .scanner import (
    _EOF,
    _NL,
    _WS,
    BOOL,
    DATETIME,
    FLOAT,
    INTEGER,
    STRING,
    VARIABLE,
    Scanner,
    _shown,
    is_digit,
)

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


class Scalars(Scanner):
    """Value states; ``string_state`` is where an escape returns to."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.string_state = self._s_string

    def _emit_string(self) -> None:
        val = self.text[self.start : self.pos]
        if self.parts:
            val = _join_parts(self.parts, val)
            self.parts = []
        self._push_item(STRING, val)

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


def _join_parts(parts: list[str], tail: str) -> str:
    val = "".join(parts) + tail
    if any("\udc80" <= c <= "\udcff" for c in val):
        val = val.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return val
