"""The monitoring HTTP server: h11 (sans-IO HTTP/1.1) on an ``asyncio.Protocol``.

Theory of operation
-------------------
``start_monitor(server)`` binds ``options.http_host:options.http_port`` (a port
<= 0 lets the OS choose) and returns the ``Monitor``; ``monitor.port`` is the
bound port and ``await monitor.close()`` stops it.

Each TCP connection is an ``HttpConnection``: bytes go into an
``h11.Connection``, events come out. A complete request (``EndOfMessage``) is
answered at once, synchronously: the reports (``varz.py``, ``connz.py`` ...) only read the
server's state on the loop thread, so one request sees one consistent state and
nothing needs a task or a lock. Keep-alive and pipelining follow from h11's
cycle (``start_next_cycle``); a client that sends nothing for ``IDLE_TIMEOUT``
seconds is closed by one sweep timer for all connections.

Wire conventions are nats-server's (nats-conventions §1.1): JSON bodies are
``MarshalIndent`` text with ``Content-Type: application/json`` and
``Access-Control-Allow-Origin: *``; ``/healthz`` is compact; a bad parameter is a
400 with a plain-text reason; an unknown path is Go's ``404 page not found\\n``.
Every path lives under ``http_base_path``. Each hit on a known path adds 1 to
``http_req_stats[path]`` (``/subscriptionsz`` counts as ``/subsz``), which
``/varz`` reports.

``/leafz`` lists the leaf-node links to NATS hubs (``leafz.py``).

Besides nats-server's endpoints: ``/metrics`` (Prometheus, ``prometheus.py``),
``/overviewz`` (the MQTT and store summary the dashboard shows, ``overview.py``) and
a live dashboard at the root path (``dashboard.py``).

Start-up time: a server must accept connections as soon as it can, and none of
the reports is needed for that, so this module imports them (and h11, the
Prometheus client, the HTTP helpers) when the first request needs them, not when
the listener opens.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hybridbus.server.server import Server

# h11, imported by the first HttpConnection (see the module docstring)
h11: Any = None

log = logging.getLogger("hybridbus.monitor")

# Close keep-alive connections that stay silent this long; the dashboard polls
# every second, so only abandoned sockets reach it.
IDLE_TIMEOUT = 60.0
SWEEP_PERIOD = 10.0
# Request bodies are ignored (every endpoint is a GET); past this size the peer is
# not a monitoring client.
MAX_BODY = 64 * 1024

JSON = "application/json"
TEXT = "text/plain; charset=utf-8"
HTML = "text/html; charset=utf-8"
NOT_FOUND = b"404 page not found\n"


class Response:
    __slots__ = ("status", "content_type", "body", "cors", "extra")

    def __init__(
        self,
        status: int,
        content_type: str,
        body: bytes,
        cors: bool = True,
        extra: list[tuple[str, str]] | None = None,
    ) -> None:
        self.status = status
        self.content_type = content_type
        self.body = body
        self.cors = cors
        self.extra = extra


def _json(doc: Any, status: int = 200) -> Response:
    from hybridbus.monitor.gotypes import dumps

    return Response(status, JSON, dumps(doc).encode())


def _bad_request(text: str) -> Response:
    # nats-server writes the status before any Content-Type, so Go sniffs text/plain,
    # and the CORS header (set only on the success path) is absent.
    return Response(400, TEXT, text.encode(), cors=False)


def normalize_base_path(base: str | None) -> str:
    """``http_base_path`` as nats-server uses it: leading slash, no trailing one."""
    base = (base or "").strip()
    if not base.startswith("/"):
        base = "/" + base
    while len(base) > 1 and base.endswith("/"):
        base = base[:-1]
    return base


def _join(base: str, path: str) -> str:
    if base == "/":
        return path
    return base if path == "/" else base + path


class Monitor:
    """The monitoring endpoint of one server. See the module docstring."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.port = 0
        self.scheme = "http"
        self.http_req_stats: dict[str, int] = {}
        self._metrics_registry: Any = None  # prometheus.Metrics, made by the first scrape
        self.base_path = normalize_base_path(server.options.http_base_path)
        # /varz's CPU meter counts from here; it is made by the first /varz
        self._cpu: Any = None
        self._cpu_since = (time.monotonic(), time.process_time())
        self._health: Any = None  # healthz.WriteErrorWatch, made by the first /healthz
        self._leaf_traffic: Any = None  # leafz.LeafTraffic, made by the first /varz
        self._conns: set[HttpConnection] = set()
        self._listener: asyncio.base_events.Server | None = None
        self._sweeper: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._dashboard: bytes | None = None
        base = self.base_path
        # path -> (http_req_stats key, handler)
        self.routes: dict[str, tuple[str, Any]] = {
            _join(base, "/"): ("/", self._root),
            _join(base, "/varz"): ("/varz", self._varz),
            _join(base, "/connz"): ("/connz", self._connz),
            _join(base, "/subsz"): ("/subsz", self._subsz),
            _join(base, "/subscriptionsz"): ("/subsz", self._subsz),
            _join(base, "/jsz"): ("/jsz", self._jsz),
            _join(base, "/healthz"): ("/healthz", self._healthz),
            _join(base, "/accountz"): ("/accountz", self._accountz),
            _join(base, "/accstatz"): ("/accstatz", self._accstatz),
            _join(base, "/routez"): ("/routez", self._routez),
            _join(base, "/leafz"): ("/leafz", self._leafz),
            _join(base, "/metrics"): ("/metrics", self._metrics),
            _join(base, "/overviewz"): ("/overviewz", self._overviewz),
        }

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        opts = self.server.options
        loop = self._loop = asyncio.get_running_loop()
        # `https`/`https_port` serve the same endpoints over TLS with the top-level
        # `tls {}` block, as nats-server does; then there is no plain HTTP port.
        context = None
        if opts.https_port:
            context = self.server.security.server_context(opts.tls)
            if context is None:
                raise OSError("https monitoring requires the top-level tls {} block")
            wanted = opts.https_port
        else:
            wanted = opts.http_port
        port = wanted if wanted and wanted > 0 else 0
        self._listener = await loop.create_server(
            lambda: HttpConnection(self),
            host=opts.http_host,
            port=port,
            reuse_address=True,
            ssl=context,
            ssl_handshake_timeout=opts.tls.timeout if context is not None else None,
        )
        self.port = self._listener.sockets[0].getsockname()[1]
        self.scheme = "https" if context is not None else "http"
        self._sweeper = loop.call_later(SWEEP_PERIOD, self._sweep)
        log.info("Starting %s monitor on %s:%d", self.scheme, opts.http_host, self.port)

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        for conn in list(self._conns):
            conn.close()
        if listener is not None:
            try:
                await asyncio.wait_for(listener.wait_closed(), 1.0)
            except TimeoutError:
                pass

    def _sweep(self) -> None:
        cutoff = time.monotonic() - IDLE_TIMEOUT
        for conn in list(self._conns):
            if conn.last_seen < cutoff:
                conn.close()
        if self._listener is not None:
            self._sweeper = self._loop.call_later(SWEEP_PERIOD, self._sweep)

    @property
    def metrics(self) -> Any:
        if self._metrics_registry is None:
            from hybridbus.monitor.prometheus import Metrics

            self._metrics_registry = Metrics(self.server, self.http_req_stats)
        return self._metrics_registry

    @property
    def leaf_traffic(self) -> Any:
        """The leaf links' traffic totals /varz adds to its own (leafz.LeafTraffic)."""
        if self._leaf_traffic is None:
            from hybridbus.monitor.leafz import LeafTraffic

            self._leaf_traffic = LeafTraffic()
        return self._leaf_traffic

    def cpu_percent(self) -> float:
        if self._cpu is None:
            from hybridbus.monitor.varz import CpuMeter

            self._cpu = CpuMeter()
            self._cpu._wall, self._cpu._cpu = self._cpu_since
        return self._cpu.read()

    # -- dispatch -----------------------------------------------------------------------

    def handle(self, target: bytes, headers: dict[bytes, bytes]) -> Response:
        """Answer one request; the method does not matter (as in nats-server)."""
        from urllib.parse import parse_qs, urlsplit

        from hybridbus.monitor.gotypes import BadRequest

        text = target.decode("utf-8", "replace")
        parts = urlsplit(text)
        route = self.routes.get(parts.path or "/")
        if route is None:
            return Response(
                404, TEXT, NOT_FOUND, cors=False, extra=[("X-Content-Type-Options", "nosniff")]
            )
        key, handler = route
        self.http_req_stats[key] = self.http_req_stats.get(key, 0) + 1
        query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        try:
            return handler(query, headers)
        except BadRequest as err:
            return _bad_request(err.text)

    # Each report module is imported by its first request (see the module docstring).

    def _root(self, q: dict, headers: dict) -> Response:
        if self._dashboard is None:
            from hybridbus.monitor.dashboard import render_dashboard

            self._dashboard = render_dashboard(self.base_path).encode()
        return Response(200, HTML, self._dashboard)

    def _varz(self, q: dict, headers: dict) -> Response:
        from hybridbus.monitor.varz import varz

        return _json(varz(self.server, self))

    def _connz(self, q: dict, headers: dict) -> Response:
        from hybridbus.monitor.connz import ConnzOptions, connz

        return _json(connz(self.server, ConnzOptions.from_query(q)))

    def _subsz(self, q: dict, headers: dict) -> Response:
        from hybridbus.monitor.subsz import SubszOptions, subsz

        return _json(subsz(self.server, SubszOptions.from_query(q)))

    def _jsz(self, q: dict, headers: dict) -> Response:
        from hybridbus.monitor.jsz import JszOptions, jsz

        return _json(jsz(self.server, JszOptions.from_query(q)))

    def _healthz(self, q: dict, headers: dict) -> Response:
        from hybridbus.monitor.gotypes import dumps_compact
        from hybridbus.monitor.healthz import HealthzOptions, WriteErrorWatch, healthz

        if self._health is None:
            self._health = WriteErrorWatch()
        opts = HealthzOptions.from_query(q)
        status, body = healthz(self.server, opts, self._health)
        return Response(status, JSON, dumps_compact(body).encode())

    def _accountz(self, q: dict, headers: dict) -> Response:
        from hybridbus.monitor.accountz import accountz

        return _json(accountz(self.server, q))

    def _accstatz(self, q: dict, headers: dict) -> Response:
        from hybridbus.monitor.accountz import accstatz

        return _json(accstatz(self.server, q))

    def _routez(self, q: dict, headers: dict) -> Response:
        from hybridbus.monitor.accountz import routez

        return _json(routez(self.server, q))

    def _leafz(self, q: dict, headers: dict) -> Response:
        from hybridbus.monitor.leafz import LeafzOptions, leafz

        return _json(leafz(self.server, LeafzOptions.from_query(q)))

    def _overviewz(self, q: dict, headers: dict) -> Response:
        from hybridbus.monitor.overview import overview

        return _json(overview(self.server))

    def _metrics(self, q: dict, headers: dict) -> Response:
        accept = headers.get(b"accept", b"").decode("latin-1")
        body, content_type = self.metrics.render(accept)
        return Response(200, content_type, body)


class HttpConnection(asyncio.Protocol):
    """One monitoring client: bytes in, h11 events, one response per request."""

    __slots__ = ("monitor", "transport", "h11", "request", "body_size", "last_seen")

    def __init__(self, monitor: Monitor) -> None:
        global h11
        if h11 is None:
            import h11
        self.monitor = monitor
        self.transport: asyncio.Transport | None = None
        self.h11 = h11.Connection(h11.SERVER)
        self.request: h11.Request | None = None
        self.body_size = 0
        self.last_seen = time.monotonic()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.monitor._conns.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.monitor._conns.discard(self)
        self.transport = None

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        self.last_seen = time.monotonic()
        self.h11.receive_data(data)
        self._drain_events()

    def eof_received(self) -> bool | None:
        self.h11.receive_data(b"")
        self._drain_events()
        return None

    def _drain_events(self) -> None:
        conn = self.h11
        while self.transport is not None:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as err:
                self._protocol_error(err)
                return
            if event is h11.NEED_DATA:
                return
            if event is h11.PAUSED:
                # Our response is out; h11 holds the next pipelined request until the
                # new cycle starts.
                if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
                    conn.start_next_cycle()
                    continue
                return
            kind = type(event)
            if kind is h11.Request:
                self.request = event
                self.body_size = 0
            elif kind is h11.Data:
                self.body_size += len(event.data)
                if self.body_size > MAX_BODY:
                    self._send_simple(413, b"413 Request Entity Too Large")
                    self.close()
                    return
            elif kind is h11.EndOfMessage:
                self._answer()
            elif kind is h11.ConnectionClosed:
                self.close()
                return

    def _answer(self) -> None:
        req = self.request
        self.request = None
        if req is None:
            return
        headers = {name: value for name, value in req.headers}
        try:
            resp = self.monitor.handle(req.target, headers)
        except Exception:
            log.exception("monitoring request %r failed", req.target)
            resp = Response(500, TEXT, b"500 Internal Server Error\n", cors=False)
        self._send(resp, head=req.method == b"HEAD")

    def _send(self, resp: Response, head: bool = False) -> None:
        import email.utils
        from http import HTTPStatus

        conn = self.h11
        headers = [
            ("Content-Type", resp.content_type),
            ("Date", email.utils.formatdate(usegmt=True)),
            ("Content-Length", str(len(resp.body))),
        ]
        if resp.cors:
            headers.append(("Access-Control-Allow-Origin", "*"))
        if resp.extra:
            headers.extend(resp.extra)
        try:
            phrase = HTTPStatus(resp.status).phrase
        except ValueError:
            phrase = ""
        out = conn.send(h11.Response(status_code=resp.status, headers=headers, reason=phrase))
        if not head and resp.body:
            out += conn.send(h11.Data(data=resp.body))
        out += conn.send(h11.EndOfMessage())
        self.transport.write(out)
        if conn.our_state is h11.MUST_CLOSE:
            self.close()

    def _send_simple(self, status: int, body: bytes) -> None:
        conn = self.h11
        if conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        try:
            self._send(Response(status, TEXT, body, cors=False, extra=[("Connection", "close")]))
        except h11.LocalProtocolError:
            pass

    def _protocol_error(self, err: Any) -> None:
        from http import HTTPStatus

        status = err.error_status_hint or 400
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "Bad Request"
        self._send_simple(status, f"{status} {phrase}".encode())
        self.close()


async def start_monitor(server: Server) -> Monitor:
    """Start the monitoring HTTP server of ``server``; returns it (``.port``, ``close()``)."""
    monitor = Monitor(server)
    await monitor.start()
    return monitor
