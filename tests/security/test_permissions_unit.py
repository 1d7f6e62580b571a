"""The permission engine on its own: subject relations, rules, caches, responses."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hybridbus.options import Permissions
from hybridbus.security import permissions as P
from hybridbus.security.permissions import (
    ALLOW,
    DENY,
    PARTIAL,
    ClientPermissions,
    UserPermissions,
    compile_permissions,
    covers,
    intersects,
)


def t(subject: str) -> tuple[str, ...]:
    return tuple(subject.split("."))


# -- subject relations, against brute force --------------------------------------------

UNIVERSE = ["a", "b", "z"]  # "z" never appears in patterns: it stands for "any other token"
LITERALS = [tuple(p) for n in range(1, 5) for p in itertools.product(UNIVERSE, repeat=n)]


def naive_match(pattern: tuple[str, ...], subject: tuple[str, ...]) -> bool:
    for i, tok in enumerate(pattern):
        if tok == ">":
            return len(subject) > i
        if i >= len(subject) or (tok != "*" and tok != subject[i]):
            return False
    return len(pattern) == len(subject)


patterns = st.lists(st.sampled_from(["a", "b", "*"]), min_size=1, max_size=3).flatmap(
    lambda toks: st.sampled_from([tuple(toks), tuple(toks[:-1]) + (">",)])
)


@settings(max_examples=200, deadline=None)
@given(patterns, patterns)
def test_covers_is_subset_of_matches(f, s):
    expected = all(naive_match(f, lit) for lit in LITERALS if naive_match(s, lit))
    assert covers(f, s) == expected


@settings(max_examples=200, deadline=None)
@given(patterns, patterns)
def test_intersects_is_common_match(a, b):
    expected = any(naive_match(a, lit) and naive_match(b, lit) for lit in LITERALS)
    assert intersects(a, b) == expected
    assert intersects(b, a) == expected


@pytest.mark.parametrize(
    "rule, sub, expected",
    [
        ("foo.>", "foo.*", True),
        ("foo.>", "foo.bar.baz", True),
        ("foo.>", "foo", False),
        ("foo.*", "foo.>", False),
        ("*", ">", False),
        (">", ">", True),
        ("foo.bar", "foo.*", False),
    ],
)
def test_covers_examples(rule, sub, expected):
    assert covers(t(rule), t(sub)) is expected


# -- rules -------------------------------------------------------------------------------


def test_publish_allow_and_deny():
    p = UserPermissions(
        Permissions(publish_allow=["orders.>", "news.>", "ping"], publish_deny=["orders.secret"])
    )
    assert p.may_publish("orders.new")
    assert p.may_publish("ping")
    assert not p.may_publish("orders.secret")
    assert not p.may_publish("orders")
    assert not p.may_publish("other")
    # A wildcard "subject" from a non-pedantic client must be covered by an allow rule
    # and must not even overlap a deny rule.
    assert p.may_publish("news.*")
    assert not p.may_publish("orders.*")
    assert not p.may_publish(">")


def test_publish_deny_only_and_empty_allow():
    p = UserPermissions(Permissions(publish_deny=["$SYS.>"]))
    assert p.may_publish("anything.at.all")
    assert not p.may_publish("$SYS.REQ.x")
    nothing = UserPermissions(Permissions(publish_allow=[]))
    assert not nothing.may_publish("a")


def test_subscribe_allow_must_cover():
    p = UserPermissions(Permissions(subscribe_allow=["foo.>"]))
    assert p.subscribe("foo.bar", None) == ALLOW
    assert p.subscribe("foo.*", None) == ALLOW
    assert p.subscribe("foo.>", None) == ALLOW
    assert p.subscribe(">", None) == DENY
    assert p.subscribe("foo", None) == DENY
    star = UserPermissions(Permissions(subscribe_allow=["foo.*"]))
    assert star.subscribe("foo.>", None) == DENY


def test_subscribe_queue_entries():
    only_q1 = UserPermissions(Permissions(subscribe_allow=["jobs.* q1"]))
    assert only_q1.subscribe("jobs.a", "q1") == ALLOW
    assert only_q1.subscribe("jobs.a", "q2") == DENY
    assert only_q1.subscribe("jobs.a", None) == DENY
    mixed = UserPermissions(Permissions(subscribe_allow=["jobs.>", "jobs.a q1"]))
    assert mixed.subscribe("jobs.a", None) == ALLOW
    assert mixed.subscribe("jobs.b", "q9") == ALLOW  # no queue entry for jobs.b
    assert mixed.subscribe("jobs.a", "q1") == ALLOW
    assert mixed.subscribe("jobs.a", "q2") == DENY  # jobs.a names its groups
    pattern = UserPermissions(Permissions(subscribe_allow=["jobs.> workers.*"]))
    assert pattern.subscribe("jobs.x", "workers.eu") == ALLOW
    assert pattern.subscribe("jobs.x", "workers") == DENY


def test_subscribe_deny_full_partial_and_queue():
    p = UserPermissions(Permissions(subscribe_deny=["secret.>", "jobs.a q1"]))
    assert p.subscribe("secret.x", None) == DENY
    assert p.subscribe("secret.*", None) == DENY
    assert p.subscribe(">", None) == PARTIAL
    assert p.subscribe("*.x", None) == PARTIAL
    assert p.subscribe("public.x", None) == ALLOW
    assert p.subscribe("jobs.a", "q1") == DENY
    assert p.subscribe("jobs.*", "q1") == DENY
    assert p.subscribe("jobs.a", "q2") == ALLOW
    assert p.subscribe("jobs.a", None) == ALLOW
    assert p.may_receive("public.x")
    assert not p.may_receive("secret.x")


def test_caches_are_bounded_and_consistent():
    p = UserPermissions(Permissions(publish_allow=["a.*"], subscribe_deny=["s.>"]))
    for i in range(P.CACHE_MAX * 3):
        assert p.may_publish(f"a.{i}")
        assert not p.may_publish(f"b.{i}")
        assert p.subscribe(f"x.{i}", None) == ALLOW
        assert not p.may_receive(f"s.{i}")
    assert len(p._pub_cache) <= P.CACHE_MAX
    assert len(p._sub_cache) <= P.CACHE_MAX
    assert len(p._recv_cache) <= P.CACHE_MAX
    # still right after trimming
    assert p.may_publish("a.0") and not p.may_publish("b.0")


def test_compile_permissions_unrestricted_is_none():
    assert compile_permissions(None) is None
    assert compile_permissions(Permissions()) is None
    assert compile_permissions(Permissions(publish_allow=[])) is not None


# -- allow_responses -------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def responder(max_msgs: int, expires: float) -> tuple[ClientPermissions, Clock]:
    rules = UserPermissions(
        Permissions(
            publish_allow=[], subscribe_allow=["svc.>"], allow_responses=(max_msgs, expires)
        )
    )
    clock = Clock()
    return ClientPermissions(rules, clock), clock


def test_response_allowed_max_times():
    p, _ = responder(2, 60.0)
    assert not p.may_publish("_INBOX.r1")
    p.note_reply("_INBOX.r1")
    assert p.may_publish("_INBOX.r1")
    assert p.may_publish("_INBOX.r1")
    assert not p.may_publish("_INBOX.r1")
    assert not p.may_publish("_INBOX.other")


def test_response_expires():
    p, clock = responder(5, 2.0)
    p.note_reply("_INBOX.r2")
    clock.now += 1.0
    assert p.may_publish("_INBOX.r2")
    clock.now += 1.5
    assert not p.may_publish("_INBOX.r2")
    assert "_INBOX.r2" not in p.replies


def test_response_unlimited_and_never_expiring():
    p, clock = responder(-1, -1.0)
    p.note_reply("_INBOX.r3")
    clock.now += 1e6
    for _ in range(100):
        assert p.may_publish("_INBOX.r3")


def test_response_zero_means_defaults():
    p, clock = responder(0, 0.0)  # nats-server: 1 message within 2 minutes
    p.note_reply("_INBOX.r4")
    assert p.may_publish("_INBOX.r4")
    assert not p.may_publish("_INBOX.r4")
    p.note_reply("_INBOX.r5")
    clock.now += 121
    assert not p.may_publish("_INBOX.r5")


def test_reply_table_is_bounded(monkeypatch):
    monkeypatch.setattr(P, "REPLY_PRUNE", 16)
    monkeypatch.setattr(P, "REPLY_MAX", 32)
    p, clock = responder(1, 10.0)
    for i in range(200):
        p.note_reply(f"_INBOX.{i}")
        clock.now += 0.01
    assert len(p.replies) <= 32
    # the newest are kept, the oldest dropped
    assert p.may_publish("_INBOX.199")
    assert not p.may_publish("_INBOX.0")
    # expired ones go first
    clock.now += 100
    p.note_reply("_INBOX.fresh")
    for i in range(20):
        p.note_reply(f"_INBOX.n{i}")
    assert all(not k.startswith("_INBOX.1") for k in p.replies)


def test_for_client_shares_rules_without_responses():
    plain = UserPermissions(Permissions(publish_allow=["a"]))
    assert plain.for_client() is plain
    plain.note_reply("x")  # no-op, no state
    with_resp = UserPermissions(Permissions(publish_allow=[], allow_responses=(1, 1.0)))
    a, b = with_resp.for_client(), with_resp.for_client()
    assert isinstance(a, ClientPermissions) and a is not b
    a.note_reply("_INBOX.x")
    assert a.may_publish("_INBOX.x") and not b.may_publish("_INBOX.x")
