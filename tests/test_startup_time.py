"""Start-up: a restarted server must accept connections before reconnecting clients
give up. From exec to accepting on every listener takes <= 0.25 s with an empty store
(bench/bench_startup.py prints the figures), because serving imports only what
serving needs: the monitoring reports, the Prometheus client, h11 and the config
language come with their first use."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

from tests.conftest import free_port

# Imported by their first request, or only with a config file: never by a start.
NOT_AT_START = (
    "prometheus_client",
    "h11",
    "wsproto",
    "hybridbus.monitor.varz",
    "hybridbus.monitor.connz",
    "hybridbus.monitor.subsz",
    "hybridbus.monitor.jsz",
    "hybridbus.monitor.healthz",
    "hybridbus.monitor.accountz",
    "hybridbus.monitor.gotypes",
    "hybridbus.monitor.dashboard",
    "hybridbus.monitor.prometheus",
    "hybridbus.config.lexer",
    "hybridbus.config.parser",
    "hybridbus.config.load",
    "hybridbus.server.websocket",
    "hybridbus.server.lameduck",
)
LIMIT = 0.25


def accepting(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.05):
            return True
    except OSError:
        return False


def start_once(
    tmp_path, run: int, env: dict, extra: tuple = (), probe: bool = True, store: str = ""
) -> tuple[float, str]:
    """Seconds from exec to NATS, MQTT and HTTP all accepting (or, without `probe`, to
    "Server is ready" in the log, so that no connection is made); and the stderr."""
    ports = [free_port() for _ in range(3)]
    err_path = tmp_path / f"err-{run}.log"
    with open(err_path, "wb") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, *extra, "-m", "hybridbus", "serve", "-a", "127.0.0.1"]
            + ["-p", str(ports[0]), "--mqtt-port", str(ports[1]), "-m", str(ports[2])]
            + ["--store-dir", store or str(tmp_path / f"store-{run}")],
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=env,
        )
        try:
            waiting = list(ports)
            while waiting and time.perf_counter() - t0 < 20:
                assert proc.poll() is None, err_path.read_text()
                if not probe:
                    if "Server is ready" in err_path.read_text():
                        waiting = []
                    time.sleep(0.01)
                elif accepting(waiting[0]):
                    waiting.pop(0)
                else:
                    time.sleep(0.001)
            elapsed = time.perf_counter() - t0
            assert not waiting, err_path.read_text()
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(20) == 0, err_path.read_text()
    return elapsed, err_path.read_text()


def test_serving_imports_no_report_module_nor_the_config_language(tmp_path):
    _, err = start_once(tmp_path, 0, dict(os.environ), ("-X", "importtime"), probe=False)
    imported = {
        line.rsplit("|", 1)[1].strip()
        for line in err.splitlines()
        if line.startswith("import time")
    }
    assert "hybridbus.server.server" in imported  # the listing is complete
    assert "hybridbus.monitor.http" in imported
    early = sorted(name for name in NOT_AT_START if name in imported)
    assert not early, f"imported at start: {early}"


def test_restart_to_accepting_takes_at_most_a_quarter_second(tmp_path):
    # An installed package has its bytecode compiled; this checkout may run with
    # PYTHONDONTWRITEBYTECODE, so the runs get a bytecode cache of their own.
    env = dict(os.environ, PYTHONPYCACHEPREFIX=str(tmp_path / "pycache"))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    store = str(tmp_path / "store")
    start_once(tmp_path, 0, env, store=store)  # compiles and caches; creates the store
    times = []
    # A restart on that (empty) store, the best of up to 20 runs (it stops at the
    # first one within the bound), so that other processes' bursts of CPU on a shared
    # two-core machine do not decide.
    for run in range(1, 21):
        times.append(start_once(tmp_path, run, env, store=store)[0])
        if times[-1] <= LIMIT:
            break
    assert min(times) <= LIMIT, [f"{t * 1000:.0f} ms" for t in times]
