"""busy_poll: the config option, and the loop kept polling after a write (server/busypoll.py).

The effect on latency is measured by the benchmark (bench/, kv_latency, nats_reqrep);
these tests pin what can be checked without timing: the option's forms, and that a
real loop keeps one callback turning for the window and then stops."""

from __future__ import annotations

import asyncio
import time

import nats
import pytest

from hybridbus.server.busypoll import BusyPoll

from .config.conftest import ConfFiles


@pytest.fixture
def conf(tmp_path, monkeypatch) -> ConfFiles:
    monkeypatch.chdir(tmp_path)
    return ConfFiles(tmp_path)


@pytest.mark.parametrize(
    "text, seconds",
    [("200us", 0.0002), ('"1ms"', 0.001), ("0s", 0.0), ("0", 0.0), ("1s", 1.0)],
)
def test_busy_poll_takes_a_duration(conf, text, seconds):
    opts, warnings = conf.load(f"busy_poll: {text}")
    assert warnings == []
    assert opts.busy_poll == pytest.approx(seconds)


def test_busy_poll_defaults_to_200us_and_refuses_bad_values(conf):
    opts, _ = conf.load("port: 4222")
    assert opts.busy_poll == pytest.approx(0.0002)
    assert conf.errors("busy_poll: 2s") == ["c.conf:1:0: invalid busy_poll of 2s, 0s to 1s"]
    assert conf.errors('busy_poll: "-1ms"') == ["c.conf:1:0: invalid busy_poll of -1ms, 0s to 1s"]
    assert conf.errors('busy_poll: "soon"') == [
        'c.conf:1:0: error parsing busy_poll: time: invalid duration "soon"'
    ]


class _Counted(BusyPoll):
    __slots__ = ("turns",)

    def __init__(self, loop) -> None:
        super().__init__(loop)
        self.turns = 0

    def _turn(self) -> None:
        self.turns += 1
        super()._turn()


async def test_a_write_keeps_the_loop_polling_for_the_window_then_it_stops():
    busy = _Counted(asyncio.get_running_loop())
    t0 = time.perf_counter()
    busy.after_write(0.02)
    busy.after_write(0.02)  # a second write extends the window, no second callback
    while busy.active:
        await asyncio.sleep(0)
    assert time.perf_counter() - t0 >= 0.02
    assert busy.turns > 10  # it kept turning, one callback at a time
    turns = busy.turns
    busy.after_write(0)  # off: nothing scheduled
    await asyncio.sleep(0.01)
    assert not busy.active and busy.turns == turns


async def test_a_server_with_busy_poll_off_or_on_answers_requests(server_factory):
    for window in (0.0, 0.0002):
        server = await server_factory(busy_poll=window)
        nc = await nats.connect(f"nats://127.0.0.1:{server.nats_port}")
        try:

            async def upper(m) -> None:
                await m.respond(m.data.upper())

            sub = await nc.subscribe("svc", cb=upper)
            answers = [await nc.request("svc", b"ping%d" % i, timeout=2) for i in range(20)]
            assert [a.data for a in answers] == [b"PING%d" % i for i in range(20)]
            if window == 0:
                assert not server._busy.active  # never started
            await sub.unsubscribe()
        finally:
            await nc.close()
