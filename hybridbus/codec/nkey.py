"""NKey public keys as text (the nats-io/nkeys encoding), decoded without a socket or
a crypto library, so the config loader can check a key as nats-server does.

A public key is base32 (RFC 4648 alphabet, upper case, no padding) of 35 bytes: one
prefix byte naming the role ('U' user, 'A' account, 'O' operator, 'N' server, 'C'
cluster), the 32-byte ed25519 public key, and a CRC-16 of those 33 bytes, little
endian. The CRC is CRC-16/XMODEM (polynomial 0x1021, initial value 0), which is what
``binascii.crc_hqx(data, 0)`` computes; tests/security/test_nkeys.py checks it against
the nkeys package on random keys. The signature itself is checked elsewhere
(``hybridbus.security.nkey``), with a real ed25519 implementation.
"""

from __future__ import annotations

import base64
import binascii

__all__ = ["PREFIX_USER", "PREFIX_ACCOUNT", "PREFIX_OPERATOR", "decode_public_key"]

# nkeys' prefix bytes: the role letter's base32 value, shifted to the top five bits
PREFIX_USER = 20 << 3  # 'U'
PREFIX_ACCOUNT = 0  # 'A'
PREFIX_OPERATOR = 14 << 3  # 'O'

_ENCODED_LEN = 56  # 35 bytes in base32, no padding


def decode_public_key(text: object, prefix: int) -> bytes | None:
    """The 32-byte ed25519 key of a public nkey with role `prefix`, or None when `text`
    is not one (wrong type, length, alphabet, role or checksum)."""
    if not isinstance(text, str) or len(text) != _ENCODED_LEN or not text.isascii():
        return None
    try:
        raw = base64.b32decode(text)  # upper case only, as Go's StdEncoding
    except (binascii.Error, ValueError):
        return None
    body, crc = raw[:-2], raw[-2:]
    if body[0] != prefix or binascii.crc_hqx(body, 0).to_bytes(2, "little") != crc:
        return None
    return body[1:]


PREFIX_SEED = 18 << 3  # 'S': a seed's first byte; its second names the role
_SEED_LEN = 58  # 36 bytes in base32, no padding


def decode_seed(text: object) -> tuple[int, bytes] | None:
    """(role prefix, 32-byte ed25519 seed) of a seed such as ``SU...`` (a user's), or
    None when `text` is not one. Seeds pack the 'S' prefix and the role into their
    first two bytes: 5 bits of 'S', then the role's 5 bits across the byte boundary."""
    if not isinstance(text, str) or len(text) != _SEED_LEN or not text.isascii():
        return None
    try:
        raw = base64.b32decode(text + "======")
    except (binascii.Error, ValueError):
        return None
    body, crc = raw[:-2], raw[-2:]
    if len(body) != 34 or binascii.crc_hqx(body, 0).to_bytes(2, "little") != crc:
        return None
    if body[0] & 0xF8 != PREFIX_SEED:
        return None
    role = ((body[0] & 0x07) << 5) | ((body[1] & 0xF8) >> 3)
    return role, body[2:]


def encode_public_key(prefix: int, key: bytes) -> str:
    """The text of a public nkey: the inverse of ``decode_public_key``."""
    body = bytes([prefix]) + key
    raw = body + binascii.crc_hqx(body, 0).to_bytes(2, "little")
    return base64.b32encode(raw).decode().rstrip("=")
