"""Monitoring: nats-server's HTTP endpoints (/varz, /connz, /subsz, /jsz, /healthz,
/accountz, /routez) with the same field names and Go types, Prometheus /metrics,
and a live dashboard.

``snapshots`` builds the reports as plain dicts, ``gotypes`` encodes them as a Go
server would, ``prometheus`` collects metrics at scrape time, ``http`` serves it all
(``start_monitor``). The monitor only reads the server; nothing here is on the
message path.
"""
