"""The server when its store cannot write: a real `hybridbus serve` process whose file
size limit (RLIMIT_FSIZE) makes the kernel refuse writes past 256 KiB, as a full disk
would. Acknowledged messages stay acknowledged; QoS 0 keeps flowing; /healthz says so."""

from __future__ import annotations

import json
import resource
import signal
import urllib.request

from tests.conftest import ServerProcess, free_port
from tests.helpers import mqtt_packets as mp
from tests.helpers.wire import Wire, mqtt_connect

LIMIT = 256 * 1024


def _limit_file_size() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of death
    resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, LIMIT))


def healthz(port: int) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def _serve_args(tmp_path) -> tuple[list[str], dict[str, int]]:
    ports = {"nats": free_port(), "mqtt": free_port(), "http": free_port()}
    args = ["serve", "-a", "127.0.0.1", "-p", str(ports["nats"]), "--mqtt-port", str(ports["mqtt"])]
    args += ["--http-port", str(ports["http"]), "--store-dir", str(tmp_path / "store")]
    return args, ports


async def _offline_subscriber(port: int) -> None:
    """A persistent session subscribed to `big` at QoS 1, then gone: every message
    published there must be stored for it."""
    dev = await mqtt_connect(port, "dev", clean=False)
    await dev.send(mp.subscribe(1, ("big", 1)))
    await dev.expect(mp.suback(1, 1))
    await dev.send(mp.DISCONNECT)
    await dev.expect_closed()


async def test_full_store_refuses_acks_but_keeps_serving_qos0(tmp_path):
    args, ports = _serve_args(tmp_path)
    proc = ServerProcess(args, tmp_path, ports, preexec_fn=_limit_file_size).start()
    try:
        port = ports["mqtt"]
        await _offline_subscriber(port)
        pub = await mqtt_connect(port, "pub")
        payload = b"x" * 8192
        acked = 0
        closed = False
        for i in range(1, 200):
            try:
                await pub.send(mp.publish("big", payload, qos=1, mid=i))
                await pub.expect(mp.puback(i), timeout=3)
                acked += 1
            except (AssertionError, EOFError, ConnectionError):
                closed = True
                break
        # 3.1.1 has no negative PUBACK: the publisher is disconnected, not acknowledged
        assert closed and 0 < acked < 199
        assert "write failed" in proc.output()
        status, body = healthz(ports["http"])
        assert status != 200 and body["status"] != "ok"
        # QoS 0 between online clients keeps working
        sub = await mqtt_connect(port, "live")
        await sub.send(mp.subscribe(1, ("q0", 0)))
        await sub.expect(mp.suback(1, 0))
        pub0 = await mqtt_connect(port, "pub0")
        await pub0.send(mp.publish("q0", b"still flowing"))
        await sub.expect(mp.publish("q0", b"still flowing"))
        nats = await Wire.open(ports["nats"])
        await nats.expect_re(rb"INFO .*? \r\n")
        await nats.send(b"PING\r\n")
        await nats.expect(b"PONG\r\n")
        for w in (sub, pub0, nats):
            await w.close()
        assert proc.stop() == 0
        # every acknowledged message is there after a restart (with no file limit now)
        proc = ServerProcess(args, tmp_path, ports).start()
        dev = await mqtt_connect(port, "dev", clean=False, expect_present=1)
        frame = len(mp.publish("big", payload, qos=1, dup=True, mid=1))
        received = b""
        while len(received) < acked * frame:
            received += (await dev.expect_re(rb".+", timeout=5)).group(0)
        got = received.count(payload)
        assert got >= acked
        await dev.close()
    finally:
        proc.kill()


async def test_full_store_fails_a_whole_run_for_a_v5_publisher(tmp_path):
    # PUBLISHes that arrive in one read share one durability ticket: when the store
    # cannot write, every one of them gets 0x80, and every 0x00 one survives a restart.
    from tests.helpers.wire import mqtt5_connect, mqtt_packets

    args, ports = _serve_args(tmp_path)
    proc = ServerProcess(args, tmp_path, ports, preexec_fn=_limit_file_size).start()
    try:
        port = ports["mqtt"]
        await _offline_subscriber(port)
        pub, _ = await mqtt5_connect(port, "pub")
        payload = b"y" * 4096
        ok: list[int] = []
        failed: list[int] = []
        mid = 0
        for _ in range(40):
            mids = list(range(mid + 1, mid + 11))
            mid += 10
            await pub.send(
                b"".join(mp.publish("big", payload, qos=1, mid=m, level=5) for m in mids)
            )
            acks = await mqtt_packets(pub, 10, timeout=5)
            assert [a.packet_id for a in acks] == mids  # in order, one each
            for a in acks:
                (ok if a.reason_code == 0 else failed).append(a.packet_id)
            if failed:
                break
        assert ok and failed and len(ok) % 10 == 0  # whole runs succeed or fail together
        assert set(failed) >= set(range(len(ok) + 1, len(ok) + 11))
        await pub.close()
        assert proc.stop() == 0
        proc = ServerProcess(args, tmp_path, ports).start()
        dev = await mqtt_connect(port, "dev", clean=False, expect_present=1)
        frame = len(mp.publish("big", payload, qos=1, dup=True, mid=1))
        received = b""
        while len(received) < len(ok) * frame:
            received += (await dev.expect_re(rb".+", timeout=5)).group(0)
        assert received.count(payload) >= len(ok)
        await dev.close()
    finally:
        proc.kill()
