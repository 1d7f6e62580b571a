"""Lame duck mode (SIGUSR2, `hybridbus ldm`): leave without a reconnect storm.

As nats-server's ``lameDuckMode``:

1. ``Entering lame duck mode, stop accepting new clients``: the NATS, MQTT and
   WebSocket listeners close (monitoring stays up until the end). With no client
   left the server shuts down at once.
2. NATS clients that can take an INFO at any time (CONNECT ``protocol`` >= 1, first
   PONG sent: nats-server's rule) get one with ``"ldm": true``; nats-py calls its
   ``lame_duck_mode_cb`` and a client library may move to another server.
3. After ``lame_duck_grace_period`` (default 10s): ``Closing existing clients``.
   The clients of that moment are closed one by one, spread over what is left of
   ``lame_duck_duration`` (default 2m), at a random interval of at least half the
   even share and at most one second (so a few clients do not take two minutes),
   in batches when there are more clients than fit.
4. Then the ordinary shutdown: the store is flushed and closed, exit code 0.

How a client is closed is its protocol's ``shutdown``: a NATS client is closed
(nothing is said, as nats-server), an MQTT 5 client is sent DISCONNECT 0x8B
(Server shutting down), or 0x9C (Use another server) with a Server Reference when
``mqtt { server_reference }`` is set, and an MQTT 3.1.1 client is closed. Wills
are published as on any server shutdown: the server closed the network
connection without a DISCONNECT from the client, so the will goes out at that
moment [MQTT-3.1.2-8], to the subscribers still connected (or stored as retained);
a will with a Will Delay Interval that has not run out when the server exits is
dropped with the server, as on any shutdown.

SIGINT/SIGTERM during lame duck mode shut down at once (``Server.shutdown`` sets
the quit event every wait here watches).
"""

from __future__ import annotations

import json
import logging
import random
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hybridbus.server.server import Server

log = logging.getLogger("hybridbus.server")

# Shortest pause between two closes: more clients than fit are closed in batches.
MIN_PAUSE = 0.01
# Longest pause between two closes (nats-server's one second).
MAX_PAUSE = 1.0


def close_plan(clients: int, duration: float, grace: float) -> tuple[float, int]:
    """(pause between closes, clients per close) for `clients` closed over what
    `duration` leaves after `grace` (at least one second, as nats-server)."""
    spread = duration - grace
    if spread <= 0:
        spread = 1.0
    if clients <= 0:
        return MAX_PAUSE, 1
    pause = spread / clients
    batch = 1
    if pause < MIN_PAUSE:
        batch = max(1, round(MIN_PAUSE / pause))
        pause = MIN_PAUSE
    return min(pause, MAX_PAUSE), batch


async def lame_duck(server: Server) -> None:
    """Run lame duck mode to its end (the server stopped); see the module docstring."""
    if server.ldm or server.is_shutting_down():
        return
    await server.wait_ready()
    if server.is_shutting_down():
        return
    log.info("Entering lame duck mode, stop accepting new clients")
    server.ldm = True
    server.stop_accepting()
    opts = server.options
    clients = list(server.clients.values())
    if not clients:
        await server.shutdown()
        return
    pause, batch = close_plan(len(clients), opts.lame_duck_duration, opts.lame_duck_grace_period)
    _notify_nats_clients(server, clients)
    if await server.quit_within(opts.lame_duck_grace_period):
        return
    log.info("Closing existing clients")
    for i, client in enumerate(clients):
        if not client.closing:
            client.shutdown()
            server.flush()
        if i == len(clients) - 1:
            break
        if (i + 1) % batch == 0:
            if await server.quit_within(random.uniform(pause / 2, pause)):
                return
    await server.shutdown()


def _notify_nats_clients(server: Server, clients: list) -> None:
    """INFO with "ldm": true to every NATS client that takes an INFO at any time."""
    for client in clients:
        if client.closing or not hasattr(client, "first_pong"):
            continue  # not a NATS client
        if client.protocol < 1 or client.first_pong or not client.connected:
            continue
        info = server.client_info(client)
        client.queue(b"INFO " + json.dumps(info, separators=(",", ":")).encode() + b" \r\n")
    server.flush()
