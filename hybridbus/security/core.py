"""The Security facade the server calls. (Placeholder until the auth work lands:
no authentication, every subject allowed, TLS contexts from options.)"""

from __future__ import annotations

import ssl
from typing import Any

from hybridbus.options import Options, TLSOptions


class Security:
    def __init__(self, options: Options) -> None:
        self.options = options
        self.auth_required = False

    def authenticate_nats(self, client: Any, connect: dict) -> str | None:
        """The user name ("" for anonymous) or None to refuse. Sets client.perms."""
        return ""

    def authenticate_mqtt(self, client: Any, username: str | None, password: bytes | None) -> str | None:
        return ""

    def may_publish(self, client: Any, subject: str, reply: str | None) -> bool:
        return True

    def may_subscribe(self, client: Any, subject: str, queue: str | None) -> bool:
        return True

    def server_context(self, tls: TLSOptions | None) -> ssl.SSLContext | None:
        if tls is None or not tls.cert_file:
            return None
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(tls.cert_file, tls.key_file)
        if tls.ca_file:
            ctx.load_verify_locations(tls.ca_file)
        if tls.verify or tls.verify_and_map:
            ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx
