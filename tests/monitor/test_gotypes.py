"""Go-typed JSON helpers: the value dialects of nats-conventions §1.2, checked
against Go's documented outputs, and the strconv parse errors of §1.1."""

from __future__ import annotations

import json

import pytest

from hybridbus.monitor.gotypes import (
    BadRequest,
    dumps,
    dumps_compact,
    go_duration,
    go_float,
    go_quote,
    parse_bool,
    parse_int,
    parse_uint64,
    rfc3339,
    rfc3339_ns,
    rtt,
    uptime,
)
from tests.monitor.gocheck import is_go_time, is_rtt, is_uptime

SECOND = 1_000_000_000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE


@pytest.mark.parametrize(
    "ns, text",
    [
        # time.Duration.String() outputs from Go's own test table
        (0, "0s"),
        (1, "1ns"),
        (1100, "1.1\u00b5s"),
        (2_200_000, "2.2ms"),
        (3_300_000_000, "3.3s"),
        (4 * MINUTE + 5 * SECOND, "4m5s"),
        (4 * MINUTE + 5001 * 1_000_000, "4m5.001s"),
        (5 * HOUR + 6 * MINUTE + 7001 * 1_000_000, "5h6m7.001s"),
        (8 * MINUTE + 1, "8m0.000000001s"),
        ((1 << 63) - 1, "2562047h47m16.854775807s"),
        (-(1 << 63), "-2562047h47m16.854775808s"),
        (HOUR, "1h0m0s"),
        (62_500_000_000, "1m2.5s"),
        (-1500, "-1.5\u00b5s"),
    ],
)
def test_go_duration_matches_go(ns, text):
    assert go_duration(ns) == text
    assert is_rtt(text)


@pytest.mark.parametrize(
    "seconds, text",
    [
        (0, "0s"),
        (None, "0s"),
        (0.000521789, "521\u00b5s"),  # 1 µs < rtt < 1 ms: truncated to whole µs
        (0.0000005, "500ns"),
        (0.0012345678, "1.234568ms"),
        (62.5, "1m2.5s"),
    ],
)
def test_rtt_dialect(seconds, text):
    assert rtt(seconds) == text


@pytest.mark.parametrize(
    "seconds, text",
    [
        (0, "0s"),
        (-3, "0s"),
        (5.9, "5s"),
        (28 * 60 + 11, "28m11s"),
        (3605, "1h0m5s"),
        (3 * 86400 + 2 * 3600 + 1, "3d2h0m1s"),
        (375 * 86400 + 3 * 3600 + 4 * 60 + 5, "1y10d3h4m5s"),
        (365 * 86400, "1y0d0h0m0s"),
    ],
)
def test_uptime_dialect(seconds, text):
    assert uptime(seconds) == text
    assert is_uptime(text)


def test_uptime_checker_rejects_other_dialects():
    for bad in ("0h0m5s", "5", "1h5s", "61s0", "1m60s", "1.5s", "0m1s"):
        assert not is_uptime(bad), bad


def test_rfc3339_nano_trims_and_is_utc():
    assert rfc3339_ns(1_795_313_256_658_128_180) == "2026-11-22T02:07:36.65812818Z"
    assert rfc3339_ns(1_795_313_256_000_000_000) == "2026-11-22T02:07:36Z"
    assert rfc3339_ns(1_795_313_256_500_000_000) == "2026-11-22T02:07:36.5Z"
    # floats are rounded to microseconds, not printed with noise digits
    assert rfc3339(1_795_313_256.658128) == "2026-11-22T02:07:36.658128Z"
    assert rfc3339(0) == "0001-01-01T00:00:00Z"
    for t in ("2026-11-22T02:07:36.65812818Z", "0001-01-01T00:00:00Z"):
        assert is_go_time(t)
    for t in ("2026-11-22T02:07:36.650Z", "2026-11-22T02:07:36+00:00", "2026-13-22T02:07:36Z"):
        assert not is_go_time(t)


@pytest.mark.parametrize(
    "value, text",
    [
        (2.0, "2"),
        (0.5, "0.5"),
        (-3.0, "-3"),
        (0.0576486, "0.0576486"),
        (1e-5, "0.00001"),
        (1e20, "100000000000000000000"),
        (1e21, "1e+21"),
        (1e-7, "1e-7"),
        (1.5e-10, "1.5e-10"),
        (0.0, "0"),
    ],
)
def test_go_float(value, text):
    assert go_float(value) == text


def test_dumps_is_marshal_indent():
    doc = {
        "a": 1,
        "b": [],
        "c": {},
        "d": [{"x": "y"}, 3, True, None],
        "e": "\u00b5s \u00e9",
        "f": [[1, 2], {"g": {"h": []}}],
    }
    text = dumps(doc)
    # No floats: byte-identical to Python's indent=2 without ASCII escaping.
    assert text == json.dumps(doc, indent=2, ensure_ascii=False)
    assert not text.endswith("\n")
    assert dumps({"auth_timeout": 2.0}) == '{\n  "auth_timeout": 2\n}'


def test_dumps_html_safe_escapes():
    text = dumps({"subject": "orders.>", "q": "a<b&c", "sep": "\u2028"})
    assert '"orders.\\u003e"' in text
    assert '"a\\u003cb\\u0026c"' in text
    assert '"\\u2028"' in text
    assert json.loads(text) == {"subject": "orders.>", "q": "a<b&c", "sep": "\u2028"}
    assert dumps_compact({"status": "ok"}) == '{"status":"ok"}'


def test_dumps_rejects_unknown_types():
    with pytest.raises(TypeError):
        dumps({"x": object()})


def test_parse_bool_accepts_go_spellings():
    for v in ("1", "t", "T", "TRUE", "true", "True"):
        assert parse_bool("auth", v) is True
    for v in ("0", "f", "F", "FALSE", "false", "False", "", None):
        assert parse_bool("auth", v) is False
    with pytest.raises(BadRequest) as e:
        parse_bool("auth", "maybe")
    assert e.value.text == (
        "Error decoding boolean for 'auth': strconv.ParseBool: parsing \"maybe\": invalid syntax"
    )
    with pytest.raises(BadRequest):
        parse_bool("auth", "yes")


def test_parse_int_and_uint64_errors():
    assert parse_int("offset", "-3") == -3
    assert parse_int("offset", "+7") == 7
    assert parse_int("offset", None) == 0
    with pytest.raises(BadRequest) as e:
        parse_int("offset", "x")
    assert e.value.text == (
        "Error decoding int for 'offset': strconv.Atoi: parsing \"x\": invalid syntax"
    )
    with pytest.raises(BadRequest) as e:
        parse_int("limit", "99999999999999999999")
    assert e.value.text.endswith(': parsing "99999999999999999999": value out of range')
    with pytest.raises(BadRequest):
        parse_int("limit", "\u0663")  # a non-ASCII digit: Go says invalid syntax
    assert parse_uint64("cid", "18446744073709551615") == (1 << 64) - 1
    with pytest.raises(BadRequest) as e:
        parse_uint64("cid", "abc")
    assert e.value.text == (
        "Error decoding uint64 for 'cid': strconv.ParseUint: parsing \"abc\": invalid syntax"
    )
    for bad in ("-1", "+1", "1.0"):
        with pytest.raises(BadRequest):
            parse_uint64("cid", bad)


def test_go_quote():
    assert go_quote('a"b\\c') == '"a\\"b\\\\c"'
    assert go_quote("x\ny\x01") == '"x\\ny\\x01"'
    assert go_quote("\u00e9") == '"\u00e9"'
