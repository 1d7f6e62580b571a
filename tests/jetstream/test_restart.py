"""JetStream state across restarts of a real ``hybridbus serve`` child process, stopped
with SIGTERM or killed with SIGKILL and started again on the same store directory:
streams, durable pull and push consumers, the dedup window, per-message TTLs, KV
buckets, acknowledged publishes under ``sync_interval: always``, ephemeral consumers.

The in-process restarts (graceful shutdown only) are in test_streams_api, test_acks,
test_kv and test_object_store; the MQTT side in tests/restart and test_mqtt_joins.

With HB_REFERENCE=1 every test runs against nats-server instead
(/tmp/venv/bin/nats-server, or $HB_NATS_SERVER), with the same config file and signals:
what passes there is nats-server's behaviour.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import time

import nats
import pytest
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError, NotFoundError

from tests.conftest import free_port
from tests.jetstream.stream_env import NATS_SERVER

REFERENCE = bool(os.environ.get("HB_REFERENCE"))
SIGNALS = pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "kill9"])
# nats-server 2.15.1 writes a consumer's state lazily: a kill -9 loses its recent acks
# and deliveries (seen: delivered 0/0 after a kill -9 even with sync_interval: always).
# hybridbus writes consumer state with the stream's next write, so a kill -9 keeps it:
# those cases are hybridbus's own and are not generated with HB_REFERENCE=1.
CONSUMER_SIGNALS = pytest.mark.parametrize(
    "sig",
    [signal.SIGTERM] + ([] if REFERENCE else [signal.SIGKILL]),
    ids=["sigterm"] + ([] if REFERENCE else ["kill9"]),
)


class ReferenceProcess:
    """nats-server on the same config file, with ServerProcess's start/stop."""

    def __init__(self, conf: str) -> None:
        self.conf = conf
        self.ports = {"nats": free_port()}
        self.proc: subprocess.Popen | None = None

    def start(self) -> ReferenceProcess:
        self.proc = subprocess.Popen(
            [NATS_SERVER, "-c", self.conf, "-a", "127.0.0.1", "-p", str(self.ports["nats"])],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.ports["nats"]), 0.2).close()
                return self
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("nats-server did not start")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.proc.send_signal(sig)
        return self.proc.wait(10)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


class Node:
    """One server on one store directory: connect, then ``restart(sig)``."""

    def __init__(self, proc) -> None:
        self.proc = proc
        self.clients: list = []

    async def connect(self):
        """A nats-py client (no reconnect: the server goes away under it) and its js."""
        nc = await nats.connect(
            f"nats://127.0.0.1:{self.proc.ports['nats']}", allow_reconnect=False
        )
        self.clients.append(nc)
        return nc, nc.jetstream(timeout=2)

    async def close_clients(self) -> None:
        for nc in self.clients:
            try:
                await nc.close()
            except Exception:
                pass
        self.clients.clear()

    async def restart(self, sig: int) -> None:
        code = self.proc.stop(sig)
        if sig == signal.SIGTERM:
            assert code == 0, getattr(self.proc, "output", lambda: "")()
        await self.close_clients()
        self.proc.start()


@pytest.fixture
async def node_factory(server_process, tmp_path):
    """``await node_factory(sync_always=False)``: a started server (hybridbus serve, or
    nats-server with HB_REFERENCE=1) whose config names the store directory."""
    made: list[Node] = []

    async def make(sync_always: bool = False) -> Node:
        conf = tmp_path / "js.conf"
        sync = "\n  sync_interval: always" if sync_always else ""
        conf.write_text(f'jetstream {{\n  store_dir: "{tmp_path / "store"}"{sync}\n}}\n')
        if REFERENCE:
            proc = ReferenceProcess(str(conf))
        else:
            proc = server_process(config=str(conf))
        node = Node(proc.start())
        made.append(node)
        return node

    yield make
    for node in made:
        await node.close_clients()
        node.proc.kill()


async def raw(nc, subject: str, body: dict | None = None) -> dict:
    msg = await nc.request(subject, json.dumps(body or {}).encode(), timeout=2)
    return json.loads(msg.data)


async def answer(nc, msg, body: bytes) -> None:
    """A NAK or TERM sent as a request, so that it is applied when this returns (as
    nats-py's ack_sync does for an ack)."""
    await nc.request(msg.reply, body, timeout=2)


def consumer_state(info) -> dict:
    """What a consumer's info says of its progress (times left out)."""
    return {
        "delivered": (info.delivered.consumer_seq, info.delivered.stream_seq),
        "ack_floor": (info.ack_floor.consumer_seq, info.ack_floor.stream_seq),
        "num_pending": info.num_pending,
        "num_ack_pending": info.num_ack_pending,
        "num_redelivered": info.num_redelivered,
    }


# --------------------------------------------------------------------------- streams


@SIGNALS
async def test_stream_config_messages_and_deletes_survive(node_factory, sig):
    node = await node_factory()
    nc, js = await node.connect()
    await js.add_stream(
        name="S",
        subjects=["s.>"],
        max_msgs_per_subject=5,
        description="kept",
        metadata={"k": "v"},
        duplicate_window=30,
    )
    for i in range(1, 11):
        assert (await js.publish(f"s.{i % 3}", b"m%d" % i)).seq == i
    await js.purge_stream("S", seq=3)  # seqs 1 and 2 go: first_seq 3
    await js.delete_msg("S", 5)
    await js.delete_msg("S", 8)
    before = await raw(nc, "$JS.API.STREAM.INFO.S", {"deleted_details": True})
    assert before["state"]["deleted"] == [5, 8]
    await node.restart(sig)
    nc, js = await node.connect()
    after = await raw(nc, "$JS.API.STREAM.INFO.S", {"deleted_details": True})
    assert after["config"] == before["config"]
    assert after["created"] == before["created"]
    for key in ("messages", "bytes", "first_seq", "last_seq", "num_deleted", "deleted"):
        assert after["state"][key] == before["state"][key], key
    assert (after["state"]["first_seq"], after["state"]["last_seq"]) == (3, 10)
    got = []
    for seq in range(1, 11):
        try:
            msg = await js.get_msg("S", seq)
            got.append((msg.seq, msg.subject, msg.data))
        except NotFoundError:
            pass
    assert got == [(i, f"s.{i % 3}", b"m%d" % i) for i in (3, 4, 6, 7, 9, 10)]
    assert (await js.publish("s.1", b"m11")).seq == 11  # the sequence goes on


# --------------------------------------------------------------------------- consumers


@CONSUMER_SIGNALS
async def test_durable_pull_consumer_state_and_redeliveries_survive(node_factory, sig):
    """Ten messages; 1-6 delivered, 1 and 2 acked, 4 TERMed, 5 NAKed and redelivered
    (delivery 2), 3 NAKed (not yet redelivered), 6 unacked, 7-10 never delivered. The
    restart keeps every counter; once the ack deadline passes 3, 5 and 6 come again with
    their delivery counts, then 7-10; 4 never."""
    node = await node_factory()
    nc, js = await node.connect()
    await js.add_stream(name="S", subjects=["s.>"])
    for i in range(1, 11):
        await js.publish("s.a", b"m%d" % i)
    await js.add_consumer("S", durable_name="d", ack_policy="explicit", ack_wait=2)
    sub = await js.pull_subscribe_bind("d", "S")
    first = await sub.fetch(6, timeout=1)
    delivered_at = time.monotonic()
    assert [m.data for m in first] == [b"m%d" % i for i in range(1, 7)]
    await first[0].ack_sync()
    await first[1].ack_sync()
    await answer(nc, first[3], b"+TERM")
    await answer(nc, first[4], b"-NAK")
    again = await sub.fetch(1, timeout=1)
    assert [(m.data, m.metadata.num_delivered) for m in again] == [(b"m5", 2)]
    await answer(nc, first[2], b"-NAK")
    before = consumer_state(await js.consumer_info("S", "d"))
    assert before == {
        "delivered": (7, 6),
        "ack_floor": (2, 2),
        "num_pending": 4,
        "num_ack_pending": 3,
        "num_redelivered": 1,
    }
    await node.restart(sig)
    nc, js = await node.connect()
    assert consumer_state(await js.consumer_info("S", "d")) == before
    # Past every ack deadline of the first life (2 s after the first fetch).
    await asyncio.sleep(max(0.0, delivered_at + 2.3 - time.monotonic()))
    sub = await js.pull_subscribe_bind("d", "S")
    got = await sub.fetch(7, timeout=2)
    while len(got) < 7:
        got += await sub.fetch(7 - len(got), timeout=2)
    seen = [(m.data, m.metadata.num_delivered) for m in got]
    # The NAKed m3 first, then the expired m5 and m6 (nats-server sorts these by stream
    # sequence when its first check after a restart finds both due; hybridbus by
    # deadline, as nats-server does while running), then the new ones.
    assert seen[0] == (b"m3", 2)
    assert sorted(seen[1:3]) == [(b"m5", 3), (b"m6", 2)]
    assert seen[3:] == [(b"m%d" % i, 1) for i in range(7, 11)]
    assert [m.metadata.sequence.consumer for m in got] == list(range(8, 15))
    for m in got:
        await m.ack_sync()
    info = await js.consumer_info("S", "d")
    assert (info.num_ack_pending, info.num_pending) == (0, 0)
    assert info.ack_floor.stream_seq == 10  # the TERMed m4 is not waited for


@CONSUMER_SIGNALS
async def test_push_durable_resumes_where_it_stopped(node_factory, sig):
    node = await node_factory()
    nc, js = await node.connect()
    await js.add_stream(name="P", subjects=["p.>"])
    await js.add_consumer(
        "P", durable_name="pd", deliver_subject="deliver.pd", ack_policy="explicit"
    )
    for i in range(1, 4):
        await js.publish("p.a", b"m%d" % i)
    sub = await nc.subscribe("deliver.pd")
    for i in range(1, 4):
        msg = await sub.next_msg(timeout=2)
        assert msg.data == b"m%d" % i
        await msg.ack_sync()
    await sub.unsubscribe()
    for i in range(4, 7):
        await js.publish("p.a", b"m%d" % i)  # nobody listens: they wait in the stream
    await node.restart(sig)
    nc, js = await node.connect()
    info = await js.consumer_info("P", "pd")
    assert info.config.deliver_subject == "deliver.pd"
    assert info.ack_floor.stream_seq == 3 and info.num_pending == 3
    sub = await nc.subscribe("deliver.pd")
    got = []
    for _ in range(3):
        msg = await sub.next_msg(timeout=2)
        got.append((msg.data, msg.metadata.sequence.stream, msg.metadata.num_delivered))
        await msg.ack_sync()
    assert got == [(b"m4", 4, 1), (b"m5", 5, 1), (b"m6", 6, 1)]
    await js.publish("p.a", b"m7")  # and it goes on live
    msg = await sub.next_msg(timeout=2)
    assert (msg.data, msg.metadata.sequence.consumer) == (b"m7", 7)
    await msg.ack_sync()
    with pytest.raises(nats.errors.TimeoutError):
        await sub.next_msg(timeout=0.3)  # m1-m3 were acked before: not again


@CONSUMER_SIGNALS
async def test_ephemeral_consumers_are_gone_durables_stay(node_factory, sig):
    """nats-server 2.15.1 recovers an ephemeral consumer and deletes it once its
    inactive_threshold passes with nobody using it; hybridbus does not keep ephemerals
    at all. Either way, after the restart and the threshold only the durable is left."""
    node = await node_factory()
    nc, js = await node.connect()
    await js.add_stream(name="E", subjects=["e.>"])
    await js.publish("e.a", b"x")
    await js.add_consumer("E", durable_name="dur", ack_policy="explicit")
    pull = await js.add_consumer("E", ack_policy="explicit", inactive_threshold=1.0)
    sub = await js.pull_subscribe_bind(pull.name, "E")
    await (await sub.fetch(1, timeout=1))[0].ack_sync()
    push = await js.subscribe("e.>", inactive_threshold=1.0)
    await push.next_msg(timeout=2)
    push_name = (await push.consumer_info()).name
    names = await raw(nc, "$JS.API.CONSUMER.NAMES.E")
    assert sorted(names["consumers"]) == sorted(["dur", pull.name, push_name])
    await node.restart(sig)
    nc, js = await node.connect()
    deadline = time.monotonic() + 3
    while (await raw(nc, "$JS.API.CONSUMER.NAMES.E"))["consumers"] != ["dur"]:
        assert time.monotonic() < deadline, "the ephemeral consumers are still there"
        await asyncio.sleep(0.1)
    for name in (pull.name, push_name):
        with pytest.raises(NotFoundError):
            await js.consumer_info("E", name)
    assert (await js.consumer_info("E", "dur")).num_pending == 1
    assert (await js.stream_info("E")).state.consumer_count == 1


# --------------------------------------------------------------------------- dedup, TTL


@SIGNALS
async def test_dedup_window_remembers_msg_ids_across_the_restart(node_factory, sig):
    node = await node_factory()
    nc, js = await node.connect()
    await js.add_stream(name="D", subjects=["d.>"], duplicate_window=60)
    first = await js.publish("d.a", b"one", headers={"Nats-Msg-Id": "id-1"})
    await js.publish("d.a", b"two", headers={"Nats-Msg-Id": "id-2"})
    assert (first.seq, first.duplicate) == (1, None)
    await node.restart(sig)
    nc, js = await node.connect()
    again = await js.publish("d.a", b"one again", headers={"Nats-Msg-Id": "id-1"})
    assert (again.seq, again.duplicate) == (1, True)
    new = await js.publish("d.a", b"three", headers={"Nats-Msg-Id": "id-3"})
    assert (new.seq, new.duplicate) == (3, None)
    info = await js.stream_info("D")
    assert (info.state.messages, info.state.last_seq) == (3, 3)
    assert (await js.get_msg("D", 1)).data == b"one"


@SIGNALS
async def test_message_ttl_still_expires_after_the_restart(node_factory, sig):
    """A message with a 3 s TTL is there before the restart and goes 3 s after it was
    stored (not earlier, not never); a message without a TTL stays."""
    node = await node_factory()
    nc, js = await node.connect()
    await js.add_stream(name="T", subjects=["t.>"], allow_msg_ttl=True)
    stored_at = time.monotonic()
    await js.publish("t.short", b"short", headers={"Nats-TTL": "3s"})
    await js.publish("t.keep", b"keep")
    assert (await js.get_msg("T", 1)).data == b"short"
    await node.restart(sig)
    nc, js = await node.connect()
    deadline = stored_at + 6
    while True:
        try:
            await js.get_msg("T", 1)
        except NotFoundError:
            break
        assert time.monotonic() < deadline, "the TTL message did not expire"
        await asyncio.sleep(0.1)
    assert time.monotonic() - stored_at > 2.9, "expired before its TTL"
    info = await js.stream_info("T")
    assert (info.state.messages, info.state.first_seq) == (1, 2)
    assert (await js.get_msg("T", 2)).data == b"keep"


# --------------------------------------------------------------------------- KV


@SIGNALS
async def test_kv_values_history_and_revisions_survive(node_factory, sig):
    node = await node_factory()
    nc, js = await node.connect()
    kv = await js.create_key_value(bucket="cfg", history=3)
    for i in range(4):
        await kv.put("dev.k1", b"v%d" % i)  # revisions 1-4, history keeps 2-4
    await kv.put("dev.k2", b"x")  # 5
    await kv.put("dev.gone", b"y")  # 6
    await kv.delete("dev.gone")  # 7
    await node.restart(sig)
    nc, js = await node.connect()
    kv = await js.key_value("cfg")
    entry = await kv.get("dev.k1")
    assert (entry.value, entry.revision) == (b"v3", 4)
    assert [(h.value, h.revision) for h in await kv.history("dev.k1")] == [
        (b"v1", 2),
        (b"v2", 3),
        (b"v3", 4),
    ]
    assert (await kv.get("dev.k2")).revision == 5
    with pytest.raises(KeyNotFoundError):
        await kv.get("dev.gone")
    assert sorted(await kv.keys()) == ["dev.k1", "dev.k2"]
    status = await kv.status()
    assert (status.history, status.values) == (3, 6)  # the delete marker counts
    with pytest.raises(KeyWrongLastSequenceError):
        await kv.update("dev.k1", b"stale", last=3)
    assert await kv.update("dev.k1", b"v4", last=4) == 8
    assert await kv.create("dev.gone", b"back") == 9


# --------------------------------------------------------------------------- kill -9


@SIGNALS
async def test_every_acknowledged_publish_is_there_with_sync_always(node_factory, sig):
    """`sync_interval: always`: 2,000 js.publish, 50 in flight at a time; the server
    dies right after the last PubAck; every acknowledged sequence is in the stream. (A
    killed process cannot tell an fsync from a write: what this checks is that no
    PubAck goes out before its message is written; the fsync is the store's tests'.)"""
    node = await node_factory()
    nc, js = await node.connect()
    await js.add_stream(name="K", subjects=["k.>"])
    acked: list[int] = []
    for start in range(0, 2000, 50):
        acks = await asyncio.gather(
            *(js.publish("k.a", b"%d" % i) for i in range(start, start + 50))
        )
        acked += [a.seq for a in acks]
    node.proc.stop(sig)
    assert sorted(acked) == list(range(1, 2001))
    await node.close_clients()
    node.proc.start()
    nc, js = await node.connect()
    info = await js.stream_info("K")
    state = info.state
    assert (state.messages, state.first_seq, state.last_seq) == (2000, 1, 2000)
    assert not state.num_deleted
    await js.add_consumer("K", durable_name="check", ack_policy="none")
    sub = await js.pull_subscribe_bind("check", "K")
    payloads = set()
    while len(payloads) < 2000:
        for m in await sub.fetch(500, timeout=2):
            payloads.add(m.data)
    assert payloads == {b"%d" % i for i in range(2000)}
