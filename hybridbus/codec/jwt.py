"""NATS JWTs (nats-io/jwt v2): decoding, the issuer's signature, and the claim times.

A JWT is ``header.claims.signature``, each part base64url without padding. The header
is ``{"typ": "JWT", "alg": "ed25519-nkey"}``; the claims are JSON with ``jti``,
``iat``, ``iss`` (the issuer's public nkey), ``sub``, optional ``exp``/``nbf`` (Unix
seconds) and a ``nats`` object whose ``type`` says what the JWT is (``operator``,
``account``, ``user``). The signature is the issuer's ed25519 signature of the ASCII
text ``header.claims``. ``decode`` checks all of it and returns the claims: a JWT
that is not well formed, not v2, of another type than asked, with an issuer or
subject of the wrong role, or not signed by its issuer, raises ``JwtError``.

Why the signature check lives in the codec (unlike ``codec/nkey.py``): nats-server
verifies an operator JWT and a resolver_preload JWT while it reads its config
(``jwt.DecodeOperatorClaims``), and the config loader sits below ``security``.
PyNaCl (libsodium, what the nkeys package verifies with) is imported on first use,
so a server without operator mode never loads it.

Refused on purpose (fail closed): v1 JWTs (``alg: ed25519``), which nats-server
still migrates; nothing here upgrades them.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

from hybridbus.codec.nkey import PREFIX_ACCOUNT, PREFIX_OPERATOR, PREFIX_USER, decode_public_key

__all__ = [
    "JwtError",
    "decode",
    "parse_decorated",
    "parse_creds",
    "time_problem",
    "ALGORITHM",
]

ALGORITHM = "ed25519-nkey"
_V1_ALGORITHM = "ed25519"
# who may issue, and what the subject is, per claim type (nats-io/jwt ExpectedPrefixes)
_ROLES = {
    "operator": (PREFIX_OPERATOR, PREFIX_OPERATOR),
    "account": (PREFIX_OPERATOR, PREFIX_ACCOUNT),
    "user": (PREFIX_ACCOUNT, PREFIX_USER),
}
# the longest JWT accepted: a CONNECT carries it, max_control_line bounds that anyway
MAX_JWT = 1 << 20
_DECORATED = re.compile(r"-{3,}[^\n]*-{3,}\n\s*(\S+?)\s*\n\s*-{3,}[^\n]*-{3,}")


class JwtError(ValueError):
    """A JWT that is not accepted; ``str()`` says why in a few words."""


def _b64(part: str) -> bytes:
    """Go's RawURLEncoding, with URLEncoding's padding tolerated (as nats-io/jwt)."""
    if not part or any(c in part for c in "+/"):
        raise JwtError("bad base64 encoding")
    try:
        return base64.urlsafe_b64decode(part.rstrip("=") + "=" * (-len(part.rstrip("=")) % 4))
    except (binascii.Error, ValueError):
        raise JwtError("bad base64 encoding") from None


def _json_object(raw: bytes, what: str) -> dict:
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise JwtError(f"{what} is not valid JSON") from None
    if not isinstance(value, dict):
        raise JwtError(f"{what} is not a JSON object")
    return value


def decode(token: Any, expected_type: str) -> dict:
    """The verified claims of `token`, a JWT of `expected_type` (``_ROLES``)."""
    if not isinstance(token, str) or not token.isascii() or len(token) > MAX_JWT:
        raise JwtError("not a JWT")
    parts = token.strip().split(".")
    if len(parts) != 3:
        raise JwtError("expected 3 chunks")
    header = _json_object(_b64(parts[0]), "header")
    if str(header.get("typ", "")).upper() != "JWT":
        raise JwtError(f"not supported type {header.get('typ')!r}")
    alg = header.get("alg")
    if alg == _V1_ALGORITHM:
        raise JwtError("v1 JWTs (alg ed25519) are not supported")
    if alg != ALGORITHM:
        raise JwtError(f"unexpected {alg!r} algorithm")
    claims = _json_object(_b64(parts[1]), "claims")
    sig = _b64(parts[2])
    nats = claims.get("nats")
    if not isinstance(nats, dict):
        raise JwtError("claims have no nats section")
    kind = nats.get("type")
    if kind != expected_type:
        raise JwtError(f"not {expected_type} claim (type {kind!r})")
    version = nats.get("version", 2)
    if version != 2 or isinstance(version, bool):
        raise JwtError(f"unsupported claims version {version!r}")
    issuer_role, subject_role = _ROLES[expected_type]
    issuer = claims.get("iss")
    raw_issuer = decode_public_key(issuer, issuer_role)
    if raw_issuer is None:
        raise JwtError(f"issuer {issuer!r} is not a valid {expected_type} issuer key")
    if decode_public_key(claims.get("sub"), subject_role) is None:
        raise JwtError(f"subject {claims.get('sub')!r} is not a valid {expected_type} key")
    for field in ("iat", "exp", "nbf"):
        value = claims.get(field, 0)
        if not isinstance(value, int) or isinstance(value, bool):
            raise JwtError(f"{field} is not a number of seconds")
    if not _signed(raw_issuer, f"{parts[0]}.{parts[1]}".encode(), sig):
        raise JwtError("claim failed signature verification")
    return claims


def _signed(raw_key: bytes, message: bytes, sig: bytes) -> bool:
    from nacl.exceptions import BadSignatureError
    from nacl.signing import VerifyKey

    if len(sig) != 64:
        return False
    try:
        VerifyKey(raw_key).verify(message, sig)
    except (BadSignatureError, ValueError, TypeError):
        return False
    return True


def time_problem(claims: dict, now: float) -> str | None:
    """None while the claims are in force; else "expired" or "not yet valid"
    (nats-io/jwt: expired once ``exp`` is in the past, whole seconds)."""
    exp = claims.get("exp") or 0
    if exp and exp < int(now):
        return "expired"
    nbf = claims.get("nbf") or 0
    if nbf and nbf > int(now):
        return "not yet valid"
    return None


def parse_decorated(text: str) -> str:
    """The JWT of an nsc-decorated file (``-----BEGIN ... JWT-----``), or the text."""
    found = _DECORATED.search(text)
    return found.group(1) if found else text.strip()


def parse_creds(text: str) -> tuple[str, str | None]:
    """(JWT, seed) of a .creds file: the first and second decorated blocks."""
    blocks = _DECORATED.findall(text)
    if not blocks:
        return text.strip(), None
    return blocks[0], blocks[1] if len(blocks) > 1 else None
