"""Fixtures for the security tests: a throw-away PKI (trustme) and bcrypt hashes."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import bcrypt
import pytest
import trustme


@dataclass
class PKI:
    ca_file: str
    server_cert: str
    server_key: str
    # client certificates: name -> (cert file, key file)
    clients: dict[str, tuple[str, str]]
    other_ca_file: str

    def client_context(self, who: str | None = None) -> ssl.SSLContext:
        """A client context trusting the test CA, with `who`'s certificate if given."""
        ctx = ssl.create_default_context(cafile=self.ca_file)
        if who is not None:
            cert, key = self.clients[who]
            ctx.load_cert_chain(cert, key)
        return ctx


@pytest.fixture(scope="session")
def pki(tmp_path_factory) -> PKI:
    d: Path = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    other = trustme.CA()
    ca.cert_pem.write_to_path(str(d / "ca.pem"))
    other.cert_pem.write_to_path(str(d / "other-ca.pem"))
    server = ca.issue_cert("127.0.0.1", "localhost")
    server.private_key_pem.write_to_path(str(d / "server-key.pem"))
    for i, blob in enumerate(server.cert_chain_pems):
        blob.write_to_path(str(d / "server.pem"), append=i > 0)
    clients = {}
    issued = {
        # SAN e-mail identity
        "alice": ca.issue_cert("alice@example.com"),
        # mapped by its CN: the SAN e-mail names no user, so the CN is what matches.
        # (It needs some SAN: trustme always adds a subjectAltName built from the
        # identities, and cryptography >= 51 refuses an empty one.)
        "bob": ca.issue_cert("bob@example.org", common_name="bob"),
        # a name no user has
        "mallory": ca.issue_cert("mallory@example.com", common_name="mallory"),
        # signed by a CA the server does not trust
        "stranger": other.issue_cert("alice@example.com"),
    }
    for name, leaf in issued.items():
        leaf.private_key_pem.write_to_path(str(d / f"{name}-key.pem"))
        for i, blob in enumerate(leaf.cert_chain_pems):
            blob.write_to_path(str(d / f"{name}.pem"), append=i > 0)
        clients[name] = (str(d / f"{name}.pem"), str(d / f"{name}-key.pem"))
    return PKI(
        ca_file=str(d / "ca.pem"),
        server_cert=str(d / "server.pem"),
        server_key=str(d / "server-key.pem"),
        clients=clients,
        other_ca_file=str(d / "other-ca.pem"),
    )


@pytest.fixture(scope="session")
def hashes() -> dict[str, str]:
    """bcrypt hashes of "s3cret" in the three prefixes nats-conventions §3.6 names (cost 4: fast)."""
    h = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(4)).decode()
    return {"2b": h, "2a": "$2a$" + h[4:], "2y": "$2y$" + h[4:]}
