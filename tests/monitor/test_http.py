"""The HTTP layer: nats-server's 400 texts, Go's 404, keep-alive and pipelining over
a raw socket, HEAD, a malformed request, and http_base_path."""

from __future__ import annotations

import asyncio

import pytest

from hybridbus.monitor.dashboard import render_dashboard
from hybridbus.monitor.http import normalize_base_path

BAD = [
    (
        "/connz?auth=maybe",
        "Error decoding boolean for 'auth': strconv.ParseBool: parsing \"maybe\": invalid syntax",
    ),
    (
        "/connz?subs=yes",
        "Error decoding boolean for 'subs': strconv.ParseBool: parsing \"yes\": invalid syntax",
    ),
    (
        "/connz?offset=x",
        "Error decoding int for 'offset': strconv.Atoi: parsing \"x\": invalid syntax",
    ),
    (
        "/connz?limit=1.5",
        "Error decoding int for 'limit': strconv.Atoi: parsing \"1.5\": invalid syntax",
    ),
    (
        "/connz?cid=abc",
        "Error decoding uint64 for 'cid': strconv.ParseUint: parsing \"abc\": invalid syntax",
    ),
    (
        "/connz?cid=-1",
        "Error decoding uint64 for 'cid': strconv.ParseUint: parsing \"-1\": invalid syntax",
    ),
    ("/connz?state=weird", "Error decoding state for weird"),
    ("/connz?sort=bogus", "invalid sorting option: bogus"),
    ("/connz?sort=CID", "invalid sorting option: CID"),  # sort keys are case-sensitive
    ("/connz?sort=stop", "sort by stop only valid on closed connections"),
    ("/connz?sort=reason", "sort by reason only valid on closed connections"),
    ("/connz?sort=stop&state=all", "sort by stop only valid on closed connections"),
    # decoding order: auth is checked before offset, as nats-server does
    (
        "/connz?offset=x&auth=maybe",
        "Error decoding boolean for 'auth': strconv.ParseBool: parsing \"maybe\": invalid syntax",
    ),
    ("/subsz?test=foo.*", "invalid test subject, must be valid publish subject: foo.*"),
    ("/subsz?subs=1&test=foo.>", "invalid test subject, must be valid publish subject: foo.>"),
    ("/subsz?test=a..b", "invalid test subject, must be valid publish subject: a..b"),
    (
        "/subsz?subs=detail",
        "Error decoding boolean for 'subs': strconv.ParseBool: parsing \"detail\": invalid syntax",
    ),
    (
        "/subscriptionsz?limit=z",
        "Error decoding int for 'limit': strconv.Atoi: parsing \"z\": invalid syntax",
    ),
    ("/accountz?acc=nope", "Account nope does not exist"),
    (
        "/jsz?accounts=maybe",
        "Error decoding boolean for 'accounts': strconv.ParseBool: parsing \"maybe\": invalid syntax",
    ),
    (
        "/healthz?js-enabled-only=maybe",
        "Error decoding boolean for 'js-enabled-only': strconv.ParseBool: parsing \"maybe\": "
        "invalid syntax",
    ),
    (
        "/routez?subs=2",
        "Error decoding boolean for 'subs': strconv.ParseBool: parsing \"2\": invalid syntax",
    ),
]


@pytest.mark.parametrize("path, text", BAD, ids=[p for p, _ in BAD])
async def test_bad_parameters_give_plain_text_400(monitored, path, text):
    r = await monitored.get(path)
    assert r.status == 400
    assert r.headers["content-type"] == "text/plain; charset=utf-8"
    assert r.text == text


async def test_valid_closed_sorts_and_ignored_params(monitored):
    for path in (
        "/connz?sort=stop&state=closed",
        "/connz?sort=reason&state=closed",
        "/connz?callback=cb&filter_subject=x&unknown=1",
        "/connz?subs=&auth=",
        "/connz?auth=T&subs=detail",
    ):
        r = await monitored.get(path)
        assert r.status == 200, (path, r.text)
        assert r.text.startswith("{")  # JSONP is ignored, as on 2.15.1


async def test_unknown_paths_are_go_404(monitored):
    for path in ("/nope", "/varz/", "/VARZ", "/connz/x"):
        r = await monitored.get(path)
        assert r.status == 404
        assert r.body == b"404 page not found\n"
        assert r.headers["content-type"] == "text/plain; charset=utf-8"
        assert r.headers["x-content-type-options"] == "nosniff"


async def _read_response(reader: asyncio.StreamReader) -> tuple[bytes, dict, bytes]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        if line:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
    body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), 5)
    return lines[0].encode(), headers, body


async def test_keep_alive_and_pipelining_on_a_raw_socket(monitored):
    reader, writer = await asyncio.open_connection("127.0.0.1", monitored.port)
    writer.write(
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /connz?sort=bogus HTTP/1.1\r\nHost: x\r\n\r\n"
        b"HEAD /varz HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    status, headers, body = await _read_response(reader)
    assert status == b"HTTP/1.1 200 OK"
    assert body == b'{"status":"ok"}'
    assert headers["access-control-allow-origin"] == "*"
    assert "date" in headers
    status, headers, body = await _read_response(reader)
    assert status == b"HTTP/1.1 400 Bad Request"
    assert body == b"invalid sorting option: bogus"
    assert "access-control-allow-origin" not in headers
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    # still open: one more request on the same connection, then the body ends exactly
    writer.write(b"POST /varz HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
    status, headers, body = await _read_response(reader)
    assert status == b"HTTP/1.1 200 OK" and body.startswith(b"{\n") and body.endswith(b"}")
    writer.write(b"GET /routez HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    status, headers, body = await _read_response(reader)
    assert status == b"HTTP/1.1 200 OK"
    assert await asyncio.wait_for(reader.read(), 5) == b""  # server closed
    writer.close()


async def test_malformed_request_gets_400_and_close(monitored):
    reader, writer = await asyncio.open_connection("127.0.0.1", monitored.port)
    writer.write(b"THIS IS NOT HTTP\r\n\r\n")
    data = await asyncio.wait_for(reader.read(), 5)
    assert data.startswith(b"HTTP/1.1 400 ")
    writer.close()
    # the monitor still serves others
    assert (await monitored.get("/healthz")).status == 200


async def test_http_base_path(monitored_factory):
    m = await monitored_factory(http_base_path="/hb/")
    assert (await m.get("/hb/varz")).status == 200
    assert (await m.get("/hb/subscriptionsz")).status == 200
    assert (await m.get("/varz")).status == 404
    root = await m.get("/hb")
    assert root.status == 200 and root.headers["content-type"] == "text/html; charset=utf-8"
    assert b'const BASE = "/hb";' in root.body
    v = await m.json("/hb/varz")
    assert v["http_base_path"] == "/hb/"
    assert v["http_req_stats"] == {"/": 1, "/varz": 2, "/subsz": 1}


def test_base_path_normalisation():
    assert normalize_base_path("") == "/"
    assert normalize_base_path("/") == "/"
    assert normalize_base_path("hb") == "/hb"
    assert normalize_base_path("/a/b//") == "/a/b"
    assert 'const BASE = "";' in render_dashboard("/")
    # a hostile base path cannot close the script element
    assert "</script><" not in render_dashboard("/</script><x>").split("const BASE")[1][:40]


async def test_close_stops_listening(server_factory):
    from hybridbus.monitor.http import start_monitor

    server = await server_factory()
    mon = await start_monitor(server)
    reader, writer = await asyncio.open_connection("127.0.0.1", mon.port)
    await mon.close()
    assert await asyncio.wait_for(reader.read(), 5) == b""  # open keep-alive closed too
    writer.close()
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", mon.port)


async def test_listens_on_the_configured_port(monitored_factory):
    from tests.conftest import free_port

    port = free_port()
    m = await monitored_factory(http_port=port)
    assert m.port == port
    assert (await m.json("/varz"))["http_port"] == port
