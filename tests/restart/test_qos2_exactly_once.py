"""QoS 2 exactly-once across kill -9 of the server, in both directions at once.

A publisher sends N distinct payloads at QoS 2 to `q2/t` (window W, lowest free
packet id first, so ids are reused as soon as PUBCOMP frees them) and a subscriber
takes them at QoS 2; both hold persistent sessions and keep their QoS 2 state in
memory across reconnects, as a real client does. During the flow the server
(`jetstream { sync_interval: always }`) is SIGKILLed K times at random moments, some
on a timer, some right after a chosen step of a QoS 2 exchange (the publisher got
PUBREC or PUBCOMP; the subscriber sent PUBREC or PUBCOMP), and started again on the
same store and ports; both clients reconnect (session present = 1) and resume
[MQTT-4.4.0-1]. After the flow, one more kill, then W probe messages that reuse
ids 1..W: a stale inbound dedup record would swallow one.

Checked: every payload is delivered once and only once (none lost, none twice),
each one the publisher got PUBCOMP for among them; the server never re-sends a
PUBLISH after it sent PUBREL for it (§4.3.3); nothing is outstanding at the end.

The seed is in every failure message: `pytest -k "<level>-seed<seed>"` (or the seed
put in SEEDS) replays the same kill plan; the moments are counted in the run's own
events, so a replay is close, not bit for bit.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import struct
from dataclasses import dataclass, field

import pytest

from tests.helpers import mqtt_packets as mp

TOPIC = "q2/t"
N = 300  # messages in the flow
W = 20  # publisher's window of unacknowledged QoS 2 messages
SESSION_EXPIRY = 300  # 5.0 Session Expiry Interval, seconds
FLOW_TIMEOUT = 20.0  # the whole flow, kills included
CONNECT_TIMEOUT = 10.0  # both clients back after a restart

PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 3, 4, 5, 6, 7
CONNACK, SUBACK = 2, 9
NAMES = {PUBLISH: "PUBLISH", PUBREC: "PUBREC", PUBREL: "PUBREL", PUBCOMP: "PUBCOMP"}

# -- a small decoder, apart from the server's codec -------------------------------------


@dataclass
class Packet:
    kind: int
    flags: int
    packet_id: int = 0
    topic: str = ""
    payload: bytes = b""
    reason: int = 0
    session_present: int = 0

    @property
    def dup(self) -> bool:
        return bool(self.flags & 0x08)

    @property
    def qos(self) -> int:
        return (self.flags >> 1) & 3


def _varint(data: bytes, i: int) -> tuple[int, int] | None:
    value = shift = 0
    while True:
        if i >= len(data):
            return None
        byte = data[i]
        i += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, i
        shift += 7
        if shift > 21:
            raise ValueError("malformed remaining length")


def decode(buf: bytes, level: int) -> tuple[list[Packet], bytes]:
    """The whole packets at the head of `buf`, and what is left."""
    out = []
    while buf:
        head = _varint(buf, 1)
        if head is None:
            break
        length, start = head
        if len(buf) < start + length:
            break
        b0, body, buf = buf[0], buf[start : start + length], buf[start + length :]
        kind, flags = b0 >> 4, b0 & 0x0F
        p = Packet(kind, flags)
        if kind == CONNACK:
            p.session_present, p.reason = body[0] & 1, body[1]
        elif kind == PUBLISH:
            (n,) = struct.unpack_from("!H", body)
            p.topic = body[2 : 2 + n].decode()
            i = 2 + n
            if p.qos:
                (p.packet_id,) = struct.unpack_from("!H", body, i)
                i += 2
            if level == 5:
                plen, i = _varint(body, i)
                i += plen
            p.payload = body[i:]
        elif kind in (PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK):
            (p.packet_id,) = struct.unpack_from("!H", body)
            if kind == SUBACK:
                rest = body[2:]
                if level == 5:
                    plen, j = _varint(rest, 0)
                    rest = rest[j + plen :]
                p.reason = rest[0]
            elif len(body) > 2:
                p.reason = body[2]
        out.append(p)
    return out, buf


def connect_packet(client_id: str, level: int) -> bytes:
    if level == 5:
        expiry = b"\x11" + struct.pack("!I", SESSION_EXPIRY)
        return mp.connect(client_id, clean=False, level=5, properties=expiry)
    return mp.connect(client_id, clean=False)


# -- the run: server restarts, kill triggers, what went wrong ---------------------------


@dataclass
class Run:
    seed: int
    level: int
    server_process: object
    config: str
    proc: object = None
    generation: int = 0
    up: asyncio.Event = field(default_factory=asyncio.Event)
    kills: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    # the armed trigger: (event name, events left before the kill, delay after it)
    trigger: list | None = None
    killed: asyncio.Event = field(default_factory=asyncio.Event)
    settled: int = 1 << 30  # the last generation before the flow had finished and settled

    def violation(self, text: str, generation: int = 0) -> None:
        self.violations.append(f"[gen {generation or self.generation}] {text}")

    def event(self, name: str) -> None:
        """A client reached a step of a QoS 2 exchange: kill if a trigger waits on it."""
        trigger = self.trigger
        if trigger is None or trigger[0] != name:
            return
        trigger[1] -= 1
        if trigger[1] > 0:
            return
        self.trigger = None
        what = f"after {name} (+{trigger[2] * 1000:.1f} ms)"
        if trigger[2]:
            loop = asyncio.get_running_loop()
            loop.call_later(trigger[2], self.kill_now, what, self.generation)
        else:
            self.kill_now(what)

    def kill_now(self, what: str, generation: int = 0) -> None:
        """SIGKILL at once, from inside a client's packet handling if need be (a
        delayed kill names the server generation it was meant for)."""
        if not self.up.is_set() or generation not in (0, self.generation):
            return
        self.up.clear()
        os.kill(self.proc.proc.pid, signal.SIGKILL)
        self.kills.append(what)
        self.killed.set()

    async def start(self) -> None:
        ports = self.proc.ports if self.proc else None
        proc = self.server_process(config=self.config, ports=ports)
        self.proc = await asyncio.to_thread(proc.start)
        self.generation += 1
        self.up.set()

    async def restart(self) -> None:
        await asyncio.to_thread(self.proc.stop, signal.SIGKILL)
        self.killed.clear()
        await self.start()


class Client:
    """Connection handling shared by both ends: connect whenever the server is up,
    keep the QoS 2 state in memory, hand each packet to `handle`."""

    def __init__(self, run: Run, client_id: str) -> None:
        self.run = run
        self.client_id = client_id
        self.level = run.level
        self.writer: asyncio.StreamWriter | None = None
        self.gen = 0  # the server generation of the current connection
        self.connects = 0
        self.task: asyncio.Task | None = None
        self.pending = b""  # bytes read with the CONNACK, beyond it

    def send(self, data: bytes) -> None:
        writer = self.writer
        if writer is not None and not writer.is_closing():
            writer.write(data)

    def ready(self) -> bool:
        return self.writer is not None and self.gen == self.run.generation

    async def _connect(self) -> asyncio.StreamReader | None:
        run = self.run
        await run.up.wait()
        gen = run.generation
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", run.proc.ports["mqtt"])
        except OSError:
            await asyncio.sleep(0.05)
            return None
        try:
            writer.write(connect_packet(self.client_id, self.level))
            buf = b""
            while True:
                chunk = await asyncio.wait_for(reader.read(65536), 5)
                if not chunk:
                    raise EOFError
                buf += chunk
                packets, rest = decode(buf, self.level)
                if packets:
                    break
        except (OSError, EOFError, TimeoutError):
            writer.close()
            await asyncio.sleep(0.05)
            return None
        connack, more = packets[0], packets[1:]
        expect = 1 if self.connects else 0
        if connack.kind != CONNACK or connack.reason:
            run.violation(f"{self.client_id}: CONNACK refused: {connack}")
            writer.close()
            await asyncio.sleep(0.2)
            return None
        if connack.session_present != expect:
            run.violation(
                f"{self.client_id}: session present {connack.session_present}, expected {expect}"
            )
        self.connects += 1
        self.writer, self.gen = writer, gen
        self.resume()
        for p in more:
            self.handle(p)
        self.pending = rest
        return reader

    async def _serve(self) -> None:
        while True:
            reader = await self._connect()
            if reader is None:
                continue
            buf = self.pending
            try:
                while True:
                    chunk = await reader.read(65536)
                    if not chunk:
                        break
                    packets, buf = decode(buf + chunk, self.level)
                    for p in packets:
                        self.handle(p)
            except OSError:
                pass
            except Exception as e:  # a malformed packet: noted, and the test times out
                self.run.violation(f"{self.client_id}: {e!r}", self.gen)
                raise
            writer, self.writer = self.writer, None
            writer.close()

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._serve())

    async def stop(self) -> None:
        self.task.cancel()
        try:
            await self.task
        except asyncio.CancelledError:
            pass
        if self.writer is not None:
            self.writer.write(mp.DISCONNECT)
            self.writer.close()
            self.writer = None

    def resume(self) -> None:
        raise NotImplementedError

    def handle(self, p: Packet) -> None:
        raise NotImplementedError


class Publisher(Client):
    def __init__(self, run: Run, client_id: str) -> None:
        super().__init__(run, client_id)
        self.payloads: list[bytes] = []
        self.next_index = 0
        # packet id -> [payload, released]; in the order the PUBLISHes were first sent
        self.inflight: dict[int, list] = {}
        self.completed: list[bytes] = []
        self.stray: list[str] = []  # acks for ids not in flight (legitimate after a crash)
        self.trace: dict[bytes, list[str]] = {}  # payload -> its packets, in which generation

    def note(self, payload: bytes, what: str) -> None:
        self.trace.setdefault(payload, []).append(f"g{self.gen} {what}")

    def add(self, payloads: list[bytes]) -> None:
        self.payloads += payloads
        self.pump()

    def done(self) -> bool:
        return self.next_index == len(self.payloads) and not self.inflight

    def _publish(self, pid: int, payload: bytes, dup: bool) -> bytes:
        return mp.publish(TOPIC, payload, qos=2, dup=dup, mid=pid, level=self.level)

    def resume(self) -> None:
        # [MQTT-4.4.0-1]: PUBREL for what got PUBREC, PUBLISH DUP=1 for the rest, in
        # the original order; then new messages.
        out = b""
        for pid, (payload, released) in self.inflight.items():
            out += mp.pubrel(pid) if released else self._publish(pid, payload, True)
            self.note(payload, f"PUBREL {pid}" if released else f"PUBLISH(dup) {pid}")
        self.send(out)
        self.pump()

    def pump(self) -> None:
        if not self.ready():
            return
        out = b""
        while len(self.inflight) < W and self.next_index < len(self.payloads):
            pid = next(i for i in range(1, 65536) if i not in self.inflight)
            payload = self.payloads[self.next_index]
            self.next_index += 1
            self.inflight[pid] = [payload, False]
            self.note(payload, f"PUBLISH {pid}")
            out += self._publish(pid, payload, False)
        if out:
            self.send(out)

    def handle(self, p: Packet) -> None:
        run = self.run
        entry = self.inflight.get(p.packet_id)
        if p.kind == PUBREC:
            if entry is None:
                self.stray.append(f"PUBREC {p.packet_id}")
                return
            if p.reason >= 0x80:
                run.violation(f"publisher: PUBREC {p.packet_id} failed 0x{p.reason:02x}")
                del self.inflight[p.packet_id]
                return
            entry[1] = True
            self.note(entry[0], "got PUBREC, PUBREL")
            self.send(mp.pubrel(p.packet_id))
            run.event("pub got PUBREC")
        elif p.kind == PUBCOMP:
            if entry is None or not entry[1]:
                self.stray.append(f"PUBCOMP {p.packet_id} (0x{p.reason:02x})")
                return
            del self.inflight[p.packet_id]
            self.note(entry[0], "got PUBCOMP")
            self.completed.append(entry[0])
            run.event("pub got PUBCOMP")
            self.pump()
        else:
            run.violation(f"publisher: unexpected packet {p}")


class Subscriber(Client):
    def __init__(self, run: Run, client_id: str) -> None:
        super().__init__(run, client_id)
        self.subscribed = asyncio.Event()
        self.delivered: list[bytes] = []  # the application's log
        self.awaiting: dict[int, bytes] = {}  # QoS 2 ids received, awaiting PUBREL
        self.released: dict[int, bytes] = {}  # id -> payload of its last PUBREL
        self.stray: list[str] = []
        self.trace: dict[int, list[str]] = {}  # id -> what came for it, in which generation
        self.last_packet = 0.0

    def resume(self) -> None:
        if self.connects == 1:
            self.send(mp.subscribe(1, (TOPIC, 2), level=self.level))

    def handle(self, p: Packet) -> None:
        run = self.run
        pid = p.packet_id
        self.last_packet = asyncio.get_running_loop().time()
        if p.kind == SUBACK:
            if p.reason != 2:
                run.violation(f"subscriber: SUBACK 0x{p.reason:02x}")
            self.subscribed.set()
            return
        name = NAMES.get(p.kind, str(p.kind)) + ("(dup)" if p.dup else "")
        self.trace.setdefault(pid, []).append(f"g{self.gen} {name} {p.payload.decode()}".rstrip())
        if p.kind == PUBLISH:
            if p.qos != 2 or p.topic != TOPIC:
                run.violation(f"subscriber: unexpected {p}")
                return
            if self.released.get(pid) == p.payload:
                run.violation(
                    f"re-sent PUBLISH after PUBREL: id {pid} {p.payload!r} dup={int(p.dup)}",
                    self.gen,
                )
            if pid in self.awaiting:
                if self.awaiting[pid] != p.payload:
                    run.violation(
                        f"id {pid} reused while awaiting release: "
                        f"{self.awaiting[pid]!r} then {p.payload!r}: {self.trace[pid]}",
                        self.gen,
                    )
                elif not p.dup:
                    run.violation(
                        # not a re-send, which carries DUP=1 [MQTT-3.3.1-1]: the server
                        # forgot the flow and routed the message again, to the same id
                        f"PUBLISH {pid} {p.payload!r} again with DUP=0 (routed twice?): "
                        f"{self.trace[pid]}",
                        self.gen,
                    )
            else:
                self.awaiting[pid] = p.payload
                self.delivered.append(p.payload)
            self.send(mp.pubrec(pid))
            run.event("sub sent PUBREC")
        elif p.kind == PUBREL:
            payload = self.awaiting.pop(pid, None)
            if payload is None:
                self.stray.append(f"PUBREL {pid} (0x{p.reason:02x})")
                if self.gen > run.settled:
                    run.violation(f"PUBREL {pid} still owed after the flow had settled", self.gen)
            else:
                self.released[pid] = payload
            self.send(mp.pubcomp(pid))
            run.event("sub sent PUBCOMP")
        else:
            run.violation(f"subscriber: unexpected packet {p}")


# -- the test --------------------------------------------------------------------------

EVENTS = ("pub got PUBREC", "pub got PUBCOMP", "sub sent PUBREC", "sub sent PUBCOMP")


def kill_plan(rng: random.Random) -> list[tuple]:
    """K kills: (mode, arg, delay). A timer kill comes `arg` seconds after both clients
    are back; an event kill comes `delay` after the `arg`-th such event (most often at
    once: the windows that matter close when the server's next write is durable)."""
    plan = []
    for _ in range(rng.randint(3, 5)):
        mode = rng.choice(("timer", *EVENTS, *EVENTS))
        if mode == "timer":
            plan.append((mode, rng.uniform(0.0, 0.25), 0.0))
        else:
            delay = 0.0 if rng.random() < 0.7 else rng.uniform(0.0, 0.002)
            plan.append((mode, rng.randint(1, 30), delay))
    return plan


async def wait_for(predicate, timeout: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise TimeoutError(what)
        await asyncio.sleep(0.01)


def quiet(pub: Publisher, sub: Subscriber, expected: int, idle: float = 2.0):
    """The flow is over: the publisher has PUBCOMP for everything, and the subscriber
    has it all released, or has heard nothing for `idle` seconds (what is missing then
    is lost, what awaits PUBREL is stuck)."""

    def check() -> bool:
        if not pub.done():
            return False
        if len(sub.delivered) >= expected and not sub.awaiting:
            return True
        return asyncio.get_running_loop().time() - sub.last_packet > idle

    return check


SEEDS = [5, 20, 29]  # among them every kind of kill; see kill_plan


@pytest.mark.timeout(90)
@pytest.mark.parametrize("seed", SEEDS, ids=[f"seed{s}" for s in SEEDS])
@pytest.mark.parametrize("level", [4, 5], ids=["mqtt311", "mqtt5"])
async def test_qos2_exactly_once_across_kill9(server_process, tmp_path, level, seed):
    conf = tmp_path / "server.conf"
    conf.write_text("jetstream {\n  sync_interval: always\n}\n")
    rng = random.Random(seed)
    plan = kill_plan(rng)
    run = Run(seed, level, server_process, str(conf))
    sub = Subscriber(run, "q2-sub")
    pub = Publisher(run, "q2-pub")
    loop = asyncio.get_running_loop()
    started = loop.time()
    note = ""

    def both_ready() -> bool:
        return sub.ready() and pub.ready()

    def left() -> float:
        return max(FLOW_TIMEOUT - (loop.time() - started), 0.5)

    try:
        await run.start()
        sub.start()
        await asyncio.wait_for(sub.subscribed.wait(), CONNECT_TIMEOUT)
        pub.start()
        await wait_for(pub.ready, CONNECT_TIMEOUT, "the publisher to connect")
        pub.add([b"m%d" % i for i in range(N)])
        for mode, arg, delay in plan:
            if pub.done():
                # done before this kill: kill all the same, to test what was written
                run.kill_now(f"{mode} (flow already done)")
            elif mode == "timer":
                await asyncio.sleep(arg)
                run.kill_now(f"timer {arg * 1000:.0f} ms")
            else:
                run.trigger = [mode, arg, delay]
                await wait_for(lambda: run.killed.is_set() or pub.done(), left(), "a kill")
                run.trigger = None
                run.kill_now(f"{mode} #{arg} (never came)")
            await run.restart()
            await wait_for(both_ready, CONNECT_TIMEOUT, "both clients to reconnect")
        await wait_for(quiet(pub, sub, N), left(), "the flow to finish")
        # Settle, kill once more, and reuse ids 1..W: nothing may be owed any more, and
        # no inbound dedup record may be left to swallow a new message.
        await asyncio.sleep(0.3)
        run.settled = run.generation
        run.kill_now("after the flow")
        await run.restart()
        await wait_for(both_ready, CONNECT_TIMEOUT, "both clients to reconnect")
        pub.add([b"z%d" % i for i in range(W)])
        await wait_for(quiet(pub, sub, N + W), 5.0, "the probes to finish")
        await asyncio.sleep(0.3)
    except TimeoutError as e:
        note = f"timed out waiting for {e}"
    finally:
        await sub.stop()
        await pub.stop()
    elapsed = loop.time() - started

    counts: dict[bytes, int] = {}
    for payload in sub.delivered:
        counts[payload] = counts.get(payload, 0) + 1
    duplicates = [p for p, c in counts.items() if c > 1]
    lost = [p for p in pub.payloads if p not in counts]
    lost_completed = [p for p in pub.completed if p not in counts]
    published = set(pub.payloads)
    unknown = [p for p in counts if p not in published]
    failures = [
        (note, note),
        (lost, f"lost {len(lost)} ({len(lost_completed)} with PUBCOMP): {lost[:8]}"),
        (duplicates, f"delivered twice {len(duplicates)}: {duplicates[:8]}"),
        (unknown, f"never published: {unknown[:8]}"),
        (run.violations, f"violations {len(run.violations)}: {run.violations[:8]}"),
        (pub.inflight, f"publisher still in flight: {dict(list(pub.inflight.items())[:8])}"),
        (
            sub.awaiting,
            f"subscriber still awaiting release: {dict(list(sub.awaiting.items())[:8])}",
        ),
    ]
    report = (
        f"seed={seed} level={level} elapsed={elapsed:.1f}s kills={run.kills}\n"
        f"  published {pub.next_index}/{len(pub.payloads)}, PUBCOMP {len(pub.completed)}, "
        f"delivered {len(sub.delivered)}; stray acks: pub {pub.stray[:4]} sub {sub.stray[:4]}"
    )
    failed = [text for cond, text in failures if cond]
    for payload in lost[:2] + duplicates[:2]:
        report += f"\n  {payload.decode()}: publisher {pub.trace.get(payload)}"
        for pid, events in sub.trace.items():
            if any(e.split()[-1] == payload.decode() for e in events):
                report += f"; subscriber id {pid}: {events}"
    print(report)
    if failed:
        pytest.fail("\n  ".join([report, *failed]), pytrace=False)
    assert run.proc.stop() == 0, run.proc.output()
