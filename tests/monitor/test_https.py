"""Monitoring over HTTPS (`https_port` with the top-level tls block)."""

from __future__ import annotations

import asyncio
import json
import ssl
import urllib.request

import trustme

from hybridbus.options import TLSOptions


async def test_https_monitoring(server_factory, tmp_path):
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    tls = TLSOptions(cert_file=str(cert_file), key_file=str(key_file))
    server = await server_factory(tls=tls, https_port=-1)
    assert server.monitor.scheme == "https"
    context = ssl.create_default_context()
    ca.configure_trust(context)
    url = f"https://127.0.0.1:{server.monitor.port}/varz"

    def fetch():
        with urllib.request.urlopen(url, context=context, timeout=5) as resp:
            return resp.status, json.loads(resp.read())

    status, varz = await asyncio.get_running_loop().run_in_executor(None, fetch)
    assert status == 200 and varz["server_id"] == server.server_id
    # plain HTTP on the TLS port fails cleanly
    reader, writer = await asyncio.open_connection("127.0.0.1", server.monitor.port)
    writer.write(b"GET /varz HTTP/1.1\r\nHost: x\r\n\r\n")
    data = await asyncio.wait_for(reader.read(), 5)
    assert not data.startswith(b"HTTP/1.1 200")
    writer.close()
