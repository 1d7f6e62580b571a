"""What every client connection has, whatever its protocol.

``ClientBase`` holds the counters and identity that monitoring reads (the
field names follow nats-server's /connz) and the outbound buffer that the
server flushes once per read (see ``Server.flush``).

Outbound path, in short: a delivery appends bytes to ``out`` and marks the
connection dirty; ``Server.flush`` hands each dirty connection's buffer to
``transport.write`` once. The transport's high-water mark is ``max_pending``:
when the kernel cannot take the bytes and they pile past it, asyncio calls
``pause_writing`` and we cut the connection as a slow consumer instead of
growing memory or slowing the publisher.

Closing with last words (an MQTT DISCONNECT with a reason code, a CONNACK
refusal, a NATS ``-ERR``): closing a socket that still has unread input makes
the kernel answer with a reset, which throws away whatever of our output the
client has not received yet, so a client that is still sending might never
read why it was cut. ``close`` therefore hands the transport to a ``_Linger``:
our write side is shut (FIN after the last words), input is read and dropped
until the client closes its side or ``LINGER`` seconds pass, then the socket
goes. The connection itself is released at once (session, will, /connz); the
linger costs one timer handle and no task.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hybridbus.core.hub import Hub

log = logging.getLogger("hybridbus.server")

# Reasons a connection closed, exactly as nats-server's /connz spells them.
CLIENT_CLOSED = "Client Closed"
READ_ERROR = "Read Error"
WRITE_ERROR = "Write Error"
PARSE_ERROR = "Parse Error"
PROTOCOL_VIOLATION = "Protocol Violation"
STALE_CONNECTION = "Stale Connection"
SLOW_CONSUMER_PENDING = "Slow Consumer (Pending Bytes)"
SLOW_CONSUMER_DEADLINE = "Slow Consumer (Write Deadline)"
SERVER_SHUTDOWN = "Server Shutdown"
AUTH_TIMEOUT = "Authentication Timeout"
AUTH_FAILURE = "Authentication Failure"
MAX_CONNECTIONS = "Maximum Connections Exceeded"
MAX_PAYLOAD = "Maximum Message Payload Exceeded"
MAX_CONTROL_LINE = "Maximum Control Line Exceeded"
MAX_SUBSCRIPTIONS = "Maximum Subscriptions Exceeded"
BAD_CLIENT_PROTOCOL = "Bad Client Protocol Version"
HEADER_VIOLATION = "Message Header Violation"
NO_RESPONDERS_REQUIRES_HEADERS = "No Responders Requires Headers"
DUPLICATE_CLIENT_ID = "Duplicate Client ID"
TLS_HANDSHAKE_FAILURE = "TLS Handshake Failure"


# How long a connection closed with last words keeps draining input (see _Linger).
LINGER = 2.0

# Why a receiver is congested (ClientBase.congested, core/flow.py): unsent bytes
# over the soft limit, or (an online MQTT session) QoS 1/2 messages queued over its.
CONGESTED_OUTPUT = 1
CONGESTED_QUEUE = 2
# Unsent bytes past which a receiver is congested: at most 4 MiB, and half of
# max_pending so that a receiver that stops reading is still cut on pending bytes.
OUTPUT_SOFT_LIMIT = 4 << 20


def output_soft_limit(max_pending: int) -> int:
    return max(1, min(OUTPUT_SOFT_LIMIT, max_pending // 2))


_BCRYPT_POOL: concurrent.futures.ThreadPoolExecutor | None = None


def _bcrypt_executor() -> concurrent.futures.ThreadPoolExecutor:
    """One thread for password checks: a flood of logins then waits its turn instead
    of taking every core from the event loop (bcrypt releases the GIL)."""
    global _BCRYPT_POOL
    if _BCRYPT_POOL is None:
        _BCRYPT_POOL = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="bcrypt")
    return _BCRYPT_POOL


class _Linger(asyncio.Protocol):
    """The protocol of a transport whose client is closed but whose last words are
    still on their way: our side is shut for writing, input is discarded, and the
    socket closes when the peer closes its side or after LINGER seconds."""

    __slots__ = ("transport", "timer", "lingering")

    def __init__(self, transport: asyncio.Transport, server: Hub) -> None:
        self.transport = transport
        self.lingering = server.lingering
        self.lingering.add(self)
        self.timer = server.loop.call_later(LINGER, self.give_up)

    def data_received(self, data: bytes) -> None:
        pass  # read so the kernel never resets the connection over unread input

    def eof_received(self) -> bool:
        return False  # the client has closed its side: close ours

    def connection_lost(self, exc: Exception | None) -> None:
        self.timer.cancel()
        self.lingering.discard(self)

    def pause_writing(self) -> None:
        pass

    def resume_writing(self) -> None:
        pass

    def unsent(self) -> int:
        return self.transport.get_write_buffer_size()

    def give_up(self) -> None:
        self.transport.abort()


class ClientBase(asyncio.Protocol):
    """State shared by NATS and MQTT connections; subclasses speak the protocol."""

    __slots__ = (
        "server",
        "transport",
        "cid",
        "kind",
        "ip",
        "port",
        "start",
        "last_activity",
        "in_msgs",
        "in_bytes",
        "out_msgs",
        "out_bytes",
        "out",
        "dirty",
        "closing",
        "close_reason",
        "user",
        "perms",
        "account",
        "tls_version",
        "tls_cipher",
        "verifying",
        "holds",
        "resume_input",
        "congested",
        "congested_since",
        "waiters",
    )

    conn_type = "nats"
    # True for connections carried by the websocket listener (set by its subclasses).
    ws = False
    # Whether a client's own publishes come back to it; NATS CONNECT may turn it off.
    echo = True
    # Whether a held input keeps reading (and keeping) what arrives; else it pauses.
    reads_ahead = False

    def __init__(self, server: Hub) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.cid = 0
        self.kind = "Client"
        self.ip = ""
        self.port = 0
        self.start = time.time()
        self.last_activity = self.start
        self.in_msgs = 0
        self.in_bytes = 0
        self.out_msgs = 0
        self.out_bytes = 0
        self.out = bytearray()
        self.dirty = False
        self.closing = False
        self.close_reason: str | None = None
        self.user: str | None = None
        self.perms = None  # set by authentication when the user has permissions
        # the account whose subject space the client is in (core/account.py): $G until
        # a login names another (Security, Server.join_account)
        self.account = server.global_account
        self.tls_version: str | None = None
        self.tls_cipher: str | None = None
        # A CONNECT's password is being checked off the loop: the login has arrived in
        # time, so the sweep's CONNECT/authentication deadline no longer applies.
        self.verifying = False
        # Flow control (core/flow.py). Input: how many reasons hold this
        # connection's reading, and the rest of a read that waits for them.
        self.holds = 0
        self.resume_input: Any = None
        # Output: CONGESTED_* flags, since when, and the readers held on this one.
        self.congested = 0
        self.congested_since = 0.0
        self.waiters: list | None = None

    # -- asyncio.Protocol -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            self.ip, self.port = peer[0], peer[1]
        ssl_obj = transport.get_extra_info("ssl_object")
        if ssl_obj is not None:
            version = ssl_obj.version() or ""
            self.tls_version = version.replace("TLSv", "")
            cipher = ssl_obj.cipher()
            self.tls_cipher = cipher[0] if cipher else None
        # Past the soft limit of unsent bytes asyncio calls pause_writing: congested
        # (publishers feeding it are slowed); past max_pending, a slow consumer.
        soft = output_soft_limit(self.server.options.max_pending)
        transport.set_write_buffer_limits(high=soft, low=soft // 4)
        self.server.register(self)

    def pause_writing(self) -> None:
        if not self.closing:
            self.congest(CONGESTED_OUTPUT)

    def resume_writing(self) -> None:
        self.decongest(CONGESTED_OUTPUT)

    # -- flow control (core/flow.py) ------------------------------------------------

    def congest(self, flag: int) -> None:
        """This receiver owes too much (unsent bytes, or queued MQTT messages): the
        connection whose read fed it is held (Server.note_congested)."""
        if not self.congested:
            self.congested_since = time.monotonic()
        self.congested |= flag
        self.server.note_congested(self, flag)

    def decongest(self, flag: int) -> None:
        self.congested &= ~flag
        if not self.congested and self.waiters:
            waiters, self.waiters = self.waiters, None
            for reader in waiters:
                reader.release_input()

    def hold_input(self) -> None:
        """One more reason to stop reading (a fan-out job, a congested receiver, the
        turn's budget spent): TCP then slows the client down."""
        self.holds += 1
        if self.holds == 1 and not self.reads_ahead and not self.closing and self.transport:
            self.transport.pause_reading()

    def release_input(self) -> None:
        """One reason less; with none left, the rest of the held read runs, then
        reading resumes."""
        if not self.holds:
            return
        self.holds -= 1
        if self.holds or self.closing:
            return
        resume, self.resume_input = self.resume_input, None
        if resume is not None:
            self.server.reading = self
            self.server.read_started = time.perf_counter()
            self.server.work = 0
            resume()  # may hold again
        if not self.holds and not self.closing:
            self.input_released()
        if not self.holds and not self.closing and self.transport is not None:
            self.transport.resume_reading()

    def input_released(self) -> None:
        """The last hold ended (and the held read was finished): a protocol that read
        ahead meanwhile handles that input now."""

    def slow_consumer(self, reason: str, why: str) -> None:
        self.server.stats.slow_consumers += 1
        log.info("%s:%d - cid:%d - Slow Consumer Detected: %s", self.ip, self.port, self.cid, why)
        self.abort(reason)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.close_reason is None:
            self.close_reason = READ_ERROR if exc is not None else CLIENT_CLOSED
        self.closing = True
        self._release()

    def _release(self) -> None:
        """Release protocol state and unregister. Whatever on_closed raises (a will,
        a subscriber, an encoder), the connection is unregistered and counted closed:
        a connection left registered is a ghost in /connz that also holds shutdown."""
        self.out = bytearray()
        if self.waiters:
            # Whoever this connection held (core/flow.py) goes on without it.
            self.congested = 0
            self.decongest(0)
        try:
            self.on_closed()
        except Exception:
            log.exception(
                "%s:%d - cid:%d - releasing the connection failed", self.ip, self.port, self.cid
            )
        finally:
            self.server.unregister(self)

    # -- output -----------------------------------------------------------------------

    def queue(self, data: bytes) -> None:
        """Append protocol bytes for this client; written at the next flush."""
        if self.closing:
            return
        self.out += data
        if not self.dirty:
            self.server.mark_dirty(self)

    def write_now(self) -> None:
        """Hand the buffered bytes to the transport (called by Server.flush)."""
        self.dirty = False
        if self.closing or not self.out:
            return
        buf = self.out
        # The transport may keep a reference to buf, so it gets a fresh one.
        self.out = bytearray()
        self.transport.write(buf)
        if self.congested & CONGESTED_OUTPUT:
            max_pending = self.server.options.max_pending
            if self.transport.get_write_buffer_size() > max_pending:
                self.slow_consumer(SLOW_CONSUMER_PENDING, f"pending bytes over {max_pending}")
            else:
                self.server.note_congested(self, CONGESTED_OUTPUT)

    def pending_bytes(self) -> int:
        if self.transport is None or self.closing:
            return 0
        return self.transport.get_write_buffer_size() + len(self.out)

    # -- closing ----------------------------------------------------------------------

    def close(self, reason: str, final: bytes = b"") -> None:
        """Send `final` (e.g. an -ERR) after what is queued, then close gracefully:
        with last words, the transport lingers (see _Linger) and the connection is
        released now; without, the transport closes once its buffer is written."""
        if self.closing:
            return
        if final:
            self.out += final
        self.write_now()
        self.close_reason = reason
        self.closing = True
        transport = self.transport
        if transport is None:
            return
        if not final or transport.is_closing() or not transport.can_write_eof():
            # TLS and websocket transports say goodbye in their own close.
            transport.close()
            return
        try:
            transport.write_eof()  # FIN once the buffer is written
        except (OSError, RuntimeError):
            transport.close()
            return
        linger = _Linger(transport, self.server)
        transport.set_protocol(linger)
        transport.resume_reading()  # drained even if reading was paused
        self._release()

    def verify_off_loop(self, work: tuple, resume) -> None:
        """Run a bcrypt check on an executor thread with reading paused, then call
        `resume()` (which finds the verdict cached). A login costs other clients
        nothing: bcrypt's ~100 ms happen off the event loop."""
        from hybridbus.security.auth import run_bcrypt

        self.transport.pause_reading()
        self.verifying = True
        future = self.server.loop.run_in_executor(_bcrypt_executor(), run_bcrypt, *work)

        def done(_future) -> None:
            self.verifying = False
            if self.closing:
                return
            resume()
            self.server.flush()
            if not self.closing:
                self.transport.resume_reading()

        future.add_done_callback(done)

    def auth_revoked_notice(self) -> bytes:
        """What a client hears when a reload takes its access away (before the close)."""
        return b""

    def shutdown(self) -> None:
        """The server is stopping; protocols may say goodbye first."""
        self.close(SERVER_SHUTDOWN)

    def abort(self, reason: str) -> None:
        """Drop the connection now, discarding what is queued (slow consumers)."""
        if self.closing:
            return
        self.close_reason = reason
        self.closing = True
        self.out = bytearray()
        if self.transport is not None:
            self.transport.abort()

    # -- hooks ------------------------------------------------------------------------

    def on_closed(self) -> None:
        """Release protocol state (subscriptions, sessions); called once."""

    def sweep(self, now: float) -> None:
        """Periodic check (pings, keep-alive, auth timeout); one server-wide timer calls it."""

    def subscription_count(self) -> int:
        return 0
