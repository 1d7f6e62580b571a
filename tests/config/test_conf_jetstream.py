"""Config files to Options: the ``jetstream`` block and ``store_dir``."""

from __future__ import annotations

import pytest

# -- jetstream ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, enabled",
    [
        ("jetstream: true", True),
        ("jetstream: false", False),
        ("jetstream: enabled", True),
        ('jetstream: "disabled"', False),
        ("jetstream {}", True),
        ("jetstream { enabled: false }", False),
        ("jetstream { enable: false }", False),
    ],
)
def test_jetstream_forms(conf, text, enabled):
    assert conf.load(text)[0].jetstream.enabled is enabled


def test_jetstream_block(conf):
    text = 'jetstream { store: /data/js, max_mem: 1G, max_file: "2T", sync: "5s", strict: false, domain: hub }'
    js = conf.load(text)[0].jetstream
    assert js.store_dir == "/data/js"  # as given: no "/jetstream" suffix
    assert js.max_memory_store == 10**9
    assert js.max_file_store == 2 << 40
    assert (js.sync_interval, js.sync_always, js.strict, js.domain) == (5.0, False, False, "hub")
    for text in ("jetstream { sync_interval: always }", 'jetstream { sync: "ALWAYS" }'):
        js = conf.load(text)[0].jetstream
        assert (js.sync_always, js.sync_interval) == (True, 0.0)
    assert conf.load("jetstream { storedir: /a }")[0].jetstream.store_dir == "/a"
    assert conf.load("store_dir: /b")[0].jetstream.store_dir == "/b"
    assert conf.load("storedir: /c\njetstream {}")[0].jetstream.store_dir == "/c"


@pytest.mark.parametrize(
    "value, size",
    [
        ('"1K"', 1 << 10),
        ('"1M"', 1 << 20),
        ('"1G"', 1 << 30),
        ('"1T"', 1 << 40),
        ("1G", 10**9),
        ("-1", -1),
        ('""', 0),
    ],
)
def test_jetstream_sizes(conf, value, size):
    js = conf.load(f"jetstream {{ max_file_store: {value}, max_memory_store: {value} }}")[
        0
    ].jetstream
    assert js.max_file_store == size
    assert js.max_memory_store == size


@pytest.mark.parametrize(
    "text, msg",
    [
        (
            "jetstream: foo",
            "c.conf:1:0: Expected 'enabled' or 'disabled' for string value, got 'foo'",
        ),
        ("jetstream: 5", "c.conf:1:0: Expected map, bool or string to define JetStream, got int64"),
        (
            'jetstream { max_file_store: "1GB" }',
            'c.conf:1:12: max_file_store strconv.ParseInt: parsing "1G": invalid syntax',
        ),
        (
            'jetstream { max_file_store: "1g" }',
            "c.conf:1:12: max_file_store sizes defined as strings must end in K, M, G, T",
        ),
        (
            'jetstream { max_file_store: "1024" }',
            "c.conf:1:12: max_file_store sizes defined as strings must end in K, M, G, T",
        ),
        (
            'jetstream { max_memory_store: "x" }',
            'c.conf:1:12: max_mem_store strconv.ParseInt: parsing "": invalid syntax',
        ),
        (
            "jetstream { max_memory_store: 1.5 }",
            "c.conf:1:12: max_mem_store must be int64 or string",
        ),
        (
            'jetstream { sync_interval: "5x" }',
            'c.conf:1:12: error parsing sync_interval: time: unknown unit "x" in duration "5x"',
        ),
        (
            "store_dir: /tmp/x\njetstream { store_dir: /tmp/y }",
            "c.conf:2:13: Duplicate 'store_dir' configuration",
        ),
        (
            "jetstream { store_dir: /tmp/y }\nstore_dir: /tmp/x",
            "c.conf:2:1: Duplicate 'store_dir' configuration",
        ),
        ("jetstream { key: s3cret }", 'c.conf:1:12: field "key" is not supported by hybridbus'),
    ],
)
def test_jetstream_errors(conf, text, msg):
    assert conf.errors(text) == [msg]


def test_jetstream_sync_interval_integer_warns(conf):
    opts, warnings = conf.load("jetstream { sync_interval: 5 }")
    assert opts.jetstream.sync_interval == 5.0
    assert warnings == [
        'c.conf:1:12: invalid use of field "sync_interval": sync_interval should be converted to a duration'
    ]
