"""Credentials: passwords (plain or bcrypt), tokens, nkeys (``nkey.py``), and who a TLS
certificate names.

Theory of operation
-------------------
A ``Realm`` is what one kind of listener checks credentials against: the user table,
a token, the ``no_auth_user`` and whether certificates map to users
(``verify_and_map``). The NATS port uses the top-level ``authorization`` block; the
MQTT and websocket listeners use their own ``authorization`` block when it names a
user or a token (nats-server's "auth override") and the top-level one otherwise.
There is one user table, so a user has the same permissions on every protocol.

Passwords follow nats-conventions §3.6: a configured value matching
``^\\$2[abxy]\\$\\d{2}\\$`` is a bcrypt hash, anything else is compared in constant
time. bcrypt costs tens to hundreds of milliseconds on purpose (about 160 ms at cost
11) and runs on the event loop, because the facade is synchronous. Three guards keep
that from stalling every other client:

* each verdict is remembered under an HMAC of (hash, password) with a per-process
  random key, so a client reconnecting with the right password, or a device stuck in
  a loop with an old one, pays once (nothing of the password itself is kept);
* a bcrypt time budget: once ``BCRYPT_BUDGET`` seconds of bcrypt were spent in the
  current second, further uncached checks are refused at once (``AuthBusy``) instead
  of queueing up behind each other; remembered verdicts still answer;
* both memories are bounded.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import ssl
import time
from dataclasses import dataclass, field
from typing import Any

try:
    import bcrypt as _bcrypt
except ImportError:  # pragma: no cover - bcrypt is a dependency; fail closed without it
    _bcrypt = None

from hybridbus.security.permissions import UserPermissions

__all__ = [
    "AuthBusy",
    "BCRYPT_RE",
    "is_bcrypt",
    "check_password",
    "AuthUser",
    "Realm",
    "bcrypt_pending",
    "cert_identities",
    "run_bcrypt",
]

BCRYPT_RE = re.compile(r"^\$2[abxy]\$\d{2}\$.*", re.DOTALL)
# bcrypt reads at most 72 bytes of a password; Go's Compare silently ignores the rest,
# while the Python package (>= 5) raises. Truncate to agree with nats-server.
BCRYPT_MAX_PASSWORD = 72
_CACHE_MAX = 1024
# Seconds of bcrypt work allowed per wall-clock second on the event loop.
BCRYPT_BUDGET = 0.3
_cache_key = secrets.token_bytes(32)
_verdicts: dict[bytes, bool] = {}
_budget = [0.0, 0.0]  # [window start, seconds spent in it]


class AuthBusy(Exception):
    """The bcrypt budget of this second is spent; the check was not made."""


def _reserve_bcrypt() -> None:
    now = time.monotonic()
    if now - _budget[0] >= 1.0:
        _budget[0], _budget[1] = now, 0.0
    if _budget[1] >= BCRYPT_BUDGET:
        raise AuthBusy


def is_bcrypt(value: str) -> bool:
    return BCRYPT_RE.match(value) is not None


def _as_bytes(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("utf-8", "surrogateescape")


def _cache_key_for(hashed: bytes, given_b: bytes) -> bytes:
    return hmac.new(_cache_key, hashed + b"\0" + given_b, hashlib.sha256).digest()


def bcrypt_pending(configured: str | None, given: str | bytes | None) -> tuple | None:
    """The bcrypt work checking `given` against `configured` needs, or None when the
    answer is cheap (plain password, no password, verdict cached). The server runs it
    with ``run_bcrypt`` on an executor thread, so a login never stalls the event loop."""
    if not configured or given is None or _bcrypt is None or not is_bcrypt(configured):
        return None
    given_b = _as_bytes(given)
    hashed = configured.encode("ascii", "replace")
    key = _cache_key_for(hashed, given_b)
    if key in _verdicts:
        return None
    return hashed, given_b, key


def run_bcrypt(hashed: bytes, given_b: bytes, key: bytes) -> bool:
    """One bcrypt check; blocking (bcrypt releases the GIL). Caches the verdict."""
    if hashed.startswith(b"$2x$"):
        # The buggy-8-bit variant: same algorithm for ASCII passwords.
        hashed = b"$2a$" + hashed[4:]
    try:
        ok = _bcrypt.checkpw(given_b[:BCRYPT_MAX_PASSWORD], hashed)
    except ValueError:  # malformed hash: nobody logs in with it
        ok = False
    if len(_verdicts) >= _CACHE_MAX:
        _verdicts.clear()
    _verdicts[key] = ok
    return ok


def check_password(configured: str, given: str | bytes | None) -> bool:
    """`given` (from CONNECT or MQTT) against a configured plain or bcrypt password.

    Normally the bcrypt verdict is already cached (see ``bcrypt_pending``); if not,
    the check runs here, within a per-second budget, and raises AuthBusy past it."""
    if given is None:
        return False
    given_b = _as_bytes(given)
    if not is_bcrypt(configured):
        return hmac.compare_digest(_as_bytes(configured), given_b)
    if _bcrypt is None:
        return False
    hashed = configured.encode("ascii", "replace")
    key = _cache_key_for(hashed, given_b)
    verdict = _verdicts.get(key)
    if verdict is not None:
        return verdict
    _reserve_bcrypt()
    started = time.monotonic()
    ok = run_bcrypt(hashed, given_b, key)
    _budget[1] += time.monotonic() - started
    return ok


@dataclass
class AuthUser:
    name: str  # the public key of an nkey user
    password: str | None
    perms: UserPermissions | None
    # None: every connection type; else upper-case names (STANDARD, MQTT, ...)
    allowed_types: frozenset[str] | None = None
    # an nkey user's ed25519 key (security.nkey.verify_key); None for other users
    nkey: Any = None
    # the user's account (accounts { A: { users } }); None: the global account $G
    account: str | None = None


@dataclass
class Realm:
    """Credentials one listener accepts. `users` is the shared table (name -> user)."""

    users: dict[str, AuthUser] = field(default_factory=dict)
    single: AuthUser | None = None  # authorization { user, password }
    token: str | None = None
    no_auth_user: str | None = None
    default_perms: UserPermissions | None = None
    tls_map: bool = False
    # some user is an nkey user: each connection's INFO carries a nonce to sign
    nonce: bool = False

    @property
    def required(self) -> bool:
        return bool(self.users or self.single or self.token or self.tls_map)

    def lookup(self, name: str) -> AuthUser | None:
        user = self.users.get(name)
        if user is None and self.single is not None and self.single.name == name:
            user = self.single
        return user


# -- certificates -----------------------------------------------------------------

# Attribute names as Go's pkix.Name.String() prints them (nats-server matches users
# against that string); other attributes keep their OpenSSL long name.
_DN_SHORT = {
    "commonName": "CN",
    "countryName": "C",
    "organizationName": "O",
    "organizationalUnitName": "OU",
    "localityName": "L",
    "stateOrProvinceName": "ST",
    "streetAddress": "STREET",
    "postalCode": "POSTALCODE",
    "serialNumber": "SERIALNUMBER",
}


def _dn_escape(value: str) -> str:
    out = []
    for i, ch in enumerate(value):
        if ch in ',+"\\<>;' or (i == 0 and ch in "# ") or (i == len(value) - 1 and ch == " "):
            out.append("\\" + ch)
        else:
            out.append(ch)
    return "".join(out)


def _dn_string(subject: tuple) -> str:
    """RFC 2253 order (last RDN first), as Go's Name.String() writes it."""
    rdns = []
    for rdn in reversed(subject):
        rdns.append("+".join(f"{_DN_SHORT.get(k, k)}={_dn_escape(str(v))}" for k, v in rdn))
    return ",".join(rdns)


def cert_identities(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> list[str]:
    """Names a verified client certificate offers, most specific first: SAN e-mail
    addresses, SAN DNS names, SAN URIs, the subject DN string, the subject CN."""
    if ssl_object is None:
        return []
    try:
        cert = ssl_object.getpeercert()
    except (ValueError, ssl.SSLError):
        return []
    if not cert:
        return []
    names: list[str] = []
    san = cert.get("subjectAltName", ())
    for kind in ("email", "DNS", "URI"):
        names.extend(v for k, v in san if k == kind)
    subject = cert.get("subject", ())
    if subject:
        names.append(_dn_string(subject))
        names.extend(v for rdn in subject for k, v in rdn if k == "commonName")
    return names
