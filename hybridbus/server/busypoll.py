"""Busy polling after a write: the next request is read without a wake-up.

A client that waits for an answer sends its next request soon after it gets one. If
the server's thread sleeps in ``epoll_wait`` meanwhile, that request must wake it: on
another CPU that is an inter-processor interrupt, which on a virtual machine costs
tens of microseconds each way (measured here: a KV get's p50 211-320 us with the client
and server on different CPUs, 121-130 us on the same one). nats-server does not pay
it: Go's scheduler spins on the network poller for a while before it parks a thread.

``BusyPoll`` does the same for the event loop: after ``Server.flush`` wrote something,
it keeps one callback ready for ``busy_poll`` seconds (``Options.busy_poll``, default
200 us; ``busy_poll: 0`` turns it off). With a callback ready, the loop polls with a
zero timeout, so a request that arrives meanwhile is read at once. Each turn yields
the CPU (``sched_yield``), so a client on the same CPU runs first. Under load the
loop always has work and this costs one callback per turn; idle, it costs nothing;
in between, up to ``busy_poll`` of CPU per write (the price nats-server pays too).
"""

from __future__ import annotations

import os
import time
from typing import Any

_sched_yield = getattr(os, "sched_yield", lambda: None)
_clock = time.perf_counter


class BusyPoll:
    __slots__ = ("loop", "until", "active")

    def __init__(self, loop: Any) -> None:
        self.loop = loop
        self.until = 0.0
        self.active = False

    def after_write(self, window: float) -> None:
        """Something was written: keep polling for ``window`` seconds from now."""
        if window <= 0 or self.loop is None:
            return
        self.until = _clock() + window
        if not self.active:
            self.active = True
            self.loop.call_soon(self._turn)

    def _turn(self) -> None:
        if _clock() < self.until:
            _sched_yield()
            self.loop.call_soon(self._turn)
        else:
            self.active = False
