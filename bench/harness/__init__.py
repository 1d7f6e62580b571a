"""hybridbus benchmark harness: server launchers, raw-socket load generators, the runner.

Entry point: ``python bench/run_all.py`` (see bench/README.md). Modules:
``servers`` (start/stop nats-server, Mosquitto, hybridbus, amqtt; versions), ``workers``
(worker processes and the shared measurement window), ``loadgen_nats`` and
``loadgen_mqtt`` (the rate roles), ``loadgen_scale`` (idle connections, subscription
holders, retained store and replay), ``loadgen_fleet`` (persistent sessions in waves,
the ping probe, commands, 1 MB QoS 1, 10,000 subscribers), ``mqttwire`` (MQTT 3.1.1
encoders and the frame counters), ``sockets`` (socket options), ``procstat`` (/proc CPU,
RSS, fds), ``measure`` (one measured flow on a running server), ``scenarios``, ``scale``
(the phased runners of the scale scenarios), ``fleet`` (the runners of the fleet
scenarios), ``selfcheck`` (generator capacity against stand-in servers), ``run`` (CLI,
tables, JSON), ``report`` (BENCHMARKS.md and the chart). ``test_harness.py`` tests the
harness itself.
"""
