"""Operator, account and user JWTs for tests: keys from the nkeys package, JWTs encoded
here (nats-io/jwt v2's format: base64url JSON header and claims, the issuer's ed25519
signature of "header.claims"), .creds files as nsc writes them."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time

import nkeys

HEADER = {"typ": "JWT", "alg": "ed25519-nkey"}


def keypair(prefix: int) -> nkeys.KeyPair:
    return nkeys.from_seed(nkeys.encode_seed(os.urandom(32), prefix))


def operator_key() -> nkeys.KeyPair:
    return keypair(nkeys.PREFIX_BYTE_OPERATOR)


def account_key() -> nkeys.KeyPair:
    return keypair(nkeys.PREFIX_BYTE_ACCOUNT)


def user_key() -> nkeys.KeyPair:
    return keypair(nkeys.PREFIX_BYTE_USER)


def pub(kp: nkeys.KeyPair) -> str:
    return kp.public_key.decode()


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def encode(claims: dict, signer: nkeys.KeyPair, header: dict | None = None) -> str:
    """A JWT of `claims` signed by `signer` (iss, iat and jti filled in when absent)."""
    claims = dict(claims)
    claims.setdefault("iss", pub(signer))
    claims.setdefault("iat", int(time.time()))
    body = json.dumps(claims, separators=(",", ":")).encode()
    claims.setdefault("jti", base64.b32encode(hashlib.sha256(body).digest()).decode().rstrip("="))
    head = b64(json.dumps(header or HEADER, separators=(",", ":")).encode())
    payload = b64(json.dumps(claims, separators=(",", ":")).encode())
    sig = signer.sign(f"{head}.{payload}".encode())
    return f"{head}.{payload}.{b64(sig)}"


def operator_jwt(op: nkeys.KeyPair, signer: nkeys.KeyPair | None = None, **nats) -> str:
    return encode(
        {"sub": pub(op), "name": "OP", "nats": {"type": "operator", "version": 2, **nats}},
        signer or op,
    )


def account_jwt(acc: nkeys.KeyPair, signer: nkeys.KeyPair, top: dict | None = None, **nats) -> str:
    nats.setdefault("limits", {"subs": -1, "data": -1, "payload": -1, "conn": -1})
    claims = {"sub": pub(acc), "name": "ACC", "nats": {"type": "account", "version": 2, **nats}}
    claims.update(top or {})
    return encode(claims, signer)


def user_jwt(user: nkeys.KeyPair, signer: nkeys.KeyPair, top: dict | None = None, **nats) -> str:
    nats.setdefault("subs", -1)
    nats.setdefault("data", -1)
    nats.setdefault("payload", -1)
    claims = {"sub": pub(user), "name": "U", "nats": {"type": "user", "version": 2, **nats}}
    claims.update(top or {})
    return encode(claims, signer)


def creds(token: str, user: nkeys.KeyPair) -> str:
    seed = user.seed.decode()
    return (
        "-----BEGIN NATS USER JWT-----\n"
        f"{token}\n"
        "------END NATS USER JWT------\n\n"
        "************************* IMPORTANT *************************\n"
        "NKEY Seed printed below can be used to sign and prove identity.\n\n"
        "-----BEGIN USER NKEY SEED-----\n"
        f"{seed}\n"
        "------END USER NKEY SEED------\n"
    )


def write_creds(path, token: str, user: nkeys.KeyPair) -> str:
    with open(path, "w") as f:
        f.write(creds(token, user))
    return str(path)


def sign_nonce(user: nkeys.KeyPair, nonce: str) -> str:
    return b64(user.sign(nonce.encode()))
