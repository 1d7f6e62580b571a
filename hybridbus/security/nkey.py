"""NKey users: a user named by an ed25519 public key ("U..."), who proves it holds the
private key by signing a nonce, so no secret ever crosses the wire or sits in the config.

Theory of operation (nats-server's, server/auth.go):

* When the NATS listener has nkey users, every connection's INFO carries a ``nonce``:
  11 random bytes, base64url without padding, new for each connection
  (``new_nonce``). A CONNECT captured on one connection is useless on another.
* The client answers with CONNECT ``"nkey"`` (its public key) and ``"sig"``: the
  ed25519 signature of the nonce's ASCII text, base64url without padding; standard
  base64 with padding (what nats-py sends) is accepted too, as nats-server does.
* An unknown key, a missing, undecodable or wrong signature: ``Authorization
  Violation`` and the close. The ``no_auth_user``'s own key needs no signature (any
  anonymous client is that user anyway).
* MQTT has no nonce to sign: an nkey user cannot log in over MQTT (except as the MQTT
  listener's ``no_auth_user``, as with nats-server).

The key's text form is decoded by ``hybridbus.codec.nkey``; the signature is checked
with PyNaCl (libsodium), the ed25519 implementation the nkeys package is built on:
nkeys for Python has no key pair made from a public key alone, and its
``KeyPair.verify`` is this same ``VerifyKey.verify`` call. One check costs about 60
microseconds on the loop, so it runs inline; ``tests/security/test_nkeys.py``
measures a flood of bad signatures against another client's request/reply.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from typing import Any

from hybridbus.codec.nkey import PREFIX_USER, decode_public_key

__all__ = ["NONCE_BYTES", "new_nonce", "verify_key", "decode_signature", "signature_ok"]

# nats-server's nonceLen: 11 random bytes, 15 characters once encoded
NONCE_BYTES = 11
_SIGNATURE_BYTES = 64


def new_nonce() -> str:
    """A fresh nonce for one connection's INFO."""
    return base64.urlsafe_b64encode(secrets.token_bytes(NONCE_BYTES)).rstrip(b"=").decode()


def verify_key(public_key: str) -> Any:
    """The PyNaCl ``VerifyKey`` of a user's public nkey. Raises ValueError for a key
    that is not a valid user nkey (the config loader has refused those already)."""
    raw = decode_public_key(public_key, PREFIX_USER)
    if raw is None:
        raise ValueError(f"not a valid public nkey for a user: {public_key!r}")
    from nacl.signing import VerifyKey  # only servers with nkey users load libsodium

    return VerifyKey(raw)


def decode_signature(sig: object) -> bytes | None:
    """CONNECT's ``sig``: base64url without padding, else standard base64 with padding
    (nats-server's order); None when it is neither or not 64 bytes long."""
    if not isinstance(sig, str) or not sig or not sig.isascii():
        return None
    text = sig.encode()
    raw = None
    if not any(c in text for c in b"=+/"):  # Go's RawURLEncoding alphabet
        try:
            raw = base64.b64decode(text + b"=" * (-len(text) % 4), altchars=b"-_", validate=True)
        except (binascii.Error, ValueError):
            raw = None
    if raw is None:
        try:
            raw = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            return None
    return raw if len(raw) == _SIGNATURE_BYTES else None


def signature_ok(key: Any, nonce: str, sig: bytes) -> bool:
    """Whether `sig` is the ed25519 signature of `nonce` by `key` (a ``verify_key``)."""
    from nacl.exceptions import BadSignatureError

    try:
        key.verify(nonce.encode("ascii"), sig)
    except (BadSignatureError, ValueError, TypeError):
        return False
    return True
