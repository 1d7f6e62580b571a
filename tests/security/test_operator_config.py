"""Operator-mode configs: what loads (operator as a file, decorated or inline, a list;
MEMORY and full resolvers; the system account from the operator JWT or the config)
and what stops the load, with nats-server's messages."""

from __future__ import annotations

import pytest

from hybridbus.config import ConfigError
from hybridbus.config.load import load_options
from tests.helpers import jwts as T

from .operator_env import Op


def load(op: Op, text: str):
    return load_options(op.write(text))[0]


def errors(op: Op, text: str) -> list[str]:
    with pytest.raises(ConfigError) as err:
        load_options(op.write(text))
    return err.value.lines


def test_operator_file_inline_decorated_and_list(tmp_path):
    op = Op(tmp_path)
    token = op.operator_jwt()
    decorated = tmp_path / "op.nk"
    decorated.write_text(
        f"-----BEGIN NATS OPERATOR JWT-----\n{token}\n------END NATS OPERATOR JWT------\n"
    )
    for value in (f'"{decorated}"', f'"{token}"', f'["{decorated}"]'):
        opts = load(op, f"operator: {value}\nresolver: MEMORY\n")
        assert opts.operator.jwts == [token]
        assert opts.system_account == op.key("SYS")  # from the operator JWT
        assert [a.name for a in opts.accounts] == [op.key("SYS")]


def test_full_resolver_block(tmp_path):
    op = Op(tmp_path)
    opts = load(
        op,
        op.config(
            resolver='{ type: full, dir: "jwts", allow_delete: true, interval: "1m", '
            'timeout: "2s", limit: 100 }'
        ),
    )
    assert opts.operator.resolver == "full"
    assert opts.operator.resolver_dir.endswith("jwts") and opts.operator.allow_delete
    assert (opts.operator.interval, opts.operator.timeout) == (60.0, 2.0)


@pytest.mark.parametrize(
    "text, message",
    [
        ('operator: "eyJnot.a.jwt"\nresolver: MEMORY', "error parsing operator JWT"),
        ("operator: 42\nresolver: MEMORY", "error parsing operators"),
        ('operator: "{op}"\nresolver: { type: cache, dir: "x" }', "type cache"),
        ('operator: "{op}"\nresolver: { type: weird }', "resolver type 'weird' not supported"),
        ('operator: "{op}"\nresolver: NOPE', "not understood"),
        (
            'operator: "{op}"\nresolver: MEMORY\nsystem_account: "{other}"',
            "system_account in config and operator JWT must be identical",
        ),
        ('operator: "{acc}"\nresolver: MEMORY', "error parsing operator JWT: not operator claim"),
        (
            'operator: "{op}"\nresolver: MEMORY\nresolver_preload { {a}: "{bjwt}" }',
            "subject does not match jwt content",
        ),
        (
            'operator: "{op}"\nresolver: MEMORY\nauthorization { users: [{user: u, password: p}] }',
            "operators do not allow users to be configured directly",
        ),
    ],
)
def test_refused(tmp_path, text, message):
    op = Op(tmp_path)
    text = (
        text.replace("{op}", op.operator_jwt())
        .replace("{other}", T.pub(T.account_key()))
        .replace("{acc}", op.account_jwts["A"])
        .replace("{a}", op.key("A"))
        .replace("{bjwt}", op.account_jwts["B"])
    )
    lines = errors(op, text)
    assert len(lines) == 1 and message in lines[0], lines


def test_full_resolver_needs_a_system_account(tmp_path):
    op = Op(tmp_path)
    token = T.operator_jwt(op.op, signing_keys=[T.pub(op.signer)])  # no system_account
    lines = errors(op, f'operator: "{token}"\nresolver: {{ type: full, dir: "d" }}')
    assert "the system account needs to be specified" in lines[0]


def test_operator_signed_by_a_stranger_is_refused(tmp_path):
    op = Op(tmp_path)
    token = T.operator_jwt(op.op, signer=T.operator_key())
    lines = errors(op, f'operator: "{token}"\nresolver: MEMORY')
    assert "not self-signed nor by its signing keys" in lines[0]
