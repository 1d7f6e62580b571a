"""Listeners and TLS: the ``tls`` blocks and what ``mqtt``/``websocket`` share.

Owns the ``tls`` block reader (with the certificate checks nats-server makes
while parsing, so ``-t`` catches bad files) and ``LISTENER``, the options
every extra listener has: address, its own ``tls`` and its own auth.
"""

from __future__ import annotations

from typing import Any

from ..options import TLSOptions
from .gotext import go_quote, go_value, parse_go_duration
from .opts_auth import simple_auth
from .parser import Node
from .readers import BAD, Handler, Loader, store, store_listen

_UNSUPPORTED_TLS = frozenset(
    {
        "allow_insecure_cipher_suites",
        "cipher_suites",
        "curve_preferences",
        "connection_rate_limit",
    }
)
# Ignoring these would accept peers the operator meant to refuse.
_REFUSED_TLS = frozenset({"pinned_certs", "ocsp_peer"})
# Certificate checks and certificate sources hybridbus does not implement: ignoring a
# check accepts peers it should refuse; ignoring a source (the OS certificate store,
# per-SNI certificates) would leave the listener without a certificate, so without TLS
# and without any client certificate check.
_REFUSED_TLS_AUTH = frozenset(
    {
        "verify_cert_and_check_known_urls",
        "cert_store",
        "cert_match_by",
        "cert_match",
        "ca_certs_match",
        "cert_match_skip_invalid",
        "certs",
        "certificates",
    }
)
_TLS_VERSIONS = frozenset({"1.0", "1.1", "1.2", "1.3"})


def tls(ld: Loader, node: Node) -> TLSOptions | None:
    if (block := ld.map_(node)) is BAD:
        return None
    tls = TLSOptions()
    for key, sub in block.items():
        name = key.lower()
        v = sub.value
        if name in ("cert_file", "key_file", "ca_file"):
            if not isinstance(v, str):
                ld.err(sub, f"error parsing tls config, expected '{name}' to be filename")
                return None
            setattr(tls, name, v)
        elif name in ("verify", "verify_and_map", "insecure"):
            if not isinstance(v, bool):
                ld.err(sub, f"error parsing tls config, expected '{name}' to be a boolean")
                return None
            setattr(tls, name, v)
        elif name == "timeout":
            secs = ld.seconds(sub, "tls config")
            if secs is None:
                return None
            tls.timeout = secs
        elif name == "min_version":
            if not isinstance(v, str) or v not in _TLS_VERSIONS:
                ld.err(sub, f"error parsing tls config: unknown version: {go_value(sub)}")
                return None
            tls.min_version = v
        elif name in ("handshake_first", "first", "immediate"):
            if isinstance(v, bool):
                tls.handshake_first = v
                continue
            if isinstance(v, str) and v.lower() != "auto":
                try:
                    parse_go_duration(v)
                except ValueError as exc:
                    ld.err(sub, f"error parsing tls config, 'handshake_first' {exc}")
                    return None
            elif not isinstance(v, str):
                ld.err(sub, "error parsing tls config, 'handshake_first' wrong type")
                return None
            # "auto" / a delay: TLS-first with fallback to INFO-first; not implemented.
            ld.unsupported(key, sub)
        elif name in _REFUSED_TLS:
            ld.refused(key, sub)
            return None
        elif name in _REFUSED_TLS_AUTH:
            ld.refused_auth(key, sub)
            return None
        elif name in _UNSUPPORTED_TLS:
            ld.unsupported(key, sub)
        elif not sub.used:
            ld.err(sub, f"error parsing tls config, unknown field {go_quote(key)}")
            return None
    problem = _check_tls_files(tls)
    if problem:
        ld.err(node, problem)
        return None
    if not tls.cert_file:
        # nats-server requires TLS of every client then (and, with no certificate,
        # no handshake succeeds); hybridbus would run the listener in clear text and
        # skip verify/verify_and_map. Refuse rather than fail open.
        ld.err(
            node,
            "tls: a tls block needs cert_file and key_file (without a certificate "
            "hybridbus would not use TLS nor check client certificates)",
        )
        return None
    return tls


def _read_for_tls(path: str) -> tuple[bytes | None, str | None]:
    try:
        with open(path, "rb") as f:
            return f.read(), None
    except IsADirectoryError:
        return None, f"read {path}: is a directory"
    except OSError as exc:
        return None, f"open {path}: {(exc.strerror or str(exc)).lower()}"


def _no_password() -> bytes:
    # Never let OpenSSL prompt on a terminal for an encrypted key.
    return b""


def _check_tls_files(tls: TLSOptions) -> str | None:
    """nats-server loads certificates while parsing, so ``-t`` catches bad files."""
    if tls.cert_file and not tls.key_file:
        return "missing 'key_file' in TLS configuration"
    if tls.key_file and not tls.cert_file:
        return "missing 'cert_file' in TLS configuration"
    pair = "error parsing X509 certificate/key pair: "
    if tls.cert_file and tls.key_file:
        cert, problem = _read_for_tls(tls.cert_file)
        if problem:
            return pair + problem
        key, problem = _read_for_tls(tls.key_file)
        if problem:
            return pair + problem
        assert cert is not None and key is not None
        if b"-----BEGIN" not in cert:
            return pair + "tls: failed to find any PEM data in certificate input"
        if b"CERTIFICATE-----" not in cert:
            if b"PRIVATE KEY-----" in cert:
                return pair + (
                    "tls: failed to find certificate PEM data in certificate input, but did "
                    "find a private key; PEM inputs may have been switched"
                )
            return pair + "tls: failed to find certificate PEM data in certificate input"
        if b"-----BEGIN" not in key:
            return pair + "tls: failed to find any PEM data in key input"
        import ssl

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            ctx.load_cert_chain(tls.cert_file, tls.key_file, password=_no_password)
        except ssl.SSLError as exc:
            if "KEY_VALUES_MISMATCH" in str(exc):
                return pair + "tls: private key does not match public key"
            return pair + f"tls: {exc.reason or exc}"
        except OSError as exc:
            return pair + str(exc)
    if tls.ca_file:
        data, problem = _read_for_tls(tls.ca_file)
        if problem:
            return problem
        import ssl

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            ctx.load_verify_locations(cafile=tls.ca_file)
        except (ssl.SSLError, OSError):
            return "failed to parse root ca certificate"
    return None


def l_tls(ld: Loader, target: Any, node: Node, key: str) -> None:
    target.tls = tls(ld, node)


def l_auth(ld: Loader, target: Any, node: Node, key: str) -> None:
    target.auth = simple_auth(ld, node)


# What the ``mqtt`` and ``websocket`` blocks share: a listener and its own auth.
LISTENER: dict[str, Handler] = {
    "listen": store_listen("host", "port"),
    "port": store("port", Loader.port),
    "host": store("host", Loader.str_),
    "net": store("host", Loader.str_),
    "tls": l_tls,
    "authorization": l_auth,
    "authentication": l_auth,
    "no_auth_user": store("no_auth_user", Loader.str_),
}
