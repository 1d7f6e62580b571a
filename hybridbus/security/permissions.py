"""Publish and subscribe permissions, checked on NATS subjects for both protocols.

Theory of operation
-------------------
A configured ``options.Permissions`` (allow/deny lists per direction, plus
``allow_responses``) is compiled once per user into a ``UserPermissions``. All
clients logged in as that user share it, and with it three small result caches
keyed by subject, so the steady state of a busy client is one dict lookup per
publish. The caches are bounded (``CACHE_MAX``); past the bound the oldest quarter
is dropped, so a client that walks through endless unique subjects costs at most
one cache's worth of memory and a rule scan per miss.

A rule list is a list of token tuples. Three relations between a rule ``f`` and a
subject ``s`` (which may hold wildcards when it is a subscription) decide everything:

* ``covers(f, s)``: every subject ``s`` can match is also matched by ``f``
  (``foo.>`` covers ``foo.*`` and ``foo.bar``; ``foo.*`` does not cover ``foo.>``);
* ``intersects(f, s)``: some subject is matched by both;
* for a literal subject both reduce to ordinary matching.

Publish: allowed when the allow list is absent or one of its rules covers the
subject, and no deny rule intersects it. A publish that the rules refuse may still
pass as a *response* (``allow_responses``): the client received a message whose
reply subject is this one, no more than ``max`` times and no later than ``expires``
after it arrived. That state is per connection, so a user with response permission
gets a ``ClientPermissions`` wrapper per client; ``note_reply`` is a no-op otherwise.

Subscribe: an allow list must cover the subscription; with a queue group, entries
written ``"subject queue"`` decide for the groups they name (nats-server's rule: when
queue entries match the subject, the queue name must match one of them). A deny rule
that covers the subscription refuses it. A deny rule that only *overlaps* a wildcard
subscription (``SUB >`` with ``deny: secret.>``) is the partial case: nats-server
accepts the subscription and drops the denied messages at delivery. ``subscribe``
returns ``PARTIAL`` for it and the facade decides (see ``Security.filter_deliveries``);
``may_receive(subject)`` is the delivery-time check.

Queue names in rules may use ``*``/``>`` tokens like subjects.
"""

from __future__ import annotations

import time
from itertools import islice

from hybridbus.options import Permissions

__all__ = [
    "ALLOW",
    "DENY",
    "PARTIAL",
    "CACHE_MAX",
    "covers",
    "intersects",
    "UserPermissions",
    "ClientPermissions",
    "compile_permissions",
]

ALLOW = 1
DENY = 0
# Allowed only if denied messages are filtered at delivery (a deny rule overlaps).
PARTIAL = 2

CACHE_MAX = 1024
# Per-connection reply bookkeeping for allow_responses: prune expired entries past
# REPLY_PRUNE, and never keep more than REPLY_MAX (oldest dropped first).
DEFAULT_RESPONSE_MAX = 1
DEFAULT_RESPONSE_EXPIRES = 120.0
REPLY_PRUNE = 4096
REPLY_MAX = 65536

Tokens = tuple[str, ...]


def covers(f: Tokens, s: Tokens) -> bool:
    """Every subject matched by `s` is also matched by the rule `f`."""
    ns = len(s)
    i = 0
    for ft in f:
        if ft == ">":
            # `>` needs at least one token; any token of s (wildcards included) fits.
            return ns > i
        if i >= ns:
            return False
        st = s[i]
        if st == ">":
            return False
        if ft != "*" and st != ft:
            return False
        i += 1
    return len(f) == ns


def intersects(a: Tokens, b: Tokens) -> bool:
    """Some subject is matched by both `a` and `b`."""
    na, nb = len(a), len(b)
    for i in range(min(na, nb)):
        x = a[i]
        y = b[i]
        if x == ">" or y == ">":
            return True
        if x != y and x != "*" and y != "*":
            return False
    return na == nb


def _split(entries: list[str] | None, queue_ok: bool) -> tuple[list, list] | None:
    """Rule strings -> (plain subject rules, [(subject rule, queue rule)]); None stays None."""
    if entries is None:
        return None
    plain: list[Tokens] = []
    queued: list[tuple[Tokens, Tokens]] = []
    for entry in entries:
        parts = entry.split()
        if not parts:
            continue
        if queue_ok and len(parts) >= 2:
            queued.append((tuple(parts[0].split(".")), tuple(parts[1].split("."))))
        else:
            plain.append(tuple(parts[0].split(".")))
    return plain, queued


def _trim(cache: dict) -> None:
    for key in list(islice(cache, CACHE_MAX // 4)):
        del cache[key]


class UserPermissions:
    """The compiled rules of one user (shared by all its connections)."""

    __slots__ = (
        "pub_allow",
        "pub_deny",
        "sub_allow",
        "sub_allow_q",
        "sub_deny",
        "sub_deny_q",
        "responses",
        "filters_delivery",
        "_pub_cache",
        "_sub_cache",
        "_recv_cache",
    )

    def __init__(self, perms: Permissions) -> None:
        self.pub_allow = (
            None
            if perms.publish_allow is None
            else [tuple(s.split(".")) for s in perms.publish_allow]
        )
        self.pub_deny = [tuple(s.split(".")) for s in perms.publish_deny or ()]
        allow = _split(perms.subscribe_allow, True)
        self.sub_allow, self.sub_allow_q = allow if allow is not None else (None, [])
        deny = _split(perms.subscribe_deny, True) or ([], [])
        self.sub_deny, self.sub_deny_q = deny
        # (max messages, expires seconds); see ClientPermissions for the special values.
        self.responses = perms.allow_responses
        # Whether delivery must ask may_receive (some deny rule could match a message).
        self.filters_delivery = bool(self.sub_deny)
        self._pub_cache: dict[str, bool] = {}
        self._sub_cache: dict[tuple[str, str | None], int] = {}
        self._recv_cache: dict[str, bool] = {}

    # -- what a connection holds -----------------------------------------------------

    def for_client(self) -> UserPermissions | ClientPermissions:
        """The object to put on ``client.perms``: per-connection only with responses."""
        if self.responses is not None:
            return ClientPermissions(self)
        return self

    def note_reply(self, reply: str) -> None:
        """A message with this reply subject was delivered (no response permission)."""

    # -- checks ----------------------------------------------------------------------

    def may_publish(self, subject: str) -> bool:
        ok = self._pub_cache.get(subject)
        if ok is None:
            ok = self._publish_rules(subject)
            cache = self._pub_cache
            if len(cache) >= CACHE_MAX:
                _trim(cache)
            cache[subject] = ok
        return ok

    def _publish_rules(self, subject: str) -> bool:
        s = tuple(subject.split("."))
        if self.pub_allow is not None and not any(covers(f, s) for f in self.pub_allow):
            return False
        return not any(intersects(d, s) for d in self.pub_deny)

    def subscribe(self, subject: str, queue: str | None) -> int:
        """ALLOW, DENY or PARTIAL (allowed if denied messages are filtered at delivery)."""
        key = (subject, queue)
        verdict = self._sub_cache.get(key)
        if verdict is None:
            verdict = self._subscribe_rules(subject, queue)
            cache = self._sub_cache
            if len(cache) >= CACHE_MAX:
                _trim(cache)
            cache[key] = verdict
        return verdict

    def _subscribe_rules(self, subject: str, queue: str | None) -> int:
        s = tuple(subject.split("."))
        q = tuple(queue.split(".")) if queue else None
        if self.sub_allow is not None:
            named = [qr for f, qr in self.sub_allow_q if covers(f, s)] if q else []
            if named:
                # Queue entries for this subject exist: the group must be one of them.
                if not any(covers(qr, q) for qr in named):
                    return DENY
            elif not any(covers(f, s) for f in self.sub_allow):
                return DENY
        if any(covers(d, s) for d in self.sub_deny):
            return DENY
        if q and any(intersects(f, s) and covers(qr, q) for f, qr in self.sub_deny_q):
            # A queue deny cannot be filtered per group at delivery: refuse outright.
            return DENY
        if any(intersects(d, s) for d in self.sub_deny):
            return PARTIAL
        return ALLOW

    def may_receive(self, subject: str) -> bool:
        """Delivery-time check for PARTIAL subscriptions: the subject is not denied."""
        ok = self._recv_cache.get(subject)
        if ok is None:
            s = tuple(subject.split("."))
            ok = not any(intersects(d, s) for d in self.sub_deny)
            cache = self._recv_cache
            if len(cache) >= CACHE_MAX:
                _trim(cache)
            cache[subject] = ok
        return ok


class ClientPermissions:
    """A user's rules plus this connection's response allowance (allow_responses).

    ``replies`` maps a reply subject the client received to [uses left, deadline];
    uses left < 0 means unlimited, deadline 0 means never. As in nats-server, a
    configured max of 0 means the default (1) and expires 0 the default (2 minutes);
    a negative max is unlimited and a negative expires never runs out."""

    __slots__ = ("rules", "replies", "max_msgs", "expires", "clock", "filters_delivery")

    def __init__(self, rules: UserPermissions, clock=time.monotonic) -> None:
        self.rules = rules
        self.filters_delivery = rules.filters_delivery
        self.replies: dict[str, list] = {}
        max_msgs, expires = rules.responses
        self.max_msgs = max_msgs or DEFAULT_RESPONSE_MAX
        self.expires = expires or DEFAULT_RESPONSE_EXPIRES
        self.clock = clock

    def note_reply(self, reply: str) -> None:
        replies = self.replies
        if len(replies) >= REPLY_PRUNE and reply not in replies:
            self._prune()
        deadline = self.clock() + self.expires if self.expires > 0 else 0.0
        # Re-inserting moves the entry to the end, so eviction drops the oldest.
        replies.pop(reply, None)
        replies[reply] = [self.max_msgs, deadline]

    def _prune(self) -> None:
        now = self.clock()
        replies = self.replies
        for reply, (_, deadline) in list(replies.items()):
            if deadline and deadline < now:
                del replies[reply]
        excess = len(replies) - (REPLY_MAX - 1)
        if excess > 0:
            for reply in list(islice(replies, excess)):
                del replies[reply]

    def may_publish(self, subject: str) -> bool:
        if self.rules.may_publish(subject):
            return True
        entry = self.replies.get(subject)
        if entry is None:
            return False
        left, deadline = entry
        if deadline and self.clock() > deadline:
            del self.replies[subject]
            return False
        if left > 0:
            left -= 1
            if left == 0:
                del self.replies[subject]
            else:
                entry[0] = left
        return True

    def subscribe(self, subject: str, queue: str | None) -> int:
        return self.rules.subscribe(subject, queue)

    def may_receive(self, subject: str) -> bool:
        return self.rules.may_receive(subject)


def compile_permissions(perms: Permissions | None) -> UserPermissions | None:
    """None (no restriction) for None or for rules that restrict nothing."""
    if perms is None:
        return None
    if (
        perms.publish_allow is None
        and not perms.publish_deny
        and perms.subscribe_allow is None
        and not perms.subscribe_deny
    ):
        return None
    return UserPermissions(perms)
