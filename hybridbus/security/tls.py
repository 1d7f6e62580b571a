"""Server-side TLS contexts from a ``tls { ... }`` block (NATS, MQTT, websocket, HTTPS).

``verify`` asks for a client certificate and refuses the handshake without a valid one
(mutual TLS). ``verify_and_map`` does the same and then names the user by the
certificate (see ``auth.cert_identities``); the password is not asked for. Without a
``ca_file`` client certificates are checked against the system roots, as nats-server
does. The default minimum version is TLS 1.2, nats-server's default.
"""

from __future__ import annotations

import ssl

from hybridbus.options import TLSOptions

__all__ = ["server_context", "TLS_VERSIONS"]

TLS_VERSIONS = {
    "1.0": ssl.TLSVersion.TLSv1,
    "1.1": ssl.TLSVersion.TLSv1_1,
    "1.2": ssl.TLSVersion.TLSv1_2,
    "1.3": ssl.TLSVersion.TLSv1_3,
}


def _no_passphrase() -> bytes:
    # An encrypted key must fail to load, never prompt on the server's terminal.
    return b""


def server_context(tls: TLSOptions | None) -> ssl.SSLContext | None:
    """An SSLContext for a listener, or None when `tls` configures no certificate."""
    if tls is None or not tls.cert_file:
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = TLS_VERSIONS.get(tls.min_version or "", ssl.TLSVersion.TLSv1_2)
    if ctx.minimum_version < ssl.TLSVersion.TLSv1_2:
        # OpenSSL's default security level refuses TLS < 1.2; lower it only when asked.
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    ctx.options |= ssl.OP_NO_COMPRESSION
    ctx.load_cert_chain(tls.cert_file, tls.key_file or None, password=_no_passphrase)
    if tls.ca_file:
        ctx.load_verify_locations(cafile=tls.ca_file)
    if tls.verify or tls.verify_and_map:
        if not tls.ca_file:
            ctx.load_default_certs(ssl.Purpose.CLIENT_AUTH)
        ctx.verify_mode = ssl.CERT_REQUIRED
    else:
        ctx.verify_mode = ssl.CERT_NONE
    return ctx
