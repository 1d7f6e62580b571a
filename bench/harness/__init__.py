"""hybridbus benchmark harness: server launchers, raw-socket load generators, the runner.

Entry point: ``python bench/run_all.py`` (see bench/README.md). Modules:
``servers`` (start/stop nats-server, Mosquitto, hybridbus, amqtt), ``workers`` (worker
processes and the shared measurement window), ``loadgen_nats`` and ``loadgen_mqtt``
(the roles), ``mqttwire`` (MQTT 3.1.1 encoders and the frame counter), ``sockets``
(socket options), ``scenarios``, ``selfcheck`` (generator capacity against stand-in
servers), ``run`` (CLI, tables, JSON). ``test_harness.py`` tests the harness itself.
"""
