"""Monitoring: nats-server's HTTP endpoints (/varz, /connz, /subsz, /jsz, /healthz,
/accountz, /routez) with the same field names and Go types, Prometheus /metrics,
and a live dashboard.

Modules: one per endpoint family builds its report as a plain dict (``varz``,
``connz``, ``subsz``, ``jsz``, ``healthz``, ``accountz`` for /accountz and
/routez), on helpers from ``common``; ``gotypes`` encodes them as a Go server
would, ``prometheus`` collects metrics at scrape time, ``dashboard`` renders the
page, and ``http`` serves it all (``start_monitor``).

Theory of operation
-------------------
Each endpoint is a function of the server's state at the moment of the call.
They run on the event loop thread, so they see one consistent state with no
locks, and they only read: nothing here is on the message hot path, and the
counters they report are the ones the connections keep anyway (``in_msgs`` ...
on each client, ``server.stats`` for the closed ones).

The monitor never imports ``hybridbus.server`` (nor the protocol packages) at run
time: the server is only a type hint, and connections, subscriptions and sessions
are read by duck typing on their attributes (``conn_type``, ``kind``, ``sid_bytes``
...), so the server may move its classes without touching this package.

Parameters arrive as ``*Options`` objects. ``Options.from_query`` builds one from
the first value of each query parameter, in the order nats-server decodes them,
and raises ``BadRequest`` with nats-server's exact text; the HTTP layer
(``http.py``) turns that into a 400. A future ``$SYS`` request handler can build
the same objects from JSON.

Go types (nats-conventions §1.2): counters are Python ints, the few float64
fields are Python floats, times go through ``gotypes.rfc3339``, ``uptime``/
``idle``/``rtt`` through their dialects. ``omitempty`` fields are added only when
non-zero (``common.omitempty``); struct-valued blocks are always present.

Abbreviations: *cid* connection id, *acc* account (``$G`` global, ``$SYS``
system; hybridbus has no other accounts), *fwc* the ``>`` wildcard.
"""
