"""The FanoutJob: one message to more than FANOUT_SLICE receivers, a slice per turn of
the loop (the theory is in core/flow.py)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from hybridbus.core.flow import TURN_BUDGET, WORK_CHECK

if TYPE_CHECKING:
    from hybridbus.server.server import Server

CHUNK = 256  # receivers between two looks at the clock


class FanoutJob:
    """One message routed to more than FANOUT_SLICE receivers, a slice per turn."""

    __slots__ = (
        "server",
        "origin",
        "subject",
        "reply",
        "headers",
        "payload",
        "mqtt_msg",
        "subs",
        "pos",
        "seq",
        "reader",
        "ticket",
        "persistence",
        "payloads",
        "msgs",
    )

    def __init__(self, server: Server, origin: Any, subject, reply, headers, payload, msg):
        self.server = server
        self.origin = origin
        self.subject = subject
        self.reply = reply
        self.headers = headers
        self.payload = payload
        self.mqtt_msg = msg
        self.subs: list = []
        self.pos = 0
        self.seq = 0
        self.reader: Any = None
        self.ticket: Any = None
        self.persistence: Any = None  # the store whose ticket it holds
        # A run of messages (Server.route_run) instead of one: payloads, and the
        # MqttMessages when an MQTT session published them.
        self.payloads: list | None = None
        self.msgs: list | None = None

    def start_run(self, subs: list, payloads: list, msgs: list | None) -> None:
        """Serve a run of messages to one subject (no reply, no headers), each
        receiver getting the whole run at once (deliver_batch, deliver_matched_run)."""
        self.payloads = payloads
        self.msgs = msgs
        self.start(subs)

    def start(self, subs: list) -> None:
        """Serve the first slice now; the rest on the next turns of the loop."""
        server = self.server
        self.subs = subs
        self.seq = server.route_seq
        reader = server.reading
        if reader is not None and not reader.closing:
            reader.hold_input()
            server.work = WORK_CHECK  # the read loop looks at once, and stops
            self.reader = reader
        # the publisher's account's MQTT store (server/account_state.py)
        origin = self.origin
        broker = server.mqtt if origin is None else origin.account.mqtt
        persistence = broker.persistence if broker is not None else None
        if persistence is not None and persistence.collecting():
            self.ticket = persistence.hold_ticket()
            self.persistence = persistence
        self.step()

    def step(self) -> None:
        server = self.server
        persistence = self.persistence if self.ticket is not None else None
        saved_seq, saved_reading = server.route_seq, server.reading
        # Sessions met in an earlier slice keep their mark: one copy per session.
        server.route_seq = self.seq
        server.reading = None  # receivers congested by this slice hold no one else
        if persistence is not None:
            state = persistence.resume_ticket(self.ticket)
        try:
            self._serve_slice()
        finally:
            if persistence is not None:
                persistence.pause_ticket(state)
            server.route_seq = max(saved_seq, server.route_seq)
            server.reading = saved_reading
        if self.pos < len(self.subs):
            server.loop.call_soon(self.next_slice)
        else:
            self.finish()

    def _serve_slice(self) -> None:
        """Receivers from `pos` on, in chunks of CHUNK, until the turn's budget is
        spent: the cost per receiver varies 50-fold (a NATS client's MSG against a
        persistent session's stored record), so the clock decides, not a count."""
        server = self.server
        subs = self.subs
        origin, subject = self.origin, self.subject
        reply, headers, payload, msg = self.reply, self.headers, self.payload, self.mqtt_msg
        started = time.perf_counter()
        pos, total = self.pos, len(subs)
        payloads, msgs = self.payloads, self.msgs
        if payloads is not None:
            payload = payloads[0]
            msg = None if msgs is None else msgs[0]
        while pos < total:
            end = min(pos + CHUNK, total)
            for i in range(pos, end):
                sub = subs[i]
                client = sub.client
                if client.closing or (client is origin and not origin.echo):
                    continue
                if payloads is not None and sub.batchable:
                    client.deliver_batch(sub, subject, payloads)
                else:
                    # (an MQTT session only notes its subscription here)
                    client.deliver(sub, subject, reply, headers, payload, msg)
            pos = end
            if server.route_sessions:
                sessions, server.route_sessions = server.route_sessions, []
                for session in sessions:
                    if payloads is not None:
                        session.deliver_matched_run(msgs)
                    else:
                        session.deliver_matched(subject, reply, headers, payload, msg)
            if time.perf_counter() - started > TURN_BUDGET:
                break
        self.pos = pos

    def next_slice(self) -> None:
        self.step()
        self.server.flush()

    def finish(self) -> None:
        self.subs = []
        if self.ticket is not None:
            self.ticket.durable(0, None)  # the hold taken in start
            self.ticket = None
        if self.reader is not None:
            reader, self.reader = self.reader, None
            reader.release_input()
