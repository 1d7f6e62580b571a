"""Subject transforms and an account's subject mappings, as nats-server 2.15 has them.

Pure and sans-IO: strings in, strings out. nats-server's ``server/subject_transform.go``
(``NewSubjectTransform``, ``TransformTokenizedSubject``) and the mapping half of
``server/accounts.go`` (``AddWeightedMappings``, ``selectMappedSubject``).

A transform maps a published subject matched by ``src`` onto ``dest``, token by
token. A destination token is a literal, ``>`` (the rest of the subject, when ``src``
ends in ``>``), or a function of the source's ``*`` tokens:

* ``$N`` / ``{{wildcard(N)}}``: the N-th ``*``;
* ``{{partition(n, N...)}}``: FNV-1a 32 of the named tokens (concatenated; the whole
  subject when none is named) modulo n, so partitions agree with nats-server's;
* ``{{split(N, delim)}}``, ``{{splitfromleft(N, pos)}}``, ``{{splitfromright(N, pos)}}``,
  ``{{slicefromleft(N, size)}}``, ``{{slicefromright(N, size)}}``, ``{{left(N, n)}}``,
  ``{{right(N, n)}}``: pieces of one token (byte positions, as Go slices strings);
* ``{{random(n)}}``: a number in [0, n).

nats-server quirks kept on purpose (checked against a 2.15.1 binary): an index of 0
or below names the subject's first token (Go's missing map key is 0), ``$x`` that is
not ``$<int>`` is a literal, ``random(0)`` and ``partition(0, ...)`` give ``0``, and
``{{random(1,2)}}`` is refused with "not enough arguments".

A mapping (``Mappings``) is a source with weighted destinations. Weights under 100
leave the rest to the subject unchanged unless the source is listed itself (then the
rest is dropped: nats-server maps to an empty subject nobody matches). The first
mapping whose source matches wins (a literal source compares as a string).
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable

__all__ = ["MappingError", "Mappings", "Transform"]

# Transform kinds of a destination token
_LIT, _FWC, _WILDCARD, _PARTITION, _RANDOM = range(5)
_SPLIT, _SPLIT_LEFT, _SPLIT_RIGHT, _SLICE_LEFT, _SLICE_RIGHT, _LEFT, _RIGHT = range(5, 12)

# nats-server's errors (server/errors.go), as its config errors print them
INVALID_DEST = "invalid mapping destination"
OUT_OF_RANGE = "wildcard index out of range"
NOT_ENOUGH = "not enough arguments passed to the function"
TOO_MANY = "too many arguments passed to the function"
BAD_ARG = "function argument is invalid or in the wrong format"
UNKNOWN = "unknown function"
BAD_SUBJECT = "invalid subject"


def _fn(name: str) -> re.Pattern:
    # unanchored, as Go's FindStringSubmatch: "{{ Wildcard (1) }}" is a wildcard
    return re.compile(r"\{\{\s*" + name + r"\s*\((.*)\)\s*\}\}", re.IGNORECASE)


# in nats-server's order of trial (indexPlaceHolders)
_FUNCTIONS = [
    (_fn("wildcard"), _WILDCARD),
    (_fn("partition"), _PARTITION),
    (_fn("splitfromleft"), _SPLIT_LEFT),
    (_fn("splitfromright"), _SPLIT_RIGHT),
    (_fn("slicefromleft"), _SLICE_LEFT),
    (_fn("slicefromright"), _SLICE_RIGHT),
    (_fn("right"), _RIGHT),
    (_fn("left"), _LEFT),
    (_fn("split"), _SPLIT),
    (_fn("random"), _RANDOM),
]
_COMMA = re.compile(r",\s*")
_ATOI = re.compile(r"[+-]?[0-9]+\Z")


class MappingError(ValueError):
    """A transform or mapping nats-server refuses; str() is its words."""


def _atoi(text: str) -> int | None:
    """Go's strconv.Atoi after strings.Trim(s, " "): no inner blanks, no underscores."""
    text = text.strip(" ")
    return int(text) if _ATOI.match(text) else None


def _dest_error(token: str, why: str) -> MappingError:
    return MappingError(f"{INVALID_DEST}: {why} in {token}")


def _placeholder(token: str) -> tuple[int, list[int], int, str]:
    """(kind, wildcard indexes, int argument, string argument) of a destination token."""
    if len(token) > 1 and token[0] == "$":
        n = _atoi(token[1:]) if token[1:].strip(" ") == token[1:] else None
        return (_LIT, [], -1, "") if n is None else (_WILDCARD, [n], -1, "")
    if not (len(token) > 4 and token.startswith("{{") and token.endswith("}}")):
        return _LIT, [], -1, ""
    for regex, kind in _FUNCTIONS:
        m = regex.search(token)
        if m is None:
            continue
        args = _COMMA.split(m.group(1))
        if kind == _WILDCARD:
            if len(args) == 1 and args[0] == "":
                raise _dest_error(token, NOT_ENOUGH)
            if len(args) > 1:
                raise _dest_error(token, TOO_MANY)
            if (n := _atoi(args[0])) is None:
                raise _dest_error(token, BAD_ARG)
            return _WILDCARD, [n], -1, ""
        if kind == _PARTITION:
            nums = [_atoi(a) for a in args]
            if any(n is None for n in nums):
                raise _dest_error(token, BAD_ARG)
            return _PARTITION, nums[1:], nums[0], ""  # type: ignore[return-value]
        if kind == _RANDOM:
            if len(args) != 1:
                raise _dest_error(token, NOT_ENOUGH)  # nats-server 2.15's words, even for 2
            if (n := _atoi(args[0])) is None:
                raise _dest_error(token, BAD_ARG)
            return _RANDOM, [], n, ""
        if len(args) < 2:
            raise _dest_error(token, NOT_ENOUGH)
        if len(args) > 2:
            raise _dest_error(token, TOO_MANY)
        if (index := _atoi(args[0])) is None:
            raise _dest_error(token, BAD_ARG)
        if kind == _SPLIT:
            if " " in args[1] or "." in args[1]:
                raise _dest_error(token, BAD_ARG)
            return _SPLIT, [index], -1, args[1]
        if (n := _atoi(args[1])) is None:
            raise _dest_error(token, BAD_ARG)
        return kind, [index], n, ""
    raise _dest_error(token, UNKNOWN)


def _subject_info(subject: str) -> tuple[bool, list[str], int, bool]:
    """(valid, tokens, number of '*', ends with '>'), nats-server's subjectInfo."""
    if not subject:
        return False, [], 0, False
    tokens = subject.split(".")
    pwcs = 0
    fwc = False
    for tok in tokens:
        if not tok or fwc:
            return False, [], 0, False
        if tok == ">":
            fwc = True
        elif tok == "*":
            pwcs += 1
    return True, tokens, pwcs, fwc


def _check_destination(dest: str) -> None:
    """nats-server's ValidateMapping: every token non-empty, nothing after a '>', no
    blanks outside a ``{{function}}`` (whose arguments are checked on their own)."""
    after_fwc = False
    for tok in dest.split("."):
        function = tok.startswith("{{") and tok.endswith("}}")
        if not tok or after_fwc or (not function and any(c in tok for c in " \t\n\r\f")):
            raise MappingError(f"{INVALID_DEST}: invalid transform")
        after_fwc = tok == ">"


def _b(token: str) -> bytes:
    return token.encode("utf-8", "surrogateescape")


def _s(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def fnv1a32(data: bytes) -> int:
    h = 0x811C9DC5
    for byte in data:
        h = ((h ^ byte) * 0x01000193) & 0xFFFFFFFF
    return h


class Transform:
    """One ``src`` -> ``dest`` transform (validated at construction)."""

    __slots__ = ("src", "dest", "plan", "stoks", "literal")

    def __init__(self, src: str, dest: str) -> None:
        src = src or ">"
        self.src, self.dest = src, dest
        _check_destination(dest)
        ok, stoks, pwcs, fwc = _subject_info(src)
        dok, dtoks, dpwcs, dfwc = _subject_info(dest)
        if not ok or not dok or dpwcs or fwc != dfwc:
            raise MappingError(BAD_SUBJECT)
        self.stoks = stoks
        # the i-th '*' of src (1-based) -> its token position; Go's map gives 0 otherwise
        stars = {n + 1: i for n, i in enumerate(i for i, t in enumerate(stoks) if t == "*")}
        plan = []
        for tok in dtoks:
            kind, idx, n, text = _placeholder(tok)
            if kind == _LIT:
                plan.append((_FWC if tok == ">" else _LIT, tok, (), 0, ""))
                continue
            if not pwcs and not fwc and (idx or kind == _WILDCARD):
                raise _dest_error(tok, OUT_OF_RANGE)
            for i in idx:
                if i > pwcs:
                    raise _dest_error(f"{tok}: [{i}]", OUT_OF_RANGE)
            plan.append((kind, tok, tuple(stars.get(i, 0) for i in idx), n, text))
        self.plan = plan
        self.literal = all(step[0] == _LIT for step in plan)

    def apply(self, subject: str, tokens: list[str] | None = None) -> str:
        """The transformed subject (``subject`` matched ``src``)."""
        if self.literal:
            return self.dest
        toks = tokens if tokens is not None else subject.split(".")
        out: list[str] = []
        for kind, tok, idx, n, text in self.plan:
            if kind == _LIT:
                out.append(tok)
            elif kind == _FWC:
                out.append(".".join(toks[len(self.stoks) - 1 :]))
            elif kind == _WILDCARD:
                out.append(toks[idx[0]] if idx[0] < len(toks) else "")
            else:
                out.append(_function(kind, subject, toks, idx, n, text))
        return ".".join(out)

    def __repr__(self) -> str:
        return f"Transform({self.src!r}, {self.dest!r})"


def _function(kind: int, subject: str, toks: list[str], idx: tuple, n: int, text: str) -> str:
    """One function token's output (nats-server TransformTokenizedSubject)."""
    if kind == _PARTITION:
        key = b"".join(_b(toks[i]) for i in idx) if idx else _b(subject)
        buckets = n & 0xFFFFFFFF  # Go: uint32(numBuckets)
        return str(fnv1a32(key) % buckets) if buckets else "0"
    if kind == _RANDOM:
        return str(random.randrange(n)) if n > 0 else "0"
    token = toks[idx[0]]
    if kind == _SPLIT:
        parts = token.split(text) if text else list(token)
        out = []
        for j, part in enumerate(parts):
            out.append(part)
            if j < len(parts) - 1 and parts[j + 1] and not (j == 0 and not part):
                out.append(".")
        return "".join(out)
    raw = _b(token)
    size = len(raw)
    if not 0 < n < size:
        return token  # too short to cut: unchanged
    if kind == _SPLIT_LEFT:
        return _s(raw[:n] + b"." + raw[n:])
    if kind == _SPLIT_RIGHT:
        return _s(raw[: size - n] + b"." + raw[size - n :])
    if kind == _LEFT:
        return _s(raw[:n])
    if kind == _RIGHT:
        return _s(raw[size - n :])
    if kind == _SLICE_LEFT:
        return _s(b".".join(raw[i : i + n] for i in range(0, size, n)))
    rem = size % n  # _SLICE_RIGHT
    head = [raw[:rem]] if rem else []
    return _s(b".".join(head + [raw[i : i + n] for i in range(rem, size, n)]))


class _Mapping:
    __slots__ = ("src", "wildcard", "toks", "dests", "single")

    def __init__(self, src: str, dests: list[tuple[int, Transform]]) -> None:
        self.src = src
        self.toks = src.split(".")
        self.wildcard = "*" in self.toks or ">" in self.toks
        self.dests = dests  # (cumulative weight, transform), lightest first
        self.single = dests[0][1] if len(dests) == 1 and dests[0][0] == 100 else None


def _matches(toks: list[str], pattern: list[str]) -> bool:
    if len(toks) < len(pattern) or (len(toks) != len(pattern) and pattern[-1] != ">"):
        return False
    for tok, pat in zip(toks, pattern, strict=False):
        if pat == ">":
            return True
        if pat != "*" and pat != tok:
            return False
    return True


def identity_destination(src: str) -> str:
    """``src`` as a destination that maps a subject onto itself: ``a.*`` -> ``a.$1``."""
    n = 0
    out = []
    for tok in src.split("."):
        if tok == "*":
            n += 1
            tok = f"${n}"
        out.append(tok)
    return ".".join(out)


class Mappings:
    """An account's mappings, in the order given. ``add`` raises MappingError with
    nats-server's words; ``map`` gives the subject to route ('' drops the message)."""

    __slots__ = ("entries",)

    def __init__(self) -> None:
        self.entries: list[_Mapping] = []

    def __bool__(self) -> bool:
        return bool(self.entries)

    def add(self, src: str, dests: Iterable[tuple[str, int, str]]) -> None:
        """``dests``: (destination, weight 0..100, cluster). A destination scoped to a
        cluster is checked and then left out: a single server has no cluster name, and
        nats-server falls back to the unscoped destinations then."""
        ok, _, _, _ = _subject_info(src)
        if not ok or any(c in src for c in " \t\n\r\f"):
            raise MappingError(BAD_SUBJECT)
        seen: set[str] = set()
        totals: dict[str, int] = {}
        plain: list[tuple[int, Transform]] = []
        for dest, weight, cluster in dests:
            if dest in seen:
                raise MappingError(f'duplicate entry for "{dest}"')
            seen.add(dest)
            if weight > 100:
                raise MappingError("individual weights need to be <= 100")
            totals[cluster] = totals.get(cluster, 0) + weight
            if totals[cluster] > 100:
                raise MappingError("total weight needs to be <= 100")
            transform = Transform(src, dest)
            if not cluster:
                plain.append((weight, transform))
        total = sum(w for w, _ in plain)
        if total != 100 and src not in seen:
            rest = 100 - total if plain else 100
            plain.append((rest, Transform(src, identity_destination(src))))
        plain.sort(key=lambda d: d[0])
        cumulative = []
        acc = 0
        for weight, transform in plain:
            acc += weight
            cumulative.append((acc, transform))
        entry = _Mapping(src, cumulative)
        for i, old in enumerate(self.entries):
            if old.src == src:
                self.entries[i] = entry
                return
        self.entries.append(entry)

    def map(self, subject: str) -> str:
        """The subject a message published to ``subject`` is routed to."""
        toks: list[str] | None = None
        for m in self.entries:
            if not m.wildcard:
                if m.src != subject:
                    continue
            else:
                if toks is None:
                    toks = subject.split(".")
                if not _matches(toks, m.toks):
                    continue
            transform = m.single
            if transform is None:
                roll = random.randrange(100)
                for weight, candidate in m.dests:
                    if roll < weight:
                        transform = candidate
                        break
                else:
                    return ""  # the roll fell past the listed weights: dropped
            return transform.apply(subject, toks)
        return subject
