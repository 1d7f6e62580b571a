"""``Server.route_to_each``: a JetStream pull batch delivered with one router lookup.

A pull consumer hands a batch (up to the request's 500) to one inbox; ``route_to`` per
message matched that inbox every time. Kept out of ``server.py`` (its size limit) and
bound there as a method.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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
