"""Fixtures: one suite over both stores (nats-server's testAllStoreAllPermutations idea)."""

from __future__ import annotations

import pytest

from hybridbus.store import open_store


@pytest.fixture(params=["memory", "file"])
def kind(request) -> str:
    return request.param


@pytest.fixture
def make_store(kind, tmp_path):
    """Open a store of the parametrized kind; every store opened is closed after the test."""
    opened = []

    def make(**kw):
        directory = str(tmp_path / "store") if kind == "file" else None
        s = open_store(directory, **kw)
        opened.append(s)
        return s

    yield make
    for s in opened:
        s.close_sync()


@pytest.fixture
def store(make_store):
    return make_store()


@pytest.fixture
def store_dir(tmp_path) -> str:
    return str(tmp_path / "store")


@pytest.fixture
def reopen(store_dir):
    """File store only: open, close and reopen the same directory."""
    opened = []

    def _open(**kw):
        for s in opened:
            s.close_sync()
        s = open_store(store_dir, **kw)
        opened.append(s)
        return s

    yield _open
    for s in opened:
        s.close_sync()
