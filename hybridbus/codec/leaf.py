"""Sans-IO codec for nats-server's leaf-node protocol, the spoke's side of it.

The hub (a nats-server ``leafnodes { listen }`` port) speaks a superset of the client
protocol: ``INFO``, ``PING``/``PONG``, ``+OK``, ``-ERR``, and for interest and messages
``LS+ <subject> [<queue> <weight>]``, ``LS- <subject> [<queue>]``, ``LMSG`` and ``HMSG``
(nats-server server/leafnode.go ``processLeafSub``, ``processLeafMsgArgs``,
``processLeafHeaderMsgArgs``; client.go ``msgHeaderForRouteOrLeaf``). A message line
names its queue groups after a marker:

    LMSG <subject> <size>                        plain subscribers only
    LMSG <subject> <reply> <size>
    LMSG <subject> + <reply> <q1> [<q2>...] <size>  also one member of each group
    LMSG <subject> | <q1> [<q2>...] <size>          (no reply)
    HMSG ... <header size> <total size>             the same with headers

``LeafParser.feed(data)`` returns the ops the chunk completed as tuples (frames that
repeat one control line and header block, a publisher's run, come as one ``LEAF_RUN``
op with their payloads); a protocol
error is a final ``(LEAF_ERROR, text)`` op after which the parser is dead. The
encoders build what the spoke sends: the same verbs (``LS+``/``LS-`` for its own
interest, ``LMSG``/``HMSG`` for messages) and ``CONNECT``.

Strings are decoded as UTF-8 with ``surrogateescape``, as in ``codec/nats.py``, so any
subject bytes survive the round trip.
"""

from __future__ import annotations

import json

__all__ = [
    "LEAF_MSG",
    "LEAF_RUN",
    "LEAF_SUB",
    "LEAF_UNSUB",
    "LEAF_INFO",
    "LEAF_PING",
    "LEAF_PONG",
    "LEAF_OK",
    "LEAF_ERR",
    "LEAF_ERROR",
    "LeafParser",
    "encode_connect",
    "encode_ls_plus",
    "encode_ls_minus",
    "encode_lmsg",
    "encode_hmsg",
]

(
    LEAF_MSG,
    LEAF_SUB,
    LEAF_UNSUB,
    LEAF_INFO,
    LEAF_PING,
    LEAF_PONG,
    LEAF_OK,
    LEAF_ERR,
    LEAF_ERROR,
    LEAF_RUN,
) = range(10)

# A hub never sends more than a control line's worth of arguments; larger is garbage.
MAX_LINE = 64 * 1024
MAX_MESSAGE = 64 * 1024 * 1024  # a hub's max_payload is at most 64 MB (nats-server)


def _dec(b: bytes) -> str:
    return b.decode("utf-8", "surrogateescape")


def _enc(s: str) -> bytes:
    return s.encode("utf-8", "surrogateescape")


def _size(tok: bytes) -> int:
    if not tok.isdigit() or len(tok) > 10:
        raise ValueError(tok)
    return int(tok)


class LeafParser:
    """Bytes from the hub in, ops out. Keeps an unfinished frame across reads."""

    __slots__ = ("_buf", "_dead", "_subjects", "_lines")

    def __init__(self) -> None:
        self._buf = b""
        self._dead = False
        # One str per subject seen recently: a run of messages to one subject then
        # shares one object, which the router's caches (and `is` checks) like.
        self._subjects: dict[bytes, str] = {}
        # message control line -> (subject, reply, queues, header size, size)
        self._lines: dict[bytes, tuple] = {}

    def feed(self, data: bytes) -> list[tuple]:
        if self._dead:
            return []
        buf = self._buf + data if self._buf else data
        out: list[tuple] = []
        pos = 0
        end = len(buf)
        subjects = self._subjects
        lines = self._lines
        while pos < end:
            nl = buf.find(b"\n", pos)
            if nl < 0:
                if end - pos > MAX_LINE:
                    return self._fail(out, "control line too long")
                break
            line = buf[pos:nl]
            if line[-1:] == b"\r":
                line = line[:-1]
            head = lines.get(line)
            if head is None:
                verb = line[:4].upper()
                if verb == b"LMSG" or verb == b"HMSG":
                    parts = line.split()
                    try:
                        op, size = self._message_args(parts, verb == b"HMSG")
                    except (ValueError, IndexError):
                        return self._fail(out, f"bad message line {line[:80]!r}")
                    raw_subject = parts[1]
                    subject = subjects.get(raw_subject)
                    if subject is None:
                        if len(subjects) > 4096:
                            subjects.clear()
                        subject = subjects[raw_subject] = _dec(raw_subject)
                    head = (subject, op[1], op[2], op[3], size)
                    if op[1] is None:  # a reply is used once: not worth remembering
                        if len(lines) > 4096:
                            lines.clear()
                        lines[line] = head
            if head is not None:
                # A message: a run of them to one subject with one size repeats its
                # control line, which is then parsed once (``lines``).
                subject, reply, queues, hsize, size = head
                start = nl + 1
                stop = start + size
                if stop + 2 > end:
                    if size > MAX_MESSAGE:
                        return self._fail(out, "message too large")
                    break  # the rest of the frame comes with a later read
                if buf[stop : stop + 2] != b"\r\n":
                    return self._fail(out, "message not followed by CRLF")
                if reply is None and queues is None and buf.startswith(buf[pos:start], stop + 2):
                    pos = self._run(buf, pos, start, stop, subject, hsize, out)
                    continue
                if hsize < 0:
                    out.append((LEAF_MSG, subject, reply, queues, None, buf[start:stop]))
                else:
                    out.append(
                        (
                            LEAF_MSG,
                            subject,
                            reply,
                            queues,
                            buf[start : start + hsize],
                            buf[start + hsize : stop],
                        )
                    )
                pos = stop + 2
                continue
            pos = nl + 1
            op = self._control(line)
            if op is None:
                continue
            out.append(op)
            if op[0] == LEAF_ERROR:
                self._dead = True
                self._buf = b""
                return out
        self._buf = buf[pos:] if pos < end else b""
        return out

    @staticmethod
    def _run(buf: bytes, pos: int, start: int, stop: int, subject, hsize: int, out) -> int:
        """Frames that repeat the first one's control line and header block (a
        publisher's run to one subject): one (LEAF_RUN, subject, headers, payloads) op.
        Returns where the run ends; what breaks it is read again by ``feed``."""
        off = hsize if hsize > 0 else 0
        headers = buf[start : start + hsize] if hsize >= 0 else None
        # What comes between two payloads of the run: the line end, then the control
        # line and the header block the frames repeat (the size is in the control
        # line, so every frame of the run is as long as the first).
        sep = b"\r\n" + buf[pos : start + off]
        slen = len(sep)
        stride = slen + stop - start - off
        payloads = [buf[start + off : stop]]
        q = stop  # at the line end after the last payload taken
        startswith = buf.startswith
        while startswith(sep, q):
            payloads.append(buf[q + slen : q + stride])
            q += stride
        if len(payloads) > 1 and not startswith(b"\r\n", q):
            payloads.pop()  # cut short (or malformed): read again by ``feed``
            q -= stride
        nxt = q + 2
        if len(payloads) == 1:  # the next frame only looked alike
            out.append((LEAF_MSG, subject, None, None, headers, payloads[0]))
        else:
            out.append((LEAF_RUN, subject, headers, payloads))
        return nxt

    @staticmethod
    def _message_args(parts: list[bytes], headers: bool) -> tuple[tuple, int]:
        """(op skeleton, total size) of an LMSG/HMSG line's fields."""
        if len(parts) < (4 if headers else 3):
            raise ValueError("too few fields")
        hsize = -1
        if headers:
            hsize = _size(parts[-2])
            size = _size(parts[-1])
            if hsize > size:
                raise ValueError("header size over total")
            middle = parts[2:-2]
        else:
            size = _size(parts[-1])
            middle = parts[2:-1]
        reply = None
        queues = None
        if middle:
            marker = middle[0]
            if marker == b"+":
                if len(middle) < 3:
                    raise ValueError("+ needs a reply and a queue")
                reply = _dec(middle[1])
                queues = [_dec(q) for q in middle[2:]]
            elif marker == b"|":
                if len(middle) < 2:
                    raise ValueError("| needs a queue")
                queues = [_dec(q) for q in middle[1:]]
            elif len(middle) == 1:
                reply = _dec(marker)
            else:
                raise ValueError("too many fields")
        return (LEAF_MSG, reply, queues, hsize), size

    def _control(self, line: bytes) -> tuple | None:
        if not line:
            return None
        parts = line.split(None, 1)
        verb = parts[0].upper()
        arg = parts[1] if len(parts) > 1 else b""
        if verb == b"LS+":
            fields = arg.split()
            if len(fields) == 1:
                return (LEAF_SUB, _dec(fields[0]), None, 0)
            if len(fields) in (2, 3):
                weight = 1
                if len(fields) == 3:
                    try:
                        weight = _size(fields[2])
                    except ValueError:
                        return (LEAF_ERROR, f"bad LS+ weight {line[:80]!r}")
                return (LEAF_SUB, _dec(fields[0]), _dec(fields[1]), weight)
            return (LEAF_ERROR, f"bad LS+ {line[:80]!r}")
        if verb == b"LS-":
            fields = arg.split()
            if len(fields) == 1:
                return (LEAF_UNSUB, _dec(fields[0]), None)
            if len(fields) == 2:
                return (LEAF_UNSUB, _dec(fields[0]), _dec(fields[1]))
            return (LEAF_ERROR, f"bad LS- {line[:80]!r}")
        if verb == b"PING":
            return (LEAF_PING,)
        if verb == b"PONG":
            return (LEAF_PONG,)
        if verb == b"+OK":
            return (LEAF_OK,)
        if verb == b"-ERR":
            return (LEAF_ERR, _dec(arg.strip().strip(b"'")))
        if verb == b"INFO":
            try:
                info = json.loads(arg)
            except ValueError:
                return (LEAF_ERROR, "malformed INFO")
            if not isinstance(info, dict):
                return (LEAF_ERROR, "malformed INFO")
            return (LEAF_INFO, info)
        return (LEAF_ERROR, f"unknown protocol operation {line[:40]!r}")

    def _fail(self, out: list, text: str) -> list:
        self._dead = True
        self._buf = b""
        out.append((LEAF_ERROR, text))
        return out


# -- what the spoke sends -------------------------------------------------------------


def encode_connect(fields: dict) -> bytes:
    return b"CONNECT " + json.dumps(fields, separators=(",", ":")).encode() + b"\r\n"


def encode_ls_plus(subject: str, queue: str | None = None, weight: int = 1) -> bytes:
    if queue is None:
        return b"LS+ %s\r\n" % _enc(subject)
    return b"LS+ %s %s %d\r\n" % (_enc(subject), _enc(queue), weight)


def encode_ls_minus(subject: str, queue: str | None = None) -> bytes:
    if queue is None:
        return b"LS- %s\r\n" % _enc(subject)
    return b"LS- %s %s\r\n" % (_enc(subject), _enc(queue))


def _middle(reply: str | None, queues: list[str] | None) -> bytes:
    if queues:
        names = b" ".join(_enc(q) for q in queues)
        if reply is None:
            return b" | " + names
        return b" + " + _enc(reply) + b" " + names
    if reply is not None:
        return b" " + _enc(reply)
    return b""


def encode_lmsg(subject: str, reply: str | None, queues: list[str] | None, payload: bytes) -> bytes:
    return b"LMSG %s%s %d\r\n%s\r\n" % (
        _enc(subject),
        _middle(reply, queues),
        len(payload),
        payload,
    )


def encode_hmsg(
    subject: str, reply: str | None, queues: list[str] | None, headers: bytes, payload: bytes
) -> bytes:
    hsize = len(headers)
    return b"HMSG %s%s %d %d\r\n%s%s\r\n" % (
        _enc(subject),
        _middle(reply, queues),
        hsize,
        hsize + len(payload),
        headers,
        payload,
    )
