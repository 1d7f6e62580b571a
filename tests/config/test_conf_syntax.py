"""The NATS config syntax: what text parses to which values, and where.

Expected values were checked against nats-server 2.15.1 (`nats-server -t`
digests and error lines; see also test_conf_nats_agreement.py)."""

from __future__ import annotations

import datetime as dt

import pytest

from hybridbus.config import ConfigError, config_digest, parse, parse_file, parse_nodes
from hybridbus.config.lexer import lex


def one(text: str):
    """The value of key `v` in a one-line document."""
    return parse(f"v: {text}\n")["v"]


def parse_error(text: str, filename: str = "t.conf") -> str:
    with pytest.raises(ConfigError) as info:
        parse(text, filename)
    assert len(info.value.lines) == 1
    return info.value.lines[0]


# -- key/value forms ------------------------------------------------------------


@pytest.mark.parametrize(
    "text", ["port: 4222", "port = 4222", "port 4222", "port:4222", "port\t4222"]
)
def test_key_value_separators(text):
    assert parse(text) == {"port": 4222}


@pytest.mark.parametrize(
    "text",
    ["a: 1; b: 2", "a: 1, b: 2", "a: 1\nb: 2", "a: 1\r\nb: 2\r\n", "a: 1 ; b: 2;", "a=1,b=2"],
)
def test_value_terminators(text):
    assert parse(text) == {"a": 1, "b": 2}


def test_top_level_braces_make_json_files_parse():
    text = '{\n  "port": 4222,\n  "jetstream": {"store_dir": "/tmp/x", "max_file_store": 10},\n  "tags": ["a", "b"]\n}\n'
    assert parse(text) == {
        "port": 4222,
        "jetstream": {"store_dir": "/tmp/x", "max_file_store": 10},
        "tags": ["a", "b"],
    }
    assert parse("{{port: 1}}") == {"port": 1}
    assert parse("{ port: 1, debug: true, }") == {"port": 1, "debug": True}


def test_stray_closing_brace_after_value_is_accepted():
    assert parse("listen: 127.0.0.1:4222 }") == {"listen": "127.0.0.1:4222"}
    assert parse("port: 1\n}") == {"port": 1}


def test_nested_maps_with_and_without_separator():
    text = "a { b { c: 1 }\n d = { e f } }\ng: {}"
    assert parse(text) == {"a": {"b": {"c": 1}, "d": {"e": "f"}}, "g": {}}


def test_map_entries_separated_by_newline_comma_semicolon():
    assert parse("m { a: 1, b: 2; c: 3\n d 4, }") == {"m": {"a": 1, "b": 2, "c": 3, "d": 4}}


def test_arrays_trailing_comma_newlines_and_maps_inside():
    assert parse("a: [1, 2, 3,]") == {"a": [1, 2, 3]}
    assert parse("a: [\n  x\n  y,\n  z\n]") == {"a": ["x", "y", "z"]}
    assert parse("a: [{u: 1}, {u: 2}]") == {"a": [{"u": 1}, {"u": 2}]}
    assert parse("a: [[1, 2 ], []]") == {"a": [[1, 2], []]}
    assert parse("a: []") == {"a": []}


def test_comments_everywhere():
    text = """# top
// also top
a: 1 # after a value
b: 2 // after a value
m {
  # inside a map
  c: 3 // trailing
}
l: [ # inside an array
  4 // trailing
  5
]
"""
    assert parse(text) == {"a": 1, "b": 2, "m": {"c": 3}, "l": [4, 5]}


def test_quoted_keys():
    assert parse('"a b": 1\n\'c\': 2\nm { "d e": 3 }') == {"a b": 1, "c": 2, "m": {"d e": 3}}


def test_duplicate_keys_last_wins():
    assert parse("a: 1\na: 2\nm { x: 1, x: 2 }") == {"a": 2, "m": {"x": 2}}


def test_empty_documents():
    assert parse("") == {}
    assert parse("# nothing here\n\n// or here\n") == {}


# -- strings ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, value",
    [
        (r'"tab\there"', "tab\there"),
        (r'"nl\nx"', "nl\nx"),
        (r'"cr\rx"', "cr\rx"),
        (r'"q\"x"', 'q"x'),
        (r'"bs\\x"', "bs\\x"),
        (r'"\x41\x42"', "AB"),
        (r'"\xc3\xa9"', "é"),  # \x escapes are bytes: two of them make one UTF-8 character
        (r"'raw\qx\n'", "raw\\qx\\n"),  # single quotes are raw
        (r"unquoted\tvalue", "unquoted\tvalue"),  # unquoted strings take escapes too
        ('"multi\nline"', "multi\nline"),
        ('""', ""),
        ("/var/log/x.log", "/var/log/x.log"),
        ("my-server.1", "my-server.1"),
        ("127.0.0.1:4222", "127.0.0.1:4222"),
        ("a#b", "a#b"),  # '#' inside an unquoted string is not a comment
        ('"true"', "true"),  # quoted booleans stay strings
        ("x$y", "x$y"),
    ],
)
def test_string_forms(text, value):
    assert one(text) == value


def test_only_listed_escapes_are_allowed():
    msg = (
        "Parse error on line 1: 'Invalid escape character 'q'. Only the following escape "
        "characters are allowed: \\xXX, \\t, \\n, \\r, \\\", \\\\.'"
    )
    assert parse_error('server_name: "a\\qb"') == msg
    assert parse_error("server_name: a\\qb") == msg


def test_bad_hex_escapes():
    assert (
        parse_error('v: "a\\xZZb"')
        == "Parse error on line 1: 'Expected two hexadecimal digits after '\\x', but got 'ZZ''"
    )
    assert (
        parse_error('v: "a\\x4"')
        == "Parse error on line 1: 'Expected two hexadecimal digits after '\\x', but got '4\"''"
    )


def test_block_strings():
    # The block runs from after '(' to the newline before a ')' alone on its line.
    assert parse("v (\nline one\n  line two\n)\n") == {"v": "\nline one\n  line two\n"}
    assert parse("m { v: (\nx\n)\n}") == {"m": {"v": "\nx\n"}}
    # A ')' that is not alone on its line does not end the block.
    assert parse("v: (\nx\n)x\n)\n") == {"v": "\nx\n)x\n"}
    # At the very end of the file the closing ')' is kept (as nats-server does).
    assert parse("v (\nabc\n)") == {"v": "\nabc\n)"}
    assert parse_error("v: (abc)") == "Parse error on line 1: 'Unexpected EOF processing block.'"


@pytest.mark.parametrize(
    "text, line",
    [("v: 'abc", 1), ('v: "abc', 1), ('"v: 1', 1), ("/", 1), ("a: 1\n/", 2)],
)
def test_unexpected_eof(text, line):
    assert parse_error(text) == f"Parse error on line {line}: 'Unexpected EOF.'"


# -- booleans, numbers, dates --------------------------------------------------------


@pytest.mark.parametrize(
    "text, value",
    [
        ("true", True),
        ("TRUE", True),
        ("yes", True),
        ("On", True),
        ("false", False),
        ("no", False),
        ("OFF", False),
    ],
)
def test_booleans(text, value):
    assert one(text) is value


@pytest.mark.parametrize(
    "text, value",
    [
        ("0", 0),
        ("42", 42),
        ("-1", -1),
        ("1k", 1000),
        ("1K", 1000),
        ("2m", 2_000_000),  # the trap: an integer, not two minutes
        ("1g", 10**9),
        ("1G", 10**9),
        ("1t", 10**12),
        ("1p", 10**15),
        ("1e", 10**18),
        ("1kb", 1024),
        ("1KB", 1024),
        ("2Ki", 2048),
        ("1kib", 1024),
        ("1mb", 1 << 20),
        ("1mib", 1 << 20),
        ("3gb", 3 << 30),
        ("1tb", 1 << 40),
        ("1pb", 1 << 50),
        ("1eb", 1 << 60),
        ("-1k", -1000),
        ("10e", 10 * 10**18 - (1 << 64)),  # int64 arithmetic wraps, as in nats-server
    ],
)
def test_integers_and_size_suffixes(text, value):
    assert one(text) == value


@pytest.mark.parametrize(
    "text",
    [
        "90s",
        "1h30m",
        "500ms",
        "1m30s",
        "-1m30s",
        "2mx",
        "1e3",
        "1k5",
        "1kbx",
        "12:30",
        "1_000",
        "0x10",
    ],
)
def test_number_like_words_are_strings(text):
    # Durations only work because they lex as strings; always quote them.
    assert one(text) == text


def test_digit_then_bracket_quirk():
    # nats-server swallows the character after a number's digits into a string,
    # even ']': "1]" is a string, and so "[1]" fails to lex.  We keep that.
    assert one("1]") == "1]"
    assert (
        parse_error("v: [1]")
        == 'Parse error on line 1: \'Expected an array value terminator "," or an array '
        "terminator \"]\", but got '\x00' instead.'"
    )
    assert parse("v: [1, 2 ]") == {"v": [1, 2]}


def test_unknown_suffix_value_is_dropped():
    # "1kibi" lexes as an integer whose suffix is unknown: nats-server drops it.
    assert parse("a: 1kibi\nb: 2") == {"b": 2}


def test_fractional_duration_unquoted_is_a_parse_error():
    assert parse_error("ping_interval: 1.5s") == (
        "Parse error on line 1: 'Expected a top-level value to end with a new line, "
        "comment or EOF, but got 's' instead.'"
    )


def test_floats_and_addresses():
    assert one("1.5") == 1.5
    assert one("-0.25") == -0.25
    assert one("1.2.3.4") == "1.2.3.4"
    assert one("10.0.0.1:4222") == "10.0.0.1:4222"
    assert parse_error("v: .5") == "Parse error on line 1: 'Floats must start with a digit'"
    assert parse_error("v: 1.x") == (
        "Parse error on line 1: 'Floats must have a digit after the '.', but got 'x' instead.'"
    )


def test_integer_out_of_range():
    assert (
        parse_error("v: 99999999999999999999")
        == "integer '99999999999999999999' is out of the range"
    )


def test_datetimes_are_zulu_only():
    assert one("2024-01-02T03:04:05Z") == dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    assert parse_error("v: 2024-01-02") == (
        "Parse error on line 1: 'Expected 'T' in ISO8601 datetime, but found '\x00' instead.'"
    )
    assert (
        parse_error("v: 12345-")
        == "Parse error on line 1: 'All ISO8601 dates must be in full Zulu form.'"
    )
    assert parse_error("v: 2024-13-02T03:04:05Z") == (
        "expected Zulu formatted DateTime, but got '2024-13-02T03:04:05Z'"
    )


# -- structural errors -----------------------------------------------------------------


@pytest.mark.parametrize(
    "text, msg",
    [
        ("authorization { user: a\n", "Parse error on line 2: 'Unexpected EOF processing map.'"),
        ("=port: 1", "Parse error on line 1: 'Unexpected key separator '=''"),
        ("m { =a }", "Parse error on line 1: 'Unexpected key separator '='.'"),
        ("m { ]}", "Parse error on line 1: 'Unexpected array end ']' processing map.'"),
        ("m {a", "Parse error on line 1: 'Unexpected EOF processing map key.'"),
        ('m {"a', "Parse error on line 1: 'Unexpected EOF processing double quoted map key.'"),
        ("a: [,a]", "Parse error on line 1: 'Unexpected array value terminator ','.'"),
        (
            "a: 1 b",
            "Parse error on line 1: 'Expected a top-level value to end with a new line, comment or EOF, but got 'b' instead.'",
        ),
        (
            "m { a: b c }",
            "Parse error on line 1: 'Expected a map value terminator \",\" or a map terminator \"}\", but got 'c' instead.'",
        ),
        (
            "{ a: 1",
            "Parse error on line 1: 'Expected a block-level value to end with a new line, comment or EOF, but got '\x00' instead.'",
        ),
        ("v: -a", "Parse error on line 1: 'Expected a digit but got 'a'.'"),
        ("v:\n", "Parse error on line 2: 'Expected value but found new line'"),
        ("port", "config is invalid (t.conf:1:4)"),
        ("a: 1\nfoo", "config is invalid (t.conf:2:4)"),
    ],
)
def test_structural_errors(text, msg):
    assert parse_error(text) == msg


def test_key_without_value_before_map_end_is_filed_under_that_key():
    # nats-server quirk: "{ a: }" leaves 'a' waiting, and the map then lands under 'a'.
    assert parse("m { a: }") == {"a": {}}


# -- positions -------------------------------------------------------------------------


def test_positions_line_one_is_zero_based_then_one_based():
    nodes = parse_nodes("a: 1\n  b: 2\nm { c: 3 }\n", "x.conf")
    assert (nodes["a"].line, nodes["a"].col) == (1, 0)
    assert (nodes["b"].line, nodes["b"].col) == (2, 3)
    assert nodes["m"].where == "x.conf:3:1"
    assert nodes["m"].value["c"].where == "x.conf:3:5"
    nodes = parse_nodes('jetstream { store_dir: "/data/x", bogus: 1 }', "u.conf")
    assert nodes["jetstream"].value["bogus"].where == "u.conf:1:34"


def test_positions_count_bytes_and_tabs():
    nodes = parse_nodes('pid_file: "é"; foo: 1\n\tbar: 2', "c.conf")
    assert nodes["foo"].col == 16  # 'é' is two bytes
    assert (nodes["bar"].line, nodes["bar"].col) == (2, 2)


def test_array_elements_keep_their_own_positions():
    nodes = parse_nodes("v: [a, {b: 1}]", "c.conf")
    first, second = nodes["v"].value
    assert first.where == "c.conf:1:4"
    assert second.value["b"].where == "c.conf:1:8"


def test_lexer_items_for_a_small_document():
    kinds = [(i.kind, i.val) for i in lex("a: [1, x]\nb { c: $V }")]
    assert kinds == [
        ("key", "a"),
        ("array_start", ""),
        ("integer", "1"),
        ("string", "x"),
        ("array_end", ""),
        ("key", "b"),
        ("map_start", ""),
        ("key", "c"),
        ("variable", "V"),
        ("map_end", ""),
        ("eof", ""),
    ]


# -- variables ---------------------------------------------------------------------------


def test_variables_resolve_in_enclosing_scopes_innermost_first():
    text = "V = 1\nm { V: x, a: $V }\nb: $V\nl: [$V, $V]"
    assert parse(text) == {"V": 1, "m": {"V": "x", "a": "x"}, "b": 1, "l": [1, 1]}


def test_variable_can_hold_maps_and_arrays():
    assert parse("V: {a: 1}\nW: [x]\nm: $V\nl: $W") == {
        "V": {"a": 1},
        "W": ["x"],
        "m": {"a": 1},
        "l": ["x"],
    }


def test_variables_are_case_sensitive_and_must_come_first():
    assert parse_error("V: x\nv: $v") == "variable reference for 'v' on line 2 can not be found"
    assert (
        parse_error("port: $LATER\nLATER: 1")
        == "variable reference for 'LATER' on line 1 can not be found"
    )
    # A variable defined inside a block is not visible outside it.
    assert (
        parse_error("m { V: x }\np: $V") == "variable reference for 'V' on line 2 can not be found"
    )


def test_used_variables_are_flagged_and_redefinition_is_not():
    nodes = parse_nodes("V: x\nW: y\na: $V\nV: z")
    assert nodes["W"].used is False
    # The second V replaced the used one: it is a new, unused definition.
    assert nodes["V"].used is False
    assert parse_nodes("V: x\na: $V")["V"].used is True


def test_environment_values_are_parsed_as_config_values(monkeypatch):
    monkeypatch.setenv("HB_SIZE", "2MB")
    monkeypatch.setenv("HB_FLAG", "true")
    monkeypatch.setenv("HB_LIST", '["a","b"]')
    monkeypatch.setenv("HB_STR", "hello")
    monkeypatch.setenv("HB_EMPTY", "")
    assert parse("a: $HB_SIZE\nb: $HB_FLAG\nc: $HB_LIST\nd: $HB_STR\ne: $HB_EMPTY") == {
        "a": 2097152,
        "b": True,
        "c": ["a", "b"],
        "d": "hello",
        "e": "",
    }


def test_file_variables_shadow_the_environment(monkeypatch):
    monkeypatch.setenv("HB_X", "from-env")
    assert parse("HB_X: from-file\na: $HB_X")["a"] == "from-file"


def test_environment_cycles_are_detected(monkeypatch):
    monkeypatch.setenv("HB_A", "$HB_B")
    monkeypatch.setenv("HB_B", "$HB_A")
    assert parse_error("v: $HB_A") == (
        "variable reference for 'HB_A' on line 1 could not be parsed: "
        "variable reference for 'HB_B' on line 1 could not be parsed: "
        "variable reference for 'HB_A' on line 1 could not be parsed: "
        "variable reference cycle for 'HB_A'"
    )
    monkeypatch.setenv("HB_SELF", "$HB_SELF")
    assert parse_error("v: $HB_SELF").endswith("variable reference cycle for 'HB_SELF'")


def test_bad_environment_value(monkeypatch):
    monkeypatch.setenv("HB_BAD", "a b")
    assert parse_error("v: $HB_BAD") == (
        "variable reference for 'HB_BAD' on line 1 could not be parsed: Parse error on line 1: "
        "'Expected a top-level value to end with a new line, comment or EOF, but got 'b' instead.'"
    )


def test_bcrypt_2a_prefix_is_not_a_variable():
    assert one("$2a$11$abcdefghijklmnopqrstuu") == "$2a$11$abcdefghijklmnopqrstuu"
    assert one('"$2b$11$abc"') == "$2b$11$abc"
    assert (
        parse_error("v: $2b$11$abc")
        == "variable reference for '2b$11$abc' on line 1 can not be found"
    )
    assert parse_error("v: $") == "variable reference for '' on line 1 can not be found"


# -- include -------------------------------------------------------------------------------


def test_include_relative_to_the_including_file(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "inner.conf").write_text("b: 2\ninclude deeper.conf\n")
    (tmp_path / "sub" / "deeper.conf").write_text("c: 3\n")
    (tmp_path / "main.conf").write_text('a: 1\ninclude "sub/inner.conf"\nd: 4\n')
    assert parse_file(str(tmp_path / "main.conf")) == {"a": 1, "b": 2, "c": 3, "d": 4}


@pytest.mark.parametrize(
    "form", ["include inc.conf", 'include "inc.conf"', "include 'inc.conf'", "INCLUDE inc.conf"]
)
def test_include_forms(tmp_path, form):
    (tmp_path / "inc.conf").write_text("x: 1\n")
    (tmp_path / "main.conf").write_text(form + "\n")
    assert parse_file(str(tmp_path / "main.conf")) == {"x": 1}


def test_include_inside_a_block_merges_into_it(tmp_path):
    (tmp_path / "users.conf").write_text("a: b\n")
    (tmp_path / "main.conf").write_text("m {\n  include users.conf\n  c: d\n}\n")
    assert parse_file(str(tmp_path / "main.conf")) == {"m": {"a": "b", "c": "d"}}


def test_include_is_a_separate_document(tmp_path, monkeypatch):
    (tmp_path / "v.conf").write_text("port: $V\n")
    (tmp_path / "main.conf").write_text("V: 1\ninclude v.conf\n")
    with pytest.raises(ConfigError) as info:
        parse_file(str(tmp_path / "main.conf"))
    assert info.value.lines == [
        "error parsing include file 'v.conf', variable reference for 'V' on line 1 can not be found"
    ]
    monkeypatch.setenv("V", "7")  # the environment still works inside an include
    assert parse_file(str(tmp_path / "main.conf"))["port"] == 7


def test_later_keys_override_included_ones_and_vice_versa(tmp_path):
    (tmp_path / "a.conf").write_text("p: inc\n")
    (tmp_path / "m1.conf").write_text("include a.conf\np: main\n")
    (tmp_path / "m2.conf").write_text("p: main\ninclude a.conf\n")
    assert parse_file(str(tmp_path / "m1.conf")) == {"p": "main"}
    assert parse_file(str(tmp_path / "m2.conf")) == {"p": "inc"}


def test_included_values_keep_their_file_and_position(tmp_path):
    (tmp_path / "inc.conf").write_text("\n  x: 1\n")
    main = tmp_path / "main.conf"
    main.write_text("include inc.conf\n")
    from hybridbus.config import parse_file_nodes

    node = parse_file_nodes(str(main))["x"]
    assert (node.file, node.line, node.col) == (str(tmp_path / "inc.conf"), 2, 3)


def test_include_errors(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.conf").write_text('x: "a\\q"\n')
    (tmp_path / "dir").mkdir()
    cases = {
        "include ./missing.conf": "error parsing include file './missing.conf', open missing.conf: no such file or directory",
        "include bad.conf": "error parsing include file 'bad.conf', Parse error on line 1: 'Invalid escape character 'q'. Only the following escape characters are allowed: \\xXX, \\t, \\n, \\r, \\\", \\\\.'",
        "include dir": "error parsing include file 'dir', read dir: is a directory",
        "include [a]": "Parse error on line 1: 'Expected include value but found start of an array'",
        "include 5": "Parse error on line 1: 'Expected include value but found start of a number'",
        'include "abc': "Parse error on line 1: 'Unexpected EOF in double quoted include'",
    }
    for text, msg in cases.items():
        (tmp_path / "main.conf").write_text(text)
        with pytest.raises(ConfigError) as info:
            parse_file("main.conf")
        assert info.value.lines == [msg], text


def test_include_cycle_is_refused(tmp_path):
    (tmp_path / "a.conf").write_text("include b.conf\n")
    (tmp_path / "b.conf").write_text("include a.conf\n")
    with pytest.raises(ConfigError) as info:
        parse_file(str(tmp_path / "a.conf"))
    assert "include depth exceeds" in info.value.lines[0]
    assert info.value.lines[0].startswith("error parsing include file 'b.conf', ")


def test_include_keyword_needs_a_blank():
    assert parse("include: x") == {"include": "x"}


def test_missing_main_file(tmp_path):
    with pytest.raises(ConfigError) as info:
        parse_file(str(tmp_path / "nope.conf"))
    assert info.value.lines == [f"open {tmp_path / 'nope.conf'}: no such file or directory"]


# -- digest --------------------------------------------------------------------------------


def test_digest_matches_nats_server_values():
    # Digests printed by `nats-server -t` (v2.15.1) for these files.
    assert config_digest(parse("port: 4222")) == (
        "sha256:797533ebd0dfba7d34a0f9337ecf147e442871f48ddfd07ed751575a5737267e"
    )
    assert config_digest(parse("port = 4222 ;  # same map, other spelling")) == config_digest(
        parse("port: 4222")
    )
    # Used variables stay in the digested map.
    assert config_digest(parse("a = 1\nport: $a")) == (
        "sha256:a4674c0c66dc793076b14a24edf2ceedf3ad31488e51ee3a2f93e065cc621501"
    )
    assert config_digest(parse("ping_interval: 1m30s")) == (
        "sha256:b623631b3843ea3a92cf1c980e77d842c4572b422e0603361f3d2ab6f78c1180"
    )


def test_canonical_json_follows_go_encoding():
    from hybridbus.config import canonical_json

    doc = {"b": [1, 1.5, 100.0, 1e21, 1e-7, True], "a": "<&>\u2028", "c": {"z": None}}
    assert canonical_json(doc) == (
        '{"a":"\\u003c\\u0026\\u003e\\u2028","b":[1,1.5,100,1e+21,1e-7,true],"c":{"z":null}}\n'
    )
    stamp = dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    assert canonical_json({"t": stamp}) == '{"t":"2024-01-02T03:04:05Z"}\n'
