"""Operator-mode test setups: an operator (with a signing key), the system account and
accounts A and B, each with JWTs made here (tests/helpers/jwts.py), a config that
trusts them, a real server from it, and nats-py clients logged in with .creds files."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from pathlib import Path

import nats
import nkeys

from hybridbus.config.load import load_options, startup_errors
from hybridbus.server.server import Server
from tests.helpers import jwts as T

BASE = """
host: 127.0.0.1
port: -1
http: "127.0.0.1:-1"
jetstream {{ store_dir: "{store}" }}
mqtt {{ host: 127.0.0.1, port: -1 }}
"""


@dataclass
class Op:
    """Keys and JWTs of one operator setup; `accounts` maps a short name to its key."""

    tmp: Path
    op: nkeys.KeyPair = field(default_factory=T.operator_key)
    signer: nkeys.KeyPair = field(default_factory=T.operator_key)
    accounts: dict[str, nkeys.KeyPair] = field(default_factory=dict)
    account_jwts: dict[str, str] = field(default_factory=dict)
    n: int = 0

    def __post_init__(self) -> None:
        for name in ("SYS", "A", "B"):
            self.accounts[name] = T.account_key()
            self.account_jwts[name] = T.account_jwt(self.accounts[name], self.signer)

    def key(self, name: str) -> str:
        return T.pub(self.accounts[name])

    def operator_jwt(self, **nats) -> str:
        nats.setdefault("signing_keys", [T.pub(self.signer)])
        nats.setdefault("system_account", self.key("SYS"))
        return T.operator_jwt(self.op, **nats)

    def set_account(self, name: str, **nats) -> str:
        self.account_jwts[name] = T.account_jwt(self.accounts[name], self.signer, **nats)
        return self.account_jwts[name]

    def config(self, resolver: str = "MEMORY", extra: str = "", preload: dict | None = None) -> str:
        """A config: the operator JWT in a file, `resolver`, the accounts preloaded."""
        path = self.tmp / "op.jwt"
        path.write_text(self.operator_jwt())
        jwts = self.account_jwts if preload is None else preload
        lines = "\n".join(f'  {self.key(n)}: "{j}"' for n, j in jwts.items())
        return (
            BASE.format(store=self.tmp / "store")
            + f'operator: "{path}"\nresolver: {resolver}\n'
            + f"resolver_preload: {{\n{lines}\n}}\n{extra}"
        )

    def write(self, text: str, name: str = "op.conf") -> str:
        path = self.tmp / name
        path.write_text(text)
        return str(path)

    def user(self, account: str = "A", signer: nkeys.KeyPair | None = None, **nats):
        """(user key pair, user JWT) issued by `account` (or `signer`, a signing key)."""
        user = T.user_key()
        issuer = signer or self.accounts[account]
        if signer is not None:
            nats.setdefault("issuer_account", self.key(account))
        return user, T.user_jwt(user, issuer, **nats)

    def creds(self, account: str = "A", **nats) -> str:
        user, token = self.user(account, **nats)
        self.n += 1
        return T.write_creds(self.tmp / f"u{self.n}.creds", token, user)


async def start(op: Op, text: str | None = None) -> Server:
    opts, _ = load_options(op.write(text or op.config()))
    assert startup_errors(opts) == []
    server = Server(opts)
    await server.start()
    return server


async def connect(server: Server, creds: str | None = None, **kwargs) -> nats.NATS:
    async def quiet(e):
        pass

    return await nats.connect(
        f"nats://127.0.0.1:{server.nats_port}",
        user_credentials=creds,
        allow_reconnect=False,
        max_reconnect_attempts=0,
        connect_timeout=2,
        error_cb=kwargs.pop("error_cb", quiet),
        **kwargs,
    )


async def raw_connect(server: Server, connect: dict) -> bytes:
    """CONNECT `connect` (a dict, or a function of the INFO's nonce) on a raw socket,
    then PING; what the server answers within a second."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.nats_port)
    try:
        info = json.loads((await reader.readline())[5:])
        body = connect(info.get("nonce")) if callable(connect) else connect
        writer.write(b"CONNECT " + json.dumps(body).encode() + b"\r\nPING\r\n")
        await writer.drain()
        out = b""
        try:
            while b"PONG" not in out and b"-ERR" not in out:
                chunk = await asyncio.wait_for(reader.read(4096), 1.0)
                if not chunk:
                    break
                out += chunk
        except TimeoutError:
            pass
        return out
    finally:
        writer.close()
