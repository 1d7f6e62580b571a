"""JetStream acks in a client's input: the raw form of the parser's ``OP_ACKS`` runs.

A consumer acks each message with an empty publish to the message's reply subject,
``PUB $JS.ACK.<stream>.<consumer>.<...> 0\\r\\n\\r\\n``, and a client acks a fetch of 500
in one write. The parser (``nats.py``) hands such a run on as one op; ``leading_acks``
takes a run that starts a read with two regex passes in C instead of a line at a time
(the ack half of js_pull: 1.16 -> 0.4-0.7 us per ack, bench/harness/profile_js pull).
"""

from __future__ import annotations

import re

# Subjects published once each (a JetStream ack names its delivery): not cached.
ONE_OFF_SUBJECT = b"$JS.ACK."
ACK_PUB = b"PUB " + ONE_OFF_SUBJECT  # an ack's control line as the clients write it
ACK_END = b" 0\r\n\r\n"  # the size, the line end and the empty payload's CRLF

# An ack exactly as the clients write it. The subject stops at every byte the parser's
# ``line.split()`` splits on, so each match is a line that parser reads as
# ``(OP_PUB, subject, None, b"")``; any other spelling is left to the parser.
_ACK = re.compile(rb"PUB (\$JS\.ACK\.[^ \t\r\n\x0b\x0c]+) 0\r\n\r\n")
_ACK_RUN = re.compile(rb"(?:PUB \$JS\.ACK\.[^ \t\r\n\x0b\x0c]+ 0\r\n\r\n)+")
_FRAMING = len(b"PUB ") + len(ACK_END)
_LINE = len(b"PUB ") + len(b" 0\r")  # a control line is the subject and this much


def leading_acks(buf: bytes, max_control_line: int) -> tuple[list[bytes], int]:
    """The raw subjects of the acks ``buf`` starts with and the offset where they end;
    ``([], 0)`` when it starts with none, or one of them has a control line longer
    than ``max_control_line`` (the parser then refuses it as it refuses any)."""
    raws: list[bytes] = []
    end = 0
    if buf.endswith(ACK_END):  # maybe acks alone: one pass, checked by the lengths
        raws = _ACK.findall(buf)
        end = sum(map(len, raws)) + _FRAMING * len(raws)
    if end != len(buf):
        m = _ACK_RUN.match(buf)
        if m is None:
            return [], 0
        end = m.end()
        raws = _ACK.findall(buf, 0, end)
    if max(map(len, raws)) + _LINE > max_control_line:
        return [], 0
    return raws, end


def ack_subjects(raws: list[bytes]) -> list[str]:
    """The subjects of an ``OP_ACKS`` op, decoded as every subject is (surrogateescape),
    with one decode for the run: they hold no whitespace (the control line was split on
    it), so a newline can join them and split them apart again."""
    return b"\n".join(raws).decode("utf-8", "surrogateescape").split("\n")
