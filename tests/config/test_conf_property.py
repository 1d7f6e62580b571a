"""Property tests: any nested map, written out as NATS config text in any of the
equivalent styles, parses back to the same map (and the same digest)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hybridbus.config import config_digest, parse
from hybridbus.config.lexer import lex

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Quoted keys may hold anything but their own quote, a newline, or NUL (which the
# lexer, like nats-server's, reads as end of input).
keys = st.text(
    st.characters(blacklist_characters='"\n\r\x00', blacklist_categories=("Cs",)),
    min_size=1,
    max_size=12,
)
ints = st.integers(min_value=-(1 << 63), max_value=(1 << 63) - 1)
# Floats as the lexer writes them: digits, a point, digits (no exponent).
floats = st.builds(
    lambda whole, frac, neg: float(f"{'-' if neg else ''}{whole}.{frac}"),
    st.integers(0, 10**9),
    st.integers(0, 10**6),
    st.booleans(),
)
strings = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)
stamps = st.datetimes(min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(9999, 12, 31)).map(
    lambda d: d.replace(microsecond=0, tzinfo=dt.UTC)
)
scalars = st.one_of(ints, floats, st.booleans(), strings, stamps)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=4)),
    max_leaves=12,
)
documents = st.dictionaries(keys, values, max_size=6)


def quote(s: str) -> str:
    """A double-quoted string using only the escapes the format allows."""
    out = ['"']
    for ch in s:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


@dataclass
class Style:
    """One of the equivalent ways to write the same document."""

    sep: str
    term: str
    comments: bool
    braces: bool
    indent: str


styles = st.builds(
    Style,
    st.sampled_from([": ", " = ", " ", ":", "="]),
    st.sampled_from(["\n", "; ", ", ", ";\n", ",\n"]),
    st.booleans(),
    st.booleans(),
    st.sampled_from(["", "  ", "\t"]),
)


def render_value(v, style: Style, depth: int) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        # A number right before ']' is the one form nats-server cannot lex ("1]").
        return str(v)
    if isinstance(v, float):
        text = repr(v)
        if "e" in text or "inf" in text or "nan" in text:
            text = format(v, "f")
        return text
    if isinstance(v, str):
        return quote(v)
    if isinstance(v, dt.datetime):
        return f"{v.year:04d}-{v:%m-%dT%H:%M:%S}Z"
    if isinstance(v, list):
        inner = [render_value(e, style, depth + 1) for e in v]
        body = ", ".join(inner)
        return "[" + body + (", " if inner and style.comments else "") + " ]"
    if isinstance(v, dict):
        return "{" + render_body(v, style, depth + 1) + "}"
    raise TypeError(v)


def render_body(doc: dict, style: Style, depth: int) -> str:
    pad = style.indent * depth
    lines = []
    for k, v in doc.items():
        # Quoted keys are raw text: no escapes are processed inside them.
        line = f'{pad}"{k}"{style.sep}{render_value(v, style, depth)}'
        if style.comments:
            line += "  # note\n"
        else:
            line += style.term
        lines.append(line)
    if depth and lines:
        return "\n" + "".join(lines) + pad
    return "".join(lines)


def render(doc: dict, style: Style) -> str:
    text = render_body(doc, style, 0)
    if style.comments:
        text = "// written by a property test\n" + text
    if style.braces:
        text = "{\n" + text + "\n}\n"
    return text


@SETTINGS
@given(documents, styles)
def test_rendered_documents_parse_back_equal(doc, style):
    text = render(doc, style)
    assert parse(text) == doc


@SETTINGS
@given(documents, styles, styles)
def test_digest_ignores_formatting(doc, style_a, style_b):
    assert config_digest(parse(render(doc, style_a))) == config_digest(parse(render(doc, style_b)))


@SETTINGS
@given(st.text(max_size=60))
def test_lexer_always_ends_with_eof_or_error(text):
    items = lex(text)
    assert items[-1].kind in ("eof", "error")
    assert all(i.kind not in ("eof", "error") for i in items[:-1])


@SETTINGS
@given(
    st.lists(
        st.sampled_from(list("{}[]()=:;,#/\"'\\$ \n\t\rak19.-xTZ") + ["include ", "$2a$", "\\x4"]),
        max_size=40,
    ).map("".join)
)
def test_parser_never_crashes_on_junk(text):
    from hybridbus.config import ConfigError

    try:
        parse(text)
    except ConfigError as exc:
        assert exc.lines and all(isinstance(line, str) for line in exc.lines)
