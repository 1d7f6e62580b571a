"""`hybridbus` command line: builds Options and hands them to the server.

hybridbus serve [-c FILE] [-a HOST] [-p PORT] [--mqtt-port P] [--http-port P]
                [--store-dir D] [-D] [-V | -VV]
hybridbus check -c FILE        # like `nats-server -t` (`check-config` is a hidden alias)
hybridbus reload [--pid N | -P PIDFILE]   # SIGHUP, like `nats-server --signal reload`
hybridbus ldm [--pid N | -P PIDFILE]      # SIGUSR2, like `nats-server --signal ldm`
hybridbus --version

Start-up time matters (a restarted server must be back before reconnecting clients
give up), so this module imports only what parsing the command line needs; the
config loader, the event loop and the server are imported when they are used.
"""

from __future__ import annotations

import logging
import os
import signal
import sys

import click

from hybridbus import __version__
from hybridbus.options import MAX_PORT, MIN_PORT, Options

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
    trace_verbose: bool = False,
    name: str | None = None,
) -> tuple[Options, list[str]]:
    """Options from the config file (or the embedded defaults), then the flags on top.

    `host` (`-a`) is the NATS listener's address and, as nats-server does for its
    monitor, the default of the monitoring, MQTT and WebSocket listeners too: each
    of them follows it unless the config file gives that listener its own host."""
    warnings: list[str] = []
    if config:
        from hybridbus.config.load import load_options

        options, warnings = load_options(config)
    else:
        options = Options()
    flags = {
        "server_name": name,
        "host": host,
        "port": port,
        "mqtt.port": mqtt_port,
        "http_port": http_port,
        "jetstream.store_dir": store_dir,
        "debug": True if debug else None,
        "trace": True if trace or trace_verbose else None,
        "trace_verbose": True if trace_verbose else None,
    }
    if host is not None:
        for name in ("http_host", "mqtt.host", "websocket.host"):
            if name not in options.hosts_from_config:
                flags[name] = host
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


class Port(click.ParamType):
    """A listener port: 0..65535, or -1 (any free port, as in nats-server)."""

    name = "port"

    def convert(self, value, param, ctx) -> int:
        if isinstance(value, int):
            port = value
        else:
            try:
                port = int(value, 10)
            except ValueError:
                self.fail(f"{value!r} is not a port number", param, ctx)
        if not MIN_PORT <= port <= MAX_PORT:
            self.fail(f"port {port} is outside 0..65535", param, ctx)
        return port


PORT = Port()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-v", "--version", prog_name="hybridbus")
def main() -> None:
    """hybridbus: one server for MQTT devices and NATS services."""


@main.command()
@click.option("-c", "--config", "config", type=click.Path(dir_okay=False), help="Config file.")
@click.option(
    "-a",
    "--addr",
    "--host",
    "host",
    help="Host for NATS clients (default 0.0.0.0); also for monitoring, MQTT and "
    "WebSocket unless the config file sets their host.",
)
@click.option("-p", "--port", type=PORT, help="Port for NATS clients (default 4222).")
@click.option(
    "-n",
    "--name",
    "--server_name",
    "name",
    help="Server name (unique in a cluster; default: its id).",
)
@click.option("--mqtt-port", type=PORT, help="Port for MQTT clients (default 1883).")
@click.option("-m", "--http-port", type=PORT, help="Port for HTTP monitoring (default 8222).")
@click.option(
    "--store-dir", "--sd", "store_dir", help="Store directory (default ./hybridbus-data)."
)
@click.option("-D", "--debug", is_flag=True, help="Enable debug logging.")
@click.option(
    "-V",
    "--trace",
    count=True,
    help="Trace the protocols ([TRC] lines); -VV adds payloads (trace_verbose).",
)
def serve(config, host, port, name, mqtt_port, http_port, store_dir, debug, trace) -> None:
    """Run the server."""
    try:
        options, warnings = build_options(
            config,
            host=host,
            port=port,
            name=name,
            mqtt_port=mqtt_port,
            http_port=http_port,
            store_dir=store_dir,
            debug=debug,
            trace=trace >= 1,
            trace_verbose=trace >= 2,
        )
    except Exception as err:
        from hybridbus.config import ConfigError

        if not isinstance(err, ConfigError):
            raise
        for line in err.lines:
            click.echo(f"hybridbus: {line}", err=True)
        sys.exit(1)
    from hybridbus import log as hblog

    hblog.configure(
        debug=options.debug, trace=options.trace, logtime=options.logtime, log_file=options.log_file
    )
    for warning in warnings:
        log.warning("%s", warning)
    from hybridbus.config.startup import startup_errors

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


# `check-config`, the name of earlier releases, still works but is not listed.
main.add_command(
    click.Command(
        "check-config",
        callback=check.callback,
        params=check.params,
        help=check.help,
        hidden=True,
    )
)


def _signal_options(func):
    """--pid / -P / -c: which running server a signal goes to."""
    func = click.option(
        "-c", "--config", "config", type=click.Path(dir_okay=False), help="Config naming pid_file."
    )(func)
    func = click.option(
        "-P", "--pid-file", type=click.Path(dir_okay=False), help="File holding the PID."
    )(func)
    return click.option("--pid", type=int, help="PID of the running server.")(func)


def _signal_server(sig: int, pid: int | None, pid_file: str | None, config: str | None) -> int:
    """Send `sig` to the server named by --pid, -P, the config's pid_file, or the one
    `hybridbus serve` process running; returns its PID (exits 1 when it cannot)."""
    if pid is None and pid_file is None and config is not None:
        from hybridbus.config.load import load_options

        pid_file = load_options(config)[0].pid_file
    if pid is None and pid_file is not None:
        try:
            with open(pid_file) as f:
                pid = int(f.read().strip())
        except (OSError, ValueError) as err:
            click.echo(f"hybridbus: cannot read a PID from {pid_file}: {err}", err=True)
            sys.exit(1)
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
        os.kill(pid, sig)
    except OSError as err:
        click.echo(f"hybridbus: cannot signal {pid}: {err}", err=True)
        sys.exit(1)
    return pid


@main.command("reload")
@_signal_options
def reload_command(pid: int | None, pid_file: str | None, config: str | None) -> None:
    """Ask a running server to reload its configuration (sends SIGHUP)."""
    pid = _signal_server(signal.SIGHUP, pid, pid_file, config)
    click.echo(f"hybridbus: reload signal sent to {pid}")


@main.command("ldm")
@_signal_options
def ldm_command(pid: int | None, pid_file: str | None, config: str | None) -> None:
    """Put a running server in lame duck mode (sends SIGUSR2): it stops accepting,
    tells its clients, closes them spread over lame_duck_duration and exits."""
    pid = _signal_server(signal.SIGUSR2, pid, pid_file, config)
    click.echo(f"hybridbus: lame duck mode signal sent to {pid}")


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
    """Run the server until SIGINT/SIGTERM (or the end of lame duck mode); returns the
    process exit code."""
    import asyncio

    try:
        import uvloop

        loop_factory = uvloop.new_event_loop
    except ImportError:  # pragma: no cover - uvloop is a dependency on POSIX
        loop_factory = None
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(_serve(options))


async def _serve(options: Options) -> int:
    import asyncio

    from hybridbus.server.server import Server
    from hybridbus.server.startup import StartError

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

    ducking: list[asyncio.Task] = []

    def on_lame_duck() -> None:
        # A SIGINT/SIGTERM during lame duck mode still stops the server at once.
        log.info("Trapped 'SIGUSR2' signal")
        if not stopping and not ducking:
            ducking.append(loop.create_task(server.lame_duck()))

    loop.add_signal_handler(signal.SIGHUP, on_hangup)
    loop.add_signal_handler(signal.SIGUSR2, on_lame_duck)
    try:
        await server.start()
    except StartError as err:
        log.critical("%s", err)
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
