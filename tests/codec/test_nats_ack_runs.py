"""The NATS parser's runs of JetStream acks (``Parser(ack_runs=True)``, ``OP_ACKS``).

A run must mean exactly the ``OP_PUB`` ops the parser gives without ``ack_runs``: the
same subjects, in the same order, with the same errors, however the bytes are split
across reads (every split point is tried). Only ``PUB $JS.ACK.<...> 0`` with an empty
payload joins a run; an ack with a reply or a body, or spelled any other way, stays an
``OP_PUB`` between runs."""

from __future__ import annotations

from hybridbus.codec.nats import (
    OP_ACKS,
    OP_ERROR,
    OP_HPUB,
    OP_PING,
    OP_PUB,
    OP_SUB,
    Parser,
    ack_subjects,
)

A = OP_ACKS


def expand(ops: list[tuple]) -> list[tuple]:
    """The ops with every OP_ACKS run written out as the OP_PUBs it stands for."""
    out: list[tuple] = []
    for op in ops:
        if op[0] == OP_ACKS:
            assert op[1], "an empty run"
            out += [(OP_PUB, s, None, b"") for s in ack_subjects(op[1])]
        else:
            out.append(op)
    return out


def feed(parser: Parser, chunks) -> list[tuple]:
    ops: list[tuple] = []
    for chunk in chunks:
        ops += parser.feed(chunk)
    return ops


def same_ops(chunks: list[bytes], **limits) -> list[tuple]:
    """Fed as ``chunks``, a parser with ack_runs gives what one without gives; its ops."""
    got = feed(Parser(ack_runs=True, **limits), chunks)
    assert expand(got) == feed(Parser(**limits), chunks), chunks
    return got


def check_every_split(data: bytes, **limits) -> list[tuple]:
    """``same_ops`` for ``data`` in one read, in two reads split at every byte, and one
    byte at a time; returns the one-read ops."""
    for i in range(1, len(data)):
        same_ops([data[:i], data[i:]], **limits)
    same_ops([data[i : i + 1] for i in range(len(data))], **limits)
    return same_ops([data], **limits)


def ack(i: int, body: bytes = b"", reply: bytes = b"", sep: bytes = b" ") -> bytes:
    subject = b"$JS.ACK.S.C.1.%d.%d.1700000000000000000.%d" % (i, i, 100 - i)
    r = reply + sep if reply else b""
    return b"PUB%s%s%s%s%d\r\n%s\r\n" % (sep, subject, sep, r, len(body), body)


def test_consecutive_acks_are_one_op():
    data = b"".join(ack(i) for i in range(1, 6)) + b"PING\r\n" + ack(6) + ack(7)
    ops = check_every_split(data)
    assert [op[0] for op in ops] == [OP_ACKS, OP_PING, OP_ACKS]
    assert ack_subjects(ops[0][1])[1] == "$JS.ACK.S.C.1.2.2.1700000000000000000.98"
    assert len(ops[0][1]) == 5 and len(ops[2][1]) == 2


def test_a_run_ends_at_anything_else():
    data = b"".join(
        [
            ack(1),
            ack(2),
            b"PUB other.x 2\r\nhi\r\n",
            ack(3),
            ack(4, reply=b"_INBOX.r.1"),  # a request (double ack): its own OP_PUB
            ack(5, body=b"-NAK"),
            ack(6, body=b"+WPI"),
            ack(7, body=b"+TERM"),
            ack(8, body=b'+NXT {"batch":2}'),
            ack(9, sep=b"\t"),
            ack(10).replace(b"PUB", b"pub"),
            ack(11).replace(b" 0\r\n", b"  0\r\n"),
            ack(12).replace(b" 0\r\n", b" 00\r\n"),
            b"PUB $JS.ACK.S.C.1.\xff\xfe.2.3.4 0\r\n\r\n",  # not UTF-8: decoded as ever
            b"PUB $JS.ACK.x 0\r\n\r\nPUB $JS.ACK. 0\r\n\r\nPUB $JS.ACK.a..b 0\r\n\r\n",
            b"HPUB $JS.ACK.h 12 12\r\nNATS/1.0\r\n\r\n\r\n",
            b"SUB $JS.ACK.> 1\r\n",
            ack(13),
            b"PUB foo $JS.ACK.S.C.1.1.1.1.1 0\r\n\r\n",  # an ack subject as a reply
            ack(14),
        ]
    )
    ops = check_every_split(data)
    kinds = [op[0] for op in ops]
    assert kinds == [A, OP_PUB, A, *[OP_PUB] * 5, A, OP_PUB, A, OP_HPUB, OP_SUB, A, OP_PUB, A]
    # acks 9-11 have the fields of an ack however spelled, and so do the odd subjects:
    # they are acks to the router, which decides what they reach; 12 (size "00") is
    # routed as the plain PUB it is too
    assert [len(op[1]) for op in ops if op[0] == A] == [2, 1, 3, 4, 1, 1]
    assert ack_subjects([b"$JS.ACK.S.C.1.\xff\xfe.2.3.4"]) == ["$JS.ACK.S.C.1.\udcff\udcfe.2.3.4"]


def test_errors_inside_a_run_are_the_same():
    cases = [
        ack(1) + b"PUB $JS.ACK.x 0\r\nX\r\n" + ack(2),  # the payload is not empty
        ack(1) + b"PUB $JS.ACK.x 0\r\n\n" + ack(2),  # no CR before the payload's LF
        ack(1) + b"PUB $JS.ACK.x 0\r\nX",  # unfinished, then wrong
        ack(1) + ack(2) + b"FOO\r\n" + ack(3),  # an unknown op after a run
        ack(1) + b"PUB $JS.ACK.x 1x\r\n\r\n",  # a bad size
        ack(1) + b"PUB $JS.ACK.x\r\n\r\n",  # no size
        ack(1) + b"PUB\r\n",
    ]
    for data in cases:
        ops = check_every_split(data)
        assert ops[-1][0] == OP_ERROR, data


def test_limits_apply_to_acks_in_runs():
    long = b"PUB $JS.ACK." + b"t." * 40 + b"x 0\r\n\r\n"
    ops = check_every_split(ack(1) + long + ack(2), max_control_line=64)
    assert ops[-1][0] == OP_ERROR and ops[-1][2] == "Maximum Control Line Exceeded"
    ops = check_every_split(ack(1) + ack(2), max_control_line=64, max_payload=0)
    assert [op[0] for op in ops] == [OP_ACKS]  # size 0 is within any max_payload


def test_without_ack_runs_every_ack_is_an_op():
    data = ack(1) + ack(2)
    assert [op[0] for op in Parser().feed(data)] == [OP_PUB, OP_PUB]
    assert [op[0] for op in Parser(ack_runs=True).feed(data)] == [OP_ACKS]


def test_random_reads_of_acks_then_other_spellings_agree_with_the_plain_parser():
    # Random reads of acks followed by spellings that are not plain acks (or a cut ack):
    # the run must end exactly where the parser without ack_runs stops reading acks.
    import random

    rng = random.Random(15)
    odd = [
        b"PUB $JS.ACK.S.C.1.\x0b.2 0\r\n\r\n",  # split by line.split(): a reply
        b"PUB $JS.ACK.S.C.1.\x0c.2 0\r\n\r\n",
        b"PUB\t$JS.ACK.S.C.1.2.3 0\r\n\r\n",
        b"PUB  $JS.ACK.S.C.1.2.3  0\r\n\r\n",
        b"PUB $JS.ACK.S.C.1.2.3 00\r\n\r\n",
        b"PUB $JS.ACK.S.C.1.2.3 0\r\nX\r\n",  # a payload where none is announced
        b"PUB $JS.ACK.S.C.1.2.3 0\n\r\n",
        b"pub $JS.ACK.S.C.1.2.3 0\r\n\r\n",
        b"PUB $JS.ACK." + b"x" * 200 + b" 0\r\n\r\n",  # over a small max_control_line
        ack(9, body=b"+NAK"),
        ack(9, reply=b"_INBOX.r"),
        b"PING\r\n",
    ]
    for _ in range(300):
        acks = b"".join(ack(rng.randrange(1, 99)) for _ in range(rng.randrange(1, 6)))
        tail = b"".join(rng.choice(odd) for _ in range(rng.randrange(0, 3)))
        data = acks + tail
        cut = rng.randrange(1, len(data) + 1)
        same_ops([data])
        same_ops([data[:cut], data[cut:]])
        same_ops([data], max_control_line=128)
    ops = same_ops([b"".join(ack(i) for i in range(1, 501))])
    assert [op[0] for op in ops] == [OP_ACKS] and len(ops[0][1]) == 500
