"""The checks nats-server makes only when it starts (``nats-server -t`` does not run
them), on options from a file, from flags or both.

Apart from the loader so that ``hybridbus serve`` without a config file runs them
without importing the config language (start-up time): this module needs only
``Options`` and Go's text helpers.
"""

from __future__ import annotations

from ..options import MAX_PORT, MIN_PORT, Options, User
from .gotext import format_go_duration, go_quote

__all__ = ["startup_errors"]


def _no_auth_user_problem(name: str, users: list[User]) -> str | None:
    if not users:
        return f"no_auth_user: {go_quote(name)} present, but users/nkeys are not defined"
    if not any(u.name == name for u in users):
        return (
            f"no_auth_user: {go_quote(name)} not present as user or nkey in authorization "
            "block or account configuration"
        )
    return None


def startup_errors(options: Options) -> list[str]:
    """Checks nats-server makes only when it starts (``-t`` does not run them), and
    the ports of options that did not come from a file (the loader checks those)."""
    problems: list[str] = _port_problems(options)
    if 0 < options.lame_duck_duration <= options.lame_duck_grace_period:
        grace = format_go_duration(round(options.lame_duck_grace_period * 1e9))
        duration = format_go_duration(round(options.lame_duck_duration * 1e9))
        problems.append(
            f"lame duck grace period ({grace}) should be strictly lower than "
            f"lame duck duration ({duration})"
        )
    if options.max_payload > options.max_pending:
        problems.append(
            f"max_payload ({options.max_payload}) cannot be higher than "
            f"max_pending ({options.max_pending})"
        )
    users = list(options.auth.users) if options.auth else []
    for account in options.accounts:  # no_auth_user may name a user of any account
        users.extend(account.users)
    for name in (options.no_auth_user, options.mqtt.no_auth_user, options.websocket.no_auth_user):
        if name:
            problem = _no_auth_user_problem(name, users)
            if problem:
                problems.append(problem)
    for proto, block in (("mqtt", options.mqtt), ("websocket", options.websocket)):
        if block.auth is not None and users:
            if block.auth.user:
                problems.append(
                    f"{proto} authentication username not compatible with presence of users/nkeys"
                )
            if block.auth.token:
                problems.append(
                    f"{proto} authentication token not compatible with presence of users/nkeys"
                )
    ws = options.websocket
    if ws.enabled and ws.tls is None and not ws.no_tls:
        problems.append("websocket requires TLS configuration")
    if options.mqtt.ack_wait < 0:
        problems.append("ack wait must be a positive value")
    sys_acc = options.system_account
    # nats-server: a named system account must be configured ("$G" counts; "$SYS" only
    # when the accounts block defines it)
    if (
        sys_acc
        and sys_acc != "$G"
        and getattr(options, "operator", None) is None  # operator mode: accounts from JWTs
        and all(a.name != sys_acc for a in options.accounts)
    ):
        problems.append("error resolving system account: account missing")
    return problems


def _port_problems(options: Options) -> list[str]:
    ports = (
        ("port", options.port),
        ("http_port", options.http_port),
        ("https_port", options.https_port),
        ("mqtt.port", options.mqtt.port),
        ("websocket.port", options.websocket.port),
    )
    return [
        f"{name}: port {port} is outside 0..65535"
        for name, port in ports
        if not MIN_PORT <= port <= MAX_PORT
    ]
