"""hybridbus benchmark harness: server launchers, raw-socket load generators, the runner.

Entry point: ``python bench/run_all.py`` (see bench/README.md). Modules:
``servers`` (start/stop nats-server, Mosquitto, hybridbus, amqtt; versions), ``workers``
(worker processes and the shared measurement window), ``loadgen_nats`` and
``loadgen_mqtt`` (the rate roles), ``loadgen_scale`` (idle connections, subscription
holders, retained store and replay), ``mqttwire`` (MQTT 3.1.1 encoders and the frame
counters), ``sockets`` (socket options), ``procstat`` (/proc CPU, RSS, fds),
``measure`` (one measured flow on a running server), ``scenarios``, ``scale`` (the
phased runners of the scale scenarios), ``selfcheck`` (generator capacity against
stand-in servers), ``run`` (CLI, tables, JSON), ``report`` (BENCHMARKS.md and the
chart). ``test_harness.py`` tests the harness itself.
"""
