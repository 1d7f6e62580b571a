"""The leaf-node codec without a socket: every message form nats-server's hub writes
(client.go msgHeaderForRouteOrLeaf), interest lines, split reads, bad input."""

from __future__ import annotations

import pytest

from hybridbus.codec.leaf import (
    LEAF_ERR,
    LEAF_ERROR,
    LEAF_INFO,
    LEAF_MSG,
    LEAF_OK,
    LEAF_PING,
    LEAF_PONG,
    LEAF_SUB,
    LEAF_UNSUB,
    LeafParser,
    encode_connect,
    encode_hmsg,
    encode_lmsg,
    encode_ls_minus,
    encode_ls_plus,
)

HDR = b"NATS/1.0\r\nA: b\r\n\r\n"

CASES = [
    (b"LMSG foo 2\r\nhi\r\n", (LEAF_MSG, "foo", None, None, None, b"hi")),
    (b"LMSG foo _INBOX.1 2\r\nhi\r\n", (LEAF_MSG, "foo", "_INBOX.1", None, None, b"hi")),
    (
        b"LMSG foo + _INBOX.1 g1 g2 2\r\nhi\r\n",
        (LEAF_MSG, "foo", "_INBOX.1", ["g1", "g2"], None, b"hi"),
    ),
    (b"LMSG foo | g1 2\r\nhi\r\n", (LEAF_MSG, "foo", None, ["g1"], None, b"hi")),
    (b"LMSG foo 0\r\n\r\n", (LEAF_MSG, "foo", None, None, None, b"")),
    (
        b"HMSG foo %d %d\r\n%shi\r\n" % (len(HDR), len(HDR) + 2, HDR),
        (LEAF_MSG, "foo", None, None, HDR, b"hi"),
    ),
    (
        b"HMSG foo + r q %d %d\r\n%shi\r\n" % (len(HDR), len(HDR) + 2, HDR),
        (LEAF_MSG, "foo", "r", ["q"], HDR, b"hi"),
    ),
    (
        b"HMSG foo | q %d %d\r\n%shi\r\n" % (len(HDR), len(HDR) + 2, HDR),
        (LEAF_MSG, "foo", None, ["q"], HDR, b"hi"),
    ),
    (b"LS+ foo.>\r\n", (LEAF_SUB, "foo.>", None, 0)),
    (b"LS+ work g1 3\r\n", (LEAF_SUB, "work", "g1", 3)),
    (b"LS- foo.>\r\n", (LEAF_UNSUB, "foo.>", None)),
    (b"LS- work g1\r\n", (LEAF_UNSUB, "work", "g1")),
    (b"PING\r\n", (LEAF_PING,)),
    (b"PONG\r\n", (LEAF_PONG,)),
    (b"+OK\r\n", (LEAF_OK,)),
    (b"-ERR 'Loop detected'\r\n", (LEAF_ERR, "Loop detected")),
    (b'INFO {"server_id":"x","nonce":"n"}\r\n', (LEAF_INFO, {"server_id": "x", "nonce": "n"})),
]


@pytest.mark.parametrize("wire, op", CASES)
def test_each_form_parses(wire, op):
    assert LeafParser().feed(wire) == [op]


def test_a_payload_with_crlf_inside_is_counted_not_scanned():
    assert LeafParser().feed(b"LMSG a 4\r\n\r\n\r\n\r\n") == [
        (LEAF_MSG, "a", None, None, None, b"\r\n\r\n")
    ]


def test_every_split_point_gives_the_same_ops():
    stream = b"".join(w for w, _ in CASES)
    expected = [op for _, op in CASES]
    for cut in range(1, len(stream)):
        p = LeafParser()
        assert p.feed(stream[:cut]) + p.feed(stream[cut:]) == expected, cut
    p = LeafParser()
    ops = []
    for i in range(len(stream)):
        ops += p.feed(stream[i : i + 1])
    assert ops == expected


def test_a_run_of_messages_shares_one_subject_object():
    ops = LeafParser().feed(b"LMSG s.t 1\r\na\r\nLMSG s.t 1\r\nb\r\n")
    assert ops[0][1] is ops[1][1]


@pytest.mark.parametrize(
    "wire",
    [
        b"LMSG foo x\r\nhi\r\n",  # size not a number
        b"LMSG foo 2\r\nhiXX",  # payload not followed by CRLF
        b"LMSG 2\r\n",  # no subject
        b"LMSG foo a b 2\r\nhi\r\n",  # too many fields without a marker
        b"LMSG foo + r 2\r\nhi\r\n",  # + without a queue
        b"HMSG foo 9 2\r\n",  # header size over total
        b"LS+ a b c d\r\n",
        b"LS+ a q x\r\n",
        b"LS-\r\n",
        b"INFO [1]\r\n",
        b"INFO {bad\r\n",
        b"BOGUS\r\n",
    ],
)
def test_bad_input_is_one_error_then_nothing(wire):
    p = LeafParser()
    ops = p.feed(wire)
    assert ops[-1][0] == LEAF_ERROR
    assert p.feed(b"PING\r\n") == []


def test_a_line_without_end_is_bounded():
    p = LeafParser()
    assert p.feed(b"LS+ " + b"a" * 70000)[-1][0] == LEAF_ERROR


def test_encoders_round_trip():
    wire = (
        encode_lmsg("a.b", None, None, b"x")
        + encode_lmsg("a.b", "r.1", None, b"x")
        + encode_lmsg("a.b", "r.1", ["g"], b"x")
        + encode_lmsg("a.b", None, ["g", "h"], b"x")
        + encode_hmsg("a.b", None, ["g"], HDR, b"x")
        + encode_ls_plus("a.*")
        + encode_ls_plus("w", "g", 2)
        + encode_ls_minus("w", "g")
    )
    assert LeafParser().feed(wire) == [
        (LEAF_MSG, "a.b", None, None, None, b"x"),
        (LEAF_MSG, "a.b", "r.1", None, None, b"x"),
        (LEAF_MSG, "a.b", "r.1", ["g"], None, b"x"),
        (LEAF_MSG, "a.b", None, ["g", "h"], None, b"x"),
        (LEAF_MSG, "a.b", None, ["g"], HDR, b"x"),
        (LEAF_SUB, "a.*", None, 0),
        (LEAF_SUB, "w", "g", 2),
        (LEAF_UNSUB, "w", "g"),
    ]
    assert encode_connect({"name": "a"}) == b'CONNECT {"name":"a"}\r\n'


def test_subject_bytes_survive():
    raw = b"LMSG caf\xc3\xa9.\xff 1\r\nx\r\n"
    op = LeafParser().feed(raw)[0]
    assert encode_lmsg(op[1], None, None, op[5]) == raw
