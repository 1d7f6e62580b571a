"""``Server.route_to_each``: a JetStream pull batch delivered with one router lookup;
``Server.route_acks``: a read's run of acks handed to the JetStream engine at once;
``Server.route_requests``: a read's run of requests to a stream's subject, the same.

A pull consumer hands a batch (up to the request's 500) to one inbox; ``route_to`` per
message matched that inbox every time. Its client acks the 500 in one write, which
``route`` took one by one. Kept out of ``server.py`` (its size limit) and bound there
as methods.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from hybridbus.core.flow import RUN_WORK

if TYPE_CHECKING:
    from hybridbus.server.server import Server


def route_to_each(server: Server, origin: Any, inbox: str, msgs: list[tuple]) -> list[int]:
    """``route_to(origin, inbox, *m)`` for each ``(subject, reply, headers, payload)``
    of ``msgs``, in order; returns the indices that reached nobody. ``inbox`` is matched
    once while it has one plain receiver (the usual pull inbox); anything else, or a
    receiver that reaches its max messages (``UNSUB <sid> <max>``: the rest then reach
    nobody), goes on message by message through ``route_to``."""
    result = (server.sublist if origin is None else origin.account.sublist).match(inbox)
    plain = result.plain
    done = 0
    if len(plain) == 1 and not result.queues and not server._expired:
        sub = plain[0]
        run = getattr(sub.client, "deliver_run", None)
        if run is not None and not sub.max_msgs:
            # A NATS inbox without a limit: the batch in one call (deliver_run); what
            # the loop below checks per message cannot happen there (no MQTT session
            # to serve after the round, no expiry).
            server.route_seq += len(msgs)
            run(sub, msgs)
            return []
        deliver = sub.client.deliver
        for subject, reply, headers, payload in msgs:
            server.route_seq += 1  # one delivery round per message, as route_to
            deliver(sub, subject, reply, headers, payload, None)
            done += 1
            if server.route_sessions:  # an MQTT session: it sends after the round
                sessions, server.route_sessions = server.route_sessions, []
                for session in sessions:
                    session.deliver_matched(subject, reply, headers, payload, None)
            if server._expired:
                server._remove_expired()
                break
    route_to = server.route_to
    return [k for k in range(done, len(msgs)) if not route_to(origin, inbox, *msgs[k])]


def route_tails(
    server: Server, origin: Any, inbox: str, subject: str, tails: list[bytes], nbytes: int
) -> bool:
    """``route_to_each`` for a pull batch on one ``subject`` without headers, each message
    encoded once as the tail of its MSG frame (codec/nats.py ``msg_head_tail``: ``
    <reply> <size>\\r\\n<payload>\\r\\n``; ``nbytes`` their payload bytes): True when
    ``inbox`` has one plain NATS receiver that takes them as such (``deliver_tails``),
    with no auto-unsubscribe limit or permissions to apply per message (route_to_each's
    fast path); otherwise False and nothing is sent (the caller uses route_to_each)."""
    result = (server.sublist if origin is None else origin.account.sublist).match(inbox)
    plain = result.plain
    if len(plain) != 1 or result.queues or server._expired:
        return False
    sub = plain[0]
    client = sub.client
    take = getattr(client, "deliver_tails", None)
    if take is None or sub.max_msgs or client.perms is not None:
        return False
    server.route_seq += len(tails)  # a delivery round per message, as route_to
    take(sub, subject, tails, nbytes)
    return True


def route_acks(server: Server, origin: Any, subjects: list[str]) -> None:
    """``route(origin, s, None, None, b"")`` for each of ``subjects``, in order: a read's
    run of JetStream acks (``PUB $JS.ACK.<...> 0``, codec/nats.py ``OP_ACKS``). Each
    subject is matched as ``route`` matches it (``Sublist.match_acks``); while the match
    is exactly one subscription that takes such runs (``on_acks``: the JetStream
    engine's ``$JS.ACK.>``), the subjects go to it in one call. Anything else, another
    subscriber of the subject (a client's ``$JS.ACK.>``, a leaf link's interest, an
    import), a queue group, an account with mappings, goes through ``route``; and once
    a delivery changed the subscriptions (an auto-unsubscribe), so does the rest."""
    # hot path: one identity test and one append per ack.
    route = server.route
    acc = origin.account
    if acc.mappings is not None:
        for subject in subjects:
            route(origin, subject, None, None, b"")
        return
    sublist = acc.sublist
    genid = sublist.genid
    sink = None  # the result of the subjects in `batch` (one taker, for all of them)
    batch: list[str] = []
    done = 0  # subjects before this one are routed, or in `batch`
    for subject, r in zip(subjects, sublist.match_acks(subjects), strict=True):
        if r is not sink:
            if batch:
                _to_taker(server, sink, batch)
                batch = []
            if sublist.genid != genid:
                break  # the results ahead may be stale: route matches afresh
            plain = r.plain
            sub = plain[0] if len(plain) == 1 and not r.queues else None
            if sub is None or getattr(sub, "on_acks", None) is None or sub.client is origin:
                sink = None
                route(origin, subject, None, None, b"")
                done += 1
                continue
            sink = r
        batch.append(subject)
        done += 1
    if batch:
        _to_taker(server, sink, batch)
    for subject in subjects[done:]:
        route(origin, subject, None, None, b"")


def route_requests(
    server: Server, origin: Any, subject: str, replies: Sequence[str], payloads: Sequence[bytes]
) -> int:
    """``route(origin, subject, r, None, p)`` for each reply and payload, in order: a
    read's run of requests to one subject (a JetStream publisher's PUBs, each with its
    own inbox; nats/connection.py ``_request_run``). When the subject's match in the
    origin's account is exactly one subscription that takes such runs (``on_requests``:
    a stream's capture, jetstream/capture.py) and nothing else (no other subscriber, no
    queue group, no leaf link's interest, no import, no mapping), the run goes to it in
    one call, at most ``RUN_WORK`` messages of it (as ``route_run``). Returns how many
    were routed; 0 routes nothing, and the caller routes each message as before (with
    its no-responders answer, or to the several receivers)."""
    acc = origin.account
    if acc.mappings is not None or server._expired:
        return 0
    result = acc.sublist.match(subject)
    plain = result.plain
    if len(plain) != 1 or result.queues:
        return 0
    sub = plain[0]
    if getattr(sub, "on_requests", None) is None or sub.client is origin:
        return 0
    n = len(replies)
    if n > RUN_WORK:  # the rest after the read loop's look at the turn's budget
        n = RUN_WORK
        replies = replies[:n]
        payloads = payloads[:n]
    server.route_seq += n  # a delivery round per message, as route
    server.work += n
    sub.client.deliver_requests(sub, subject, replies, payloads)
    return n


def _to_taker(server: Server, result: Any, subjects: list[str]) -> None:
    sub = result.plain[0]
    n = len(subjects)
    server.route_seq += n  # a delivery round per message, as route
    server.work += n
    sub.client.deliver_acks(sub, subjects)
