"""The subscription index: which subscriptions does a published subject reach?

Theory of operation
===================

The router knows neither MQTT nor NATS. It stores ``Subscription`` objects under
NATS-style subjects (``.``-separated tokens; ``*`` matches one token; a last ``>``
matches one or more trailing tokens) and answers ``match(subject)`` for literal
publish subjects. The MQTT layer maps topics and filters onto subjects first
(``hybridbus.subjects``).

Abbreviations: *psubs* plain subscriptions, *qsubs* queue subscriptions grouped by
queue name, *pwc* the partial wildcard ``*``, *fwc* the full wildcard ``>``, *genid*
the generation id, *res* a node's own subscriptions as a result.

Nodes. A ``_Node`` holds the subscriptions of one filter subject: ``psubs`` (an
insertion-ordered dict used as a set) and ``qsubs`` (queue name -> such a set), plus
``res``, those subscriptions as a ready ``SublistResult``, built on first match and
dropped whenever the node's subscriptions change.

Two indexes. Subjects without a wildcard token ("literal" filters, most of them in
practice) live in a flat dict ``subject -> node``. Subjects with ``*`` or ``>`` live
in a token trie: each node has ``lits`` (token -> child) plus two dedicated children
``pwc`` and ``fwc``. An fwc node never has children, since ``>`` is always last.
Literal filters could live in the trie too, and give the same answers; the flat dict
is what the profile asked for (misses about 3x faster in bench/bench_router.py): a
literal subject is found with one lookup of the whole string, and when no wildcard
subscription exists at all a miss does not even split the subject. Removing the last subscription of a node unlinks it (the trie is
pruned back towards the root), so the indexes never outgrow the live subscriptions.

Queue groups. Subscriptions with the same queue name on the same filter subject
(that is, in the same node) form one group. A result lists each matching group as
one inner list and the caller delivers to one member of each; two filters that both
match contribute two groups even when the queue names are equal. (nats-server merges
same-name groups from different filters into one; MQTT shared subscriptions are per
share name *and* filter (MQTT 5.0 section 4.8.2), which is what this index gives.)

Match. ``match`` looks the subject up in the cache: a hit is one dict lookup (plus
one counter). A miss takes the literal node for the whole subject, then, if any
wildcard subscription exists, splits the subject once and walks the trie depth
first: at each level an fwc child matches (``>`` needs at least one more token, and
the current one is it), a pwc child goes on a stack of branches to visit later (a
stack, not recursion, so that no subject is too deep to match), and the literal
child for the token continues the walk. The node reached after the last token
matches. The matching nodes are collected first; when there is just one (the usual
case) its ``res`` is the answer as is, otherwise the results are concatenated. A
subject with an empty token matches nothing, as in nats-server.

Cache. ``subject -> SublistResult``, at most ``cache_max`` entries (1024), JetStream
acks (``ONE_OFF_PREFIX``, one subject per delivery) left out. When a
miss pushes it over, the oldest entries are dropped until ``cache_sweep`` remain
(768): amortised O(1) per miss. Results are shared (between cache keys, callers and
nodes), so callers treat them as read-only and the router never mutates one after
handing it out. The cache stays exact:

* insert patches every cached result the new subscription matches, by storing a new
  result with the subscription added. A literal subject can only affect the entry of
  that very subject. For a wildcard subject, the keys that start with its literal
  tokens are found with ``str.find`` over the joined keys, then checked token by
  token (or, when there are many, with a regex compiled from the subject).
* remove drops the affected entries (same two cases); the next match rebuilds them.

``Sublist(cache=False)`` (or ``set_cache(False)``) turns the cache off; the tests run
every case both ways.

Reply subjects. Replies are published once each under a prefix of their receiver's
(``_INBOX.<id>.<n>`` under ``_INBOX.<id>.*``; a JetStream ack ``$JS.ACK.<9 tokens>``
under ``$JS.ACK.>``), so the cache misses every one of them (a PubAck each: the
js_publish profile's router time). When no literal filter names the subject and no
wildcard filter in the trie has a literal token after the subject's *head* (all but
the last token; ``$JS.ACK`` for an ack), the walk gives the same result for every
subject under that head with as many tokens: ``_tails`` keeps it, keyed by the head,
with the ``genid`` it was found at (any insert or remove makes it stale). A head is
checked (``_open_tail``) at its second miss, so subjects that never share a head cost
one dict lookup and store each. Off with the cache.

Generation id. ``genid`` moves on every insert and remove that changed something, so
a caller that keeps its own per-connection cache of results can drop it when the
number moves.

Concurrency: none. The router runs on the event loop thread only; there are no
locks. A subscription's ``subject`` and ``queue`` must not change while it is
inserted.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from itertools import islice
from typing import Any

from hybridbus.subjects import is_valid_queue_name, is_valid_subject, subject_matches

__all__ = ["DEFAULT_CACHE_MAX", "DEFAULT_CACHE_SWEEP", "Sublist", "SublistResult", "Subscription"]

# Upper bound on cached match results, as in nats-server (slCacheMax). Each entry
# costs a key string and a result; 1024 covers the hot subjects of a busy server and
# keeps short the key scan that a wildcard insert/remove does.
DEFAULT_CACHE_MAX = 1024
# Entries kept after a trim. Dropping a quarter at a time keeps trims rare (one per
# 256 misses once full) without throwing away most of a warm cache.
DEFAULT_CACHE_SWEEP = 768
# Subjects published once each and never again: a JetStream ack names the delivery
# (stream and consumer sequence) in its subject. Caching them would only push the
# hot subjects out (a pull consumer's 500 acks a batch were 500 useless entries).
# Checked on the wildcard path only, where acks go (to the engine's ``$JS.ACK.>``),
# and on the split tokens: a prefix test on every miss cost other misses ~1/3 more.
ONE_OFF_PREFIX = "$JS.ACK."
# A reply head seen once (``Sublist._tails``); checked for an open tail at its second miss.
_ONCE = object()


class Subscription:
    """One interest in a subject. Protocol layers subclass it with their own slots.

    Identity is object identity: two subscriptions are the same only if they are the
    same object, so one client may hold several on the same subject.
    """

    __slots__ = ("subject", "queue", "client", "sid", "__weakref__")

    # True when the client's deliver_batch() takes a run of messages at once (see
    # SublistResult.batchable); a class attribute, set by the protocol's subclass.
    batchable = False

    def __init__(self, subject: str, queue: str | None, client: object, sid: object):
        self.subject = subject
        self.queue = queue
        self.client = client
        self.sid = sid

    def __repr__(self) -> str:
        q = f" queue={self.queue!r}" if self.queue is not None else ""
        return f"<{type(self).__name__} {self.subject!r}{q} sid={self.sid!r}>"


class SublistResult:
    """What a publish reaches: every plain subscription, and one list per queue group.

    Read-only: one instance is shared by the cache, the trie and every caller.
    """

    __slots__ = ("plain", "queues", "runs", "batchable")

    def __init__(self, plain: list[Subscription], queues: list[list[Subscription]]) -> None:
        self.plain = plain
        self.queues = queues
        # A run of messages may go to each batchable subscription in one call when no
        # queue group must pick a member per message and no client holds two of them
        # (its two subscriptions' copies would come out grouped, not interleaved per
        # message as the router, and nats-server, send them).
        clients = [id(sub.client) for sub in plain if sub.batchable]
        self.runs = not queues and len(set(clients)) == len(clients)
        # ... and every receiver takes runs (none needs a per-message step).
        self.batchable = self.runs and len(clients) == len(plain)

    def __len__(self) -> int:
        """Fanout: plain subscriptions plus queue groups (one delivery per group)."""
        return len(self.plain) + len(self.queues)

    def __repr__(self) -> str:
        return f"<SublistResult plain={self.plain!r} queues={self.queues!r}>"


# Shared result for "nothing matched". Never mutated; patching builds a new result.
_EMPTY = SublistResult([], [])
# Shared stand-in for "no literal children", so that the walk can call .get() on
# every node without a None check. Never mutated: a node swaps in a dict of its own
# before adding its first child.
_NO_LITS: dict[str, _Node] = {}


class _Node:
    __slots__ = ("lits", "pwc", "fwc", "psubs", "qsubs", "res")

    def __init__(self) -> None:
        self.lits: dict[str, _Node] = _NO_LITS
        self.pwc: _Node | None = None
        self.fwc: _Node | None = None
        self.psubs: dict[Subscription, None] | None = None
        self.qsubs: dict[str, dict[Subscription, None]] | None = None
        self.res: SublistResult | None = None

    def is_empty(self) -> bool:
        return not (self.psubs or self.qsubs or self.lits or self.pwc or self.fwc)


def _node_result(n: _Node) -> SublistResult:
    r = n.res
    if r is None:
        psubs, qsubs = n.psubs, n.qsubs
        r = n.res = SublistResult(
            list(psubs) if psubs else [],
            [list(g) for g in qsubs.values()] if qsubs else [],
        )
    return r


def _walk(root: _Node, toks: list[str], hits: list[_Node]) -> None:
    """Append to ``hits`` the trie nodes whose filters match the subject ``toks``.

    Depth first with an explicit stack of ``*`` branches still to visit, rather than
    recursion: a subscription like ``*.*.*...`` with thousands of tokens must not be
    able to exhaust the interpreter stack.
    """
    ntoks = len(toks)
    stack = [(root, 0)]
    while stack:
        n, i = stack.pop()
        while i < ntoks:
            c = n.fwc
            if c is not None:
                # '>' takes this token and any that follow: at least one, as it must.
                # An fwc node is never empty (it has no children, so pruning unlinks
                # it with its last subscription).
                hits.append(c)
            c = n.pwc
            if c is not None:
                stack.append((c, i + 1))
            n = n.lits.get(toks[i])
            if n is None:
                break
            i += 1
        else:
            if n.psubs or n.qsubs:
                hits.append(n)


def _open_tail(root: _Node, head: list[str], ntail: int) -> bool:
    """Whether every subject ``head`` + ``ntail`` more (non-empty) tokens gets the same
    walk: no trie node that such a subject reaches below ``head`` has literal children
    (so ``lits.get`` is None whatever the token; ``*`` and ``>`` match any)."""
    level = [root]
    for t in head:
        nxt = []
        for n in level:
            c = n.lits.get(t)
            if c is not None:
                nxt.append(c)
            if n.pwc is not None:
                nxt.append(n.pwc)
        level = nxt
    for _ in range(ntail):
        nxt = []
        for n in level:
            if n.lits:
                return False
            if n.pwc is not None:
                nxt.append(n.pwc)
        level = nxt
    return True


def _add_to_result(r: SublistResult, sub: Subscription) -> SublistResult:
    """A copy of ``r`` that also holds ``sub`` (``r`` itself is shared: not touched)."""
    if sub.queue is None:
        return SublistResult([*r.plain, sub], r.queues)
    queues = list(r.queues)
    subject, queue = sub.subject, sub.queue
    # The group this sub joins is the one of its node: same filter subject and same
    # queue name. Groups in a cached result are never empty (remove drops the entry
    # rather than patching it), so group[0] exists.
    for i, group in enumerate(queues):
        first = group[0]
        if first.queue == queue and first.subject == subject:
            queues[i] = [*group, sub]
            break
    else:
        queues.append([sub])
    return SublistResult(r.plain, queues)


def _filter_regex(toks: list[str]) -> re.Pattern[str]:
    """A regex that fully matches exactly the literal subjects the filter ``toks`` matches.

    Wildcards never match an empty token, as in the walk, so that a cached subject
    such as ``a..b`` (which matches nothing) is left alone.
    """
    parts = []
    for t in toks:
        if t == "*":
            parts.append(r"[^.]+")
        elif t == ">":
            parts.append(r"[^.]+(?:\.[^.]+)*")
        else:
            parts.append(re.escape(t))
    return re.compile(r"\.".join(parts), re.DOTALL)


# Up to this many candidate keys are checked token by token; beyond it a compiled
# regex is cheaper (compiling costs about as much as checking 30-40 keys).
_FEW_CANDIDATES = 32


def _cached_matches(cache: dict[str, SublistResult], toks: list[str]) -> list[str]:
    """The cache keys that the wildcard filter ``toks`` matches.

    Runs on every wildcard insert/remove while the cache is non-empty, so it avoids a
    Python-level loop over all keys where it can: a matching key must start with the
    filter's literal tokens, and ``str.find`` over the keys joined by newlines finds
    those in C. Only a filter that starts with a wildcard, or a key that holds a
    newline (never a valid subject, but ``match`` does not check), falls back to
    testing every key.
    """
    k = 0
    while toks[k] != "*" and toks[k] != ">":
        k += 1
    keys: list[str] | None = None
    if k:
        blob = "\n" + "\n".join(cache)
        if blob.count("\n") == len(cache):  # each key is one line
            prefix = "\n" + ".".join(toks[:k]) + "."
            keys = []
            find = blob.find
            i = find(prefix)
            while i >= 0:
                end = find("\n", i + 1)
                if end < 0:
                    keys.append(blob[i + 1 :])
                    break
                keys.append(blob[i + 1 : end])
                i = find(prefix, end)
    if keys is None:
        keys = list(cache)
    if len(keys) <= _FEW_CANDIDATES:
        filter_subject = ".".join(toks)
        return [key for key in keys if subject_matches(filter_subject, key)]
    rx = _filter_regex(toks).fullmatch
    return [key for key in keys if rx(key) is not None]


class Sublist:
    """Subscription index with a match cache. See the module docstring."""

    def __init__(
        self,
        cache: bool = True,
        cache_max: int = DEFAULT_CACHE_MAX,
        cache_sweep: int | None = None,
    ) -> None:
        if cache_max < 1:
            raise ValueError("cache_max must be at least 1")
        self._lit: dict[str, _Node] = {}  # literal filter subject -> node
        self._root = _Node()  # trie of the filters with a wildcard token
        self._nwild = 0  # subscriptions in the trie; 0 lets a miss skip the walk
        self._cache: dict[str, SublistResult] = {}
        # reply head -> (genid, _ONCE | None (not open) | result): "Reply subjects"
        self._tails: dict[Any, tuple[int, Any]] = {}
        self._cache_on = cache
        self._cache_max = cache_max
        if cache_sweep is None:
            cache_sweep = cache_max * 3 // 4
        self._cache_sweep = max(0, min(cache_sweep, cache_max))
        self.genid = 0
        self._count = 0
        self._inserts = 0
        self._removes = 0
        self._matches = 0
        self._misses = 0
        # Told of every change as watcher(sub, +1 / -1): the leaf-node link announces
        # the account's interest to its hubs (hybridbus/leaf/interest.py), push
        # consumers start when their subscriber comes (hybridbus/jetstream/delivery.py).
        self.watchers: list[Any] = []

    # -- changes ------------------------------------------------------------

    def insert(self, sub: Subscription) -> None:
        """Add ``sub``. Inserting the same object twice is a no-op.

        Raises ``ValueError`` for an invalid subject or queue name.
        """
        subject = sub.subject
        if not isinstance(subject, str) or not is_valid_subject(subject):
            raise ValueError(f"invalid subject: {subject!r}")
        queue = sub.queue
        if queue is not None and not is_valid_queue_name(queue):
            raise ValueError(f"invalid queue name: {queue!r}")
        toks = subject.split(".")
        wild = "*" in toks or ">" in toks
        if wild:
            n = self._root
            for t in toks:
                if t == "*":
                    c = n.pwc
                    if c is None:
                        c = n.pwc = _Node()
                elif t == ">":
                    c = n.fwc
                    if c is None:
                        c = n.fwc = _Node()
                else:
                    lits = n.lits
                    c = lits.get(t)
                    if c is None:
                        if lits is _NO_LITS:
                            lits = n.lits = {}
                        c = lits[t] = _Node()
                n = c
        else:
            n = self._lit.get(subject)
            if n is None:
                n = self._lit[subject] = _Node()
        if queue is None:
            if n.psubs is None:
                n.psubs = {}
            elif sub in n.psubs:
                return
            n.psubs[sub] = None
        else:
            if n.qsubs is None:
                n.qsubs = {}
            group = n.qsubs.get(queue)
            if group is None:
                group = n.qsubs[queue] = {}
            elif sub in group:
                return
            group[sub] = None
        n.res = None
        if wild:
            self._nwild += 1
        self._count += 1
        self._inserts += 1
        self.genid += 1
        if self.watchers:
            for watcher in self.watchers:
                watcher(sub, 1)
        cache = self._cache
        if not cache:
            return
        if not wild:
            r = cache.get(subject)
            if r is not None:
                cache[subject] = _add_to_result(r, sub)
            return
        for key in _cached_matches(cache, toks):
            cache[key] = _add_to_result(cache[key], sub)

    def remove(self, sub: Subscription) -> bool:
        """Remove ``sub``; False if it was not inserted (then nothing changes)."""
        subject = sub.subject
        if not isinstance(subject, str):
            return False
        toks = subject.split(".")
        wild = "*" in toks or ">" in toks
        path: list[tuple[_Node, str]] = []
        if wild:
            n = self._root
            for t in toks:
                if t == "*":
                    c = n.pwc
                elif t == ">":
                    c = n.fwc
                else:
                    c = n.lits.get(t)
                if c is None:
                    return False
                path.append((n, t))
                n = c
        else:
            n = self._lit.get(subject)
            if n is None:
                return False
        queue = sub.queue
        if queue is None:
            psubs = n.psubs
            if not psubs or sub not in psubs:
                return False
            del psubs[sub]
            if not psubs:
                n.psubs = None
        else:
            qsubs = n.qsubs
            group = qsubs.get(queue) if qsubs else None
            if group is None or sub not in group:
                return False
            del group[sub]
            if not group:
                del qsubs[queue]
                if not qsubs:
                    n.qsubs = None
        n.res = None
        if wild:
            self._nwild -= 1
            # Prune empty nodes bottom-up, so that churn on distinct subjects cannot
            # grow the trie without bound.
            while path and n.is_empty():
                parent, t = path.pop()
                if t == "*":
                    parent.pwc = None
                elif t == ">":
                    parent.fwc = None
                else:
                    del parent.lits[t]
                    if not parent.lits:
                        parent.lits = _NO_LITS
                n = parent
        elif n.psubs is None and n.qsubs is None:
            del self._lit[subject]
        self._count -= 1
        self._removes += 1
        self.genid += 1
        if self.watchers:
            for watcher in self.watchers:
                watcher(sub, -1)
        cache = self._cache
        if not cache:
            return True
        if not wild:
            cache.pop(subject, None)
            return True
        for key in _cached_matches(cache, toks):
            del cache[key]
        return True

    # -- queries ------------------------------------------------------------

    def match(self, subject: str) -> SublistResult:
        """Everything a publish to the literal ``subject`` reaches. Read-only result."""
        self._matches += 1
        r = self._cache.get(subject)
        if r is not None:
            return r
        # Miss (see the module docstring).
        self._misses += 1
        n = self._lit.get(subject)
        # A reply subject under a known open head needs no walk ("Reply subjects").
        r = self._tail_result(subject) if n is None and self._tails and self._nwild else None
        if r is not None:
            if subject.startswith(ONE_OFF_PREFIX):
                return r  # a JetStream ack: not cached (see ONE_OFF_PREFIX)
        elif self._nwild:
            toks = subject.split(".")
            if "" in toks:
                return _EMPTY
            hits = [n] if n is not None else []
            _walk(self._root, toks, hits)
            if not hits:
                r = _EMPTY
            elif len(hits) == 1:
                r = hits[0].res
                if r is None:
                    r = _node_result(hits[0])
            else:
                plain: list[Subscription] = []
                queues: list[list[Subscription]] = []
                for n in hits:
                    nr = _node_result(n)
                    plain += nr.plain
                    queues += nr.queues
                r = SublistResult(plain, queues)
            if self._cache_on and len(toks) > 1 and subject not in self._lit:
                self._note_tail(subject, toks, r)
            if toks[0] == "$JS" and len(toks) > 2 and toks[1] == "ACK":
                return r  # a JetStream ack: not cached (see ONE_OFF_PREFIX)
        elif n is None:
            # Also the answer for a subject with an empty token: no literal filter
            # has one, and there are no wildcards.
            r = _EMPTY
        else:
            r = n.res
            if r is None:
                r = _node_result(n)
        if self._cache_on:
            cache = self._cache
            cache[subject] = r
            if len(cache) > self._cache_max:
                # Oldest first: dicts keep insertion order.
                for key in list(islice(cache, len(cache) - self._cache_sweep)):
                    del cache[key]
        return r

    def match_each(self, subjects: list[str]) -> list[SublistResult]:
        """``match`` for each subject, in order. A subject under the same open head as
        the one before it ("Reply subjects"), and named by no literal filter, costs one
        string split and one lookup, and stays out of the match cache (JetStream's
        PubAcks of one read, each to its own ``_INBOX.<id>.<n>``)."""
        out: list[SublistResult] = []
        lit = self._lit
        tails = self._tails
        match = self.match
        prev_head: str | None = None
        prev: SublistResult | None = None
        reused = 0
        for subject in subjects:
            head, _, last = subject.rpartition(".")
            if head == prev_head and last and subject not in lit:
                out.append(prev)  # type: ignore[arg-type]
                reused += 1
                continue
            r = match(subject)
            out.append(r)
            t = tails.get(head)
            if t is not None and t[1] is r and t[0] == self.genid:
                prev_head, prev = head, r
            else:
                prev_head = prev = None
        self._matches += reused
        self._misses += reused
        return out

    def match_acks(self, subjects: list[str]) -> list[SublistResult]:
        """``match`` for each subject, in order: a client's run of JetStream acks
        (``$JS.ACK.<...>``, a subject each). An ack with as many tokens as the one
        before it, no empty token, and named by no literal filter, gets that one's
        result when it came from the open ``$JS.ACK`` tail ("Reply subjects"): a few
        string tests, no lookup (match costs a cache miss and a tail lookup)."""
        out: list[SublistResult] = []
        lit = self._lit
        match = self.match
        dots = -1  # the dot count of the ack whose result `prev` is (-1: none)
        prev: SublistResult | None = None
        reused = 0
        for subject in subjects:
            if (
                subject.count(".") == dots
                and subject.startswith(ONE_OFF_PREFIX)
                and ".." not in subject
                and not subject.endswith(".")
                and subject not in lit
            ):
                out.append(prev)  # type: ignore[arg-type]
                reused += 1
                continue
            r = match(subject)
            out.append(r)
            if subject.startswith(ONE_OFF_PREFIX) and self._tail_result(subject) is r:
                dots, prev = subject.count("."), r
            else:
                dots = -1
        self._matches += reused
        self._misses += reused
        return out

    def _tail_result(self, subject: str) -> SublistResult | None:
        """The result kept for ``subject``'s head, if it is open and current."""
        if subject.startswith(ONE_OFF_PREFIX):
            if ".." in subject or subject[-1] == ".":
                return None
            key: Any = (ONE_OFF_PREFIX, subject.count("."))
        else:
            key, _, last = subject.rpartition(".")
            if not last:
                return None
        t = self._tails.get(key)
        if t is not None and t[0] == self.genid and t[1].__class__ is SublistResult:
            return t[1]
        return None

    def _note_tail(self, subject: str, toks: list[str], r: SublistResult) -> None:
        """A subject with a head missed (no empty token, no literal filter): remember the
        head, and at its second miss keep ``r`` for every subject under it if its tail
        is open ("Reply subjects")."""
        if toks[0] == "$JS" and toks[1] == "ACK" and len(toks) > 2:
            nhead = 2
            key: Any = (ONE_OFF_PREFIX, len(toks) - 1)
        else:
            nhead = len(toks) - 1
            key = subject[: -len(toks[-1]) - 1]
        tails = self._tails
        genid = self.genid
        t = tails.get(key)
        if t is not None and t[0] == genid:
            if t[1] is _ONCE:
                is_open = _open_tail(self._root, toks[:nhead], len(toks) - nhead)
                tails[key] = (genid, r if is_open else None)
            return
        if len(tails) >= self._cache_max:
            tails.clear()  # stale or one-off heads; the live ones come back in two misses
        tails[key] = (genid, _ONCE)

    def count(self) -> int:
        """Number of subscriptions inserted."""
        return self._count

    def __len__(self) -> int:
        return self._count

    def subscriptions(self) -> Iterator[Subscription]:
        """Every inserted subscription, in no particular order.

        Iterates over a snapshot, so the caller may insert/remove meanwhile.
        """
        out: list[Subscription] = []
        stack = [self._root, *self._lit.values()]
        while stack:
            n = stack.pop()
            if n.psubs:
                out.extend(n.psubs)
            if n.qsubs:
                for group in n.qsubs.values():
                    out.extend(group)
            stack.extend(n.lits.values())
            if n.pwc is not None:
                stack.append(n.pwc)
            if n.fwc is not None:
                stack.append(n.fwc)
        return iter(out)

    # -- cache control and monitoring --------------------------------------

    @property
    def cache_enabled(self) -> bool:
        return self._cache_on

    def set_cache(self, enabled: bool) -> None:
        """Turn the match cache on or off; turning it off also empties it."""
        self._cache_on = enabled
        if not enabled:
            self._cache.clear()
            self._tails.clear()

    def clear_cache(self) -> None:
        self._cache.clear()
        self._tails.clear()

    def stats(self) -> dict:
        """The sublist part of ``/subsz``, with nats-server's field names and types.

        ``max_fanout``/``avg_fanout`` are taken over the cached results, as in
        nats-server (a queue group counts once); both are 0 while the cache is empty.
        """
        matches = self._matches
        hit_rate = (matches - self._misses) / matches if matches else 0.0
        total = 0
        most = 0
        cache = self._cache
        for r in cache.values():
            f = len(r.plain) + len(r.queues)
            total += f
            if f > most:
                most = f
        return {
            "num_subscriptions": self._count,
            "num_cache": len(cache),
            "num_inserts": self._inserts,
            "num_removes": self._removes,
            "num_matches": matches,
            "cache_hit_rate": float(hit_rate),
            "max_fanout": most,
            "avg_fanout": total / len(cache) if cache else 0.0,
        }
