"""Key/Value buckets end to end, as nats-py 2.16 builds them on streams (KV_<bucket>,
$KV.<bucket>.<key>): the wire of /work/shared/docs/jetstream-subset.md section 4.

Every test runs against a fresh hybridbus server. With HB_REFERENCE=1 the tests on the
``js`` fixture run against a fresh nats-server instead (/tmp/venv/bin/nats-server, or
$HB_NATS_SERVER), which is how they were checked: what passes there is nats-server's
behaviour. The restart test is hybridbus's own."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time

import nats
import pytest
from nats.js import api
from nats.js.errors import (
    APIError,
    BadRequestError,
    BucketNotFoundError,
    KeyNotFoundError,
    KeyWrongLastSequenceError,
    NoKeysError,
    NotFoundError,
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
async def js(server_factory, tmp_path):
    """A JetStream context on a fresh server (hybridbus, or nats-server with HB_REFERENCE)."""
    proc = None
    if os.environ.get("HB_REFERENCE"):
        binary = (
            os.environ.get("HB_NATS_SERVER")
            or shutil.which("nats-server")
            or "/tmp/venv/bin/nats-server"
        )
        port = _free_port()
        proc = subprocess.Popen(
            [binary, "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", str(tmp_path / "ref")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        url = f"nats://127.0.0.1:{port}"
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), 0.1).close()
                break
            except OSError:
                await asyncio.sleep(0.02)
    else:
        server = await server_factory()
        url = f"nats://127.0.0.1:{server.nats_port}"
    nc = await nats.connect(url)
    try:
        yield nc.jetstream(timeout=2)
    finally:
        await nc.close()
        if proc is not None:
            proc.kill()
            proc.wait(5)


async def _drain(watcher, n: int, timeout: float = 2.0) -> list:
    """The next ``n`` updates of a watcher (None is the end-of-initial-values marker)."""
    return [await watcher.updates(timeout=timeout) for _ in range(n)]


# --------------------------------------------------------------------------- buckets


async def test_create_bind_and_delete_a_bucket(js):
    kv = await js.create_key_value(bucket="cfg", history=5, description="settings")
    status = await kv.status()
    assert (status.bucket, status.values, status.history) == ("cfg", 0, 5)
    cfg = status.stream_info.config
    assert cfg.name == "KV_cfg" and cfg.subjects == ["$KV.cfg.>"]
    assert cfg.description == "settings"
    assert (cfg.max_msgs_per_subject, cfg.discard, cfg.deny_delete) == (
        5,
        api.DiscardPolicy.NEW,
        True,
    )
    assert cfg.allow_rollup_hdrs and not cfg.allow_direct
    assert cfg.duplicate_window == 120.0
    # the same config again is a success; another is 10058
    await js.create_key_value(bucket="cfg", history=5, description="settings")
    with pytest.raises(BadRequestError) as ei:
        await js.create_key_value(bucket="cfg", history=2)
    assert ei.value.err_code == 10058
    bound = await js.key_value("cfg")
    await bound.put("a", b"1")
    assert (await kv.get("a")).value == b"1"
    with pytest.raises(BucketNotFoundError):
        await js.key_value("nope")
    assert await js.delete_key_value("cfg") is True
    with pytest.raises(BucketNotFoundError):
        await js.key_value("cfg")


async def test_a_stream_without_per_subject_history_is_not_a_bucket(js):
    await js.add_stream(name="KV_plain", subjects=["$KV.plain.>"])
    with pytest.raises(Exception) as ei:  # nats-py's BadBucketError
        await js.key_value("plain")
    assert type(ei.value).__name__ == "BadBucketError"


# --------------------------------------------------------------------------- values


async def test_put_get_and_revisions(js):
    kv = await js.create_key_value(bucket="b", history=3)
    assert await kv.put("k", b"v1") == 1
    assert await kv.put("other.key", b"x") == 2
    assert await kv.put("k", b"v2") == 3
    e = await kv.get("k")
    assert (e.bucket, e.key, e.value, e.revision, e.operation) == ("b", "k", b"v2", 3, None)
    assert (await kv.get("k", revision=1)).value == b"v1"
    with pytest.raises(KeyNotFoundError):
        await kv.get("k", revision=2)  # revision 2 is another key
    with pytest.raises(KeyNotFoundError):
        await kv.get("missing")
    assert (await kv.get("other.key")).value == b"x"
    await kv.put("empty", b"")
    assert (await kv.get("empty")).value in (b"", None)  # nats-py gives None for no data
    assert (await kv.status()).values == 4


async def test_create_and_update_check_the_last_revision(js):
    kv = await js.create_key_value(bucket="b", history=5)
    rev = await kv.create("k", b"first")
    with pytest.raises(KeyWrongLastSequenceError):
        await kv.create("k", b"again")
    rev2 = await kv.update("k", b"second", last=rev)
    assert rev2 == rev + 1
    with pytest.raises(KeyWrongLastSequenceError):
        await kv.update("k", b"stale", last=rev)
    with pytest.raises(KeyWrongLastSequenceError):
        await kv.update("new-key", b"x", last=7)
    assert (await kv.get("k")).value == b"second"
    # a deleted key may be created again (nats-py re-publishes expecting the marker)
    await kv.delete("k")
    rev3 = await kv.create("k", b"reborn")
    assert (await kv.get("k")).value == b"reborn" and rev3 == rev2 + 2
    # and purged ones too
    await kv.purge("k")
    await kv.create("k", b"again")
    assert (await kv.get("k")).value == b"again"


async def test_delete_purge_and_history(js):
    kv = await js.create_key_value(bucket="b", history=10)
    for i in range(3):
        await kv.put("k", b"%d" % i)
    await kv.put("j", b"other")
    await kv.delete("k")
    with pytest.raises(KeyNotFoundError):
        await kv.get("k")
    hist = await kv.history("k")
    assert [(h.value, h.operation) for h in hist] == [
        (b"0", None),
        (b"1", None),
        (b"2", None),
        (b"", "DEL"),
    ]
    assert [h.revision for h in hist] == [1, 2, 3, 5]
    with pytest.raises(BadRequestError) as ei:  # nats-py leaves delete's error as it is
        await kv.delete("j", last=1)  # j is at revision 4
    assert ei.value.err_code == 10071
    await kv.delete("j", last=4)
    # purge: only the marker is left for the key (a Nats-Rollup: sub)
    await kv.put("k", b"3")
    await kv.purge("k")
    hist = await kv.history("k")
    assert [(h.value, h.operation) for h in hist] == [(b"", "PURGE")]
    with pytest.raises(NoKeysError):
        await kv.history("never")
    info = await js.stream_info("KV_b")
    assert info.state.messages == 3  # k's purge marker, j's value and its delete marker


async def test_history_keeps_the_last_revisions_only(js):
    kv = await js.create_key_value(bucket="b", history=3)
    for i in range(6):
        await kv.put("k", b"%d" % i)
    assert [h.value for h in await kv.history("k")] == [b"3", b"4", b"5"]
    assert (await kv.status()).values == 3


async def test_deny_delete_and_the_value_size_limit(js):
    kv = await js.create_key_value(bucket="b", max_value_size=16)
    await kv.put("k", b"small")
    with pytest.raises(APIError) as ei:
        await js.delete_msg("KV_b", 1)  # buckets are deny_delete
    assert ei.value.err_code == 10057
    with pytest.raises(APIError) as ei:
        await kv.put("k", b"x" * 64)
    assert ei.value.err_code == 10054
    assert (await kv.get("k")).value == b"small"


async def test_a_full_bucket_refuses_new_values(js):
    kv = await js.create_key_value(bucket="b", max_bytes=200)
    await kv.put("a", b"x" * 50)
    with pytest.raises(APIError) as ei:
        for i in range(10):
            await kv.put(f"k{i}", b"x" * 50)
    assert ei.value.err_code == 10077
    assert (await kv.get("a")).value == b"x" * 50


async def test_purge_deletes_removes_old_markers(js):
    kv = await js.create_key_value(bucket="b", history=5)
    await kv.put("a", b"1")
    await kv.put("b", b"2")
    await kv.delete("a")
    await kv.purge("b")
    await kv.put("c", b"3")
    await kv.purge_deletes(olderthan=-1)  # every marker, whatever its age
    info = await js.stream_info("KV_b")
    assert info.state.messages == 1
    assert await kv.keys() == ["c"]


# --------------------------------------------------------------------------- keys, watch


async def test_keys(js):
    kv = await js.create_key_value(bucket="b", history=2)
    started = time.monotonic()
    with pytest.raises(NoKeysError):
        await kv.keys()
    assert time.monotonic() - started < 1.5  # no hang on an empty bucket
    for key in ("a", "b.x", "c", "a"):
        await kv.put(key, b"v")
    await kv.delete("c")
    assert sorted(await kv.keys()) == ["a", "b.x"]
    assert await kv.keys(filters=["b."]) == ["b.x"]
    await kv.purge("a")
    await kv.delete("b.x")
    with pytest.raises(NoKeysError):
        await kv.keys()


async def test_watch_initial_values_then_live_updates(js):
    kv = await js.create_key_value(bucket="b", history=5)
    await kv.put("s.a", b"1")
    await kv.put("s.a", b"2")
    await kv.put("s.b", b"3")
    await kv.put("t.x", b"not watched")
    w = await kv.watch("s.>")
    first = await _drain(w, 3)
    assert [(e.key, e.value, e.revision) for e in first[:2]] == [("s.a", b"2", 2), ("s.b", b"3", 3)]
    assert [e.delta for e in first[:2]] == [1, 0]
    assert first[2] is None
    await kv.put("s.c", b"4")
    await kv.delete("s.a")
    await kv.purge("s.b")
    await kv.put("t.y", b"not watched")
    live = await _drain(w, 3)
    assert [(e.key, e.value, e.operation) for e in live] == [
        ("s.c", b"4", None),
        ("s.a", b"", "DEL"),
        ("s.b", b"", "PURGE"),
    ]
    assert all(e.created is not None for e in live)
    with pytest.raises(nats.errors.TimeoutError):
        await w.updates(timeout=0.3)
    await w.stop()


async def test_watch_on_an_empty_bucket_sends_the_marker_at_once(js):
    kv = await js.create_key_value(bucket="b")
    w = await kv.watchall()
    assert await w.updates(timeout=1) is None
    await kv.put("k", b"v")
    e = await w.updates(timeout=2)
    assert (e.key, e.value) == ("k", b"v")
    await w.stop()


async def test_watch_options(js):
    kv = await js.create_key_value(bucket="b", history=5)
    await kv.put("k", b"1")
    await kv.put("k", b"2")
    await kv.put("d", b"x")
    await kv.delete("d")
    w = await kv.watchall(include_history=True)
    got = await _drain(w, 5)
    assert [(e.key, e.value, e.operation) for e in got[:4]] == [
        ("k", b"1", None),
        ("k", b"2", None),
        ("d", b"x", None),
        ("d", b"", "DEL"),
    ]
    assert got[4] is None
    await w.stop()
    w = await kv.watchall(ignore_deletes=True)
    got = await _drain(w, 2)
    assert [(e.key, e.value) for e in got[:1]] == [("k", b"2")] and got[1] is None
    await kv.delete("k")
    await kv.put("n", b"new")
    e = await w.updates(timeout=2)
    assert (e.key, e.value) == ("n", b"new")  # the delete was not shown
    await w.stop()
    w = await kv.watchall(meta_only=True)  # headers only: keys and revisions, no values
    got = await _drain(w, 4)
    assert [(e.key, e.value, e.revision, e.operation) for e in got[:3]] == [
        ("d", b"", 4, "DEL"),
        ("k", b"", 5, "DEL"),
        ("n", b"", 6, None),
    ]
    assert got[3] is None
    await w.stop()
    w = await kv.watch("k", headers_only=True, include_history=True)
    got = await _drain(w, 4)
    assert [(e.value, e.operation) for e in got[:3]] == [(b"1", None), (b"2", None), (b"", "DEL")]
    await w.stop()


async def test_many_watchers_and_a_quiet_watch_stay_put(js):
    """Watchers are ordered consumers with 5 s heartbeats: several at once, each gets
    every update exactly once, and none is recreated meanwhile."""
    kv = await js.create_key_value(bucket="b")
    watchers = [await kv.watchall() for _ in range(3)]
    for w in watchers:
        assert await w.updates(timeout=1) is None
    for i in range(20):
        await kv.put(f"k{i % 4}", b"%d" % i)
    for w in watchers:
        got = await _drain(w, 20)
        assert [e.value for e in got] == [b"%d" % i for i in range(20)]
        assert [e.revision for e in got] == list(range(1, 21))
    infos = await js.consumers_info("KV_b")
    assert len(infos) == 3
    for w in watchers:
        await w.stop()


# --------------------------------------------------------------------------- TTLs


async def test_the_bucket_ttl_expires_values(js):
    kv = await js.create_key_value(bucket="b", ttl=0.5)
    status = await kv.status()
    assert status.ttl == 0.5
    assert status.stream_info.config.duplicate_window == 0.5  # nats-py: min(2 min, ttl)
    await kv.put("k", b"v")
    assert (await kv.get("k")).value == b"v"
    deadline = time.monotonic() + 3
    while True:
        try:
            await kv.get("k")
        except KeyNotFoundError:
            break
        assert time.monotonic() < deadline, "the value did not expire"
        await asyncio.sleep(0.1)
    assert (await kv.status()).values == 0


async def test_a_per_key_ttl_expires_that_key(js):
    kv = await js.create_key_value(bucket="b", history=2)
    await kv.create("short", b"v", msg_ttl=1)
    await kv.put("long", b"v")
    assert (await kv.get("short")).value == b"v"
    deadline = time.monotonic() + 3
    while True:
        try:
            await kv.get("short")
        except KeyNotFoundError:
            break
        assert time.monotonic() < deadline, "the key did not expire"
        await asyncio.sleep(0.1)
    assert (await kv.get("long")).value == b"v"
    # the purge marker of a purge with a TTL goes too
    await kv.purge("long", msg_ttl=1)
    deadline = time.monotonic() + 3
    while (await js.stream_info("KV_b")).state.messages:
        assert time.monotonic() < deadline, "the purge marker did not expire"
        await asyncio.sleep(0.1)


async def test_limit_markers_show_expiry_to_watchers(js):
    kv = await js.create_key_value(bucket="b", ttl=0.5, limit_marker_ttl=1)
    cfg = (await kv.status()).stream_info.config
    assert cfg.subject_delete_marker_ttl == 1.0
    w = await kv.watchall()
    assert await w.updates(timeout=1) is None
    await kv.put("k", b"v")
    e = await w.updates(timeout=2)
    assert (e.key, e.value, e.operation) == ("k", b"v", None)
    e = await w.updates(timeout=3)  # the server's marker when the value ages out
    assert (e.key, e.operation) == ("k", "PURGE")
    await w.stop()
    marker = await js.get_msg("KV_b", subject="$KV.b.k")
    assert marker.headers["Nats-Marker-Reason"] == "MaxAge"
    assert marker.headers["Nats-TTL"] in ("1s", "1")
    deadline = time.monotonic() + 3
    while (await js.stream_info("KV_b")).state.messages:  # the marker's own TTL
        assert time.monotonic() < deadline, "the marker did not expire"
        await asyncio.sleep(0.1)


# --------------------------------------------------------------------------- direct get


async def test_direct_get(js):
    kv = await js.create_key_value(bucket="d", direct=True, history=3)
    status = await kv.status()
    assert status.stream_info.config.allow_direct is True
    await kv.put("k", b"1")
    await kv.put("k", b"2")
    e = await kv.get("k")
    assert (e.value, e.revision) == (b"2", 2)
    assert (await kv.get("k", revision=1)).value == b"1"
    with pytest.raises(KeyNotFoundError):
        await kv.get("missing")
    with pytest.raises(KeyNotFoundError):
        await kv.get("k", revision=9)
    await kv.delete("k")
    with pytest.raises(KeyNotFoundError):
        await kv.get("k")
    raw = await js.get_msg("KV_d", subject="$KV.d.k", direct=True)
    assert raw.headers["KV-Operation"] == "DEL" and raw.seq == 3
    bound = await js.key_value("d")
    assert (await bound.get("k", revision=2)).value == b"2"


async def test_non_direct_bucket_has_no_direct_get_responder(js):
    kv = await js.create_key_value(bucket="n")
    await kv.put("k", b"v")
    with pytest.raises((nats.errors.NoRespondersError, NotFoundError, APIError)):
        await js.get_msg("KV_n", subject="$KV.n.k", direct=True)
    assert (await kv.get("k")).value == b"v"  # through STREAM.MSG.GET


# --------------------------------------------------------------------------- restarts


async def test_a_bucket_survives_a_restart(tmp_path):
    """Values, history, markers and revisions come back; a watcher made after the
    restart sees them, and create() still knows the last revision."""
    from hybridbus.server.server import Server
    from tests.conftest import make_options

    async def session(check):
        server = Server(make_options(tmp_path))
        await server.start()
        nc = await nats.connect(f"nats://127.0.0.1:{server.nats_port}")
        try:
            await check(nc.jetstream(timeout=2))
        finally:
            await nc.close()
            await server.shutdown()

    async def before(js):
        kv = await js.create_key_value(bucket="b", history=3)
        for i in range(4):
            await kv.put("k", b"%d" % i)
        await kv.put("gone", b"x")
        await kv.delete("gone")

    async def after(js):
        kv = await js.key_value("b")
        assert (await kv.get("k")).value == b"3"
        assert [h.revision for h in await kv.history("k")] == [2, 3, 4]
        with pytest.raises(KeyNotFoundError):
            await kv.get("gone")
        with pytest.raises(KeyWrongLastSequenceError):
            await kv.create("k", b"again")
        assert await kv.create("gone", b"back") == 7
        assert await kv.keys() == ["k", "gone"]
        w = await kv.watchall()
        got = await _drain(w, 3)
        assert [(e.key, e.value) for e in got[:2]] == [("k", b"3"), ("gone", b"back")]
        await w.stop()

    await session(before)
    await session(after)
