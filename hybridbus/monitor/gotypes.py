"""Go-typed JSON: the value encodings nats-server's monitoring endpoints use.

Tools such as nats-top, Telegraf and the exporter's ``jsz`` collector decode our
JSON into nats-server's own Go structs; one value of the wrong JSON type fails
the whole decode (nats-conventions §0 rule 1, §1.2). Everything here is a pure
function of its arguments:

* times: ``rfc3339`` (epoch seconds, float) and ``rfc3339_ns`` (epoch ns) give
  Go's ``RFC3339Nano`` in UTC: trailing zeros of the fraction dropped, ``Z``.
* durations: ``uptime`` is nats-server's own dialect for ``uptime``/``idle``
  (``1y10d3h4m5s``); ``go_duration`` is ``time.Duration.String()`` and ``rtt``
  adds nats-server's truncation to whole microseconds below one millisecond.
* JSON text: ``dumps`` is ``json.MarshalIndent(v, "", "  ")`` (no trailing
  newline) and ``dumps_compact`` is ``json.Marshal``. Both write floats the way
  Go does (``2``, not ``2.0``) and escape ``<``, ``>``, ``&``, U+2028 and
  U+2029 as Go's HTML-safe encoder does. A Python ``int`` is always written as a
  JSON integer and a ``float`` only where the Go field is a float64, so the
  callers choose the type by choosing the Python type.
* query values: ``parse_bool``/``parse_int``/``parse_uint64`` accept what Go's
  ``strconv`` accepts and raise ``BadRequest`` with nats-server's exact 400 text.
"""

from __future__ import annotations

import json
import re
import time
from decimal import Decimal

# Go's strconv.Quote: the config loader's messages and the 400 texts share one copy.
from hybridbus.config.load import go_quote

__all__ = [
    "ZERO_TIME",
    "BadRequest",
    "dumps",
    "dumps_compact",
    "go_duration",
    "go_float",
    "go_quote",
    "parse_bool",
    "parse_int",
    "parse_uint64",
    "rfc3339",
    "rfc3339_ns",
    "rtt",
    "uptime",
]

# Go's zero time.Time, as json.Marshal writes it.
ZERO_TIME = "0001-01-01T00:00:00Z"

NS = 1_000_000_000


class BadRequest(Exception):
    """A query parameter nats-server would refuse: HTTP 400 with ``text`` as the body."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


# --------------------------------------------------------------------------- times


def rfc3339_ns(ns: int) -> str:
    """Go ``time.Time`` JSON for epoch nanoseconds, in UTC: ``2026-11-22T02:07:36.65812818Z``."""
    secs, frac = divmod(int(ns), NS)
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))
    if not frac:
        return base + "Z"
    return base + "." + f"{frac:09d}".rstrip("0") + "Z"


def rfc3339(ts: float) -> str:
    """``rfc3339_ns`` for epoch seconds held in a float.

    A float near 1.7e9 carries about a quarter of a microsecond of precision, so
    the value is rounded to whole microseconds instead of printing noise digits.
    """
    if not ts:
        return ZERO_TIME
    return rfc3339_ns(round(ts * 1_000_000) * 1000)


# --------------------------------------------------------------------------- durations


def uptime(seconds: float) -> str:
    """nats-server's ``uptime``/``idle`` format: whole seconds as ``y`` (365 days),
    ``d``, ``h``, ``m``, ``s``; leading zero units dropped, inner ones kept
    (``"0s"``, ``"28m11s"``, ``"1h0m5s"``, ``"1y10d3h4m5s"``)."""
    total = int(seconds) if seconds > 0 else 0
    mins, s = divmod(total, 60)
    hours, m = divmod(mins, 60)
    days, h = divmod(hours, 24)
    years, d = divmod(days, 365)
    if years:
        return f"{years}y{d}d{h}h{m}m{s}s"
    if days:
        return f"{days}d{h}h{m}m{s}s"
    if hours:
        return f"{hours}h{m}m{s}s"
    if mins:
        return f"{mins}m{s}s"
    return f"{s}s"


def _fixed(value: int, digits: int) -> str:
    """``value / 10**digits`` printed with the fraction's trailing zeros (and dot) dropped."""
    whole, frac = divmod(value, 10**digits)
    if not frac:
        return str(whole)
    return f"{whole}." + f"{frac:0{digits}d}".rstrip("0")


def go_duration(ns: int) -> str:
    """Go's ``time.Duration.String()`` for integer nanoseconds.

    Below one second the unit is ns, µs (U+00B5) or ms with a fraction; from one
    second on it is ``[<h>h][<m>m]<s>[.<frac>]s``, where minutes are written
    (even ``0m``) whenever hours are.
    """
    ns = int(ns)
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    u = -ns if ns < 0 else ns
    if u < NS:
        if u < 1000:
            return f"{sign}{u}ns"
        if u < 1_000_000:
            return f"{sign}{_fixed(u, 3)}\u00b5s"
        return f"{sign}{_fixed(u, 6)}ms"
    total_mins, rest = divmod(u, 60 * NS)
    out = _fixed(rest, 9) + "s"
    if total_mins:
        hours, mins = divmod(total_mins, 60)
        out = f"{mins}m" + out
        if hours:
            out = f"{hours}h" + out
    return sign + out


def rtt(seconds: float | None) -> str:
    """A connection's ``rtt``: Go duration text, truncated to whole microseconds
    between 1 µs and 1 ms as nats-server does. ``None``/0 is ``"0s"``."""
    if not seconds:
        return "0s"
    ns = round(seconds * NS)
    if 1000 < ns < 1_000_000:
        ns -= ns % 1000
    return go_duration(ns)


# --------------------------------------------------------------------------- JSON text


def go_float(f: float) -> str:
    """A float64 as encoding/json writes it: shortest digits, positional notation
    between 1e-6 and 1e21 (``2``, ``0.5``), exponent form outside (``1e-7``, ``1e+21``)."""
    if f != f or f in (float("inf"), float("-inf")):
        # encoding/json refuses these; 0 keeps the document decodable.
        return "0"
    if f == 0:
        return "0"
    r = repr(f)  # shortest round-trip digits, as Go's 'g'/-1 precision
    a = abs(f)
    if a < 1e-6 or a >= 1e21:
        # repr is already in exponent form here, with at least two exponent digits
        # like strconv's 'e' format; encoding/json then shortens "e-07" to "e-7".
        mant, _, exp = r.partition("e")
        if mant.endswith(".0"):
            mant = mant[:-2]
        if len(exp) == 3 and exp[0] == "-" and exp[1] == "0":
            exp = "-" + exp[2]
        return f"{mant}e{exp}"
    if "e" in r:
        r = format(Decimal(r), "f")
    if r.endswith(".0"):
        r = r[:-2]
    return r


_encode_str = json.encoder.encode_basestring  # C-accelerated; escapes only what JSON needs
_HTML_UNSAFE = re.compile("[<>&\u2028\u2029]")
_HTML_SAFE = str.maketrans(
    {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
)


def _string(s: str) -> str:
    text = _encode_str(s)
    if _HTML_UNSAFE.search(s) is not None:
        text = text.translate(_HTML_SAFE)
    return text


def _scalar(v: object) -> str:
    t = type(v)
    if t is str:
        return _string(v)  # type: ignore[arg-type]
    if t is int:
        return int.__repr__(v)  # type: ignore[arg-type]
    if v is True:
        return "true"
    if v is False:
        return "false"
    if v is None:
        return "null"
    if t is float:
        return go_float(v)  # type: ignore[arg-type]
    # subclasses (IntEnum, str subclasses, ...)
    if isinstance(v, str):
        return _string(v)
    if isinstance(v, int):
        return int.__repr__(v)
    if isinstance(v, float):
        return go_float(v)
    raise TypeError(f"not JSON serialisable: {type(v).__name__}")


def _indent(v: object, pad: str, out: list[str]) -> None:
    # One list append per line where possible: this runs for every value of a
    # /connz page, so the Python-level work per value is kept small.
    if isinstance(v, dict):
        if not v:
            out.append("{}")
            return
        inner = pad + "  "
        sep = "{\n" + inner
        for k, item in v.items():
            if isinstance(item, (dict, list, tuple)):
                out.append(f"{sep}{_string(k)}: ")
                _indent(item, inner, out)
            else:
                out.append(f"{sep}{_string(k)}: {_scalar(item)}")
            sep = ",\n" + inner
        out.append("\n" + pad + "}")
    elif isinstance(v, (list, tuple)):
        if not v:
            out.append("[]")
            return
        inner = pad + "  "
        sep = "[\n" + inner
        for item in v:
            if isinstance(item, (dict, list, tuple)):
                out.append(sep)
                _indent(item, inner, out)
            else:
                out.append(sep + _scalar(item))
            sep = ",\n" + inner
        out.append("\n" + pad + "]")
    else:
        out.append(_scalar(v))


def dumps(v: object) -> str:
    """``json.MarshalIndent(v, "", "  ")``: two-space indent, no trailing newline."""
    out: list[str] = []
    _indent(v, "", out)
    return "".join(out)


def _compact(v: object, out: list[str]) -> None:
    if isinstance(v, dict):
        out.append("{")
        first = True
        for k, item in v.items():
            if not first:
                out.append(",")
            first = False
            out.append(_string(k))
            out.append(":")
            _compact(item, out)
        out.append("}")
    elif isinstance(v, (list, tuple)):
        out.append("[")
        for i, item in enumerate(v):
            if i:
                out.append(",")
            _compact(item, out)
        out.append("]")
    else:
        out.append(_scalar(v))


def dumps_compact(v: object) -> str:
    """``json.Marshal(v)``: one line, no spaces (``/healthz`` uses it)."""
    out: list[str] = []
    _compact(v, out)
    return "".join(out)


# --------------------------------------------------------------------------- query values


_TRUE = frozenset(("1", "t", "T", "TRUE", "true", "True"))
_FALSE = frozenset(("0", "f", "F", "FALSE", "false", "False"))
_INT64_MAX = (1 << 63) - 1
_UINT64_MAX = (1 << 64) - 1


def parse_bool(name: str, value: str | None) -> bool:
    """Go ``strconv.ParseBool``; empty or absent is false (nats-server's decodeBool)."""
    if not value:
        return False
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise BadRequest(
        f"Error decoding boolean for '{name}': strconv.ParseBool: parsing "
        f"{go_quote(value)}: invalid syntax"
    )


def _digits(s: str) -> bool:
    # str.isdigit() accepts non-ASCII digits; Go only 0-9.
    return bool(s) and s.isascii() and s.isdigit()


def parse_int(name: str, value: str | None) -> int:
    """Go ``strconv.Atoi`` (64-bit); empty or absent is 0 (nats-server's decodeInt)."""
    if not value:
        return 0
    body = value[1:] if value[0] in "+-" else value
    if not _digits(body):
        raise BadRequest(
            f"Error decoding int for '{name}': strconv.Atoi: parsing {go_quote(value)}: "
            "invalid syntax"
        )
    n = int(value)
    if n > _INT64_MAX or n < -_INT64_MAX - 1:
        raise BadRequest(
            f"Error decoding int for '{name}': strconv.Atoi: parsing {go_quote(value)}: "
            "value out of range"
        )
    return n


def parse_uint64(name: str, value: str | None) -> int:
    """Go ``strconv.ParseUint(s, 10, 64)``; empty or absent is 0 (decodeUint64)."""
    if not value:
        return 0
    if not _digits(value):
        raise BadRequest(
            f"Error decoding uint64 for '{name}': strconv.ParseUint: parsing "
            f"{go_quote(value)}: invalid syntax"
        )
    n = int(value)
    if n > _UINT64_MAX:
        raise BadRequest(
            f"Error decoding uint64 for '{name}': strconv.ParseUint: parsing "
            f"{go_quote(value)}: value out of range"
        )
    return n
