"""One ``leafnodes { remotes [...] }`` entry: dial a hub, keep the link, redial.

The handshake, as a nats-server spoke does it (server/leafnode.go): the hub speaks
first with ``INFO`` (its ``nonce``, ``leafnode_urls``, ``tls_required``,
``info_on_connect``); TLS starts here when either side wants it (or before the first
byte with ``handshake_first``); the spoke sends ``CONNECT`` with its name, id,
``headers``, ``jetstream`` and domain and its credentials (user and password or a
token from the URL, or the nonce signed with an nkey seed, or a user JWT and the
signature from a .creds file); the hub answers with a second ``INFO``
(``connect_info``) and its interest, and only then the spoke sends its own interest
(``LeafInterest.snapshot``) and its loop-detection subject ``$LDS.<id>``.

Redial: after a loss the next URL, including those the hub's INFOs listed
(``leafnode_urls``, the other cluster members), after ``leafnodes.reconnect``; after a
loop (our ``$LDS`` came back, or the hub says so) 30 s, as nats-server waits.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import random
import ssl
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from hybridbus import NATS_COMPAT_VERSION
from hybridbus.codec.leaf import encode_connect
from hybridbus.codec.nkey import decode_seed
from hybridbus.leaf.connection import LOOP_DETECTED, LeafConnection
from hybridbus.subjects import subject_is_subset

if TYPE_CHECKING:
    from hybridbus.core.hub import Hub
    from hybridbus.leaf.interest import LeafInterest
    from hybridbus.options import LeafRemoteOptions

log = logging.getLogger("hybridbus.leaf")

DEFAULT_PORT = 7422
LOOP_DELAY = 30.0  # nats-server leafNodeReconnectDelayAfterLoopDetected
CONNECT_TIMEOUT = 2.0
HANDSHAKE_TIMEOUT = 5.0
# A leaf whose JetStream is its own (a domain other than the hub's) keeps the JetStream
# API, KV and object store subjects on its side, both ways (nats-server denyAllClientJs).
JETSTREAM_DENY = ("$JS.API.>", "$KV.>", "$OBJ.>")


class LeafRemote:
    """Dials one remote; ``connection`` is the live link (or None)."""

    def __init__(self, server: Hub, opts: LeafRemoteOptions, interest: LeafInterest) -> None:
        self.server = server
        self.opts = opts
        self.account = server.accounts[opts.account]
        self.interest = interest
        self.urls = [_normal(u) for u in opts.urls]
        if not opts.no_randomize:
            random.shuffle(self.urls)
        self._userinfo = next(
            (urlsplit(u).netloc.rpartition("@")[0] for u in self.urls if "@" in u), ""
        )
        self.connection: LeafConnection | None = None
        self.connects = 0
        self.last_error = ""
        # One per account of this server, as nats-server's: seeing it come back over a
        # link means two links of ours reach the same account (a loop).
        self.loop_subject = interest.loop_subject
        jetstream = server.options.jetstream.enabled
        extra = list(JETSTREAM_DENY) if jetstream else []
        self.deny_out = list(opts.deny_exports) + extra
        self.deny_in = list(opts.deny_imports) + extra
        self._blocked: dict[str, bool] = {}
        self._pos = -1
        self._delay = 0.0
        self._task: asyncio.Task | None = None
        self._handshake: asyncio.Future | None = None
        self._closed: asyncio.Future | None = None
        self._cids = 0
        self._stopping = False
        self.ready = asyncio.Event()
        self._tls = _client_context(opts.tls) if opts.tls is not None else None

    # -- lifecycle --------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        self._stopping = True
        conn = self.connection
        if conn is not None:
            conn.close("Server Shutdown")
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass

    def next_cid(self) -> int:
        self._cids += 1
        return self._cids

    def blocks(self, subject: str) -> bool:
        """Whether local interest in `subject` stays off this link (deny_imports)."""
        hit = self._blocked.get(subject)
        if hit is None:
            hit = any(subject_is_subset(subject, p) for p in self.deny_in)
            if len(self._blocked) > 10000:
                self._blocked.clear()
            self._blocked[subject] = hit
        return hit

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        ping = self.server.options.ping_interval
        while not self._stopping:
            url = self._next_url()
            self._closed = loop.create_future()
            try:
                await self._connect(url)
            except (OSError, TimeoutError, ConnectionError, ssl.SSLError, ValueError) as err:
                self.last_error = str(err) or type(err).__name__
                log.debug("Error trying to connect as leafnode to %s: %s", _redact(url), err)
                conn = self.connection
                if conn is not None and not conn.closing:
                    conn.abort("Leafnode handshake failed")
            else:
                while not self._closed.done():
                    try:
                        await asyncio.wait_for(asyncio.shield(self._closed), ping)
                    except TimeoutError:
                        if self.connection is not None:
                            self.connection.sweep(time.monotonic())
                            self.server.flush()
            delay, self._delay = self._delay, 0.0
            await asyncio.sleep(delay or self.server.options.leafnodes.reconnect)

    def _next_url(self) -> str:
        self._pos = (self._pos + 1) % len(self.urls)
        return self.urls[self._pos]

    async def _connect(self, url: str) -> None:
        loop = asyncio.get_running_loop()
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port or DEFAULT_PORT
        tls_first = self._tls is not None and self.opts.tls.handshake_first
        self._handshake = loop.create_future()
        _transport, conn = await asyncio.wait_for(
            loop.create_connection(
                lambda: LeafConnection(self.server, self, url),
                host,
                port,
                ssl=self._tls if tls_first else None,
                server_hostname=host if tls_first else None,
            ),
            CONNECT_TIMEOUT,
        )
        self.connection = conn
        await asyncio.wait_for(asyncio.shield(self._handshake), HANDSHAKE_TIMEOUT)

    # -- called by the connection -----------------------------------------------------

    def hub_info(self, conn: LeafConnection, info: dict) -> None:
        for u in info.get("leafnode_urls") or ():
            self._learn_url(u)
        if conn.connected:
            return  # a later INFO: only its URLs matter
        if info.get("connect_info"):
            self._finish(conn)
            return
        conn.info = info
        conn.remote_name = str(info.get("server_name") or info.get("server_id") or "")
        conn.remote_id = str(info.get("server_id") or "")
        conn.remote_domain = str(info.get("domain") or "")
        if (info.get("tls_required") or self._tls is not None) and conn.tls_version is None:
            conn.tls_pending = True
            conn.transport.pause_reading()
            asyncio.get_running_loop().create_task(self._upgrade(conn, info))
            return
        self._send_connect(conn, info)

    async def _upgrade(self, conn: LeafConnection, info: dict) -> None:
        ctx = self._tls or ssl.create_default_context()
        host = urlsplit(conn.url).hostname
        try:
            new = await asyncio.get_running_loop().start_tls(
                conn.transport, conn, ctx, server_hostname=host
            )
        except (OSError, ssl.SSLError, ConnectionError, ValueError) as err:
            self._fail_handshake(conn, f"TLS handshake error: {err}")
            return
        conn.transport = new
        ssl_obj = new.get_extra_info("ssl_object")
        conn.tls_version = (ssl_obj.version() or "").replace("TLSv", "") if ssl_obj else "?"
        conn.tls_pending = False
        self._send_connect(conn, info)
        resume, conn.resume_input = conn.resume_input, None
        if resume is not None:
            resume()  # what came after the INFO in its read

    def _send_connect(self, conn: LeafConnection, info: dict) -> None:
        server = self.server
        fields: dict[str, Any] = {
            "version": NATS_COMPAT_VERSION,
            "name": server.server_name,
            "server_id": server.server_id,
            # nats-server's spoke without a cluster block sends its own name: the hub
            # then never hands one of our links what came over another (cluster-wide
            # no echo), nor our $LDS subject (two links into one account are no loop).
            # Unique per node, since the hub skips leafs of the message's cluster.
            "cluster": server.server_name,
            "headers": True,
        }
        js = server.options.jetstream
        if js.enabled:
            fields["jetstream"] = True
            if js.domain:
                fields["domain"] = js.domain
        try:
            fields.update(self._credentials(info.get("nonce") or ""))
        except ValueError as err:
            self._fail_handshake(conn, str(err))
            return
        conn.queue(encode_connect(fields))
        if not info.get("info_on_connect"):
            self._finish(conn)  # a hub before 2.10 sends no second INFO
        server.flush()

    def _credentials(self, nonce: str) -> dict:
        opts = self.opts
        if opts.credentials:
            from hybridbus.codec.jwt import parse_creds

            with open(opts.credentials) as f:
                jwt, seed = parse_creds(f.read())
            if not seed:
                raise ValueError(f"credentials file {opts.credentials} has no seed")
            return {"jwt": jwt, "sig": _sign(seed, nonce)}
        if opts.nkey:
            from hybridbus.codec.nkey import PREFIX_USER, encode_public_key

            decoded = decode_seed(opts.nkey)
            if decoded is None:
                raise ValueError("leafnode remote nkey is not a valid seed")
            from nacl.signing import SigningKey

            public = encode_public_key(PREFIX_USER, bytes(SigningKey(decoded[1]).verify_key))
            return {"nkey": public, "sig": _sign(opts.nkey, nonce)}
        if self._userinfo:
            user, sep, password = self._userinfo.partition(":")
            if sep:
                return {"user": unquote(user), "pass": unquote(password)}
            return {"auth_token": unquote(user)}
        return {}

    def _finish(self, conn: LeafConnection) -> None:
        if conn.connected or conn.closing:
            return
        conn.connected = True
        self.connects += 1
        self.last_error = ""
        server = self.server
        server.leafnodes.append(conn)
        self.interest.links.append(conn)
        conn.announce(self.loop_subject, None, 1)
        self.interest.snapshot(conn)
        log.info(
            "Leafnode connection created for account: %s (remote %s, %s)",
            self.account.name,
            conn.remote_name,
            _redact(conn.url),
        )
        self.ready.set()
        if self._handshake is not None and not self._handshake.done():
            self._handshake.set_result(True)
        server.flush()

    def _fail_handshake(self, conn: LeafConnection, why: str) -> None:
        self.last_error = why
        log.warning("Leafnode handshake with %s failed: %s", _redact(conn.url), why)
        conn.abort("Leafnode handshake failed")
        if self._handshake is not None and not self._handshake.done():
            self._handshake.set_exception(ConnectionError(why))

    def hub_error(self, conn: LeafConnection, text: str) -> None:
        self.last_error = text
        log.warning("Leafnode error from %s: '%s'", conn.remote_name or _redact(conn.url), text)
        if LOOP_DETECTED.lower() in text.lower():
            self._delay = LOOP_DELAY
        # Not fatal by itself (a refused LS+, say): a hub that refuses the link closes
        # it, and link_lost ends the handshake then.

    def loop_detected(self, conn: LeafConnection) -> None:
        log.error(
            "Loop detected for leafnode account=%r: our %s came back from %s; reconnecting in %gs",
            self.account.name,
            self.loop_subject,
            conn.remote_name,
            LOOP_DELAY,
        )
        self.last_error = LOOP_DETECTED
        self._delay = LOOP_DELAY
        conn.close("Loop Detected", b"-ERR '%s'\r\n" % LOOP_DETECTED.encode())

    def link_lost(self, conn: LeafConnection) -> None:
        server = self.server
        if conn in server.leafnodes:
            server.leafnodes.remove(conn)
        if conn in self.interest.links:
            self.interest.links.remove(conn)
        if self.connection is conn:
            self.connection = None
            self.ready.clear()
        if self._handshake is not None and not self._handshake.done():
            self._handshake.set_exception(ConnectionError(self.last_error or "connection closed"))
        if self._closed is not None and not self._closed.done():
            self._closed.set_result(None)

    def _learn_url(self, hostport: str) -> None:
        url = _normal(hostport)
        if self._userinfo and "@" not in url:
            scheme, rest = url.split("://", 1)
            url = f"{scheme}://{self._userinfo}@{rest}"
        if url not in self.urls:
            self.urls.append(url)


def _normal(url: str) -> str:
    return url if "://" in url else f"nats-leaf://{url}"


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return url.replace(parts.netloc.rpartition("@")[0] + "@", "[REDACTED]@", 1)


def _sign(seed: str, nonce: str) -> str:
    decoded = decode_seed(seed)
    if decoded is None:
        raise ValueError("not a valid nkey seed")
    from nacl.signing import SigningKey

    sig = SigningKey(decoded[1]).sign(nonce.encode()).signature
    return base64.urlsafe_b64encode(sig).decode().rstrip("=")


def _client_context(tls: Any) -> ssl.SSLContext:
    ctx = (
        ssl.create_default_context(cafile=tls.ca_file)
        if tls.ca_file
        else ssl.create_default_context()
    )
    if tls.cert_file:
        ctx.load_cert_chain(tls.cert_file, tls.key_file)
    if tls.insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx
