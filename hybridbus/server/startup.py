"""What can stop a server from starting, said in one line each.

``Server.start`` opens the store first, so a store directory that another process
holds is reported before any port is opened (and nothing is left half-listening),
then the listeners. Every failure becomes a ``StartError`` whose text is the one
line the command line prints before exiting 1:

    store directory /data/hb is in use by another process (pid 4711); stop it or use another store_dir
    mqtt listener: cannot listen on 0.0.0.0:1883: address already in use

The listener is named as the options name it (``nats``, ``mqtt``, ``websocket``,
``http``/``https``), with the address it was asked for.
"""

from __future__ import annotations

import asyncio
import errno
from typing import Any


class StartError(Exception):
    """The server cannot start; ``str(err)`` is one line for the operator."""


def address(host: str, port: int) -> str:
    """``host:port``, with brackets around an IPv6 host."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def listen_error(name: str, host: str, port: int, err: OSError) -> StartError:
    """The StartError for a listener that could not bind: its name, its address and
    the system's reason, in lower case as Go prints it ("address already in use")."""
    reason = err.strerror or str(err)
    if err.errno == errno.EADDRINUSE:
        reason = "address already in use"
    return StartError(f"{name} listener: cannot listen on {address(host, port)}: {reason.lower()}")


async def listen(
    loop: asyncio.AbstractEventLoop, name: str, factory: Any, host: str, port: int, **kwargs: Any
) -> asyncio.base_events.Server:
    """``loop.create_server`` for listener `name`; a failure is a StartError naming it.
    A port <= 0 lets the system choose one."""
    try:
        return await loop.create_server(
            factory, host=host, port=port if port > 0 else 0, reuse_address=True, **kwargs
        )
    except OSError as err:
        raise listen_error(name, host, port, err) from None


def store_error(store_dir: str, err: Exception) -> StartError:
    """The StartError for a store that would not open (held by another process,
    unreadable, ...): the store's own one-line reason."""
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    if "in use" in text:
        return StartError(f"{text}; stop it or use another store_dir (--store-dir)")
    return StartError(f"cannot open the store in {store_dir}: {text}")
