"""`hybridbus` command line: builds Options and hands them to the server.

hybridbus serve [-c FILE] [-p PORT] [--mqtt-port P] [--http-port P] [--store-dir D] [-D] [-V]
hybridbus check -c FILE        # like `nats-server -t`
hybridbus --version
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys

import click

from hybridbus import __version__
from hybridbus import log as hblog
from hybridbus.options import Options

log = logging.getLogger("hybridbus")


def build_options(
    config: str | None,
    *,
    host: str | None = None,
    port: int | None = None,
    mqtt_port: int | None = None,
    http_port: int | None = None,
    store_dir: str | None = None,
    debug: bool = False,
    trace: bool = False,
) -> tuple[Options, list[str]]:
    """Options from the config file (or the embedded defaults), then the flags on top."""
    warnings: list[str] = []
    if config:
        from hybridbus.config.load import load_options

        options, warnings = load_options(config)
    else:
        options = Options()
    flags = {
        "host": host,
        "port": port,
        "mqtt.port": mqtt_port,
        "http_port": http_port,
        "jetstream.store_dir": store_dir,
        "debug": True if debug else None,
        "trace": True if trace else None,
    }
    for name, value in flags.items():
        if value is None:
            continue
        target = options
        parts = name.split(".")
        for part in parts[:-1]:
            target = getattr(target, part)
        setattr(target, parts[-1], value)
        options.overrides[name] = value
    return options, warnings


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-v", "--version", prog_name="hybridbus")
def main() -> None:
    """hybridbus: one server for MQTT devices and NATS services."""


@main.command()
@click.option("-c", "--config", "config", type=click.Path(dir_okay=False), help="Config file.")
@click.option("-a", "--addr", "--host", "host", help="Host for NATS clients (default 0.0.0.0).")
@click.option("-p", "--port", type=int, help="Port for NATS clients (default 4222).")
@click.option("--mqtt-port", type=int, help="Port for MQTT clients (default 1883).")
@click.option("-m", "--http-port", type=int, help="Port for HTTP monitoring (default 8222).")
@click.option(
    "--store-dir", "--sd", "store_dir", help="Store directory (default ./hybridbus-data)."
)
@click.option("-D", "--debug", is_flag=True, help="Enable debug logging.")
@click.option("-V", "--trace", is_flag=True, help="Enable protocol trace logging.")
def serve(config, host, port, mqtt_port, http_port, store_dir, debug, trace) -> None:
    """Run the server."""
    from hybridbus.config import ConfigError

    try:
        options, warnings = build_options(
            config,
            host=host,
            port=port,
            mqtt_port=mqtt_port,
            http_port=http_port,
            store_dir=store_dir,
            debug=debug,
            trace=trace,
        )
    except ConfigError as err:
        for line in err.lines:
            click.echo(f"hybridbus: {line}", err=True)
        sys.exit(1)
    hblog.configure(
        debug=options.debug, trace=options.trace, logtime=options.logtime, log_file=options.log_file
    )
    for warning in warnings:
        log.warning("%s", warning)
    try:
        from hybridbus.config.load import startup_errors
    except ImportError:  # pragma: no cover - config package always present in releases
        startup_errors = None
    if startup_errors is not None:
        errors = startup_errors(options)
        if errors:
            for line in errors:
                click.echo(f"hybridbus: {line}", err=True)
            sys.exit(1)
    sys.exit(run(options))


@main.command()
@click.option("-c", "--config", "config", required=True, type=click.Path(dir_okay=False))
def check(config: str) -> None:
    """Check a config file and exit, as `nats-server -t` does (warnings are fatal)."""
    from hybridbus.config.load import check_config

    code, lines = check_config(config)
    for line in lines:
        click.echo(line, err=True)
    sys.exit(code)


main.add_command(check, "check-config")


@main.command("reload")
@click.option("--pid", type=int, help="PID of the running server.")
@click.option("-P", "--pid-file", type=click.Path(dir_okay=False), help="File holding the PID.")
@click.option(
    "-c", "--config", "config", type=click.Path(dir_okay=False), help="Config naming pid_file."
)
def reload_command(pid: int | None, pid_file: str | None, config: str | None) -> None:
    """Ask a running server to reload its configuration (sends SIGHUP)."""
    if pid is None and pid_file is None and config is not None:
        from hybridbus.config.load import load_options

        pid_file = load_options(config)[0].pid_file
    if pid is None and pid_file is not None:
        with open(pid_file) as f:
            pid = int(f.read().strip())
    if pid is None:
        pids = _find_servers()
        if len(pids) != 1:
            click.echo(
                f"hybridbus: found {len(pids)} running servers; name one with --pid or --pid-file",
                err=True,
            )
            sys.exit(1)
        pid = pids[0]
    try:
        os.kill(pid, signal.SIGHUP)
    except OSError as err:
        click.echo(f"hybridbus: cannot signal {pid}: {err}", err=True)
        sys.exit(1)
    click.echo(f"hybridbus: reload signal sent to {pid}")


def _find_servers() -> list[int]:
    """PIDs of `hybridbus serve` processes (Linux /proc), excluding this one."""
    found = []
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else ():
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                args = f.read().split(b"\0")
        except OSError:
            continue
        if b"serve" in args and any(b"hybridbus" in a for a in args):
            found.append(int(entry))
    return found


def run(options: Options) -> int:
    """Run the server until SIGINT/SIGTERM; returns the process exit code."""
    try:
        import uvloop

        loop_factory = uvloop.new_event_loop
    except ImportError:  # pragma: no cover - uvloop is a dependency on POSIX
        loop_factory = None
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(_serve(options))


async def _serve(options: Options) -> int:
    from hybridbus.server.server import Server

    server = Server(options)
    loop = asyncio.get_running_loop()
    stopping: list[asyncio.Task] = []

    def on_signal(signame: str) -> None:
        log.info("Trapped %r signal", signame)
        if not stopping:
            stopping.append(loop.create_task(server.shutdown()))

    # Handlers first: a signal that arrives while the listeners open still stops us cleanly.
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig.name)

    def on_hangup() -> None:
        log.info("Trapped 'SIGHUP' signal")
        server.reload()

    loop.add_signal_handler(signal.SIGHUP, on_hangup)
    try:
        await server.start()
    except OSError as err:
        log.critical("Error listening: %s", err)
        return 1
    if stopping:
        await server.shutdown()
    if options.pid_file:
        with open(options.pid_file, "w") as f:
            f.write(str(os.getpid()))
    await server.wait_stopped()
    return 0


if __name__ == "__main__":  # pragma: no cover
    main()
