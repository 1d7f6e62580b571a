"""Subject rules, and the lossless mapping between MQTT topics and NATS subjects.

Theory of operation
===================

The router only knows NATS subjects: ``.``-separated, non-empty tokens without
whitespace, where a token that is exactly ``*`` matches one token and a last token
that is exactly ``>`` matches one or more trailing tokens. A ``*`` or ``>`` inside a
longer token is an ordinary character (``a*`` is a literal token, as in nats-server).
The validators below state these rules once; everything else imports them.

MQTT topics are mapped onto that space level by level: **one MQTT level becomes one
NATS token**, so ``+`` becomes ``*``, and ``#`` (which also matches its parent level)
becomes two subjects, the parent and ``parent.>``. The level text is escaped so that
every valid MQTT topic name survives the trip byte for byte. nats-server's converter
turns ``.`` into ``//`` and an empty level into ``/``, and rejects whitespace; we keep
all of them.

Escaping (topic -> subject), applied to each level on its own:

====================================  =========================================
MQTT level                            NATS token
====================================  =========================================
empty (leading, trailing, ``//``)     ``%`` alone
exactly ``*``                         ``%2A``
exactly ``>``                         ``%3E``
anything else                         the level, with ``%``, ``.``, every
                                      character U+0000..U+0020 and U+007F
                                      written as ``%XX`` (uppercase hex of
                                      the byte), e.g. ``%25``, ``%2E``, ``%20``
====================================  =========================================

Examples: ``dot.ted/x`` -> ``dot%2Eted.x``; ``/lead`` -> ``%.lead``; ``trail/`` ->
``trail.%``; ``dbl//slash`` -> ``dbl.%.slash``; ``a b/50%`` -> ``a%20b.50%25``;
``*/>`` -> ``%2A.%3E``; ``a*/b>`` -> ``a*.b>``; ``é/x`` -> ``é.x``.

A lone ``%`` token is unambiguous because a literal ``%`` is always ``%25``. The
escaped characters are all ASCII, so each ``%XX`` stands for one character. Every
produced subject is a valid NATS *publish* subject: no empty token, no whitespace
(non-ASCII whitespace such as U+3000 is not NATS whitespace and passes through), no
whole-token wildcard. The common topic (none of the above) takes a fast path: one
regex check and ``str.replace("/", ".")``.

Decoding (subject -> topic) splits on ``.``, turns a ``%`` token into an empty level
and decodes every well-formed ASCII escape ``%XX`` (``XX`` in ``00``..``7F``, either
case). Subjects that did not come from the encoder (published by NATS clients) may
hold things MQTT cannot carry, so after decoding, ``/``, ``+``, ``#`` and U+0000 inside
a token are written as ``%2F``, ``%2B``, ``%23``, ``%00`` (NATS ``a.+`` reaches MQTT as
``a/%2B``), and the one-token subject ``%`` becomes the topic ``%`` rather than an
empty (invalid) topic. Other ``%`` text, e.g. ``50%off`` or ``%C3``, stays as it is.

Round-trip guarantees:

* ``subject_to_topic(topic_to_subject(t)) == t`` for every valid MQTT topic name.
* A topic matches an MQTT filter iff its subject matches one of
  ``filter_to_subjects(filter)`` (the ``$`` rule aside, see ``filter_skips_dollar``).
* NATS -> MQTT -> NATS is *not* always the identity: a subject that holds escapes the
  encoder would not have produced (``a.+``, ``50%off``, ``a%2fb``, ``%``, a lone
  ``*`` or ``>`` token) comes back in canonical escaped form. This is the one place a
  round trip is lossy. ``subject_to_topic`` also does not shorten subjects: a NATS
  subject longer than 65535 UTF-8 bytes gives a topic the MQTT layer cannot send.

Topics beginning with ``$`` must not be matched by a filter that starts with ``#``
or ``+`` [MQTT-4.7.2-1]. The router cannot see that distinction, so the MQTT layer
asks ``filter_skips_dollar(filter)`` and drops such deliveries itself.

Words: *subject*/*token* are NATS, *topic*/*filter*/*level* are MQTT.
"""

from __future__ import annotations

import re

__all__ = [
    "MAX_TOPIC_BYTES",
    "filter_skips_dollar",
    "filter_to_subjects",
    "is_valid_publish_subject",
    "is_valid_queue_name",
    "is_valid_subject",
    "is_valid_topic_filter",
    "is_valid_topic_name",
    "subject_matches",
    "subject_to_topic",
    "topic_to_subject",
]

# [MQTT-4.7.3-3]: topic names and filters are UTF-8 strings of at most 65535 bytes.
MAX_TOPIC_BYTES = 65535

# ---------------------------------------------------------------------------
# NATS subjects
# ---------------------------------------------------------------------------

# Whitespace that ends a field in the NATS protocol line. Only ASCII: a subject may
# hold U+3000 or U+00A0 (nats-server accepts them, and the topic encoder lets them
# through), but never a space, tab, CR, LF, FF or VT.
_NATS_WS = re.compile(r"[ \t\n\r\f\v]")


def is_valid_subject(subject: str) -> bool:
    """A subscription subject: wildcards allowed as whole tokens, ``>`` only last."""
    if not subject or _NATS_WS.search(subject) is not None:
        return False
    toks = subject.split(".")
    if "" in toks:
        return False
    if ">" in toks:
        return toks.index(">") == len(toks) - 1
    return True


def is_valid_publish_subject(subject: str) -> bool:
    """A literal subject: valid, and no token is exactly ``*`` or ``>``."""
    if not subject or _NATS_WS.search(subject) is not None:
        return False
    toks = subject.split(".")
    return "" not in toks and "*" not in toks and ">" not in toks


def subject_matches(filter_subject: str, subject: str) -> bool:
    """Does a publish to the literal `subject` reach a subscription on `filter_subject`?

    `*` matches one token, a last `>` one or more. A subject with an empty token
    (`a..b`) matches nothing, as in the router's trie walk."""
    stoks = subject.split(".")
    if "" in stoks:
        return False
    ftoks = filter_subject.split(".")
    n = len(ftoks)
    if ftoks[-1] == ">":
        n -= 1
        if len(stoks) <= n:
            return False
    elif len(stoks) != n:
        return False
    for i in range(n):
        t = ftoks[i]
        if t != "*" and t != stoks[i]:
            return False
    return True


def subject_is_subset(subject: str, pattern: str) -> bool:
    """Every subject that ``subject`` (wildcards allowed) matches is matched by
    ``pattern`` too (nats-server's subjectIsSubsetMatch: may an import of ``subject``
    use an export of ``pattern``)."""
    a, b = subject.split("."), pattern.split(".")
    for i, tok in enumerate(b):
        if tok == ">":
            return i < len(a)
        if i >= len(a):
            return False
        if tok == "*":
            if a[i] == ">":
                return False
            continue
        if a[i] != tok:
            return False
    return len(a) == len(b)


def is_valid_queue_name(queue: str) -> bool:
    """A queue group name: non-empty, no ASCII whitespace (it is one protocol field).

    Dots and other characters are allowed, as nats-server and the clients allow them.
    """
    return isinstance(queue, str) and bool(queue) and _NATS_WS.search(queue) is None


# ---------------------------------------------------------------------------
# MQTT topic names and filters
# ---------------------------------------------------------------------------


def _mqtt_string_ok(s: str) -> bool:
    # [MQTT-4.7.3-1] at least one character; [MQTT-4.7.3-2] no U+0000.
    if not s or "\x00" in s:
        return False
    if s.isascii():
        return len(s) <= MAX_TOPIC_BYTES
    if len(s) > MAX_TOPIC_BYTES:  # every character is at least one byte
        return False
    try:
        # [MQTT-4.7.3-3] byte length; a lone surrogate cannot be encoded, and is not
        # well-formed UTF-8 either [MQTT-1.5.3-1].
        return len(s.encode("utf-8")) <= MAX_TOPIC_BYTES
    except UnicodeEncodeError:
        return False


def is_valid_topic_name(topic: str) -> bool:
    """A PUBLISH topic name: non-empty, no wildcards [MQTT-4.7.1-1], no U+0000, ≤ 65535 bytes."""
    return _mqtt_string_ok(topic) and "+" not in topic and "#" not in topic


def is_valid_topic_filter(topic_filter: str) -> bool:
    """A SUBSCRIBE filter: ``#`` alone in the last level [MQTT-4.7.1-2], ``+`` alone in
    its level [MQTT-4.7.1-3], plus the string rules [MQTT-4.7.3-1..3]."""
    if not _mqtt_string_ok(topic_filter):
        return False
    if "+" not in topic_filter and "#" not in topic_filter:
        return True
    levels = topic_filter.split("/")
    last = len(levels) - 1
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != last):
            return False
        if "+" in level and level != "+":
            return False
    return True


def filter_skips_dollar(topic_filter: str) -> bool:
    """True when the filter's first level is ``#`` or ``+``: such a filter must not
    receive topics that begin with ``$`` [MQTT-4.7.2-1]."""
    return topic_filter == "#" or topic_filter == "+" or topic_filter.startswith("+/")


# ---------------------------------------------------------------------------
# Topic <-> subject
# ---------------------------------------------------------------------------

# Characters escaped inside a level (see the table in the module docstring).
_ESCAPED = [*range(0x21), 0x25, 0x2E, 0x7F]
_LEVEL_ESCAPE = {c: f"%{c:02X}" for c in _ESCAPED}

# A topic that needs none of the escaping: non-empty levels made of characters that
# are never escaped. '*' and '>' anywhere also send the topic down the slow path (a
# level that is exactly '*' is rare enough that the simpler test pays off).
_PLAIN_TOPIC = re.compile(r"[^\x00-\x20%.\x7f/*>]+(?:/[^\x00-\x20%.\x7f/*>]+)*")


def _encode_level(level: str) -> str:
    if not level:
        return "%"
    if level == "*":
        return "%2A"
    if level == ">":
        return "%3E"
    return level.translate(_LEVEL_ESCAPE)


def topic_to_subject(topic: str) -> str:
    """Map an MQTT topic name to the NATS subject the router uses.

    Lossless for every valid topic name (see the module docstring for the escaping).
    The result is a valid NATS publish subject.
    """
    if _PLAIN_TOPIC.fullmatch(topic) is not None:
        return topic.replace("/", ".")
    return ".".join([_encode_level(level) for level in topic.split("/")])


def filter_to_subjects(topic_filter: str) -> list[str]:
    """Map an MQTT topic filter to the router subjects that together cover it.

    ``+`` -> ``*``; ``a/#`` -> ``["a", "a.>"]`` because ``#`` also matches the parent
    level [MQTT-4.7.1-2]; ``#`` -> ``[">"]``. Other levels are escaped as in
    ``topic_to_subject``. ``$share/<name>/`` prefixes are the MQTT layer's business and
    must be stripped first. Raises ``ValueError`` for an invalid filter.
    """
    if not is_valid_topic_filter(topic_filter):
        raise ValueError(f"invalid topic filter: {topic_filter!r}")
    if "+" not in topic_filter and "#" not in topic_filter:
        return [topic_to_subject(topic_filter)]
    levels = topic_filter.split("/")
    multi = levels[-1] == "#"
    if multi:
        del levels[-1]
        if not levels:
            return [">"]
    subject = ".".join(["*" if level == "+" else _encode_level(level) for level in levels])
    if multi:
        return [subject, subject + ".>"]
    return [subject]


# Anything the subject -> topic fast path cannot hand over as is.
_SUBJECT_SPECIAL = re.compile(r"[%/+#\x00]")
# Well-formed escapes of ASCII characters (the encoder only ever writes these).
_PCT_ESCAPE = re.compile(r"%([0-7][0-9A-Fa-f])")
# Characters a decoded token may not carry into an MQTT topic name: '/' would split
# the level, '+'/'#' are wildcards [MQTT-4.7.1-1], U+0000 is banned [MQTT-4.7.3-2].
_TOPIC_ESCAPE = {ord("/"): "%2F", ord("+"): "%2B", ord("#"): "%23", 0: "%00"}


def _unescape(m: re.Match[str]) -> str:
    return chr(int(m.group(1), 16))


# Bytes that were not UTF-8 on the NATS wire (decoded with surrogateescape).
_NOT_UTF8 = re.compile("[\udc80-\udcff]")


def _escape_not_utf8(m: re.Match[str]) -> str:
    return "%%%02X" % (ord(m.group()) - 0xDC00)


def subject_to_topic(subject: str) -> str:
    """Map a (literal) NATS subject to the MQTT topic name delivered to MQTT clients.

    Exact inverse of ``topic_to_subject``; NATS-native subjects are decoded best
    effort into a valid topic (see the module docstring).
    """
    if not subject.isascii() and _NOT_UTF8.search(subject) is not None:
        # [MQTT-1.5.4-1] a topic is well-formed UTF-8: bytes that were not become %XX.
        subject = _NOT_UTF8.sub(_escape_not_utf8, subject)
    if _SUBJECT_SPECIAL.search(subject) is None:
        return subject.replace(".", "/")
    if subject == "%":
        # The encoder never writes this (it would be the empty, invalid topic); keep
        # the delivered topic valid instead [MQTT-4.7.3-1].
        return "%"
    out = []
    for tok in subject.split("."):
        if tok == "%":
            out.append("")
            continue
        if "%" in tok:
            tok = _PCT_ESCAPE.sub(_unescape, tok)
        out.append(tok.translate(_TOPIC_ESCAPE))
    return "/".join(out)
