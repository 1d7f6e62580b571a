"""Sans-IO codec for the NATS client protocol (the server side of it).

Theory of operation
-------------------
``Parser.feed(data)`` takes whatever the socket produced and returns the ops that
this chunk completed, as plain tuples (``(OP_PUB, subject, reply, payload)``, ...).
It never does I/O and never raises on hostile input: a protocol error comes back as
one final ``(OP_ERROR, err_text, close_reason)`` op, after which the parser is dead and
returns ``[]`` for any further input. ``err_text`` is the text to send as
``-ERR '<text>'`` before closing, or ``None`` when nats-server closes silently;
``close_reason`` is the string nats-server shows as ``/connz`` ``reason``.

nats-server's ``parser.go`` walks the input one byte at a time through a state per
prefix of each verb. That is the right shape in Go and the wrong one in CPython, so
this parser keeps the states but lets C do the scanning:

* A chunk is split once on ``b"\\n"`` (one C call for the whole 64 KiB read). Every
  element but the last is a complete line; the last is an unfinished tail. A control
  line keeps its trailing ``\\r`` (when the client sent ``\\r\\n``), and ``bytes.split()``
  drops it with the other whitespace, which is how bare-``\\n`` clients come for free.
* After a PUB/HPUB control line the payload normally is the very next element:
  ``payload + b"\\r"`` (length ``size + 1``). A payload that itself contains ``\\n``
  spans several elements and is re-joined (``_join_payload``); the byte count decides,
  never the content, exactly as in nats-server.
* A read that ends mid-frame keeps only the unfinished part. An unfinished control
  line is kept in a bytearray; later reads are searched for ``\\n`` on their own (the
  kept part is known to hold none), so a slow-drip line costs O(n), not O(n^2). An
  unfinished payload is kept as a list of chunks and joined once, when complete.
* ``max_control_line`` is enforced on complete lines and on the kept partial line at
  the end of every ``feed``, so a client cannot grow the buffer without a ``\\n``.

Wire behaviour (each case checked against a live nats-server 2.15.1, see
docs/nats-conventions.md section 4 and the tests):

* ops are case-insensitive; ``PING``/``PONG``/``+OK`` accept any junk up to the line end
  (``PINGX`` is a PING) and ``CONNECT``/``INFO`` need no space before the JSON, as in
  nats-server;
* an unknown op (``MSG``/``HMSG`` from a client included), an empty line, a line
  starting with whitespace, PUB/HPUB/SUB/UNSUB/-ERR not followed by a space or tab
  (``PUB\\r\\n``), or a payload not followed by ``\\r\\n`` -> ``-ERR 'Unknown Protocol
  Operation'``, reason ``Protocol Violation`` (the live server reports that reason, not
  ``Parse Error``);
* wrong argument count, bad or missing size (sizes are 1-9 ASCII digits, as
  nats-server's ``parseSize``), HPUB header size > total, malformed CONNECT JSON or a
  non-object, malformed client INFO -> silent close, ``Protocol Violation``;
* size > ``max_payload`` -> ``-ERR 'Maximum Payload Violation'``, reason ``Maximum
  Message Payload Exceeded``, decided from the control line alone;
* argument bytes (after the op name and its separator, minus one trailing ``\\r``)
  > ``max_control_line`` -> ``-ERR 'maximum control line exceeded'``, reason ``Maximum
  Control Line Exceeded`` (4096 accepted, 4097 refused, as nats-server);
* ``-ERR ...`` from a client -> silent close, ``Parse Error``; ``+OK`` and a well-formed
  client ``INFO`` are ignored (the server has no use for them).

Known, deliberate differences from nats-server (none reachable by a real client):
fields are split on any ASCII whitespace run (space, tab, and also ``\\r``, ``\\v``,
``\\f``; nats-server splits SUB/UNSUB on space/tab/CR and PUB on space/tab only), so
``PUB foo\\r2`` or ``PUB\\vfoo 2`` is accepted where nats-server closes; junk after
``PING``/``PONG``/``+OK`` counts against ``max_control_line`` (nats-server reads it
unbounded); a control line of more than ``2 * max_control_line + 16`` bytes is refused
even when most of it is separator whitespace (nats-server does not count separators).

Strings (subjects, reply, queue, sid) are decoded as UTF-8 with ``surrogateescape``:
invalid bytes never raise, and ``s.encode("utf-8", "surrogateescape")`` gives the
original bytes back. The encoders below use the same error handler.

Abbreviations: mcl = max_control_line, sid = subscription id, hdr = header block
(or its size), cl = control line.
"""

from __future__ import annotations

import json

from hybridbus.codec.nats_headers import encode_headers, parse_headers

__all__ = [
    "OP_CONNECT",
    "OP_PUB",
    "OP_HPUB",
    "OP_SUB",
    "OP_UNSUB",
    "OP_PING",
    "OP_PONG",
    "OP_ERROR",
    "OP_ACKS",
    "ack_subjects",
    "ERR_UNKNOWN_OP",
    "ERR_MAX_PAYLOAD",
    "ERR_MAX_CONTROL_LINE",
    "REASON_PROTOCOL_VIOLATION",
    "REASON_MAX_PAYLOAD",
    "REASON_MAX_CONTROL_LINE",
    "REASON_PARSE_ERROR",
    "MAX_CONTROL_LINE",
    "MAX_PAYLOAD",
    "Parser",
    "PING",
    "PONG",
    "OK",
    "encode_info",
    "encode_err",
    "encode_msg",
    "encode_hmsg",
    "msg_prefix",
    "hmsg_prefix",
    "msg_head_tail",
    "hmsg_head_tail",
    "parse_headers",
    "encode_headers",
    "encode_no_responders",
    "NO_RESPONDERS_STATUS",
]

OP_CONNECT, OP_PUB, OP_HPUB, OP_SUB, OP_UNSUB, OP_PING, OP_PONG, OP_ERROR, OP_ACKS = range(9)
# Internal kinds for client ops that never reach the caller.
_K_INFO, _K_OK, _K_ERR, _K_UNKNOWN = 100, 101, 102, 103

# nats-server defaults (const.go): MAX_CONTROL_LINE_SIZE and MAX_PAYLOAD_SIZE.
MAX_CONTROL_LINE = 4096
MAX_PAYLOAD = 1048576

# -ERR texts (inside the quotes) and /connz close reasons, exactly as nats-server 2.15.1.
ERR_UNKNOWN_OP = "Unknown Protocol Operation"
ERR_MAX_PAYLOAD = "Maximum Payload Violation"
ERR_MAX_CONTROL_LINE = "maximum control line exceeded"
REASON_PROTOCOL_VIOLATION = "Protocol Violation"
REASON_MAX_PAYLOAD = "Maximum Message Payload Exceeded"
REASON_MAX_CONTROL_LINE = "Maximum Control Line Exceeded"
REASON_PARSE_ERROR = "Parse Error"

_E_UNKNOWN = (ERR_UNKNOWN_OP, REASON_PROTOCOL_VIOLATION)
_E_VIOLATION = (None, REASON_PROTOCOL_VIOLATION)
_E_PAYLOAD = (ERR_MAX_PAYLOAD, REASON_MAX_PAYLOAD)
_E_CONTROL = (ERR_MAX_CONTROL_LINE, REASON_MAX_CONTROL_LINE)
_E_CLIENT_ERR = (None, REASON_PARSE_ERROR)

# Op names. "Strict" ops need a space/tab after the name; "free" ops take anything up to
# the line end (nats-server's OP_PING/OP_PONG/OP_PLUS_OK states skip to '\n', and
# OP_CONNECT/OP_INFO start the argument at the first non-blank byte).
_STRICT = {b"PUB": OP_PUB, b"HPUB": OP_HPUB, b"SUB": OP_SUB, b"UNSUB": OP_UNSUB, b"-ERR": _K_ERR}
_FREE = (
    (b"CONNECT", OP_CONNECT),
    (b"INFO", _K_INFO),
    (b"PING", OP_PING),
    (b"PONG", OP_PONG),
    (b"+OK", _K_OK),
)
_NAME_LEN = {
    OP_PUB: 3,
    OP_HPUB: 4,
    OP_SUB: 3,
    OP_UNSUB: 5,
    _K_ERR: 4,
    OP_CONNECT: 7,
    _K_INFO: 4,
    OP_PING: 4,
    OP_PONG: 4,
    _K_OK: 3,
}
_ALL_NAMES = tuple(_STRICT) + tuple(name for name, _ in _FREE)

# First-token lookup for the hot path: the exact upper- and lower-case spellings.
_FAST: dict[bytes, int] = {}
for _name, _kind in (*_STRICT.items(), *_FREE):
    _FAST[_name] = _kind
    _FAST[_name.lower()] = _kind
del _name, _kind

# Sizes as sent by clients ("64"), precomputed so the hot path skips isdigit()+int().
# Anything else (leading zeros, larger sizes) goes through _parse_size.
_SIZES = {b"%d" % i: i for i in range(4096)}


def _parse_size(tok: bytes) -> int:
    """nats-server parseSize: 1 to 9 ASCII digits, else -1 (no sign, no '_')."""
    if 0 < len(tok) < 10 and tok.isdigit():
        return int(tok)
    return -1


def _dec(b: bytes) -> str:
    return b.decode("utf-8", "surrogateescape")


# A publisher sends to few subjects over and over: decoding each one once (per
# connection) keeps the str the router's caches are keyed by, and skips the decode.
SUBJECT_CACHE_SIZE = 256


# A busy publisher also repeats whole control lines (``PUB sensors.1 64\r``): a line
# seen before is looked up instead of split and checked again. Lines are cached only
# once they passed every check, under the limits in force then.
PUB_LINE_CACHE_SIZE = 256
# Subjects published once each (a JetStream ack names its delivery): not cached.
ONE_OFF_SUBJECT = b"$JS.ACK."
ACK_PUB = b"PUB " + ONE_OFF_SUBJECT  # an ack's control line as the clients write it


def ack_subjects(raws: list[bytes]) -> list[str]:
    """The subjects of an ``OP_ACKS`` op, decoded as every subject is (surrogateescape),
    with one decode for the run: they hold no whitespace (the control line was split on
    it), so a newline can join them and split them apart again."""
    return b"\n".join(raws).decode("utf-8", "surrogateescape").split("\n")


def _remember_subject(cache: dict, raw: bytes) -> str:
    subject = raw.decode("utf-8", "surrogateescape")
    if len(cache) >= SUBJECT_CACHE_SIZE:
        cache.clear()
    cache[raw] = subject
    return subject


def _classify(tok: bytes) -> int:
    """Map a line's first token to an op kind (case-insensitive, free-op prefixes)."""
    kind = _FAST.get(tok)
    if kind is not None:
        return kind
    up = tok.upper()
    kind = _STRICT.get(up)
    if kind is not None:
        return kind
    for name, kind in _FREE:
        if up.startswith(name):
            return kind
    return _K_UNKNOWN


def _arg_len(line, kind: int) -> int:
    """Length of the argument as nats-server measures it for max_control_line: after
    the op name and the blanks that follow it, minus one trailing '\\r'."""
    n = _NAME_LEN[kind]
    rest = bytes(line[n:])
    arg = len(rest.lstrip())
    if arg and rest[-1] == 13:
        arg -= 1
    return arg


class Parser:
    """Incremental NATS client-protocol parser. See the module docstring.

    ``feed`` returns a list of these tuples (strings decoded with surrogateescape):

    * ``(OP_CONNECT, obj)``: obj is the CONNECT JSON object as a dict, unvalidated
      (field types, ``protocol`` 0/1, ``no_responders`` without ``headers``: the server's
      job; nats-server closes with Protocol Violation on a mistyped field);
    * ``(OP_PUB, subject, reply | None, payload)``;
    * ``(OP_HPUB, subject, reply | None, headers, payload)``: headers is the raw block,
      ``NATS/1.0...\\r\\n\\r\\n``; it may be ``b""`` (``HPUB s 0 n``), which nats-server
      delivers as a plain MSG;
    * ``(OP_SUB, subject, queue | None, sid)``;
    * ``(OP_UNSUB, sid, max_msgs | None)``: None when absent or not 1-9 digits; as in
      nats-server, None, 0, or a max not above the count already delivered all mean
      "remove now";
    * ``(OP_PING,)``, ``(OP_PONG,)``;
    * ``(OP_ERROR, err_text | None, close_reason)``: always last; send ``encode_err(
      err_text)`` unless None, then close with that reason;
    * with ``ack_runs`` only: ``(OP_ACKS, [raw subject, ...])`` for consecutive
      ``PUB $JS.ACK.<...> 0`` (no reply, empty payload: a JetStream ack as the clients
      send it), in order, in place of one ``OP_PUB`` each. The subjects are raw bytes,
      decoded by ``ack_subjects``; each line passed every check an ``OP_PUB`` passes,
      and means exactly ``(OP_PUB, subject, None, b"")``. A consumer's pull of 500 is
      acked with 500 such lines in one read: one op and one decode for the lot.

    ``max_control_line`` and ``max_payload`` are plain attributes; a new value applies
    from the next ``feed`` (a config reload may change them on a live connection).
    """

    __slots__ = (
        "max_control_line",
        "max_payload",
        "ack_runs",
        "_partial",
        "_pend",
        "_chunks",
        "_have",
        "_need",
        "_dead",
        "_subjects",
        "_pub_lines",
        "_pub_limits",
    )

    def __init__(
        self,
        max_control_line: int = MAX_CONTROL_LINE,
        max_payload: int = MAX_PAYLOAD,
        ack_runs: bool = False,
    ):
        self.max_control_line = max_control_line
        self.max_payload = max_payload
        self.ack_runs = ack_runs
        self._partial = bytearray()  # unfinished control line (holds no b"\n")
        self._pend = None  # (kind, subject, reply, hdr) of a PUB/HPUB awaiting payload
        self._chunks: list[bytes] = []  # payload bytes received so far for _pend
        self._have = 0  # total length of _chunks
        self._need = 0  # payload size + 2 (the closing CRLF)
        self._dead = False
        self._subjects: dict[bytes, str] = {}  # raw subject -> decoded, see SUBJECT_CACHE_SIZE
        # whole PUB control line -> (subject, None, size, raw subject, None), see PUB_LINE_CACHE_SIZE
        self._pub_lines: dict[bytes, tuple] = {}
        self._pub_limits = (max_control_line, max_payload)

    # -- public -------------------------------------------------------------------

    def feed(self, data: bytes) -> list[tuple]:
        """Consume one chunk; return the ops it completed, in order. An OP_ERROR, if
        any, is last, and every later call returns []."""
        if self._dead or not data:
            return []
        if type(data) is not bytes:
            data = bytes(data)
        out: list[tuple] = []
        if self._pend is not None:
            # Waiting for the rest of a payload: collect, join once when complete.
            self._chunks.append(data)
            self._have += len(data)
            if self._have < self._need:
                return out
            buf = b"".join(self._chunks)
            need = self._need
            kind, subject, reply, hdr = self._pend
            self._pend, self._chunks, self._have, self._need = None, [], 0, 0
            if buf[need - 2 : need] != b"\r\n":
                return self._fail(out, _E_UNKNOWN)
            out.append(self._op(kind, subject, reply, hdr, buf[: need - 2]))
            buf = buf[need:]
            if not buf:
                return out
        elif self._partial:
            if data.find(b"\n") < 0:
                # Still no line end: only the new bytes were searched.
                partial = self._partial
                partial += data
                err = self._check_partial(partial)
                return out if err is None else self._fail(out, err)
            buf = bytes(self._partial) + data
            self._partial = bytearray()
        else:
            buf = data
        return self._parse(buf, out)

    # -- internals ----------------------------------------------------------------

    def _fail(self, out: list, err: tuple) -> list:
        out.append((OP_ERROR, err[0], err[1]))
        self._dead = True
        self._partial = bytearray()
        self._pend, self._chunks = None, []
        return out

    @staticmethod
    def _op(kind: int, subject: bytes, reply: bytes | None, hdr: int, payload: bytes) -> tuple:
        r = None if reply is None else _dec(reply)
        if kind == OP_PUB:
            return (OP_PUB, _dec(subject), r, payload)
        return (OP_HPUB, _dec(subject), r, payload[:hdr], payload[hdr:])

    def _check_partial(self, p: bytearray) -> tuple | None:
        """Validate an unfinished control line: catch an unknown op as early as
        nats-server does, and refuse to buffer past max_control_line."""
        if p[0] <= 32:
            return _E_UNKNOWN  # empty line or leading blank: not an op
        head = bytes(p[:9]).upper()
        tok = head.split(None, 1)[0]
        kind = _STRICT.get(tok)
        if kind is None:
            for name, k in _FREE:
                if tok.startswith(name):
                    kind = k
                    break
            else:
                if len(tok) == len(p) and any(n.startswith(tok) for n in _ALL_NAMES):
                    return None  # an op name still arriving ("PU", "CONNE")
                return _E_UNKNOWN
        mcl = self.max_control_line
        if len(p) > mcl and (len(p) > 2 * mcl + 16 or _arg_len(p, kind) > mcl):
            return _E_CONTROL
        return None

    def _cl_error(self, line: bytes, parts: list[bytes], kind: int) -> tuple:
        """Error for a strict op with the wrong number of fields. nats-server wants a
        space or tab right after the op name ("PUB\r\n" is an unknown op); after that,
        a bad argument list is a silent Protocol Violation."""
        n = len(parts[0])
        if line[n : n + 1] not in (b" ", b"\t"):
            return _E_UNKNOWN
        return _E_VIOLATION

    def _long_line(self, line: bytes, kind: int) -> tuple | None:
        mcl = self.max_control_line
        if len(line) > 2 * mcl + 16 or _arg_len(line, kind) > mcl:
            return _E_CONTROL
        return None

    def _parse(self, buf: bytes, out: list) -> list:
        # hot path: one call per read parses every op in it with locals bound once;
        # a helper per op would cost a call per message (bench/bench_nats_server.py).
        lines = buf.split(b"\n")
        tail = lines.pop()  # bytes after the last b"\n": unfinished, maybe empty
        it = iter(lines)
        append = out.append
        sizes = _SIZES
        fast = _FAST
        mcl = self.max_control_line
        maxp = self.max_payload
        k_pub = OP_PUB
        nxt = it.__next__
        join_more = self._join_more
        subjects = self._subjects
        pub_lines = self._pub_lines
        ack_runs = self.ack_runs
        run: list | None = None  # raw subjects of the ack run being built, in run_op
        run_op = None
        if self._pub_limits != (mcl, maxp):
            pub_lines.clear()  # a reload changed the limits the cached lines passed
            self._pub_limits = (mcl, maxp)
        for line in it:
            pub = pub_lines.get(line)
            if pub is None:
                parts = line.split()
                if (
                    run is not None  # a read without acks pays this test alone
                    and out[-1] is run_op
                    and len(parts) == 3  # first: an empty line has no parts[-1]
                    and parts[-1] == b"0"
                    and line.startswith(ACK_PUB)
                    and len(line) <= mcl
                ):
                    # The next ack of a run, as the clients write it (``PUB
                    # $JS.ACK.<...> 0``): the checks below could only pass (the first
                    # ack of a run goes through them, see np == 3).
                    try:
                        p = nxt()
                    except StopIteration:
                        return self._start_pending(out, (k_pub, parts[1], None, -1), 0, [tail])
                    if p != b"\r":
                        return self._fail(out, _E_UNKNOWN)
                    if run is None or out[-1] is not run_op:
                        run = []
                        run_op = (OP_ACKS, run)
                        append(run_op)
                    run.append(parts[1])
                    continue
                if (
                    len(parts) == 4
                    and line[0] == 80  # "P": the op itself first, no blank before it
                    and parts[0] == b"PUB"
                    and len(line) <= mcl
                    and (size := sizes.get(parts[3])) is not None
                    and size <= maxp
                    and (subject := subjects.get(parts[1])) is not None
                ):
                    # A request as the clients write it (``PUB <subject> <reply> <size>``,
                    # a subject seen before): what the checks below make of it,
                    # fewer of them.
                    reply = parts[2]
                    try:
                        pub = (subject, reply.decode(), size, parts[1], reply)
                    except UnicodeDecodeError:  # not UTF-8: back out as it came in
                        pub = (subject, _dec(reply), size, parts[1], reply)
                else:
                    # A line must start with the op itself: not empty, no leading blank.
                    if not parts or line[0] <= 32:
                        return self._fail(out, _E_UNKNOWN)
                    kind = fast.get(parts[0])
                    if kind is None:
                        kind = _classify(parts[0])
                        if kind == _K_UNKNOWN:
                            return self._fail(out, _E_UNKNOWN)
                    if len(line) > mcl:
                        err = self._long_line(line, kind)
                        if err is not None:
                            return self._fail(out, err)
                    if kind != k_pub:
                        if self._control(kind, line, parts, it, tail, out) is None:
                            continue
                        return out  # failed, or an HPUB payload is still arriving
                    # PUB <subject> [reply-to] <#bytes>
                    np = len(parts)
                    if np == 3:
                        reply = None
                        szb = parts[2]
                        if ack_runs and szb == b"0" and parts[1].startswith(ONE_OFF_SUBJECT):
                            # A JetStream ack (``PUB $JS.ACK.<...> 0``): its empty payload
                            # must be the very next line (as below), then it joins the
                            # read's run of acks (OP_ACKS, see ``ack_runs``).
                            try:
                                p = nxt()
                            except StopIteration:
                                return self._start_pending(
                                    out, (k_pub, parts[1], None, -1), 0, [tail]
                                )
                            if p != b"\r":
                                return self._fail(out, _E_UNKNOWN)
                            if run is None or out[-1] is not run_op:
                                run = []
                                run_op = (OP_ACKS, run)
                                append(run_op)
                            run.append(parts[1])
                            continue
                    elif np == 4:
                        reply = parts[2]
                        szb = parts[3]
                    else:
                        return self._fail(out, self._cl_error(line, parts, kind))
                    size = sizes.get(szb)
                    if size is None:
                        size = _parse_size(szb)
                        if size < 0:
                            return self._fail(out, _E_VIOLATION)
                    if size > maxp:
                        return self._fail(out, _E_PAYLOAD)
                    subject = subjects.get(parts[1])
                    one_off = False  # tested only on a subject cache miss, as acks all are
                    if subject is None:
                        if parts[1].startswith(ONE_OFF_SUBJECT):
                            one_off = True
                            subject = _dec(parts[1])
                        else:
                            subject = _remember_subject(subjects, parts[1])
                    if reply is None:
                        pub = (subject, None, size, parts[1], None)
                        # Only reply-less lines are kept: a request's reply inbox is new
                        # every time, so caching those would only churn the cache (so
                        # would a JetStream ack's, whose subject names one delivery).
                        if not one_off:
                            if len(pub_lines) >= PUB_LINE_CACHE_SIZE:
                                pub_lines.clear()
                            pub_lines[line] = pub
                    else:
                        pub = (
                            subject,
                            reply.decode("utf-8", "surrogateescape"),
                            size,
                            parts[1],
                            reply,
                        )
            # A PUB control line (parsed or cached); its payload comes next.
            size = pub[2]
            try:
                p = nxt()
            except StopIteration:
                return self._start_pending(out, (k_pub, pub[3], pub[4], -1), size, [tail])
            n1 = len(p)
            if n1 == size + 1 and p[size] == 13:
                payload = p[:size]  # the usual case: the next line is payload + CR
            elif n1 >= size:
                return self._fail(out, _E_UNKNOWN)  # no CRLF where the count says
            else:
                # The payload holds a b"\n" (or is unfinished): it spans lines.
                try:
                    q = nxt()
                except StopIteration:
                    pieces = [p, b"\n", tail]
                    return self._start_pending(out, (k_pub, pub[3], pub[4], -1), size, pieces)
                if n1 + len(q) == size and q[-1:] == b"\r":
                    payload = p + b"\n" + q[:-1]
                else:
                    payload = join_more(p, q, it, size, tail)
                    if type(payload) is not bytes:
                        if payload is None:
                            return self._fail(out, _E_UNKNOWN)
                        pend = (k_pub, pub[3], pub[4], -1)
                        return self._start_pending(out, pend, size, payload)
            append((k_pub, pub[0], pub[1], payload))

        if tail:
            err = self._check_partial(tail)
            if err is not None:
                return self._fail(out, err)
            self._partial = bytearray(tail)
        return out

    def _control(self, kind: int, line: bytes, parts: list, it, tail: bytes, out: list):
        """Parse one control line other than PUB into ``out``. Returns None to go on, or
        ``out`` itself when the parse ends here (it failed, or an HPUB payload is still
        arriving)."""
        append = out.append
        if kind == OP_PING:
            append((OP_PING,))
        elif kind == OP_PONG:
            append((OP_PONG,))
        elif kind == OP_HPUB:
            # HPUB <subject> [reply-to] <#header bytes> <#total bytes>
            np = len(parts)
            if np == 4:
                reply = None
            elif np == 5:
                reply = parts[2]
            else:
                return self._fail(out, self._cl_error(line, parts, kind))
            hdr = _parse_size(parts[-2])
            size = _parse_size(parts[-1])
            if hdr < 0 or size < 0 or hdr > size:
                return self._fail(out, _E_VIOLATION)
            if size > self.max_payload:
                return self._fail(out, _E_PAYLOAD)
            pend = (kind, parts[1], reply, hdr)
            p = next(it, None)
            if p is None:
                return self._start_pending(out, pend, size, [tail])
            payload = self._join_payload(p, it, size, tail)
            if type(payload) is not bytes:
                if payload is None:
                    return self._fail(out, _E_UNKNOWN)
                return self._start_pending(out, pend, size, payload)
            append(self._op(kind, parts[1], reply, hdr, payload))
        elif kind == OP_SUB:
            # SUB <subject> [queue group] <sid>
            np = len(parts)
            if np == 3:
                append((OP_SUB, _dec(parts[1]), None, _dec(parts[2])))
            elif np == 4:
                append((OP_SUB, _dec(parts[1]), _dec(parts[2]), _dec(parts[3])))
            else:
                return self._fail(out, self._cl_error(line, parts, kind))
        elif kind == OP_UNSUB:
            # UNSUB <sid> [max_msgs]. nats-server parses max with parseSize and
            # treats -1 (absent or not digits) and 0 as "unsubscribe now".
            np = len(parts)
            if np == 2:
                append((OP_UNSUB, _dec(parts[1]), None))
            elif np == 3:
                n = _parse_size(parts[2])
                append((OP_UNSUB, _dec(parts[1]), None if n < 0 else n))
            else:
                return self._fail(out, self._cl_error(line, parts, kind))
        elif kind == OP_CONNECT or kind == _K_INFO:
            arg = line[_NAME_LEN[kind] :].strip()
            try:
                obj = json.loads(arg)
            except (ValueError, RecursionError):
                obj = None
            if type(obj) is not dict:
                # Malformed CONNECT (or client INFO): silent close (verified).
                return self._fail(out, _E_VIOLATION)
            if kind == OP_CONNECT:
                append((OP_CONNECT, obj))
        elif kind == _K_ERR:
            if len(parts) == 1 and self._cl_error(line, parts, kind) is _E_UNKNOWN:
                return self._fail(out, _E_UNKNOWN)
            return self._fail(out, _E_CLIENT_ERR)
        # else _K_OK: a client's +OK is ignored, as by nats-server.

        return None

    @staticmethod
    def _join_payload(p: bytes, it, size: int, tail: bytes):
        """Payload of ``size`` bytes starting at line ``p`` (the next lines come from
        ``it``; ``tail`` is the unfinished last one). Returns the payload bytes, None for
        a byte-count mismatch, or the list of pieces received so far when unfinished."""
        n1 = len(p)
        if n1 == size + 1 and p[size] == 13:
            return p[:size]
        if n1 >= size:
            return None
        q = next(it, None)
        if q is None:
            return [p, b"\n", tail]
        return Parser._join_more(p, q, it, size, tail)

    @staticmethod
    def _join_more(p: bytes, q: bytes, it, size: int, tail: bytes):
        """As _join_payload, once a payload is known to span the lines p, q, ..."""
        acc = [p, q]
        total = len(p) + len(q) + 2  # each line was followed by b"\n"
        while total < size + 2:
            r = next(it, None)
            if r is None:
                return [b"\n".join(acc), b"\n", tail]
            acc.append(r)
            total += len(r) + 1
        if total != size + 2:
            return None  # the b"\n" that ends a line is not where the CRLF must be
        joined = b"\n".join(acc)  # size + 1 bytes: payload + b"\r" expected
        if joined[size] != 13:
            return None
        return joined[:size]

    def _start_pending(self, out: list, pend: tuple, size: int, pieces: list) -> list:
        data = b"".join(pieces)
        have = len(data)
        need = size + 2
        # The last piece holds no b"\n", so if the closing LF's position is already
        # here it is not an LF: fail now, like nats-server, rather than wait. Same for
        # a wrong byte where the CR must be.
        if have >= need or (have > size and data[size] != 13):
            return self._fail(out, _E_UNKNOWN)
        self._pend = pend
        self._chunks = [data]
        self._have = have
        self._need = need
        return out


# -- encoders (server -> client) ------------------------------------------------------

PING = b"PING\r\n"
PONG = b"PONG\r\n"
OK = b"+OK\r\n"
NO_RESPONDERS_STATUS = 503


def _enc(s: str) -> bytes:
    return s.encode("utf-8", "surrogateescape")


def encode_info(info: dict) -> bytes:
    """``INFO <compact json> \\r\\n``; the space before CRLF is what nats-server sends."""
    return b"INFO " + json.dumps(info, separators=(",", ":")).encode() + b" \r\n"


def encode_err(text: str) -> bytes:
    """``-ERR '<text>'\\r\\n``."""
    return b"-ERR '" + _enc(text) + b"'\r\n"


def msg_prefix(subject: bytes, sid: bytes, reply: bytes | None, size: int) -> bytes:
    """MSG control line, CRLF included: ``MSG <subject> <sid> [reply] <size>\\r\\n``.
    The frame is ``prefix + payload + b"\\r\\n"``."""
    if reply is None:
        return b"MSG %s %s %d\r\n" % (subject, sid, size)
    return b"MSG %s %s %s %d\r\n" % (subject, sid, reply, size)


def hmsg_prefix(
    subject: bytes, sid: bytes, reply: bytes | None, hdr_size: int, total: int
) -> bytes:
    """HMSG control line, CRLF included; the frame is ``prefix + headers + payload + CRLF``."""
    if reply is None:
        return b"HMSG %s %s %d %d\r\n" % (subject, sid, hdr_size, total)
    return b"HMSG %s %s %s %d %d\r\n" % (subject, sid, reply, hdr_size, total)


def msg_head_tail(subject: bytes, reply: bytes | None, payload: bytes) -> tuple[bytes, bytes]:
    """Encode one message once for fan-out. Each receiver's frame is
    ``head + sid + tail`` (e.g. ``transport.writelines((head, sid, tail))``), where
    ``head = b"MSG <subject> "`` and ``tail = b" [reply ]<size>\\r\\n<payload>\\r\\n"``.
    Only the sid differs between receivers."""
    if reply is None:
        tail = b" %d\r\n%s\r\n" % (len(payload), payload)
    else:
        tail = b" %s %d\r\n%s\r\n" % (reply, len(payload), payload)
    return b"MSG " + subject + b" ", tail


def hmsg_head_tail(
    subject: bytes, reply: bytes | None, headers: bytes, payload: bytes
) -> tuple[bytes, bytes]:
    """As msg_head_tail, for HMSG: ``head + sid + tail`` is one complete HMSG frame."""
    h = len(headers)
    t = h + len(payload)
    if reply is None:
        tail = b" %d %d\r\n%s%s\r\n" % (h, t, headers, payload)
    else:
        tail = b" %s %d %d\r\n%s%s\r\n" % (reply, h, t, headers, payload)
    return b"HMSG " + subject + b" ", tail


def encode_msg(subject: str, sid: str, reply: str | None, payload: bytes) -> bytes:
    """``MSG <subject> <sid> [reply-to] <#bytes>\\r\\n<payload>\\r\\n``."""
    if reply is None:
        return b"MSG %s %s %d\r\n%s\r\n" % (_enc(subject), _enc(sid), len(payload), payload)
    return b"MSG %s %s %s %d\r\n%s\r\n" % (
        _enc(subject),
        _enc(sid),
        _enc(reply),
        len(payload),
        payload,
    )


def encode_hmsg(subject: str, sid: str, reply: str | None, headers: bytes, payload: bytes) -> bytes:
    """``HMSG <subject> <sid> [reply-to] <#hdr bytes> <#total bytes>\\r\\n<hdr><payload>\\r\\n``."""
    h = len(headers)
    t = h + len(payload)
    if reply is None:
        return b"HMSG %s %s %d %d\r\n%s%s\r\n" % (_enc(subject), _enc(sid), h, t, headers, payload)
    return b"HMSG %s %s %s %d %d\r\n%s%s\r\n" % (
        _enc(subject),
        _enc(sid),
        _enc(reply),
        h,
        t,
        headers,
        payload,
    )


def encode_no_responders(reply: str, sid: str, subject: str) -> bytes:
    """The 503 no-responders message (nats-conventions section 4.6), sent on the
    publisher's own subscription ``sid`` that matched ``reply``:
    ``HMSG <reply> <sid> n n\\r\\nNATS/1.0 503\\r\\nNats-Subject: <subject>\\r\\n\\r\\n\\r\\n``
    with n = 32 + len(subject in bytes)."""
    hdr = b"NATS/1.0 503\r\nNats-Subject: " + _enc(subject) + b"\r\n\r\n"
    return encode_hmsg(reply, sid, None, hdr, b"")
