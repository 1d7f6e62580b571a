"""Go's text conventions, for messages that match nats-server word for word.

Owns Go's ``%q`` (``go_quote``), ``%v`` (``go_value``) and type names
(``go_type``) for config values, ``time.ParseDuration`` (``parse_go_duration``)
with Go's error text, and ``time.Duration.String`` (``format_go_duration``).
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

__all__ = ["format_go_duration", "go_quote", "go_type", "go_value", "parse_go_duration"]

# -- Go formatting helpers -----------------------------------------------------


def go_quote(s: str) -> str:
    """Go's %q for a string (strconv.Quote)."""
    out = ['"']
    for ch in s:
        code = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch in _GO_SHORT_ESCAPES:
            out.append(_GO_SHORT_ESCAPES[ch])
        elif ch.isprintable():
            out.append(ch)
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


_GO_SHORT_ESCAPES = {
    "\a": "\\a",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
}


def _go_float(f: float) -> str:
    """Go's %v for a float64 (shortest digits; exponent form from 1e6 up or below 1e-4)."""
    from decimal import Decimal

    if f == 0:
        return "-0" if str(f).startswith("-") else "0"
    sign, digits, exp = Decimal(repr(f)).as_tuple()
    ds = "".join(map(str, digits)).rstrip("0") or "0"
    point = len(digits) + exp  # position of the decimal point relative to the digits
    exp10 = point - 1
    neg = "-" if sign else ""
    if exp10 < -4 or exp10 >= 6:
        mant = ds[0] + ("." + ds[1:] if len(ds) > 1 else "")
        return f"{neg}{mant}e{'-' if exp10 < 0 else '+'}{abs(exp10):02d}"
    text = format(Decimal(repr(f)), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def _plain(v: Any) -> Any:
    """A parser Node's value (imported here, not at the top: config.startup uses this
    module without the parser)."""
    from .parser import Node

    return v.value if isinstance(v, Node) else v


def go_value(v: Any) -> str:
    """Go's %v for a config value (close enough for messages)."""
    v = _plain(v)
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return _go_float(v)
    if isinstance(v, _dt.datetime):
        return v.strftime("%Y-%m-%d %H:%M:%S +0000 UTC")
    if isinstance(v, list):
        return "[" + " ".join(go_value(e) for e in v) + "]"
    if isinstance(v, dict):
        return "map[" + " ".join(f"{k}:{go_value(v[k])}" for k in sorted(v)) + "]"
    return str(v)


def go_type(v: Any) -> str:
    """The Go type nats-server's parser would hold for this value."""
    v = _plain(v)
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int64"
    if isinstance(v, float):
        return "float64"
    if isinstance(v, str):
        return "string"
    if isinstance(v, _dt.datetime):
        return "time.Time"
    if isinstance(v, list):
        return "[]interface {}"
    if isinstance(v, dict):
        return "map[string]interface {}"
    return type(v).__name__


# -- Go duration syntax --------------------------------------------------------

_NS_PER_UNIT = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,  # micro sign
    "\u03bcs": 1_000,  # Greek mu
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
_MAX_NS = 1 << 63


def _duration_quote(s: str) -> str:
    # Go's time package quotes with non-ASCII bytes as \xNN escapes.
    out = ['"']
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) >= 0x80:
            out.extend(f"\\x{b:02x}" for b in ch.encode("utf-8", "surrogatepass"))
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def parse_go_duration(text: str) -> int:
    """Nanoseconds for a Go ``time.ParseDuration`` string ("1h30m", "300ms", "-1.5s").

    Raises ValueError with Go's message ("time: unknown unit ...").
    """
    orig = text
    s = text
    neg = False
    if s and s[0] in "+-":
        neg = s[0] == "-"
        s = s[1:]
    if s == "0":
        return 0
    invalid = ValueError("time: invalid duration " + _duration_quote(orig))
    if not s:
        raise invalid
    total = 0
    while s:
        if not (s[0] == "." or "0" <= s[0] <= "9"):
            raise invalid
        i = 0
        while i < len(s) and "0" <= s[i] <= "9":
            i += 1
        whole_digits, s = s[:i], s[i:]
        whole = int(whole_digits) if whole_digits else 0
        if whole >= _MAX_NS:
            raise invalid
        frac_digits = ""
        if s and s[0] == ".":
            s = s[1:]
            j = 0
            while j < len(s) and "0" <= s[j] <= "9":
                j += 1
            frac_digits, s = s[:j], s[j:]
        if not whole_digits and not frac_digits:
            raise invalid  # "." or ".s": no digits at all
        j = 0
        while j < len(s) and not (s[j] == "." or "0" <= s[j] <= "9"):
            j += 1
        if j == 0:
            raise ValueError("time: missing unit in duration " + _duration_quote(orig))
        unit, s = s[:j], s[j:]
        per = _NS_PER_UNIT.get(unit)
        if per is None:
            raise ValueError(
                f"time: unknown unit {_duration_quote(unit)} in duration {_duration_quote(orig)}"
            )
        if whole > _MAX_NS // per:
            raise invalid
        value = whole * per
        if frac_digits:
            # Go keeps at most the digits that fit; the float product truncates.
            value += int(int(frac_digits) * (per / 10 ** len(frac_digits)))
            if value > _MAX_NS:
                raise invalid
        total += value
        if total > _MAX_NS:
            raise invalid
    if neg:
        return -total
    if total > _MAX_NS - 1:
        raise invalid
    return total


def _go_fraction(value: int, scale: int) -> str:
    """``value / scale`` with Go's trailing-zero-free fraction (``1.5``, ``2``)."""
    whole, frac = divmod(value, scale)
    if not frac:
        return str(whole)
    digits = str(frac).rjust(len(str(scale)) - 1, "0").rstrip("0")
    return f"{whole}.{digits}"


def format_go_duration(ns: int) -> str:
    """Go's ``time.Duration.String``: ``"1m0s"``, ``"30s"``, ``"1.5s"``, ``"300ms"``."""
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    ns = abs(ns)
    if ns < 1_000_000_000:
        for unit, scale in (("ms", 1_000_000), ("\u00b5s", 1_000), ("ns", 1)):
            if ns >= scale:
                return sign + _go_fraction(ns, scale) + unit
    hours, rest = divmod(ns, 3_600_000_000_000)
    minutes, rest = divmod(rest, 60_000_000_000)
    text = _go_fraction(rest, 1_000_000_000) + "s"
    if hours:
        return f"{sign}{hours}h{minutes}m{text}"
    if minutes:
        return f"{sign}{minutes}m{text}"
    return sign + text
