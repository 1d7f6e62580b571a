"""NATS subject filters for the store: validation, matching and overlap.

The store cannot import the router (layering), and it needs only three questions answered
(matching itself is ``hybridbus.subjects.subject_matches``, shared with the router):
is this a valid subject or filter, does a subject match a filter, and can two filters
match a common subject. Tokens are separated by ``.``; ``*`` matches exactly one token and
``>`` (last token only) matches one or more trailing tokens.

Abbreviations: ``pwc`` the partial wildcard ``*``, ``fwc`` the full wildcard ``>``.
"""

from __future__ import annotations

from collections.abc import Callable

from hybridbus.subjects import subject_matches  # stdlib-only leaf module: no layering cost

_BAD_CHARS = (" ", "\t", "\r", "\n", "\x00")


def valid_subject(subject: str, *, wildcards: bool = True) -> bool:
    """A subject (``wildcards=False``) or a filter: no empty token, ``>`` only last."""
    if not subject or any(c in subject for c in _BAD_CHARS):
        return False
    tokens = subject.split(".")
    last = len(tokens) - 1
    for i, tok in enumerate(tokens):
        if not tok:
            return False
        if tok == "*" or tok == ">":
            if not wildcards or (tok == ">" and i != last):
                return False
    return True


def valid_stored_subject(subject: str) -> bool:
    """A subject a message can be stored under: no empty token, no whitespace. A
    ``*`` or ``>`` token is an ordinary character here: nats-server's non-pedantic
    publish takes ``a.*`` as a normal publish, a stream on ``a.>`` stores it under that
    literal subject (nats.py's ``kv.purge("hello.*")``), and filters later match it
    token by token (a filter ``a.b`` never matches the stored ``a.*``)."""
    if not subject or any(c in subject for c in _BAD_CHARS):
        return False
    return "" not in subject.split(".")


def is_literal(subject: str) -> bool:
    """True when the subject has no wildcard token (fast: whole-token checks only)."""
    if "*" not in subject and ">" not in subject:
        return True
    return not any(t == "*" or t == ">" for t in subject.split("."))


def compile_filters(filters: list[str] | tuple[str, ...] | None) -> Callable[[str], bool] | None:
    """A predicate for a set of filters; None means "matches everything"."""
    if not filters:
        return None
    if any(f == ">" for f in filters):
        return None
    if len(filters) == 1:
        f = filters[0]
        if is_literal(f):
            return f.__eq__
        if f.endswith(".>") and is_literal(f[:-2]):
            prefix = f[:-1]  # keep the dot: "a.>" matches "a.b", never "ab"
            return lambda s: s.startswith(prefix)
        return lambda s: subject_matches(f, s)
    fs = tuple(filters)
    return lambda s: any(subject_matches(f, s) for f in fs)


def filters_overlap(a: str, b: str) -> bool:
    """Can some literal subject match both filters? (nats-server's SubjectsCollide.)"""
    if a == b:
        return True
    at = a.split(".")
    bt = b.split(".")
    for i in range(max(len(at), len(bt))):
        x = at[i] if i < len(at) else None
        y = bt[i] if i < len(bt) else None
        if x == ">" or y == ">":
            # fwc needs at least one token at its position, which the other side has
            # as long as it did not already end.
            return x is not None and y is not None
        if x is None or y is None:
            return False
        if x != y and x != "*" and y != "*":
            return False
    return True


def filter_is_subset(inner: str, outer: str) -> bool:
    """Is every subject matched by ``inner`` also matched by ``outer``?"""
    it = inner.split(".")
    ot = outer.split(".")
    for i, o in enumerate(ot):
        if o == ">":
            return len(it) > i
        if i >= len(it):
            return False
        x = it[i]
        if x == ">":
            return False
        if o != "*" and (x == "*" or x != o):
            return False
    return len(it) == len(ot)


class FilterTrie:
    """Filters by token, to find which of many collide with one filter (the overlap
    checks of a stream config with thousands of subjects: pairwise they would take
    seconds). ``add(filter, key)``; ``colliding(filter)`` gives the keys of the stored
    filters that some literal subject matches together with it (``filters_overlap``)."""

    __slots__ = ("root",)

    def __init__(self) -> None:
        self.root: dict = {}

    def add(self, flt: str, key: object) -> None:
        node = self.root
        for tok in flt.split("."):
            node = node.setdefault(tok, {})
        node.setdefault(None, []).append(key)

    def colliding(self, flt: str) -> list:
        out: list = []
        self._walk(self.root, flt.split("."), 0, out)
        return out

    def _walk(self, node: dict, toks: list[str], pos: int, out: list) -> None:
        if pos == len(toks):
            out.extend(node.get(None, ()))
            return
        tok = toks[pos]
        if tok == ">":  # one or more tokens: everything stored below this node
            for child_tok, child in node.items():
                if child_tok is not None:
                    self._all(child, out)
            return
        fwc = node.get(">")
        if fwc is not None:  # a stored ">" takes this token and any after it
            out.extend(fwc.get(None, ()))
        if tok == "*":
            for child_tok, child in node.items():
                if child_tok is not None and child_tok != ">":
                    self._walk(child, toks, pos + 1, out)
            return
        for key in (tok, "*"):
            child = node.get(key)
            if child is not None:
                self._walk(child, toks, pos + 1, out)

    def _all(self, node: dict, out: list) -> None:
        stack = [node]
        while stack:
            n = stack.pop()
            for tok, child in n.items():
                if tok is None:
                    out.extend(child)
                else:
                    stack.append(child)
