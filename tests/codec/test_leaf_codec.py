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
    LEAF_RUN,
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
    ops = LeafParser().feed(b"LMSG s.t 1\r\na\r\nLMSG s.t 2\r\nbb\r\n")
    assert ops[0][1] is ops[1][1]


def _messages(ops: list) -> list[tuple]:
    """Ops as one (subject, reply, queues, headers, payload) per message."""
    out = []
    for op in ops:
        if op[0] == LEAF_RUN:
            out += [(op[1], None, None, op[2], p) for p in op[3]]
        elif op[0] == LEAF_MSG:
            out.append(op[1:])
        else:
            out.append(op)
    return out


QOS0 = b"NATS/1.0\r\nNmqtt-Pub: 0\r\n\r\n"
RUN = (
    b"".join(b"HMSG a.b 26 28\r\n%sp%d\r\n" % (QOS0, i) for i in range(5))
    + b"HMSG a.b 26 29\r\n%sp10\r\n" % QOS0  # another size: the run ends
    + b"LMSG a.b 2\r\nq1\r\nLMSG a.b 2\r\nq2\r\n"  # no headers: another run
    + b"LMSG a.b r 2\r\nq3\r\nLMSG a.b r 2\r\nq4\r\n"  # a reply: never a run
)
RUN_MESSAGES = (
    [("a.b", None, None, QOS0, b"p%d" % i) for i in range(5)]
    + [("a.b", None, None, QOS0, b"p10")]
    + [("a.b", None, None, None, b"q1"), ("a.b", None, None, None, b"q2")]
    + [("a.b", "r", None, None, b"q3"), ("a.b", "r", None, None, b"q4")]
)


def test_frames_repeating_one_line_and_header_come_as_one_run():
    ops = LeafParser().feed(RUN)
    assert [op[0] for op in ops] == [LEAF_RUN, LEAF_MSG, LEAF_RUN, LEAF_MSG, LEAF_MSG]
    assert ops[0][3] == [b"p%d" % i for i in range(5)]
    assert _messages(ops) == RUN_MESSAGES


def test_runs_split_at_every_point_give_the_same_messages():
    for cut in range(1, len(RUN)):
        p = LeafParser()
        assert _messages(p.feed(RUN[:cut]) + p.feed(RUN[cut:])) == RUN_MESSAGES, cut


def test_a_run_with_another_header_block_or_a_bad_frame_ends_there():
    other = b"NATS/1.0\r\nNmqtt-Pub: 1\r\n\r\n"
    wire = b"HMSG a 26 28\r\n%sp1\r\nHMSG a 26 28\r\n%sp2\r\n" % (QOS0, other)
    assert _messages(LeafParser().feed(wire)) == [
        ("a", None, None, QOS0, b"p1"),
        ("a", None, None, other, b"p2"),
    ]
    bad = b"LMSG a 1\r\nx\r\nLMSG a 1\r\nyZZ"
    ops = LeafParser().feed(bad)
    assert ops[0][:2] == (LEAF_MSG, "a") and ops[-1][0] == LEAF_ERROR


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
