"""Object Store buckets end to end, as nats-py 2.16 builds them on a stream (OBJ_<bucket>:
chunks on $O.<bucket>.C.<nuid>, the meta JSON on $O.<bucket>.M.<base64 name> with a
Nats-Rollup: sub), the wire of /work/shared/docs/jetstream-subset.md sections 4 and 5.

Like test_kv.py, HB_REFERENCE=1 runs the same tests against a fresh nats-server."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io

import nats
import pytest
from nats.js import api
from nats.js.errors import BucketNotFoundError, NotFoundError, ObjectNotFoundError

from tests.jetstream.test_kv import js  # noqa: F401  (the fixture: a server, a context)

KIB = 1024


def payload(n: int) -> bytes:
    """n bytes that differ chunk to chunk (a misplaced chunk changes the digest)."""
    block = hashlib.sha256(b"seed").digest()
    out = bytearray()
    i = 0
    while len(out) < n:
        out += hashlib.sha256(block + i.to_bytes(4, "big")).digest()
        i += 1
    return bytes(out[:n])


def digest(data: bytes) -> str:
    return "SHA-256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).decode()


async def test_create_bind_status_and_delete_a_bucket(js):  # noqa: F811
    obs = await js.create_object_store("files", description="docs")
    status = await obs.status()
    assert status.bucket == "files" and status.description == "docs"
    assert status.size == 0 and status.sealed is False
    cfg = status.stream_info.config
    assert cfg.name == "OBJ_files"
    assert sorted(cfg.subjects) == ["$O.files.C.>", "$O.files.M.>"]
    assert cfg.discard == api.DiscardPolicy.NEW and cfg.allow_rollup_hdrs
    assert cfg.max_consumers == -1  # sent as 0, defaulted by the server
    await js.object_store("files")
    with pytest.raises(BucketNotFoundError):
        await js.object_store("nope")
    assert await js.delete_object_store("files") is True
    with pytest.raises(BucketNotFoundError):
        await js.object_store("files")


async def test_put_and_get_a_small_object(js):  # noqa: F811
    obs = await js.create_object_store("files")
    info = await obs.put("hello.txt", b"hello world")
    assert (info.name, info.size, info.chunks) == ("hello.txt", 11, 1)
    assert info.digest == digest(b"hello world")
    got = await obs.get("hello.txt")
    assert got.data == b"hello world"
    assert (got.info.name, got.info.size, got.info.digest) == ("hello.txt", 11, info.digest)
    meta = await obs.get_info("hello.txt")
    assert (meta.bucket, meta.nuid, meta.deleted) == ("files", info.nuid, False)
    with pytest.raises(ObjectNotFoundError):
        await obs.get("missing")


async def test_multi_chunk_objects(js):  # noqa: F811
    obs = await js.create_object_store("big")
    for size, chunks in ((300 * KIB, 3), (128 * KIB, 1), (128 * KIB + 1, 2)):
        data = payload(size)
        name = f"blob-{size}"
        info = await obs.put(name, data)
        assert (info.size, info.chunks, info.digest) == (size, chunks, digest(data))
        got = await asyncio.wait_for(obs.get(name), 4)
        assert got.data == data  # nats-py checked the digest as well
    sink = io.BytesIO()
    await obs.get("blob-307200", writeinto=sink)
    assert sink.getvalue() == payload(300 * KIB)
    # a smaller chunk size, from a reader
    meta = api.ObjectMeta(name="small-chunks", options=api.ObjectMetaOptions(max_chunk_size=1000))
    data = payload(10_500)
    info = await obs.put("small-chunks", io.BytesIO(data), meta=meta)
    assert info.chunks == 11
    assert (await obs.get("small-chunks")).data == data


async def test_an_empty_object(js):  # noqa: F811
    obs = await js.create_object_store("files")
    info = await obs.put("empty", b"")
    assert (info.size, info.chunks) == (0, 0)
    got = await obs.get("empty")
    assert got.data == b"" and got.info.size == 0


async def test_replacing_an_object_drops_its_old_chunks(js):  # noqa: F811
    obs = await js.create_object_store("files")
    await obs.put("doc", payload(300 * KIB))
    first = (await js.stream_info("OBJ_files")).state.messages
    assert first == 4  # 3 chunks + the meta
    await obs.put("doc", b"short now")
    assert (await obs.get("doc")).data == b"short now"
    state = (await js.stream_info("OBJ_files")).state
    assert state.messages == 2  # 1 chunk + the meta (the old meta rolled up)
    assert (await obs.status()).size == state.bytes


async def test_list_and_delete(js):  # noqa: F811
    obs = await js.create_object_store("files")
    with pytest.raises(NotFoundError):
        await obs.list()  # nats-py: nothing at all is NotFoundError
    await obs.put("a", b"1")
    await obs.put("b", payload(200 * KIB))
    await obs.put("c", b"3")
    assert sorted(i.name for i in await obs.list()) == ["a", "b", "c"]
    await obs.delete("b")
    with pytest.raises(ObjectNotFoundError):
        await obs.get("b")
    gone = await obs.get_info("b", show_deleted=True)
    assert gone.deleted and gone.size == 0 and gone.chunks == 0
    listed = await obs.list()
    assert sorted((i.name, bool(i.deleted)) for i in listed) == [
        ("a", False),
        ("b", True),
        ("c", False),
    ]
    assert sorted(i.name for i in await obs.list(ignore_deletes=True)) == ["a", "c"]
    # the deleted object's chunks are purged: its meta and the two others are left
    state = (await js.stream_info("OBJ_files")).state
    assert state.messages == 5
    with pytest.raises(ObjectNotFoundError):
        await obs.delete("b")


async def test_watch(js):  # noqa: F811
    obs = await js.create_object_store("files")
    await obs.put("a", b"1")
    await obs.put("a", b"2")
    await obs.put("b", b"3")
    w = await obs.watch()
    first = [await w.updates(timeout=2) for _ in range(3)]
    assert [(i.name, i.size) for i in first[:2]] == [("a", 1), ("b", 1)]
    assert first[2] is None
    await obs.put("c", b"44")
    await obs.delete("a")
    live = [await w.updates(timeout=2) for _ in range(2)]
    assert [(i.name, bool(i.deleted)) for i in live] == [("c", False), ("a", True)]
    await w.stop()
    w = await obs.watch(updates_only=True)
    await obs.put("d", b"5")
    assert (await w.updates(timeout=2)).name == "d"
    await w.stop()
    w = await obs.watch(include_history=True, ignore_deletes=True)
    names = []
    while (i := await w.updates(timeout=2)) is not None:
        names.append(i.name)
    assert names == ["b", "c", "d"]  # meta subjects roll up: one (the last) per object
    await w.stop()


async def test_links_to_objects_in_other_buckets(js):  # noqa: F811
    src = await js.create_object_store("src")
    await src.put("target", payload(150 * KIB))
    obs = await js.create_object_store("files")
    link = api.ObjectMeta(
        name="shortcut",
        options=api.ObjectMetaOptions(
            link=api.ObjectLink(bucket="src", name="target"), max_chunk_size=128 * KIB
        ),
    )
    info = await obs.put("shortcut", b"", meta=link)
    assert info.options.link.bucket == "src"
    meta = await obs.get_info("shortcut")
    assert meta.is_link() and meta.options.link.name == "target"
    got = await obs.get("shortcut")  # nats-py follows the link
    assert got.data == payload(150 * KIB)


async def test_meta_update(js):  # noqa: F811
    obs = await js.create_object_store("files")
    await obs.put("doc", b"content", meta=api.ObjectMeta(name="doc", description="v1"))
    meta = api.ObjectMeta(name="doc", description="v2", headers={"X-Kind": ["text"]})
    await obs.update_meta("doc", meta)
    info = await obs.get_info("doc")
    assert info.description == "v2"
    assert info.headers == {"X-Kind": ["text"]}
    assert (await obs.get("doc")).data == b"content"  # the chunks are untouched
    assert (await js.stream_info("OBJ_files")).state.messages == 2


async def test_a_sealed_bucket_takes_no_more_objects(js):  # noqa: F811
    obs = await js.create_object_store("files")
    await obs.put("a", b"1")
    await obs.seal()
    assert (await obs.status()).sealed is True
    with pytest.raises(nats.js.errors.APIError):
        await obs.put("b", b"2")
    assert (await obs.get("a")).data == b"1"


async def test_objects_survive_a_restart(tmp_path):
    from hybridbus.server.server import Server
    from tests.conftest import make_options

    data = payload(300 * KIB)
    for round_ in range(2):
        server = Server(make_options(tmp_path))
        await server.start()
        nc = await nats.connect(f"nats://127.0.0.1:{server.nats_port}")
        try:
            js = nc.jetstream(timeout=2)  # noqa: F811
            if round_ == 0:
                obs = await js.create_object_store("files")
                await obs.put("doc", data)
                await obs.put("gone", b"x")
                await obs.delete("gone")
            else:
                obs = await js.object_store("files")
                got = await obs.get("doc")
                assert got.data == data and got.info.chunks == 3
                assert sorted(i.name for i in await obs.list(ignore_deletes=True)) == ["doc"]
        finally:
            await nc.close()
            await server.shutdown()


async def test_a_large_object_through_flow_control(js):  # noqa: F811
    """4 MiB in 32 chunks: more than the push consumer's flow-control window, so the
    ordered consumer's flow-control requests must be answered along the way."""
    obs = await js.create_object_store("big")
    data = payload(4 * 1024 * KIB)
    info = await obs.put("large", data)
    assert info.chunks == 32
    got = await asyncio.wait_for(obs.get("large"), 5)
    assert got.data == data
