"""Config files to Options: the ``tls`` blocks."""

from __future__ import annotations

import pytest

from .conftest import DATA

CERT = str(DATA / "cert.pem")
KEY = str(DATA / "key.pem")
OTHER_KEY = str(DATA / "other-key.pem")


# -- tls --------------------------------------------------------------------------------


def test_tls_block(conf):
    text = f"""tls {{
  cert_file: "{CERT}"
  key_file: "{KEY}"
  ca_file: "{CERT}"
  verify: true
  verify_and_map: true
  insecure: false
  timeout: "3s"
  min_version: "1.3"
  handshake_first: true
}}"""
    opts, warnings = conf.load(text)
    assert warnings == []
    tls = opts.tls
    assert (tls.cert_file, tls.key_file, tls.ca_file) == (CERT, KEY, CERT)
    assert (tls.verify, tls.verify_and_map, tls.insecure) == (True, True, False)
    assert (tls.timeout, tls.min_version, tls.handshake_first) == (3.0, "1.3", True)
    pair = f'cert_file: "{CERT}", key_file: "{KEY}"'
    assert conf.load(f"tls {{ {pair}, timeout: 5, first: false }}")[0].tls.timeout == 5.0


@pytest.mark.parametrize(
    "body, msg",
    [
        ("foo: 1", 'c.conf:1:6: error parsing tls config, unknown field "foo"'),
        ("cert_file: /x.pem", "c.conf:1:0: missing 'key_file' in TLS configuration"),
        ("key_file: /x.pem", "c.conf:1:0: missing 'cert_file' in TLS configuration"),
        (
            f'cert_file: /nope.pem, key_file: "{KEY}"',
            "c.conf:1:0: error parsing X509 certificate/key pair: open /nope.pem: no such file or directory",
        ),
        (
            f'cert_file: "{CERT}", key_file: /nokey.pem',
            "c.conf:1:0: error parsing X509 certificate/key pair: open /nokey.pem: no such file or directory",
        ),
        (
            f'cert_file: "{CERT}", key_file: "{OTHER_KEY}"',
            "c.conf:1:0: error parsing X509 certificate/key pair: tls: private key does not match public key",
        ),
        (
            f'cert_file: "{KEY}", key_file: "{KEY}"',
            "c.conf:1:0: error parsing X509 certificate/key pair: tls: failed to find certificate PEM "
            "data in certificate input, but did find a private key; PEM inputs may have been switched",
        ),
        ("ca_file: /noca.pem", "c.conf:1:0: open /noca.pem: no such file or directory"),
        ('min_version: "1.9"', "c.conf:1:6: error parsing tls config: unknown version: 1.9"),
        ("timeout: true", "c.conf:1:6: error parsing tls config, 'timeout' wrong type"),
        ("verify: 1", "c.conf:1:6: error parsing tls config, expected 'verify' to be a boolean"),
        (
            "cert_file: 1",
            "c.conf:1:6: error parsing tls config, expected 'cert_file' to be filename",
        ),
        ("pinned_certs: [abc]", 'c.conf:1:6: field "pinned_certs" is not supported by hybridbus'),
    ],
)
def test_tls_errors(conf, body, msg):
    assert conf.errors(f"tls {{ {body} }}") == [msg]


def test_tls_bad_pem_files(conf, tmp_path):
    (tmp_path / "junk.pem").write_text("junk\n")
    assert conf.errors(f'tls {{ cert_file: junk.pem, key_file: "{KEY}" }}') == [
        "c.conf:1:0: error parsing X509 certificate/key pair: tls: failed to find any PEM data in certificate input"
    ]
    assert conf.errors(f'tls {{ cert_file: "{CERT}", key_file: junk.pem }}') == [
        "c.conf:1:0: error parsing X509 certificate/key pair: tls: failed to find any PEM data in key input"
    ]
    assert conf.errors("tls { ca_file: junk.pem }") == [
        "c.conf:1:0: failed to parse root ca certificate"
    ]


def test_tls_unsupported_fields_warn(conf):
    pair = f'cert_file: "{CERT}", key_file: "{KEY}"'
    assert conf.warnings(
        f'tls {{\n{pair}\ncipher_suites: ["TLS_AES_128_GCM_SHA256"], handshake_first: "auto" }}'
    ) == [
        'c.conf:3:1: field "cipher_suites" is not supported by hybridbus and is ignored',
        'c.conf:3:44: field "handshake_first" is not supported by hybridbus and is ignored',
    ]


@pytest.mark.parametrize("block", ["tls { verify: true }", "tls { timeout: 5 }", "tls {}"])
def test_tls_block_without_certificate_is_refused(conf, block):
    # nats-server would require TLS (and fail every handshake); hybridbus would
    # listen in clear text and check no client certificate: refuse instead.
    for text in (block, f"mqtt {{ {block} }}"):
        lines = conf.errors(text)
        assert len(lines) == 1 and "a tls block needs cert_file and key_file" in lines[0]
