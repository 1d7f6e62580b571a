"""Per-message TTL (the Nats-TTL header on allow_msg_ttl streams), over both stores."""

from __future__ import annotations

import asyncio
import time

import pytest

from hybridbus.store import StreamConfig
from hybridbus.store.ttl import NEVER, parse_ttl, ttl_of


def cfg(name="T", **kw) -> StreamConfig:
    return StreamConfig(name=name, subjects=["t.>"], allow_msg_ttl=True, **kw)


def ttl(value: str) -> dict:
    return {"Nats-TTL": value}


@pytest.mark.parametrize(
    "value, secs",
    [
        ("1", 1),
        ("60", 60),
        ("2s", 2),
        ("1m", 60),
        ("1m30s", 90),
        ("1.9s", 1),  # whole seconds, as nats-server
        ("1h", 3600),
        ("never", NEVER),
        ("Never", NEVER),
        (" 5 ", 5),
    ],
)
def test_parse_ttl_accepts_what_nats_server_accepts(value, secs):
    assert parse_ttl(value) == secs


@pytest.mark.parametrize("value", ["0", "-1", "500ms", "0s", "soon", "", "1x", "1.5", "-5s"])
def test_parse_ttl_refuses_what_nats_server_refuses(value):
    # nats-server 2.15.1 answers 10165 "invalid per-message TTL" for each of these
    assert parse_ttl(value) is None


def test_ttl_of_reads_the_stored_header_block():
    assert ttl_of(b"NATS/1.0\r\nX: y\r\nNats-TTL: 3s\r\n\r\n") == 3
    assert ttl_of(b"NATS/1.0\r\nNats-TTL: never\r\n\r\n") == NEVER
    assert ttl_of(b"NATS/1.0\r\nX-Nats-TTL: 3\r\n\r\n") is None  # another header
    assert ttl_of(b"NATS/1.0\r\n\r\n") is None


async def test_a_message_with_a_ttl_expires_and_others_stay(store):
    st = store.add_stream(cfg())
    st.append("t.a", b"short", ttl("1"))
    st.append("t.b", b"plain")
    st.append("t.c", b"long", ttl("60"))
    assert st.state().messages == 3
    deadline = time.monotonic() + 3
    while st.state().messages == 3 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert st.state().messages == 2
    assert [m.subject for m in st.iter()] == ["t.b", "t.c"]
    assert st.state().first_seq == 2


async def test_ttl_header_is_ignored_without_allow_msg_ttl(store):
    st = store.add_stream(StreamConfig(name="N", subjects=["n.>"]))
    st.append("n.a", b"x", ttl("1"))
    await asyncio.sleep(1.3)
    assert st.state().messages == 1


async def test_never_outlives_max_age_and_later_messages_still_age_out(store):
    st = store.add_stream(cfg(max_age=0.5))
    st.append("t.a", b"keep", ttl("never"))
    st.append("t.b", b"old")
    await asyncio.sleep(0.2)
    st.append("t.c", b"young", ttl("never"))
    st.append("t.d", b"young-old")
    deadline = time.monotonic() + 3
    while st.state().messages > 2 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert [m.payload for m in st.iter()] == [b"keep", b"young"]
    # nothing left for max_age: the timer stops instead of spinning
    await asyncio.sleep(0.6)
    assert st.state().messages == 2
    assert st._expiry_handle is None


async def test_a_message_removed_early_is_skipped_when_its_ttl_comes(store):
    st = store.add_stream(cfg())
    seq = st.append("t.a", b"x", ttl("1"))
    st.append("t.b", b"y")
    st.delete(seq)
    await asyncio.sleep(1.2)
    assert [m.payload for m in st.iter()] == [b"y"]


async def test_ttls_survive_a_restart(reopen):
    s1 = reopen()
    st = s1.add_stream(cfg(max_age=60.0))
    st.append("t.a", b"goes", ttl("1"))
    st.append("t.b", b"stays", ttl("never"))
    st.append("t.c", b"plain")
    s2 = reopen()  # closes s1 first
    st2 = s2.stream("T")
    assert st2.state().messages == 3
    assert st2._ttl_never == {2}
    deadline = time.monotonic() + 3
    while st2.state().messages == 3 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert [m.payload for m in st2.iter()] == [b"stays", b"plain"]


async def test_expired_during_downtime_goes_at_start(reopen):
    s1 = reopen()
    st = s1.add_stream(cfg())
    st.append("t.a", b"goes", ttl("1"))
    st.append("t.b", b"stays")
    s1.close_sync()
    await asyncio.sleep(1.1)
    s2 = reopen()
    assert [m.payload for m in s2.stream("T").iter()] == [b"stays"]


def test_without_a_loop_state_expires_what_is_due(make_store):
    store = make_store()
    st = store.add_stream(cfg())
    st.append("t.a", b"x", ttl("1"))
    assert st.state().messages == 1
    time.sleep(1.05)
    assert st.state().messages == 0


def test_go_duration_matches_go():
    from hybridbus.store.ttl import go_duration

    assert [go_duration(s * 1_000_000_000) for s in (1, 2, 59, 60, 90, 3600, 3661)] == [
        "1s",
        "2s",
        "59s",
        "1m0s",
        "1m30s",
        "1h0m0s",
        "1h1m1s",
    ]
    assert go_duration(1_500_000_000) == "1.5s"


async def test_a_subject_aged_out_leaves_a_marker_that_expires(store):
    st = store.add_stream(cfg(max_age=0.3, subject_delete_marker_ttl=1.0))
    st.append("t.a", b"1")
    st.append("t.a", b"2")
    st.append("t.b", b"x", ttl("never"))  # stays: no marker for it
    deadline = time.monotonic() + 3
    while st.state().last_seq < 4 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    msgs = list(st.iter())
    assert [(m.seq, m.subject) for m in msgs] == [(3, "t.b"), (4, "t.a")]
    marker = msgs[1]
    assert marker.payload == b""
    assert marker.headers == (
        b"NATS/1.0\r\nNats-Marker-Reason: MaxAge\r\nNats-TTL: 1s\r\nNats-Rollup: sub\r\n\r\n"
    )
    # the marker goes by its own TTL and leaves no marker behind
    deadline = time.monotonic() + 3
    while st.state().messages > 1 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)
    assert [m.subject for m in st.iter()] == ["t.b"]
    assert st.state().last_seq == 4


async def test_a_per_message_ttl_leaves_a_marker_too(store):
    st = store.add_stream(cfg(subject_delete_marker_ttl=5.0))
    st.append("t.a", b"1", ttl("1"))
    st.append("t.b", b"2")
    deadline = time.monotonic() + 3
    while st.state().last_seq < 3 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    last = st.last("t.a")
    assert (last.seq, last.payload) == (3, b"")
    assert b"Nats-Marker-Reason: MaxAge" in last.headers
    assert b"Nats-TTL: 5s" in last.headers


async def test_no_marker_while_the_subject_has_newer_messages(store):
    st = store.add_stream(cfg(subject_delete_marker_ttl=5.0))
    st.append("t.a", b"old", ttl("1"))
    st.append("t.a", b"new")
    await asyncio.sleep(1.3)
    assert [m.payload for m in st.iter()] == [b"new"]
