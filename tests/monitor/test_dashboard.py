"""The live dashboard at `/`, loaded in headless Chromium (Debian's `chromium`):
its DOM must show live numbers from this server, and its screenshot must not be
blank. Skipped only when no Chromium binary is installed."""

from __future__ import annotations

import asyncio
import html
import re
import shutil
import struct
import zlib
from pathlib import Path

import pytest

from tests.helpers.wire import nats_connect

CHROMIUM = next(
    (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None
)
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary on PATH")

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WIDTH, HEIGHT = 1280, 900


async def run_chromium(tmp: Path, name: str, *args: str, timeout: float = 20.0) -> bytes:
    """Run Chromium to completion (bounded in time, killed by PID) and return stdout.
    It runs as a subprocess, so the in-process server keeps answering meanwhile."""
    proc = await asyncio.create_subprocess_exec(
        CHROMIUM,
        *FLAGS,
        f"--user-data-dir={tmp / name}",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode == 0, f"chromium exited with {proc.returncode}"
    return out


def element_text(dom: str, element_id: str) -> str:
    """The text of the element with this id (its own closing tag ends it)."""
    m = re.search(rf'<(\w+)[^>]*\bid="{element_id}"[^>]*>(.*?)</\1>', dom, re.S)
    assert m, f"no element #{element_id}"
    return html.unescape(re.sub(r"<[^>]+>", " ", m.group(2))).strip()


def png_facts(data: bytes) -> tuple[int, int, int]:
    """(width, height, distinct scanlines) of a PNG; a blank page has a handful."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, width, height, bpp = 8, b"", 0, 0, 4
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        chunk = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, color = struct.unpack(">IIBB", chunk[:10])
            bpp = {2: 3, 6: 4, 0: 1, 4: 2}[color] * depth // 8
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = 1 + width * bpp
    lines = {raw[i * stride + 1 : (i + 1) * stride] for i in range(height)}
    return width, height, len(lines)


@needs_chromium
async def test_dashboard_renders_live_numbers(probes, tmp_path):
    server = probes.server
    url = probes.url("/")
    page = await probes.get("/")
    assert page.status == 200 and page.headers["content-type"] == "text/html; charset=utf-8"
    # self-contained: no external scripts, styles, fonts or images
    assert not re.search(rb"(src|href)=\"?(https?:)?//", page.body)
    # keep traffic flowing so the rates are live
    pub = await nats_connect(server.nats_port)

    async def publish_forever():
        while True:
            await pub.send(b"PUB orders.live 4\r\nlive\r\n" * 20)
            await asyncio.sleep(0.02)

    pumping = asyncio.create_task(publish_forever())
    shot = tmp_path / "dashboard.png"
    try:
        dom_bytes, _ = await asyncio.gather(
            run_chromium(tmp_path, "dom", "--dump-dom", "--virtual-time-budget=3000", url),
            run_chromium(
                tmp_path,
                "shot",
                f"--screenshot={shot}",
                f"--window-size={WIDTH},{HEIGHT}",
                "--hide-scrollbars",
                "--virtual-time-budget=3000",
                url,
            ),
        )
    finally:
        pumping.cancel()
    dom = dom_bytes.decode()
    assert element_text(dom, "server-id") == server.server_id
    assert element_text(dom, "status") == "live"
    assert int(element_text(dom, "poll-count")) >= 2
    assert element_text(dom, "conn-total") == "3"
    assert element_text(dom, "conn-nats") == "2"
    assert element_text(dom, "conn-mqtt") == "1"
    clients = element_text(dom, "client-rows")
    assert "hb-nats-probe" in clients and "hb-mqtt-probe" in clients
    subjects = element_text(dom, "subject-rows")
    assert "orders.>" in subjects and "sensors.>" in subjects
    # the published total is a live server number, not a placeholder
    assert int(element_text(dom, "in-msgs").replace(",", "")) >= 7

    data = shot.read_bytes()
    width, height, distinct = png_facts(data)
    assert (width, height) == (WIDTH, HEIGHT)
    assert len(data) > 20_000
    assert distinct > 100, f"screenshot looks blank ({distinct} distinct rows)"
    await pub.close()


async def _mqtt_operator_traffic(server) -> tuple:
    """One offline persistent session with a queued message, one online session that
    never acknowledges (messages in flight), one retained message; returns what to
    close afterwards."""
    from tests.helpers import mqtt_packets as mp
    from tests.helpers.wire import mqtt_connect
    from tests.monitor.conftest import Paho

    port = server.mqtt_port
    away = await Paho(port, "dash-offline", clean=False).start()
    await away.subscribe("fleet/#", 1)
    await away.stop()  # a persistent session, now offline
    slow = await mqtt_connect(port, "dash-slow")
    await slow.send(mp.subscribe(1, ("fleet/#", 1)))
    await slow.expect(mp.suback(1, 1))
    pub = await Paho(port, "dash-pub").start()
    await pub.publish("fleet/config", b"v2", qos=1)
    # retained: stored, queued for the offline session, in flight to dash-slow
    pub.client.publish("fleet/firmware", b"1.4.2", qos=1, retain=True).wait_for_publish(5)
    return pub, slow


@needs_chromium
async def test_dashboard_shows_version_name_and_mqtt_store_figures(monitored_factory, tmp_path):
    """The header names the server and hybridbus's own version (not the NATS protocol
    level), and the MQTT/store cards show live figures from /overviewz."""
    from hybridbus import __version__

    probes = await monitored_factory(server_name="edge-7", jetstream__sync_always=True)
    server = probes.server
    pub, slow = await _mqtt_operator_traffic(server)
    try:
        ov = await probes.json("/overviewz")
        assert ov["mqtt"]["sessions_offline"] == 1 and ov["mqtt"]["retained_messages"] == 1
        dom = (
            await run_chromium(
                tmp_path, "ops", "--dump-dom", "--virtual-time-budget=3000", probes.url("/")
            )
        ).decode()
    finally:
        await pub.stop()
        await slow.close()
    assert element_text(dom, "status") == "live"
    assert element_text(dom, "server-name") == "edge-7"
    assert element_text(dom, "version") == __version__
    assert __version__ != "2.11.0" and "2.11.0" not in element_text(dom, "version")
    assert element_text(dom, "mqtt-online") == "2"  # dash-slow and dash-pub
    assert element_text(dom, "mqtt-offline") == "1"
    assert element_text(dom, "retained") == "1"
    assert int(element_text(dom, "inflight")) >= 1  # dash-slow never sends PUBACK
    assert int(element_text(dom, "queued")) >= 1  # for the offline session
    size = element_text(dom, "store-size")
    assert re.fullmatch(r"[\d.]+ (B|KiB|MiB)", size) and size != "0 B", size
    assert int(element_text(dom, "store-msgs").replace(",", "")) >= 2
    # sync_always: every QoS 1 message was fsynced, so there is a latency to show
    assert int(element_text(dom, "fsync-count").replace(",", "")) >= 1
    assert re.fullmatch(r"[\d.]+ (µs|ms|s)", element_text(dom, "fsync-latency"))
    assert int(element_text(dom, "streams")) >= 4  # the MQTT state streams
    assert element_text(dom, "consumers") == "0"


@needs_chromium
async def test_dashboard_jetstream_panel(monitored, tmp_path):
    """The JetStream panel: API requests and errors, and one row per stream with its
    subjects, messages, bytes and consumers (the MQTT state streams included)."""
    from tests.monitor.test_jsz_api import (
        MQTT_STREAMS,
        ORDERS_BYTES,
        SETUP_REQUESTS,
        api_requests,
        make_orders,
    )

    nc, js = await make_orders(monitored.server)
    try:
        await api_requests(js, 3, bad=2)
        dom = (
            await run_chromium(
                tmp_path, "js", "--dump-dom", "--virtual-time-budget=3000", monitored.url("/")
            )
        ).decode()
    finally:
        await nc.close()
    assert element_text(dom, "status") == "live"
    assert element_text(dom, "js-state") == "enabled"
    assert element_text(dom, "js-api-total") == str(SETUP_REQUESTS + 5)
    assert element_text(dom, "js-api-errors") == "2"
    assert element_text(dom, "js-streams") == str(1 + len(MQTT_STREAMS))
    rows = re.findall(r'<tr[^>]*data-stream="([^"]*)"[^>]*>(.*?)</tr>', dom, re.S)
    names = [html.unescape(name) for name, _ in rows]
    assert set(names) == MQTT_STREAMS | {"ORDERS"}
    cells = dict(rows)["ORDERS"]
    texts = [html.unescape(re.sub(r"<[^>]+>", "", c)) for c in re.findall(r"<td.*?</td>", cells)]
    assert texts == ["ORDERS", "orders.>", "3", f"{ORDERS_BYTES} B", "2"]
